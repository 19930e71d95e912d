//! Thanos' binary index-header (`pkg/block/indexheader`, format v1): the parts of a block's
//! `index` that a store gateway needs in memory, copied verbatim into one small local file so
//! that the `index` itself stays in the bucket and is only ever read by range.
//!
//! ```text
//! <dir>/<ULID>/index-header
//! ┌──────────────────────────────┬──────────────┬────────────────────┬──────────────────────────┐
//! │ magic 0xBAAAD792 (u32 BE)    │ version 1    │ index version (u8) │ indexLastPostingEnd      │
//! │                              │ (u8)         │ 1 or 2             │ (u64 BE) = TOC.Postings- │
//! │                              │              │                    │ Table of the index       │
//! ├──────────────────────────────┴──────────────┴────────────────────┴──────────────────────────┤
//! │ symbols: index bytes [TOC.Symbols, TOC.Series), verbatim                                     │
//! │   len u32 │ count u32 │ uvarint-prefixed strings │ CRC32C │ (padding before the series)      │
//! ├──────────────────────────────────────────────────────────────────────────────────────────────┤
//! │ postings offset table and index TOC: index bytes [TOC.PostingsTable, EOF), verbatim          │
//! │   len u32 │ count u32 │ entries (2, name, value, uvarint64 list offset) │ CRC32C │ TOC (52 B) │
//! ├──────────────────────────────────────────────────────────────────────────────────────────────┤
//! │ binary TOC: symbols offset (u64 BE, always 14) │ postings offset table offset (u64 BE)       │
//! │             CRC32C of those 16 bytes (u32 BE)                                                │
//! └──────────────────────────────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! Given the same `index`, the bytes are the ones Thanos writes (`WriteBinary`), so a Thanos
//! store gateway and Cairn can share a data directory.
//!
//! Building ([`write_from_bucket`], [`build_from_bucket`]) reads only: the index's size (a
//! HEAD), its first 5 bytes, its last 52 (the TOC), the symbol table and the postings offset
//! table, in parts of at most 16 MiB (Thanos' `partitionSize`). The file is written to
//! `index-header.tmp`, fsynced and renamed, so a crash never leaves a partial header.
//!
//! Reading ([`IndexHeaderReader`]) checks every CRC once, then keeps in memory what Thanos'
//! `BinaryReader` keeps: the offset of every 32nd symbol (Prometheus' `symbolFactor`), for each
//! label name every N-th entry of the postings offset table plus the name's last one (N = 32 by
//! default, Thanos' `--store.index-header-posting-offsets-in-mem-sampling`), and the symbol refs
//! of the label names. The rest is decoded from the mapped file on use.
//!
//! Index format v2 is read; v1 (Prometheus 2.0-era, unsorted postings offset table, byte-offset
//! symbol refs) is refused as [`Error::Unsupported`], as is v3, which Thanos refuses too.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, SeekFrom};
use std::ops::{Deref, Range};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::{StreamExt, TryStreamExt};
use memmap2::Mmap;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStoreExt;
use tokio::io::AsyncWriteExt;
use tsdb::index::enc::{DecodeError, Decoder};
use tsdb::index::{Toc, FORMAT_V2, HEADER_LEN as INDEX_HEADER_LEN, MAGIC_INDEX, TOC_LEN};
use ulid::Ulid;

use super::{Error, Result};

/// The file's name inside `<dir>/<ULID>/`.
pub const INDEX_HEADER_FILENAME: &str = "index-header";
/// First four bytes of an index-header (Thanos' `MagicIndex` in this package).
pub const MAGIC_INDEX_HEADER: u32 = 0xBAAA_D792;
/// The only index-header format (`BinaryFormatV1`).
pub const FORMAT_V1: u8 = 1;
/// Magic, version, index version, indexLastPostingEnd (`headerLen`).
pub const HEADER_LEN: u64 = 4 + 1 + 1 + 8;
/// Two u64 offsets and a CRC (`binaryTOCLen`).
pub const BINARY_TOC_LEN: u64 = 2 * 8 + 4;
/// Thanos' `DefaultPostingOffsetInMemorySampling`.
pub const DEFAULT_POSTING_OFFSETS_IN_MEM_SAMPLING: usize = 32;

/// Prometheus' `symbolFactor`: one symbol offset kept per 32 symbols.
const SYMBOL_FACTOR: u32 = 32;
/// A postings list starts with a u32 `len` that ranges skip (`postingLengthFieldSize`).
const POSTING_LENGTH_FIELD_SIZE: u64 = 4;
const CRC_LEN: u64 = 4;
/// Thanos refuses to write more than 16 x (2^32 - 1) bytes ("exceeding max size of 64GiB").
const MAX_HEADER_SIZE: u64 = 16 * u32::MAX as u64;
/// Thanos' `partitionSize`: ranges are fetched in parts of at most 16 MiB.
const BUILD_PART_SIZE: u64 = 16 * 1024 * 1024;
/// Parts in flight while building; Thanos fetches all parts of a range at once, four bound the
/// memory to 64 MiB while still overlapping requests.
const BUILD_PARTS_IN_FLIGHT: usize = 4;
/// Thanos' `valueSymbolsCacheSize`: a direct-mapped cache of value symbols, keyed `ref % 1024`.
const VALUE_SYMBOLS_CACHE_SIZE: usize = 1024;

