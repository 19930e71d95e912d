//! Binary operators: arithmetic, comparison (with and without `bool`), set operators, and vector
//! matching (`on`/`ignoring`, `group_left`/`group_right`).

use std::collections::{HashMap, HashSet};

use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};
use tsdb::Labels;

use crate::error::Result;
use std::sync::Arc;

use crate::eval::{eval_err, Evaluator, HintCtx, OutputBuilder, Series, StepCursor, Steps, Val};
use crate::histogram::{CounterResetHint, FloatHistogram};
use crate::storage::Sample;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
    /// `</`: keeps the part of a histogram below the right-hand float.
    TrimUpper,
    /// `>/`: keeps the part of a histogram above the right-hand float.
    TrimLower,
}

impl Op {
    pub fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "+" => Op::Add,
            "-" => Op::Sub,
            "*" => Op::Mul,
            "/" => Op::Div,
            "%" => Op::Mod,
            "^" => Op::Pow,
            "atan2" => Op::Atan2,
            "==" => Op::Eq,
            "!=" => Op::Ne,
            ">" => Op::Gt,
            "<" => Op::Lt,
            ">=" => Op::Ge,
            "<=" => Op::Le,
            "and" => Op::And,
            "or" => Op::Or,
            "unless" => Op::Unless,
            _ => return None,
        })
    }
    pub fn is_comparison(self) -> bool {
        matches!(self, Op::Eq | Op::Ne | Op::Gt | Op::Lt | Op::Ge | Op::Le)
    }
    pub fn is_set(self) -> bool {
        matches!(self, Op::And | Op::Or | Op::Unless)
    }
    pub fn is_trim(self) -> bool {
        matches!(self, Op::TrimUpper | Op::TrimLower)
    }
    /// Whether the result is no longer of the input's metric (the name is dropped).
    pub fn changes_metric_schema(self) -> bool {
        matches!(
            self,
            Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Mod | Op::Pow | Op::Atan2
        )
    }
}

/// Applies an arithmetic or comparison operator: returns the value and whether to keep it.
pub(crate) fn apply(op: Op, l: f64, r: f64) -> (f64, bool) {
    match op {
        Op::Add => (l + r, true),
        Op::Sub => (l - r, true),
        Op::Mul => (l * r, true),
        Op::Div => (l / r, true),
        Op::Mod => (l % r, true),
        Op::Pow => (l.powf(r), true),
        Op::Atan2 => (l.atan2(r), true),
        Op::Eq => (l, l == r),
        Op::Ne => (l, l != r),
        Op::Gt => (l, l > r),
        Op::Lt => (l, l < r),
        Op::Ge => (l, l >= r),
        Op::Le => (l, l <= r),
        Op::And | Op::Or | Op::Unless | Op::TrimUpper | Op::TrimLower => (f64::NAN, false),
    }
}

fn op_str(op: Op) -> &'static str {
    match op {
        Op::Add => "+",
        Op::Sub => "-",
        Op::Mul => "*",
        Op::Div => "/",
        Op::Mod => "%",
        Op::Pow => "^",
        Op::Atan2 => "atan2",
        Op::Eq => "==",
        Op::Ne => "!=",
        Op::Gt => ">",
        Op::Lt => "<",
        Op::Ge => ">=",
        Op::Le => "<=",
        Op::And => "and",
        Op::Or => "or",
        Op::Unless => "unless",
        Op::TrimUpper => "</",
        Op::TrimLower => ">/",
    }
}

/// Result of one element operation.
pub(crate) struct ElemResult {
    pub f: f64,
    pub h: Option<Arc<FloatHistogram>>,
    pub keep: bool,
    /// The operand types don't combine: no result at all, not even with `bool`.
    pub incompatible: bool,
}

