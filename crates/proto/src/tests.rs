//! Round trips through the generated types, and a cross-check of the generated
//! `prometheus.WriteRequest` against the hand-written remote-write codec.

use prost::Message;

use crate::remote_write::tests::{
    arb_histogram, custom_buckets_histogram, float_histogram, int_histogram, key, without_start,
};
use crate::remote_write::{
    self, BucketSpan, Exemplar, Histogram, HistogramCount, Label, Metadata, MetricType, ResetHint,
    Sample, TimeSeries,
};
use crate::thanos::{self, label_matcher, series_response};
use crate::{prometheus, prometheus_v2};

#[test]
fn series_request_round_trips() {
    let req = thanos::SeriesRequest {
        min_time: -5,
        max_time: i64::MAX,
        matchers: vec![
            thanos::LabelMatcher {
                r#type: label_matcher::Type::Eq as i32,
                name: "__name__".into(),
                value: "up".into(),
            },
            thanos::LabelMatcher {
                r#type: label_matcher::Type::Nre as i32,
                name: "job".into(),
                value: "node|prom".into(),
            },
        ],
        aggregates: vec![thanos::Aggr::Raw as i32, thanos::Aggr::Counter as i32],
        partial_response_strategy: thanos::PartialResponseStrategy::Abort as i32,
        skip_chunks: true,
        hints: Some(prost_types::Any {
            type_url: "type.googleapis.com/hintspb.SeriesRequestHints".into(),
            value: vec![1, 2, 3],
        }),
        query_hints: Some(thanos::QueryHints {
            step_millis: 30_000,
            func: Some(thanos::Func {
                name: "rate".into(),
            }),
            range: Some(thanos::Range { millis: 300_000 }),
            ..Default::default()
        }),
        without_replica_labels: vec!["replica".into()],
        limit: 10,
        response_batch_size: 64,
        ..Default::default()
    };
    let bytes = req.encode_to_vec();
    let back = thanos::SeriesRequest::decode(bytes.as_slice()).unwrap();
    assert_eq!(back, req);
    assert_eq!(
        back.matchers[1].r#type(),
        label_matcher::Type::Nre,
        "enum accessor"
    );
}

#[test]
fn series_request_field_numbers_are_thanos() {
    // min_time=1 (varint 7), skip_chunks=8 (true), limit=15 (3), without_replica_labels=14.
    let req = thanos::SeriesRequest {
        min_time: 7,
        skip_chunks: true,
        without_replica_labels: vec!["r".into()],
        limit: 3,
        ..Default::default()
    };
    assert_eq!(
        req.encode_to_vec(),
        vec![0x08, 7, 0x40, 1, 0x72, 1, b'r', 0x78, 3]
    );
}

#[test]
fn series_response_with_chunks_round_trips() {
    let resp = thanos::SeriesResponse {
        result: Some(series_response::Result::Series(thanos::Series {
            labels: vec![
                thanos::Label {
                    name: "__name__".into(),
                    value: "up".into(),
                },
                thanos::Label {
                    name: "tenant_id".into(),
                    value: "a".into(),
                },
            ],
            chunks: vec![thanos::AggrChunk {
                min_time: 1000,
                max_time: 2000,
                raw: Some(thanos::Chunk {
                    r#type: thanos::chunk::Encoding::Xor as i32,
                    data: bytes::Bytes::from_static(&[0, 1, 2, 3]),
                    hash: 0,
                }),
                ..Default::default()
            }],
        })),
    };
    let back = thanos::SeriesResponse::decode(resp.encode_to_vec().as_slice()).unwrap();
    assert_eq!(back, resp);
}

