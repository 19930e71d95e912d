//! Exemplars: a fixed-size circular store, as Prometheus' `CircularExemplarStorage`.
//!
//! The store holds at most `capacity` exemplars over all series. Each series' exemplars form a
//! chain through the ring from its oldest to its newest; a new exemplar takes the slot of the
//! oldest one overall, which is always the oldest of its own series, so evicting it only moves
//! that series' start. Memory is bounded by the capacity (and the 128-rune label limit).
//!
//! Rules on add, as Prometheus': an exemplar's labels may hold at most 128 runes (names and
//! values together); the same exemplar as a series' newest is a duplicate (ignored); one older
//! than a series' newest is out of order (refused). Neither fails a write: the caller counts
//! them.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::labels::IdentityHash;
use crate::matcher::Matcher;
use crate::Labels;

/// Longest label set of an exemplar, in runes of names and values together.
pub const MAX_LABEL_RUNES: usize = 128;

/// One exemplar: its own labels (e.g. `trace_id`), value and timestamp.
#[derive(Clone, Debug, PartialEq)]
pub struct Exemplar {
    pub labels: Labels,
    pub value: f64,
    pub ts: i64,
}

/// Why an exemplar was not stored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExemplarError {
    #[error("exemplar storage is disabled (--tsdb.max-exemplars is 0)")]
    Disabled,
    #[error("exemplar labels are {runes} runes long; at most {MAX_LABEL_RUNES} are allowed")]
    LabelsTooLong { runes: usize },
    #[error("duplicate exemplar")]
    Duplicate,
    #[error("out-of-order exemplar: timestamp {ts} is older than the series' newest, {newest}")]
    OutOfOrder { ts: i64, newest: i64 },
}

struct Slot {
    series: u128,
    exemplar: Exemplar,
    /// The series' next newer exemplar.
    next: Option<usize>,
}

struct Chain {
    labels: Labels,
    oldest: usize,
    newest: usize,
}

struct Inner {
    ring: Vec<Option<Slot>>,
    /// Where the next exemplar goes.
    next: usize,
    series: HashMap<u128, Chain, IdentityHash>,
}

/// A series' exemplars as selected.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesExemplars {
    pub series_labels: Labels,
    pub exemplars: Vec<Exemplar>,
}

/// The circular exemplar store of one tenant.
pub struct ExemplarStorage {
    inner: Mutex<Inner>,
}

impl ExemplarStorage {
    /// A store of `capacity` exemplars (0 disables exemplars).
    pub fn new(capacity: usize) -> Self {
        let mut ring = Vec::new();
        ring.resize_with(capacity, || None);
        ExemplarStorage {
            inner: Mutex::new(Inner {
                ring,
                next: 0,
                series: HashMap::default(),
            }),
        }
    }

    pub fn capacity(&self) -> usize {
        self.inner.lock().unwrap().ring.len()
    }

    /// Exemplars held now.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap()
            .ring
            .iter()
            .filter(|s| s.is_some())
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks an exemplar for `series` without storing it.
    pub fn validate(&self, series: &Labels, e: &Exemplar) -> Result<(), ExemplarError> {
        let inner = self.inner.lock().unwrap();
        inner.validate(series.identity_hash(), e)
    }

    /// Stores an exemplar of `series`.
    pub fn add(&self, series: &Labels, e: Exemplar) -> Result<(), ExemplarError> {
        let id = series.identity_hash();
        let mut inner = self.inner.lock().unwrap();
        inner.validate(id, &e)?;
        let at = inner.next;
        inner.next = (at + 1) % inner.ring.len();
        // Evict the slot's exemplar: the oldest of its series.
        if let Some(old) = inner.ring[at].take() {
            match old.next {
                Some(n) => {
                    if let Some(c) = inner.series.get_mut(&old.series) {
                        c.oldest = n;
                    }
                }
                None => {
                    inner.series.remove(&old.series);
                }
            }
        }
        inner.ring[at] = Some(Slot {
            series: id,
            exemplar: e,
            next: None,
        });
        match inner.series.get(&id).map(|c| c.newest) {
            Some(prev) => {
                if let Some(p) = inner.ring[prev].as_mut() {
                    p.next = Some(at);
                }
                inner.series.get_mut(&id).expect("present").newest = at;
            }
            None => {
                inner.series.insert(
                    id,
                    Chain {
                        labels: series.clone(),
                        oldest: at,
                        newest: at,
                    },
                );
            }
        }
        Ok(())
    }

