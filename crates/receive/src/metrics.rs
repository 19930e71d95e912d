//! The receiver's metrics, exposed on `/metrics` of the HTTP port.
//!
//! Names follow Thanos and Prometheus where the design's dashboards and alerts use them
//! (`thanos_receive_http_request_duration_seconds`, `prometheus_tsdb_head_series`,
//! `thanos_receive_tsdb_blocks_loaded`, `prometheus_tsdb_storage_blocks_bytes`); Cairn's own
//! are prefixed `cairn_`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::tenants::Tenants;

/// The label pairs of one metric series (prometheus-client encodes them in this order); not a
/// series' [`model::Labels`].
pub type MetricLabels = Vec<(String, String)>;

fn duration_histogram() -> Histogram {
    // 1 ms .. ~33 s
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<MetricLabels, Counter>,
    pub http_request_duration: Family<MetricLabels, Histogram, fn() -> Histogram>,
    pub samples_ingested: Family<MetricLabels, Counter>,
    pub histograms_ingested: Family<MetricLabels, Counter>,
    pub exemplars_ingested: Family<MetricLabels, Counter>,
    pub samples_rejected: Family<MetricLabels, Counter>,
    pub head_series: Family<MetricLabels, Gauge>,
    pub blocks_loaded: Family<MetricLabels, Gauge>,
    pub blocks_bytes: Family<MetricLabels, Gauge>,
    pub head_min_time: Family<MetricLabels, Gauge>,
    pub head_max_time: Family<MetricLabels, Gauge>,
    pub shipper_uploads: Family<MetricLabels, Counter>,
    pub shipper_failures: Family<MetricLabels, Counter>,
    pub shipper_bytes: Family<MetricLabels, Counter>,
    pub shipper_queue: Family<MetricLabels, Gauge>,
    pub shipper_oldest_age: Family<MetricLabels, Gauge>,
    pub shipper_queue_bytes: Family<MetricLabels, Gauge>,
    volume_size: Gauge,
    volume_available: Gauge,
    hashring: HashringMetrics,
}

