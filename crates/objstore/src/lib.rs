//! Object storage: Thanos' `objstore.yml`, the bucket client, block upload, the shipper, and
//! the bucket's view as Thanos' readers build it (meta fetcher, filters, marker files).
//!
//! Owns the bucket layout (`<ULID>/meta.json`, `index`, `chunks/NNNNNN`, the marker files,
//! exactly as Thanos lays it out), uploading a block so that a reader never sees it without all
//! its files (meta.json goes last), deleting one in the reverse order, the shipper that uploads
//! every new local block, oldest first, remembering what it uploaded in `thanos.shipper.json`,
//! and the [`fetcher`] that lists the bucket's blocks, caches their metas and runs Thanos'
//! [`filters`] over them (time partition, relabel sharding, consistency delay, deletion marks,
//! replica labels, deduplication) for the store gateway and the compactor.
//!
//! It uses the `object_store` crate for S3 and the local filesystem, so tests exercise the same
//! code path as production. It does not own block formats (the `tsdb` crate), compaction
//! planning (the `compact` crate) nor scheduling: the receiver decides when to call
//! [`shipper::Shipper::sync`], the store and compactor when to call
//! [`fetcher::MetaFetcher::fetch`].

pub mod bucket;
pub mod config;
pub mod fetcher;
pub mod filters;
pub mod markers;
pub mod relabel;
pub mod shipper;
pub mod thanos_meta;
pub mod verify;

pub use bucket::Bucket;
pub use config::BucketConfig;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("objstore config: {0}")]
    Config(String),
    #[error("bucket {op} {path}: {source}")]
    Bucket {
        op: &'static str,
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tsdb(#[from] tsdb::Error),
    #[error("invalid block in bucket: {0}")]
    InvalidBlock(String),
    #[error(transparent)]
    Marker(#[from] markers::MarkerError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
