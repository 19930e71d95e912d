//! Native histograms (float flavour), with sparse bucket maps.
//!
//! Buckets are kept as sorted `(index, count)` pairs. For exponential schemas (-4..=8) bucket
//! `i` covers `(base^(i-1), base^i]` with `base = 2^(2^-schema)`; negative buckets mirror that.
//! For the custom-bucket schema (-53) bucket `i` covers `(custom_values[i-1], custom_values[i]]`
//! with implicit `-Inf`/`+Inf` ends.

use std::fmt;

use crate::aggregate::kahan_inc;
use crate::functions::go_g;

/// The schema of native histograms with custom buckets.
pub const CUSTOM_BUCKETS_SCHEMA: i32 = -53;

/// The writer's counter-reset hint: the model's type, shared with storage.
pub use model::histogram::CounterResetHint;

/// A float native histogram.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FloatHistogram {
    pub counter_reset_hint: CounterResetHint,
    pub schema: i32,
    pub zero_threshold: f64,
    pub zero_count: f64,
    pub count: f64,
    pub sum: f64,
    /// Positive buckets, sorted by index.
    pub positive: Vec<(i32, f64)>,
    /// Negative buckets, sorted by index.
    pub negative: Vec<(i32, f64)>,
    /// Upper bounds of custom buckets (schema -53 only).
    pub custom_values: Vec<f64>,
}

/// Histograms with and without custom buckets cannot be combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IncompatibleSchema;

/// One bucket with bounds, as iterated.
#[derive(Clone, Copy, Debug)]
pub struct Bucket {
    pub lower: f64,
    pub upper: f64,
    pub lower_inclusive: bool,
    pub upper_inclusive: bool,
    pub count: f64,
}

impl Bucket {
    fn fraction_below(&self, v: f64, linear: bool) -> f64 {
        if linear {
            return (v - self.lower) / (self.upper - self.lower);
        }
        let ll = self.lower.abs().log2();
        let lu = self.upper.abs().log2();
        let lv = v.abs().log2();
        if v > 0.0 {
            (lv - ll) / (lu - ll)
        } else {
            1.0 - (lv - lu) / (ll - lu)
        }
    }
}

impl fmt::Display for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{},{}{}:{}",
            if self.lower_inclusive { '[' } else { '(' },
            go_g(self.lower),
            go_g(self.upper),
            if self.upper_inclusive { ']' } else { ')' },
            go_g(self.count)
        )
    }
}

/// Upper bound of exponential bucket `idx`.
fn exp_bound(idx: i32, schema: i32) -> f64 {
    if schema < 0 {
        let e = (idx as i64) << (-schema);
        if e >= 1024 {
            return f64::MAX;
        }
        return 2f64.powi(e as i32);
    }
    let frac_idx = idx & ((1 << schema) - 1);
    let frac = ((frac_idx as f64) / (1u32 << schema) as f64 - 1.0).exp2();
    let e = (idx >> schema) + 1;
    if frac == 0.5 && e == 1025 {
        return f64::MAX;
    }
    frac * 2f64.powi(e)
}

fn merge(a: &[(i32, f64)], b: &[(i32, f64)], sign: f64) -> Vec<(i32, f64)> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if j >= b.len() || (i < a.len() && a[i].0 < b[j].0) {
            out.push(a[i]);
            i += 1;
        } else if i >= a.len() || b[j].0 < a[i].0 {
            out.push((b[j].0, sign * b[j].1));
            j += 1;
        } else {
            out.push((a[i].0, a[i].1 + sign * b[j].1));
            i += 1;
            j += 1;
        }
    }
    out
}

fn reduce(b: &[(i32, f64)], from: i32, to: i32) -> Vec<(i32, f64)> {
    let mut out: Vec<(i32, f64)> = Vec::with_capacity(b.len());
    for &(idx, c) in b {
        let t = ((idx - 1) >> (from - to)) + 1;
        match out.last_mut() {
            Some(last) if last.0 == t => last.1 += c,
            _ => out.push((t, c)),
        }
    }
    out
}

impl FloatHistogram {
    pub fn uses_custom_buckets(&self) -> bool {
        self.schema == CUSTOM_BUCKETS_SCHEMA
    }

    /// Scales every count and the sum.
    pub fn mul(&mut self, f: f64) -> &mut Self {
        self.zero_count *= f;
        self.count *= f;
        self.sum *= f;
        self.positive.iter_mut().for_each(|b| b.1 *= f);
        self.negative.iter_mut().for_each(|b| b.1 *= f);
        if f < 0.0 {
            self.counter_reset_hint = CounterResetHint::Gauge;
        }
        self
    }

    /// Divides every count and the sum. Division by zero leaves no buckets (only the zero
    /// bucket, count and sum, which become infinite or NaN).
    pub fn div(&mut self, f: f64) -> &mut Self {
        self.zero_count /= f;
        self.count /= f;
        self.sum /= f;
        if f == 0.0 {
            self.positive.clear();
            self.negative.clear();
            return self;
        }
        self.positive.iter_mut().for_each(|b| b.1 /= f);
        self.negative.iter_mut().for_each(|b| b.1 /= f);
        if f < 0.0 {
            self.counter_reset_hint = CounterResetHint::Gauge;
        }
        self
    }

    /// Drops empty buckets.
    pub fn compact(&mut self) -> &mut Self {
        self.positive.retain(|b| b.1 != 0.0);
        self.negative.retain(|b| b.1 != 0.0);
        self
    }

