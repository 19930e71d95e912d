//! PromQL functions.

use std::borrow::Cow;
use std::cmp::Ordering;

use promql_parser::parser::{Call, Expr};
use tsdb::Labels;

use crate::aggregate::{kahan_inc, quantile};
use crate::error::Result;
use crate::eval::{eval_err, Evaluator, HintCtx, OutputBuilder, Series, StepCursor, Steps, Val};
use std::sync::{Arc, Mutex};

use crate::histogram::{kahan_finish, CounterResetHint, FloatHistogram, HistogramMean};
use crate::storage::Sample;
use crate::value::Annotations;

/// Formats a float like Go's `%g`.
pub(crate) fn go_g(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let e = format!("{f:e}");
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..21).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mant}e{sign}{:02}", exp.abs())
    } else {
        format!("{f}")
    }
}

fn unwrap_parens(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unwrap_parens(&p.expr),
        other => other,
    }
}

fn string_arg(e: &Expr) -> Result<String> {
    match unwrap_parens(e) {
        Expr::StringLiteral(s) => Ok(s.val.clone()),
        _ => Err(eval_err("expected string literal argument")),
    }
}

fn scalar_arg(ev: &mut Evaluator<'_>, e: &Expr, steps: Steps) -> Result<Vec<f64>> {
    match ev.eval(e, steps, &HintCtx::default())? {
        Val::Scalar(v) => Ok(v),
        _ => Err(eval_err("expected scalar argument")),
    }
}

fn vector_arg(
    ev: &mut Evaluator<'_>,
    e: &Expr,
    steps: Steps,
    hint: &HintCtx,
) -> Result<Vec<Series>> {
    match ev.eval(e, steps, hint)? {
        Val::Vector(v) => Ok(v),
        _ => Err(eval_err("expected instant vector argument")),
    }
}

/// Applies `f` to float samples; histogram samples are dropped.
fn map_points(mut v: Vec<Series>, drop_name: bool, f: impl Fn(f64) -> f64) -> Vec<Series> {
    for s in &mut v {
        s.points.retain(|p| p.h.is_none());
        for p in &mut s.points {
            p.f = f(p.f);
        }
        if drop_name {
            s.drop_name = true;
        }
    }
    v.retain(|s| !s.points.is_empty());
    v
}

fn simple_math(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "sqrt" => f64::sqrt,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sin" => f64::sin,
        "cos" => f64::cos,
        "tan" => f64::tan,
        "asin" => f64::asin,
        "acos" => f64::acos,
        "atan" => f64::atan,
        "sinh" => f64::sinh,
        "cosh" => f64::cosh,
        "tanh" => f64::tanh,
        "asinh" => f64::asinh,
        "acosh" => f64::acosh,
        "atanh" => f64::atanh,
        "rad" => |x| x * std::f64::consts::PI / 180.0,
        "deg" => |x| x * 180.0 / std::f64::consts::PI,
        "sgn" => |x: f64| {
            if x < 0.0 {
                -1.0
            } else if x > 0.0 {
                1.0
            } else {
                x
            }
        },
        _ => return None,
    })
}

fn date_fn(name: &str, secs: f64) -> f64 {
    let s = secs as i64;
    let days = s.div_euclid(86_400);
    let rem = s.rem_euclid(86_400);
    let (y, m, d) = model::time::civil_from_days(days);
    match name {
        "year" => y as f64,
        "month" => m as f64,
        "day_of_month" => d as f64,
        "day_of_week" => (days + 4).rem_euclid(7) as f64,
        "day_of_year" => {
            let cum = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
            let mut doy = cum[(m - 1) as usize] + d as i64;
            if m > 2 && model::time::is_leap_year(y) {
                doy += 1;
            }
            doy as f64
        }
        "hour" => (rem / 3600) as f64,
        "minute" => ((rem % 3600) / 60) as f64,
        "days_in_month" => match m {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31.0,
            4 | 6 | 9 | 11 => 30.0,
            _ => {
                if model::time::is_leap_year(y) {
                    29.0
                } else {
                    28.0
                }
            }
        },
        _ => f64::NAN,
    }
}

fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (ab, bb) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < ab.len() && j < bb.len() {
        if ab[i].is_ascii_digit() && bb[j].is_ascii_digit() {
            let si = i;
            while i < ab.len() && ab[i].is_ascii_digit() {
                i += 1;
            }
            let sj = j;
            while j < bb.len() && bb[j].is_ascii_digit() {
                j += 1;
            }
            let na = a[si..i].trim_start_matches('0');
            let nb = b[sj..j].trim_start_matches('0');
            let c = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
            if c != Ordering::Equal {
                return c;
            }
        } else {
            if ab[i] != bb[j] {
                return ab[i].cmp(&bb[j]);
            }
            i += 1;
            j += 1;
        }
    }
    (ab.len() - i).cmp(&(bb.len() - j))
}

fn absent_labels(e: &Expr) -> Labels {
    let vs = match unwrap_parens(e) {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return Labels::default(),
    };
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut has: Vec<String> = Vec::new();
    for m in &vs.matchers.matchers {
        if m.name == "__name__" {
            continue;
        }
        if matches!(m.op, promql_parser::label::MatchOp::Equal) && !has.contains(&m.name) {
            pairs.retain(|(n, _)| n != &m.name);
            pairs.push((m.name.clone(), m.value.clone()));
            has.push(m.name.clone());
        } else {
            pairs.retain(|(n, _)| n != &m.name);
        }
    }
    Labels::from_pairs(pairs)
}

/// Returns the index of the range-vector argument, if any.
fn range_arg(call: &Call) -> Option<usize> {
    call.args.args.iter().position(|a| {
        matches!(
            unwrap_parens(a),
            Expr::MatrixSelector(_) | Expr::Subquery(_)
        )
    })
}

