//! The compactor's metrics, in Thanos' names.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// A metric family's label pairs (not a series' labels, which are `model::Labels`).
type MetricLabels = Vec<(String, String)>;

#[derive(Debug, Default)]
pub struct CompactMetrics {
    /// `thanos_compact_group_compactions_total{resolution}`: compactions that wrote a block.
    pub group_compactions: Family<MetricLabels, Counter>,
    /// `thanos_compact_group_vertical_compactions_total{resolution}`: of those, the ones whose
    /// inputs overlapped.
    pub group_vertical_compactions: Family<MetricLabels, Counter>,
    /// `thanos_compact_halted`: 1 once a critical error stopped compaction.
    pub halted: Gauge,
    /// `thanos_compact_iterations_total`: iterations that finished without error.
    pub iterations: Counter,
    /// `thanos_compact_retries_total`: iterations that failed and will be retried.
    pub retries: Counter,
    /// `thanos_compact_blocks_marked_total{marker, reason}`.
    pub blocks_marked: Family<MetricLabels, Counter>,
    /// `thanos_compact_todo_compactions`: compactions planned in the current round.
    pub todo_compactions: Gauge,
    /// `thanos_compact_blocks_cleaned_total`: blocks deleted from the bucket.
    pub blocks_cleaned: Counter,
    /// `thanos_compact_downsample_total{resolution}`: downsampling attempts (failed ones
    /// included, as Thanos counts them), by the source block's resolution.
    pub downsamples: Family<MetricLabels, Counter>,
    /// `thanos_compact_downsample_failures_total{resolution}`.
    pub downsample_failures: Family<MetricLabels, Counter>,
}

impl CompactMetrics {
    pub fn register(&self, registry: &mut Registry) {
        // prometheus-client appends `_total` to counters itself.
        registry.register(
            "thanos_compact_group_compactions",
            "Total number of group compaction attempts that resulted in a new block",
            self.group_compactions.clone(),
        );
        registry.register(
            "thanos_compact_group_vertical_compactions",
            "Total number of group compaction attempts that resulted in a new block based on overlapping blocks",
            self.group_vertical_compactions.clone(),
        );
        registry.register(
            "thanos_compact_halted",
            "Set to 1 if the compactor halted due to an unexpected error",
            self.halted.clone(),
        );
        registry.register(
            "thanos_compact_iterations",
            "Total number of iterations that were executed successfully",
            self.iterations.clone(),
        );
        registry.register(
            "thanos_compact_retries",
            "Total number of retries after retriable compactor error",
            self.retries.clone(),
        );
        registry.register(
            "thanos_compact_blocks_marked",
            "Total number of blocks marked in compactor",
            self.blocks_marked.clone(),
        );
        registry.register(
            "thanos_compact_todo_compactions",
            "The number of planned compactions",
            self.todo_compactions.clone(),
        );
        registry.register(
            "thanos_compact_blocks_cleaned",
            "Total number of blocks deleted in compactor",
            self.blocks_cleaned.clone(),
        );
        registry.register(
            "thanos_compact_downsample",
            "Total number of downsampling attempts",
            self.downsamples.clone(),
        );
        registry.register(
            "thanos_compact_downsample_failures",
            "Total number of failed downsampling attempts",
            self.downsample_failures.clone(),
        );
    }
}
