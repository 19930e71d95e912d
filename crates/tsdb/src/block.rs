//! Immutable blocks: writing one from series and chunks, and reading one back.
//!
//! ```text
//! <ULID>/
//!   meta.json      time range [minTime, maxTime), stats, compaction, Thanos section
//!   index          format v2: symbols, series, postings, postings offset table, TOC
//!   chunks/000001  chunk segment files
//!   tombstones     deleted ranges (always empty when Cairn writes a block)
//! ```
//! A block is assembled in `<ULID>.tmp-for-creation/`, fsynced, and renamed into place, so a
//! directory named by a ULID is always complete. `Db::open` removes leftover temp directories.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ulid::Ulid;

use crate::chunkenc::{self, value, XorChunk, ENCODING_XOR};
use crate::chunks::{ChunkReader, ChunkWriter};
use crate::error::IoContext;
use crate::index::{ChunkMeta, IndexReader, IndexWriter};
use crate::matcher::{postings_for_matchers, Matcher, PostingsIndex};
use crate::meta::{BlockMeta, BlockStats, Compaction, FileMeta, ThanosMeta, META_VERSION};
use crate::querier::{names_of, values_of, ChunkData, Querier, Series};
use crate::tombstones::write_tombstones;
use crate::wal::sync_dir;
use crate::{Error, Labels, Result};

pub const INDEX_FILENAME: &str = "index";
pub const CHUNKS_DIRNAME: &str = "chunks";
pub const TOMBSTONES_FILENAME: &str = "tombstones";
pub const TMP_CREATION_SUFFIX: &str = ".tmp-for-creation";
pub const TMP_DELETION_SUFFIX: &str = ".tmp-for-deletion";

/// Writes `data` to `path` through a temp file, fsync and rename.
pub(crate) fn write_file_atomically(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp).ctx(|| format!("creating {}", tmp.display()))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .ctx(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).ctx(|| format!("renaming {}", tmp.display()))?;
    if let Some(parent) = path.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// What a new block's meta.json should say beyond what the writer computes.
#[derive(Clone, Debug, Default)]
pub struct BlockWriteOptions {
    pub compaction: Compaction,
    /// The Thanos section (external labels, source, resolution); `files` is filled in.
    pub thanos: Option<ThanosMeta>,
}

/// Keeps the samples of `chunk` within [mint, maxt), re-encoding only when needed (histogram
/// chunks may come back as several when a sample left out was what joined them).
fn trim_chunk(chunk: &ChunkData, mint: i64, maxt: i64, out: &mut Vec<ChunkData>) {
    if chunk.min_time >= mint && chunk.max_time < maxt {
        out.push(chunk.clone());
        return;
    }
    if chunk.encoding == ENCODING_XOR {
        let mut x = XorChunk::new();
        let (mut lo, mut hi) = (i64::MAX, i64::MIN);
        for (t, v) in chunk.samples() {
            if t >= mint && t < maxt {
                x.append(t, v);
                lo = lo.min(t);
                hi = hi.max(t);
            }
        }
        if x.num_samples() > 0 {
            out.push(ChunkData {
                min_time: lo,
                max_time: hi,
                encoding: ENCODING_XOR,
                data: bytes::Bytes::copy_from_slice(x.bytes()),
            });
        }
        return;
    }
    let Ok(mut samples) = value::decode(chunk.encoding, &chunk.data) else {
        return;
    };
    // The counter-reset header still holds when the first sample stays.
    let first = if chunk.min_time >= mint {
        value::header(chunk.encoding, &chunk.data)
    } else {
        chunkenc::CounterResetHeader::Unknown
    };
    samples.retain(|(t, _)| *t >= mint && *t < maxt);
    out.extend(value::encode_from(first, &samples).into_iter().map(
        |(min_time, max_time, encoding, data)| ChunkData {
            min_time,
            max_time,
            encoding,
            data: data.into(),
        },
    ));
}

/// Writes a block covering [mint, maxt) from label-sorted series into `parent/<ULID>/` and
/// returns its meta. Samples outside the range are dropped; series left without chunks are
/// not written.
pub fn write_block(
    parent: &Path,
    mint: i64,
    maxt: i64,
    series: &[Series],
    opts: BlockWriteOptions,
) -> Result<BlockMeta> {
    let ulid = Ulid::new();
    let meta = create_block(parent, ulid, |dir| {
        let trimmed: Vec<(&Labels, Vec<ChunkData>)> = series
            .iter()
            .map(|s| {
                let mut chunks = Vec::with_capacity(s.chunks.len());
                for c in &s.chunks {
                    trim_chunk(c, mint, maxt, &mut chunks);
                }
                (&s.labels, chunks)
            })
            .filter(|(_, chunks)| !chunks.is_empty())
            .collect();
        let mut symbols: BTreeSet<String> = BTreeSet::new();
        for (labels, _) in &trimmed {
            for l in labels.iter() {
                symbols.insert(l.name.to_string());
                symbols.insert(l.value.to_string());
            }
        }
        let mut writer = BlockWriter::create(dir, &symbols)?;
        for (labels, chunks) in &trimmed {
            writer.add_series(labels, chunks)?;
        }
        let written = writer.finish()?;
        let thanos = opts.thanos.map(|mut t| {
            t.files = list_block_files(dir);
            t
        });
        let mut compaction = opts.compaction;
        if compaction.level == 0 {
            compaction.level = 1;
        }
        if compaction.sources.is_empty() {
            compaction.sources = vec![ulid.to_string()];
        }
        Ok(BlockMeta {
            ulid,
            min_time: mint,
            max_time: maxt,
            stats: written.stats,
            compaction,
            version: META_VERSION,
            thanos,
        })
    })?;
    tracing::info!(block = %ulid, mint, maxt, series = meta.stats.num_series, samples = meta.stats.num_samples, "wrote block");
    Ok(meta)
}

