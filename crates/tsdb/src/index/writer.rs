//! Writes an index file in format v2, laid out the way Prometheus 2.42's `index.Writer` lays it
//! out: header, symbol table, 16-byte aligned series, label indices, postings, label offset
//! table, postings offset table, TOC. Given the same symbols and series the bytes are identical
//! to what Prometheus writes.
//!
//! Unlike Prometheus, which re-reads the series section from disk to build postings, this writer
//! collects postings in memory while series are added: one `Vec<u32>` of series refs per
//! (name, value) pair, keyed by the pair's symbol indices.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::enc::{crc32c, put_uvarint, put_varint, uvarint_len};
use super::{ChunkMeta, Toc, FORMAT_V2, MAGIC_INDEX};
use crate::error::IoContext;
use crate::{Error, Labels, Result};

const WRITE_BUFFER: usize = 1 << 20;
/// Refs encoded per write when copying a postings list out.
const POSTINGS_CHUNK: usize = 1 << 14;
/// Bytes of offset-table entries buffered per write.
const TABLE_CHUNK: usize = 1 << 16;

/// The sorted symbol table, kept as one string plus offsets to stay compact.
struct Symbols {
    data: String,
    /// `starts[i]..starts[i + 1]` is symbol `i` in `data`; one extra entry at the end.
    starts: Vec<u32>,
}

impl Symbols {
    fn len(&self) -> usize {
        self.starts.len() - 1
    }

    fn get(&self, i: usize) -> &str {
        &self.data[self.starts[i] as usize..self.starts[i + 1] as usize]
    }

    /// Appends symbol `i` as a uvarint-prefixed string.
    fn put(&self, buf: &mut Vec<u8>, i: u32) {
        let s = self.get(i as usize);
        put_uvarint(buf, s.len() as u64);
        buf.extend_from_slice(s.as_bytes());
    }

    /// Index of `s` in the sorted table.
    fn lookup(&self, s: &str) -> Option<u32> {
        let (mut lo, mut hi) = (0usize, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.get(mid).cmp(s) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid as u32),
            }
        }
        None
    }
}

/// Writes one index file. See the [module docs](super) for the call sequence.
pub struct IndexWriter {
    path: PathBuf,
    out: BufWriter<File>,
    /// Bytes written so far (the file position of the next write).
    pos: u64,
    toc: Toc,
    symbols: Symbols,
    last_series: Option<Labels>,
    /// Series refs of every series, in order.
    all_postings: Vec<u32>,
    /// (name symbol, value symbol) -> series refs, ascending.
    postings: HashMap<(u32, u32), Vec<u32>>,
    /// Reusable buffers: a series body, and its symbol refs.
    body: Vec<u8>,
    refs: Vec<(u32, u32)>,
}

impl IndexWriter {
    /// Creates (or truncates) the file at `path` and writes the header and the symbol table.
    /// `symbols` must hold every label name and value of the series that will be added.
    pub fn create(path: &Path, symbols: &BTreeSet<String>) -> Result<Self> {
        let mut data = String::new();
        let mut starts = Vec::with_capacity(symbols.len() + 1);
        starts.push(0u32);
        // The section's len field covers the symbol count and the entries.
        let mut table_len: u64 = 4;
        for s in symbols {
            data.push_str(s);
            table_len += (uvarint_len(s.len() as u64) + s.len()) as u64;
            let end = u32::try_from(data.len())
                .ok()
                .filter(|_| table_len <= u64::from(u32::MAX));
            let Some(end) = end else {
                return Err(Error::Invalid(format!(
                    "symbol table for {} exceeds 4 GiB",
                    path.display()
                )));
            };
            starts.push(end);
        }
        let count = u32::try_from(symbols.len())
            .map_err(|_| Error::Invalid("more than 2^32 symbols".into()))?;

        let file = File::create(path).ctx(|| format!("creating index {}", path.display()))?;
        let mut w = IndexWriter {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(WRITE_BUFFER, file),
            pos: 0,
            toc: Toc::default(),
            symbols: Symbols { data, starts },
            last_series: None,
            all_postings: Vec::new(),
            postings: HashMap::new(),
            body: Vec::new(),
            refs: Vec::new(),
        };

        let mut header = MAGIC_INDEX.to_be_bytes().to_vec();
        header.push(FORMAT_V2);
        w.write(&header)?;

        w.toc.symbols = w.pos;
        w.write(&(table_len as u32).to_be_bytes())?;
        let count_bytes = count.to_be_bytes();
        let mut crc = crc32c(&count_bytes);
        w.write(&count_bytes)?;
        let mut buf = Vec::with_capacity(64 * 1024);
        for s in symbols {
            put_uvarint(&mut buf, s.len() as u64);
            buf.extend_from_slice(s.as_bytes());
            if buf.len() >= 32 * 1024 {
                crc = crc32c::crc32c_append(crc, &buf);
                w.write(&buf)?;
                buf.clear();
            }
        }
        crc = crc32c::crc32c_append(crc, &buf);
        w.write(&buf)?;
        w.write(&crc.to_be_bytes())?;
        w.toc.series = w.pos;
        Ok(w)
    }

