//! The chunks cache: aligned subranges of chunk segment files (`<ULID>/chunks/NNNNNN`), in
//! memory, bounded in bytes, least recently used out first. It plays the part of Thanos'
//! caching bucket (`--store.caching-bucket.config`, chunks only) with the `IN-MEMORY` backend.
//!
//! A ranged read of a segment is cut into `subrange_size`-aligned subranges keyed by object and
//! subrange index. Cached subranges are served from memory; the missing ones are fetched from
//! the bucket in at most `max_get_range_requests` GETs (adjacent missing subranges first, then
//! runs separated by ever larger gaps, the cached subranges in those gaps fetched again), and
//! cached. Segment files never change once uploaded, so entries need no expiry: the LRU bound
//! alone decides what stays (Thanos' in-memory backend ignores TTLs too).
//!
//! Reads need the object's size (the store knows every segment's from the block's meta or a
//! listing) so that no subrange GET starts past the end; a subrange shorter than
//! `subrange_size` is the object's last one.

use super::lru::Lru;
use std::future::Future;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Thanos' `chunk_subrange_size` default: the estimated largest chunk.
pub const DEFAULT_SUBRANGE_SIZE: u64 = 16_000;
/// Thanos' `max_chunks_get_range_requests` default.
pub const DEFAULT_MAX_GET_RANGE_REQUESTS: usize = 3;
/// The size limit when no config is given. Thanos has no chunks cache by default; here one is
/// on because without it every Series request downloads its chunks again (see
/// docs/components/store.md). Bounded, so the store's memory stays predictable.
pub const DEFAULT_MAX_SIZE_BYTES: u64 = 256 << 20;

/// How the chunks cache behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunksCacheConfig {
    /// Bytes held at most (subrange bytes plus key overhead); 0 disables the cache.
    pub max_size: u64,
    /// A subrange larger than this is not cached (Thanos' in-memory `max_item_size`).
    pub max_item_size: u64,
    pub subrange_size: u64,
    /// GETs per ranged read at most; 0 means no limit.
    pub max_get_range_requests: usize,
}

impl Default for ChunksCacheConfig {
    fn default() -> Self {
        ChunksCacheConfig {
            max_size: DEFAULT_MAX_SIZE_BYTES,
            max_item_size: DEFAULT_MAX_SIZE_BYTES / 2,
            subrange_size: DEFAULT_SUBRANGE_SIZE,
            max_get_range_requests: DEFAULT_MAX_GET_RANGE_REQUESTS,
        }
    }
}

impl ChunksCacheConfig {
    /// No caching: every read goes to the bucket.
    pub fn disabled() -> Self {
        ChunksCacheConfig {
            max_size: 0,
            ..Default::default()
        }
    }
}

/// (object, subrange index). The object name is shared by every subrange of a segment.
type Key = (Arc<str>, u64);

/// Per-entry bookkeeping counted against the size limit besides the bytes themselves.
const ENTRY_OVERHEAD: u64 = 64;

type MetricLabels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> MetricLabels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Thanos' caching bucket metrics (`config="chunks"`, `operation="get_range"`) and its
/// in-memory cache's (`name="caching-bucket"`).
#[derive(Clone, Default)]
struct Metrics {
    requested_bytes: Family<MetricLabels, Counter>,
    fetched_bytes: Family<MetricLabels, Counter>,
    refetched_bytes: Family<MetricLabels, Counter>,
    operation_requests: Family<MetricLabels, Counter>,
    operation_hits: Family<MetricLabels, Counter>,
    requests: Family<MetricLabels, Counter>,
    hits: Family<MetricLabels, Counter>,
    added: Family<MetricLabels, Counter>,
    evicted: Family<MetricLabels, Counter>,
    overflowed: Family<MetricLabels, Counter>,
    items: Family<MetricLabels, Gauge>,
    size_bytes: Family<MetricLabels, Gauge>,
    max_size_bytes: Family<MetricLabels, Gauge>,
    max_item_size_bytes: Family<MetricLabels, Gauge>,
}

