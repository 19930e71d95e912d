//! The evaluator: walks the parsed expression and evaluates every node over all steps of the
//! query at once.
//!
//! Every instant-vector node produces a list of [`Series`], each holding at most one point per
//! evaluation step (a point's timestamp is the step's timestamp). Scalars are one value per step.
//! Selectors read each storage series once, with cursors that only move forward, so a range query
//! costs one pass over the data per selector rather than one per step. Instant selectors and
//! range functions over a selector take storage's series one at a time
//! ([`Queryable::select_each`](crate::Queryable::select_each)) and turn each into its
//! per-step points right away.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::{AtModifier, Expr, Offset, SubqueryExpr, VectorSelector};
use tsdb::Labels;

use crate::error::{Error, Result};
use crate::histogram::{CounterResetHint, FloatHistogram};
use crate::planner;
use crate::storage::{
    is_stale_nan, MatchType, Matcher, Queryable, Sample, Series as StorageSeries,
};
use crate::value::Annotations;

/// An instant-vector series inside the evaluator.
#[derive(Clone, Debug)]
pub(crate) struct Series {
    pub labels: Labels,
    pub points: Vec<Sample>,
    /// The metric name must be dropped when the query finishes (delayed name removal).
    pub drop_name: bool,
}

/// One series of a range-vector input.
pub(crate) struct RangeSeries {
    pub labels: Labels,
    pub points: Vec<Sample>,
    pub drop_name: bool,
    /// Whether any point is a native histogram.
    pub has_histograms: bool,
}

/// A range-vector input: raw samples per series plus how to window them.
pub(crate) struct RangeInput {
    pub series: Vec<RangeSeries>,
    pub range: i64,
    pub offset: i64,
    pub at: Option<i64>,
}

impl RangeInput {
    /// End of the window (inclusive) for evaluation time `ts`.
    pub fn window_end(&self, ts: i64) -> i64 {
        self.at.unwrap_or(ts) - self.offset
    }
}

/// The value of a node over all steps.
pub(crate) enum Val {
    Vector(Vec<Series>),
    Scalar(Vec<f64>),
    Matrix(Vec<Series>),
    Str(String),
}

/// The evaluation steps of a node.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Steps {
    pub start: i64,
    pub end: i64,
    /// Always > 0 (1 for an instant evaluation).
    pub step: i64,
}

impl Steps {
    pub fn len(&self) -> usize {
        if self.end < self.start {
            0
        } else {
            ((self.end - self.start) / self.step + 1) as usize
        }
    }
    pub fn ts(&self, i: usize) -> i64 {
        self.start + i as i64 * self.step
    }
    pub fn idx(&self, t: i64) -> usize {
        ((t - self.start) / self.step) as usize
    }
    pub fn single(t: i64) -> Steps {
        Steps {
            start: t,
            end: t,
            step: 1,
        }
    }
}

/// Cooperative cancellation for a running query.
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Hints that flow from a parent node to the selectors beneath it.
#[derive(Clone, Default)]
pub(crate) struct HintCtx {
    pub func: Option<String>,
    pub grouping: Option<(bool, Vec<String>)>,
}

pub(crate) struct Evaluator<'a> {
    pub storage: &'a dyn Queryable,
    pub lookback: i64,
    pub max_samples: usize,
    pub cur_samples: usize,
    pub deadline: Option<Instant>,
    pub cancel: Option<CancelToken>,
    pub annos: Annotations,
    pub query_start: i64,
    pub query_end: i64,
    pub query_step: i64,
    pub subquery_step: i64,
    /// Whether the selectors being evaluated feed only histogram statistics.
    pub hist_stats: HistStats,
    /// Threads a range function over a selector may spread its series over
    /// ([`Evaluator::range_selector_par`]).
    pub parallelism: usize,
}

/// Whether selectors below the node being evaluated feed only `histogram_count`,
/// `histogram_sum` or `histogram_avg`. Prometheus then reads their histograms through an
/// iterator that decodes only count and sum and works out counter resets on the fly, which
/// shows in the counter reset hints (see [`stats_hints`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum HistStats {
    #[default]
    Off,
    On,
    /// Below a subquery, a trim operator, or a function that needs the buckets: never on.
    Blocked,
}

