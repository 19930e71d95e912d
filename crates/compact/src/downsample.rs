//! Downsampling, as Thanos' compactor does it (`pkg/compact/downsample/downsample.go`): a raw
//! block becomes a 5-minute block ([`RES_LEVEL1`]) and a 5-minute block a 1-hour block
//! ([`RES_LEVEL2`]), every series' chunks replaced by aggregate chunks
//! ([`tsdb::chunkenc::aggr`]) holding count, sum, min, max and counter per window.
//!
//! Windows: a sample at `t` falls into `[t - t%res, t - t%res + res)`, and the window's
//! aggregates are stamped at its last millisecond, `t - t%res + res - 1`, capped at the last
//! sample of the batch being aggregated, so a chunk's final window carries that sample's
//! timestamp ([`current_window`], `downsampleBatch`).
//!
//! Raw to 5m ([`downsample_raw`]): a series' XOR chunks are decoded and concatenated, dropping
//! stale markers and, within each chunk, samples older than the previous one (the previous
//! timestamp starting at 0, so negative timestamps go too). The samples are cut into batches
//! of `n / targetChunkCount + 1` samples, each extended to the end of its last window, then
//! NaNs are dropped; each batch becomes one aggregate chunk whose counter sub-chunk holds the
//! batch's first raw sample, one reset-corrected running total per window, and the last raw
//! value again at the final window's timestamp. Those framing samples let
//! [`CounterResets`] (Thanos' `ApplyCounterResetsSeriesIterator`) see a reset that happens
//! exactly between two chunks.
//!
//! 5m to 1h ([`downsample_series`] with a non-zero source resolution): aggregate chunks are
//! grouped along chunk boundaries (`len / targetChunkCount` chunks per output chunk) and each
//! aggregate is re-windowed on its own: counts and sums are summed, mins and maxes kept; the
//! counter is rebuilt through [`CounterResets`], re-windowed and framed again. Plain XOR chunks
//! found in an aggregated block are first downsampled to 5m; empty ones are skipped.
//!
//! [`downsample_block`] streams a whole block through this into a new one, with the meta.json
//! Thanos writes for it (`streamedBlockWriter.writeMetaFile` and `processDownsampling`).
//!
//! Thanos' quirks are kept where they change bytes, each noted where it happens. Native
//! histogram aggregates are not written yet: a series with histogram chunks is left out of the
//! downsampled block (with a warning), so it stays at raw resolution only.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use tsdb::block::{create_block, Block, BlockWriter};
use tsdb::chunkenc::{
    encode_aggr_chunk, AggrChunk, AggrType, SubChunk, XorChunk, XorIterator, ENCODING_AGGR,
    ENCODING_FLOAT_HISTOGRAM, ENCODING_HISTOGRAM, ENCODING_XOR,
};
use tsdb::meta::{BlockMeta, META_VERSION};
use tsdb::querier::ChunkData;
use tsdb::{is_stale_nan, Sample};
use ulid::Ulid;

use crate::meta::IndexStats;

/// Raw data (Thanos' `ResLevel0`).
pub const RES_LEVEL0: i64 = 0;
/// 5 minutes in milliseconds (`ResLevel1`).
pub const RES_LEVEL1: i64 = 5 * 60 * 1000;
/// 1 hour in milliseconds (`ResLevel2`).
pub const RES_LEVEL2: i64 = 60 * 60 * 1000;
/// A raw block is downsampled to 5m once it spans this much: 40 hours
/// (`ResLevel1DownsampleRange`, "roughly 2 chunks out of it").
pub const RES_LEVEL1_DOWNSAMPLE_RANGE: i64 = 40 * 60 * 60 * 1000;
/// A 5m block is downsampled to 1h once it spans this much: 10 days
/// (`ResLevel2DownsampleRange`).
pub const RES_LEVEL2_DOWNSAMPLE_RANGE: i64 = 10 * 24 * 60 * 60 * 1000;

/// The raw scrape interval [`target_chunk_count`] assumes for raw data: 1 minute.
const ASSUMED_RAW_INTERVAL: i64 = 60 * 1000;
/// Output chunks are added until each holds at most this many windows on average.
const MAX_AVG_SAMPLES_PER_CHUNK: i64 = 140;

