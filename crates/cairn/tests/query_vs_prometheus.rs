//! The same data in Prometheus 2.42 and behind `cairn query`, the same PromQL asked of both HTTP
//! APIs, the answers equal within 1e-9 relative.
//!
//! The data is OpenMetrics written here (counters with a restart, a classic histogram, a
//! gauge), turned into blocks by `promtool tsdb create-blocks-from openmetrics`. Prometheus
//! serves those blocks from its data directory; Cairn serves copies of them from the tenant
//! directory of two receivers (`<tsdb.path>/default-tenant/`, where a receiver keeps a tenant's
//! blocks), each with its own `replica` label, through `cairn query --query.replica-label
//! replica --query.replica-label tenant_id`. The replica and tenant labels are the only labels
//! Cairn adds, so treating both as replica labels gives the label sets Prometheus answers with,
//! and every answer goes through the merge of two identical replicas.
//!
//! Cairn's engine has Prometheus 3 semantics and Prometheus 2.42 has 2.x semantics; they differ
//! on samples exactly at a window's edges (left-open windows in 3.x) and in how `rate`
//! extrapolates at a series' first sample. No sample here is at a whole or half second, every
//! query time is at a half second, subquery steps are at whole minutes, and queries start an
//! hour into the data, so neither difference can show.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use common::{
    free_port, get_json, require_binary, Cairn, CairnQuery, CairnStore, PrometheusServer, S3Server,
};
use serde_json::Value;

/// A 2 h boundary in November 2023: data never depends on "now".
const DATA_START: i64 = 1_699_999_200_000;
const SCRAPE_MS: i64 = 15_000;
const HOURS: i64 = 3;
const TARGETS: u64 = 8;
const BUCKETS: &[&str] = &["0.05", "0.1", "0.25", "1", "+Inf"];

/// splitmix64's finaliser: deterministic noise.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn unit(a: u64, b: u64, c: u64) -> f64 {
    (mix(mix(mix(a) ^ b) ^ c) >> 11) as f64 / (1u64 << 53) as f64
}

/// Scrape time of point `p` of a target: its own offset within the interval plus jitter, never
/// at a whole or half second.
fn ts(target: u64, p: i64) -> i64 {
    let offset = 100 + (mix(target ^ 0xabc) % 14_800) as i64;
    let jitter = (mix(target << 20 ^ p as u64) % 41) as i64 - 20;
    let t = DATA_START + p * SCRAPE_MS + offset + jitter;
    if t % 500 == 0 {
        t + 7
    } else {
        t
    }
}

fn om_ts(t: i64) -> String {
    format!("{}.{:03}", t / 1000, t % 1000)
}