/// Applies an operator to two elements, either of which may be a histogram. Problems
/// become annotations.
pub(crate) fn elem_op(
    ev: &mut Evaluator<'_>,
    op: Op,
    (lf, lh): (f64, Option<&Arc<FloatHistogram>>),
    (rf, rh): (f64, Option<&Arc<FloatHistogram>>),
) -> ElemResult {
    let none = ElemResult {
        f: 0.0,
        h: None,
        keep: false,
        incompatible: true,
    };
    match (lh, rh) {
        (None, None) if op.is_trim() => {
            ev.annos.info(format!(
                "incompatible sample types encountered for binary operator {:?}: float {} float",
                op_str(op),
                op_str(op)
            ));
            none
        }
        (None, None) => {
            let (f, keep) = apply(op, lf, rf);
            ElemResult {
                f,
                h: None,
                keep,
                incompatible: false,
            }
        }
        (None, Some(h)) => {
            if op == Op::Mul {
                let mut n = (**h).clone();
                n.mul(lf).compact();
                return ElemResult {
                    f: 0.0,
                    h: Some(Arc::new(n)),
                    keep: true,
                    incompatible: false,
                };
            }
            ev.annos.info(format!(
                "incompatible sample types encountered for binary operator {:?}: float {} histogram",
                op_str(op),
                op_str(op)
            ));
            none
        }
        (Some(h), None) => {
            if op == Op::Mul || op == Op::Div || op.is_trim() {
                let mut n = (**h).clone();
                match op {
                    Op::Mul => {
                        n.mul(rf).compact();
                    }
                    Op::Div => {
                        n.div(rf).compact();
                    }
                    _ => n.trim_buckets(rf, op == Op::TrimUpper),
                }
                return ElemResult {
                    f: 0.0,
                    h: Some(Arc::new(n)),
                    keep: true,
                    incompatible: false,
                };
            }
            ev.annos.info(format!(
                "incompatible sample types encountered for binary operator {:?}: histogram {} float",
                op_str(op),
                op_str(op)
            ));
            none
        }
        (Some(a), Some(b)) => match op {
            Op::Add | Op::Sub => {
                let mut n = (**a).clone();
                let r = if op == Op::Add { n.add(b) } else { n.sub(b) };
                match r {
                    Err(_) => {
                        ev.annos.warn(format!(
                            "vector contains a mix of histograms with exponential and custom buckets schemas for metric name {:?}",
                            ""
                        ));
                        none
                    }
                    Ok((collision, reconciled)) => {
                        let what = if op == Op::Add {
                            "addition"
                        } else {
                            "subtraction"
                        };
                        if collision {
                            ev.annos.warn(format!(
                                "conflicting counter resets during histogram {what}"
                            ));
                        }
                        if reconciled {
                            ev.annos.info(format!(
                                "mismatched custom buckets were reconciled during {what}"
                            ));
                        }
                        if op == Op::Sub {
                            n.counter_reset_hint = CounterResetHint::Gauge;
                        }
                        n.compact();
                        ElemResult {
                            f: 0.0,
                            h: Some(Arc::new(n)),
                            keep: true,
                            incompatible: false,
                        }
                    }
                }
            }
            Op::Eq | Op::Ne => {
                let eq = a.equals(b);
                ElemResult {
                    f: 0.0,
                    h: Some(a.clone()),
                    keep: if op == Op::Eq { eq } else { !eq },
                    incompatible: false,
                }
            }
            _ => {
                ev.annos.info(format!(
                    "incompatible sample types encountered for binary operator {:?}: histogram {} histogram",
                    op_str(op),
                    op_str(op)
                ));
                none
            }
        },
    }
}

fn scalar_op(op: Op, l: f64, r: f64) -> f64 {
    let (v, keep) = apply(op, l, r);
    if op.is_comparison() {
        if keep {
            1.0
        } else {
            0.0
        }
    } else {
        v
    }
}

pub(crate) fn eval_binary(
    ev: &mut Evaluator<'_>,
    b: &BinaryExpr,
    steps: Steps,
    hint: &HintCtx,
) -> Result<Val> {
    let op_s = b.op.to_string();
    let op = Op::parse(&op_s).ok_or_else(|| eval_err(format!("unknown binary operator {op_s}")))?;
    eval_binary_op(ev, b, op, steps, hint)
}