const INDEX_FILE: &str = tsdb::block::INDEX_FILENAME;

/// Where the two copied sections start in an index-header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BinaryToc {
    pub symbols: u64,
    pub postings_offset_table: u64,
}

/// Where a postings list sits in the bucket's `index`: `start` points at its u32 `count` (just
/// after its `len`), `end` at its CRC. For the very last list of the index, `end` is
/// `indexLastPostingEnd - 4`, a little past the real end, as Thanos computes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PostingsRange {
    pub start: u64,
    pub end: u64,
}

impl PostingsRange {
    pub fn as_range(&self) -> Range<u64> {
        self.start..self.end
    }
}

// ---------------------------------------------------------------------------------------------
// Building.

/// What the builder learns from the index's first 5 bytes and its TOC.
struct SourceIndex {
    version: u8,
    toc: Toc,
    size: u64,
}

/// Checks the index's magic and version (Thanos' `newChunkedIndexReader`).
fn check_index_start(block: Ulid, head: &[u8]) -> Result<u8> {
    if head.len() < INDEX_HEADER_LEN {
        return Err(Error::corrupt(
            block,
            INDEX_FILE,
            0,
            format!("{} bytes, too short for the index header", head.len()),
        ));
    }
    let magic = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    if magic != MAGIC_INDEX {
        return Err(Error::corrupt(
            block,
            INDEX_FILE,
            0,
            format!("bad magic number {magic:#010x}, expected {MAGIC_INDEX:#010x}"),
        ));
    }
    match head[4] {
        FORMAT_V2 => Ok(FORMAT_V2),
        v => Err(Error::Unsupported {
            block,
            file: INDEX_FILE.into(),
            detail: format!(
                "index format version {v} is not supported (the index-header is built for \
                 version 2 only)"
            ),
        }),
    }
}

/// Parses the TOC and checks that the two sections to copy lie where a v2 index puts them:
/// `[Symbols, Series)` after the 5-byte header, `[PostingsTable, size)` ending with the TOC.
fn check_toc(block: Ulid, size: u64, toc_bytes: &[u8]) -> Result<Toc> {
    let toc_off = size.saturating_sub(TOC_LEN as u64);
    let bytes: &[u8; TOC_LEN] = toc_bytes.try_into().map_err(|_| {
        Error::corrupt(
            block,
            INDEX_FILE,
            toc_off,
            format!("read {} bytes of TOC, expected {TOC_LEN}", toc_bytes.len()),
        )
    })?;
    let toc = Toc::decode(bytes)
        .ok_or_else(|| Error::corrupt(block, INDEX_FILE, toc_off, "TOC checksum mismatch"))?;
    let ordered = INDEX_HEADER_LEN as u64 <= toc.symbols
        && toc.symbols < toc.series
        && toc.series <= toc.postings_offset_table
        && toc.postings_offset_table < toc_off;
    if !ordered {
        return Err(Error::corrupt(
            block,
            INDEX_FILE,
            toc_off,
            format!(
                "TOC sections out of order or out of the file ({size} bytes): symbols {}, \
                 series {}, postings offset table {}",
                toc.symbols, toc.series, toc.postings_offset_table
            ),
        ));
    }
    let header_size = HEADER_LEN
        + (toc.series - toc.symbols)
        + (size - toc.postings_offset_table)
        + BINARY_TOC_LEN;
    if header_size > MAX_HEADER_SIZE {
        return Err(Error::Unsupported {
            block,
            file: INDEX_FILE.into(),
            detail: format!("index-header would be {header_size} bytes, beyond 64 GiB"),
        });
    }
    Ok(toc)
}

/// The 14 bytes that open the file.
fn header_bytes(source: &SourceIndex) -> [u8; HEADER_LEN as usize] {
    let mut b = [0u8; HEADER_LEN as usize];
    b[..4].copy_from_slice(&MAGIC_INDEX_HEADER.to_be_bytes());
    b[4] = FORMAT_V1;
    b[5] = source.version;
    b[6..].copy_from_slice(&source.toc.postings_offset_table.to_be_bytes());
    b
}

/// The 20 bytes that close the file.
fn binary_toc_bytes(toc: BinaryToc) -> [u8; BINARY_TOC_LEN as usize] {
    let mut b = [0u8; BINARY_TOC_LEN as usize];
    b[..8].copy_from_slice(&toc.symbols.to_be_bytes());
    b[8..16].copy_from_slice(&toc.postings_offset_table.to_be_bytes());
    let crc = crc32c::crc32c(&b[..16]);
    b[16..].copy_from_slice(&crc.to_be_bytes());
    b
}

/// The two index ranges copied into the header, in order.
fn copied_ranges(source: &SourceIndex) -> [Range<u64>; 2] {
    [
        source.toc.symbols..source.toc.series,
        source.toc.postings_offset_table..source.size,
    ]
}

fn binary_toc_for(source: &SourceIndex) -> BinaryToc {
    BinaryToc {
        symbols: HEADER_LEN,
        postings_offset_table: HEADER_LEN + (source.toc.series - source.toc.symbols),
    }
}

fn index_path(block: Ulid) -> ObjectPath {
    ObjectPath::from(format!("{block}/{INDEX_FILE}"))
}

