//! The compactor's decisions, as Thanos' `pkg/compact` makes them, over the views that
//! `objstore::fetcher` builds:
//!
//! - [`group`]: which blocks may be compacted together (same resolution and external labels
//!   after replica-label removal: Thanos' group key `"<resolution>@<labels hash>"`).
//! - [`planner`]: which blocks of a group to compact next (Thanos' `tsdbBasedPlanner` over the
//!   ranges 2h, 8h, 2d, 14d, with no-compact marks and the large-total-index-size filter).
//! - [`meta`]: the meta.json of the block a compaction produces.
//! - [`downsample`]: 5m and 1h aggregate blocks from raw and 5m blocks (Thanos' downsampling).
//! - [`compactor`]: one iteration over the bucket: sync, compact every group until done,
//!   retention, deletion of marked blocks.
//! - [`server`]: `cairn compact`'s composition root: the iteration loop (`--wait`), the halt
//!   state and the HTTP endpoints.
//!
//! It does not own block formats or the merge of series (the `tsdb` crate), the bucket, the
//! marker files or the fetcher (the `objstore` crate), nor the command line (`cairn compact`).

pub mod compactor;
pub mod downsample;
pub mod group;
pub mod meta;
pub mod metrics;
pub mod planner;
pub mod server;
