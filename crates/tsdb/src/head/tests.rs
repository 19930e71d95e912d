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
            ..HeadOptions::default()
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
            ..HeadOptions::default()
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
            Record::Histograms(_) | Record::FloatHistograms(_) => "histograms",
            Record::Exemplars(_) => "exemplars",
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

/// Counter histograms whose buckets grow over time, with an occasional reset.
fn counter_histogram(i: i64) -> model::histogram::Histogram {
    use model::histogram::{counts_to_deltas, spans_from_indexes};
    let i = i % 700; // a reset every 700 samples
    let n = 2 + (i / 50).min(6) as i32; // new buckets appear
    let idx: Vec<i32> = (0..n).map(|k| k * 2 - 3).collect();
    let counts: Vec<i64> = (0..n as i64).map(|k| i * (k + 1)).collect();
    model::histogram::Histogram {
        schema: 2,
        zero_threshold: 1e-3,
        zero_count: i as u64,
        count: i as u64 + counts.iter().sum::<i64>() as u64,
        sum: i as f64 * 0.25,
        positive_spans: spans_from_indexes(&idx),
        positive_buckets: counts_to_deltas(&counts),
        ..Default::default()
    }
}

/// The samples of a series as (t, count, sum): what must survive every path.
fn histogram_points(chunks: &[crate::querier::ChunkData]) -> Vec<(i64, f64, f64)> {
    use crate::chunkenc::value::{self, Value};
    let mut out = Vec::new();
    for c in chunks {
        for (t, v) in value::decode(c.encoding, &c.data).unwrap() {
            match v {
                Value::Histogram(h) => out.push((t, h.count as f64, h.sum)),
                Value::FloatHistogram(h) => out.push((t, h.count, h.sum)),
                Value::Float(f) => out.push((t, f, f)),
            }
        }
    }
    out
}

