//! `cairn bench remote-write`: a remote-write load generator.
//!
//! It builds a node-exporter-like population of `--series` series (8 labels each), encodes every
//! request of the run up front (Remote Write 1.0, snappy raw block), and only then starts the
//! clock and sends them with `--concurrency` workers over keep-alive connections. Rounds go in
//! order: round r+1 starts once every request of round r has been answered, so no receiver ever
//! sees a sample older than one it already has for the same series.
//!
//! Timestamps: sample k of a series (k = round * samples-per-series + i) is at
//! `base + k * interval`, with `base` chosen so the newest sample is a minute before the run
//! starts. The whole run must span at most an hour, so that every receiver (Prometheus' head,
//! VictoriaMetrics' retention, Cairn's head) accepts every sample.
//!
//! The result is one line of JSON on stdout; any non-2xx answer or transport error is counted,
//! the first one is quoted, and the command then fails.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use proto::remote_write::{encode_v1, Label, Sample, TimeSeries, WriteRequest};
use receive::config::parse_duration;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Send a pre-encoded Remote Write 1.0 load to an endpoint and report samples/s.
    RemoteWrite(RemoteWriteArgs),
    /// Serve a scrape target of native histograms in Prometheus' protobuf exposition format.
    HistogramTarget(crate::bench_histograms::TargetArgs),
}

#[derive(Args, Clone, Debug)]
pub struct RemoteWriteArgs {
    /// Remote-write endpoint, e.g. http://127.0.0.1:19291/api/v1/receive. Several,
    /// comma-separated, spread the workers over a pool of receivers.
    #[arg(long)]
    pub url: String,
    /// Number of distinct series.
    #[arg(long, default_value_t = 10_000)]
    pub series: usize,
    /// Rounds; each round sends `samples-per-series` new samples of every series.
    #[arg(long, default_value_t = 30)]
    pub rounds: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Samples of each series in one round (consecutive timestamps, one interval apart).
    #[arg(long = "samples-per-series", default_value_t = 1)]
    pub samples_per_series: usize,
    /// Series per request (Prometheus 2.42 sends at most 500 samples per request by default).
    #[arg(long = "batch-series", default_value_t = 500)]
    pub batch_series: usize,
    /// Time between two samples of a series.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Per-request timeout.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Extra request header `Name: value` (e.g. a tenant header); repeatable.
    #[arg(long = "header", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    /// Send integer native histograms with this many buckets instead of float samples (0: floats).
    #[arg(long = "native-histograms", default_value_t = 0)]
    pub native_histograms: usize,
}

/// Parses `Name: value`.
pub fn parse_header(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("invalid header {s:?}: expected 'Name: value'"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("invalid header {s:?}: empty name"));
    }
    Ok((name.to_string(), value.trim().to_string()))
}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::RemoteWrite(args) => remote_write(args).await,
        BenchCommand::HistogramTarget(args) => crate::bench_histograms::serve(args).await,
    }
}

/// Longest time range a run may cover (see the module documentation).
const MAX_SPAN: Duration = Duration::from_secs(3600);

const METRICS: [&str; 20] = [
    "node_cpu_seconds_total",
    "node_network_receive_bytes_total",
    "node_network_transmit_bytes_total",
    "node_network_receive_packets_total",
    "node_network_transmit_packets_total",
    "node_disk_read_bytes_total",
    "node_disk_written_bytes_total",
    "node_disk_reads_completed_total",
    "node_disk_writes_completed_total",
    "node_disk_io_time_seconds_total",
    "node_context_switches_total",
    "node_intr_total",
    "node_forks_total",
    "node_vmstat_pgfault",
    "node_vmstat_pgmajfault",
    "node_netstat_Tcp_InSegs",
    "node_netstat_Tcp_OutSegs",
    "node_schedstat_running_seconds_total",
    "node_schedstat_waiting_seconds_total",
    "node_pressure_cpu_waiting_seconds_total",
];
const MODES: [&str; 8] = [
    "idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user",
];
const REGIONS: [&str; 3] = ["eu-west-1", "us-east-1", "ap-south-1"];
/// Series per simulated host (`instance`): 20 metrics x 5 `cpu` values.
const SERIES_PER_HOST: usize = 100;

