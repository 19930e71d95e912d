//! Native histograms as Prometheus stores and sends them (`model/histogram` upstream).
//!
//! Buckets are described by spans over bucket indexes: the first span's `offset` is the index of
//! its first bucket, every later span's `offset` is the gap (number of absent buckets) after the
//! previous span. An integer [`Histogram`] stores each bucket as the delta from the bucket before
//! it (the first from 0); a [`FloatHistogram`] stores absolute counts. For exponential schemas
//! (-4..=8) bucket `i` covers `(base^(i-1), base^i]` with `base = 2^(2^-schema)`; the
//! custom-bucket schema (-53) indexes `custom_values`, the upper bounds, with an implicit `+Inf`.
//!
//! This is the form storage, WAL and wire formats use. PromQL evaluates a sparse float form of
//! its own and converts at the boundary.

use std::fmt;

/// The schema of native histograms with custom buckets (NHCB).
pub const CUSTOM_BUCKETS_SCHEMA: i32 = -53;
/// Lowest and highest exponential schema.
pub const EXPONENTIAL_SCHEMA_MIN: i32 = -4;
pub const EXPONENTIAL_SCHEMA_MAX: i32 = 8;

/// What the writer knows about a counter reset at this sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub enum CounterResetHint {
    /// Nothing known: readers detect resets themselves.
    #[default]
    Unknown,
    /// A reset happened at this sample.
    Reset,
    /// No reset happened at this sample.
    NotReset,
    /// A gauge histogram: resets do not apply.
    Gauge,
}

/// A run of consecutive buckets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub struct Span {
    pub offset: i32,
    pub length: u32,
}

/// An integer native histogram (counts are whole observations).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Histogram {
    pub counter_reset_hint: CounterResetHint,
    pub schema: i32,
    pub zero_threshold: f64,
    pub zero_count: u64,
    pub count: u64,
    pub sum: f64,
    pub positive_spans: Vec<Span>,
    pub negative_spans: Vec<Span>,
    /// Bucket deltas: each bucket's count minus the previous bucket's (the first minus 0).
    pub positive_buckets: Vec<i64>,
    pub negative_buckets: Vec<i64>,
    /// Upper bounds of custom buckets (schema -53 only).
    pub custom_values: Vec<f64>,
}

/// A float native histogram (counts may be fractional, e.g. after `rate`).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct FloatHistogram {
    pub counter_reset_hint: CounterResetHint,
    pub schema: i32,
    pub zero_threshold: f64,
    pub zero_count: f64,
    pub count: f64,
    pub sum: f64,
    pub positive_spans: Vec<Span>,
    pub negative_spans: Vec<Span>,
    /// Absolute bucket counts.
    pub positive_buckets: Vec<f64>,
    pub negative_buckets: Vec<f64>,
    pub custom_values: Vec<f64>,
}

/// Why a histogram is not valid, naming the side and bucket.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum HistogramError {
    #[error("schema {0} is not valid (exponential schemas are -4..=8, custom buckets -53)")]
    InvalidSchema(i32),
    #[error("{side} side: spans need {spans} buckets, have {buckets}")]
    SpansBucketsMismatch {
        side: &'static str,
        spans: usize,
        buckets: usize,
    },
    #[error("{side} side: span {span} has negative offset {offset}")]
    NegativeSpanOffset {
        side: &'static str,
        span: usize,
        offset: i32,
    },
    #[error("{side} side: bucket {bucket} has a negative count ({count})")]
    NegativeBucketCount {
        side: &'static str,
        bucket: usize,
        count: f64,
    },
    #[error("{in_buckets} observations found in buckets, but the count field is {count}")]
    CountMismatch { in_buckets: f64, count: f64 },
    #[error("custom buckets: {0}")]
    CustomBuckets(&'static str),
    #[error("custom bucket bounds given with exponential schema {0}")]
    CustomValuesWithExponentialSchema(i32),
    #[error("the zero bucket has a negative count ({0})")]
    NegativeZeroCount(f64),
    #[error("the count is negative ({0})")]
    NegativeCount(f64),
}

/// True for the schemas Prometheus defines.
pub fn is_valid_schema(schema: i32) -> bool {
    schema == CUSTOM_BUCKETS_SCHEMA
        || (EXPONENTIAL_SCHEMA_MIN..=EXPONENTIAL_SCHEMA_MAX).contains(&schema)
}

/// Number of buckets the spans describe.
pub fn span_buckets(spans: &[Span]) -> usize {
    spans.iter().map(|s| s.length as usize).sum()
}

