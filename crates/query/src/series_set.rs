//! From the endpoints' `Series` answers to the series the engine evaluates.
//!
//! 1. Each endpoint streams label-sorted series; frames of one series (a long series is split
//!    over several frames with the same labels) are joined into one [`RawSeries`].
//! 2. [`group`] drops the replica labels (when de-duplicating), sorts every endpoint's series by
//!    the remaining labels and gathers the copies of each series: a [`SeriesGroup`] holds the
//!    labels the series is answered with and one chunk list per copy. Copies whose chunks are
//!    byte-for-byte those of an earlier copy are dropped here: they would decode to the same
//!    samples, which the merge then ignores anyway (see [`crate::dedup`]), so this only saves the
//!    decoding (RF=3 receivers cut identical chunks from identical writes).
//! 3. [`Merger::merge`] decodes each remaining copy's chunks (XOR, native histogram, downsampled
//!    aggregates) within the requested span and
//!    merges the copies: the penalty algorithm when de-duplicating, a union otherwise (two
//!    endpoints answering the very same label set, e.g. both without external labels).

use promql::Sample;
use proto::thanos::{self, chunk, AggrChunk};
use std::sync::Arc;

use model::histogram::{bucket_indexes, CounterResetHint, FloatHistogram};
use tsdb::chunkenc::{FloatHistogramIterator, HistogramIterator, XorIterator};
use tsdb::Labels;

use crate::dedup::{chain_merge, penalty_merge};
use crate::downsample::{Aggregates, CounterResets};
use crate::error::{Classify, StatusClass};
use crate::fanout::{Pending, SeriesStream, StreamPart};

/// One series as one endpoint sent it.
#[derive(Clone, Debug)]
pub struct RawSeries {
    pub labels: Labels,
    pub chunks: Vec<AggrChunk>,
}

/// Converts StoreAPI labels (sorted by the store, but sorted again to be safe).
pub fn labels_from_proto(labels: &[thanos::Label]) -> Labels {
    Labels::from_pairs(labels.iter().map(|l| (l.name.as_str(), l.value.as_str())))
}

/// Appends a received frame to an endpoint's series, joining it to the previous series when the
/// labels are the same (a series split over frames), after leaving out the labels named in
/// `strip` (so that copies a store sends under their replica labels join too).
pub fn push_frame(out: &mut Vec<RawSeries>, frame: thanos::Series, strip: &[&str]) {
    let mut labels = labels_from_proto(&frame.labels);
    if !strip.is_empty() && labels.iter().any(|l| strip.contains(&&*l.name)) {
        labels = labels.without(strip);
    }
    match out.last_mut() {
        Some(last) if last.labels == labels => last.chunks.extend(frame.chunks),
        _ => out.push(RawSeries {
            labels,
            chunks: frame.chunks,
        }),
    }
}

/// A series to answer with: its labels and the chunks of each of its copies.
#[derive(Clone, Debug)]
pub struct SeriesGroup {
    pub labels: Labels,
    pub replicas: Vec<Vec<AggrChunk>>,
}

fn same_chunks(a: &[AggrChunk], b: &[AggrChunk]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.min_time == y.min_time && x.max_time == y.max_time && x.raw == y.raw)
}

/// Groups the series of every endpoint by their labels without the replica labels (all labels
/// when `dedup` is off), sorted by those labels.
pub fn group(
    per_endpoint: Vec<Vec<RawSeries>>,
    replica_labels: &[String],
    dedup: bool,
) -> Vec<SeriesGroup> {
    let names: Vec<&str> = replica_labels.iter().map(String::as_str).collect();
    let mut all: Vec<RawSeries> = per_endpoint.into_iter().flatten().collect();
    if dedup && !names.is_empty() {
        for s in &mut all {
            if s.labels.iter().any(|l| names.contains(&&*l.name)) {
                s.labels = s.labels.without(&names);
            }
        }
    }
    // Stable: copies keep the order of the endpoints.
    all.sort_by(|a, b| a.labels.cmp(&b.labels));
    let mut groups: Vec<SeriesGroup> = Vec::new();
    for s in all {
        let g = match groups.last_mut() {
            Some(g) if g.labels == s.labels => g,
            _ => {
                groups.push(SeriesGroup {
                    labels: s.labels,
                    replicas: Vec::new(),
                });
                groups.last_mut().expect("just pushed")
            }
        };
        add_copies(g, s.chunks, dedup);
    }
    groups
}

/// Adds one series' chunks to `g` as copies: cut into chains that do not overlap when
/// de-duplicating, each dropped when it is byte-for-byte a copy `g` has.
fn add_copies(g: &mut SeriesGroup, chunks: Vec<AggrChunk>, dedup: bool) {
    let copies = if dedup {
        split_overlaps(chunks)
    } else {
        vec![chunks]
    };
    for chunks in copies {
        if !g.replicas.iter().any(|r| same_chunks(r, &chunks)) {
            g.replicas.push(chunks);
        }
    }
}