/// Why downsampling failed.
#[derive(Debug, thiserror::Error)]
pub enum DownsampleError {
    /// Thanos' text, so logs and alerts read the same; `got` lists the chunks' time ranges.
    #[error("found overlapping chunks within series {series}. Chunks expected to be ordered by min time and non-overlapping, got: {got}")]
    OverlappingChunks { series: u64, got: String },
    #[error("target resolution not lower than existing one")]
    ResolutionNotLower,
    /// Data this implementation cannot downsample, or a malformed chunk.
    #[error("{0}")]
    Invalid(String),
    /// Native histogram chunks: their aggregates are not written yet.
    #[error("downsampling native histogram chunks is not supported")]
    NativeHistograms,
    #[error(transparent)]
    Storage(#[from] tsdb::Error),
}

type Result<T, E = DownsampleError> = std::result::Result<T, E>;

/// The last millisecond of the window of resolution `r` that `t` falls into (Thanos'
/// `currentWindow`; block ranges are half-open, hence the `- 1`).
pub fn current_window(t: i64, r: i64) -> i64 {
    t - (t % r) + r - 1
}

/// How densely `count` samples at interval `step` fill `[mint, maxt]`, at most 1.
fn range_fullness(mint: i64, maxt: i64, step: i64, count: usize) -> f64 {
    let f = count as f64 / ((maxt - mint) as f64 / step as f64);
    if f > 1.0 {
        1.0
    } else {
        f
    }
}

/// How many chunks a series of `count` samples at `in_res` over `[mint, maxt]` should become
/// at `out_res`: the fewest that average at most 140 windows each (Thanos'
/// `targetChunkCount`; the expected window count is truncated as Go's `int()` does).
pub fn target_chunk_count(mint: i64, maxt: i64, in_res: i64, out_res: i64, count: usize) -> usize {
    let max_samples = ((maxt - mint) / out_res) as f64;
    // NaN (an empty range without samples) becomes 0 here and Go's minimum int there; both
    // give one chunk.
    let expected = (max_samples * range_fullness(mint, maxt, in_res, count)) as i64 + 1;
    let mut x = 1;
    while expected / x > MAX_AVG_SAMPLES_PER_CHUNK {
        x += 1;
    }
    x as usize
}

/// Running aggregates of one batch (Thanos' `floatAggregator`): count, sum, min and max of the
/// current window, and the reset-corrected counter since the batch's first sample.
#[derive(Clone, Debug, Default)]
struct FloatAggregator {
    total: usize,
    count: usize,
    sum: f64,
    min: f64,
    max: f64,
    counter: f64,
    last: f64,
}

impl FloatAggregator {
    fn reset(&mut self) {
        self.count = 0;
        self.sum = 0.0;
        self.min = f64::MAX;
        self.max = -f64::MAX;
    }

    fn add(&mut self, v: f64) {
        if self.total > 0 {
            if v < self.last {
                // A counter reset: the counter restarted from 0, so all of v is new.
                self.counter += v;
            } else {
                self.counter += v - self.last;
            }
        } else {
            self.counter = v;
        }
        self.last = v;
        self.sum += v;
        self.count += 1;
        self.total += 1;
        if v < self.min {
            self.min = v;
        }
        if v > self.max {
            self.max = v;
        }
    }
}

/// Aggregates `data` (not empty) window by window, calling `add(stamp, aggregator)` at the end
/// of each; returns the last stamp (Thanos' `downsampleBatch`). A window's stamp is capped at
/// the batch's last timestamp so that consecutive batches never overlap.
fn downsample_batch(
    data: &[Sample],
    resolution: i64,
    mut add: impl FnMut(i64, &FloatAggregator),
) -> i64 {
    let mut aggr = FloatAggregator::default();
    let last_t = data[data.len() - 1].t;
    // -1 stands for "no window yet", as in Thanos (callers never pass negative timestamps).
    let mut next_t = -1;
    for s in data {
        if s.t > next_t {
            if next_t != -1 {
                add(next_t, &aggr);
            }
            aggr.reset();
            next_t = current_window(s.t, resolution).min(last_t);
        }
        aggr.add(s.v);
    }
    if aggr.total > 0 {
        add(next_t, &aggr);
    }
    next_t
}

/// The sub-chunks of one output aggregate chunk under construction (Thanos'
/// `aggrChunkBuilder`) and the range of window stamps written.
struct AggrBuilder {
    mint: i64,
    maxt: i64,
    chunks: [Option<XorChunk>; 5],
}

impl AggrBuilder {
    /// All five aggregates present (the raw path).
    fn all() -> Self {
        AggrBuilder {
            mint: i64::MAX,
            maxt: i64::MIN,
            chunks: std::array::from_fn(|_| Some(XorChunk::new())),
        }
    }

