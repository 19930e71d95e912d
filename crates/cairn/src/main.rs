//! The `cairn` binary: parses flags, builds each component's configuration and runs it.
//! No logic lives here beyond wiring.

// A command-line tool's output is its interface; servers log through `tracing`.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use receive::config::{parse_duration, parse_fsync, parse_label, RequestLimits};
use receive::ReceiveConfig;
use tsdb::wal::FsyncPolicy;

mod bench;
mod bench_histograms;
mod exposition;
mod self_scrape;
mod tls_args;
mod tools_bucket;
mod tools_bucket_web;
mod tools_hashring;

/// mimalloc: ingest allocates and frees many small objects per request; measured 25-40% more
/// samples per CPU-second than glibc malloc in the remote-write benchmark.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Allocator options for the components whose memory pattern differs from ingest's. mimalloc
/// reads its options when it starts, before `main`, so these components re-execute themselves
/// once with the options in their environment (an operator's own `MIMALLOC_*` settings win).
/// The receiver keeps the defaults: ingest reuses its memory at once.
///
/// - `cairn compact` is a batch job whose working set comes and goes with each compaction. With
///   the defaults (arenas committed eagerly, freed memory purged after a delay) what one
///   compaction freed stays resident into the next: on bench/compact.sh's data (27 M samples)
///   the peak anonymous RSS was 76 MiB with the defaults and 38 MiB with purges at once and
///   arenas committed on demand, at no measurable cost in time.
/// - `cairn store` holds little heap of its own (index-headers are mapped); transparent huge
///   pages kept each touched 2 MiB of its arena resident in full. Without them bench/store.sh
///   measured RSS 80 MiB instead of 101 MiB after the queries at the same warm latency (median
///   2.18x against 2.20x Prometheus' speed), and bench/store-rss.sh 0.11x instead of 0.23x of
///   the index files.
fn allocator_settings() {
    use std::os::unix::process::CommandExt;
    const MARK: &str = "CAIRN_ALLOCATOR_SET";
    let options: &[(&str, &str)] =
        match std::env::args_os().nth(1).as_ref().and_then(|a| a.to_str()) {
            Some("compact") => &[
                ("MIMALLOC_PURGE_DELAY", "0"),
                ("MIMALLOC_ARENA_EAGER_COMMIT", "0"),
            ],
            Some("store") => &[("MIMALLOC_ALLOW_THP", "0")],
            _ => return,
        };
    if std::env::var_os(MARK).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.args(std::env::args_os().skip(1)).env(MARK, "1");
    for &(name, value) in options {
        if std::env::var_os(name).is_none() {
            cmd.env(name, value);
        }
    }
    // `exec` returns only if it failed; the component then runs with the defaults.
    let _ = cmd.exec();
}

#[derive(Parser)]
#[command(
    name = "cairn",
    version,
    about = "A Rust implementation of the Thanos Receiver pattern"
)]
struct Cli {
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `receive=debug,info`.
    #[arg(
        long = "log.level",
        env = "CAIRN_LOG",
        default_value = "info",
        global = true
    )]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Accept Prometheus Remote Write and store samples in per-tenant TSDBs.
    Receive(Box<ReceiveArgs>),
    /// Answer PromQL over StoreAPI endpoints (receivers, ...) with the Prometheus HTTP API,
    /// de-duplicating replicas.
    Query(Box<QueryArgs>),
    /// Store gateway: the StoreAPI over the blocks of a bucket.
    Store(Box<StoreArgs>),
    /// Compactor: merges the bucket's blocks, de-duplicates replicas, applies retention.
    Compact(Box<CompactArgs>),
    /// Run every component in one process on embedded defaults (data under ./data).
    Up(UpArgs),
    /// Load generators for benchmarking receivers.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Operator tools.
    #[command(subcommand)]
    Tools(ToolsCommand),
}

#[derive(Subcommand)]
enum ToolsCommand {
    /// Print the bcrypt hash of a password or token (for `--remote-write.auth-file`).
    Bcrypt {
        /// The secret; read from standard input when absent.
        secret: Option<String>,
        /// bcrypt cost.
        #[arg(long, default_value_t = 10)]
        cost: u32,
    },
    /// Validate, plan and compare hashrings files.
    #[command(subcommand)]
    Hashring(tools_hashring::HashringCommand),
    /// Blocks in object storage: ls, inspect, verify, upload, mark, cleanup, retention, web.
    Bucket(tools_bucket::BucketArgs),
}

