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
