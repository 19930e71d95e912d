//! Aggregation operators: sum, avg, min, max, count, group, stddev, stdvar, quantile,
//! count_values, topk, bottomk, limitk, limit_ratio, with `by` / `without`.

use std::collections::HashMap;

use promql_parser::parser::{AggregateExpr, Expr, LabelModifier};
use tsdb::Labels;

use crate::error::Result;
use crate::eval::{eval_err, Evaluator, HintCtx, OutputBuilder, Series, StepCursor, Steps, Val};
use std::sync::Arc;

use crate::histogram::{kahan_finish, CounterResetHint, FloatHistogram, HistogramMean};
use crate::storage::Sample;

/// Neumaier-compensated addition: returns the new sum and compensation.
/// The labels a `by (...)`/`on (...)` keeps, or a `without (...)`/`ignoring (...)` leaves
/// (which also drops the metric name): shared by aggregation grouping and vector matching.
pub(crate) fn labels_for_modifier(l: &Labels, modifier: &LabelModifier) -> Labels {
    match modifier {
        LabelModifier::Include(names) => Labels::from_sorted(
            l.iter()
                .filter(|x| names.labels.iter().any(|n| n == &*x.name))
                .cloned()
                .collect(),
        ),
        LabelModifier::Exclude(names) => Labels::from_sorted(
            l.iter()
                .filter(|x| &*x.name != "__name__" && !names.labels.iter().any(|n| n == &*x.name))
                .cloned()
                .collect(),
        ),
    }
}

pub(crate) fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    if t.is_infinite() {
        (t, 0.0)
    } else if sum.abs() >= inc.abs() {
        (t, c + ((sum - t) + inc))
    } else {
        (t, c + ((inc - t) + sum))
    }
}

/// The φ-quantile of `values` (sorted in place), as Prometheus computes it.
pub(crate) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| {
        if a.is_nan() && !b.is_nan() {
            std::cmp::Ordering::Less
        } else if b.is_nan() && !a.is_nan() {
            std::cmp::Ordering::Greater
        } else {
            a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal)
        }
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let w = rank - rank.floor();
    values[lower as usize] * (1.0 - w) + values[upper as usize] * w
}

/// Formats a float like Go's `strconv.FormatFloat(f, 'f', -1, 64)`.
pub(crate) fn format_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f == f64::INFINITY {
        "+Inf".into()
    } else if f == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        let s = format!("{f}");
        s
    }
}

fn grouping_labels(l: &Labels, modifier: &Option<LabelModifier>) -> Labels {
    match modifier {
        None => Labels::default(),
        Some(m) => labels_for_modifier(l, m),
    }
}

#[derive(Clone, Default)]
struct Group {
    seen: bool,
    /// Sum of histograms (for sum), with its Kahan compensation.
    h: Option<FloatHistogram>,
    hcomp: Option<FloatHistogram>,
    /// Mean of histograms (for avg).
    havg: Option<HistogramMean>,
    has_hist: bool,
    has_float: bool,
    incompatible: bool,
    reset_seen: bool,
    not_reset_seen: bool,
    /// The float state (its `seen` and `drop_name` unused here: the group has its own).
    float: Cell,
    drop_name: bool,
    values: Vec<f64>,
}

fn param_values(ev: &mut Evaluator<'_>, p: &Expr, steps: Steps) -> Result<Vec<f64>> {
    match ev.eval(p, steps, &HintCtx::default())? {
        Val::Scalar(v) => Ok(v),
        _ => Err(eval_err("expected scalar aggregation parameter")),
    }
}

/// The aggregations evaluated step by step (resolved once, not per sample).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Sum,
    Avg,
    Max,
    Min,
    Count,
    Group,
    Stddev,
    Stdvar,
    Quantile,
}

