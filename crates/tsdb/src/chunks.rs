//! Chunk segment files of a block: `chunks/000001`, `000002`, ... (Prometheus format).
//!
//! Contract: `ChunkWriter::create(dir)` writes segments into `dir` (the block's `chunks/`),
//! cutting a new segment before one would exceed 512 MiB; `write_chunk(encoding, data)` returns
//! the chunk ref ((segment index << 32) | offset of the length varint, segment index 0-based);
//! `finish()` fsyncs and closes. `ChunkReader::open(dir)` mmaps all segments, checks the header;
//! `chunk(ref)` returns `(encoding, data)` after verifying the CRC.

use std::path::Path;

use crate::Result;

pub const SEGMENT_MAX_BYTES: u64 = 512 * 1024 * 1024;

pub struct ChunkWriter {}

impl ChunkWriter {
    pub fn create(_dir: &Path) -> Result<Self> {
        todo!()
    }
    pub fn write_chunk(&mut self, _encoding: u8, _data: &[u8]) -> Result<u64> {
        todo!()
    }
    pub fn finish(self) -> Result<()> {
        todo!()
    }
}

pub struct ChunkReader {}

impl ChunkReader {
    pub fn open(_dir: &Path) -> Result<Self> {
        todo!()
    }
    pub fn chunk(&self, _chunk_ref: u64) -> Result<(u8, &[u8])> {
        todo!()
    }
    /// Total bytes of all segment files.
    pub fn size(&self) -> u64 {
        todo!()
    }
}
