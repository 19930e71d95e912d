//! Database behaviour: crash recovery through the WAL, cutting, flushing, retention.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tsdb::db::{Db, DbOptions};
use tsdb::matcher::Matcher;
use tsdb::querier::Querier;
use tsdb::wal::{FsyncPolicy, WalOptions};
use tsdb::{labels, Error, Labels};

fn opts(block: i64) -> DbOptions {
    DbOptions {
        block_duration: block,
        retention: None,
        ..Default::default()
    }
}

fn all_samples(db: &Db, name: &str) -> Vec<(i64, f64)> {
    let q = db.querier(i64::MIN, i64::MAX);
    let series = q
        .select(&[Matcher::equal("__name__", name)], i64::MIN, i64::MAX)
        .unwrap();
    series
        .iter()
        .flat_map(|s| s.samples(i64::MIN, i64::MAX))
        .map(|s| (s.t, s.v))
        .collect()
}

#[test]
fn a_crash_loses_no_committed_sample() {
    let dir = tempfile::tempdir().unwrap();
    let l = labels!("__name__" => "up", "job" => "a");
    {
        let (db, _) = Db::open(dir.path(), opts(10_000)).unwrap();
        for t in 0..500 {
            let mut app = db.appender();
            app.append(&l, t * 100, t as f64).unwrap();
            app.commit().unwrap();
            db.maintain().unwrap();
        }
        // A batch that is never committed must not appear.
        let mut app = db.appender();
        app.append(&l, 60_000, 1.0).unwrap();
        drop(app);
        // Dropped without close: no flush, as after a kill (leaking it is the point).
        #[allow(clippy::mem_forget)]
        std::mem::forget(db);
    }
    let (db, stats) = Db::open(dir.path(), opts(10_000)).unwrap();
    assert!(!db.blocks().is_empty(), "blocks were cut while running");
    assert!(stats.wal_records > 0);
    let got = all_samples(&db, "up");
    let want: Vec<(i64, f64)> = (0..500).map(|t| (t * 100, t as f64)).collect();
    assert_eq!(got, want);
    // Appends continue where they stopped, and old data is out of bounds.
    let mut app = db.appender();
    app.append(&l, 50_000, 1.0).unwrap();
    assert!(matches!(
        app.append(&labels!("__name__" => "new"), 10, 1.0),
        Err(Error::OutOfBounds { .. })
    ));
    app.commit().unwrap();
}

#[test]
fn cuts_at_one_and_a_half_ranges_and_flushes_on_close() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = Db::open(dir.path(), opts(1000)).unwrap();
    let l = labels!("__name__" => "x");
    let mut app = db.appender();
    for t in 0..=1500 {
        app.append(&l, t, 1.0).unwrap();
    }
    app.commit().unwrap();
    assert!(
        db.maintain().unwrap().is_empty(),
        "1.5 ranges exactly: not yet"
    );
    let mut app = db.appender();
    app.append(&l, 1501, 1.0).unwrap();
    app.commit().unwrap();
    let cut = db.maintain().unwrap();
    assert_eq!(cut.len(), 1);
    assert_eq!((cut[0].min_time, cut[0].max_time), (0, 1000));
    assert_eq!(cut[0].stats.num_samples, 1000);
    assert_eq!(db.head().min_time(), 1000);
    let metas = db.close().unwrap();
    assert_eq!(metas.len(), 1);
    assert_eq!((metas[0].min_time, metas[0].max_time), (1000, 1502));
    let (db, stats) = Db::open(dir.path(), opts(1000)).unwrap();
    assert_eq!(stats.blocks, 2);
    assert!(
        db.head().is_empty(),
        "a clean close leaves nothing to replay"
    );
    assert_eq!(all_samples(&db, "x").len(), 1502);
}