    fn bucket_bounds(&self, idx: i32) -> (f64, f64) {
        if self.uses_custom_buckets() {
            let n = self.custom_values.len() as i32;
            let upper = if idx >= n {
                f64::INFINITY
            } else {
                self.custom_values[idx as usize]
            };
            let lower = if idx <= 0 {
                f64::NEG_INFINITY
            } else {
                self.custom_values[(idx - 1) as usize]
            };
            (lower, upper)
        } else {
            (exp_bound(idx - 1, self.schema), exp_bound(idx, self.schema))
        }
    }

    /// All buckets from lowest to highest: negative, zero (if it has observations), positive.
    pub fn all_buckets(&self) -> Vec<Bucket> {
        let mut out = Vec::with_capacity(self.positive.len() + self.negative.len() + 1);
        for &(idx, c) in self.negative.iter().rev() {
            let (l, u) = self.bucket_bounds(idx);
            let mut b = Bucket {
                lower: -u,
                upper: -l,
                lower_inclusive: true,
                upper_inclusive: false,
                count: c,
            };
            if b.upper < 0.0 && b.upper > -self.zero_threshold {
                b.upper = -self.zero_threshold;
            }
            out.push(b);
        }
        if self.zero_count > 0.0 && !self.uses_custom_buckets() {
            out.push(Bucket {
                lower: -self.zero_threshold,
                upper: self.zero_threshold,
                lower_inclusive: true,
                upper_inclusive: true,
                count: self.zero_count,
            });
        }
        for &(idx, c) in &self.positive {
            let (l, u) = self.bucket_bounds(idx);
            let mut b = Bucket {
                lower: l,
                upper: u,
                lower_inclusive: false,
                upper_inclusive: true,
                count: c,
            };
            if b.lower > 0.0 && b.lower < self.zero_threshold {
                b.lower = self.zero_threshold;
            }
            out.push(b);
        }
        out
    }

