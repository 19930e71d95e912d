//! The StoreAPI's reads over a set of TSDBs: select and merge series, stream them in frames,
//! list label names and values. Everything here is synchronous (the TSDB is): the service runs
//! it on tokio's blocking pool.

use std::sync::Arc;

use proto::thanos::{self, chunk, series_response, SeriesResponse};
use tonic::Status;
use tsdb::chunkenc::{
    AggrChunk, AggrType, ENCODING_AGGR, ENCODING_FLOAT_HISTOGRAM, ENCODING_HISTOGRAM, ENCODING_XOR,
};
use tsdb::db::Db;
use tsdb::matcher::Matcher;
use tsdb::querier::{ChunkData, Querier};
use tsdb::Labels;

use crate::matchers::matchers_for_tsdb;
use crate::ExternalLabels;

/// A frame carries one series' labels and chunks up to about this many bytes; a longer series
/// continues in the next frames (Thanos' TSDB store uses the same bound).
pub(crate) const MAX_FRAME_BYTES: usize = 1 << 20;

/// A series as it leaves the store: full labels (series + external, minus replica labels) and
/// its chunks in time order.
#[derive(Debug)]
pub(crate) struct StoreSeries {
    pub labels: Labels,
    pub chunks: Vec<ChunkData>,
}

/// A parsed Series request.
pub(crate) struct SeriesQuery {
    pub matchers: Vec<Matcher>,
    pub min_time: i64,
    pub max_time: i64,
    pub skip_chunks: bool,
    pub without: Vec<String>,
    /// 0: no limit.
    pub limit: usize,
}

/// Labels of a series as served: its own labels without the replica labels, plus the TSDB's
/// external labels without the replica labels; an external label replaces a series label of the
/// same name (Thanos' `ExtendSortedLabels`).
pub(crate) fn full_labels(
    series: &Labels,
    external: &ExternalLabels,
    without: &[String],
) -> Labels {
    let keep = |name: &str| !without.iter().any(|w| w == name);
    let own = series
        .iter()
        .filter(|l| keep(&l.name))
        .map(|l| (l.name.clone(), l.value.clone()));
    let ext = external
        .iter()
        .filter(|(k, _)| keep(k))
        .map(|(k, v)| (Arc::<str>::from(k.as_str()), Arc::<str>::from(v.as_str())));
    // from_pairs sorts stably and keeps the last of equal names: the external label.
    Labels::from_pairs(own.chain(ext))
}

