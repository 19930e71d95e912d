//! Native histogram loads for benchmarks.
//!
//! - [`wire_histogram`]: the integer native histogram `cairn bench remote-write
//!   --native-histograms N` sends for sample `k` of series `i`.
//! - `cairn bench histogram-target`: a scrape target serving `--series` native histograms in
//!   Prometheus' protobuf exposition format (`io.prometheus.client.MetricFamily`, delimited),
//!   which is what Prometheus 2.42 scrapes with `--enable-feature=native-histograms`. Every
//!   scrape advances every histogram by a deterministic step, so two scrapers see the same
//!   kind of data.
//!
//! Both use the same shape: schema 3 (buckets 2^(1/8) apart), `buckets` consecutive buckets
//! starting at index -buckets/2 (about 0.5x..2x around 1), counts growing by a per-bucket step.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use clap::Args;
use proto::exposition::{histogram_family, NativeHistogram};
use proto::remote_write::{BucketSpan, Histogram, HistogramCount};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bucket counts of series `i` after `k` steps.
fn counts(i: usize, k: u64, buckets: usize) -> Vec<u64> {
    (0..buckets)
        .map(|b| {
            let step = 1 + ((i * 7 + b * 3) % 5) as u64;
            1000 + step * k
        })
        .collect()
}

fn first_index(buckets: usize) -> i32 {
    -(buckets as i32 / 2)
}

/// The remote-write histogram for sample `k` of series `i`.
pub fn wire_histogram(i: usize, k: u64, buckets: usize, timestamp: i64) -> Histogram {
    let c = counts(i, k, buckets);
    let mut prev = 0i64;
    let deltas = c
        .iter()
        .map(|&x| {
            let d = x as i64 - prev;
            prev = x as i64;
            d
        })
        .collect();
    let count: u64 = c.iter().sum();
    Histogram {
        count: HistogramCount::Int(count),
        zero_count: HistogramCount::Int(0),
        sum: count as f64 * 1.25,
        schema: 3,
        zero_threshold: 1e-128,
        positive_spans: vec![BucketSpan {
            offset: first_index(buckets),
            length: buckets as u32,
        }],
        positive_deltas: deltas,
        timestamp,
        ..Default::default()
    }
}

#[derive(Args, Clone, Debug)]
pub struct TargetArgs {
    /// Address to serve /metrics on.
    #[arg(long, default_value = "127.0.0.1:9101")]
    pub listen: SocketAddr,
    /// Native histogram series (one metric family, label `series`).
    #[arg(long, default_value_t = 1000)]
    pub series: usize,
    /// Buckets per histogram.
    #[arg(long, default_value_t = 20)]
    pub buckets: usize,
}

/// The whole exposition after `k` scrapes: one `MetricFamily` of `series` histograms.
fn exposition(k: u64, series: usize, buckets: usize) -> Vec<u8> {
    let names: Vec<String> = (0..series).map(|i| i.to_string()).collect();
    let metrics: Vec<NativeHistogram<'_>> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let c = counts(i, k, buckets);
            let count: u64 = c.iter().sum();
            let mut prev = 0i64;
            NativeHistogram {
                labels: vec![("series", name.as_str())],
                count,
                sum: count as f64 * 1.25,
                schema: 3,
                zero_threshold: 1e-128,
                zero_count: 0,
                positive_spans: vec![(first_index(buckets), buckets as u32)],
                positive_deltas: c
                    .iter()
                    .map(|&x| {
                        let d = x as i64 - prev;
                        prev = x as i64;
                        d
                    })
                    .collect(),
            }
        })
        .collect();
    histogram_family(
        "bench_request_duration_seconds",
        "A native histogram per series.",
        &metrics,
    )
}

/// Serves the target until killed.
pub async fn serve(a: TargetArgs) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(a.listen).await?;
    eprintln!(
        "cairn bench histogram-target: {} series x {} buckets on http://{}/metrics",
        a.series,
        a.buckets,
        listener.local_addr()?
    );
    let scrapes = Arc::new(AtomicU64::new(0));
    loop {
        let (mut sock, _) = listener.accept().await?;
        let scrapes = scrapes.clone();
        let (series, buckets) = (a.series, a.buckets);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            let mut got = Vec::new();
            // Read the request head (scrapes are GETs without a body).
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match sock.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let k = scrapes.fetch_add(1, Ordering::Relaxed);
            let body = tokio::task::spawn_blocking(move || exposition(k, series, buckets))
                .await
                .unwrap_or_default();
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.google.protobuf; \
                 proto=io.prometheus.client.MetricFamily; encoding=delimited\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(&body).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_valid_and_grow() {
        for k in [0, 1, 50] {
            let h = wire_histogram(3, k, 20, 1000);
            let HistogramCount::Int(count) = h.count else {
                panic!("integer histogram");
            };
            let sum: i64 = h
                .positive_deltas
                .iter()
                .scan(0, |a, d| {
                    *a += d;
                    Some(*a)
                })
                .sum();
            assert_eq!(sum as u64, count);
        }
        // The exposition is one length-prefixed family.
        let e = exposition(2, 3, 4);
        let mut n = 0usize;
        let mut shift = 0;
        let mut i = 0;
        loop {
            n |= ((e[i] & 0x7f) as usize) << shift;
            shift += 7;
            i += 1;
            if e[i - 1] < 0x80 {
                break;
            }
        }
        assert_eq!(n + i, e.len());
    }
}