fn openmetrics() -> String {
    let points = HOURS * 3_600_000 / SCRAPE_MS;
    let mut out = String::new();
    let target_labels = |t: u64| (["api", "web"][(t % 2) as usize], format!("10.0.0.{t}:9100"));
    let restart = |t: u64, p: i64| t == 3 && p == points / 2;
    out.push_str("# HELP cmp_requests Requests.\n# TYPE cmp_requests counter\n");
    for t in 0..TARGETS {
        let (job, inst) = target_labels(t);
        for (ci, code) in ["200", "404", "500"].iter().enumerate() {
            let mut v = (unit(t, ci as u64, 1) * 1000.0).floor();
            for p in 0..points {
                if restart(t, p) {
                    v = 0.0;
                }
                v += (unit(t, ci as u64, p as u64) * [40.0, 4.0, 1.5][ci]).round();
                let _ = writeln!(
                    out,
                    "cmp_requests_total{{job=\"{job}\",instance=\"{inst}\",code=\"{code}\"}} {v} {}",
                    om_ts(ts(t, p))
                );
            }
        }
    }
    out.push_str("# HELP cmp_latency_seconds Latency.\n# TYPE cmp_latency_seconds histogram\n");
    for t in 0..TARGETS {
        let (job, inst) = target_labels(t);
        let observations = |p: i64| (20.0 + 10.0 * unit(t, 77, p as u64)).round();
        for (bi, le) in BUCKETS.iter().enumerate() {
            let mut v = 0.0;
            for p in 0..points {
                if restart(t, p) {
                    v = 0.0;
                }
                let share = [0.2, 0.45, 0.8, 0.97, 1.0][bi] - 0.05 * unit(t, p as u64, 5);
                let n = observations(p);
                v += if *le == "+Inf" {
                    n
                } else {
                    (n * share).floor()
                };
                let _ = writeln!(
                    out,
                    "cmp_latency_seconds_bucket{{job=\"{job}\",instance=\"{inst}\",le=\"{le}\"}} {v} {}",
                    om_ts(ts(t, p))
                );
            }
        }
        for part in ["sum", "count"] {
            let mut v = 0.0;
            for p in 0..points {
                if restart(t, p) {
                    v = 0.0;
                }
                let n = observations(p);
                v += if part == "sum" {
                    n * 0.11 * (1.0 + unit(t, p as u64, 9))
                } else {
                    n
                };
                let _ = writeln!(
                    out,
                    "cmp_latency_seconds_{part}{{job=\"{job}\",instance=\"{inst}\"}} {v} {}",
                    om_ts(ts(t, p))
                );
            }
        }
    }
    out.push_str("# HELP cmp_memory_bytes Memory.\n# TYPE cmp_memory_bytes gauge\n");
    for t in 0..TARGETS {
        let (job, inst) = target_labels(t);
        let base = 2e8 + 3e8 * unit(t, 9, 9);
        for p in 0..points {
            let v = (base * (1.0 + p as f64 / points as f64) + 2e7 * unit(t, p as u64, 10)).round();
            let _ = writeln!(
                out,
                "cmp_memory_bytes{{job=\"{job}\",instance=\"{inst}\"}} {v} {}",
                om_ts(ts(t, p))
            );
        }
    }
    out.push_str("# EOF\n");
    out
}

const QUERIES: &[&str] = &[
    "cmp_requests_total",
    "rate(cmp_requests_total[5m])",
    "sum by (job) (rate(cmp_requests_total[5m]))",
    "sum by (job, code) (increase(cmp_requests_total[1h]))",
    "histogram_quantile(0.9, sum by (le, job) (rate(cmp_latency_seconds_bucket[5m])))",
    "histogram_quantile(0.5, rate(cmp_latency_seconds_bucket[10m]))",
    "topk(3, cmp_memory_bytes)",
    "bottomk(2, sum by (instance) (rate(cmp_requests_total[5m])))",
    "avg_over_time(cmp_memory_bytes[10m])",
    "max_over_time(cmp_memory_bytes[30m] offset 15m)",
    "cmp_memory_bytes offset 1h",
    "max_over_time(rate(cmp_requests_total[5m])[30m:1m])",
    r#"sum(rate(cmp_requests_total{code="500"}[5m])) / sum(rate(cmp_requests_total[5m]))"#,
    "cmp_memory_bytes / on(instance, job) group_left sum by (instance, job) (cmp_requests_total)",
    "rate(cmp_latency_seconds_sum[5m]) / rate(cmp_latency_seconds_count[5m])",
    "count by (job) (cmp_memory_bytes > 3e8)",
    r#"irate(cmp_requests_total{job="api"}[2m])"#,
    "deriv(cmp_memory_bytes[15m])",
    "resets(cmp_requests_total[3h])",
    "quantile_over_time(0.9, cmp_memory_bytes[20m])",
    "absent(nonexistent_metric)",
    r#"label_replace(sum by (job) (cmp_memory_bytes), "team", "t-$1", "job", "(.*)")"#,
    "delta(cmp_memory_bytes[10m])",
    "stddev by (job) (cmp_memory_bytes)",
    "predict_linear(cmp_memory_bytes[30m], 3600)",
    "cmp_requests_total and on(instance, job) (cmp_memory_bytes > 4e8)",
    "count_over_time(cmp_requests_total[7m]) * 2 - 1",
    "rate(cmp_requests_total[5m] @ end())",
];