/// Evaluates `b` with operator `op`, which replaces `b.op` (the trim operators are parsed as
/// `<` and `>`; see [`crate::trim`]).
pub(crate) fn eval_binary_op(
    ev: &mut Evaluator<'_>,
    b: &BinaryExpr,
    op: Op,
    steps: Steps,
    hint: &HintCtx,
) -> Result<Val> {
    let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
    // Like Prometheus, a binary operator ends the function hint: `max(a - b)` does not feed
    // `a` and `b` to `max` as they are stored.
    let hint = &HintCtx {
        func: None,
        grouping: hint.grouping.clone(),
    };
    let lhs = ev.eval(&b.lhs, steps, hint)?;
    let rhs = ev.eval(&b.rhs, steps, hint)?;
    match (lhs, rhs) {
        (Val::Scalar(_), Val::Scalar(_)) if op.is_trim() => Err(eval_err(format!(
            "operator {:?} not allowed for Scalar operations",
            op_str(op)
        ))),
        (Val::Scalar(l), Val::Scalar(r)) => Ok(Val::Scalar(
            l.iter()
                .zip(r.iter())
                .map(|(a, c)| scalar_op(op, *a, *c))
                .collect(),
        )),
        (Val::Vector(v), Val::Scalar(s)) => Ok(Val::Vector(vector_scalar(
            ev,
            op,
            v,
            &s,
            false,
            return_bool,
            steps,
        ))),
        (Val::Scalar(s), Val::Vector(v)) => Ok(Val::Vector(vector_scalar(
            ev,
            op,
            v,
            &s,
            true,
            return_bool,
            steps,
        ))),
        (Val::Vector(l), Val::Vector(r)) => {
            let (card, matching, fill) = match &b.modifier {
                Some(m) => (
                    m.card.clone(),
                    m.matching.clone(),
                    (m.fill_values.lhs, m.fill_values.rhs),
                ),
                None => (VectorMatchCardinality::OneToOne, None, (None, None)),
            };
            if op.is_set() {
                Ok(Val::Vector(set_op(op, l, r, &matching, steps)?))
            } else {
                Ok(Val::Vector(vector_vector(
                    ev,
                    op,
                    l,
                    r,
                    &card,
                    &matching,
                    return_bool,
                    fill,
                    steps,
                )?))
            }
        }
        _ => Err(eval_err(
            "binary operators are only defined on scalars and instant vectors",
        )),
    }
}

fn vector_scalar(
    ev: &mut Evaluator<'_>,
    op: Op,
    mut v: Vec<Series>,
    s: &[f64],
    swap: bool,
    return_bool: bool,
    steps: Steps,
) -> Vec<Series> {
    for series in &mut v {
        let pts = std::mem::take(&mut series.points);
        for mut p in pts {
            let sv = s[steps.idx(p.t)];
            let vecside = (p.f, p.h.as_ref());
            let r = if swap {
                elem_op(ev, op, (sv, None), vecside)
            } else {
                elem_op(ev, op, vecside, (sv, None))
            };
            if r.incompatible {
                continue;
            }
            let (mut f, mut h) = (r.f, r.h);
            if op.is_comparison() && swap {
                f = p.f;
                h = p.h.clone();
            }
            if return_bool {
                p.f = if r.keep { 1.0 } else { 0.0 };
                p.h = None;
                series.points.push(p);
                continue;
            }
            if r.keep {
                p.f = f;
                p.h = h;
                series.points.push(p);
            }
        }
        if return_bool || op.changes_metric_schema() {
            series.drop_name = true;
        }
    }
    v.retain(|s| !s.points.is_empty());
    v
}

/// The matching signature of a series.
fn signature(l: &Labels, matching: &Option<LabelModifier>) -> Labels {
    match matching {
        Some(m) => crate::aggregate::labels_for_modifier(l, m),
        None => l.without(&["__name__"]),
    }
}

fn ordinals(
    l: &[Series],
    r: &[Series],
    matching: &Option<LabelModifier>,
) -> (Vec<usize>, Vec<usize>, usize, Vec<Labels>) {
    let mut map: HashMap<Labels, usize> = HashMap::new();
    let mut sigs = Vec::new();
    let mut ord = |s: &Series| {
        let sig = signature(&s.labels, matching);
        let n = map.len();
        *map.entry(sig.clone()).or_insert_with(|| {
            sigs.push(sig);
            n
        })
    };
    let lo: Vec<usize> = l.iter().map(&mut ord).collect();
    let ro: Vec<usize> = r.iter().map(&mut ord).collect();
    (lo, ro, map.len(), sigs)
}