const CONFIG: (&str, &str) = ("config", "chunks");
const OPERATION: (&str, &str) = ("operation", "get_range");
const NAME: (&str, &str) = ("name", "caching-bucket");

/// What one ranged read found, for tests and the metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadReport {
    pub cached_bytes: u64,
    pub fetched_bytes: u64,
    pub refetched_bytes: u64,
    pub requests: usize,
}

/// The cache; shared by every request of a store.
pub struct ChunksCache {
    config: ChunksCacheConfig,
    lru: Mutex<Lru<Key>>,
    metrics: Metrics,
}

impl ChunksCache {
    pub fn new(config: ChunksCacheConfig) -> ChunksCache {
        let config = ChunksCacheConfig {
            subrange_size: config.subrange_size.max(1),
            max_item_size: config.max_item_size.min(config.max_size),
            ..config
        };
        let metrics = Metrics::default();
        let name = labels(&[NAME]);
        metrics
            .max_size_bytes
            .get_or_create(&name)
            .set(config.max_size as i64);
        metrics
            .max_item_size_bytes
            .get_or_create(&name)
            .set(config.max_item_size as i64);
        ChunksCache {
            config,
            lru: Mutex::new(Lru::default()),
            metrics,
        }
    }

    pub fn config(&self) -> &ChunksCacheConfig {
        &self.config
    }

    pub fn enabled(&self) -> bool {
        self.config.max_size > 0
    }

    /// Registers `thanos_store_bucket_cache_*` and `thanos_cache_inmemory_*`.
    pub fn register(&self, registry: &mut Registry) {
        let m = &self.metrics;
        let r = registry.sub_registry_with_prefix("thanos_store_bucket_cache");
        r.register(
            "getrange_requested_bytes",
            "Total number of bytes requested via GetRange",
            m.requested_bytes.clone(),
        );
        r.register(
            "getrange_fetched_bytes",
            "Total number of bytes fetched because of GetRange operation, by origin (cache or bucket)",
            m.fetched_bytes.clone(),
        );
        r.register(
            "getrange_refetched_bytes",
            "Total number of bytes re-fetched from storage because of GetRange operation, despite being in cache already",
            m.refetched_bytes.clone(),
        );
        r.register(
            "operation_requests",
            "Number of requested operations matching given config",
            m.operation_requests.clone(),
        );
        r.register(
            "operation_hits",
            "Number of operations served from cache for given config",
            m.operation_hits.clone(),
        );
        let r = registry.sub_registry_with_prefix("thanos_cache_inmemory");
        r.register(
            "requests",
            "Total number of requests to the inmemory cache",
            m.requests.clone(),
        );
        r.register(
            "hits",
            "Total number of requests to the inmemory cache that were a hit",
            m.hits.clone(),
        );
        r.register(
            "items_added",
            "Total number of items that were added to the inmemory cache",
            m.added.clone(),
        );
        r.register(
            "items_evicted",
            "Total number of items that were evicted from the inmemory cache",
            m.evicted.clone(),
        );
        r.register(
            "items_overflowed",
            "Total number of items that could not be added to the inmemory cache due to being too big",
            m.overflowed.clone(),
        );
        r.register(
            "current_items",
            "Current number of items in the inmemory cache",
            m.items.clone(),
        );
        r.register(
            "current_size_bytes",
            "Current byte size of items in the inmemory cache",
            m.size_bytes.clone(),
        );
        r.register(
            "max_size_bytes",
            "Maximum number of bytes to be held in the inmemory cache",
            m.max_size_bytes.clone(),
        );
        r.register(
            "max_item_size_bytes",
            "Maximum number of bytes for single entry to be held in the inmemory cache",
            m.max_item_size_bytes.clone(),
        );
    }

    /// Bytes held now.
    pub fn size_bytes(&self) -> u64 {
        self.lru.lock().unwrap().cost()
    }

