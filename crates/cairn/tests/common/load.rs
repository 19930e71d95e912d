//! A remote-write client that behaves like Prometheus under failure, and remembers every
//! sample it got acknowledged, for the tests that must lose none.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{now_ms, remote_write_request, WriteSeries};

/// Writes rounds of `series` samples of `metric{series="sNNN"}` for the default tenant.
pub struct Writer {
    pub metric: String,
    pub series: usize,
    last_ts: i64,
    /// Series key (as [`super::store_samples`] names it) -> acknowledged timestamps.
    pub acked: BTreeMap<String, BTreeSet<i64>>,
    pub requests: u64,
    pub retries: u64,
    /// Requests that failed after every retry.
    pub failed: u64,
    /// What each failed attempt got, for the report.
    pub errors: Vec<String>,
}

impl Writer {
    pub fn new(metric: &str, series: usize) -> Writer {
        Writer {
            metric: metric.to_string(),
            series,
            last_ts: 0,
            acked: BTreeMap::new(),
            requests: 0,
            retries: 0,
            failed: 0,
            errors: Vec::new(),
        }
    }

    pub fn key(&self, i: usize) -> String {
        format!("__name__={},series=s{i:03}", self.metric)
    }

    /// One round (a sample for every series, all at one new timestamp) to `target`, retried as
    /// Prometheus' remote write retries 5xx answers and transport errors: backoff from 30 ms
    /// doubling to 5 s (its `min_backoff`/`max_backoff`). Prometheus retries without end; this
    /// writer gives up after 30 s and counts the request as failed, as it does a 4xx.
    pub fn round(&mut self, target: SocketAddr) {
        let ts = now_ms().max(self.last_ts + 1);
        self.last_ts = ts;
        let series: Vec<WriteSeries> = (0..self.series)
            .map(|i| {
                (
                    vec![
                        ("__name__".to_string(), self.metric.clone()),
                        ("series".to_string(), format!("s{i:03}")),
                    ],
                    vec![(ts, (ts % 1_000_000) as f64)],
                )
            })
            .collect();
        self.requests += 1;
        let give_up = Instant::now() + Duration::from_secs(30);
        let mut backoff = Duration::from_millis(30);
        for attempt in 0.. {
            if attempt > 0 {
                if Instant::now() + backoff > give_up {
                    break;
                }
                self.retries += 1;
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            match remote_write_request(target, "default-tenant", &series) {
                Ok(r) if r.status / 100 == 2 => {
                    for i in 0..self.series {
                        let key = self.key(i);
                        self.acked.entry(key).or_default().insert(ts);
                    }
                    return;
                }
                Ok(r) => {
                    self.errors
                        .push(format!("{target}: {} {}", r.status, r.body.trim()));
                    if r.status / 100 == 4 {
                        break;
                    }
                }
                Err(e) => self.errors.push(format!("{target}: {e}")),
            }
        }
        self.failed += 1;
    }

    /// Writes rounds to `targets` in turn, `pause` apart, for `how_long`; returns the requests
    /// that failed.
    pub fn run(&mut self, targets: &[SocketAddr], how_long: Duration, pause: Duration) -> u64 {
        let failed = self.failed;
        let end = Instant::now() + how_long;
        let mut k = 0;
        while Instant::now() < end {
            self.round(targets[k % targets.len()]);
            k += 1;
            std::thread::sleep(pause);
        }
        self.failed - failed
    }

    pub fn acked_samples(&self) -> usize {
        self.acked.values().map(BTreeSet::len).sum()
    }

    /// Acknowledged samples missing from `stored` (as [`super::store_samples`] returns it).
    pub fn missing_in(&self, stored: &BTreeMap<String, Vec<(i64, u64)>>) -> usize {
        self.acked
            .iter()
            .map(|(key, ts)| {
                let have: BTreeSet<i64> = stored
                    .get(key)
                    .map(|s| s.iter().map(|&(t, _)| t).collect())
                    .unwrap_or_default();
                ts.difference(&have).count()
            })
            .sum()
    }

    /// Acknowledged samples missing from an instant query's range-vector answer
    /// (`metric[range]` through `cairn query`).
    pub fn missing_in_query(&self, answer: &serde_json::Value) -> usize {
        let mut got: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
        for s in answer["data"]["result"].as_array().unwrap() {
            let key = format!(
                "__name__={},series={}",
                self.metric,
                s["metric"]["series"].as_str().unwrap()
            );
            let ts = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_f64().unwrap() * 1000.0).round() as i64);
            got.entry(key).or_default().extend(ts);
        }
        self.acked
            .iter()
            .map(|(key, ts)| {
                ts.difference(got.get(key).unwrap_or(&BTreeSet::new()))
                    .count()
            })
            .sum()
    }
}
