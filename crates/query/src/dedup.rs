//! Merging the replicas of one series: Thanos' penalty algorithm, and a plain union.
//!
//! With replication (RF=3 receivers, or two Prometheus servers scraping the same targets) a
//! series exists once per replica, the copies differing only in a replica label. After the
//! replica labels are dropped the copies have one identity, and [`penalty_merge`] turns their
//! samples into one stream the way Thanos Query does:
//!
//! - It follows one replica at a time and emits the earliest sample after the last emitted one.
//! - A replica that was not picked must wait: its next sample is only considered from
//!   `last + 1 + penalty`, where the penalty is twice the distance between the last two emitted
//!   samples (5 s before the second sample, when no distance is known yet). Two replicas that
//!   scraped at different offsets would otherwise interleave and double the sample rate; with
//!   the penalty the merge sticks to one replica while it has data and switches to another only
//!   across a gap.
//! - For counter functions (`rate`, `increase`, `irate`, `resets`) a switch must not look like a
//!   counter reset: replicas see slightly different counter values at a given moment, and
//!   switching from one that is ahead to one that is behind would make the value drop. On a
//!   switch, every replica whose next value is below the last emitted value gets a lasting offset
//!   that lifts it to that value (Thanos' "counter error adjustment", thanos-io/thanos#2401).
//!
//! Differences from Thanos, both deliberate:
//! - Thanos nests a two-way iterator (`dedup(dedup(r0, r1), r2)`) whose replica iterators only
//!   move forward, so a replica that was seeked past its penalty window while another was being
//!   followed loses those samples for good if the followed one then ends. Here every replica is
//!   looked at again from the last emitted timestamp at each step (what Thanos' own unit tests
//!   expect, their mock iterators being able to seek backwards), for any number of replicas at
//!   once. With two replicas the outputs are those of Thanos' tests.
//! - No adjustment is made before the first sample is emitted (Thanos compares the first picked
//!   replica against the other's first value then), and stale markers are never offset (adding
//!   to the stale NaN would turn it into an ordinary NaN).
//!
//! [`chain_merge`] is the union used when de-duplication is off and two endpoints still return
//! the very same label set: every timestamp once, the first replica's sample winning.

use promql::Sample;

/// Penalty (ms) against the replicas not picked for the first sample, when no sample distance is
/// known yet: scrape intervals are several seconds, so 5 s skips a second replica's copy of the
/// first scrape (Thanos' `initialPenalty`).
pub const INITIAL_PENALTY_MS: i64 = 5_000;

/// Whether the function a selector feeds reads counters, so that a replica switch needs the
/// counter adjustment (the functions Thanos checks).
pub fn is_counter_func(func: Option<&str>) -> bool {
    matches!(func, Some("rate" | "increase" | "irate" | "resets"))
}

/// Where the merge stands in one replica.
struct Cursor<'a> {
    samples: &'a [Sample],
    /// First sample after the last emitted timestamp.
    floor: usize,
    /// How far past the last emitted timestamp this replica's next sample must be.
    penalty: i64,
    /// Counter offset added to this replica's values.
    adjust: f64,
}

/// Merges the replicas of one series (each sorted by time) with the penalty algorithm into `out`
/// (cleared first). `counter` turns the counter adjustment on.
pub fn penalty_merge(replicas: &[&[Sample]], counter: bool, out: &mut Vec<Sample>) {
    out.clear();
    match replicas {
        [] => return,
        [only] => {
            out.extend_from_slice(only);
            return;
        }
        _ => {}
    }
    out.reserve(replicas.iter().map(|r| r.len()).max().unwrap_or(0));
    let mut cursors: Vec<Cursor<'_>> = replicas
        .iter()
        .map(|samples| Cursor {
            samples,
            floor: 0,
            penalty: 0,
            adjust: 0.0,
        })
        .collect();
    let mut candidates: Vec<Option<usize>> = vec![None; cursors.len()];
    let mut last_t: Option<i64> = None;
    let mut following: Option<usize> = None;
    loop {
        // Each replica's candidate: its first sample at or after last + 1 + penalty.
        let mut best: Option<(usize, i64)> = None;
        for (i, c) in cursors.iter_mut().enumerate() {
            let target = match last_t {
                Some(lt) => {
                    while c.floor < c.samples.len() && c.samples[c.floor].t <= lt {
                        c.floor += 1;
                    }
                    lt.saturating_add(1).saturating_add(c.penalty)
                }
                None => i64::MIN,
            };
            let mut k = c.floor;
            while k < c.samples.len() && c.samples[k].t < target {
                k += 1;
            }
            candidates[i] = (k < c.samples.len()).then_some(k);
            if let Some(k) = candidates[i] {
                let t = c.samples[k].t;
                // Ties go to the lowest replica, as Thanos' `ta <= tb` does.
                if best.is_none_or(|(_, bt)| t < bt) {
                    best = Some((i, t));
                }
            }
        }
        let Some((chosen, t)) = best else { break };

        for (i, c) in cursors.iter_mut().enumerate() {
            c.penalty = if i == chosen {
                0
            } else {
                match last_t {
                    Some(lt) => 2 * (t - lt),
                    None => INITIAL_PENALTY_MS,
                }
            };
        }

        if counter && following.is_some_and(|f| f != chosen) {
            if let Some(last) = out.last().filter(|s| s.h.is_none()).map(|s| s.f) {
                for (c, k) in cursors.iter_mut().zip(&candidates) {
                    let Some(k) = *k else { continue };
                    let s = &c.samples[k];
                    if s.h.is_some() {
                        continue;
                    }
                    let v = s.f + c.adjust;
                    // Counters never go down: this replica missed the end of what the
                    // other one saw (NaN compares false and is never adjusted against).
                    if last > v {
                        c.adjust += last - v;
                    }
                }
            }
        }

        let c = &cursors[chosen];
        let mut sample = c.samples[candidates[chosen].expect("chosen has a candidate")].clone();
        if c.adjust != 0.0 && sample.h.is_none() && !sample.f.is_nan() {
            sample.f += c.adjust;
        }
        out.push(sample);
        following = Some(chosen);
        last_t = Some(t);
    }
}

/// The union of the replicas' samples into `out` (cleared first): every timestamp once, the
/// sample of the first replica that has it.
pub fn chain_merge(replicas: &[&[Sample]], out: &mut Vec<Sample>) {
    out.clear();
    match replicas {
        [] => {}
        [only] => out.extend_from_slice(only),
        _ => {
            for r in replicas {
                out.extend_from_slice(r);
            }
            // Stable: equal timestamps keep the replicas' order, and the first is kept.
            out.sort_by_key(|s| s.t);
            out.dedup_by_key(|s| s.t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        // penalised 20 s each time, so 60 s and 70 s are skipped); b ends, a resumes at the
        // first sample past 65.001 + 20 s: 90 s. Switching back, a's 26 is above 23: no change.
        let got = merge(&hiccup(), true);
        assert_eq!(
            got,
            [
                (10_000, 20.0),
                (20_000, 21.0),
                (45_001, 21.0),
                (55_001, 22.0),
                (65_001, 23.0),
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
                (90_000, 26.0),
                (100_000, 27.0)
            ]
        );
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
