//! Reads index files in format v2 (as written by Prometheus 2.x, Thanos and [`super::IndexWriter`]).
//!
//! The file is memory-mapped. Opening validates the header and the TOC, walks the symbol table
//! (remembering where each symbol starts; strings are decoded on use) and loads the postings
//! offset table into memory. Label indices and the label offset table are never read: recent
//! Prometheus versions leave them empty.
//!
//! Every read is bounds-checked and every CRC-carrying structure that is read is verified
//! (symbol table and postings offset table at open, series entries and postings lists on use),
//! so a truncated or damaged file yields [`Error::Corruption`] naming the file and the offset,
//! never a panic.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::ops::{Deref, Range};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

use super::enc::{crc32c, DecodeError, Decoder};
use super::{ChunkMeta, Toc, FORMAT_V2, HEADER_LEN, MAGIC_INDEX, TOC_LEN};
use crate::error::IoContext;
use crate::{Error, Label, Labels, Result};

/// The bytes of the file: mapped, or owned (for [`IndexReader::from_bytes`]).
enum Data {
    Mmap(Mmap),
    Owned(Vec<u8>),
}

impl Deref for Data {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Data::Mmap(m) => m,
            Data::Owned(v) => v,
        }
    }
}

/// One value of a label name in the postings offset table. The value string stays in the file.
#[derive(Clone, Copy)]
struct ValueEntry {
    /// File offset and length of the value's bytes.
    value_off: u64,
    value_len: u32,
    /// File offset of the postings list.
    postings_off: u64,
}

/// A label name and its values, ascending.
struct NameEntry {
    name: Arc<str>,
    values: Vec<ValueEntry>,
}

/// Error construction and section access shared by opening and reading.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    path: &'a Path,
    data: &'a [u8],
}

impl<'a> Ctx<'a> {
    fn corrupt(&self, offset: u64, detail: impl fmt::Display) -> Error {
        Error::corruption(self.path, format!("at offset {offset}: {detail}"))
    }

    fn decode_err(&self, what: &str, e: DecodeError) -> Error {
        self.corrupt(
            e.offset,
            format!("{what}: truncated or malformed {}", e.what),
        )
    }

    /// The body of a `len u32, body, CRC32C(body)` section at `off`, with the body's offset.
    fn section(&self, off: u64, what: &dyn Fn() -> String) -> Result<(&'a [u8], u64)> {
        let file_len = self.data.len() as u64;
        let len = match off.checked_add(4) {
            Some(end) if end <= file_len => {
                let o = off as usize;
                u32::from_be_bytes([
                    self.data[o],
                    self.data[o + 1],
                    self.data[o + 2],
                    self.data[o + 3],
                ])
            }
            _ => {
                return Err(self.corrupt(
                    off,
                    format!(
                        "{} starts beyond the end of the file ({file_len} bytes)",
                        what()
                    ),
                ))
            }
        };
        let body_start = off + 4;
        let body_end = body_start + u64::from(len);
        if body_end + 4 > file_len {
            return Err(self.corrupt(
                off,
                format!(
                    "{} of length {len} runs past the end of the file ({file_len} bytes)",
                    what()
                ),
            ));
        }
        let body = &self.data[body_start as usize..body_end as usize];
        let c = &self.data[body_end as usize..body_end as usize + 4];
        let stored = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        let computed = crc32c(body);
        if stored != computed {
            return Err(self.corrupt(
                off,
                format!(
                    "{}: checksum mismatch (stored {stored:#010x}, computed {computed:#010x})",
                    what()
                ),
            ));
        }
        Ok((body, body_start))
    }
}

/// A read-only view of one index file.
pub struct IndexReader {
    path: PathBuf,
    data: Data,
    toc: Toc,
    /// Series entries live in `[toc.series, series_end)`.
    series_end: u64,
    /// File offset of the first symbol entry and the end of the last.
    symbols_base: u64,
    symbols_end: u64,
    /// Start of each symbol entry, relative to `symbols_base`.
    symbol_offsets: Vec<u32>,
    /// Label names (including "" for the all-postings key) with their values, ascending.
    names: Vec<NameEntry>,
    /// Symbol ref -> shared string, for label names (few, and half of all lookups).
    name_symbols: HashMap<u32, Arc<str>>,
}

impl fmt::Debug for IndexReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IndexReader")
            .field("path", &self.path)
            .field("size", &self.data.len())
            .field("symbols", &self.symbol_offsets.len())
            .field("label_names", &self.names.len())
            .finish()
    }
}