#[derive(Args, Clone)]
struct ReceiveArgs {
    /// Address of the remote-write endpoint (POST /api/v1/receive).
    #[arg(long = "remote-write.address", default_value = "0.0.0.0:19291")]
    remote_write_address: SocketAddr,
    /// Address of the HTTP endpoint (/metrics, /-/healthy, /-/ready).
    #[arg(long = "http-address", default_value = "0.0.0.0:10902")]
    http_address: SocketAddr,
    /// Address of the gRPC endpoint (Thanos StoreAPI: thanos.Store and thanos.info.Info over
    /// every tenant's head and local blocks).
    #[arg(long = "grpc-address", default_value = "0.0.0.0:10901")]
    grpc_address: SocketAddr,
    /// Directory of the per-tenant TSDBs.
    #[arg(long = "tsdb.path", default_value = "./data")]
    tsdb_path: PathBuf,
    /// How long blocks are kept locally (0 keeps them forever).
    #[arg(long = "tsdb.retention", default_value = "15d", value_parser = parse_duration)]
    retention: Duration,
    /// Block duration; the head is cut into blocks of this size (2h; shorter for tests).
    #[arg(long = "tsdb.block-duration", default_value = "2h", value_parser = parse_duration)]
    block_duration: Duration,
    /// WAL fsync policy: `always` (each request is durable before it is acknowledged),
    /// an interval such as `1s`, or `never`.
    #[arg(long = "tsdb.wal-fsync", default_value = "always", value_parser = parse_fsync)]
    wal_fsync: FsyncPolicy,
    /// Snappy-compress each commit's WAL records together (Thanos' and Prometheus' default
    /// too); `--tsdb.wal-compression=false` writes them plain. Replay reads both.
    #[arg(long = "tsdb.wal-compression", default_value_t = true, action = clap::ArgAction::Set)]
    wal_compression: bool,
    /// External label added to every tenant's blocks, `name="value"`; repeatable.
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// HTTP header naming the tenant of a write request.
    #[arg(long = "receive.tenant-header", default_value = "THANOS-TENANT")]
    tenant_header: String,
    /// Tenant of requests that name none.
    #[arg(long = "receive.default-tenant-id", default_value = "default-tenant")]
    default_tenant: String,
    /// External label that carries the tenant name.
    #[arg(long = "receive.tenant-label-name", default_value = "tenant_id")]
    tenant_label_name: String,
    /// Largest accepted compressed request body, in bytes (larger: 413).
    #[arg(long = "receive.max-request-bytes", default_value_t = RequestLimits::default().max_body_bytes)]
    max_request_bytes: usize,
    /// Most series in one request (more: 413).
    #[arg(long = "receive.max-request-series", default_value_t = RequestLimits::default().max_series)]
    max_request_series: usize,
    /// Per-tenant limits in Thanos' YAML shape (request size/series/samples -> 413,
    /// head_series_limit -> 429); re-read when it changes.
    #[arg(long = "receive.limits-config-file")]
    limits_config_file: Option<PathBuf>,
    /// Active series this receiver holds across all tenants before new series get 429 (0: no
    /// limit). A guard against running out of memory when the hashring sends one receiver far
    /// more than its share; size it from the memory limit (docs/kubernetes.md, Sizing).
    #[arg(long = "receive.node-head-series-limit", default_value_t = 0)]
    node_head_series_limit: u64,
    /// Certificate (PEM) for TLS on the remote-write listener.
    #[arg(long = "remote-write.server-tls-cert", requires = "rw_tls_key")]
    rw_tls_cert: Option<PathBuf>,
    /// Private key (PEM) for TLS on the remote-write listener.
    #[arg(long = "remote-write.server-tls-key", requires = "rw_tls_cert")]
    rw_tls_key: Option<PathBuf>,
    /// CA bundle (PEM): when set, remote-write clients must present a certificate it signed (mTLS).
    #[arg(long = "remote-write.server-tls-client-ca", requires = "rw_tls_cert")]
    rw_tls_client_ca: Option<PathBuf>,
    #[command(flatten)]
    http_tls: tls_args::HttpServerTls,
    /// Object storage configuration file (Thanos' objstore.yml: S3 or FILESYSTEM). Without it,
    /// blocks stay local.
    #[arg(long = "objstore.config-file", conflicts_with = "objstore_config")]
    objstore_config_file: Option<PathBuf>,
    /// Object storage configuration as YAML text (alternative to --objstore.config-file).
    #[arg(long = "objstore.config")]
    objstore_config: Option<String>,
    /// How often new blocks are looked for and uploaded.
    #[arg(long = "shipper.interval", default_value = "30s", value_parser = parse_duration)]
    shipper_interval: Duration,
    /// Writers' credentials (YAML: users with bcrypt password hashes, bearer tokens, optional
    /// tenant binding). Without it, writes are anonymous.
    #[arg(long = "remote-write.auth-file")]
    auth_file: Option<PathBuf>,
    #[command(flatten)]
    grpc_tls: tls_args::GrpcServerTls,
    #[command(flatten)]
    forward_tls: tls_args::ForwardClientTls,
    /// Most samples in one request (more: 413).
    #[arg(long = "receive.max-request-samples", default_value_t = RequestLimits::default().max_samples)]
    max_request_samples: usize,
    /// Thanos' hashrings.json: which receivers own which tenants' series. With it, writes are
    /// routed to their owners and replicated; re-read when it changes.
    #[arg(long = "receive.hashrings-file")]
    hashrings_file: Option<PathBuf>,
    /// Placement of hashrings that do not name an algorithm: ketama or hashmod.
    #[arg(long = "receive.hashrings-algorithm", default_value = "ketama")]
    hashrings_algorithm: receive::hashring::Algorithm,
    /// How often the hashrings file is re-read (changes are also noticed within a second).
    #[arg(long = "receive.hashrings-file-refresh-interval", default_value = "5m", value_parser = parse_duration)]
    hashrings_refresh: Duration,
    /// This receiver's endpoint as the hashrings file lists it (its gRPC address). Without
    /// it, a receiver with a hashrings file only routes (router mode).
    #[arg(long = "receive.local-endpoint")]
    local_endpoint: Option<String>,
    /// How many receivers store each series; writes succeed when floor(RF/2)+1 did.
    #[arg(long = "receive.replication-factor", default_value_t = 1)]
    replication_factor: usize,
    /// How long a write forwarded to another receiver may take.
    #[arg(long = "receive-forward-timeout", default_value = "5s", value_parser = parse_duration)]
    forward_timeout: Duration,
    /// Compression of the writes forwarded to other receivers: `snappy` or `none`.
    #[arg(long = "receive.grpc-compression", default_value = "snappy", value_parser = ["snappy", "none"])]
    grpc_compression: String,
    /// How long writes a replica missed are kept for it (hinted handoff); 0 turns it off.
    #[arg(long = "receive.hinted-handoff.window", default_value = "2h", value_parser = parse_duration)]
    hints_window: Duration,
    /// Samples up to this far behind a series' newest sample are still accepted and inserted
    /// in place. Default: 0s with replication factor 1, 10m above (replicas that lag behind a
    /// quorum receive samples out of order).
    #[arg(long = "tsdb.out-of-order.time-window", value_parser = parse_duration)]
    out_of_order_window: Option<Duration>,
    /// Exemplars kept per tenant in a circular store (the oldest is evicted when it is full);
    /// 0 does not store exemplars, as in Thanos.
    #[arg(long = "tsdb.max-exemplars", default_value_t = 0)]
    max_exemplars: usize,
    /// Most bytes of missed writes kept per replica; the oldest are dropped beyond it.
    #[arg(long = "receive.hinted-handoff.max-bytes", default_value_t = 1 << 30)]
    hints_max_bytes: u64,
}

