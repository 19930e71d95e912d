//! Series storage: one series' chunks and the ordering rules of appends to it.

use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::Mutex;

use crate::chunkenc::value::{self, AnyChunk, Value};
use crate::chunkenc::{
    CounterResetHeader, FloatHistogramChunk, HistogramChunk, XorChunk, ENCODING_HISTOGRAM,
    ENCODING_XOR, SAMPLES_PER_CHUNK,
};
use crate::querier::ChunkData;
use crate::{Error, Labels, Result};
use model::histogram::{FloatHistogram, Histogram};

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
    encoding: u8,
    data: Box<[u8]>,
}

/// The chunk being appended to.
struct OpenChunk {
    min_t: i64,
    max_t: i64,
    chunk: AnyChunk,
}

#[derive(Default)]
pub(super) struct SeriesSamples {
    /// Time-ordered, non-overlapping, all older than `open`.
    closed: Vec<ClosedChunk>,
    open: Option<OpenChunk>,
    last_t: Option<i64>,
    /// The newest sample's value: float bits, or (for histogram series) the histogram.
    last_v_bits: u64,
    last_histogram: Option<Box<Value>>,
}

impl SeriesSamples {
    /// Checks the ordering rules against the newest sample. `Ok(false)` means an exact
    /// duplicate that is accepted but not stored.
    pub(super) fn check(&self, t: i64, v: f64) -> Result<bool> {
        match self.last_t {
            Some(last) if t < last => Err(Error::OutOfOrder { t, newest: last }),
            Some(last) if t == last => {
                let same = match self.last_histogram.as_deref() {
                    None => v.to_bits() == self.last_v_bits,
                    // A float marker repeating a histogram series' marker (see `add`).
                    Some(h) => crate::is_stale_nan(v) && h.is_stale(),
                };
                if same {
                    Ok(false)
                } else {
                    Err(Error::DuplicateTimestamp { t })
                }
            }
            _ => Ok(true),
        }
    }

    /// [`SeriesSamples::check`] for a histogram value.
    pub(super) fn check_value(&self, t: i64, v: &Value) -> Result<bool> {
        if let Value::Float(f) = v {
            return self.check(t, *f);
        }
        match self.last_t {
            Some(last) if t < last => Err(Error::OutOfOrder { t, newest: last }),
            Some(last) if t == last => {
                if self.last_histogram.as_deref().is_some_and(|h| h.same(v)) {
                    Ok(false)
                } else {
                    Err(Error::DuplicateTimestamp { t })
                }
            }
            _ => Ok(true),
        }
    }