pub(crate) fn eval_call(
    ev: &mut Evaluator<'_>,
    call: &Call,
    steps: Steps,
    hint: &HintCtx,
) -> Result<Val> {
    let name = call.func.name;
    let args: Vec<&Expr> = call.args.args.iter().map(|b| &**b).collect();
    let fhint = HintCtx {
        func: Some(name.to_string()),
        grouping: hint.grouping.clone(),
    };
    let n = steps.len();
    if let Some(ri) = range_arg(call) {
        return eval_range_call(ev, call, ri, steps, &fhint);
    }
    match name {
        "time" => Ok(Val::Scalar(
            (0..n).map(|i| steps.ts(i) as f64 / 1000.0).collect(),
        )),
        "pi" => Ok(Val::Scalar(vec![std::f64::consts::PI; n])),
        "start" => Ok(Val::Scalar(vec![ev.query_start as f64 / 1000.0; n])),
        "end" => Ok(Val::Scalar(vec![ev.query_end as f64 / 1000.0; n])),
        "range" => Ok(Val::Scalar(vec![
            (ev.query_end - ev.query_start) as f64
                / 1000.0;
            n
        ])),
        "step" => Ok(Val::Scalar(vec![ev.query_step as f64 / 1000.0; n])),
        "min_of" | "max_of" => {
            let a = scalar_arg(ev, args[0], steps)?;
            let b = scalar_arg(ev, args[1], steps)?;
            let f = if name == "min_of" { go_min } else { go_max };
            Ok(Val::Scalar(
                a.iter().zip(b.iter()).map(|(x, y)| f(*x, *y)).collect(),
            ))
        }
        "vector" => {
            let s = scalar_arg(ev, args[0], steps)?;
            Ok(Val::Vector(vec![Series {
                labels: Labels::default(),
                points: s
                    .iter()
                    .enumerate()
                    .map(|(i, f)| Sample::float(steps.ts(i), *f))
                    .collect(),
                drop_name: false,
            }]))
        }
        "scalar" => {
            let v = vector_arg(ev, args[0], steps, &fhint)?;
            let mut out = vec![f64::NAN; n];
            let mut count = vec![0u32; n];
            for s in &v {
                for p in s.points.iter().filter(|p| p.h.is_none()) {
                    let i = steps.idx(p.t);
                    count[i] += 1;
                    out[i] = p.f;
                }
            }
            for i in 0..n {
                if count[i] != 1 {
                    out[i] = f64::NAN;
                }
            }
            Ok(Val::Scalar(out))
        }
        "timestamp" => {
            let v = match unwrap_parens(args[0]) {
                Expr::VectorSelector(vs) => ev.eval_vector_selector(vs, steps, &fhint, true)?,
                other => {
                    let mut v = vector_arg(ev, other, steps, &fhint)?;
                    for s in &mut v {
                        for p in &mut s.points {
                            p.f = p.t as f64 / 1000.0;
                            p.h = None;
                        }
                    }
                    v
                }
            };
            Ok(Val::Vector(map_points(v, true, |x| x)))
        }
        "absent" => {
            let v = vector_arg(ev, args[0], steps, &fhint)?;
            Ok(absent_result(&v, steps, absent_labels(args[0]), false))
        }
        "sort" | "sort_desc" | "sort_by_label" | "sort_by_label_desc" => {
            if steps.start != steps.end {
                ev.annos
                    .warn("sort is ineffective for range queries since results are always ordered by labels");
            }
            let mut v = vector_arg(ev, args[0], steps, &fhint)?;
            if matches!(name, "sort" | "sort_desc") {
                for s in &mut v {
                    s.points.retain(|p| p.h.is_none());
                }
                v.retain(|s| !s.points.is_empty());
            }
            if n == 1 {
                match name {
                    "sort" | "sort_desc" => {
                        let desc = name == "sort_desc";
                        v.sort_by(|a, b| {
                            let (x, y) = (a.points[0].f, b.points[0].f);
                            match (x.is_nan(), y.is_nan()) {
                                (true, true) => Ordering::Equal,
                                (true, false) => Ordering::Greater,
                                (false, true) => Ordering::Less,
                                _ => {
                                    let c = x.partial_cmp(&y).unwrap_or(Ordering::Equal);
                                    if desc {
                                        c.reverse()
                                    } else {
                                        c
                                    }
                                }
                            }
                        });
                    }
                    _ => {
                        let names: Vec<String> = args[1..]
                            .iter()
                            .map(|a| string_arg(a))
                            .collect::<Result<_>>()?;
                        let desc = name == "sort_by_label_desc";
                        v.sort_by(|a, b| {
                            for l in &names {
                                let x = a.labels.get(l).unwrap_or("");
                                let y = b.labels.get(l).unwrap_or("");
                                if x == y {
                                    continue;
                                }
                                let c = natural_cmp(x, y);
                                return if desc { c.reverse() } else { c };
                            }
                            let c = a.labels.cmp(&b.labels);
                            if desc {
                                c.reverse()
                            } else {
                                c
                            }
                        });
                    }
                }
            }
            Ok(Val::Vector(v))
        }
        "label_replace" => {
            let dst = string_arg(args[1])?;
            let repl = string_arg(args[2])?;
            let src = string_arg(args[3])?;
            let re_s = string_arg(args[4])?;
            let re = regex::Regex::new(&format!("^(?s:{re_s})$")).map_err(|_| {
                eval_err(format!(
                    "invalid regular expression in label_replace(): {re_s}"
                ))
            })?;
            if !valid_label_name(&dst) {
                return Err(eval_err(format!(
                    "invalid destination label name in label_replace(): {dst}"
                )));
            }
            let mut v = vector_arg(ev, args[0], steps, &fhint)?;
            for s in &mut v {
                let sv = s.labels.get(&src).unwrap_or("").to_string();
                if let Some(caps) = re.captures(&sv) {
                    let mut res = String::new();
                    caps.expand(&repl, &mut res);
                    s.labels = s.labels.with(&dst, &res);
                    if dst == "__name__" {
                        s.drop_name = false;
                    }
                }
            }
            Ok(Val::Vector(merge_same_labels(v)?))
        }
        "label_join" => {
            let dst = string_arg(args[1])?;
            let sep = string_arg(args[2])?;
            let srcs: Vec<String> = args[3..]
                .iter()
                .map(|a| string_arg(a))
                .collect::<Result<_>>()?;
            if !valid_label_name(&dst) {
                return Err(eval_err(format!(
                    "invalid destination label name in label_join(): {dst}"
                )));
            }
            if let Some(bad) = srcs.iter().find(|l| !valid_label_name(l)) {
                return Err(eval_err(format!(
                    "invalid source label name in label_join(): {bad}"
                )));
            }
            let mut v = vector_arg(ev, args[0], steps, &fhint)?;
            for s in &mut v {
                let joined: Vec<&str> =
                    srcs.iter().map(|l| s.labels.get(l).unwrap_or("")).collect();
                let val = joined.join(&sep);
                s.labels = s.labels.with(&dst, &val);
                if dst == "__name__" {
                    s.drop_name = false;
                }
            }
            Ok(Val::Vector(merge_same_labels(v)?))
        }
        "histogram_quantile" => histogram_quantile(ev, args[0], args[1], steps, &fhint),
        "clamp" | "clamp_min" | "clamp_max" => {
            let v = vector_arg(ev, args[0], steps, &fhint)?;
            let (mins, maxs) = match name {
                "clamp" => (
                    Some(scalar_arg(ev, args[1], steps)?),
                    Some(scalar_arg(ev, args[2], steps)?),
                ),
                "clamp_min" => (Some(scalar_arg(ev, args[1], steps)?), None),
                _ => (None, Some(scalar_arg(ev, args[1], steps)?)),
            };
            let mut out = v;
            for s in &mut out {
                s.drop_name = true;
                s.points.retain_mut(|p| {
                    if p.h.is_some() {
                        return false;
                    }
                    let i = steps.idx(p.t);
                    let lo = mins.as_ref().map(|m| m[i]).unwrap_or(f64::NEG_INFINITY);
                    let hi = maxs.as_ref().map(|m| m[i]).unwrap_or(f64::INFINITY);
                    if name == "clamp" && hi < lo {
                        return false;
                    }
                    p.f = go_max(lo, go_min(hi, p.f));
                    true
                });
            }
            out.retain(|s| !s.points.is_empty());
            Ok(Val::Vector(out))
        }
        "round" => {
            let mut v = vector_arg(ev, args[0], steps, &fhint)?;
            let to = if args.len() > 1 {
                Some(scalar_arg(ev, args[1], steps)?)
            } else {
                None
            };
            for s in &mut v {
                s.drop_name = true;
                s.points.retain(|p| p.h.is_none());
                for p in &mut s.points {
                    let t = to.as_ref().map(|x| x[steps.idx(p.t)]).unwrap_or(1.0);
                    let inv = 1.0 / t;
                    p.f = (p.f * inv + 0.5).floor() / inv;
                }
            }
            v.retain(|s| !s.points.is_empty());
            Ok(Val::Vector(v))
        }
        "days_in_month" | "day_of_month" | "day_of_week" | "day_of_year" | "hour" | "minute"
        | "month" | "year" => {
            if args.is_empty() {
                return Ok(Val::Vector(vec![Series {
                    labels: Labels::default(),
                    points: (0..n)
                        .map(|i| {
                            Sample::float(
                                steps.ts(i),
                                date_fn(name, (steps.ts(i).div_euclid(1000)) as f64),
                            )
                        })
                        .collect(),
                    drop_name: false,
                }]));
            }
            let v = vector_arg(ev, args[0], steps, &fhint)?;
            Ok(Val::Vector(map_points(v, true, |x| {
                if x.is_nan() || x.is_infinite() {
                    f64::NAN
                } else {
                    date_fn(name, x.trunc())
                }
            })))
        }
        "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_stddev"
        | "histogram_stdvar" => {
            let mut v = vector_arg(ev, args[0], steps, &fhint)?;
            for s in &mut v {
                s.drop_name = true;
                s.points.retain(|p| p.h.is_some());
                for p in &mut s.points {
                    let h = p.h.take().unwrap();
                    p.f = match name {
                        "histogram_count" => h.count,
                        "histogram_sum" => h.sum,
                        "histogram_avg" => h.sum / h.count,
                        "histogram_stddev" => h.variance().sqrt(),
                        _ => h.variance(),
                    };
                }
            }
            v.retain(|s| !s.points.is_empty());
            Ok(Val::Vector(v))
        }
        "histogram_quantiles" => {
            let label = string_arg(args[1])?;
            let mut out = OutputBuilder::new();
            for qa in &args[2..] {
                let qs = scalar_arg(ev, qa, steps)?;
                let Val::Vector(res) = histogram_bucket_fn(
                    ev,
                    BucketFn::Quantile(qs.clone()),
                    args[0],
                    steps,
                    &fhint,
                )?
                else {
                    continue;
                };
                for s in res {
                    for p in s.points {
                        let l = s
                            .labels
                            .with(&label, &openmetrics_float(qs[steps.idx(p.t)]));
                        out.push_sample(&l, p, true)?;
                    }
                }
            }
            Ok(Val::Vector(out.series))
        }
        "histogram_fraction" => {
            let lo = scalar_arg(ev, args[0], steps)?;
            let hi = scalar_arg(ev, args[1], steps)?;
            histogram_bucket_fn(ev, BucketFn::Fraction(lo, hi), args[2], steps, &fhint)
        }
        _ => {
            if let Some(f) = simple_math(name) {
                let v = vector_arg(ev, args[0], steps, &fhint)?;
                return Ok(Val::Vector(map_points(v, true, f)));
            }
            Err(eval_err(format!("function {name} is not supported")))
        }
    }
}

