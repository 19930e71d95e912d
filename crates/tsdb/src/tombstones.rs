//! The `tombstones` file of a block (Prometheus format): deleted time ranges per series.
//!
//! Contract: `write_tombstones(path, &[])` writes the 9-byte empty file Prometheus writes;
//! `read_tombstones(path)` returns `(series ref, mint, maxt)` entries.

use std::path::Path;

use crate::Result;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tombstone {
    pub series_ref: u64,
    pub min_time: i64,
    pub max_time: i64,
}

pub fn write_tombstones(_path: &Path, _stones: &[Tombstone]) -> Result<()> {
    todo!()
}

pub fn read_tombstones(_path: &Path) -> Result<Vec<Tombstone>> {
    todo!()
}
