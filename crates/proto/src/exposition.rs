//! Writes Prometheus' protobuf exposition format (`io.prometheus.client.MetricFamily`, each
//! message preceded by its varint length: `application/vnd.google.protobuf;
//! proto=io.prometheus.client.MetricFamily; encoding=delimited`), the format Prometheus scrapes
//! native histograms in. Only what scrape targets in tests and benchmarks serve: native
//! histograms and counters with an exemplar.
//!
//! Field numbers (`prompb/io/prometheus/client/metrics.proto` upstream):
//!
//! ```text
//! MetricFamily  name=1, help=2, type=3 (COUNTER 0, HISTOGRAM 4), metric=4
//! Metric        label=1 (LabelPair name=1, value=2), counter=3, histogram=7
//! Counter       value=1, exemplar=2 (Exemplar label=1, value=2, timestamp=3 {seconds=1, nanos=2})
//! Histogram     sample_count=1, sample_sum=2, schema=5 (sint32), zero_threshold=6,
//!               zero_count=7, positive_span=12 (offset=1 sint32, length=2), positive_delta=13
//! ```

use crate::wire::{self, put_bytes, put_message, put_tag, put_varint, zigzag64};

/// One native histogram metric of a family.
#[derive(Clone, Debug, Default)]
pub struct NativeHistogram<'a> {
    pub labels: Vec<(&'a str, &'a str)>,
    pub count: u64,
    pub sum: f64,
    pub schema: i32,
    pub zero_threshold: f64,
    pub zero_count: u64,
    /// (offset, length) as in remote write: the first offset is an index, later ones gaps.
    pub positive_spans: Vec<(i32, u32)>,
    /// Bucket counts as deltas from the bucket before (the first from 0).
    pub positive_deltas: Vec<i64>,
}

/// An exemplar: its labels, value and timestamp in milliseconds.
#[derive(Clone, Debug, Default)]
pub struct ExemplarRef<'a> {
    pub labels: Vec<(&'a str, &'a str)>,
    pub value: f64,
    pub timestamp_ms: i64,
}

fn put_double(out: &mut Vec<u8>, field: u32, v: f64) {
    put_tag(out, field, wire::FIXED64);
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_uint(out: &mut Vec<u8>, field: u32, v: u64) {
    put_tag(out, field, wire::VARINT);
    put_varint(out, v);
}

fn put_labels(out: &mut Vec<u8>, field: u32, labels: &[(&str, &str)]) {
    for (name, value) in labels {
        put_message(out, field, |l| {
            put_bytes(l, 1, name.as_bytes());
            put_bytes(l, 2, value.as_bytes());
        });
    }
}

/// A family message, delimited.
fn family(name: &str, help: &str, kind: u64, metrics: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut f = Vec::new();
    put_bytes(&mut f, 1, name.as_bytes());
    put_bytes(&mut f, 2, help.as_bytes());
    put_uint(&mut f, 3, kind);
    metrics(&mut f);
    let mut out = Vec::with_capacity(f.len() + 10);
    put_varint(&mut out, f.len() as u64);
    out.extend_from_slice(&f);
    out
}

/// A delimited `MetricFamily` of type HISTOGRAM holding native histograms.
pub fn histogram_family(name: &str, help: &str, metrics: &[NativeHistogram<'_>]) -> Vec<u8> {
    family(name, help, 4, |f| {
        for m in metrics {
            put_message(f, 4, |mm| {
                put_labels(mm, 1, &m.labels);
                put_message(mm, 7, |h| {
                    put_uint(h, 1, m.count);
                    put_double(h, 2, m.sum);
                    put_uint(h, 5, zigzag64(i64::from(m.schema)));
                    put_double(h, 6, m.zero_threshold);
                    put_uint(h, 7, m.zero_count);
                    for &(offset, length) in &m.positive_spans {
                        put_message(h, 12, |s| {
                            put_uint(s, 1, zigzag64(i64::from(offset)));
                            put_uint(s, 2, u64::from(length));
                        });
                    }
                    for &d in &m.positive_deltas {
                        put_uint(h, 13, zigzag64(d));
                    }
                });
            });
        }
    })
}

/// A delimited `MetricFamily` of type COUNTER with one unlabelled counter and its exemplar.
pub fn counter_family(
    name: &str,
    help: &str,
    value: f64,
    exemplar: Option<&ExemplarRef<'_>>,
) -> Vec<u8> {
    family(name, help, 0, |f| {
        put_message(f, 4, |m| {
            put_message(m, 3, |c| {
                put_double(c, 1, value);
                if let Some(e) = exemplar {
                    put_message(c, 2, |em| {
                        put_labels(em, 1, &e.labels);
                        put_double(em, 2, e.value);
                        put_message(em, 3, |ts| {
                            put_uint(ts, 1, e.timestamp_ms.div_euclid(1000) as u64);
                            put_uint(ts, 2, (e.timestamp_ms.rem_euclid(1000) * 1_000_000) as u64);
                        });
                    });
                }
            });
        });
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Reader;

    #[test]
    fn a_family_is_length_prefixed_and_names_its_fields() {
        let h = NativeHistogram {
            labels: vec![("path", "/a")],
            count: 3,
            sum: 1.5,
            schema: -1,
            positive_spans: vec![(-2, 2)],
            positive_deltas: vec![1, 1],
            ..Default::default()
        };
        let out = histogram_family("lat", "help", &[h]);
        let mut r = Reader::new(&out, 0);
        let n = r.varint().unwrap() as usize;
        assert_eq!(n, out.len() - r.offset());
        let mut f = Reader::new(&out[r.offset()..], r.offset());
        let mut fields = Vec::new();
        while !f.done() {
            let (field, wt) = f.tag().unwrap();
            fields.push(field);
            f.skip(wt).unwrap();
        }
        assert_eq!(fields, [1, 2, 3, 4]);
        let c = counter_family(
            "reqs",
            "help",
            2.0,
            Some(&ExemplarRef {
                labels: vec![("trace_id", "t")],
                value: 1.0,
                timestamp_ms: 1_500,
            }),
        );
        assert!(c.windows(1).count() > 20);
    }
}
