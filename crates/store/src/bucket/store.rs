//! The bucket store: the StoreAPI over the blocks of a bucket (Thanos' `BucketStore`,
//! `pkg/store/bucket.go`).
//!
//! **The block set.** [`BucketStore::sync`] asks the [`MetaFetcher`] (with the filters the
//! owner chose: time partition, relabel shard, deletion marks, compaction sources) which blocks
//! to serve, builds the index-header of each new block under the data directory (a few ranged
//! reads of its `index`, once per block and kept across restarts), and forgets blocks that
//! left. The index-header is opened lazily by the first request that needs it and closed again
//! after [`BucketStoreConfig::index_header_idle_timeout`] without use
//! ([`BucketStore::close_idle_index_headers`]).
//!
//! **A Series request** runs in two phases:
//! 1. per block (concurrently), postings for the matchers (the keys are chosen from the
//!    index-header's label values, fetched in coalesced ranged GETs, then combined by
//!    [`tsdb::matcher::postings_for_matchers`], the same code the local TSDB uses), then the
//!    series entries of those refs; series without a chunk in the range are dropped. The
//!    touched-series limit is checked here, before any chunk is read.
//! 2. the series of every block, sorted by their full labels (external labels added, replica
//!    labels removed) and merged, are sent in batches: for each batch the chunks are fetched
//!    (the chunks limit is checked on the chunk metas first), turned into frames and sent
//!    before the next batch is read, so memory holds one batch of chunks, never the answer.
//!
//! Postings and series entries go through the [`IndexCache`]. A block that fails (corrupt
//! index, an object deleted under the request) is skipped with a warning naming it, unless the
//! request disabled partial responses; then the request fails with that error.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use objstore::fetcher::{FetchError, MetaFetcher};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use proto::thanos::{series_response, SeriesRequest, SeriesResponse};
use tokio::sync::{mpsc, Semaphore};
use tonic::Status;
use tsdb::index::ChunkMeta;
use tsdb::matcher::{postings_for_matchers, Matcher, PostingsIndex};
use tsdb::meta::BlockMeta;
use tsdb::querier::ChunkData;
use tsdb::Labels;
use ulid::Ulid;

use super::cache::{CacheKey, IndexCache};
use super::chunk_reader::{BlockChunkReader, Segment};
use super::chunks_cache::ChunksCache;
use super::index_reader::BlockIndexReader;
use super::indexheader::{self, IndexHeaderReader, DEFAULT_POSTING_OFFSETS_IN_MEM_SAMPLING};
use super::{estimated_max_chunk_size, estimated_max_series_size, Error, FetchStats};
use crate::matchers::{convert_matchers, matchers_for_tsdb};
use crate::query::{full_labels, Responses, StoreSeries};
use crate::ExternalLabels;

/// The postings key of every series (`index.AllPostingsKey()` in Prometheus).
const ALL_POSTINGS_KEY: (&str, &str) = ("", "");

/// Thanos' `MaxSamplesPerChunk`: the sample limit is enforced as a chunk limit, each chunk
/// counting as this many samples (checked before any chunk is fetched).
pub const MAX_SAMPLES_PER_CHUNK: u64 = 120;

/// Series whose chunks are fetched and sent together (phase 2).
const SERIES_BATCH: usize = 256;

/// One served series of a request: its labels and, per block (an index into the request's
/// blocks), the metas of its chunks there.
type Group = (Labels, Vec<(usize, Vec<ChunkMeta>)>);

/// Series touched by a request so far, against `--store.grpc.touched-series-limit` (0: none).
struct Touched {
    count: AtomicU64,
    limit: u64,
}

impl Touched {
    fn new(limit: u64) -> Touched {
        Touched {
            count: AtomicU64::new(0),
            limit,
        }
    }
}

/// How a bucket store behaves; the defaults are Thanos'.
#[derive(Clone, Debug)]
pub struct BucketStoreConfig {
    /// Where index-headers are kept (`--data-dir`).
    pub data_dir: PathBuf,
    /// Blocks whose index-header is built at once during a sync (`--block-sync-concurrency`).
    pub block_sync_concurrency: usize,
    /// `--store.grpc.series-sample-limit` (0: none).
    pub series_sample_limit: u64,
    /// `--store.grpc.touched-series-limit` (0: none).
    pub touched_series_limit: u64,
    /// `--store.grpc.series-max-concurrency`: Series calls served at once; more wait.
    pub series_max_concurrency: usize,
    /// An open index-header unused this long is closed (Thanos' lazy reader idle timeout).
    pub index_header_idle_timeout: Duration,
    /// Postings-offset table entries kept in memory: every Nth.
    pub postings_offsets_sampling: usize,
}

impl BucketStoreConfig {
    pub fn new(data_dir: PathBuf) -> Self {
        BucketStoreConfig {
            data_dir,
            block_sync_concurrency: 20,
            series_sample_limit: 0,
            touched_series_limit: 0,
            series_max_concurrency: 20,
            index_header_idle_timeout: Duration::from_secs(5 * 60),
            postings_offsets_sampling: DEFAULT_POSTING_OFFSETS_IN_MEM_SAMPLING,
        }
    }
}

type MetricLabels = Vec<(String, String)>;

fn label(name: &str, value: &str) -> MetricLabels {
    vec![(name.to_string(), value.to_string())]
}

/// The store's metrics, in Thanos' names.
#[derive(Clone)]
pub struct BucketStoreMetrics {
    pub blocks_loaded: Gauge,
    pub block_loads: Counter,
    pub block_load_failures: Counter,
    pub block_drops: Counter,
    pub syncs: Counter,
    pub sync_failures: Counter,
    pub series_data_fetched: Family<MetricLabels, Histogram, fn() -> Histogram>,
    pub series_get_all_duration: Histogram,
    pub series_blocks_queried: Histogram,
    pub series_refused: Family<MetricLabels, Counter>,
    pub partial_blocks: Counter,
    pub index_headers_loaded: Gauge,
    pub bucket_operations: Family<MetricLabels, Counter>,
    pub bucket_operation_failures: Family<MetricLabels, Counter>,
}

