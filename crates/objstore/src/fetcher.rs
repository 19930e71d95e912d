//! The block metadata fetcher (Thanos' `block.MetaFetcher` with the concurrent lister): the
//! view of the bucket that the store gateway and the compactor act on.
//!
//! One sync:
//!
//! 1. List the bucket's top-level directories and keep those named by a ULID.
//! 2. For each, concurrently (bounded by `concurrency`): check that `<ULID>/meta.json` exists,
//!    then take the meta from memory, else from the local cache
//!    (`<data-dir>/meta-syncer/<ULID>/meta.json`), else from the bucket (and cache it). A
//!    directory without meta.json is a *partial* block (an upload in progress, or a deletion
//!    half done): reported, not an error. A meta.json that does not parse is partial too
//!    ("corrupted"); one with a version other than 1 is a load failure.
//! 3. If every block loaded, the in-memory cache becomes exactly what was loaded and cached
//!    directories of blocks that are gone are removed. A view with failures ("incomplete
//!    view" in Thanos) still returns what it could load, with the failures; the compactor
//!    must not act on it, the store gateway may.
//! 4. Run the filters in order ([`crate::filters`]), each removing or rewriting metas and
//!    counting what it did, as Thanos' `blocks_meta_synced{state}` and
//!    `blocks_meta_modified{modified}` gauges.
//!
//! Thanos' filter orders, which callers should keep:
//!
//! ```text
//! store gateway: TimePartition, LabelShard, ConsistencyDelay (0s), IgnoreDeletionMark (24h), Deduplicate
//! compactor:     TimePartition, LabelShard (minus replica labels), ConsistencyDelay (30m),
//!                IgnoreDeletionMark (delete-delay/2), ReplicaLabelRemover, Deduplicate,
//!                GatherNoCompactMarks, GatherNoDownsampleMarks (unless downsampling is off)
//! ```
//!
//! Metas are cached because they never change once uploaded (a rewrite makes a new block), so
//! a re-sync reads only new blocks; the cost per known block is one HEAD request.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStoreExt;
use tsdb::meta::{BlockMeta, META_FILENAME, META_VERSION};
use ulid::Ulid;

use crate::bucket::Bucket;
use crate::markers::MarkerError;

/// The local cache's directory under the component's data dir.
pub const META_SYNCER_DIRNAME: &str = "meta-syncer";
/// Thanos' `FetcherConcurrency` (the compactor's and store's `--block-meta-fetch-concurrency`
/// default).
pub const DEFAULT_FETCH_CONCURRENCY: usize = 32;

/// The metas of a view, by block.
pub type Metas = BTreeMap<Ulid, BlockMeta>;

/// Values of Thanos' `blocks_meta_synced{state=...}`.
pub mod state {
    pub const CORRUPTED_META: &str = "corrupted-meta-json";
    pub const NO_META: &str = "no-meta-json";
    pub const LOADED: &str = "loaded";
    pub const FAILED: &str = "failed";
    pub const LABEL_EXCLUDED: &str = "label-excluded";
    pub const TIME_EXCLUDED: &str = "time-excluded";
    pub const TOO_FRESH: &str = "too-fresh";
    pub const DUPLICATE: &str = "duplicate";
    pub const MARKED_FOR_DELETION: &str = "marked-for-deletion";
    pub const MARKED_FOR_NO_COMPACT: &str = "marked-for-no-compact";
    pub const MARKED_FOR_NO_DOWNSAMPLE: &str = "marked-for-no-downsample";
    /// Value of Thanos' `blocks_meta_modified{modified=...}`.
    pub const REPLICA_LABEL_REMOVED: &str = "replica-label-removed";
}

/// What one sync counted, per state: Thanos' `blocks_meta_synced` and `blocks_meta_modified`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncCounts {
    pub synced: BTreeMap<&'static str, u64>,
    pub modified: BTreeMap<&'static str, u64>,
}

impl SyncCounts {
    pub fn add_synced(&mut self, state: &'static str, n: u64) {
        *self.synced.entry(state).or_default() += n;
    }

    pub fn add_modified(&mut self, what: &'static str, n: u64) {
        *self.modified.entry(what).or_default() += n;
    }

    /// The count of a `synced` state (0 when nothing was counted).
    pub fn synced(&self, state: &str) -> u64 {
        self.synced.get(state).copied().unwrap_or(0)
    }

    /// The count of a `modified` value.
    pub fn modified(&self, what: &str) -> u64 {
        self.modified.get(what).copied().unwrap_or(0)
    }
}

/// Why a block directory is partial.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PartialBlock {
    /// No `meta.json` (yet, or any more).
    NoMeta,
    /// A `meta.json` that is not valid JSON for a block meta.
    CorruptedMeta(String),
}