    /// No aggregate yet (the re-aggregation path adds those that have samples).
    fn none() -> Self {
        AggrBuilder {
            mint: i64::MAX,
            maxt: i64::MIN,
            chunks: Default::default(),
        }
    }

    fn append(&mut self, at: AggrType, t: i64, v: f64) {
        if let Some(c) = &mut self.chunks[at as usize] {
            c.append(t, v);
        }
    }

    /// One window of the raw path: every aggregate, and the stamp range.
    fn add_window(&mut self, t: i64, a: &FloatAggregator) {
        self.mint = self.mint.min(t);
        self.maxt = self.maxt.max(t);
        self.append(AggrType::Count, t, a.count as f64);
        self.append(AggrType::Sum, t, a.sum);
        self.append(AggrType::Min, t, a.min);
        self.append(AggrType::Max, t, a.max);
        self.append(AggrType::Counter, t, a.counter);
    }

    fn encode(&self) -> ChunkData {
        let subs: [Option<SubChunk<'_>>; 5] =
            std::array::from_fn(|i| self.chunks[i].as_ref().map(|c| SubChunk::xor(c.bytes())));
        ChunkData {
            min_time: self.mint,
            max_time: self.maxt,
            encoding: ENCODING_AGGR,
            data: encode_aggr_chunk(&subs).into(),
        }
    }
}

/// One raw batch (not empty, no NaNs) as an aggregate chunk (Thanos' `downsampleFloatBatch`).
fn downsample_float_batch(batch: &[Sample], resolution: i64) -> ChunkData {
    let mut ab = AggrBuilder::all();
    // The first raw value opens the counter sub-chunk; see [`CounterResets`].
    ab.append(AggrType::Counter, batch[0].t, batch[0].v);
    let last_t = downsample_batch(batch, resolution, |t, a| ab.add_window(t, a));
    // The last raw value closes it, at the final window's stamp.
    ab.append(AggrType::Counter, last_t, batch[batch.len() - 1].v);
    ab.encode()
}

/// Aggregate chunks for raw samples (in time order) at `resolution` (Thanos' `DownsampleRaw`).
pub fn downsample_raw(data: &[Sample], resolution: i64) -> Vec<ChunkData> {
    let mut out = Vec::new();
    if data.is_empty() {
        return out;
    }
    let num_chunks = target_chunk_count(
        data[0].t,
        data[data.len() - 1].t,
        ASSUMED_RAW_INTERVAL,
        resolution,
        data.len(),
    );
    downsample_raw_loop(data, resolution, num_chunks, &mut out);
    out
}

/// Cuts `data` into about `num_chunks` batches along window ends and aggregates each (Thanos'
/// `downsampleRawLoop`).
fn downsample_raw_loop(
    mut data: &[Sample],
    resolution: i64,
    num_chunks: usize,
    out: &mut Vec<ChunkData>,
) {
    let batch_size = data.len() / num_chunks + 1;
    let mut batch = Vec::with_capacity(batch_size);
    while !data.is_empty() {
        let mut j = batch_size.min(data.len());
        let window_end = current_window(data[j - 1].t, resolution);
        // Take the rest of the last sample's window too, so batches end on window ends.
        while j < data.len() && data[j].t <= window_end {
            j += 1;
        }
        batch.clear();
        batch.extend(data[..j].iter().filter(|s| !s.v.is_nan()));
        data = &data[j..];
        if !batch.is_empty() {
            out.push(downsample_float_batch(&batch, resolution));
        }
    }
}

/// Appends the samples of `it` to `buf`, skipping stale markers and samples older than the
/// previous one kept (which starts at timestamp 0). Equal timestamps are kept: counter
/// sub-chunks repeat their last one (Thanos' `expandXorChunkIterator`).
fn expand(it: impl Iterator<Item = (i64, f64)>, buf: &mut Vec<Sample>) {
    let mut last_t = 0;
    for (t, v) in it {
        if is_stale_nan(v) {
            continue;
        }
        if t >= last_t {
            buf.push(Sample { t, v });
            last_t = t;
        }
    }
}

/// [`expand`] over XOR chunk data, failing on corrupt data.
fn expand_xor(data: &[u8], buf: &mut Vec<Sample>) -> Result<()> {
    let mut it = XorIterator::new(data);
    expand(&mut it, buf);
    match it.err() {
        Some(e) => Err(DownsampleError::Invalid(format!("xor chunk: {e}"))),
        None => Ok(()),
    }
}

/// A monotonic counter rebuilt from a sequence of counter sub-chunks (or raw counter chunks),
/// Thanos' `ApplyCounterResetsSeriesIterator`.
///
/// NaNs are dropped. A sample later than the last one adds its increase, or all of its value
/// after a reset. A sample at the same timestamp as the last one is a chunk's closing raw
/// value: it only replaces the value the next increase is measured from, so a reset between
/// two chunks is seen. A sample going back in time is skipped. Resets are hidden, so PromQL's
/// `resets()` cannot work on the result.
pub struct CounterResets<'a> {
    chunks: Vec<XorIterator<'a>>,
    i: usize,
    total: usize,
    last_t: i64,
    last_v: f64,
    total_v: f64,
    /// Whether the last read of a chunk yielded a sample (Go's `lastValType != ValNone`).
    last_read: bool,
}

impl<'a> CounterResets<'a> {
    pub fn new(chunks: Vec<XorIterator<'a>>) -> Self {
        CounterResets {
            chunks,
            i: 0,
            total: 0,
            last_t: 0,
            last_v: 0.0,
            total_v: 0.0,
            last_read: false,
        }
    }