pub(crate) fn eval_aggregate(
    ev: &mut Evaluator<'_>,
    agg: &AggregateExpr,
    steps: Steps,
) -> Result<Val> {
    let op = agg.op.to_string();
    // Like Prometheus, the selectors beneath an aggregation see its operator as their function
    // (Thanos reads `min`, `max` and `count` of downsampled data by it).
    let hint = HintCtx {
        func: Some(op.clone()),
        grouping: agg
            .modifier
            .as_ref()
            .map(|m| (m.is_include(), m.labels().labels.clone())),
    };
    if op == "count_values" {
        let mut pe = agg.param.as_deref();
        while let Some(Expr::Paren(p)) = pe {
            pe = Some(&*p.expr);
        }
        let label = match pe {
            Some(Expr::StringLiteral(s)) => s.val.clone(),
            _ => return Err(eval_err("count_values needs a string parameter")),
        };
        if !crate::functions::valid_label_name(&label) {
            return Err(eval_err(format!(
                "invalid label name {}",
                crate::parser::go_quote(&label)
            )));
        }
        let Val::Vector(input) = ev.eval(&agg.expr, steps, &hint)? else {
            return Err(eval_err("expected instant vector in aggregation"));
        };
        return Ok(Val::Vector(count_values(
            &input,
            &agg.modifier,
            &label,
            steps,
        )?));
    }
    let params = match &agg.param {
        Some(p) if op != "count_values" => Some(param_values(ev, p, steps)?),
        _ => None,
    };
    let Val::Vector(input) = ev.eval(&agg.expr, steps, &hint)? else {
        return Err(eval_err("expected instant vector in aggregation"));
    };
    match op.as_str() {
        "topk" | "bottomk" | "limitk" | "limit_ratio" => {
            return Ok(Val::Vector(aggregate_k(
                ev,
                &op,
                &input,
                &agg.modifier,
                params.as_deref().unwrap_or(&[]),
                steps,
            )?))
        }
        "quantile" => {
            if let Some(ps) = &params {
                let mut warned = false;
                for &q in ps {
                    if !warned && (q.is_nan() || !(0.0..=1.0).contains(&q)) {
                        ev.annos.warn(format!(
                            "quantile value should be between 0 and 1, got {}",
                            crate::functions::go_g(q)
                        ));
                        warned = true;
                    }
                }
            }
        }
        _ => {}
    }

    let kind = match op.as_str() {
        "sum" => Op::Sum,
        "avg" => Op::Avg,
        "max" => Op::Max,
        "min" => Op::Min,
        "count" => Op::Count,
        "group" => Op::Group,
        "stddev" => Op::Stddev,
        "stdvar" => Op::Stdvar,
        "quantile" => Op::Quantile,
        other => return Err(eval_err(format!("unsupported aggregation {other}"))),
    };
    // Assign groups.
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut group_labels: Vec<Labels> = Vec::new();
    let series_group: Vec<usize> = input
        .iter()
        .map(|s| {
            let g = grouping_labels(&s.labels, &agg.modifier);
            let n = group_labels.len();
            *index.entry(g.clone()).or_insert_with(|| {
                group_labels.push(g);
                n
            })
        })
        .collect();
    let mut out: Vec<Series> = group_labels
        .into_iter()
        .map(|labels| Series {
            labels,
            points: Vec::new(),
            drop_name: false,
        })
        .collect();
    if series_major(&input, &series_group, &mut out, kind, steps) {
        ev.add_samples(out.iter().map(|s| s.points.len()).sum())?;
        out.retain(|s| !s.points.is_empty());
        return Ok(Val::Vector(out));
    }
    let mut groups: Vec<Group> = vec![Group::default(); out.len()];
    let mut cur = StepCursor::new(input.len());
    let ignores_histograms = matches!(
        kind,
        Op::Min | Op::Max | Op::Stddev | Op::Stdvar | Op::Quantile
    );
    for i in 0..steps.len() {
        let t = steps.ts(i);
        cur.advance(&input, t);
        if cur.buf.is_empty() {
            continue;
        }
        for g in groups.iter_mut() {
            g.seen = false;
            g.values.clear();
            g.h = None;
            g.hcomp = None;
            g.havg = None;
            g.has_hist = false;
            g.has_float = false;
            g.incompatible = false;
            g.reset_seen = false;
            g.not_reset_seen = false;
        }
        for &(si, pi) in &cur.buf {
            let smp = &input[si].points[pi];
            let f = smp.f;
            if smp.h.is_some() && ignores_histograms {
                ev.annos
                    .info(format!("ignored histogram in {op} aggregation"));
                continue;
            }
            let g = &mut groups[series_group[si]];
            if let Some(h) = &smp.h {
                match h.counter_reset_hint {
                    CounterResetHint::Reset => g.reset_seen = true,
                    CounterResetHint::NotReset => g.not_reset_seen = true,
                    _ => {}
                }
            }
            if !g.seen {
                g.seen = true;
                g.float.value = f;
                g.float.mean = f;
                g.float.comp = 0.0;
                g.float.count = 1.0;
                g.float.incremental = false;
                g.drop_name = input[si].drop_name;
                g.has_float = smp.h.is_none();
                g.has_hist = smp.h.is_some();
                if kind == Op::Avg {
                    g.havg = smp.h.as_ref().map(|h| HistogramMean::new(h));
                } else {
                    g.h = smp.h.as_ref().map(|h| (**h).clone());
                }
                match kind {
                    Op::Stddev | Op::Stdvar => {
                        g.float.value = if f.is_nan() || f.is_infinite() {
                            f64::NAN
                        } else {
                            0.0
                        };
                    }
                    Op::Group => g.float.value = 1.0,
                    Op::Quantile => g.values.push(f),
                    _ => {}
                }
                continue;
            }
            if input[si].drop_name {
                g.drop_name = true;
            }
            match kind {
                Op::Sum | Op::Avg => {
                    if kind == Op::Avg {
                        g.float.count += 1.0;
                    }
                    if let Some(h) = &smp.h {
                        g.has_hist = true;
                        if g.incompatible {
                            continue;
                        }
                        // Without an accumulator, floats came first: the group is invalid.
                        let added = if kind == Op::Avg {
                            g.havg.as_mut().map(|m| m.add(h))
                        } else {
                            g.h.as_mut()
                                .map(|acc| acc.kahan_add(h, &mut g.hcomp).map(|r| r.1))
                        };
                        match added {
                            Some(Ok(true)) => ev.annos.info(
                                "mismatched custom buckets were reconciled during aggregation",
                            ),
                            Some(Err(_)) => g.incompatible = true,
                            _ => {}
                        }
                        continue;
                    }
                    g.has_float = true;
                    g.float.fold(kind, f);
                }
                Op::Max | Op::Min | Op::Count | Op::Group => g.float.add(kind, f),
                Op::Stddev | Op::Stdvar => {
                    if f.is_nan() || f.is_infinite() {
                        g.float.value = f64::NAN;
                    } else {
                        g.float.count += 1.0;
                        let delta = f - g.float.mean;
                        g.float.mean += delta / g.float.count;
                        g.float.value += delta * (f - g.float.mean);
                    }
                }
                Op::Quantile => g.values.push(f),
            }
        }
        for (gi, g) in groups.iter_mut().enumerate() {
            if !g.seen {
                continue;
            }
            let mut hv: Option<FloatHistogram> = None;
            let v = match kind {
                Op::Sum | Op::Avg => {
                    if g.has_hist && g.has_float {
                        let name = input
                            .iter()
                            .zip(series_group.iter())
                            .find(|(_, sg)| **sg == gi)
                            .and_then(|(s, _)| s.labels.get("__name__").map(|x| x.to_string()))
                            .unwrap_or_default();
                        let _ = name;
                        ev.annos
                            .warn("encountered a mix of histograms and floats for aggregation");
                        continue;
                    }
                    if g.incompatible {
                        ev.annos.warn("vector contains a mix of histograms with exponential and custom buckets schemas for metric name \"\"");
                        continue;
                    }
                    let hist = if kind == Op::Avg {
                        g.havg.take().map(HistogramMean::mean)
                    } else {
                        g.h.take().map(|mut h| {
                            kahan_finish(&mut h, g.hcomp.take());
                            h
                        })
                    };
                    if let Some(mut h) = hist {
                        if g.reset_seen && g.not_reset_seen {
                            ev.annos
                                .warn("conflicting counter resets during histogram aggregation");
                        }
                        h.compact();
                        hv = Some(h);
                        0.0
                    } else {
                        g.float.result(kind)
                    }
                }
                Op::Count => g.float.count,
                Op::Stdvar => g.float.value / g.float.count,
                Op::Stddev => (g.float.value / g.float.count).sqrt(),
                Op::Quantile => {
                    let q = params.as_ref().map(|p| p[i]).unwrap_or(f64::NAN);
                    quantile(q, &mut g.values)
                }
                _ => g.float.value,
            };
            out[gi].points.push(Sample {
                t,
                f: v,
                h: hv.map(Arc::new),
            });
            if g.drop_name {
                out[gi].drop_name = true;
            }
        }
    }
    ev.add_samples(out.iter().map(|s| s.points.len()).sum())?;
    out.retain(|s| !s.points.is_empty());
    Ok(Val::Vector(out))
}

