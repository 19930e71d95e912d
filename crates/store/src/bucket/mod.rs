//! Reading blocks that live in a bucket, the way Thanos' store gateway does: without ever
//! downloading a whole `index` or chunk segment.
//!
//! - [`indexheader`]: the binary index-header (Thanos' `index-header` file, format v1), built
//!   from a block's `index` with a handful of ranged reads, and its reader (symbols, label names
//!   and values, where each postings list sits in the bucket's `index`).
//! - [`partition`]: the gap-based partitioner that coalesces nearby byte ranges into one GET.
//! - [`index_reader`]: postings lists and series entries of one block, fetched with coalesced
//!   ranged GETs and decoded with the block's symbols from its index-header.
//! - [`chunk_reader`]: chunks of one block, fetched the same way from `chunks/NNNNNN`.
//!
//! Every byte fetched is counted in [`FetchStats`] (the store reports them per request). Damage
//! anywhere is an [`Error::Corrupt`] naming the block, the file and the offset; nothing here
//! panics on hostile bytes.
//!
//! - [`cache`]: the in-memory LRU of postings and series entries.
//! - [`chunks_cache`]: the in-memory LRU of chunk segment subranges (Thanos' caching bucket).
//! - [`store`]: the block set, its sync with the bucket and the StoreAPI's reads over it.

pub mod cache;
pub mod chunk_reader;
pub mod chunks_cache;
pub mod grpc;
pub mod index_reader;
pub mod indexheader;
mod lru;
pub mod partition;
pub mod store;

use std::sync::atomic::{AtomicU64, Ordering};

use ulid::Ulid;

pub use chunk_reader::{BlockChunkReader, RawChunk};
pub use index_reader::{BlockIndexReader, SeriesEntry};
pub use indexheader::{IndexHeaderReader, PostingsRange};
pub use partition::{GapPartitioner, Part};

/// What went wrong reading a block from the bucket, naming the block.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("block {block}: bucket {op} {path}: {source}")]
    Bucket {
        block: Ulid,
        op: &'static str,
        path: String,
        // Boxed: object_store's error is large and would bloat every `Result` in this module.
        #[source]
        source: Box<object_store::Error>,
    },
    #[error("block {block}: {context}: {source}")]
    Io {
        block: Ulid,
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// Bytes that cannot be what they claim to be: truncated, bad CRC, bad magic, out of range.
    #[error("block {block}: {file} is corrupt at offset {offset}: {detail}")]
    Corrupt {
        block: Ulid,
        /// The file inside the block (`index`, `index-header`, `chunks/000001`).
        file: String,
        offset: u64,
        detail: String,
    },
    /// Well-formed input this code does not read (index format v1 or v3, for instance).
    #[error("block {block}: {file}: {detail}")]
    Unsupported {
        block: Ulid,
        file: String,
        detail: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn corrupt(
        block: Ulid,
        file: impl Into<String>,
        offset: u64,
        detail: impl Into<String>,
    ) -> Self {
        Error::Corrupt {
            block,
            file: file.into(),
            offset,
            detail: detail.into(),
        }
    }

    /// The block the error is about.
    pub fn block(&self) -> Ulid {
        match self {
            Error::Bucket { block, .. }
            | Error::Io { block, .. }
            | Error::Corrupt { block, .. }
            | Error::Unsupported { block, .. } => *block,
        }
    }
}

/// Bytes and requests spent on one block's index and chunks. Shared by the readers of a request
/// (counters are atomic because parts are fetched concurrently).
#[derive(Debug, Default)]
pub struct FetchStats {
    postings_fetches: AtomicU64,
    postings_fetched_bytes: AtomicU64,
    series_fetches: AtomicU64,
    series_fetched_bytes: AtomicU64,
    series_refetches: AtomicU64,
    chunks_fetches: AtomicU64,
    chunks_fetched_bytes: AtomicU64,
    chunk_refetches: AtomicU64,
}

/// A copy of [`FetchStats`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FetchStatsSnapshot {
    /// GETs of postings ranges, and the bytes they returned.
    pub postings_fetches: u64,
    pub postings_fetched_bytes: u64,
    /// GETs of series ranges (refetches included), and the bytes they returned.
    pub series_fetches: u64,
    pub series_fetched_bytes: u64,
    /// Series entries longer than the estimate, fetched again on their own.
    pub series_refetches: u64,
    /// GETs of chunk ranges (refetches included), and the bytes they returned.
    pub chunks_fetches: u64,
    pub chunks_fetched_bytes: u64,
    /// Chunks longer than the estimate, fetched again on their own.
    pub chunk_refetches: u64,
}

