//! PromQL range-query benchmark: Cairn's engine vs Prometheus 2.42 over the same blocks.
//!
//! `bench/promql.sh` drives it; the subcommands are:
//!
//! - `generate <file.om> <meta.json>`: writes dashboard-like data as OpenMetrics (counters
//!   `http_requests_total{job,instance,code,path}`, a classic histogram
//!   `http_request_duration_seconds{job,instance}` with `_bucket`/`_sum`/`_count`, a gauge
//!   `process_resident_memory_bytes{job,instance}`) for `promtool tsdb create-blocks-from
//!   openmetrics`, and what the run needs to know about it as JSON;
//! - `free-port`: prints a loopback port nobody listens on;
//! - `run <meta.json> <blocks dir> <prometheus url>`: opens the blocks with `tsdb::block::Block`,
//!   runs every query once against Prometheus and once in-process and checks the results are
//!   equal, then times each query `RUNS` times on both sides and prints the table. With `-`
//!   as the URL it times Cairn alone, unchecked (for profiling).
//!
//! - `http <meta.json> <prometheus url> <cairn query url>`: the same queries over both HTTP
//!   APIs (`bench/query.sh` puts `cairn query` over three receivers in front): checks the
//!   answers are equal, then times each query's HTTP round trip on both sides, interleaved.
//!
//! Prometheus' time is its own `execTotalTime` (`stats=all`), so HTTP and JSON are not counted
//! against it; the HTTP wall time is printed for reference. Cairn's time is the evaluation of the
//! parsed query with the blocks already open (index lookups, chunk decoding and evaluation:
//! the same work `execTotalTime` covers).
//!
//! Data shape (knobs: `TARGETS`, `HOURS`, `SCRAPE`): every target has its own scrape offset
//! plus a few ms of jitter, no sample is at .000 s or .500 s, and queries start at .500 s an
//! hour into the data. So no sample sits on a window boundary, no subquery step on an outer
//! window boundary, and every window is full: Prometheus 2.42 (closed windows, 2.x
//! extrapolation at series starts) and Cairn (Prometheus 3 semantics: left-open windows) must
//! then agree on every value. `topk` is compared up to ties at the cut (see
//! `compare_ranked`).

// A benchmark prints its figures.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::f64::consts::PI;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use promql::{Engine, QueryValue, RangeSeries};
use query::TsdbQueryable;
use serde_json::{json, Value};
use tsdb::block::{Block, BlockQuerier};
use tsdb::querier::{MergeQuerier, Querier};
use tsdb::Labels;

/// The dashboard: name shown in the table, query.
const QUERIES: &[(&str, &str)] = &[
    ("rate", "rate(http_requests_total[5m])"),
    ("sum by job", "sum by (job) (rate(http_requests_total[5m]))"),
    (
        "error ratio",
        r#"sum by (job) (rate(http_requests_total{code=~"5.."}[5m])) / sum by (job) (rate(http_requests_total[5m]))"#,
    ),
    (
        "p99 latency",
        "histogram_quantile(0.99, sum by (le, job) (rate(http_request_duration_seconds_bucket[5m])))",
    ),
    (
        "avg latency",
        "sum by (job) (rate(http_request_duration_seconds_sum[5m])) / sum by (job) (rate(http_request_duration_seconds_count[5m]))",
    ),
    ("topk", "topk(5, sum by (instance) (rate(http_requests_total[5m])))"),
    ("subquery", "max_over_time(rate(http_requests_total[5m])[30m:1m])"),
    (
        "increase 1h",
        r#"sum by (code) (increase(http_requests_total{job="api"}[1h]))"#,
    ),
    ("gauge avg", "avg by (job) (process_resident_memory_bytes)"),
];