fn set_op(
    op: Op,
    l: Vec<Series>,
    r: Vec<Series>,
    matching: &Option<LabelModifier>,
    steps: Steps,
) -> Result<Vec<Series>> {
    let (lo, ro, nsig, _) = ordinals(&l, &r, matching);
    let mut out: Vec<Series> = l
        .iter()
        .map(|s| Series {
            labels: s.labels.clone(),
            points: Vec::new(),
            drop_name: s.drop_name,
        })
        .chain(r.iter().map(|s| Series {
            labels: s.labels.clone(),
            points: Vec::new(),
            drop_name: s.drop_name,
        }))
        .collect();
    let mut present = vec![false; nsig];
    let mut lc = StepCursor::new(l.len());
    let mut rc = StepCursor::new(r.len());
    for i in 0..steps.len() {
        let t = steps.ts(i);
        lc.advance(&l, t);
        rc.advance(&r, t);
        present.iter_mut().for_each(|p| *p = false);
        match op {
            Op::And | Op::Unless => {
                for &(ri, _) in &rc.buf {
                    present[ro[ri]] = true;
                }
                for &(li, pi) in &lc.buf {
                    if present[lo[li]] == (op == Op::And) {
                        out[li].points.push(l[li].points[pi].clone());
                    }
                }
            }
            _ => {
                for &(li, pi) in &lc.buf {
                    present[lo[li]] = true;
                    out[li].points.push(l[li].points[pi].clone());
                }
                for &(ri, pi) in &rc.buf {
                    if !present[ro[ri]] {
                        out[l.len() + ri].points.push(r[ri].points[pi].clone());
                    }
                }
            }
        }
    }
    out.retain(|s| !s.points.is_empty());
    // Series with identical labels on both sides (possible for `or`) are merged.
    let mut seen: HashMap<Labels, usize> = HashMap::new();
    let mut merged: Vec<Series> = Vec::with_capacity(out.len());
    for s in out {
        if let Some(&i) = seen.get(&s.labels) {
            let m: &mut Series = &mut merged[i];
            m.points.extend(s.points);
            m.points.sort_by_key(|p| p.t);
            if m.points.windows(2).any(|w| w[0].t == w[1].t) {
                return Err(eval_err(
                    "vector cannot contain metrics with the same labelset",
                ));
            }
        } else {
            seen.insert(s.labels.clone(), merged.len());
            merged.push(s);
        }
    }
    Ok(merged)
}

fn result_labels(
    lhs: &Labels,
    rhs: &Labels,
    op: Op,
    card: &VectorMatchCardinality,
    matching: &Option<LabelModifier>,
) -> Labels {
    let mut pairs: Vec<tsdb::Label> = lhs.iter().cloned().collect();
    if op.changes_metric_schema() {
        pairs.retain(|l| !matches!(&*l.name, "__name__" | "__type__" | "__unit__"));
    }
    if matches!(card, VectorMatchCardinality::OneToOne) {
        match matching {
            Some(LabelModifier::Include(names)) => {
                pairs.retain(|l| names.labels.iter().any(|n| n == &*l.name))
            }
            Some(LabelModifier::Exclude(names)) => {
                pairs.retain(|l| !names.labels.iter().any(|n| n == &*l.name))
            }
            None => {}
        }
    }
    let mut out = Labels::from_sorted(pairs);
    if let Some(include) = card.labels() {
        for n in &include.labels {
            out = out.with(n, rhs.get(n).unwrap_or(""));
        }
    }
    out
}

/// Per-node state of a vector/vector operation.
struct Matcher<'a> {
    op: Op,
    card: &'a VectorMatchCardinality,
    matching: &'a Option<LabelModifier>,
    return_bool: bool,
    swap: bool,
    matched_one: Vec<bool>,
    matched_many: Vec<HashSet<Labels>>,
    label_cache: HashMap<(usize, usize), Labels>,
    out: OutputBuilder,
}