/// Reads the index's size, first bytes and TOC from the bucket.
async fn read_source(bucket: &objstore::Bucket, block: Ulid) -> Result<SourceIndex> {
    let path = index_path(block);
    let meta = bucket.head(&path).await.map_err(|source| Error::Bucket {
        block,
        op: "head",
        path: path.to_string(),
        source: Box::new(source),
    })?;
    let size = meta.size;
    if size < (INDEX_HEADER_LEN + TOC_LEN) as u64 {
        return Err(Error::corrupt(
            block,
            INDEX_FILE,
            0,
            format!("index is {size} bytes, too small for a header and a TOC"),
        ));
    }
    let head = super::get_range(bucket, block, &path, 0..INDEX_HEADER_LEN as u64).await?;
    let version = check_index_start(block, &head)?;
    let toc_bytes = super::get_range(bucket, block, &path, size - TOC_LEN as u64..size).await?;
    let toc = check_toc(block, size, &toc_bytes)?;
    Ok(SourceIndex { version, toc, size })
}

/// Where the builder writes: a file (via a temp file) or memory.
enum Sink {
    File {
        tmp: PathBuf,
        file: tokio::io::BufWriter<tokio::fs::File>,
    },
    Memory(Vec<u8>),
}

impl Sink {
    async fn write(&mut self, block: Ulid, b: &[u8]) -> Result<()> {
        match self {
            Sink::File { tmp, file } => file.write_all(b).await.map_err(|source| Error::Io {
                block,
                context: format!("writing {}", tmp.display()),
                source,
            }),
            Sink::Memory(v) => {
                v.extend_from_slice(b);
                Ok(())
            }
        }
    }
}

/// Copies `range` of the block's index into `sink`, in parts of at most 16 MiB.
async fn copy_range(
    bucket: &objstore::Bucket,
    block: Ulid,
    range: Range<u64>,
    sink: &mut Sink,
) -> Result<()> {
    let path = index_path(block);
    let parts: Vec<Range<u64>> = (range.start..range.end)
        .step_by(BUILD_PART_SIZE as usize)
        .map(|s| s..(s + BUILD_PART_SIZE).min(range.end))
        .collect();
    let mut fetched = futures::stream::iter(parts.into_iter().map(|r| {
        let path = &path;
        async move {
            let b = super::get_range(bucket, block, path, r.clone()).await?;
            Ok::<_, Error>((r, b))
        }
    }))
    .buffered(BUILD_PARTS_IN_FLIGHT);
    while let Some((r, b)) = fetched.try_next().await? {
        if b.len() as u64 != r.end - r.start {
            return Err(Error::corrupt(
                block,
                INDEX_FILE,
                r.start,
                format!(
                    "index ends early: asked for {} bytes, got {}",
                    r.end - r.start,
                    b.len()
                ),
            ));
        }
        sink.write(block, &b).await?;
    }
    Ok(())
}

async fn build_into(bucket: &objstore::Bucket, block: Ulid, sink: &mut Sink) -> Result<()> {
    let source = read_source(bucket, block).await?;
    sink.write(block, &header_bytes(&source)).await?;
    for r in copied_ranges(&source) {
        copy_range(bucket, block, r, sink).await?;
    }
    sink.write(block, &binary_toc_bytes(binary_toc_for(&source)))
        .await
}

/// Builds the index-header of `block` from its `index` in the bucket, in memory (Thanos' path
/// without a data directory).
pub async fn build_from_bucket(bucket: &objstore::Bucket, block: Ulid) -> Result<Vec<u8>> {
    let mut sink = Sink::Memory(Vec::new());
    build_into(bucket, block, &mut sink).await?;
    match sink {
        Sink::Memory(v) => Ok(v),
        Sink::File { .. } => unreachable!("the sink was made in memory"),
    }
}

/// Builds `<dir>/<ULID>/index-header` from the block's `index` in the bucket: written to
/// `index-header.tmp`, fsynced, renamed into place. Returns the file's path.
pub async fn write_from_bucket(
    bucket: &objstore::Bucket,
    block: Ulid,
    dir: &Path,
) -> Result<PathBuf> {
    let block_dir = dir.join(block.to_string());
    let io = |context: String| {
        move |source| Error::Io {
            block,
            context,
            source,
        }
    };
    tokio::fs::create_dir_all(&block_dir)
        .await
        .map_err(io(format!("creating {}", block_dir.display())))?;
    let path = block_dir.join(INDEX_HEADER_FILENAME);
    let tmp = block_dir.join(format!("{INDEX_HEADER_FILENAME}.tmp"));
    // A previous attempt may have left a partial temp file.
    match tokio::fs::remove_file(&tmp).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(format!("removing {}", tmp.display()))(e)),
    }
    let file = tokio::fs::File::create(&tmp)
        .await
        .map_err(io(format!("creating {}", tmp.display())))?;
    // Thanos' copy buffer is 32 KiB; parts arrive in up to 16 MiB pieces, so a larger buffer
    // only saves syscalls.
    let mut sink = Sink::File {
        tmp: tmp.clone(),
        file: tokio::io::BufWriter::with_capacity(1 << 20, file),
    };
    let result = build_into(bucket, block, &mut sink).await;
    let Sink::File { mut file, .. } = sink else {
        unreachable!("the sink was made for a file")
    };
    let finished = match result {
        Ok(()) => file
            .flush()
            .await
            .map_err(io(format!("writing {}", tmp.display()))),
        Err(e) => Err(e),
    };
    let synced = match finished {
        Ok(()) => file
            .get_ref()
            .sync_all()
            .await
            .map_err(io(format!("syncing {}", tmp.display()))),
        Err(e) => Err(e),
    };
    drop(file);
    if let Err(e) = synced {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(e);
    }
    tokio::fs::rename(&tmp, &path)
        .await
        .map_err(io(format!("renaming {}", tmp.display())))?;
    let dir_file = tokio::fs::File::open(&block_dir)
        .await
        .map_err(io(format!("opening {}", block_dir.display())))?;
    dir_file
        .sync_all()
        .await
        .map_err(io(format!("syncing {}", block_dir.display())))?;
    Ok(path)
}

