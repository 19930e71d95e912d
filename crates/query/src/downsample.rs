//! Reading downsampled data (Thanos' `aggrsFromFunc`, `maxResolutionFromSelectHints` and the
//! aggregate iterators of `pkg/query/iter.go` and `pkg/compact/downsample`).
//!
//! A downsampled block stores, per window of 5m or 1h, the count, sum, min, max and a
//! reset-corrected counter of the raw samples. Which of them a select asks the stores for
//! depends on the function its selector feeds ([`Aggregates::for_func`]); the samples handed to
//! the engine are then the chosen aggregate of each window (its value stamped at the window's
//! last millisecond):
//!
//! | function (`SelectHints::func`) | aggregates | samples |
//! |---|---|---|
//! | `min`, `min_*` | min | min |
//! | `max`, `max_*` | max | max |
//! | `count_over_time` | count | the count, raw samples read as 1 (the engine then adds them up: [`Aggregates::CountOverTime`]) |
//! | `count`, other `count_*` | count | count |
//! | `sum_*` (not `sum`) | sum | sum |
//! | `rate`, `increase`, `irate`, `resets`, `xrate`, `xincrease` | counter | the counter, reset corrections applied across chunks ([`CounterResets`]) |
//! | anything else, a plain selector | count, sum | sum / count |
//!
//! Raw chunks of the same series (finer blocks filling a gap) are read as they are.

use proto::thanos;

/// Functions that need two samples in their range; over downsampled data their range must hold
/// at least two windows, so the resolution window is capped at half the range (Thanos'
/// `promqlFuncRequiresTwoSamples`).
const TWO_SAMPLE_FUNCS: [&str; 9] = [
    "rate",
    "irate",
    "increase",
    "delta",
    "idelta",
    "deriv",
    "predict_linear",
    "holt_winters",
    "double_exponential_smoothing",
];

/// The resolution window a select may read at: the query's `max_source_resolution` (ms), at
/// most half the range of a function that needs two samples (Thanos'
/// `maxResolutionFromSelectHints`).
pub fn max_resolution_for(window: i64, range: i64, func: Option<&str>) -> i64 {
    match func {
        Some(f) if range > 0 && TWO_SAMPLE_FUNCS.contains(&f) => window.min(range / 2),
        _ => window,
    }
}

/// What a select reads from downsampled chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aggregates {
    /// Count and sum, read as their average (raw chunks read as they are).
    Average,
    Count,
    /// `count_over_time`: each sample stands for how many raw samples it covers (a window's
    /// count, or 1 for a raw sample), and the engine adds them up
    /// ([`promql::Queryable::samples_are_counts`]). Thanos counts the windows instead, so its
    /// `count_over_time` over 5m data is the number of windows; Cairn answers the raw count.
    CountOverTime,
    Sum,
    Min,
    Max,
    /// The counter, reset corrections applied across the series.
    Counter,
}

impl Aggregates {
    /// The aggregates for the function a selector feeds (Thanos' `aggrsFromFunc`; the engine
    /// names an aggregation by its operator, e.g. `max`).
    pub fn for_func(func: Option<&str>) -> Aggregates {
        let f = func.unwrap_or("");
        if f == "min" || f.starts_with("min_") {
            Aggregates::Min
        } else if f == "max" || f.starts_with("max_") {
            Aggregates::Max
        } else if f == "count_over_time" {
            Aggregates::CountOverTime
        } else if f == "count" || f.starts_with("count_") {
            Aggregates::Count
        } else if f.starts_with("sum_") {
            // `sum` itself wants the samples (their averages), not the sums of the windows.
            Aggregates::Sum
        } else if matches!(
            f,
            "rate" | "increase" | "irate" | "resets" | "xrate" | "xincrease"
        ) {
            Aggregates::Counter
        } else {
            Aggregates::Average
        }
    }

    /// The `SeriesRequest.aggregates` to ask for.
    pub fn request(self) -> Vec<i32> {
        let a: &[thanos::Aggr] = match self {
            Aggregates::Average => &[thanos::Aggr::Count, thanos::Aggr::Sum],
            Aggregates::Count | Aggregates::CountOverTime => &[thanos::Aggr::Count],
            Aggregates::Sum => &[thanos::Aggr::Sum],
            Aggregates::Min => &[thanos::Aggr::Min],
            Aggregates::Max => &[thanos::Aggr::Max],
            Aggregates::Counter => &[thanos::Aggr::Counter],
        };
        a.iter().map(|&a| a as i32).collect()
    }

    /// The one field of a received chunk this reads, if it reads a single one (all but
    /// [`Aggregates::Average`]).
    pub fn field(self, c: &thanos::AggrChunk) -> Option<&thanos::Chunk> {
        match self {
            Aggregates::Average => None,
            Aggregates::Count | Aggregates::CountOverTime => c.count.as_ref(),
            Aggregates::Sum => c.sum.as_ref(),
            Aggregates::Min => c.min.as_ref(),
            Aggregates::Max => c.max.as_ref(),
            Aggregates::Counter => c.counter.as_ref(),
        }
    }
}

