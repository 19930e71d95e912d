//! Errors, worded as Prometheus words them.

use std::fmt;
use std::sync::Arc;

/// Why a query failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The query text does not parse (or fails type checking).
    #[error("{0}")]
    Parse(String),
    /// Evaluation failed (many-to-many matching, duplicate label sets, bad parameters, ...).
    #[error("{0}")]
    Eval(String),
    /// The query loaded more samples into memory than allowed.
    #[error("query processing would load too many samples into memory in {0}")]
    TooManySamples(&'static str),
    /// The query ran longer than the configured timeout.
    #[error("query timed out in {0}")]
    Timeout(&'static str),
    /// The query was cancelled by the caller.
    #[error("query was canceled in {0}")]
    Canceled(&'static str),
    /// Storage failed.
    #[error("{0}")]
    Storage(#[source] StorageError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A regex that does not compile is a parse error of the query that holds it.
impl From<model::matcher::InvalidMatcher> for Error {
    fn from(e: model::matcher::InvalidMatcher) -> Self {
        Error::Parse(e.to_string())
    }
}

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Self {
        Error::Storage(e)
    }
}

/// What went wrong in storage, as far as a caller choosing an answer needs to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageErrorKind {
    /// Something asked for (a file, a block) is not there.
    NotFound,
    /// Stored data that does not decode.
    Corrupt,
    /// Reading failed.
    Io,
    /// Storage cannot answer now (closed, an endpoint down or failing).
    Unavailable,
    /// A storage-side limit was hit.
    Limit,
    /// Anything else.
    Other,
}

/// A failure of the storage a query reads: its [`StorageErrorKind`], the message the query
/// fails with, and the underlying error when there is one (a `tsdb::Error`, reachable with
/// [`StorageError::tsdb`] or through [`std::error::Error::source`]).
///
/// It displays as its message alone, and reads as it ([`Deref`](std::ops::Deref) to `str`), so
/// answers carry the storage's own wording. Two storage errors are equal when their kind and
/// message are.
#[derive(Clone)]
pub struct StorageError {
    kind: StorageErrorKind,
    message: String,
    source: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
}

impl StorageError {
    /// An error with no underlying error.
    pub fn new(kind: StorageErrorKind, message: impl Into<String>) -> Self {
        StorageError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// An error caused by `source`, with its text as the message.
    pub fn with_source<E>(kind: StorageErrorKind, source: E) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        StorageError {
            kind,
            message: source.to_string(),
            source: Some(Arc::new(source)),
        }
    }

    /// The same error with `prefix` before its message (`series {...}: ...`).
    pub fn context(mut self, prefix: impl fmt::Display) -> Self {
        self.message = format!("{prefix}: {}", self.message);
        self
    }

    pub fn kind(&self) -> StorageErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The TSDB error this one comes from, if it does.
    pub fn tsdb(&self) -> Option<&tsdb::Error> {
        self.source.as_deref()?.downcast_ref::<tsdb::Error>()
    }
}

impl fmt::Debug for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("StorageError");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(s) = &self.source {
            d.field("source", s);
        }
        d.finish()
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

impl PartialEq for StorageError {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.message == other.message
    }
}

impl std::ops::Deref for StorageError {
    type Target = str;

    fn deref(&self) -> &str {
        &self.message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_errors_display_their_message_and_keep_the_tsdb_error() {
        let e = StorageError::with_source(
            StorageErrorKind::Corrupt,
            tsdb::Error::corruption("/b/index", "bad crc"),
        )
        .context("series {a=\"1\"}");
        assert_eq!(e.kind(), StorageErrorKind::Corrupt);
        assert_eq!(
            Error::Storage(e.clone()).to_string(),
            "series {a=\"1\"}: corruption in /b/index: bad crc"
        );
        assert!(matches!(
            e.tsdb(),
            Some(tsdb::Error::Corruption { detail, .. }) if detail == "bad crc"
        ));
        let wrapped = Error::Storage(e.clone());
        let source = std::error::Error::source(&wrapped).unwrap();
        assert_eq!(source.to_string(), e.to_string());
        assert!(e.contains("bad crc"));
        assert_ne!(
            e,
            StorageError::new(StorageErrorKind::Io, e.message().to_string())
        );
        assert_eq!(
            StorageError::new(StorageErrorKind::Other, "x")
                .tsdb()
                .map(|_| ()),
            None
        );
    }
}