/// Builds the index-header from an index file on local disk, reading the same pieces as the
/// bucket builder. `block` only names the block in errors.
pub fn build_from_index_file(index: &Path, block: Ulid) -> Result<Vec<u8>> {
    let io = |context: String| {
        move |source| Error::Io {
            block,
            context,
            source,
        }
    };
    let mut f = std::fs::File::open(index).map_err(io(format!("opening {}", index.display())))?;
    let size = f
        .metadata()
        .map_err(io(format!("reading {}", index.display())))?
        .len();
    let mut read_at = |r: Range<u64>| -> Result<Vec<u8>> {
        let mut buf = vec![0u8; (r.end - r.start) as usize];
        f.seek(SeekFrom::Start(r.start))
            .and_then(|_| f.read_exact(&mut buf))
            .map_err(io(format!("reading {} at {}", index.display(), r.start)))?;
        Ok(buf)
    };
    if size < (INDEX_HEADER_LEN + TOC_LEN) as u64 {
        return Err(Error::corrupt(
            block,
            INDEX_FILE,
            0,
            format!("index is {size} bytes, too small for a header and a TOC"),
        ));
    }
    let version = check_index_start(block, &read_at(0..INDEX_HEADER_LEN as u64)?)?;
    let toc = check_toc(block, size, &read_at(size - TOC_LEN as u64..size)?)?;
    let source = SourceIndex { version, toc, size };
    let mut out = header_bytes(&source).to_vec();
    for r in copied_ranges(&source) {
        out.extend_from_slice(&read_at(r)?);
    }
    out.extend_from_slice(&binary_toc_bytes(binary_toc_for(&source)));
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Reading.

/// The header's bytes: mapped from the file, or owned.
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

/// One kept entry of the postings offset table.
struct SampledValue {
    value: Box<str>,
    /// Position of the entry counted from the start of the table's body (just after its `len`),
    /// so the first entry is at 4, after the count (Thanos' `tableOff`).
    table_off: u32,
}

/// The kept entries of one label name (Thanos' `postingValueOffsets`).
struct NameOffsets {
    /// Every N-th value and always the last one, ascending.
    samples: Vec<SampledValue>,
    /// End of the name's last postings list: the next name's first list offset minus 4, or
    /// indexLastPostingEnd minus 4 for the last name.
    last_val_offset: u64,
}

/// One decoded entry of the postings offset table.
struct TableEntry<'a> {
    name: &'a [u8],
    value: &'a [u8],
    postings_off: u64,
}

/// Reads an index-header; see the [module docs](self). Cheap to share (`Arc`), safe to use from
/// many tasks.
pub struct IndexHeaderReader {
    block: Ulid,
    data: Data,
    index_version: u8,
    index_last_posting_end: u64,
    toc: BinaryToc,
    /// Absolute offsets of symbols 0, 32, 64, ... in `data`.
    symbol_offsets: Vec<u64>,
    symbol_count: u32,
    /// Where the symbol strings end (the symbol table's CRC).
    symbols_end: u64,
    /// The postings offset table's body (after `len`, before the CRC).
    table: Range<u64>,
    postings: BTreeMap<Box<str>, NameOffsets>,
    name_symbols: HashMap<u32, Arc<str>>,
    value_symbols: Mutex<Vec<Option<CachedSymbol>>>,
}

/// A value symbol in the direct-mapped cache: its ref and its string.
type CachedSymbol = (u32, Arc<str>);

impl std::fmt::Debug for IndexHeaderReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexHeaderReader")
            .field("block", &self.block)
            .field("size", &self.data.len())
            .field("index_version", &self.index_version)
            .field("toc", &self.toc)
            .finish_non_exhaustive()
    }
}

/// Decodes one postings offset table entry (keycount 2, name, value, offset).
fn table_entry<'a>(d: &mut Decoder<'a>) -> std::result::Result<TableEntry<'a>, DecodeError> {
    let at = d.offset();
    let keys = d.uvarint("postings offset table key count")?;
    if keys != 2 {
        return Err(DecodeError {
            offset: at,
            what: "postings offset table entry (key count is not 2)",
        });
    }
    let name = d.uvarint_bytes("postings offset table label name")?;
    let value = d.uvarint_bytes("postings offset table label value")?;
    let postings_off = d.uvarint("postings offset table list offset")?;
    Ok(TableEntry {
        name,
        value,
        postings_off,
    })
}