/// Describes a TSDB in error messages by its external labels.
pub(crate) fn describe(external: &ExternalLabels) -> String {
    let inner: Vec<String> = external.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

/// Maps a TSDB error to a gRPC status that says which TSDB failed.
pub(crate) fn tsdb_status(err: tsdb::Error, external: &ExternalLabels) -> Status {
    let msg = format!("reading the TSDB {}: {err}", describe(external));
    match err {
        tsdb::Error::Corruption { .. } => Status::data_loss(msg),
        tsdb::Error::InvalidMatcher(_) => Status::invalid_argument(msg),
        tsdb::Error::Closed | tsdb::Error::ReadOutlived { .. } => Status::unavailable(msg),
        _ => Status::internal(msg),
    }
}

/// The answer to a Series request as it is produced: series in served order (by full labels).
pub(crate) type SeriesIter = Box<dyn Iterator<Item = Result<StoreSeries, Status>> + Send>;

/// Selects the matching series of every TSDB, sorted by full labels, series with equal labels
/// merged (chunks in time order, identical chunks once), at most `limit` of them.
///
/// The answer streams: the TSDBs resolve the matchers to series handles, and a series' chunks
/// are read when the returned iterator reaches it, so memory holds the handles (a pointer or a
/// series ref per series) and the series in flight, not the answer. That needs the served
/// labels (external labels added, replica labels removed) to keep each TSDB's order, which a
/// first pass over the labels checks; when they do not (a series whose labels are a prefix of
/// another's, with an external label sorting after the shorter one's last label; or a replica
/// label stored in the series), the answer is gathered and sorted in memory, as Thanos' TSDB
/// store always does.
pub(crate) fn select(
    tsdbs: &[(ExternalLabels, Arc<Db>)],
    q: &SeriesQuery,
) -> Result<(SeriesIter, bool), Status> {
    let mut sources = Vec::new();
    for (external, db) in tsdbs {
        let Some(matchers) = matchers_for_tsdb(&q.matchers, external) else {
            continue;
        };
        let selection = db
            .select_lazy(&matchers, q.min_time, q.max_time)
            .map_err(|e| tsdb_status(e, external))?;
        sources.push((external.clone(), db, selection));
    }
    let mut in_order = true;
    let mut as_stored = Vec::with_capacity(sources.len());
    for (external, db, _) in &sources {
        as_stored.push(served_as_stored(db, external, q)?);
    }
    'check: for ((external, _, selection), &as_stored) in sources.iter().zip(&as_stored) {
        if as_stored {
            continue;
        }
        let mut prev: Option<Labels> = None;
        for s in selection.iter(false) {
            let s = s.map_err(|e| tsdb_status(e, external))?;
            let served = full_labels(&s.labels, external, &q.without);
            if prev.as_ref().is_some_and(|p| *p > served) {
                in_order = false;
                break 'check;
            }
            prev = Some(served);
        }
    }
    let with_chunks = !q.skip_chunks;
    let streams: Vec<Served> = sources
        .into_iter()
        .zip(as_stored)
        .map(|((external, _, selection), as_stored)| Served {
            series: selection.iter(with_chunks),
            without: q.without.clone(),
            external,
            as_stored,
        })
        .collect();
    if in_order {
        let merge = MergeServed {
            streams: streams.into_iter().map(Iterator::peekable).collect(),
            limit: q.limit,
            sent: 0,
        };
        return Ok((Box::new(merge), true));
    }
    let mut all = Vec::new();
    for s in streams {
        all.extend(s.collect::<Result<Vec<_>, _>>()?);
    }
    // Stable: series with equal labels keep the order of the TSDBs.
    all.sort_by(|a, b| a.labels.cmp(&b.labels));
    let mut merged: Vec<StoreSeries> = Vec::with_capacity(all.len());
    for s in all {
        match merged.last_mut() {
            Some(last) if last.labels == s.labels => last.chunks.extend(s.chunks),
            _ => {
                if q.limit > 0 && merged.len() == q.limit {
                    break;
                }
                merged.push(s);
            }
        }
    }
    for s in &mut merged {
        sort_and_dedup_chunks(&mut s.chunks);
    }
    Ok((Box::new(merged.into_iter().map(Ok)), false))
}

/// Whether a TSDB's series are served with exactly their own labels: every external label is
/// a replica label the request leaves out, and no series has a label it leaves out. (Then the
/// order needs no check: `cairn query` and Thanos' querier ask this way when they deduplicate
/// over replica external labels.)
fn served_as_stored(db: &Db, external: &ExternalLabels, q: &SeriesQuery) -> Result<bool, Status> {
    let left_out = |name: &str| q.without.iter().any(|w| w == name);
    if !external.keys().all(|k| left_out(k)) {
        return Ok(false);
    }
    if q.without.is_empty() {
        return Ok(true);
    }
    let names = db
        .querier(q.min_time, q.max_time)
        .label_names(&[], q.min_time, q.max_time)
        .map_err(|e| tsdb_status(e, external))?;
    Ok(!names.iter().any(|n| left_out(n)))
}

/// One TSDB's series with their served labels.
struct Served {
    series: tsdb::select::SelectionIter,
    external: ExternalLabels,
    without: Vec<String>,
    /// The series' own labels are the served ones ([`served_as_stored`]).
    as_stored: bool,
}

impl Iterator for Served {
    type Item = Result<StoreSeries, Status>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(match self.series.next()? {
            Ok(s) => Ok(StoreSeries {
                labels: if self.as_stored {
                    s.labels
                } else {
                    full_labels(&s.labels, &self.external, &self.without)
                },
                chunks: s.chunks,
            }),
            Err(e) => Err(tsdb_status(e, &self.external)),
        })
    }
}

