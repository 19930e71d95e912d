//! The remote-write receiver: one node of a Thanos-style receive pool.
//!
//! Owns what happens to a write from the moment it arrives until it is in the tenant's WAL:
//! the ingest core ([`ingest`]: limits, decoding, tenants, routing), its two doors ([`http`]:
//! remote write 1.0/2.0 from agents; [`grpc_write`]: `thanos.WriteableStore` from other
//! receivers), validation with the status codes remote-write clients act on ([`writer`],
//! [`error`]), writers' authentication and TLS, per-tenant limits, the hashrings file and series
//! placement ([`hashring`]), what this node reports of itself and its peers ([`status`]),
//! replication with quorum and hinted handoff ([`replicate`],
//! [`handoff`]), the per-tenant TSDBs and their shipping ([`tenants`]), and the receiver's
//! metrics. [`server`] wires them into a running receiver.
//!
//! Does not own the storage format (the `tsdb` crate), the wire decoding (the `proto` crate),
//! the StoreAPI it serves over its TSDBs (`store`) nor object storage (`objstore`).

pub mod config;
pub mod error;
pub mod grpc_codec;
pub mod grpc_snappy;
pub mod grpc_write;
pub mod handoff;
pub mod hashring;
pub mod http;
pub mod ingest;
pub mod limits;
pub mod metrics;
pub mod replicate;
pub mod server;
pub mod status;
pub mod tenants;
pub mod writer;

pub use config::ReceiveConfig;
pub use error::{ConfigError, IngestError, StatusClass};
pub use ingest::Receiver;