impl IndexReader {
    /// Maps the file at `path` and validates header, TOC, symbol table and postings offset table.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).ctx(|| format!("opening index {}", path.display()))?;
        let len = file
            .metadata()
            .ctx(|| format!("reading metadata of index {}", path.display()))?
            .len();
        if len < (HEADER_LEN + TOC_LEN) as u64 {
            return Err(Error::corruption(
                path,
                format!("index file is {len} bytes, too small for a header and a TOC"),
            ));
        }
        // SAFETY: the map is read-only and index files are immutable once written: blocks are
        // never modified in place, only deleted (which keeps the mapping valid on Unix). As with
        // any mmap, a third party truncating the file while it is mapped would fault.
        let mmap =
            unsafe { Mmap::map(&file) }.ctx(|| format!("mapping index {}", path.display()))?;
        Self::parse(path.to_path_buf(), Data::Mmap(mmap))
    }

    /// Reads an index held in memory; `path` is only used in error messages.
    pub fn from_bytes(path: impl Into<PathBuf>, data: Vec<u8>) -> Result<Self> {
        Self::parse(path.into(), Data::Owned(data))
    }

    fn parse(path: PathBuf, data: Data) -> Result<Self> {
        let ctx = Ctx {
            path: &path,
            data: &data,
        };
        let file_len = data.len();
        if file_len < HEADER_LEN + TOC_LEN {
            return Err(ctx.corrupt(
                0,
                format!("index file is {file_len} bytes, too small for a header and a TOC"),
            ));
        }
        let magic = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
        if magic != MAGIC_INDEX {
            return Err(ctx.corrupt(
                0,
                format!("bad magic number {magic:#010x}, expected {MAGIC_INDEX:#010x}"),
            ));
        }
        match data[4] {
            FORMAT_V2 => {}
            1 => {
                return Err(ctx.corrupt(
                    4,
                    "index format version 1 is not supported, only version 2 is",
                ))
            }
            v => return Err(ctx.corrupt(4, format!("unknown index format version {v}"))),
        }
        let toc_start = file_len - TOC_LEN;
        let mut toc_bytes = [0u8; TOC_LEN];
        toc_bytes.copy_from_slice(&data[toc_start..]);
        let toc = Toc::decode(&toc_bytes)
            .ok_or_else(|| ctx.corrupt(toc_start as u64, "TOC checksum mismatch"))?;

        // Symbol table: count, then uvarint-prefixed strings.
        let what = || "symbol table".to_string();
        let (body, body_off) = ctx.section(toc.symbols, &what)?;
        let mut d = Decoder::new(body, body_off);
        let count = d
            .be32("symbol count")
            .map_err(|e| ctx.decode_err("symbol table", e))?;
        let symbols_base = d.offset();
        let mut symbol_offsets = Vec::with_capacity((count as usize).min(d.remaining()));
        for _ in 0..count {
            // Relative offsets fit in u32: the section's length does.
            symbol_offsets.push((d.offset() - symbols_base) as u32);
            d.uvarint_bytes("symbol")
                .map_err(|e| ctx.decode_err("symbol table", e))?;
        }
        let symbols_end = d.offset();

        let names = Self::parse_postings_table(ctx, toc.postings_offset_table)?;

        // The series section ends where the next section starts.
        let series_end = toc
            .fields()
            .into_iter()
            .filter(|&o| o > toc.series)
            .min()
            .unwrap_or(toc_start as u64)
            .min(toc_start as u64);

        let mut r = IndexReader {
            path,
            data,
            toc,
            series_end,
            symbols_base,
            symbols_end,
            symbol_offsets,
            names,
            name_symbols: HashMap::new(),
        };
        let mut name_symbols = HashMap::with_capacity(r.names.len());
        for n in &r.names {
            if let Some(i) = r.reverse_lookup(&n.name) {
                name_symbols.insert(i, n.name.clone());
            }
        }
        r.name_symbols = name_symbols;
        Ok(r)
    }

    fn parse_postings_table(ctx: Ctx<'_>, off: u64) -> Result<Vec<NameEntry>> {
        const WHAT: &str = "postings offset table";
        let (body, body_off) = ctx.section(off, &|| WHAT.to_string())?;
        let mut d = Decoder::new(body, body_off);
        let dec = |e| ctx.decode_err(WHAT, e);
        let count = d.be32("entry count").map_err(dec)?;
        let mut names: Vec<NameEntry> = Vec::new();
        let mut prev: Option<(&[u8], &[u8])> = None;
        for _ in 0..count {
            let entry_off = d.offset();
            let keys = d.uvarint("key count").map_err(dec)?;
            if keys != 2 {
                return Err(ctx.corrupt(
                    entry_off,
                    format!("{WHAT} entry has {keys} keys, expected 2"),
                ));
            }
            let name = d.uvarint_bytes("label name").map_err(dec)?;
            let value = d.uvarint_bytes("label value").map_err(dec)?;
            let value_off = d.offset() - value.len() as u64;
            let postings_off = d.uvarint("postings offset").map_err(dec)?;
            if prev.is_some_and(|p| (name, value) <= p) {
                return Err(ctx.corrupt(entry_off, format!("{WHAT} is not sorted")));
            }
            prev = Some((name, value));
            let utf8 = |b| {
                std::str::from_utf8(b)
                    .map_err(|_| ctx.corrupt(entry_off, format!("{WHAT} entry is not UTF-8")))
            };
            let name = utf8(name)?;
            utf8(value)?;
            if names.last().is_none_or(|n| *n.name != *name) {
                names.push(NameEntry {
                    name: Arc::from(name),
                    values: Vec::new(),
                });
            }
            if let Some(n) = names.last_mut() {
                n.values.push(ValueEntry {
                    value_off,
                    // The whole section's length fits in u32.
                    value_len: value.len() as u32,
                    postings_off,
                });
            }
        }
        for n in &mut names {
            n.values.shrink_to_fit();
        }
        Ok(names)
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            path: &self.path,
            data: &self.data,
        }
    }

    /// Symbol `i` of the symbol table.
    fn symbol(&self, i: u32) -> Result<&str> {
        let ctx = self.ctx();
        let Some(&rel) = self.symbol_offsets.get(i as usize) else {
            return Err(ctx.corrupt(
                self.symbols_base,
                format!(
                    "symbol ref {i} is out of range, the table has {} symbols",
                    self.symbol_offsets.len()
                ),
            ));
        };
        let start = self.symbols_base + u64::from(rel);
        let bytes = self
            .data
            .get(start as usize..self.symbols_end as usize)
            .ok_or_else(|| ctx.corrupt(start, "symbol outside the symbol table"))?;
        let s = Decoder::new(bytes, start)
            .uvarint_bytes("symbol")
            .map_err(|e| ctx.decode_err("symbol table", e))?;
        std::str::from_utf8(s).map_err(|_| ctx.corrupt(start, format!("symbol {i} is not UTF-8")))
    }

    /// Index of `s` in the (sorted) symbol table.
    fn reverse_lookup(&self, s: &str) -> Option<u32> {
        let (mut lo, mut hi) = (0usize, self.symbol_offsets.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.symbol(mid as u32).ok()?.cmp(s) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid as u32),
            }
        }
        None
    }

    fn value_bytes(&self, v: &ValueEntry) -> &[u8] {
        let start = v.value_off as usize;
        self.data
            .get(start..start + v.value_len as usize)
            .unwrap_or(&[])
    }

    fn name_entry(&self, name: &str) -> Option<&NameEntry> {
        self.names
            .binary_search_by(|n| (*n.name).cmp(name))
            .ok()
            .map(|i| &self.names[i])
    }

    /// Series refs holding `name="value"`, ascending; empty when absent.
    pub fn postings(&self, name: &str, value: &str) -> Result<Vec<u32>> {
        let Some(n) = self.name_entry(name) else {
            return Ok(Vec::new());
        };
        let Ok(i) = n
            .values
            .binary_search_by(|v| self.value_bytes(v).cmp(value.as_bytes()))
        else {
            return Ok(Vec::new());
        };
        self.read_postings(n.values[i].postings_off, name, value)
    }

    /// Where the postings list of `name="value"` sits in the file, as Prometheus'
    /// `PostingsRanges` reports it: from just after the list's `len` field (at its `count`) to
    /// just before its CRC. `None` when the pair is absent. The list's CRC is verified.
    pub fn postings_range(&self, name: &str, value: &str) -> Result<Option<Range<u64>>> {
        let Some(n) = self.name_entry(name) else {
            return Ok(None);
        };
        let Ok(i) = n
            .values
            .binary_search_by(|v| self.value_bytes(v).cmp(value.as_bytes()))
        else {
            return Ok(None);
        };
        let off = n.values[i].postings_off;
        let what = || format!("postings list for {name}={value:?}");
        let (body, body_off) = self.ctx().section(off, &what)?;
        Ok(Some(body_off..body_off + body.len() as u64))
    }

    fn read_postings(&self, off: u64, name: &str, value: &str) -> Result<Vec<u32>> {
        let ctx = self.ctx();
        let what = || format!("postings list for {name}={value:?}");
        let (body, body_off) = ctx.section(off, &what)?;
        let mut d = Decoder::new(body, body_off);
        let n = d
            .be32("postings count")
            .map_err(|e| ctx.decode_err(&what(), e))?;
        if (body.len() - 4) as u64 != 4 * u64::from(n) {
            return Err(ctx.corrupt(
                off,
                format!(
                    "{}: {} bytes of refs do not hold {n} entries",
                    what(),
                    body.len() - 4
                ),
            ));
        }
        let refs: Vec<u32> = body[4..]
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if refs.windows(2).any(|w| w[0] >= w[1]) {
            return Err(ctx.corrupt(off, format!("{}: refs are not ascending", what())));
        }
        Ok(refs)
    }

    /// Refs of every series in the index, ascending.
    pub fn all_postings(&self) -> Result<Vec<u32>> {
        self.postings("", "")
    }

    /// Every label name, sorted.
    pub fn label_names(&self) -> Result<Vec<String>> {
        Ok(self
            .names
            .iter()
            .filter(|n| !n.name.is_empty())
            .map(|n| n.name.to_string())
            .collect())
    }

    /// Every value of label `name`, sorted; empty when the name is absent.
    pub fn label_values(&self, name: &str) -> Result<Vec<String>> {
        if name.is_empty() {
            return Ok(Vec::new());
        }
        let Some(n) = self.name_entry(name) else {
            return Ok(Vec::new());
        };
        n.values
            .iter()
            .map(|v| {
                String::from_utf8(self.value_bytes(v).to_vec()).map_err(|_| {
                    self.ctx().corrupt(
                        v.value_off,
                        "label value in the postings offset table is not UTF-8",
                    )
                })
            })
            .collect()
    }

    /// Labels and chunk metas of one series.
    pub fn series(&self, series_ref: u32) -> Result<(Labels, Vec<ChunkMeta>)> {
        let ctx = self.ctx();
        let off = u64::from(series_ref) * 16;
        let start = self.toc.series.max(HEADER_LEN as u64);
        let region = if off >= start && off < self.series_end {
            self.data.get(off as usize..self.series_end as usize)
        } else {
            None
        };
        let Some(region) = region else {
            return Err(ctx.corrupt(
                off,
                format!(
                    "series ref {series_ref} is outside the series section [{start}, {})",
                    self.series_end
                ),
            ));
        };
        let what = || format!("series {series_ref}");
        let mut d = Decoder::new(region, off);
        let len = d
            .uvarint("series length")
            .map_err(|e| ctx.decode_err(&what(), e))?;
        let body_off = d.offset();
        let body = usize::try_from(len)
            .map_err(|_| ctx.corrupt(off, format!("{}: length {len} is too large", what())))
            .and_then(|n| {
                d.bytes(n, "series entry")
                    .map_err(|e| ctx.decode_err(&what(), e))
            })?;
        let stored = d
            .be32("series checksum")
            .map_err(|e| ctx.decode_err(&what(), e))?;
        let computed = crc32c(body);
        if stored != computed {
            return Err(ctx.corrupt(
                off,
                format!(
                    "{}: checksum mismatch (stored {stored:#010x}, computed {computed:#010x})",
                    what()
                ),
            ));
        }

        let (refs, chunks) =
            super::decode_series_body(body, body_off).map_err(|e| ctx.decode_err(&what(), e))?;
        let mut labels: Vec<Label> = Vec::with_capacity(refs.len());
        for (name_ref, value_ref) in refs {
            let name = match self.name_symbols.get(&name_ref) {
                Some(s) => s.clone(),
                None => Arc::from(self.symbol(name_ref)?),
            };
            let value = Arc::from(self.symbol(value_ref)?);
            if labels.last().is_some_and(|l| l.name >= name) {
                return Err(ctx.corrupt(
                    off,
                    format!("{}: label names are not sorted and unique", what()),
                ));
            }
            labels.push(Label { name, value });
        }
        Ok((Labels::from_sorted(labels), chunks))
    }

    /// Size of the index file in bytes.
    pub fn size(&self) -> u64 {
        self.data.len() as u64
    }

    /// The path the index was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of strings in the symbol table.
    pub fn symbol_count(&self) -> usize {
        self.symbol_offsets.len()
    }

    /// File offsets of every postings list named in the postings offset table.
    #[cfg(test)]
    pub(super) fn postings_list_offsets(&self) -> Vec<u64> {
        self.names
            .iter()
            .flat_map(|n| n.values.iter().map(|v| v.postings_off))
            .collect()
    }

    /// The symbol table's strings in order (sorted, for well-formed files). Compaction merges
    /// these across blocks to build the symbol set of a new index.
    pub fn symbols(&self) -> impl Iterator<Item = Result<&str>> + '_ {
        (0..self.symbol_offsets.len() as u32).map(|i| self.symbol(i))
    }
}
