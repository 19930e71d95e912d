//! Postings lists and series entries of one bucket block, read by range from its `index` with
//! the help of its index-header (Thanos' `bucketIndexReader`, `pkg/store/bucket.go`).
//!
//! Postings: the index-header says where each (name, value) list sits; the ranges are sorted,
//! coalesced by the [`GapPartitioner`] and fetched with one GET per part, concurrently. At each
//! range's start the reader takes the u32 count and then count x u32 refs; like Thanos it never
//! reads the list's `len` or CRC. Refs are native (byte offset / 16 in index v2).
//!
//! Series: each ref asks for `[ref x 16, ref x 16 + estimate)` (the estimate is 64 KiB unless the
//! block's meta says its largest series is smaller), coalesced the same way. An entry is its
//! uvarint length, then the body; an entry that does not fit in what was fetched is fetched
//! again on its own. The CRC after the body is not read (as in Thanos). Bodies decode with the
//! block's symbols, looked up through the index-header.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use tsdb::index::enc::{uvarint_len, Decoder, MAX_VARINT_LEN64};
use tsdb::index::ChunkMeta;
use tsdb::{Label, Labels};
use ulid::Ulid;

use super::indexheader::IndexHeaderReader;
use super::partition::GapPartitioner;
use super::{Error, FetchStats, Result};

const INDEX_FILE: &str = tsdb::block::INDEX_FILENAME;
/// Index v2 aligns series entries to 16 bytes and refers to them by offset / 16.
const SERIES_ALIGNMENT: u64 = 16;

/// One series of the block: its ref, labels and chunk metas (all of them; see
/// [`SeriesEntry::chunks_overlapping`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeriesEntry {
    pub series_ref: u32,
    pub labels: Labels,
    pub chunks: Vec<ChunkMeta>,
}

impl SeriesEntry {
    /// The chunks a Series request for `[mint, maxt]` (inclusive) returns, as Thanos'
    /// `decodeSeriesForTime` picks them: those with `max_time >= mint` and `min_time <= maxt`,
    /// stopping at the first chunk that starts after `maxt`.
    pub fn chunks_overlapping(&self, mint: i64, maxt: i64) -> Vec<ChunkMeta> {
        self.chunks
            .iter()
            .take_while(|c| c.min_time <= maxt)
            .filter(|c| c.max_time >= mint)
            .copied()
            .collect()
    }
}

/// Reads postings and series of one block from the bucket. Cheap to clone.
#[derive(Clone)]
pub struct BlockIndexReader {
    block: Ulid,
    bucket: objstore::Bucket,
    index: ObjectPath,
    header: Arc<IndexHeaderReader>,
    partitioner: GapPartitioner,
    estimated_max_series_size: u64,
    stats: Arc<FetchStats>,
}

impl BlockIndexReader {
    /// A reader for the block of `header`. `estimated_max_series_size` is usually
    /// [`super::estimated_max_series_size`] of the block's meta; fetches are counted in `stats`.
    pub fn new(
        bucket: objstore::Bucket,
        header: Arc<IndexHeaderReader>,
        estimated_max_series_size: u64,
        stats: Arc<FetchStats>,
    ) -> Self {
        let block = header.block();
        BlockIndexReader {
            block,
            bucket,
            index: ObjectPath::from(format!("{block}/{INDEX_FILE}")),
            header,
            partitioner: GapPartitioner::default(),
            estimated_max_series_size: estimated_max_series_size.max(1),
            stats,
        }
    }

    /// Uses `partitioner` instead of the default 512 KiB gap.
    pub fn with_partitioner(mut self, partitioner: GapPartitioner) -> Self {
        self.partitioner = partitioner;
        self
    }

    pub fn block(&self) -> Ulid {
        self.block
    }

    pub fn header(&self) -> &Arc<IndexHeaderReader> {
        &self.header
    }

    pub fn stats(&self) -> &Arc<FetchStats> {
        &self.stats
    }

    fn corrupt(&self, offset: u64, detail: impl Into<String>) -> Error {
        Error::corrupt(self.block, INDEX_FILE, offset, detail)
    }

    async fn get(&self, range: Range<u64>) -> Result<Bytes> {
        super::get_range(&self.bucket, self.block, &self.index, range).await
    }