/// The series groups of a streamed fan-out ([`crate::fanout::series_streams`]), in label order,
/// as soon as every endpoint has streamed past them: a k-way merge of the endpoints' sorted
/// answers (copies in the order of the endpoints), so that decoding and evaluation overlap the
/// fetch.
pub struct GroupStream {
    sources: Vec<Source>,
    dedup: bool,
    partial_response: bool,
    deadline: Option<std::time::Instant>,
    /// Failures and store warnings so far (each names its endpoint).
    pub warnings: Vec<String>,
}

struct Source {
    stream: SeriesStream,
    buf: std::collections::VecDeque<RawSeries>,
    done: bool,
}

/// Why a [`GroupStream`] stopped.
pub type StreamError = crate::fanout::FanoutError;

impl GroupStream {
    /// Merges `streams`; `dedup` as for [`group`] (the replica labels are already gone).
    pub fn new(
        streams: Vec<SeriesStream>,
        dedup: bool,
        partial_response: bool,
        deadline: Option<std::time::Instant>,
    ) -> Self {
        GroupStream {
            sources: streams
                .into_iter()
                .map(|stream| Source {
                    stream,
                    buf: Default::default(),
                    done: false,
                })
                .collect(),
            dedup,
            partial_response,
            deadline,
            warnings: Vec::new(),
        }
    }

    /// Takes in one part of source `i`.
    fn take(&mut self, i: usize, part: Option<StreamPart>) -> Result<(), StreamError> {
        let src = &mut self.sources[i];
        match part {
            Some(StreamPart::Series(s)) => src.buf.extend(s),
            Some(StreamPart::Done(warnings)) => {
                src.done = true;
                if let (false, Some(w)) = (self.partial_response, warnings.first()) {
                    return Err(StreamError::Endpoint(w.clone()));
                }
                self.warnings.extend(warnings);
            }
            Some(StreamPart::Failed(msg)) => {
                src.done = true;
                if self
                    .deadline
                    .is_some_and(|d| std::time::Instant::now() >= d)
                {
                    return Err(StreamError::Timeout("Series"));
                }
                if !self.partial_response {
                    return Err(StreamError::Endpoint(msg));
                }
                self.warnings.push(msg);
            }
            None => {
                // The reader ended without a last part (the runtime is shutting down).
                src.done = true;
                let msg = format!("endpoint {}: Series: stream ended", src.stream.address);
                if !self.partial_response {
                    return Err(StreamError::Endpoint(msg));
                }
                self.warnings.push(msg);
            }
        }
        Ok(())
    }

    /// The next group, waiting for the endpoints as long as `wait` says: `Ok(None)` at the end,
    /// or, without waiting, when some endpoint has not streamed far enough yet
    /// ([`GroupStream::is_done`] tells the two apart).
    pub fn next(&mut self, wait: bool) -> Result<Option<SeriesGroup>, StreamError> {
        for i in 0..self.sources.len() {
            while self.sources[i].buf.is_empty() && !self.sources[i].done {
                let part = if wait {
                    self.sources[i].stream.blocking_next()
                } else {
                    match self.sources[i].stream.try_next() {
                        Ok(p) => Some(p),
                        Err(Pending::Waiting) => return Ok(None),
                        Err(Pending::Ended) => None,
                    }
                };
                self.take(i, part)?;
            }
        }
        // The first endpoint whose next series has the smallest labels: no earlier endpoint
        // has a copy, so its series opens the group (its labels taken, not cloned) and copies
        // stay in the order of the endpoints.
        let Some(first) = self
            .sources
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((i, &s.buf.front()?.labels)))
            .min_by(|a, b| a.1.cmp(b.1))
            .map(|(i, _)| i)
        else {
            return Ok(None);
        };
        let opening = self.sources[first].buf.pop_front().expect("a front");
        let mut g = SeriesGroup {
            labels: opening.labels,
            replicas: Vec::new(),
        };
        add_copies(&mut g, opening.chunks, self.dedup);
        for src in &mut self.sources[first..] {
            while src.buf.front().is_some_and(|s| s.labels == g.labels) {
                let s = src.buf.pop_front().expect("a front");
                add_copies(&mut g, s.chunks, self.dedup);
            }
        }
        Ok(Some(g))
    }

    /// Whether every endpoint has streamed to its end and every group was taken.
    pub fn is_done(&self) -> bool {
        self.sources.iter().all(|s| s.done && s.buf.is_empty())
    }
}

/// Thanos' overlap split: a store asked to leave the replica labels out merges the replicas it
/// holds (an HA pair's blocks in a bucket, replica TSDBs of one receiver) into one series whose
/// chunks overlap; cutting it into chains of chunks that do not overlap (each chunk to the first
/// chain that ended before it starts) gives the replica merge one copy per replica again.
fn split_overlaps(mut chunks: Vec<AggrChunk>) -> Vec<Vec<AggrChunk>> {
    if chunks.windows(2).all(|w| w[1].min_time > w[0].max_time) {
        return vec![chunks];
    }
    chunks.sort_by_key(|c| (c.min_time, c.max_time));
    let mut chains: Vec<Vec<AggrChunk>> = Vec::new();
    for c in chunks {
        let free = chains
            .iter_mut()
            .find(|chain| chain.last().is_some_and(|last| last.max_time < c.min_time));
        match free {
            Some(chain) => chain.push(c),
            None => chains.push(vec![c]),
        }
    }
    chains
}

