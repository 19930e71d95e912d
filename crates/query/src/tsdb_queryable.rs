//! The PromQL engine over the TSDB's read interface.
//!
//! The engine asks for series by label matchers and a time span ([`SelectHints::start`] to
//! [`SelectHints::end`], inclusive); the TSDB answers with label-sorted series holding encoded
//! chunks. [`TsdbQueryable`] converts the matchers, selects with the span and decodes the chunks
//! in the span into [`promql::Sample`]s. Stale markers keep their NaN bit pattern, so the engine
//! sees them as stale. Series without a sample in the span are left out.

use promql::{
    Matcher, Queryable, Sample, SelectHints, Series, SeriesSink, StorageError, StorageErrorKind,
};
use tsdb::querier::{ChunkData, Querier, Series as TsdbSeries};

/// A [`Queryable`] over a TSDB [`Querier`] (a `HeadQuerier`, a `BlockQuerier`, a `MergeQuerier`).
pub struct TsdbQueryable<Q> {
    querier: Q,
}

impl<Q: Querier> TsdbQueryable<Q> {
    pub fn new(querier: Q) -> Self {
        TsdbQueryable { querier }
    }

    /// The wrapped querier.
    pub fn querier(&self) -> &Q {
        &self.querier
    }

    pub fn into_inner(self) -> Q {
        self.querier
    }
}

/// What kind of storage failure a TSDB error is.
pub(crate) fn storage_kind(e: &tsdb::Error) -> StorageErrorKind {
    match e {
        tsdb::Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            StorageErrorKind::NotFound
        }
        tsdb::Error::Io { .. } => StorageErrorKind::Io,
        tsdb::Error::Corruption { .. } | tsdb::Error::Invalid(_) => StorageErrorKind::Corrupt,
        tsdb::Error::Closed | tsdb::Error::ReadOutlived { .. } => StorageErrorKind::Unavailable,
        tsdb::Error::OutOfOrder { .. }
        | tsdb::Error::DuplicateTimestamp { .. }
        | tsdb::Error::OutOfBounds { .. }
        | tsdb::Error::InvalidMatcher(_) => StorageErrorKind::Other,
    }
}

/// A TSDB error as the engine's storage error: its kind, its text, and the error itself.
pub(crate) fn storage_err(e: tsdb::Error) -> promql::Error {
    StorageError::with_source(storage_kind(&e), e).into()
}

/// Decodes the samples of `s` within `[mint, maxt]` into `buf` (cleared first).
fn decode_into(s: &TsdbSeries, mint: i64, maxt: i64, buf: &mut Vec<Sample>) {
    buf.clear();
    let overlapping = s.chunks.windows(2).any(|w| w[1].min_time <= w[0].max_time);
    if overlapping {
        // Overlapping chunks need the merge the TSDB's iterator does.
        buf.extend(s.iter(mint, maxt).map(|x| Sample::float(x.t, x.v)));
        return;
    }
    let inside = |c: &&ChunkData| c.max_time >= mint && c.min_time <= maxt;
    // The chunks' sample counts bound what the span can hold.
    buf.reserve(
        s.chunks
            .iter()
            .filter(inside)
            .map(|c| c.num_samples())
            .sum(),
    );
    for c in s.chunks.iter().filter(inside) {
        if c.min_time >= mint && c.max_time <= maxt {
            buf.extend(c.samples().map(|(t, v)| Sample::float(t, v)));
        } else {
            buf.extend(
                c.samples()
                    .filter(|&(t, _)| t >= mint && t <= maxt)
                    .map(|(t, v)| Sample::float(t, v)),
            );
        }
    }
}

impl<Q: Querier> Queryable for TsdbQueryable<Q> {
    fn select(
        &self,
        hints: &SelectHints,
        matchers: &[Matcher],
    ) -> Result<Vec<Series>, promql::Error> {
        let mut out = Vec::new();
        self.select_each(hints, matchers, &mut |labels, samples| {
            out.push(Series {
                labels,
                samples: samples.into(),
            });
            Ok(())
        })?;
        Ok(out)
    }

