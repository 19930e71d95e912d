//! The PromQL engine over the fan-out: a [`promql::Queryable`] whose selects become StoreAPI
//! Series requests to the endpoints.
//!
//! The engine is synchronous and the fan-out is async: the engine runs on a blocking thread
//! (the HTTP handler puts it there), and each select starts its fan-out on the runtime
//! ([`fanout::series_streams`]: one reader task per endpoint) and merges the endpoints'
//! label-sorted answers as they stream in ([`GroupStream`]): a series is decoded, its copies
//! merged ([`crate::series_set`]) and handed to the engine as soon as every endpoint has
//! streamed past it, so evaluation overlaps the fetch. Range functions over a selector take the
//! series on several threads ([`Queryable::select_par`]). Warnings (failed endpoints under
//! partial response, skipped chunks) are collected for the response.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use promql::{
    CancelToken, Matcher, ParSeriesSink, Queryable, Sample, SelectHints, Series, SeriesSink,
    StorageError, StorageErrorKind,
};
use tokio::runtime::Handle;

use crate::dedup::is_counter_func;
use crate::downsample::{max_resolution_for, Aggregates};
use crate::endpoints::EndpointSet;
use crate::fanout::{self, FanoutError, FanoutOptions, SeriesQuery, SeriesStream};
use crate::series_set::{GroupStream, MergeMode, Merger, SeriesGroup, Skipped};

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
    /// Fan-outs started ahead, by the Debug form of their [`SeriesQuery`].
    prefetched: Mutex<HashMap<String, Vec<SeriesStream>>>,
    /// Selects answered from `prefetched`.
    prefetch_hits: std::sync::atomic::AtomicUsize,
}

/// Series a worker of [`Queryable::select_par`] takes at a time.
const GROUPS_PER_RUN: usize = 16;

/// How a select's series are decoded and their copies merged.
struct Decode {
    start: i64,
    end: i64,
    read: Aggregates,
    mode: MergeMode,
}

impl Decode {
    /// The samples of `g` into `buf`.
    fn merge(
        &self,
        merger: &mut Merger,
        g: &SeriesGroup,
        buf: &mut Vec<Sample>,
    ) -> Result<(), promql::Error> {
        merger
            .merge(g, self.start, self.end, self.read, self.mode, buf)
            .map_err(|e| {
                StorageError::with_source(StorageErrorKind::Corrupt, e)
                    .context(format_args!("series {}", g.labels))
                    .into()
            })
    }
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
        self.prefetch_hits.load(Ordering::Relaxed)
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

    /// Replica labels the stores leave out and the fan-out drops: all of them when
    /// de-duplicating, none otherwise.
    fn strip(&self) -> &[String] {
        if self.opts.dedup_active() {
            &self.opts.replica_labels
        } else {
            &[]
        }
    }

    /// Starts (or takes from what was prefetched) the fan-out of a select, with how to decode
    /// and merge each series group it yields.
    fn open(
        &self,
        hints: &SelectHints,
        matchers: &[Matcher],
    ) -> Result<(GroupStream, Decode), promql::Error> {
        if self.cancel.as_ref().is_some_and(|c| c.is_cancelled()) {
            return Err(promql::Error::Canceled("fetching series"));
        }
        let query = self.series_query(hints, matchers);
        let ahead = self
            .prefetched
            .lock()
            .unwrap()
            .remove(&format!("{query:?}"));
        let streams = match ahead {
            Some(s) => {
                self.prefetch_hits.fetch_add(1, Ordering::Relaxed);
                s
            }
            None => fanout::series_streams(
                &self.endpoints,
                &query,
                &self.opts.fanout,
                self.strip(),
                &self.runtime,
            ),
        };
        let dedup = self.opts.dedup_active();
        let groups = GroupStream::new(
            streams,
            dedup,
            self.opts.fanout.partial_response,
            self.opts.fanout.deadline,
        );
        let mode = match (dedup, self.opts.dedup_func) {
            (true, DedupFunc::Penalty) => MergeMode::Penalty {
                counter: is_counter_func(hints.func.as_deref()),
            },
            (true, DedupFunc::Chain) | (false, _) => MergeMode::Union,
        };
        let decode = Decode {
            start: hints.start,
            end: hints.end,
            read: Aggregates::for_func(hints.func.as_deref()),
            mode,
        };
        Ok((groups, decode))
    }