impl Matcher<'_> {
    /// Applies the operator to one matched pair (`li`/`ri` are `usize::MAX` for fill values).
    #[allow(clippy::too_many_arguments)]
    fn apply_pair(
        &mut self,
        ev: &mut Evaluator<'_>,
        t: i64,
        sig: usize,
        (li, ll, ls): (usize, &Labels, &Sample),
        (ri, rl, rs): (usize, &Labels, &Sample),
    ) -> Result<()> {
        let op = self.op;
        let (a, b) = if self.swap { (rs, ls) } else { (ls, rs) };
        let res = elem_op(ev, op, (a.f, a.h.as_ref()), (b.f, b.h.as_ref()));
        if res.incompatible {
            return Ok(());
        }
        let keep = res.keep;
        let (mut val, mut hv) = (res.f, res.h);
        if op.is_comparison() && !self.return_bool {
            val = ls.f;
            hv = ls.h.clone();
        }
        let (card, matching) = (self.card, self.matching);
        let labels = self
            .label_cache
            .entry((li, ri))
            .or_insert_with(|| result_labels(ll, rl, op, card, matching))
            .clone();
        if matches!(self.card, VectorMatchCardinality::OneToOne) {
            if self.matched_one[sig] {
                return Err(eval_err(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
                ));
            }
            self.matched_one[sig] = true;
        } else if !self.matched_many[sig].insert(labels.clone()) {
            return Err(eval_err(
                "multiple matches for labels: grouping labels must ensure unique matches",
            ));
        }
        if self.return_bool {
            val = if keep { 1.0 } else { 0.0 };
            hv = None;
        } else if !keep {
            return Ok(());
        }
        self.out
            .push_sample(&labels, Sample { t, f: val, h: hv }, self.return_bool)
    }

    fn matched(&self, sig: usize) -> bool {
        if matches!(self.card, VectorMatchCardinality::OneToOne) {
            self.matched_one[sig]
        } else {
            !self.matched_many[sig].is_empty()
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn vector_vector(
    ev: &mut Evaluator<'_>,
    op: Op,
    l: Vec<Series>,
    r: Vec<Series>,
    card: &VectorMatchCardinality,
    matching: &Option<LabelModifier>,
    return_bool: bool,
    fill: (Option<f64>, Option<f64>),
    steps: Steps,
) -> Result<Vec<Series>> {
    let swap = matches!(card, VectorMatchCardinality::OneToMany(_));
    let (l, r) = if swap { (r, l) } else { (l, r) };
    let (fill_lhs, fill_rhs) = fill;
    let (lo, ro, nsig, sigs) = ordinals(&l, &r, matching);
    let mut right: Vec<Option<(usize, usize)>> = vec![None; nsig];
    let one_to_one = matches!(card, VectorMatchCardinality::OneToOne);
    let mut m = Matcher {
        op,
        card,
        matching,
        return_bool,
        swap,
        matched_one: vec![false; nsig],
        matched_many: vec![HashSet::new(); if one_to_one { 0 } else { nsig }],
        label_cache: HashMap::new(),
        out: OutputBuilder::new(),
    };
    let mut lc = StepCursor::new(l.len());
    let mut rc = StepCursor::new(r.len());
    for i in 0..steps.len() {
        let t = steps.ts(i);
        lc.advance(&l, t);
        rc.advance(&r, t);
        if (lc.buf.is_empty() && rc.buf.is_empty())
            || ((lc.buf.is_empty() || rc.buf.is_empty())
                && fill_lhs.is_none()
                && fill_rhs.is_none())
        {
            continue;
        }
        right.iter_mut().for_each(|x| *x = None);
        for &(ri, pi) in &rc.buf {
            let sig = ro[ri];
            if let Some((prev, _)) = right[sig] {
                let side = if swap { "left" } else { "right" };
                return Err(eval_err(format!(
                    "found duplicate series for the match group {} on the {} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                    sigs[sig], side, r[ri].labels, r[prev].labels
                )));
            }
            right[sig] = Some((ri, pi));
        }
        m.matched_one.iter_mut().for_each(|x| *x = false);
        m.matched_many.iter_mut().for_each(|x| x.clear());
        for &(li, lpi) in &lc.buf {
            let sig = lo[li];
            let ls = &l[li].points[lpi];
            match right[sig] {
                Some((ri, rpi)) => m.apply_pair(
                    ev,
                    t,
                    sig,
                    (li, &l[li].labels, ls),
                    (ri, &r[ri].labels, &r[ri].points[rpi]),
                )?,
                None => {
                    let Some(fv) = fill_rhs else { continue };
                    let synth = signature(&l[li].labels, matching);
                    let fs = Sample::float(t, fv);
                    m.apply_pair(
                        ev,
                        t,
                        sig,
                        (li, &l[li].labels, ls),
                        (usize::MAX, &synth, &fs),
                    )?;
                }
            }
        }
        if let Some(fv) = fill_lhs {
            for &(ri, rpi) in &rc.buf {
                let sig = ro[ri];
                if m.matched(sig) {
                    continue;
                }
                let synth = signature(&r[ri].labels, matching);
                let fs = Sample::float(t, fv);
                m.apply_pair(
                    ev,
                    t,
                    sig,
                    (usize::MAX - 1 - ri, &synth, &fs),
                    (ri, &r[ri].labels, &r[ri].points[rpi]),
                )?;
            }
        }
    }
    Ok(m.out.series)
}
