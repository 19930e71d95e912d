//! The read interface shared by the head, blocks and their merge.
//!
//! [`Querier::select`] returns the series matching a set of matchers within [mint, maxt]
//! (inclusive), sorted by labels, each with its chunks in time order. Callers that want samples
//! use [`Series::iter`], which walks the chunks forward and, where chunks overlap (the same series
//! in the head and in a block, or in two overlapping blocks), merges them and drops repeated
//! timestamps. Callers that forward chunks (the StoreAPI) use the chunks directly.

use std::cmp::Ordering;

use crate::chunkenc::{AggrChunk, XorIterator, ENCODING_AGGR, ENCODING_XOR};
use crate::matcher::Matcher;
use crate::{Labels, Result, Sample};

/// One encoded chunk and the time range it covers (inclusive).
#[derive(Clone, Debug)]
pub struct ChunkData {
    pub min_time: i64,
    pub max_time: i64,
    pub encoding: u8,
    /// The chunk's bytes: a block's are a slice of its mapped segment (no copy).
    pub data: bytes::Bytes,
}

impl ChunkData {
    /// Number of samples in the chunk: the XOR header's count, or for an aggregate chunk that
    /// of its count sub-chunk (one per downsampling window, as Thanos counts them).
    pub fn num_samples(&self) -> usize {
        if self.encoding == ENCODING_AGGR {
            return AggrChunk::new(&self.data).num_samples();
        }
        if self.data.len() < 2 {
            return 0;
        }
        u16::from_be_bytes([self.data[0], self.data[1]]) as usize
    }

    /// The samples of an XOR chunk (an empty iterator for other encodings).
    pub fn samples(&self) -> XorIterator<'_> {
        if self.encoding == ENCODING_XOR {
            XorIterator::new(&self.data)
        } else {
            XorIterator::new(&[0, 0])
        }
    }
}

/// A series and its chunks.
#[derive(Clone, Debug)]
pub struct Series {
    pub labels: Labels,
    pub chunks: Vec<ChunkData>,
}

impl Series {
    /// Samples within [mint, maxt], in time order, each timestamp once.
    pub fn iter(&self, mint: i64, maxt: i64) -> SampleIter<'_> {
        let overlapping = self
            .chunks
            .windows(2)
            .any(|w| w[1].min_time <= w[0].max_time);
        if !overlapping {
            return SampleIter {
                inner: Inner::Sequential {
                    chunks: &self.chunks,
                    next_chunk: 0,
                    current: None,
                },
                mint,
                maxt,
            };
        }
        // Overlap is rare (it needs a restart or an overlapping block): merge the slow way,
        // keeping the first source's value for a repeated timestamp.
        let mut all: Vec<Sample> = self
            .chunks
            .iter()
            .flat_map(|c| c.samples().map(|(t, v)| Sample { t, v }))
            .collect();
        all.sort_by_key(|s| s.t);
        all.dedup_by_key(|s| s.t);
        SampleIter {
            inner: Inner::Merged(all.into_iter()),
            mint,
            maxt,
        }
    }

    pub fn samples(&self, mint: i64, maxt: i64) -> Vec<Sample> {
        self.iter(mint, maxt).collect()
    }
}

enum Inner<'a> {
    Sequential {
        chunks: &'a [ChunkData],
        next_chunk: usize,
        current: Option<XorIterator<'a>>,
    },
    Merged(std::vec::IntoIter<Sample>),
}

/// Forward-only iterator over a series' samples in a time window.
pub struct SampleIter<'a> {
    inner: Inner<'a>,
    mint: i64,
    maxt: i64,
}

impl Iterator for SampleIter<'_> {
    type Item = Sample;

    fn next(&mut self) -> Option<Sample> {
        loop {
            let s = match &mut self.inner {
                Inner::Merged(it) => it.next()?,
                Inner::Sequential {
                    chunks,
                    next_chunk,
                    current,
                } => {
                    if let Some(it) = current {
                        if let Some((t, v)) = it.next() {
                            Sample { t, v }
                        } else {
                            *current = None;
                            continue;
                        }
                    } else {
                        // Skip chunks entirely outside the window without decoding them.
                        while *next_chunk < chunks.len() && chunks[*next_chunk].max_time < self.mint
                        {
                            *next_chunk += 1;
                        }
                        let c = chunks.get(*next_chunk)?;
                        if c.min_time > self.maxt {
                            return None;
                        }
                        *next_chunk += 1;
                        *current = Some(c.samples());
                        continue;
                    }
                }
            };
            if s.t < self.mint {
                continue;
            }
            if s.t > self.maxt {
                return None;
            }
            return Some(s);
        }
    }
}

/// Reads series and label metadata from some part of the database.
pub trait Querier: Send + Sync {
    /// Series matching every matcher with data in [mint, maxt], sorted by labels.
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>>;