    /// The last raw value seen, including a chunk's closing one.
    pub fn last_raw_value(&self) -> f64 {
        self.last_v
    }

    /// Advances to the next sample of the rebuilt counter.
    pub fn advance(&mut self) -> bool {
        loop {
            let Some(chunk) = self.chunks.get_mut(self.i) else {
                return false;
            };
            let next = chunk.next();
            self.last_read = next.is_some();
            let Some((t, v)) = next else {
                self.i += 1;
                // Chunks are ordered but may overlap: never go back in time.
                return self.seek(self.last_t.wrapping_add(1));
            };
            if v.is_nan() {
                continue;
            }
            if self.total == 0 {
                self.total += 1;
                (self.last_t, self.last_v, self.total_v) = (t, v, v);
                return true;
            }
            if t > self.last_t {
                if v >= self.last_v {
                    self.total_v += v - self.last_v;
                } else {
                    self.total_v += v;
                }
                (self.last_t, self.last_v) = (t, v);
                self.total += 1;
                return true;
            }
            if t == self.last_t {
                self.last_v = v;
            }
        }
    }

    /// Advances (sample by sample, so no reset is missed) to the first sample at or after `x`.
    pub fn seek(&mut self, x: i64) -> bool {
        loop {
            if self.last_t >= x {
                return self.last_read;
            }
            if !self.advance() {
                return false;
            }
        }
    }

    /// The current sample: its timestamp and the counter total.
    pub fn at(&self) -> (i64, f64) {
        (self.last_t, self.total_v)
    }

    /// The first decoding error of any chunk.
    pub fn err(&self) -> Option<&str> {
        self.chunks.iter().find_map(|c| c.err())
    }
}

impl Iterator for CounterResets<'_> {
    type Item = (i64, f64);

    fn next(&mut self) -> Option<(i64, f64)> {
        self.advance().then(|| self.at())
    }
}

/// Which of a window's aggregates an output sub-chunk takes.
type WindowValue = fn(&FloatAggregator) -> f64;