    /// The zero count this histogram would have with a zero bucket at least `threshold`
    /// wide, and the threshold actually needed (it grows to cover buckets it cuts).
    fn zero_count_for_larger_threshold(&self, mut threshold: f64) -> (f64, f64) {
        if threshold == self.zero_threshold {
            return (self.zero_count, threshold);
        }
        'outer: loop {
            let mut zc = self.zero_count;
            for &(idx, c) in &self.positive {
                let (l, u) = self.bucket_bounds(idx);
                if l >= threshold {
                    break;
                }
                zc += c;
                if u > threshold {
                    if c != 0.0 {
                        threshold = u;
                    }
                    break;
                }
            }
            for &(idx, c) in &self.negative {
                let (l, u) = self.bucket_bounds(idx);
                let (nl, nu) = (-u, -l);
                if nu <= -threshold {
                    break;
                }
                zc += c;
                if nl < -threshold {
                    if c != 0.0 {
                        threshold = -nl;
                        continue 'outer;
                    }
                    break;
                }
            }
            return (zc, threshold);
        }
    }

    fn trim_buckets_in_zero_bucket(&mut self) {
        let zt = self.zero_threshold;
        let schema = self.schema;
        self.positive
            .retain(|&(idx, _)| exp_bound(idx - 1, schema) >= zt);
        self.negative
            .retain(|&(idx, _)| exp_bound(idx - 1, schema) >= zt);
    }

    /// Widens zero buckets so both histograms share a threshold; returns the other's zero count.
    fn reconcile_zero_buckets(&mut self, other: &FloatHistogram) -> f64 {
        let mut ozc = other.zero_count;
        let mut ozt = other.zero_threshold;
        while ozt != self.zero_threshold {
            if self.zero_threshold > ozt {
                (ozc, ozt) = other.zero_count_for_larger_threshold(self.zero_threshold);
            }
            if ozt > self.zero_threshold {
                let (zc, zt) = self.zero_count_for_larger_threshold(ozt);
                self.zero_count = zc;
                self.zero_threshold = zt;
                self.trim_buckets_in_zero_bucket();
            }
        }
        ozc
    }

    fn adjust_counter_reset(&mut self, other: &FloatHistogram) -> bool {
        use CounterResetHint::*;
        let (a, b) = (self.counter_reset_hint, other.counter_reset_hint);
        if a == b || a == Gauge {
            return false;
        }
        if b == Gauge {
            self.counter_reset_hint = Gauge;
            return false;
        }
        if a == Unknown {
            return false;
        }
        self.counter_reset_hint = Unknown;
        b != Unknown
    }

    /// Adds (or with `sign == -1` subtracts) `other`. Returns (counter reset collision,
    /// custom bounds reconciled).
    fn add_signed(
        &mut self,
        other: &FloatHistogram,
        sign: f64,
    ) -> Result<(bool, bool), IncompatibleSchema> {
        if self.uses_custom_buckets() != other.uses_custom_buckets() {
            return Err(IncompatibleSchema);
        }
        let collision = self.adjust_counter_reset(other);
        let mut reconciled = false;
        if !self.uses_custom_buckets() {
            let ozc = self.reconcile_zero_buckets(other);
            self.zero_count += sign * ozc;
        }
        self.count += sign * other.count;
        self.sum += sign * other.sum;
        if self.uses_custom_buckets() {
            if custom_bounds_match(&self.custom_values, &other.custom_values) {
                self.positive = merge(&self.positive, &other.positive, sign);
            } else {
                reconciled = true;
                let bounds = intersect_bounds(&self.custom_values, &other.custom_values);
                let a = rebucket(&self.positive, &self.custom_values, &bounds);
                let b = rebucket(&other.positive, &other.custom_values, &bounds);
                self.positive = merge(&a, &b, sign);
                self.custom_values = bounds;
            }
            return Ok((collision, reconciled));
        }
        let (mut op, mut on) = (other.positive.clone(), other.negative.clone());
        if other.schema < self.schema {
            self.positive = reduce(&self.positive, self.schema, other.schema);
            self.negative = reduce(&self.negative, self.schema, other.schema);
            self.schema = other.schema;
        } else if other.schema > self.schema {
            op = reduce(&op, other.schema, self.schema);
            on = reduce(&on, other.schema, self.schema);
        }
        let zt = self.zero_threshold;
        let schema = self.schema;
        op.retain(|&(idx, _)| exp_bound(idx, schema) > zt);
        on.retain(|&(idx, _)| exp_bound(idx, schema) > zt);
        self.positive = merge(&self.positive, &op, sign);
        self.negative = merge(&self.negative, &on, sign);
        Ok((collision, reconciled))
    }

    pub fn add(&mut self, other: &FloatHistogram) -> Result<(bool, bool), IncompatibleSchema> {
        self.add_signed(other, 1.0)
    }

    pub fn sub(&mut self, other: &FloatHistogram) -> Result<(bool, bool), IncompatibleSchema> {
        self.add_signed(other, -1.0)
    }

    /// Exact equality of the compacted histograms (bit-wise floats, like Prometheus).
    /// Whether the zero count, count, sum or any bucket is infinite.
    pub fn has_overflow(&self) -> bool {
        self.zero_count.is_infinite()
            || self.count.is_infinite()
            || self.sum.is_infinite()
            || self.positive.iter().any(|b| b.1.is_infinite())
            || self.negative.iter().any(|b| b.1.is_infinite())
    }

    /// Adds `other` like [`FloatHistogram::add`], but with Kahan summation: `comp` collects
    /// the compensation terms (count, sum, zero count and every bucket), laid out like `self`;
    /// it is created on first use. Add it to the result at the end. Returns (counter reset
    /// collision, custom bounds reconciled).
    pub fn kahan_add(
        &mut self,
        other: &FloatHistogram,
        comp: &mut Option<FloatHistogram>,
    ) -> Result<(bool, bool), IncompatibleSchema> {
        if self.uses_custom_buckets() != other.uses_custom_buckets() {
            return Err(IncompatibleSchema);
        }
        let collision = self.adjust_counter_reset(other);
        let c = comp.get_or_insert_with(|| FloatHistogram {
            counter_reset_hint: self.counter_reset_hint,
            schema: self.schema,
            zero_threshold: self.zero_threshold,
            custom_values: self.custom_values.clone(),
            ..Default::default()
        });
        if !self.uses_custom_buckets() {
            let (ozc, oczc) = self.reconcile_zero_buckets_kahan(other, c);
            (self.zero_count, c.zero_count) = kahan_inc(ozc, self.zero_count, c.zero_count);
            (self.zero_count, c.zero_count) = kahan_inc(oczc, self.zero_count, c.zero_count);
        }
        (self.count, c.count) = kahan_inc(other.count, self.count, c.count);
        (self.sum, c.sum) = kahan_inc(other.sum, self.sum, c.sum);
        if self.uses_custom_buckets() {
            let mut op = other.positive.clone();
            let reconciled = !custom_bounds_match(&self.custom_values, &other.custom_values);
            if reconciled {
                let bounds = intersect_bounds(&self.custom_values, &other.custom_values);
                self.positive = rebucket(&self.positive, &self.custom_values, &bounds);
                c.positive = rebucket(&c.positive, &self.custom_values, &bounds);
                op = rebucket(&op, &other.custom_values, &bounds);
                self.custom_values = bounds.clone();
                c.custom_values = bounds;
            }
            kahan_merge(&mut self.positive, &mut c.positive, &op, &[]);
            return Ok((collision, reconciled));
        }
        let (mut op, mut on) = (other.positive.clone(), other.negative.clone());
        let (mut ocp, mut ocn) = (Vec::new(), Vec::new());
        if other.schema < self.schema {
            (self.positive, c.positive) =
                kahan_reduce(&self.positive, &c.positive, self.schema, other.schema);
            (self.negative, c.negative) =
                kahan_reduce(&self.negative, &c.negative, self.schema, other.schema);
            self.schema = other.schema;
            c.schema = other.schema;
        } else if other.schema > self.schema {
            (op, ocp) = kahan_reduce(&op, &[], other.schema, self.schema);
            (on, ocn) = kahan_reduce(&on, &[], other.schema, self.schema);
        }
        // Buckets of `other` inside the (reconciled) zero bucket are in its zero count.
        let zt = self.zero_threshold;
        let schema = self.schema;
        let inside = |b: &(i32, f64)| exp_bound(b.0, schema) <= zt;
        op.retain(|b| !inside(b));
        on.retain(|b| !inside(b));
        ocp.retain(|b| !inside(b));
        ocn.retain(|b| !inside(b));
        kahan_merge(&mut self.positive, &mut c.positive, &op, &ocp);
        kahan_merge(&mut self.negative, &mut c.negative, &on, &ocn);
        Ok((collision, false))
    }

    /// [`FloatHistogram::reconcile_zero_buckets`] for Kahan summation: widening this
    /// histogram's zero bucket also moves the compensation of the merged buckets into the zero
    /// compensation. Returns the other's zero count and its compensation.
    fn reconcile_zero_buckets_kahan(
        &mut self,
        other: &FloatHistogram,
        c: &mut FloatHistogram,
    ) -> (f64, f64) {
        let (mut ozc, mut oczc) = (other.zero_count, 0.0);
        let mut ozt = other.zero_threshold;
        while ozt != self.zero_threshold {
            if self.zero_threshold > ozt {
                (ozc, ozt, oczc) =
                    other.zero_count_for_larger_threshold_kahan(self.zero_threshold, None);
            }
            if ozt > self.zero_threshold {
                let (zc, zt, czc) = self.zero_count_for_larger_threshold_kahan(ozt, Some(c));
                self.zero_count = zc;
                self.zero_threshold = zt;
                c.zero_count = czc;
                c.zero_threshold = zt;
                self.trim_buckets_in_zero_bucket();
                c.trim_buckets_in_zero_bucket();
            }
        }
        (ozc, oczc)
    }

    /// [`FloatHistogram::zero_count_for_larger_threshold`] summed the Kahan way, taking the
    /// compensation terms of `c` along: (zero count, threshold, its compensation).
    fn zero_count_for_larger_threshold_kahan(
        &self,
        mut threshold: f64,
        c: Option<&FloatHistogram>,
    ) -> (f64, f64, f64) {
        let c0 = c.map_or(0.0, |c| c.zero_count);
        if threshold == self.zero_threshold {
            return (self.zero_count, threshold, c0);
        }
        let comp_of = |side: &[(i32, f64)], idx: i32| {
            side.binary_search_by_key(&idx, |b| b.0)
                .map_or(0.0, |i| side[i].1)
        };
        'outer: loop {
            let (mut zc, mut cz) = (self.zero_count, c0);
            for &(idx, n) in &self.positive {
                let (l, u) = self.bucket_bounds(idx);
                if l >= threshold {
                    break;
                }
                (zc, cz) = kahan_inc(n, zc, cz);
                if let Some(c) = c {
                    (zc, cz) = kahan_inc(comp_of(&c.positive, idx), zc, cz);
                }
                if u > threshold {
                    if n != 0.0 {
                        threshold = u;
                    }
                    break;
                }
            }
            for &(idx, n) in &self.negative {
                let (l, u) = self.bucket_bounds(idx);
                let (nl, nu) = (-u, -l);
                if nu <= -threshold {
                    break;
                }
                (zc, cz) = kahan_inc(n, zc, cz);
                if let Some(c) = c {
                    (zc, cz) = kahan_inc(comp_of(&c.negative, idx), zc, cz);
                }
                if nl < -threshold {
                    if n != 0.0 {
                        threshold = -nl;
                        continue 'outer;
                    }
                    break;
                }
            }
            return (zc, threshold, cz);
        }
    }

    pub fn equals(&self, o: &FloatHistogram) -> bool {
        let mut a = self.clone();
        let mut b = o.clone();
        a.compact();
        b.compact();
        a.schema == b.schema
            && a.count.to_bits() == b.count.to_bits()
            && a.sum.to_bits() == b.sum.to_bits()
            && (!a.uses_custom_buckets() || custom_bounds_match(&a.custom_values, &b.custom_values))
            && a.zero_threshold == b.zero_threshold
            && a.zero_count.to_bits() == b.zero_count.to_bits()
            && a.positive == b.positive
            && a.negative == b.negative
    }

    /// Whether going from `prev` to `self` is a counter reset.
    pub fn detect_reset(&self, prev: &FloatHistogram) -> bool {
        match self.counter_reset_hint {
            CounterResetHint::Reset => return true,
            CounterResetHint::NotReset => return false,
            _ => {}
        }
        if self.count < prev.count {
            return true;
        }
        if self.uses_custom_buckets() {
            if !prev.uses_custom_buckets() {
                return true;
            }
            if !custom_bounds_match(&self.custom_values, &prev.custom_values) {
                let bounds = intersect_bounds(&self.custom_values, &prev.custom_values);
                let a = rebucket(&self.positive, &self.custom_values, &bounds);
                let b = rebucket(&prev.positive, &prev.custom_values, &bounds);
                return buckets_reset(&a, &b);
            }
        }
        if self.schema > prev.schema {
            return true;
        }
        if self.zero_threshold < prev.zero_threshold {
            return true;
        }
        let (pzc, nt) = prev.zero_count_for_larger_threshold(self.zero_threshold);
        if nt != self.zero_threshold {
            return true;
        }
        if self.zero_count < pzc {
            return true;
        }
        let (mut pp, mut pn) = (prev.positive.clone(), prev.negative.clone());
        if prev.schema > self.schema {
            pp = reduce(&pp, prev.schema, self.schema);
            pn = reduce(&pn, prev.schema, self.schema);
        }
        let zt = self.zero_threshold;
        let schema = self.schema;
        pp.retain(|&(idx, _)| exp_bound(idx, schema) > zt);
        pn.retain(|&(idx, _)| exp_bound(idx, schema) > zt);
        buckets_reset(&self.positive, &pp) || buckets_reset(&self.negative, &pn)
    }

    /// Copies with the hint reset to unknown when it claims (no) reset.
    pub fn with_unknown_reset_hint(&self) -> FloatHistogram {
        let mut h = self.clone();
        if matches!(
            h.counter_reset_hint,
            CounterResetHint::Reset | CounterResetHint::NotReset
        ) {
            h.counter_reset_hint = CounterResetHint::Unknown;
        }
        h
    }

    /// The φ-quantile estimated from the buckets.
    pub fn quantile(&self, q: f64) -> f64 {
        self.quantile_with_info(q).0
    }

    /// The φ-quantile, plus a note when NaN observations made it NaN (`Some(true)`) or skewed
    /// it (`Some(false)`).
    pub fn quantile_with_info(&self, q: f64) -> (f64, Option<bool>) {
        self.quantile_inner(q)
    }

    fn quantile_inner(&self, q: f64) -> (f64, Option<bool>) {
        if q < 0.0 {
            return (f64::NEG_INFINITY, None);
        }
        if q > 1.0 {
            return (f64::INFINITY, None);
        }
        if self.count == 0.0 || q.is_nan() {
            return (f64::NAN, None);
        }
        let forward = self.sum.is_nan() || q < 0.5;
        let mut buckets = self.all_buckets();
        if !forward {
            buckets.reverse();
        }
        let mut rank = if forward {
            q * self.count
        } else {
            (1.0 - q) * self.count
        };
        let mut count = 0.0;
        let mut bucket = Bucket {
            lower: 0.0,
            upper: 0.0,
            lower_inclusive: false,
            upper_inclusive: false,
            count: 0.0,
        };
        let mut stop = buckets.len();
        for (k, b) in buckets.iter().enumerate() {
            if b.count == 0.0 {
                continue;
            }
            bucket = *b;
            count += b.count;
            if count >= rank {
                stop = k + 1;
                break;
            }
        }
        if !self.uses_custom_buckets() && bucket.lower < 0.0 && bucket.upper > 0.0 {
            if self.negative.is_empty() && !self.positive.is_empty() {
                bucket.lower = 0.0;
            } else if self.positive.is_empty() && !self.negative.is_empty() {
                bucket.upper = 0.0;
            }
        } else if self.uses_custom_buckets() {
            if bucket.lower == f64::NEG_INFINITY {
                if bucket.upper <= 0.0 {
                    return (bucket.upper, None);
                }
                bucket.lower = 0.0;
            } else if bucket.upper == f64::INFINITY {
                return (bucket.lower, None);
            }
        }
        if count > self.count {
            count = self.count;
        }
        if count < rank {
            if self.sum.is_nan() {
                return (f64::NAN, Some(true));
            }
            return (bucket.upper, None);
        }
        if forward {
            rank -= count - bucket.count;
        } else {
            rank = count - rank;
        }
        let mut info = None;
        if self.sum.is_nan() {
            let total: f64 = count
                + buckets[stop.min(buckets.len())..]
                    .iter()
                    .map(|b| b.count)
                    .sum::<f64>();
            if total < self.count {
                info = Some(false);
            }
        }
        let fraction = rank / bucket.count;
        if self.uses_custom_buckets() || (bucket.lower <= 0.0 && bucket.upper >= 0.0) {
            return (
                bucket.lower + (bucket.upper - bucket.lower) * fraction,
                info,
            );
        }
        let ll = bucket.lower.abs().log2();
        let lu = bucket.upper.abs().log2();
        let v = if bucket.lower > 0.0 {
            (ll + (lu - ll) * fraction).exp2()
        } else {
            -(lu + (ll - lu) * (1.0 - fraction)).exp2()
        };
        (v, info)
    }

    /// Estimated fraction of observations between `lower` and `upper`.
    pub fn fraction(&self, lower: f64, upper: f64) -> f64 {
        self.fraction_with_info(lower, upper).0
    }

    /// The fraction, plus whether NaN observations were excluded.
    pub fn fraction_with_info(&self, lower: f64, upper: f64) -> (f64, bool) {
        if self.count == 0.0 || lower.is_nan() || upper.is_nan() {
            return (f64::NAN, false);
        }
        if lower >= upper {
            return (0.0, false);
        }
        let (mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0);
        let (mut lower_set, mut upper_set) = (false, false);
        let mut count = 0.0;
        let all = self.all_buckets();
        let mut stop = all.len();
        for (k, mut b) in all.iter().copied().enumerate() {
            stop = k + 1;
            count += b.count;
            let mut zero = false;
            if b.lower <= 0.0 && b.upper >= 0.0 {
                zero = true;
                if self.negative.is_empty() && !self.positive.is_empty() {
                    b.lower = 0.0;
                } else if self.positive.is_empty() && !self.negative.is_empty() {
                    b.upper = 0.0;
                }
            }
            let linear = self.uses_custom_buckets() || zero;
            let interp = |v: f64, rank: f64| -> f64 {
                if linear && b.lower == f64::NEG_INFINITY {
                    return b.count;
                }
                rank + b.count * b.fraction_below(v, linear)
            };
            if !lower_set && b.lower >= lower {
                lower_rank = rank;
                lower_set = true;
            }
            if !upper_set && b.lower >= upper {
                upper_rank = rank;
                upper_set = true;
            }
            if lower_set && upper_set {
                break;
            }
            if !lower_set && b.lower < lower && b.upper > lower {
                lower_rank = interp(lower, rank);
                lower_set = true;
            }
            if !upper_set && b.lower < upper && b.upper > upper {
                upper_rank = interp(upper, rank);
                upper_set = true;
            }
            if lower_set && upper_set {
                break;
            }
            rank += b.count;
        }
        let mut nans = false;
        if self.sum.is_nan() {
            count += all[stop.min(all.len())..]
                .iter()
                .map(|b| b.count)
                .sum::<f64>();
            nans = count < self.count;
        } else {
            count = self.count;
        }
        if !lower_set || lower_rank > count {
            lower_rank = count;
        }
        if !upper_set || upper_rank > count {
            upper_rank = count;
        }
        ((upper_rank - lower_rank) / self.count, nans)
    }

    /// Estimated variance of the observations.
    pub fn variance(&self) -> f64 {
        let mean = self.sum / self.count;
        let (mut v, mut c) = (0.0, 0.0);
        for b in self.all_buckets() {
            if b.count == 0.0 {
                continue;
            }
            let val = if self.uses_custom_buckets() {
                (b.upper + b.lower) / 2.0
            } else if b.lower <= 0.0 && b.upper >= 0.0 {
                0.0
            } else {
                let m = (b.upper * b.lower).sqrt();
                if b.upper < 0.0 {
                    -m
                } else {
                    m
                }
            };
            let d = val - mean;
            (v, c) = kahan_inc(b.count * d * d, v, c);
        }
        (v + c) / self.count
    }

    /// Trims in place to the observations below `x` (`upper`, the `</` operator) or above
    /// `x` (`>/`). A bucket holding `x` keeps the interpolated share on the surviving side
    /// (linear for custom buckets and the zero bucket, logarithmic for exponential buckets).
    /// If anything was cut, count and sum are re-estimated from what remains, each bucket
    /// counting at the midpoint of its surviving interval, and empty buckets are dropped.
    pub fn trim_buckets(&mut self, x: f64, upper: bool) {
        let linear = self.uses_custom_buckets();
        let (mut count, mut sum) = (0.0, 0.0);
        let mut trimmed = false;
        let (mut has_pos, mut has_neg) = (false, false);
        for positive in [true, false] {
            let n = if positive {
                self.positive.len()
            } else {
                self.negative.len()
            };
            for k in 0..n {
                let (idx, c) = if positive {
                    self.positive[k]
                } else {
                    self.negative[k]
                };
                if c == 0.0 {
                    continue;
                }
                if positive {
                    has_pos = true;
                } else {
                    has_neg = true;
                }
                let (l, u) = self.bucket_bounds(idx);
                let (lo, hi) = if positive { (l, u) } else { (-u, -l) };
                let entirely_kept = if upper { hi <= x } else { lo >= x };
                let straddles = if upper { lo < x } else { hi > x };
                let kept = if entirely_kept {
                    count += c;
                    sum += surviving_midpoint(lo, hi, positive, linear) * c;
                    continue;
                } else if straddles {
                    let b = Bucket {
                        lower: lo,
                        upper: hi,
                        lower_inclusive: false,
                        upper_inclusive: true,
                        count: c,
                    };
                    let (kept, mid) = trim_one_bucket(&b, x, upper, positive, linear);
                    count += kept;
                    sum += mid * kept;
                    kept
                } else {
                    0.0
                };
                if kept != c {
                    trimmed = true;
                    if positive {
                        self.positive[k].1 = kept;
                    } else {
                        self.negative[k].1 = kept;
                    }
                }
            }
        }
        if self.zero_count > 0.0 {
            let (kept, mid) = trim_zero_bucket(
                self.zero_count,
                self.zero_threshold,
                x,
                upper,
                has_neg,
                has_pos,
            );
            if kept != self.zero_count {
                self.zero_count = kept;
                trimmed = true;
            }
            count += kept;
            sum += mid * kept;
        }
        if trimmed {
            self.count = count;
            self.sum = sum;
            self.compact();
        }
    }
}

