//! Merging the replicas of one series: Thanos' penalty algorithm, and a plain union.
//!
//! Shared by the query layer (replicas returned by several endpoints) and the compactor
//! (replica blocks de-duplicated into one), over any sample type that implements
//! [`ReplicaSample`].
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
//! Differences from Thanos, all deliberate:
//! - Thanos nests a two-way iterator (`dedup(dedup(r0, r1), r2)`) whose replica iterators only
//!   move forward, so a replica that was seeked past its penalty window while another was being
//!   followed loses those samples for good if the followed one then ends. Here every replica is
//!   looked at again from the last emitted timestamp at each step (what Thanos' own unit tests
//!   expect, their mock iterators being able to seek backwards), for any number of replicas at
//!   once. With two replicas the outputs are those of Thanos' tests.
//! - Once the followed replica has no sample left, the others are penalised one sample
//!   distance instead of two: nothing is left to interleave with, and Thanos' full penalty
//!   drops a scrape or two wherever one source ends and another begins (a compacted block
//!   without replica labels next to the replicas' own blocks, a receiver's head next to the
//!   store's blocks). A replica scraped at another offset still has its near-duplicate skipped.
//! - No adjustment is made before the first sample is emitted (Thanos compares the first picked
//!   replica against the other's first value then), and stale markers are never offset (adding
//!   to the stale NaN would turn it into an ordinary NaN).
//!
//! [`chain_merge`] is the union used when de-duplication is off and two endpoints still return
//! the very same label set: every timestamp once, the first replica's sample winning.

/// Penalty (ms) against the replicas not picked for the first sample, when no sample distance is
/// known yet: scrape intervals are several seconds, so 5 s skips a second replica's copy of the
/// first scrape (Thanos' `initialPenalty`).
pub const INITIAL_PENALTY_MS: i64 = 5_000;

/// A sample the merges can work on: a timestamp, and a float value unless it is a histogram.
pub trait ReplicaSample: Clone {
    /// Milliseconds since the epoch.
    fn t(&self) -> i64;
    /// The float value; `None` for a native histogram (never counter-adjusted).
    fn float(&self) -> Option<f64>;
    /// Adds the counter offset `delta` to a float value.
    fn add(&mut self, delta: f64);
}

/// Where the merge stands in one replica.
struct Cursor<'a, S> {
    samples: &'a [S],
    /// First sample after the last emitted timestamp.
    floor: usize,
    /// How far past the last emitted timestamp this replica's next sample must be.
    penalty: i64,
    /// Counter offset added to this replica's values.
    adjust: f64,
}

/// Merges the replicas of one series (each sorted by time) with the penalty algorithm into `out`
/// (cleared first). `counter` turns the counter adjustment on.
pub fn penalty_merge<S: ReplicaSample>(replicas: &[&[S]], counter: bool, out: &mut Vec<S>) {
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
    let mut cursors: Vec<Cursor<'_, S>> = replicas
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
        // Once the followed replica has no sample left, nothing can interleave with it: the
        // others continue one sample distance after its last sample instead of two (Thanos
        // keeps two, and so drops a sample or two where a compacted block without replica
        // labels meets the replicas' own blocks, or a receiver's head meets the store's blocks).
        // A replica scraped at another offset still has its near-duplicate skipped.
        let ended_penalty = match (following, last_t) {
            (Some(f), Some(lt)) if cursors[f].samples.last().is_none_or(|s| s.t() <= lt) => {
                match out.as_slice() {
                    [.., before, last] => Some(last.t() - before.t() - 1),
                    _ => None,
                }
            }
            _ => None,
        };
        // Each replica's candidate: its first sample at or after last + 1 + penalty.
        let mut best: Option<(usize, i64)> = None;
        for (i, c) in cursors.iter_mut().enumerate() {
            let target = match last_t {
                Some(lt) => {
                    while c.floor < c.samples.len() && c.samples[c.floor].t() <= lt {
                        c.floor += 1;
                    }
                    let penalty = ended_penalty.map_or(c.penalty, |p| p.clamp(0, c.penalty));
                    lt.saturating_add(1).saturating_add(penalty)
                }
                None => i64::MIN,
            };
            let mut k = c.floor;
            while k < c.samples.len() && c.samples[k].t() < target {
                k += 1;
            }
            candidates[i] = (k < c.samples.len()).then_some(k);
            if let Some(k) = candidates[i] {
                let t = c.samples[k].t();
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
            if let Some(last) = out.last().and_then(S::float) {
                for (c, k) in cursors.iter_mut().zip(&candidates) {
                    let Some(k) = *k else { continue };
                    let Some(f) = c.samples[k].float() else {
                        continue;
                    };
                    let v = f + c.adjust;
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
        if c.adjust != 0.0 && sample.float().is_some_and(|f| !f.is_nan()) {
            sample.add(c.adjust);
        }
        out.push(sample);
        following = Some(chosen);
        last_t = Some(t);
    }
}

/// The union of the replicas' samples into `out` (cleared first): every timestamp once, the
/// sample of the first replica that has it.
pub fn chain_merge<S: ReplicaSample>(replicas: &[&[S]], out: &mut Vec<S>) {
    out.clear();
    match replicas {
        [] => {}
        [only] => out.extend_from_slice(only),
        _ => {
            for r in replicas {
                out.extend_from_slice(r);
            }
            // Stable: equal timestamps keep the replicas' order, and the first is kept.
            out.sort_by_key(S::t);
            out.dedup_by_key(|s| s.t());
        }
    }
}
