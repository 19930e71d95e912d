//! Fourteen days of 15 s data (a gauge, and a counter with resets), made into one raw block by
//! promtool 2.42 (`tsdb create-blocks-from openmetrics`), go through `cairn compact`, which writes its 5m copy and, from that, its 1h copy. Through `cairn query`
//! -> `cairn store`, `min/max/sum/count_over_time` over day windows answer at 5m and at 1h
//! exactly what the test computes from the samples it wrote, and what Prometheus 2.42 answers
//! over the raw block (`count_over_time` adds up the windows' counts; Thanos would count the
//! windows); `rate` at 5m and 1h stays within 1% of raw.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{require_binary, CairnCompact, CairnQuery, CairnStore, PrometheusServer};

/// 2022-10-13T00:00:00Z: a multiple of 14 days (the compactor's largest range) and of 486 h (the
/// block range promtool picks for `--max-block-duration=486h`), so that promtool writes the 14
/// days as one block and the compactor takes it as one whole range.
const D: i64 = 17 * 27_216 * 3_600_000;
const DAY: i64 = 86_400_000;
const STEP: i64 = 15_000;
/// 7 s into each 15 s: no sample on a 5-minute, hour or day boundary.
const OFFSET: i64 = 7_000;
const SAMPLES: i64 = 14 * DAY / STEP;

fn gauge(k: i64, s: i64) -> f64 {
    ((k * 37 + s * 11) % 101) as f64 + s as f64 / 4.0
}

/// The counter restarts every 4,999 samples (off every boundary) and grows by 1 to 5.
fn counters(s: i64) -> Vec<f64> {
    let mut total = 0.0;
    (0..SAMPLES)
        .map(|k| {
            total = if k % 4_999 == 0 { 0.0 } else { total } + ((k + s) % 5 + 1) as f64;
            total
        })
        .collect()
}

/// The samples in the OpenMetrics text format promtool reads (each series' type `unknown`, so
/// that the counter keeps its name without `_total`).
fn openmetrics(data: &BTreeMap<(String, i64), Vec<f64>>) -> String {
    let mut out = String::new();
    let mut typed = std::collections::BTreeSet::new();
    for ((name, s), values) in data {
        if typed.insert(name.clone()) {
            out.push_str(&format!("# TYPE {name} unknown\n"));
        }
        for (k, v) in values.iter().enumerate() {
            let t = D + k as i64 * STEP + OFFSET;
            out.push_str(&format!(
                "{name}{{s=\"{s}\"}} {v} {}.{:03}\n",
                t / 1000,
                t % 1000
            ));
        }
    }
    out.push_str("# EOF\n");
    out
}

/// Every series' values, by name and `s`.
fn data() -> BTreeMap<(String, i64), Vec<f64>> {
    let mut out = BTreeMap::new();
    for s in 0..2 {
        out.insert(
            ("dsl_gauge".to_string(), s),
            (0..SAMPLES).map(|k| gauge(k, s)).collect(),
        );
        out.insert(("dsl_counter".to_string(), s), counters(s));
    }
    out
}

type Answer = BTreeMap<String, Vec<(i64, f64)>>;

/// A range query at a 1-day step over days 1..=14, by series (`s` label).
fn range(addr: std::net::SocketAddr, expr: &str, step: i64, extra: &[(&str, &str)]) -> Answer {
    let start = ((D + DAY) / 1000).to_string();
    let end = ((D + 14 * DAY) / 1000).to_string();
    let step = (step / 1000).to_string();
    let mut params = vec![
        ("query", expr),
        ("start", start.as_str()),
        ("end", end.as_str()),
        ("step", step.as_str()),
    ];
    params.extend_from_slice(extra);
    let (status, body) = common::get_json(addr, "/api/v1/query_range", &params);
    assert_eq!(status, 200, "{expr} {extra:?}: {body}");
    body["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let points = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                    (t, p[1].as_str().unwrap().parse::<f64>().unwrap())
                })
                .collect();
            (s["metric"]["s"].as_str().unwrap().to_string(), points)
        })
        .collect()
}

/// What `f_over_time(name[1d])` is at the end of each day, from the samples themselves.
fn expected(data: &BTreeMap<(String, i64), Vec<f64>>, name: &str, f: &str) -> Answer {
    let mut out = Answer::new();
    for s in 0..2 {
        let values = &data[&(name.to_string(), s)];
        let points = (1..=14)
            .map(|day| {
                let t = D + day * DAY;
                // Samples in (t - 1d, t].
                let window: Vec<f64> = (0..SAMPLES)
                    .filter(|k| {
                        let ts = D + k * STEP + OFFSET;
                        ts > t - DAY && ts <= t
                    })
                    .map(|k| values[k as usize])
                    .collect();
                let v = match f {
                    "min" => window.iter().copied().fold(f64::INFINITY, f64::min),
                    "max" => window.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                    "sum" => window.iter().sum(),
                    "count" => window.len() as f64,
                    _ => unreachable!(),
                };
                (t, v)
            })
            .collect();
        out.insert(s.to_string(), points);
    }
    out
}