/// `cairn store`, with Thanos' flag names and defaults.
#[derive(Args, Clone)]
struct StoreArgs {
    /// Local directory for index-headers and the meta cache.
    #[arg(long = "data-dir", default_value = "./data")]
    data_dir: PathBuf,
    #[arg(long = "objstore.config-file", conflicts_with = "objstore_config")]
    objstore_config_file: Option<PathBuf>,
    #[arg(long = "objstore.config")]
    objstore_config: Option<String>,
    #[arg(long = "grpc-address", default_value = "0.0.0.0:10901")]
    grpc_address: SocketAddr,
    #[command(flatten)]
    grpc_tls: tls_args::GrpcServerTls,
    #[arg(long = "http-address", default_value = "0.0.0.0:10902")]
    http_address: SocketAddr,
    /// How often the block set is synced with the bucket.
    #[arg(long = "sync-block-duration", default_value = "3m", value_parser = parse_duration)]
    sync_block_duration: Duration,
    /// Blocks whose index-headers are built at once during a sync.
    #[arg(long = "block-sync-concurrency", default_value_t = 20)]
    block_sync_concurrency: usize,
    /// Serve only blocks ending after this: RFC 3339 or a duration relative to now (`-2w`).
    #[arg(long = "min-time", default_value = "0000-01-01T00:00:00Z", value_parser = model::time::TimeOrDuration::parse)]
    min_time: model::time::TimeOrDuration,
    /// Serve only blocks starting before this: RFC 3339 or relative to now.
    #[arg(long = "max-time", default_value = "9999-12-31T23:59:59Z", value_parser = model::time::TimeOrDuration::parse)]
    max_time: model::time::TimeOrDuration,
    /// Relabel rules over each block's external labels (and `__block_id`): keep, drop, hashmod.
    #[arg(
        long = "selector.relabel-config",
        conflicts_with = "relabel_config_file"
    )]
    relabel_config: Option<String>,
    #[arg(long = "selector.relabel-config-file")]
    relabel_config_file: Option<PathBuf>,
    /// Blocks marked for deletion longer ago than this are no longer served.
    #[arg(long = "ignore-deletion-marks-delay", default_value = "24h", value_parser = parse_duration)]
    ignore_deletion_marks_delay: Duration,
    /// Samples one Series call may return (0: no limit); enforced on chunks of 120 samples.
    #[arg(long = "store.grpc.series-sample-limit", default_value_t = 0)]
    series_sample_limit: u64,
    /// Series one Series call may touch (0: no limit).
    #[arg(long = "store.grpc.touched-series-limit", default_value_t = 0)]
    touched_series_limit: u64,
    /// Series calls served at once; more wait.
    #[arg(long = "store.grpc.series-max-concurrency", default_value_t = 20)]
    series_max_concurrency: usize,
    /// Size of the in-memory index cache (`250MB`, `1GB`).
    #[arg(long = "index-cache-size", default_value = "250MB", value_parser = store::gateway::parse_bytes)]
    index_cache_size: u64,
    /// Index cache config (Thanos' format; type IN-MEMORY). Overrides --index-cache-size.
    #[arg(
        long = "index-cache.config-file",
        conflicts_with = "index_cache_config"
    )]
    index_cache_config_file: Option<PathBuf>,
    #[arg(long = "index-cache.config")]
    index_cache_config: Option<String>,
    /// Chunks cache config (Thanos' caching bucket format; type IN-MEMORY, or NONE to turn it
    /// off). Without one, chunk subranges are cached in memory up to 256 MiB.
    #[arg(
        long = "store.caching-bucket.config-file",
        conflicts_with = "caching_bucket_config"
    )]
    caching_bucket_config_file: Option<PathBuf>,
    #[arg(long = "store.caching-bucket.config")]
    caching_bucket_config: Option<String>,
}

