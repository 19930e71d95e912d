//! The query layer's error classes: what kind of Prometheus API answer each error becomes.
//!
//! Every error of this crate (and the engine's [`promql::Error`], and the fan-out's
//! [`FanoutError`]) knows its [`StatusClass`] through [`Classify`]. The HTTP API turns a class
//! into an `errorType` and a status code in one place, when it writes the error response
//! ([`crate::api`]).

use axum::http::StatusCode;
use promql::{StorageError, StorageErrorKind};

use crate::fanout::FanoutError;

/// What kind of answer an error becomes: the error types of Prometheus' HTTP API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusClass {
    /// The request is wrong (parameters, query text): 400.
    BadData,
    /// The query cannot be evaluated (many-to-many matching, too many samples): 422.
    Execution,
    /// The query ran out of time: 503.
    Timeout,
    /// The query was cancelled: 503.
    Canceled,
    /// Storage or the server failed (an endpoint failed with `partial_response=false`): 500.
    Internal,
    /// No valid credentials (`--http.auth-file`): 401.
    Unauthorized,
    /// The credentials are bound to another tenant than the request names: 403.
    Forbidden,
}

impl StatusClass {
    /// The `errorType` of the API's error envelope.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusClass::BadData => "bad_data",
            StatusClass::Execution => "execution",
            StatusClass::Timeout => "timeout",
            StatusClass::Canceled => "canceled",
            StatusClass::Internal => "internal",
            StatusClass::Unauthorized => "unauthorized",
            StatusClass::Forbidden => "forbidden",
        }
    }

    /// Prometheus 2.x's status codes (3.x answers `canceled` with 499).
    pub fn status(self) -> StatusCode {
        match self {
            StatusClass::BadData => StatusCode::BAD_REQUEST,
            StatusClass::Execution => StatusCode::UNPROCESSABLE_ENTITY,
            StatusClass::Timeout | StatusClass::Canceled => StatusCode::SERVICE_UNAVAILABLE,
            StatusClass::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            StatusClass::Unauthorized => StatusCode::UNAUTHORIZED,
            StatusClass::Forbidden => StatusCode::FORBIDDEN,
        }
    }
}

/// An error that knows the class of answer it becomes.
pub trait Classify {
    fn class(&self) -> StatusClass;
}

impl Classify for promql::Error {
    fn class(&self) -> StatusClass {
        match self {
            promql::Error::Parse(_) => StatusClass::BadData,
            promql::Error::Eval(_) | promql::Error::TooManySamples(_) => StatusClass::Execution,
            promql::Error::Timeout(_) => StatusClass::Timeout,
            promql::Error::Canceled(_) => StatusClass::Canceled,
            promql::Error::Storage(e) => e.class(),
        }
    }
}

impl Classify for StorageError {
    /// Prometheus answers every storage error `internal` (a time-out or cancellation is not a
    /// storage error: the engine reports those itself), whatever went wrong; so does Cairn.
    fn class(&self) -> StatusClass {
        match self.kind() {
            StorageErrorKind::NotFound
            | StorageErrorKind::Corrupt
            | StorageErrorKind::Io
            | StorageErrorKind::Unavailable
            | StorageErrorKind::Limit
            | StorageErrorKind::Other => StatusClass::Internal,
        }
    }
}

impl Classify for FanoutError {
    fn class(&self) -> StatusClass {
        match self {
            FanoutError::Timeout(_) => StatusClass::Timeout,
            FanoutError::Endpoint(_) => StatusClass::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::params::{parse_duration, parse_time, Params};
    use crate::api::parse_selector;
    use crate::series_set::DecodeError;

    #[test]
    fn classes_have_prometheus_types_and_codes() {
        assert_eq!(StatusClass::BadData.status().as_u16(), 400);
        assert_eq!(StatusClass::Execution.status().as_u16(), 422);
        assert_eq!(StatusClass::Timeout.status().as_u16(), 503);
        assert_eq!(StatusClass::Canceled.status().as_u16(), 503);
        assert_eq!(StatusClass::Internal.status().as_u16(), 500);
        assert_eq!(StatusClass::Execution.as_str(), "execution");
    }

    #[test]
    fn request_errors_are_bad_data() {
        let e = parse_time("x").unwrap_err();
        assert_eq!(e.class(), StatusClass::BadData);
        assert_eq!(
            parse_duration("5x").unwrap_err().class(),
            StatusClass::BadData
        );
        assert_eq!(
            Params::parse(Some("a=%zz"), None).unwrap_err().to_string(),
            "invalid URL escape \"%zz\""
        );
        let e = parse_selector("1 + 1").unwrap_err();
        assert_eq!(e.class(), StatusClass::BadData);
        assert_eq!(e.to_string(), "\"1 + 1\" is not a series selector");
    }

    #[test]
    fn engine_and_storage_errors_keep_todays_answers() {
        assert_eq!(
            promql::Error::Eval("x".into()).class(),
            StatusClass::Execution
        );
        assert_eq!(promql::Error::Timeout("eval").class(), StatusClass::Timeout);
        let storage = promql::Error::Storage(StorageError::new(
            StorageErrorKind::Unavailable,
            "endpoint a:1: Series: Unavailable: down",
        ));
        assert_eq!(storage.class(), StatusClass::Internal);
        assert_eq!(
            storage.to_string(),
            "endpoint a:1: Series: Unavailable: down"
        );
        let tsdb = crate::tsdb_queryable::storage_err(tsdb::Error::Closed);
        match &tsdb {
            promql::Error::Storage(e) => assert_eq!(e.kind(), StorageErrorKind::Unavailable),
            other => panic!("{other:?}"),
        }
        assert_eq!(tsdb.class(), StatusClass::Internal);
        assert_eq!(tsdb.to_string(), "database is closed");
        assert_eq!(FanoutError::Timeout("Series").class(), StatusClass::Timeout);
        let d = DecodeError::Chunk {
            min_time: 1,
            max_time: 2,
            reason: "short".into(),
        };
        assert_eq!(d.class(), StatusClass::Internal);
    }
}
