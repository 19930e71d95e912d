//! `cairn compact`'s composition root: the bucket, the compactor, the iteration loop and the
//! HTTP endpoints (`/metrics`, `/-/healthy`, `/-/ready`).
//!
//! As Thanos' compactor: without `--wait` the compactor runs iterations until one finds nothing
//! to do and returns; with `--wait` it runs one every `--wait-interval` until shut down, and a
//! failed iteration is retried at the next. A halt (overlapping blocks without vertical
//! compaction, a damaged block) sets `thanos_compact_halted 1` and keeps the process up, serving
//! its metrics, until it is shut down: a human must look at the bucket first.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use objstore::BucketConfig;
use prometheus_client::registry::Registry;

use crate::compactor::{CompactError, Compactor, CompactorConfig, IterationReport};
use crate::metrics::CompactMetrics;

/// Everything `cairn compact` is run with.
#[derive(Clone, Debug)]
pub struct CompactServerConfig {
    pub objstore: BucketConfig,
    pub compactor: CompactorConfig,
    /// `--http-address`.
    pub http_address: SocketAddr,
    /// `--wait`: keep running, one iteration every `wait_interval`.
    pub wait: bool,
    /// `--wait-interval`.
    pub wait_interval: Duration,
}

/// How a run ended.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Compact(#[from] CompactError),
}

struct Http {
    registry: Registry,
    ready: AtomicBool,
}

/// Runs the compactor until its work is done (without `--wait`) or `shutdown` resolves.
pub async fn run(
    config: CompactServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let listener = tokio::net::TcpListener::bind(config.http_address).await?;
    serve(config, listener, shutdown).await
}

/// Like [`run`] with the HTTP listener already bound.
pub async fn serve(
    config: CompactServerConfig,
    http_listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let bucket = config.objstore.build().map_err(std::io::Error::other)?;
    std::fs::create_dir_all(&config.compactor.data_dir)?;
    let metrics = Arc::new(CompactMetrics::default());
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let compactor = Compactor::new(bucket, config.compactor.clone(), metrics.clone())
        .map_err(std::io::Error::other)?;
    let http = Arc::new(Http {
        registry,
        ready: AtomicBool::new(false),
    });
    tracing::info!(
        http = %http_listener.local_addr()?,
        data_dir = %config.compactor.data_dir.display(),
        wait = config.wait,
        replica_labels = ?config.compactor.replica_labels,
        "compactor starting"
    );

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let wait_stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stopped| *stopped).await;
    };
    let router = axum::Router::new()
        .route("/metrics", get(metrics_page))
        .route("/-/healthy", get(|| async { "OK" }))
        .route("/-/ready", get(ready))
        .with_state(http.clone());
    let server = {
        let stop = wait_stop(stop_rx.clone());
        tokio::spawn(async move {
            axum::serve(http_listener, router)
                .with_graceful_shutdown(stop)
                .await
        })
    };
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });

    http.ready.store(true, Ordering::Relaxed);
    let result = iterate(&compactor, &config, stop_rx.clone()).await;
    let result = match result {
        Err(CompactError::Halt(why)) => {
            tracing::error!(error = %why, "critical error detected; compactor halted (thanos_compact_halted 1), staying up for inspection until shut down");
            wait_stop(stop_rx.clone()).await;
            Err(CompactError::Halt(why))
        }
        other => other,
    };
    // Done (no --wait), shut down, or halted and then shut down: stop serving.
    server.abort();
    let _ = server.await;
    result.map_err(RunError::from)
}

/// The iteration loop; returns when the work is done (no `--wait`), on shutdown, or on a halt.
async fn iterate(
    compactor: &Compactor,
    config: &CompactServerConfig,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), CompactError> {
    loop {
        let started = std::time::Instant::now();
        let outcome = tokio::select! {
            r = compactor.run_once() => r,
            _ = stop.wait_for(|s| *s) => return Ok(()),
        };
        match outcome {
            Ok(report) => log_report(&report, started.elapsed()),
            Err(e) if e.is_halt() => return Err(e),
            Err(e) if !config.wait => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "compaction iteration failed; retrying at the next one")
            }
        }
        if !config.wait {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(config.wait_interval) => {}
            _ = stop.wait_for(|s| *s) => return Ok(()),
        }
    }
}

fn log_report(report: &IterationReport, took: Duration) {
    tracing::info!(
        compactions = report.compactions,
        vertical = report.vertical_compactions,
        marked_for_deletion = report.marked_for_deletion,
        deleted = report.deleted,
        took = ?took,
        "compaction iteration done"
    );
}

async fn metrics_page(State(http): State<Arc<Http>>) -> Response {
    let mut out = String::new();
    match prometheus_client::encoding::text::encode(&mut out, &http.registry) {
        Ok(()) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            out,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn ready(State(http): State<Arc<Http>>) -> Response {
    if http.ready.load(Ordering::Relaxed) {
        "OK".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
}