/// A label name must be non-empty valid UTF-8.
pub(crate) fn valid_label_name(s: &str) -> bool {
    !s.is_empty() && !crate::parser::has_invalid_bytes(s)
}

fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

/// Merges series whose label sets became equal (label_replace/label_join); overlapping
/// timestamps are an error.
fn merge_same_labels(v: Vec<Series>) -> Result<Vec<Series>> {
    let mut idx: std::collections::HashMap<Labels, usize> = std::collections::HashMap::new();
    let mut out: Vec<Series> = Vec::with_capacity(v.len());
    for s in v {
        if let Some(&i) = idx.get(&s.labels) {
            let m: &mut Series = &mut out[i];
            m.points.extend(s.points);
            m.points.sort_by_key(|p| p.t);
            m.drop_name |= s.drop_name;
            if m.points.windows(2).any(|w| w[0].t == w[1].t) {
                return Err(eval_err(
                    "vector cannot contain metrics with the same labelset",
                ));
            }
        } else {
            idx.insert(s.labels.clone(), out.len());
            out.push(s);
        }
    }
    Ok(out)
}

/// What a histogram function computes from buckets (classic or native).
enum BucketFn {
    Quantile(Vec<f64>),
    Fraction(Vec<f64>, Vec<f64>),
}

fn histogram_quantile(
    ev: &mut Evaluator<'_>,
    qe: &Expr,
    ve: &Expr,
    steps: Steps,
    hint: &HintCtx,
) -> Result<Val> {
    let qs = scalar_arg(ev, qe, steps)?;
    histogram_bucket_fn(ev, BucketFn::Quantile(qs), ve, steps, hint)
}

fn histogram_bucket_fn(
    ev: &mut Evaluator<'_>,
    kind: BucketFn,
    ve: &Expr,
    steps: Steps,
    hint: &HintCtx,
) -> Result<Val> {
    let v = vector_arg(ev, ve, steps, hint)?;
    // Group series by labels without `le`.
    let mut groups: std::collections::HashMap<Labels, usize> = std::collections::HashMap::new();
    let mut group_labels: Vec<Labels> = Vec::new();
    let mut series_info: Vec<Option<(usize, f64)>> = Vec::with_capacity(v.len());
    let mut bad_le: Vec<Option<String>> = Vec::with_capacity(v.len());
    for s in &v {
        let le = s.labels.get("le").unwrap_or("");
        match parse_go_float(le) {
            Some(ub) => {
                let key = s.labels.without(&["le"]);
                let n = group_labels.len();
                let gi = *groups.entry(key.clone()).or_insert_with(|| {
                    group_labels.push(key);
                    n
                });
                series_info.push(Some((gi, ub)));
                bad_le.push(None);
            }
            None => {
                series_info.push(None);
                let name = s.labels.get("__name__").unwrap_or("");
                let mut msg =
                    format!("bucket label \"le\" is missing or has a malformed value of {le:?}");
                if !name.is_empty() {
                    msg.push_str(&format!(" for metric name {name:?}"));
                }
                bad_le.push(Some(msg));
            }
        }
    }
    let mut out = OutputBuilder::new();
    let mut cur = StepCursor::new(v.len());
    let mut buckets: Vec<Vec<(f64, f64)>> = vec![Vec::new(); group_labels.len()];
    let mut warned_q = false;
    let mut natives: Vec<usize> = Vec::new();
    for i in 0..steps.len() {
        let t = steps.ts(i);
        cur.advance(&v, t);
        let q = match &kind {
            BucketFn::Quantile(qs) => qs[i],
            BucketFn::Fraction(..) => 0.5,
        };
        if !warned_q && (q.is_nan() || !(0.0..=1.0).contains(&q)) {
            ev.annos.warn(format!(
                "quantile value should be between 0 and 1, got {}",
                go_g(q)
            ));
            warned_q = true;
        }
        if cur.buf.is_empty() {
            continue;
        }
        for b in buckets.iter_mut() {
            b.clear();
        }
        natives.clear();
        for &(si, pi) in &cur.buf {
            let smp = &v[si].points[pi];
            if smp.h.is_some() {
                natives.push(si);
                continue;
            }
            match series_info[si] {
                Some((gi, ub)) => buckets[gi].push((ub, smp.f)),
                None => {
                    if let Some(m) = &bad_le[si] {
                        ev.annos.warn(m.clone());
                    }
                }
            }
        }
        for &si in &natives {
            if let Some(&gi) = groups.get(&v[si].labels) {
                if !buckets[gi].is_empty() {
                    let name = v[si].labels.get("__name__").unwrap_or("");
                    ev.annos.warn(format!(
                        "vector contains a mix of classic and native histograms for metric name {name:?}"
                    ));
                    buckets[gi].clear();
                    continue;
                }
            }
            let h = v[si]
                .points
                .iter()
                .find(|p| p.t == t)
                .and_then(|p| p.h.clone())
                .unwrap();
            let name = v[si].labels.get("__name__").unwrap_or("");
            let suffix = if name.is_empty() {
                String::new()
            } else {
                format!(" for metric name {name:?}")
            };
            let val = match &kind {
                BucketFn::Quantile(_) => {
                    let (val, info) = h.quantile_with_info(q);
                    match info {
                        Some(true) => ev.annos.info(format!(
                            "input to histogram_quantile has NaN observations, result is NaN{suffix}"
                        )),
                        Some(false) => ev.annos.info(format!(
                            "input to histogram_quantile has NaN observations, result is skewed higher{suffix}"
                        )),
                        None => {}
                    }
                    val
                }
                BucketFn::Fraction(lo, hi) => {
                    let (val, nans) = h.fraction_with_info(lo[i], hi[i]);
                    if nans {
                        ev.annos.info(format!(
                            "input to histogram_fraction has NaN observations, which are excluded from all fractions{suffix}"
                        ));
                    }
                    val
                }
            };
            out.push(&v[si].labels, t, val, true)?;
        }
        for (gi, b) in buckets.iter_mut().enumerate() {
            if b.is_empty() {
                continue;
            }
            let (val, forced) = match &kind {
                BucketFn::Quantile(_) => bucket_quantile(q, b),
                BucketFn::Fraction(lo, hi) => (bucket_fraction(lo[i], hi[i], b), false),
            };
            if forced {
                let name = group_labels[gi].get("__name__").unwrap_or("");
                let mut msg = "input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile)".to_string();
                if !name.is_empty() {
                    msg.push_str(&format!(" for metric name {name:?}"));
                }
                ev.annos.info(msg);
            }
            out.push(&group_labels[gi], t, val, true)?;
        }
    }
    Ok(Val::Vector(out.series))
}