fn assert_close(got: &Answer, want: &Answer, what: &str, tolerance: f64) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{what}"
    );
    for (s, w) in want {
        let g = &got[s];
        assert_eq!(g.len(), w.len(), "{what} s={s}: {g:?}");
        for (&(tg, vg), &(tw, vw)) in g.iter().zip(w) {
            assert_eq!(tg, tw, "{what} s={s}");
            let scale = vw.abs().max(1.0);
            assert!(
                (vg - vw).abs() <= tolerance * scale,
                "{what} s={s} day {}: got {vg}, want {vw}",
                (tg - D) / DAY
            );
        }
    }
}

#[test]
fn fourteen_days_answer_the_same_at_5m_and_1h_as_raw_and_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let data = data();
    let raw_dir = dir.path().join("raw");
    std::fs::create_dir_all(&raw_dir).unwrap();
    let input = dir.path().join("data.om");
    std::fs::write(&input, openmetrics(&data)).unwrap();
    let out = std::process::Command::new(require_binary("/usr/bin/promtool", "prometheus"))
        .args([
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            "--max-block-duration=486h",
        ])
        .arg(&input)
        .arg(&raw_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metas: Vec<serde_json::Value> = std::fs::read_dir(&raw_dir)
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path().join("meta.json")).ok())
        .map(|t| serde_json::from_str(&t).unwrap())
        .collect();
    assert_eq!(metas.len(), 1, "promtool wrote one block: {metas:?}");
    let meta = &metas[0];
    assert_eq!(meta["stats"]["numSamples"], 4 * SAMPLES);
    let span = (
        meta["minTime"].as_i64().unwrap(),
        meta["maxTime"].as_i64().unwrap(),
    );
    assert_eq!(span, (D + OFFSET, D + 14 * DAY - STEP + OFFSET + 1));

    let bucket = dir.path().join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    let yaml = format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        bucket.display()
    );
    common::upload_blocks(&yaml, &raw_dir, "cluster=\"edge\"");

    let mut compact = CairnCompact::start(dir.path(), &yaml, &[]);
    let status = compact.wait(Duration::from_secs(120));
    assert!(status.success(), "log:\n{}", compact.proc.log_text());
    let mut resolutions = Vec::new();
    for entry in std::fs::read_dir(&bucket).unwrap() {
        let path = entry.unwrap().path().join("meta.json");
        if let Ok(text) = std::fs::read_to_string(path) {
            let m: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(
                (
                    m["minTime"].as_i64().unwrap(),
                    m["maxTime"].as_i64().unwrap()
                ),
                span
            );
            resolutions.push(m["thanos"]["downsample"]["resolution"].as_i64().unwrap());
        }
    }
    resolutions.sort();
    assert_eq!(
        resolutions,
        [0, 300_000, 3_600_000],
        "raw, 5m and 1h copies"
    );

    // Prometheus 2.42 over the raw block.
    let prom_data = dir.path().join("prometheus");
    std::fs::create_dir_all(prom_data.join("wal")).unwrap();
    common::copy_dir(
        &raw_dir.join(meta["ulid"].as_str().unwrap()),
        &prom_data.join(meta["ulid"].as_str().unwrap()),
    );
    let prometheus = PrometheusServer::start(dir.path(), &prom_data);
    let store_dir = dir.path().join("store");
    std::fs::create_dir_all(&store_dir).unwrap();
    let store = CairnStore::start(&store_dir, &yaml, &[]);
    let query = CairnQuery::start(&store_dir, &[store.grpc], &[]);
    common::wait_until(
        Duration::from_secs(20),
        "the query layer to see the store",
        || {
            let (_, v) = query.get_json("/api/v1/stores", &[]);
            v["data"]["store"]
                .as_array()
                .is_some_and(|a| a.iter().any(|s| s["minTime"].as_i64() == Some(span.0)))
        },
    );

    for name in ["dsl_gauge", "dsl_counter"] {
        for f in ["min", "max", "sum", "count"] {
            let expr = format!("{f}_over_time({name}[1d])");
            let want = expected(&data, name, f);
            assert_close(
                &range(prometheus.http, &expr, DAY, &[]),
                &want,
                &format!("Prometheus 2.42: {expr}"),
                1e-12,
            );
            for res in ["0s", "5m", "1h"] {
                let got = range(query.http, &expr, DAY, &[("max_source_resolution", res)]);
                // count_over_time too: Thanos would answer the number of 5m/1h windows (288 or
                // 24 a day); Cairn adds up their counts, the raw answer.
                assert_close(&got, &want, &format!("{expr} at {res}"), 1e-12);
            }
        }
    }

    // rate over windows of 24 points of each resolution (2 h at 5m, 1 d at 1h), compared with
    // raw: the counter aggregate keeps the resets, so no window sees a false drop.
    for (res, window) in [("5m", "2h"), ("1h", "1d")] {
        let expr = format!("rate(dsl_counter[{window}])");
        let raw = range(query.http, &expr, 2 * 3_600_000, &[]);
        let got = range(
            query.http,
            &expr,
            2 * 3_600_000,
            &[("max_source_resolution", res)],
        );
        assert_close(&got, &raw, &format!("{expr} at {res}"), 0.01 * 0.2);
        assert!(
            got.values().flatten().all(|&(_, v)| v > 0.0),
            "no false drop at {res}"
        );
    }
}