/// Merges TSDB streams already in served order: equal labels (from several TSDBs, or one TSDB's
/// series that differ only in a removed replica label) become one series.
struct MergeServed {
    streams: Vec<std::iter::Peekable<Served>>,
    limit: usize,
    sent: usize,
}

impl Iterator for MergeServed {
    type Item = Result<StoreSeries, Status>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.limit > 0 && self.sent == self.limit {
            return None;
        }
        let mut min: Option<Labels> = None;
        for s in &mut self.streams {
            match s.peek() {
                Some(Ok(x)) if min.as_ref().is_none_or(|m| x.labels < *m) => {
                    min = Some(x.labels.clone());
                }
                Some(Ok(_)) | None => {}
                Some(Err(_)) => return s.next(),
            }
        }
        let labels = min?;
        let mut chunks = Vec::new();
        for s in &mut self.streams {
            while let Some(Ok(x)) = s.peek() {
                if x.labels != labels {
                    break;
                }
                chunks.extend(s.next().expect("peeked").expect("peeked Ok").chunks);
            }
        }
        sort_and_dedup_chunks(&mut chunks);
        self.sent += 1;
        Some(Ok(StoreSeries { labels, chunks }))
    }
}

/// Puts a merged series' chunks in time order and drops exact copies (the same chunk from two
/// sources: a receiver's block and its shipped copy, or two blocks of one stream).
pub(crate) fn sort_and_dedup_chunks(chunks: &mut Vec<ChunkData>) {
    chunks.sort_by_key(|c| (c.min_time, c.max_time));
    chunks.dedup_by(|a, b| {
        a.min_time == b.min_time
            && a.max_time == b.max_time
            && a.encoding == b.encoding
            && a.data == b.data
    });
}

/// The StoreAPI chunk type of a TSDB chunk encoding (one less, as in Thanos).
fn chunk_type(encoding: u8) -> Option<chunk::Encoding> {
    match encoding {
        ENCODING_XOR => Some(chunk::Encoding::Xor),
        ENCODING_HISTOGRAM => Some(chunk::Encoding::Histogram),
        ENCODING_FLOAT_HISTOGRAM => Some(chunk::Encoding::FloatHistogram),
        _ => None,
    }
}

/// The aggregate of a downsampled chunk that a requested `Aggr` names (`RAW` and unknown
/// values name none).
fn requested_aggr(a: i32) -> Option<AggrType> {
    match thanos::Aggr::try_from(a).ok()? {
        thanos::Aggr::Raw => None,
        thanos::Aggr::Count => Some(AggrType::Count),
        thanos::Aggr::Sum => Some(AggrType::Sum),
        thanos::Aggr::Min => Some(AggrType::Min),
        thanos::Aggr::Max => Some(AggrType::Max),
        thanos::Aggr::Counter => Some(AggrType::Counter),
    }
}

/// A chunk as the StoreAPI sends it (Thanos' `populateChunk`): XOR and histogram chunks go to
/// `raw` whatever was asked; from an aggregate chunk (encoding `0xFF`, downsampled blocks)
/// each requested aggregate goes to its own field, and one that the chunk lacks fails the
/// request. A store never converts between raw and aggregated data.
fn aggr_chunk(c: ChunkData, aggregates: &[i32]) -> Result<thanos::AggrChunk, Status> {
    let mut out = thanos::AggrChunk {
        min_time: c.min_time,
        max_time: c.max_time,
        ..Default::default()
    };
    if c.encoding == ENCODING_AGGR {
        let whole = c.data;
        let ac = AggrChunk::new(&whole);
        for at in aggregates.iter().filter_map(|&a| requested_aggr(a)) {
            let sub = ac
                .get(at)
                .ok()
                .flatten()
                .and_then(|sub| Some((chunk_type(sub.encoding)?, sub)))
                .ok_or_else(|| Status::internal(format!("aggregate {at} does not exist")))?;
            let (kind, sub) = sub;
            let chunk = Some(thanos::Chunk {
                r#type: kind as i32,
                // Shares the chunk's buffer: no copy.
                data: whole.slice_ref(sub.data),
                hash: 0,
            });
            match at {
                AggrType::Count => out.count = chunk,
                AggrType::Sum => out.sum = chunk,
                AggrType::Min => out.min = chunk,
                AggrType::Max => out.max = chunk,
                AggrType::Counter => out.counter = chunk,
            }
        }
        return Ok(out);
    }
    let Some(kind) = chunk_type(c.encoding) else {
        return Err(Status::internal(format!(
            "chunk [{}, {}] has unknown encoding {}",
            c.min_time, c.max_time, c.encoding
        )));
    };
    out.raw = Some(thanos::Chunk {
        r#type: kind as i32,
        // Shares the TSDB's buffer: no copy.
        data: c.data,
        hash: 0,
    });
    Ok(out)
}

