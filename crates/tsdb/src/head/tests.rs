use super::*;
use crate::chunkenc::XorIterator;
use crate::labels;
use crate::matcher::{Matcher, PostingsIndex};
use crate::querier::Querier;
use crate::wal::Record;
use crate::Error;

#[test]
fn out_of_order_samples_within_the_window_are_inserted_in_place() {
    let head = Head::new(
        HeadOptions {
            chunk_range: 1000,
            out_of_order_window: 500,
        },
        None,
    );
    let l = labels!("__name__" => "x");
    let mut app = head.appender();
    for t in [100, 200, 400, 1200, 1300] {
        app.append(&l, t, t as f64).unwrap();
    }
    // Staged in the same commit, before and after newer samples.
    app.append(&l, 1250, 1250.0).unwrap();
    assert!(matches!(
        app.append(&l, 700, 7.0),
        Err(Error::OutOfOrder { .. })
    ));
    app.commit().unwrap();
    let mut app = head.appender();
    app.append(&l, 900, 900.0).unwrap(); // after the 0..1000 chunk, same bucket
    app.append(&l, 300, 300.0).unwrap_err(); // older than newest - window
    app.append(&l, 1300, 1300.0).unwrap(); // exact duplicate
    app.commit().unwrap();
    let mut app = head.appender();
    app.append(&l, 1250, 1.0).unwrap(); // staged; conflicts at commit
    let stats = app.commit().unwrap();
    assert_eq!(stats.rejected_late, 1);

    let series = head.all_series_sorted();
    let chunks = series[0].chunks(i64::MIN, i64::MAX);
    let mut got = Vec::new();
    let mut prev_max = i64::MIN;
    for c in &chunks {
        assert!(c.min_time > prev_max, "chunks overlap: {chunks:?}");
        assert_eq!(range_start(c.min_time, 1000), range_start(c.max_time, 1000));
        prev_max = c.max_time;
        got.extend(XorIterator::new(&c.data).map(|(t, _)| t));
    }
    assert_eq!(got, vec![100, 200, 400, 900, 1200, 1250, 1300]);
}

