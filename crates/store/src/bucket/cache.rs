//! The index cache: postings lists and series entries of bucket blocks, in memory, bounded in
//! bytes, least recently used out first (Thanos' `IN-MEMORY` index cache).
//!
//! Keys are (block, postings key) and (block, series ref); values are what the bucket returned,
//! so a hit saves exactly one ranged GET's worth of bytes. Metrics carry Thanos' names with
//! `item_type` `Postings` or `Series`.

use super::lru::Lru;
use std::sync::Mutex;

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use ulid::Ulid;

/// Thanos' default `max_size` of the in-memory index cache (250 MiB).
pub const DEFAULT_MAX_SIZE_BYTES: u64 = 250 << 20;

/// What a cache entry is.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub enum CacheKey {
    Postings {
        block: Ulid,
        name: String,
        value: String,
    },
    Series {
        block: Ulid,
        series_ref: u32,
    },
}

impl CacheKey {
    fn item_type(&self) -> &'static str {
        match self {
            CacheKey::Postings { .. } => "Postings",
            CacheKey::Series { .. } => "Series",
        }
    }

    fn size(&self) -> u64 {
        let heap = match self {
            CacheKey::Postings { name, value, .. } => name.len() + value.len(),
            CacheKey::Series { .. } => 0,
        };
        (size_of::<CacheKey>() + heap) as u64
    }
}

type ItemLabels = Vec<(String, String)>;

fn item(kind: &str) -> ItemLabels {
    vec![("item_type".to_string(), kind.to_string())]
}

/// Counters and gauges of the cache, in Thanos' names.
#[derive(Clone, Default)]
struct CacheMetrics {
    requests: Family<ItemLabels, Counter>,
    hits: Family<ItemLabels, Counter>,
    added: Family<ItemLabels, Counter>,
    evicted: Family<ItemLabels, Counter>,
    overflowed: Family<ItemLabels, Counter>,
    items: Family<ItemLabels, Gauge>,
    size_bytes: Family<ItemLabels, Gauge>,
    max_size_bytes: Gauge,
}

/// A bounded in-memory LRU of index data. Shared by every request of a store.
pub struct IndexCache {
    max_bytes: u64,
    /// Thanos' `max_item_size`: a value larger than this is never cached.
    max_item_bytes: u64,
    lru: Mutex<Lru<CacheKey>>,
    metrics: CacheMetrics,
}

impl IndexCache {
    /// A cache of at most `max_bytes` (0 disables it) whose items are at most `max_item_bytes`.
    pub fn new(max_bytes: u64, max_item_bytes: u64) -> IndexCache {
        let metrics = CacheMetrics::default();
        metrics.max_size_bytes.set(max_bytes as i64);
        IndexCache {
            max_bytes,
            max_item_bytes: max_item_bytes.min(max_bytes),
            lru: Mutex::new(Lru::default()),
            metrics,
        }
    }

    /// Registers the cache's metrics (`thanos_store_index_cache_*`).
    pub fn register(&self, registry: &mut Registry) {
        let m = &self.metrics;
        let r = registry.sub_registry_with_prefix("thanos_store_index_cache");
        r.register(
            "requests",
            "Index cache lookups by item type",
            m.requests.clone(),
        );
        r.register("hits", "Index cache hits by item type", m.hits.clone());
        r.register(
            "items_added",
            "Items added to the index cache",
            m.added.clone(),
        );
        r.register(
            "items_evicted",
            "Items evicted from the index cache",
            m.evicted.clone(),
        );
        r.register(
            "items_overflowed",
            "Items not cached because they exceed the item size limit",
            m.overflowed.clone(),
        );
        r.register("items", "Items in the index cache", m.items.clone());
        r.register(
            "items_size_bytes",
            "Bytes of the items in the index cache",
            m.size_bytes.clone(),
        );
        r.register(
            "max_size_bytes",
            "The index cache's size limit in bytes",
            m.max_size_bytes.clone(),
        );
    }

    /// The cached value of `key`, marked as just used.
    pub fn get(&self, key: &CacheKey) -> Option<Bytes> {
        let kind = item(key.item_type());
        self.metrics.requests.get_or_create(&kind).inc();
        let value = self.lru.lock().unwrap().get(key)?;
        self.metrics.hits.get_or_create(&kind).inc();
        Some(value)
    }