    /// The postings list of each `(name, value)` key, in the order given: native series refs,
    /// ascending; empty for a key the block does not have. Keys may repeat.
    pub async fn fetch_postings(&self, keys: &[(&str, &str)]) -> Result<Vec<Vec<u32>>> {
        let mut ptrs: Vec<(Range<u64>, usize)> = Vec::with_capacity(keys.len());
        for (i, (name, value)) in keys.iter().enumerate() {
            if let Some(r) = self.header.postings_offset(name, value)? {
                ptrs.push((r.as_range(), i));
            }
        }
        ptrs.sort_by_key(|(r, _)| r.start);
        let ranges: Vec<Range<u64>> = ptrs.iter().map(|(r, _)| r.clone()).collect();
        let parts = self.partitioner.partition(&ranges);

        let fetched = futures::future::try_join_all(parts.iter().map(|p| async move {
            let b = self.get(p.start..p.end).await?;
            FetchStats::add(&self.stats.postings_fetches, 1);
            FetchStats::add(&self.stats.postings_fetched_bytes, b.len() as u64);
            Ok::<_, Error>(b)
        }))
        .await?;

        let mut out = vec![Vec::new(); keys.len()];
        for (part, bytes) in parts.iter().zip(&fetched) {
            for (range, key) in &ptrs[part.elements.clone()] {
                let (name, value) = keys[*key];
                out[*key] = self.decode_postings(bytes, part.start, range, name, value)?;
            }
        }
        Ok(out)
    }

    /// The list at `range` inside `bytes` (which start at file offset `base`).
    fn decode_postings(
        &self,
        bytes: &[u8],
        base: u64,
        range: &Range<u64>,
        name: &str,
        value: &str,
    ) -> Result<Vec<u32>> {
        let what = || format!("postings list for {name}={value:?}");
        // The range was cut to what the bucket returned; a short read shows up as truncation.
        let from = (range.start - base) as usize;
        let to = ((range.end - base) as usize).min(bytes.len());
        let list = bytes.get(from..to).unwrap_or(&[]);
        let mut d = Decoder::new(list, range.start);
        let count = d
            .be32("postings count")
            .map_err(|e| self.corrupt(e.offset, format!("{}: truncated {}", what(), e.what)))?;
        let refs = d.bytes(4 * count as usize, "postings refs").map_err(|_| {
            self.corrupt(
                range.start,
                format!(
                    "{}: {count} refs do not fit in the {} bytes up to the list's end",
                    what(),
                    list.len().saturating_sub(4)
                ),
            )
        })?;
        let refs: Vec<u32> = refs
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if let Some(i) = refs.windows(2).position(|w| w[0] >= w[1]) {
            return Err(self.corrupt(
                range.start + 4 + 4 * (i as u64 + 1),
                format!("{}: refs are not ascending", what()),
            ));
        }
        Ok(refs)
    }

    /// The body of each series entry (what sits between its uvarint length and its CRC), in
    /// the order of `refs` (native refs, as postings hold them). Refs may repeat.
    pub async fn fetch_series_bodies(&self, refs: &[u32]) -> Result<Vec<Bytes>> {
        // Series entries all lie before the postings; Thanos stores that offset in the header.
        let limit = self.header.index_last_posting_end();
        let mut order: Vec<(u64, usize)> = Vec::with_capacity(refs.len());
        for (i, &r) in refs.iter().enumerate() {
            let off = u64::from(r) * SERIES_ALIGNMENT;
            if off < tsdb::index::HEADER_LEN as u64 || off >= limit {
                return Err(self.corrupt(
                    off,
                    format!(
                        "series ref {r} points outside the series section (postings start at \
                         {limit})"
                    ),
                ));
            }
            order.push((off, i));
        }
        order.sort_unstable();
        let ranges: Vec<Range<u64>> = order
            .iter()
            .map(|&(off, _)| off..(off + self.estimated_max_series_size).min(limit))
            .collect();
        let parts = self.partitioner.partition(&ranges);

        let bodies = futures::future::try_join_all(parts.iter().map(|p| {
            let order = &order[p.elements.clone()];
            async move {
                let bytes = self.get(p.start..p.end).await?;
                FetchStats::add(&self.stats.series_fetches, 1);
                FetchStats::add(&self.stats.series_fetched_bytes, bytes.len() as u64);
                let mut bodies = Vec::with_capacity(order.len());
                for &(off, i) in order {
                    bodies.push((i, self.series_body(&bytes, p.start, off, limit).await?));
                }
                Ok::<_, Error>(bodies)
            }
        }))
        .await?;

        let mut out = vec![Bytes::new(); refs.len()];
        for (i, body) in bodies.into_iter().flatten() {
            out[i] = body;
        }
        Ok(out)
    }