    /// Decodes one series at a time into a buffer reused across series.
    fn select_each(
        &self,
        hints: &SelectHints,
        matchers: &[Matcher],
        f: &mut SeriesSink<'_>,
    ) -> Result<(), promql::Error> {
        let (mint, maxt) = (hints.start, hints.end);
        let selected = self
            .querier
            .select(matchers, mint, maxt)
            .map_err(storage_err)?;
        let mut buf: Vec<Sample> = Vec::new();
        for s in selected {
            decode_into(&s, mint, maxt, &mut buf);
            if !buf.is_empty() {
                f(s.labels, &buf)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use promql::{Engine, MemoryStorage, QueryResult, QueryValue, RangeSeries};
    use tsdb::block::{write_block, Block, BlockQuerier, BlockWriteOptions};
    use tsdb::head::{Head, HeadOptions, HeadQuerier};
    use tsdb::querier::MergeQuerier;
    use tsdb::{Labels, STALE_NAN_BITS};

    use super::*;

    const START: i64 = 1_700_000_000_000 - 1_700_000_000_000 % 7_200_000;
    const STEP: i64 = 15_000;
    const POINTS: i64 = 5 * 240; // 5 hours at 15 s

    /// Counters with resets, a gap and a stale marker; gauges with NaN and staleness; classic
    /// histogram buckets.
    fn data() -> Vec<(Labels, Vec<(i64, f64)>)> {
        let mut out = Vec::new();
        for (i, (job, inst)) in [
            ("api", "a:1"),
            ("api", "a:2"),
            ("web", "w:1"),
            ("db", "d:1"),
        ]
        .into_iter()
        .enumerate()
        {
            let labels = Labels::from_pairs([
                ("__name__", "http_requests_total"),
                ("instance", inst),
                ("job", job),
            ]);
            let mut v = 100.0 * i as f64;
            let mut samples = Vec::new();
            for p in 0..POINTS {
                if i == 1 && (300..340).contains(&p) {
                    continue; // a 10 minute gap
                }
                v += ((p * 7 + i as i64 * 3) % 11) as f64;
                if i == 2 && p == 500 {
                    v = 2.0; // counter reset
                }
                let t = START + p * STEP + 1_000 * i as i64;
                samples.push((t, v));
                if i == 3 && p == 900 {
                    samples.push((t + 5_000, f64::from_bits(STALE_NAN_BITS)));
                    break; // the target went away
                }
            }
            out.push((labels, samples));
        }
        for (i, room) in ["a", "b", "c"].into_iter().enumerate() {
            let labels = Labels::from_pairs([("__name__", "temperature"), ("room", room)]);
            let samples = (0..POINTS)
                .step_by(2)
                .map(|p| {
                    let t = START + p * STEP + 7_000;
                    let v = if i == 1 && p % 50 == 0 {
                        f64::NAN
                    } else if i == 2 && p == 600 {
                        f64::from_bits(STALE_NAN_BITS)
                    } else {
                        (p as f64 * 0.1 + i as f64).sin() * 20.0
                    };
                    (t, v)
                })
                .collect();
            out.push((labels, samples));
        }
        let bounds = ["0.1", "0.5", "1", "+Inf"];
        for inst in ["x", "y"] {
            let mut cum = [0.0; 4];
            let mut series: Vec<Vec<(i64, f64)>> = vec![Vec::new(); 4];
            for p in 0..POINTS {
                let n = 10 + p % 7;
                let mut c = 0.0;
                for (b, part) in [n / 2, n / 4, n / 8, n - n / 2 - n / 4 - n / 8]
                    .into_iter()
                    .enumerate()
                {
                    c += part as f64;
                    cum[b] += c;
                    series[b].push((START + p * STEP + 3_000, cum[b]));
                }
            }
            for (b, s) in series.into_iter().enumerate() {
                let labels = Labels::from_pairs([
                    ("__name__", "latency_bucket"),
                    ("instance", inst),
                    ("le", bounds[b]),
                ]);
                out.push((labels, s));
            }
        }
        out
    }

    fn memory(data: &[(Labels, Vec<(i64, f64)>)]) -> MemoryStorage {
        let mut m = MemoryStorage::new();
        for (l, samples) in data {
            for &(t, v) in samples {
                m.append(l, t, v);
            }
        }
        m
    }

    fn head(data: &[(Labels, Vec<(i64, f64)>)]) -> Arc<Head> {
        let head = Arc::new(Head::new(HeadOptions::default(), None));
        let mut app = head.appender();
        for (l, samples) in data {
            for &(t, v) in samples {
                app.append(l, t, v).unwrap();
            }
        }
        app.commit().unwrap();
        head
    }

    /// Writes the head into blocks split at `cuts` and opens them.
    fn blocks(head: &Arc<Head>, dir: &std::path::Path, cuts: &[i64]) -> Vec<Arc<Block>> {
        let all = HeadQuerier(head.clone())
            .select(
                &[Matcher::regex("__name__", ".+").unwrap()],
                i64::MIN,
                i64::MAX,
            )
            .unwrap();
        let mut bounds = vec![head.min_time()];
        bounds.extend_from_slice(cuts);
        bounds.push(head.max_time() + 1);
        bounds
            .windows(2)
            .map(|w| {
                let meta =
                    write_block(dir, w[0], w[1], &all, BlockWriteOptions::default()).unwrap();
                Arc::new(Block::open(&dir.join(meta.ulid.to_string())).unwrap())
            })
            .collect()
    }

    fn merged(blocks: &[Arc<Block>]) -> MergeQuerier {
        MergeQuerier::new(
            blocks
                .iter()
                .map(|b| Box::new(BlockQuerier(b.clone())) as Box<dyn Querier>)
                .collect(),
        )
    }

    fn same_float(a: f64, b: f64) -> bool {
        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
    }

    fn same_matrix(a: &[RangeSeries], b: &[RangeSeries]) -> Result<(), String> {
        if a.len() != b.len() {
            return Err(format!("{} series vs {}", a.len(), b.len()));
        }
        for (x, y) in a.iter().zip(b) {
            if x.labels != y.labels {
                return Err(format!("labels {} vs {}", x.labels, y.labels));
            }
            if x.samples.len() != y.samples.len() {
                return Err(format!(
                    "{}: {} samples vs {}",
                    x.labels,
                    x.samples.len(),
                    y.samples.len()
                ));
            }
            for (p, q) in x.samples.iter().zip(&y.samples) {
                if p.t != q.t || !same_float(p.f, q.f) || p.h != q.h {
                    return Err(format!("{}: {p:?} vs {q:?}", x.labels));
                }
            }
        }
        Ok(())
    }

    fn same(a: &QueryResult, b: &QueryResult) -> Result<(), String> {
        match (&a.value, &b.value) {
            (QueryValue::Matrix(x), QueryValue::Matrix(y)) => same_matrix(x, y)?,
            (QueryValue::Vector(x), QueryValue::Vector(y)) => {
                if x.len() != y.len() {
                    return Err(format!("{} elements vs {}", x.len(), y.len()));
                }
                for (p, q) in x.iter().zip(y) {
                    if p.labels != q.labels || p.t != q.t || !same_float(p.f, q.f) {
                        return Err(format!("{p:?} vs {q:?}"));
                    }
                }
            }
            (x, y) => {
                if x != y {
                    return Err(format!("{x:?} vs {y:?}"));
                }
            }
        }
        if a.annotations != b.annotations {
            return Err(format!("{:?} vs {:?}", a.annotations, b.annotations));
        }
        Ok(())
    }

    const QUERIES: &[&str] = &[
        "http_requests_total",
        r#"http_requests_total{job!="api"}"#,
        "rate(http_requests_total[5m])",
        "sum by (job) (rate(http_requests_total[5m]))",
        "increase(http_requests_total[1h])",
        "histogram_quantile(0.9, sum by (le) (rate(latency_bucket[5m])))",
        "topk(2, temperature)",
        r#"temperature{room=~"a|b"} offset 10m"#,
        "count_over_time(temperature[10m])",
        "max_over_time(rate(http_requests_total[5m])[30m:1m])",
        "absent(nonexistent)",
        "avg(temperature) - on() group_left sum(rate(http_requests_total[2m]))",
    ];

    #[test]
    fn head_and_blocks_answer_like_memory_storage() {
        let data = data();
        let mem = memory(&data);
        let head = head(&data);
        let dir = tempfile::tempdir().unwrap();
        let one = blocks(&head, &dir.path().join("one"), &[]);
        let three = blocks(
            &head,
            &dir.path().join("three"),
            &[START + 7_200_000, START + 4 * 3_600_000 + 12_345],
        );
        let sources: Vec<(&str, Box<dyn Queryable>)> = vec![
            (
                "head",
                Box::new(TsdbQueryable::new(HeadQuerier(head.clone()))),
            ),
            (
                "one block",
                Box::new(TsdbQueryable::new(BlockQuerier(one[0].clone()))),
            ),
            ("three blocks", Box::new(TsdbQueryable::new(merged(&three)))),
            (
                // Every sample twice, in overlapping chunks: the merging decode path.
                "head and a block",
                Box::new(TsdbQueryable::new(MergeQuerier::new(vec![
                    Box::new(HeadQuerier(head.clone())),
                    Box::new(BlockQuerier(one[0].clone())),
                ]))),
            ),
        ];
        let engine = Engine::default();
        let (start, end) = (START + 1_800_000 + 30_000, START + 5 * 3_600_000);
        for q in QUERIES {
            let want = engine.range_query(&mem, q, start, end, 60_000).unwrap();
            match &want.value {
                QueryValue::Matrix(m) => assert!(!m.is_empty(), "{q} selects nothing"),
                v => panic!("{q}: {v:?}"),
            }
            for (name, src) in &sources {
                let got = engine
                    .range_query(src.as_ref(), q, start, end, 60_000)
                    .unwrap();
                if let Err(e) = same(&want, &got) {
                    panic!("range query {q} over {name}: {e}");
                }
            }
            for t in [
                start,
                START + 2 * 3_600_000,
                START + 4 * 3_600_000 + 12_345,
                end,
            ] {
                let want = engine.instant_query(&mem, q, t).unwrap();
                for (name, src) in &sources {
                    let got = engine.instant_query(src.as_ref(), q, t).unwrap();
                    if let Err(e) = same(&want, &got) {
                        panic!("instant query {q} at {t} over {name}: {e}");
                    }
                }
            }
        }
    }

    #[test]
    fn select_keeps_stale_markers_and_the_span() {
        let data = data();
        let q = TsdbQueryable::new(HeadQuerier(head(&data)));
        let m = Matcher::new(promql::MatchType::Equal, "job", "db").unwrap();
        let hints = SelectHints {
            start: START + 900 * STEP,
            end: START + 1000 * STEP,
            ..Default::default()
        };
        let got = q.select(&hints, &[m]).unwrap();
        assert_eq!(got.len(), 1);
        let s = &got[0].samples;
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].t, START + 900 * STEP + 3_000);
        assert!(s[1].is_stale());
        assert!(s.iter().all(|x| x.t >= hints.start && x.t <= hints.end));
        let none = Matcher::new(promql::MatchType::Regex, "job", "nope|.*x").unwrap();
        assert!(q.select(&hints, &[none]).unwrap().is_empty());
    }
}
