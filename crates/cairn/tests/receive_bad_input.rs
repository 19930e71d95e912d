//! Every malformed remote-write request gets its status code and a message naming the problem;
//! the server stays up and what it accepted before is intact after a restart.

mod common;

use std::time::Duration;

use common::{http, snappy, Cairn};
use proto::remote_write::{encode_v1, encode_v2, Label, Sample, TimeSeries, WriteRequest};
use tsdb::db::{Db, DbOptions};
use tsdb::matcher::Matcher;
use tsdb::querier::Querier;

const T0: i64 = 1_700_000_000_000;

fn series<'a>(labels: &[(&'a str, &'a str)], samples: &[(i64, f64)]) -> TimeSeries<'a> {
    TimeSeries {
        labels: labels
            .iter()
            .map(|&(name, value)| Label { name, value })
            .collect(),
        samples: samples
            .iter()
            .map(|&(t, v)| Sample {
                value: v,
                timestamp: t,
            })
            .collect(),
        ..Default::default()
    }
}

fn v1(ts: Vec<TimeSeries<'_>>) -> Vec<u8> {
    snappy(&encode_v1(&WriteRequest {
        timeseries: ts,
        metadata: vec![],
    }))
}

const V1_HEADERS: &[(&str, &str)] = &[
    ("Content-Type", "application/x-protobuf"),
    ("Content-Encoding", "snappy"),
    ("X-Prometheus-Remote-Write-Version", "0.1.0"),
];