/// Above this many (group, step) cells (48 bytes each, about 12 MiB) [`series_major`] leaves
/// the aggregation to the step-by-step loop rather than hold them all.
const SERIES_MAJOR_MAX_CELLS: usize = 1 << 18;

/// One (group, step) of [`series_major`]: the float state of a [`Group`].
#[derive(Clone, Copy, Default)]
struct Cell {
    seen: bool,
    incremental: bool,
    drop_name: bool,
    value: f64,
    comp: f64,
    mean: f64,
    count: f64,
}

impl Cell {
    /// Adds a float after the first: sum, avg (counting it), min, max, count (group keeps
    /// its 1).
    fn add(&mut self, kind: Op, f: f64) {
        match kind {
            Op::Sum => self.fold(kind, f),
            Op::Avg => {
                self.count += 1.0;
                self.fold(kind, f);
            }
            Op::Max => {
                if self.value < f || self.value.is_nan() {
                    self.value = f;
                }
            }
            Op::Min => {
                if self.value > f || self.value.is_nan() {
                    self.value = f;
                }
            }
            Op::Count => self.count += 1.0,
            Op::Group | Op::Stddev | Op::Stdvar | Op::Quantile => {}
        }
    }

    /// Folds a float into a sum (Kahan), or into a mean whose `count` already counts it:
    /// a Kahan sum until it overflows, then an incremental mean, as Prometheus does.
    fn fold(&mut self, kind: Op, f: f64) {
        if kind == Op::Sum {
            (self.value, self.comp) = kahan_inc(f, self.value, self.comp);
            return;
        }
        let n = self.count;
        if !self.incremental {
            let (v, comp) = kahan_inc(f, self.value, self.comp);
            if !v.is_infinite() {
                (self.value, self.comp) = (v, comp);
                return;
            }
            self.incremental = true;
            self.mean = self.value / (n - 1.0);
            self.comp /= n - 1.0;
        }
        let q = (n - 1.0) / n;
        (self.mean, self.comp) = kahan_inc(f / n, q * self.mean, q * self.comp);
    }

