//! The block index, format v2 (Prometheus `tsdb/docs/format/index.md`).
//!
//! Contract:
//! - `IndexWriter::create(path, symbols)` where `symbols` holds every label name and value that
//!   will appear; then `add_series(&labels, &chunks)` in ascending label-set order (the writer
//!   errors on unsorted input); `finish()` writes postings (the all-postings list keyed ("", "")
//!   first, then every (name, value) in sorted order), the postings offset table and the TOC,
//!   and fsyncs. Label indices and the label offset table are written too (Prometheus 2.42
//!   readers ignore them but `promtool` versions of that age expect a complete file).
//! - `IndexReader::open(path)` mmaps and validates the TOC and CRCs of the tables it reads;
//!   `postings(name, value)` returns series refs ascending; `all_postings()`;
//!   `label_names()` sorted; `label_values(name)` sorted; `series(ref)` returns labels and
//!   chunk metas. Reads indexes written by Prometheus 2.42 and Thanos as well as its own.

mod reader;
mod writer;

pub use reader::IndexReader;
pub use writer::IndexWriter;

/// Where a chunk lives and what time range it covers (both bounds inclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkMeta {
    pub min_time: i64,
    pub max_time: i64,
    pub chunk_ref: u64,
}

/// Magic number at the start of an index file.
pub const MAGIC_INDEX: u32 = 0xBAAA_D700;
/// Index format version written and read.
pub const FORMAT_V2: u8 = 2;