    fn write(&mut self, b: &[u8]) -> Result<()> {
        self.out
            .write_all(b)
            .ctx(|| format!("writing index {}", self.path.display()))?;
        self.pos += b.len() as u64;
        Ok(())
    }

    /// Zero bytes up to the next multiple of `align`.
    fn pad(&mut self, align: u64) -> Result<()> {
        let rem = self.pos % align;
        if rem != 0 {
            let zeros = [0u8; 16];
            self.write(&zeros[..(align - rem) as usize])?;
        }
        Ok(())
    }

    /// Adds the next series; returns its series ref (offset / 16).
    ///
    /// Series must come in strictly ascending label-set order, must have at least one label,
    /// no empty label names, and every name and value must be in the symbol table. Chunk metas
    /// are stored as given (deltas use wrapping arithmetic, as in Prometheus).
    pub fn add_series(&mut self, labels: &Labels, chunks: &[ChunkMeta]) -> Result<u32> {
        if labels.is_empty() {
            return Err(Error::Invalid(
                "index: a series must have at least one label".into(),
            ));
        }
        if let Some(last) = &self.last_series {
            if labels <= last {
                return Err(Error::Invalid(format!(
                    "index: out-of-order series {labels} added after {last}"
                )));
            }
        }
        // Resolve symbols before writing anything, so a rejected series leaves no trace.
        self.refs.clear();
        let mut prev_name: Option<&str> = None;
        for l in labels {
            if l.name.is_empty() {
                return Err(Error::Invalid(format!(
                    "index: series {labels} has an empty label name"
                )));
            }
            if prev_name.is_some_and(|p| p >= &*l.name) {
                return Err(Error::Invalid(format!(
                    "index: labels of series {labels} are not sorted by name or repeat a name"
                )));
            }
            prev_name = Some(&l.name);
            let missing = |s: &str| {
                Error::Invalid(format!(
                    "index: symbol {s:?} of series {labels} is not in the symbol table"
                ))
            };
            let n = self
                .symbols
                .lookup(&l.name)
                .ok_or_else(|| missing(&l.name))?;
            let v = self
                .symbols
                .lookup(&l.value)
                .ok_or_else(|| missing(&l.value))?;
            self.refs.push((n, v));
        }

        let mut body = std::mem::take(&mut self.body);
        body.clear();
        put_uvarint(&mut body, self.refs.len() as u64);
        for &(n, v) in &self.refs {
            put_uvarint(&mut body, u64::from(n));
            put_uvarint(&mut body, u64::from(v));
        }
        put_uvarint(&mut body, chunks.len() as u64);
        if let Some((first, rest)) = chunks.split_first() {
            put_varint(&mut body, first.min_time);
            put_uvarint(
                &mut body,
                first.max_time.wrapping_sub(first.min_time) as u64,
            );
            put_uvarint(&mut body, first.chunk_ref);
            let mut prev_maxt = first.max_time;
            let mut prev_ref = first.chunk_ref;
            for c in rest {
                put_uvarint(&mut body, c.min_time.wrapping_sub(prev_maxt) as u64);
                put_uvarint(&mut body, c.max_time.wrapping_sub(c.min_time) as u64);
                put_varint(&mut body, c.chunk_ref.wrapping_sub(prev_ref) as i64);
                prev_maxt = c.max_time;
                prev_ref = c.chunk_ref;
            }
        }
        let result = self.write_series_entry(&body);
        self.body = body;
        let series_ref = result?;

        self.all_postings.push(series_ref);
        for &key in &self.refs {
            self.postings.entry(key).or_default().push(series_ref);
        }
        self.last_series = Some(labels.clone());
        Ok(series_ref)
    }