    /// The exemplars within `[start, end]` of the series matching any of the matcher sets
    /// (every series when `sets` is empty), sorted by series labels, oldest exemplar first.
    pub fn select(&self, start: i64, end: i64, sets: &[Vec<Matcher>]) -> Vec<SeriesExemplars> {
        let inner = self.inner.lock().unwrap();
        let mut out = Vec::new();
        for chain in inner.series.values() {
            let matched = sets.is_empty()
                || sets
                    .iter()
                    .any(|ms| ms.iter().all(|m| m.matches_labels(&chain.labels)));
            if !matched {
                continue;
            }
            let mut exemplars = Vec::new();
            let mut at = Some(chain.oldest);
            while let Some(i) = at {
                let Some(slot) = inner.ring[i].as_ref() else {
                    break;
                };
                if slot.exemplar.ts > end {
                    break;
                }
                if slot.exemplar.ts >= start {
                    exemplars.push(slot.exemplar.clone());
                }
                at = slot.next;
            }
            if !exemplars.is_empty() {
                out.push(SeriesExemplars {
                    series_labels: chain.labels.clone(),
                    exemplars,
                });
            }
        }
        out.sort_by(|a, b| a.series_labels.cmp(&b.series_labels));
        out
    }
}

impl Inner {
    fn validate(&self, id: u128, e: &Exemplar) -> Result<(), ExemplarError> {
        if self.ring.is_empty() {
            return Err(ExemplarError::Disabled);
        }
        let runes: usize = e
            .labels
            .iter()
            .map(|l| l.name.chars().count() + l.value.chars().count())
            .sum();
        if runes > MAX_LABEL_RUNES {
            return Err(ExemplarError::LabelsTooLong { runes });
        }
        let Some(chain) = self.series.get(&id) else {
            return Ok(());
        };
        let Some(newest) = self.ring[chain.newest].as_ref() else {
            return Ok(());
        };
        let n = &newest.exemplar;
        if n.ts == e.ts && n.value.to_bits() == e.value.to_bits() && n.labels == e.labels {
            return Err(ExemplarError::Duplicate);
        }
        if e.ts < n.ts || (e.ts == n.ts && e.value < n.value) {
            return Err(ExemplarError::OutOfOrder {
                ts: e.ts,
                newest: n.ts,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels;

    fn ex(trace: &str, value: f64, ts: i64) -> Exemplar {
        Exemplar {
            labels: labels!("trace_id" => trace),
            value,
            ts,
        }
    }

    #[test]
    fn keeps_the_newest_and_follows_prometheus_rules() {
        let s = ExemplarStorage::new(4);
        let a = labels!("__name__" => "req", "job" => "a");
        let b = labels!("__name__" => "req", "job" => "b");
        s.add(&a, ex("1", 1.0, 10)).unwrap();
        s.add(&b, ex("2", 2.0, 11)).unwrap();
        s.add(&a, ex("3", 3.0, 12)).unwrap();
        assert_eq!(s.add(&a, ex("3", 3.0, 12)), Err(ExemplarError::Duplicate));
        assert!(matches!(
            s.add(&a, ex("0", 0.0, 5)),
            Err(ExemplarError::OutOfOrder { ts: 5, newest: 12 })
        ));
        let long = "x".repeat(121);
        assert!(matches!(
            s.add(&a, ex(&long, 1.0, 20)),
            Err(ExemplarError::LabelsTooLong { runes: 129 })
        ));
        // Two more: the ring (4) evicts a's oldest, then b's only exemplar.
        s.add(&a, ex("4", 4.0, 13)).unwrap();
        s.add(&a, ex("5", 5.0, 14)).unwrap();
        assert_eq!(s.len(), 4);
        s.add(&a, ex("6", 6.0, 15)).unwrap();
        let all = s.select(i64::MIN, i64::MAX, &[]);
        assert_eq!(all.len(), 1, "b's only exemplar was evicted");
        let ts: Vec<i64> = all[0].exemplars.iter().map(|e| e.ts).collect();
        assert_eq!(ts, [12, 13, 14, 15]);
        // Selection by matchers and time.
        let m = vec![Matcher::equal("job", "a")];
        let some = s.select(13, 14, &[m]);
        assert_eq!(some[0].exemplars.len(), 2);
        let none = vec![Matcher::equal("job", "b")];
        assert!(s.select(i64::MIN, i64::MAX, &[none]).is_empty());
        assert_eq!(
            ExemplarStorage::new(0).add(&a, ex("1", 1.0, 1)),
            Err(ExemplarError::Disabled)
        );
    }
}