/// `cairn compact`, with Thanos' flag names and defaults.
#[derive(Args, Clone)]
struct CompactArgs {
    /// Scratch space for downloaded and compacted blocks, and the meta cache.
    #[arg(long = "data-dir", default_value = "./data")]
    data_dir: PathBuf,
    #[arg(long = "objstore.config-file", conflicts_with = "objstore_config")]
    objstore_config_file: Option<PathBuf>,
    #[arg(long = "objstore.config")]
    objstore_config: Option<String>,
    #[arg(long = "http-address", default_value = "0.0.0.0:10902")]
    http_address: SocketAddr,
    /// Keep running, one iteration every --wait-interval; without it, run until there is
    /// nothing left to do and exit.
    #[arg(long = "wait")]
    wait: bool,
    #[arg(long = "wait-interval", default_value = "5m", value_parser = parse_duration)]
    wait_interval: Duration,
    /// Blocks uploaded more recently than this are left alone (their upload may be in flight).
    #[arg(long = "consistency-delay", default_value = "30m", value_parser = parse_duration)]
    consistency_delay: Duration,
    /// Groups compacted at once.
    #[arg(long = "compact.concurrency", default_value_t = 1)]
    concurrency: usize,
    /// meta.json files fetched at once.
    #[arg(long = "block-meta-fetch-concurrency", default_value_t = 32)]
    block_meta_fetch_concurrency: usize,
    /// External label that tells replicas apart; blocks differing only in it are merged into
    /// one. Repeatable.
    #[arg(long = "deduplication.replica-label")]
    replica_labels: Vec<String>,
    /// How replicas' overlapping samples are merged: empty (every timestamp once) or
    /// `penalty` (Thanos' penalty algorithm, as the query layer de-duplicates).
    #[arg(long = "deduplication.func", default_value = "", value_parser = parse_dedup_func)]
    dedup_func: tsdb::compact::MergeMode,
    /// Merge overlapping blocks of a group (implied by --deduplication.replica-label).
    #[arg(long = "compact.enable-vertical-compaction")]
    vertical_compaction: bool,
    /// How long raw blocks are kept (0d: forever).
    #[arg(long = "retention.resolution-raw", default_value = "0d", value_parser = parse_duration)]
    retention_raw: Duration,
    /// How long 5m-downsampled blocks are kept (0d: forever).
    #[arg(long = "retention.resolution-5m", default_value = "0d", value_parser = parse_duration)]
    retention_5m: Duration,
    /// How long 1h-downsampled blocks are kept (0d: forever).
    #[arg(long = "retention.resolution-1h", default_value = "0d", value_parser = parse_duration)]
    retention_1h: Duration,
    /// Do not write 5m and 1h downsampled blocks (raw blocks of 40 h and more get a 5m block,
    /// 5m blocks of 10 days and more a 1h block, otherwise).
    #[arg(long = "downsampling.disable")]
    downsampling_disable: bool,
    /// How long a block marked for deletion stays in the bucket before it is deleted.
    #[arg(long = "delete-delay", default_value = "48h", value_parser = parse_duration)]
    delete_delay: Duration,
    /// Relabel rules over each block's external labels: which blocks this compactor owns.
    #[arg(
        long = "selector.relabel-config",
        conflicts_with = "relabel_config_file"
    )]
    relabel_config: Option<String>,
    #[arg(long = "selector.relabel-config-file")]
    relabel_config_file: Option<PathBuf>,
}

fn parse_dedup_func(s: &str) -> Result<tsdb::compact::MergeMode, String> {
    match s {
        "" => Ok(tsdb::compact::MergeMode::OneToOne),
        "penalty" => Ok(tsdb::compact::MergeMode::Penalty),
        other => Err(format!(
            "unknown deduplication function {other:?}: use \"\" (one-to-one) or \"penalty\""
        )),
    }
}

/// The bucket of `--objstore.config-file` or `--objstore.config`.
fn bucket_config(
    component: &str,
    file: &Option<PathBuf>,
    text: &Option<String>,
) -> anyhow::Result<objstore::BucketConfig> {
    Ok(match (file, text) {
        (Some(path), _) => objstore::BucketConfig::from_file(path)?,
        (None, Some(text)) => objstore::BucketConfig::parse(text)?,
        (None, None) => anyhow::bail!(
            "cairn {component} needs a bucket: --objstore.config-file or --objstore.config"
        ),
    })
}

/// The text of `--selector.relabel-config-file` or `--selector.relabel-config`, parsed.
fn selector_relabel(
    file: &Option<PathBuf>,
    text: &Option<String>,
) -> anyhow::Result<Vec<objstore::relabel::RelabelConfig>> {
    let text = match (file, text) {
        (Some(path), _) => Some(std::fs::read_to_string(path).with_context(|| {
            format!("reading --selector.relabel-config-file {}", path.display())
        })?),
        (None, text) => text.clone(),
    };
    match text {
        Some(text) => objstore::relabel::parse_relabel_configs(
            &text,
            Some(objstore::relabel::SELECTOR_ACTIONS),
        )
        .context("invalid --selector.relabel-config"),
        None => Ok(Vec::new()),
    }
}