impl IndexHeaderReader {
    /// Maps and checks the index-header file at `path`. `sampling` is the N of the postings
    /// offset table sampling ([`DEFAULT_POSTING_OFFSETS_IN_MEM_SAMPLING`]); `block` names the
    /// block in errors.
    pub fn open(path: &Path, block: Ulid, sampling: usize) -> Result<Self> {
        let io = |context: String| {
            move |source| Error::Io {
                block,
                context,
                source,
            }
        };
        let file = std::fs::File::open(path).map_err(io(format!("opening {}", path.display())))?;
        let len = file
            .metadata()
            .map_err(io(format!("reading {}", path.display())))?
            .len();
        if len < HEADER_LEN + BINARY_TOC_LEN {
            return Err(Error::corrupt(
                block,
                INDEX_HEADER_FILENAME,
                0,
                format!("{len} bytes, too small for an index-header"),
            ));
        }
        // SAFETY: the file is only ever replaced by rename, never written in place, so the
        // mapping stays valid; every read of it is bounds-checked anyway.
        let mmap =
            unsafe { Mmap::map(&file) }.map_err(io(format!("mapping {}", path.display())))?;
        Self::parse(block, Data::Mmap(mmap), sampling)
    }

    /// Reads an index-header held in memory (from [`build_from_bucket`] or
    /// [`build_from_index_file`]).
    pub fn from_bytes(data: Vec<u8>, block: Ulid, sampling: usize) -> Result<Self> {
        Self::parse(block, Data::Owned(data), sampling)
    }

    /// Thanos' `NewBinaryReader` with a data directory: opens `<dir>/<ULID>/index-header`, and
    /// when it is missing or damaged builds it again from the bucket and opens that.
    pub async fn open_or_build(
        bucket: &objstore::Bucket,
        dir: &Path,
        block: Ulid,
        sampling: usize,
    ) -> Result<Self> {
        let path = dir.join(block.to_string()).join(INDEX_HEADER_FILENAME);
        match Self::open(&path, block, sampling) {
            Ok(r) => return Ok(r),
            Err(e) => {
                tracing::debug!(block = %block, path = %path.display(), error = %e,
                    "cannot read index-header from disk; building it from the bucket");
            }
        }
        let path = write_from_bucket(bucket, block, dir).await?;
        Self::open(&path, block, sampling)
    }

    fn corrupt(&self, offset: u64, detail: impl Into<String>) -> Error {
        Error::corrupt(self.block, INDEX_HEADER_FILENAME, offset, detail)
    }