    /// Label names of the series matching `matchers` (all series when empty), sorted.
    fn label_names(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<String>>;

    /// Values of label `name` among the series matching `matchers`, sorted.
    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>>;
}

/// Label names of a set of series.
pub(crate) fn names_of(series: &[Series]) -> Vec<String> {
    let mut names: Vec<String> = series
        .iter()
        .flat_map(|s| s.labels.iter().map(|l| l.name.to_string()))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Values of one label in a set of series.
pub(crate) fn values_of(series: &[Series], name: &str) -> Vec<String> {
    let mut values: Vec<String> = series
        .iter()
        .filter_map(|s| s.labels.get(name).map(str::to_string))
        .collect();
    values.sort();
    values.dedup();
    values
}

/// Merges several queriers: series with the same labels are combined (chunks in time order),
/// label names and values are unioned.
pub struct MergeQuerier {
    queriers: Vec<Box<dyn Querier>>,
}

impl MergeQuerier {
    pub fn new(queriers: Vec<Box<dyn Querier>>) -> Self {
        MergeQuerier { queriers }
    }
}

fn union_sorted(lists: Vec<Vec<String>>) -> Vec<String> {
    let mut all: Vec<String> = lists.into_iter().flatten().collect();
    all.sort();
    all.dedup();
    all
}

impl Querier for MergeQuerier {
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>> {
        let mut merged: Vec<Series> = Vec::new();
        for q in &self.queriers {
            let next = q.select(matchers, mint, maxt)?;
            merged = merge_series(merged, next);
        }
        for s in &mut merged {
            s.chunks.sort_by_key(|c| (c.min_time, c.max_time));
        }
        Ok(merged)
    }

    fn label_names(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<String>> {
        let lists = self
            .queriers
            .iter()
            .map(|q| q.label_names(matchers, mint, maxt))
            .collect::<Result<Vec<_>>>()?;
        Ok(union_sorted(lists))
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>> {
        let lists = self
            .queriers
            .iter()
            .map(|q| q.label_values(name, matchers, mint, maxt))
            .collect::<Result<Vec<_>>>()?;
        Ok(union_sorted(lists))
    }
}

/// Merges two label-sorted series lists.
fn merge_series(a: Vec<Series>, b: Vec<Series>) -> Vec<Series> {
    if a.is_empty() {
        return b;
    }
    if b.is_empty() {
        return a;
    }
    let mut out = Vec::with_capacity(a.len() + b.len());
    let mut a = a.into_iter().peekable();
    let mut b = b.into_iter().peekable();
    loop {
        let order = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => x.labels.cmp(&y.labels),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => break,
        };
        match order {
            Ordering::Less => out.push(a.next().unwrap()),
            Ordering::Greater => out.push(b.next().unwrap()),
            Ordering::Equal => {
                let mut x = a.next().unwrap();
                x.chunks.extend(b.next().unwrap().chunks);
                out.push(x);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunkenc::XorChunk;
    use crate::labels;

    fn chunk(samples: &[(i64, f64)]) -> ChunkData {
        let mut c = XorChunk::new();
        for &(t, v) in samples {
            c.append(t, v);
        }
        ChunkData {
            min_time: samples[0].0,
            max_time: samples.last().unwrap().0,
            encoding: ENCODING_XOR,
            data: bytes::Bytes::copy_from_slice(c.bytes()),
        }
    }

    #[test]
    fn iterates_windows_and_merges_overlaps() {
        let s = Series {
            labels: labels!("a" => "1"),
            chunks: vec![chunk(&[(1, 1.0), (2, 2.0)]), chunk(&[(3, 3.0), (4, 4.0)])],
        };
        let ts: Vec<i64> = s.iter(2, 3).map(|x| x.t).collect();
        assert_eq!(ts, vec![2, 3]);
        let s = Series {
            labels: labels!("a" => "1"),
            chunks: vec![
                chunk(&[(1, 1.0), (3, 3.0)]),
                chunk(&[(2, 2.0), (3, 9.0), (4, 4.0)]),
            ],
        };
        let got: Vec<(i64, f64)> = s.iter(i64::MIN, i64::MAX).map(|x| (x.t, x.v)).collect();
        assert_eq!(got, vec![(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0)]);
    }

    #[test]
    fn merges_sorted_lists() {
        let mk = |v: &str, t: i64| Series {
            labels: labels!("a" => v),
            chunks: vec![chunk(&[(t, 1.0)])],
        };
        let merged = merge_series(vec![mk("1", 5), mk("3", 1)], vec![mk("1", 1), mk("2", 1)]);
        let names: Vec<String> = merged.iter().map(|s| s.labels.to_string()).collect();
        assert_eq!(names, vec![r#"{a="1"}"#, r#"{a="2"}"#, r#"{a="3"}"#]);
        assert_eq!(merged[0].chunks.len(), 2);
    }
}