impl CompactArgs {
    fn config(&self) -> anyhow::Result<compact::server::CompactServerConfig> {
        let objstore = bucket_config("compact", &self.objstore_config_file, &self.objstore_config)?;
        let mut compactor = compact::compactor::CompactorConfig::new(self.data_dir.clone());
        compactor.consistency_delay = self.consistency_delay;
        compactor.concurrency = self.concurrency.max(1);
        compactor.block_meta_fetch_concurrency = self.block_meta_fetch_concurrency.max(1);
        compactor.replica_labels = self.replica_labels.clone();
        compactor.dedup_func = self.dedup_func;
        compactor.vertical_compaction = self.vertical_compaction;
        compactor.delete_delay = self.delete_delay;
        compactor.downsampling_disabled = self.downsampling_disable;
        // As Thanos: a raw block must live long enough to be downsampled (40 h), and a 5m block
        // to be downsampled again (10 days), or the retention deletes data no resolution keeps.
        if !self.downsampling_disable {
            let too_short = |keep: Duration, need: Duration| !keep.is_zero() && keep < need;
            if too_short(self.retention_raw, Duration::from_secs(40 * 3600)) {
                anyhow::bail!(
                    "--retention.resolution-raw={:?} is shorter than 40h, the range a raw block needs to be downsampled: raise it or pass --downsampling.disable",
                    self.retention_raw
                );
            }
            if too_short(self.retention_5m, Duration::from_secs(10 * 24 * 3600)) {
                anyhow::bail!(
                    "--retention.resolution-5m={:?} is shorter than 10d, the range a 5m block needs to be downsampled: raise it or pass --downsampling.disable",
                    self.retention_5m
                );
            }
        }
        compactor.relabel_configs =
            selector_relabel(&self.relabel_config_file, &self.relabel_config)?;
        for (resolution, keep) in [
            (compact::compactor::RESOLUTION_RAW, self.retention_raw),
            (compact::compactor::RESOLUTION_5M, self.retention_5m),
            (compact::compactor::RESOLUTION_1H, self.retention_1h),
        ] {
            if !keep.is_zero() {
                compactor.retention.insert(resolution, keep);
            }
        }
        Ok(compact::server::CompactServerConfig {
            objstore,
            compactor,
            http_address: self.http_address,
            wait: self.wait,
            wait_interval: self.wait_interval,
        })
    }
}

impl StoreArgs {
    fn config(&self) -> anyhow::Result<store::gateway::GatewayConfig> {
        let objstore = bucket_config("store", &self.objstore_config_file, &self.objstore_config)?;
        let mut config = store::gateway::GatewayConfig::new(objstore, self.data_dir.clone());
        config.grpc_address = self.grpc_address;
        config.grpc_tls = self.grpc_tls.files();
        config.http_address = self.http_address;
        config.sync_interval = self.sync_block_duration;
        config.min_time = self.min_time;
        config.max_time = self.max_time;
        config.relabel_configs = selector_relabel(&self.relabel_config_file, &self.relabel_config)?;
        config.ignore_deletion_marks_delay = self.ignore_deletion_marks_delay;
        config.index_cache_bytes = self.index_cache_size;
        config.index_cache_max_item_bytes = self.index_cache_size / 2;
        let cache_text = match (&self.index_cache_config_file, &self.index_cache_config) {
            (Some(path), _) => Some(std::fs::read_to_string(path).with_context(|| {
                format!("reading --index-cache.config-file {}", path.display())
            })?),
            (None, text) => text.clone(),
        };
        if let Some(text) = cache_text {
            let (max, item) =
                store::gateway::parse_index_cache_config(&text).map_err(anyhow::Error::msg)?;
            config.index_cache_bytes = max;
            config.index_cache_max_item_bytes = item;
        }
        let caching_text = match (
            &self.caching_bucket_config_file,
            &self.caching_bucket_config,
        ) {
            (Some(path), _) => Some(std::fs::read_to_string(path).with_context(|| {
                format!(
                    "reading --store.caching-bucket.config-file {}",
                    path.display()
                )
            })?),
            (None, text) => text.clone(),
        };
        if let Some(text) = caching_text {
            config.chunks_cache =
                store::gateway::parse_caching_bucket_config(&text).map_err(anyhow::Error::msg)?;
        }
        config.store.block_sync_concurrency = self.block_sync_concurrency;
        config.store.series_sample_limit = self.series_sample_limit;
        config.store.touched_series_limit = self.touched_series_limit;
        config.store.series_max_concurrency = self.series_max_concurrency;
        Ok(config)
    }
}

