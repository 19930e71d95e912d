//! The head's inverted index: series by identity hash and by ref, postings, interned symbols.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::{Arc, Mutex};

use super::series::{MemSeries, SeriesSamples};
use super::Head;
use crate::labels::{IdentityHash, StrHash};
use crate::matcher::PostingsIndex;
use crate::{Label, Labels, Result};

/// Series refs by label value, for one label name.
pub(super) type ValuePostings = HashMap<Arc<str>, Vec<u64>, StrHash>;

#[derive(Default)]
pub(super) struct HeadIndex {
    /// Series by the upper 64 bits of their identity hash (one pointer per series: the hot
    /// lookup of every incoming sample touches this map and the series only)...
    pub(super) by_hash: HashMap<u64, Arc<MemSeries>, IdentityHash>,
    /// ...and the rare series whose upper 64 bits are taken by another series.
    pub(super) collisions: HashMap<u64, Vec<Arc<MemSeries>>, IdentityHash>,
    pub(super) by_ref: BTreeMap<u64, Arc<MemSeries>>,
    pub(super) postings: HashMap<Arc<str>, ValuePostings, StrHash>,
    pub(super) symbols: HashSet<Arc<str>, StrHash>,
}

impl HeadIndex {
    /// The series with this identity hash (see [`crate::labels::identity_hash_pairs`]).
    pub(super) fn get(&self, identity: u128) -> Option<&Arc<MemSeries>> {
        let key = (identity >> 64) as u64;
        match self.by_hash.get(&key) {
            Some(s) if s.identity == identity => Some(s),
            Some(_) => self
                .collisions
                .get(&key)
                .and_then(|v| v.iter().find(|s| s.identity == identity)),
            None => None,
        }
    }

    fn intern(&mut self, s: &Arc<str>) -> Arc<str> {
        if let Some(x) = self.symbols.get(s) {
            return x.clone();
        }
        self.symbols.insert(s.clone());
        s.clone()
    }

    /// Adds a series; `logged` says whether the WAL already holds its record (true on replay).
    pub(super) fn insert(
        &mut self,
        series_ref: u64,
        labels: &Labels,
        logged: bool,
    ) -> Arc<MemSeries> {
        let interned: Vec<Label> = labels
            .iter()
            .map(|l| Label {
                name: self.intern(&l.name),
                value: self.intern(&l.value),
            })
            .collect();
        let labels = Labels::from_sorted(interned);
        let identity = labels.identity_hash();
        let series = Arc::new(MemSeries {
            series_ref,
            labels,
            identity,
            samples: Mutex::new(SeriesSamples::default()),
            pending: AtomicU32::new(0),
            logged: AtomicBool::new(logged),
        });
        for l in &series.labels {
            let list = self
                .postings
                .entry(l.name.clone())
                .or_default()
                .entry(l.value.clone())
                .or_default();
            // Refs are handed out in increasing order except on WAL replay of old series.
            match list.last() {
                Some(&last) if last > series_ref => {
                    let i = list.partition_point(|&r| r < series_ref);
                    list.insert(i, series_ref);
                }
                _ => list.push(series_ref),
            }
        }
        let key = (identity >> 64) as u64;
        match self.by_hash.entry(key) {
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(series.clone());
            }
            std::collections::hash_map::Entry::Occupied(_) => {
                self.collisions.entry(key).or_default().push(series.clone())
            }
        }
        self.by_ref.insert(series_ref, series.clone());
        series
    }

    pub(super) fn remove(&mut self, removed: &[Arc<MemSeries>]) {
        let mut touched: HashSet<(Arc<str>, Arc<str>)> = HashSet::new();
        for s in removed {
            self.by_ref.remove(&s.series_ref);
            let key = (s.identity >> 64) as u64;
            if self
                .by_hash
                .get(&key)
                .is_some_and(|x| x.series_ref == s.series_ref)
            {
                self.by_hash.remove(&key);
                // Promote a colliding series into the primary slot.
                if let Some(v) = self.collisions.get_mut(&key) {
                    if let Some(next) = v.pop() {
                        self.by_hash.insert(key, next);
                    }
                    if v.is_empty() {
                        self.collisions.remove(&key);
                    }
                }
            } else if let Some(v) = self.collisions.get_mut(&key) {
                v.retain(|x| x.series_ref != s.series_ref);
                if v.is_empty() {
                    self.collisions.remove(&key);
                }
            }
            for l in &s.labels {
                touched.insert((l.name.clone(), l.value.clone()));
            }
        }
        let gone: HashSet<u64> = removed.iter().map(|s| s.series_ref).collect();
        for (name, value) in touched {
            let Some(values) = self.postings.get_mut(&name) else {
                continue;
            };
            if let Some(list) = values.get_mut(&value) {
                list.retain(|r| !gone.contains(r));
                if list.is_empty() {
                    values.remove(&value);
                }
            }
            if values.is_empty() {
                self.postings.remove(&name);
            }
        }
        // Drop symbols nobody references any more (the index's copy is the last one).
        self.symbols.retain(|s| Arc::strong_count(s) > 1);
    }
}

impl PostingsIndex for Head {
    fn all_postings(&self) -> Result<Vec<u64>> {
        Ok(self.index.read().unwrap().by_ref.keys().copied().collect())
    }

    fn postings(&self, name: &str, value: &str) -> Result<Vec<u64>> {
        Ok(self
            .index
            .read()
            .unwrap()
            .postings
            .get(name)
            .and_then(|values| values.get(value))
            .cloned()
            .unwrap_or_default())
    }

    fn label_values(&self, name: &str) -> Result<Vec<String>> {
        let index = self.index.read().unwrap();
        let mut values: Vec<String> = index
            .postings
            .get(name)
            .map(|values| values.keys().map(|v| v.to_string()).collect())
            .unwrap_or_default();
        values.sort();
        Ok(values)
    }
}

impl Head {
    pub fn label_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .index
            .read()
            .unwrap()
            .postings
            .keys()
            .map(|n| n.to_string())
            .collect();
        names.sort();
        names
    }

    /// Is there a series with exactly these labels?
    pub fn contains(&self, labels: &Labels) -> bool {
        self.index
            .read()
            .unwrap()
            .get(labels.identity_hash())
            .is_some()
    }
}