/// Rebuilds a monotonic counter from consecutive chunks of counter samples (Thanos'
/// `ApplyCounterResetsSeriesIterator`): the first sample starts the total; each later sample
/// adds its increase over the previous value, or its whole value after a drop (a reset). A
/// sample at the previous timestamp only replaces the previous value: the counter sub-chunk of
/// a downsampled chunk ends with the last raw value at its last window's timestamp, so that a
/// reset between two chunks is seen. Samples going back in time are skipped (overlapping
/// chunks), and NaNs (stale markers among them) dropped.
#[derive(Clone, Copy, Debug, Default)]
pub struct CounterResets {
    started: bool,
    last_t: i64,
    last_v: f64,
    total: f64,
}

impl CounterResets {
    /// Feeds the next sample; returns the sample to emit, if any.
    pub fn push(&mut self, t: i64, v: f64) -> Option<(i64, f64)> {
        if v.is_nan() {
            return None;
        }
        if !self.started {
            self.started = true;
            (self.last_t, self.last_v, self.total) = (t, v, v);
            return Some((t, v));
        }
        if t > self.last_t {
            self.total += if v >= self.last_v { v - self.last_v } else { v };
            (self.last_t, self.last_v) = (t, v);
            return Some((t, self.total));
        }
        if t == self.last_t {
            self.last_v = v;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_follow_the_function() {
        use Aggregates::*;
        let cases: [(Option<&str>, Aggregates); 20] = [
            (None, Average),
            (Some("sum"), Average),
            (Some("avg_over_time"), Average),
            (Some("abs"), Average),
            (Some("quantile_over_time"), Average),
            (Some("min"), Min),
            (Some("min_over_time"), Min),
            (Some("max"), Max),
            (Some("max_over_time"), Max),
            (Some("count"), Count),
            (Some("count_over_time"), CountOverTime),
            (Some("sum_over_time"), Sum),
            (Some("rate"), Counter),
            (Some("increase"), Counter),
            (Some("irate"), Counter),
            (Some("resets"), Counter),
            (Some("xrate"), Counter),
            (Some("xincrease"), Counter),
            (Some("delta"), Average),
            (Some("minimum"), Average),
        ];
        for (f, want) in cases {
            assert_eq!(Aggregates::for_func(f), want, "{f:?}");
        }
        assert_eq!(Average.request(), [1, 2]);
        assert_eq!(Counter.request(), [5]);
        assert_eq!(CountOverTime.request(), [1]);
        assert_eq!(Min.request(), [3]);
    }

    #[test]
    fn two_sample_functions_cap_the_window_at_half_their_range() {
        assert_eq!(max_resolution_for(300_000, 600_000, Some("rate")), 300_000);
        assert_eq!(max_resolution_for(300_000, 300_000, Some("rate")), 150_000);
        assert_eq!(
            max_resolution_for(3_600_000, 3_600_000, Some("deriv")),
            1_800_000
        );
        assert_eq!(
            max_resolution_for(300_000, 60_000, Some("max_over_time")),
            300_000
        );
        // An instant selector under rate (a subquery's inner select) has no range.
        assert_eq!(max_resolution_for(300_000, 0, Some("rate")), 300_000);
        assert_eq!(max_resolution_for(0, 600_000, Some("rate")), 0);
    }

    fn run(samples: &[(i64, f64)]) -> Vec<(i64, f64)> {
        let mut c = CounterResets::default();
        samples.iter().filter_map(|&(t, v)| c.push(t, v)).collect()
    }

    #[test]
    fn counter_resets_between_and_within_chunks() {
        // Thanos' TestApplyCounterResetsIterator ("series with stale marker"): two chunks of
        // counter samples, the first ending with its last raw value repeated at its last
        // timestamp.
        let got = run(&[
            (100, 10.0),
            (200, 20.0),
            (300, 10.0),
            (400, 20.0),
            (400, 5.0),
            (500, 10.0),
            (600, f64::from_bits(model::STALE_NAN_BITS)),
            (700, 30.0),
        ]);
        // 10, +10, reset (+10), +10; then the real last value 5 makes 10 an increase of 5,
        // the stale marker is dropped, 30 is +20.
        assert_eq!(
            got,
            [
                (100, 10.0),
                (200, 20.0),
                (300, 30.0),
                (400, 40.0),
                (500, 45.0),
                (700, 65.0)
            ]
        );
        // Overlap: samples going back in time are skipped.
        assert_eq!(
            run(&[(100, 1.0), (200, 2.0), (150, 9.0), (300, 3.0)]),
            [(100, 1.0), (200, 2.0), (300, 3.0)]
        );
    }
}
