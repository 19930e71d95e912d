//! `cairn up` monitoring itself: every interval it scrapes the `/metrics` of each of its
//! components and sends the samples to its own remote-write endpoint, so a first query has data
//! without configuring a Prometheus agent.
//!
//! The samples take the path any agent's would (remote write into the default tenant), which
//! keeps the receiver's ingest metrics honest and needs no shortcut into the TSDB. Labels follow
//! Prometheus' scrape defaults: `job` and `instance` (the component's address) are added, a
//! target's own `job`/`instance` become `exported_job`/`exported_instance`, and each target gets
//! an `up` series (1 when the scrape worked, 0 when it did not).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use proto::remote_write::{encode_v1, Label, Sample, TimeSeries, WriteRequest};

use crate::exposition;

/// What to scrape and where to write.
#[derive(Clone, Debug)]
pub struct SelfScrapeConfig {
    /// The `/metrics` listen addresses of the components.
    pub targets: Vec<SocketAddr>,
    /// The receiver's remote-write listen address.
    pub remote_write: SocketAddr,
    pub interval: Duration,
    pub job: String,
}

/// A listen address as a client reaches it: `0.0.0.0` / `::` mean "every interface", so the
/// loopback one is used.
fn reachable(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        let ip = match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        };
        SocketAddr::new(ip, addr.port())
    } else {
        addr
    }
}

/// One target's scrape, labelled as Prometheus would, as owned label pairs (sorted by name, as
/// remote write requires) and a value.
type Series = (Vec<(String, String)>, f64);

fn target_series(
    job: &str,
    instance: &str,
    scraped: Option<Vec<exposition::Sample>>,
) -> Vec<Series> {
    let target = |mut labels: Vec<(String, String)>| {
        for (name, _) in labels.iter_mut() {
            if name == "job" || name == "instance" {
                *name = format!("exported_{name}");
            }
        }
        labels.push(("job".to_string(), job.to_string()));
        labels.push(("instance".to_string(), instance.to_string()));
        labels.sort();
        // Duplicate names (malformed exposition) would be refused as a whole request.
        labels.dedup_by(|a, b| a.0 == b.0);
        labels
    };
    let up = if scraped.is_some() { 1.0 } else { 0.0 };
    let mut out = vec![(target(vec![("__name__".to_string(), "up".to_string())]), up)];
    for s in scraped.unwrap_or_default() {
        let mut labels: Vec<(String, String)> = s
            .labels
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .collect();
        labels.push(("__name__".to_string(), s.name));
        out.push((target(labels), s.value));
    }
    out
}

/// Encodes one scrape round as a snappy-compressed Remote Write 1.0 body.
fn encode(series: &[Series], timestamp_ms: i64) -> anyhow::Result<Vec<u8>> {
    let req = WriteRequest {
        timeseries: series
            .iter()
            .map(|(labels, value)| TimeSeries {
                labels: labels
                    .iter()
                    .map(|(name, value)| Label { name, value })
                    .collect(),
                samples: vec![Sample {
                    value: *value,
                    timestamp: timestamp_ms,
                }],
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    snap::raw::Encoder::new()
        .compress_vec(&encode_v1(&req))
        .context("snappy-compressing the self-scrape")
}

async fn scrape(client: &reqwest::Client, addr: SocketAddr) -> anyhow::Result<String> {
    let resp = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await?
        .error_for_status()?;
    Ok(resp.text().await?)
}

async fn round(client: &reqwest::Client, cfg: &SelfScrapeConfig) -> anyhow::Result<()> {
    let timestamp_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut series = Vec::new();
    for &target in &cfg.targets {
        let addr = reachable(target);
        let scraped = match scrape(client, addr).await {
            Ok(text) => {
                let (samples, errors) = exposition::parse(&text);
                if let Some(e) = errors.first() {
                    tracing::debug!(%addr, errors = errors.len(), first = %e, "self-scrape: malformed lines skipped");
                }
                Some(samples)
            }
            Err(e) => {
                tracing::debug!(%addr, error = %e, "self-scrape failed");
                None
            }
        };
        series.extend(target_series(&cfg.job, &addr.to_string(), scraped));
    }
    let body = encode(&series, timestamp_ms)?;
    client
        .post(format!(
            "http://{}/api/v1/receive",
            reachable(cfg.remote_write)
        ))
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .header(
            "User-Agent",
            concat!("cairn-self-scrape/", env!("CARGO_PKG_VERSION")),
        )
        .body(body)
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

/// Scrapes every `interval` until `stop` resolves. Failures are logged, never fatal: monitoring
/// must not take the process down.
pub async fn run(cfg: SelfScrapeConfig, stop: impl std::future::Future<Output = ()>) {
    let client = match reqwest::Client::builder()
        // A scrape that takes longer than the interval would overlap the next one.
        .timeout(cfg.interval)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "self-scrape disabled: no HTTP client");
            return;
        }
    };
    let mut ticker = tokio::time::interval(cfg.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    // The first tick fires at once, while the listeners may still be binding; a short grace
    // keeps the first round from recording every component as down.
    tokio::select! {
        _ = &mut stop => return,
        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
    }
    let mut failing = false;
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = ticker.tick() => {}
        }
        match round(&client, &cfg).await {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("self-scrape: writing again");
            }
            Ok(()) => {}
            // Warn once per failure streak, not every 15 s.
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %format!("{e:#}"), "self-scrape: remote write failed");
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_follow_prometheus_scrape_defaults() {
        let (samples, _) = exposition::parse(
            "a_total{job=\"x\",code=\"200\",empty=\"\"} 3\nb{instance=\"i\"} 1\n",
        );
        let series = target_series("cairn", "127.0.0.1:1", Some(samples));
        let names = |s: &Series| s.0.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(series.len(), 3);
        assert_eq!(series[0].1, 1.0);
        assert_eq!(
            series[0].0,
            [
                ("__name__", "up"),
                ("instance", "127.0.0.1:1"),
                ("job", "cairn")
            ]
            .map(|(n, v)| (n.to_string(), v.to_string()))
        );
        assert_eq!(
            names(&series[1]),
            ["__name__", "code", "exported_job", "instance", "job"]
        );
        assert_eq!(
            names(&series[2]),
            ["__name__", "exported_instance", "instance", "job"]
        );
        for s in &series {
            assert!(s.0.windows(2).all(|w| w[0].0 < w[1].0), "{s:?}");
        }
    }

    #[test]
    fn a_failed_scrape_is_up_zero() {
        let series = target_series("cairn", "127.0.0.1:1", None);
        assert_eq!(series.len(), 1);
        assert_eq!(series[0].1, 0.0);
    }

    #[test]
    fn unspecified_addresses_are_reached_on_loopback() {
        assert_eq!(
            reachable("0.0.0.0:9090".parse().unwrap()),
            "127.0.0.1:9090".parse().unwrap()
        );
        assert_eq!(
            reachable("[::]:9090".parse().unwrap()),
            "[::1]:9090".parse().unwrap()
        );
        assert_eq!(
            reachable("10.0.0.1:9090".parse().unwrap()),
            "10.0.0.1:9090".parse().unwrap()
        );
    }

    #[test]
    fn a_round_decodes_as_remote_write() {
        let series = target_series("cairn", "127.0.0.1:1", None);
        let body = encode(&series, 1_000).unwrap();
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        let req = proto::remote_write::decode_v1(&raw).unwrap();
        assert_eq!(req.timeseries.len(), 1);
        assert_eq!(req.timeseries[0].samples[0].timestamp, 1_000);
        assert_eq!(req.timeseries[0].labels[0].value, "up");
    }
}