/// The representative value of the surviving interval `lo..hi` of a bucket: its middle on a
/// linear scale, or the geometric mean for exponential buckets; an infinite end falls back to
/// the finite one (halved if it is a positive upper bound).
fn surviving_midpoint(lo: f64, hi: f64, positive: bool, linear: bool) -> f64 {
    match (lo.is_infinite(), hi.is_infinite()) {
        (true, true) => 0.0,
        (true, false) if hi > 0.0 => hi / 2.0,
        (true, false) => hi,
        (false, true) => lo,
        _ if linear => (lo + hi) / 2.0,
        _ => {
            let g = (lo * hi).abs().sqrt();
            if positive {
                g
            } else {
                -g
            }
        }
    }
}

/// What survives of bucket `b`, which straddles the cut at `x`: (count kept, its midpoint).
fn trim_one_bucket(b: &Bucket, x: f64, upper: bool, positive: bool, linear: bool) -> (f64, f64) {
    if b.lower == f64::NEG_INFINITY || b.upper == f64::INFINITY {
        return trim_unbounded_bucket(b, x, upper);
    }
    let below = if x <= b.lower {
        0.0
    } else if x >= b.upper {
        b.count
    } else {
        b.count * b.fraction_below(x, linear)
    };
    if upper {
        (below, surviving_midpoint(b.lower, x, positive, linear))
    } else {
        (
            b.count - below,
            surviving_midpoint(x, b.upper, positive, linear),
        )
    }
}