#[derive(Args, Clone)]
struct QueryArgs {
    /// Address of the HTTP endpoint (Prometheus HTTP API, /api/v1/stores, UI, /metrics,
    /// /-/healthy, /-/ready).
    #[arg(long = "http-address", default_value = "0.0.0.0:10904")]
    http_address: SocketAddr,
    /// StoreAPI endpoint to query (`host:port` of a receiver's --grpc-address); repeatable.
    #[arg(long = "endpoint")]
    endpoints: Vec<String>,
    #[command(flatten)]
    http_tls: tls_args::HttpServerTls,
    #[command(flatten)]
    client_tls: tls_args::GrpcClientTls,
    /// File listing StoreAPI endpoints (Prometheus file SD format: a YAML or JSON list of
    /// `{targets: [...]}`); `*` and `?` allowed in the file name; repeatable.
    #[arg(long = "endpoint.sd-files")]
    sd_files: Vec<PathBuf>,
    /// How often the --endpoint.sd-files are re-read.
    #[arg(long = "endpoint.sd-interval", default_value = "30s", value_parser = parse_duration)]
    sd_interval: Duration,
    /// How often each endpoint is asked for its label sets and time range (Info).
    #[arg(long = "endpoint.info-interval", default_value = "5s", value_parser = parse_duration)]
    info_interval: Duration,
    /// Longest an Info call may take before the endpoint counts as down.
    #[arg(long = "endpoint.info-timeout", default_value = "5s", value_parser = parse_duration)]
    info_timeout: Duration,
    /// Label that tells replicas apart (e.g. `replica`); series that differ only in replica
    /// labels are merged (dedup=false in a request shows every replica). Repeatable or
    /// comma-separated.
    #[arg(long = "query.replica-label", value_delimiter = ',')]
    replica_labels: Vec<String>,
    /// Longest a query may run.
    #[arg(long = "query.timeout", default_value = "2m", value_parser = parse_duration)]
    timeout: Duration,
    /// How far back an instant selector looks for a sample.
    #[arg(long = "query.lookback-delta", default_value = "5m", value_parser = parse_duration)]
    lookback_delta: Duration,
    /// Most samples a query may hold in memory at once.
    #[arg(long = "query.max-samples", default_value_t = 50_000_000)]
    max_samples: usize,
    /// Most queries evaluated at once; more wait for a turn.
    #[arg(long = "query.max-concurrent", default_value_t = 20)]
    max_concurrent: usize,
    /// Threads one query may use to decode and evaluate the series of a range function over
    /// a selector (`rate(x[5m])` and the like); 0: one per CPU, at most 8. 1 evaluates each
    /// query on one thread.
    #[arg(long = "query.parallelism", default_value_t = 0)]
    parallelism: usize,
    /// Step of subqueries that give none.
    #[arg(long = "query.default-evaluation-interval", default_value = "1m", value_parser = parse_duration)]
    default_evaluation_interval: Duration,
    /// Fail queries when an endpoint fails, unless a request says partial_response=true
    /// (by default a failing endpoint is a warning).
    #[arg(long = "no-query.partial-response")]
    no_partial_response: bool,
    /// Longest one endpoint may take to answer before it counts as failed (0: only the
    /// query's timeout applies).
    #[arg(long = "store.response-timeout", default_value = "0s", value_parser = parse_duration)]
    response_timeout: Duration,
    /// Read downsampled data by default: a query without max_source_resolution reads as
    /// max_source_resolution=auto (a fifth of a range query's step; instant queries read raw
    /// data).
    #[arg(long = "query.auto-downsampling")]
    auto_downsampling: bool,
    /// Credentials every request to the HTTP API and UI must carry (basic auth or a bearer
    /// token; the format of the receiver's --remote-write.auth-file). A user or token bound to
    /// a tenant reads that tenant only, with or without --query.enforce-tenancy. /-/healthy,
    /// /-/ready and /metrics stay open.
    #[arg(long = "http.auth-file")]
    http_auth_file: Option<PathBuf>,
    /// How replicas are merged: `penalty` (Thanos' default: follows one replica, switches
    /// across gaps, drops samples around a switch) or `chain` (every timestamp once: exact for
    /// a pool of receivers, whose replicas hold the same samples).
    #[arg(long = "deduplication.func", default_value = "penalty")]
    dedup_func: query::DedupFunc,
    /// Every request sees the series of one tenant only: the one its tenant header names (the
    /// default tenant without it), whatever matchers it sends; stores are told the tenant too.
    #[arg(long = "query.enforce-tenancy")]
    enforce_tenancy: bool,
    /// The header naming a request's tenant.
    #[arg(long = "query.tenant-header", default_value = "THANOS-TENANT")]
    tenant_header: String,
    /// The external label carrying the tenant (`--receive.tenant-label-name` of the receivers).
    #[arg(long = "query.tenant-label-name", default_value = "tenant_id")]
    tenant_label_name: String,
    /// The tenant of requests without the header.
    #[arg(long = "query.default-tenant-id", default_value = "default-tenant")]
    default_tenant: String,
}

impl QueryArgs {
    fn config(&self) -> anyhow::Result<query::QueryConfig> {
        Ok(query::QueryConfig {
            http_address: self.http_address,
            http_tls: self.http_tls.files(),
            endpoints: query::endpoints::EndpointConfig {
                static_endpoints: self.endpoints.clone(),
                sd_files: self.sd_files.clone(),
                info_interval: self.info_interval,
                info_timeout: self.info_timeout,
                sd_interval: self.sd_interval,
                client_tls: self.client_tls.load()?,
            },
            api: query::api::ApiConfig {
                replica_labels: self
                    .replica_labels
                    .iter()
                    .map(|l| l.trim().to_string())
                    .filter(|l| !l.is_empty())
                    .collect(),
                engine: promql::EngineOpts {
                    lookback_delta: self.lookback_delta,
                    max_samples: self.max_samples,
                    timeout: Some(self.timeout),
                    default_subquery_step: self.default_evaluation_interval,
                    parallelism: match self.parallelism {
                        0 => std::thread::available_parallelism().map_or(1, |n| n.get().min(8)),
                        n => n,
                    },
                },
                partial_response: !self.no_partial_response,
                response_timeout: (!self.response_timeout.is_zero())
                    .then_some(self.response_timeout),
                max_concurrent: self.max_concurrent,
                auto_downsampling: self.auto_downsampling,
                dedup_func: self.dedup_func,
                tenancy: query::api::Tenancy {
                    enforce: self.enforce_tenancy,
                    header: self.tenant_header.clone(),
                    label: self.tenant_label_name.clone(),
                    default_tenant: self.default_tenant.clone(),
                },
                auth: match &self.http_auth_file {
                    Some(path) => Some(std::sync::Arc::new(auth::Authenticator::from_file(path)?)),
                    None => None,
                },
            },
        })
    }
}

