//! Errors, worded as Prometheus words them.

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
    Storage(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A regex that does not compile is a parse error of the query that holds it.
impl From<model::matcher::InvalidMatcher> for Error {
    fn from(e: model::matcher::InvalidMatcher) -> Self {
        Error::Parse(e.to_string())
    }
}