/// Trim of a custom bucket with an infinite bound. Where the observations' spread is unknown
/// the whole bucket goes, except that a `(-Inf, u]` bucket with `u > 0` is taken to start at 0.
fn trim_unbounded_bucket(b: &Bucket, x: f64, upper: bool) -> (f64, f64) {
    let finite_or_zero = |v: f64| if v.is_infinite() { 0.0 } else { v };
    if b.lower == f64::NEG_INFINITY {
        let finite_upper = b.upper.is_finite();
        if upper {
            if x >= b.upper {
                (b.count, 0.0)
            } else if x > 0.0 && b.upper > 0.0 && finite_upper {
                (b.count * x / b.upper, x / 2.0)
            } else if b.upper <= 0.0 {
                (b.count, x)
            } else {
                (0.0, finite_or_zero(b.upper))
            }
        } else if x <= b.lower {
            (b.count, 0.0)
        } else if x >= 0.0 && b.upper > x && finite_upper {
            (b.count * (1.0 - x / b.upper), (x + b.upper) / 2.0)
        } else {
            (0.0, finite_or_zero(b.upper))
        }
    } else if !upper && x >= b.lower {
        (b.count, x)
    } else {
        (0.0, finite_or_zero(b.lower))
    }
}

/// Trim of the zero bucket `[-threshold, threshold]`, linearly interpolated. With buckets on
/// one side only, the zero bucket is taken to hold observations of that sign only.
fn trim_zero_bucket(
    zero_count: f64,
    threshold: f64,
    x: f64,
    upper: bool,
    has_neg: bool,
    has_pos: bool,
) -> (f64, f64) {
    let mut lo = -threshold;
    let mut hi = threshold;
    if has_neg && !has_pos {
        hi = 0.0;
    }
    if has_pos && !has_neg {
        lo = 0.0;
    }
    if upper {
        if x <= lo {
            (0.0, 0.0)
        } else if x >= hi {
            (zero_count, (lo + hi) / 2.0)
        } else {
            (zero_count * (x - lo) / (hi - lo), (lo + x) / 2.0)
        }
    } else if x <= lo {
        (zero_count, (lo + hi) / 2.0)
    } else if x >= hi {
        (0.0, 0.0)
    } else {
        (zero_count * (hi - x) / (hi - lo), (x + hi) / 2.0)
    }
}

