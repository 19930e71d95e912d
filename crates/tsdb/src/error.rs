//! The crate's error type. Every variant carries what a caller needs to say what went wrong:
//! which file and offset for corruption, which series and timestamp for rejected samples.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("corruption in {path}: {detail}")]
    Corruption { path: PathBuf, detail: String },
    #[error("invalid data: {0}")]
    Invalid(String),
    #[error("out of order sample: timestamp {t} is older than the series' newest sample {newest}")]
    OutOfOrder { t: i64, newest: i64 },
    #[error("duplicate sample for timestamp {t} with a different value")]
    DuplicateTimestamp { t: i64 },
    #[error(
        "out of bounds: timestamp {t} is older than the head's minimum valid time {min_valid}"
    )]
    OutOfBounds { t: i64, min_valid: i64 },
    #[error("invalid matcher: {0}")]
    InvalidMatcher(#[from] model::matcher::InvalidMatcher),
    #[error("database is closed")]
    Closed,
    #[error(
        "the head dropped its data before {t} while a read from {mint} was still streaming it \
         (the read outlived the wait for readers); retry the query"
    )]
    ReadOutlived { mint: i64, t: i64 },
}

impl Error {
    /// Wraps an I/O error with what was being done (and usually the path).
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub fn corruption(path: impl Into<PathBuf>, detail: impl Into<String>) -> Self {
        Error::Corruption {
            path: path.into(),
            detail: detail.into(),
        }
    }

    /// True for the per-sample rejections a remote-write client should not retry.
    pub fn is_sample_rejection(&self) -> bool {
        matches!(
            self,
            Error::OutOfOrder { .. } | Error::DuplicateTimestamp { .. } | Error::OutOfBounds { .. }
        )
    }
}

/// Adds a context string to I/O results: `file.read(..).ctx(|| format!("reading {path:?}"))`.
pub trait IoContext<T> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|e| Error::io(f(), e))
    }
}