fn bytes_histogram() -> Histogram {
    // 1 KiB .. 1 GiB
    Histogram::new(exponential_buckets(1024.0, 4.0, 11))
}

impl Default for BucketStoreMetrics {
    fn default() -> Self {
        BucketStoreMetrics {
            blocks_loaded: Gauge::default(),
            block_loads: Counter::default(),
            block_load_failures: Counter::default(),
            block_drops: Counter::default(),
            syncs: Counter::default(),
            sync_failures: Counter::default(),
            series_data_fetched: Family::new_with_constructor(bytes_histogram as fn() -> Histogram),
            series_get_all_duration: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            series_blocks_queried: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            series_refused: Family::default(),
            partial_blocks: Counter::default(),
            index_headers_loaded: Gauge::default(),
            bucket_operations: Family::default(),
            bucket_operation_failures: Family::default(),
        }
    }
}

impl BucketStoreMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("thanos_bucket_store");
        r.register(
            "blocks_loaded",
            "Blocks the store serves",
            self.blocks_loaded.clone(),
        );
        r.register(
            "block_loads",
            "Blocks added to the store",
            self.block_loads.clone(),
        );
        r.register(
            "block_load_failures",
            "Blocks that could not be added (their index-header could not be built or read)",
            self.block_load_failures.clone(),
        );
        r.register(
            "block_drops",
            "Blocks removed from the store",
            self.block_drops.clone(),
        );
        r.register(
            "series_data_fetched",
            "Bytes fetched from the bucket per Series request, by data type",
            self.series_data_fetched.clone(),
        );
        r.register(
            "series_get_all_duration_seconds",
            "Time to resolve every series of a Series request",
            self.series_get_all_duration.clone(),
        );
        r.register(
            "series_blocks_queried",
            "Blocks a Series request read",
            self.series_blocks_queried.clone(),
        );
        r.register(
            "series_refused",
            "Series requests refused, by the limit they exceeded",
            self.series_refused.clone(),
        );
        r.register(
            "partial_blocks",
            "Blocks skipped in an answer because reading them failed",
            self.partial_blocks.clone(),
        );
        r.register(
            "indexheader_lazy_load",
            "Index-headers open now",
            self.index_headers_loaded.clone(),
        );
        let r = registry.sub_registry_with_prefix("thanos_blocks_meta");
        r.register("syncs", "Block set syncs", self.syncs.clone());
        r.register(
            "sync_failures",
            "Failed block set syncs",
            self.sync_failures.clone(),
        );
        let r = registry.sub_registry_with_prefix("thanos_objstore_bucket");
        r.register(
            "operations",
            "Bucket operations by type",
            self.bucket_operations.clone(),
        );
        r.register(
            "operation_failures",
            "Failed bucket operations by type",
            self.bucket_operation_failures.clone(),
        );
    }
}

/// A block's time span (`max_time` exclusive) and resolution, for [`choose_resolutions`].
#[derive(Clone, Copy, Debug)]
struct BlockSpan {
    min_time: i64,
    max_time: i64,
    resolution: i64,
}

/// The blocks (indexes into `blocks`, all of one external label set) that answer
/// `[mint, maxt]` at a resolution window of `window` ms (Thanos' `bucketBlockSet.getFor`): the
/// coarsest resolution at most `window` first; the time its blocks leave uncovered is filled
/// with the next finer resolution, and so on down to raw. So a window of 0 reads raw blocks
/// only, and a time range has data from one resolution at most, never from two at once.
fn choose_resolutions(blocks: &[BlockSpan], mint: i64, maxt: i64, window: i64) -> Vec<usize> {
    let mut levels: Vec<i64> = blocks
        .iter()
        .map(|b| b.resolution)
        .filter(|&r| r <= window)
        .collect();
    levels.sort_unstable_by(|a, b| b.cmp(a));
    levels.dedup();
    let mut order: Vec<usize> = (0..blocks.len()).collect();
    order.sort_by_key(|&i| (blocks[i].min_time, blocks[i].max_time));
    let mut out = Vec::new();
    fill(blocks, &order, &levels, mint, maxt, &mut out);
    out
}

/// [`choose_resolutions`] for `[mint, maxt]` from `levels[0]` down.
fn fill(
    blocks: &[BlockSpan],
    order: &[usize],
    levels: &[i64],
    mint: i64,
    maxt: i64,
    out: &mut Vec<usize>,
) {
    let Some((&level, finer)) = levels.split_first() else {
        return;
    };
    if mint > maxt {
        return;
    }
    let mut start = mint;
    for &i in order {
        let b = blocks[i];
        if b.resolution != level || b.max_time <= mint {
            continue;
        }
        if b.min_time > maxt {
            break;
        }
        fill(blocks, order, finer, start, b.min_time - 1, out);
        out.push(i);
        // Blocks are half-open: the next gap starts at max_time.
        start = start.max(b.max_time);
    }
    fill(blocks, order, finer, start, maxt, out);
}

/// One served block.
struct BucketBlock {
    meta: Arc<BlockMeta>,
    external: ExternalLabels,
    segments: Vec<Segment>,
    /// The open index-header, when open. Opening is serialized per block.
    header: tokio::sync::Mutex<Option<Arc<IndexHeaderReader>>>,
    last_used_ms: AtomicI64,
}

impl BucketBlock {
    fn resolution(&self) -> i64 {
        self.meta
            .thanos
            .as_ref()
            .map_or(0, |t| t.downsample.resolution)
    }

