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
//! 3. [`Merger::merge`] decodes each remaining copy's XOR chunks within the requested span and
//!    merges the copies: the penalty algorithm when de-duplicating, a union otherwise (two
//!    endpoints answering the very same label set, e.g. both without external labels).

use promql::Sample;
use proto::thanos::{self, chunk, AggrChunk};
use tsdb::chunkenc::XorIterator;
use tsdb::Labels;

use crate::dedup::{chain_merge, penalty_merge};
use crate::error::{Classify, StatusClass};

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
/// labels are the same (a series split over frames).
pub fn push_frame(out: &mut Vec<RawSeries>, frame: thanos::Series) {
    let labels = labels_from_proto(&frame.labels);
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
        match groups.last_mut() {
            Some(g) if g.labels == s.labels => {
                if !g.replicas.iter().any(|r| same_chunks(r, &s.chunks)) {
                    g.replicas.push(s.chunks);
                }
            }
            _ => groups.push(SeriesGroup {
                labels: s.labels,
                replicas: vec![s.chunks],
            }),
        }
    }
    groups
}

/// What decoding left out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Native histogram chunks (not supported by Cairn's engine input yet).
    pub histogram_chunks: usize,
    /// Chunks without raw data (downsampled aggregates only).
    pub aggregate_chunks: usize,
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
/// time order, each timestamp once (overlapping chunks are merged, the earlier chunk winning).
/// Fails on a chunk that does not decode.
pub fn decode(
    chunks: &[AggrChunk],
    mint: i64,
    maxt: i64,
    out: &mut Vec<Sample>,
    skipped: &mut Skipped,
) -> Result<(), DecodeError> {
    out.clear();
    let mut overlapping = false;
    let mut prev_max = i64::MIN;
    for c in chunks {
        if c.max_time < mint || c.min_time > maxt {
            continue;
        }
        let Some(raw) = &c.raw else {
            skipped.aggregate_chunks += 1;
            continue;
        };
        if raw.r#type != chunk::Encoding::Xor as i32 {
            skipped.histogram_chunks += 1;
            continue;
        }
        overlapping |= c.min_time <= prev_max;
        prev_max = prev_max.max(c.max_time);
        let mut it = XorIterator::new(&raw.data);
        for (t, v) in it.by_ref() {
            if t > maxt {
                break;
            }
            if t >= mint {
                out.push(Sample::float(t, v));
            }
        }
        if let Some(e) = it.err() {
            return Err(DecodeError::Chunk {
                min_time: c.min_time,
                max_time: c.max_time,
                reason: e.to_string(),
            });
        }
    }
    if overlapping {
        out.sort_by_key(|s| s.t);
        out.dedup_by_key(|s| s.t);
    }
    Ok(())
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
    /// The samples of `group` within `[mint, maxt]` into `out` (cleared first).
    pub fn merge(
        &mut self,
        group: &SeriesGroup,
        mint: i64,
        maxt: i64,
        mode: MergeMode,
        out: &mut Vec<Sample>,
    ) -> Result<(), DecodeError> {
        if let [only] = group.replicas.as_slice() {
            return decode(only, mint, maxt, out, &mut self.skipped);
        }
        if self.copies.len() < group.replicas.len() {
            self.copies.resize_with(group.replicas.len(), Vec::new);
        }
        for (chunks, buf) in group.replicas.iter().zip(&mut self.copies) {
            decode(chunks, mint, maxt, buf, &mut self.skipped)?;
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
        push_frame(&mut out, frame("1", 0));
        push_frame(&mut out, frame("1", 10));
        push_frame(&mut out, frame("2", 0));
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].chunks.len(), 2);
        assert_eq!(out[1].labels, labels(&[("a", "2")]));
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
    fn decode_keeps_the_span_and_merges_overlaps() {
        let a = xor_chunk(&[(0, 0.0), (10, 1.0), (20, 2.0)]);
        let b = xor_chunk(&[(15, 9.0), (20, 9.0), (30, 3.0)]);
        let mut out = Vec::new();
        let mut skipped = Skipped::default();
        decode(&[a.clone(), b], 5, 25, &mut out, &mut skipped).unwrap();
        let got: Vec<(i64, f64)> = out.iter().map(|s| (s.t, s.f)).collect();
        assert_eq!(got, [(10, 1.0), (15, 9.0), (20, 2.0)]);

        let mut hist = a.clone();
        hist.raw.as_mut().unwrap().r#type = chunk::Encoding::Histogram as i32;
        let aggr = AggrChunk {
            raw: None,
            ..a.clone()
        };
        decode(&[hist, aggr], 0, 100, &mut out, &mut skipped).unwrap();
        assert!(out.is_empty());
        assert_eq!(
            skipped,
            Skipped {
                histogram_chunks: 1,
                aggregate_chunks: 1
            }
        );

        let mut broken = a;
        broken.raw.as_mut().unwrap().data = Bytes::from_static(&[0, 3, 1]);
        assert!(decode(&[broken], 0, 100, &mut out, &mut skipped).is_err());
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
            MergeMode::Penalty { counter: false },
            &mut out,
        )
        .unwrap();
        let ts: Vec<i64> = out.iter().map(|s| s.t).collect();
        assert_eq!(ts, [0, 15_000, 30_000, 75_001]);
        m.merge(&g, 0, 100_000, MergeMode::Union, &mut out).unwrap();
        let ts: Vec<i64> = out.iter().map(|s| s.t).collect();
        assert_eq!(ts, [0, 1, 15_000, 15_001, 30_000, 75_001]);
    }
}
