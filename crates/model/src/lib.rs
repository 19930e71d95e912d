//! The vocabulary every Cairn layer shares, in Prometheus' own terms.
//!
//! Owns the types and grammars that more than one layer speaks, so each exists once:
//! [`labels`] (a series' identity and its ordering), [`matcher`] (label matchers with their
//! compiled regexes), the stale marker, [`duration`] (Prometheus' duration grammar),
//! [`dedup`] (merging a series' replicas), [`histogram`] (native histograms as stored and
//! sent), [`time`] (civil dates and RFC 3339 timestamps in milliseconds), [`glob`] (Go's
//! `filepath.Match` patterns) and [`yaml`] (configuration files, alias expansion bounded).
//!
//! It owns no storage, no wire format and no I/O: `tsdb` builds postings lookups on these
//! types, `promql` evaluates with them, the services above pass them along.

pub mod dedup;
pub mod duration;
pub mod glob;
pub mod histogram;
pub mod labels;
pub mod matcher;
pub mod time;
pub mod yaml;

pub use labels::{Label, Labels};
pub use matcher::{MatchType, Matcher};

/// The NaN bit pattern Prometheus uses to mark a series stale (`value.StaleNaN`).
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// A stale marker value.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// True if `v` is Prometheus' staleness marker (not just any NaN).
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}