    /// Inserts a sample older than the newest one in place, re-encoding the one chunk it
    /// joins (which may become several when histograms cannot share one). `Ok(false)` is an
    /// exact duplicate. Chunks stay time-ordered, non-overlapping and within one `chunk_range`
    /// bucket each.
    fn insert_out_of_order(&mut self, t: i64, v: Value, chunk_range: i64) -> Result<bool> {
        let bucket = range_start(t, chunk_range);
        let n_closed = self.closed.len();
        let spans: Vec<(i64, i64)> = self.iter().map(|(lo, hi, _, _)| (lo, hi)).collect();
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
            let parts = value::encode(&[(t, v)]);
            let at = pos.min(n_closed);
            self.closed
                .splice(at..at, parts.into_iter().map(closed_chunk));
            return Ok(true);
        };
        let (encoding, bytes): (u8, &[u8]) = if i < n_closed {
            (self.closed[i].encoding, &self.closed[i].data)
        } else {
            let c = &self.open.as_ref().expect("span of the open chunk").chunk;
            (c.encoding(), c.bytes())
        };
        let mut samples = value::decode(encoding, bytes).map_err(Error::Invalid)?;
        let at = samples.partition_point(|(st, _)| *st < t);
        if let Some((st, sv)) = samples.get(at) {
            if *st == t {
                return if sv.same(&v) {
                    Ok(false)
                } else {
                    Err(Error::DuplicateTimestamp { t })
                };
            }
        }
        // The chunk's counter-reset header still holds when its first sample stays first.
        let first = if at > 0 {
            value::header(encoding, bytes)
        } else {
            CounterResetHeader::Unknown
        };
        samples.insert(at, (t, v));
        let mut parts: Vec<ClosedChunk> = value::encode_from(first, &samples)
            .into_iter()
            .map(closed_chunk)
            .collect();
        if i < n_closed {
            self.closed.splice(i..=i, parts);
        } else {
            // The last part stays open (appends continue there when it has room).
            let last = parts.pop().expect("at least one chunk");
            self.closed.extend(parts);
            let chunk = match last.encoding {
                ENCODING_XOR => XorChunk::from_bytes(last.data.into()).map(AnyChunk::Xor),
                ENCODING_HISTOGRAM => HistogramChunk::from_bytes(last.data.into())
                    .map(|c| AnyChunk::Histogram(Box::new(c))),
                _ => FloatHistogramChunk::from_bytes(last.data.into())
                    .map(|c| AnyChunk::FloatHistogram(Box::new(c))),
            }?;
            self.open = Some(OpenChunk {
                min_t: last.min_t,
                max_t: last.max_t,
                chunk,
            });
        }
        Ok(true)
    }

    /// Stores a float sample: appended when newest, inserted when out of order within
    /// `window`.
    pub(super) fn add(&mut self, t: i64, v: f64, chunk_range: i64, window: i64) -> Result<bool> {
        // A stale marker for a histogram series is a histogram marker, as in Prometheus: the
        // series' chunks stay histogram chunks.
        if crate::is_stale_nan(v) {
            if let Some(last) = self.last_histogram.as_deref() {
                let marker = match last {
                    Value::FloatHistogram(_) => Value::FloatHistogram(Box::new(FloatHistogram {
                        sum: v,
                        ..Default::default()
                    })),
                    _ => Value::Histogram(Box::new(Histogram {
                        sum: v,
                        ..Default::default()
                    })),
                };
                return self.add_value(t, marker, chunk_range, window);
            }
        }
        match self.check(t, v) {
            Ok(true) => {
                self.push(t, v, chunk_range);
                Ok(true)
            }
            Err(Error::OutOfOrder { newest, .. })
                if window > 0 && t >= newest.saturating_sub(window) =>
            {
                self.insert_out_of_order(t, Value::Float(v), chunk_range)
            }
            other => other,
        }
    }

    /// [`SeriesSamples::add`] for any value (histograms).
    pub(super) fn add_value(
        &mut self,
        t: i64,
        v: Value,
        chunk_range: i64,
        window: i64,
    ) -> Result<bool> {
        if let Value::Float(f) = v {
            return self.add(t, f, chunk_range, window);
        }
        match self.check_value(t, &v) {
            Ok(true) => {
                self.push_value(t, v, chunk_range);
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
                encoding: c.chunk.encoding(),
                data: c.chunk.into_bytes().into_boxed_slice(),
            });
        }
    }

    fn push(&mut self, t: i64, v: f64, chunk_range: i64) {
        if let Some(c) = &self.open {
            if range_start(t, chunk_range) != range_start(c.min_t, chunk_range)
                || c.chunk.encoding() != ENCODING_XOR
            {
                self.close_open_chunk();
            }
        }
        let c = self.open.get_or_insert_with(|| OpenChunk {
            min_t: t,
            max_t: t,
            chunk: AnyChunk::Xor(XorChunk::new()),
        });
        let AnyChunk::Xor(x) = &mut c.chunk else {
            unreachable!("a non-XOR open chunk was closed above")
        };
        x.append(t, v);
        c.max_t = t;
        if x.num_samples() >= SAMPLES_PER_CHUNK {
            self.close_open_chunk();
        }
        self.last_t = Some(t);
        self.last_v_bits = v.to_bits();
        self.last_histogram = None;
    }

    fn push_value(&mut self, t: i64, v: Value, chunk_range: i64) {
        let mut header = CounterResetHeader::Unknown;
        if let Some(c) = &mut self.open {
            if range_start(t, chunk_range) == range_start(c.min_t, chunk_range)
                && c.chunk.encoding() == v.encoding()
            {
                let appended = if c.chunk.is_full() {
                    Err(c.chunk.next_header(&v))
                } else {
                    c.chunk.append(t, &v)
                };
                match appended {
                    Ok(()) => c.max_t = t,
                    Err(h) => header = h,
                }
                if appended.is_ok() {
                    self.last_t = Some(t);
                    self.last_histogram = Some(Box::new(v));
                    return;
                }
            } else if c.chunk.encoding() == v.encoding() {
                // A new block range: the chunk before still tells whether this is a reset.
                header = c.chunk.next_header(&v);
            }
            self.close_open_chunk();
        }
        let mut chunk = AnyChunk::new(v.encoding(), header);
        chunk
            .append(t, &v)
            .expect("an empty chunk takes any value of its kind");
        self.open = Some(OpenChunk {
            min_t: t,
            max_t: t,
            chunk,
        });
        self.last_t = Some(t);
        self.last_histogram = Some(Box::new(v));
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

    /// Every chunk as (min_t, max_t, encoding, bytes), oldest first.
    fn iter(&self) -> impl Iterator<Item = (i64, i64, u8, &[u8])> {
        self.closed
            .iter()
            .map(|c| (c.min_t, c.max_t, c.encoding, &*c.data))
            .chain(
                self.open
                    .iter()
                    .map(|c| (c.min_t, c.max_t, c.chunk.encoding(), c.chunk.bytes())),
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

fn closed_chunk((min_t, max_t, encoding, data): (i64, i64, u8, Vec<u8>)) -> ClosedChunk {
    ClosedChunk {
        min_t,
        max_t,
        encoding,
        data: data.into_boxed_slice(),
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
            .filter(|&(lo, hi, _, _)| hi >= mint && lo <= maxt)
            .map(|(lo, hi, encoding, data)| ChunkData {
                min_time: lo,
                max_time: hi,
                encoding,
                data: bytes::Bytes::copy_from_slice(data),
            })
            .collect()
    }

    /// Whether any chunk overlaps [mint, maxt] (what [`MemSeries::chunks`] would return,
    /// without copying it).
    pub fn has_chunks(&self, mint: i64, maxt: i64) -> bool {
        let s = self.samples.lock().unwrap();
        let any = s.iter().any(|(lo, hi, _, _)| hi >= mint && lo <= maxt);
        any
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
