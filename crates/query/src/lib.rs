//! The query layer: what `cairn query` is made of, and storage adapters for the PromQL engine.
//!
//! What this crate owns:
//! - the endpoint set ([`endpoints`]): StoreAPI endpoints from flags and file SD ([`sd`]),
//!   their Info (label sets, time range) and health, and routing by time and external labels;
//! - the fan-out ([`fanout`]): Series, LabelNames and LabelValues to every endpoint that can
//!   answer, in parallel, with time-outs and partial responses;
//! - replica de-duplication ([`dedup`], [`series_set`]): series that differ only in replica
//!   labels merged with Thanos' penalty algorithm and counter adjustment;
//! - reading downsampled data ([`downsample`]): which aggregates a select asks for and how
//!   they become samples;
//! - [`FanoutQueryable`], which lets the PromQL engine ([`promql::Engine`]) evaluate over the
//!   fan-out, and [`TsdbQueryable`], which lets it evaluate over a local TSDB
//!   ([`tsdb::querier::Querier`]: the head, a block, or their merge);
//! - the cluster view ([`cluster`]): every receiver's own report of its series, hint queues,
//!   replication and shipper backlog, merged per hashring member;
//! - the Prometheus HTTP API with Thanos' parameters ([`api`]), the UI routes ([`ui`]) and the
//!   server that runs them ([`server`]).
//!
//! What it does not own: PromQL evaluation (the `promql` crate), storage (`tsdb`), the
//! StoreAPI server (`store`), the command line (`cairn`). See `docs/components/query.md`.

pub mod api;
pub mod cluster;
pub mod dedup;
pub mod downsample;
pub mod endpoints;
pub mod error;
pub mod fanout;
mod fanout_queryable;
pub mod metrics;
pub mod sd;
pub mod series_set;
pub mod server;
mod tsdb_queryable;
pub mod ui;

pub use fanout_queryable::{DedupFunc, FanoutQueryable, ReadOptions};
pub use server::{run, serve, QueryConfig};
pub use tsdb_queryable::TsdbQueryable;
