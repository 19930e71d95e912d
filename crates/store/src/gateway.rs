//! `cairn store`: the store gateway's composition root (Thanos' `cmd/thanos/store.go`). It
//! builds the bucket, the meta fetcher with Thanos' store filters, the index cache and the
//! [`BucketStore`], and serves the StoreAPI on the gRPC port and `/metrics`, `/-/healthy`,
//! `/-/ready` on the HTTP port. Not ready until the first sync with the bucket succeeded: an
//! unreachable bucket keeps the process up, retrying at every sync interval.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use model::time::TimeOrDuration;
use objstore::fetcher::{MetaFetcher, MetaFilter};
use objstore::filters::{
    DeduplicateFilter, IgnoreDeletionMarkFilter, LabelShardFilter, TimePartitionFilter,
};
use objstore::relabel::RelabelConfig;
use objstore::BucketConfig;
use prometheus_client::registry::Registry;

use crate::bucket::cache::{IndexCache, DEFAULT_MAX_SIZE_BYTES};
use crate::bucket::chunks_cache::{ChunksCache, ChunksCacheConfig};
use crate::bucket::grpc::BucketStoreService;
use crate::bucket::store::{sync_loop, BucketStore, BucketStoreConfig, BucketStoreMetrics};

/// Everything `cairn store` is configured with; flags are Thanos'.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    pub objstore: BucketConfig,
    pub grpc_address: SocketAddr,
    /// `--grpc-server-tls-*`: TLS (and with a client CA, mutual TLS) on the gRPC listener.
    pub grpc_tls: Option<tls::ServerFiles>,
    pub http_address: SocketAddr,
    /// `--sync-block-duration`.
    pub sync_interval: Duration,
    /// `--min-time` / `--max-time`.
    pub min_time: TimeOrDuration,
    pub max_time: TimeOrDuration,
    /// `--selector.relabel-config(-file)`.
    pub relabel_configs: Vec<RelabelConfig>,
    /// `--ignore-deletion-marks-delay`.
    pub ignore_deletion_marks_delay: Duration,
    /// `--index-cache-size` or the index cache config's `max_size`.
    pub index_cache_bytes: u64,
    /// The index cache config's `max_item_size`.
    pub index_cache_max_item_bytes: u64,
    /// `--store.caching-bucket.config(-file)`: the chunks cache (on by default, see
    /// [`crate::bucket::chunks_cache::DEFAULT_MAX_SIZE_BYTES`]).
    pub chunks_cache: ChunksCacheConfig,
    pub store: BucketStoreConfig,
}

impl GatewayConfig {
    /// Thanos' defaults over `objstore`, with `data_dir` for index-headers.
    pub fn new(objstore: BucketConfig, data_dir: PathBuf) -> Self {
        GatewayConfig {
            objstore,
            grpc_address: ([0, 0, 0, 0], 10901).into(),
            grpc_tls: None,
            http_address: ([0, 0, 0, 0], 10902).into(),
            sync_interval: Duration::from_secs(3 * 60),
            min_time: TimeOrDuration::EARLIEST,
            max_time: TimeOrDuration::LATEST,
            relabel_configs: Vec::new(),
            ignore_deletion_marks_delay: Duration::from_secs(24 * 3600),
            index_cache_bytes: DEFAULT_MAX_SIZE_BYTES,
            index_cache_max_item_bytes: DEFAULT_MAX_SIZE_BYTES / 2,
            chunks_cache: ChunksCacheConfig::default(),
            store: BucketStoreConfig::new(data_dir),
        }
    }
}

/// The index cache config file (`--index-cache.config-file`), in Thanos' format. Only the
/// `IN-MEMORY` type exists here.
#[derive(Debug, serde::Deserialize)]
struct IndexCacheFile {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    config: InMemoryCacheConfig,
}

#[derive(Debug, Default, serde::Deserialize)]
struct InMemoryCacheConfig {
    max_size: Option<String>,
    max_item_size: Option<String>,
}

