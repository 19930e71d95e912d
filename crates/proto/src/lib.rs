//! Wire formats Cairn speaks.
//!
//! [`remote_write`] decodes Prometheus Remote Write 1.0 (`prometheus.WriteRequest`) and 2.0
//! (`io.prometheus.write.v2.Request`) request bodies (after snappy) without copying label
//! strings: labels borrow from the request buffer, which is what lets a receiver decode millions
//! of samples a second per core. It also encodes requests, for clients, tests and benchmarks.
//!
//! It does not own HTTP, snappy or validation: the receiver does those.

pub mod remote_write;
mod wire;
