//! Block verification (`cairn tools bucket verify`): index and chunk integrity, statistics, and
//! overlapping blocks.

use std::collections::BTreeMap;
use std::path::Path;

use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStoreExt;
use tsdb::block::Block;
use tsdb::chunkenc::{AggrChunk, AggrType, XorIterator, ENCODING_AGGR, ENCODING_XOR};
use tsdb::meta::BlockMeta;
use ulid::Ulid;

use crate::bucket::Bucket;
use crate::{Error, Result};

/// What verification found in one block (empty `problems`: healthy).
#[derive(Debug, Default)]
pub struct BlockReport {
    pub series: u64,
    pub chunks: u64,
    pub samples: u64,
    pub problems: Vec<String>,
}

/// Checks a block directory: every series' labels and chunk metas from the index, every chunk's
/// CRC and XOR stream (each XOR sub-chunk of an aggregate chunk), sample timestamps inside their chunk's range and the block's range, and
/// the counts against meta.json's stats.
pub fn verify_local_block(dir: &Path) -> Result<BlockReport> {
    let block = Block::open(dir)?;
    let meta = block.meta().clone();
    let mut r = BlockReport::default();
    let index = block.index();
    let mut previous: Option<tsdb::Labels> = None;
    // Every chunk is read once: what was read can leave the resident set (see
    // `Block::release_chunk_pages`), so checking a big block needs no more memory than a small.
    let mut read_since_release = 0usize;
    for series_ref in index.all_postings()? {
        if read_since_release >= 4 << 20 {
            block.release_chunk_pages();
            read_since_release = 0;
        }
        let (labels, chunks) = index.series(series_ref)?;
        r.series += 1;
        if let Some(p) = &previous {
            if p >= &labels {
                r.problems
                    .push(format!("series {labels} is not after {p} in the index"));
            }
        }
        let mut last_max = i64::MIN;
        for c in &chunks {
            r.chunks += 1;
            if c.min_time > c.max_time || c.min_time <= last_max && last_max != i64::MIN {
                r.problems.push(format!(
                    "series {labels}: chunk [{}, {}] overlaps or is out of order",
                    c.min_time, c.max_time
                ));
            }
            if c.min_time < meta.min_time || c.max_time >= meta.max_time {
                r.problems.push(format!(
                    "series {labels}: chunk [{}, {}] outside the block's range [{}, {})",
                    c.min_time, c.max_time, meta.min_time, meta.max_time
                ));
            }
            last_max = c.max_time;
            let data = match block.chunk(c) {
                Ok(d) => {
                    read_since_release += d.data.len();
                    d
                }
                Err(e) => {
                    r.problems.push(format!("series {labels}: {e}"));
                    continue;
                }
            };
            if data.encoding == ENCODING_AGGR {
                // A downsampled block's aggregate chunk: its samples are its count
                // sub-chunk's windows, whose stamps lie in the chunk's range (the counter
                // sub-chunk starts earlier, at the first raw sample, by design).
                match verify_aggr_chunk(&data.data, c.min_time, c.max_time) {
                    Ok(n) => r.samples += n,
                    Err(e) => r.problems.push(format!("series {labels}: {e}")),
                }
                continue;
            }
            if data.encoding != ENCODING_XOR {
                // Native histogram chunks are not decoded here.
                continue;
            }
            let mut it = XorIterator::new(&data.data);
            let mut prev_t = i64::MIN;
            for (t, _) in it.by_ref() {
                r.samples += 1;
                if t <= prev_t || t < c.min_time || t > c.max_time {
                    r.problems.push(format!(
                        "series {labels}: sample at {t} outside or out of order in chunk [{}, {}]",
                        c.min_time, c.max_time
                    ));
                    break;
                }
                prev_t = t;
            }
            if let Some(e) = it.err() {
                r.problems
                    .push(format!("series {labels}: corrupt chunk: {e}"));
            }
        }
        previous = Some(labels);
    }
    let s = &meta.stats;
    for (what, stated, counted) in [
        ("series", s.num_series, r.series),
        ("chunks", s.num_chunks, r.chunks),
        ("samples", s.num_samples, r.samples),
    ] {
        if stated != 0 && stated != counted {
            r.problems.push(format!(
                "meta.json says {stated} {what}, the block holds {counted}"
            ));
        }
    }
    Ok(r)
}