    /// Does the block hold samples in `[mint, maxt]`? (A block's max time is exclusive.)
    fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        self.meta.min_time <= maxt && self.meta.max_time > mint
    }
}

/// What went wrong with a Series or label request, before it becomes a gRPC status.
fn block_status(e: &Error) -> Status {
    match e {
        Error::Corrupt { .. } | Error::Unsupported { .. } => Status::data_loss(e.to_string()),
        Error::Bucket { .. } | Error::Io { .. } => Status::unavailable(e.to_string()),
    }
}

/// The StoreAPI over a bucket's blocks. Cheap to share behind an `Arc`.
pub struct BucketStore {
    bucket: objstore::Bucket,
    fetcher: MetaFetcher,
    config: BucketStoreConfig,
    blocks: RwLock<BTreeMap<Ulid, Arc<BucketBlock>>>,
    cache: Arc<IndexCache>,
    chunks_cache: Option<Arc<ChunksCache>>,
    metrics: BucketStoreMetrics,
    series_gate: Arc<Semaphore>,
    synced_once: AtomicBool,
    /// The last sync's failure, for the readiness probe and logs.
    last_sync_error: Mutex<Option<String>>,
    started: Instant,
}

/// What a sync changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    pub added: Vec<Ulid>,
    pub removed: Vec<Ulid>,
    pub failed: Vec<Ulid>,
    pub served: usize,
}

impl BucketStore {
    pub fn new(
        bucket: objstore::Bucket,
        fetcher: MetaFetcher,
        config: BucketStoreConfig,
        cache: Arc<IndexCache>,
        metrics: BucketStoreMetrics,
    ) -> std::io::Result<BucketStore> {
        std::fs::create_dir_all(&config.data_dir)?;
        Ok(BucketStore {
            bucket,
            fetcher,
            series_gate: Arc::new(Semaphore::new(config.series_max_concurrency.max(1))),
            config,
            blocks: RwLock::new(BTreeMap::new()),
            cache,
            chunks_cache: None,
            metrics,
            synced_once: AtomicBool::new(false),
            last_sync_error: Mutex::new(None),
            started: Instant::now(),
        })
    }

    /// Reads chunk segments through `cache` (none by default).
    pub fn with_chunks_cache(mut self, cache: Arc<ChunksCache>) -> Self {
        self.chunks_cache = cache.enabled().then_some(cache);
        self
    }

    pub fn metrics(&self) -> &BucketStoreMetrics {
        &self.metrics
    }

    /// Has a sync succeeded yet? (The store is not ready before.)
    pub fn is_ready(&self) -> bool {
        self.synced_once.load(Ordering::Acquire)
    }

    pub fn last_sync_error(&self) -> Option<String> {
        self.last_sync_error.lock().unwrap().clone()
    }

    /// The ULIDs served now.
    pub fn block_ids(&self) -> Vec<Ulid> {
        self.blocks.read().unwrap().keys().copied().collect()
    }

    fn now_ms(&self) -> i64 {
        self.started.elapsed().as_millis() as i64
    }

    fn count_op(&self, op: &str, ok: bool) {
        let l = label("operation", op);
        self.metrics.bucket_operations.get_or_create(&l).inc();
        if !ok {
            self.metrics
                .bucket_operation_failures
                .get_or_create(&l)
                .inc();
        }
    }