/// The bucket index of every bucket the spans describe, in order.
pub fn bucket_indexes(spans: &[Span]) -> impl Iterator<Item = i32> + '_ {
    let mut next = 0i32;
    spans.iter().enumerate().flat_map(move |(i, s)| {
        let start = if i == 0 {
            s.offset
        } else {
            next.wrapping_add(s.offset)
        };
        next = start.wrapping_add(s.length as i32);
        (0..s.length as i32).map(move |k| start.wrapping_add(k))
    })
}

/// Spans for a strictly increasing list of bucket indexes (no empty spans, gaps as offsets).
pub fn spans_from_indexes(indexes: &[i32]) -> Vec<Span> {
    let mut spans: Vec<Span> = Vec::new();
    let mut prev: Option<i32> = None;
    for &i in indexes {
        match prev {
            Some(p) if i == p + 1 => spans.last_mut().expect("a span is open").length += 1,
            Some(p) => spans.push(Span {
                offset: i - p - 1,
                length: 1,
            }),
            None => spans.push(Span {
                offset: i,
                length: 1,
            }),
        }
        prev = Some(i);
    }
    spans
}

/// Absolute counts from delta-encoded buckets.
pub fn deltas_to_counts(deltas: &[i64]) -> impl Iterator<Item = i64> + '_ {
    deltas.iter().scan(0i64, |acc, d| {
        *acc = acc.wrapping_add(*d);
        Some(*acc)
    })
}

/// Delta-encoded buckets from absolute counts.
pub fn counts_to_deltas(counts: &[i64]) -> Vec<i64> {
    let mut prev = 0i64;
    counts
        .iter()
        .map(|&c| {
            let d = c.wrapping_sub(prev);
            prev = c;
            d
        })
        .collect()
}

fn check_spans(side: &'static str, spans: &[Span], buckets: usize) -> Result<(), HistogramError> {
    for (n, s) in spans.iter().enumerate() {
        if n > 0 && s.offset < 0 {
            return Err(HistogramError::NegativeSpanOffset {
                side,
                span: n + 1,
                offset: s.offset,
            });
        }
    }
    let need = span_buckets(spans);
    if need != buckets {
        return Err(HistogramError::SpansBucketsMismatch {
            side,
            spans: need,
            buckets,
        });
    }
    Ok(())
}

/// The checks that depend only on the layout, shared by both flavours.
fn check_layout(
    schema: i32,
    zero_threshold: f64,
    zero_count_is_zero: bool,
    positive: (&[Span], usize),
    negative: (&[Span], usize),
    custom_values: &[f64],
) -> Result<(), HistogramError> {
    if schema == CUSTOM_BUCKETS_SCHEMA {
        let mut prev = f64::NEG_INFINITY;
        for (i, &b) in custom_values.iter().enumerate() {
            if b.is_nan() {
                return Err(HistogramError::CustomBuckets("a bound is NaN"));
            }
            if i > 0 && b <= prev {
                return Err(HistogramError::CustomBuckets("bounds are not increasing"));
            }
            prev = b;
        }
        if prev == f64::INFINITY {
            return Err(HistogramError::CustomBuckets(
                "the +Inf bound must not be given explicitly",
            ));
        }
        let mut covered = 0usize;
        for (n, s) in positive.0.iter().enumerate() {
            if s.offset < 0 {
                return Err(HistogramError::NegativeSpanOffset {
                    side: "positive",
                    span: n + 1,
                    offset: s.offset,
                });
            }
            covered += s.offset as usize + s.length as usize;
        }
        check_spans("positive", positive.0, positive.1)?;
        if custom_values.len() + 1 < covered {
            return Err(HistogramError::CustomBuckets(
                "fewer bounds than the spans cover",
            ));
        }
        if !zero_count_is_zero {
            return Err(HistogramError::CustomBuckets("zero count must be 0"));
        }
        if zero_threshold != 0.0 {
            return Err(HistogramError::CustomBuckets("zero threshold must be 0"));
        }
        if !negative.0.is_empty() || negative.1 > 0 {
            return Err(HistogramError::CustomBuckets(
                "negative buckets are not allowed",
            ));
        }
        return Ok(());
    }
    if !is_valid_schema(schema) {
        return Err(HistogramError::InvalidSchema(schema));
    }
    check_spans("positive", positive.0, positive.1)?;
    check_spans("negative", negative.0, negative.1)?;
    if !custom_values.is_empty() {
        return Err(HistogramError::CustomValuesWithExponentialSchema(schema));
    }
    Ok(())
}

impl Histogram {
    /// True if this sample is a staleness marker (sum is the stale NaN).
    pub fn is_stale(&self) -> bool {
        crate::is_stale_nan(self.sum)
    }

