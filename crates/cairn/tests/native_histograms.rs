//! Native histograms and exemplars end to end, against a real sender and a real oracle.
//!
//! The test serves a scrape target in Prometheus' protobuf exposition format: two native
//! histograms whose buckets grow over time (so the TSDB re-encodes chunks for new buckets) and a
//! counter with an exemplar per scrape. Prometheus 2.42, with `native-histograms` and
//! `exemplar-storage` on, scrapes it every second, keeps the data in its own TSDB, and
//! remote-writes histograms and exemplars to an RF=3 pool of Cairn receivers. `cairn query`
//! over the pool must then answer like that Prometheus over the very same samples:
//!
//! - the raw histograms (count, sum, every bucket) of a range selector;
//! - `histogram_count`, `histogram_sum` and `rate` through them;
//! - `histogram_quantile` and `histogram_fraction` where Prometheus 2.42 and Prometheus 3 agree:
//!   2.42 interpolates linearly inside an exponential bucket, 3 (which Cairn's engine follows)
//!   exponentially, so the quantiles compared are those that fall on bucket boundaries, and the
//!   fractions those whose bounds are bucket boundaries;
//! - at evaluation times between scrapes: Prometheus 3 selects ranges left-open, 2.42 closed;
//! - `histogram_avg` equals `histogram_sum / histogram_count`, `histogram_stdvar` equals
//!   `histogram_stddev ^ 2` (2.42 has neither);
//! - `/api/v1/query_exemplars` returns the exemplars Prometheus stored;
//! - blocks both ways: Cairn's block reader reads every histogram of a Prometheus snapshot
//!   block, and a second Prometheus 2.42 started over a block Cairn wrote (the same histograms
//!   re-encoded by Cairn's chunk encoder) answers exactly what the first one does.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{free_port, get_json, require_binary, wait_until, CairnQuery, Proc, ReceivePool};
use proto::exposition::{counter_family, histogram_family, ExemplarRef, NativeHistogram};
use serde_json::Value;

/// Histogram buckets of scrape `n` on `path`: bucket index -> count (schema 0: bucket `i`
/// holds (2^(i-1), 2^i]). Buckets 0..=2 from the start, bucket 3 from scrape 8, bucket 5 from
/// scrape 16; counts start large so that `rate` never extrapolates to a counter's zero (2.42
/// and 3 differ there).
fn buckets(n: u64, path: usize) -> BTreeMap<i32, u64> {
    let k = path as u64 + 1;
    let mut b = BTreeMap::new();
    b.insert(0, 100_000 + 3 * k * n);
    b.insert(1, 100_000 + 3 * k * n);
    b.insert(2, 200_000 + 6 * k * n);
    if n >= 8 {
        b.insert(3, 6 * k * (n - 7));
    }
    if n >= 16 {
        b.insert(5, 2 * k * (n - 15));
    }
    b
}

/// One native histogram metric; each observation sits at its bucket's upper bound.
fn histogram_metric<'a>(path: &'a str, b: &BTreeMap<i32, u64>) -> NativeHistogram<'a> {
    let mut spans: Vec<(i32, u32)> = Vec::new();
    let mut prev: Option<i32> = None;
    for &i in b.keys() {
        match prev {
            Some(p) if i == p + 1 => spans.last_mut().unwrap().1 += 1,
            Some(p) => spans.push((i - p - 1, 1)),
            None => spans.push((i, 1)),
        }
        prev = Some(i);
    }
    let mut last = 0i64;
    NativeHistogram {
        labels: vec![("path", path)],
        count: b.values().sum(),
        sum: b.iter().map(|(&i, &c)| c as f64 * 2f64.powi(i)).sum(),
        schema: 0,
        zero_threshold: 1e-128,
        zero_count: 0,
        positive_spans: spans,
        positive_deltas: b
            .values()
            .map(|&c| {
                let d = c as i64 - last;
                last = c as i64;
                d
            })
            .collect(),
    }
}

/// Serves the exposition; each scrape advances `n`.
struct Target {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    scrapes: Arc<AtomicU64>,
}

