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

pub type Labels = Vec<(String, String)>;

fn duration_histogram() -> Histogram {
    // 1 ms .. ~33 s
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<Labels, Counter>,
    pub http_request_duration: Family<Labels, Histogram, fn() -> Histogram>,
    pub samples_ingested: Family<Labels, Counter>,
    pub samples_rejected: Family<Labels, Counter>,
    pub head_series: Family<Labels, Gauge>,
    pub blocks_loaded: Family<Labels, Gauge>,
    pub blocks_bytes: Family<Labels, Gauge>,
    pub head_min_time: Family<Labels, Gauge>,
    pub head_max_time: Family<Labels, Gauge>,
    pub shipper_uploads: Family<Labels, Counter>,
    pub shipper_failures: Family<Labels, Counter>,
    pub shipper_bytes: Family<Labels, Counter>,
    pub shipper_queue: Family<Labels, Gauge>,
    pub shipper_oldest_age: Family<Labels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let http_requests = Family::<Labels, Counter>::default();
        registry.register(
            "thanos_receive_http_requests",
            "Remote-write requests by status code and tenant.",
            http_requests.clone(),
        );
        let http_request_duration =
            Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram as fn() -> Histogram,
            );
        registry.register(
            "thanos_receive_http_request_duration_seconds",
            "Remote-write request latency by status code and tenant.",
            http_request_duration.clone(),
        );
        let samples_ingested = Family::<Labels, Counter>::default();
        registry.register(
            "cairn_receive_samples_ingested",
            "Samples written to a tenant's TSDB.",
            samples_ingested.clone(),
        );
        let samples_rejected = Family::<Labels, Counter>::default();
        registry.register(
            "cairn_receive_samples_rejected",
            "Samples rejected, by tenant and reason.",
            samples_rejected.clone(),
        );
        let head_series = Family::<Labels, Gauge>::default();
        registry.register(
            "prometheus_tsdb_head_series",
            "Series in the head, per tenant.",
            head_series.clone(),
        );
        let blocks_loaded = Family::<Labels, Gauge>::default();
        registry.register(
            "thanos_receive_tsdb_blocks_loaded",
            "Blocks open in a tenant's TSDB.",
            blocks_loaded.clone(),
        );
        let blocks_bytes = Family::<Labels, Gauge>::default();
        registry.register(
            "prometheus_tsdb_storage_blocks_bytes",
            "Bytes of a tenant's blocks on local disk.",
            blocks_bytes.clone(),
        );
        let head_min_time = Family::<Labels, Gauge>::default();
        registry.register(
            "prometheus_tsdb_head_min_time",
            "Oldest timestamp (ms) in a tenant's head.",
            head_min_time.clone(),
        );
        let head_max_time = Family::<Labels, Gauge>::default();
        registry.register(
            "prometheus_tsdb_head_max_time",
            "Newest timestamp (ms) in a tenant's head.",
            head_max_time.clone(),
        );
        let shipper_uploads = Family::<Labels, Counter>::default();
        registry.register(
            "thanos_shipper_uploads",
            "Blocks uploaded to the bucket, per tenant.",
            shipper_uploads.clone(),
        );
        let shipper_failures = Family::<Labels, Counter>::default();
        registry.register(
            "thanos_shipper_upload_failures",
            "Failed upload passes, per tenant.",
            shipper_failures.clone(),
        );
        let shipper_bytes = Family::<Labels, Counter>::default();
        registry.register(
            "cairn_shipper_uploaded_bytes",
            "Bytes uploaded to the bucket, per tenant.",
            shipper_bytes.clone(),
        );
        let shipper_queue = Family::<Labels, Gauge>::default();
        registry.register(
            "cairn_shipper_queue_blocks",
            "Local blocks not yet in the bucket, per tenant.",
            shipper_queue.clone(),
        );
        let shipper_oldest_age = Family::<Labels, Gauge>::default();
        registry.register(
            "cairn_shipper_oldest_pending_block_age_seconds",
            "Age of the oldest block not yet uploaded (by its maxTime), per tenant.",
            shipper_oldest_age.clone(),
        );
        Metrics {
            registry,
            shipper_uploads,
            shipper_failures,
            shipper_bytes,
            shipper_queue,
            shipper_oldest_age,
            http_requests,
            http_request_duration,
            samples_ingested,
            samples_rejected,
            head_series,
            blocks_loaded,
            blocks_bytes,
            head_min_time,
            head_max_time,
        }
    }

    /// Refreshes the per-tenant TSDB gauges.
    pub fn update_tsdb(&self, tenants: &Tenants) {
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
