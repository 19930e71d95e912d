//! The remote-write receiver of one node.
//!
//! Owns the HTTP front door (`POST /api/v1/receive`, Remote Write 1.0 and 2.0), tenant
//! resolution, validation with the status codes remote-write clients act on, the per-tenant
//! TSDBs and their maintenance (block cuts, retention), and the receiver's metrics.
//!
//! Does not own the storage format (the `tsdb` crate) nor the wire decoding (the `proto`
//! crate). Hashring routing and replication, TLS, authentication and the limits file are not
//! here yet.

pub mod auth;
pub mod config;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod tenants;
pub mod tls;
pub mod writer;

pub use config::ReceiveConfig;
