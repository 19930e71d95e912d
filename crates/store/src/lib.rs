//! The Thanos StoreAPI over Cairn TSDBs.
//!
//! [`TsdbStore`] serves `thanos.Store` (Series, LabelNames, LabelValues), `thanos.Exemplars` and
//! `thanos.info.Info`
//! over the TSDBs a [`TsdbSource`] lists, each with its external labels (for a receiver: one
//! TSDB per tenant, external labels = `--label` flags + `tenant_id`). A querier that speaks
//! Thanos' gRPC (Thanos Query, or Cairn's own) can read a Cairn receiver through it.
//!
//! What a request sees:
//! - Every series carries its TSDB's external labels (they win over a series label of the same
//!   name, as in Thanos). Series are streamed sorted by that full label set; series from
//!   different TSDBs that end up with the same labels are merged into one.
//! - A matcher on an external label name decides whether a TSDB takes part at all and is not
//!   passed to the TSDB: `{tenant_id="a", job="x"}` selects `job="x"` in tenant a's TSDB only.
//! - `without_replica_labels` drops those labels (external or not) before sorting and merging.
//! - Chunks are the TSDB's chunks (XOR, or native histogram chunks typed HISTOGRAM and
//!   FLOAT_HISTOGRAM), untrimmed (they may extend past the requested range).
//!
//! The crate owns the gRPC side only: listing the TSDBs is the owner's business (`receive`
//! can implement [`TsdbSource`] for its tenants), reading them is `tsdb`'s. See
//! `docs/components/store-api.md`.
//!
//! [`bucket`] holds the foundation of the store gateway (`cairn store`): reading blocks in a
//! bucket through Thanos' index-header and ranged GETs of their index and chunks.

use std::collections::BTreeMap;
use std::sync::Arc;

use tsdb::db::Db;

pub mod bucket;
mod exemplars;
pub mod gateway;
mod matchers;
mod query;
mod service;
pub mod tenancy;

pub use matchers::{convert_matchers, matchers_for_tsdb};
pub use query::Responses;
pub use service::{TsdbStore, COMPONENT_RECEIVE};

/// A TSDB's external labels, by name.
pub type ExternalLabels = BTreeMap<String, String>;

/// The TSDBs a [`TsdbStore`] serves. Asked once per request, so TSDBs may come and go (a tenant's
/// TSDB opens on its first write).
pub trait TsdbSource: Send + Sync + 'static {
    /// Every TSDB to serve, with its external labels.
    fn tsdbs(&self) -> Vec<(ExternalLabels, Arc<Db>)>;
}

/// A fixed set of TSDBs.
impl TsdbSource for Vec<(ExternalLabels, Arc<Db>)> {
    fn tsdbs(&self) -> Vec<(ExternalLabels, Arc<Db>)> {
        self.clone()
    }
}

/// A function that lists the TSDBs.
impl<F> TsdbSource for F
where
    F: Fn() -> Vec<(ExternalLabels, Arc<Db>)> + Send + Sync + 'static,
{
    fn tsdbs(&self) -> Vec<(ExternalLabels, Arc<Db>)> {
        self()
    }
}

impl<T: TsdbSource + ?Sized> TsdbSource for Arc<T> {
    fn tsdbs(&self) -> Vec<(ExternalLabels, Arc<Db>)> {
        (**self).tsdbs()
    }
}

/// The time range a TSDB advertises, as Thanos receivers do: from its oldest sample (the oldest
/// block's start, or the head's oldest sample; `i64::MAX` when it holds nothing) to `i64::MAX`,
/// since newer samples may arrive at any moment.
pub fn time_range(db: &Db) -> (i64, i64) {
    let head = db.head().min_time();
    let blocks = db.blocks().iter().map(|b| b.meta().min_time).min();
    (blocks.map_or(head, |b| b.min(head)), i64::MAX)
}