pub(crate) fn parse_go_float(s: &str) -> Option<f64> {
    let t = s.trim();
    if t.is_empty() {
        return None;
    }
    match t.to_ascii_lowercase().as_str() {
        "+inf" | "inf" | "+infinity" | "infinity" => return Some(f64::INFINITY),
        "-inf" | "-infinity" => return Some(f64::NEG_INFINITY),
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return i64::from_str_radix(h, 16).ok().map(|x| x as f64);
    }
    t.parse::<f64>().ok()
}

fn almost_equal(a: f64, b: f64, eps: f64) -> bool {
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let min_normal = f64::from_bits(0x0010_0000_0000_0000);
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < min_normal {
        return diff < eps * min_normal;
    }
    diff / abs_sum.min(f64::MAX) < eps
}

/// Quantile over classic buckets `(upper bound, cumulative count)`; also reports whether
/// monotonicity had to be forced.
fn bucket_quantile(q: f64, buckets: &mut [(f64, f64)]) -> (f64, bool) {
    if q.is_nan() {
        return (f64::NAN, false);
    }
    if q < 0.0 {
        return (f64::NEG_INFINITY, false);
    }
    if q > 1.0 {
        return (f64::INFINITY, false);
    }
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(Ordering::Equal));
    if buckets.last().map(|b| b.0) != Some(f64::INFINITY) {
        return (f64::NAN, false);
    }
    // Coalesce equal bounds.
    let mut co: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for &(ub, c) in buckets.iter() {
        match co.last_mut() {
            Some(last) if last.0 == ub => last.1 += c,
            _ => co.push((ub, c)),
        }
    }
    // Monotonicity.
    let mut forced = false;
    let mut prev = co[0].1;
    for b in co.iter_mut().skip(1) {
        let curr = b.1;
        if curr == prev {
            continue;
        }
        if almost_equal(prev, curr, 1e-12) {
            b.1 = prev;
            continue;
        }
        if curr < prev {
            b.1 = prev;
            forced = true;
            continue;
        }
        prev = curr;
    }
    if co.len() < 2 {
        return (f64::NAN, forced);
    }
    let obs = co[co.len() - 1].1;
    if obs == 0.0 {
        return (f64::NAN, forced);
    }
    let mut rank = q * obs;
    let n = co.len() - 1;
    let b = co[..n].partition_point(|x| x.1 < rank);
    let v = if b == n {
        co[n - 1].0
    } else if b == 0 && co[0].0 <= 0.0 {
        co[0].0
    } else {
        let mut start = 0.0;
        let end = co[b].0;
        let mut count = co[b].1;
        if b > 0 {
            start = co[b - 1].0;
            count -= co[b - 1].1;
            rank -= co[b - 1].1;
        }
        start + (end - start) * (rank / count)
    };
    (v, forced)
}

/// Formats like Prometheus' `FormatOpenMetricsFloat` (integral values get `.0`).
fn openmetrics_float(f: f64) -> String {
    let s = go_g(f);
    if f.is_finite() && f == f.floor() && !s.contains(['.', 'e']) {
        format!("{s}.0")
    } else {
        s
    }
}