    /// Caches `value` under `key`, evicting the least recently used entries to make room.
    pub fn put(&self, key: CacheKey, value: Bytes) {
        let size = key.size() + value.len() as u64;
        let kind = item(key.item_type());
        if self.max_bytes == 0 {
            return;
        }
        if size > self.max_item_bytes {
            self.metrics.overflowed.get_or_create(&kind).inc();
            return;
        }
        let replaced =
            self.lru
                .lock()
                .unwrap()
                .insert(key, value, size, self.max_bytes, |oldest, freed| {
                    let oldest_kind = item(oldest.item_type());
                    self.metrics.evicted.get_or_create(&oldest_kind).inc();
                    self.adjust(&oldest_kind, -1, -(freed as i64));
                });
        if let Some(freed) = replaced {
            self.adjust(&kind, -1, -(freed as i64));
        }
        self.metrics.added.get_or_create(&kind).inc();
        self.adjust(&kind, 1, size as i64);
    }

    /// Drops every entry of `block` (it left the store).
    pub fn forget_block(&self, block: Ulid) {
        let mut lru = self.lru.lock().unwrap();
        let gone: Vec<CacheKey> = lru
            .keys()
            .filter(|k| match **k {
                CacheKey::Postings { block: b, .. } | CacheKey::Series { block: b, .. } => {
                    b == block
                }
            })
            .cloned()
            .collect();
        for k in gone {
            let freed = lru.remove(&k).expect("listed above");
            self.adjust(&item(k.item_type()), -1, -(freed as i64));
        }
    }

    /// Bytes held now.
    pub fn size_bytes(&self) -> u64 {
        self.lru.lock().unwrap().cost()
    }

    fn adjust(&self, kind: &ItemLabels, items: i64, bytes: i64) {
        self.metrics.items.get_or_create(kind).inc_by(items);
        self.metrics.size_bytes.get_or_create(kind).inc_by(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(block: Ulid, r: u32) -> CacheKey {
        CacheKey::Series {
            block,
            series_ref: r,
        }
    }

    #[test]
    fn least_recently_used_goes_first_and_the_size_holds() {
        let block = Ulid::new();
        let item_size = series(block, 0).size() + 100;
        let cache = IndexCache::new(3 * item_size, u64::MAX);
        for r in 0..3 {
            cache.put(series(block, r), Bytes::from(vec![r as u8; 100]));
        }
        // Touch 0, so 1 is now the oldest.
        assert_eq!(cache.get(&series(block, 0)).unwrap()[0], 0);
        cache.put(series(block, 3), Bytes::from(vec![3; 100]));
        assert!(cache.get(&series(block, 1)).is_none(), "1 was evicted");
        for r in [0, 2, 3] {
            assert_eq!(cache.get(&series(block, r)).unwrap()[0], r as u8);
        }
        assert_eq!(cache.size_bytes(), 3 * item_size);
    }

    #[test]
    fn oversized_items_and_a_disabled_cache_store_nothing() {
        let block = Ulid::new();
        let cache = IndexCache::new(1000, 200);
        cache.put(series(block, 1), Bytes::from(vec![0; 500]));
        assert!(cache.get(&series(block, 1)).is_none());
        let off = IndexCache::new(0, 0);
        off.put(series(block, 1), Bytes::from_static(b"x"));
        assert!(off.get(&series(block, 1)).is_none());
        assert_eq!(off.size_bytes(), 0);
    }

    #[test]
    fn replacing_and_forgetting_keep_the_byte_count() {
        let (a, b) = (Ulid::new(), Ulid::new());
        let cache = IndexCache::new(1 << 20, 1 << 20);
        let key = CacheKey::Postings {
            block: a,
            name: "job".into(),
            value: "node".into(),
        };
        cache.put(key.clone(), Bytes::from(vec![1; 10]));
        cache.put(key.clone(), Bytes::from(vec![2; 20]));
        assert_eq!(cache.size_bytes(), key.size() + 20);
        cache.put(series(b, 7), Bytes::from(vec![3; 5]));
        cache.forget_block(a);
        assert!(cache.get(&key).is_none());
        assert_eq!(cache.size_bytes(), series(b, 7).size() + 5);
    }
}
