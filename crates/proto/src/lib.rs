//! Wire formats Cairn speaks.
//!
//! [`remote_write`] decodes Prometheus Remote Write 1.0 (`prometheus.WriteRequest`) and 2.0
//! (`io.prometheus.write.v2.Request`) request bodies (after snappy) without copying label
//! strings: labels borrow from the request buffer, which is what lets a receiver decode millions
//! of samples a second per core. It also encodes requests, for clients, tests and benchmarks.
//!
//! [`thanos`] and [`prometheus`] are generated (prost + tonic, by `build.rs` with `protox`) from
//! the .proto files under `proto/`, which follow Thanos' and Prometheus' definitions with the same
//! package, service and message names and field numbers, so the bytes and the gRPC paths are
//! Thanos':
//!
//! - [`thanos`]: the StoreAPI (`thanos.Store`: [`thanos::store_client::StoreClient`],
//!   [`thanos::store_server::StoreServer`] and the [`thanos::store_server::Store`] trait), its
//!   messages ([`thanos::SeriesRequest`], [`thanos::SeriesResponse`], [`thanos::AggrChunk`], ...)
//!   and the receiver-to-receiver write service (`thanos.WriteableStore`:
//!   [`thanos::writeable_store_client`], [`thanos::writeable_store_server`],
//!   [`thanos::WriteRequest`]), and the exemplars service (`thanos.Exemplars`:
//!   [`thanos::exemplars_client`], [`thanos::exemplars_server`], [`thanos::ExemplarsRequest`]).
//! - [`thanos::info`]: discovery (`thanos.info.Info`), [`thanos::info::InfoResponse`].
//! - [`cairn::status::v1`]: Cairn's receiver status service (`cairn.status.v1.Status/Node`),
//!   which Thanos does not have: what a receiver stores and owes its peers, for the query
//!   layer's cluster page.
//! - [`prometheus`]: the remote-write types (`prometheus.WriteRequest`, `TimeSeries`, `Sample`,
//!   `Histogram`, ...), carried by `thanos.WriteRequest`.
//! - [`prometheus_v2`]: the Remote Write 2.0 types (`io.prometheus.write.v2.Request`, ...).
//!
//! Generated clients are transport-agnostic: build one with `StoreClient::new(channel)` from a
//! `tonic::transport::Channel` (the crate enables no tonic transport itself).
//!
//! It does not own HTTP, snappy or validation: the receiver does those.

pub mod codec;
pub mod exposition;
pub mod remote_write;
mod wire;

/// Prometheus remote-write messages (package `prometheus`), generated from `proto/prompb/`.
#[allow(clippy::all, missing_docs, unused_qualifications)]
pub mod prometheus {
    include!(concat!(env!("OUT_DIR"), "/prometheus.rs"));
}

/// Prometheus Remote Write 2.0 messages (package `io.prometheus.write.v2`), generated from
/// `proto/prompb/io/prometheus/write/v2/`: for clients and tests; the receiver decodes 2.0 with
/// [`remote_write::decode_v2`].
#[allow(clippy::all, missing_docs, unused_qualifications)]
pub mod prometheus_v2 {
    include!(concat!(env!("OUT_DIR"), "/io.prometheus.write.v2.rs"));
}

/// Thanos messages and services (package `thanos`), generated from `proto/store/`.
#[allow(clippy::all, missing_docs, unused_qualifications)]
pub mod thanos {
    include!(concat!(env!("OUT_DIR"), "/thanos.rs"));

    /// The Info service (package `thanos.info`), generated from `proto/info/infopb/rpc.proto`.
    pub mod info {
        include!(concat!(env!("OUT_DIR"), "/thanos.info.rs"));
    }
}

/// Cairn's own services (not Thanos'), generated from `proto/cairn/`.
pub mod cairn {
    /// The receivers' status service (`cairn.status.v1.Status`): [`status::v1::NodeResponse`],
    /// [`status::v1::status_client::StatusClient`], [`status::v1::status_server::StatusServer`].
    pub mod status {
        #[allow(clippy::all, missing_docs, unused_qualifications)]
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/cairn.status.v1.rs"));
        }
    }
}

#[cfg(test)]
mod tests;