/// Checks an aggregate chunk: every sub-chunk decodes, the count sub-chunk's stamps are in
/// order within `[mint, maxt]`; returns its sample count (what meta.json's stats count).
fn verify_aggr_chunk(data: &[u8], mint: i64, maxt: i64) -> std::result::Result<u64, String> {
    let chunk = AggrChunk::new(data);
    let mut windows = 0;
    for at in AggrType::ALL {
        let sub = match chunk.get(at) {
            Ok(Some(sub)) => sub,
            Ok(None) => continue,
            Err(e) => return Err(format!("corrupt aggregate chunk: {e}")),
        };
        if sub.encoding != ENCODING_XOR {
            // Native histogram aggregates are not decoded here.
            continue;
        }
        let mut it = XorIterator::new(sub.data);
        let mut prev_t = i64::MIN;
        for (t, _) in it.by_ref() {
            if at == AggrType::Count {
                windows += 1;
                if t <= prev_t || t < mint || t > maxt {
                    return Err(format!(
                        "aggregate chunk [{mint}, {maxt}]: count window at {t} outside or out of order"
                    ));
                }
                prev_t = t;
            }
        }
        if let Some(e) = it.err() {
            return Err(format!("corrupt {at} sub-chunk: {e}"));
        }
    }
    Ok(windows)
}

/// Downloads a block from the bucket into `dest/<ULID>/`.
pub async fn download_block(
    bucket: &Bucket,
    ulid: Ulid,
    dest: &Path,
) -> Result<std::path::PathBuf> {
    let dir = dest.join(ulid.to_string());
    let prefix = ObjectPath::from(ulid.to_string());
    let mut listing = bucket.list(Some(&prefix));
    while let Some(item) = listing.next().await {
        let meta = item.map_err(|source| Error::Bucket {
            op: "list",
            path: prefix.to_string(),
            source,
        })?;
        let rel = meta
            .location
            .as_ref()
            .strip_prefix(&format!("{ulid}/"))
            .unwrap_or(meta.location.as_ref())
            .to_string();
        let local = dir.join(&rel);
        if let Some(parent) = local.parent() {
            std::fs::create_dir_all(parent).map_err(|source| Error::Io {
                context: format!("creating {}", parent.display()),
                source,
            })?;
        }
        // Streamed to the file part by part: a chunk segment can be 512 MiB.
        let mut parts = bucket
            .get(&meta.location)
            .await
            .map_err(|source| Error::Bucket {
                op: "get",
                path: meta.location.to_string(),
                source,
            })?
            .into_stream();
        let io_err = |source| Error::Io {
            context: format!("writing {}", local.display()),
            source,
        };
        let mut file = std::fs::File::create(&local).map_err(io_err)?;
        while let Some(part) = parts.next().await {
            let part = part.map_err(|source| Error::Bucket {
                op: "read",
                path: meta.location.to_string(),
                source,
            })?;
            std::io::Write::write_all(&mut file, &part).map_err(io_err)?;
        }
    }
    // An empty block has no chunk segment, and a bucket keeps no empty directory.
    let chunks = dir.join("chunks");
    std::fs::create_dir_all(&chunks).map_err(|source| Error::Io {
        context: format!("creating {}", chunks.display()),
        source,
    })?;
    Ok(dir)
}

/// Pairs of blocks with the same external labels and resolution whose time ranges overlap.
pub fn overlaps(metas: &[BlockMeta]) -> Vec<String> {
    let mut groups: BTreeMap<(String, i64), Vec<&BlockMeta>> = BTreeMap::new();
    for m in metas {
        let labels = m
            .thanos
            .as_ref()
            .map(|t| format!("{:?}", t.labels))
            .unwrap_or_default();
        groups.entry((labels, m.resolution())).or_default().push(m);
    }
    let mut out = Vec::new();
    for ((labels, resolution), mut blocks) in groups {
        blocks.sort_by_key(|m| (m.min_time, m.max_time));
        for w in blocks.windows(2) {
            if w[1].min_time < w[0].max_time {
                out.push(format!(
                    "blocks {} [{}, {}) and {} [{}, {}) overlap (labels {labels}, resolution {resolution})",
                    w[0].ulid, w[0].min_time, w[0].max_time, w[1].ulid, w[1].min_time, w[1].max_time
                ));
            }
        }
    }
    out
}
