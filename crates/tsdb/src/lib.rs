//! Cairn's storage engine: a Prometheus-compatible time-series database.
//!
//! It owns everything between "a sample was accepted" and "a block sits on disk": the XOR chunk
//! encoding ([`chunkenc`]), chunk segment files ([`chunks`]), the index format v2 ([`index`]),
//! tombstones, block `meta.json` ([`meta`]), the write-ahead log ([`wal`]), the in-memory head
//! ([`head`]), block writing and reading ([`block`]), the querier that merges head and blocks
//! ([`querier`]), compaction of blocks into one ([`compact`]) and the database that ties them together with cutting and retention ([`db`]).
//!
//! It does not own networking, object storage or PromQL: those crates sit above it and use the
//! [`querier::Querier`] interface and the [`db::Db`] handle.
//!
//! Formats on disk are Prometheus' (blocks readable by `promtool` and Prometheus 2.42, and blocks
//! written by them readable here); the WAL is Cairn's own, see [`wal`].

pub mod block;
pub mod chunkenc;
pub mod chunks;
pub mod compact;
pub mod db;
pub mod error;
pub mod exemplars;
pub mod head;
pub mod index;
pub mod matcher;
pub mod meta;
pub mod querier;
pub mod record_log;
pub mod select;
pub mod tombstones;
pub mod wal;

pub use error::{Error, Result};
/// Labels are the model layer's; re-exported so `tsdb::labels::...` and `tsdb::labels!` read
/// naturally where series are stored.
pub use model::labels;
pub use model::{is_stale_nan, stale_nan, Label, Labels, STALE_NAN_BITS};

/// A float sample: timestamp in milliseconds since the epoch, and value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub t: i64,
    pub v: f64,
}

impl model::dedup::ReplicaSample for Sample {
    fn t(&self) -> i64 {
        self.t
    }

    fn float(&self) -> Option<f64> {
        Some(self.v)
    }

    fn add(&mut self, delta: f64) {
        self.v += delta;
    }
}
