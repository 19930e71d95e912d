use std::path::Path;

use super::ChunkMeta;
use crate::{Labels, Result};

pub struct IndexReader {}

impl IndexReader {
    pub fn open(_path: &Path) -> Result<Self> {
        todo!()
    }
    /// Series refs holding `name="value"`, ascending; empty when absent.
    pub fn postings(&self, _name: &str, _value: &str) -> Result<Vec<u32>> {
        todo!()
    }
    pub fn all_postings(&self) -> Result<Vec<u32>> {
        todo!()
    }
    pub fn label_names(&self) -> Result<Vec<String>> {
        todo!()
    }
    pub fn label_values(&self, _name: &str) -> Result<Vec<String>> {
        todo!()
    }
    /// Labels and chunk metas of one series.
    pub fn series(&self, _series_ref: u32) -> Result<(Labels, Vec<ChunkMeta>)> {
        todo!()
    }
    /// Size of the index file in bytes.
    pub fn size(&self) -> u64 {
        todo!()
    }
}