    /// Prometheus' validation: a valid schema and layout, no negative bucket, and the buckets
    /// add up to `count` (or to at most `count` when `sum` is NaN).
    pub fn validate(&self) -> Result<(), HistogramError> {
        check_layout(
            self.schema,
            self.zero_threshold,
            self.zero_count == 0,
            (&self.positive_spans, self.positive_buckets.len()),
            (&self.negative_spans, self.negative_buckets.len()),
            &self.custom_values,
        )?;
        let mut in_buckets = self.zero_count as f64;
        for (side, deltas) in [
            ("negative", &self.negative_buckets),
            ("positive", &self.positive_buckets),
        ] {
            for (i, c) in deltas_to_counts(deltas).enumerate() {
                if c < 0 {
                    return Err(HistogramError::NegativeBucketCount {
                        side,
                        bucket: i + 1,
                        count: c as f64,
                    });
                }
                in_buckets += c as f64;
            }
        }
        let count = self.count as f64;
        if (self.sum.is_nan() && in_buckets > count) || (!self.sum.is_nan() && in_buckets != count)
        {
            return Err(HistogramError::CountMismatch { in_buckets, count });
        }
        Ok(())
    }

    /// The same histogram with float counts.
    pub fn to_float(&self) -> FloatHistogram {
        FloatHistogram {
            counter_reset_hint: self.counter_reset_hint,
            schema: self.schema,
            zero_threshold: self.zero_threshold,
            zero_count: self.zero_count as f64,
            count: self.count as f64,
            sum: self.sum,
            positive_spans: self.positive_spans.clone(),
            negative_spans: self.negative_spans.clone(),
            positive_buckets: deltas_to_counts(&self.positive_buckets)
                .map(|c| c as f64)
                .collect(),
            negative_buckets: deltas_to_counts(&self.negative_buckets)
                .map(|c| c as f64)
                .collect(),
            custom_values: self.custom_values.clone(),
        }
    }
}

impl FloatHistogram {
    /// True if this sample is a staleness marker (sum is the stale NaN).
    pub fn is_stale(&self) -> bool {
        crate::is_stale_nan(self.sum)
    }

    /// Prometheus' validation for float histograms (counts may not be negative; the buckets
    /// must add up to `count` unless `sum` is NaN).
    pub fn validate(&self) -> Result<(), HistogramError> {
        check_layout(
            self.schema,
            self.zero_threshold,
            self.zero_count == 0.0,
            (&self.positive_spans, self.positive_buckets.len()),
            (&self.negative_spans, self.negative_buckets.len()),
            &self.custom_values,
        )?;
        if self.schema != CUSTOM_BUCKETS_SCHEMA && self.zero_count < 0.0 {
            return Err(HistogramError::NegativeZeroCount(self.zero_count));
        }
        if self.count < 0.0 {
            return Err(HistogramError::NegativeCount(self.count));
        }
        for (side, counts) in [
            ("negative", &self.negative_buckets),
            ("positive", &self.positive_buckets),
        ] {
            for (i, &c) in counts.iter().enumerate() {
                if c < 0.0 {
                    return Err(HistogramError::NegativeBucketCount {
                        side,
                        bucket: i + 1,
                        count: c,
                    });
                }
            }
        }
        Ok(())
    }
}

/// Buckets as `(index, count)` without the empty ones: two layouts of the same histogram (one
/// with empty buckets spelled out) compare equal.
fn non_empty<T: Copy + PartialEq + Default>(
    spans: &[Span],
    counts: impl Iterator<Item = T>,
) -> Vec<(i32, T)> {
    bucket_indexes(spans)
        .zip(counts)
        .filter(|(_, c)| *c != T::default())
        .collect()
}

impl Histogram {
    /// The same observations as `other`, as Prometheus' `Equals` sees them: the counter-reset
    /// hint is not compared, the sum is compared bit for bit (NaN equals NaN), buckets by index
    /// and count (empty buckets do not matter).
    pub fn same_as(&self, other: &Histogram) -> bool {
        self.schema == other.schema
            && self.zero_threshold.to_bits() == other.zero_threshold.to_bits()
            && self.zero_count == other.zero_count
            && self.count == other.count
            && self.sum.to_bits() == other.sum.to_bits()
            && self.custom_values == other.custom_values
            && non_empty(
                &self.positive_spans,
                deltas_to_counts(&self.positive_buckets),
            ) == non_empty(
                &other.positive_spans,
                deltas_to_counts(&other.positive_buckets),
            )
            && non_empty(
                &self.negative_spans,
                deltas_to_counts(&self.negative_buckets),
            ) == non_empty(
                &other.negative_spans,
                deltas_to_counts(&other.negative_buckets),
            )
    }
}