/// The counter reset hints a selector's histograms carry when read for histogram statistics
/// only: a histogram without a hint (unknown) gets `Reset` or `NotReset` from a comparison with
/// the series' previous histogram in the selection; the first keeps its hint. `None` if
/// nothing changes.
fn stats_hints(samples: &[Sample]) -> Option<Vec<Sample>> {
    let unknown = |p: &Sample| {
        p.h.as_ref()
            .is_some_and(|h| h.counter_reset_hint == CounterResetHint::Unknown)
    };
    if samples.len() < 2 || !samples[1..].iter().any(unknown) {
        return None;
    }
    let mut out = samples.to_vec();
    let mut prev: Option<Arc<FloatHistogram>> = None;
    for p in out.iter_mut() {
        if p.is_stale() {
            continue;
        }
        let Some(h) = p.h.as_mut() else {
            continue;
        };
        let stored = h.clone();
        if h.counter_reset_hint == CounterResetHint::Unknown {
            if let Some(pr) = &prev {
                Arc::make_mut(h).counter_reset_hint = if stored.detect_reset(pr) {
                    CounterResetHint::Reset
                } else {
                    CounterResetHint::NotReset
                };
            }
        }
        prev = Some(stored);
    }
    Some(out)
}

/// Receives a selector's series one at a time (see [`Evaluator::select_each`]).
pub(crate) type SelectSink<'f, 'a> =
    dyn FnMut(&mut Evaluator<'a>, Labels, &[Sample]) -> Result<()> + 'f;

/// Receives a range selector's series one at a time, with whether any sample is a native
/// histogram (see [`Evaluator::range_selector_each`]).
pub(crate) type RangeSink<'f, 'a> =
    dyn FnMut(&mut Evaluator<'a>, Labels, &[Sample], bool) -> Result<()> + 'f;

/// Receives a range selector's series from several threads at once (see
/// [`Evaluator::range_selector_par`]): worker number, position in label order, labels, samples,
/// whether any sample is a native histogram.
pub(crate) type RangeParSink<'f> =
    dyn Fn(usize, usize, Labels, &[Sample], bool) -> Result<()> + Sync + 'f;

/// The samples of `all` a range selector's windows need: those in `[mint, maxt]`, stale
/// markers removed (into `scratch` when there are any), and whether any is a native
/// histogram; `None` when none is left.
fn range_window<'s>(
    all: &'s [Sample],
    (mint, maxt): (i64, i64),
    scratch: &'s mut Vec<Sample>,
) -> Option<(&'s [Sample], bool)> {
    let lo = all.partition_point(|p| p.t < mint);
    let hi = all.partition_point(|p| p.t <= maxt);
    if lo >= hi {
        return None;
    }
    let window = &all[lo..hi];
    // One pass for both questions (the window is every sample of the series).
    let (mut has_histograms, mut has_stale) = (false, false);
    for p in window {
        match &p.h {
            None => has_stale |= is_stale_nan(p.f),
            Some(h) => {
                has_histograms = true;
                has_stale |= is_stale_nan(h.sum);
            }
        }
    }
    if !has_stale {
        return Some((window, has_histograms));
    }
    scratch.clear();
    scratch.extend(window.iter().filter(|p| !p.is_stale()).cloned());
    (!scratch.is_empty()).then_some((&scratch[..], has_histograms))
}

pub(crate) fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => d.as_millis() as i64,
        Some(Offset::Neg(d)) => -(d.as_millis() as i64),
    }
}

pub(crate) fn system_time_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

pub(crate) fn eval_err(msg: impl Into<String>) -> Error {
    Error::Eval(msg.into())
}

/// Converts a parsed selector into storage matchers: one set per `or` group inside the braces
/// (one set when there is none), each with the metric name's matcher first.
pub fn selector_matchers(vs: &VectorSelector) -> Result<Vec<Vec<Matcher>>> {
    let conv = |m: &promql_parser::label::Matcher| -> Result<Matcher> {
        let kind = match &m.op {
            PMatchOp::Equal => MatchType::Equal,
            PMatchOp::NotEqual => MatchType::NotEqual,
            PMatchOp::Re(_) => MatchType::Regex,
            PMatchOp::NotRe(_) => MatchType::NotRegex,
        };
        Ok(Matcher::new(kind, m.name.clone(), m.value.clone())?)
    };
    let mut base = Vec::new();
    if let Some(n) = &vs.name {
        base.push(Matcher::equal(model::labels::METRIC_NAME, n.clone()));
    }
    for m in &vs.matchers.matchers {
        base.push(conv(m)?);
    }
    if vs.matchers.or_matchers.is_empty() {
        return Ok(vec![base]);
    }
    let mut out = Vec::new();
    for group in &vs.matchers.or_matchers {
        let mut g = base.clone();
        for m in group {
            g.push(conv(m)?);
        }
        out.push(g);
    }
    Ok(out)
}

