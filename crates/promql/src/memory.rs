//! An in-memory [`Queryable`]: series kept sorted by labels, samples sorted by time.

use std::collections::BTreeMap;
use std::sync::Arc;

use tsdb::Labels;

use crate::error::Error;
use crate::histogram::FloatHistogram;
use crate::storage::{Matcher, Queryable, Sample, SelectHints, Series};

/// In-memory storage for tests and small embedded uses.
#[derive(Default, Clone, Debug)]
pub struct MemoryStorage {
    series: BTreeMap<Labels, Vec<Sample>>,
}

impl MemoryStorage {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one sample; samples may arrive in any order, and a later sample at the same
    /// timestamp replaces an earlier one.
    pub fn append(&mut self, labels: &Labels, t: i64, f: f64) {
        self.append_sample(labels, Sample::float(t, f));
    }

    /// Adds one native-histogram sample.
    pub fn append_histogram(&mut self, labels: &Labels, t: i64, h: FloatHistogram) {
        self.append_sample(labels, Sample::histogram(t, Arc::new(h)));
    }

    fn append_sample(&mut self, labels: &Labels, s: Sample) {
        let v = self.series.entry(labels.clone()).or_default();
        let t = s.t;
        match v.last() {
            Some(last) if last.t < t => v.push(s),
            None => v.push(s),
            _ => match v.binary_search_by_key(&t, |s| s.t) {
                Ok(i) => v[i] = s,
                Err(i) => v.insert(i, s),
            },
        }
    }

    /// Drops everything.
    pub fn clear(&mut self) {
        self.series.clear();
    }

    /// Number of series held.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

impl Queryable for MemoryStorage {
    fn select(&self, hints: &SelectHints, matchers: &[Matcher]) -> Result<Vec<Series>, Error> {
        let mut out = Vec::new();
        for (labels, samples) in &self.series {
            if !matchers.iter().all(|m| m.matches_labels(labels)) {
                continue;
            }
            let lo = samples.partition_point(|s| s.t < hints.start);
            let hi = samples.partition_point(|s| s.t <= hints.end);
            if lo >= hi {
                continue;
            }
            out.push(Series {
                labels: labels.clone(),
                samples: Arc::from(&samples[lo..hi]),
            });
        }
        Ok(out)
    }
}
