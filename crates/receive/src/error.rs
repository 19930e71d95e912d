//! The receiver's errors, each with the class of answer it becomes.
//!
//! A remote-write client acts on the status code alone: 4xx is dropped (never retried), 5xx is
//! retried from its WAL. Every error here therefore knows its [`StatusClass`], and the two
//! adapters convert it in one place each: [`StatusClass::http`] for the HTTP handler,
//! [`StatusClass::grpc`] for the `thanos.WriteableStore` service (the codes Thanos' receivers
//! answer each other with, which a router maps back to the same classes).

use std::path::PathBuf;

use crate::tenants::TenantError;

/// What kind of answer an error becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusClass {
    /// Data that can never be accepted (bad labels, undecodable bodies).
    BadRequest,
    Unauthorized,
    Forbidden,
    /// Samples that conflict with what is stored (out of order, duplicates).
    Conflict,
    /// A request over a size limit.
    PayloadTooLarge,
    /// A Content-Type or Content-Encoding remote write does not define.
    UnsupportedMediaType,
    /// A tenant at a limit; the client should slow down.
    TooManyRequests,
    /// A storage or routing failure: nothing was acknowledged, so the client retries.
    Internal,
    /// Not ready, or not enough replicas answered.
    Unavailable,
}

impl StatusClass {
    pub fn http(self) -> u16 {
        match self {
            StatusClass::BadRequest => 400,
            StatusClass::Unauthorized => 401,
            StatusClass::Forbidden => 403,
            StatusClass::Conflict => 409,
            StatusClass::PayloadTooLarge => 413,
            StatusClass::UnsupportedMediaType => 415,
            StatusClass::TooManyRequests => 429,
            StatusClass::Internal => 500,
            StatusClass::Unavailable => 503,
        }
    }

    pub fn grpc(self) -> tonic::Code {
        match self {
            StatusClass::BadRequest
            | StatusClass::PayloadTooLarge
            | StatusClass::UnsupportedMediaType => tonic::Code::InvalidArgument,
            StatusClass::Unauthorized => tonic::Code::Unauthenticated,
            StatusClass::Forbidden => tonic::Code::PermissionDenied,
            StatusClass::Conflict => tonic::Code::AlreadyExists,
            StatusClass::TooManyRequests => tonic::Code::ResourceExhausted,
            StatusClass::Internal => tonic::Code::Internal,
            StatusClass::Unavailable => tonic::Code::Unavailable,
        }
    }

    /// The class of an HTTP status a write was answered with (quorum answers).
    pub fn of_http(status: u16) -> StatusClass {
        match status {
            400 => StatusClass::BadRequest,
            401 => StatusClass::Unauthorized,
            403 => StatusClass::Forbidden,
            409 => StatusClass::Conflict,
            413 => StatusClass::PayloadTooLarge,
            415 => StatusClass::UnsupportedMediaType,
            429 => StatusClass::TooManyRequests,
            503 => StatusClass::Unavailable,
            _ => StatusClass::Internal,
        }
    }
}

/// Why a write request was refused before (or instead of) being stored. Per-series rejections
/// of a processed request are not errors: they are reported in a
/// [`WriteOutcome`](crate::writer::WriteOutcome).
/// How many samples a native histogram counts as toward a request's samples limit: about
/// what it holds, and what bounds the memory a request of histograms decodes to.
pub const HISTOGRAM_SAMPLE_WEIGHT: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("Content-Type is not ASCII")]
    ContentTypeNotAscii,
    #[error("unsupported Content-Type {0:?}: expected application/x-protobuf")]
    UnsupportedContentType(String),
    #[error(
        "unsupported remote-write message {0:?}: expected prometheus.WriteRequest or io.prometheus.write.v2.Request"
    )]
    UnsupportedMessage(String),
    #[error("unsupported Content-Encoding {0:?}: remote write bodies are snappy-compressed")]
    UnsupportedEncoding(String),
    #[error("request too large: {size} bytes, the limit is {limit}")]
    BodyTooLarge { size: usize, limit: usize },
    #[error("request too large: {size} bytes uncompressed, the limit is {limit}")]
    DecodedTooLarge { size: usize, limit: usize },
    #[error("request too large: {count} series, the limit is {limit}")]
    TooManySeries { count: usize, limit: usize },
    #[error("request too large: {count} samples, the limit is {limit}")]
    TooManySamples { count: usize, limit: usize },
    #[error(
        "request too large: more than {limit} native histograms (each counts as {HISTOGRAM_SAMPLE_WEIGHT} samples toward the limit of {samples_limit} samples)"
    )]
    TooManyHistograms { limit: usize, samples_limit: usize },
    #[error("invalid snappy body: {0}")]
    Snappy(#[source] snap::Error),
    #[error("invalid snappy body: it declares {declared} bytes uncompressed, more than {size} compressed bytes can hold")]
    SnappyDeclaredLength { declared: usize, size: usize },
    #[error("invalid remote-write protobuf: {0}")]
    Protobuf(String),
    #[error("invalid thanos.WriteRequest: {0}")]
    ThanosProtobuf(String),
    #[error("replica {replica} is out of range for replication factor {factor}")]
    ReplicaOutOfRange { replica: i64, factor: usize },
    #[error(transparent)]
    Tenant(#[from] TenantError),
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error("receiver is not ready")]
    NotReady,
}