impl<'a> Evaluator<'a> {
    pub fn check(&self) -> Result<()> {
        if let Some(c) = &self.cancel {
            if c.is_cancelled() {
                return Err(Error::Canceled("expression evaluation"));
            }
        }
        if let Some(d) = self.deadline {
            if Instant::now() > d {
                return Err(Error::Timeout("expression evaluation"));
            }
        }
        Ok(())
    }

    pub fn add_samples(&mut self, n: usize) -> Result<()> {
        self.cur_samples += n;
        if self.cur_samples > self.max_samples {
            return Err(Error::TooManySamples("query execution"));
        }
        Ok(())
    }

    pub fn at_ms(&self, at: &Option<AtModifier>) -> Option<i64> {
        match at {
            None => None,
            Some(AtModifier::Start) => Some(self.query_start),
            Some(AtModifier::End) => Some(self.query_end),
            Some(AtModifier::At(t)) => Some(system_time_ms(*t)),
        }
    }

    /// Fetches the series of a selector for the time span `[mint, maxt]` (storage's samples,
    /// not copied).
    pub fn select(
        &mut self,
        vs: &VectorSelector,
        mint: i64,
        maxt: i64,
        range: i64,
        hint: &HintCtx,
    ) -> Result<Vec<StorageSeries>> {
        self.check()?;
        let groups = selector_matchers(vs)?;
        let hints = planner::hints(mint, maxt, self.query_step, range, hint);
        if groups.len() == 1 {
            return self.storage.select(&hints, &groups[0]);
        }
        let mut out: Vec<StorageSeries> = Vec::new();
        let mut seen: HashMap<Labels, ()> = HashMap::new();
        for ms in &groups {
            for s in self.storage.select(&hints, ms)? {
                if seen.insert(s.labels.clone(), ()).is_some() {
                    continue;
                }
                out.push(s);
            }
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }

    /// Hands the series of a selector for `[mint, maxt]` to `f` one at a time, in label
    /// order, with the samples storage returned (borrowed: storage may reuse its buffer).
    pub fn select_each(
        &mut self,
        vs: &VectorSelector,
        (mint, maxt): (i64, i64),
        range: i64,
        hint: &HintCtx,
        f: &mut SelectSink<'_, 'a>,
    ) -> Result<()> {
        self.check()?;
        let groups = selector_matchers(vs)?;
        let stats = self.hist_stats == HistStats::On;
        if groups.len() == 1 {
            let hints = planner::hints(mint, maxt, self.query_step, range, hint);
            let storage = self.storage;
            return storage.select_each(&hints, &groups[0], &mut |labels, samples| match stats
                .then(|| stats_hints(samples))
                .flatten()
            {
                Some(hinted) => f(self, labels, &hinted),
                None => f(self, labels, samples),
            });
        }
        for s in self.select(vs, mint, maxt, range, hint)? {
            match stats.then(|| stats_hints(&s.samples)).flatten() {
                Some(hinted) => f(self, s.labels, &hinted)?,
                None => f(self, s.labels, &s.samples)?,
            }
        }
        Ok(())
    }

    /// Runs `f` with the histogram statistics mode `mode`.
    pub fn with_hist_stats<T>(&mut self, mode: HistStats, f: impl FnOnce(&mut Self) -> T) -> T {
        let saved = std::mem::replace(&mut self.hist_stats, mode);
        let out = f(self);
        self.hist_stats = saved;
        out
    }

    /// Evaluates an expression over `steps`.
    pub fn eval(&mut self, expr: &Expr, steps: Steps, hint: &HintCtx) -> Result<Val> {
        self.check()?;
        let n = steps.len();
        match expr {
            Expr::NumberLiteral(nl) => Ok(Val::Scalar(vec![nl.val; n])),
            Expr::StringLiteral(s) => Ok(Val::Str(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, steps, hint),
            Expr::Unary(u) => match self.eval(&u.expr, steps, hint)? {
                Val::Scalar(mut v) => {
                    v.iter_mut().for_each(|x| *x = -*x);
                    Ok(Val::Scalar(v))
                }
                Val::Vector(mut vs) => {
                    for s in &mut vs {
                        s.drop_name = true;
                        for p in s.points.iter_mut() {
                            match &mut p.h {
                                Some(h) => {
                                    Arc::make_mut(h).mul(-1.0);
                                }
                                None => p.f = -p.f,
                            }
                        }
                    }
                    Ok(Val::Vector(vs))
                }
                _ => Err(eval_err(
                    "unary expression only allowed on scalars and vectors",
                )),
            },
            Expr::VectorSelector(vs) => Ok(Val::Vector(
                self.eval_vector_selector(vs, steps, hint, false)?,
            )),
            Expr::MatrixSelector(ms) => {
                let input =
                    self.range_input_selector(&ms.vs, ms.range.as_millis() as i64, steps, hint)?;
                Ok(Val::Matrix(self.materialize_range(input, steps)?))
            }
            Expr::Subquery(sq) => {
                let input = self.range_input_subquery(sq, steps)?;
                Ok(Val::Matrix(self.materialize_range(input, steps)?))
            }
            Expr::Call(call) => {
                let mode = match (call.func.name, self.hist_stats) {
                    (_, HistStats::Blocked) => HistStats::Blocked,
                    ("histogram_count" | "histogram_sum" | "histogram_avg", _) => HistStats::On,
                    ("histogram_quantile" | "histogram_quantiles" | "histogram_fraction", _) => {
                        HistStats::Blocked
                    }
                    (_, mode) => mode,
                };
                self.with_hist_stats(mode, |ev| {
                    crate::functions::eval_call(ev, call, steps, hint)
                })
            }
            Expr::Aggregate(agg) => crate::aggregate::eval_aggregate(self, agg, steps),
            Expr::Binary(b) => crate::binary::eval_binary(self, b, steps, hint),
            Expr::Extension(ext) => {
                match ext.expr.as_any().downcast_ref::<crate::trim::TrimExpr>() {
                    Some(t) => match t.binary() {
                        Some(b) => self.with_hist_stats(HistStats::Blocked, |ev| {
                            crate::binary::eval_binary_op(ev, b, t.op(), steps, hint)
                        }),
                        None => Err(eval_err("malformed trim expression")),
                    },
                    None => Err(eval_err("extension expressions are not supported")),
                }
            }
        }
    }

    /// Instant-vector selector with lookback and staleness. With `want_ts`, values are the
    /// timestamps (in seconds) of the samples found instead of their values.
    pub fn eval_vector_selector(
        &mut self,
        vs: &VectorSelector,
        steps: Steps,
        hint: &HintCtx,
        want_ts: bool,
    ) -> Result<Vec<Series>> {
        let off = offset_ms(&vs.offset);
        let at = self.at_ms(&vs.at);
        let (mint, maxt) = match at {
            Some(a) => (a - off - self.lookback + 1, a - off),
            None => (steps.start - off - self.lookback + 1, steps.end - off),
        };
        let n = steps.len();
        let lookback = self.lookback;
        let mut out = Vec::new();
        let mut total = 0;
        self.select_each(vs, (mint, maxt), 0, hint, &mut |ev, labels, samples| {
            ev.check()?;
            let mut pts = Vec::new();
            let lookup = |idx: &mut usize, reft: i64| -> Option<&Sample> {
                while *idx < samples.len() && samples[*idx].t <= reft {
                    *idx += 1;
                }
                if *idx == 0 {
                    return None;
                }
                let p = &samples[*idx - 1];
                if p.t <= reft - lookback || p.is_stale() {
                    return None;
                }
                Some(p)
            };
            let mut idx = 0;
            if let Some(a) = at {
                if let Some(p) = lookup(&mut idx, a - off) {
                    let (v, h) = if want_ts {
                        (p.t as f64 / 1000.0, None)
                    } else {
                        (p.f, p.h.clone())
                    };
                    pts.reserve(n);
                    for i in 0..n {
                        pts.push(Sample {
                            t: steps.ts(i),
                            f: v,
                            h: h.clone(),
                        });
                    }
                }
            } else {
                for i in 0..n {
                    let ts = steps.ts(i);
                    if let Some(p) = lookup(&mut idx, ts - off) {
                        let (v, h) = if want_ts {
                            (p.t as f64 / 1000.0, None)
                        } else {
                            (p.f, p.h.clone())
                        };
                        pts.push(Sample { t: ts, f: v, h });
                    }
                }
            }
            if !pts.is_empty() {
                total += pts.len();
                out.push(Series {
                    labels,
                    points: pts,
                    drop_name: false,
                });
            }
            Ok(())
        })?;
        self.add_samples(total)?;
        Ok(out)
    }

    /// The samples a range selector needs for the windows of all `steps`: `[mint, maxt]`.
    fn range_span(&self, vs: &VectorSelector, range: i64, steps: Steps) -> (i64, i64) {
        let off = offset_ms(&vs.offset);
        match self.at_ms(&vs.at) {
            Some(a) => (a - off - range + 1, a - off),
            None => (steps.start - off - range + 1, steps.end - off),
        }
    }

    /// Whether storage hands this range selector's samples over as counts of raw samples
    /// ([`crate::Queryable::samples_are_counts`]).
    pub fn range_selector_counts(
        &self,
        vs: &VectorSelector,
        range: i64,
        steps: Steps,
        hint: &HintCtx,
    ) -> bool {
        let (mint, maxt) = self.range_span(vs, range, steps);
        let hints = planner::hints(mint, maxt, self.query_step, range, hint);
        self.storage.samples_are_counts(&hints)
    }

    /// Hands the series of a range selector to `f` one at a time: each series' samples in the
    /// span the windows of all `steps` cover, stale markers removed, and whether any of them is
    /// a native histogram. Series without samples there are skipped.
    pub fn range_selector_each(
        &mut self,
        vs: &VectorSelector,
        range: i64,
        steps: Steps,
        hint: &HintCtx,
        f: &mut RangeSink<'_, 'a>,
    ) -> Result<()> {
        let span = self.range_span(vs, range, steps);
        let mut scratch: Vec<Sample> = Vec::new();
        self.select_each(
            vs,
            span,
            range,
            hint,
            &mut |ev, labels, all| match range_window(all, span, &mut scratch) {
                None => Ok(()),
                Some((pts, has_histograms)) => {
                    ev.add_samples(pts.len())?;
                    f(ev, labels, pts, has_histograms)
                }
            },
        )
    }

    /// [`range_selector_each`](Self::range_selector_each) on up to `workers` threads: `f` gets
    /// the worker's number and the series' position in label order besides what
    /// `range_selector_each` hands over, and may be called from several threads at once
    /// ([`Queryable::select_par`]). Cancellation, the deadline and the sample limit are
    /// checked as `range_selector_each` checks them.
    pub fn range_selector_par(
        &mut self,
        vs: &VectorSelector,
        range: i64,
        steps: Steps,
        hint: &HintCtx,
        workers: usize,
        f: &RangeParSink<'_>,
    ) -> Result<()> {
        self.check()?;
        let groups = selector_matchers(vs)?;
        if groups.len() != 1 || workers <= 1 {
            let mut i = 0;
            return self.range_selector_each(vs, range, steps, hint, &mut |ev, labels, pts, hh| {
                ev.check()?;
                i += 1;
                f(0, i - 1, labels, pts, hh)
            });
        }
        let span = self.range_span(vs, range, steps);
        let hints = planner::hints(span.0, span.1, self.query_step, range, hint);
        let stats = self.hist_stats == HistStats::On;
        let (cancel, deadline) = (self.cancel.clone(), self.deadline);
        let check = || -> Result<()> {
            if cancel.as_ref().is_some_and(CancelToken::is_cancelled) {
                return Err(Error::Canceled("expression evaluation"));
            }
            if deadline.is_some_and(|d| Instant::now() > d) {
                return Err(Error::Timeout("expression evaluation"));
            }
            Ok(())
        };
        let budget = self.max_samples.saturating_sub(self.cur_samples);
        let taken = std::sync::atomic::AtomicUsize::new(0);
        let scratch: Vec<std::sync::Mutex<Vec<Sample>>> =
            (0..workers).map(|_| Default::default()).collect();
        let storage = self.storage;
        let result = storage.select_par(&hints, &groups[0], workers, &|w, i, labels, all| {
            check()?;
            let hinted = if stats { stats_hints(all) } else { None };
            let all = hinted.as_deref().unwrap_or(all);
            let mut scratch = scratch[w].lock().unwrap_or_else(|e| e.into_inner());
            let Some((pts, has_histograms)) = range_window(all, span, &mut scratch) else {
                return Ok(());
            };
            let before = taken.fetch_add(pts.len(), Ordering::Relaxed);
            if before + pts.len() > budget {
                return Err(Error::TooManySamples("query execution"));
            }
            f(w, i, labels, pts, has_histograms)
        });
        self.cur_samples += taken.into_inner();
        result
    }

    /// Raw samples for a range selector, for the windows of all `steps`.
    pub fn range_input_selector(
        &mut self,
        vs: &VectorSelector,
        range: i64,
        steps: Steps,
        hint: &HintCtx,
    ) -> Result<RangeInput> {
        let mut series = Vec::new();
        self.range_selector_each(vs, range, steps, hint, &mut |_, labels, pts, hh| {
            series.push(RangeSeries {
                labels,
                points: pts.to_vec(),
                drop_name: false,
                has_histograms: hh,
            });
            Ok(())
        })?;
        Ok(RangeInput {
            series,
            range,
            offset: offset_ms(&vs.offset),
            at: self.at_ms(&vs.at),
        })
    }

    /// Evaluates a subquery's inner expression over the steps its windows need.
    pub fn range_input_subquery(&mut self, sq: &SubqueryExpr, steps: Steps) -> Result<RangeInput> {
        let off = offset_ms(&sq.offset);
        let range = sq.range.as_millis() as i64;
        let at = self.at_ms(&sq.at);
        let interval = match sq.step {
            Some(d) if !d.is_zero() => d.as_millis() as i64,
            _ => self.subquery_step,
        };
        let (first, last) = match at {
            Some(a) => (a, a),
            None => (steps.start, steps.end),
        };
        let lo = first - off - range;
        let mut start = interval * lo.div_euclid(interval);
        if start <= lo {
            start += interval;
        }
        let end = last - off;
        let inner = Steps {
            start,
            end,
            step: interval,
        };
        // Counter resets below a subquery are detected from the buckets.
        let val = self.with_hist_stats(HistStats::Blocked, |ev| {
            ev.eval(&sq.expr, inner, &HintCtx::default())
        })?;
        let series = match val {
            Val::Vector(v) => v,
            Val::Scalar(v) => vec![Series {
                labels: Labels::default(),
                points: v
                    .into_iter()
                    .enumerate()
                    .map(|(i, f)| Sample::float(inner.ts(i), f))
                    .collect(),
                drop_name: false,
            }],
            _ => return Err(eval_err("subquery is only allowed on instant vector")),
        };
        // Counter reset hints of subquery output can't be trusted (samples may be skipped or
        // repeated), so claims of (no) reset become unknown.
        let series = series
            .into_iter()
            .filter(|s| !s.points.is_empty())
            .map(|mut s| {
                let mut has_histograms = false;
                for p in s.points.iter_mut() {
                    if let Some(h) = &p.h {
                        has_histograms = true;
                        if matches!(
                            h.counter_reset_hint,
                            CounterResetHint::Reset | CounterResetHint::NotReset
                        ) {
                            p.h = Some(Arc::new(h.with_unknown_reset_hint()));
                        }
                    }
                }
                RangeSeries {
                    labels: s.labels,
                    points: s.points,
                    drop_name: s.drop_name,
                    has_histograms,
                }
            })
            .collect();
        Ok(RangeInput {
            series,
            range,
            offset: off,
            at,
        })
    }

    /// Turns a range input into a matrix value (only for a single evaluation step).
    fn materialize_range(&mut self, input: RangeInput, steps: Steps) -> Result<Vec<Series>> {
        let end = input.window_end(steps.end);
        let start = end - input.range;
        let mut out = Vec::new();
        for s in input.series {
            let points: Vec<Sample> = s
                .points
                .iter()
                .filter(|p| p.t > start && p.t <= end)
                .cloned()
                .collect();
            if !points.is_empty() {
                out.push(Series {
                    labels: s.labels,
                    points,
                    drop_name: s.drop_name,
                });
            }
        }
        Ok(out)
    }
}

/// Walks all series of a vector value step by step, handing out the samples present at each
/// step without allocating per step.
pub(crate) struct StepCursor {
    pos: Vec<usize>,
    /// `(series index, point index)` of the points at the current step.
    pub buf: Vec<(usize, usize)>,
}

impl StepCursor {
    pub fn new(n: usize) -> Self {
        StepCursor {
            pos: vec![0; n],
            buf: Vec::with_capacity(n),
        }
    }

    /// Fills `buf` with `(series index, point index)` of every series that has a point at `t`.
    pub fn advance(&mut self, series: &[Series], t: i64) {
        self.buf.clear();
        for (i, s) in series.iter().enumerate() {
            let p = &mut self.pos[i];
            while *p < s.points.len() && s.points[*p].t < t {
                *p += 1;
            }
            if *p < s.points.len() && s.points[*p].t == t {
                self.buf.push((i, *p));
            }
        }
    }
}

/// Collects output samples into series keyed by label set, detecting duplicates per step.
pub(crate) struct OutputBuilder {
    index: HashMap<Labels, usize>,
    pub series: Vec<Series>,
}

impl OutputBuilder {
    pub fn new() -> Self {
        OutputBuilder {
            index: HashMap::new(),
            series: Vec::new(),
        }
    }

    pub fn push(&mut self, labels: &Labels, t: i64, f: f64, drop_name: bool) -> Result<()> {
        self.push_sample(labels, Sample::float(t, f), drop_name)
    }

    pub fn push_sample(&mut self, labels: &Labels, smp: Sample, drop_name: bool) -> Result<()> {
        let t = smp.t;
        let i = match self.index.get(labels) {
            Some(&i) => i,
            None => {
                self.series.push(Series {
                    labels: labels.clone(),
                    points: Vec::new(),
                    drop_name,
                });
                self.index.insert(labels.clone(), self.series.len() - 1);
                self.series.len() - 1
            }
        };
        let s = &mut self.series[i];
        if s.points.last().is_some_and(|p| p.t == t) {
            return Err(eval_err(
                "vector cannot contain metrics with the same labelset",
            ));
        }
        s.points.push(smp);
        Ok(())
    }
}

/// Drops the metric name where it was deferred, then merges series that became identical.
pub(crate) fn cleanup_names(series: Vec<Series>) -> Result<Vec<Series>> {
    let mut out = OutputBuilder::new();
    let mut needs_merge = false;
    let mut tmp = Vec::with_capacity(series.len());
    for mut s in series {
        if s.drop_name {
            s.labels = s.labels.without(&["__name__"]);
            s.drop_name = false;
        }
        tmp.push(s);
    }
    {
        let mut seen = std::collections::HashSet::new();
        for s in &tmp {
            if !seen.insert(&s.labels) {
                needs_merge = true;
                break;
            }
        }
    }
    if !needs_merge {
        return Ok(tmp);
    }
    // Merge: order of first appearance; overlapping timestamps are an error.
    let mut merged: Vec<(Labels, Vec<Sample>)> = Vec::new();
    for s in tmp {
        match out.index.get(&s.labels) {
            Some(&i) => merged[i].1.extend(s.points),
            None => {
                out.index.insert(s.labels.clone(), merged.len());
                merged.push((s.labels, s.points));
            }
        }
    }
    let mut res = Vec::with_capacity(merged.len());
    for (labels, mut points) in merged {
        points.sort_by_key(|p| p.t);
        if points.windows(2).any(|w| w[0].t == w[1].t) {
            return Err(eval_err(
                "vector cannot contain metrics with the same labelset",
            ));
        }
        res.push(Series {
            labels,
            points,
            drop_name: false,
        });
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(t: i64, count: f64, hint: CounterResetHint) -> Sample {
        Sample {
            t,
            f: 0.0,
            h: Some(Arc::new(FloatHistogram {
                counter_reset_hint: hint,
                count,
                positive: vec![(1, count)],
                ..Default::default()
            })),
        }
    }

    fn hints(samples: &[Sample]) -> Vec<CounterResetHint> {
        samples
            .iter()
            .map(|p| p.h.as_ref().unwrap().counter_reset_hint)
            .collect()
    }

    #[test]
    fn stats_hints_detect_resets_between_consecutive_histograms() {
        use CounterResetHint::*;
        let samples = [
            hist(0, 2.0, Unknown),
            hist(1, 3.0, Unknown),
            hist(2, 1.0, Unknown),
            hist(3, 0.5, Gauge),
            hist(4, 0.7, Unknown),
        ];
        let out = stats_hints(&samples).unwrap();
        assert_eq!(hints(&out), [Unknown, NotReset, Reset, Gauge, NotReset]);
        // Nothing to work out: the input is used as it is.
        assert!(stats_hints(&samples[..1]).is_none());
        assert!(stats_hints(&[hist(0, 1.0, Unknown), hist(1, 2.0, NotReset)]).is_none());
    }
}
