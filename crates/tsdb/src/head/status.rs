//! Head statistics: `/api/v1/status/tsdb` and the memory estimate.

use super::Head;

impl Head {
    /// Approximate heap bytes held by the head, for the memory-per-series measurement.
    pub fn memory_estimate(&self) -> HeadMemory {
        let index = self.index.read().unwrap();
        let chunk_bytes: usize = index.by_ref.values().map(|s| s.chunk_bytes()).sum();
        let symbol_bytes: usize = index.symbols.iter().map(|s| s.len() + 16).sum();
        HeadMemory {
            series: index.by_ref.len(),
            chunk_bytes,
            symbol_bytes,
        }
    }

    /// Label names and per-name value counts (for status pages).
    pub fn label_stats(&self) -> Vec<(String, usize, usize)> {
        let index = self.index.read().unwrap();
        let mut out: Vec<(String, usize, usize)> = index
            .postings
            .iter()
            .map(|(name, values)| {
                (
                    name.to_string(),
                    values.len(),
                    values.values().map(Vec::len).sum(),
                )
            })
            .collect();
        out.sort();
        out
    }
}

/// Head statistics in the shape of Prometheus' `/api/v1/status/tsdb`.
#[derive(Debug, Clone, Default)]
pub struct HeadStatus {
    pub num_series: usize,
    pub num_label_pairs: usize,
    pub chunk_count: usize,
    pub min_time: i64,
    pub max_time: i64,
    /// Top lists, largest first: (name, count).
    pub series_count_by_metric_name: Vec<(String, u64)>,
    pub label_value_count_by_label_name: Vec<(String, u64)>,
    /// Bytes of label values per label name (each value counted once per series holding it).
    pub memory_in_bytes_by_label_name: Vec<(String, u64)>,
    pub series_count_by_label_value_pair: Vec<(String, u64)>,
}

fn top(mut v: Vec<(String, u64)>, limit: usize) -> Vec<(String, u64)> {
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(limit);
    v
}

impl Head {
    /// Head statistics with top-`limit` lists.
    pub fn status(&self, limit: usize) -> HeadStatus {
        Head::status_of(&[self], limit)
    }

    /// Statistics of several heads taken as one (a receiver's tenants): series and bytes add
    /// up, label values and label pairs are counted once however many heads hold them.
    pub fn status_of(heads: &[&Head], limit: usize) -> HeadStatus {
        use std::collections::{BTreeMap, BTreeSet};
        let mut by_metric: BTreeMap<String, u64> = BTreeMap::new();
        let mut values_per_name: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut bytes_per_name: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_pair: BTreeMap<String, u64> = BTreeMap::new();
        let (mut num_series, mut chunk_count) = (0, 0);
        let (mut min_time, mut max_time) = (i64::MAX, i64::MIN);
        for head in heads {
            let index = head.index.read().unwrap();
            num_series += index.by_ref.len();
            chunk_count += index
                .by_ref
                .values()
                .map(|s| s.samples.lock().unwrap().chunk_count())
                .sum::<usize>();
            if !index.by_ref.is_empty() {
                min_time = min_time.min(head.min_time());
                max_time = max_time.max(head.max_time());
            }
            for (name, values) in &index.postings {
                let seen = values_per_name.entry(name.to_string()).or_default();
                let mut bytes = 0u64;
                for (value, refs) in values {
                    seen.insert(value.to_string());
                    bytes += (value.len() * refs.len()) as u64;
                    *by_pair.entry(format!("{name}={value}")).or_default() += refs.len() as u64;
                    if &**name == crate::labels::METRIC_NAME {
                        *by_metric.entry(value.to_string()).or_default() += refs.len() as u64;
                    }
                }
                *bytes_per_name.entry(name.to_string()).or_default() += bytes;
            }
        }
        let (min_time, max_time) = if num_series == 0 {
            (
                heads.first().map_or(0, |h| h.min_time()),
                heads.first().map_or(0, |h| h.max_time()),
            )
        } else {
            (min_time, max_time)
        };
        HeadStatus {
            num_series,
            num_label_pairs: by_pair.len(),
            chunk_count,
            min_time,
            max_time,
            series_count_by_metric_name: top(by_metric.into_iter().collect(), limit),
            label_value_count_by_label_name: top(
                values_per_name
                    .into_iter()
                    .map(|(n, v)| (n, v.len() as u64))
                    .collect(),
                limit,
            ),
            memory_in_bytes_by_label_name: top(bytes_per_name.into_iter().collect(), limit),
            series_count_by_label_value_pair: top(by_pair.into_iter().collect(), limit),
        }
    }
}

#[derive(Debug, Clone)]
pub struct HeadMemory {
    pub series: usize,
    pub chunk_bytes: usize,
    pub symbol_bytes: usize,
}