impl Target {
    fn start() -> Target {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let scrapes = Arc::new(AtomicU64::new(0));
        let (flag, count) = (stop.clone(), scrapes.clone());
        std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let Ok((mut s, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let n = count.fetch_add(1, Ordering::SeqCst);
                let mut body = histogram_family(
                    "test_request_duration_seconds",
                    "test metric",
                    &[
                        histogram_metric("/a", &buckets(n, 0)),
                        histogram_metric("/b", &buckets(n, 1)),
                    ],
                );
                // This scrape's exemplar: trace_id="trace-<n>", value n.
                let trace = format!("trace-{n}");
                let exemplar = ExemplarRef {
                    labels: vec![("trace_id", trace.as_str())],
                    value: n as f64,
                    timestamp_ms: common::now_ms(),
                };
                body.extend(counter_family(
                    "test_requests_total",
                    "test metric",
                    10.0 * n as f64,
                    Some(&exemplar),
                ));
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.google.protobuf; \
                     proto=io.prometheus.client.MetricFamily; encoding=delimited\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes());
                let _ = s.write_all(&body);
            }
        });
        Target {
            addr,
            stop,
            scrapes,
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Prometheus 2.42 (server mode, so it is also the oracle) scraping `target` every second and
/// remote-writing native histograms and exemplars to `url`.
fn prometheus(dir: &std::path::Path, target: SocketAddr, url: &str) -> (Proc, SocketAddr) {
    let bin = require_binary("/usr/bin/prometheus", "prometheus");
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let cfg = dir.join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n\
             scrape_configs:\n  - job_name: edge\n    static_configs:\n      - targets: ['{target}']\n\
             remote_write:\n  - url: {url}\n    send_native_histograms: true\n    send_exemplars: true\n\
             \x20   queue_config:\n      batch_send_deadline: 1s\n"
        ),
    )
    .unwrap();
    let proc = Proc::spawn(
        "prometheus",
        Command::new(bin)
            .arg("--enable-feature=native-histograms,exemplar-storage")
            .arg("--web.enable-admin-api")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("prometheus-data").display()
            ))
            .arg(format!("--web.listen-address={addr}")),
        dir,
    );
    (proc, addr)
}

// ---------------------------------------------------------------------------------------------
// Comparing answers.

/// A bucket as the HTTP API renders it: boundary rule, lower, upper, count.
type Bucket = (u64, f64, f64, f64);

/// A histogram as the HTTP API renders it: count, sum and non-empty buckets.
fn histogram(v: &Value) -> (f64, f64, Vec<Bucket>) {
    let num = |x: &Value| x.as_str().unwrap().parse::<f64>().unwrap();
    let buckets = v["buckets"]
        .as_array()
        .map(|bs| {
            bs.iter()
                .map(|b| (b[0].as_u64().unwrap(), num(&b[1]), num(&b[2]), num(&b[3])))
                .filter(|b| b.3 != 0.0)
                .collect()
        })
        .unwrap_or_default();
    (num(&v["count"]), num(&v["sum"]), buckets)
}

/// A point of a matrix or vector result, float or histogram, with its timestamp.
#[derive(Debug, PartialEq, Clone)]
enum Point {
    Float(f64),
    Histogram(f64, f64, Vec<Bucket>),
}

fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

fn point_close(a: &Point, b: &Point) -> bool {
    match (a, b) {
        (Point::Float(x), Point::Float(y)) => close(*x, *y),
        (Point::Histogram(c1, s1, b1), Point::Histogram(c2, s2, b2)) => {
            close(*c1, *c2)
                && close(*s1, *s2)
                && b1.len() == b2.len()
                && b1.iter().zip(b2).all(|(x, y)| {
                    x.0 == y.0 && close(x.1, y.1) && close(x.2, y.2) && close(x.3, y.3)
                })
        }
        _ => false,
    }
}

