//! Series storage: one series' chunks and the ordering rules of appends to it.

use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::Mutex;

use crate::chunkenc::{XorChunk, XorIterator, ENCODING_XOR, SAMPLES_PER_CHUNK};
use crate::querier::ChunkData;
use crate::{Error, Labels, Result};

/// One series in the head.
pub struct MemSeries {
    pub series_ref: u64,
    pub labels: Labels,
    /// `labels.identity_hash()`, kept to find the series from borrowed labels.
    pub(super) identity: u128,
    pub(super) samples: Mutex<SeriesSamples>,
    /// Appenders holding this series: truncation never drops a series someone is about to
    /// append to (it would otherwise lose the samples to an orphaned series).
    pub(super) pending: AtomicU32,
    /// Whether the WAL holds this series' record. A new series is logged by the first commit
    /// that writes samples to it, in the same write and before them, so replay always meets a
    /// series record before its samples; a series that never gets a sample is never logged.
    pub(super) logged: AtomicBool,
}

/// A full chunk: just its bytes (no appender state, no spare capacity).
struct ClosedChunk {
    min_t: i64,
    max_t: i64,
    data: Box<[u8]>,
}

/// The chunk being appended to.
struct OpenChunk {
    min_t: i64,
    max_t: i64,
    chunk: XorChunk,
}

#[derive(Default)]
pub(super) struct SeriesSamples {
    /// Time-ordered, non-overlapping, all older than `open`.
    closed: Vec<ClosedChunk>,
    open: Option<OpenChunk>,
    last_t: Option<i64>,
    last_v_bits: u64,
}

impl SeriesSamples {
    /// Checks the ordering rules against the newest sample. `Ok(false)` means an exact
    /// duplicate that is accepted but not stored.
    pub(super) fn check(&self, t: i64, v: f64) -> Result<bool> {
        match self.last_t {
            Some(last) if t < last => Err(Error::OutOfOrder { t, newest: last }),
            Some(last) if t == last => {
                if v.to_bits() == self.last_v_bits {
                    Ok(false)
                } else {
                    Err(Error::DuplicateTimestamp { t })
                }
            }
            _ => Ok(true),
        }
    }

    /// Inserts a sample older than the newest one in place, re-encoding the one chunk it
    /// joins. `Ok(false)` is an exact duplicate. Chunks stay time-ordered, non-overlapping and
    /// within one `chunk_range` bucket each.
    fn insert_out_of_order(&mut self, t: i64, v: f64, chunk_range: i64) -> Result<bool> {
        let bucket = range_start(t, chunk_range);
        let n_closed = self.closed.len();
        // (index in closed + open, min, max) of every chunk.
        let spans: Vec<(i64, i64)> = self.iter().map(|(lo, hi, _)| (lo, hi)).collect();
        // The chunk holding t, else the one before it in the same bucket, else the next one in
        // the same bucket, else a new chunk.
        let pos = spans.partition_point(|&(_, hi)| hi < t);
        let target = if pos < spans.len() && spans[pos].0 <= t {
            Some(pos)
        } else if pos > 0 && range_start(spans[pos - 1].0, chunk_range) == bucket {
            Some(pos - 1)
        } else if pos < spans.len() && range_start(spans[pos].0, chunk_range) == bucket {
            Some(pos)
        } else {
            None
        };
        let Some(i) = target else {
            let mut c = XorChunk::new();
            c.append(t, v);
            self.closed.insert(
                pos.min(n_closed),
                ClosedChunk {
                    min_t: t,
                    max_t: t,
                    data: c.into_bytes().into_boxed_slice(),
                },
            );
            return Ok(true);
        };
        let bytes: &[u8] = if i < n_closed {
            &self.closed[i].data
        } else {
            self.open
                .as_ref()
                .expect("span of the open chunk")
                .chunk
                .bytes()
        };
        let mut samples: Vec<(i64, f64)> = XorIterator::new(bytes).collect();
        let at = samples.partition_point(|&(st, _)| st < t);
        if let Some(&(st, sv)) = samples.get(at) {
            if st == t {
                return if sv.to_bits() == v.to_bits() {
                    Ok(false)
                } else {
                    Err(Error::DuplicateTimestamp { t })
                };
            }
        }
        samples.insert(at, (t, v));
        let mut c = XorChunk::new();
        for &(st, sv) in &samples {
            c.append(st, sv);
        }
        let (min_t, max_t) = (samples[0].0, samples[samples.len() - 1].0);
        if i < n_closed {
            self.closed[i] = ClosedChunk {
                min_t,
                max_t,
                data: c.into_bytes().into_boxed_slice(),
            };
        } else {
            self.open = Some(OpenChunk {
                min_t,
                max_t,
                chunk: c,
            });
        }
        Ok(true)
    }