const JOBS: &[&str] = &["api", "web", "auth", "payments"];
const CODES: &[&str] = &["200", "404", "500"];
const PATHS: &[&str] = &["/", "/api/v1/orders", "/api/v1/users", "/login"];
const BUCKETS: &[f64] = &[
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    f64::INFINITY,
];
/// Data starts here (ms): a 2 h boundary in November 2023, so results never depend on "now".
const DATA_START: i64 = 1_699_999_200_000;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let res = match args.first().map(String::as_str) {
        Some("generate") if args.len() == 3 => generate(Path::new(&args[1]), Path::new(&args[2])),
        Some("free-port") => free_port(),
        Some("run") if args.len() == 4 => {
            return match run(Path::new(&args[1]), Path::new(&args[2]), &args[3]) {
                Ok(code) => ExitCode::from(code),
                Err(e) => {
                    eprintln!("promql_bench: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Some("http") if args.len() == 4 => {
            return match run_http(Path::new(&args[1]), &args[2], &args[3]) {
                Ok(code) => ExitCode::from(code),
                Err(e) => {
                    eprintln!("promql_bench: {e}");
                    ExitCode::from(2)
                }
            }
        }
        _ => Err(
            "usage: promql_bench generate <file.om> <meta.json> | free-port | run <meta.json> <blocks dir> <prometheus url> | http <meta.json> <prometheus url> <cairn query url>"
                .to_string(),
        ),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("promql_bench: {e}");
            ExitCode::from(2)
        }
    }
}

fn env_num(name: &str, default: u64) -> Result<u64, String> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("{name} must be a positive integer (got {v:?})")),
        Err(_) => Ok(default),
    }
}

// --- data -------------------------------------------------------------------------------------

