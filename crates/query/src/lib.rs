//! The query layer: storage adapters for the PromQL engine; later fan-out, dedup and the HTTP API.
//!
//! What this crate owns today:
//! - [`TsdbQueryable`], which lets the PromQL engine ([`promql::Engine`]) evaluate over anything
//!   that implements the TSDB's read interface ([`tsdb::querier::Querier`]: the head, a block,
//!   or their merge).
//!
//! What it does not own: PromQL evaluation (the `promql` crate) and storage (the `tsdb` crate).

mod tsdb_queryable;

pub use tsdb_queryable::{to_tsdb_matcher, TsdbQueryable};
