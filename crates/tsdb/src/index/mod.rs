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
//!
//! Details settled by the implementation:
//! - Given the same symbols and series, the writer's output is byte-identical to Prometheus
//!   2.42's (checked against `promtool tsdb create-blocks-from` in the tests), including where
//!   the TOC points (section starts before alignment padding).
//! - The writer rejects (with [`crate::Error::Invalid`]) empty label sets (as Prometheus does),
//!   empty label names (they would collide with the all-postings key), label sets not strictly
//!   after the previous one, and strings missing from the symbol table. Chunk metas are stored
//!   as given; time and ref deltas use wrapping arithmetic exactly like Prometheus, so any
//!   values round-trip.
//! - The reader rejects format version 1. It never reads label indices or the label offset
//!   table. Damage is reported as [`crate::Error::Corruption`] with the file and offset.
//! - Memory: the writer keeps the symbols (one string plus 4 bytes per symbol) and the postings
//!   (`Vec<u32>` per pair); the reader keeps 4 bytes per symbol, the label names, and 24 bytes
//!   per (name, value) pair, with strings decoded from the map on use.

pub mod enc;
mod reader;
mod writer;

#[cfg(test)]
mod promtool_tests;
#[cfg(test)]
mod tests;

pub use reader::IndexReader;
pub use writer::IndexWriter;

/// Where a chunk lives and what time range it covers (both bounds inclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkMeta {
    pub min_time: i64,
    pub max_time: i64,
    pub chunk_ref: u64,
}

/// A series entry's symbol refs as (label name ref, label value ref) pairs, in stored order.
pub type LabelRefs = Vec<(u32, u32)>;

/// Decodes the body of a series entry (what sits between its uvarint length and its CRC)
/// without resolving symbols: the (name ref, value ref) pairs in stored order, then the chunk
/// metas. `body_off` is the body's absolute file offset, so errors can name where they stopped.
/// Time and ref deltas use wrapping arithmetic, like the writer.
pub fn decode_series_body(
    body: &[u8],
    body_off: u64,
) -> enc::DecResult<(LabelRefs, Vec<ChunkMeta>)> {
    let mut b = enc::Decoder::new(body, body_off);
    let n = b.uvarint("label count")?;
    // Each pair takes at least two bytes, so a hostile count cannot make us allocate more.
    let mut refs = Vec::with_capacity((n as usize).min(body.len() / 2));
    for _ in 0..n {
        let name_ref = b.uvarint32("label name ref")?;
        let value_ref = b.uvarint32("label value ref")?;
        refs.push((name_ref, value_ref));
    }

    let n = b.uvarint("chunk count")?;
    // Each chunk meta takes at least three bytes.
    let mut chunks = Vec::with_capacity((n as usize).min(b.remaining() / 3));
    if n > 0 {
        let min_time = b.varint("chunk min time")?;
        let max_time = min_time.wrapping_add(b.uvarint("chunk max time")? as i64);
        let chunk_ref = b.uvarint("chunk ref")?;
        chunks.push(ChunkMeta {
            min_time,
            max_time,
            chunk_ref,
        });
        let (mut prev_maxt, mut prev_ref) = (max_time, chunk_ref);
        for _ in 1..n {
            let min_time = prev_maxt.wrapping_add(b.uvarint("chunk min time")? as i64);
            let max_time = min_time.wrapping_add(b.uvarint("chunk max time")? as i64);
            let chunk_ref = prev_ref.wrapping_add(b.varint("chunk ref")? as u64);
            chunks.push(ChunkMeta {
                min_time,
                max_time,
                chunk_ref,
            });
            prev_maxt = max_time;
            prev_ref = chunk_ref;
        }
    }
    Ok((refs, chunks))
}

/// Magic number at the start of an index file.
pub const MAGIC_INDEX: u32 = 0xBAAA_D700;
/// Index format version written and read.
pub const FORMAT_V2: u8 = 2;

/// Bytes before the symbol table: magic and version.
pub const HEADER_LEN: usize = 5;
/// Size of the table of contents at the end of the file: six offsets and a CRC.
pub const TOC_LEN: usize = 6 * 8 + 4;

/// Table of contents: where each section starts (0 = absent).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Toc {
    pub symbols: u64,
    pub series: u64,
    pub label_indices: u64,
    pub label_offset_table: u64,
    pub postings: u64,
    pub postings_offset_table: u64,
}

impl Toc {
    fn fields(&self) -> [u64; 6] {
        [
            self.symbols,
            self.series,
            self.label_indices,
            self.label_offset_table,
            self.postings,
            self.postings_offset_table,
        ]
    }

    /// The 52 bytes that end an index file.
    pub fn encode(&self) -> [u8; TOC_LEN] {
        let mut out = [0u8; TOC_LEN];
        for (i, v) in self.fields().iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&v.to_be_bytes());
        }
        let crc = enc::crc32c(&out[..48]);
        out[48..].copy_from_slice(&crc.to_be_bytes());
        out
    }

    /// Parses the 52 TOC bytes; `None` if the CRC does not match.
    pub fn decode(b: &[u8; TOC_LEN]) -> Option<Toc> {
        let stored = u32::from_be_bytes([b[48], b[49], b[50], b[51]]);
        if enc::crc32c(&b[..48]) != stored {
            return None;
        }
        let f = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i * 8..i * 8 + 8]);
            u64::from_be_bytes(a)
        };
        Some(Toc {
            symbols: f(0),
            series: f(1),
            label_indices: f(2),
            label_offset_table: f(3),
            postings: f(4),
            postings_offset_table: f(5),
        })
    }
}