    /// One sync with the bucket: new blocks get an index-header and are served, blocks that
    /// left (deleted, filtered out, superseded) are dropped with their cache entries and local
    /// files. A failed listing keeps the current set.
    pub async fn sync(&self) -> Result<SyncReport, FetchError> {
        self.metrics.syncs.inc();
        let fetched = match self.fetcher.fetch().await {
            Ok(f) => {
                self.count_op("iter", true);
                f
            }
            Err(e) => {
                self.count_op("iter", false);
                self.metrics.sync_failures.inc();
                *self.last_sync_error.lock().unwrap() = Some(e.to_string());
                return Err(e);
            }
        };
        for e in &fetched.failed {
            tracing::warn!(error = %e, "block meta could not be loaded; the block is not served until it can");
        }
        let current: BTreeSet<Ulid> = self.block_ids().into_iter().collect();
        let wanted: BTreeSet<Ulid> = fetched.metas.keys().copied().collect();
        let mut report = SyncReport::default();
        let new: Vec<BlockMeta> = fetched
            .metas
            .values()
            .filter(|m| !current.contains(&m.ulid))
            .cloned()
            .collect();
        let loads = futures::stream::iter(new)
            .map(|meta| async move {
                let ulid = meta.ulid;
                (ulid, self.load_block(meta).await)
            })
            .buffer_unordered(self.config.block_sync_concurrency.max(1));
        let loaded: Vec<_> = loads.collect().await;
        {
            let mut blocks = self.blocks.write().unwrap();
            for (ulid, outcome) in loaded {
                match outcome {
                    Ok(block) => {
                        blocks.insert(ulid, Arc::new(block));
                        self.metrics.block_loads.inc();
                        report.added.push(ulid);
                    }
                    Err(e) => {
                        self.metrics.block_load_failures.inc();
                        tracing::warn!(block = %ulid, error = %e, "cannot serve block; retrying at the next sync");
                        report.failed.push(ulid);
                    }
                }
            }
            // With an incomplete view (a meta could not be read this time) nothing is dropped:
            // the missing block may be one still served.
            let gone: Vec<Ulid> = if fetched.is_complete() {
                blocks
                    .keys()
                    .filter(|u| !wanted.contains(u))
                    .copied()
                    .collect()
            } else {
                Vec::new()
            };
            for ulid in gone {
                blocks.remove(&ulid);
                self.metrics.block_drops.inc();
                report.removed.push(ulid);
            }
            report.served = blocks.len();
            self.metrics.blocks_loaded.set(blocks.len() as i64);
        }
        for ulid in &report.removed {
            self.cache.forget_block(*ulid);
            let dir = self.config.data_dir.join(ulid.to_string());
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a dropped block's index-header");
                }
            }
        }
        if !report.added.is_empty() || !report.removed.is_empty() {
            tracing::info!(
                added = report.added.len(),
                removed = report.removed.len(),
                failed = report.failed.len(),
                served = report.served,
                "synced blocks with the bucket"
            );
        }
        *self.last_sync_error.lock().unwrap() = None;
        self.synced_once.store(true, Ordering::Release);
        Ok(report)
    }

    /// Builds (or checks) the block's index-header on disk and finds its chunk segments. The
    /// header is not kept open: the first request opens it.
    async fn load_block(&self, meta: BlockMeta) -> Result<BucketBlock, Error> {
        let header = IndexHeaderReader::open_or_build(
            &self.bucket,
            &self.config.data_dir,
            meta.ulid,
            self.config.postings_offsets_sampling,
        )
        .await;
        self.count_op("get_range", header.is_ok());
        drop(header?);
        let chunks = BlockChunkReader::open(
            self.bucket.clone(),
            &meta,
            estimated_max_chunk_size(&meta),
            Arc::new(FetchStats::default()),
        )
        .await?;
        let external = meta
            .thanos
            .as_ref()
            .map(|t| t.labels.clone())
            .unwrap_or_default();
        Ok(BucketBlock {
            segments: chunks.segments().to_vec(),
            meta: Arc::new(meta),
            external,
            header: tokio::sync::Mutex::new(None),
            last_used_ms: AtomicI64::new(0),
        })
    }

    /// The block's index-header, opened if needed.
    async fn header(&self, block: &BucketBlock) -> Result<Arc<IndexHeaderReader>, Error> {
        block.last_used_ms.store(self.now_ms(), Ordering::Release);
        let mut slot = block.header.lock().await;
        if let Some(h) = slot.as_ref() {
            return Ok(h.clone());
        }
        let reader = Arc::new(
            IndexHeaderReader::open_or_build(
                &self.bucket,
                &self.config.data_dir,
                block.meta.ulid,
                self.config.postings_offsets_sampling,
            )
            .await?,
        );
        *slot = Some(reader.clone());
        self.metrics.index_headers_loaded.inc();
        Ok(reader)
    }

    /// Closes index-headers unused for the idle timeout and not in use by a request. Returns
    /// how many were closed.
    pub fn close_idle_index_headers(&self) -> usize {
        let now = self.now_ms();
        let idle = self.config.index_header_idle_timeout.as_millis() as i64;
        let blocks: Vec<Arc<BucketBlock>> = self.blocks.read().unwrap().values().cloned().collect();
        let mut closed = 0;
        for b in blocks {
            if now - b.last_used_ms.load(Ordering::Acquire) < idle {
                continue;
            }
            let Ok(mut slot) = b.header.try_lock() else {
                continue;
            };
            if slot.as_ref().is_some_and(|h| Arc::strong_count(h) == 1) {
                *slot = None;
                closed += 1;
                self.metrics.index_headers_loaded.dec();
            }
        }
        closed
    }

    /// Open index-headers now.
    pub fn open_index_headers(&self) -> usize {
        self.blocks
            .read()
            .unwrap()
            .values()
            .filter(|b| b.header.try_lock().map_or(true, |s| s.is_some()))
            .count()
    }

    /// Blocks a request for `[mint, maxt]` reads, with the matchers left for each. With a
    /// `max_resolution` window, the blocks are chosen per external label set as Thanos'
    /// `bucketBlockSet.getFor` does ([`choose_resolutions`]); without one (label names and
    /// values), every overlapping block is read.
    fn blocks_for(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        max_resolution: Option<i64>,
    ) -> Vec<(Arc<BucketBlock>, Vec<Matcher>)> {
        let blocks = self.blocks.read().unwrap();
        let mut chosen: Vec<&Arc<BucketBlock>> =
            blocks.values().filter(|b| b.overlaps(mint, maxt)).collect();
        if let Some(window) = max_resolution {
            let mut sets: BTreeMap<&ExternalLabels, Vec<&Arc<BucketBlock>>> = BTreeMap::new();
            for b in chosen {
                sets.entry(&b.external).or_default().push(b);
            }
            chosen = Vec::new();
            for set in sets.into_values() {
                let spans: Vec<BlockSpan> = set
                    .iter()
                    .map(|b| BlockSpan {
                        min_time: b.meta.min_time,
                        max_time: b.meta.max_time,
                        resolution: b.resolution(),
                    })
                    .collect();
                chosen.extend(
                    choose_resolutions(&spans, mint, maxt, window)
                        .into_iter()
                        .map(|i| set[i]),
                );
            }
        }
        chosen
            .into_iter()
            .filter_map(|b| Some((b.clone(), matchers_for_tsdb(matchers, &b.external)?)))
            .collect()
    }

    /// The external label sets and time range of the served blocks (Info). With no block the
    /// range is empty (`i64::MAX..i64::MIN`), as Thanos reports it.
    pub fn info(&self) -> (Vec<ExternalLabels>, i64, i64) {
        let blocks = self.blocks.read().unwrap();
        let mut sets: BTreeSet<ExternalLabels> = BTreeSet::new();
        let (mut lo, mut hi) = (i64::MAX, i64::MIN);
        for b in blocks.values() {
            sets.insert(b.external.clone());
            lo = lo.min(b.meta.min_time);
            hi = hi.max(b.meta.max_time);
        }
        (sets.into_iter().collect(), lo, hi)
    }

    fn readers(
        &self,
        block: &BucketBlock,
        header: Arc<IndexHeaderReader>,
        stats: &Arc<FetchStats>,
    ) -> (BlockIndexReader, BlockChunkReader) {
        let index = BlockIndexReader::new(
            self.bucket.clone(),
            header,
            estimated_max_series_size(&block.meta),
            stats.clone(),
        );
        let chunks = BlockChunkReader::with_segments(
            self.bucket.clone(),
            block.meta.ulid,
            block.segments.clone(),
            estimated_max_chunk_size(&block.meta),
            stats.clone(),
        );
        let chunks = match &self.chunks_cache {
            Some(cache) => chunks.with_cache(cache.clone()),
            None => chunks,
        };
        (index, chunks)
    }

    /// Postings of `keys` through the cache.
    async fn postings(
        &self,
        index: &BlockIndexReader,
        keys: &[(String, String)],
    ) -> Result<HashMap<(String, String), Vec<u32>>, Error> {
        let block = index.block();
        let mut out = HashMap::with_capacity(keys.len());
        let mut missing: Vec<(&str, &str)> = Vec::new();
        for (name, value) in keys {
            let key = CacheKey::Postings {
                block,
                name: name.clone(),
                value: value.clone(),
            };
            match self.cache.get(&key) {
                Some(bytes) => {
                    out.insert((name.clone(), value.clone()), decode_refs(&bytes));
                }
                None => missing.push((name, value)),
            }
        }
        if !missing.is_empty() {
            let lists = index.fetch_postings(&missing).await;
            self.count_op("get_range", lists.is_ok());
            for ((name, value), refs) in missing.into_iter().zip(lists?) {
                self.cache.put(
                    CacheKey::Postings {
                        block,
                        name: name.to_string(),
                        value: value.to_string(),
                    },
                    encode_refs(&refs),
                );
                out.insert((name.to_string(), value.to_string()), refs);
            }
        }
        Ok(out)
    }

    /// Series entries of `refs` through the cache.
    async fn series_entries(
        &self,
        index: &BlockIndexReader,
        refs: &[u32],
    ) -> Result<Vec<super::SeriesEntry>, Error> {
        let block = index.block();
        let mut bodies: Vec<Option<Bytes>> = refs
            .iter()
            .map(|&r| {
                self.cache.get(&CacheKey::Series {
                    block,
                    series_ref: r,
                })
            })
            .collect();
        let missing: Vec<u32> = refs
            .iter()
            .zip(&bodies)
            .filter(|(_, b)| b.is_none())
            .map(|(&r, _)| r)
            .collect();
        if !missing.is_empty() {
            let fetched = index.fetch_series_bodies(&missing).await;
            self.count_op("get_range", fetched.is_ok());
            let mut fetched = missing.iter().zip(fetched?);
            for (slot, &r) in bodies.iter_mut().zip(refs) {
                if slot.is_none() {
                    let (&fr, body) = fetched.next().expect("one body per missing ref");
                    debug_assert_eq!(fr, r);
                    self.cache.put(
                        CacheKey::Series {
                            block,
                            series_ref: r,
                        },
                        body.clone(),
                    );
                    *slot = Some(body);
                }
            }
        }
        refs.iter()
            .zip(bodies)
            .map(|(&r, body)| index.decode_series(r, &body.expect("filled above")))
            .collect()
    }

    /// Phase 1 for one block: the series matching `matchers` with chunks in `[mint, maxt]`.
    async fn select_block(
        &self,
        block: &BucketBlock,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        stats: &Arc<FetchStats>,
        touched: &Touched,
    ) -> Result<Result<Vec<super::SeriesEntry>, Status>, Error> {
        let header = self.header(block).await?;
        let (index, _) = self.readers(block, header.clone(), stats);
        let keys = postings_keys(&header, matchers)?;
        let lists = self.postings(&index, &keys).await?;
        let prefetched = Prefetched {
            header: &header,
            lists: &lists,
        };
        let refs = postings_for_matchers(&prefetched, matchers).map_err(|e| Error::Corrupt {
            block: block.meta.ulid,
            file: "index".into(),
            offset: 0,
            detail: e.to_string(),
        })?;
        let total =
            touched.count.fetch_add(refs.len() as u64, Ordering::AcqRel) + refs.len() as u64;
        let touched_limit = touched.limit;
        if touched_limit > 0 && total > touched_limit {
            return Ok(Err(Status::resource_exhausted(format!(
                "exceeded the touched series limit (--store.grpc.touched-series-limit={touched_limit}): \
                 the request touches at least {total} series"
            ))));
        }
        let refs: Vec<u32> = refs.into_iter().map(|r| r as u32).collect();
        let mut entries = self.series_entries(&index, &refs).await?;
        for e in &mut entries {
            e.chunks = e.chunks_overlapping(mint, maxt);
        }
        entries.retain(|e| !e.chunks.is_empty());
        Ok(Ok(entries))
    }

    /// Runs phase 1 over `blocks`; failed blocks become warnings (or the error, when partial
    /// responses are off).
    #[allow(clippy::too_many_arguments)]
    async fn select_all(
        &self,
        blocks: &[(Arc<BucketBlock>, Vec<Matcher>)],
        mint: i64,
        maxt: i64,
        partial_ok: bool,
        stats: &Arc<FetchStats>,
        warnings: &mut Vec<String>,
    ) -> Result<Vec<(usize, super::SeriesEntry)>, Status> {
        let touched = Touched::new(self.config.touched_series_limit);
        let touched = &touched;
        let mut selects = Vec::with_capacity(blocks.len());
        for (i, (b, m)) in blocks.iter().enumerate() {
            selects.push(async move {
                let r = self.select_block(b, m, mint, maxt, stats, touched).await;
                (i, r)
            });
        }
        let results: Vec<_> = futures::stream::iter(selects)
            .buffer_unordered(self.config.block_sync_concurrency.max(1))
            .collect()
            .await;
        let mut all = Vec::new();
        for (i, r) in results {
            match r {
                Ok(Ok(entries)) => all.extend(entries.into_iter().map(|e| (i, e))),
                Ok(Err(status)) => {
                    self.metrics
                        .series_refused
                        .get_or_create(&label("limit", "touched_series"))
                        .inc();
                    return Err(status);
                }
                Err(e) => self.block_failed(&e, partial_ok, warnings)?,
            }
        }
        Ok(all)
    }

    fn block_failed(
        &self,
        e: &Error,
        partial_ok: bool,
        warnings: &mut Vec<String>,
    ) -> Result<(), Status> {
        tracing::warn!(block = %e.block(), error = %e, "skipping a block in a store answer");
        self.metrics.partial_blocks.inc();
        if !partial_ok {
            return Err(block_status(e));
        }
        warnings.push(format!("skipped block {}: {e}", e.block()));
        Ok(())
    }

    /// A Series call: checks the request, runs phase 1, then streams the answer from a task
    /// (phase 2). The returned receiver yields frames, warnings first.
    pub async fn series(
        self: &Arc<Self>,
        r: SeriesRequest,
    ) -> Result<mpsc::Receiver<Result<SeriesResponse, Status>>, Status> {
        if r.matchers.is_empty() {
            return Err(Status::invalid_argument("no matchers specified"));
        }
        let matchers = convert_matchers(&r.matchers)?;
        let permit = self
            .series_gate
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Status::unavailable("store is shutting down"))?;
        let started = Instant::now();
        // Thanos' ABORT strategy (1), or the older boolean, turn block failures into errors.
        let partial_ok = !r.partial_response_disabled && r.partial_response_strategy != 1;
        let blocks = self.blocks_for(
            &matchers,
            r.min_time,
            r.max_time,
            Some(r.max_resolution_window),
        );
        self.metrics
            .series_blocks_queried
            .observe(blocks.len() as f64);
        let stats = Arc::new(FetchStats::default());
        let mut warnings = Vec::new();
        let entries = self
            .select_all(
                &blocks,
                r.min_time,
                r.max_time,
                partial_ok,
                &stats,
                &mut warnings,
            )
            .await?;

        // Sort by served labels; equal labels (the same series in several blocks) merge.
        let mut all: Vec<(Labels, usize, Vec<ChunkMeta>)> = entries
            .into_iter()
            .map(|(i, e)| {
                let labels =
                    full_labels(&e.labels, &blocks[i].0.external, &r.without_replica_labels);
                (labels, i, e.chunks)
            })
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let mut groups: Vec<Group> = Vec::new();
        let limit = usize::try_from(r.limit).unwrap_or(0);
        for (labels, i, chunks) in all {
            match groups.last_mut() {
                Some((l, parts)) if *l == labels => parts.push((i, chunks)),
                _ => {
                    if limit > 0 && groups.len() == limit {
                        break;
                    }
                    groups.push((labels, vec![(i, chunks)]));
                }
            }
        }
        if !r.skip_chunks && self.config.series_sample_limit > 0 {
            let chunk_limit = (self.config.series_sample_limit / MAX_SAMPLES_PER_CHUNK).max(1);
            let chunks: u64 = groups
                .iter()
                .flat_map(|(_, parts)| parts.iter().map(|(_, c)| c.len() as u64))
                .sum();
            if chunks > chunk_limit {
                self.metrics
                    .series_refused
                    .get_or_create(&label("limit", "samples"))
                    .inc();
                return Err(Status::resource_exhausted(format!(
                    "exceeded the sample limit (--store.grpc.series-sample-limit={}): the request \
                     reads {chunks} chunks of up to {MAX_SAMPLES_PER_CHUNK} samples each, at most \
                     {chunk_limit} are allowed",
                    self.config.series_sample_limit
                )));
            }
        }
        self.metrics
            .series_get_all_duration
            .observe(started.elapsed().as_secs_f64());

        let (tx, rx) = mpsc::channel(4);
        let store = self.clone();
        let batch_size = usize::try_from(r.response_batch_size).unwrap_or(0);
        tokio::spawn(async move {
            let _permit = permit;
            for w in warnings {
                let warning = SeriesResponse {
                    result: Some(series_response::Result::Warning(w)),
                };
                if tx.send(Ok(warning)).await.is_err() {
                    return;
                }
            }
            let mut groups = groups.into_iter().peekable();
            while groups.peek().is_some() {
                let batch: Vec<_> = groups.by_ref().take(SERIES_BATCH).collect();
                let series = if r.skip_chunks {
                    batch
                        .into_iter()
                        .map(|(labels, _)| StoreSeries {
                            labels,
                            chunks: Vec::new(),
                        })
                        .collect()
                } else {
                    match store.fetch_batch(&blocks, batch, &stats, partial_ok).await {
                        Ok((series, warnings)) => {
                            for w in warnings {
                                let warning = SeriesResponse {
                                    result: Some(series_response::Result::Warning(w)),
                                };
                                if tx.send(Ok(warning)).await.is_err() {
                                    return;
                                }
                            }
                            series
                        }
                        Err(status) => {
                            let _ = tx.send(Err(status)).await;
                            return;
                        }
                    }
                };
                for frame in Responses::new(series, batch_size, r.aggregates.clone()) {
                    if tx.send(frame).await.is_err() {
                        return;
                    }
                }
            }
            let s = stats.snapshot();
            let fetched = &store.metrics.series_data_fetched;
            fetched
                .get_or_create(&label("data_type", "postings"))
                .observe(s.postings_fetched_bytes as f64);
            fetched
                .get_or_create(&label("data_type", "series"))
                .observe(s.series_fetched_bytes as f64);
            fetched
                .get_or_create(&label("data_type", "chunks"))
                .observe(s.chunks_fetched_bytes as f64);
            tracing::debug!(
                blocks = blocks.len(),
                fetched_bytes = s.fetched_bytes(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "StoreAPI Series from the bucket"
            );
        });
        Ok(rx)
    }

    /// Phase 2 for one batch: the chunks of every part, fetched per block, merged per series.
    async fn fetch_batch(
        &self,
        blocks: &[(Arc<BucketBlock>, Vec<Matcher>)],
        batch: Vec<Group>,
        stats: &Arc<FetchStats>,
        partial_ok: bool,
    ) -> Result<(Vec<StoreSeries>, Vec<String>), Status> {
        // Block -> chunk refs wanted from it.
        let mut wanted: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
        for (_, parts) in &batch {
            for (i, metas) in parts {
                wanted
                    .entry(*i)
                    .or_default()
                    .extend(metas.iter().map(|m| m.chunk_ref));
            }
        }
        let mut fetches = Vec::with_capacity(wanted.len());
        for (&i, refs) in &wanted {
            let block = &blocks[i].0;
            fetches.push(async move {
                let result = async {
                    let header = self.header(block).await?;
                    let (_, chunks) = self.readers(block, header, stats);
                    chunks.fetch_chunks(refs).await
                }
                .await;
                self.count_op("get_range", result.is_ok());
                (i, result)
            });
        }
        let fetched: Vec<(usize, Result<Vec<super::RawChunk>, Error>)> =
            futures::stream::iter(fetches)
                .buffer_unordered(self.config.block_sync_concurrency.max(1))
                .collect()
                .await;
        let mut warnings = Vec::new();
        let mut by_ref: HashMap<(usize, u64), super::RawChunk> = HashMap::new();
        let mut failed: BTreeSet<usize> = BTreeSet::new();
        for (i, result) in fetched {
            match result {
                Ok(chunks) => {
                    for (r, c) in wanted[&i].iter().zip(chunks) {
                        by_ref.insert((i, *r), c);
                    }
                }
                Err(e) => {
                    self.block_failed(&e, partial_ok, &mut warnings)?;
                    failed.insert(i);
                }
            }
        }
        let mut out = Vec::with_capacity(batch.len());
        for (labels, parts) in batch {
            let mut chunks = Vec::new();
            for (i, metas) in parts {
                if failed.contains(&i) {
                    continue;
                }
                for m in metas {
                    let raw = by_ref.get(&(i, m.chunk_ref)).expect("fetched above");
                    chunks.push(ChunkData {
                        min_time: m.min_time,
                        max_time: m.max_time,
                        encoding: raw.encoding,
                        data: raw.data.clone(),
                    });
                }
            }
            if chunks.is_empty() {
                continue;
            }
            crate::query::sort_and_dedup_chunks(&mut chunks);
            out.push(StoreSeries { labels, chunks });
        }
        Ok((out, warnings))
    }

    /// Label names of the series matching `matchers` in `[start, end]`, external label names
    /// included, replica labels excluded. With no matchers left for a block the names come
    /// from its index-header alone.
    pub async fn label_names(
        &self,
        matchers: &[Matcher],
        start: i64,
        end: i64,
        without: &[String],
        limit: usize,
    ) -> Result<(Vec<String>, Vec<String>), Status> {
        let keep = |n: &str| !without.iter().any(|w| w == n);
        let mut names = BTreeSet::new();
        let mut warnings = Vec::new();
        let stats = Arc::new(FetchStats::default());
        for (block, rest) in self.blocks_for(matchers, start, end, None) {
            let found: Result<Vec<String>, Error> = async {
                if rest.is_empty() {
                    return Ok(self.header(&block).await?.label_names());
                }
                let entries = self
                    .select_block(&block, &rest, start, end, &stats, &Touched::new(0))
                    .await?
                    .unwrap_or_default();
                Ok(entries
                    .iter()
                    .flat_map(|e| e.labels.iter().map(|l| l.name.to_string()))
                    .collect())
            }
            .await;
            match found {
                Ok(found) => {
                    names.extend(found);
                    names.extend(block.external.keys().cloned());
                }
                Err(e) => self.block_failed(&e, true, &mut warnings)?,
            }
        }
        let mut names: Vec<String> = names.into_iter().filter(|n| keep(n)).collect();
        if limit > 0 {
            names.truncate(limit);
        }
        Ok((names, warnings))
    }

    /// Values of label `name` over the series matching `matchers` in `[start, end]`.
    pub async fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        start: i64,
        end: i64,
        limit: usize,
    ) -> Result<(Vec<String>, Vec<String>), Status> {
        let mut values = BTreeSet::new();
        let mut warnings = Vec::new();
        let stats = Arc::new(FetchStats::default());
        for (block, rest) in self.blocks_for(matchers, start, end, None) {
            if let Some(v) = block.external.get(name) {
                values.insert(v.clone());
                continue;
            }
            let found: Result<Vec<String>, Error> = async {
                if rest.is_empty() {
                    return self.header(&block).await?.label_values(name);
                }
                let entries = self
                    .select_block(&block, &rest, start, end, &stats, &Touched::new(0))
                    .await?
                    .unwrap_or_default();
                Ok(entries
                    .iter()
                    .filter_map(|e| e.labels.get(name).map(str::to_string))
                    .collect())
            }
            .await;
            match found {
                Ok(found) => values.extend(found),
                Err(e) => self.block_failed(&e, true, &mut warnings)?,
            }
        }
        let mut values: Vec<String> = values.into_iter().collect();
        if limit > 0 {
            values.truncate(limit);
        }
        Ok((values, warnings))
    }
}

