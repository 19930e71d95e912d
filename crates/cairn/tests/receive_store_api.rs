//! The receiver serves Thanos' StoreAPI on its gRPC port: Info advertises each tenant's external
//! labels, Series returns what was written, with the external labels added.

mod common;

use common::{http, snappy, Cairn};
use proto::remote_write::{encode_v1, Label, Sample, TimeSeries, WriteRequest};
use proto::thanos::info::info_client::InfoClient;
use proto::thanos::info::InfoRequest;
use proto::thanos::store_client::StoreClient;
use proto::thanos::{label_matcher, LabelMatcher, SeriesRequest};

#[test]
fn store_api_serves_every_tenant_with_external_labels() {
    let dir = tempfile::tempdir().unwrap();
    let cairn = Cairn::receive(dir.path(), &["--label=replica=\"r1\""]);
    for (tenant, value) in [("team-a", 1.0), ("team-b", 2.0)] {
        let ts = TimeSeries {
            labels: vec![
                Label {
                    name: "__name__",
                    value: "up",
                },
                Label {
                    name: "job",
                    value: "node",
                },
            ],
            samples: vec![
                Sample {
                    value,
                    timestamp: 1_700_000_000_000,
                },
                Sample {
                    value,
                    timestamp: 1_700_000_015_000,
                },
            ],
            ..Default::default()
        };
        let body = snappy(&encode_v1(&WriteRequest {
            timeseries: vec![ts],
            metadata: vec![],
        }));
        let r = http(
            cairn.remote_write,
            "POST",
            "/api/v1/receive",
            &[("THANOS-TENANT", tenant)],
            &body,
        )
        .unwrap();
        assert_eq!(r.status, 204, "{}", r.body);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", cairn.grpc))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let info = InfoClient::new(channel.clone())
            .info(InfoRequest::default())
            .await
            .unwrap()
            .into_inner();
        let mut sets: Vec<String> = info
            .label_sets
            .iter()
            .map(|s| {
                s.labels
                    .iter()
                    .map(|l| format!("{}={}", l.name, l.value))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect();
        sets.sort();
        assert_eq!(
            sets,
            vec!["replica=r1,tenant_id=team-a", "replica=r1,tenant_id=team-b"]
        );

        let req = SeriesRequest {
            min_time: 0,
            max_time: i64::MAX,
            matchers: vec![LabelMatcher {
                r#type: label_matcher::Type::Eq as i32,
                name: "__name__".into(),
                value: "up".into(),
            }],
            ..Default::default()
        };
        let mut stream = StoreClient::new(channel)
            .series(req)
            .await
            .unwrap()
            .into_inner();
        let mut got = Vec::new();
        while let Some(msg) = stream.message().await.unwrap() {
            if let Some(proto::thanos::series_response::Result::Series(s)) = msg.result {
                let labels: Vec<String> = s
                    .labels
                    .iter()
                    .map(|l| format!("{}={}", l.name, l.value))
                    .collect();
                let samples: usize = s
                    .chunks
                    .iter()
                    .map(|c| {
                        tsdb::chunkenc::XorIterator::new(&c.raw.as_ref().unwrap().data).count()
                    })
                    .sum();
                got.push((labels.join(","), samples));
            }
        }
        assert_eq!(
            got,
            vec![
                (
                    "__name__=up,job=node,replica=r1,tenant_id=team-a".to_string(),
                    2
                ),
                (
                    "__name__=up,job=node,replica=r1,tenant_id=team-b".to_string(),
                    2
                ),
            ]
        );
    });
}