    /// The aggregate of the floats folded in (sum, avg, count, min, max, group).
    fn result(&self, kind: Op) -> f64 {
        match kind {
            Op::Sum => self.value + self.comp,
            Op::Avg if self.incremental => self.mean + self.comp,
            Op::Avg => self.value / self.count + self.comp / self.count,
            Op::Count => self.count,
            _ => self.value,
        }
    }
}

/// Float aggregations (sum, avg, count, min, max, group) of inputs without histograms, series
/// by series instead of step by step: each series' points are read once, in order, instead of
/// one point of every series per step (which misses the cache on every point once there are a
/// few hundred series). Each (group, step) still sees its series in the same order as the
/// step-by-step loop, so the results are bit for bit the same. Returns false (and leaves `out`
/// alone) when it does not apply: other aggregations, too many cells, or a histogram among the
/// inputs.
fn series_major(
    input: &[Series],
    series_group: &[usize],
    out: &mut [Series],
    kind: Op,
    steps: Steps,
) -> bool {
    let n = steps.len();
    if !matches!(
        kind,
        Op::Sum | Op::Avg | Op::Count | Op::Min | Op::Max | Op::Group
    ) || out.len().saturating_mul(n) > SERIES_MAJOR_MAX_CELLS
    {
        return false;
    }
    let mut cells = vec![Cell::default(); out.len() * n];
    for (s, &gi) in input.iter().zip(series_group) {
        let row = &mut cells[gi * n..(gi + 1) * n];
        // The step of the next point: usually the one after the last (the inputs are the
        // steps' own points), checked with a multiplication instead of found by two divisions.
        let mut next = 0usize;
        for p in &s.points {
            if p.h.is_some() {
                // Histograms take the step-by-step loop (found here rather than in a pass of
                // its own over every point: the points are read once).
                return false;
            }
            let i = if next < n && steps.ts(next) == p.t {
                next
            } else {
                let off = p.t - steps.start;
                if off < 0 || off % steps.step != 0 {
                    continue;
                }
                (off / steps.step) as usize
            };
            next = i + 1;
            let Some(c) = row.get_mut(i) else {
                continue;
            };
            let f = p.f;
            if !c.seen {
                *c = Cell {
                    seen: true,
                    incremental: false,
                    drop_name: s.drop_name,
                    value: if kind == Op::Group { 1.0 } else { f },
                    comp: 0.0,
                    mean: f,
                    count: 1.0,
                };
                continue;
            }
            c.drop_name |= s.drop_name;
            c.add(kind, f);
        }
    }
    for (gi, o) in out.iter_mut().enumerate() {
        for (i, c) in cells[gi * n..(gi + 1) * n].iter().enumerate() {
            if !c.seen {
                continue;
            }
            o.points.push(Sample {
                t: steps.ts(i),
                f: c.result(kind),
                h: None,
            });
            o.drop_name |= c.drop_name;
        }
    }
    true
}

