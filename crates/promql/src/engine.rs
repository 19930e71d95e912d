//! The query engine: options, instant and range queries, limits.

use std::time::{Duration, Instant};

use promql_parser::parser::Expr;

use crate::error::{Error, Result};
use crate::eval::{cleanup_names, CancelToken, Evaluator, HintCtx, Steps, Val};
use crate::storage::{Matcher, Queryable, SelectHints, Series};
use crate::value::{InstantSample, QueryResult, QueryValue, RangeSeries};

/// Engine configuration.
#[derive(Clone, Debug)]
pub struct EngineOpts {
    /// How far back an instant selector looks for a sample (Prometheus default 5m).
    pub lookback_delta: Duration,
    /// Most samples a query may hold in memory at once.
    pub max_samples: usize,
    /// Longest a query may run.
    pub timeout: Option<Duration>,
    /// Step of subqueries that don't give one.
    pub default_subquery_step: Duration,
    /// Threads one query may use to evaluate a range function over a selector series by
    /// series (decoding included, where storage decodes): 1 evaluates on the calling thread
    /// only. Storage that cannot spread its series ignores it.
    pub parallelism: usize,
}

impl Default for EngineOpts {
    fn default() -> Self {
        EngineOpts {
            lookback_delta: Duration::from_secs(300),
            max_samples: 50_000_000,
            timeout: Some(Duration::from_secs(120)),
            default_subquery_step: Duration::from_secs(60),
            parallelism: 1,
        }
    }
}

/// Evaluates PromQL over a [`Queryable`].
#[derive(Clone, Debug, Default)]
pub struct Engine {
    opts: EngineOpts,
}

impl Engine {
    pub fn new(opts: EngineOpts) -> Self {
        Engine { opts }
    }

    pub fn opts(&self) -> &EngineOpts {
        &self.opts
    }

