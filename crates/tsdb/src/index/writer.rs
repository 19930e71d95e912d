use std::collections::BTreeSet;
use std::path::Path;

use super::ChunkMeta;
use crate::{Labels, Result};

pub struct IndexWriter {}

impl IndexWriter {
    pub fn create(_path: &Path, _symbols: &BTreeSet<String>) -> Result<Self> {
        todo!()
    }
    /// Adds the next series; returns its series ref (offset / 16).
    pub fn add_series(&mut self, _labels: &Labels, _chunks: &[ChunkMeta]) -> Result<u32> {
        todo!()
    }
    pub fn finish(self) -> Result<()> {
        todo!()
    }
}