/// A bound on the bytes `ac` adds to a frame (its exact protobuf length costs a walk of every
/// field, per chunk): the data, at most 24 bytes per chunk for its tag, length, type and hash,
/// and 32 for the times and the chunk's own tag and length.
fn frame_len(ac: &thanos::AggrChunk) -> usize {
    [&ac.raw, &ac.count, &ac.sum, &ac.min, &ac.max, &ac.counter]
        .into_iter()
        .flatten()
        .map(|c| c.data.len() + 24)
        .sum::<usize>()
        + 32
}

pub(crate) fn proto_labels(labels: &Labels) -> Vec<thanos::Label> {
    labels
        .iter()
        .map(|l| thanos::Label {
            name: l.name.to_string(),
            value: l.value.to_string(),
        })
        .collect()
}

/// Turns selected series into `thanos.Series` frames of at most about [`MAX_FRAME_BYTES`]; a
/// series that does not fit is split over consecutive frames with the same labels.
/// Aggregate chunks carry the request's `aggregates` (see [`aggr_chunk`]).
pub(crate) struct Frames {
    series: SeriesIter,
    current: Option<(Vec<thanos::Label>, usize, std::vec::IntoIter<ChunkData>)>,
    aggregates: Vec<i32>,
}

impl Frames {
    pub(crate) fn new(series: SeriesIter, aggregates: Vec<i32>) -> Self {
        Frames {
            series,
            current: None,
            aggregates,
        }
    }
}

impl Iterator for Frames {
    type Item = Result<thanos::Series, Status>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.current.is_none() {
            let s = match self.series.next()? {
                Ok(s) => s,
                Err(e) => return Some(Err(e)),
            };
            let labels = proto_labels(&s.labels);
            if s.chunks.is_empty() {
                return Some(Ok(thanos::Series {
                    labels,
                    chunks: Vec::new(),
                }));
            }
            let size: usize = labels
                .iter()
                .map(|l| l.name.len() + l.value.len() + 4)
                .sum();
            self.current = Some((labels, size, s.chunks.into_iter()));
        }
        let (labels, labels_size, chunks) = self.current.as_mut().expect("set above");
        let mut left = MAX_FRAME_BYTES.saturating_sub(*labels_size);
        let mut out = Vec::new();
        for c in chunks.by_ref() {
            let ac = match aggr_chunk(c, &self.aggregates) {
                Ok(ac) => ac,
                Err(e) => {
                    self.current = None;
                    return Some(Err(e));
                }
            };
            left = left.saturating_sub(frame_len(&ac));
            out.push(ac);
            if left == 0 {
                break;
            }
        }
        let labels = if chunks.len() == 0 {
            let (labels, _, _) = self.current.take().expect("set above");
            labels
        } else {
            labels.clone()
        };
        Some(Ok(thanos::Series {
            labels,
            chunks: out,
        }))
    }
}

/// The stream of a Series call (as an iterator): wraps frames into `SeriesResponse`s: one
/// series each, or `batch_size` series per `SeriesBatch` when the client asked for batches
/// (`response_batch_size` > 1). `aggregates` are the request's (for downsampled chunks).
pub struct Responses {
    frames: Frames,
    batch_size: usize,
}

impl Responses {
    pub(crate) fn new(series: Vec<StoreSeries>, batch_size: usize, aggregates: Vec<i32>) -> Self {
        Self::streaming(Box::new(series.into_iter().map(Ok)), batch_size, aggregates)
    }