fn count_values(
    input: &[Series],
    modifier: &Option<LabelModifier>,
    label: &str,
    steps: Steps,
) -> Result<Vec<Series>> {
    let base: Vec<Labels> = input
        .iter()
        .map(|s| grouping_labels(&s.labels, modifier))
        .collect();
    let mut out = OutputBuilder::new();
    let mut cur = StepCursor::new(input.len());
    let mut counts: Vec<(Labels, f64)> = Vec::new();
    for i in 0..steps.len() {
        let t = steps.ts(i);
        cur.advance(input, t);
        counts.clear();
        for &(si, pi) in &cur.buf {
            let smp = &input[si].points[pi];
            let v = match &smp.h {
                Some(h) => h.to_string(),
                None => format_float(smp.f),
            };
            let l = base[si].with(label, &v);
            match counts.iter_mut().find(|(k, _)| *k == l) {
                Some((_, c)) => *c += 1.0,
                None => counts.push((l, 1.0)),
            }
        }
        for (l, c) in &counts {
            out.push(l, t, *c, false)?;
        }
    }
    Ok(out.series)
}

fn aggregate_k(
    ev: &mut Evaluator<'_>,
    op: &str,
    input: &[Series],
    modifier: &Option<LabelModifier>,
    params: &[f64],
    steps: Steps,
) -> Result<Vec<Series>> {
    let any_nan = params.iter().any(|p| p.is_nan());
    let (mut max, mut min) = (
        params.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        params.iter().copied().fold(f64::INFINITY, f64::min),
    );
    if any_nan {
        (max, min) = (f64::NAN, f64::NAN);
    }
    match op {
        "limit_ratio" => {
            if max == 0.0 && min == 0.0 {
                return Ok(Vec::new());
            }
            if any_nan {
                return Err(eval_err("Ratio value is NaN"));
            }
            if max > 1.0 {
                ev.annos.warn(format!(
                    "ratio value should be between -1 and 1, got {}, capping to 1",
                    crate::functions::go_g(max)
                ));
            }
            if min < -1.0 {
                ev.annos.warn(format!(
                    "ratio value should be between -1 and 1, got {}, capping to -1",
                    crate::functions::go_g(min)
                ));
            }
        }
        _ => {
            if max < 1.0 {
                return Ok(Vec::new());
            }
            if any_nan {
                return Err(eval_err("Parameter value is NaN"));
            }
            if min <= i64::MIN as f64 {
                return Err(eval_err(format!(
                    "Scalar value {} underflows int64",
                    crate::functions::go_g(min)
                )));
            }
            if max >= i64::MAX as f64 {
                return Err(eval_err(format!(
                    "Scalar value {} overflows int64",
                    crate::functions::go_g(max)
                )));
            }
        }
    }
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let series_group: Vec<usize> = input
        .iter()
        .map(|s| {
            let g = grouping_labels(&s.labels, modifier);
            let n = index.len();
            *index.entry(g).or_insert(n)
        })
        .collect();
    let ngroups = index.len();
    let mut out: Vec<Series> = input
        .iter()
        .map(|s| Series {
            labels: s.labels.clone(),
            points: Vec::new(),
            drop_name: s.drop_name,
        })
        .collect();
    let mut order: Vec<Vec<(usize, usize, f64)>> = vec![Vec::new(); ngroups];
    let mut instant_order: Vec<usize> = Vec::new();
    let mut cur = StepCursor::new(input.len());
    for i in 0..steps.len() {
        let t = steps.ts(i);
        let p = params.get(i).copied().unwrap_or(f64::NAN);
        cur.advance(input, t);
        for o in order.iter_mut() {
            o.clear();
        }
        for &(si, pi) in &cur.buf {
            let smp = &input[si].points[pi];
            if smp.h.is_some() && (op == "topk" || op == "bottomk") {
                ev.annos
                    .info(format!("ignored histogram in {op} aggregation"));
                continue;
            }
            order[series_group[si]].push((si, pi, smp.f));
        }
        let k = (p as i64).min(input.len() as i64);
        let mut group_order: Vec<usize> = Vec::new();
        {
            let mut seen = vec![false; ngroups];
            for &(si, _) in &cur.buf {
                let g = series_group[si];
                if !seen[g] {
                    seen[g] = true;
                    group_order.push(g);
                }
            }
        }
        for g in group_order {
            let members = &mut order[g];
            let chosen: Vec<(usize, usize, f64)> = match op {
                "topk" | "bottomk" => {
                    if k < 1 {
                        continue;
                    }
                    let top = op == "topk";
                    members.sort_by(|a, b| {
                        use std::cmp::Ordering::*;
                        match (a.2.is_nan(), b.2.is_nan()) {
                            (true, true) => Equal,
                            (true, false) => Greater,
                            (false, true) => Less,
                            _ => {
                                if top {
                                    b.2.partial_cmp(&a.2).unwrap_or(Equal)
                                } else {
                                    a.2.partial_cmp(&b.2).unwrap_or(Equal)
                                }
                            }
                        }
                    });
                    members.iter().take(k as usize).copied().collect()
                }
                "limitk" => {
                    if k < 1 {
                        continue;
                    }
                    members.iter().take(k as usize).copied().collect()
                }
                _ => {
                    let r = p.clamp(-1.0, 1.0);
                    if r == 0.0 {
                        continue;
                    }
                    members
                        .iter()
                        .filter(|(si, _, _)| {
                            let off = ratio_offset(&input[*si].labels);
                            if r >= 0.0 {
                                off < r
                            } else {
                                off >= 1.0 + r
                            }
                        })
                        .copied()
                        .collect()
                }
            };
            for (si, pi, _) in chosen {
                out[si].points.push(input[si].points[pi].clone());
                if steps.len() == 1 {
                    instant_order.push(si);
                }
            }
        }
    }
    if steps.len() == 1 {
        let mut res = Vec::with_capacity(instant_order.len());
        for si in instant_order {
            res.push(std::mem::replace(
                &mut out[si],
                Series {
                    labels: Labels::default(),
                    points: Vec::new(),
                    drop_name: false,
                },
            ));
        }
        return Ok(res);
    }
    out.retain(|s| !s.points.is_empty());
    Ok(out)
}

/// A deterministic offset in [0, 1) per label set, for limit_ratio sampling.
fn ratio_offset(l: &Labels) -> f64 {
    (l.stable_hash() as f64) / (u64::MAX as f64 + 1.0)
}