    /// Stores a sample: appended when newest, inserted when out of order within `window`.
    pub(super) fn add(&mut self, t: i64, v: f64, chunk_range: i64, window: i64) -> Result<bool> {
        match self.check(t, v) {
            Ok(true) => {
                self.push(t, v, chunk_range);
                Ok(true)
            }
            Err(Error::OutOfOrder { newest, .. })
                if window > 0 && t >= newest.saturating_sub(window) =>
            {
                self.insert_out_of_order(t, v, chunk_range)
            }
            other => other,
        }
    }

    fn close_open_chunk(&mut self) {
        if let Some(c) = self.open.take() {
            self.closed.push(ClosedChunk {
                min_t: c.min_t,
                max_t: c.max_t,
                data: c.chunk.into_bytes().into_boxed_slice(),
            });
        }
    }

    fn push(&mut self, t: i64, v: f64, chunk_range: i64) {
        if let Some(c) = &self.open {
            if range_start(t, chunk_range) != range_start(c.min_t, chunk_range) {
                self.close_open_chunk();
            }
        }
        let c = self.open.get_or_insert_with(|| OpenChunk {
            min_t: t,
            max_t: t,
            chunk: XorChunk::new(),
        });
        c.chunk.append(t, v);
        c.max_t = t;
        if c.chunk.num_samples() >= SAMPLES_PER_CHUNK {
            self.close_open_chunk();
        }
        self.last_t = Some(t);
        self.last_v_bits = v.to_bits();
    }

    /// Closed chunks plus the open one.
    pub(super) fn chunk_count(&self) -> usize {
        self.closed.len() + usize::from(self.open.is_some())
    }

    pub(super) fn is_empty(&self) -> bool {
        self.closed.is_empty() && self.open.is_none()
    }

    pub(super) fn first_min_t(&self) -> Option<i64> {
        self.closed
            .first()
            .map(|c| c.min_t)
            .or(self.open.as_ref().map(|c| c.min_t))
    }

    /// Every chunk as (min_t, max_t, bytes), oldest first.
    fn iter(&self) -> impl Iterator<Item = (i64, i64, &[u8])> {
        self.closed
            .iter()
            .map(|c| (c.min_t, c.max_t, &*c.data))
            .chain(
                self.open
                    .iter()
                    .map(|c| (c.min_t, c.max_t, c.chunk.bytes())),
            )
    }

    /// Drops chunks that end before `t`.
    pub(super) fn truncate(&mut self, t: i64) {
        self.closed.retain(|c| c.max_t >= t);
        if self.open.as_ref().is_some_and(|c| c.max_t < t) {
            self.open = None;
        }
    }
}

/// Start of the aligned range of width `range` holding `t`.
pub fn range_start(t: i64, range: i64) -> i64 {
    t.div_euclid(range) * range
}

impl MemSeries {
    /// Copies out the chunks overlapping [mint, maxt].
    pub fn chunks(&self, mint: i64, maxt: i64) -> Vec<ChunkData> {
        let s = self.samples.lock().unwrap();
        s.iter()
            .filter(|&(lo, hi, _)| hi >= mint && lo <= maxt)
            .map(|(lo, hi, data)| ChunkData {
                min_time: lo,
                max_time: hi,
                encoding: ENCODING_XOR,
                data: data.into(),
            })
            .collect()
    }

    /// (min, max) timestamp of the samples held, if any.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        let s = self.samples.lock().unwrap();
        Some((s.first_min_t()?, s.iter().last()?.1))
    }

    /// Heap bytes held by this series' chunks (capacity, not length).
    pub(super) fn chunk_bytes(&self) -> usize {
        let s = self.samples.lock().unwrap();
        s.closed.iter().map(|c| c.data.len()).sum::<usize>()
            + s.closed.capacity() * size_of::<ClosedChunk>()
            + s.open.as_ref().map_or(0, |c| c.chunk.capacity())
    }
}