impl FetchStatsSnapshot {
    /// Every byte fetched from the bucket.
    pub fn fetched_bytes(&self) -> u64 {
        self.postings_fetched_bytes + self.series_fetched_bytes + self.chunks_fetched_bytes
    }
}

impl FetchStats {
    pub fn snapshot(&self) -> FetchStatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        FetchStatsSnapshot {
            postings_fetches: get(&self.postings_fetches),
            postings_fetched_bytes: get(&self.postings_fetched_bytes),
            series_fetches: get(&self.series_fetches),
            series_fetched_bytes: get(&self.series_fetched_bytes),
            series_refetches: get(&self.series_refetches),
            chunks_fetches: get(&self.chunks_fetches),
            chunks_fetched_bytes: get(&self.chunks_fetched_bytes),
            chunk_refetches: get(&self.chunk_refetches),
        }
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Thanos' `EstimatedMaxSeriesSize` (`pkg/store/bucket.go`): bytes fetched per series entry
/// before its real length is known.
pub const ESTIMATED_MAX_SERIES_SIZE: u64 = 64 * 1024;
/// Thanos' `EstimatedMaxChunkSize`: bytes fetched per chunk before its real length is known.
pub const ESTIMATED_MAX_CHUNK_SIZE: u64 = 16_000;

/// One of the block's `thanos.index_stats` fields, when present and positive.
fn index_stat(meta: &tsdb::meta::BlockMeta, field: &str) -> Option<u64> {
    meta.thanos
        .as_ref()?
        .extra
        .get("index_stats")?
        .get(field)?
        .as_u64()
        .filter(|&v| v > 0)
}

/// The series size estimate for a block: [`ESTIMATED_MAX_SERIES_SIZE`], lowered to the meta's
/// `index_stats.series_max_size` when that is positive and smaller (as `thanos store` does).
pub fn estimated_max_series_size(meta: &tsdb::meta::BlockMeta) -> u64 {
    index_stat(meta, "series_max_size").map_or(ESTIMATED_MAX_SERIES_SIZE, |v| {
        v.min(ESTIMATED_MAX_SERIES_SIZE)
    })
}

/// The chunk size estimate for a block: [`ESTIMATED_MAX_CHUNK_SIZE`], lowered to the meta's
/// `index_stats.chunk_max_size` when that is positive and smaller.
pub fn estimated_max_chunk_size(meta: &tsdb::meta::BlockMeta) -> u64 {
    index_stat(meta, "chunk_max_size").map_or(ESTIMATED_MAX_CHUNK_SIZE, |v| {
        v.min(ESTIMATED_MAX_CHUNK_SIZE)
    })
}

/// Fetches `range` of `path`, mapping the error to the block.
async fn get_range(
    bucket: &objstore::Bucket,
    block: Ulid,
    path: &object_store::path::Path,
    range: std::ops::Range<u64>,
) -> Result<bytes::Bytes> {
    use object_store::ObjectStoreExt;
    bucket
        .get_range(path, range)
        .await
        .map_err(|source| Error::Bucket {
            block,
            op: "get range",
            path: path.to_string(),
            source: Box::new(source),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta_with(index_stats: serde_json::Value) -> tsdb::meta::BlockMeta {
        let json = serde_json::json!({
            "ulid": Ulid::nil().to_string(),
            "minTime": 0,
            "maxTime": 1,
            "compaction": {"level": 1},
            "version": 1,
            "thanos": {"labels": {}, "downsample": {"resolution": 0}, "source": "test",
                       "index_stats": index_stats},
        });
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn bucket_estimates_are_lowered_by_index_stats_only() {
        let m = meta_with(serde_json::json!({}));
        assert_eq!(estimated_max_series_size(&m), 65_536);
        assert_eq!(estimated_max_chunk_size(&m), 16_000);
        let m = meta_with(serde_json::json!({"series_max_size": 300, "chunk_max_size": 900}));
        assert_eq!(estimated_max_series_size(&m), 300);
        assert_eq!(estimated_max_chunk_size(&m), 900);
        // Larger than the default or zero: the default stays.
        let m = meta_with(serde_json::json!({"series_max_size": 1_000_000, "chunk_max_size": 0}));
        assert_eq!(estimated_max_series_size(&m), 65_536);
        assert_eq!(estimated_max_chunk_size(&m), 16_000);
    }
}