/// Thanos' hashrings-file metrics, mirrored from the watcher's status on each scrape.
#[derive(Default)]
struct HashringMetrics {
    refreshes: Counter,
    changes: Counter,
    errors: Counter,
    last_successful: Gauge,
    last_success_seconds: Gauge,
    config_hash: Gauge<f64, std::sync::atomic::AtomicU64>,
    nodes: Family<MetricLabels, Gauge>,
    tenants: Family<MetricLabels, Gauge>,
    skew: Family<MetricLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    problems: Family<MetricLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let http_requests = Family::<MetricLabels, Counter>::default();
        registry.register(
            "thanos_receive_http_requests",
            "Remote-write requests by status code and tenant",
            http_requests.clone(),
        );
        let http_request_duration =
            Family::<MetricLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram as fn() -> Histogram,
            );
        registry.register(
            "thanos_receive_http_request_duration_seconds",
            "Remote-write request latency by status code and tenant",
            http_request_duration.clone(),
        );
        let histograms_ingested = Family::<MetricLabels, Counter>::default();
        registry.register(
            "cairn_receive_histograms_ingested",
            "Native histogram samples written to a tenant's TSDB",
            histograms_ingested.clone(),
        );
        let exemplars_ingested = Family::<MetricLabels, Counter>::default();
        registry.register(
            "cairn_receive_exemplars_ingested",
            "Exemplars stored in a tenant's exemplar storage",
            exemplars_ingested.clone(),
        );
        let samples_ingested = Family::<MetricLabels, Counter>::default();
        registry.register(
            "cairn_receive_samples_ingested",
            "Samples written to a tenant's TSDB",
            samples_ingested.clone(),
        );
        let samples_rejected = Family::<MetricLabels, Counter>::default();
        registry.register(
            "cairn_receive_samples_rejected",
            "Samples rejected, by tenant and reason",
            samples_rejected.clone(),
        );
        let head_series = Family::<MetricLabels, Gauge>::default();
        registry.register(
            "prometheus_tsdb_head_series",
            "Series in the head, per tenant",
            head_series.clone(),
        );
        let blocks_loaded = Family::<MetricLabels, Gauge>::default();
        registry.register(
            "thanos_receive_tsdb_blocks_loaded",
            "Blocks open in a tenant's TSDB",
            blocks_loaded.clone(),
        );
        let blocks_bytes = Family::<MetricLabels, Gauge>::default();
        registry.register(
            "prometheus_tsdb_storage_blocks_bytes",
            "Bytes of a tenant's blocks on local disk",
            blocks_bytes.clone(),
        );
        let head_min_time = Family::<MetricLabels, Gauge>::default();
        registry.register(
            "prometheus_tsdb_head_min_time",
            "Oldest timestamp (ms) in a tenant's head",
            head_min_time.clone(),
        );
        let head_max_time = Family::<MetricLabels, Gauge>::default();
        registry.register(
            "prometheus_tsdb_head_max_time",
            "Newest timestamp (ms) in a tenant's head",
            head_max_time.clone(),
        );
        let shipper_uploads = Family::<MetricLabels, Counter>::default();
        registry.register(
            "thanos_shipper_uploads",
            "Blocks uploaded to the bucket, per tenant",
            shipper_uploads.clone(),
        );
        let shipper_failures = Family::<MetricLabels, Counter>::default();
        registry.register(
            "thanos_shipper_upload_failures",
            "Failed upload passes, per tenant",
            shipper_failures.clone(),
        );
        let shipper_bytes = Family::<MetricLabels, Counter>::default();
        registry.register(
            "cairn_shipper_uploaded_bytes",
            "Bytes uploaded to the bucket, per tenant",
            shipper_bytes.clone(),
        );
        let shipper_queue = Family::<MetricLabels, Gauge>::default();
        registry.register(
            "cairn_shipper_queue_blocks",
            "Local blocks not yet in the bucket, per tenant",
            shipper_queue.clone(),
        );
        let shipper_oldest_age = Family::<MetricLabels, Gauge>::default();
        registry.register(
            "cairn_shipper_oldest_pending_block_age_seconds",
            "Age of the oldest block not yet uploaded (by its maxTime), per tenant",
            shipper_oldest_age.clone(),
        );
        let shipper_queue_bytes = Family::<MetricLabels, Gauge>::default();
        registry.register(
            "cairn_shipper_queue_bytes",
            "Bytes of the local blocks not yet in the bucket, per tenant: what a bucket outage \
             adds to the volume",
            shipper_queue_bytes.clone(),
        );
        let volume_size = Gauge::default();
        registry.register(
            "cairn_receive_tsdb_volume_size_bytes",
            "Size of the filesystem holding the TSDB directory",
            volume_size.clone(),
        );
        let volume_available = Gauge::default();
        registry.register(
            "cairn_receive_tsdb_volume_available_bytes",
            "Bytes free to this process on the filesystem holding the TSDB directory; at 0 the \
             WAL cannot grow and writes fail",
            volume_available.clone(),
        );
        let hashring = HashringMetrics::default();
        for (name, help, c) in [
            (
                "thanos_receive_hashrings_file_refreshes",
                "Re-reads of the hashrings file",
                &hashring.refreshes,
            ),
            (
                "thanos_receive_hashrings_file_changes",
                "Hashrings file changes applied",
                &hashring.changes,
            ),
            (
                "thanos_receive_hashrings_file_errors",
                "Hashrings file reads that failed or were refused",
                &hashring.errors,
            ),
        ] {
            registry.register(name, help, c.clone());
        }
        registry.register(
            "thanos_receive_config_last_reload_successful",
            "Whether the last hashrings file reload succeeded",
            hashring.last_successful.clone(),
        );
        registry.register(
            "thanos_receive_config_last_reload_success_timestamp_seconds",
            "When the hashrings file was last applied",
            hashring.last_success_seconds.clone(),
        );
        registry.register(
            "thanos_receive_config_hash",
            "Hash of the applied hashrings file",
            hashring.config_hash.clone(),
        );
        registry.register(
            "thanos_receive_hashring_nodes",
            "Endpoints per hashring",
            hashring.nodes.clone(),
        );
        registry.register(
            "thanos_receive_hashring_tenants",
            "Tenants per hashring",
            hashring.tenants.clone(),
        );
        registry.register(
            "cairn_receive_hashring_skew",
            "Per hashring, the most loaded endpoint's exact share of the hash space over the mean \
             share (1: even)",
            hashring.skew.clone(),
        );
        registry.register(
            "cairn_receive_hashring_problems",
            "Problems of the hashrings file in use that load but have caused incidents \
             (severity=\"incident\", e.g. a default hashring missing receivers) or look wrong \
             (severity=\"warning\"); each is logged when the file is applied",
            hashring.problems.clone(),
        );
        Metrics {
            hashring,
            registry,
            shipper_uploads,
            shipper_failures,
            shipper_bytes,
            shipper_queue,
            shipper_oldest_age,
            shipper_queue_bytes,
            volume_size,
            volume_available,
            http_requests,
            http_request_duration,
            samples_ingested,
            histograms_ingested,
            exemplars_ingested,
            samples_rejected,
            head_series,
            blocks_loaded,
            blocks_bytes,
            head_min_time,
            head_max_time,
        }
    }

    /// Mirrors the hashrings watcher's status.
    pub fn update_hashrings(&self, snap: &crate::hashring::watch::WatchSnapshot) {
        let h = &self.hashring;
        for (c, v) in [
            (&h.refreshes, snap.refreshes),
            (&h.changes, snap.changes),
            (&h.errors, snap.errors),
        ] {
            c.inc_by(v.saturating_sub(c.get()));
        }
        h.last_successful.set(snap.last_reload_successful as i64);
        if let Some(t) = snap.last_success {
            let secs = t
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            h.last_success_seconds.set(secs as i64);
        }
        h.config_hash.set(snap.config_hash);
        h.nodes.clear();
        h.tenants.clear();
        h.skew.clear();
        for r in &snap.hashrings {
            let name = model::labels::escape_exposition_value(&r.name);
            let l = vec![("name".to_string(), name)];
            h.nodes.get_or_create(&l).set(r.nodes as i64);
            h.tenants.get_or_create(&l).set(r.tenants as i64);
            h.skew.get_or_create(&l).set(r.skew);
        }
        for severity in ["incident", "warning"] {
            let n = snap.problems.iter().filter(|(s, _)| *s == severity).count();
            h.problems
                .get_or_create(&vec![("severity".to_string(), severity.to_string())])
                .set(n as i64);
        }
    }

    /// For other parts of the receiver to register their metrics.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Refreshes the per-tenant TSDB gauges and the TSDB volume's size and free space.
    pub fn update_tsdb(&self, tenants: &Tenants) {
        match rustix::fs::statvfs(tenants.root()) {
            Ok(st) => {
                let block = st.f_frsize;
                self.volume_size.set((st.f_blocks * block) as i64);
                self.volume_available.set((st.f_bavail * block) as i64);
            }
            Err(e) => {
                tracing::debug!(error = %e, "statvfs of the TSDB directory failed");
            }
        }
        for (tenant, db) in tenants.all() {
            let l = vec![("tenant".to_string(), tenant)];
            let head = db.head();
            self.head_series
                .get_or_create(&l)
                .set(head.num_series() as i64);
            self.blocks_loaded
                .get_or_create(&l)
                .set(db.blocks().len() as i64);
            self.blocks_bytes
                .get_or_create(&l)
                .set(db.blocks_size() as i64);
            if !head.is_empty() {
                self.head_min_time.get_or_create(&l).set(head.min_time());
                self.head_max_time.get_or_create(&l).set(head.max_time());
            }
        }
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// prometheus-client ends every help text with a period itself.
    #[test]
    fn help_texts_end_with_one_period() {
        let m = Metrics::new();
        m.update_hashrings(&crate::hashring::watch::WatchStatus::default().snapshot());
        let text = m.encode();
        let helps: Vec<&str> = text.lines().filter(|l| l.starts_with("# HELP")).collect();
        assert!(helps.len() >= 5, "{text}");
        for h in helps {
            assert!(h.ends_with('.') && !h.ends_with(".."), "{h}");
        }
    }
}