/// Sparse buckets, `(index, count)` sorted by index.
type Buckets = Vec<(i32, f64)>;

/// Adds buckets `b` (with compensation `cb`) to buckets `a` (with compensation `ca`), Kahan
/// style, bucket by bucket. All four are sorted by index; a missing entry counts as 0.
fn kahan_merge(
    a: &mut Vec<(i32, f64)>,
    ca: &mut Vec<(i32, f64)>,
    b: &[(i32, f64)],
    cb: &[(i32, f64)],
) {
    let get =
        |v: &[(i32, f64)], idx: i32| v.binary_search_by_key(&idx, |x| x.0).ok().map(|i| v[i].1);
    let mut idxs: Vec<i32> = a
        .iter()
        .chain(ca.iter())
        .chain(b.iter())
        .chain(cb.iter())
        .map(|x| x.0)
        .collect();
    idxs.sort_unstable();
    idxs.dedup();
    let mut out = Vec::with_capacity(idxs.len());
    let mut out_c = Vec::with_capacity(idxs.len());
    for idx in idxs {
        let (bv, cbv) = (get(b, idx), get(cb, idx).unwrap_or(0.0));
        let (mut v, mut cv) = match get(a, idx) {
            Some(v) => (v, get(ca, idx).unwrap_or(0.0)),
            // A bucket new to `a` is taken over as it is, with its compensation.
            None if get(ca, idx).is_none() => {
                out.push((idx, bv.unwrap_or(0.0)));
                out_c.push((idx, cbv));
                continue;
            }
            None => (0.0, get(ca, idx).unwrap_or(0.0)),
        };
        if let Some(bv) = bv {
            (v, cv) = kahan_inc(bv, v, cv);
        }
        if cbv != 0.0 {
            (v, cv) = kahan_inc(cbv, v, cv);
        }
        out.push((idx, v));
        out_c.push((idx, cv));
    }
    *a = out;
    *ca = out_c;
}