#[test]
fn thanos_write_request_round_trips() {
    let ts = prometheus::TimeSeries {
        labels: vec![
            prometheus::Label {
                name: "__name__".into(),
                value: "up".into(),
            },
            prometheus::Label {
                name: "job".into(),
                value: "node".into(),
            },
        ],
        samples: vec![
            prometheus::Sample {
                value: 1.0,
                timestamp: 1000,
            },
            prometheus::Sample {
                value: f64::from_bits(0x7ff0_0000_0000_0002),
                timestamp: 2000,
            },
        ],
        exemplars: vec![prometheus::Exemplar {
            labels: vec![prometheus::Label {
                name: "trace_id".into(),
                value: "abc".into(),
            }],
            value: 0.5,
            timestamp: 1500,
        }],
        histograms: vec![prometheus::Histogram {
            count: Some(prometheus::histogram::Count::CountInt(3)),
            sum: 4.5,
            schema: -2,
            zero_count: Some(prometheus::histogram::ZeroCount::ZeroCountInt(1)),
            positive_spans: vec![prometheus::BucketSpan {
                offset: -1,
                length: 2,
            }],
            positive_deltas: vec![1, -1],
            timestamp: 1000,
            ..Default::default()
        }],
    };
    let req = thanos::WriteRequest {
        timeseries: vec![ts.clone()],
        tenant: "team-a".into(),
        replica: 2,
        timeseries_tenant_data: vec![thanos::TimeSeriesTenantTuple {
            timeseries: vec![ts],
            tenant: "team-b".into(),
        }],
    };
    let bytes = req.encode_to_vec();
    let back = thanos::WriteRequest::decode(bytes.as_slice()).unwrap();
    // Compare through bytes: the stale NaN makes the structs unequal under PartialEq.
    assert_eq!(back.encode_to_vec(), bytes);
    assert_eq!(back.tenant, "team-a");
    assert_eq!(back.replica, 2);
    assert_eq!(
        back.timeseries[0].samples[1].value.to_bits(),
        0x7ff0_0000_0000_0002
    );
    assert_eq!(back.timeseries_tenant_data[0].tenant, "team-b");
    assert_eq!(
        back.timeseries_tenant_data[0].timeseries[0].labels[1].value,
        "node"
    );
}

#[test]
fn info_response_round_trips() {
    use crate::thanos::info;
    let resp = info::InfoResponse {
        label_sets: vec![thanos::ZLabelSet {
            labels: vec![thanos::Label {
                name: "tenant_id".into(),
                value: "a".into(),
            }],
        }],
        component_type: "receive".into(),
        store: Some(info::StoreInfo {
            min_time: 0,
            max_time: i64::MAX,
            supports_without_replica_labels: true,
            ..Default::default()
        }),
        ..Default::default()
    };
    let back = info::InfoResponse::decode(resp.encode_to_vec().as_slice()).unwrap();
    assert_eq!(back, resp);
}

fn label<'a>(name: &'a str, value: &'a str) -> Label<'a> {
    Label { name, value }
}

/// The hand-written encoder and the generated decoder agree on `prometheus.WriteRequest`, and so
/// do the generated encoder and the hand-written decoder.
#[test]
fn remote_write_v1_codecs_agree() {
    let req = remote_write::WriteRequest {
        timeseries: vec![
            TimeSeries {
                labels: vec![label("__name__", "up"), label("job", "node")],
                samples: vec![
                    Sample {
                        value: 1.0,
                        timestamp: 1000,
                    },
                    Sample {
                        value: -0.0,
                        timestamp: -2000,
                    },
                    Sample {
                        value: f64::INFINITY,
                        timestamp: 0,
                    },
                ],
                exemplars: vec![Exemplar {
                    labels: vec![label("trace_id", "abc")],
                    value: 2.5,
                    timestamp: 1500,
                }],
                ..Default::default()
            },
            TimeSeries {
                labels: vec![label("__name__", "ünïcode_metric"), label("a", "")],
                samples: vec![Sample {
                    value: 3.25,
                    timestamp: i64::MAX,
                }],
                ..Default::default()
            },
        ],
        metadata: vec![Metadata {
            metric_type: MetricType::Counter,
            metric_family_name: "http_requests_total",
            help: "Requests.",
            unit: "requests",
        }],
    };
    let hand = remote_write::encode_v1(&req);
    let gen = prometheus::WriteRequest::decode(hand.as_slice()).unwrap();

    assert_eq!(gen.timeseries.len(), req.timeseries.len());
    for (g, h) in gen.timeseries.iter().zip(&req.timeseries) {
        let g_labels: Vec<(&str, &str)> = g
            .labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        let h_labels: Vec<(&str, &str)> = h.labels.iter().map(|l| (l.name, l.value)).collect();
        assert_eq!(g_labels, h_labels);
        let g_samples: Vec<(i64, u64)> = g
            .samples
            .iter()
            .map(|s| (s.timestamp, s.value.to_bits()))
            .collect();
        let h_samples: Vec<(i64, u64)> = h
            .samples
            .iter()
            .map(|s| (s.timestamp, s.value.to_bits()))
            .collect();
        assert_eq!(g_samples, h_samples);
        assert_eq!(g.exemplars.len(), h.exemplars.len());
        for (ge, he) in g.exemplars.iter().zip(&h.exemplars) {
            assert_eq!(ge.value, he.value);
            assert_eq!(ge.timestamp, he.timestamp);
            assert_eq!(ge.labels[0].name, he.labels[0].name);
            assert_eq!(ge.labels[0].value, he.labels[0].value);
        }
        assert!(g.histograms.is_empty());
    }
    assert_eq!(gen.metadata.len(), 1);
    let md = &gen.metadata[0];
    assert_eq!(
        md.r#type(),
        prometheus::metric_metadata::MetricType::Counter
    );
    assert_eq!(md.metric_family_name, "http_requests_total");
    assert_eq!(md.help, "Requests.");
    assert_eq!(md.unit, "requests");

    // And back: the generated encoding decodes with the hand-written decoder to the same request
    // (compared with f64 `==`: prost writes -0.0 as an absent field, see below).
    let gen_bytes = gen.encode_to_vec();
    let hand_again = remote_write::decode_v1(&gen_bytes).unwrap();
    assert_eq!(hand_again, req);
}

