//! `cairn query`: the endpoint set kept up to date in the background and the HTTP API in front.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::api::{self, Api, ApiConfig};
use crate::endpoints::{EndpointConfig, EndpointSet};

/// Everything `cairn query` is configured with.
#[derive(Clone, Debug)]
pub struct QueryConfig {
    /// `--http-address`.
    pub http_address: SocketAddr,
    /// `--http.server-tls-*`: TLS (mutual with a client CA) on the HTTP port.
    pub http_tls: Option<tls::ServerFiles>,
    pub endpoints: EndpointConfig,
    pub api: ApiConfig,
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            http_address: ([0, 0, 0, 0], 10904).into(),
            http_tls: None,
            endpoints: EndpointConfig::default(),
            api: ApiConfig::default(),
        }
    }
}

/// Binds `config.http_address` and serves until `shutdown` resolves.
pub async fn run(
    config: QueryConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(config.http_address).await?;
    serve(config, listener, shutdown).await
}

/// Serves on an already bound listener until `shutdown` resolves, then lets open requests
/// finish.
pub async fn serve(
    config: QueryConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let endpoints = EndpointSet::new(config.endpoints.clone());
    if !config.endpoints.sd_files.is_empty() {
        let set = endpoints.clone();
        tokio::task::spawn_blocking(move || set.refresh_sd_files())
            .await
            .map_err(std::io::Error::other)?;
    }
    tracing::info!(
        http = %listener.local_addr()?,
        endpoints = ?endpoints.addresses(),
        sd_files = ?config.endpoints.sd_files,
        replica_labels = ?config.api.replica_labels,
        "query starting"
    );
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let updater = tokio::spawn(Arc::clone(&endpoints).run(async move {
        let _ = stop_rx.wait_for(|stopped| *stopped).await;
    }));
    let api = Api::new(config.api.clone(), endpoints);
    let router = api::router(api);
    let result = match &config.http_tls {
        None => {
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
        }
        Some(files) => {
            let tls = tls::ServerTls::load(files, &[b"h2", b"http/1.1"])
                .map_err(std::io::Error::other)?;
            axum::serve(tls::TlsListener::new(listener, tls)?, router)
                .with_graceful_shutdown(shutdown)
                .await
        }
    };
    let _ = stop_tx.send(true);
    let _ = updater.await;
    tracing::info!("query stopped");
    result
}
