//! The receiver's configuration, parsed once from flags by the binary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tsdb::wal::FsyncPolicy;

use crate::error::ConfigError;

/// Per-request limits; exceeding one answers 413.
#[derive(Clone, Debug)]
pub struct RequestLimits {
    /// Compressed body bytes.
    pub max_body_bytes: usize,
    /// Uncompressed protobuf bytes.
    pub max_decoded_bytes: usize,
    pub max_series: usize,
    pub max_samples: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            max_body_bytes: 32 << 20,
            max_decoded_bytes: 256 << 20,
            max_series: 1_000_000,
            max_samples: 5_000_000,
        }
    }
}

#[derive(Clone, Debug)]
pub struct ReceiveConfig {
    pub remote_write_address: SocketAddr,
    pub http_address: SocketAddr,
    /// StoreAPI (gRPC) listener over every tenant's TSDB.
    pub grpc_address: SocketAddr,
    pub tsdb_path: PathBuf,
    pub retention: Option<Duration>,
    pub block_duration: Duration,
    /// `--label name="value"` external labels of every tenant.
    pub external_labels: Vec<(String, String)>,
    pub tenant_header: String,
    pub default_tenant: String,
    pub tenant_label_name: String,
    pub fsync: FsyncPolicy,
    /// `--tsdb.wal-compression`: snappy-compress each commit's WAL records together.
    pub wal_compression: bool,
    pub limits: RequestLimits,
    /// How often heads are checked for blocks to cut and retention is applied.
    pub maintenance_interval: Duration,
    /// `--receive.limits-config-file`: per-tenant limits, re-read when it changes.
    pub limits_file: Option<PathBuf>,
    /// Active series this receiver holds across all tenants before it refuses new series with
    /// 429 (`--receive.node-head-series-limit`); `None`: no limit.
    pub node_head_series_limit: Option<u64>,
    /// TLS on the remote-write listener (`--remote-write.server-tls-*`).
    pub remote_write_tls: Option<tls::ServerFiles>,
    /// TLS on the HTTP listener (`--http.server-tls-*`).
    pub http_tls: Option<tls::ServerFiles>,
    /// TLS on the gRPC listener (`--grpc-server-tls-*`): StoreAPI, forwarded writes, status.
    pub grpc_tls: Option<tls::ServerFiles>,
    /// Writers' credentials (`--remote-write.auth-file`); None accepts anonymous writes.
    pub auth_file: Option<PathBuf>,
    /// Where blocks are shipped (`--objstore.config-file`); None keeps them local only.
    pub objstore: Option<objstore::BucketConfig>,
    /// How often the shipper looks for new blocks.
    pub shipper_interval: Duration,
    /// `--receive.hashrings-file`: routes and replicates writes when set.
    pub hashrings_file: Option<PathBuf>,
    /// `--receive.hashrings-algorithm`, for hashrings that do not name one.
    pub hashrings_algorithm: crate::hashring::Algorithm,
    /// `--receive.hashrings-file-refresh-interval`.
    pub hashrings_refresh: Duration,
    /// `--tsdb.out-of-order.time-window`: how far behind a series' newest sample a sample is
    /// still accepted (a lagging replica receives samples out of order).
    pub out_of_order_window: Duration,
    /// `--tsdb.max-exemplars`: exemplars kept per tenant (0: exemplars are not stored).
    pub max_exemplars: usize,
    /// Replication factor, local endpoint, forwarding and hinted handoff settings.
    pub replication: crate::replicate::ReplicationConfig,
}

/// The header the design document configures on its Prometheus agents; honoured when the
/// configured tenant header is absent.
pub const PROMETHEUS_TENANT_HEADER: &str = "X-Prometheus-Remote-Write-Tenant";

impl Default for ReceiveConfig {
    fn default() -> Self {
        ReceiveConfig {
            remote_write_address: ([0, 0, 0, 0], 19291).into(),
            http_address: ([0, 0, 0, 0], 10902).into(),
            grpc_address: ([0, 0, 0, 0], 10901).into(),
            tsdb_path: PathBuf::from("./data"),
            retention: Some(Duration::from_secs(15 * 24 * 3600)),
            block_duration: Duration::from_secs(2 * 3600),
            external_labels: Vec::new(),
            tenant_header: "THANOS-TENANT".into(),
            default_tenant: "default-tenant".into(),
            tenant_label_name: "tenant_id".into(),
            fsync: FsyncPolicy::Always,
            wal_compression: true,
            limits: RequestLimits::default(),
            maintenance_interval: Duration::from_secs(5),
            limits_file: None,
            node_head_series_limit: None,
            remote_write_tls: None,
            http_tls: None,
            grpc_tls: None,
            auth_file: None,
            objstore: None,
            shipper_interval: Duration::from_secs(30),
            hashrings_file: None,
            hashrings_algorithm: crate::hashring::Algorithm::Ketama,
            hashrings_refresh: Duration::from_secs(5 * 60),
            replication: Default::default(),
            out_of_order_window: Duration::ZERO,
            max_exemplars: 0,
        }
    }
}

pub use objstore::config::parse_duration;

/// Parses `name="value"` (or `name=value`), as Thanos' `--label`.
pub fn parse_label(s: &str) -> Result<(String, String), ConfigError> {
    let (name, value) = s.split_once('=').ok_or_else(|| {
        ConfigError::Syntax(format!("invalid label {s:?}: expected name=\"value\""))
    })?;
    let value = value.trim();
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    if !crate::writer::is_valid_label_name(name) {
        return Err(ConfigError::Syntax(format!("invalid label name {name:?}")));
    }
    Ok((name.to_string(), value.to_string()))
}

/// Parses the WAL fsync policy flag: `always`, `never`, or an interval like `1s`.
pub fn parse_fsync(s: &str) -> Result<FsyncPolicy, ConfigError> {
    match s {
        "always" => Ok(FsyncPolicy::Always),
        "never" => Ok(FsyncPolicy::Never),
        other => parse_duration(other)
            .map(FsyncPolicy::Interval)
            .map_err(ConfigError::Syntax),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("15d").unwrap(),
            Duration::from_secs(15 * 86400)
        );
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("h").is_err());
    }

    #[test]
    fn labels() {
        assert_eq!(
            parse_label("replica=\"r0\"").unwrap(),
            ("replica".into(), "r0".into())
        );
        assert_eq!(parse_label("a=b").unwrap(), ("a".into(), "b".into()));
        assert!(parse_label("1a=b").is_err());
        assert!(parse_label("ab").is_err());
    }
}