/// What decoding left out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Native histogram chunks of downsampled blocks (their aggregates are not read yet).
    pub histogram_chunks: usize,
    /// Downsampled chunks without the aggregates asked for.
    pub aggregate_chunks: usize,
}

impl std::ops::AddAssign for Skipped {
    fn add_assign(&mut self, other: Skipped) {
        let Skipped {
            histogram_chunks,
            aggregate_chunks,
        } = other;
        self.histogram_chunks += histogram_chunks;
        self.aggregate_chunks += aggregate_chunks;
    }
}

/// Why a series' chunks cannot be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A chunk (known by its time range) whose data ends early or is malformed.
    #[error("chunk [{min_time}, {max_time}] does not decode: {reason}")]
    Chunk {
        min_time: i64,
        max_time: i64,
        reason: String,
    },
}

impl Classify for DecodeError {
    /// Prometheus answers a chunk that does not decode (a storage error) `internal`.
    fn class(&self) -> StatusClass {
        StatusClass::Internal
    }
}

/// Decodes the float samples of `chunks` within `[mint, maxt]` into `out` (cleared first), in
/// time order, each timestamp once, reading downsampled chunks as `read` says. Fails on a
/// chunk that does not decode.
///
/// Raw chunks only (every default query): overlapping chunks are merged, the earlier chunk
/// winning a timestamp both have. With any downsampled chunk in the span the chunks are chained
/// as Thanos chains them: a chunk's samples up to the last timestamp already read are skipped,
/// and for [`Aggregates::Counter`] the counter resets are applied across the whole series
/// ([`CounterResets`]), so that a raw chunk next to a downsampled one stays consistent.
pub fn decode(
    chunks: &[AggrChunk],
    mint: i64,
    maxt: i64,
    read: Aggregates,
    out: &mut Vec<Sample>,
    skipped: &mut Skipped,
) -> Result<(), DecodeError> {
    out.clear();
    let in_span = |c: &&AggrChunk| c.max_time >= mint && c.min_time <= maxt;
    let chained = chunks.iter().filter(in_span).any(|c| c.raw.is_none());
    let mut overlapping = false;
    let mut prev_max = i64::MIN;
    let mut last_t = i64::MIN;
    let mut counter = CounterResets::default();
    let mut push = |t: i64, v: f64, out: &mut Vec<Sample>| {
        if !chained {
            if t >= mint {
                out.push(Sample::float(t, v));
            }
            return;
        }
        let emitted = if read == Aggregates::Counter {
            counter.push(t, v)
        } else if t > last_t {
            last_t = t;
            Some((t, v))
        } else {
            None
        };
        if let Some((t, v)) = emitted.filter(|&(t, _)| t >= mint) {
            out.push(Sample::float(t, v));
        }
    };
    for c in chunks.iter().filter(in_span) {
        let fail = |reason: String| DecodeError::Chunk {
            min_time: c.min_time,
            max_time: c.max_time,
            reason,
        };
        let single = match (&c.raw, read) {
            (Some(raw), _) => Some(raw),
            (None, Aggregates::Average) => None,
            (None, read) => match read.field(c) {
                Some(f) => Some(f),
                None => {
                    skipped.aggregate_chunks += 1;
                    continue;
                }
            },
        };
        if let Some(chunk) = single {
            let histogram = chunk.r#type == chunk::Encoding::Histogram as i32
                || chunk.r#type == chunk::Encoding::FloatHistogram as i32;
            if histogram && !chained {
                overlapping |= c.min_time <= prev_max;
                prev_max = prev_max.max(c.max_time);
                decode_histograms(chunk, mint, maxt, out).map_err(fail)?;
                continue;
            }
            if chunk.r#type != chunk::Encoding::Xor as i32 {
                skipped.histogram_chunks += 1;
                continue;
            }
            overlapping |= c.min_time <= prev_max;
            prev_max = prev_max.max(c.max_time);
            // For count_over_time a raw sample counts once; a window's count as many times as
            // the raw samples it covers. Stale markers stay markers.
            let ones = read == Aggregates::CountOverTime && c.raw.is_some();
            let mut it = XorIterator::new(&chunk.data);
            for (t, v) in it.by_ref() {
                if t > maxt {
                    break;
                }
                let v = if ones && !model::is_stale_nan(v) {
                    1.0
                } else {
                    v
                };
                push(t, v, out);
            }
            if let Some(e) = it.err() {
                return Err(fail(e.to_string()));
            }
            continue;
        }
        // Average: sum / count of each window.
        let (Some(count), Some(sum)) = (&c.count, &c.sum) else {
            skipped.aggregate_chunks += 1;
            continue;
        };
        if count.r#type != chunk::Encoding::Xor as i32 || sum.r#type != chunk::Encoding::Xor as i32
        {
            skipped.histogram_chunks += 1;
            continue;
        }
        let (mut counts, mut sums) = (XorIterator::new(&count.data), XorIterator::new(&sum.data));
        loop {
            match (counts.next(), sums.next()) {
                (None, None) => break,
                (Some((ct, cv)), Some((st, sv))) if ct == st => {
                    if ct > maxt {
                        break;
                    }
                    push(ct, sv / cv, out);
                }
                (Some(_), Some(_)) => {
                    return Err(fail("sum and count timestamps not aligned".into()));
                }
                _ => {
                    if let Some(e) = counts.err().or(sums.err()) {
                        return Err(fail(e.to_string()));
                    }
                    return Err(fail("sum and count iterator not aligned".into()));
                }
            }
        }
        if let Some(e) = counts.err().or(sums.err()) {
            return Err(fail(e.to_string()));
        }
    }
    if overlapping && !chained {
        out.sort_by_key(|s| s.t);
        out.dedup_by_key(|s| s.t);
    }
    Ok(())
}