/// Fraction of observations between `lower` and `upper` from classic buckets.
fn bucket_fraction(lower: f64, upper: f64, buckets: &mut [(f64, f64)]) -> f64 {
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(Ordering::Equal));
    if buckets.last().map(|b| b.0) != Some(f64::INFINITY) {
        return f64::NAN;
    }
    let mut co: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for &(ub, c) in buckets.iter() {
        match co.last_mut() {
            Some(last) if last.0 == ub => last.1 += c,
            _ => co.push((ub, c)),
        }
    }
    let count = co[co.len() - 1].1;
    if count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let (mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    let mut lower_bound = if co[0].0 <= 0.0 {
        f64::NEG_INFINITY
    } else {
        0.0
    };
    for i in 0..co.len() {
        if i > 0 {
            lower_bound = co[i - 1].0;
        }
        let (upper_bound, bc) = co[i];
        let interp = |v: f64, rank: f64| -> f64 {
            if lower_bound == f64::NEG_INFINITY {
                return bc;
            }
            rank + (bc - rank) * (v - lower_bound) / (upper_bound - lower_bound)
        };
        if !lower_set && lower_bound >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && lower_bound >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        if !lower_set && lower_bound < lower && upper_bound > lower {
            lower_rank = interp(lower, rank);
            lower_set = true;
        }
        if !upper_set && lower_bound < upper && upper_bound > upper {
            upper_rank = interp(upper, rank);
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        rank = bc;
    }
    if !lower_set || lower_rank > count {
        lower_rank = count;
    }
    if !upper_set || upper_rank > count {
        upper_rank = count;
    }
    (upper_rank - lower_rank) / count
}

fn linear_regression(points: &[Sample], intercept_t: i64) -> (f64, f64) {
    let (mut n, mut sx, mut cx, mut sy, mut cy, mut sxy, mut cxy, mut sx2, mut cx2) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    let init_y = points[0].f;
    let mut const_y = true;
    for (i, p) in points.iter().enumerate() {
        if const_y && i > 0 && p.f != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (p.t - intercept_t) as f64 / 1e3;
        (sx, cx) = kahan_inc(x, sx, cx);
        (sy, cy) = kahan_inc(p.f, sy, cy);
        (sxy, cxy) = kahan_inc(x * p.f, sxy, cxy);
        (sx2, cx2) = kahan_inc(x * x, sx2, cx2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    sx += cx;
    sy += cy;
    sxy += cxy;
    sx2 += cx2;
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    (slope, sy / n - slope * sx / n)
}

fn extrapolated_rate(
    w: &[Sample],
    cx: &mut RangeCtx<'_, '_>,
    counter: bool,
    is_rate: bool,
) -> Option<RangeOut> {
    let nh = if cx.floats_only {
        0
    } else {
        w.iter().filter(|p| p.h.is_some()).count()
    };
    if nh > 0 && nh < w.len() {
        cx.annos.warn(format!(
            "encountered a mix of histograms and floats for metric name {:?}",
            cx.metric
        ));
        return None;
    }
    if w.len() < 2 {
        return None;
    }
    let first = &w[0];
    let last = &w[w.len() - 1];
    let mut result_h: Option<FloatHistogram> = None;
    let mut result = 0.0;
    if nh > 0 {
        result_h = Some(histogram_rate(w, counter, cx)?);
    } else {
        result = last.f - first.f;
        if counter {
            match cx.counter_resets {
                Some((resets, first)) => {
                    for &j in resets {
                        result += w[j - first].f;
                    }
                }
                None => {
                    for pair in w.windows(2) {
                        if pair[1].f < pair[0].f {
                            result += pair[0].f;
                        }
                    }
                }
            }
        }
    }
    let mut to_start = (first.t - cx.start) as f64 / 1000.0;
    let mut to_end = (cx.end - last.t) as f64 / 1000.0;
    let sampled = (last.t - first.t) as f64 / 1000.0;
    let avg = sampled / (w.len() - 1) as f64;
    let threshold = avg * 1.1;
    if to_start >= threshold {
        to_start = avg / 2.0;
    }
    if counter {
        let mut to_zero = to_start;
        match (&result_h, &first.h) {
            (None, _) if result > 0.0 && first.f >= 0.0 => {
                to_zero = sampled * (first.f / result);
            }
            (Some(rh), Some(fh)) if rh.count > 0.0 && fh.count >= 0.0 => {
                to_zero = sampled * (fh.count / rh.count);
            }
            _ => {}
        }
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = avg / 2.0;
    }
    let mut factor = if sampled != 0.0 {
        (sampled + to_start + to_end) / sampled
    } else {
        1.0
    };
    if is_rate {
        factor /= cx.range as f64 / 1000.0;
    }
    match result_h {
        Some(mut h) => {
            h.mul(factor);
            Some((0.0, Some(h)))
        }
        None => Some((result * factor, None)),
    }
}

fn histogram_rate(
    w: &[Sample],
    counter: bool,
    cx: &mut RangeCtx<'_, '_>,
) -> Option<FloatHistogram> {
    let hs: Vec<&FloatHistogram> = w.iter().map(|p| p.h.as_deref().unwrap()).collect();
    let mut prev: FloatHistogram = hs[0].clone();
    let last = hs[hs.len() - 1];
    let mut custom = prev.uses_custom_buckets();
    if counter
        && (prev.counter_reset_hint == CounterResetHint::Gauge
            || last.counter_reset_hint == CounterResetHint::Gauge)
    {
        cx.annos.warn(format!(
            "this native histogram metric is not a counter: {:?}",
            cx.metric
        ));
    }
    if counter {
        let second = hs[1];
        if second.detect_reset(&prev) {
            prev = FloatHistogram {
                schema: second.schema,
                custom_values: second.custom_values.clone(),
                ..Default::default()
            };
            custom = second.uses_custom_buckets();
        }
    }
    let mixed_schemas = |cx: &mut RangeCtx<'_, '_>| {
        cx.annos.warn(format!(
            "vector contains a mix of histograms with exponential and custom buckets schemas for metric name {:?}",
            cx.metric
        ));
    };
    if last.uses_custom_buckets() != custom {
        mixed_schemas(cx);
        return None;
    }
    let mut min_schema = last.schema.min(prev.schema);
    for curr in &hs[1..hs.len() - 1] {
        if !counter {
            continue;
        }
        if curr.counter_reset_hint == CounterResetHint::Gauge {
            cx.annos.warn(format!(
                "this native histogram metric is not a counter: {:?}",
                cx.metric
            ));
        }
        min_schema = min_schema.min(curr.schema);
        if curr.uses_custom_buckets() != custom {
            mixed_schemas(cx);
            return None;
        }
    }
    let mut h = last.clone();
    if !h.uses_custom_buckets() && min_schema < h.schema {
        let target = FloatHistogram {
            schema: min_schema,
            zero_threshold: h.zero_threshold,
            ..Default::default()
        };
        // Adding an empty histogram of lower schema reduces the resolution.
        let mut z = target;
        if z.add(&h).is_ok() {
            z.counter_reset_hint = h.counter_reset_hint;
            h = z;
        }
    }
    match h.sub(&prev) {
        Err(_) => {
            mixed_schemas(cx);
            return None;
        }
        Ok((_, reconciled)) => {
            if reconciled {
                cx.annos
                    .info("mismatched custom buckets were reconciled during subtraction");
            }
        }
    }
    if counter {
        let mut p = hs[0];
        for (i, curr) in hs[1..].iter().enumerate() {
            let pr: &FloatHistogram = if i == 0 { &prev } else { p };
            if curr.detect_reset(pr) {
                match h.add(pr) {
                    Err(_) => {
                        mixed_schemas(cx);
                        return None;
                    }
                    Ok((_, reconciled)) => {
                        if reconciled {
                            cx.annos
                                .info("mismatched custom buckets were reconciled during addition");
                        }
                    }
                }
            }
            p = curr;
        }
    } else if hs[0].counter_reset_hint != CounterResetHint::Gauge
        || last.counter_reset_hint != CounterResetHint::Gauge
    {
        cx.annos.warn(format!(
            "this native histogram metric is not a gauge: {:?}",
            cx.metric
        ));
    }
    h.counter_reset_hint = CounterResetHint::Gauge;
    h.compact();
    Some(h)
}

/// `sum_over_time` / `avg_over_time` of histograms, with Kahan summation.
fn histogram_sum_or_avg<'h>(
    mut hs: impl Iterator<Item = &'h FloatHistogram>,
    avg: bool,
    cx: &mut RangeCtx<'_, '_>,
) -> Option<FloatHistogram> {
    let first = hs.next()?;
    let mut mean = avg.then(|| HistogramMean::new(first));
    let mut sum = first.clone();
    let mut comp = None;
    let mut reconciled = false;
    let (mut reset, mut not_reset) = (false, false);
    let mut track = |h: &FloatHistogram| match h.counter_reset_hint {
        CounterResetHint::Reset => reset = true,
        CounterResetHint::NotReset => not_reset = true,
        _ => {}
    };
    track(first);
    for h in hs {
        track(h);
        let r = match mean.as_mut() {
            Some(m) => m.add(h),
            None => sum.kahan_add(h, &mut comp).map(|r| r.1),
        };
        match r {
            Ok(r) => reconciled |= r,
            Err(_) => {
                cx.annos.warn(format!(
                    "vector contains a mix of histograms with exponential and custom buckets schemas for metric name {:?}",
                    cx.metric
                ));
                return None;
            }
        }
    }
    if reset && not_reset {
        cx.annos
            .warn("conflicting counter resets during histogram aggregation");
    }
    if reconciled {
        cx.annos
            .info("mismatched custom buckets were reconciled during aggregation");
    }
    let mut out = match mean {
        Some(m) => m.mean(),
        None => {
            kahan_finish(&mut sum, comp);
            sum
        }
    };
    out.compact();
    Some(out)
}

fn double_exp_smoothing(w: &[Sample], sf: f64, tf: f64) -> Option<f64> {
    if w.len() < 2 {
        return None;
    }
    let mut s0 = 0.0;
    let mut s1 = w[0].f;
    let mut b = w[1].f - w[0].f;
    for (i, p) in w.iter().enumerate().skip(1) {
        let x = sf * p.f;
        if i - 1 > 0 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = x + y;
    }
    Some(s1)
}

fn eval_range_call(
    ev: &mut Evaluator<'_>,
    call: &Call,
    ri: usize,
    steps: Steps,
    hint: &HintCtx,
) -> Result<Val> {
    let name = call.func.name;
    let args: Vec<&Expr> = call.args.args.iter().map(|b| &**b).collect();
    // Scalar arguments (evaluated at the outer steps).
    let mut scalars: Vec<Vec<f64>> = Vec::new();
    for (i, a) in args.iter().enumerate() {
        if i != ri {
            scalars.push(scalar_arg(ev, a, steps)?);
        }
    }
    let validate = |ev: &mut Evaluator<'_>| -> Result<()> {
        if name == "double_exponential_smoothing" {
            for i in 0..steps.len() {
                let (sf, tf) = (scalars[0][i], scalars[1][i]);
                if sf <= 0.0 || sf >= 1.0 {
                    return Err(eval_err(format!(
                        "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:.6}"
                    )));
                }
                if tf <= 0.0 || tf >= 1.0 {
                    return Err(eval_err(format!(
                        "invalid trend factor. Expected: 0 < tf < 1, got: {tf:.6}"
                    )));
                }
            }
        }
        if name == "quantile_over_time" {
            for &q in &scalars[0] {
                if q.is_nan() || !(0.0..=1.0).contains(&q) {
                    ev.annos.warn(format!(
                        "quantile value should be between 0 and 1, got {}",
                        go_g(q)
                    ));
                    break;
                }
            }
        }
        Ok(())
    };
    let mut rf = RangeFnEval {
        name,
        scalars: &scalars,
        steps,
        range: 0,
        offset: 0,
        at: None,
        scratch: Vec::new(),
        resets: Vec::new(),
        extremes: std::collections::VecDeque::new(),
        counts: false,
        out: Vec::new(),
        total: 0,
    };
    match unwrap_parens(args[ri]) {
        Expr::MatrixSelector(ms) => {
            // Series are evaluated as storage hands them over, one at a time.
            validate(ev)?;
            rf.range = ms.range.as_millis() as i64;
            rf.offset = crate::eval::offset_ms(&ms.vs.offset);
            rf.at = ev.at_ms(&ms.vs.at);
            rf.counts = name == "count_over_time"
                && ev.range_selector_counts(&ms.vs, rf.range, steps, hint);
            if ev.parallelism > 1 {
                rf.series_par(ev, &ms.vs, hint)?;
            } else {
                ev.range_selector_each(
                    &ms.vs,
                    rf.range,
                    steps,
                    hint,
                    &mut |ev, labels, pts, hh| {
                        ev.check()?;
                        rf.series(&mut ev.annos, labels, pts, hh, false);
                        Ok(())
                    },
                )?;
            }
        }
        Expr::Subquery(sq) => {
            let input = ev.range_input_subquery(sq, steps)?;
            validate(ev)?;
            rf.range = input.range;
            rf.offset = input.offset;
            rf.at = input.at;
            for s in input.series {
                ev.check()?;
                rf.series(
                    &mut ev.annos,
                    s.labels,
                    &s.points,
                    s.has_histograms,
                    s.drop_name,
                );
            }
        }
        _ => unreachable!(),
    }
    ev.add_samples(rf.total)?;
    let out = rf.out;
    if name == "absent_over_time" {
        return Ok(absent_result(&out, steps, absent_labels(args[ri]), true));
    }
    Ok(Val::Vector(out))
}

/// `absent`/`absent_over_time`: 1 at every step where no input series has a point.
fn absent_result(input: &[Series], steps: Steps, labels: Labels, drop_name: bool) -> Val {
    let n = steps.len();
    let mut present = vec![false; n];
    for s in input {
        for p in &s.points {
            present[steps.idx(p.t)] = true;
        }
    }
    let points: Vec<Sample> = (0..n)
        .filter(|i| !present[*i])
        .map(|i| Sample::float(steps.ts(i), 1.0))
        .collect();
    if points.is_empty() {
        return Val::Vector(Vec::new());
    }
    Val::Vector(vec![Series {
        labels,
        points,
        drop_name,
    }])
}

/// A range function applied series by series over all steps.
struct RangeFnEval<'a> {
    name: &'a str,
    /// Scalar arguments per step.
    scalars: &'a [Vec<f64>],
    steps: Steps,
    range: i64,
    offset: i64,
    at: Option<i64>,
    scratch: Vec<f64>,
    resets: Vec<usize>,
    /// Sliding-window extremes for max/min_over_time: indices of candidate points.
    extremes: std::collections::VecDeque<usize>,
    /// The input's samples are counts of raw samples (downsampled data): `count_over_time`
    /// adds them up.
    counts: bool,
    out: Vec<Series>,
    /// Output points so far.
    total: usize,
}