fn close(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    // Relative 1e-9; values within 1e-12 of zero on both sides count as equal (sums of rates
    // that cancel out differ only in rounding there).
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()) || (a.abs() < 1e-12 && b.abs() < 1e-12)
}

type Points = Vec<(i64, f64)>;

/// An answer as metric -> points (a vector's elements have one point each, a scalar is the
/// metric `{}`).
fn parse_answer(v: &Value, what: &str) -> (String, BTreeMap<String, Points>) {
    assert_eq!(v["status"], "success", "{what}: {v}");
    let data = &v["data"];
    let kind = data["resultType"].as_str().unwrap().to_string();
    let point = |p: &Value| -> (i64, f64) {
        let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
        let s = p[1].as_str().unwrap();
        let f = match s {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            _ => s.parse().unwrap(),
        };
        (t, f)
    };
    let mut out = BTreeMap::new();
    match kind.as_str() {
        "scalar" => {
            out.insert("{}".to_string(), vec![point(&data["result"])]);
        }
        "vector" | "matrix" => {
            for s in data["result"].as_array().unwrap() {
                let metric = s["metric"].to_string();
                let points = match s.get("values") {
                    Some(vs) => vs.as_array().unwrap().iter().map(point).collect(),
                    None => vec![point(&s["value"])],
                };
                assert!(
                    out.insert(metric, points).is_none(),
                    "{what}: duplicate series"
                );
            }
        }
        other => panic!("{what}: unexpected result type {other}"),
    }
    (kind, out)
}

fn compare(what: &str, cairn: &Value, prom: &Value) -> usize {
    let (ck, c) = parse_answer(cairn, &format!("Cairn {what}"));
    let (pk, p) = parse_answer(prom, &format!("Prometheus {what}"));
    assert_eq!(ck, pk, "{what}: result types differ");
    let cm: Vec<&String> = c.keys().collect();
    let pm: Vec<&String> = p.keys().collect();
    assert_eq!(cm, pm, "{what}: different series");
    let mut n = 0;
    for (metric, cp) in &c {
        let pp = &p[metric];
        assert_eq!(
            cp.len(),
            pp.len(),
            "{what}: {metric}: {} points vs Prometheus' {}",
            cp.len(),
            pp.len()
        );
        for (a, b) in cp.iter().zip(pp) {
            assert!(
                a.0 == b.0 && close(a.1, b.1),
                "{what}: {metric}: Cairn {a:?}, Prometheus {b:?}"
            );
            n += 1;
        }
    }
    n
}

/// The comparison data as promtool-made blocks under `dir/blocks`.
fn promtool_blocks(dir: &Path) -> std::path::PathBuf {
    let promtool = require_binary("/usr/bin/promtool", "prometheus");
    let om = dir.join("data.om");
    std::fs::write(&om, openmetrics()).unwrap();
    let blocks = dir.join("blocks");
    let out = Command::new(promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&om)
        .arg(&blocks)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    blocks
}

#[test]
fn answers_match_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = promtool_blocks(dir.path());
    let prom_data = dir.path().join("prometheus");
    common::copy_dir(&blocks, &prom_data);
    let prometheus = PrometheusServer::start(dir.path(), &prom_data);

    let receivers: Vec<Cairn> = (1..=2)
        .map(|i| {
            let d = dir.path().join(format!("r{i}"));
            common::copy_dir(&blocks, &d.join("tsdb").join("default-tenant"));
            Cairn::receive(&d, &[&format!("--label=replica=\"r{i}\"")])
        })
        .collect();
    let grpc: Vec<_> = receivers.iter().map(|r| r.grpc).collect();
    let query = CairnQuery::start(
        dir.path(),
        &grpc,
        &[
            "--query.replica-label=replica",
            "--query.replica-label=tenant_id",
        ],
    );
    compare_everything(&query, &prometheus);
}

