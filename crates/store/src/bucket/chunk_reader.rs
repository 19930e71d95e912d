//! Chunks of one bucket block, read by range from its segment files `chunks/000001`, ...
//! (Thanos' `bucketChunkReader`, `pkg/store/bucket.go`).
//!
//! A chunk ref is `(segment << 32) | offset`, the segment counted from 0 in the order of the
//! block's segment files (meta `thanos.segment_files` when present, else the bucket listing of
//! `<ULID>/chunks/`, sorted). Refs are grouped by segment and sorted by offset; each asks for
//! `[offset, offset + estimate)` (16000 bytes unless the meta says its largest chunk is
//! smaller), and the ranges are coalesced by the [`GapPartitioner`] into one GET per part. A
//! chunk is a uvarint data length, an encoding byte and the data; one that does not fit in what
//! was fetched is fetched again on its own. The CRC after the data is not read (as in Thanos).

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use tsdb::index::enc::{Decoder, MAX_VARINT_LEN64};
use tsdb::meta::BlockMeta;
use ulid::Ulid;

use super::chunks_cache::ChunksCache;
use super::partition::GapPartitioner;
use super::{Error, FetchStats, Result};

/// The encoding byte and the data of a chunk, as stored (the CRC is not included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawChunk {
    pub encoding: u8,
    pub data: Bytes,
}

/// A segment file of the block: its name inside the block (`chunks/000001`) and, when known,
/// its size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub file: String,
    pub size: Option<u64>,
}

/// Reads chunks of one block from the bucket. Cheap to clone.
#[derive(Clone)]
pub struct BlockChunkReader {
    block: Ulid,
    bucket: objstore::Bucket,
    segments: Arc<[Segment]>,
    partitioner: GapPartitioner,
    estimated_max_chunk_size: u64,
    stats: Arc<FetchStats>,
    cache: Option<Arc<ChunksCache>>,
}

impl BlockChunkReader {
    /// Finds the block's segment files (from its meta, or by listing `<ULID>/chunks/`) and
    /// makes a reader. `estimated_max_chunk_size` is usually [`super::estimated_max_chunk_size`]
    /// of the meta.
    pub async fn open(
        bucket: objstore::Bucket,
        meta: &BlockMeta,
        estimated_max_chunk_size: u64,
        stats: Arc<FetchStats>,
    ) -> Result<Self> {
        let segments = match segments_from_meta(meta) {
            // The chunks cache needs every segment's size; a listing has them.
            Some(s) if s.iter().all(|s| s.size.is_some()) => s,
            _ => list_segments(&bucket, meta.ulid).await?,
        };
        Ok(Self::with_segments(
            bucket,
            meta.ulid,
            segments,
            estimated_max_chunk_size,
            stats,
        ))
    }

    /// A reader over the given segment files, in segment order.
    pub fn with_segments(
        bucket: objstore::Bucket,
        block: Ulid,
        segments: Vec<Segment>,
        estimated_max_chunk_size: u64,
        stats: Arc<FetchStats>,
    ) -> Self {
        BlockChunkReader {
            block,
            bucket,
            segments: segments.into(),
            partitioner: GapPartitioner::default(),
            estimated_max_chunk_size: estimated_max_chunk_size.max(1),
            stats,
            cache: None,
        }
    }