/// One worker's share of a range function evaluated on several threads
/// ([`RangeFnEval::series_par`]).
struct ParShare<'a> {
    rf: RangeFnEval<'a>,
    /// Position in label order of each of `rf.out`'s series.
    order: Vec<usize>,
    /// Annotations, with the position of the series that raised them.
    notes: Vec<(usize, Annotations)>,
}

impl<'a> RangeFnEval<'a> {
    /// An evaluator of the same function with buffers of its own.
    fn share(&self) -> RangeFnEval<'a> {
        RangeFnEval {
            name: self.name,
            scalars: self.scalars,
            steps: self.steps,
            range: self.range,
            offset: self.offset,
            at: self.at,
            scratch: Vec::new(),
            resets: Vec::new(),
            extremes: Default::default(),
            counts: self.counts,
            out: Vec::new(),
            total: 0,
        }
    }

    /// Evaluates the series of range selector `vs` on up to `ev.parallelism` threads
    /// ([`Evaluator::range_selector_par`]), each with its own evaluator; the results (and
    /// annotations) come out in label order, as the evaluation on one thread gives them.
    fn series_par(
        &mut self,
        ev: &mut Evaluator<'_>,
        vs: &promql_parser::parser::VectorSelector,
        hint: &HintCtx,
    ) -> Result<()> {
        let workers = ev.parallelism;
        let shares: Vec<Mutex<ParShare<'a>>> = (0..workers)
            .map(|_| {
                Mutex::new(ParShare {
                    rf: self.share(),
                    order: Vec::new(),
                    notes: Vec::new(),
                })
            })
            .collect();
        ev.range_selector_par(
            vs,
            self.range,
            self.steps,
            hint,
            workers,
            &|w, i, labels, pts, hh| {
                let mut share = shares[w].lock().unwrap_or_else(|e| e.into_inner());
                let share = &mut *share;
                let mut annos = Annotations::default();
                let before = share.rf.out.len();
                share.rf.series(&mut annos, labels, pts, hh, false);
                if share.rf.out.len() > before {
                    share.order.push(i);
                }
                if !annos.is_empty() {
                    share.notes.push((i, annos));
                }
                Ok(())
            },
        )?;
        let mut out: Vec<(usize, Series)> = Vec::new();
        let mut notes: Vec<(usize, Annotations)> = Vec::new();
        for share in shares {
            let share = share.into_inner().unwrap_or_else(|e| e.into_inner());
            self.total += share.rf.total;
            out.extend(share.order.into_iter().zip(share.rf.out));
            notes.extend(share.notes);
        }
        out.sort_unstable_by_key(|(i, _)| *i);
        notes.sort_by_key(|(i, _)| *i);
        self.out.extend(out.into_iter().map(|(_, s)| s));
        for (_, a) in notes {
            ev.annos.absorb(a);
        }
        Ok(())
    }
}

