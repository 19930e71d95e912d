//! The remote-write receiver of one node.
//!
//! Owns the HTTP front door (`POST /api/v1/receive`, Remote Write 1.0 and 2.0), tenant
//! resolution, validation with the status codes remote-write clients act on, the per-tenant
//! TSDBs and their maintenance (block cuts, retention), and the receiver's metrics.
//!
//! Does not own the storage format (the `tsdb` crate) nor the wire decoding (the `proto`
//! crate). The hashrings file and series placement are here ([`hashring`]); routing writes
//! to their owners and replication are not yet.

pub mod auth;
pub mod config;
pub mod grpc_snappy;
pub mod grpc_write;
pub mod handoff;
pub mod hashring;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod replicate;
pub mod tenants;
pub mod tls;
pub mod writer;

pub use config::ReceiveConfig;