/// The engine's form of a stored native histogram: float counts on sparse bucket indexes.
pub fn promql_histogram(h: &FloatHistogram) -> promql::FloatHistogram {
    let side = |spans: &[model::histogram::Span], counts: &[f64]| -> Vec<(i32, f64)> {
        bucket_indexes(spans).zip(counts.iter().copied()).collect()
    };
    promql::FloatHistogram {
        counter_reset_hint: match h.counter_reset_hint {
            // A chunk's "no reset" holds within the chunk only: after overlapping chunks or
            // replicas are merged, the sample before may come from elsewhere, so the engine
            // detects resets itself (Prometheus' merge does the same when sources change).
            CounterResetHint::NotReset => CounterResetHint::Unknown,
            hint => hint,
        },
        schema: h.schema,
        zero_threshold: h.zero_threshold,
        zero_count: h.zero_count,
        count: h.count,
        sum: h.sum,
        positive: side(&h.positive_spans, &h.positive_buckets),
        negative: side(&h.negative_spans, &h.negative_buckets),
        custom_values: h.custom_values.clone(),
    }
}

/// Decodes a raw histogram or float-histogram chunk's samples within `[mint, maxt]`. A stale
/// histogram reads as a float stale marker, which is how the engine knows markers.
fn decode_histograms(
    chunk: &thanos::Chunk,
    mint: i64,
    maxt: i64,
    out: &mut Vec<Sample>,
) -> Result<(), String> {
    let mut push = |t: i64, h: FloatHistogram| {
        if t < mint || t > maxt {
            return;
        }
        if h.is_stale() {
            out.push(Sample::float(t, model::stale_nan()));
        } else {
            out.push(Sample::histogram(t, Arc::new(promql_histogram(&h))));
        }
    };
    if chunk.r#type == chunk::Encoding::Histogram as i32 {
        let mut it = HistogramIterator::new(&chunk.data);
        for (t, h) in it.by_ref() {
            push(t, h.to_float());
        }
        it.err().map_or(Ok(()), |e| Err(e.to_string()))
    } else {
        let mut it = FloatHistogramIterator::new(&chunk.data);
        for (t, h) in it.by_ref() {
            push(t, h);
        }
        it.err().map_or(Ok(()), |e| Err(e.to_string()))
    }
}

/// How the copies of a series are merged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeMode {
    /// The penalty algorithm; `counter` turns the counter adjustment on.
    Penalty { counter: bool },
    /// Every timestamp once.
    Union,
}

/// Decodes and merges groups, reusing its buffers across calls.
#[derive(Default)]
pub struct Merger {
    copies: Vec<Vec<Sample>>,
    pub skipped: Skipped,
}