#[derive(Args)]
struct UpArgs {
    /// Data directory of every component.
    #[arg(long = "data-dir", default_value = "./data")]
    data_dir: PathBuf,
    /// Address of the remote-write endpoint.
    #[arg(long = "remote-write.address", default_value = "127.0.0.1:19291")]
    remote_write_address: SocketAddr,
    /// Address of the receiver's HTTP endpoint.
    #[arg(long = "http-address", default_value = "127.0.0.1:10902")]
    http_address: SocketAddr,
    /// Address of the receiver's StoreAPI (gRPC).
    #[arg(long = "grpc-address", default_value = "127.0.0.1:10901")]
    grpc_address: SocketAddr,
    /// Address of the query layer's HTTP endpoint (Prometheus HTTP API and UI).
    #[arg(long = "query.http-address", default_value = "127.0.0.1:9090")]
    query_http_address: SocketAddr,
    /// The store gateway's StoreAPI (over the bucket, so data outlives local retention).
    #[arg(long = "store.grpc-address", default_value = "127.0.0.1:10911")]
    store_grpc_address: SocketAddr,
    /// The store gateway's /metrics and health.
    #[arg(long = "store.http-address", default_value = "127.0.0.1:10912")]
    store_http_address: SocketAddr,
    /// The compactor's /metrics and health.
    #[arg(long = "compact.http-address", default_value = "127.0.0.1:10922")]
    compact_http_address: SocketAddr,
    /// Do not scrape the components' own /metrics (by default they are written, job `cairn`,
    /// into the default tenant through the remote-write endpoint, so there is data to query).
    #[arg(long = "no-self-scrape")]
    no_self_scrape: bool,
    /// How often the self-scrape runs.
    #[arg(long = "self-scrape.interval", default_value = "15s", value_parser = parse_duration)]
    self_scrape_interval: Duration,
    /// Exemplars kept per tenant (Prometheus' default when exemplars are on; `cairn receive`
    /// defaults to 0, as Thanos).
    #[arg(long = "tsdb.max-exemplars", default_value_t = 100_000)]
    max_exemplars: usize,
}

impl ReceiveArgs {
    fn config(&self) -> anyhow::Result<ReceiveConfig> {
        let defaults = RequestLimits::default();
        let objstore = match (&self.objstore_config_file, &self.objstore_config) {
            (Some(path), _) => Some(objstore::BucketConfig::from_file(path)?),
            (None, Some(text)) => Some(objstore::BucketConfig::parse(text)?),
            (None, None) => None,
        };
        Ok(ReceiveConfig {
            remote_write_address: self.remote_write_address,
            http_address: self.http_address,
            grpc_address: self.grpc_address,
            tsdb_path: self.tsdb_path.clone(),
            retention: (!self.retention.is_zero()).then_some(self.retention),
            block_duration: self.block_duration,
            external_labels: self.labels.clone(),
            tenant_header: self.tenant_header.clone(),
            default_tenant: self.default_tenant.clone(),
            tenant_label_name: self.tenant_label_name.clone(),
            fsync: self.wal_fsync,
            wal_compression: self.wal_compression,
            limits: RequestLimits {
                max_body_bytes: self.max_request_bytes,
                max_series: self.max_request_series,
                max_samples: self.max_request_samples,
                ..defaults
            },
            // Check often enough that short test block durations cut on time.
            limits_file: self.limits_config_file.clone(),
            node_head_series_limit: (self.node_head_series_limit > 0)
                .then_some(self.node_head_series_limit),
            remote_write_tls: tls_files(
                &self.rw_tls_cert,
                &self.rw_tls_key,
                &self.rw_tls_client_ca,
            ),
            http_tls: self.http_tls.files(),
            grpc_tls: self.grpc_tls.files(),
            auth_file: self.auth_file.clone(),
            objstore,
            shipper_interval: self.shipper_interval,
            maintenance_interval: (self.block_duration / 4)
                .clamp(Duration::from_millis(100), Duration::from_secs(5)),
            out_of_order_window: self.out_of_order_window.unwrap_or(
                if self.replication_factor > 1 {
                    Duration::from_secs(600)
                } else {
                    Duration::ZERO
                },
            ),
            max_exemplars: self.max_exemplars,
            hashrings_file: self.hashrings_file.clone(),
            hashrings_algorithm: self.hashrings_algorithm,
            hashrings_refresh: self.hashrings_refresh,
            replication: receive::replicate::ReplicationConfig {
                local_endpoint: self.local_endpoint.clone(),
                replication_factor: self.replication_factor.max(1),
                forward_timeout: self.forward_timeout,
                hints_window: self.hints_window,
                hints_max_bytes: self.hints_max_bytes,
                client_tls: self.forward_tls.files(),
                compress: self.grpc_compression == "snappy",
            },
        })
    }
}

fn tls_files(
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
    client_ca: &Option<PathBuf>,
) -> Option<tls::ServerFiles> {
    Some(tls::ServerFiles {
        cert: cert.clone()?,
        key: key.clone()?,
        client_ca: client_ca.clone(),
        ..Default::default()
    })
}

fn run_tool(tool: ToolsCommand) -> anyhow::Result<()> {
    match tool {
        ToolsCommand::Bcrypt { secret, cost } => {
            let secret = match secret {
                Some(s) => s,
                None => {
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line)?;
                    line.trim_end_matches(['\r', '\n']).to_string()
                }
            };
            println!("{}", bcrypt::hash(secret, cost).context("hashing")?);
        }
        ToolsCommand::Hashring(command) => tools_hashring::run(command)?,
        ToolsCommand::Bucket(args) => tools_bucket::run(args)?,
    }
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt received"),
    }
}