impl IngestError {
    pub fn class(&self) -> StatusClass {
        match self {
            IngestError::ContentTypeNotAscii
            | IngestError::UnsupportedContentType(_)
            | IngestError::UnsupportedMessage(_)
            | IngestError::UnsupportedEncoding(_) => StatusClass::UnsupportedMediaType,
            IngestError::BodyTooLarge { .. }
            | IngestError::DecodedTooLarge { .. }
            | IngestError::TooManySeries { .. }
            | IngestError::TooManySamples { .. }
            | IngestError::TooManyHistograms { .. } => StatusClass::PayloadTooLarge,
            IngestError::Snappy(_)
            | IngestError::SnappyDeclaredLength { .. }
            | IngestError::Protobuf(_)
            | IngestError::ThanosProtobuf(_)
            | IngestError::ReplicaOutOfRange { .. }
            | IngestError::Tenant(TenantError::InvalidName(_)) => StatusClass::BadRequest,
            IngestError::Tenant(TenantError::Open { .. }) | IngestError::Route(_) => {
                StatusClass::Internal
            }
            IngestError::NotReady => StatusClass::Unavailable,
        }
    }

    /// The gRPC status of a forwarded write refused with this error.
    pub fn to_status(&self) -> tonic::Status {
        tonic::Status::new(self.class().grpc(), self.to_string())
    }
}

/// Why a write cannot be routed to its owners.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("no hashring matches tenant {0:?}")]
    NoHashring(String),
    #[error("bad endpoint {address:?}: {reason}")]
    BadEndpoint { address: String, reason: String },
}

/// A configuration file or flag that cannot be used. Raised at start-up (the receiver does not
/// start) or on reload (the previous configuration stays).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {file} {}: {source}", path.display())]
    Read {
        file: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file that was read but is not valid: `file` names its kind, `reason` what is wrong.
    #[error("{file} {}: {reason}", path.display())]
    Invalid {
        file: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// Text (a flag value, or file content not yet tied to a path) that is not valid.
    #[error("{0}")]
    Syntax(String),
    #[error("opening the hint queues: {0}")]
    Handoff(#[source] std::io::Error),
    #[error(transparent)]
    Objstore(#[from] objstore::Error),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Auth(#[from] auth::AuthFileError),
}

impl ConfigError {
    /// Ties a [`ConfigError::Syntax`] to the file it came from.
    pub fn in_file(self, file: &'static str, path: &std::path::Path) -> ConfigError {
        match self {
            ConfigError::Syntax(reason) => ConfigError::Invalid {
                file,
                path: path.to_path_buf(),
                reason,
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_round_trip_through_http_codes() {
        for class in [
            StatusClass::BadRequest,
            StatusClass::Unauthorized,
            StatusClass::Forbidden,
            StatusClass::Conflict,
            StatusClass::PayloadTooLarge,
            StatusClass::UnsupportedMediaType,
            StatusClass::TooManyRequests,
            StatusClass::Internal,
            StatusClass::Unavailable,
        ] {
            assert_eq!(StatusClass::of_http(class.http()), class);
        }
    }

    #[test]
    fn refusals_have_the_codes_clients_act_on() {
        let e = IngestError::BodyTooLarge { size: 10, limit: 5 };
        assert_eq!(e.class().http(), 413);
        assert_eq!(e.to_string(), "request too large: 10 bytes, the limit is 5");
        assert_eq!(
            IngestError::Tenant(TenantError::InvalidName("..".into()))
                .class()
                .http(),
            400
        );
        assert_eq!(
            IngestError::NotReady.to_status().code(),
            tonic::Code::Unavailable
        );
        assert_eq!(
            IngestError::Route(RouteError::NoHashring("t".into()))
                .class()
                .http(),
            500
        );
    }
}