#[test]
fn an_appender_may_widen_the_out_of_order_window() {
    let head = Head::new(
        HeadOptions {
            chunk_range: 100_000,
            out_of_order_window: 10,
        },
        None,
    );
    let l = labels!("__name__" => "x");
    let mut app = head.appender();
    app.append(&l, 10_000, 1.0).unwrap();
    app.commit().unwrap();
    let mut app = head.appender();
    assert!(app.append(&l, 5_000, 2.0).is_err());
    app.set_out_of_order_window(i64::MAX);
    app.append(&l, 5_000, 2.0).unwrap();
    app.append(&l, 200_000, 3.0).unwrap();
    app.commit().unwrap();
    // Older than half a block behind the newest: only a late appender takes it.
    let mut app = head.appender();
    assert!(matches!(
        app.append(&l, 100, 4.0),
        Err(Error::OutOfBounds { .. })
    ));
    app.accept_late();
    app.append(&l, 100, 4.0).unwrap();
    app.commit().unwrap();
    let chunks = head.all_series_sorted()[0].chunks(i64::MIN, i64::MAX);
    let ts: Vec<i64> = chunks
        .iter()
        .flat_map(|c| {
            XorIterator::new(&c.data)
                .map(|(t, _)| t)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(ts, vec![100, 5_000, 10_000, 200_000]);
}

#[test]
fn samples_staged_before_a_cut_moved_the_bound_are_refused_at_commit() {
    let head = Head::new(HeadOptions::default(), None);
    let l = labels!("__name__" => "x");
    let mut app = head.appender();
    app.append(&l, 1000, 1.0).unwrap();
    app.append(&l, 5000, 5.0).unwrap();
    // A block cut up to 2000 happens between staging and commit.
    head.set_min_valid_time(2000);
    let stats = app.commit().unwrap();
    assert_eq!((stats.samples, stats.rejected_late), (1, 1));
    let chunks = head.all_series_sorted()[0].chunks(i64::MIN, i64::MAX);
    let ts: Vec<i64> = chunks
        .iter()
        .flat_map(|c| {
            XorIterator::new(&c.data)
                .map(|(t, _)| t)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(ts, vec![5000]);
}

#[test]
fn ordering_rules() {
    let head = Head::new(HeadOptions::default(), None);
    let l = labels!("__name__" => "up");
    let mut app = head.appender();
    app.append(&l, 1000, 1.0).unwrap();
    app.append(&l, 2000, 2.0).unwrap();
    assert!(matches!(
        app.append(&l, 1500, 1.0),
        Err(Error::OutOfOrder { .. })
    ));
    assert!(matches!(
        app.append(&l, 2000, 3.0),
        Err(Error::DuplicateTimestamp { .. })
    ));
    app.append(&l, 2000, 2.0).unwrap(); // exact duplicate: fine
    assert_eq!(app.commit().unwrap().samples, 2);

    let mut app = head.appender();
    assert!(matches!(
        app.append(&l, 1000, 1.0),
        Err(Error::OutOfOrder { .. })
    ));
    assert!(matches!(
        app.append(&l, 2000, 5.0),
        Err(Error::DuplicateTimestamp { .. })
    ));
    // Half a block range behind the newest sample is out of bounds.
    let far = 2000 + head.options().chunk_range;
    app.append(&l, far, 1.0).unwrap();
    app.commit().unwrap();
    let mut app = head.appender();
    let other = labels!("__name__" => "other");
    assert!(matches!(
        app.append(&other, 2000, 1.0),
        Err(Error::OutOfBounds { .. })
    ));
}

#[test]
fn chunks_cut_at_120_samples_and_block_boundaries() {
    let head = Head::new(
        HeadOptions {
            chunk_range: 1_000_000,
            ..Default::default()
        },
        None,
    );
    let l = labels!("__name__" => "x");
    let mut app = head.appender();
    for i in 0..300 {
        app.append(&l, i * 1000, i as f64).unwrap();
    }
    app.commit().unwrap();
    let s = head.series_by_ref(1).unwrap();
    let chunks = s.chunks(i64::MIN, i64::MAX);
    let sizes: Vec<i64> = chunks.iter().map(|c| c.max_time - c.min_time).collect();
    // 0..999s is one block range: chunks of 120, 120, 60 samples (then 60 after the boundary? no)
    assert_eq!(chunks.len(), 3);
    assert_eq!(sizes, vec![119_000, 119_000, 59_000]);
    let mut app = head.appender();
    for i in 300..1100 {
        app.append(&l, i * 1000, i as f64).unwrap();
    }
    app.commit().unwrap();
    for c in s.chunks(i64::MIN, i64::MAX) {
        assert_eq!(
            range_start(c.min_time, 1_000_000),
            range_start(c.max_time, 1_000_000)
        );
    }
}

#[test]
fn postings_and_truncate() {
    let head = Head::new(HeadOptions::default(), None);
    let mut app = head.appender();
    app.append(&labels!("__name__" => "a", "job" => "x"), 10, 1.0)
        .unwrap();
    app.append(&labels!("__name__" => "b", "job" => "x"), 5000, 1.0)
        .unwrap();
    app.commit().unwrap();
    assert_eq!(head.postings("job", "x").unwrap(), vec![1, 2]);
    assert_eq!(head.label_values("__name__").unwrap(), vec!["a", "b"]);
    assert_eq!(head.truncate(1000), 1);
    assert_eq!(head.postings("job", "x").unwrap(), vec![2]);
    assert_eq!(head.label_values("__name__").unwrap(), vec!["b"]);
    assert_eq!(head.min_time(), 5000);
    let mut app = head.appender();
    assert!(matches!(
        app.append(&labels!("__name__" => "a"), 999, 1.0),
        Err(Error::OutOfBounds { .. })
    ));
}

/// Replays `dir`'s WAL into a fresh head.
fn replayed(dir: &std::path::Path) -> (Head, Vec<Record>) {
    let head = Head::new(HeadOptions::default(), None);
    let mut records = Vec::new();
    let mut unknown = 0;
    Wal::open(dir, crate::wal::WalOptions::default(), |r| {
        records.push(r.clone());
        head.replay_record(r, &mut unknown)
    })
    .unwrap();
    assert_eq!(unknown, 0, "every sample record follows its series record");
    (head, records)
}

#[test]
fn a_series_is_logged_by_the_first_commit_that_writes_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let a = labels!("__name__" => "a");
    let b = labels!("__name__" => "b");
    {
        let (wal, _) = Wal::open(dir.path(), crate::wal::WalOptions::default(), |_| {}).unwrap();
        let head = Head::new(HeadOptions::default(), Some(Arc::new(wal)));
        // Created by an appender that is dropped: the series exist, their records are not
        // written; `never` gets no sample at all, so it is never logged.
        let never = labels!("__name__" => "never");
        let mut dropped = head.appender();
        dropped.append(&a, 1000, 1.0).unwrap();
        dropped.append(&never, 1000, 1.0).unwrap();
        drop(dropped);
        assert_eq!(head.num_series(), 2);
        // A second appender writes to it and to a new series: both records precede the samples.
        let mut app = head.appender();
        app.append(&a, 2000, 2.0).unwrap();
        app.append(&b, 2000, 3.0).unwrap();
        app.commit().unwrap();
        // Known series are not logged again.
        let mut app = head.appender();
        app.append(&a, 3000, 4.0).unwrap();
        app.commit().unwrap();
    }
    let (head, records) = replayed(dir.path());
    let kinds: Vec<&str> = records
        .iter()
        .map(|r| match r {
            Record::Series { .. } => "series",
            Record::Samples(_) => "samples",
            Record::Chunk { .. } => "chunk",
        })
        .collect();
    assert_eq!(kinds, ["series", "series", "samples", "samples"]);
    assert_eq!(head.num_series(), 2);
    let q = HeadQuerier(Arc::new(head));
    let got = q
        .select(&[Matcher::equal("__name__", "a")], 0, i64::MAX)
        .unwrap();
    let ts: Vec<i64> = XorIterator::new(&got[0].chunks[0].data)
        .map(|(t, _)| t)
        .collect();
    assert_eq!(ts, [2000, 3000]);
}
