//! Cairn's PromQL engine.
//!
//! What this crate owns:
//! - evaluation of PromQL with Prometheus 3 semantics (lookback delta, staleness markers,
//!   left-open range selectors, `offset`, `@`, subqueries, aggregations, binary operators with
//!   vector matching, the function library, delayed `__name__` removal), for instant and range
//!   queries ([`Engine`]);
//! - the storage contract it evaluates against ([`Queryable`], [`Matcher`], [`SelectHints`]) and
//!   an in-memory implementation ([`MemoryStorage`]);
//! - limits: max samples per query, timeout, cancellation ([`CancelToken`]);
//! - pushing matchers, time bounds and hints (function, range, step, grouping) down to storage;
//! - parse errors as Prometheus reports them, `line:col: parse error: ...` (worked out only when
//!   `promql-parser` rejects a query, by re-reading it the way Prometheus' lexer, grammar and
//!   type check do);
//!
//! What it does not own: parsing (done by the `promql-parser` crate, wrapped in [`parse`]),
//! the on-disk TSDB, HTTP/gRPC APIs.
//!
//! What is used from the `tsdb` crate: its label types ([`tsdb::Labels`]), and its error type
//! as the possible source of a [`StorageError`].

// Step loops index several per-step arrays at once; iterators would obscure that.
#![allow(clippy::needless_range_loop)]

mod aggregate;
mod binary;
mod diag;
mod engine;
mod error;
mod eval;
mod functions;
mod histogram;
mod memory;
mod parser;
mod planner;
mod storage;
mod trim;
mod value;

pub use engine::{Engine, EngineOpts};
pub use error::{Error, Result, StorageError, StorageErrorKind};
pub use eval::selector_matchers;
pub use eval::CancelToken;
pub use histogram::{Bucket, CounterResetHint, FloatHistogram, CUSTOM_BUCKETS_SCHEMA};
pub use memory::MemoryStorage;
pub use parser::{parse, query_selectors};
pub use promql_parser;
pub use promql_parser::parser::Expr;
pub use storage::{
    is_stale_nan, stale_nan, MatchType, Matcher, ParSeriesSink, Queryable, Sample, SelectHints,
    Series, SeriesSink, STALE_NAN_BITS,
};
pub use value::{Annotations, InstantSample, QueryResult, QueryValue, RangeSeries};