fn main() -> anyhow::Result<()> {
    allocator_settings();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log_level)
                .context("invalid --log.level")?,
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Command::Tools(tool) = cli.command {
        return run_tool(tool);
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        match cli.command {
            Command::Receive(args) => {
                receive::server::run(args.config()?, shutdown_signal())
                    .await
                    .context("receiver failed")?;
            }
            Command::Bench(cmd) => bench::run(cmd).await?,
            Command::Store(args) => {
                store::gateway::run(args.config()?, shutdown_signal())
                    .await
                    .context("store gateway failed")?;
            }
            Command::Compact(args) => {
                compact::server::run(args.config()?, shutdown_signal())
                    .await
                    .context("compactor failed")?;
            }
            Command::Query(args) => {
                query::run(args.config()?, shutdown_signal())
                    .await
                    .context("query failed")?;
            }
            Command::Up(args) => {
                let config = ReceiveConfig {
                    remote_write_address: args.remote_write_address,
                    http_address: args.http_address,
                    grpc_address: args.grpc_address,
                    tsdb_path: args.data_dir.join("receive"),
                    objstore: Some(objstore::BucketConfig::filesystem(
                        args.data_dir.join("bucket"),
                    )),
                    max_exemplars: args.max_exemplars,
                    ..ReceiveConfig::default()
                };
                println!("Cairn is up (data in {}):", args.data_dir.display());
                println!(
                    "  remote write: http://{}/api/v1/receive",
                    args.remote_write_address
                );
                println!("  metrics:      http://{}/metrics", args.http_address);
                println!("  bucket:       {}", args.data_dir.join("bucket").display());
                println!("  health:       http://{}/-/healthy", args.http_address);
                println!("  StoreAPI:     grpc://{}", args.grpc_address);
                println!(
                    "  store:        grpc://{} (the bucket's blocks; metrics at http://{}/metrics)",
                    args.store_grpc_address, args.store_http_address
                );
                println!(
                    "  compactor:    every 5m over the bucket (metrics at http://{}/metrics)",
                    args.compact_http_address
                );
                println!(
                    "  PromQL:       http://{}/api/v1/query (Prometheus HTTP API, UI at /)",
                    args.query_http_address
                );
                if args.no_self_scrape {
                    println!("  self-scrape:  off");
                } else {
                    println!(
                        "  self-scrape:  every {:?}, job=\"cairn\", into the default tenant (--no-self-scrape turns it off)",
                        args.self_scrape_interval
                    );
                }
                let self_scrape = (!args.no_self_scrape).then(|| self_scrape::SelfScrapeConfig {
                    targets: vec![
                        args.http_address,
                        args.query_http_address,
                        args.store_http_address,
                        args.compact_http_address,
                    ],
                    remote_write: args.remote_write_address,
                    interval: args.self_scrape_interval,
                    job: "cairn".to_string(),
                });
                // The query layer over the receiver's own StoreAPI, with one shutdown for both.
                let query_config = query::QueryConfig {
                    http_address: args.query_http_address,
                    endpoints: query::endpoints::EndpointConfig {
                        // Recent data from the receiver, shipped blocks from the store: a
                        // series both hold comes back once (every timestamp once).
                        static_endpoints: vec![
                            args.grpc_address.to_string(),
                            args.store_grpc_address.to_string(),
                        ],
                        // In-process and cheap: a first write (or a new tenant) is queryable
                        // within a second.
                        info_interval: Duration::from_secs(1),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                let query_listener = tokio::net::TcpListener::bind(args.query_http_address)
                    .await
                    .with_context(|| {
                        format!("binding the query address {}", args.query_http_address)
                    })?;
                let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
                tokio::spawn(async move {
                    shutdown_signal().await;
                    let _ = stop_tx.send(true);
                });
                let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
                    let _ = rx.wait_for(|s| *s).await;
                };
                let mut store_config = store::gateway::GatewayConfig::new(
                    objstore::BucketConfig::filesystem(args.data_dir.join("bucket")),
                    args.data_dir.join("store"),
                );
                store_config.grpc_address = args.store_grpc_address;
                store_config.http_address = args.store_http_address;
                // A local directory is cheap to list: new blocks are served within seconds.
                store_config.sync_interval = Duration::from_secs(15);
                // The compactor keeps the bucket's blocks merged (2h -> 8h -> 2d -> 14d), one
                // iteration every 5 minutes, with Thanos' defaults otherwise.
                let compact_config = compact::server::CompactServerConfig {
                    objstore: objstore::BucketConfig::filesystem(args.data_dir.join("bucket")),
                    compactor: compact::compactor::CompactorConfig::new(
                        args.data_dir.join("compact"),
                    ),
                    http_address: args.compact_http_address,
                    wait: true,
                    wait_interval: Duration::from_secs(5 * 60),
                };
                let scraper_stop = stopped(stop_rx.clone());
                let scraper = async move {
                    if let Some(cfg) = self_scrape {
                        self_scrape::run(cfg, scraper_stop).await;
                    }
                };
                let (received, queried, stored, compacted, ()) = tokio::join!(
                    receive::server::run(config, stopped(stop_rx.clone())),
                    query::serve(query_config, query_listener, stopped(stop_rx.clone())),
                    store::gateway::run(store_config, stopped(stop_rx.clone())),
                    compact::server::run(compact_config, stopped(stop_rx)),
                    scraper,
                );
                received.context("receiver failed")?;
                queried.context("query failed")?;
                stored.context("store gateway failed")?;
                compacted.context("compactor failed")?;
            }
            Command::Tools(_) => unreachable!("tools run without the runtime"),
        }
        Ok(())
    })
}
