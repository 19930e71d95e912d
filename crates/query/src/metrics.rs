//! `cairn query`'s metrics, on `/metrics`.
//!
//! HTTP metrics carry Thanos' names (`http_requests_total`, `http_request_duration_seconds`,
//! labelled by handler); the endpoint gauge is Thanos Query's
//! `thanos_store_nodes_grpc_connections`; Cairn's own are prefixed `cairn_query_`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::endpoints::{describe_label_sets, EndpointSnapshot, Health};

/// The label pairs of one metric series (prometheus-client encodes them in this order); not a
/// series' [`model::Labels`].
pub type MetricLabels = Vec<(String, String)>;

fn duration_histogram() -> Histogram {
    // 1 ms .. ~65 s
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<MetricLabels, Counter>,
    pub http_request_duration: Family<MetricLabels, Histogram, fn() -> Histogram>,
    pub store_nodes: Family<MetricLabels, Gauge>,
    pub endpoint_up: Family<MetricLabels, Gauge>,
    pub queries: Family<MetricLabels, Counter>,
    pub partial_responses: Counter,
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
            "http_requests",
            "HTTP requests by handler, method and status code",
            http_requests.clone(),
        );
        let http_request_duration =
            Family::<MetricLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram as fn() -> Histogram,
            );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by handler and method",
            http_request_duration.clone(),
        );
        let store_nodes = Family::<MetricLabels, Gauge>::default();
        registry.register(
            "thanos_store_nodes_grpc_connections",
            "Healthy endpoints, by external label sets and component type",
            store_nodes.clone(),
        );
        let endpoint_up = Family::<MetricLabels, Gauge>::default();
        registry.register(
            "cairn_query_endpoint_up",
            "Whether an endpoint answered its last Info call (1) or not (0)",
            endpoint_up.clone(),
        );
        let queries = Family::<MetricLabels, Counter>::default();
        registry.register(
            "cairn_query_queries",
            "PromQL queries by kind (instant, range) and outcome (success or error type)",
            queries.clone(),
        );
        let partial_responses = Counter::default();
        registry.register(
            "cairn_query_partial_responses",
            "Answers that carried a warning about an endpoint that failed",
            partial_responses.clone(),
        );
        Metrics {
            registry,
            http_requests,
            http_request_duration,
            store_nodes,
            endpoint_up,
            queries,
            partial_responses,
        }
    }

    /// Sets the endpoint gauges from the endpoint set.
    pub fn observe_endpoints(&self, endpoints: &[EndpointSnapshot]) {
        self.store_nodes.clear();
        self.endpoint_up.clear();
        for e in endpoints {
            self.endpoint_up
                .get_or_create(&vec![("endpoint".to_string(), e.address.clone())])
                .set(i64::from(e.health == Health::Up));
            if e.health != Health::Up {
                continue;
            }
            if let Some(info) = &e.info {
                self.store_nodes
                    .get_or_create(&vec![
                        (
                            "external_labels".to_string(),
                            model::labels::escape_exposition_value(&describe_label_sets(
                                &info.label_sets,
                            )),
                        ),
                        ("store_type".to_string(), info.component_type.clone()),
                    ])
                    .inc();
            }
        }
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