/// Lowers the resolution of buckets `b` (with compensation `cb`) from schema `from` to `to`,
/// merging buckets the Kahan way. Returns the merged buckets and their compensation.
fn kahan_reduce(b: &[(i32, f64)], cb: &[(i32, f64)], from: i32, to: i32) -> (Buckets, Buckets) {
    let mut idxs: Vec<i32> = b.iter().chain(cb.iter()).map(|x| x.0).collect();
    idxs.sort_unstable();
    idxs.dedup();
    let get = |v: &[(i32, f64)], idx: i32| {
        v.binary_search_by_key(&idx, |x| x.0)
            .map_or(0.0, |i| v[i].1)
    };
    let mut out: Vec<(i32, f64)> = Vec::with_capacity(idxs.len());
    let mut out_c: Vec<(i32, f64)> = Vec::with_capacity(idxs.len());
    for idx in idxs {
        let t = ((idx - 1) >> (from - to)) + 1;
        let (v, cv) = (get(b, idx), get(cb, idx));
        match (out.last_mut(), out_c.last_mut()) {
            (Some(last), Some(last_c)) if last.0 == t => {
                (last.1, last_c.1) = kahan_inc(v, last.1, last_c.1);
                (last.1, last_c.1) = kahan_inc(cv, last.1, last_c.1);
            }
            _ => {
                out.push((t, v));
                out_c.push((t, cv));
            }
        }
    }
    (out, out_c)
}