/// Errors of a sync, or of loading one block; each names the block and file it is about.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("bucket {op} {path}: {source}")]
    Bucket {
        op: &'static str,
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error("block {block}: {path} has version {version}, expected {META_VERSION}")]
    UnsupportedMetaVersion {
        block: Ulid,
        path: String,
        version: u32,
    },
    #[error("meta cache directory {path}: {source}")]
    Cache {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("block {block}: {source}")]
    Marker {
        block: Ulid,
        #[source]
        source: Box<MarkerError>,
    },
    #[error("filter {filter}: {source}")]
    Filter {
        filter: &'static str,
        #[source]
        source: Box<FetchError>,
    },
}

/// One filter of the chain: removes metas from the view or rewrites them, counting what it
/// did. Filters that gather marks keep what they found for the caller to read after the sync.
pub trait MetaFilter: Send + Sync {
    /// A short name for logs and errors.
    fn name(&self) -> &'static str;

    fn filter<'a>(
        &'a self,
        metas: &'a mut Metas,
        counts: &'a mut SyncCounts,
    ) -> BoxFuture<'a, Result<(), FetchError>>;
}

/// The result of a sync.
#[derive(Debug, Default)]
pub struct FetchResult {
    /// The blocks that survived the filters.
    pub metas: Metas,
    /// Directories without a usable meta.json.
    pub partial: BTreeMap<Ulid, PartialBlock>,
    /// Blocks whose meta could not be loaded. When not empty the view is incomplete, and the
    /// compactor must not act on it (Thanos returns an "incomplete view" error with it).
    pub failed: Vec<FetchError>,
    pub counts: SyncCounts,
}

impl FetchResult {
    /// Is this a view of every block (no load failure)?
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty()
    }
}

/// What loading one listed block gave.
enum Loaded {
    Meta(Box<BlockMeta>),
    Partial(PartialBlock),
    Failed(FetchError),
}

/// Syncs block metas from a bucket; see the module docs.
pub struct MetaFetcher {
    bucket: Bucket,
    concurrency: usize,
    cache_dir: Option<PathBuf>,
    filters: Vec<Arc<dyn MetaFilter>>,
    /// Metas of the last complete view; they never change, so they are never re-read.
    cached: Mutex<HashMap<Ulid, Arc<BlockMeta>>>,
}

fn bucket_err(
    op: &'static str,
    path: &ObjectPath,
) -> impl FnOnce(object_store::Error) -> FetchError {
    let path = path.to_string();
    move |source| FetchError::Bucket { op, path, source }
}

impl MetaFetcher {
    /// A fetcher over `bucket`. With `data_dir`, metas are cached under
    /// `<data_dir>/meta-syncer/` across restarts.
    pub fn new(
        bucket: Bucket,
        data_dir: Option<&Path>,
        concurrency: usize,
        filters: Vec<Arc<dyn MetaFilter>>,
    ) -> Result<MetaFetcher, FetchError> {
        let cache_dir = match data_dir {
            Some(dir) => {
                let cache = dir.join(META_SYNCER_DIRNAME);
                std::fs::create_dir_all(&cache).map_err(|source| FetchError::Cache {
                    path: cache.clone(),
                    source,
                })?;
                Some(cache)
            }
            None => None,
        };
        Ok(MetaFetcher {
            bucket,
            concurrency: concurrency.max(1),
            cache_dir,
            filters,
            cached: Mutex::new(HashMap::new()),
        })
    }

    /// One sync: list, load, filter. An error here (listing failed, a filter failed) means
    /// no view at all; per-block load failures are in [`FetchResult::failed`].
    pub async fn fetch(&self) -> Result<FetchResult, FetchError> {
        let started = std::time::Instant::now();
        let root = ObjectPath::from("");
        let listing = self
            .bucket
            .list_with_delimiter(None)
            .await
            .map_err(bucket_err("list", &root))?;
        let ulids: Vec<Ulid> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().and_then(|name| Ulid::from_string(name).ok()))
            .collect();

        let mut loads = futures::stream::iter(ulids)
            .map(|ulid| async move { (ulid, self.load(ulid).await) })
            .buffer_unordered(self.concurrency);
        let mut result = FetchResult::default();
        let mut loaded: Metas = BTreeMap::new();
        while let Some((ulid, outcome)) = loads.next().await {
            match outcome? {
                Loaded::Meta(meta) => {
                    loaded.insert(ulid, *meta);
                }
                Loaded::Partial(why) => {
                    let state = match why {
                        PartialBlock::NoMeta => state::NO_META,
                        PartialBlock::CorruptedMeta(_) => state::CORRUPTED_META,
                    };
                    result.counts.add_synced(state, 1);
                    result.partial.insert(ulid, why);
                }
                Loaded::Failed(e) => result.failed.push(e),
            }
        }
        drop(loads);
        result
            .counts
            .add_synced(state::FAILED, result.failed.len() as u64);