impl RangeFnEval<'_> {
    /// Evaluates one input series (its samples in time order, no stale markers) at every step.
    fn series(
        &mut self,
        annos: &mut Annotations,
        labels: Labels,
        pts: &[Sample],
        has_histograms: bool,
        drop_name: bool,
    ) {
        // Counts of raw samples (see `counts`) add up to the raw count.
        let name = if self.counts {
            "sum_over_time"
        } else {
            self.name
        };
        let steps = self.steps;
        let n = steps.len();
        let keep_name = matches!(name, "last_over_time" | "first_over_time");
        let counter_rate = matches!(name, "rate" | "increase");
        let (mut lo, mut hi) = (0usize, 0usize);
        let mut outp: Vec<Sample> = Vec::with_capacity(n);
        let single = self.at.is_some();
        let mut cached: Option<Option<RangeOut>> = None;
        let metric_name = labels.get("__name__").unwrap_or("");
        // Float counters: where the value drops (a reset), so a window's correction is a walk
        // over the resets inside it rather than over all its samples.
        let resets = &mut self.resets;
        resets.clear();
        let float_counter = counter_rate && !has_histograms;
        if float_counter {
            resets.extend(
                (1..pts.len())
                    .filter(|&j| pts[j].f < pts[j - 1].f)
                    .map(|j| j - 1),
            );
        }
        let mut next_reset = 0usize;
        // max/min_over_time over floats keep the window's candidates for the extreme (later
        // points not beaten by an earlier one, NaN never a candidate) as the window slides,
        // instead of scanning every window: the front is the first extreme point of the window,
        // as the scan would find it.
        let sliding_max = match name {
            "max_over_time" if !has_histograms && !single => Some(true),
            "min_over_time" if !has_histograms && !single => Some(false),
            _ => None,
        };
        let extremes = &mut self.extremes;
        extremes.clear();
        for i in 0..n {
            let ts = steps.ts(i);
            let end = self.at.unwrap_or(ts) - self.offset;
            let start = end - self.range;
            if let Some(is_max) = sliding_max {
                while hi < pts.len() && pts[hi].t <= end {
                    let f = pts[hi].f;
                    if !f.is_nan() {
                        while let Some(&b) = extremes.back() {
                            let beaten = if is_max { pts[b].f < f } else { pts[b].f > f };
                            if !beaten {
                                break;
                            }
                            extremes.pop_back();
                        }
                        extremes.push_back(hi);
                    }
                    hi += 1;
                }
                while lo < hi && pts[lo].t <= start {
                    lo += 1;
                }
                while extremes.front().is_some_and(|&f| f < lo) {
                    extremes.pop_front();
                }
                if lo < hi {
                    let f = extremes.front().map_or(f64::NAN, |&j| pts[j].f);
                    outp.push(Sample::float(ts, f));
                }
                continue;
            }
            let reuse = if single && name != "predict_linear" {
                cached.clone()
            } else {
                None
            };
            let v = if let Some(r) = reuse {
                r
            } else {
                while hi < pts.len() && pts[hi].t <= end {
                    hi += 1;
                }
                while lo < hi && pts[lo].t <= start {
                    lo += 1;
                }
                if lo > hi {
                    lo = hi;
                }
                let w = &pts[lo..hi];
                let scalars = self.scalars;
                let sc = |k: usize| scalars[k][i];
                let r = if w.is_empty() {
                    None
                } else {
                    let mut window_resets = None;
                    if float_counter {
                        // Resets at pairs (j, j + 1) with lo <= j and j + 1 < hi.
                        while next_reset < resets.len() && resets[next_reset] < lo {
                            next_reset += 1;
                        }
                        let k = resets[next_reset..].partition_point(|&j| j + 1 < hi);
                        window_resets = Some((&resets[next_reset..next_reset + k], lo));
                    }
                    let mut cx = RangeCtx {
                        start,
                        end,
                        range: self.range,
                        ts,
                        sc: &sc,
                        scratch: &mut self.scratch,
                        annos,
                        metric: metric_name,
                        floats_only: !has_histograms,
                        counter_resets: window_resets,
                    };
                    range_fn(name, w, &mut cx)
                };
                if single {
                    // With @ every step sees the same window; reset cursors for safety.
                    lo = 0;
                    hi = 0;
                    next_reset = 0;
                    cached = Some(r.clone());
                }
                r
            };
            if let Some((f, h)) = v {
                outp.push(Sample {
                    t: ts,
                    f,
                    h: h.map(Arc::new),
                });
            }
        }
        if counter_rate {
            if let Some(mn) = labels.get("__name__") {
                let counter_like = ["_total", "_sum", "_count", "_bucket"]
                    .iter()
                    .any(|x| mn.ends_with(x));
                if outp.iter().any(|p| p.h.is_none()) && !counter_like {
                    annos.info(format!(
                        "metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {mn:?}"
                    ));
                }
            }
        }
        if !outp.is_empty() {
            self.total += outp.len();
            self.out.push(Series {
                labels,
                points: outp,
                drop_name: if keep_name { drop_name } else { true },
            });
        }
    }
}

/// What a range function returns for one step: a float, or a histogram.
type RangeOut = (f64, Option<FloatHistogram>);

/// Per-step context of a range function.
struct RangeCtx<'a, 'b> {
    start: i64,
    end: i64,
    range: i64,
    ts: i64,
    sc: &'a dyn Fn(usize) -> f64,
    scratch: &'a mut Vec<f64>,
    annos: &'b mut Annotations,
    metric: &'a str,
    /// The series holds no native histograms (so no window does).
    floats_only: bool,
    /// For rate/increase over floats: where the counter resets in the window, precomputed by
    /// the caller: indices `j` (into the series, with the window's first index) such that
    /// `w[j + 1] < w[j]` inside the window.
    counter_resets: Option<(&'a [usize], usize)>,
}

/// Floats of the window (the window itself when it holds no histograms); if histograms are
/// mixed in, notes that they were ignored.
fn floats_only<'w>(w: &'w [Sample], cx: &mut RangeCtx<'_, '_>) -> Option<Cow<'w, [Sample]>> {
    if cx.floats_only || w.iter().all(|p| p.h.is_none()) {
        return Some(Cow::Borrowed(w));
    }
    let fl: Vec<Sample> = w.iter().filter(|p| p.h.is_none()).cloned().collect();
    if fl.is_empty() {
        return None;
    }
    cx.annos.info(format!(
        "ignored histograms in a range containing both floats and histograms for metric name {:?}",
        cx.metric
    ));
    Some(Cow::Owned(fl))
}