/// prost treats a proto3 double equal to 0.0 as the default and leaves it out, so -0.0 arrives
/// as +0.0; Go's protobuf (and `remote_write::encode_v1`) compare bits and keep the sign. A
/// forwarder built on the generated types loses the sign of zero; nothing else differs.
#[test]
fn prost_writes_negative_zero_as_absent() {
    let s = prometheus::Sample {
        value: -0.0,
        timestamp: 1,
    };
    assert_eq!(s.encode_to_vec(), vec![0x10, 1]);
    let hand = remote_write::encode_v1(&remote_write::WriteRequest {
        timeseries: vec![TimeSeries {
            samples: vec![Sample {
                value: -0.0,
                timestamp: 1,
            }],
            ..Default::default()
        }],
        ..Default::default()
    });
    let gen = prometheus::WriteRequest::decode(hand.as_slice()).unwrap();
    assert_eq!(
        gen.timeseries[0].samples[0].value.to_bits(),
        (-0.0f64).to_bits()
    );
}

#[test]
fn thanos_write_request_encodes_like_prost() {
    use crate::remote_write::{encode_thanos_write, Label, Sample, TimeSeries};
    use prost::Message;
    let series = vec![
        TimeSeries {
            labels: vec![
                Label {
                    name: "__name__",
                    value: "up",
                },
                Label {
                    name: "job",
                    value: "a",
                },
            ],
            samples: vec![
                Sample {
                    value: 1.0,
                    timestamp: 1000,
                },
                Sample {
                    value: 0.0,
                    timestamp: 2000,
                },
            ],
            ..Default::default()
        },
        TimeSeries {
            labels: vec![Label {
                name: "__name__",
                value: "x",
            }],
            samples: vec![Sample {
                value: -2.5,
                timestamp: -5,
            }],
            ..Default::default()
        },
    ];
    let bytes = encode_thanos_write("team-a", 2, &series);
    let got = thanos::WriteRequest::decode(bytes.as_slice()).unwrap();
    assert_eq!(got.tenant, "team-a");
    assert_eq!(got.replica, 2);
    assert_eq!(got.timeseries.len(), 2);
    assert_eq!(got.timeseries[0].labels[1].name, "job");
    assert_eq!(got.timeseries[0].samples[1].timestamp, 2000);
    assert_eq!(got.timeseries[1].samples[0].value, -2.5);
    assert_eq!(got.timeseries[1].samples[0].timestamp, -5);
    let want = thanos::WriteRequest {
        timeseries: got.timeseries.clone(),
        tenant: "team-a".into(),
        replica: 2,
        timeseries_tenant_data: vec![],
    };
    assert_eq!(want.encode_to_vec(), bytes);
}

