//! The PromQL engine over the fan-out: a [`promql::Queryable`] whose selects become StoreAPI
//! Series requests to the endpoints.
//!
//! The engine is synchronous and the fan-out is async: the engine runs on a blocking thread
//! (the HTTP handler puts it there) and each select waits for its fan-out with
//! [`tokio::runtime::Handle::block_on`]. A select then groups the answers into series
//! (replica labels dropped when de-duplicating), decodes and merges the copies of each series
//! ([`crate::series_set`]) within the select's span, and hands the series to the engine in label
//! order. Warnings (failed endpoints under partial response, skipped chunks) are collected for
//! the response.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use promql::{
    CancelToken, Matcher, Queryable, Sample, SelectHints, Series, SeriesSink, StorageError,
    StorageErrorKind,
};
use tokio::runtime::Handle;

use crate::dedup::is_counter_func;
use crate::downsample::{max_resolution_for, Aggregates};
use crate::endpoints::EndpointSet;
use crate::fanout::{self, FanoutError, FanoutOptions, Gathered, SeriesQuery};
use crate::series_set::{group, MergeMode, Merger, RawSeries, Skipped};

/// How a query reads: the request's Thanos parameters.
#[derive(Clone, Debug)]
pub struct ReadOptions {
    /// Merge series that differ only in `replica_labels` (`dedup`, default true).
    pub dedup: bool,
    pub replica_labels: Vec<String>,
    pub fanout: FanoutOptions,
    /// `max_source_resolution` in ms: the coarsest resolution the stores may answer with (0:
    /// raw data only); a select feeding a function that needs two samples in its range reads
    /// at most half that range ([`max_resolution_for`]).
    pub max_resolution_window: i64,
    /// `--deduplication.func`: how replicas are merged.
    pub dedup_func: DedupFunc,
}

/// How the samples of a series' replicas are merged (Thanos Query's `--deduplication.func`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DedupFunc {
    /// Thanos' penalty algorithm: follows one replica, switches only across a gap. Made for
    /// replicas that scrape on their own (timestamps differ); it drops samples around a
    /// switch.
    #[default]
    Penalty,
    /// Every timestamp once, the first replica's sample winning: exact for replicas holding
    /// the same samples, as the receivers of a pool do (Thanos recommends it for Receive).
    Chain,
}

impl std::str::FromStr for DedupFunc {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "" | "penalty" => Ok(DedupFunc::Penalty),
            "chain" => Ok(DedupFunc::Chain),
            other => Err(format!(
                "unknown deduplication function {other:?}: use \"penalty\" or \"chain\""
            )),
        }
    }
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            dedup: true,
            replica_labels: Vec::new(),
            fanout: FanoutOptions::default(),
            max_resolution_window: 0,
            dedup_func: DedupFunc::Penalty,
        }
    }
}

impl ReadOptions {
    /// Whether replicas are merged: asked for, and there are replica labels to merge along.
    pub fn dedup_active(&self) -> bool {
        self.dedup && !self.replica_labels.is_empty()
    }
}

/// A [`Queryable`] over the endpoints of an [`EndpointSet`], for one query.
///
/// A query's selectors are fetched all at once: the engine announces them
/// ([`Queryable::prefetch`]) and their fan-outs run concurrently; each select then takes its
/// answer from what was fetched. Without that, a query with two selectors (an error ratio)
/// waited for the first one's stores before it asked for the second.
pub struct FanoutQueryable {
    endpoints: Arc<EndpointSet>,
    runtime: Handle,
    opts: ReadOptions,
    cancel: Option<CancelToken>,
    warnings: Mutex<Vec<String>>,
    /// Answers fetched ahead, by the Debug form of their [`SeriesQuery`].
    prefetched: Mutex<HashMap<String, Gathered<Vec<RawSeries>>>>,
    /// Selects answered from `prefetched`.
    prefetch_hits: std::sync::atomic::AtomicUsize,
}

pub(crate) fn fanout_error(e: FanoutError) -> promql::Error {
    match e {
        FanoutError::Timeout(what) => promql::Error::Timeout(what),
        FanoutError::Endpoint(msg) => StorageError::new(StorageErrorKind::Unavailable, msg).into(),
    }
}

impl FanoutQueryable {
    /// A queryable whose selects run their fan-out on `runtime` (call them from a thread that
    /// is not one of its workers).
    pub fn new(
        endpoints: Arc<EndpointSet>,
        runtime: Handle,
        opts: ReadOptions,
        cancel: Option<CancelToken>,
    ) -> Self {
        FanoutQueryable {
            endpoints,
            runtime,
            opts,
            cancel,
            warnings: Mutex::new(Vec::new()),
            prefetched: Mutex::new(HashMap::new()),
            prefetch_hits: Default::default(),
        }
    }