/// Parses Thanos' byte sizes (`250MB`, `1GiB`, `512KB`, `1000`): the units are powers of 1024
/// whether written `MB` or `MiB`, as in Thanos' `flagext.Bytes` (alecthomas/units base-2).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid byte size {s:?}: expected a number and a unit like 250MB"))?;
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "KB" | "KIB" | "K" => 10,
        "MB" | "MIB" | "M" => 20,
        "GB" | "GIB" | "G" => 30,
        "TB" | "TIB" | "T" => 40,
        _ => return Err(format!("invalid byte size {s:?}: unknown unit {unit:?}")),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("invalid byte size {s:?}: too large"))
}

/// Reads an index cache config: `(max_size, max_item_size)` in bytes.
pub fn parse_index_cache_config(yaml: &str) -> Result<(u64, u64), String> {
    let file: IndexCacheFile =
        model::yaml::from_str(yaml).map_err(|e| format!("index cache config: {e}"))?;
    if !file.kind.eq_ignore_ascii_case("IN-MEMORY") {
        return Err(format!(
            "index cache config: type {:?} is not supported (only IN-MEMORY)",
            file.kind
        ));
    }
    let max = match &file.config.max_size {
        Some(s) => parse_bytes(s)?,
        None => DEFAULT_MAX_SIZE_BYTES,
    };
    let item = match &file.config.max_item_size {
        Some(s) => parse_bytes(s)?,
        None => DEFAULT_MAX_SIZE_BYTES / 2,
    };
    if item > max {
        return Err(format!(
            "index cache config: max_item_size ({item} bytes) is larger than max_size ({max} bytes)"
        ));
    }
    Ok((max, item))
}

/// The caching bucket config file (`--store.caching-bucket.config-file`), in Thanos' format.
/// Only chunk subranges are cached, in memory; the TTL and metafile fields are accepted and
/// have no effect (segment files never change, and the in-memory backend has no expiry).
#[derive(Debug, serde::Deserialize)]
struct CachingBucketFile {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    config: InMemoryCacheConfig,
    chunk_subrange_size: Option<u64>,
    max_chunks_get_range_requests: Option<i64>,
    #[serde(flatten)]
    _ignored: std::collections::BTreeMap<String, serde::de::IgnoredAny>,
}

/// Reads a caching bucket config. `type: NONE` (a Cairn addition, Thanos has no chunks cache
/// without a config) or `max_size: 0` turns the cache off.
pub fn parse_caching_bucket_config(yaml: &str) -> Result<ChunksCacheConfig, String> {
    let file: CachingBucketFile =
        model::yaml::from_str(yaml).map_err(|e| format!("caching bucket config: {e}"))?;
    if file.kind.eq_ignore_ascii_case("NONE") {
        return Ok(ChunksCacheConfig::disabled());
    }
    if !file.kind.eq_ignore_ascii_case("IN-MEMORY") {
        return Err(format!(
            "caching bucket config: type {:?} is not supported (only IN-MEMORY, or NONE)",
            file.kind
        ));
    }
    let defaults = ChunksCacheConfig::default();
    let max_size = match &file.config.max_size {
        Some(s) => parse_bytes(s)?,
        None => defaults.max_size,
    };
    let max_item_size = match &file.config.max_item_size {
        Some(s) => parse_bytes(s)?,
        None => max_size / 2,
    };
    if max_item_size > max_size {
        return Err(format!(
            "caching bucket config: max_item_size ({max_item_size} bytes) is larger than \
             max_size ({max_size} bytes)"
        ));
    }
    let subrange_size = match file.chunk_subrange_size {
        Some(0) => {
            return Err("caching bucket config: chunk_subrange_size must be positive".into())
        }
        Some(n) => n,
        None => defaults.subrange_size,
    };
    Ok(ChunksCacheConfig {
        max_size,
        max_item_size,
        subrange_size,
        // Thanos: zero or negative means no limit.
        max_get_range_requests: match file.max_chunks_get_range_requests {
            Some(n) if n <= 0 => 0,
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            None => defaults.max_get_range_requests,
        },
    })
}