/// The postings keys [`postings_for_matchers`] will ask for, chosen from the index-header's
/// label values: for each matcher the values it selects (or, for a matcher that matches the
/// empty string, the values it rejects), and the all-postings key when no matcher selects.
fn postings_keys(
    header: &IndexHeaderReader,
    matchers: &[Matcher],
) -> Result<Vec<(String, String)>, Error> {
    let mut keys = BTreeSet::new();
    let mut any_positive = false;
    for m in matchers {
        if m.matches_everything() {
            continue;
        }
        if m.matches("") {
            for v in header.label_values(&m.name)? {
                if !m.matches(&v) {
                    keys.insert((m.name.clone(), v));
                }
            }
        } else {
            any_positive = true;
            match m.set_matches() {
                Some(values) => {
                    keys.extend(values.into_iter().map(|v| (m.name.clone(), v.to_string())))
                }
                None => {
                    for v in header.label_values(&m.name)? {
                        if m.matches(&v) {
                            keys.insert((m.name.clone(), v));
                        }
                    }
                }
            }
        }
    }
    if !any_positive {
        let (name, value) = ALL_POSTINGS_KEY;
        keys.insert((name.to_string(), value.to_string()));
    }
    Ok(keys.into_iter().collect())
}

/// A [`PostingsIndex`] over postings fetched in advance (see [`postings_keys`]).
struct Prefetched<'a> {
    header: &'a IndexHeaderReader,
    lists: &'a HashMap<(String, String), Vec<u32>>,
}