/// Creates block `parent/<ulid>/`: `fill` writes the block's files into a temp directory
/// (`<ulid>.tmp-for-creation`) and returns its meta, which is written last; the directory is
/// fsynced and renamed into place. On error the temp directory is removed and no block exists.
pub fn create_block(
    parent: &Path,
    ulid: Ulid,
    fill: impl FnOnce(&Path) -> Result<BlockMeta>,
) -> Result<BlockMeta> {
    let tmp = parent.join(format!("{ulid}{TMP_CREATION_SUFFIX}"));
    let dst = parent.join(ulid.to_string());
    let result = fs::create_dir_all(&tmp)
        .ctx(|| format!("creating {}", tmp.display()))
        .and_then(|_| fill(&tmp))
        .and_then(|meta| {
            meta.write(&tmp)?;
            sync_dir(&tmp)?;
            Ok(meta)
        });
    let meta = match result {
        Ok(meta) => meta,
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    fs::rename(&tmp, &dst).ctx(|| format!("renaming {} into place", tmp.display()))?;
    sync_dir(parent)?;
    Ok(meta)
}

/// What [`BlockWriter::finish`] knows of the block it wrote.
#[derive(Clone, Debug, Default)]
pub struct WrittenBlock {
    pub stats: BlockStats,
    /// Chunk segment file names (`000001`, ...), ascending.
    pub segment_files: Vec<String>,
    /// The largest chunk's data, in bytes.
    pub chunk_max_size: u64,
}

/// Writes a block's index, chunks and tombstones into a directory, one series at a time (in
/// label order), so that memory holds the symbols and postings but never the samples.
pub struct BlockWriter {
    dir: PathBuf,
    chunks: ChunkWriter,
    index: IndexWriter,
    metas: Vec<ChunkMeta>,
    written: WrittenBlock,
}

impl BlockWriter {
    /// Starts a block in `dir` (which must exist) whose series use only `symbols`.
    pub fn create(dir: &Path, symbols: &BTreeSet<String>) -> Result<BlockWriter> {
        let chunks_dir = dir.join(CHUNKS_DIRNAME);
        fs::create_dir_all(&chunks_dir).ctx(|| format!("creating {}", chunks_dir.display()))?;
        Ok(BlockWriter {
            dir: dir.to_path_buf(),
            chunks: ChunkWriter::create(&chunks_dir)?,
            index: IndexWriter::create(&dir.join(INDEX_FILENAME), symbols)?,
            metas: Vec::new(),
            written: WrittenBlock::default(),
        })
    }

    /// Adds one series with its chunks (in time order). Series must come in label order; a
    /// series without chunks is not written.
    pub fn add_series(&mut self, labels: &Labels, chunks: &[ChunkData]) -> Result<()> {
        if chunks.is_empty() {
            return Ok(());
        }
        self.metas.clear();
        for c in chunks {
            let chunk_ref = self.chunks.write_chunk(c.encoding, &c.data)?;
            self.metas.push(ChunkMeta {
                min_time: c.min_time,
                max_time: c.max_time,
                chunk_ref,
            });
            self.written.stats.num_samples += c.num_samples() as u64;
            self.written.stats.num_chunks += 1;
            self.written.chunk_max_size = self.written.chunk_max_size.max(c.data.len() as u64);
        }
        self.index.add_series(labels, &self.metas)?;
        self.written.stats.num_series += 1;
        Ok(())
    }

    /// Finishes the chunk segments, the index and the (empty) tombstones, fsynced.
    pub fn finish(mut self) -> Result<WrittenBlock> {
        self.chunks.finish()?;
        self.index.finish()?;
        write_tombstones(&self.dir.join(TOMBSTONES_FILENAME), &[])?;
        let chunks_dir = self.dir.join(CHUNKS_DIRNAME);
        sync_dir(&chunks_dir)?;
        let mut names: Vec<String> = fs::read_dir(&chunks_dir)
            .ctx(|| format!("listing {}", chunks_dir.display()))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        self.written.segment_files = names;
        Ok(self.written)
    }
}

/// The files of a block as Thanos lists them in meta.json (meta.json itself without a size).
pub fn list_block_files(dir: &Path) -> Vec<FileMeta> {
    let mut files = Vec::new();
    if let Ok(entries) = fs::read_dir(dir.join(CHUNKS_DIRNAME)) {
        let mut names: Vec<_> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        for n in names {
            let rel = format!("{CHUNKS_DIRNAME}/{n}");
            let size = fs::metadata(dir.join(&rel)).ok().map(|m| m.len());
            files.push(FileMeta {
                rel_path: rel,
                size_bytes: size,
            });
        }
    }
    let size = fs::metadata(dir.join(INDEX_FILENAME)).ok().map(|m| m.len());
    files.push(FileMeta {
        rel_path: INDEX_FILENAME.into(),
        size_bytes: size,
    });
    files.push(FileMeta {
        rel_path: crate::meta::META_FILENAME.into(),
        size_bytes: None,
    });
    files
}

/// An open, immutable block.
pub struct Block {
    dir: PathBuf,
    meta: BlockMeta,
    pub(crate) index: IndexReader,
    chunks: ChunkReader,
}

impl Block {
    pub fn open(dir: &Path) -> Result<Block> {
        let meta = BlockMeta::read(dir)?;
        let index = IndexReader::open(&dir.join(INDEX_FILENAME))?;
        let chunks = ChunkReader::open(&dir.join(CHUNKS_DIRNAME))?;
        Ok(Block {
            dir: dir.to_path_buf(),
            meta,
            index,
            chunks,
        })
    }

    pub fn meta(&self) -> &BlockMeta {
        &self.meta
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn index(&self) -> &IndexReader {
        &self.index
    }

    /// Drops the chunk segments' pages from the resident set ([`ChunkReader::release_pages`]).
    pub fn release_chunk_pages(&self) {
        self.chunks.release_pages();
    }

    /// Bytes on disk (index + chunks).
    pub fn size(&self) -> u64 {
        self.index.size() + self.chunks.size()
    }

    /// Does [mint, maxt] (inclusive) overlap the block's [minTime, maxTime)?
    pub fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        mint < self.meta.max_time && maxt >= self.meta.min_time
    }

    /// Reads one chunk's bytes.
    pub fn chunk(&self, meta: &ChunkMeta) -> Result<ChunkData> {
        let (encoding, data) = self.chunks.chunk_bytes(meta.chunk_ref)?;
        Ok(ChunkData {
            min_time: meta.min_time,
            max_time: meta.max_time,
            encoding,
            data,
        })
    }
}

impl PostingsIndex for Block {
    fn all_postings(&self) -> Result<Vec<u64>> {
        Ok(self
            .index
            .all_postings()?
            .into_iter()
            .map(u64::from)
            .collect())
    }

    fn postings(&self, name: &str, value: &str) -> Result<Vec<u64>> {
        Ok(self
            .index
            .postings(name, value)?
            .into_iter()
            .map(u64::from)
            .collect())
    }

    fn label_values(&self, name: &str) -> Result<Vec<String>> {
        self.index.label_values(name)
    }
}

/// A querier over one block.
pub struct BlockQuerier(pub Arc<Block>);

impl BlockQuerier {
    fn series_matching(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        with_chunks: bool,
    ) -> Result<Vec<Series>> {
        let block = &self.0;
        if !block.overlaps(mint, maxt) {
            return Ok(Vec::new());
        }
        let refs = postings_for_matchers(&**block, matchers)?;
        let mut out = Vec::with_capacity(refs.len());
        for r in refs {
            let series_ref = u32::try_from(r)
                .map_err(|_| Error::Invalid(format!("series ref {r} out of range")))?;
            let (labels, metas) = block.index.series(series_ref)?;
            let mut chunks = Vec::new();
            let mut any = false;
            for m in metas
                .iter()
                .filter(|m| m.max_time >= mint && m.min_time <= maxt)
            {
                any = true;
                if with_chunks {
                    chunks.push(block.chunk(m)?);
                }
            }
            if any {
                out.push(Series { labels, chunks });
            }
        }
        // Series refs are assigned in label order, so `out` is already sorted.
        Ok(out)
    }
}

impl Querier for BlockQuerier {
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>> {
        self.series_matching(matchers, mint, maxt, true)
    }

    fn label_names(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<String>> {
        if !self.0.overlaps(mint, maxt) {
            return Ok(Vec::new());
        }
        if matchers.is_empty() {
            return self.0.index.label_names();
        }
        Ok(names_of(
            &self.series_matching(matchers, mint, maxt, false)?,
        ))
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>> {
        if !self.0.overlaps(mint, maxt) {
            return Ok(Vec::new());
        }
        if matchers.is_empty() {
            return self.0.index.label_values(name);
        }
        Ok(values_of(
            &self.series_matching(matchers, mint, maxt, false)?,
            name,
        ))
    }
}