#[test]
fn bad_input_gets_clear_errors_and_good_data_survives() {
    let dir = tempfile::tempdir().unwrap();
    let cairn = Cairn::receive(
        dir.path(),
        &[
            "--receive.max-request-series=50",
            "--receive.max-request-bytes=100000",
        ],
    );
    let post = |body: &[u8], headers: &[(&str, &str)]| {
        http(cairn.remote_write, "POST", "/api/v1/receive", headers, body).unwrap()
    };

    // Good data first.
    let good = v1(vec![series(
        &[("__name__", "up"), ("job", "a")],
        &[(T0, 1.0), (T0 + 1000, 1.0)],
    )]);
    let r = post(&good, V1_HEADERS);
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(
        r.header("X-Prometheus-Remote-Write-Samples-Written"),
        Some("2")
    );

    let big_labels: Vec<String> = (0..60).map(|i| format!("s{i}")).collect();
    let too_many: Vec<TimeSeries<'_>> = big_labels
        .iter()
        .map(|v| series(&[("__name__", "m"), ("i", v)], &[(T0, 1.0)]))
        .collect();
    let v2_ct = "application/x-protobuf;proto=io.prometheus.write.v2.Request";
    let v2_good = snappy(&encode_v2(&WriteRequest {
        timeseries: vec![series(
            &[("__name__", "v2_metric"), ("job", "b")],
            &[(T0, 7.0)],
        )],
        metadata: vec![],
    }));

    type Case<'a> = (&'a str, Vec<u8>, Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            "not snappy",
            b"\xff\xff\xff\xff garbage".to_vec(),
            V1_HEADERS.to_vec(),
            400,
            "invalid snappy",
        ),
        (
            "not protobuf",
            snappy(b"\x0a\xff\xff\xff\xff\x0f"),
            V1_HEADERS.to_vec(),
            400,
            "invalid remote-write protobuf",
        ),
        (
            "missing name",
            v1(vec![series(&[("job", "x")], &[(T0, 1.0)])]),
            V1_HEADERS.to_vec(),
            400,
            r#"series {job="x"}: missing metric name"#,
        ),
        (
            "empty name",
            v1(vec![series(
                &[("__name__", ""), ("job", "x")],
                &[(T0, 1.0)],
            )]),
            V1_HEADERS.to_vec(),
            400,
            r#"label "__name__" has an empty value"#,
        ),
        (
            "bad label name",
            v1(vec![series(
                &[("__name__", "m"), ("a-b", "x")],
                &[(T0, 1.0)],
            )]),
            V1_HEADERS.to_vec(),
            400,
            r#"invalid label name "a-b""#,
        ),
        (
            "duplicate label",
            v1(vec![series(
                &[("__name__", "m"), ("a", "x"), ("a", "y")],
                &[(T0, 1.0)],
            )]),
            V1_HEADERS.to_vec(),
            400,
            r#"duplicate label name "a""#,
        ),
        (
            "unsorted labels",
            v1(vec![series(&[("b", "1"), ("__name__", "m")], &[(T0, 1.0)])]),
            V1_HEADERS.to_vec(),
            400,
            "not sorted",
        ),
        (
            "empty value",
            v1(vec![series(&[("__name__", "m"), ("a", "")], &[(T0, 1.0)])]),
            V1_HEADERS.to_vec(),
            400,
            r#"label "a" has an empty value"#,
        ),
        (
            "out of order",
            v1(vec![series(
                &[("__name__", "up"), ("job", "a")],
                &[(T0 + 500, 1.0)],
            )]),
            V1_HEADERS.to_vec(),
            409,
            "out of order",
        ),
        (
            "duplicate timestamp",
            v1(vec![series(
                &[("__name__", "up"), ("job", "a")],
                &[(T0 + 1000, 2.0)],
            )]),
            V1_HEADERS.to_vec(),
            409,
            "duplicate sample for timestamp",
        ),
        (
            "too old",
            v1(vec![series(
                &[("__name__", "new_series")],
                &[(T0 - 3 * 3600 * 1000, 1.0)],
            )]),
            V1_HEADERS.to_vec(),
            409,
            "out of bounds",
        ),
        (
            "too many series",
            v1(too_many),
            V1_HEADERS.to_vec(),
            413,
            "60 series, the limit is 50",
        ),
        (
            "too many bytes",
            vec![0u8; 200_000],
            V1_HEADERS.to_vec(),
            413,
            "",
        ),
        (
            "unsupported content type",
            good.clone(),
            vec![
                ("Content-Type", "application/json"),
                ("Content-Encoding", "snappy"),
            ],
            415,
            "unsupported Content-Type",
        ),
        (
            "unsupported proto",
            good.clone(),
            vec![
                ("Content-Type", "application/x-protobuf;proto=foo.Bar"),
                ("Content-Encoding", "snappy"),
            ],
            415,
            "foo.Bar",
        ),
        (
            "unsupported encoding",
            good.clone(),
            vec![
                ("Content-Type", "application/x-protobuf"),
                ("Content-Encoding", "gzip"),
            ],
            415,
            "Content-Encoding",
        ),
        (
            "bad tenant",
            good.clone(),
            vec![
                ("Content-Type", "application/x-protobuf"),
                ("Content-Encoding", "snappy"),
                ("THANOS-TENANT", "../etc"),
            ],
            400,
            "invalid tenant name",
        ),
    ];
    for (what, body, headers, status, message) in &cases {
        let r = post(body, headers);
        assert_eq!(r.status, *status, "{what}: {}", r.body);
        assert!(
            r.body.contains(message),
            "{what}: body {:?} lacks {message:?}",
            r.body
        );
    }

    // A partially bad request stores the good series and says so.
    let mixed = v1(vec![
        series(&[("__name__", "up"), ("job", "a")], &[(T0 + 2000, 1.0)]),
        series(&[("job", "nameless")], &[(T0, 1.0)]),
    ]);
    let r = post(&mixed, V1_HEADERS);
    assert_eq!(r.status, 400);
    assert!(r.body.contains("accepted 1 of 2 samples"), "{}", r.body);

    // Remote write 2.0 is accepted, with the written-count headers.
    let r = post(
        &v2_good,
        &[
            ("Content-Type", v2_ct),
            ("Content-Encoding", "snappy"),
            ("X-Prometheus-Remote-Write-Version", "2.0.0"),
        ],
    );
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(
        r.header("X-Prometheus-Remote-Write-Samples-Written"),
        Some("1")
    );

    // The server is still up; rejections are counted by reason.
    assert_eq!(common::get(cairn.http, "/-/healthy").unwrap().status, 200);
    let metrics = common::get(cairn.http, "/metrics").unwrap().body;
    assert!(metrics.contains(r#"cairn_receive_samples_rejected_total{tenant="default-tenant",reason="invalid_labels"}"#), "{metrics}");
    assert!(
        metrics.contains("thanos_receive_http_request_duration_seconds_bucket"),
        "{metrics}"
    );

    // A clean stop flushes; the accepted samples are all there, and nothing else.
    let tsdb_path = cairn.tsdb_path.clone();
    let mut cairn = cairn;
    assert!(cairn.proc.terminate(Duration::from_secs(30)).success());
    let (db, _) = Db::open(
        &tsdb_path.join("default-tenant"),
        DbOptions {
            retention: None,
            ..Default::default()
        },
    )
    .unwrap();
    let q = db.querier(i64::MIN, i64::MAX);
    let all = q
        .select(
            &[Matcher::regex("__name__", ".+").unwrap()],
            i64::MIN,
            i64::MAX,
        )
        .unwrap();
    let got: Vec<(String, Vec<(i64, f64)>)> = all
        .iter()
        .map(|s| {
            (
                s.labels.to_string(),
                s.samples(i64::MIN, i64::MAX)
                    .iter()
                    .map(|x| (x.t, x.v))
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                r#"{__name__="up", job="a"}"#.to_string(),
                vec![(T0, 1.0), (T0 + 1000, 1.0), (T0 + 2000, 1.0)]
            ),
            (
                r#"{__name__="v2_metric", job="b"}"#.to_string(),
                vec![(T0, 7.0)]
            ),
        ]
    );
    let meta = &db.blocks()[0].meta().thanos.clone().unwrap();
    assert_eq!(meta.labels["tenant_id"], "default-tenant");
    assert_eq!(meta.source, "receive");
}
