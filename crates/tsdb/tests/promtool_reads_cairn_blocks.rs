//! Blocks Cairn writes are read by promtool 2.42: `analyze --extended` succeeds and `dump`
//! prints exactly the samples that were appended.

mod common;

use std::collections::BTreeMap;

use common::{block_dirs, parse_dump, run_promtool, same_value};
use tsdb::db::{Db, DbOptions};
use tsdb::meta::{BlockMeta, ThanosMeta};
use tsdb::{Labels, STALE_NAN_BITS};

const HOUR: i64 = 3600 * 1000;

#[test]
fn promtool_dump_prints_exactly_what_was_appended() {
    let dir = tempfile::tempdir().unwrap();
    let thanos = ThanosMeta {
        labels: [
            ("replica".to_string(), "r0".to_string()),
            ("tenant_id".to_string(), "t1".to_string()),
        ]
        .into(),
        source: "receive".into(),
        ..Default::default()
    };
    let opts = DbOptions {
        retention: None,
        thanos: Some(thanos),
        ..Default::default()
    };
    let (db, _) = Db::open(dir.path(), opts).unwrap();

    // 300 series over 5 hours at a 30 s interval, starting mid-range so blocks are cut at
    // aligned 2 h boundaries; awkward values and gaps included.
    let start = 1_700_000_000_000i64 - 1_700_000_000_000 % (2 * HOUR) + HOUR / 2 + 123;
    let mut expected: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    let specials = [
        0.1,
        -0.0,
        1e300,
        -1e-300,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        42.0,
    ];
    for step in 0..(5 * 120) {
        let t = start + step * 30_000;
        let mut app = db.appender();
        for s in 0..300 {
            if (step + s) % 17 == 0 {
                continue; // a gap
            }
            let labels = Labels::from_pairs([
                ("__name__", format!("metric_{}", s % 7)),
                ("instance", format!("host-{s}:9100")),
                (
                    "job",
                    if s % 2 == 0 {
                        "node".to_string()
                    } else {
                        "app \"quoted\"".to_string()
                    },
                ),
            ]);
            let v = match (step + s) % 50 {
                0 => f64::from_bits(STALE_NAN_BITS),
                1..=8 => specials[((step + s) % 8) as usize],
                _ => (step * s) as f64 * 1.5 - 100.0,
            };
            app.append(&labels, t, v).unwrap();
            expected.entry(labels.to_string()).or_default().push((t, v));
        }
        app.commit().unwrap();
        db.maintain().unwrap();
    }
    let cut_while_running = db.blocks().len();
    assert!(
        cut_while_running >= 1,
        "the head should have cut a block by itself"
    );
    db.close().unwrap();

    let blocks = block_dirs(dir.path());
    assert!(
        blocks.len() >= 3,
        "5 hours from mid-range span at least 3 aligned blocks"
    );
    for b in &blocks {
        let meta = BlockMeta::read(b).unwrap();
        assert_eq!(meta.compaction.level, 1);
        assert_eq!(meta.thanos.as_ref().unwrap().labels["replica"], "r0");
        assert_eq!(
            meta.min_time.div_euclid(2 * HOUR),
            (meta.max_time - 1).div_euclid(2 * HOUR),
            "block {} crosses a 2 h boundary",
            meta.ulid
        );
        let analysis = run_promtool(&[
            "tsdb",
            "analyze",
            "--extended",
            dir.path().to_str().unwrap(),
            &meta.ulid.to_string(),
        ]);
        // `--extended` reads every chunk for its compaction analysis.
        assert!(
            analysis.contains(&format!("Series: {}\n", meta.stats.num_series))
                && analysis.contains("Compaction analysis:"),
            "analyze output:\n{analysis}"
        );
    }
    let listed = run_promtool(&["tsdb", "list", dir.path().to_str().unwrap()]);
    assert_eq!(
        listed.lines().count(),
        blocks.len() + 1,
        "list output:\n{listed}"
    );

    let dump = run_promtool(&["tsdb", "dump", dir.path().to_str().unwrap()]);
    let mut got: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for (labels, t, v) in parse_dump(&dump) {
        got.entry(labels).or_default().push((t, v));
    }
    assert_eq!(got.len(), expected.len(), "series count");
    for (series, want) in &expected {
        let have = got
            .get(series)
            .unwrap_or_else(|| panic!("series {series} missing from dump"));
        let mut have = have.clone();
        have.sort_by_key(|x| x.0);
        assert_eq!(have.len(), want.len(), "sample count of {series}");
        for (h, w) in have.iter().zip(want) {
            assert_eq!(h.0, w.0, "timestamp in {series}");
            assert!(
                same_value(h.1, w.1),
                "value at {} in {series}: {} vs {}",
                w.0,
                h.1,
                w.1
            );
        }
    }
}