#[test]
fn thanos_write_request_decodes_without_copies() {
    use crate::remote_write::{
        decode_thanos_write, encode_thanos_write, Label, Sample, TimeSeries,
    };
    use prost::Message;
    let series = vec![TimeSeries {
        labels: vec![Label {
            name: "__name__",
            value: "up",
        }],
        samples: vec![Sample {
            value: 3.0,
            timestamp: 7,
        }],
        ..Default::default()
    }];
    let bytes = encode_thanos_write("t1", 3, &series);
    let got = decode_thanos_write(&bytes).unwrap();
    assert_eq!(got.replica, 3);
    assert_eq!(got.tenants.len(), 1);
    assert_eq!(got.tenants[0].0, "t1");
    assert_eq!(got.tenants[0].1.timeseries, series);

    // Several tenants in timeseriesTenantData (newer Thanos senders), as prost encodes them.
    let prom = |name: &str| prometheus::TimeSeries {
        labels: vec![prometheus::Label {
            name: "__name__".into(),
            value: name.into(),
        }],
        samples: vec![prometheus::Sample {
            value: 1.0,
            timestamp: 5,
        }],
        ..Default::default()
    };
    let multi = thanos::WriteRequest {
        timeseries: vec![],
        tenant: String::new(),
        replica: 1,
        timeseries_tenant_data: vec![
            thanos::TimeSeriesTenantTuple {
                timeseries: vec![prom("a")],
                tenant: "x".into(),
            },
            thanos::TimeSeriesTenantTuple {
                timeseries: vec![prom("b"), prom("c")],
                tenant: "y".into(),
            },
        ],
    }
    .encode_to_vec();
    let got = decode_thanos_write(&multi).unwrap();
    let shape: Vec<(&str, usize)> = got
        .tenants
        .iter()
        .map(|(t, r)| (*t, r.timeseries.len()))
        .collect();
    assert_eq!(shape, vec![("x", 1), ("y", 2)]);
    assert_eq!(got.tenants[1].1.timeseries[1].labels[0].value, "c");
}

#[test]
fn forwarding_raw_series_bytes_equals_re_encoding() {
    use crate::remote_write::{
        decode_v1, encode_thanos_write, encode_thanos_write_raw, encode_v1, series_bytes_v1, Label,
        Sample, TimeSeries, WriteRequest,
    };
    let req = WriteRequest {
        timeseries: (0..5)
            .map(|i| TimeSeries {
                labels: vec![Label {
                    name: "__name__",
                    value: if i % 2 == 0 { "a" } else { "bb" },
                }],
                samples: vec![Sample {
                    value: i as f64,
                    timestamp: 1000 * i,
                }],
                ..Default::default()
            })
            .collect(),
        metadata: vec![],
    };
    let body = encode_v1(&req);
    let decoded = decode_v1(&body).unwrap();
    let raw = series_bytes_v1(&body).unwrap();
    assert_eq!(raw.len(), decoded.timeseries.len());
    let pick = [4usize, 1, 2];
    let a = encode_thanos_write("t", 2, pick.iter().map(|&i| &decoded.timeseries[i]));
    let b = encode_thanos_write_raw("t", 2, pick.iter().map(|&i| raw[i]));
    assert_eq!(a, b);
    assert_eq!(b.capacity(), b.len(), "sized exactly up front");
}

#[test]
fn varint_len_is_what_put_varint_writes() {
    for x in [
        0,
        1,
        127,
        128,
        16_383,
        16_384,
        u64::from(u32::MAX),
        u64::MAX >> 1,
        u64::MAX,
    ] {
        let mut out = Vec::new();
        crate::wire::put_varint(&mut out, x);
        assert_eq!(crate::wire::varint_len(x), out.len(), "{x}");
    }
}