    fn write_series_entry(&mut self, body: &[u8]) -> Result<u32> {
        if body.len() > u32::MAX as usize {
            return Err(Error::Invalid("index: series entry exceeds 4 GiB".into()));
        }
        self.pad(16)?;
        let series_ref = u32::try_from(self.pos / 16).map_err(|_| {
            Error::Invalid(format!(
                "index {} exceeds 64 GiB: series refs no longer fit in 32 bits",
                self.path.display()
            ))
        })?;
        let mut len = Vec::with_capacity(5);
        put_uvarint(&mut len, body.len() as u64);
        self.write(&len)?;
        self.write(body)?;
        self.write(&crc32c(body).to_be_bytes())?;
        Ok(series_ref)
    }

    /// Writes label indices, postings, the offset tables and the TOC, then flushes and fsyncs.
    pub fn finish(mut self) -> Result<()> {
        let mut keys: Vec<(u32, u32)> = self.postings.keys().copied().collect();
        // Symbol indices follow string order, so this is (name, value) order.
        keys.sort_unstable();

        // Label indices: one per name, listing the symbol refs of its values.
        self.toc.label_indices = self.pos;
        let mut label_index_offsets: Vec<(u32, u64)> = Vec::new();
        let mut values: Vec<u32> = Vec::new();
        for (i, &(name, value)) in keys.iter().enumerate() {
            values.push(value);
            if keys.get(i + 1).is_none_or(|next| next.0 != name) {
                self.pad(4)?;
                label_index_offsets.push((name, self.pos));
                let len = 4 + 4 + 4 * values.len() as u64;
                let mut buf = Vec::with_capacity(len as usize + 8);
                buf.extend_from_slice(&(len as u32).to_be_bytes());
                buf.extend_from_slice(&1u32.to_be_bytes());
                buf.extend_from_slice(&(values.len() as u32).to_be_bytes());
                for v in &values {
                    buf.extend_from_slice(&v.to_be_bytes());
                }
                let crc = crc32c(&buf[4..]);
                buf.extend_from_slice(&crc.to_be_bytes());
                self.write(&buf)?;
                values.clear();
            }
        }

        // Postings: all series first, then every pair in order.
        self.toc.postings = self.pos;
        self.pad(4)?;
        let all = std::mem::take(&mut self.all_postings);
        let all_offset = self.pos;
        self.write_postings_list(&all)?;
        drop(all);
        let mut postings_offsets: Vec<u64> = Vec::with_capacity(keys.len());
        for key in &keys {
            let list = self.postings.remove(key).unwrap_or_default();
            self.pad(4)?;
            postings_offsets.push(self.pos);
            self.write_postings_list(&list)?;
        }

        // Label offset table: (1, name, offset of its label index) per name.
        self.toc.label_offset_table = self.pos;
        let entries_len: u64 = label_index_offsets
            .iter()
            .map(|&(name, off)| 1 + self.symbol_entry_len(name) + uvarint_len(off) as u64)
            .sum();
        self.write_table(label_index_offsets.len(), entries_len, |syms, i, buf| {
            let (name, off) = label_index_offsets[i];
            put_uvarint(buf, 1);
            syms.put(buf, name);
            put_uvarint(buf, off);
        })?;

        // Postings offset table: (2, name, value, offset of its postings list) per pair,
        // starting with the all-postings key ("", "").
        self.toc.postings_offset_table = self.pos;
        let entries_len: u64 = 3
            + uvarint_len(all_offset) as u64
            + keys
                .iter()
                .zip(&postings_offsets)
                .map(|(&(name, value), &off)| {
                    1 + self.symbol_entry_len(name)
                        + self.symbol_entry_len(value)
                        + uvarint_len(off) as u64
                })
                .sum::<u64>();
        self.write_table(keys.len() + 1, entries_len, |syms, i, buf| {
            put_uvarint(buf, 2);
            if i == 0 {
                put_uvarint(buf, 0);
                put_uvarint(buf, 0);
                put_uvarint(buf, all_offset);
            } else {
                let (name, value) = keys[i - 1];
                syms.put(buf, name);
                syms.put(buf, value);
                put_uvarint(buf, postings_offsets[i - 1]);
            }
        })?;

        let toc = self.toc.encode();
        self.write(&toc)?;

        let path = self.path.clone();
        let file = self
            .out
            .into_inner()
            .map_err(|e| Error::io(format!("flushing index {}", path.display()), e.into_error()))?;
        file.sync_all()
            .ctx(|| format!("syncing index {}", path.display()))?;
        Ok(())
    }