#[test]
fn retention_respects_the_veto() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(1000);
    o.retention = Some(3000);
    let (db, _) = Db::open(dir.path(), o).unwrap();
    let uploaded = Arc::new(AtomicBool::new(false));
    let flag = uploaded.clone();
    db.set_deletion_veto(Arc::new(move |_| flag.load(Ordering::SeqCst)));
    let l = labels!("__name__" => "x");
    for t in (0..8000).step_by(10) {
        let mut app = db.appender();
        app.append(&l, t, 1.0).unwrap();
        app.commit().unwrap();
        db.maintain().unwrap();
    }
    let before = db.blocks().len();
    assert!(before >= 6);
    assert!(
        db.apply_retention().unwrap().is_empty(),
        "vetoed: nothing deleted"
    );
    uploaded.store(true, Ordering::SeqCst);
    let deleted = db.apply_retention().unwrap();
    assert!(!deleted.is_empty());
    for m in &deleted {
        assert!(m.max_time <= 7990 - 3000);
        assert!(!dir.path().join(m.ulid.to_string()).exists());
    }
    assert_eq!(db.blocks().len(), before - deleted.len());
}

#[test]
fn queries_merge_head_and_blocks_with_matchers() {
    let dir = tempfile::tempdir().unwrap();
    let o = DbOptions {
        wal: WalOptions {
            fsync: FsyncPolicy::Never,
            ..Default::default()
        },
        ..opts(1000)
    };
    let (db, _) = Db::open(dir.path(), o).unwrap();
    for t in 0..3000 {
        let mut app = db.appender();
        for i in 0..20 {
            let l = Labels::from_pairs([
                ("__name__", "m".to_string()),
                ("i", i.to_string()),
                ("parity", (i % 2).to_string()),
            ]);
            app.append(&l, t, (t * i) as f64).unwrap();
        }
        app.commit().unwrap();
        db.maintain().unwrap();
    }
    assert!(!db.blocks().is_empty() && !db.head().is_empty());
    let q = db.querier(500, 2500);
    let series = q
        .select(
            &[
                Matcher::equal("parity", "1"),
                Matcher::regex("i", "1|3|5|7").unwrap(),
            ],
            500,
            2500,
        )
        .unwrap();
    let names: Vec<String> = series
        .iter()
        .map(|s| s.labels.get("i").unwrap().to_string())
        .collect();
    assert_eq!(names, vec!["1", "3", "5", "7"]);
    for s in &series {
        let samples = s.samples(500, 2500);
        assert_eq!(samples.len(), 2001);
        assert!(samples.windows(2).all(|w| w[1].t == w[0].t + 1));
    }
    let values = q
        .label_values("i", &[Matcher::equal("parity", "0")], 500, 2500)
        .unwrap();
    assert_eq!(values.len(), 10);
    assert_eq!(
        q.label_names(&[], 0, 3000).unwrap(),
        vec!["__name__", "i", "parity"]
    );
}

/// A database with blocks and a head, series that start and stop at different times (so some
/// are only in blocks, some only in the head, most in both).
fn mixed_db(dir: &std::path::Path) -> Db {
    let o = DbOptions {
        wal: WalOptions {
            fsync: FsyncPolicy::Never,
            ..Default::default()
        },
        ..opts(1000)
    };
    let (db, _) = Db::open(dir, o).unwrap();
    for t in (0..4000).step_by(7) {
        let mut app = db.appender();
        for i in 0..30i64 {
            // Series i lives in [100 i, 100 i + 2500).
            if t < 100 * i || t >= 100 * i + 2500 {
                continue;
            }
            let l = Labels::from_pairs([
                ("__name__", "m".to_string()),
                ("i", format!("{i:02}")),
                ("odd", (i % 2).to_string()),
            ]);
            app.append(&l, t, (t + i) as f64).unwrap();
        }
        app.commit().unwrap();
        db.maintain().unwrap();
    }
    assert!(db.blocks().len() >= 2 && !db.head().is_empty());
    db
}