    /// Reads segment ranges through `cache` (shared by the store's requests).
    pub fn with_cache(mut self, cache: Arc<ChunksCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Uses `partitioner` instead of the default 512 KiB gap.
    pub fn with_partitioner(mut self, partitioner: GapPartitioner) -> Self {
        self.partitioner = partitioner;
        self
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    pub fn stats(&self) -> &Arc<FetchStats> {
        &self.stats
    }

    /// The chunk of each ref, in the order given. Refs may repeat.
    pub async fn fetch_chunks(&self, refs: &[u64]) -> Result<Vec<RawChunk>> {
        // Segment -> (offset, position in `refs`).
        let mut by_segment: BTreeMap<usize, Vec<(u64, usize)>> = BTreeMap::new();
        for (i, &r) in refs.iter().enumerate() {
            let seq = (r >> 32) as usize;
            let off = r & 0xffff_ffff;
            let Some(segment) = self.segments.get(seq) else {
                return Err(Error::corrupt(
                    self.block,
                    segment_file_name(seq),
                    off,
                    format!(
                        "chunk ref {r:#x} names segment {seq}, but the block has {} segment files",
                        self.segments.len()
                    ),
                ));
            };
            let beyond = segment.size.is_some_and(|size| off >= size);
            if off < tsdb::chunks::SEGMENT_HEADER_BYTES || beyond {
                return Err(Error::corrupt(
                    self.block,
                    &segment.file,
                    off,
                    format!("chunk ref {r:#x} points outside the segment's chunks"),
                ));
            }
            by_segment.entry(seq).or_default().push((off, i));
        }

        let mut jobs = Vec::new();
        for (seq, mut offsets) in by_segment {
            offsets.sort_unstable();
            let segment = &self.segments[seq];
            let limit = segment.size.unwrap_or(u64::MAX);
            let ranges: Vec<Range<u64>> = offsets
                .iter()
                .map(|&(off, _)| off..off.saturating_add(self.estimated_max_chunk_size).min(limit))
                .collect();
            for part in self.partitioner.partition(&ranges) {
                jobs.push((
                    segment,
                    part.start..part.end,
                    offsets[part.elements].to_vec(),
                ));
            }
        }

        let loaded = futures::future::try_join_all(jobs.into_iter().map(
            |(segment, range, offsets)| async move {
                let path = self.path(segment);
                let bytes = self.get(segment, &path, range.clone()).await?;
                let mut chunks = Vec::with_capacity(offsets.len());
                for (off, i) in offsets {
                    let from = ((off - range.start) as usize).min(bytes.len());
                    chunks.push((
                        i,
                        self.chunk(segment, &path, bytes.slice(from..), off).await?,
                    ));
                }
                Ok::<_, Error>(chunks)
            },
        ))
        .await?;

        let mut out = vec![
            RawChunk {
                encoding: 0,
                data: Bytes::new(),
            };
            refs.len()
        ];
        for (i, chunk) in loaded.into_iter().flatten() {
            out[i] = chunk;
        }
        Ok(out)
    }

    fn path(&self, segment: &Segment) -> ObjectPath {
        ObjectPath::from(format!("{}/{}", self.block, segment.file))
    }

    /// `range` of the segment, through the cache when there is one. Only bytes that came
    /// from the bucket count in the stats.
    async fn get(&self, segment: &Segment, path: &ObjectPath, range: Range<u64>) -> Result<Bytes> {
        let fetch = |range: Range<u64>| async move {
            let bytes = super::get_range(&self.bucket, self.block, path, range).await?;
            FetchStats::add(&self.stats.chunks_fetches, 1);
            FetchStats::add(&self.stats.chunks_fetched_bytes, bytes.len() as u64);
            Ok(bytes)
        };
        match &self.cache {
            Some(cache) => {
                let object: Arc<str> = Arc::from(path.as_ref());
                let (bytes, _) = cache.get_range(&object, range, segment.size, fetch).await?;
                Ok(bytes)
            }
            None => fetch(range).await,
        }
    }

    /// The chunk at `off`, from `available` (the fetched bytes from `off` on) when it fits
    /// there, otherwise fetched again on its own.
    async fn chunk(
        &self,
        segment: &Segment,
        path: &ObjectPath,
        available: Bytes,
        off: u64,
    ) -> Result<RawChunk> {
        let corrupt =
            |offset: u64, detail: String| Error::corrupt(self.block, &segment.file, offset, detail);
        let mut d = Decoder::new(&available, off);
        let len = match d.uvarint("chunk length") {
            Ok(len) => len,
            Err(e) if available.len() >= MAX_VARINT_LEN64 => {
                return Err(corrupt(e.offset, format!("malformed {}", e.what)))
            }
            Err(_) => {
                // The length itself was cut off; read it on its own (rare: tiny estimates).
                let limit = segment.size.unwrap_or(u64::MAX);
                let head = self
                    .get(
                        segment,
                        path,
                        off..(off + MAX_VARINT_LEN64 as u64).min(limit),
                    )
                    .await?;
                let mut d = Decoder::new(&head, off);
                let len = d
                    .uvarint("chunk length")
                    .map_err(|e| corrupt(e.offset, format!("truncated or malformed {}", e.what)))?;
                return self
                    .refetch_chunk(segment, path, off, d.offset() - off, len)
                    .await;
            }
        };
        let header = d.offset() - off;
        // Length prefix, encoding byte, data.
        let Some(end) = header.checked_add(1).and_then(|h| h.checked_add(len)) else {
            return Err(corrupt(off, format!("chunk length {len} overflows")));
        };
        if end <= available.len() as u64 {
            return Ok(RawChunk {
                encoding: available[header as usize],
                data: available.slice(header as usize + 1..end as usize),
            });
        }
        self.refetch_chunk(segment, path, off, header, len).await
    }

    /// Fetches the chunk at `off` (length prefix of `header` bytes, data of `len`) alone.
    async fn refetch_chunk(
        &self,
        segment: &Segment,
        path: &ObjectPath,
        off: u64,
        header: u64,
        len: u64,
    ) -> Result<RawChunk> {
        let corrupt = |detail: String| Error::corrupt(self.block, &segment.file, off, detail);
        // A hostile length must not overflow (the cut-off-length path gets here unchecked).
        let end = header
            .checked_add(1)
            .and_then(|h| h.checked_add(len))
            .filter(|e| off.checked_add(*e).is_some())
            .ok_or_else(|| corrupt(format!("chunk length {len} overflows")))?;
        if segment
            .size
            .is_some_and(|size| off.saturating_add(end) > size)
        {
            return Err(corrupt(format!(
                "chunk of {end} bytes runs past the end of the segment"
            )));
        }
        FetchStats::add(&self.stats.chunk_refetches, 1);
        tracing::debug!(block = %self.block, file = %segment.file, offset = off, size = end,
            estimate = self.estimated_max_chunk_size, "chunk larger than estimated; refetching");
        let bytes = self.get(segment, path, off..off + end).await?;
        if (bytes.len() as u64) < end {
            return Err(corrupt(format!(
                "chunk of {end} bytes is cut off after {} bytes",
                bytes.len()
            )));
        }
        Ok(RawChunk {
            encoding: bytes[header as usize],
            data: bytes.slice(header as usize + 1..end as usize),
        })
    }
}

/// `chunks/000001` for segment 0, as Prometheus numbers the files.
fn segment_file_name(seq: usize) -> String {
    format!("{}/{:06}", tsdb::block::CHUNKS_DIRNAME, seq + 1)
}

/// The segments named by meta `thanos.segment_files` (deprecated in Thanos, still written),
/// with sizes from `thanos.files` where listed.
fn segments_from_meta(meta: &BlockMeta) -> Option<Vec<Segment>> {
    let thanos = meta.thanos.as_ref()?;
    let names = thanos.extra.get("segment_files")?.as_array()?;
    if names.is_empty() {
        return None;
    }
    names
        .iter()
        .map(|n| {
            let file = format!("{}/{}", tsdb::block::CHUNKS_DIRNAME, n.as_str()?);
            let size = thanos
                .files
                .iter()
                .find(|f| f.rel_path == file)
                .and_then(|f| f.size_bytes);
            Some(Segment { file, size })
        })
        .collect()
}

/// The objects under `<ULID>/chunks/`, sorted by name, with their sizes.
async fn list_segments(bucket: &objstore::Bucket, block: Ulid) -> Result<Vec<Segment>> {
    let prefix = ObjectPath::from(format!("{block}/{}", tsdb::block::CHUNKS_DIRNAME));
    let listed: Vec<object_store::ObjectMeta> = bucket
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(|source| Error::Bucket {
            block,
            op: "list",
            path: prefix.to_string(),
            source: Box::new(source),
        })?;
    let block_prefix = format!("{block}/");
    let mut segments: Vec<Segment> = listed
        .into_iter()
        .filter_map(|m| {
            let file = m.location.as_ref().strip_prefix(&block_prefix)?.to_string();
            // Only direct children of chunks/ (Thanos iterates one level).
            let name = file.strip_prefix(&format!("{}/", tsdb::block::CHUNKS_DIRNAME))?;
            (!name.contains('/')).then_some(Segment {
                file,
                size: Some(m.size),
            })
        })
        .collect();
    segments.sort_by(|a, b| a.file.cmp(&b.file));
    Ok(segments)
}
