//! Replica de-duplication in the query layer: the merges themselves live in `model::dedup`
//! (shared with the compactor); this module decides when the counter adjustment applies.

pub use model::dedup::{chain_merge, penalty_merge, INITIAL_PENALTY_MS};

/// Whether the function a selector feeds reads counters, so that a replica switch needs the
/// counter adjustment (the functions Thanos checks).
pub fn is_counter_func(func: Option<&str>) -> bool {
    matches!(func, Some("rate" | "increase" | "irate" | "resets"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use promql::Sample;
    use proptest::prelude::*;

    fn samples(points: &[(i64, f64)]) -> Vec<Sample> {
        points.iter().map(|&(t, f)| Sample::float(t, f)).collect()
    }

    fn points(s: &[Sample]) -> Vec<(i64, f64)> {
        s.iter().map(|s| (s.t, s.f)).collect()
    }

    fn merge(replicas: &[Vec<Sample>], counter: bool) -> Vec<(i64, f64)> {
        let refs: Vec<&[Sample]> = replicas.iter().map(|r| r.as_slice()).collect();
        let mut out = Vec::new();
        penalty_merge(&refs, counter, &mut out);
        points(&out)
    }

    #[test]
    fn replicas_with_disjoint_spans_are_joined() {
        // Three copies of a series, each holding another part of its life (how a receiver that
        // was down, or a series re-sharded between endpoints, looks).
        let got = merge(
            &[
                samples(&[(10_000, 1.0), (20_000, 2.0)]),
                samples(&[(60_000, 3.0), (70_000, 4.0)]),
                samples(&[(200_000, 5.0), (210_000, 6.0)]),
            ],
            false,
        );
        assert_eq!(
            got,
            [
                (10_000, 1.0),
                (20_000, 2.0),
                (60_000, 3.0),
                (70_000, 4.0),
                (200_000, 5.0),
                (210_000, 6.0)
            ]
        );
    }

    #[test]
    fn an_identical_copy_adds_nothing() {
        let a = samples(&[(10_000, 1.0), (20_000, 2.0), (60_000, 3.0)]);
        assert_eq!(merge(&[a.clone(), a.clone()], true), points(&a));
    }

    #[test]
    fn offset_scrapes_do_not_interleave() {
        // Two replicas scraping every 15 s at different offsets: the merge settles on one and
        // never doubles the rate.
        let scrapes = |offset: i64, add: f64| -> Vec<Sample> {
            (0..20)
                .map(|i| Sample::float(i * 15_000 + offset, i as f64 + add))
                .collect()
        };
        let a = scrapes(0, 0.0);
        // 3 s apart, within the initial 5 s penalty: a is followed throughout.
        assert_eq!(merge(&[a.clone(), scrapes(3_000, 0.5)], false), points(&a));
        // 7 s apart: b's first sample is past the initial penalty and earlier than a's second,
        // so the merge switches to b once and stays there (a is then penalised 2 * 7 s, then
        // 2 * 15 s, and is always later).
        let b = scrapes(7_000, 0.5);
        let got = merge(&[a.clone(), b.clone()], false);
        assert_eq!(got[0], (0, 0.0));
        assert_eq!(&got[1..], &points(&b)[..]);
    }

    #[test]
    fn a_gap_is_filled_from_the_other_replica_after_the_penalty() {
        // a: every 10 s, missing 30 s..70 s. b: every 10 s, 1 ms later.
        let a: Vec<Sample> = (0..12)
            .filter(|i| !(3..8).contains(i))
            .map(|i| Sample::float(i * 10_000, i as f64))
            .collect();
        let b: Vec<Sample> = (0..12)
            .map(|i| Sample::float(i * 10_000 + 1, 100.0 + i as f64))
            .collect();
        let got = merge(&[a, b], false);
        let ts: Vec<i64> = got.iter().map(|p| p.0).collect();
        // 0, 10 s and 20 s from a. a has nothing at 30 s, and b is penalised up to
        // 20 s + 1 ms + 2 * 10 s = 40.001 s, so b takes over there. From then on a is the one
        // penalised (2 * 10 s past each sample of b) and b, 1 ms ahead of a's grid, keeps winning.
        assert_eq!(
            ts,
            [0, 10_000, 20_000, 40_001, 50_001, 60_001, 70_001, 80_001, 90_001, 100_001, 110_001]
        );
    }

    /// The shape of thanos-io/thanos#2401: replica a is followed, b takes over across a's gap
    /// with a counter value below a's last one, and a takes over again when b ends.
    fn hiccup() -> [Vec<Sample>; 2] {
        [
            samples(&[
                (10_000, 20.0),
                (20_000, 21.0),
                // a's target restarted and lost the increments in between; a gap.
                (50_001, 22.0),
                (60_000, 23.0),
                (70_000, 24.0),
                (80_000, 25.0),
                (90_000, 26.0),
                (100_000, 27.0),
            ]),
            samples(&[
                (10_001, 20.0),
                (45_001, 20.5),
                (55_001, 21.5),
                (65_001, 22.5),
            ]),
        ]
    }

    #[test]
    fn counter_switch_is_adjusted_so_rate_sees_no_reset() {
        // Step by step: a@10 s (b penalised 5 s); a@20 s (b penalised 20 s, so b's next
        // candidate is 45.001 s); a's next is 50.001 s > 45.001 s, so switch to b: b's 20.5 is
        // below the last emitted 21, so b is lifted by 0.5 from now on. b@55.001, b@65.001 (a is
        // penalised 20 s each time, so 60 s and 70 s are skipped); b ends, and a resumes one
        // sample distance (10 s) after it, at 80 s (Thanos keeps the full 20 s penalty and
        // resumes at 90 s, a 25 s hole). Switching back, a's 25 is above 23: no change.
        let got = merge(&hiccup(), true);
        assert_eq!(
            got,
            [
                (10_000, 20.0),
                (20_000, 21.0),
                (45_001, 21.0),
                (55_001, 22.0),
                (65_001, 23.0),
                (80_000, 25.0),
                (90_000, 26.0),
                (100_000, 27.0)
            ]
        );
        for w in got.windows(2) {
            assert!(w[1].1 >= w[0].1, "counter went down: {w:?}");
        }
    }

    #[test]
    fn without_counter_adjustment_values_are_the_replicas_own() {
        let got = merge(&hiccup(), false);
        assert_eq!(
            got,
            [
                (10_000, 20.0),
                (20_000, 21.0),
                (45_001, 20.5),
                (55_001, 21.5),
                (65_001, 22.5),
                (80_000, 25.0),
                (90_000, 26.0),
                (100_000, 27.0)
            ]
        );
    }

    #[test]
    fn where_one_source_ends_the_next_continues_at_the_scrape_interval() {
        // A compacted block without replica labels (every 15 s up to 285 s) next to the
        // replicas' own blocks from 300 s on: no scrape is lost at the boundary.
        let compacted: Vec<Sample> = (0..20)
            .map(|i| Sample::float(i * 15_000, i as f64))
            .collect();
        let replica: Vec<Sample> = (20..40)
            .map(|i| Sample::float(i * 15_000, i as f64))
            .collect();
        let got = merge(&[compacted.clone(), replica.clone(), replica], false);
        let all: Vec<Sample> = (0..40)
            .map(|i| Sample::float(i * 15_000, i as f64))
            .collect();
        assert_eq!(got, points(&all));
    }

    #[test]
    fn counter_adjustment_lasts_for_the_rest_of_the_replica() {
        // b is behind by 3 throughout. After switching to b over a's gap, b's values carry the
        // +3 offset even after switching back and forth.
        let a = samples(&[(0, 10.0), (10_000, 11.0), (100_000, 20.0), (110_000, 21.0)]);
        let b = samples(&[
            (1, 7.0),
            (30_001, 9.0),
            (40_001, 10.0),
            (50_001, 11.0),
            (200_000, 30.0),
        ]);
        let got = merge(&[a, b], true);
        // b joins at 30.001 s with 9 < 11: lifted by 2 to 11. Then 12, 13.
        // a's 100 s is past b's penalty window (50.001 + 1 + 2 * 10 s): a resumes with 20.
        assert_eq!(
            got,
            [
                (0, 10.0),
                (10_000, 11.0),
                (30_001, 11.0),
                (40_001, 12.0),
                (50_001, 13.0),
                (100_000, 20.0),
                (110_000, 21.0),
                (200_000, 32.0)
            ]
        );
    }

    #[test]
    fn stale_markers_pass_unadjusted() {
        let stale = promql::stale_nan();
        let a = samples(&[(0, 10.0), (10_000, 11.0)]);
        // b takes over at 35 s (lifted by 5 to 11), then sends a stale marker.
        let b = samples(&[(1, 5.0), (35_000, 6.0), (45_000, stale)]);
        let refs: Vec<&[Sample]> = vec![&a, &b];
        let mut out = Vec::new();
        penalty_merge(&refs, true, &mut out);
        let last = out.last().unwrap();
        assert_eq!(last.t, 45_000);
        assert!(last.is_stale(), "{:x}", last.f.to_bits());
        assert_eq!(out[2], Sample::float(35_000, 11.0));
    }

    #[test]
    fn three_replicas_each_with_a_hole() {
        // Every replica misses a different minute; the merge has no hole longer than the
        // penalty allows (2 * 15 s) and never goes back in time.
        let make = |hole: std::ops::Range<i64>, offset: i64| -> Vec<Sample> {
            (0..40)
                .filter(|i| !hole.contains(i))
                .map(|i| Sample::float(i * 15_000 + offset, i as f64))
                .collect()
        };
        let got = merge(&[make(4..8, 0), make(12..16, 3), make(20..24, 5)], false);
        for w in got.windows(2) {
            assert!(w[1].0 > w[0].0);
            assert!(w[1].0 - w[0].0 <= 3 * 15_000, "{w:?}");
        }
        assert_eq!(got.first().unwrap().0, 0);
        assert!(got.last().unwrap().0 >= 39 * 15_000);
    }

    #[test]
    fn chain_merge_is_a_union_with_the_first_winning() {
        let a = samples(&[(0, 1.0), (20, 3.0)]);
        let b = samples(&[(0, 9.0), (10, 2.0), (30, 4.0)]);
        let mut out = Vec::new();
        chain_merge(&[&a, &b], &mut out);
        assert_eq!(points(&out), [(0, 1.0), (10, 2.0), (20, 3.0), (30, 4.0)]);
    }

    #[test]
    fn counter_functions() {
        for f in ["rate", "increase", "irate", "resets"] {
            assert!(is_counter_func(Some(f)));
        }
        for f in [None, Some("delta"), Some("sum_over_time")] {
            assert!(!is_counter_func(f));
        }
    }

    fn series_strategy() -> impl Strategy<Value = Vec<Sample>> {
        // Increasing timestamps with gaps of 1 ms .. 40 s, values that may include NaN.
        prop::collection::vec((1i64..40_000, -1e6f64..1e6, 0u8..20), 0..200).prop_map(|steps| {
            let mut t = 1_700_000_000_000i64;
            steps
                .into_iter()
                .map(|(dt, v, nan)| {
                    t += dt;
                    Sample::float(t, if nan == 0 { f64::NAN } else { v })
                })
                .collect()
        })
    }

    fn same_bits(a: &[Sample], b: &[Sample]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| x.t == y.t && x.f.to_bits() == y.f.to_bits())
    }

    proptest! {
        #[test]
        fn identical_replicas_merge_to_one_replica(
            s in series_strategy(),
            copies in 2usize..5,
            counter in any::<bool>(),
        ) {
            let replicas: Vec<&[Sample]> = (0..copies).map(|_| s.as_slice()).collect();
            let mut out = Vec::new();
            penalty_merge(&replicas, counter, &mut out);
            prop_assert!(same_bits(&out, &s));
        }

        #[test]
        fn merged_output_is_strictly_increasing_and_drawn_from_the_replicas(
            a in series_strategy(),
            b in series_strategy(),
            c in series_strategy(),
        ) {
            let replicas: Vec<&[Sample]> = vec![&a, &b, &c];
            let mut out = Vec::new();
            penalty_merge(&replicas, false, &mut out);
            for w in out.windows(2) {
                prop_assert!(w[1].t > w[0].t);
            }
            for s in &out {
                let found = [&a, &b, &c]
                    .iter()
                    .any(|r| r.iter().any(|x| x.t == s.t && x.f.to_bits() == s.f.to_bits()));
                prop_assert!(found);
            }
            // Nothing is lost before the earliest first sample or after the latest last one.
            let first = [&a, &b, &c].iter().filter_map(|r| r.first()).map(|s| s.t).min();
            prop_assert_eq!(out.first().map(|s| s.t), first);
        }
    }
}