impl Prefetched<'_> {
    fn list(&self, name: &str, value: &str) -> Vec<u64> {
        self.lists
            .get(&(name.to_string(), value.to_string()))
            .map(|l| l.iter().map(|&r| u64::from(r)).collect())
            .unwrap_or_default()
    }
}

impl PostingsIndex for Prefetched<'_> {
    fn all_postings(&self) -> tsdb::Result<Vec<u64>> {
        let (name, value) = ALL_POSTINGS_KEY;
        Ok(self.list(name, value))
    }

    fn postings(&self, name: &str, value: &str) -> tsdb::Result<Vec<u64>> {
        Ok(self.list(name, value))
    }

    fn label_values(&self, name: &str) -> tsdb::Result<Vec<String>> {
        self.header
            .label_values(name)
            .map_err(|e| tsdb::Error::Corruption {
                path: PathBuf::from(indexheader::INDEX_HEADER_FILENAME),
                detail: e.to_string(),
            })
    }
}

fn encode_refs(refs: &[u32]) -> Bytes {
    let mut out = Vec::with_capacity(refs.len() * 4);
    for r in refs {
        out.extend_from_slice(&r.to_le_bytes());
    }
    Bytes::from(out)
}

fn decode_refs(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect()
}

/// Runs [`BucketStore::sync`] every `interval` and closes idle index-headers, until
/// `shutdown` fires. The first sync runs at once.
pub async fn sync_loop(
    store: Arc<BucketStore>,
    interval: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        if let Err(e) = store.sync().await {
            tracing::warn!(error = %e, "syncing blocks with the bucket failed; serving the last block set");
        }
        let closed = store.close_idle_index_headers();
        if closed > 0 {
            tracing::debug!(closed, "closed idle index-headers");
        }
    }
}