/// What the HTTP handlers read.
struct Http {
    store: Arc<BucketStore>,
    registry: Registry,
}

async fn metrics(State(http): State<Arc<Http>>) -> Response {
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
    if http.store.is_ready() {
        (StatusCode::OK, "OK").into_response()
    } else {
        let why = http
            .store
            .last_sync_error()
            .unwrap_or_else(|| "the first sync with the bucket has not finished".into());
        (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}")).into_response()
    }
}

/// Builds the store from `config`: bucket, fetcher with Thanos' store filters, cache.
pub fn build(config: &GatewayConfig) -> std::io::Result<(Arc<BucketStore>, Registry)> {
    let bucket = config.objstore.build().map_err(std::io::Error::other)?;
    let concurrency = config.store.block_sync_concurrency.max(1);
    // Thanos' store order: time partition, label shard, deletion marks, deduplication.
    let filters: Vec<Arc<dyn MetaFilter>> = vec![
        Arc::new(TimePartitionFilter {
            min_time: config.min_time,
            max_time: config.max_time,
        }),
        Arc::new(LabelShardFilter::new(config.relabel_configs.clone(), &[])),
        Arc::new(IgnoreDeletionMarkFilter::new(
            bucket.clone(),
            config.ignore_deletion_marks_delay,
            concurrency,
        )),
        Arc::new(DeduplicateFilter::new()),
    ];
    let fetcher = MetaFetcher::new(
        bucket.clone(),
        Some(&config.store.data_dir),
        concurrency,
        filters,
    )
    .map_err(std::io::Error::other)?;
    let cache = Arc::new(IndexCache::new(
        config.index_cache_bytes,
        config.index_cache_max_item_bytes,
    ));
    let chunks_cache = Arc::new(ChunksCache::new(config.chunks_cache.clone()));
    let metrics = BucketStoreMetrics::default();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    cache.register(&mut registry);
    chunks_cache.register(&mut registry);
    let store = BucketStore::new(bucket, fetcher, config.store.clone(), cache, metrics)?
        .with_chunks_cache(chunks_cache);
    Ok((Arc::new(store), registry))
}

/// Runs the store gateway until `shutdown` resolves.
pub async fn run(
    config: GatewayConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let grpc = tokio::net::TcpListener::bind(config.grpc_address).await?;
    let http = tokio::net::TcpListener::bind(config.http_address).await?;
    serve(config, grpc, http, shutdown).await
}