fn range_fn(name: &str, w: &[Sample], cx: &mut RangeCtx<'_, '_>) -> Option<RangeOut> {
    let fl = |f: f64| Some((f, None));
    match name {
        "rate" => extrapolated_rate(w, cx, true, true),
        "increase" => extrapolated_rate(w, cx, true, false),
        "delta" => extrapolated_rate(w, cx, false, false),
        "irate" | "idelta" => {
            if w.len() < 2 {
                return None;
            }
            let (a, b) = (&w[w.len() - 2], &w[w.len() - 1]);
            let dt = b.t - a.t;
            if dt == 0 {
                return None;
            }
            let is_rate = name == "irate";
            match (&a.h, &b.h) {
                (None, None) => {
                    let mut v = b.f - a.f;
                    if is_rate {
                        if b.f < a.f {
                            v = b.f;
                        }
                        v /= dt as f64 / 1000.0;
                    }
                    fl(v)
                }
                (Some(ha), Some(hb)) => {
                    let mut r = (**hb).clone();
                    if is_rate
                        && (hb.counter_reset_hint == CounterResetHint::Gauge
                            || ha.counter_reset_hint == CounterResetHint::Gauge)
                    {
                        cx.annos.warn(format!(
                            "this native histogram metric is not a counter: {:?}",
                            cx.metric
                        ));
                    }
                    if !is_rate
                        && (hb.counter_reset_hint != CounterResetHint::Gauge
                            || ha.counter_reset_hint != CounterResetHint::Gauge)
                    {
                        cx.annos.warn(format!(
                            "this native histogram metric is not a gauge: {:?}",
                            cx.metric
                        ));
                    }
                    if !is_rate || !hb.detect_reset(ha) {
                        match r.sub(ha) {
                            Err(_) => {
                                cx.annos.warn(format!(
                                    "vector contains a mix of histograms with exponential and custom buckets schemas for metric name {:?}",
                                    cx.metric
                                ));
                                return None;
                            }
                            Ok((_, true)) => cx.annos.info(
                                "mismatched custom buckets were reconciled during subtraction",
                            ),
                            Ok(_) => {}
                        }
                    }
                    r.counter_reset_hint = CounterResetHint::Gauge;
                    r.compact();
                    if is_rate {
                        r.div(dt as f64 / 1000.0);
                    }
                    Some((0.0, Some(r)))
                }
                _ => {
                    cx.annos.warn(format!(
                        "encountered a mix of histograms and floats for metric name {:?}",
                        cx.metric
                    ));
                    None
                }
            }
        }
        "avg_over_time" | "sum_over_time" => {
            let nh = w.iter().filter(|p| p.h.is_some()).count();
            if nh > 0 && nh < w.len() {
                cx.annos.warn(format!(
                    "encountered a mix of histograms and floats for metric name {:?}",
                    cx.metric
                ));
                return None;
            }
            if nh > 0 {
                let hs = w.iter().filter_map(|p| p.h.as_deref());
                return histogram_sum_or_avg(hs, name == "avg_over_time", cx)
                    .map(|h| (0.0, Some(h)));
            }
            if name == "sum_over_time" {
                let (mut s, mut c) = (0.0, 0.0);
                for p in w {
                    (s, c) = kahan_inc(p.f, s, c);
                }
                return fl(if s.is_infinite() { s } else { s + c });
            }
            let (mut sum, mut c, mut mean) = (w[0].f, 0.0, 0.0);
            let mut count = 1.0;
            let mut incremental = false;
            for (i, p) in w.iter().enumerate().skip(1) {
                count = (i + 1) as f64;
                if !incremental {
                    let (ns, nc) = kahan_inc(p.f, sum, c);
                    if !ns.is_infinite() {
                        sum = ns;
                        c = nc;
                        continue;
                    }
                    incremental = true;
                    mean = sum / (count - 1.0);
                    c /= count - 1.0;
                }
                let q = (count - 1.0) / count;
                (mean, c) = kahan_inc(p.f / count, q * mean, q * c);
            }
            fl(if incremental {
                mean + c
            } else {
                sum / count + c / count
            })
        }
        "count_over_time" => fl(w.len() as f64),
        "present_over_time" | "absent_over_time" => fl(1.0),
        "last_over_time" => {
            let p = &w[w.len() - 1];
            Some((p.f, p.h.as_deref().cloned()))
        }
        "first_over_time" => Some((w[0].f, w[0].h.as_deref().cloned())),
        "ts_of_last_over_time" => fl(w[w.len() - 1].t as f64 / 1000.0),
        "ts_of_first_over_time" => fl(w[0].t as f64 / 1000.0),
        "max_over_time" | "min_over_time" | "ts_of_max_over_time" | "ts_of_min_over_time" => {
            let f = floats_only(w, cx)?;
            let is_max = name.contains("max");
            let mut best = f[0].f;
            let mut bt = f[0].t;
            for p in f.iter() {
                let better = if is_max { p.f > best } else { p.f < best };
                if better || best.is_nan() {
                    best = p.f;
                    bt = p.t;
                }
            }
            fl(if name.starts_with("ts_of") {
                bt as f64 / 1000.0
            } else {
                best
            })
        }
        "stddev_over_time" | "stdvar_over_time" => {
            let f = floats_only(w, cx)?;
            let (mut count, mut mean, mut cm, mut aux, mut ca) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for p in f.iter() {
                count += 1.0;
                let delta = p.f - (mean + cm);
                (mean, cm) = kahan_inc(delta / count, mean, cm);
                (aux, ca) = kahan_inc(delta * (p.f - (mean + cm)), aux, ca);
            }
            let var = (aux + ca) / count;
            fl(if name == "stddev_over_time" {
                var.sqrt()
            } else {
                var
            })
        }
        "quantile_over_time" => {
            let f = floats_only(w, cx)?;
            cx.scratch.clear();
            cx.scratch.extend(f.iter().map(|p| p.f));
            let q = (cx.sc)(0);
            fl(quantile(q, cx.scratch))
        }
        "mad_over_time" => {
            let f = floats_only(w, cx)?;
            cx.scratch.clear();
            for p in f.iter() {
                if p.f.is_nan() {
                    return fl(f64::NAN);
                }
                cx.scratch.push(p.f);
            }
            let med = quantile(0.5, cx.scratch);
            for x in cx.scratch.iter_mut() {
                *x = (*x - med).abs();
            }
            fl(quantile(0.5, cx.scratch))
        }
        "changes" => {
            let mut c = 0;
            for pair in w.windows(2) {
                let changed = match (&pair[0].h, &pair[1].h) {
                    (None, None) => {
                        pair[1].f != pair[0].f && !(pair[1].f.is_nan() && pair[0].f.is_nan())
                    }
                    (Some(a), Some(b)) => !b.equals(a),
                    _ => true,
                };
                if changed {
                    c += 1;
                }
            }
            fl(c as f64)
        }
        "resets" => {
            let mut c = 0;
            for pair in w.windows(2) {
                let reset = match (&pair[0].h, &pair[1].h) {
                    (None, None) => pair[1].f < pair[0].f,
                    (Some(a), Some(b)) => b.detect_reset(a),
                    _ => true,
                };
                if reset {
                    c += 1;
                }
            }
            fl(c as f64)
        }
        "deriv" | "predict_linear" | "double_exponential_smoothing" => {
            let f = floats_only(w, cx)?;
            if f.len() < 2 {
                return None;
            }
            match name {
                "deriv" => fl(linear_regression(&f, f[0].t).0),
                "predict_linear" => {
                    let (slope, icpt) = linear_regression(&f, cx.ts);
                    fl(slope * (cx.sc)(0) + icpt)
                }
                _ => double_exp_smoothing(&f, (cx.sc)(0), (cx.sc)(1)).map(|v| (v, None)),
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every window of `pts` through `range_fn` directly, step by step.
    fn scanned(name: &str, pts: &[Sample], steps: Steps, range: i64) -> Vec<(i64, u64)> {
        let mut annos = Annotations::default();
        let mut scratch = Vec::new();
        let mut out = Vec::new();
        for i in 0..steps.len() {
            let ts = steps.ts(i);
            let w: Vec<Sample> = pts
                .iter()
                .filter(|p| p.t > ts - range && p.t <= ts)
                .cloned()
                .collect();
            if w.is_empty() {
                continue;
            }
            let sc = |_: usize| 0.0;
            let mut cx = RangeCtx {
                start: ts - range,
                end: ts,
                range,
                ts,
                sc: &sc,
                scratch: &mut scratch,
                annos: &mut annos,
                metric: "",
                floats_only: true,
                counter_resets: None,
            };
            if let Some((f, _)) = range_fn(name, &w, &mut cx) {
                out.push((ts, f.to_bits()));
            }
        }
        out
    }

    fn evaluated(name: &str, pts: &[Sample], steps: Steps, range: i64) -> Vec<(i64, u64)> {
        let mut rf = RangeFnEval {
            name,
            scalars: &[],
            steps,
            range,
            offset: 0,
            at: None,
            scratch: Vec::new(),
            resets: Vec::new(),
            extremes: std::collections::VecDeque::new(),
            counts: false,
            out: Vec::new(),
            total: 0,
        };
        let mut annos = Annotations::default();
        rf.series(&mut annos, Labels::default(), pts, false, false);
        rf.out
            .iter()
            .flat_map(|s| s.points.iter().map(|p| (p.t, p.f.to_bits())))
            .collect()
    }

    /// The incremental paths (sliding extremes, counter resets) give bit for bit what a scan
    /// of each window gives, with NaNs, signed zeros, ties, resets and gaps.
    #[test]
    fn incremental_range_functions_match_a_scan_of_each_window() {
        let values = [
            1.0,
            f64::NAN,
            -0.0,
            0.0,
            3.0,
            3.0,
            f64::NAN,
            f64::NAN,
            2.0,
            f64::INFINITY,
            -5.0,
            0.5,
            0.5,
            f64::NEG_INFINITY,
            7.0,
            1.0,
            2.0,
        ];
        // Where only signed zeros compete, which zero comes first decides the answer's bits.
        let zeros = [-0.0, 0.0, f64::NAN, -1.0, 0.0, -0.0];
        let mut x = 12345u64;
        let mut pts = Vec::new();
        let mut t = 0;
        for k in 0..800 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            t += 1 + (x >> 60) as i64 * 3;
            if k % 97 == 50 {
                t += 200; // a gap longer than the range
            }
            let set: &[f64] = if k < 400 { &values } else { &zeros };
            pts.push(Sample::float(t, set[(x >> 33) as usize % set.len()]));
        }
        let counter: Vec<Sample> = {
            let mut v = 0.0;
            pts.iter()
                .enumerate()
                .map(|(k, p)| {
                    v += (k % 5) as f64;
                    if k % 37 == 0 || k % 41 == 3 {
                        v = (k % 3) as f64; // resets, some of them back to back
                    }
                    Sample::float(p.t, v)
                })
                .collect()
        };
        let steps = Steps {
            start: -20,
            end: t + 40,
            step: 7,
        };
        for range in [1, 10, 45, 300] {
            for name in ["max_over_time", "min_over_time"] {
                assert_eq!(
                    evaluated(name, &pts, steps, range),
                    scanned(name, &pts, steps, range),
                    "{name} over {range}"
                );
            }
            for name in ["rate", "increase"] {
                assert_eq!(
                    evaluated(name, &counter, steps, range),
                    scanned(name, &counter, steps, range),
                    "{name} over {range}"
                );
            }
        }
    }
}
