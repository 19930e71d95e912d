//! Query results and annotations, as returned by the engine.

use std::fmt;

use tsdb::Labels;

use crate::storage::Sample;

/// One element of an instant vector result.
#[derive(Clone, Debug, PartialEq)]
pub struct InstantSample {
    pub labels: Labels,
    /// Evaluation timestamp (ms).
    pub t: i64,
    pub f: f64,
    /// Set when the element is a native histogram (then `f` is unused).
    pub h: Option<std::sync::Arc<crate::histogram::FloatHistogram>>,
}

/// One series of a range-vector result (a range query, or an instant query of a range expression).
#[derive(Clone, Debug, PartialEq)]
pub struct RangeSeries {
    pub labels: Labels,
    pub samples: Vec<Sample>,
}

/// The value of a query.
#[derive(Clone, Debug, PartialEq)]
pub enum QueryValue {
    Vector(Vec<InstantSample>),
    Matrix(Vec<RangeSeries>),
    Scalar { t: i64, f: f64 },
    String { t: i64, s: String },
}

/// Warnings and infos collected during evaluation, worded as in Prometheus
/// (`PromQL warning: ...`, `PromQL info: ...`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Annotations {
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
}

impl Annotations {
    pub fn warn(&mut self, msg: impl fmt::Display) {
        let s = format!("PromQL warning: {msg}");
        if !self.warnings.contains(&s) {
            self.warnings.push(s);
        }
    }

    pub fn info(&mut self, msg: impl fmt::Display) {
        let s = format!("PromQL info: {msg}");
        if !self.infos.contains(&s) {
            self.infos.push(s);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.warnings.is_empty() && self.infos.is_empty()
    }

    /// Adds `other`'s annotations that are not here yet, in their order.
    pub fn absorb(&mut self, other: Annotations) {
        for w in other.warnings {
            if !self.warnings.contains(&w) {
                self.warnings.push(w);
            }
        }
        for i in other.infos {
            if !self.infos.contains(&i) {
                self.infos.push(i);
            }
        }
    }
}

/// A finished query: its value and its annotations.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryResult {
    pub value: QueryValue,
    pub annotations: Annotations,
}