    /// Responses for series as an iterator produces them (see [`select`]).
    pub(crate) fn streaming(series: SeriesIter, batch_size: usize, aggregates: Vec<i32>) -> Self {
        Responses {
            frames: Frames::new(series, aggregates),
            batch_size,
        }
    }
}

impl Iterator for Responses {
    type Item = Result<SeriesResponse, Status>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.batch_size <= 1 {
            return self.frames.next().map(|r| {
                r.map(|s| SeriesResponse {
                    result: Some(series_response::Result::Series(s)),
                })
            });
        }
        let mut batch = Vec::with_capacity(self.batch_size);
        for frame in self.frames.by_ref() {
            match frame {
                Ok(s) => batch.push(s),
                Err(e) => return Some(Err(e)),
            }
            if batch.len() == self.batch_size {
                break;
            }
        }
        (!batch.is_empty()).then(|| {
            Ok(SeriesResponse {
                result: Some(series_response::Result::Batch(thanos::SeriesBatch {
                    series: batch,
                })),
            })
        })
    }
}

fn truncate(mut v: Vec<String>, limit: usize) -> Vec<String> {
    v.sort();
    v.dedup();
    if limit > 0 {
        v.truncate(limit);
    }
    v
}

/// Label names of the matching series in [start, end], with the external labels of the TSDBs
/// that have any, without the replica labels.
pub(crate) fn label_names(
    tsdbs: &[(ExternalLabels, Arc<Db>)],
    matchers: &[Matcher],
    start: i64,
    end: i64,
    without: &[String],
    limit: usize,
) -> Result<Vec<String>, Status> {
    let keep = |name: &str| !without.iter().any(|w| w == name);
    let mut names = Vec::new();
    for (external, db) in tsdbs {
        let Some(matchers) = matchers_for_tsdb(matchers, external) else {
            continue;
        };
        let found = db
            .querier(start, end)
            .label_names(&matchers, start, end)
            .map_err(|e| tsdb_status(e, external))?;
        if found.is_empty() {
            continue;
        }
        names.extend(found.into_iter().filter(|n| keep(n)));
        names.extend(external.keys().filter(|n| keep(n)).cloned());
    }
    Ok(truncate(names, limit))
}