/// Conversions between `remote_write::Histogram` and a generated `Histogram`: 1.0's and 2.0's
/// have the same fields but for the first list (fields the generated type has beyond 1.0's);
/// the second lists ours the generated type lacks.
macro_rules! prost_histogram_conversions {
    ($m:ident, $to:ident, $from:ident, [$($extra:ident),*], [$($absent:ident),*]) => {
        fn $to(h: &Histogram) -> $m::Histogram {
            use $m::histogram::{Count, ZeroCount};
            let spans = |s: &[BucketSpan]| {
                s.iter()
                    .map(|s| $m::BucketSpan {
                        offset: s.offset,
                        length: s.length,
                    })
                    .collect()
            };
            $m::Histogram {
                count: Some(match h.count {
                    HistogramCount::Int(n) => Count::CountInt(n),
                    HistogramCount::Float(f) => Count::CountFloat(f),
                }),
                sum: h.sum,
                schema: h.schema,
                zero_threshold: h.zero_threshold,
                zero_count: Some(match h.zero_count {
                    HistogramCount::Int(n) => ZeroCount::ZeroCountInt(n),
                    HistogramCount::Float(f) => ZeroCount::ZeroCountFloat(f),
                }),
                negative_spans: spans(&h.negative_spans),
                negative_deltas: h.negative_deltas.clone(),
                negative_counts: h.negative_counts.clone(),
                positive_spans: spans(&h.positive_spans),
                positive_deltas: h.positive_deltas.clone(),
                positive_counts: h.positive_counts.clone(),
                reset_hint: hint_to_wire(h.reset_hint),
                timestamp: h.timestamp,
                custom_values: h.custom_values.clone(),
                $($extra: h.$extra,)*
            }
        }

        fn $from(p: &$m::Histogram) -> Histogram {
            use $m::histogram::{Count, ZeroCount};
            let spans = |s: &[$m::BucketSpan]| {
                s.iter()
                    .map(|s| BucketSpan {
                        offset: s.offset,
                        length: s.length,
                    })
                    .collect()
            };
            Histogram {
                count: match p.count {
                    None => HistogramCount::Int(0),
                    Some(Count::CountInt(n)) => HistogramCount::Int(n),
                    Some(Count::CountFloat(f)) => HistogramCount::Float(f),
                },
                sum: p.sum,
                schema: p.schema,
                zero_threshold: p.zero_threshold,
                zero_count: match p.zero_count {
                    None => HistogramCount::Int(0),
                    Some(ZeroCount::ZeroCountInt(n)) => HistogramCount::Int(n),
                    Some(ZeroCount::ZeroCountFloat(f)) => HistogramCount::Float(f),
                },
                negative_spans: spans(&p.negative_spans),
                negative_deltas: p.negative_deltas.clone(),
                negative_counts: p.negative_counts.clone(),
                positive_spans: spans(&p.positive_spans),
                positive_deltas: p.positive_deltas.clone(),
                positive_counts: p.positive_counts.clone(),
                reset_hint: hint_from_wire(p.reset_hint),
                timestamp: p.timestamp,
                custom_values: p.custom_values.clone(),
                $($extra: p.$extra,)*
                $($absent: Default::default(),)*
            }
        }
    };
}

fn hint_to_wire(h: ResetHint) -> i32 {
    match h {
        ResetHint::Unknown => 0,
        ResetHint::Yes => 1,
        ResetHint::No => 2,
        ResetHint::Gauge => 3,
    }
}

fn hint_from_wire(v: i32) -> ResetHint {
    match v {
        1 => ResetHint::Yes,
        2 => ResetHint::No,
        3 => ResetHint::Gauge,
        _ => ResetHint::Unknown,
    }
}

prost_histogram_conversions!(
    prometheus,
    to_prost_v1,
    from_prost_v1,
    [],
    [start_timestamp]
);
prost_histogram_conversions!(
    prometheus_v2,
    to_prost_v2,
    from_prost_v2,
    [start_timestamp],
    []
);

/// prost leaves a non-repeated double equal to 0.0 out, so -0.0 comes back +0.0 (see
/// `prost_writes_negative_zero_as_absent`): what our decoder sees of a histogram prost encoded.
fn through_prost(mut h: Histogram) -> Histogram {
    for f in [&mut h.sum, &mut h.zero_threshold] {
        if *f == 0.0 {
            *f = 0.0;
        }
    }
    h
}

fn histogram_series(hs: &[Histogram]) -> TimeSeries<'static> {
    TimeSeries {
        labels: vec![label("__name__", "latency_seconds"), label("job", "api")],
        histograms: hs.to_vec(),
        ..Default::default()
    }
}

/// Checks both directions for one request's histograms, 1.0: ours decoded by prost, prost's
/// decoded by ours, field by field.
fn v1_histograms_agree(hs: &[Histogram]) {
    let req = remote_write::WriteRequest {
        timeseries: vec![histogram_series(hs)],
        metadata: vec![],
    };
    let ours = remote_write::encode_v1(&req);
    let gen = prometheus::WriteRequest::decode(ours.as_slice()).unwrap();
    let got: Vec<Vec<u64>> = gen.timeseries[0]
        .histograms
        .iter()
        .map(|p| key(&from_prost_v1(p)))
        .collect();
    let want: Vec<Vec<u64>> = hs.iter().map(|h| key(&without_start(h.clone()))).collect();
    assert_eq!(got, want, "ours -> prost (1.0)");

    let theirs = prometheus::WriteRequest {
        timeseries: vec![prometheus::TimeSeries {
            labels: gen.timeseries[0].labels.clone(),
            histograms: hs.iter().map(to_prost_v1).collect(),
            ..Default::default()
        }],
        metadata: vec![],
    }
    .encode_to_vec();
    let back = remote_write::decode_v1(&theirs).unwrap();
    let got: Vec<Vec<u64>> = back.timeseries[0].histograms.iter().map(key).collect();
    let want: Vec<Vec<u64>> = hs
        .iter()
        .map(|h| key(&through_prost(without_start(h.clone()))))
        .collect();
    assert_eq!(got, want, "prost -> ours (1.0)");
}