    /// The body of the entry at `off`, from `bytes` (starting at file offset `base`) when it
    /// fits there, otherwise fetched again on its own.
    async fn series_body(&self, bytes: &Bytes, base: u64, off: u64, limit: u64) -> Result<Bytes> {
        let from = (off - base) as usize;
        let available = bytes.slice(from.min(bytes.len())..);
        let mut d = Decoder::new(&available, off);
        match d.uvarint("series length") {
            Ok(len) => {
                let header = d.offset() - off;
                let end = header
                    .checked_add(len)
                    .filter(|&e| off.checked_add(e).is_some_and(|x| x <= limit));
                let Some(end) = end else {
                    return Err(self.corrupt(
                        off,
                        format!("series length {len} runs into the postings (at {limit})"),
                    ));
                };
                if end as usize <= available.len() {
                    return Ok(available.slice(header as usize..end as usize));
                }
                self.refetch_series(off, header, end).await
            }
            // A length cut off by the end of what was fetched: read it on its own first.
            Err(_) if available.len() < MAX_VARINT_LEN64 && base + (bytes.len() as u64) < limit => {
                let head = self
                    .get(off..(off + MAX_VARINT_LEN64 as u64).min(limit))
                    .await?;
                FetchStats::add(&self.stats.series_fetches, 1);
                FetchStats::add(&self.stats.series_fetched_bytes, head.len() as u64);
                let mut d = Decoder::new(&head, off);
                let len = d
                    .uvarint("series length")
                    .map_err(|e| self.corrupt(e.offset, format!("malformed {}", e.what)))?;
                let header = d.offset() - off;
                let end = header
                    .checked_add(len)
                    .filter(|&e| off.checked_add(e).is_some_and(|x| x <= limit));
                let Some(end) = end else {
                    return Err(self.corrupt(
                        off,
                        format!("series length {len} runs into the postings (at {limit})"),
                    ));
                };
                self.refetch_series(off, header, end).await
            }
            Err(e) => Err(self.corrupt(e.offset, format!("truncated or malformed {}", e.what))),
        }
    }

    /// Fetches the entry `[off, off + end)` alone and returns its body `[header, end)`.
    async fn refetch_series(&self, off: u64, header: u64, end: u64) -> Result<Bytes> {
        FetchStats::add(&self.stats.series_refetches, 1);
        tracing::debug!(block = %self.block, offset = off, size = end,
            estimate = self.estimated_max_series_size, "series larger than estimated; refetching");
        let entry = self.get(off..off + end).await?;
        FetchStats::add(&self.stats.series_fetches, 1);
        FetchStats::add(&self.stats.series_fetched_bytes, entry.len() as u64);
        if (entry.len() as u64) < end {
            return Err(self.corrupt(
                off,
                format!(
                    "series entry of {end} bytes is cut off after {} bytes",
                    entry.len()
                ),
            ));
        }
        Ok(entry.slice(header as usize..end as usize))
    }

    /// Decodes a series body fetched for `series_ref` into labels (through the block's
    /// symbols) and chunk metas.
    pub fn decode_series(&self, series_ref: u32, body: &[u8]) -> Result<SeriesEntry> {
        let off = u64::from(series_ref) * SERIES_ALIGNMENT;
        // The body follows its length; writers encode that minimally, which puts the body here.
        let body_off = off + uvarint_len(body.len() as u64) as u64;
        let (refs, chunks) = tsdb::index::decode_series_body(body, body_off).map_err(|e| {
            self.corrupt(
                e.offset,
                format!("series {series_ref}: truncated or malformed {}", e.what),
            )
        })?;
        let mut labels: Vec<Label> = Vec::with_capacity(refs.len());
        for (name_ref, value_ref) in refs {
            let name = self.header.lookup_symbol(name_ref)?;
            let value = self.header.lookup_symbol(value_ref)?;
            if labels.last().is_some_and(|l| l.name >= name) {
                return Err(self.corrupt(
                    off,
                    format!("series {series_ref}: label names are not sorted and unique"),
                ));
            }
            labels.push(Label { name, value });
        }
        Ok(SeriesEntry {
            series_ref,
            labels: Labels::from_sorted(labels),
            chunks,
        })
    }

    /// [`Self::fetch_series_bodies`] and [`Self::decode_series`] together.
    pub async fn fetch_series(&self, refs: &[u32]) -> Result<Vec<SeriesEntry>> {
        let bodies = self.fetch_series_bodies(refs).await?;
        refs.iter()
            .zip(&bodies)
            .map(|(&r, body)| self.decode_series(r, body))
            .collect()
    }
}