    /// Encoded size of symbol `sym` as a uvarint-prefixed string.
    fn symbol_entry_len(&self, sym: u32) -> u64 {
        let n = self.symbols.get(sym as usize).len();
        (uvarint_len(n as u64) + n) as u64
    }

    /// Writes `len u32, count u32, entries, CRC(count + entries)`, where `encode(symbols, i,
    /// buf)` appends entry `i` and `entries_len` is the total size of all entries.
    fn write_table<F>(&mut self, count: usize, entries_len: u64, mut encode: F) -> Result<()>
    where
        F: FnMut(&Symbols, usize, &mut Vec<u8>),
    {
        let len = u32::try_from(4 + entries_len)
            .map_err(|_| Error::Invalid("index: offset table exceeds 4 GiB".into()))?;
        let count_bytes = u32::try_from(count)
            .map_err(|_| Error::Invalid("index: offset table has too many entries".into()))?
            .to_be_bytes();
        self.write(&len.to_be_bytes())?;
        self.write(&count_bytes)?;
        let mut crc = crc32c(&count_bytes);
        let start = self.pos;
        let mut buf = Vec::with_capacity(TABLE_CHUNK + 64);
        for i in 0..count {
            encode(&self.symbols, i, &mut buf);
            if buf.len() >= TABLE_CHUNK || i + 1 == count {
                crc = crc32c::crc32c_append(crc, &buf);
                self.write(&buf)?;
                buf.clear();
            }
        }
        debug_assert_eq!(self.pos - start, entries_len);
        self.write(&crc.to_be_bytes())
    }

    /// Writes `len u32 (= 4 + 4n), n u32, n refs u32, CRC(n + refs)`.
    fn write_postings_list(&mut self, refs: &[u32]) -> Result<()> {
        let len = u32::try_from(4 + 4 * refs.len() as u64)
            .map_err(|_| Error::Invalid("index: postings list exceeds 4 GiB".into()))?;
        let count = (refs.len() as u32).to_be_bytes();
        self.write(&len.to_be_bytes())?;
        self.write(&count)?;
        let mut crc = crc32c(&count);
        let mut buf = Vec::with_capacity(4 * refs.len().min(POSTINGS_CHUNK));
        for chunk in refs.chunks(POSTINGS_CHUNK) {
            buf.clear();
            for r in chunk {
                buf.extend_from_slice(&r.to_be_bytes());
            }
            crc = crc32c::crc32c_append(crc, &buf);
            self.write(&buf)?;
        }
        self.write(&crc.to_be_bytes())
    }
}