/// A running sum or mean of histograms, with Kahan summation. The mean is the sum divided by
/// the count as long as the sum does not overflow; from then on it is updated incrementally.
#[derive(Clone)]
pub(crate) struct HistogramMean {
    /// The sum, or (once incremental) the mean.
    acc: FloatHistogram,
    comp: Option<FloatHistogram>,
    count: f64,
    incremental: bool,
}

impl HistogramMean {
    pub fn new(h: &FloatHistogram) -> Self {
        HistogramMean {
            acc: h.clone(),
            comp: None,
            count: 1.0,
            incremental: false,
        }
    }

    /// Adds one histogram; returns whether custom bounds were reconciled.
    pub fn add(&mut self, h: &FloatHistogram) -> Result<bool, IncompatibleSchema> {
        self.count += 1.0;
        let n = self.count;
        if !self.incremental {
            let mut sum = self.acc.clone();
            let mut comp = self.comp.clone();
            let (_, reconciled) = sum.kahan_add(h, &mut comp)?;
            if !sum.has_overflow() {
                self.acc = sum;
                self.comp = comp;
                return Ok(reconciled);
            }
            self.incremental = true;
            self.acc.div(n - 1.0);
            if let Some(c) = self.comp.as_mut() {
                c.div(n - 1.0);
            }
        }
        let q = (n - 1.0) / n;
        if let Some(c) = self.comp.as_mut() {
            c.mul(q);
        }
        let mut part = h.clone();
        part.div(n);
        self.acc.mul(q);
        let (_, reconciled) = self.acc.kahan_add(&part, &mut self.comp)?;
        Ok(reconciled)
    }

    /// The mean (not compacted).
    pub fn mean(mut self) -> FloatHistogram {
        if !self.incremental {
            self.acc.div(self.count);
            if let Some(c) = self.comp.as_mut() {
                c.div(self.count);
            }
        }
        if let Some(c) = &self.comp {
            let _ = self.acc.add(c);
        }
        self.acc
    }
}

/// Finishes a Kahan sum: adds the compensation to it.
pub(crate) fn kahan_finish(sum: &mut FloatHistogram, comp: Option<FloatHistogram>) {
    if let Some(c) = comp {
        let _ = sum.add(&c);
    }
}

fn custom_bounds_match(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

fn intersect_bounds(a: &[f64], b: &[f64]) -> Vec<f64> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() && j < b.len() {
        if a[i] == b[j] {
            out.push(a[i]);
            i += 1;
            j += 1;
        } else if a[i] < b[j] {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// Maps custom buckets onto coarser `target` bounds (each bucket goes to the target bucket
/// containing its upper bound).
fn rebucket(b: &[(i32, f64)], from: &[f64], target: &[f64]) -> Vec<(i32, f64)> {
    let mut out: Vec<(i32, f64)> = Vec::new();
    for &(idx, c) in b {
        let upper = if (idx as usize) < from.len() {
            from[idx as usize]
        } else {
            f64::INFINITY
        };
        let t = target.partition_point(|x| *x < upper) as i32;
        match out.iter_mut().find(|x| x.0 == t) {
            Some(x) => x.1 += c,
            None => out.push((t, c)),
        }
    }
    out.sort_by_key(|x| x.0);
    out
}

fn buckets_reset(curr: &[(i32, f64)], prev: &[(i32, f64)]) -> bool {
    for &(idx, pc) in prev {
        let cc = curr.iter().find(|x| x.0 == idx).map(|x| x.1).unwrap_or(0.0);
        if cc < pc {
            return true;
        }
    }
    false
}

/// Formats like Prometheus' `FloatHistogram.String()`.
impl fmt::Display for FloatHistogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{count:{}, sum:{}", go_g(self.count), go_g(self.sum))?;
        for b in self.all_buckets() {
            if b.count != 0.0 {
                write!(f, ", {b}")?;
            }
        }
        f.write_str("}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(schema: i32, count: f64, sum: f64, positive: Vec<(i32, f64)>) -> FloatHistogram {
        FloatHistogram {
            schema,
            count,
            sum,
            positive,
            ..Default::default()
        }
    }

    #[test]
    fn kahan_add_keeps_small_terms() {
        let parts = [
            h(0, 1.0, 1.0, vec![(1, 1.0)]),
            h(0, 2.0, 1e100, vec![(1, 1e100)]),
            h(1, 3.0, 1.0, vec![(1, 1.0), (2, 1.0)]),
            h(0, 4.0, -1e100, vec![(1, -1e100)]),
        ];
        let mut sum = parts[0].clone();
        let mut comp = None;
        for p in &parts[1..] {
            sum.kahan_add(p, &mut comp).unwrap();
        }
        kahan_finish(&mut sum, comp);
        assert_eq!(sum.schema, 0);
        assert_eq!(sum.count, 10.0);
        assert_eq!(sum.sum, 2.0);
        assert_eq!(sum.positive, vec![(1, 3.0)]);
    }

    #[test]
    fn mean_switches_to_incremental_on_overflow() {
        let mut m = HistogramMean::new(&h(0, f64::MAX, 1.0, vec![]));
        m.add(&h(0, f64::MAX, 3.0, vec![])).unwrap();
        let mean = m.mean();
        assert_eq!(mean.count, f64::MAX);
        assert_eq!(mean.sum, 2.0);
    }
}