/// Values of label `name` among the matching series in [start, end]. For an external label the
/// value is the TSDB's, listed when the TSDB has a matching series in the range.
pub(crate) fn label_values(
    tsdbs: &[(ExternalLabels, Arc<Db>)],
    name: &str,
    matchers: &[Matcher],
    start: i64,
    end: i64,
    limit: usize,
) -> Result<Vec<String>, Status> {
    let mut values = Vec::new();
    for (external, db) in tsdbs {
        let Some(matchers) = matchers_for_tsdb(matchers, external) else {
            continue;
        };
        let querier = db.querier(start, end);
        match external.get(name).filter(|v| !v.is_empty()) {
            Some(value) => {
                let any = !querier
                    .label_names(&matchers, start, end)
                    .map_err(|e| tsdb_status(e, external))?
                    .is_empty();
                if any {
                    values.push(value.clone());
                }
            }
            None => values.extend(
                querier
                    .label_values(name, &matchers, start, end)
                    .map_err(|e| tsdb_status(e, external))?,
            ),
        }
    }
    Ok(truncate(values, limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(min_time: i64, len: usize, encoding: u8) -> ChunkData {
        ChunkData {
            min_time,
            max_time: min_time + 10,
            encoding,
            data: vec![7u8; len].into(),
        }
    }

    fn frames(series: Vec<StoreSeries>, aggregates: Vec<i32>) -> Frames {
        Frames::new(Box::new(series.into_iter().map(Ok)), aggregates)
    }

    fn labels(p: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(p.iter().copied())
    }

    #[test]
    fn external_labels_are_added_win_and_replica_labels_go() {
        let ext: ExternalLabels = [("replica", "r1"), ("tenant_id", "a"), ("zone", "z")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let s = labels(&[("__name__", "up"), ("tenant_id", "own"), ("pod", "p")]);
        assert_eq!(
            full_labels(&s, &ext, &[]),
            labels(&[
                ("__name__", "up"),
                ("pod", "p"),
                ("replica", "r1"),
                ("tenant_id", "a"),
                ("zone", "z")
            ])
        );
        assert_eq!(
            full_labels(&s, &ext, &["replica".into(), "pod".into()]),
            labels(&[("__name__", "up"), ("tenant_id", "a"), ("zone", "z")])
        );
    }

    #[test]
    fn a_long_series_is_split_over_frames_with_the_same_labels() {
        // 25 chunks of 100 kB: about 10 per 1 MiB frame.
        let chunks: Vec<ChunkData> = (0..25)
            .map(|i| chunk(i * 100, 100_000, ENCODING_XOR))
            .collect();
        let series = vec![
            StoreSeries {
                labels: labels(&[("__name__", "big")]),
                chunks,
            },
            StoreSeries {
                labels: labels(&[("__name__", "small")]),
                chunks: vec![chunk(0, 10, ENCODING_XOR)],
            },
        ];
        let frames: Vec<thanos::Series> = frames(series, Vec::new()).map(Result::unwrap).collect();
        assert_eq!(
            frames.len(),
            4,
            "three frames for the big series, one for the small"
        );
        let sizes: Vec<usize> = frames.iter().map(|f| f.chunks.len()).collect();
        assert_eq!(sizes.iter().take(3).sum::<usize>(), 25);
        assert!(sizes[0] >= 10 && sizes[0] <= 11, "{sizes:?}");
        for f in &frames[..3] {
            assert_eq!(f.labels[0].value, "big");
            assert!(prost::Message::encoded_len(f) <= MAX_FRAME_BYTES + 110_000);
        }
        let starts: Vec<i64> = frames[..3]
            .iter()
            .flat_map(|f| f.chunks.iter().map(|c| c.min_time))
            .collect();
        assert_eq!(starts, (0..25).map(|i| i * 100).collect::<Vec<_>>());
        assert_eq!(frames[3].labels[0].value, "small");
    }

    #[test]
    fn chunk_types_are_one_less_than_tsdb_encodings_and_unknown_ones_fail() {
        let series = vec![StoreSeries {
            labels: labels(&[("a", "b")]),
            chunks: vec![
                chunk(0, 3, ENCODING_XOR),
                chunk(20, 3, ENCODING_HISTOGRAM),
                chunk(40, 3, ENCODING_FLOAT_HISTOGRAM),
            ],
        }];
        let f = frames(series, Vec::new()).next().unwrap().unwrap();
        let types: Vec<i32> = f
            .chunks
            .iter()
            .map(|c| c.raw.as_ref().unwrap().r#type)
            .collect();
        assert_eq!(types, [0, 1, 2]);

        let series = vec![StoreSeries {
            labels: labels(&[("a", "b")]),
            chunks: vec![chunk(0, 3, 9)],
        }];
        let err = frames(series, Vec::new()).next().unwrap().unwrap_err();
        assert_eq!(err.code(), tonic::Code::Internal);
        assert!(err.message().contains("unknown encoding 9"));
    }

    #[test]
    fn aggregate_chunks_carry_the_requested_aggregates_and_raw_chunks_stay_raw() {
        use tsdb::chunkenc::{encode_aggr_chunk, SubChunk};
        let (count, sum, max) = ([0u8, 1, 7], [0u8, 1, 8], [0u8, 1, 9]);
        let payload = encode_aggr_chunk(&[
            Some(SubChunk::xor(&count)),
            Some(SubChunk::xor(&sum)),
            None,
            Some(SubChunk::xor(&max)),
            None,
        ]);
        let aggr = ChunkData {
            min_time: 299_999,
            max_time: 599_999,
            encoding: ENCODING_AGGR,
            data: payload.into(),
        };
        let frame = |chunks: Vec<ChunkData>, aggrs: &[thanos::Aggr]| {
            let series = vec![StoreSeries {
                labels: labels(&[("a", "b")]),
                chunks,
            }];
            frames(series, aggrs.iter().map(|&a| a as i32).collect())
                .next()
                .unwrap()
        };
        let f = frame(
            vec![aggr.clone(), chunk(600_000, 3, ENCODING_XOR)],
            &[thanos::Aggr::Count, thanos::Aggr::Sum],
        )
        .unwrap();
        let [a, r] = f.chunks.as_slice() else {
            panic!("{f:?}")
        };
        assert_eq!((a.min_time, a.max_time), (299_999, 599_999));
        assert!(a.raw.is_none() && a.min.is_none() && a.max.is_none() && a.counter.is_none());
        let c = a.count.as_ref().unwrap();
        assert_eq!((c.r#type, &c.data[..]), (0, &count[..]));
        assert_eq!(&a.sum.as_ref().unwrap().data[..], &sum[..]);
        // The raw chunk is sent as it is, whatever was asked.
        assert_eq!(r.raw.as_ref().unwrap().r#type, 0);
        assert!(r.count.is_none() && r.sum.is_none());

        let f = frame(vec![aggr.clone()], &[thanos::Aggr::Max]).unwrap();
        assert_eq!(&f.chunks[0].max.as_ref().unwrap().data[..], &max[..]);
        assert!(f.chunks[0].count.is_none());

        // An aggregate the chunk lacks fails the request with Thanos' message.
        let err = frame(
            vec![aggr.clone()],
            &[thanos::Aggr::Count, thanos::Aggr::Counter],
        )
        .unwrap_err();
        assert_eq!(err.message(), "aggregate counter does not exist");
        let err = frame(vec![aggr], &[thanos::Aggr::Min]).unwrap_err();
        assert_eq!(err.message(), "aggregate min does not exist");
    }

    #[test]
    fn batches_hold_up_to_n_series() {
        let series: Vec<StoreSeries> = (0..5)
            .map(|i| StoreSeries {
                labels: labels(&[("i", &i.to_string())]),
                chunks: Vec::new(),
            })
            .collect();
        let sizes: Vec<usize> = Responses::new(series, 2, Vec::new())
            .map(|r| match r.unwrap().result.unwrap() {
                series_response::Result::Batch(b) => b.series.len(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(sizes, [2, 2, 1]);
    }

    #[test]
    fn describes_tsdbs_by_external_labels() {
        let ext: ExternalLabels = [("tenant_id".to_string(), "a".to_string())].into();
        let s = tsdb_status(tsdb::Error::corruption("/x/index", "bad crc"), &ext);
        assert_eq!(s.code(), tonic::Code::DataLoss);
        assert!(s
            .message()
            .starts_with("reading the TSDB {tenant_id=\"a\"}: corruption"));
    }

    /// A TSDB (head only) holding `series`, one sample each at t = 10.
    fn tsdb(dir: &std::path::Path, series: &[&[(&str, &str)]]) -> Arc<Db> {
        let (db, _) = Db::open(dir, tsdb::db::DbOptions::default()).unwrap();
        let mut app = db.appender();
        for s in series {
            app.append(&labels(s), 10, 1.0).unwrap();
        }
        app.commit().unwrap();
        Arc::new(db)
    }

    fn ext(p: &[(&str, &str)]) -> ExternalLabels {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// What `select` answers, by the rule it implements: every series with served labels,
    /// sorted, equal ones merged.
    fn reference(tsdbs: &[(ExternalLabels, Arc<Db>)], q: &SeriesQuery) -> Vec<(String, usize)> {
        let mut all: Vec<(Labels, Vec<ChunkData>)> = Vec::new();
        for (external, db) in tsdbs {
            let Some(m) = matchers_for_tsdb(&q.matchers, external) else {
                continue;
            };
            let querier = db.querier(q.min_time, q.max_time);
            for s in querier.select(&m, q.min_time, q.max_time).unwrap() {
                all.push((full_labels(&s.labels, external, &q.without), s.chunks));
            }
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(Labels, Vec<ChunkData>)> = Vec::new();
        for (l, c) in all {
            match out.last_mut() {
                Some(last) if last.0 == l => last.1.extend(c),
                _ => out.push((l, c)),
            }
        }
        out.into_iter()
            .map(|(l, mut c)| {
                sort_and_dedup_chunks(&mut c);
                (l.to_string(), c.len())
            })
            .collect()
    }

    fn run(tsdbs: &[(ExternalLabels, Arc<Db>)], q: &SeriesQuery) -> (Vec<(String, usize)>, bool) {
        let (series, streamed) = select(tsdbs, q).unwrap();
        let got = series
            .map(|s| s.unwrap())
            .map(|s| (s.labels.to_string(), s.chunks.len()))
            .collect();
        (got, streamed)
    }

    #[test]
    fn streams_when_served_labels_keep_the_tsdb_order_and_sorts_when_not() {
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let uniform: &[&[(&str, &str)]] = &[
            &[("__name__", "up"), ("job", "a"), ("pod", "1")],
            &[("__name__", "up"), ("job", "a"), ("pod", "2")],
            &[("__name__", "up"), ("job", "b"), ("pod", "1")],
        ];
        // Two replicas of the same series and another tenant.
        let tsdbs = vec![
            (
                ext(&[("replica", "r1"), ("tenant_id", "t")]),
                tsdb(dirs[0].path(), uniform),
            ),
            (
                ext(&[("replica", "r2"), ("tenant_id", "t")]),
                tsdb(dirs[1].path(), uniform),
            ),
            (
                ext(&[("replica", "r1"), ("tenant_id", "u")]),
                tsdb(dirs[2].path(), uniform),
            ),
        ];
        let mut q = SeriesQuery {
            matchers: vec![Matcher::equal("__name__", "up")],
            min_time: 0,
            max_time: 100,
            skip_chunks: false,
            without: vec![],
            limit: 0,
        };
        for without in [vec![], vec!["replica".to_string()]] {
            q.without = without;
            let (got, streamed) = run(&tsdbs, &q);
            assert!(streamed, "{:?}", q.without);
            assert_eq!(got, reference(&tsdbs, &q));
        }
        assert_eq!(run(&tsdbs, &q).0.len(), 6, "replicas merged");
        assert!(
            run(&tsdbs, &q).0.iter().all(|(_, n)| *n == 1),
            "identical chunks once"
        );
        q.limit = 4;
        assert_eq!(run(&tsdbs, &q).0, reference(&tsdbs, &q)[..4]);
        q.limit = 0;
        q.skip_chunks = true;
        let (got, streamed) = run(&tsdbs, &q);
        assert!(streamed && got.len() == 6 && got.iter().all(|(_, n)| *n == 0));
        q.skip_chunks = false;
        q.without.clear();

        // {job="a"} sorts before {job="a", pod="1"}, but with replica="r" added after `job` it
        // sorts after {job="a", pod="1", replica="r"}: the answer is gathered and sorted.
        let d = tempfile::tempdir().unwrap();
        let prefixed: &[&[(&str, &str)]] = &[
            &[("__name__", "up"), ("job", "a")],
            &[("__name__", "up"), ("job", "a"), ("pod", "1")],
        ];
        let tsdbs = vec![(ext(&[("replica", "r")]), tsdb(d.path(), prefixed))];
        let (got, streamed) = run(&tsdbs, &q);
        assert!(!streamed, "{got:?}");
        assert_eq!(got, reference(&tsdbs, &q));
        assert_eq!(
            got[0].0,
            r#"{__name__="up", job="a", pod="1", replica="r"}"#
        );

        // Every external label left out, as a deduplicating querier asks: served as stored.
        q.without = vec!["replica".into(), "tenant_id".into()];
        let (got, streamed) = run(&tsdbs, &q);
        assert!(streamed);
        assert_eq!(got, reference(&tsdbs, &q));
        // A replica label stored in the series: removing it reorders them.
        let d = tempfile::tempdir().unwrap();
        let stored: &[&[(&str, &str)]] = &[
            &[
                ("__name__", "up"),
                ("job", "a"),
                ("pod", "1"),
                ("replica", "y"),
            ],
            &[("__name__", "up"), ("job", "a"), ("replica", "x")],
        ];
        let tsdbs = vec![(ext(&[]), tsdb(d.path(), stored))];
        let (got, streamed) = run(&tsdbs, &q);
        assert!(!streamed);
        assert_eq!(got, reference(&tsdbs, &q));
        assert_eq!(got[0].0, r#"{__name__="up", job="a"}"#);
    }
}