impl FloatHistogram {
    /// As [`Histogram::same_as`]; counts are compared bit for bit.
    pub fn same_as(&self, other: &FloatHistogram) -> bool {
        let bits = |spans: &[Span], c: &[f64]| -> Vec<(i32, u64)> {
            non_empty(spans, c.iter().copied())
                .into_iter()
                .map(|(i, c)| (i, c.to_bits()))
                .collect()
        };
        self.schema == other.schema
            && self.zero_threshold.to_bits() == other.zero_threshold.to_bits()
            && self.zero_count.to_bits() == other.zero_count.to_bits()
            && self.count.to_bits() == other.count.to_bits()
            && self.sum.to_bits() == other.sum.to_bits()
            && self.custom_values == other.custom_values
            && bits(&self.positive_spans, &self.positive_buckets)
                == bits(&other.positive_spans, &other.positive_buckets)
            && bits(&self.negative_spans, &self.negative_buckets)
                == bits(&other.negative_spans, &other.negative_buckets)
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.offset, self.length)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn spans(pairs: &[(i32, u32)]) -> Vec<Span> {
        pairs
            .iter()
            .map(|&(offset, length)| Span { offset, length })
            .collect()
    }

    #[test]
    fn indexes_follow_offsets_as_gaps() {
        let s = spans(&[(-2, 2), (0, 1), (3, 2)]);
        let idx: Vec<i32> = bucket_indexes(&s).collect();
        assert_eq!(idx, [-2, -1, 0, 4, 5]);
        // Rebuilding merges adjacent spans.
        assert_eq!(spans_from_indexes(&idx), spans(&[(-2, 3), (3, 2)]));
    }

    #[test]
    fn validation_names_what_is_wrong() {
        let mut h = Histogram {
            schema: 0,
            count: 5,
            zero_count: 1,
            sum: 10.0,
            positive_spans: spans(&[(0, 2)]),
            positive_buckets: vec![1, 2], // counts 1, 3
            ..Default::default()
        };
        h.validate().unwrap();
        h.count = 6;
        assert_eq!(
            h.validate(),
            Err(HistogramError::CountMismatch {
                in_buckets: 5.0,
                count: 6.0
            })
        );
        h.sum = f64::NAN; // NaN observations count but sit in no bucket.
        h.validate().unwrap();
        h.positive_buckets = vec![1, -2];
        assert!(matches!(
            h.validate(),
            Err(HistogramError::NegativeBucketCount { bucket: 2, .. })
        ));
        h.positive_buckets = vec![1];
        assert!(h
            .validate()
            .unwrap_err()
            .to_string()
            .contains("spans need 2"));
        h.schema = 9;
        assert_eq!(h.validate(), Err(HistogramError::InvalidSchema(9)));
    }

    #[test]
    fn custom_buckets_validate_bounds() {
        let mut h = FloatHistogram {
            schema: CUSTOM_BUCKETS_SCHEMA,
            count: 3.0,
            sum: 1.0,
            positive_spans: spans(&[(0, 3)]),
            positive_buckets: vec![1.0, 1.0, 1.0],
            custom_values: vec![0.1, 0.5],
            ..Default::default()
        };
        h.validate().unwrap();
        h.custom_values = vec![0.5, 0.1];
        assert!(h.validate().is_err());
        h.custom_values = vec![0.1];
        assert!(h
            .validate()
            .unwrap_err()
            .to_string()
            .contains("fewer bounds"));
    }

    #[test]
    fn negative_float_counts_and_equality_as_prometheus_sees_it() {
        let mut h = FloatHistogram {
            count: -1.0,
            ..Default::default()
        };
        assert_eq!(h.validate(), Err(HistogramError::NegativeCount(-1.0)));
        h.count = 0.0;
        h.zero_count = -0.5;
        assert_eq!(h.validate(), Err(HistogramError::NegativeZeroCount(-0.5)));
        // Equal: the hint differs, an empty bucket is spelled out, the NaN sums match.
        let a = Histogram {
            sum: f64::NAN,
            count: 2,
            positive_spans: spans(&[(0, 1)]),
            positive_buckets: vec![2],
            ..Default::default()
        };
        let mut b = a.clone();
        b.counter_reset_hint = CounterResetHint::NotReset;
        b.positive_spans = spans(&[(0, 2)]);
        b.positive_buckets = vec![2, -2];
        assert!(a.same_as(&b));
        b.count = 3;
        assert!(!a.same_as(&b));
    }

    proptest! {
        #[test]
        fn indexes_and_spans_round_trip(mut idx in prop::collection::btree_set(-200i32..200, 0..40)) {
            let idx: Vec<i32> = std::mem::take(&mut idx).into_iter().collect();
            let s = spans_from_indexes(&idx);
            prop_assert_eq!(bucket_indexes(&s).collect::<Vec<_>>(), idx);
        }

        #[test]
        fn deltas_round_trip(counts in prop::collection::vec(0i64..1_000_000, 0..40)) {
            let d = counts_to_deltas(&counts);
            prop_assert_eq!(deltas_to_counts(&d).collect::<Vec<_>>(), counts);
        }
    }
}
