//! Compaction: merging several blocks into one, series by series.
//!
//! The inputs' series are read in label order (series refs are assigned in label order, so a
//! block's all-postings list is already sorted) and merged k-way: a label set present in one
//! block keeps its chunks byte for byte; one present in several blocks keeps them byte for byte
//! too when their chunks do not overlap in time, and is otherwise decoded, merged and
//! re-encoded into chunks of at most [`MAX_SAMPLES_PER_CHUNK`] samples (Prometheus' vertical
//! compaction). Memory holds the output's symbols and postings and one series at a time, never
//! the blocks' samples.
//!
//! How overlapping samples are merged is the caller's choice ([`MergeMode`]): Prometheus'
//! one-to-one merge (every timestamp once) or Thanos' penalty algorithm, the one the query
//! layer uses for replicas (`model::dedup`).

use std::collections::BTreeSet;
use std::path::Path;

use model::dedup::{chain_merge, penalty_merge};
use ulid::Ulid;

use crate::block::{create_block, Block, BlockWriter, WrittenBlock};
use crate::chunkenc::value::{self, TimedValue, Value};
use crate::chunkenc::{XorChunk, ENCODING_XOR};
use crate::index::ChunkMeta;
use crate::meta::BlockMeta;
use crate::querier::ChunkData;
use crate::{Error, Labels, Result, Sample};

/// Samples per re-encoded chunk, as Prometheus cuts head chunks.
pub const MAX_SAMPLES_PER_CHUNK: usize = 120;

/// Chunk bytes read from the inputs between two releases of their mapped pages: the inputs are
/// read once, front to back, so what was read can leave the resident set.
const RELEASE_PAGES_EVERY_BYTES: usize = 4 << 20;

/// How the samples of a series whose chunks overlap across blocks are merged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MergeMode {
    /// Every timestamp once, the first block's sample winning (Prometheus' vertical
    /// compaction; Thanos' compactor without a `--deduplication.func`).
    #[default]
    OneToOne,
    /// Thanos' penalty algorithm, for replicas that scraped the same targets at different
    /// moments (`--deduplication.func=penalty`).
    Penalty,
}

/// What one compaction did, beyond the block it wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MergeStats {
    /// Output series whose chunks came from more than one input and overlapped in time.
    pub merged_series: u64,
    /// Samples read from the inputs (before de-duplication).
    pub input_samples: u64,
}

/// One input's position in the merge.
struct Cursor<'a> {
    block: &'a Block,
    refs: Vec<u32>,
    next: usize,
    head: Option<(Labels, Vec<ChunkMeta>)>,
}

impl Cursor<'_> {
    fn advance(&mut self) -> Result<()> {
        self.head = match self.refs.get(self.next) {
            Some(&r) => {
                self.next += 1;
                Some(self.block.index().series(r)?)
            }
            None => None,
        };
        Ok(())
    }
}

/// Compacts `inputs` (in the order their samples win ties) into block `parent/<ulid>/`.
/// `make_meta` gets what was written and returns the output's meta.json, which is written last;
/// the block appears under its ULID only once complete.
pub fn compact_blocks(
    parent: &Path,
    ulid: Ulid,
    inputs: &[&Block],
    mode: MergeMode,
    make_meta: impl FnOnce(&Path, &WrittenBlock, &MergeStats) -> Result<BlockMeta>,
) -> Result<(BlockMeta, MergeStats)> {
    let mut stats = MergeStats::default();
    let meta = create_block(parent, ulid, |dir| {
        let written = merge_into(dir, inputs, mode, &mut stats)?;
        make_meta(dir, &written, &stats)
    })?;
    Ok((meta, stats))
}

fn merge_into(
    dir: &Path,
    inputs: &[&Block],
    mode: MergeMode,
    stats: &mut MergeStats,
) -> Result<WrittenBlock> {
    let mut symbols = BTreeSet::new();
    for block in inputs {
        for symbol in block.index().symbols() {
            symbols.insert(symbol?.to_string());
        }
    }
    let mut writer = BlockWriter::create(dir, &symbols)?;
    drop(symbols);

    let mut cursors = Vec::with_capacity(inputs.len());
    for block in inputs {
        let mut c = Cursor {
            block,
            refs: block.index().all_postings()?,
            next: 0,
            head: None,
        };
        c.advance()?;
        cursors.push(c);
    }

    let mut read_since_release = 0usize;
    let mut from: Vec<usize> = Vec::with_capacity(cursors.len());
    let mut chunks: Vec<(usize, ChunkData)> = Vec::new();
    let mut out_chunks: Vec<ChunkData> = Vec::new();
    loop {
        // The smallest label set among the cursors' heads, and which cursors hold it.
        from.clear();
        let mut min: Option<&Labels> = None;
        for (i, c) in cursors.iter().enumerate() {
            let Some((labels, _)) = &c.head else { continue };
            match min.map(|m| labels.cmp(m)) {
                None | Some(std::cmp::Ordering::Less) => {
                    min = Some(labels);
                    from.clear();
                    from.push(i);
                }
                Some(std::cmp::Ordering::Equal) => from.push(i),
                Some(std::cmp::Ordering::Greater) => {}
            }
        }
        let Some(labels) = min.cloned() else { break };

        chunks.clear();
        for &i in &from {
            let c = &cursors[i];
            let (_, metas) = c.head.as_ref().expect("selected cursors have a head");
            for m in metas {
                let chunk = c.block.chunk(m)?;
                read_since_release += chunk.data.len();
                stats.input_samples += chunk.num_samples() as u64;
                chunks.push((i, chunk));
            }
        }
        out_chunks.clear();
        if from.len() == 1 || !overlapping(&chunks) {
            chunks.sort_by_key(|(_, c)| (c.min_time, c.max_time));
            out_chunks.extend(chunks.drain(..).map(|(_, c)| c));
        } else {
            stats.merged_series += 1;
            merge_chunks(&labels, &from, &chunks, mode, &mut out_chunks)?;
        }
        writer.add_series(&labels, &out_chunks)?;
        for &i in &from {
            cursors[i].advance()?;
        }
        if read_since_release >= RELEASE_PAGES_EVERY_BYTES {
            inputs.iter().for_each(|b| b.release_chunk_pages());
            read_since_release = 0;
        }
    }
    writer.finish()
}