/// A matrix result as `labels -> [(t, point)]`.
fn matrix(v: &Value) -> BTreeMap<String, Vec<(f64, Point)>> {
    assert_eq!(v["status"], "success", "{v}");
    let mut out = BTreeMap::new();
    for s in v["data"]["result"].as_array().unwrap() {
        let mut points = Vec::new();
        for p in s["values"].as_array().into_iter().flatten() {
            let f = p[1].as_str().unwrap().parse::<f64>().unwrap();
            points.push((p[0].as_f64().unwrap(), Point::Float(f)));
        }
        for p in s["histograms"].as_array().into_iter().flatten() {
            let (c, sum, b) = histogram(&p[1]);
            points.push((p[0].as_f64().unwrap(), Point::Histogram(c, sum, b)));
        }
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        // Cairn's answers carry the receivers' external tenant label; Prometheus' do not.
        let mut metric = s["metric"].clone();
        if let Some(m) = metric.as_object_mut() {
            m.remove("tenant_id");
        }
        out.insert(metric.to_string(), points);
    }
    out
}

fn assert_same(what: &str, cairn: &Value, prom: &Value) {
    let (c, p) = (matrix(cairn), matrix(prom));
    assert!(!p.is_empty(), "{what}: Prometheus answered nothing: {prom}");
    assert_eq!(
        c.keys().collect::<Vec<_>>(),
        p.keys().collect::<Vec<_>>(),
        "{what}: series differ"
    );
    for (labels, pp) in &p {
        let cp = &c[labels];
        assert_eq!(
            cp.len(),
            pp.len(),
            "{what} {labels}: {} points from Cairn, {} from Prometheus\ncairn: {cp:?}\nprometheus: {pp:?}",
            cp.len(),
            pp.len()
        );
        for ((ct, cv), (pt, pv)) in cp.iter().zip(pp) {
            assert!(
                ct == pt && point_close(cv, pv),
                "{what} {labels} at {pt}: Cairn {cv:?} (t={ct}), Prometheus {pv:?}"
            );
        }
    }
}