/// Like [`run`] with listeners already bound (tests bind port 0).
pub async fn serve(
    config: GatewayConfig,
    grpc_listener: tokio::net::TcpListener,
    http_listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (store, registry) = build(&config)?;
    let grpc_tls = match &config.grpc_tls {
        Some(files) => Some(tls::ServerTls::load(files, &[b"h2"]).map_err(std::io::Error::other)?),
        None => None,
    };
    tracing::info!(
        grpc = %grpc_listener.local_addr()?,
        http = %http_listener.local_addr()?,
        data_dir = %config.store.data_dir.display(),
        sync_interval = ?config.sync_interval,
        "store gateway starting"
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let syncing = tokio::spawn(sync_loop(
        store.clone(),
        config.sync_interval,
        stop_rx.clone(),
    ));

    let state = Arc::new(Http {
        store: store.clone(),
        registry,
    });
    let router = axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(|| async { "OK" }))
        .route("/-/ready", get(ready))
        .with_state(state);
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stopped| *stopped).await;
    };
    let http = {
        let stop = wait(stop_rx.clone());
        tokio::spawn(async move {
            axum::serve(http_listener, router)
                .with_graceful_shutdown(stop)
                .await
        })
    };
    let service = BucketStoreService(store);
    let grpc = {
        let stop = wait(stop_rx.clone());
        let incoming = tls::grpc_incoming(grpc_listener, grpc_tls)?;
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service.store_server())
                .add_service(service.info_server())
                .serve_with_incoming_shutdown(incoming, stop)
                .await
        })
    };
    shutdown.await;
    tracing::info!("store gateway stopping");
    let _ = stop_tx.send(true);
    let _ = syncing.await;
    let _ = http.await;
    match grpc.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(std::io::Error::other(e)),
        Err(e) => Err(std::io::Error::other(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_are_base_2_as_in_thanos() {
        assert_eq!(parse_bytes("250MB").unwrap(), 250 << 20);
        assert_eq!(parse_bytes("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("512").unwrap(), 512);
        assert!(parse_bytes("12 parsecs")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(parse_bytes("MB").is_err());
        assert!(parse_bytes("99999999999TB")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn index_cache_config_reads_thanos_in_memory_type() {
        let (max, item) = parse_index_cache_config(
            "type: IN-MEMORY\nconfig:\n  max_size: 1GB\n  max_item_size: 10MB\n",
        )
        .unwrap();
        assert_eq!((max, item), (1 << 30, 10 << 20));
        assert_eq!(
            parse_index_cache_config("type: in-memory\n").unwrap(),
            (DEFAULT_MAX_SIZE_BYTES, DEFAULT_MAX_SIZE_BYTES / 2)
        );
        let e = parse_index_cache_config("type: MEMCACHED\nconfig: {}\n").unwrap_err();
        assert!(e.contains("MEMCACHED") && e.contains("IN-MEMORY"), "{e}");
        let e = parse_index_cache_config(
            "type: IN-MEMORY\nconfig:\n  max_size: 1MB\n  max_item_size: 2MB\n",
        )
        .unwrap_err();
        assert!(e.contains("max_item_size"), "{e}");
    }

    #[test]
    fn caching_bucket_config_reads_thanos_in_memory_type() {
        let c = parse_caching_bucket_config(
            "type: IN-MEMORY\nconfig:\n  max_size: 1GB\n  max_item_size: 10MB\n\
             chunk_subrange_size: 8000\nmax_chunks_get_range_requests: 5\n\
             chunk_object_attrs_ttl: 24h\nchunk_subrange_ttl: 24h\nblocks_iter_ttl: 5m\n\
             metafile_exists_ttl: 2h\nmetafile_doesnt_exist_ttl: 15m\n\
             metafile_content_ttl: 24h\nmetafile_max_size: 1MiB\n",
        )
        .unwrap();
        assert_eq!(
            c,
            ChunksCacheConfig {
                max_size: 1 << 30,
                max_item_size: 10 << 20,
                subrange_size: 8000,
                max_get_range_requests: 5,
            }
        );
        let c = parse_caching_bucket_config("type: in-memory\n").unwrap();
        assert_eq!(c, ChunksCacheConfig::default());
        let c = parse_caching_bucket_config(
            "type: IN-MEMORY\nconfig: {max_size: 0}\nmax_chunks_get_range_requests: -1\n",
        )
        .unwrap();
        assert_eq!((c.max_size, c.max_get_range_requests), (0, 0));
        assert_eq!(
            parse_caching_bucket_config("type: NONE\n").unwrap(),
            ChunksCacheConfig::disabled()
        );
        let e = parse_caching_bucket_config("type: MEMCACHED\nconfig: {addresses: [a:1]}\n")
            .unwrap_err();
        assert!(e.contains("MEMCACHED") && e.contains("IN-MEMORY"), "{e}");
        let e =
            parse_caching_bucket_config("type: IN-MEMORY\nchunk_subrange_size: 0\n").unwrap_err();
        assert!(e.contains("chunk_subrange_size"), "{e}");
    }
}