/// Errors the sync reports to its owner.
pub type SyncError = FetchError;

/// Drains a Series receiver into a Vec (tests and tools).
pub async fn collect(
    mut rx: mpsc::Receiver<Result<SeriesResponse, Status>>,
) -> Result<Vec<SeriesResponse>, Status> {
    let mut out = Vec::new();
    while let Some(r) = rx.recv().await {
        out.push(r?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn span(min_time: i64, max_time: i64, resolution: i64) -> BlockSpan {
        BlockSpan {
            min_time,
            max_time,
            resolution,
        }
    }

    #[test]
    fn coarsest_resolution_first_and_finer_blocks_fill_the_gaps() {
        // Raw blocks over [0, 60h) in 2h..48h pieces, a 5m block over [0, 48h), a 1h block
        // over [0, 24h).
        let blocks = [
            span(0, 48 * H, 0),
            span(48 * H, 50 * H, 0),
            span(50 * H, 60 * H, 0),
            span(0, 48 * H, 300_000),
            span(0, 24 * H, 3_600_000),
        ];
        let sorted = |mut v: Vec<usize>| {
            v.sort();
            v
        };
        // Window 0: raw only, whatever else exists.
        assert_eq!(sorted(choose_resolutions(&blocks, 0, 60 * H, 0)), [0, 1, 2]);
        // 5m: the 5m block, raw after it.
        assert_eq!(
            sorted(choose_resolutions(&blocks, 0, 60 * H, 300_000)),
            [1, 2, 3]
        );
        // Windows between resolutions pick the coarsest at most the window.
        assert_eq!(
            sorted(choose_resolutions(&blocks, 0, 60 * H, 3_599_999)),
            [1, 2, 3]
        );
        // 1h: the 1h block, 5m for [24h, 48h), raw after.
        assert_eq!(
            sorted(choose_resolutions(&blocks, 0, 60 * H, 3_600_000)),
            [1, 2, 3, 4]
        );
        // Only the blocks overlapping the range; the 5m block fills before the 1h one too.
        let later = [span(0, 10 * H, 300_000), span(10 * H, 20 * H, 3_600_000)];
        assert_eq!(
            sorted(choose_resolutions(&later, 2 * H, 12 * H, 3_600_000)),
            [0, 1]
        );
        assert_eq!(
            sorted(choose_resolutions(&later, 12 * H, 15 * H, 3_600_000)),
            [1]
        );
        assert!(choose_resolutions(&later, 12 * H, 11 * H, 3_600_000).is_empty());
    }
}