#[test]
fn native_histograms_and_exemplars_match_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let mut pool = ReceivePool::new(dir.path(), 3, None);
    pool.extra = vec!["--tsdb.max-exemplars=10000".into()];
    pool.write_ring(&pool.endpoints);
    pool.start_all();
    let grpc: Vec<SocketAddr> = (0..3).map(|i| pool.node(i).ports().grpc).collect();
    let query = CairnQuery::start(dir.path(), &grpc, &["--query.replica-label=replica"]);

    let target = Target::start();
    let url = format!("http://{}/api/v1/receive", pool.node(0).remote_write);
    let (mut prom, prom_addr) = prometheus(dir.path(), target.addr, &url);

    // 30 scrapes (bucket 5 appears at 16), then the samples up to a past instant are final.
    wait_until(Duration::from_secs(90), "30 scrapes", || {
        target.scrapes.load(Ordering::SeqCst) >= 30
    });
    let range = |addr: SocketAddr, q: &str, start: f64, end: f64| {
        let (start, end) = (format!("{start:.3}"), format!("{end:.3}"));
        get_json(
            addr,
            "/api/v1/query_range",
            &[
                ("query", q),
                ("start", &start),
                ("end", &end),
                ("step", "1"),
            ],
        )
        .1
    };
    let instant = |addr: SocketAddr, q: &str, t: f64| {
        get_json(
            addr,
            "/api/v1/query",
            &[("query", q), ("time", &format!("{t:.3}"))],
        )
        .1
    };
    // Prometheus' own samples: the window is its first 28 histograms of path /a.
    let raw = instant(
        prom_addr,
        "test_request_duration_seconds{path=\"/a\"}[5m]",
        common::now_ms() as f64 / 1000.0,
    );
    let stamps: Vec<f64> = raw["data"]["result"][0]["histograms"]
        .as_array()
        .unwrap_or_else(|| panic!("no histograms in Prometheus: {raw}"))
        .iter()
        .map(|p| p[0].as_f64().unwrap())
        .collect();
    assert!(stamps.len() >= 28, "{raw}");
    let (first, last) = (stamps[0], stamps[27]);
    let selector = format!(
        "test_request_duration_seconds[{}s]",
        (last - first).ceil() as i64 + 1
    );

    // Wait for remote write to deliver everything up to `last` (2.42 sends every second).
    let started = Instant::now();
    loop {
        let c = instant(query.http, &selector, last);
        let p = instant(prom_addr, &selector, last);
        let same = c["data"]["result"].as_array().map(Vec::len)
            == p["data"]["result"].as_array().map(Vec::len)
            && c["data"]["result"]
                .as_array()
                .into_iter()
                .flatten()
                .zip(p["data"]["result"].as_array().into_iter().flatten())
                .all(|(a, b)| {
                    a["histograms"].as_array().map(Vec::len)
                        == b["histograms"].as_array().map(Vec::len)
                });
        if same {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "Cairn never caught up with Prometheus:\ncairn: {c}\nprometheus: {p}\nprometheus log:\n{}",
            prom.log_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // Raw histograms, every bucket, through remote write, three replicas and de-duplication.
    let raw_c = instant(query.http, &selector, last);
    let raw_p = instant(prom_addr, &selector, last);
    let as_range = |v: &Value| {
        // A range-vector instant result has the matrix shape.
        let mut v = v.clone();
        v["data"]["resultType"] = "matrix".into();
        v
    };
    assert_same("raw histograms", &as_range(&raw_c), &as_range(&raw_p));

    // Evaluation times half-way between scrapes: Prometheus 3 (and Cairn) select `(t - r, t]`,
    // 2.42 `[t - r, t]`, which differ only when a sample sits exactly at `t - r`.
    let (start, end) = (first + 12.5, last - 0.5);
    for q in [
        "test_request_duration_seconds",
        "rate(test_request_duration_seconds[10s])",
        "histogram_count(rate(test_request_duration_seconds[10s]))",
        "histogram_sum(rate(test_request_duration_seconds[10s]))",
        "histogram_count(test_request_duration_seconds)",
        "histogram_sum(test_request_duration_seconds)",
        "sum by (path) (rate(test_request_duration_seconds[10s]))",
        // Buckets 0 and 1 hold a quarter each, so these quantiles fall on bucket boundaries
        // until new buckets dilute them; both versions agree there (and at 0 and 1).
        "histogram_quantile(0, test_request_duration_seconds)",
        "histogram_quantile(1, test_request_duration_seconds)",
        "histogram_fraction(0, 1, test_request_duration_seconds)",
        "histogram_fraction(0, 4, test_request_duration_seconds)",
        "histogram_fraction(0, 4, rate(test_request_duration_seconds[10s]))",
    ] {
        assert_same(
            q,
            &range(query.http, q, start, end),
            &range(prom_addr, q, start, end),
        );
    }
    // Quantiles at a boundary: before bucket 3 appears (scrape 8), buckets 0, 1, 2 hold
    // 1/4, 1/4, 1/2 of the observations of every histogram.
    let early = stamps[6];
    for q in ["0.25", "0.5"] {
        let e = format!("histogram_quantile({q}, test_request_duration_seconds)");
        assert_same(
            &e,
            &range(query.http, &e, first + 0.5, early - 0.5),
            &range(prom_addr, &e, first + 0.5, early - 0.5),
        );
    }
    // histogram_avg (Prometheus 3) is sum / count.
    let avg = range(
        query.http,
        "histogram_avg(test_request_duration_seconds)",
        start,
        end,
    );
    let ratio = range(
        query.http,
        "histogram_sum(test_request_duration_seconds) / histogram_count(test_request_duration_seconds)",
        start,
        end,
    );
    assert_same("histogram_avg", &avg, &ratio);
    let (_, stddev) = get_json(
        query.http,
        "/api/v1/query",
        &[
            (
                "query",
                "histogram_stddev(test_request_duration_seconds) > 0",
            ),
            ("time", &format!("{last:.3}")),
        ],
    );
    assert_eq!(
        stddev["data"]["result"].as_array().unwrap().len(),
        2,
        "{stddev}"
    );

    // Exemplars: what Prometheus stored for the counter over the window.
    let exemplars = |addr: SocketAddr| {
        let (status, v) = get_json(
            addr,
            "/api/v1/query_exemplars",
            &[
                ("query", "test_requests_total"),
                ("start", &format!("{first:.3}")),
                ("end", &format!("{last:.3}")),
            ],
        );
        assert_eq!(status, 200, "{v}");
        let mut out: Vec<(String, String, f64)> = Vec::new();
        for s in v["data"].as_array().unwrap() {
            for e in s["exemplars"].as_array().unwrap() {
                out.push((
                    e["labels"]["trace_id"].as_str().unwrap().to_string(),
                    e["value"].as_str().unwrap().to_string(),
                    e["timestamp"].as_f64().unwrap(),
                ));
            }
        }
        out.sort_by(|a, b| a.2.total_cmp(&b.2));
        (v, out)
    };
    let (pv, from_prom) = exemplars(prom_addr);
    assert!(
        from_prom.len() >= 20,
        "Prometheus stored few exemplars: {pv}"
    );
    let (cv, from_cairn) = exemplars(query.http);
    assert_eq!(from_cairn, from_prom, "cairn: {cv}\nprometheus: {pv}");
    // Series labels come with the receivers' external labels, replica label merged away.
    assert_eq!(cv["data"].as_array().unwrap().len(), 1, "{cv}");
    assert!(cv["data"][0]["seriesLabels"]["replica"].is_null(), "{cv}");

    // Blocks, both ways. Prometheus' snapshot writes its head as a block with histogram chunks:
    // Cairn's block reader must read every histogram of it.
    let snap = common::http(prom_addr, "POST", "/api/v1/admin/tsdb/snapshot", &[], b"").unwrap();
    let snap: Value = serde_json::from_str(&snap.body).unwrap();
    let snap_dir = dir.path().join("prometheus-data/snapshots").join(
        snap["data"]["name"]
            .as_str()
            .unwrap_or_else(|| panic!("{snap}")),
    );
    let mut series: Vec<tsdb::querier::Series> = Vec::new();
    for entry in std::fs::read_dir(&snap_dir).unwrap() {
        let block = tsdb::block::Block::open(&entry.unwrap().path()).unwrap();
        let q = tsdb::block::BlockQuerier(Arc::new(block));
        let m = tsdb::matcher::Matcher::equal("__name__", "test_request_duration_seconds");
        series.extend(tsdb::querier::Querier::select(&q, &[m], i64::MIN, i64::MAX).unwrap());
    }
    assert_eq!(series.len(), 2, "both histogram series are in the snapshot");
    let mut from_block: BTreeMap<String, Vec<(i64, u64, f64)>> = BTreeMap::new();
    let mut reencoded = Vec::new();
    for s in &series {
        let mut samples = Vec::new();
        for c in &s.chunks {
            assert_eq!(
                c.encoding,
                tsdb::chunkenc::ENCODING_HISTOGRAM,
                "{}",
                s.labels
            );
            samples.extend(tsdb::chunkenc::value::decode(c.encoding, &c.data).unwrap());
        }
        let path = s.labels.get("path").unwrap().to_string();
        for (t, v) in &samples {
            let tsdb::chunkenc::Value::Histogram(h) = v else {
                panic!("{} holds a non-histogram sample", s.labels)
            };
            h.validate().unwrap();
            from_block
                .entry(path.clone())
                .or_default()
                .push((*t, h.count, h.sum));
        }
        // Re-encoded by Cairn's encoder, for the other direction.
        let chunks = tsdb::chunkenc::value::encode(&samples)
            .into_iter()
            .map(
                |(min_time, max_time, encoding, data)| tsdb::querier::ChunkData {
                    min_time,
                    max_time,
                    encoding,
                    data: data.into(),
                },
            )
            .collect();
        reencoded.push(tsdb::querier::Series {
            labels: s.labels.clone(),
            chunks,
        });
    }
    let api_points = |addr: SocketAddr, path: &str| -> Vec<(i64, u64, f64)> {
        let q = format!("test_request_duration_seconds{{path=\"{path}\"}}[1h]");
        let v = instant(addr, &q, last);
        v["data"]["result"][0]["histograms"]
            .as_array()
            .unwrap_or_else(|| panic!("{v}"))
            .iter()
            .map(|p| {
                let (count, sum, _) = histogram(&p[1]);
                (
                    (p[0].as_f64().unwrap() * 1000.0).round() as i64,
                    count as u64,
                    sum,
                )
            })
            .collect()
    };
    for path in ["/a", "/b"] {
        let want = api_points(prom_addr, path);
        let got: Vec<_> = from_block[path]
            .iter()
            .copied()
            .filter(|p| p.0 <= (last * 1000.0).round() as i64)
            .collect();
        assert_eq!(got, want, "Prometheus' block read by Cairn, path {path}");
    }

    // And Prometheus 2.42 reads a block Cairn wrote: a second Prometheus over it answers the
    // same raw histograms as the first.
    let cairn_blocks = dir.path().join("cairn-blocks");
    std::fs::create_dir_all(&cairn_blocks).unwrap();
    reencoded.sort_by(|a, b| a.labels.cmp(&b.labels));
    let (mint, maxt) = reencoded
        .iter()
        .flat_map(|s| &s.chunks)
        .fold((i64::MAX, i64::MIN), |(lo, hi), c| {
            (lo.min(c.min_time), hi.max(c.max_time))
        });
    tsdb::block::write_block(
        &cairn_blocks,
        mint,
        maxt + 1,
        &reencoded,
        tsdb::block::BlockWriteOptions::default(),
    )
    .unwrap();
    let reader_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let reader_cfg = dir.path().join("reader.yml");
    std::fs::write(&reader_cfg, "global:\n  scrape_interval: 1m\n").unwrap();
    let mut reader = Proc::spawn(
        "prometheus-reader",
        Command::new("/usr/bin/prometheus")
            .arg("--enable-feature=native-histograms")
            .arg(format!("--config.file={}", reader_cfg.display()))
            .arg(format!("--storage.tsdb.path={}", cairn_blocks.display()))
            .arg(format!("--web.listen-address={reader_addr}")),
        dir.path(),
    );
    wait_until(
        Duration::from_secs(30),
        "the reading Prometheus is ready",
        || common::get(reader_addr, "/-/ready").is_ok_and(|r| r.status == 200),
    );
    for path in ["/a", "/b"] {
        let want = api_points(prom_addr, path);
        let got = api_points(reader_addr, path);
        assert_eq!(
            got,
            want,
            "Cairn's block read by Prometheus 2.42, path {path}; log:\n{}",
            reader.log_text()
        );
    }
    let full = |addr: SocketAddr| instant(addr, &selector, last);
    assert_same(
        "raw histograms from Cairn's block",
        &as_range(&full(reader_addr)),
        &as_range(&full(prom_addr)),
    );

    let _ = reader.terminate(Duration::from_secs(10));
    let _ = prom.terminate(Duration::from_secs(10));
}

/// Remote Write 2.0 straight to a receiver: a float gauge histogram, an integer histogram with
/// custom buckets (schema -53) and a float series with an exemplar; the "written" headers count
/// each kind, a bad histogram is refused with its series named, and PromQL through `cairn query`
/// reads them back.
#[test]
fn remote_write_2_histograms_of_every_kind_and_exemplars() {
    use proto::remote_write::{
        encode_v2, BucketSpan, Exemplar, Histogram, HistogramCount, Label, ResetHint, Sample,
        TimeSeries, WriteRequest,
    };
    let dir = tempfile::tempdir().unwrap();
    let cairn = common::Cairn::receive(dir.path(), &["--tsdb.max-exemplars=100"]);
    let now = common::now_ms() / 1000 * 1000;
    let labels = |name: &'static str| {
        vec![
            Label {
                name: "__name__",
                value: name,
            },
            Label {
                name: "job",
                value: "rw2",
            },
        ]
    };
    let gauge = |t: i64, scale: f64| Histogram {
        count: HistogramCount::Float(6.0 * scale),
        zero_count: HistogramCount::Float(0.5 * scale),
        sum: 3.25 * scale,
        schema: 1,
        zero_threshold: 0.001,
        positive_spans: vec![BucketSpan {
            offset: 0,
            length: 2,
        }],
        positive_counts: vec![2.0 * scale, 3.5 * scale],
        reset_hint: ResetHint::Gauge,
        timestamp: t,
        ..Default::default()
    };
    let nhcb = |t: i64, k: i64| Histogram {
        count: HistogramCount::Int(4 * k as u64),
        zero_count: HistogramCount::Int(0),
        sum: 1.2 * k as f64,
        schema: -53,
        positive_spans: vec![BucketSpan {
            offset: 0,
            length: 3,
        }],
        // Bucket counts k, 2k, k over (-Inf, 0.1], (0.1, 0.5], (0.5, 1].
        positive_deltas: vec![k, k, -k],
        custom_values: vec![0.1, 0.5, 1.0],
        timestamp: t,
        ..Default::default()
    };
    let req = WriteRequest {
        timeseries: vec![
            TimeSeries {
                labels: labels("rw2_gauge_histogram"),
                histograms: vec![gauge(now - 2000, 1.0), gauge(now - 1000, 0.5)],
                ..Default::default()
            },
            TimeSeries {
                labels: labels("rw2_nhcb"),
                histograms: vec![nhcb(now - 2000, 1), nhcb(now - 1000, 2)],
                ..Default::default()
            },
            TimeSeries {
                labels: labels("rw2_requests_total"),
                samples: vec![Sample {
                    value: 7.0,
                    timestamp: now - 1000,
                }],
                exemplars: vec![Exemplar {
                    labels: vec![Label {
                        name: "trace_id",
                        value: "4bf92f3577b34da6",
                    }],
                    value: 7.0,
                    timestamp: now - 1000,
                }],
                ..Default::default()
            },
        ],
        metadata: vec![],
    };
    let post = |body: &[u8]| {
        common::http(
            cairn.remote_write,
            "POST",
            "/api/v1/receive",
            &[
                (
                    "Content-Type",
                    "application/x-protobuf;proto=io.prometheus.write.v2.Request",
                ),
                ("Content-Encoding", "snappy"),
                ("X-Prometheus-Remote-Write-Version", "2.0.0"),
            ],
            &common::snappy(body),
        )
        .unwrap()
    };
    let r = post(&encode_v2(&req));
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(
        r.header("X-Prometheus-Remote-Write-Samples-Written"),
        Some("1")
    );
    assert_eq!(
        r.header("X-Prometheus-Remote-Write-Histograms-Written"),
        Some("4")
    );
    assert_eq!(
        r.header("X-Prometheus-Remote-Write-Exemplars-Written"),
        Some("1")
    );

    // Buckets adding up to more than the count: refused, named, not counted.
    let mut bad = nhcb(now, 3);
    bad.count = HistogramCount::Int(5);
    let req_bad = WriteRequest {
        timeseries: vec![TimeSeries {
            labels: labels("rw2_nhcb"),
            histograms: vec![bad],
            ..Default::default()
        }],
        metadata: vec![],
    };
    let r = post(&encode_v2(&req_bad));
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body
            .contains(r#"series {__name__="rw2_nhcb", job="rw2"}: native histogram at"#)
            && r.body
                .contains("12 observations found in buckets, but the count field is 5"),
        "{}",
        r.body
    );
    assert_eq!(
        r.header("X-Prometheus-Remote-Write-Histograms-Written"),
        Some("0")
    );

    let query = CairnQuery::start(dir.path(), &[cairn.grpc], &[]);
    let at = format!("{:.3}", now as f64 / 1000.0);
    let value = |q: &str| -> f64 {
        let (_, v) = get_json(query.http, "/api/v1/query", &[("query", q), ("time", &at)]);
        v["data"]["result"][0]["value"][1]
            .as_str()
            .unwrap_or_else(|| panic!("{q}: {v}"))
            .parse()
            .unwrap()
    };
    assert_eq!(value("histogram_count(rw2_gauge_histogram)"), 3.0);
    assert_eq!(value("histogram_sum(rw2_gauge_histogram)"), 1.625);
    // (0.1, 0.5] holds ranks 2..=4 of 8 at k=2: the median is half-way, linearly.
    assert!((value("histogram_quantile(0.5, rw2_nhcb)") - 0.3).abs() < 1e-12);
    assert!((value("histogram_fraction(0, 0.5, rw2_nhcb)") - 0.75).abs() < 1e-12);
    let (_, ex) = get_json(
        query.http,
        "/api/v1/query_exemplars",
        &[
            ("query", "rw2_requests_total"),
            ("start", "0"),
            ("end", &at),
        ],
    );
    assert_eq!(
        ex["data"][0]["exemplars"][0]["labels"]["trace_id"], "4bf92f3577b34da6",
        "{ex}"
    );
}