/// Whether any two chunks overlap in time.
fn overlapping(chunks: &[(usize, ChunkData)]) -> bool {
    let mut ranges: Vec<(i64, i64)> = chunks
        .iter()
        .map(|(_, c)| (c.min_time, c.max_time))
        .collect();
    ranges.sort_unstable();
    ranges.windows(2).any(|w| w[1].0 <= w[0].1)
}

/// Decodes each input's chunks of one series, merges them and re-encodes the result.
fn merge_chunks(
    labels: &Labels,
    from: &[usize],
    chunks: &[(usize, ChunkData)],
    mode: MergeMode,
    out: &mut Vec<ChunkData>,
) -> Result<()> {
    if chunks.iter().all(|(_, c)| c.encoding == ENCODING_XOR) {
        return merge_float_chunks(from, chunks, mode, out);
    }
    // Native histograms (alone or mixed with floats): the same merges over any value.
    let mut per_input: Vec<Vec<TimedValue>> = vec![Vec::new(); from.len()];
    for (i, chunk) in chunks {
        let samples = value::decode(chunk.encoding, &chunk.data).map_err(|e| {
            Error::Invalid(format!(
                "series {labels}: cannot merge chunk of encoding {}: {e}",
                chunk.encoding
            ))
        })?;
        let slot = from
            .iter()
            .position(|f| f == i)
            .expect("chunk of a selected input");
        per_input[slot].extend(samples.into_iter().map(|(t, v)| TimedValue { t, v }));
    }
    for samples in &mut per_input {
        samples.sort_by_key(|s| s.t);
        samples.dedup_by_key(|s| s.t);
    }
    let replicas: Vec<&[TimedValue]> = per_input.iter().map(Vec::as_slice).collect();
    let mut merged = Vec::new();
    match mode {
        MergeMode::OneToOne => chain_merge(&replicas, &mut merged),
        MergeMode::Penalty => penalty_merge(&replicas, false, &mut merged),
    }
    let merged: Vec<(i64, Value)> = merged.into_iter().map(|s| (s.t, s.v)).collect();
    out.extend(
        value::encode(&merged)
            .into_iter()
            .map(|(min_time, max_time, encoding, data)| ChunkData {
                min_time,
                max_time,
                encoding,
                data: data.into(),
            }),
    );
    Ok(())
}

fn merge_float_chunks(
    from: &[usize],
    chunks: &[(usize, ChunkData)],
    mode: MergeMode,
    out: &mut Vec<ChunkData>,
) -> Result<()> {
    let mut per_input: Vec<Vec<Sample>> = vec![Vec::new(); from.len()];
    for (i, chunk) in chunks {
        let slot = from
            .iter()
            .position(|f| f == i)
            .expect("chunk of a selected input");
        per_input[slot].extend(chunk.samples().map(|(t, v)| Sample { t, v }));
    }
    for samples in &mut per_input {
        // An input's own chunks do not overlap, but keep each input sorted regardless.
        samples.sort_by_key(|s| s.t);
        samples.dedup_by_key(|s| s.t);
    }
    let replicas: Vec<&[Sample]> = per_input.iter().map(Vec::as_slice).collect();
    let mut merged = Vec::new();
    match mode {
        MergeMode::OneToOne => chain_merge(&replicas, &mut merged),
        MergeMode::Penalty => penalty_merge(&replicas, false, &mut merged),
    }
    for part in merged.chunks(MAX_SAMPLES_PER_CHUNK) {
        let mut chunk = XorChunk::new();
        for s in part {
            chunk.append(s.t, s.v);
        }
        out.push(ChunkData {
            min_time: part[0].t,
            max_time: part[part.len() - 1].t,
            encoding: ENCODING_XOR,
            data: bytes::Bytes::copy_from_slice(chunk.bytes()),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