impl Merger {
    /// The samples of `group` within `[mint, maxt]` into `out` (cleared first), downsampled
    /// chunks read as `read` says.
    pub fn merge(
        &mut self,
        group: &SeriesGroup,
        mint: i64,
        maxt: i64,
        read: Aggregates,
        mode: MergeMode,
        out: &mut Vec<Sample>,
    ) -> Result<(), DecodeError> {
        if let [only] = group.replicas.as_slice() {
            return decode(only, mint, maxt, read, out, &mut self.skipped);
        }
        if self.copies.len() < group.replicas.len() {
            self.copies.resize_with(group.replicas.len(), Vec::new);
        }
        for (chunks, buf) in group.replicas.iter().zip(&mut self.copies) {
            decode(chunks, mint, maxt, read, buf, &mut self.skipped)?;
        }
        let copies: Vec<&[Sample]> = self.copies[..group.replicas.len()]
            .iter()
            .filter(|c| !c.is_empty())
            .map(Vec::as_slice)
            .collect();
        match mode {
            MergeMode::Penalty { counter } => penalty_merge(&copies, counter, out),
            MergeMode::Union => chain_merge(&copies, out),
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bytes::Bytes;
    use tsdb::chunkenc::XorChunk;

    const AVG: Aggregates = Aggregates::Average;

    fn xor_data(samples: &[(i64, f64)]) -> thanos::Chunk {
        let mut c = XorChunk::new();
        for &(t, v) in samples {
            c.append(t, v);
        }
        thanos::Chunk {
            r#type: chunk::Encoding::Xor as i32,
            data: Bytes::from(c.into_bytes()),
            hash: 0,
        }
    }

    /// A downsampled chunk as a store sends it: the aggregates given, `raw` unset.
    fn aggr(min_time: i64, max_time: i64, fields: &[(Aggregates, &[(i64, f64)])]) -> AggrChunk {
        let mut c = AggrChunk {
            min_time,
            max_time,
            ..Default::default()
        };
        for &(a, samples) in fields {
            let data = Some(xor_data(samples));
            match a {
                Aggregates::Count | Aggregates::CountOverTime => c.count = data,
                Aggregates::Sum => c.sum = data,
                Aggregates::Min => c.min = data,
                Aggregates::Max => c.max = data,
                Aggregates::Counter => c.counter = data,
                Aggregates::Average => unreachable!(),
            }
        }
        c
    }

    fn decoded(chunks: &[AggrChunk], mint: i64, maxt: i64, read: Aggregates) -> Vec<(i64, f64)> {
        let mut out = Vec::new();
        let mut skipped = Skipped::default();
        decode(chunks, mint, maxt, read, &mut out, &mut skipped).unwrap();
        assert_eq!(skipped, Skipped::default());
        out.iter().map(|s| (s.t, s.f)).collect()
    }

    /// An XOR AggrChunk holding `samples`.
    pub(crate) fn xor_chunk(samples: &[(i64, f64)]) -> AggrChunk {
        let mut c = XorChunk::new();
        for &(t, v) in samples {
            c.append(t, v);
        }
        AggrChunk {
            min_time: samples.first().map_or(0, |s| s.0),
            max_time: samples.last().map_or(0, |s| s.0),
            raw: Some(thanos::Chunk {
                r#type: chunk::Encoding::Xor as i32,
                data: Bytes::from(c.into_bytes()),
                hash: 0,
            }),
            ..Default::default()
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    fn raw(pairs: &[(&str, &str)], chunks: Vec<AggrChunk>) -> RawSeries {
        RawSeries {
            labels: labels(pairs),
            chunks,
        }
    }

    #[test]
    fn frames_of_one_series_are_joined() {
        let frame = |v: &str, t: i64| thanos::Series {
            labels: vec![thanos::Label {
                name: "a".into(),
                value: v.into(),
            }],
            chunks: vec![xor_chunk(&[(t, 1.0)])],
        };
        let mut out = Vec::new();
        push_frame(&mut out, frame("1", 0), &[]);
        push_frame(&mut out, frame("1", 10), &[]);
        push_frame(&mut out, frame("2", 0), &[]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].chunks.len(), 2);
        assert_eq!(out[1].labels, labels(&[("a", "2")]));
    }

    #[test]
    fn a_store_merged_series_is_split_back_into_copies() {
        // One store sent two replicas as one series (asked without the replica label): their
        // chunks overlap. Deduplication sees two copies again; without it, one series as sent.
        let merged = vec![
            xor_chunk(&[(0, 1.0), (10, 2.0)]),
            xor_chunk(&[(5, 1.5), (15, 2.5)]),
            xor_chunk(&[(20, 3.0), (30, 4.0)]),
            xor_chunk(&[(25, 3.5), (35, 4.5)]),
        ];
        let groups = group(
            vec![vec![raw(&[("a", "1")], merged.clone())]],
            &["replica".into()],
            true,
        );
        assert_eq!(groups.len(), 1);
        let starts: Vec<Vec<i64>> = groups[0]
            .replicas
            .iter()
            .map(|r| r.iter().map(|c| c.min_time).collect())
            .collect();
        assert_eq!(starts, vec![vec![0, 20], vec![5, 25]]);
        let groups = group(vec![vec![raw(&[("a", "1")], merged)]], &[], false);
        assert_eq!(groups[0].replicas.len(), 1);
        assert_eq!(groups[0].replicas[0].len(), 4);
    }

    #[test]
    fn groups_by_labels_without_replica_labels() {
        let c1 = xor_chunk(&[(0, 1.0), (10, 2.0)]);
        let c2 = xor_chunk(&[(5, 1.0), (15, 2.0)]);
        let per_endpoint = vec![
            vec![
                raw(&[("job", "a"), ("replica", "r1")], vec![c1.clone()]),
                raw(&[("job", "b"), ("replica", "r1")], vec![c1.clone()]),
            ],
            vec![
                // Sorts before job="b" once the replica label is gone.
                raw(&[("job", "a"), ("replica", "r2")], vec![c2.clone()]),
                raw(&[("job", "b"), ("replica", "r2")], vec![c1.clone()]),
            ],
            vec![raw(&[("job", "a"), ("replica", "r3")], vec![c1.clone()])],
        ];
        let replica = vec!["replica".to_string()];
        let groups = group(per_endpoint.clone(), &replica, true);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].labels, labels(&[("job", "a")]));
        // r3's chunks are r1's: one copy fewer to decode.
        assert_eq!(groups[0].replicas.len(), 2);
        assert_eq!(groups[1].labels, labels(&[("job", "b")]));
        assert_eq!(groups[1].replicas.len(), 1);

        let all = group(per_endpoint, &replica, false);
        assert_eq!(all.len(), 5);
        let names: Vec<String> = all.iter().map(|g| g.labels.to_string()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        assert!(all.iter().all(|g| g.replicas.len() == 1));
    }

    #[test]
    fn count_over_time_reads_window_counts_and_raw_samples_as_one() {
        // A 5m block's windows (30 and 20 raw samples), then raw samples filling the gap after
        // it, one of them a stale marker.
        let windows = aggr(
            0,
            599_999,
            &[(Aggregates::Count, &[(299_999, 30.0), (599_999, 20.0)])],
        );
        let raw = xor_chunk(&[
            (615_000, 7.5),
            (630_000, model::stale_nan()),
            (645_000, -2.0),
        ]);
        let got = decoded(&[windows, raw], 0, 700_000, Aggregates::CountOverTime);
        assert_eq!(got[..2], [(299_999, 30.0), (599_999, 20.0)]);
        assert_eq!(got[2], (615_000, 1.0));
        assert!(model::is_stale_nan(got[3].1), "a stale marker stays one");
        assert_eq!(got[4], (645_000, 1.0));
        // Raw data only: every sample reads as 1.
        let raw_only = xor_chunk(&[(0, 3.0), (15_000, 4.0)]);
        assert_eq!(
            decoded(&[raw_only], 0, 20_000, Aggregates::CountOverTime),
            [(0, 1.0), (15_000, 1.0)]
        );
    }

    #[test]
    fn decode_keeps_the_span_and_merges_overlaps() {
        let a = xor_chunk(&[(0, 0.0), (10, 1.0), (20, 2.0)]);
        let b = xor_chunk(&[(15, 9.0), (20, 9.0), (30, 3.0)]);
        let mut out = Vec::new();
        let mut skipped = Skipped::default();
        decode(&[a.clone(), b], 5, 25, AVG, &mut out, &mut skipped).unwrap();
        let got: Vec<(i64, f64)> = out.iter().map(|s| (s.t, s.f)).collect();
        assert_eq!(got, [(10, 1.0), (15, 9.0), (20, 2.0)]);

        // A native histogram chunk decodes to histogram samples; its stale marker to a float
        // marker.
        let mut hc = tsdb::chunkenc::HistogramChunk::new();
        let h = model::histogram::Histogram {
            count: 3,
            sum: 1.5,
            positive_spans: vec![model::histogram::Span {
                offset: 1,
                length: 2,
            }],
            positive_buckets: vec![1, 1],
            ..Default::default()
        };
        hc.append(10, &h).unwrap();
        let stale = model::histogram::Histogram {
            sum: model::stale_nan(),
            ..Default::default()
        };
        hc.append(20, &stale).unwrap();
        let mut hist = a.clone();
        let raw = hist.raw.as_mut().unwrap();
        raw.r#type = chunk::Encoding::Histogram as i32;
        raw.data = Bytes::from(hc.bytes().to_vec());
        decode(&[hist.clone()], 0, 100, AVG, &mut out, &mut skipped).unwrap();
        assert_eq!(out.len(), 2);
        let got = out[0].h.as_deref().expect("a histogram sample");
        assert_eq!((got.count, got.sum), (3.0, 1.5));
        assert_eq!(got.positive, [(1, 1.0), (2, 2.0)]);
        assert!(out[1].is_stale() && out[1].h.is_none());

        let aggr = AggrChunk {
            raw: None,
            ..a.clone()
        };
        decode(&[aggr], 0, 100, AVG, &mut out, &mut skipped).unwrap();
        assert!(out.is_empty());
        assert_eq!(
            skipped,
            Skipped {
                histogram_chunks: 0,
                aggregate_chunks: 1
            }
        );

        let mut broken = a;
        broken.raw.as_mut().unwrap().data = Bytes::from_static(&[0, 3, 1]);
        assert!(decode(&[broken], 0, 100, AVG, &mut out, &mut skipped).is_err());
    }

    #[test]
    fn downsampled_chunks_read_the_asked_aggregate() {
        // Two 5m windows (stamped at their last millisecond), then a raw chunk filling the
        // time after the downsampled block.
        let a = aggr(
            299_999,
            599_999,
            &[
                (Aggregates::Count, &[(299_999, 4.0), (599_999, 2.0)]),
                (Aggregates::Sum, &[(299_999, 10.0), (599_999, 7.0)]),
                (Aggregates::Max, &[(299_999, 4.0), (599_999, 5.0)]),
            ],
        );
        let r = xor_chunk(&[(600_000, 1.0), (660_000, 2.0)]);
        let chunks = [a.clone(), r.clone()];
        assert_eq!(
            decoded(&chunks, 0, 1_000_000, AVG),
            [
                (299_999, 2.5),
                (599_999, 3.5),
                (600_000, 1.0),
                (660_000, 2.0)
            ]
        );
        assert_eq!(
            decoded(&chunks, 0, 1_000_000, Aggregates::Max),
            [
                (299_999, 4.0),
                (599_999, 5.0),
                (600_000, 1.0),
                (660_000, 2.0)
            ]
        );
        // Bounded to the span.
        assert_eq!(
            decoded(&chunks, 300_000, 600_000, Aggregates::Max),
            [(599_999, 5.0), (600_000, 1.0)]
        );
        // A raw chunk overlapping the downsampled one only adds what comes after it.
        let early = xor_chunk(&[(200_000, 9.0), (599_999, 9.0), (610_000, 3.0)]);
        assert_eq!(
            decoded(&[a.clone(), early], 0, 1_000_000, Aggregates::Max),
            [(299_999, 4.0), (599_999, 5.0), (610_000, 3.0)]
        );
        // An aggregate the store did not send: the chunk is left out and counted.
        let mut out = Vec::new();
        let mut skipped = Skipped::default();
        decode(
            &chunks,
            0,
            1_000_000,
            Aggregates::Min,
            &mut out,
            &mut skipped,
        )
        .unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(skipped.aggregate_chunks, 1);
        // Count and sum that do not line up are an error.
        let bad = aggr(
            299_999,
            599_999,
            &[
                (Aggregates::Count, &[(299_999, 4.0), (599_999, 2.0)]),
                (Aggregates::Sum, &[(299_999, 10.0)]),
            ],
        );
        let err = decode(&[bad], 0, 1_000_000, AVG, &mut out, &mut skipped).unwrap_err();
        assert!(err.to_string().contains("not aligned"), "{err}");
    }

    #[test]
    fn downsampled_counters_have_their_resets_applied_across_chunks() {
        // Raw counter 1, 3, 6 | reset | 2, 4 written as two downsampled chunks: each counter
        // sub-chunk starts with its first raw sample, holds the running total per window and
        // ends with its last raw value at its last window's timestamp.
        let c1 = aggr(
            299_999,
            599_999,
            &[(
                Aggregates::Counter,
                &[(0, 1.0), (299_999, 3.0), (599_999, 6.0), (599_999, 6.0)],
            )],
        );
        let c2 = aggr(
            899_999,
            899_999,
            &[(
                Aggregates::Counter,
                &[(600_000, 2.0), (899_999, 4.0), (899_999, 4.0)],
            )],
        );
        let r = xor_chunk(&[(900_000, 1.0), (960_000, 5.0)]);
        assert_eq!(
            decoded(&[c1, c2, r], 0, 1_000_000, Aggregates::Counter),
            [
                (0, 1.0),
                (299_999, 3.0),
                (599_999, 6.0),
                // 2 < 6: a reset, the whole 2 is an increase.
                (600_000, 8.0),
                (899_999, 10.0),
                // The raw chunk after it: again a reset, then +4.
                (900_000, 11.0),
                (960_000, 15.0)
            ]
        );
        // Raw data alone is read as it is (resets() keeps working on raw data).
        let raw = xor_chunk(&[(0, 5.0), (60_000, 1.0)]);
        assert_eq!(
            decoded(&[raw], 0, 100_000, Aggregates::Counter),
            [(0, 5.0), (60_000, 1.0)]
        );
    }

    #[test]
    fn merger_dedups_and_unions() {
        let a = vec![xor_chunk(&[(0, 1.0), (15_000, 2.0), (30_000, 3.0)])];
        // b's last sample comes after a has ended and past the penalty (2 * 15 s after 30 s).
        let b = vec![xor_chunk(&[(1, 1.0), (15_001, 2.0), (75_001, 4.0)])];
        let g = SeriesGroup {
            labels: labels(&[("job", "a")]),
            replicas: vec![a, b],
        };
        let mut m = Merger::default();
        let mut out = Vec::new();
        m.merge(
            &g,
            0,
            100_000,
            AVG,
            MergeMode::Penalty { counter: false },
            &mut out,
        )
        .unwrap();
        let ts: Vec<i64> = out.iter().map(|s| s.t).collect();
        assert_eq!(ts, [0, 15_000, 30_000, 75_001]);
        m.merge(&g, 0, 100_000, AVG, MergeMode::Union, &mut out)
            .unwrap();
        let ts: Vec<i64> = out.iter().map(|s| s.t).collect();
        assert_eq!(ts, [0, 1, 15_000, 15_001, 30_000, 75_001]);
    }

    /// Every group a stream yields, waiting for each.
    fn drain(gs: &mut GroupStream) -> Result<Vec<SeriesGroup>, StreamError> {
        let mut out = Vec::new();
        while let Some(g) = gs.next(true)? {
            out.push(g);
        }
        assert!(gs.is_done());
        Ok(out)
    }

    /// A stream that sends `batches`, then `last`.
    fn fed(address: &str, batches: Vec<Vec<RawSeries>>, last: StreamPart) -> SeriesStream {
        let (tx, stream) = SeriesStream::for_test(address);
        for b in batches {
            tx.send(StreamPart::Series(b)).unwrap();
        }
        tx.send(last).unwrap();
        stream
    }

    proptest::proptest! {
        /// Merging the endpoints' sorted answers as they stream in, in batches of any size,
        /// gives the groups that grouping the whole answers gives.
        #[test]
        fn streamed_groups_are_the_gathered_groups(
            endpoints in proptest::collection::vec(
                proptest::collection::btree_map(0u8..40, (0u8..3, 1usize..4), 0..25),
                1..4,
            ),
            cut in 1usize..9,
        ) {
            // Series `k` of an endpoint holds chunk variant `v` (the same variant on two
            // endpoints is a byte-identical copy).
            let per_endpoint: Vec<Vec<RawSeries>> = endpoints
                .iter()
                .map(|m| {
                    m.iter()
                        .map(|(&k, &(v, n))| {
                            let chunks = (0..n)
                                .map(|c| {
                                    let t = c as i64 * 1000;
                                    xor_chunk(&[(t, f64::from(v)), (t + 500, f64::from(k))])
                                })
                                .collect();
                            raw(&[("__name__", "m"), ("k", &format!("{k:03}"))], chunks)
                        })
                        .collect()
                })
                .collect();
            let want = group(per_endpoint.clone(), &[], true);
            let streams = per_endpoint
                .into_iter()
                .enumerate()
                .map(|(i, series)| {
                    let batches = series.chunks(cut).map(<[RawSeries]>::to_vec).collect();
                    fed(&format!("e{i}"), batches, StreamPart::Done(Vec::new()))
                })
                .collect();
            let mut gs = GroupStream::new(streams, true, true, None);
            let got = drain(&mut gs).unwrap();
            proptest::prop_assert_eq!(format!("{got:?}"), format!("{want:?}"));
        }
    }

    #[test]
    fn an_endpoint_that_fails_keeps_what_it_streamed_under_partial_response() {
        let a = |k: &str| raw(&[("k", k)], vec![xor_chunk(&[(1, 1.0)])]);
        let b = |k: &str| raw(&[("k", k)], vec![xor_chunk(&[(2, 2.0)])]);
        let streams = || {
            vec![
                fed(
                    "e0",
                    vec![vec![a("1"), a("2"), a("3")]],
                    StreamPart::Done(Vec::new()),
                ),
                fed(
                    "e1",
                    vec![vec![b("1")]],
                    StreamPart::Failed("endpoint e1: Series: Unavailable: gone".into()),
                ),
            ]
        };
        let mut gs = GroupStream::new(streams(), true, true, None);
        let got = drain(&mut gs).unwrap();
        let copies: Vec<usize> = got.iter().map(|g| g.replicas.len()).collect();
        assert_eq!(copies, [2, 1, 1], "e1's first series stays, as in Thanos");
        assert_eq!(gs.warnings, ["endpoint e1: Series: Unavailable: gone"]);
        // Without partial responses the failure fails the select.
        let mut gs = GroupStream::new(streams(), true, false, None);
        let err = drain(&mut gs).unwrap_err();
        assert_eq!(
            err,
            StreamError::Endpoint("endpoint e1: Series: Unavailable: gone".into())
        );
        // So does a store's warning.
        let warned = fed(
            "e0",
            vec![vec![a("1")]],
            StreamPart::Done(vec!["endpoint e0: some blocks were skipped".into()]),
        );
        let mut gs = GroupStream::new(vec![warned], true, false, None);
        assert!(matches!(drain(&mut gs), Err(StreamError::Endpoint(w)) if w.contains("skipped")));
    }

    #[test]
    fn without_waiting_a_group_comes_once_every_endpoint_streamed_past_it() {
        let s = |k: &str| raw(&[("k", k)], vec![xor_chunk(&[(1, 1.0)])]);
        let (tx0, e0) = SeriesStream::for_test("e0");
        let (tx1, e1) = SeriesStream::for_test("e1");
        let mut gs = GroupStream::new(vec![e0, e1], true, true, None);
        tx0.send(StreamPart::Series(vec![s("a"), s("c")])).unwrap();
        assert!(
            gs.next(false).unwrap().is_none(),
            "e1 may still send a smaller series"
        );
        assert!(!gs.is_done());
        tx1.send(StreamPart::Series(vec![s("b")])).unwrap();
        let keys = |gs: &mut GroupStream| -> Vec<String> {
            std::iter::from_fn(|| gs.next(false).unwrap())
                .map(|g| g.labels.get("k").unwrap().to_string())
                .collect()
        };
        assert_eq!(keys(&mut gs), ["a", "b"]);
        tx1.send(StreamPart::Done(Vec::new())).unwrap();
        tx0.send(StreamPart::Done(Vec::new())).unwrap();
        assert_eq!(keys(&mut gs), ["c"]);
        assert!(gs.is_done());
    }
}
