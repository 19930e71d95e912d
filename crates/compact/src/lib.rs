//! The compactor's decisions, as Thanos' `pkg/compact` makes them, over the views that
//! `objstore::fetcher` builds:
//!
//! - [`group`]: which blocks may be compacted together (same resolution and external labels
//!   after replica-label removal: Thanos' group key `"<resolution>@<labels hash>"`).
//! - [`planner`]: which blocks of a group to compact next (Thanos' `tsdbBasedPlanner` over the
//!   ranges 2h, 8h, 2d, 14d, with no-compact marks and the large-total-index-size filter).
//! - [`meta`]: the meta.json of the block a compaction produces.
//!
//! It does not own block formats or the merge of series (the `tsdb` crate), the bucket, the
//! marker files or the fetcher (the `objstore` crate), nor the loop that runs compactions and
//! its flags (`cairn compact`).

pub mod group;
pub mod meta;
pub mod planner;