    fn parse(block: Ulid, data: Data, sampling: usize) -> Result<Self> {
        let corrupt = |offset: u64, detail: String| {
            Error::corrupt(block, INDEX_HEADER_FILENAME, offset, detail)
        };
        let dec = |what: &str, e: DecodeError| {
            corrupt(
                e.offset,
                format!("{what}: truncated or malformed {}", e.what),
            )
        };
        let len = data.len() as u64;
        if len < HEADER_LEN + BINARY_TOC_LEN {
            return Err(corrupt(
                0,
                format!("{len} bytes, too small for an index-header"),
            ));
        }
        let be32 = |o: usize| u32::from_be_bytes([data[o], data[o + 1], data[o + 2], data[o + 3]]);
        let be64 = |o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&data[o..o + 8]);
            u64::from_be_bytes(a)
        };
        let magic = be32(0);
        if magic != MAGIC_INDEX_HEADER {
            return Err(corrupt(
                0,
                format!("bad magic number {magic:#010x}, expected {MAGIC_INDEX_HEADER:#010x}"),
            ));
        }
        if data[4] != FORMAT_V1 {
            return Err(corrupt(
                4,
                format!("unknown index-header version {}", data[4]),
            ));
        }
        let index_version = data[5];
        if index_version != FORMAT_V2 {
            return Err(Error::Unsupported {
                block,
                file: INDEX_HEADER_FILENAME.into(),
                detail: format!(
                    "built from an index of format version {index_version}; only version 2 is \
                     read"
                ),
            });
        }
        let index_last_posting_end = be64(6);

        let toc_off = len - BINARY_TOC_LEN;
        let t = toc_off as usize;
        let stored = be32(t + 16);
        let computed = crc32c::crc32c(&data[t..t + 16]);
        if stored != computed {
            return Err(corrupt(
                toc_off,
                format!(
                    "binary TOC checksum mismatch (stored {stored:#010x}, computed \
                     {computed:#010x})"
                ),
            ));
        }
        let toc = BinaryToc {
            symbols: be64(t),
            postings_offset_table: be64(t + 8),
        };
        if toc.symbols < HEADER_LEN
            || toc.symbols > toc.postings_offset_table
            || toc.postings_offset_table >= toc_off
        {
            return Err(corrupt(
                toc_off,
                format!(
                    "binary TOC points outside the file: symbols at {}, postings offset table at \
                     {}",
                    toc.symbols, toc.postings_offset_table
                ),
            ));
        }

        // The symbol table (Prometheus' NewSymbols): CRC checked, every symbol walked once.
        let body = section(&data[..toc_off as usize], toc.symbols)
            .map_err(|d| corrupt(toc.symbols, format!("symbol table: {d}")))?;
        let mut d = Decoder::new(&data[body.start as usize..body.end as usize], body.start);
        let symbol_count = d.be32("symbol count").map_err(|e| dec("symbol table", e))?;
        let mut symbol_offsets = Vec::with_capacity((symbol_count / SYMBOL_FACTOR) as usize + 1);
        for i in 0..symbol_count {
            if i % SYMBOL_FACTOR == 0 {
                symbol_offsets.push(d.offset());
            }
            d.uvarint_bytes("symbol")
                .map_err(|e| dec("symbol table", e))?;
        }
        let symbols_end = d.offset();

        // The postings offset table (Thanos' BinaryReader.init), CRC checked.
        let table = section(&data[..toc_off as usize], toc.postings_offset_table).map_err(|d| {
            corrupt(
                toc.postings_offset_table,
                format!("postings offset table: {d}"),
            )
        })?;
        let postings = Self::sample_postings_table(
            block,
            &data[table.start as usize..table.end as usize],
            table.start,
            index_last_posting_end,
            sampling.max(1),
        )?;

        let mut r = IndexHeaderReader {
            block,
            data,
            index_version,
            index_last_posting_end,
            toc,
            symbol_offsets,
            symbol_count,
            symbols_end,
            table,
            postings,
            name_symbols: HashMap::new(),
            value_symbols: Mutex::new(vec![None; VALUE_SYMBOLS_CACHE_SIZE]),
        };
        let mut name_symbols = HashMap::with_capacity(r.postings.len());
        for name in r.postings.keys().filter(|n| !n.is_empty()) {
            let sym = r.reverse_lookup(name)?.ok_or_else(|| {
                r.corrupt(
                    r.toc.symbols,
                    format!("label name {name:?} is not in the symbol table"),
                )
            })?;
            name_symbols.insert(sym, Arc::from(&**name));
        }
        r.name_symbols = name_symbols;
        Ok(r)
    }

    /// Walks the whole table once, checking it is sorted with postings lists in ascending
    /// order, and keeps entry i of each name when `i % sampling == 0`, plus the name's last.
    fn sample_postings_table(
        block: Ulid,
        body: &[u8],
        body_off: u64,
        index_last_posting_end: u64,
        sampling: usize,
    ) -> Result<BTreeMap<Box<str>, NameOffsets>> {
        const WHAT: &str = "postings offset table";
        let corrupt = |offset: u64, detail: String| {
            Error::corrupt(block, INDEX_HEADER_FILENAME, offset, detail)
        };
        let mut d = Decoder::new(body, body_off);
        let count = d.be32("entry count").map_err(|e| {
            corrupt(
                e.offset,
                format!("{WHAT}: truncated or malformed {}", e.what),
            )
        })?;
        let mut out: BTreeMap<Box<str>, NameOffsets> = BTreeMap::new();
        // The name being sampled, its value count so far, and its last value seen.
        let mut current: Option<(Box<str>, NameOffsets)> = None;
        let mut value_count = 0usize;
        let mut last: Option<(Box<str>, u32)> = None;
        let mut prev_key: Option<(&[u8], &[u8])> = None;
        let mut prev_postings_off: Option<u64> = None;

        // A list holds at least len, count and CRC, so consecutive offsets are 12 bytes apart.
        const MIN_LIST_LEN: u64 = 12;
        let finish_name = |cur: (Box<str>, NameOffsets),
                           last: Option<(Box<str>, u32)>,
                           value_count: usize,
                           next_list_off: u64,
                           out: &mut BTreeMap<Box<str>, NameOffsets>,
                           at: u64|
         -> Result<()> {
            let (name, mut offsets) = cur;
            if let Some((value, table_off)) = last {
                if !(value_count - 1).is_multiple_of(sampling) {
                    offsets.samples.push(SampledValue { value, table_off });
                }
            }
            offsets.last_val_offset = next_list_off.checked_sub(CRC_LEN).ok_or_else(|| {
                corrupt(
                    at,
                    format!("{WHAT}: postings list offset {next_list_off} is below 4"),
                )
            })?;
            offsets.samples.shrink_to_fit();
            out.insert(name, offsets);
            Ok(())
        };

        for _ in 0..count {
            let entry_off = d.offset();
            let e = table_entry(&mut d).map_err(|e| {
                corrupt(
                    e.offset,
                    format!("{WHAT}: truncated or malformed {}", e.what),
                )
            })?;
            if prev_key.is_some_and(|p| (e.name, e.value) <= p) {
                return Err(corrupt(entry_off, format!("{WHAT} is not sorted")));
            }
            prev_key = Some((e.name, e.value));
            if prev_postings_off.is_some_and(|p| p.saturating_add(MIN_LIST_LEN) > e.postings_off) {
                return Err(corrupt(
                    entry_off,
                    format!(
                        "{WHAT}: postings list offset {} does not follow the previous list",
                        e.postings_off
                    ),
                ));
            }
            prev_postings_off = Some(e.postings_off);
            let utf8 = |b| {
                std::str::from_utf8(b)
                    .map_err(|_| corrupt(entry_off, format!("{WHAT} entry is not UTF-8")))
            };
            let (name, value) = (utf8(e.name)?, utf8(e.value)?);
            // Offsets in the table are relative to the body start (Thanos' tableOff).
            let table_off = (entry_off - body_off) as u32;

            if current.as_ref().is_none_or(|(n, _)| **n != *name) {
                if let Some(cur) = current.take() {
                    finish_name(
                        cur,
                        last.take(),
                        value_count,
                        e.postings_off,
                        &mut out,
                        entry_off,
                    )?;
                }
                current = Some((
                    Box::from(name),
                    NameOffsets {
                        samples: Vec::new(),
                        last_val_offset: 0,
                    },
                ));
                value_count = 0;
            }
            value_count += 1;
            if let Some((_, offsets)) = current.as_mut() {
                if (value_count - 1).is_multiple_of(sampling) {
                    offsets.samples.push(SampledValue {
                        value: Box::from(value),
                        table_off,
                    });
                }
            }
            last = Some((Box::from(value), table_off));
        }
        if let Some(cur) = current.take() {
            if prev_postings_off
                .is_some_and(|p| p.saturating_add(MIN_LIST_LEN) > index_last_posting_end)
            {
                return Err(corrupt(
                    6,
                    format!(
                        "indexLastPostingEnd {index_last_posting_end} is before the end of the \
                         last postings list"
                    ),
                ));
            }
            // There is no next list: Thanos guesses from the index's TOC, which may overshoot
            // the true end by a few bytes.
            finish_name(
                cur,
                last.take(),
                value_count,
                index_last_posting_end,
                &mut out,
                d.offset(),
            )?;
        }
        Ok(out)
    }

    /// The block this header belongs to.
    pub fn block(&self) -> Ulid {
        self.block
    }

    /// Format version of the block's `index` (always 2 for a header this reader opened).
    pub fn index_version(&self) -> u8 {
        self.index_version
    }

    /// `TOC.PostingsTable` of the block's `index`, stored in the header.
    pub fn index_last_posting_end(&self) -> u64 {
        self.index_last_posting_end
    }

    pub fn toc(&self) -> BinaryToc {
        self.toc
    }

    /// Size of the index-header in bytes.
    pub fn size(&self) -> u64 {
        self.data.len() as u64
    }

    /// Number of symbols in the block's symbol table.
    pub fn symbol_count(&self) -> u32 {
        self.symbol_count
    }

    /// Decodes the symbol at absolute offset `at`.
    fn symbol_at(&self, at: u64) -> Result<&str> {
        let bytes = self
            .data
            .get(at as usize..self.symbols_end as usize)
            .ok_or_else(|| self.corrupt(at, "symbol outside the symbol table"))?;
        let s = Decoder::new(bytes, at)
            .uvarint_bytes("symbol")
            .map_err(|e| self.corrupt(e.offset, format!("symbol table: malformed {}", e.what)))?;
        std::str::from_utf8(s).map_err(|_| self.corrupt(at, "symbol is not UTF-8"))
    }

    /// Symbol `r` of the block's symbol table, found from the nearest kept offset
    /// (Prometheus' `Symbols.Lookup`).
    fn symbol(&self, r: u32) -> Result<&str> {
        if r >= self.symbol_count {
            return Err(self.corrupt(
                self.toc.symbols,
                format!(
                    "symbol ref {r} is out of range, the table has {} symbols",
                    self.symbol_count
                ),
            ));
        }
        let start = self.symbol_offsets[(r / SYMBOL_FACTOR) as usize];
        let bytes = &self.data[start as usize..self.symbols_end as usize];
        let mut d = Decoder::new(bytes, start);
        for _ in 0..r % SYMBOL_FACTOR {
            d.uvarint_bytes("symbol").map_err(|e| {
                self.corrupt(e.offset, format!("symbol table: malformed {}", e.what))
            })?;
        }
        self.symbol_at(d.offset())
    }

    /// The ref of `s` in the sorted symbol table, if present (Prometheus' `ReverseLookup`).
    fn reverse_lookup(&self, s: &str) -> Result<Option<u32>> {
        if self.symbol_offsets.is_empty() {
            return Ok(None);
        }
        // The first kept symbol greater than `s`; the one before it starts the run to scan.
        let mut lo = 0;
        let mut hi = self.symbol_offsets.len();
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.symbol_at(self.symbol_offsets[mid])? > s {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        let group = lo.saturating_sub(1);
        let first = group as u32 * SYMBOL_FACTOR;
        let last = (first + SYMBOL_FACTOR).min(self.symbol_count);
        let start = self.symbol_offsets[group];
        let mut d = Decoder::new(&self.data[start as usize..self.symbols_end as usize], start);
        for r in first..last {
            let at = d.offset();
            d.uvarint_bytes("symbol").map_err(|e| {
                self.corrupt(e.offset, format!("symbol table: malformed {}", e.what))
            })?;
            match self.symbol_at(at)?.cmp(s) {
                std::cmp::Ordering::Less => continue,
                std::cmp::Ordering::Equal => return Ok(Some(r)),
                std::cmp::Ordering::Greater => return Ok(None),
            }
        }
        Ok(None)
    }

    /// The string of symbol ref `r` (for index v2, the symbol's position in the table), as
    /// series entries use it. Label names come from a map, values through a small cache.
    pub fn lookup_symbol(&self, r: u32) -> Result<Arc<str>> {
        if let Some(s) = self.name_symbols.get(&r) {
            return Ok(s.clone());
        }
        let slot = r as usize % VALUE_SYMBOLS_CACHE_SIZE;
        // A poisoned lock only means another lookup panicked; the cache holds no invariant.
        let mut cache = self.value_symbols.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((cached, s)) = &cache[slot] {
            if *cached == r {
                return Ok(s.clone());
            }
        }
        let s: Arc<str> = Arc::from(self.symbol(r)?);
        cache[slot] = Some((r, s.clone()));
        Ok(s)
    }

    /// Every label name, sorted, without the all-postings key's empty name.
    pub fn label_names(&self) -> Vec<String> {
        self.postings
            .keys()
            .filter(|n| !n.is_empty())
            .map(|n| n.to_string())
            .collect()
    }

    /// A decoder over the postings offset table from `table_off` (relative to its body). The
    /// table's CRC was checked at open and is not checked again (as Thanos does).
    fn table_decoder(&self, table_off: u32) -> Decoder<'_> {
        let start = (self.table.start + u64::from(table_off)).min(self.table.end);
        Decoder::new(&self.data[start as usize..self.table.end as usize], start)
    }

    fn table_entry_at<'a>(&self, d: &mut Decoder<'a>) -> Result<TableEntry<'a>> {
        table_entry(d).map_err(|e| {
            self.corrupt(
                e.offset,
                format!("postings offset table: truncated or malformed {}", e.what),
            )
        })
    }

    /// Every value of label `name`, sorted; empty when the name is absent. Like Thanos, the
    /// all-postings name `""` has the single value `""`.
    pub fn label_values(&self, name: &str) -> Result<Vec<String>> {
        let Some(e) = self.postings.get(name) else {
            return Ok(Vec::new());
        };
        let (Some(first), Some(last)) = (e.samples.first(), e.samples.last()) else {
            return Ok(Vec::new());
        };
        let mut values = Vec::with_capacity(e.samples.len());
        let mut d = self.table_decoder(first.table_off);
        loop {
            let entry = self.table_entry_at(&mut d)?;
            // Sorted, UTF-8 and grouped by name: all checked at open.
            let value = String::from_utf8_lossy(entry.value).into_owned();
            let done = *value == *last.value;
            values.push(value);
            if done {
                return Ok(values);
            }
        }
    }

    /// Where the postings list of `name="value"` sits in the bucket's `index`; `None` when the
    /// name or the value is absent.
    pub fn postings_offset(&self, name: &str, value: &str) -> Result<Option<PostingsRange>> {
        match self.postings.get(name) {
            Some(e) => self.find_value(e, value),
            None => Ok(None),
        }
    }

    /// [`Self::postings_offset`] for several values of one name: one answer per value, in the
    /// order given. (Thanos' `PostingsOffsets` wants the values sorted and answers an unknown
    /// name with an empty list; here any order works and an unknown name gives `None` for each
    /// value.)
    pub fn postings_offsets(
        &self,
        name: &str,
        values: &[&str],
    ) -> Result<Vec<Option<PostingsRange>>> {
        let Some(e) = self.postings.get(name) else {
            return Ok(vec![None; values.len()]);
        };
        values.iter().map(|v| self.find_value(e, v)).collect()
    }

    /// Binary search over the kept entries, then a linear walk of at most N entries of the
    /// table (Thanos' `postingsOffset`).
    fn find_value(&self, e: &NameOffsets, value: &str) -> Result<Option<PostingsRange>> {
        let samples = &e.samples;
        let Some(last) = samples.last() else {
            return Ok(None);
        };
        if value < &*samples[0].value || value > &*last.value {
            return Ok(None);
        }
        let mut i = samples.partition_point(|s| &*s.value < value);
        // `value` lies between samples i-1 and i unless it is sample i itself.
        if *samples[i].value != *value {
            i -= 1;
        }
        let mut d = self.table_decoder(samples[i].table_off);
        loop {
            let entry = self.table_entry_at(&mut d)?;
            match entry.value.cmp(value.as_bytes()) {
                std::cmp::Ordering::Less => continue,
                std::cmp::Ordering::Greater => return Ok(None),
                std::cmp::Ordering::Equal => {}
            }
            let at = d.offset();
            let start = entry
                .postings_off
                .checked_add(POSTING_LENGTH_FIELD_SIZE)
                .ok_or_else(|| self.corrupt(at, "postings list offset overflows"))?;
            let end = if *value == *last.value {
                e.last_val_offset
            } else {
                // Offsets were checked at open to grow by at least 12 per entry.
                self.table_entry_at(&mut d)?.postings_off - CRC_LEN
            };
            return Ok(Some(PostingsRange { start, end }));
        }
    }
}

/// The body range (absolute) of a `len u32, body, CRC32C(body)` section at `off` of `data`,
/// or what is wrong with it.
fn section(data: &[u8], off: u64) -> std::result::Result<Range<u64>, String> {
    let len_end = off.checked_add(4).filter(|&e| e <= data.len() as u64);
    let Some(len_end) = len_end else {
        return Err(format!("starts beyond the end ({} bytes)", data.len()));
    };
    let o = off as usize;
    let len = u64::from(u32::from_be_bytes([
        data[o],
        data[o + 1],
        data[o + 2],
        data[o + 3],
    ]));
    let body_end = len_end + len;
    if body_end + CRC_LEN > data.len() as u64 {
        return Err(format!(
            "length {len} runs past the end ({} bytes)",
            data.len()
        ));
    }
    let body = &data[len_end as usize..body_end as usize];
    let c = &data[body_end as usize..(body_end + CRC_LEN) as usize];
    let stored = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
    let computed = crc32c::crc32c(body);
    if stored != computed {
        return Err(format!(
            "checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
        ));
    }
    Ok(len_end..body_end)
}

#[cfg(test)]
mod tests;