    /// Ends a select: its fan-out's warnings and what decoding skipped go to the response.
    fn close(&self, groups: GroupStream, skipped: Skipped) {
        for w in groups.warnings {
            self.warn(w);
        }
        self.skipped_warnings(skipped);
    }

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
        let mut ahead = self.prefetched.lock().unwrap();
        for q in queries {
            let streams = fanout::series_streams(
                &self.endpoints,
                &q,
                &self.opts.fanout,
                self.strip(),
                &self.runtime,
            );
            ahead.insert(format!("{q:?}"), streams);
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
        let (mut groups, decode) = self.open(hints, matchers)?;
        let mut merger = Merger::default();
        let mut buf: Vec<Sample> = Vec::new();
        let mut each = || -> Result<(), promql::Error> {
            while let Some(g) = groups.next(true).map_err(fanout_error)? {
                decode.merge(&mut merger, &g, &mut buf)?;
                if !buf.is_empty() {
                    f(g.labels, &buf)?;
                }
            }
            Ok(())
        };
        let result = each();
        self.close(groups, merger.skipped);
        result
    }

    fn select_par(
        &self,
        hints: &SelectHints,
        matchers: &[Matcher],
        workers: usize,
        f: &ParSeriesSink<'_>,
    ) -> Result<(), promql::Error> {
        let (groups, decode) = self.open(hints, matchers)?;
        // The groups and the position of the next one. A worker takes the next group (waiting
        // for the endpoints if need be) and the ones after it that are already there, up to a
        // run; so the work spreads however uneven the series are, and starts as the first
        // series stream in.
        let source = Mutex::new((groups, 0usize));
        let failed = AtomicBool::new(false);
        let take = || -> Result<Vec<(usize, SeriesGroup)>, promql::Error> {
            let mut source = source.lock().unwrap_or_else(|e| e.into_inner());
            let (groups, next) = &mut *source;
            let mut run = Vec::new();
            let mut wait = true;
            while run.len() < GROUPS_PER_RUN {
                match groups.next(wait).map_err(fanout_error)? {
                    Some(g) => run.push((*next, g)),
                    None => break,
                }
                *next += 1;
                wait = false;
            }
            Ok(run)
        };
        let work = |w: usize| -> (Result<(), promql::Error>, Skipped) {
            let mut merger = Merger::default();
            let mut buf: Vec<Sample> = Vec::new();
            let mut go = || -> Result<(), promql::Error> {
                while !failed.load(Ordering::Relaxed) {
                    let run = take()?;
                    if run.is_empty() {
                        break;
                    }
                    for (i, g) in run {
                        decode.merge(&mut merger, &g, &mut buf)?;
                        if !buf.is_empty() {
                            f(w, i, g.labels, &buf)?;
                        }
                    }
                }
                Ok(())
            };
            let result = go();
            if result.is_err() {
                failed.store(true, Ordering::Relaxed);
            }
            (result, merger.skipped)
        };
        let outcomes: Vec<(Result<(), promql::Error>, Skipped)> = std::thread::scope(|scope| {
            let helpers: Vec<_> = (1..workers)
                .map(|w| {
                    let work = &work;
                    std::thread::Builder::new()
                        .name("cairn-query-eval".into())
                        .spawn_scoped(scope, move || work(w))
                })
                .collect();
            let mut outcomes = vec![work(0)];
            for h in helpers {
                match h {
                    Ok(h) => {
                        outcomes.push(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                    }
                    // No thread to be had: the others took its share.
                    Err(e) => tracing::debug!(error = %e, "no evaluation thread"),
                }
            }
            outcomes
        });
        let mut skipped = Skipped::default();
        let mut result = Ok(());
        for (r, s) in outcomes {
            skipped += s;
            if result.is_ok() {
                result = r;
            }
        }
        let (groups, _) = source.into_inner().unwrap_or_else(|e| e.into_inner());
        self.close(groups, skipped);
        result
    }
}
