//! A least-recently-used map of byte values bounded by the cost of its entries, shared by the
//! index cache and the chunks cache. Each cache says what an entry costs (its bytes plus its
//! own bookkeeping) and keeps its own metrics from what the map reports back: the cost of a
//! replaced value and each evicted entry.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

use bytes::Bytes;

struct Entry {
    value: Bytes,
    cost: u64,
    /// Position in the recency order.
    tick: u64,
}

pub(crate) struct Lru<K> {
    entries: HashMap<K, Entry>,
    /// Recency order: oldest tick first.
    order: BTreeMap<u64, K>,
    next_tick: u64,
    /// Sum of the entries' costs.
    cost: u64,
}

impl<K> Default for Lru<K> {
    fn default() -> Self {
        Lru {
            entries: HashMap::new(),
            order: BTreeMap::new(),
            next_tick: 0,
            cost: 0,
        }
    }
}

impl<K: Hash + Eq + Clone> Lru<K> {
    /// The value of `key`, marked as just used.
    pub(crate) fn get(&mut self, key: &K) -> Option<Bytes> {
        let tick = self.next_tick;
        let entry = self.entries.get_mut(key)?;
        self.order.remove(&entry.tick);
        entry.tick = tick;
        self.order.insert(tick, key.clone());
        self.next_tick += 1;
        Some(entry.value.clone())
    }

    /// Stores `value` under `key` at `cost`, replacing any value it had (whose cost is
    /// returned), then evicting the least recently used entries until the total fits within
    /// `max` (each reported to `evicted` with its cost).
    pub(crate) fn insert(
        &mut self,
        key: K,
        value: Bytes,
        cost: u64,
        max: u64,
        mut evicted: impl FnMut(&K, u64),
    ) -> Option<u64> {
        let replaced = self.remove(&key);
        while self.cost + cost > max {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            let e = self
                .entries
                .remove(&oldest)
                .expect("ordered keys are cached");
            self.cost -= e.cost;
            evicted(&oldest, e.cost);
        }
        let tick = self.next_tick;
        self.next_tick += 1;
        self.order.insert(tick, key.clone());
        self.entries.insert(key, Entry { value, cost, tick });
        self.cost += cost;
        replaced
    }

    /// Drops `key`; returns the cost it freed.
    pub(crate) fn remove(&mut self, key: &K) -> Option<u64> {
        let e = self.entries.remove(key)?;
        self.order.remove(&e.tick);
        self.cost -= e.cost;
        Some(e.cost)
    }

    /// Every key, in no particular order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &K> {
        self.entries.keys()
    }

    /// The sum of the entries' costs.
    pub(crate) fn cost(&self) -> u64 {
        self.cost
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_go_first_and_costs_add_up() {
        let mut lru: Lru<u32> = Lru::default();
        let mut gone = Vec::new();
        for k in 0..3 {
            lru.insert(k, Bytes::from_static(b"x"), 10, 30, |k, c| {
                gone.push((*k, c))
            });
        }
        assert_eq!((lru.len(), lru.cost()), (3, 30));
        lru.get(&0);
        lru.insert(3, Bytes::from_static(b"y"), 15, 30, |k, c| {
            gone.push((*k, c))
        });
        assert_eq!(gone, [(1, 10), (2, 10)]);
        assert_eq!(lru.insert(0, Bytes::new(), 5, 30, |_, _| {}), Some(10));
        assert_eq!((lru.len(), lru.cost()), (2, 20));
        assert_eq!(lru.remove(&3), Some(15));
        assert_eq!(lru.get(&3), None);
        assert_eq!(lru.cost(), 5);
    }
}