    /// How many selects were answered from what was fetched ahead.
    pub fn prefetch_hits(&self) -> usize {
        self.prefetch_hits
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The StoreAPI request of a select.
    fn series_query(&self, hints: &SelectHints, matchers: &[Matcher]) -> SeriesQuery {
        let read = Aggregates::for_func(hints.func.as_deref());
        SeriesQuery {
            matchers: matchers.to_vec(),
            min_time: hints.start,
            max_time: hints.end,
            skip_chunks: false,
            max_resolution_window: max_resolution_for(
                self.opts.max_resolution_window,
                hints.range,
                hints.func.as_deref(),
            ),
            aggregates: read.request(),
            step: hints.step,
            range: hints.range,
            func: hints.func.clone(),
            grouping: (!hints.grouping.is_empty() || hints.by)
                .then(|| (hints.by, hints.grouping.clone())),
            without_replica_labels: if self.opts.dedup_active() {
                self.opts.replica_labels.clone()
            } else {
                Vec::new()
            },
        }
    }

    /// The warnings gathered so far, each once, in order.
    pub fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut *self.warnings.lock().unwrap())
    }

    fn warn(&self, w: String) {
        let mut ws = self.warnings.lock().unwrap();
        if !ws.contains(&w) {
            ws.push(w);
        }
    }

    fn skipped_warnings(&self, s: Skipped) {
        if s.histogram_chunks > 0 {
            self.warn(format!(
                "{} downsampled native histogram chunk(s) left out: their aggregates are not read yet",
                s.histogram_chunks
            ));
        }
        if s.aggregate_chunks > 0 {
            self.warn(format!(
                "{} downsampled chunk(s) without the aggregates asked for left out",
                s.aggregate_chunks
            ));
        }
    }
}

impl Queryable for FanoutQueryable {
    fn samples_are_counts(&self, hints: &SelectHints) -> bool {
        Aggregates::for_func(hints.func.as_deref()) == Aggregates::CountOverTime
    }

    fn wants_prefetch(&self) -> bool {
        true
    }

    fn prefetch(&self, selects: &[(SelectHints, Vec<Matcher>)]) {
        let mut queries: Vec<SeriesQuery> = Vec::new();
        for (hints, matchers) in selects {
            let q = self.series_query(hints, matchers);
            if !queries
                .iter()
                .any(|have| format!("{have:?}") == format!("{q:?}"))
            {
                queries.push(q);
            }
        }
        let fetches = queries
            .iter()
            .map(|q| fanout::series(&self.endpoints, q, &self.opts.fanout));
        let answers = self.runtime.block_on(futures::future::join_all(fetches));
        let mut ahead = self.prefetched.lock().unwrap();
        for (q, answer) in queries.iter().zip(answers) {
            // A failed fetch is left to the select, which fetches again and reports it.
            if let Ok(g) = answer {
                ahead.insert(format!("{q:?}"), g);
            }
        }
    }

    fn select(
        &self,
        hints: &SelectHints,
        matchers: &[Matcher],
    ) -> Result<Vec<Series>, promql::Error> {
        let mut out = Vec::new();
        self.select_each(hints, matchers, &mut |labels, samples| {
            out.push(Series {
                labels,
                samples: samples.into(),
            });
            Ok(())
        })?;
        Ok(out)
    }

    fn select_each(
        &self,
        hints: &SelectHints,
        matchers: &[Matcher],
        f: &mut SeriesSink<'_>,
    ) -> Result<(), promql::Error> {
        if self.cancel.as_ref().is_some_and(|c| c.is_cancelled()) {
            return Err(promql::Error::Canceled("fetching series"));
        }
        let read = Aggregates::for_func(hints.func.as_deref());
        let query = self.series_query(hints, matchers);
        let ahead = self
            .prefetched
            .lock()
            .unwrap()
            .remove(&format!("{query:?}"));
        let gathered = match ahead {
            Some(g) => {
                self.prefetch_hits
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                g
            }
            None => self
                .runtime
                .block_on(fanout::series(&self.endpoints, &query, &self.opts.fanout))
                .map_err(fanout_error)?,
        };
        for w in gathered.warnings {
            self.warn(w);
        }
        let dedup = self.opts.dedup_active();
        let groups = group(gathered.answers, &self.opts.replica_labels, dedup);
        let mode = match (dedup, self.opts.dedup_func) {
            (true, DedupFunc::Penalty) => MergeMode::Penalty {
                counter: is_counter_func(hints.func.as_deref()),
            },
            (true, DedupFunc::Chain) | (false, _) => MergeMode::Union,
        };
        let mut merger = Merger::default();
        let mut buf: Vec<Sample> = Vec::new();
        let mut result = Ok(());
        for g in groups {
            merger
                .merge(&g, hints.start, hints.end, read, mode, &mut buf)
                .map_err(|e| {
                    StorageError::with_source(StorageErrorKind::Corrupt, e)
                        .context(format_args!("series {}", g.labels))
                })?;
            if !buf.is_empty() {
                result = f(g.labels, &buf);
                if result.is_err() {
                    break;
                }
            }
        }
        self.skipped_warnings(merger.skipped);
        result
    }
}