/// The labels of series `i`, sorted by name; unique per `i` (instance, __name__, cpu).
fn series_labels(i: usize) -> [(&'static str, String); 8] {
    let host = i / SERIES_PER_HOST;
    let j = i % SERIES_PER_HOST;
    [
        ("__name__", METRICS[j % METRICS.len()].to_string()),
        ("cluster", format!("c{}", host % 4)),
        ("cpu", (j / METRICS.len()).to_string()),
        ("env", "prod".to_string()),
        (
            "instance",
            format!(
                "10.{}.{}.{}:9100",
                (host >> 16) & 255,
                (host >> 8) & 255,
                host & 255
            ),
        ),
        ("job", "node".to_string()),
        ("mode", MODES[j % MODES.len()].to_string()),
        ("region", REGIONS[host % REGIONS.len()].to_string()),
    ]
}

/// A counter: a per-series start and rate, with a little deterministic jitter.
fn counter_value(series: usize, k: usize) -> f64 {
    let start = ((series as u64 * 7919) % 100_000) as f64;
    let rate = 0.5 + (series % 13) as f64 * 0.25;
    let mut v = start;
    // Closed form would lose the jitter; k is small (at most a few hundred).
    for step in 0..k {
        v += rate * (1.0 + ((step * 31 + series) % 7) as f64 / 100.0);
    }
    v
}

/// One pre-encoded request.
struct Body {
    bytes: Vec<u8>,
    samples: usize,
}

/// What the load was built from, for the summary.
struct Plan {
    rounds: Vec<Vec<Body>>,
    samples: usize,
    requests: usize,
    raw_bytes: usize,
    compressed_bytes: usize,
    first_ts: i64,
    last_ts: i64,
}

/// CPU time (user + system) this process has used so far, from `/proc/self/stat` (Linux; USER_HZ
/// is 100 on every Linux architecture Cairn builds for). `None` elsewhere.
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name start at field 3 (state).
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Busy CPU time of the whole machine so far (user, nice, system, irq, softirq, steal), from
/// `/proc/stat`, so a run can tell how much else was running meanwhile. `None` elsewhere.
fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<f64> = line
        .split_ascii_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    let at = |i: usize| f.get(i).copied().unwrap_or(0.0);
    // user nice system idle iowait irq softirq steal
    Some((at(0) + at(1) + at(2) + at(5) + at(6) + at(7)) / 100.0)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn build_plan(a: &RemoteWriteArgs, now: i64) -> anyhow::Result<Plan> {
    let per_series = a.rounds * a.samples_per_series;
    let interval = a.interval.as_millis() as i64;
    let span = interval * (per_series as i64 - 1);
    if span > MAX_SPAN.as_millis() as i64 {
        bail!(
            "the run would span {}s of sample time ({} samples per series, {}ms apart); keep it \
             within {}s so every receiver accepts every sample: lower --rounds, \
             --samples-per-series or --interval",
            span / 1000,
            per_series,
            interval,
            MAX_SPAN.as_secs()
        );
    }
    // The newest sample is a minute old when the run starts.
    let base = now - 60_000 - span;
    let labels: Vec<[(&'static str, String); 8]> = (0..a.series).map(series_labels).collect();
    let mut values: Vec<f64> = (0..a.series).map(|i| counter_value(i, 0)).collect();
    let rates: Vec<f64> = (0..a.series)
        .map(|i| 0.5 + (i % 13) as f64 * 0.25)
        .collect();
    let mut encoder = snap::raw::Encoder::new();
    let mut plan = Plan {
        rounds: Vec::with_capacity(a.rounds),
        samples: 0,
        requests: 0,
        raw_bytes: 0,
        compressed_bytes: 0,
        first_ts: base,
        last_ts: base + span,
    };
    let all: Vec<usize> = (0..a.series).collect();
    for r in 0..a.rounds {
        let mut bodies = Vec::with_capacity(a.series.div_ceil(a.batch_series));
        for batch in all.chunks(a.batch_series) {
            let mut req = WriteRequest::default();
            for &i in batch {
                let mut samples = Vec::with_capacity(a.samples_per_series);
                let mut histograms = Vec::new();
                for s in 0..a.samples_per_series {
                    let k = r * a.samples_per_series + s;
                    if k > 0 {
                        values[i] += rates[i] * (1.0 + (((k - 1) * 31 + i) % 7) as f64 / 100.0);
                    }
                    let timestamp = base + k as i64 * interval;
                    if a.native_histograms > 0 {
                        histograms.push(crate::bench_histograms::wire_histogram(
                            i,
                            k as u64,
                            a.native_histograms,
                            timestamp,
                        ));
                    } else {
                        samples.push(Sample {
                            value: values[i],
                            timestamp,
                        });
                    }
                }
                req.timeseries.push(TimeSeries {
                    labels: labels[i]
                        .iter()
                        .map(|(name, value)| Label {
                            name,
                            value: value.as_str(),
                        })
                        .collect(),
                    samples,
                    histograms,
                    ..Default::default()
                });
            }
            let raw = encode_v1(&req);
            let bytes = encoder
                .compress_vec(&raw)
                .context("snappy-compressing a request")?;
            let samples = batch.len() * a.samples_per_series;
            plan.samples += samples;
            plan.requests += 1;
            plan.raw_bytes += raw.len();
            plan.compressed_bytes += bytes.len();
            bodies.push(Body { bytes, samples });
        }
        plan.rounds.push(bodies);
    }
    Ok(plan)
}

/// What one worker saw.
#[derive(Default)]
struct WorkerStats {
    ok_requests: usize,
    accepted: usize,
    errors: usize,
    /// Samples of failed requests.
    failed_samples: usize,
    first_error: Option<String>,
    latencies: Vec<Duration>,
}

impl WorkerStats {
    fn merge(&mut self, o: WorkerStats) {
        self.ok_requests += o.ok_requests;
        self.accepted += o.accepted;
        self.errors += o.errors;
        self.failed_samples += o.failed_samples;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
        self.latencies.extend(o.latencies);
    }

    fn fail(&mut self, samples: usize, what: String) {
        self.errors += 1;
        self.failed_samples += samples;
        if self.first_error.is_none() {
            self.first_error = Some(what);
        }
    }
}

type Queue = Arc<Mutex<std::vec::IntoIter<Body>>>;

async fn worker(
    client: reqwest::Client,
    url: Arc<str>,
    headers: reqwest::header::HeaderMap,
    queue: Queue,
) -> WorkerStats {
    let mut st = WorkerStats::default();
    loop {
        let Some(body) = queue.lock().unwrap().next() else {
            break;
        };
        let started = Instant::now();
        let result = client
            .post(&*url)
            .headers(headers.clone())
            .body(body.bytes)
            .send()
            .await;
        match result {
            Ok(resp) => {
                let status = resp.status();
                // Read the body in full so the connection is reused.
                let text = resp.bytes().await;
                st.latencies.push(started.elapsed());
                match text {
                    Ok(_) if status.is_success() => {
                        st.ok_requests += 1;
                        st.accepted += body.samples;
                    }
                    Ok(b) => {
                        let b = String::from_utf8_lossy(&b);
                        let b: String = b.chars().take(500).collect();
                        st.fail(
                            body.samples,
                            format!("HTTP {}: {}", status.as_u16(), b.trim()),
                        );
                    }
                    Err(e) => st.fail(
                        body.samples,
                        format!("HTTP {}: reading the body: {e}", status.as_u16()),
                    ),
                }
            }
            Err(e) => {
                st.latencies.push(started.elapsed());
                st.fail(body.samples, format!("request failed: {}", error_chain(&e)));
            }
        }
    }
    st
}

/// An error and its sources, `a: b: c` (reqwest's own message omits the cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let _ = write!(s, ": {c}");
        cur = c.source();
    }
    s
}

fn header_map(a: &RemoteWriteArgs) -> anyhow::Result<reqwest::header::HeaderMap> {
    use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
    let mut h = HeaderMap::new();
    h.insert(
        "Content-Type",
        HeaderValue::from_static("application/x-protobuf"),
    );
    h.insert("Content-Encoding", HeaderValue::from_static("snappy"));
    h.insert(
        "X-Prometheus-Remote-Write-Version",
        HeaderValue::from_static("0.1.0"),
    );
    h.insert(
        "User-Agent",
        HeaderValue::from_static(concat!("cairn-bench/", env!("CARGO_PKG_VERSION"))),
    );
    for (name, value) in &a.headers {
        let n = HeaderName::from_bytes(name.as_bytes())
            .with_context(|| format!("invalid header name {name:?}"))?;
        let v = HeaderValue::from_str(value)
            .with_context(|| format!("invalid header value {value:?}"))?;
        h.append(n, v);
    }
    Ok(h)
}

/// The `q`-quantile of sorted durations, in milliseconds.
fn quantile_ms(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// A JSON string literal.
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

async fn remote_write(a: RemoteWriteArgs) -> anyhow::Result<()> {
    if a.series == 0 || a.rounds == 0 || a.samples_per_series == 0 {
        bail!("--series, --rounds and --samples-per-series must be at least 1");
    }
    if a.concurrency == 0 || a.batch_series == 0 {
        bail!("--concurrency and --batch-series must be at least 1");
    }
    let urls: Vec<Arc<str>> = a.url.split(',').map(|u| Arc::from(u.trim())).collect();
    if urls.iter().any(|u| !u.starts_with("http://")) {
        bail!("--url must be an http:// URL (this client speaks plain HTTP only)");
    }
    let headers = header_map(&a)?;

    let encode_started = Instant::now();
    let plan = build_plan(&a, now_ms())?;
    eprintln!(
        "cairn bench: encoded {} requests ({} samples, {} series x {} rounds x {} samples, \
         {} series/request; {:.1} MB protobuf, {:.1} MB snappy) in {:.2}s; timestamps {}..{} ms",
        plan.requests,
        plan.samples,
        a.series,
        a.rounds,
        a.samples_per_series,
        a.batch_series,
        plan.raw_bytes as f64 / 1e6,
        plan.compressed_bytes as f64 / 1e6,
        encode_started.elapsed().as_secs_f64(),
        plan.first_ts,
        plan.last_ts,
    );

    let client = reqwest::Client::builder()
        .timeout(a.timeout)
        .connect_timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(a.concurrency)
        .tcp_nodelay(true)
        .build()
        .context("building the HTTP client")?;
    let mut total = WorkerStats::default();
    let (requests, samples) = (plan.requests, plan.samples);

    let cpu_before = process_cpu_seconds();
    let busy_before = machine_busy_seconds();
    let started = Instant::now();
    for round in plan.rounds {
        let queue: Queue = Arc::new(Mutex::new(round.into_iter()));
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..a.concurrency {
            tasks.spawn(worker(
                client.clone(),
                urls[w % urls.len()].clone(),
                headers.clone(),
                queue.clone(),
            ));
        }
        while let Some(r) = tasks.join_next().await {
            total.merge(r.context("a bench worker panicked")?);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let delta = |before: Option<f64>, after: Option<f64>| match (before, after) {
        (Some(a), Some(b)) => format!("{:.2}", b - a),
        _ => "null".to_string(),
    };
    let cpu = delta(cpu_before, process_cpu_seconds());
    let busy = delta(busy_before, machine_busy_seconds());

    total.latencies.sort_unstable();
    let ok = total.errors == 0;
    let line = format!(
        "{{\"url\":{},\"series\":{},\"rounds\":{},\"samples_per_series\":{},\"batch_series\":{},\
         \"concurrency\":{},\"requests\":{},\"requests_ok\":{},\"errors\":{},\"samples_sent\":{},\
         \"samples_accepted\":{},\"seconds\":{:.3},\"samples_per_second\":{:.0},\
         \"latency_p50_ms\":{:.2},\"latency_p99_ms\":{:.2},\"latency_max_ms\":{:.2},\
         \"body_bytes\":{},\"loadgen_cpu_seconds\":{},\"machine_busy_cpu_seconds\":{},\"ok\":{},\"first_error\":{}}}",
        json_str(&a.url),
        a.series,
        a.rounds,
        a.samples_per_series,
        a.batch_series,
        a.concurrency,
        requests,
        total.ok_requests,
        total.errors,
        samples,
        total.accepted,
        seconds,
        total.accepted as f64 / seconds.max(1e-9),
        quantile_ms(&total.latencies, 0.5),
        quantile_ms(&total.latencies, 0.99),
        quantile_ms(&total.latencies, 1.0),
        plan.compressed_bytes,
        cpu,
        busy,
        ok,
        total
            .first_error
            .as_deref()
            .map_or_else(|| "null".to_string(), json_str),
    );
    println!("{line}");
    if !ok {
        bail!(
            "{} of {} requests failed ({} samples); first: {}",
            total.errors,
            requests,
            total.failed_samples,
            total.first_error.unwrap_or_default()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(series: usize, rounds: usize, sps: usize, batch: usize) -> RemoteWriteArgs {
        RemoteWriteArgs {
            url: "http://127.0.0.1:1/api/v1/write".into(),
            series,
            rounds,
            concurrency: 2,
            samples_per_series: sps,
            batch_series: batch,
            interval: Duration::from_secs(15),
            timeout: Duration::from_secs(1),
            headers: vec![],
            native_histograms: 0,
        }
    }

    #[test]
    fn labels_are_sorted_unique_and_valid() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..5000 {
            let l = series_labels(i);
            assert!(l.windows(2).all(|w| w[0].0 < w[1].0), "{l:?}");
            assert!(l.iter().all(|(_, v)| !v.is_empty()));
            assert!(seen.insert(l.clone()), "duplicate labels for series {i}");
        }
    }

    #[test]
    fn plan_decodes_with_increasing_timestamps_and_counters() {
        let now = 1_700_000_000_000;
        let plan = build_plan(&args(250, 3, 2, 100), now).unwrap();
        assert_eq!(plan.requests, 9);
        assert_eq!(plan.samples, 250 * 3 * 2);
        assert_eq!(plan.last_ts, now - 60_000);
        assert_eq!(plan.first_ts, now - 60_000 - 5 * 15_000);
        let mut last: std::collections::HashMap<String, (i64, f64)> = Default::default();
        for round in &plan.rounds {
            assert_eq!(round.len(), 3);
            for body in round {
                let raw = snap::raw::Decoder::new()
                    .decompress_vec(&body.bytes)
                    .unwrap();
                let req = proto::remote_write::decode_v1(&raw).unwrap();
                assert_eq!(req.num_samples(), body.samples);
                for ts in &req.timeseries {
                    assert_eq!(ts.labels.len(), 8);
                    let key = format!("{:?}", ts.labels);
                    for s in &ts.samples {
                        if let Some(&(t, v)) = last.get(&key) {
                            assert_eq!(s.timestamp, t + 15_000);
                            assert!(s.value > v);
                        }
                        last.insert(key.clone(), (s.timestamp, s.value));
                    }
                }
            }
        }
        assert_eq!(last.len(), 250);
        // The incremental values match the closed loop.
        let k = 5;
        let key = format!(
            "{:?}",
            series_labels(7)
                .iter()
                .map(|(n, v)| Label {
                    name: n,
                    value: v.as_str()
                })
                .collect::<Vec<_>>()
        );
        assert_eq!(last[&key].1, counter_value(7, k));
    }

    #[test]
    fn long_runs_are_refused() {
        assert!(build_plan(&args(10, 300, 1, 10), 0).is_err());
        assert!(build_plan(&args(10, 240, 1, 10), 0).is_ok());
    }

    #[test]
    fn headers_and_json() {
        assert_eq!(
            parse_header("THANOS-TENANT: a").unwrap(),
            ("THANOS-TENANT".into(), "a".into())
        );
        assert!(parse_header("nocolon").is_err());
        assert_eq!(json_str("a\"b\\\n\u{1}"), r#""a\"b\\\n\u0001""#);
        assert!(process_cpu_seconds().is_some_and(|s| s >= 0.0));
        assert!(machine_busy_seconds().is_some_and(|s| s > 0.0));
    }
}