/// The same blocks uploaded to an S3 bucket (s3s-fs) and served by `cairn store`: every answer
/// through `cairn query` -> `cairn store` equals Prometheus' over the blocks on local disk.
#[test]
fn answers_through_the_store_gateway_match_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = promtool_blocks(dir.path());
    let prom_data = dir.path().join("prometheus");
    common::copy_dir(&blocks, &prom_data);
    let prometheus = PrometheusServer::start(dir.path(), &prom_data);

    let s3 = S3Server::start(dir.path(), &dir.path().join("s3"), free_port(), "metrics");
    let yaml = s3.objstore_yaml("metrics");
    let up = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args([
            "tools",
            "bucket",
            &format!("--objstore.config={yaml}"),
            "upload",
        ])
        .arg(&blocks)
        .arg("--label=replica=\"store\"")
        .output()
        .unwrap();
    assert!(
        up.status.success(),
        "upload: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    let store = CairnStore::start(dir.path(), &yaml, &[]);
    let n_blocks = std::fs::read_dir(&blocks).unwrap().count() as f64;
    assert_eq!(
        store.metric("thanos_bucket_store_blocks_loaded"),
        Some(n_blocks)
    );
    let query = CairnQuery::start(
        dir.path(),
        &[store.grpc],
        &["--query.replica-label=replica"],
    );
    compare_everything(&query, &prometheus);

    // Every byte came by ranged reads: no block was downloaded, and the index cache was used.
    assert!(
        store
            .metric("thanos_store_index_cache_hits_total")
            .unwrap_or(0.0)
            > 0.0,
        "the repeated queries hit the index cache"
    );
    for entry in std::fs::read_dir(&store.data_dir).unwrap() {
        let e = entry.unwrap();
        if e.file_name() == "meta-syncer" {
            continue;
        }
        let files: Vec<String> = std::fs::read_dir(e.path())
            .unwrap()
            .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            files,
            ["index-header"],
            "{:?} holds only its index-header",
            e.path()
        );
    }
}

fn compare_everything(query: &CairnQuery, prometheus: &PrometheusServer) {
    // An hour into the data, at half seconds; range steps of a minute.
    let start = DATA_START + 3_600_000 + 30_500;
    let end = start + 3_600_000;
    let secs = |t: i64| format!("{}", t as f64 / 1000.0);
    let (s, e) = (secs(start), secs(end));
    let instants = [secs(start + 1_234_000), secs(end + 900_000)];
    let mut points = 0;
    for q in QUERIES {
        let params = [("query", *q), ("start", &s), ("end", &e), ("step", "60")];
        let (cs, cv) = query.get_json("/api/v1/query_range", &params);
        let (ps, pv) = get_json(prometheus.http, "/api/v1/query_range", &params);
        assert_eq!((cs, ps), (200, 200), "{q}: Cairn {cv}, Prometheus {pv}");
        let n = compare(&format!("range {q}"), &cv, &pv);
        assert!(n > 0 || q.starts_with("absent"), "{q}: no points");
        points += n;
        for t in &instants {
            let params = [("query", *q), ("time", t.as_str())];
            let (cs, cv) = query.get_json("/api/v1/query", &params);
            let (ps, pv) = get_json(prometheus.http, "/api/v1/query", &params);
            assert_eq!((cs, ps), (200, 200), "{q}: Cairn {cv}, Prometheus {pv}");
            points += compare(&format!("instant {q} at {t}"), &cv, &pv);
        }
    }
    assert!(points > 10_000, "only {points} points compared");

    // The series and label APIs agree too.
    let params = [
        ("match[]", "cmp_memory_bytes"),
        ("start", s.as_str()),
        ("end", e.as_str()),
    ];
    let (_, cv) = query.get_json("/api/v1/series", &params);
    let (_, pv) = get_json(prometheus.http, "/api/v1/series", &params);
    assert_eq!(cv["data"], pv["data"]);
    let (_, cv) = query.get_json("/api/v1/label/__name__/values", &[]);
    let (_, pv) = get_json(prometheus.http, "/api/v1/label/__name__/values", &[]);
    assert_eq!(cv["data"], pv["data"]);
    let (_, cv) = query.get_json("/api/v1/labels", &[]);
    let (_, pv) = get_json(prometheus.http, "/api/v1/labels", &[]);
    assert_eq!(cv["data"], pv["data"]);
}