/// [`v1_histograms_agree`] for 2.0 (`start_timestamp` included).
fn v2_histograms_agree(hs: &[Histogram]) {
    let req = remote_write::WriteRequest {
        timeseries: vec![histogram_series(hs)],
        metadata: vec![],
    };
    let ours = remote_write::encode_v2(&req);
    let gen = prometheus_v2::Request::decode(ours.as_slice()).unwrap();
    let got: Vec<Vec<u64>> = gen.timeseries[0]
        .histograms
        .iter()
        .map(|p| key(&from_prost_v2(p)))
        .collect();
    let want: Vec<Vec<u64>> = hs.iter().map(key).collect();
    assert_eq!(got, want, "ours -> prost (2.0)");
    let names: Vec<&str> = gen.timeseries[0]
        .labels_refs
        .iter()
        .map(|&r| gen.symbols[r as usize].as_str())
        .collect();
    assert_eq!(names, ["__name__", "latency_seconds", "job", "api"]);

    let theirs = prometheus_v2::Request {
        symbols: gen.symbols.clone(),
        timeseries: vec![prometheus_v2::TimeSeries {
            labels_refs: gen.timeseries[0].labels_refs.clone(),
            histograms: hs.iter().map(to_prost_v2).collect(),
            ..Default::default()
        }],
    }
    .encode_to_vec();
    let back = remote_write::decode_v2(&theirs).unwrap();
    assert_eq!(back.timeseries[0].labels, req.timeseries[0].labels);
    let got: Vec<Vec<u64>> = back.timeseries[0].histograms.iter().map(key).collect();
    let want: Vec<Vec<u64>> = hs.iter().map(|h| key(&through_prost(h.clone()))).collect();
    assert_eq!(got, want, "prost -> ours (2.0)");
}

#[test]
fn remote_write_histograms_agree_with_prost() {
    let hs = [
        int_histogram(),
        float_histogram(),
        custom_buckets_histogram(),
        Histogram::default(),
    ];
    v1_histograms_agree(&hs);
    v2_histograms_agree(&hs);
}

/// Without a -0.0 in a non-repeated double, our encoding is byte for byte prost's (fields in
/// number order, repeated numbers packed, both oneofs written).
#[test]
fn remote_write_histograms_encode_like_prost() {
    let mut hs = vec![int_histogram(), custom_buckets_histogram()];
    let mut f = float_histogram();
    f.sum = 3.0;
    hs.push(f);
    let req = remote_write::WriteRequest {
        timeseries: vec![histogram_series(&hs)],
        metadata: vec![],
    };
    let ours = remote_write::encode_v1(&req);
    let gen = prometheus::WriteRequest::decode(ours.as_slice()).unwrap();
    assert_eq!(gen.encode_to_vec(), ours);
    let ours = remote_write::encode_v2(&req);
    let gen = prometheus_v2::Request::decode(ours.as_slice()).unwrap();
    assert_eq!(gen.encode_to_vec(), ours);
}

proptest::proptest! {
    #[test]
    fn remote_write_histograms_agree_with_prost_for_any(
        hs in proptest::collection::vec(arb_histogram(), 0..4),
    ) {
        v1_histograms_agree(&hs);
        v2_histograms_agree(&hs);
    }
}

#[test]
fn a_series_reserves_labels_its_own_bytes_can_fill() {
    use crate::remote_write::{decode_v1, encode_v1, WriteRequest};
    fn series(labels: &[(String, String)]) -> TimeSeries<'_> {
        TimeSeries {
            labels: labels.iter().map(|(n, v)| label(n, v)).collect(),
            ..TimeSeries::default()
        }
    }
    let many: Vec<(String, String)> = (0..100)
        .map(|i| (format!("l{i:03}"), "v".to_string()))
        .collect();
    let req = WriteRequest {
        timeseries: vec![
            series(&many),
            series(&many),
            series(&[]),
            series(&many[..3]),
        ],
        ..WriteRequest::default()
    };
    let body = encode_v1(&req);
    let got = decode_v1(&body).unwrap();
    assert_eq!(got, req);
    // The second series is sized from the first; the empty one after it, whose two bytes
    // cannot hold a label, reserves none.
    assert_eq!(got.timeseries[1].labels.capacity(), 100);
    assert_eq!(got.timeseries[2].labels.capacity(), 0);
}