/// A deterministic 64-bit mix (splitmix64's finaliser).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A deterministic uniform number in [0, 1) for a tuple of keys.
fn unit(keys: &[u64]) -> f64 {
    let h = keys.iter().fold(0x1234_5678u64, |h, &k| mix(h ^ k));
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Standard normal CDF (Abramowitz-Stegun 7.1.26 for erf; plenty for synthetic latencies).
fn normal_cdf(z: f64) -> f64 {
    let x = z.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let y = 1.0
        - (((((1.061_405_429 * t - 1.453_152_027) * t) + 1.421_413_741) * t - 0.284_496_736) * t
            + 0.254_829_592)
            * t
            * (-x * x).exp();
    if z >= 0.0 {
        0.5 * (1.0 + y)
    } else {
        0.5 * (1.0 - y)
    }
}

struct Shape {
    targets: u64,
    points: u64,
    scrape_ms: i64,
}

impl Shape {
    fn from_env() -> Result<Shape, String> {
        let targets = env_num("TARGETS", 100)?;
        let hours = env_num("HOURS", 8)?;
        let scrape_s = env_num("SCRAPE", 15)?;
        if hours < 2 {
            return Err("HOURS must be at least 2 (queries start an hour into the data)".into());
        }
        Ok(Shape {
            targets,
            points: hours * 3600 / scrape_s,
            scrape_ms: scrape_s as i64 * 1000,
        })
    }

    /// Scrape offset of a target within the interval: 100 ms .. interval - 100 ms.
    fn offset(&self, target: u64) -> i64 {
        100 + (mix(target ^ 0xabc) % (self.scrape_ms as u64 - 200)) as i64
    }

    /// Scrape time: the target's offset plus up to 25 ms of jitter either way, as real scrapes
    /// have. Without jitter every full window would have the same extrapolation factor, rates
    /// would be integer multiples of one constant, and ties (which `topk` breaks in an
    /// unspecified order) would be common.
    /// Never at .000 s or .500 s, where query windows start and end (see `run`).
    fn ts(&self, target: u64, p: u64) -> i64 {
        let jitter = (mix(target.wrapping_mul(0x1_0000_0001) ^ p) % 51) as i64 - 25;
        let t = DATA_START + p as i64 * self.scrape_ms + self.offset(target) + jitter;
        if t % 500 == 0 {
            t + 1
        } else {
            t
        }
    }

    /// Targets restart (counters go back to zero) at this point, if they do.
    fn restart(&self, target: u64) -> Option<u64> {
        (target % 17 == 3).then(|| self.points / 3 + target % 50)
    }

    fn target_labels(&self, target: u64) -> (&'static str, String) {
        let job = JOBS[(target % JOBS.len() as u64) as usize];
        (job, format!("10.0.{}.{}:9090", target / 200, target % 200))
    }

    /// Load factor of a target at point `p`: a slow daily-ish wave plus noise.
    fn load(&self, target: u64, p: u64) -> f64 {
        let phase = unit(&[target, 1]) * 2.0 * PI;
        let t_h = p as f64 * self.scrape_ms as f64 / 3.6e6;
        (1.0 + 0.5 * (2.0 * PI * t_h / 6.0 + phase).sin()) * (0.8 + 0.4 * unit(&[target, p, 2]))
    }
}

fn om_ts(w: &mut impl Write, t: i64) -> std::io::Result<()> {
    write!(w, "{}.{:03}", t / 1000, t % 1000)
}

fn generate(out: &Path, meta: &Path) -> Result<(), String> {
    let shape = Shape::from_env()?;
    let f = File::create(out).map_err(|e| format!("creating {}: {e}", out.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    let mut series = 0u64;
    let io = |e: std::io::Error| format!("writing {}: {e}", out.display());

    writeln!(w, "# HELP http_requests requests served").map_err(io)?;
    writeln!(w, "# TYPE http_requests counter").map_err(io)?;
    for target in 0..shape.targets {
        let (job, instance) = shape.target_labels(target);
        for (ci, code) in CODES.iter().enumerate() {
            for (pi, path) in PATHS.iter().enumerate() {
                series += 1;
                let base = [10.0, 0.4, 0.08][ci] * [3.0, 1.0, 2.0, 0.5][pi];
                let mut v = (unit(&[target, ci as u64, pi as u64, 3]) * 1e6).floor();
                for p in 0..shape.points {
                    if shape.restart(target) == Some(p) {
                        v = 0.0;
                    }
                    let inc = base
                        * shape.load(target, p)
                        * (shape.scrape_ms as f64 / 1000.0)
                        * (0.7 + 0.6 * unit(&[target, ci as u64, pi as u64, p]));
                    v += inc.round();
                    write!(
                        w,
                        "http_requests_total{{job=\"{job}\",instance=\"{instance}\",code=\"{code}\",path=\"{path}\"}} {v} "
                    )
                    .map_err(io)?;
                    om_ts(&mut w, shape.ts(target, p)).map_err(io)?;
                    w.write_all(b"\n").map_err(io)?;
                }
            }
        }
    }

    writeln!(w, "# HELP http_request_duration_seconds request latency").map_err(io)?;
    writeln!(w, "# TYPE http_request_duration_seconds histogram").map_err(io)?;
    // Log-normal latencies; observations per scrape follow the target's load.
    let observations = |target: u64, p: u64| -> (f64, f64, f64) {
        let median =
            [0.05, 0.12, 0.03, 0.3][(target % 4) as usize] * (1.0 + 0.3 * shape.load(target, p));
        let sigma = 0.6 + 0.4 * unit(&[target, 7]);
        let n = (20.0 * shape.load(target, p) * shape.scrape_ms as f64 / 1000.0).round();
        (n, median, sigma)
    };
    for target in 0..shape.targets {
        let (job, instance) = shape.target_labels(target);
        let labels = format!("job=\"{job}\",instance=\"{instance}\"");
        for &le in BUCKETS {
            series += 1;
            let le_text = if le.is_infinite() {
                "+Inf".to_string()
            } else {
                format!("{le}")
            };
            let mut v = 0.0;
            for p in 0..shape.points {
                if shape.restart(target) == Some(p) {
                    v = 0.0;
                }
                let (n, median, sigma) = observations(target, p);
                v += if le.is_infinite() {
                    n
                } else {
                    (n * normal_cdf((le.ln() - median.ln()) / sigma)).floor()
                };
                write!(
                    w,
                    "http_request_duration_seconds_bucket{{{labels},le=\"{le_text}\"}} {v} "
                )
                .map_err(io)?;
                om_ts(&mut w, shape.ts(target, p)).map_err(io)?;
                w.write_all(b"\n").map_err(io)?;
            }
        }
        for part in ["sum", "count"] {
            series += 1;
            let mut v = 0.0;
            for p in 0..shape.points {
                if shape.restart(target) == Some(p) {
                    v = 0.0;
                }
                let (n, median, sigma) = observations(target, p);
                v += if part == "sum" {
                    n * median * (sigma * sigma / 2.0).exp()
                } else {
                    n
                };
                write!(w, "http_request_duration_seconds_{part}{{{labels}}} {v} ").map_err(io)?;
                om_ts(&mut w, shape.ts(target, p)).map_err(io)?;
                w.write_all(b"\n").map_err(io)?;
            }
        }
    }

    writeln!(w, "# HELP process_resident_memory_bytes resident memory").map_err(io)?;
    writeln!(w, "# TYPE process_resident_memory_bytes gauge").map_err(io)?;
    for target in 0..shape.targets {
        series += 1;
        let (job, instance) = shape.target_labels(target);
        let base = 2e8 + 3e8 * unit(&[target, 9]);
        for p in 0..shape.points {
            let grown = match shape.restart(target) {
                Some(r) if p >= r => p - r,
                _ => p,
            };
            let v = (base * (1.0 + grown as f64 / shape.points as f64)
                + 2e7 * unit(&[target, p, 10]))
            .round();
            write!(
                w,
                "process_resident_memory_bytes{{job=\"{job}\",instance=\"{instance}\"}} {v} "
            )
            .map_err(io)?;
            om_ts(&mut w, shape.ts(target, p)).map_err(io)?;
            w.write_all(b"\n").map_err(io)?;
        }
    }
    writeln!(w, "# EOF").map_err(io)?;
    w.flush().map_err(io)?;

    let end = DATA_START + shape.points as i64 * shape.scrape_ms;
    let meta_json = json!({
        "data_start_ms": DATA_START,
        "data_end_ms": end,
        "series": series,
        "samples": series * shape.points,
        "targets": shape.targets,
        "scrape_ms": shape.scrape_ms,
    });
    std::fs::write(meta, meta_json.to_string())
        .map_err(|e| format!("writing {}: {e}", meta.display()))?;
    eprintln!(
        "generated {series} series x {} points = {} samples",
        shape.points,
        series * shape.points
    );
    Ok(())
}

fn free_port() -> Result<(), String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    println!("{}", l.local_addr().map_err(|e| e.to_string())?.port());
    Ok(())
}

// --- Prometheus over HTTP ---------------------------------------------------------------------

fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `GET` over HTTP/1.0 (no chunked encoding, the server closes the connection at the end).
fn http_get(base: &str, path: &str) -> Result<(u16, Vec<u8>), String> {
    let hostport = base
        .strip_prefix("http://")
        .ok_or_else(|| format!("only http:// URLs: {base}"))?
        .trim_end_matches('/');
    let mut s = TcpStream::connect(hostport).map_err(|e| format!("connecting {hostport}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(300)))
        .map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {hostport}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| e.to_string())?;
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of HTTP headers")?;
    let head = String::from_utf8_lossy(&buf[..split]);
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|x| x.parse().ok())
        .ok_or_else(|| format!("bad status line: {head}"))?;
    Ok((status, buf[split + 4..].to_vec()))
}

struct PromAnswer {
    result: BTreeMap<Labels, Vec<(i64, f64)>>,
    exec_s: f64,
    wall: Duration,
}

fn parse_float(s: &str) -> Result<f64, String> {
    match s {
        "NaN" => Ok(f64::NAN),
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => s.parse().map_err(|_| format!("bad value {s:?}")),
    }
}

fn prom_query_range(
    base: &str,
    q: &str,
    start: i64,
    end: i64,
    step: i64,
    parse: bool,
) -> Result<PromAnswer, String> {
    let path = format!(
        "/api/v1/query_range?query={}&start={}&end={}&step={}&stats=all",
        url_encode(q),
        start as f64 / 1000.0,
        end as f64 / 1000.0,
        step as f64 / 1000.0
    );
    let t0 = Instant::now();
    let (status, body) = http_get(base, &path)?;
    let wall = t0.elapsed();
    let v: Value =
        serde_json::from_slice(&body).map_err(|e| format!("Prometheus answer for {q}: {e}"))?;
    if status != 200 || v["status"] != "success" {
        return Err(format!("Prometheus answered {status} for {q}: {v}"));
    }
    // Prometheus reports its own execution time; other APIs (Cairn's) may not.
    let exec_s = v["data"]["stats"]["timings"]["execTotalTime"]
        .as_f64()
        .unwrap_or(f64::NAN);
    if exec_s.is_nan() && v["data"]["stats"].is_object() {
        return Err(format!("no data.stats.timings.execTotalTime for {q}"));
    }
    let mut result = BTreeMap::new();
    if parse {
        for s in v["data"]["result"].as_array().ok_or("no data.result")? {
            let metric = s["metric"].as_object().ok_or("no metric")?;
            let labels = Labels::from_pairs(
                metric
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or(""))),
            );
            let mut points = Vec::new();
            for p in s["values"].as_array().ok_or("no values")? {
                let t = p[0].as_f64().ok_or("bad timestamp")?;
                let f = parse_float(p[1].as_str().ok_or("bad value")?)?;
                points.push(((t * 1000.0).round() as i64, f));
            }
            result.insert(labels, points);
        }
    }
    Ok(PromAnswer {
        result,
        exec_s,
        wall,
    })
}

