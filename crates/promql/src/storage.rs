//! The storage contract the engine evaluates against.
//!
//! The engine asks storage for series with [`Queryable::select`], once per selector in the query,
//! passing the label matchers and [`SelectHints`] (time bounds plus what the planner knows about
//! how the data will be used). Storage may use the hints to prune or pre-aggregate, but must
//! always return every sample inside `[start, end]` of every matching series; samples outside the
//! bounds are allowed and ignored.
//!
//! Selectors whose series are consumed one at a time (instant selectors, range functions over
//! a selector) go through [`Queryable::select_each`] instead, which hands series over one by
//! one with borrowed samples: a storage that decodes series can then reuse a single buffer, and
//! the engine never holds every selected series' samples at once.

use std::sync::Arc;

pub use model::matcher::{MatchType, Matcher};
pub use model::{is_stale_nan, stale_nan, STALE_NAN_BITS};
use tsdb::Labels;

use crate::error::Error;
use crate::histogram::FloatHistogram;

/// One sample: a float, or a native histogram when `h` is set (then `f` is unused).
/// Stale markers are floats with the Prometheus stale NaN bit pattern.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Milliseconds since the epoch.
    pub t: i64,
    pub f: f64,
    pub h: Option<Arc<FloatHistogram>>,
}

impl Sample {
    /// A float sample.
    pub fn float(t: i64, f: f64) -> Self {
        Sample { t, f, h: None }
    }

    /// A histogram sample.
    pub fn histogram(t: i64, h: Arc<FloatHistogram>) -> Self {
        Sample {
            t,
            f: 0.0,
            h: Some(h),
        }
    }

    /// Whether this is a stale marker.
    pub fn is_stale(&self) -> bool {
        match &self.h {
            None => is_stale_nan(self.f),
            Some(h) => is_stale_nan(h.sum),
        }
    }
}

impl model::dedup::ReplicaSample for Sample {
    fn t(&self) -> i64 {
        self.t
    }

    fn float(&self) -> Option<f64> {
        self.h.is_none().then_some(self.f)
    }

    fn add(&mut self, delta: f64) {
        self.f += delta;
    }
}

/// A series as returned by storage: its labels and its samples sorted by time.
#[derive(Clone, Debug)]
pub struct Series {
    pub labels: Labels,
    pub samples: Arc<[Sample]>,
}

/// What the planner tells storage about a select.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SelectHints {
    /// First timestamp (ms, inclusive) whose samples may be needed.
    pub start: i64,
    /// Last timestamp (ms, inclusive) whose samples may be needed.
    pub end: i64,
    /// Evaluation step in ms (0 for an instant query).
    pub step: i64,
    /// The function the selector feeds, if any (e.g. `rate`).
    pub func: Option<String>,
    /// The range of a range selector in ms (0 for an instant selector).
    pub range: i64,
    /// Grouping labels of the enclosing aggregation, if any.
    pub grouping: Vec<String>,
    /// Whether `grouping` is `by` (true) or `without` (false).
    pub by: bool,
}

/// Receives series one at a time from [`Queryable::select_each`]: labels, and samples sorted by
/// time (borrowed for the call only).
pub type SeriesSink<'f> = dyn FnMut(Labels, &[Sample]) -> Result<(), Error> + 'f;

/// Receives series from [`Queryable::select_par`], possibly from several threads at once: the
/// number of the calling worker (below the `workers` the engine allowed), the series' position
/// in label order, its labels, and its samples (borrowed for the call only).
pub type ParSeriesSink<'f> =
    dyn Fn(usize, usize, Labels, &[Sample]) -> Result<(), Error> + Sync + 'f;

/// A source of series.
pub trait Queryable: Send + Sync {
    /// Returns every series matching all `matchers`, with at least the samples in
    /// `[hints.start, hints.end]`, sorted by labels.
    fn select(&self, hints: &SelectHints, matchers: &[Matcher]) -> Result<Vec<Series>, Error>;

    /// Whether each sample this storage hands over for `hints` stands for as many raw samples as
    /// its value says (downsampled data read through its count aggregate, raw samples as 1), so
    /// that `count_over_time` adds the values up instead of counting the samples. Default: no.
    fn samples_are_counts(&self, _hints: &SelectHints) -> bool {
        false
    }

    /// Whether [`prefetch`](Queryable::prefetch) does anything; the engine finds a query's
    /// selects with a dry run only for storage that says so. Default: no.
    fn wants_prefetch(&self) -> bool {
        false
    }

    /// Every select a query is about to make, in order, before it makes them: storage that
    /// fetches remotely may start them all at once, and answer each later `select` or
    /// `select_each` with the same hints and matchers from what it fetched. A select that was
    /// not announced, or whose announced fetch failed, is fetched as usual. Default: nothing.
    fn prefetch(&self, _selects: &[(SelectHints, Vec<Matcher>)]) {}

    /// The same series as [`select`](Queryable::select), in the same order, handed to `f` one
    /// at a time with their samples borrowed, so that storage which decodes (or fetches) series
    /// can reuse one buffer instead of holding every series' samples at once. The engine uses
    /// this where it consumes a selector's series one by one (range functions, instant
    /// selectors). The default calls `select`.
    fn select_each(
        &self,
        hints: &SelectHints,
        matchers: &[Matcher],
        f: &mut SeriesSink<'_>,
    ) -> Result<(), Error> {
        for s in self.select(hints, matchers)? {
            f(s.labels, &s.samples)?;
        }
        Ok(())
    }

    /// The series of [`select_each`](Queryable::select_each), handed to `f` by up to `workers`
    /// threads at once, each call with the series' position in label order so that the engine
    /// can put its results back in that order. Storage that decodes series spreads the
    /// decoding (and the engine's per-series work inside `f`) over the threads; after the first
    /// error no new series is handed over and one error is returned. The default hands every
    /// series over on the calling thread, as worker 0.
    fn select_par(
        &self,
        hints: &SelectHints,
        matchers: &[Matcher],
        _workers: usize,
        f: &ParSeriesSink<'_>,
    ) -> Result<(), Error> {
        let mut i = 0;
        self.select_each(hints, matchers, &mut |labels, samples| {
            i += 1;
            f(0, i - 1, labels, samples)
        })
    }
}