    /// Subranges held now.
    pub fn len(&self) -> usize {
        self.lru.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes `range` of `object` (`size` bytes long when known), from the cache where it has
    /// them and through `fetch` (a ranged GET of the bucket) for the rest. Like a ranged GET,
    /// the answer stops at the object's end.
    pub async fn get_range<F, Fut, E>(
        &self,
        object: &Arc<str>,
        range: Range<u64>,
        size: Option<u64>,
        fetch: F,
    ) -> Result<(Bytes, ReadReport), E>
    where
        F: Fn(Range<u64>) -> Fut,
        Fut: Future<Output = Result<Bytes, E>>,
    {
        // Without the object's size a subrange could start past its end, which a bucket
        // refuses; such reads (and empty ones) go to the bucket as they are.
        let end = size.map_or(range.end, |s| range.end.min(s));
        if !self.enabled() || size.is_none() || range.start >= end {
            let bytes = fetch(range).await?;
            let report = ReadReport {
                fetched_bytes: bytes.len() as u64,
                requests: 1,
                ..Default::default()
            };
            return Ok((bytes, report));
        }
        let start = range.start;
        let s = self.config.subrange_size;
        let first = start / s;
        let last = end.div_ceil(s); // exclusive
        let chunks_config = labels(&[CONFIG]);
        self.metrics
            .requested_bytes
            .get_or_create(&chunks_config)
            .inc_by(end - start);
        self.metrics
            .operation_requests
            .get_or_create(&labels(&[OPERATION, CONFIG]))
            .inc();

        // Look every subrange up under one lock.
        let mut parts: Vec<Option<Bytes>> = Vec::with_capacity((last - first) as usize);
        {
            let mut lru = self.lru.lock().unwrap();
            for i in first..last {
                let hit = lru.get(&(object.clone(), i));
                let short = hit.as_ref().is_some_and(|b| (b.len() as u64) < s);
                parts.push(hit);
                if short {
                    // The object ends in this subrange: nothing after it to look for.
                    break;
                }
            }
        }
        let lookups = parts.len() as u64;
        let found = parts.iter().filter(|p| p.is_some()).count() as u64;
        let mut report = ReadReport {
            cached_bytes: parts.iter().flatten().map(|p| p.len() as u64).sum(),
            ..Default::default()
        };
        let name = labels(&[NAME]);
        self.metrics.requests.get_or_create(&name).inc_by(lookups);
        self.metrics.hits.get_or_create(&name).inc_by(found);

        if found < lookups {
            let missing = missing_runs(&parts, first, self.config.max_get_range_requests);
            let object_end = size.unwrap_or(u64::MAX);
            let fetched = futures::future::try_join_all(missing.iter().map(|run| {
                let bytes = (run.start * s)..(run.end * s).min(object_end);
                fetch(bytes)
            }))
            .await?;
            report.requests = missing.len();
            let mut lru = self.lru.lock().unwrap();
            for (run, bytes) in missing.iter().zip(fetched) {
                for i in run.clone() {
                    let from = ((i - run.start) * s) as usize;
                    if from >= bytes.len() {
                        // Past the object's end.
                        break;
                    }
                    let sub = bytes.slice(from..(from + s as usize).min(bytes.len()));
                    let slot = &mut parts[(i - first) as usize];
                    if slot.is_some() {
                        report.refetched_bytes += sub.len() as u64;
                        continue;
                    }
                    report.fetched_bytes += sub.len() as u64;
                    // Copied out so that one cached subrange does not keep the whole GET's
                    // buffer alive after its neighbours are evicted.
                    let owned = Bytes::copy_from_slice(&sub);
                    self.put(&mut lru, (object.clone(), i), owned.clone());
                    *slot = Some(sub);
                }
            }
        }

        // Assemble [start, end) from the subranges, stopping at the object's end.
        let mut pieces: Vec<Bytes> = Vec::new();
        for (k, part) in parts.iter().enumerate() {
            // A subrange still missing lies past the object's end.
            let Some(part) = part else { break };
            let base = (first + k as u64) * s;
            let from = start.saturating_sub(base) as usize;
            let to = (end - base).min(part.len() as u64) as usize;
            if from < to {
                pieces.push(part.slice(from..to));
            }
            if (part.len() as u64) < s {
                break;
            }
        }
        self.metrics
            .fetched_bytes
            .get_or_create(&labels(&[("origin", "cache"), CONFIG]))
            .inc_by(report.cached_bytes);
        self.metrics
            .fetched_bytes
            .get_or_create(&labels(&[("origin", "bucket"), CONFIG]))
            .inc_by(report.fetched_bytes);
        self.metrics
            .refetched_bytes
            .get_or_create(&labels(&[("origin", "bucket"), CONFIG]))
            .inc_by(report.refetched_bytes);
        if report.requests == 0 {
            self.metrics
                .operation_hits
                .get_or_create(&labels(&[OPERATION, CONFIG]))
                .inc();
        }
        let bytes = match pieces.len() {
            0 => Bytes::new(),
            1 => pieces.pop().expect("one piece"),
            _ => {
                let mut out = BytesMut::with_capacity(pieces.iter().map(Bytes::len).sum());
                for p in &pieces {
                    out.extend_from_slice(p);
                }
                out.freeze()
            }
        };
        Ok((bytes, report))
    }

    /// Caches `value`, evicting the least recently used subranges to make room.
    fn put(&self, lru: &mut Lru<Key>, key: Key, value: Bytes) {
        let size = value.len() as u64 + ENTRY_OVERHEAD;
        let name = labels(&[NAME]);
        if size > self.config.max_item_size {
            self.metrics.overflowed.get_or_create(&name).inc();
            return;
        }
        let replaced = lru.insert(key, value, size, self.config.max_size, |_, freed| {
            self.metrics.evicted.get_or_create(&name).inc();
            self.adjust(-1, -(freed as i64));
        });
        if let Some(freed) = replaced {
            self.adjust(-1, -(freed as i64));
        }
        self.metrics.added.get_or_create(&name).inc();
        self.adjust(1, size as i64);
    }

    fn adjust(&self, items: i64, bytes: i64) {
        let name = labels(&[NAME]);
        self.metrics.items.get_or_create(&name).inc_by(items);
        self.metrics.size_bytes.get_or_create(&name).inc_by(bytes);
    }
}

/// Runs of subrange indices to fetch for the missing `parts` (indexed from `first`): adjacent
/// missing subranges share a run; while there are more runs than `max_requests` (0: no limit),
/// runs separated by at most `gap` subranges merge, the gap doubling each round.
fn missing_runs(parts: &[Option<Bytes>], first: u64, max_requests: usize) -> Vec<Range<u64>> {
    let mut runs: Vec<Range<u64>> = Vec::new();
    for (k, p) in parts.iter().enumerate() {
        if p.is_some() {
            continue;
        }
        let i = first + k as u64;
        match runs.last_mut() {
            Some(r) if r.end == i => r.end = i + 1,
            _ => runs.push(i..i + 1),
        }
    }
    let mut gap = 1;
    while max_requests > 0 && runs.len() > max_requests {
        let mut merged: Vec<Range<u64>> = Vec::with_capacity(runs.len());
        for r in runs {
            match merged.last_mut() {
                Some(m) if r.start - m.end <= gap => m.end = r.end,
                _ => merged.push(r),
            }
        }
        runs = merged;
        gap *= 2;
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// An object of `len` bytes (byte i is i mod 251) behind a fetch that records its ranges.
    struct Object {
        data: Bytes,
        gets: Mutex<Vec<Range<u64>>>,
        calls: AtomicUsize,
    }

    impl Object {
        fn new(len: usize) -> Object {
            Object {
                data: (0..len).map(|i| (i % 251) as u8).collect::<Vec<_>>().into(),
                gets: Mutex::new(Vec::new()),
                calls: AtomicUsize::new(0),
            }
        }

        async fn fetch(&self, r: Range<u64>) -> Result<Bytes, String> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            self.gets.lock().unwrap().push(r.clone());
            let len = self.data.len() as u64;
            if r.start >= len {
                return Err(format!("range {r:?} not satisfiable"));
            }
            Ok(self.data.slice(r.start as usize..r.end.min(len) as usize))
        }

        fn take_gets(&self) -> Vec<Range<u64>> {
            std::mem::take(&mut *self.gets.lock().unwrap())
        }
    }

    fn cache(max_size: u64, subrange: u64, max_requests: usize) -> ChunksCache {
        ChunksCache::new(ChunksCacheConfig {
            max_size,
            max_item_size: max_size,
            subrange_size: subrange,
            max_get_range_requests: max_requests,
        })
    }

    async fn read(
        c: &ChunksCache,
        o: &Object,
        name: &Arc<str>,
        r: Range<u64>,
        size: Option<u64>,
    ) -> (Bytes, ReadReport) {
        c.get_range(name, r, size, |r| o.fetch(r)).await.unwrap()
    }

    #[tokio::test]
    async fn ranges_across_subrange_boundaries_are_assembled_and_then_served_from_memory() {
        let o = Object::new(1000);
        let c = cache(1 << 20, 100, 3);
        let name: Arc<str> = "b/chunks/000001".into();
        let (b, rep) = read(&c, &o, &name, 150..420, Some(1000)).await;
        assert_eq!(b, o.data.slice(150..420));
        // Whole aligned subranges are fetched, in one GET.
        assert_eq!(o.take_gets(), vec![100..500]);
        assert_eq!(
            (rep.fetched_bytes, rep.cached_bytes, rep.requests),
            (400, 0, 1)
        );
        assert_eq!(c.len(), 4);
        // Any range inside those subranges now costs no GET.
        for r in [150..420, 100..500, 199..201, 333..334] {
            let (b, rep) = read(&c, &o, &name, r.clone(), Some(1000)).await;
            assert_eq!(b, o.data.slice(r.start as usize..r.end as usize));
            assert_eq!(rep.requests, 0);
        }
        assert!(o.take_gets().is_empty());
    }

    #[tokio::test]
    async fn partially_cached_ranges_fetch_only_the_missing_subranges() {
        let o = Object::new(2000);
        let c = cache(1 << 20, 100, 3);
        let name: Arc<str> = "b/chunks/000001".into();
        read(&c, &o, &name, 300..400, Some(2000)).await;
        read(&c, &o, &name, 600..700, Some(2000)).await;
        o.take_gets();
        let (b, rep) = read(&c, &o, &name, 250..950, Some(2000)).await;
        assert_eq!(b, o.data.slice(250..950));
        // Missing: 2, 4-5, 7-9 -> three GETs, the cached 3 and 6 not fetched again.
        let mut gets = o.take_gets();
        gets.sort_by_key(|r| r.start);
        assert_eq!(gets, vec![200..300, 400..600, 700..1000]);
        assert_eq!(rep.fetched_bytes, 600);
        assert_eq!(rep.cached_bytes, 200);
        assert_eq!(rep.refetched_bytes, 0);
    }

    #[tokio::test]
    async fn missing_runs_merge_down_to_the_request_limit() {
        let o = Object::new(2000);
        let c = cache(1 << 20, 100, 2);
        let name: Arc<str> = "x/chunks/000001".into();
        for r in [100..200, 300..400, 500..600] {
            read(&c, &o, &name, r, Some(2000)).await;
        }
        o.take_gets();
        // Missing 0, 2, 4, 6: four runs; the first merge (gaps of one subrange) joins them
        // all, the cached 1, 3 and 5 fetched again.
        let (b, rep) = read(&c, &o, &name, 0..700, Some(2000)).await;
        assert_eq!(b, o.data.slice(0..700));
        assert_eq!(o.take_gets(), vec![0..700]);
        assert_eq!(rep.requests, 1);
        assert_eq!(rep.fetched_bytes, 400);
        assert_eq!(rep.refetched_bytes, 300);
        // No limit: one GET per run.
        let runs = missing_runs(&[None, Some(Bytes::new()), None, None], 10, 0);
        assert_eq!(runs, vec![10..11, 12..14]);
        let runs = missing_runs(&[None, Some(Bytes::new()), None, Some(Bytes::new())], 0, 1);
        assert_eq!(runs, vec![0..3]);
    }

    #[tokio::test]
    async fn the_object_end_is_respected() {
        let o = Object::new(950);
        let name: Arc<str> = "b/chunks/000002".into();
        let c = cache(1 << 20, 100, 3);
        let (b, _) = read(&c, &o, &name, 880..1200, Some(950)).await;
        assert_eq!(b, o.data.slice(880..950));
        assert_eq!(o.take_gets(), vec![800..950]);
        // Asking again past the end: served by the short last subrange alone.
        let (b, rep) = read(&c, &o, &name, 900..5000, Some(950)).await;
        assert_eq!(b, o.data.slice(900..950));
        assert_eq!(rep.requests, 0);
        assert!(o.take_gets().is_empty());
        // An unknown size: passed through, nothing cached.
        let c = cache(1 << 20, 100, 3);
        let (b, rep) = read(&c, &o, &name, 880..1200, None).await;
        assert_eq!(b, o.data.slice(880..950));
        assert_eq!((rep.requests, c.len()), (1, 0));
        assert_eq!(o.take_gets(), vec![880..1200]);
    }

    #[tokio::test]
    async fn the_size_holds_and_the_least_recently_used_go_first() {
        let o = Object::new(10_000);
        let name: Arc<str> = "b/chunks/000001".into();
        let size = Some(10_000);
        // Room for three 100-byte subranges with their overhead.
        let c = cache(3 * (100 + ENTRY_OVERHEAD), 100, 3);
        for r in [0..100, 100..200, 200..300] {
            read(&c, &o, &name, r, size).await;
        }
        assert_eq!(c.len(), 3);
        // Use subrange 0 so that 1 is the oldest.
        read(&c, &o, &name, 0..10, size).await;
        read(&c, &o, &name, 300..400, size).await;
        assert_eq!(c.len(), 3);
        assert!(c.size_bytes() <= 3 * (100 + ENTRY_OVERHEAD));
        o.take_gets();
        read(&c, &o, &name, 0..100, size).await;
        read(&c, &o, &name, 200..400, size).await;
        assert!(o.take_gets().is_empty(), "0, 2 and 3 stayed");
        read(&c, &o, &name, 100..200, size).await;
        assert_eq!(o.take_gets(), vec![100..200], "1 was evicted");
        // Many more reads never exceed the bound.
        for k in 0..50u64 {
            read(&c, &o, &name, k * 150..k * 150 + 170, size).await;
            assert!(c.size_bytes() <= 3 * (100 + ENTRY_OVERHEAD));
        }
    }

    #[tokio::test]
    async fn oversized_items_and_a_disabled_cache_pass_reads_through() {
        let o = Object::new(1000);
        let name: Arc<str> = "b/chunks/000001".into();
        let c = ChunksCache::new(ChunksCacheConfig::disabled());
        let (b, rep) = read(&c, &o, &name, 10..20, Some(1000)).await;
        assert_eq!(b, o.data.slice(10..20));
        assert_eq!(o.take_gets(), vec![10..20]);
        assert_eq!(rep.requests, 1);
        assert!(c.is_empty());
        let c = ChunksCache::new(ChunksCacheConfig {
            max_size: 1 << 20,
            max_item_size: 50,
            subrange_size: 100,
            max_get_range_requests: 3,
        });
        let (b, _) = read(&c, &o, &name, 10..120, Some(1000)).await;
        assert_eq!(b, o.data.slice(10..120));
        assert!(c.is_empty());
    }

    #[tokio::test]
    async fn objects_do_not_share_subranges_and_errors_pass_through() {
        let a = Object::new(500);
        let b = Object::new(300);
        let c = cache(1 << 20, 100, 3);
        let na: Arc<str> = "a/chunks/000001".into();
        let nb: Arc<str> = "b/chunks/000001".into();
        read(&c, &a, &na, 0..300, Some(500)).await;
        let (got, rep) = read(&c, &b, &nb, 0..300, Some(300)).await;
        assert_eq!(got, b.data.slice(0..300));
        assert_eq!(rep.requests, 1);
        let e = c
            .get_range(&nb, 400..500, Some(300), |r| b.fetch(r))
            .await
            .unwrap_err();
        assert!(e.contains("not satisfiable"), "{e}");
    }
}