// --- comparison and timing --------------------------------------------------------------------

fn close(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a == b {
        return true;
    }
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-3)
}

/// Checks Cairn's matrix against Prometheus'; returns the number of points compared.
fn compare(
    cairn: &[RangeSeries],
    prom: &BTreeMap<Labels, Vec<(i64, f64)>>,
) -> Result<usize, String> {
    if cairn.len() != prom.len() {
        return Err(format!(
            "Cairn returned {} series, Prometheus {}",
            cairn.len(),
            prom.len()
        ));
    }
    let mut n = 0;
    for s in cairn {
        let Some(want) = prom.get(&s.labels) else {
            return Err(format!("series {} is not in Prometheus' answer", s.labels));
        };
        if want.len() != s.samples.len() {
            let first_diff = s
                .samples
                .iter()
                .map(|p| p.t)
                .zip(want.iter().map(|p| p.0))
                .find(|(a, b)| a != b);
            return Err(format!(
                "{}: Cairn has {} points, Prometheus {} (first difference at {:?})",
                s.labels,
                s.samples.len(),
                want.len(),
                first_diff
            ));
        }
        for (got, &(t, f)) in s.samples.iter().zip(want) {
            if got.t != t || !close(got.f, f) {
                return Err(format!(
                    "{}: Cairn ({}, {}) vs Prometheus ({t}, {f})",
                    s.labels, got.t, got.f
                ));
            }
            n += 1;
        }
    }
    Ok(n)
}

