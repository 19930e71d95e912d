//! Queries over downsampled blocks: promtool's 2 h blocks of a gauge and a counter (one sample
//! a minute over 52 h) go through `cairn compact`, which leaves a 2-day raw block, its 5m copy
//! and the last two 2 h blocks. `cairn query` -> `cairn store` then answers with
//! `max_source_resolution=5m` from the 5m block for the first 48 h and from the raw blocks after
//! it, close to the raw answers (exactly, where the math says so), while queries without the
//! parameter answer exactly as they did before the compaction.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{require_binary, CairnCompact, CairnQuery, CairnStore};

/// A 2-day boundary (2023-11-15T00:00:00Z).
const D0: i64 = 1_700_006_400_000;
const HOUR: i64 = 3_600_000;
const MINUTES: i64 = 52 * 60;

/// The gauge at minute k.
fn gauge(k: i64, s: i64) -> f64 {
    ((k * 37 + s * 11) % 101) as f64 + s as f64 / 4.0
}

/// The counter's increase in minute k: 1 to 5.
fn increment(k: i64, s: i64) -> f64 {
    ((k + s) % 5 + 1) as f64
}

/// promtool's 2 h blocks of `ds_gauge` and `ds_counter` (two series each, the counter with
/// resets) over [D0, D0 + 52h), one sample a minute, 30 s into the minute (so that no sample
/// sits on a 5-minute or hour boundary), under `out`.
fn promtool_blocks(dir: &Path, out: &Path) {
    use std::fmt::Write as _;
    let promtool = require_binary("/usr/bin/promtool", "prometheus");
    let mut om = String::new();
    for name in ["ds_gauge", "ds_counter"] {
        let _ = writeln!(om, "# HELP {name} Test data.\n# TYPE {name} gauge");
        // The counter restarts from 0 every 613 minutes (off any 5-minute or hour boundary).
        let mut total = [0.0f64; 2];
        for k in 0..MINUTES {
            for s in 0..2 {
                let v = if name == "ds_gauge" {
                    gauge(k, s)
                } else {
                    let t = &mut total[s as usize];
                    *t = if k % 613 == 0 { 0.0 } else { *t } + increment(k, s);
                    *t
                };
                let t = (D0 + k * 60_000 + 30_000) / 1000;
                let _ = writeln!(om, "{name}{{s=\"{s}\"}} {v} {t}");
            }
        }
    }
    om.push_str("# EOF\n");
    let file = dir.join("data.om");
    std::fs::write(&file, om).unwrap();
    let run = Command::new(promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&file)
        .arg(out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

/// A range query's answer: series (labels as JSON text) -> (t ms, value).
type Answer = BTreeMap<String, Vec<(i64, f64)>>;

/// Evaluation times: every hour from D0 + 2h to D0 + 51h.
const START: i64 = D0 + 2 * HOUR;
const END: i64 = D0 + 51 * HOUR;

fn range(q: &CairnQuery, expr: &str, step: &str, extra: &[(&str, &str)]) -> Answer {
    let start = (START / 1000).to_string();
    let end = (END / 1000).to_string();
    let mut params = vec![
        ("query", expr),
        ("start", start.as_str()),
        ("end", end.as_str()),
        ("step", step),
    ];
    params.extend_from_slice(extra);
    let (status, body) = q.get_json("/api/v1/query_range", &params);
    assert_eq!(status, 200, "{expr} {extra:?}: {body}");
    assert!(
        body["warnings"].as_array().is_none_or(|w| w.is_empty()),
        "{expr} {extra:?}: {body}"
    );
    let mut out = Answer::new();
    for s in body["data"]["result"].as_array().unwrap() {
        let points = s["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                (t, p[1].as_str().unwrap().parse::<f64>().unwrap())
            })
            .collect();
        out.insert(s["metric"].to_string(), points);
    }
    out
}

const QUERIES: [&str; 5] = [
    "max_over_time(ds_gauge[1h])",
    "avg_over_time(ds_gauge[1h])",
    "rate(ds_counter[1h])",
    "count_over_time(ds_gauge[1h])",
    "ds_gauge",
];

/// Answers of [`QUERIES`] (step 1h) without max_source_resolution.
fn default_answers(q: &CairnQuery) -> Vec<Answer> {
    QUERIES.iter().map(|e| range(q, e, "3600", &[])).collect()
}

/// Compares two answers point by point with `close(series, t, raw, downsampled)`.
fn compare(
    raw: &Answer,
    down: &Answer,
    what: &str,
    mut close: impl FnMut(&str, i64, f64, f64) -> bool,
) {
    assert_eq!(
        raw.keys().collect::<Vec<_>>(),
        down.keys().collect::<Vec<_>>(),
        "{what}"
    );
    for (series, r) in raw {
        let d = &down[series];
        let ts = |p: &[(i64, f64)]| p.iter().map(|p| p.0).collect::<Vec<_>>();
        assert_eq!(ts(r), ts(d), "{what} {series}");
        for (&(t, a), &(_, b)) in r.iter().zip(d) {
            assert!(
                close(series, t, a, b),
                "{what} {series} at D0{:+}h: raw {a}, downsampled {b}",
                (t - D0) / HOUR
            );
        }
    }
}

#[test]
fn downsampled_blocks_answer_close_to_raw_and_default_queries_do_not_change() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("inputs");
    promtool_blocks(dir.path(), &inputs);
    let bucket = dir.path().join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    let yaml = format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        bucket.display()
    );
    common::upload_blocks(&yaml, &inputs, "cluster=\"edge\"");
    for d in ["s1", "q1", "s2", "q2", "q3"] {
        std::fs::create_dir_all(dir.path().join(d)).unwrap();
    }

    // Raw blocks only.
    let before = {
        let store = CairnStore::start(&dir.path().join("s1"), &yaml, &[]);
        let query = CairnQuery::start(&dir.path().join("q1"), &[store.grpc], &[]);
        default_answers(&query)
    };
    // Sanity: 60 samples an hour, 4 series.
    assert!(before[3].values().flatten().all(|&(_, v)| v == 60.0));
    assert_eq!(before[0].len(), 2);

    let mut compact = CairnCompact::start(dir.path(), &yaml, &[]);
    let status = compact.wait(Duration::from_secs(180));
    assert!(status.success(), "log:\n{}", compact.proc.log_text());
    let resolutions: Vec<i64> = std::fs::read_dir(&bucket)
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path().join("meta.json")).ok())
        .map(|m| {
            let m: serde_json::Value = serde_json::from_str(&m).unwrap();
            m["thanos"]["downsample"]["resolution"].as_i64().unwrap()
        })
        .collect();
    assert_eq!(
        resolutions.iter().filter(|&&r| r == 300_000).count(),
        1,
        "one 5m block: {resolutions:?}"
    );

    let store = CairnStore::start(&dir.path().join("s2"), &yaml, &[]);
    let query = CairnQuery::start(&dir.path().join("q2"), &[store.grpc], &[]);

    // Without max_source_resolution (and with 0s) nothing changed.
    let after = default_answers(&query);
    for (i, e) in QUERIES.iter().enumerate() {
        assert_eq!(before[i], after[i], "{e}: default answer changed");
        assert_eq!(
            range(&query, e, "3600", &[("max_source_resolution", "0s")]),
            before[i],
            "{e} at 0s"
        );
    }

    let five = [("max_source_resolution", "5m")];
    let down: Vec<Answer> = QUERIES
        .iter()
        .map(|e| range(&query, e, "3600", &five))
        .collect();
    // The 5m block answers up to 48 h (12 windows an hour of 5 samples each), the raw blocks
    // after it: count_over_time adds up the windows' counts, so it is the raw count throughout
    // (Thanos would answer 12, the number of windows).
    compare(&before[3], &down[3], QUERIES[3], |_, _, raw, d| {
        raw == 60.0 && d == 60.0
    });
    // max over whole windows is the max of their maxes: exact.
    compare(&before[0], &down[0], QUERIES[0], |_, _, a, b| a == b);
    // Every window has 5 samples: the average of the averages is the average.
    compare(&before[1], &down[1], QUERIES[1], |_, _, a, b| {
        (a - b).abs() <= 1e-9 * a.abs().max(1.0)
    });
    // rate over 12 window totals instead of 60 samples: close, and no reset is taken for a
    // drop (a false drop would add a whole counter value, several times the true rate).
    compare(&before[2], &down[2], QUERIES[2], |_, _, a, b| {
        b > 0.0 && (a - b).abs() <= 0.04 * a
    });
    // A plain selector reads each window's average (the last one before each step).
    compare(&before[4], &down[4], QUERIES[4], |series, t, a, b| {
        // The last sample at or before t: minute k - 1.
        let k = (t - D0) / 60_000;
        let s = i64::from(series.contains(r#""s":"1""#));
        if t > D0 + 48 * HOUR {
            a == b
        } else {
            // The window [t - 5m, t) of minutes k-5..k-1.
            let avg = (1..=5).map(|i| gauge(k - i, s)).sum::<f64>() / 5.0;
            a == gauge(k - 1, s) && (b - avg).abs() < 1e-9
        }
    });

    // auto: a fifth of the step. A 1 h step reads 5m data, a 5 m step raw data; the plain
    // selector tells them apart (window averages against the last raw sample).
    assert_ne!(before[4], down[4]);
    let auto = [("max_source_resolution", "auto")];
    assert_eq!(range(&query, QUERIES[4], "3600", &auto), down[4]);
    assert_eq!(
        range(&query, QUERIES[4], "300", &auto),
        range(&query, QUERIES[4], "300", &[])
    );

    // --query.auto-downsampling makes auto the default.
    let auto_query = CairnQuery::start(
        &dir.path().join("q3"),
        &[store.grpc],
        &["--query.auto-downsampling"],
    );
    assert_eq!(range(&auto_query, QUERIES[4], "3600", &[]), down[4]);
    assert_eq!(
        range(
            &auto_query,
            QUERIES[4],
            "3600",
            &[("max_source_resolution", "0s")]
        ),
        before[4]
    );
}