#[test]
fn lazy_selection_returns_what_the_querier_returns() {
    let dir = tempfile::tempdir().unwrap();
    let db = mixed_db(dir.path());
    let cases: Vec<(Vec<Matcher>, i64, i64)> = vec![
        (vec![Matcher::equal("__name__", "m")], i64::MIN, i64::MAX),
        (vec![Matcher::equal("odd", "1")], 1200, 2100),
        (vec![Matcher::regex("i", "0.|2.").unwrap()], 0, 999),
        (vec![Matcher::equal("__name__", "m")], 3900, 5000),
        (vec![Matcher::equal("__name__", "none")], 0, 5000),
    ];
    for (matchers, mint, maxt) in cases {
        let eager = db
            .querier(mint, maxt)
            .select(&matchers, mint, maxt)
            .unwrap();
        let selection = db.select_lazy(&matchers, mint, maxt).unwrap();
        let lazy: Vec<_> = selection.iter(true).collect::<Result<_, _>>().unwrap();
        let key = |s: &tsdb::querier::Series| {
            let chunks: Vec<_> = s
                .chunks
                .iter()
                .map(|c| (c.min_time, c.max_time, c.encoding, c.data.to_vec()))
                .collect();
            (s.labels.to_string(), chunks)
        };
        assert_eq!(
            lazy.iter().map(key).collect::<Vec<_>>(),
            eager.iter().map(key).collect::<Vec<_>>(),
            "{matchers:?} [{mint}, {maxt}]"
        );
        // The labels-only pass names the same series, without chunks.
        let names: Vec<_> = selection.iter(false).map(|s| s.unwrap()).collect();
        assert!(names.iter().all(|s| s.chunks.is_empty()));
        assert_eq!(
            names
                .iter()
                .map(|s| s.labels.to_string())
                .collect::<Vec<_>>(),
            eager
                .iter()
                .map(|s| s.labels.to_string())
                .collect::<Vec<_>>()
        );
    }
}

#[test]
fn truncating_the_head_waits_for_a_lazy_reader() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(mixed_db(dir.path()));
    let matchers = [Matcher::equal("__name__", "m")];
    let selection = db.select_lazy(&matchers, i64::MIN, i64::MAX).unwrap();
    let mut iter = selection.iter(true);
    let first = iter.next().unwrap().unwrap();
    assert!(!first.chunks.is_empty());
    let (head_min, head_max) = (db.head().min_time(), db.head().max_time());
    let cutter = {
        let db = db.clone();
        std::thread::spawn(move || db.flush().unwrap())
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!cutter.is_finished(), "the cut waits for the open reader");
    // The reader still sees every sample of the head it started on.
    let rest: Vec<_> = iter.collect::<Result<_, _>>().unwrap();
    let eager_total: usize = (0..30i64)
        .map(|i| {
            ((100 * i).max(0)..(100 * i + 2500).min(4000))
                .filter(|t| t % 7 == 0)
                .count()
        })
        .sum();
    let lazy_total: usize = std::iter::once(&first)
        .chain(&rest)
        .map(|s| s.samples(i64::MIN, i64::MAX).len())
        .sum();
    assert_eq!(lazy_total, eager_total);
    drop(selection);
    let written = cutter.join().unwrap();
    assert!(!written.is_empty());
    assert!(db.head().is_empty());
    assert!(head_min < head_max);
}

#[test]
fn a_selection_that_does_not_read_the_head_does_not_hold_truncation_back() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(mixed_db(dir.path()));
    assert!(db.head().min_time() > 500);
    let matchers = [Matcher::equal("__name__", "m")];
    let selection = db.select_lazy(&matchers, 0, 500).unwrap();
    let started = std::time::Instant::now();
    let written = db.flush().unwrap();
    assert!(!written.is_empty());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "the cut waited for a reader of blocks only"
    );
    // The selection still reads its blocks, and fails nothing.
    let series: Vec<_> = selection.iter(true).collect::<Result<_, _>>().unwrap();
    assert!(!series.is_empty());
}