/// Checks a `topk`/`bottomk` answer step by step: the same number of elements with the same
/// values (within tolerance), and the same series except where the values at the cut tie.
/// Exact ties in real arithmetic are common with counter data (integer increases over the same
/// interval); Prometheus 2.42 sums without compensation and breaks ties in map order, Cairn sums
/// with Kahan compensation, so either may pick either series. Returns (points, ties).
fn compare_ranked(
    cairn: &[RangeSeries],
    prom: &BTreeMap<Labels, Vec<(i64, f64)>>,
) -> Result<(usize, usize), String> {
    type Steps<'a> = BTreeMap<i64, Vec<(&'a Labels, f64)>>;
    let mut a: Steps<'_> = BTreeMap::new();
    for s in cairn {
        for p in &s.samples {
            a.entry(p.t).or_default().push((&s.labels, p.f));
        }
    }
    let mut b: Steps<'_> = BTreeMap::new();
    for (l, points) in prom {
        for &(t, f) in points {
            b.entry(t).or_default().push((l, f));
        }
    }
    if a.len() != b.len() {
        return Err(format!(
            "Cairn has {} steps with data, Prometheus {}",
            a.len(),
            b.len()
        ));
    }
    let (mut points, mut ties) = (0, 0);
    for ((t, x), (tb, y)) in a.iter().zip(&b) {
        if t != tb || x.len() != y.len() {
            return Err(format!(
                "step {t}: Cairn has {} elements, Prometheus {} at {tb}",
                x.len(),
                y.len()
            ));
        }
        let sorted = |v: &[(&Labels, f64)]| {
            let mut f: Vec<f64> = v.iter().map(|e| e.1).collect();
            f.sort_by(|p, q| q.total_cmp(p));
            f
        };
        let (fx, fy) = (sorted(x), sorted(y));
        if let Some((p, q)) = fx.iter().zip(&fy).find(|(p, q)| !close(**p, **q)) {
            return Err(format!("step {t}: Cairn ranks {p}, Prometheus {q}"));
        }
        for &(l, f) in x {
            match y.iter().find(|e| e.0 == l) {
                Some(&(_, g)) if close(f, g) => {}
                Some(&(_, g)) => {
                    return Err(format!("step {t}: {l}: Cairn {f}, Prometheus {g}"));
                }
                None => {
                    // Picked by Cairn only: fine if Prometheus picked another series instead
                    // with the same value.
                    let tie = y
                        .iter()
                        .any(|e| close(e.1, f) && !x.iter().any(|o| o.0 == e.0));
                    if !tie {
                        return Err(format!(
                            "step {t}: Cairn picks {l} ({f}), Prometheus does not"
                        ));
                    }
                    ties += 1;
                }
            }
        }
        points += x.len();
    }
    Ok((points, ties))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn block_dirs(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("reading {}: {e}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("meta.json").exists())
        .collect();
    out.sort();
    Ok(out)
}

fn run(meta_path: &Path, blocks_dir: &Path, prom: &str) -> Result<u8, String> {
    let meta: Value = serde_json::from_slice(
        &std::fs::read(meta_path).map_err(|e| format!("reading {}: {e}", meta_path.display()))?,
    )
    .map_err(|e| e.to_string())?;
    let runs = env_num("RUNS", 7)? as usize;
    let step = env_num("STEP", 60)? as i64 * 1000;
    let only = std::env::var("QUERIES").ok();
    // `-` instead of a URL: time Cairn alone, without checking (for profiling).
    let cairn_only = prom == "-";
    let (start, end) = query_range_of(&meta, step)?;
    let steps = (end - start) / step + 1;

    let blocks: Vec<Arc<Block>> = block_dirs(blocks_dir)?
        .iter()
        .map(|d| Block::open(d).map(Arc::new))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("opening blocks: {e}"))?;
    if blocks.is_empty() {
        return Err(format!("no blocks in {}", blocks_dir.display()));
    }
    let samples: u64 = blocks.iter().map(|b| b.meta().stats.num_samples).sum();
    let storage = TsdbQueryable::new(MergeQuerier::new(
        blocks
            .iter()
            .map(|b| Box::new(BlockQuerier(b.clone())) as Box<dyn Querier>)
            .collect(),
    ));
    let engine = Engine::default();

    println!(
        "data: {} series, {samples} samples in {} blocks; \
         queries: {} steps of {} s over {:.1} h, {runs} timed runs each",
        meta["series"],
        blocks.len(),
        steps,
        step / 1000,
        (end - start) as f64 / 3.6e6
    );

    struct Row {
        name: &'static str,
        prom_exec: f64,
        prom_wall: f64,
        cairn: f64,
        series: usize,
        points: usize,
    }
    let mut rows: Vec<Row> = Vec::new();
    let mut failed = false;
    for &(name, q) in QUERIES {
        if let Some(only) = &only {
            if !only.split(',').any(|x| x.trim() == name) {
                continue;
            }
        }
        let expr = promql::parse(q).map_err(|e| format!("{q}: {e}"))?;
        let got = engine
            .range_query_expr(&storage, &expr, start, end, step, None)
            .map_err(|e| format!("Cairn failed on {q}: {e}"))?;
        let QueryValue::Matrix(m) = &got.value else {
            return Err(format!("{q}: Cairn did not return a matrix"));
        };
        if cairn_only {
            let mut cairn = Vec::with_capacity(runs);
            for _ in 0..runs {
                let t0 = Instant::now();
                let r = engine
                    .range_query_expr(&storage, &expr, start, end, step, None)
                    .map_err(|e| format!("Cairn failed on {q}: {e}"))?;
                cairn.push(t0.elapsed().as_secs_f64() * 1e3);
                drop(r);
            }
            let min = cairn.iter().copied().fold(f64::INFINITY, f64::min);
            println!(
                "{name}: Cairn median {:.1} ms, min {min:.1} ms",
                median(&mut cairn)
            );
            continue;
        }
        // Warm-up and check: both sides once, compare.
        let want = prom_query_range(prom, q, start, end, step, true)?;
        let ranked = q.starts_with("topk") || q.starts_with("bottomk");
        let checked = if ranked {
            compare_ranked(m, &want.result).map(|(n, ties)| {
                if ties > 0 {
                    eprintln!("{name}: {ties} tie(s) at the cut picked differently (same values)");
                }
                n
            })
        } else {
            compare(m, &want.result)
        };
        let (nseries, points) = match checked {
            Ok(n) => (m.len(), n),
            Err(e) => {
                eprintln!("MISMATCH {name}: {q}\n  {e}");
                failed = true;
                continue;
            }
        };
        if nseries == 0 {
            eprintln!("EMPTY {name}: {q} selects nothing");
            failed = true;
            continue;
        }
        drop(got);

        let mut prom_exec = Vec::with_capacity(runs);
        let mut prom_wall = Vec::with_capacity(runs);
        let mut cairn = Vec::with_capacity(runs);
        // Interleaved, so that load from elsewhere on the machine hits both sides alike.
        for _ in 0..runs {
            let a = prom_query_range(prom, q, start, end, step, false)?;
            prom_exec.push(a.exec_s * 1e3);
            prom_wall.push(a.wall.as_secs_f64() * 1e3);
            let t0 = Instant::now();
            let r = engine
                .range_query_expr(&storage, &expr, start, end, step, None)
                .map_err(|e| format!("Cairn failed on {q}: {e}"))?;
            cairn.push(t0.elapsed().as_secs_f64() * 1e3);
            drop(r);
        }
        let row = Row {
            name,
            prom_exec: median(&mut prom_exec),
            prom_wall: median(&mut prom_wall),
            cairn: median(&mut cairn),
            series: nseries,
            points,
        };
        eprintln!(
            "{name}: Prometheus {:.1} ms, Cairn {:.1} ms",
            row.prom_exec, row.cairn
        );
        rows.push(row);
    }

    if cairn_only {
        return Ok(0);
    }
    println!();
    println!("| query | series | points | Prometheus exec ms | Prometheus HTTP ms | Cairn ms | speedup |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut ratios = Vec::new();
    for r in &rows {
        let ratio = r.prom_exec / r.cairn;
        ratios.push(ratio);
        println!(
            "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.2}x |",
            r.name, r.series, r.points, r.prom_exec, r.prom_wall, r.cairn, ratio
        );
    }
    println!();
    for (name, q) in QUERIES {
        if rows.iter().any(|r| r.name == *name) {
            println!("- {name}: `{q}`");
        }
    }
    println!();
    if failed {
        println!("RESULT: some queries did not match Prometheus (see above); no verdict");
        return Ok(2);
    }
    if ratios.is_empty() {
        return Err("no queries ran".into());
    }
    let slowest = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let med = median(&mut ratios.clone());
    let none_slower = slowest >= 1.0;
    let median_2x = med >= 2.0;
    println!(
        "median speedup {med:.2}x (target >= 2x: {}); slowest {slowest:.2}x (target: no query slower: {})",
        if median_2x { "met" } else { "MISSED" },
        if none_slower { "met" } else { "MISSED" },
    );
    let require = std::env::var("REQUIRE_TARGETS").is_ok_and(|v| v == "1");
    Ok(if require && !(none_slower && median_2x) {
        3
    } else {
        0
    })
}

/// The query range `run` and `run_http` use. Start an hour in (full windows for the 1 h increase
/// and the 30 m subquery), half a second past a whole second: windows then start and end at
/// .500 s, subquery steps at .000 s, and samples are at neither, so closed (2.42) and left-open
/// (3.x) windows hold the same samples. End at the last step inside the data.
fn query_range_of(meta: &Value, step: i64) -> Result<(i64, i64), String> {
    let data_start = meta["data_start_ms"].as_i64().ok_or("bad meta")?;
    let data_end = meta["data_end_ms"].as_i64().ok_or("bad meta")?;
    let start = (data_start + 3_600_000).div_euclid(60_000) * 60_000 + 60_000 + 30_500;
    let end = start + (data_end - 1 - start) / step * step;
    Ok((start, end))
}

/// Converts a Prometheus answer into the matrix shape `compare` takes.
fn as_range_series(m: &BTreeMap<Labels, Vec<(i64, f64)>>) -> Vec<RangeSeries> {
    m.iter()
        .map(|(labels, points)| RangeSeries {
            labels: labels.clone(),
            samples: points
                .iter()
                .map(|&(t, f)| promql::Sample::float(t, f))
                .collect(),
        })
        .collect()
}

/// Both HTTP APIs: check the answers agree, then time the round trips.
fn run_http(meta_path: &Path, prom: &str, cairn: &str) -> Result<u8, String> {
    let meta: Value = serde_json::from_slice(
        &std::fs::read(meta_path).map_err(|e| format!("reading {}: {e}", meta_path.display()))?,
    )
    .map_err(|e| e.to_string())?;
    let runs = env_num("RUNS", 7)? as usize;
    let step = env_num("STEP", 60)? as i64 * 1000;
    let only = std::env::var("QUERIES").ok();
    let (start, end) = query_range_of(&meta, step)?;
    println!(
        "data: {} series, {} samples; queries: {} steps of {} s over {:.1} h, {runs} timed runs each",
        meta["series"],
        meta["samples"],
        (end - start) / step + 1,
        step / 1000,
        (end - start) as f64 / 3.6e6
    );

    struct Row {
        name: &'static str,
        prom: f64,
        prom_exec: f64,
        cairn: f64,
        /// The first (checked) request: for a store gateway, index cache cold for its selectors.
        cairn_first: f64,
        series: usize,
    }
    let mut rows = Vec::new();
    let mut failed = false;
    for &(name, q) in QUERIES {
        if let Some(only) = &only {
            if !only.split(',').any(|x| x.trim() == name) {
                continue;
            }
        }
        // Warm-up and check.
        let want = prom_query_range(prom, q, start, end, step, true)?;
        let got = prom_query_range(cairn, q, start, end, step, true)?;
        let got_matrix = as_range_series(&got.result);
        let ranked = q.starts_with("topk") || q.starts_with("bottomk");
        let checked = if ranked {
            compare_ranked(&got_matrix, &want.result).map(|(n, _)| n)
        } else {
            compare(&got_matrix, &want.result)
        };
        if let Err(e) = checked {
            eprintln!("MISMATCH {name}: {q}\n  {e}");
            failed = true;
            continue;
        }
        if got_matrix.is_empty() {
            eprintln!("EMPTY {name}: {q} selects nothing");
            failed = true;
            continue;
        }
        let (mut p, mut pe, mut c) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            let a = prom_query_range(prom, q, start, end, step, false)?;
            p.push(a.wall.as_secs_f64() * 1e3);
            pe.push(a.exec_s * 1e3);
            let b = prom_query_range(cairn, q, start, end, step, false)?;
            c.push(b.wall.as_secs_f64() * 1e3);
        }
        let row = Row {
            name,
            prom: median(&mut p),
            prom_exec: median(&mut pe),
            cairn: median(&mut c),
            cairn_first: got.wall.as_secs_f64() * 1e3,
            series: got_matrix.len(),
        };
        eprintln!(
            "{name}: Prometheus {:.1} ms, cairn query {:.1} ms",
            row.prom, row.cairn
        );
        rows.push(row);
    }
    println!();
    println!(
        "| query | series | Prometheus ms (exec) | cairn query ms | Prometheus / Cairn | cairn first request ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let mut ratios = Vec::new();
    for r in &rows {
        let ratio = r.prom / r.cairn;
        ratios.push(ratio);
        println!(
            "| {} | {} | {:.1} ({:.1}) | {:.1} | {:.2}x | {:.1} |",
            r.name, r.series, r.prom, r.prom_exec, r.cairn, ratio, r.cairn_first
        );
    }
    println!();
    if failed {
        println!("RESULT: some answers differ (see above); no verdict");
        return Ok(2);
    }
    if ratios.is_empty() {
        return Err("no queries ran".into());
    }
    let med = median(&mut ratios.clone());
    let slowest = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let verdict = |target: f64| if med >= target { "met" } else { "MISSED" };
    println!(
        "median Prometheus / Cairn latency ratio {med:.2}x (no slower than Prometheus: {}; \
         at least 2x, the target of bench/query.sh in issue 18: {}); lowest {slowest:.2}x",
        verdict(1.0),
        verdict(2.0)
    );
    let require = std::env::var("REQUIRE_TARGETS").is_ok_and(|v| v == "1");
    Ok(if require && med < 1.0 { 3 } else { 0 })
}