#[test]
fn native_histograms_survive_head_wal_checkpoint_and_block() {
    use crate::chunkenc::{ENCODING_FLOAT_HISTOGRAM, ENCODING_HISTOGRAM};
    let dir = tempfile::tempdir().unwrap();
    let ints = labels!("__name__" => "req_duration");
    let floats = labels!("__name__" => "req_rate");
    let step = 15_000;
    let n = 1500i64;
    let want_int: Vec<(i64, f64, f64)> = (0..n)
        .map(|i| {
            let h = counter_histogram(i);
            (i * step, h.count as f64, h.sum)
        })
        .collect();
    {
        let (wal, _) = Wal::open(dir.path(), crate::wal::WalOptions::default(), |_| {}).unwrap();
        let head = Head::new(
            HeadOptions {
                out_of_order_window: 3_600_000,
                ..HeadOptions::default()
            },
            Some(Arc::new(wal)),
        );
        for batch in (0..n).collect::<Vec<_>>().chunks(100) {
            let mut app = head.appender();
            let a = app.series(&ints).unwrap();
            let b = app.series(&floats).unwrap();
            for &i in batch {
                if i == n - 20 {
                    continue; // written out of order below
                }
                app.append_histogram_to(a, i * step, counter_histogram(i))
                    .unwrap();
                let mut fh = counter_histogram(i).to_float();
                fh.counter_reset_hint = model::histogram::CounterResetHint::Gauge;
                fh.sum = -(i as f64);
                app.append_float_histogram_to(b, i * step, fh).unwrap();
            }
            let stats = app.commit().unwrap();
            assert_eq!(stats.samples, 0);
            assert!(stats.histograms > 0);
        }
        let mut app = head.appender();
        let a = app.series(&ints).unwrap();
        app.append_histogram_to(a, (n - 20) * step, counter_histogram(n - 20))
            .unwrap();
        app.commit().unwrap();
        // A retry of the same histogram is accepted and not stored twice; another one for the
        // same timestamp conflicts.
        let mut app = head.appender();
        let a = app.series(&ints).unwrap();
        app.append_histogram_to(a, (n - 10) * step, counter_histogram(n - 10))
            .unwrap();
        assert_eq!(app.commit().unwrap().histograms, 0);
        let mut app = head.appender();
        let a = app.series(&ints).unwrap();
        // Older than the newest sample: staged like a float, refused when applied.
        app.append_histogram_to(a, (n - 10) * step, counter_histogram(n - 9))
            .unwrap();
        assert_eq!(app.commit().unwrap().rejected_late_histograms, 1);
        let mut app = head.appender();
        let a = app.series(&ints).unwrap();
        assert!(matches!(
            app.append_histogram_to(a, (n - 1) * step, counter_histogram(n)),
            Err(Error::DuplicateTimestamp { .. })
        ));

        let series = head.all_series_sorted();
        let int_chunks = series[0].chunks(i64::MIN, i64::MAX);
        assert!(int_chunks.iter().all(|c| c.encoding == ENCODING_HISTOGRAM));
        assert!(int_chunks.len() > 10, "histogram chunks are cut by size");
        assert_eq!(histogram_points(&int_chunks), want_int);
        let f_chunks = series[1].chunks(i64::MIN, i64::MAX);
        assert!(f_chunks
            .iter()
            .all(|c| c.encoding == ENCODING_FLOAT_HISTOGRAM));
        assert_eq!(histogram_points(&f_chunks).len(), n as usize - 1);
    }
    // Replay: every histogram comes back from the WAL records.
    let (head, _) = replayed(dir.path());
    let series = head.all_series_sorted();
    assert_eq!(
        histogram_points(&series[0].chunks(i64::MIN, i64::MAX)),
        want_int
    );

    // A checkpoint holds histogram chunks; replaying it gives the same samples.
    {
        let (wal, _) = Wal::open(dir.path(), crate::wal::WalOptions::default(), |_| {}).unwrap();
        let last = wal.cut_segment().unwrap();
        wal.checkpoint(last, head.checkpoint_records(i64::MIN).into_iter())
            .unwrap();
    }
    let (again, records) = replayed(dir.path());
    assert!(records
        .iter()
        .any(|r| matches!(r, Record::Chunk { encoding, .. } if *encoding == ENCODING_HISTOGRAM)));
    let series = again.all_series_sorted();
    assert_eq!(
        histogram_points(&series[0].chunks(i64::MIN, i64::MAX)),
        want_int
    );

    // A block over part of the range keeps exactly the samples inside it.
    let q = HeadQuerier(Arc::new(again));
    let all = q.select(&[], i64::MIN, i64::MAX).unwrap();
    let (mint, maxt) = (1_000_000, 9_000_000);
    let blocks = tempfile::tempdir().unwrap();
    let meta = crate::block::write_block(
        blocks.path(),
        mint,
        maxt,
        &all,
        crate::block::BlockWriteOptions::default(),
    )
    .unwrap();
    let block = crate::block::Block::open(&blocks.path().join(meta.ulid.to_string())).unwrap();
    let bq = crate::block::BlockQuerier(Arc::new(block));
    let back = bq.select(&[], i64::MIN, i64::MAX).unwrap();
    let inside: Vec<_> = want_int
        .iter()
        .copied()
        .filter(|p| p.0 >= mint && p.0 < maxt)
        .collect();
    assert_eq!(histogram_points(&back[0].chunks), inside);
}

#[test]
fn exemplars_are_stored_logged_and_replayed() {
    use crate::exemplars::{Exemplar, ExemplarError};
    let dir = tempfile::tempdir().unwrap();
    let opts = HeadOptions {
        max_exemplars: 10,
        ..HeadOptions::default()
    };
    let series = labels!("__name__" => "http_requests_total", "job" => "api");
    let ex = |trace: &str, ts: i64| Exemplar {
        labels: labels!("trace_id" => trace),
        value: 1.0,
        ts,
    };
    {
        let (wal, _) = Wal::open(dir.path(), crate::wal::WalOptions::default(), |_| {}).unwrap();
        let head = Head::new(opts.clone(), Some(Arc::new(wal)));
        let mut app = head.appender();
        let h = app.series(&series).unwrap();
        app.append_to(h, 1000, 1.0).unwrap();
        app.append_exemplar_to(h, ex("a", 1000)).unwrap();
        app.append_exemplar_to(h, ex("b", 2000)).unwrap();
        assert_eq!(
            app.append_exemplar_to(h, ex("b", 2000)),
            Err(ExemplarError::Duplicate)
        );
        assert!(matches!(
            app.append_exemplar_to(h, ex("c", 500)),
            Err(ExemplarError::OutOfOrder { .. })
        ));
        assert_eq!(app.commit().unwrap().exemplars, 2);
        let got = head.exemplars().select(0, 5000, &[]);
        assert_eq!(got[0].series_labels, series);
        assert_eq!(got[0].exemplars.len(), 2);
    }
    let head = Head::new(opts, None);
    let mut unknown = 0;
    Wal::open(dir.path(), crate::wal::WalOptions::default(), |r| {
        head.replay_record(r, &mut unknown)
    })
    .unwrap();
    let got = head.exemplars().select(0, 5000, &[]);
    let traces: Vec<&str> = got[0]
        .exemplars
        .iter()
        .map(|e| e.labels.get("trace_id").unwrap())
        .collect();
    assert_eq!(traces, ["a", "b"]);
}