/// Re-aggregates one of count, sum, min or max of `chunks` into `ab` at `resolution`, each
/// window's value being `f` of the window; returns the stamp range written (Thanos'
/// `genericAggregate`). Without any sample the range is `(0, 0)`, and Thanos' caller folds
/// that into the chunk's range as it is; kept for identical chunk metas.
fn generic_aggregate(
    at: AggrType,
    chunks: &[AggrChunk<'_>],
    buf: &mut Vec<Sample>,
    ab: &mut AggrBuilder,
    resolution: i64,
    f: WindowValue,
) -> Result<(i64, i64)> {
    buf.clear();
    for c in chunks {
        if let Some(sub) = c.get(at)? {
            if sub.encoding != ENCODING_XOR {
                return Err(unsupported_histograms());
            }
            expand_xor(sub.data, buf)?;
        }
    }
    if buf.is_empty() {
        return Ok((0, 0));
    }
    ab.chunks[at as usize] = Some(XorChunk::new());
    let (mut mint, mut maxt) = (i64::MAX, i64::MIN);
    downsample_batch(buf, resolution, |t, a| {
        mint = mint.min(t);
        maxt = maxt.max(t);
        ab.append(at, t, f(a));
    });
    Ok((mint, maxt))
}

/// One output chunk from a run of float aggregate chunks (Thanos' `downsampleFloatAggrBatch`).
fn downsample_float_aggr_batch(
    chunks: &[AggrChunk<'_>],
    buf: &mut Vec<Sample>,
    resolution: i64,
) -> Result<ChunkData> {
    let mut ab = AggrBuilder::none();
    let (mut mint, mut maxt) = (i64::MAX, i64::MIN);
    let aggregates: [(AggrType, WindowValue); 4] = [
        // A window's count is the sum of the counts of the windows it covers.
        (AggrType::Count, |a| a.sum),
        (AggrType::Sum, |a| a.sum),
        (AggrType::Min, |a| a.min),
        (AggrType::Max, |a| a.max),
    ];
    for (at, f) in aggregates {
        let (lo, hi) = generic_aggregate(at, chunks, buf, &mut ab, resolution, f)?;
        mint = mint.min(lo);
        maxt = maxt.max(hi);
    }

    let mut iters = Vec::with_capacity(chunks.len());
    for c in chunks {
        if let Some(sub) = c.get(AggrType::Counter)? {
            if sub.encoding != ENCODING_XOR {
                return Err(unsupported_histograms());
            }
            iters.push(XorIterator::new(sub.data));
        }
    }
    let mut counter = CounterResets::new(iters);
    buf.clear();
    expand(&mut counter, buf);
    if let Some(e) = counter.err() {
        return Err(DownsampleError::Invalid(format!(
            "counter sub-chunk: xor chunk: {e}"
        )));
    }
    if !buf.is_empty() {
        ab.chunks[AggrType::Counter as usize] = Some(XorChunk::new());
        // Framed again by the first and last raw values; see [`CounterResets`].
        ab.append(AggrType::Counter, buf[0].t, buf[0].v);
        let last_t = downsample_batch(buf, resolution, |t, a| {
            mint = mint.min(t);
            maxt = maxt.max(t);
            ab.append(AggrType::Counter, t, a.counter);
        });
        ab.append(AggrType::Counter, last_t, counter.last_raw_value());
    }
    ab.mint = mint;
    ab.maxt = maxt;
    Ok(ab.encode())
}

/// Re-aggregates `chunks` (spanning `[mint, maxt]` at `in_res`) to `out_res` into `out`
/// (Thanos' `downsampleAggr` and `downsampleAggrLoop`): whole input chunks per output chunk,
/// since a counter sub-chunk's first and last values are the original series' own.
fn downsample_aggr(
    chunks: &[AggrChunk<'_>],
    buf: &mut Vec<Sample>,
    (mint, maxt): (i64, i64),
    in_res: i64,
    out_res: i64,
    out: &mut Vec<ChunkData>,
) -> Result<()> {
    if chunks.is_empty() {
        return Ok(());
    }
    let num_samples = chunks.iter().map(|c| c.num_samples()).sum();
    let num_chunks = target_chunk_count(mint, maxt, in_res, out_res, num_samples);
    downsample_aggr_loop(chunks, buf, out_res, num_chunks, out)
}

/// Cuts `chunks` into runs of `len / num_chunks` whole chunks and re-aggregates each into one
/// output chunk (Thanos' `downsampleAggrLoop`).
fn downsample_aggr_loop(
    chunks: &[AggrChunk<'_>],
    buf: &mut Vec<Sample>,
    resolution: i64,
    num_chunks: usize,
    out: &mut Vec<ChunkData>,
) -> Result<()> {
    // Thanos loops forever when asked for more output chunks than there are input chunks
    // (a batch size of 0); one input chunk per output chunk is the closest thing that ends.
    let batch_size = (chunks.len() / num_chunks).max(1);
    for part in chunks.chunks(batch_size) {
        let chunk = downsample_float_aggr_batch(part, buf, resolution)?;
        if chunk.min_time == i64::MAX || chunk.max_time == i64::MIN {
            return Err(DownsampleError::Invalid(format!(
                "invalid range for downsampled aggregate chunk: mint={} maxt={}",
                chunk.min_time, chunk.max_time
            )));
        }
        out.push(chunk);
    }
    Ok(())
}

fn unsupported_histograms() -> DownsampleError {
    DownsampleError::NativeHistograms
}

/// Downsamples one series' chunks (in time order, as the index lists them) from resolution
/// `from` to `to` (Thanos' per-series body of `Downsample`). `series` names the series in
/// errors (its index reference). No chunks in, no chunks out.
pub fn downsample_series(
    series: u64,
    chunks: &[ChunkData],
    from: i64,
    to: i64,
) -> Result<Vec<ChunkData>> {
    if from >= to {
        return Err(DownsampleError::ResolutionNotLower);
    }
    if chunks.windows(2).any(|w| w[0].max_time >= w[1].min_time) {
        let mut got = String::from("[");
        for (i, c) in chunks.iter().enumerate() {
            let sep = if i == 0 { "" } else { " " };
            let _ = write!(
                got,
                "{sep}{{MinTime:{} MaxTime:{}}}",
                c.min_time, c.max_time
            );
        }
        got.push(']');
        return Err(DownsampleError::OverlappingChunks { series, got });
    }

    let mut all = Vec::new();
    let mut out = Vec::new();
    if from == RES_LEVEL0 {
        // Thanos cuts the run whenever the input switches between float and histogram
        // chunks; with floats only there is one run.
        for c in chunks {
            match c.encoding {
                ENCODING_XOR => expand_xor(&c.data, &mut all)?,
                ENCODING_HISTOGRAM | ENCODING_FLOAT_HISTOGRAM => {
                    return Err(unsupported_histograms())
                }
                other => {
                    return Err(DownsampleError::Invalid(format!(
                        "unexpected chunk encoding {other}"
                    )))
                }
            }
        }
        return Ok(downsample_raw(&all, to));
    }

    // An aggregated block: XOR chunks in it (written by old Thanos versions) are brought to 5m
    // aggregates first; empty ones are skipped (thanos-io/thanos#5272).
    let mut fixed: Vec<ChunkData> = Vec::with_capacity(chunks.len());
    for c in chunks {
        match c.encoding {
            ENCODING_AGGR => fixed.push(c.clone()),
            _ if c.num_samples() == 0 => {
                tracing::warn!(
                    series,
                    encoding = c.encoding,
                    "expected an aggregate chunk in a downsampled block, got an empty chunk; skipping it"
                );
            }
            ENCODING_XOR => {
                all.clear();
                expand_xor(&c.data, &mut all)?;
                fixed.extend(downsample_raw(&all, RES_LEVEL1));
            }
            _ => return Err(unsupported_histograms()),
        }
    }
    let views: Vec<AggrChunk<'_>> = fixed.iter().map(|c| AggrChunk::new(&c.data)).collect();
    if views.iter().any(is_histogram_aggr) {
        return Err(unsupported_histograms());
    }
    let range = match (fixed.first(), fixed.last()) {
        (Some(first), Some(last)) => (first.min_time, last.max_time),
        _ => return Ok(out),
    };
    downsample_aggr(&views, &mut all, range, from, to, &mut out)?;
    Ok(out)
}

/// A native-histogram aggregate chunk has a histogram counter sub-chunk.
fn is_histogram_aggr(c: &AggrChunk<'_>) -> bool {
    matches!(
        c.get(AggrType::Counter),
        Ok(Some(SubChunk { encoding, .. })) if encoding == ENCODING_HISTOGRAM || encoding == ENCODING_FLOAT_HISTOGRAM
    )
}

/// Downsamples block `input` to `resolution` into `out_dir/<ulid>/` and returns the new
/// block's meta.json, which is the input's with (Thanos' `Downsample`, `writeMetaFile` and
/// `processDownsampling`):
/// - the new ULID and `thanos.downsample.resolution`; `thanos.source` `"compactor"`;
/// - `minTime`, `maxTime`, `compaction` (level, sources, parents), the external labels and
///   `numTombstones` unchanged;
/// - `numSeries`, `numChunks`, `numSamples` (windows, i.e. count sub-chunk samples) counted;
/// - `thanos.segment_files` the chunk segment names and `thanos.index_stats` the largest chunk;
/// - no `files` and no `upload_time`: the copy Thanos starts from carries the input's, which
///   its upload then replaces; an upload here sends meta.json as written.
///
/// Symbols are the input's; series come in the input's order, those left without chunks are
/// not written. Like [`tsdb::compact::compact_blocks`], the block appears only once complete.
pub fn downsample_block(
    input: &Block,
    resolution: i64,
    out_dir: &Path,
    ulid: Ulid,
) -> Result<BlockMeta> {
    let from = input.meta().resolution();
    if from >= resolution {
        return Err(DownsampleError::ResolutionNotLower);
    }
    // `create_block` speaks tsdb errors; a downsampling error is kept aside and returned.
    let mut histogram_series = 0u64;
    let mut failure: Option<DownsampleError> = None;
    let created = create_block(out_dir, ulid, |dir| {
        let mut symbols = BTreeSet::new();
        for symbol in input.index().symbols() {
            symbols.insert(symbol?.to_string());
        }
        let mut writer = BlockWriter::create(dir, &symbols)?;
        drop(symbols);
        let mut chunks = Vec::new();
        for series_ref in input.index().all_postings()? {
            let (labels, metas) = input.index().series(series_ref)?;
            chunks.clear();
            for m in &metas {
                chunks.push(input.chunk(m)?);
            }
            match downsample_series(u64::from(series_ref), &chunks, from, resolution) {
                Ok(out) => writer.add_series(&labels, &out)?,
                // Native histogram aggregates are not written yet: such series stay at raw
                // resolution only (the raw block keeps them for its retention) rather than
                // halting the compactor.
                Err(DownsampleError::NativeHistograms) => histogram_series += 1,
                Err(e) => {
                    let text = e.to_string();
                    failure = Some(e);
                    return Err(tsdb::Error::Invalid(text));
                }
            }
        }
        let written = writer.finish()?;

        let mut meta = input.meta().clone();
        meta.ulid = ulid;
        meta.version = META_VERSION;
        meta.stats.num_series = written.stats.num_series;
        meta.stats.num_chunks = written.stats.num_chunks;
        meta.stats.num_samples = written.stats.num_samples;
        let thanos = meta.thanos.get_or_insert_with(Default::default);
        thanos.downsample.resolution = resolution;
        thanos.source = objstore::thanos_meta::SOURCE_COMPACTOR.to_string();
        thanos.files.clear();
        thanos.extra.remove("upload_time");
        if written.segment_files.is_empty() {
            thanos.extra.remove("segment_files");
        } else {
            thanos
                .extra
                .insert("segment_files".into(), written.segment_files.clone().into());
        }
        let index_stats = IndexStats {
            series_max_size: 0,
            chunk_max_size: written.chunk_max_size as i64,
        };
        thanos
            .extra
            .insert("index_stats".into(), index_stats.to_json());
        Ok(meta)
    });
    match (created, failure) {
        (_, Some(e)) => Err(e),
        (Ok(meta), None) => {
            tracing::info!(from = %input.meta().ulid, to = %ulid, resolution, series = meta.stats.num_series, "downsampled block");
            if histogram_series > 0 {
                tracing::warn!(from = %input.meta().ulid, resolution, series = histogram_series, "native histogram series left out of the downsampled block: downsampling native histograms is not supported yet; they stay at raw resolution");
            }
            Ok(meta)
        }
        (Err(e), None) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests;