        if result.failed.is_empty() {
            self.replace_cache(&loaded);
        }

        for filter in &self.filters {
            filter
                .filter(&mut loaded, &mut result.counts)
                .await
                .map_err(|e| FetchError::Filter {
                    filter: filter.name(),
                    source: Box::new(e),
                })?;
        }
        result.counts.add_synced(state::LOADED, loaded.len() as u64);
        result.metas = loaded;
        tracing::info!(
            duration_ms = started.elapsed().as_millis() as u64,
            returned = result.metas.len(),
            partial = result.partial.len(),
            failed = result.failed.len(),
            "synchronized block metadata"
        );
        Ok(result)
    }

    /// Loads one listed block. Errors from the existence check fail the whole sync (as a
    /// failing lister does in Thanos); errors reading the meta fail only this block.
    async fn load(&self, ulid: Ulid) -> Result<Loaded, FetchError> {
        let path = ObjectPath::from(format!("{ulid}/{META_FILENAME}"));
        match self.bucket.head(&path).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => {
                return Ok(Loaded::Partial(PartialBlock::NoMeta))
            }
            Err(e) => return Err(bucket_err("head", &path)(e)),
        }
        if let Some(meta) = self.cached.lock().unwrap().get(&ulid) {
            return Ok(Loaded::Meta(Box::new(BlockMeta::clone(meta))));
        }
        if let Some(meta) = self.read_cached_file(ulid) {
            return Ok(Loaded::Meta(Box::new(meta)));
        }
        let data = match self.bucket.get(&path).await {
            Ok(r) => match r.bytes().await {
                Ok(data) => data,
                Err(e) => return Ok(Loaded::Failed(bucket_err("read", &path)(e))),
            },
            // Deleted between the existence check and here.
            Err(object_store::Error::NotFound { .. }) => {
                return Ok(Loaded::Partial(PartialBlock::NoMeta))
            }
            Err(e) => return Ok(Loaded::Failed(bucket_err("get", &path)(e))),
        };
        let meta: BlockMeta = match serde_json::from_slice(&data) {
            Ok(meta) => meta,
            Err(e) => {
                return Ok(Loaded::Partial(PartialBlock::CorruptedMeta(format!(
                    "{path}: {e}"
                ))))
            }
        };
        if meta.version != META_VERSION {
            return Ok(Loaded::Failed(FetchError::UnsupportedMetaVersion {
                block: ulid,
                path: path.to_string(),
                version: meta.version,
            }));
        }
        self.write_cached_file(ulid, &meta);
        Ok(Loaded::Meta(Box::new(meta)))
    }

    /// Best effort: the locally cached meta, if present and readable. An unreadable one is
    /// removed so that it is fetched again.
    fn read_cached_file(&self, ulid: Ulid) -> Option<BlockMeta> {
        let dir = self.cache_dir.as_ref()?.join(ulid.to_string());
        if !dir.join(META_FILENAME).exists() {
            return None;
        }
        match BlockMeta::read(&dir) {
            Ok(meta) if meta.ulid == ulid => Some(meta),
            Ok(_) | Err(_) => {
                tracing::warn!(dir = %dir.display(), "cached meta.json unreadable; removing it");
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    tracing::warn!(dir = %dir.display(), error = %e, "removing cached meta dir failed");
                }
                None
            }
        }
    }

    /// Best effort: caches a meta read from the bucket.
    fn write_cached_file(&self, ulid: Ulid, meta: &BlockMeta) {
        let Some(cache) = &self.cache_dir else {
            return;
        };
        let dir = cache.join(ulid.to_string());
        let written = std::fs::create_dir_all(&dir)
            .map_err(|e| e.to_string())
            .and_then(|()| meta.write(&dir).map_err(|e| e.to_string()));
        if let Err(e) = written {
            tracing::warn!(dir = %dir.display(), error = %e, "caching meta.json failed; ignoring");
        }
    }

    /// After a complete view: memory holds exactly the loaded metas, and cached directories
    /// of blocks no longer in the bucket are removed.
    fn replace_cache(&self, loaded: &Metas) {
        *self.cached.lock().unwrap() = loaded
            .iter()
            .map(|(ulid, meta)| (*ulid, Arc::new(meta.clone())))
            .collect();
        let Some(cache) = &self.cache_dir else {
            return;
        };
        let entries = match std::fs::read_dir(cache) {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!(dir = %cache.display(), error = %e, "listing the meta cache failed; ignoring");
                return;
            }
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(ulid) = name.to_str().and_then(|n| Ulid::from_string(n).ok()) else {
                continue;
            };
            if loaded.contains_key(&ulid) {
                continue;
            }
            if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                tracing::warn!(dir = %entry.path().display(), error = %e, "removing a stale cached meta failed; ignoring");
            }
        }
    }
}