#[test]
fn histogram_duplicates_markers_and_mixed_kinds() {
    use crate::chunkenc::ENCODING_HISTOGRAM;
    let head = Head::new(HeadOptions::default(), None);
    let l = labels!("__name__" => "h");
    // A float 0.0 and a histogram at one timestamp of one batch conflict.
    let mut app = head.appender();
    let h = app.series(&l).unwrap();
    app.append_histogram_to(h, 1000, counter_histogram(1))
        .unwrap();
    assert!(matches!(
        app.append_to(h, 1000, 0.0),
        Err(Error::DuplicateTimestamp { .. })
    ));
    app.commit().unwrap();
    // The same histogram again (its hint and spelling of empty buckets aside) is a retry.
    let mut retry = counter_histogram(1);
    retry.counter_reset_hint = model::histogram::CounterResetHint::NotReset;
    let mut app = head.appender();
    let h = app.series(&l).unwrap();
    app.append_histogram_to(h, 1000, retry).unwrap();
    assert_eq!(app.commit().unwrap().histograms, 0);
    // A float stale marker for a histogram series becomes a histogram marker; its retry is
    // accepted.
    for _ in 0..2 {
        let mut app = head.appender();
        let h = app.series(&l).unwrap();
        app.append_to(h, 2000, crate::stale_nan()).unwrap();
        app.commit().unwrap();
    }
    let chunks = head.all_series_sorted()[0].chunks(i64::MIN, i64::MAX);
    assert!(
        chunks.iter().all(|c| c.encoding == ENCODING_HISTOGRAM),
        "{chunks:?}"
    );
    let points = histogram_points(&chunks);
    assert_eq!(points.len(), 2);
    assert!(crate::is_stale_nan(points[1].2));
}

#[test]
fn a_checkpoint_keeps_exemplars() {
    use crate::exemplars::Exemplar;
    let dir = tempfile::tempdir().unwrap();
    let opts = HeadOptions {
        max_exemplars: 10,
        ..HeadOptions::default()
    };
    let series = labels!("__name__" => "c");
    let (wal, _) = Wal::open(dir.path(), crate::wal::WalOptions::default(), |_| {}).unwrap();
    let head = Head::new(opts.clone(), Some(Arc::new(wal)));
    let mut app = head.appender();
    let h = app.series(&series).unwrap();
    app.append_to(h, 1000, 1.0).unwrap();
    app.append_exemplar_to(
        h,
        Exemplar {
            labels: labels!("trace_id" => "x"),
            value: 1.0,
            ts: 1000,
        },
    )
    .unwrap();
    app.commit().unwrap();
    let records = head.checkpoint_records(0);
    drop(head);
    let (wal, _) = Wal::open(dir.path(), crate::wal::WalOptions::default(), |_| {}).unwrap();
    let last = wal.cut_segment().unwrap();
    wal.checkpoint(last, records.into_iter()).unwrap();
    drop(wal);
    let again = Head::new(opts, None);
    let mut unknown = 0;
    Wal::open(dir.path(), crate::wal::WalOptions::default(), |r| {
        again.replay_record(r, &mut unknown)
    })
    .unwrap();
    assert_eq!(again.exemplars().select(0, 5000, &[]).len(), 1);
}
