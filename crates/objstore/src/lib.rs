//! Object storage: Thanos' `objstore.yml`, the bucket client, block upload and the shipper.
//!
//! Owns the bucket layout (`<ULID>/meta.json`, `index`, `chunks/NNNNNN`, `deletion-mark.json`,
//! exactly as Thanos lays it out), uploading a block so that a reader never sees it without all
//! its files (meta.json goes last), and the shipper that uploads every new local block, oldest
//! first, remembering what it uploaded in `thanos.shipper.json`.
//!
//! It uses the `object_store` crate for S3 and the local filesystem, so tests exercise the same
//! code path as production. It does not own block formats (the `tsdb` crate) nor scheduling:
//! the receiver decides when to call [`shipper::Shipper::sync`].

pub mod bucket;
pub mod config;
pub mod shipper;
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
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