    fn evaluator<'a>(
        &self,
        storage: &'a dyn Queryable,
        start: i64,
        end: i64,
        step: i64,
        cancel: Option<CancelToken>,
    ) -> Evaluator<'a> {
        Evaluator {
            storage,
            lookback: self.opts.lookback_delta.as_millis() as i64,
            max_samples: self.opts.max_samples,
            cur_samples: 0,
            deadline: self.opts.timeout.map(|t| Instant::now() + t),
            cancel,
            annos: Default::default(),
            query_start: start,
            query_end: end,
            query_step: step,
            subquery_step: self.opts.default_subquery_step.as_millis() as i64,
            hist_stats: Default::default(),
            parallelism: self.opts.parallelism.max(1),
        }
    }

    /// Announces the selects `expr` will make to storage that wants them
    /// ([`Queryable::prefetch`]). They are found by evaluating `expr` over an empty storage
    /// that records them: a selector's bounds and hints follow from the query and the
    /// expression, not from the data, so the real run asks for the same ones. An expression
    /// the dry run cannot evaluate announces what it reached, and the real run reports the
    /// error.
    fn prefetch(&self, storage: &dyn Queryable, expr: &Expr, start: i64, end: i64, step: i64) {
        if !storage.wants_prefetch() {
            return;
        }
        let recorder = Recorder::default();
        let mut ev = self.evaluator(&recorder, start, end, step, None);
        let steps = if step == 0 {
            Steps::single(start)
        } else {
            Steps { start, end, step }
        };
        let _ = ev.eval(expr, steps, &HintCtx::default());
        let selects = recorder.selects.into_inner().unwrap_or_default();
        // One select gains nothing from going first.
        if selects.len() > 1 {
            storage.prefetch(&selects);
        }
    }

    /// Runs an instant query at `t` (ms).
    pub fn instant_query(
        &self,
        storage: &dyn Queryable,
        query: &str,
        t: i64,
    ) -> Result<QueryResult> {
        let expr = crate::parser::parse(query)?;
        self.instant_query_expr(storage, &expr, t, None)
    }

    /// Runs a parsed instant query, optionally cancellable.
    pub fn instant_query_expr(
        &self,
        storage: &dyn Queryable,
        expr: &Expr,
        t: i64,
        cancel: Option<CancelToken>,
    ) -> Result<QueryResult> {
        self.prefetch(storage, expr, t, t, 0);
        let mut ev = self.evaluator(storage, t, t, 0, cancel);
        let val = ev.eval(expr, Steps::single(t), &HintCtx::default())?;
        let value = match val {
            Val::Vector(v) => {
                let v = cleanup_names(v)?;
                QueryValue::Vector(
                    v.into_iter()
                        .filter_map(|s| {
                            s.points.first().map(|p| InstantSample {
                                labels: s.labels,
                                t,
                                f: p.f,
                                h: p.h.clone(),
                            })
                        })
                        .collect(),
                )
            }
            Val::Scalar(v) => QueryValue::Scalar { t, f: v[0] },
            Val::Str(s) => QueryValue::String { t, s },
            Val::Matrix(m) => {
                let m = cleanup_names(m)?;
                let mut out: Vec<RangeSeries> = m
                    .into_iter()
                    .map(|s| RangeSeries {
                        labels: s.labels,
                        samples: s.points,
                    })
                    .collect();
                out.sort_by(|a, b| a.labels.cmp(&b.labels));
                QueryValue::Matrix(out)
            }
        };
        Ok(QueryResult {
            value,
            annotations: ev.annos,
        })
    }

    /// Runs a range query from `start` to `end` (ms, inclusive) every `step` ms.
    pub fn range_query(
        &self,
        storage: &dyn Queryable,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<QueryResult> {
        let expr = crate::parser::parse(query)?;
        self.range_query_expr(storage, &expr, start, end, step, None)
    }

    /// Runs a parsed range query, optionally cancellable.
    pub fn range_query_expr(
        &self,
        storage: &dyn Queryable,
        expr: &Expr,
        start: i64,
        end: i64,
        step: i64,
        cancel: Option<CancelToken>,
    ) -> Result<QueryResult> {
        if step <= 0 {
            return Err(Error::Eval(
                "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
        }
        if end < start {
            return Err(Error::Eval(
                "end timestamp must not be before start time".into(),
            ));
        }
        self.prefetch(storage, expr, start, end, step);
        let mut ev = self.evaluator(storage, start, end, step, cancel);
        let steps = Steps { start, end, step };
        let val = ev.eval(expr, steps, &HintCtx::default())?;
        let series = match val {
            Val::Vector(v) => cleanup_names(v)?,
            Val::Scalar(v) => vec![crate::eval::Series {
                labels: Default::default(),
                points: v
                    .into_iter()
                    .enumerate()
                    .map(|(i, f)| crate::storage::Sample::float(steps.ts(i), f))
                    .collect(),
                drop_name: false,
            }],
            Val::Matrix(_) => {
                return Err(Error::Eval(
                    "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector".into(),
                ))
            }
            Val::Str(_) => {
                return Err(Error::Eval(
                    "invalid expression type \"string\" for range query, must be Scalar or instant Vector".into(),
                ))
            }
        };
        let mut out: Vec<RangeSeries> = series
            .into_iter()
            .filter(|s| !s.points.is_empty())
            .map(|s| RangeSeries {
                labels: s.labels,
                samples: s.points,
            })
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(QueryResult {
            value: QueryValue::Matrix(out),
            annotations: ev.annos,
        })
    }
}

/// Storage without data that writes down what it is asked for ([`Engine::prefetch`]).
#[derive(Default)]
struct Recorder {
    selects: std::sync::Mutex<Vec<(SelectHints, Vec<Matcher>)>>,
}

impl Queryable for Recorder {
    fn select(&self, hints: &SelectHints, matchers: &[Matcher]) -> Result<Vec<Series>> {
        let mut s = self.selects.lock().unwrap();
        let entry = (hints.clone(), matchers.to_vec());
        if !s.contains(&entry) {
            s.push(entry);
        }
        Ok(Vec::new())
    }
}
