//! The StoreAPI end to end: two tenant TSDBs (blocks and head) behind a tonic server on
//! 127.0.0.1, read with the generated tonic clients; chunks are decoded with the TSDB's own XOR
//! iterator and compared sample for sample with what was written.

use std::collections::BTreeMap;
use std::sync::Arc;

use proto::thanos::info::info_client::InfoClient;
use proto::thanos::info::InfoRequest;
use proto::thanos::store_client::StoreClient;
use proto::thanos::{
    label_matcher, series_response, AggrChunk, LabelMatcher, LabelNamesRequest, LabelValuesRequest,
    SeriesRequest,
};
use store::{ExternalLabels, TsdbStore};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tsdb::chunkenc::XorIterator;
use tsdb::db::{Db, DbOptions};
use tsdb::Labels;

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;

type LabelPairs = Vec<(String, String)>;
/// Samples as (timestamp, value bits), so NaNs compare exactly.
type Samples = Vec<(i64, u64)>;

fn pairs(p: &[(&str, &str)]) -> LabelPairs {
    let mut v: LabelPairs = p
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    v.sort();
    v
}

fn ext(p: &[(&str, &str)]) -> ExternalLabels {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn value(series: usize, t: i64) -> f64 {
    if t == 90 * MIN {
        return f64::from_bits(tsdb::STALE_NAN_BITS);
    }
    (t as f64 / 7_000.0).sin() * 100.0 + series as f64
}

/// A TSDB and the samples written to it, by series labels (without external labels).
struct Tenant {
    _dir: TempDir,
    db: Arc<Db>,
    written: BTreeMap<LabelPairs, Samples>,
}

impl Tenant {
    fn open() -> Tenant {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = Db::open(
            dir.path(),
            DbOptions {
                retention: None,
                ..Default::default()
            },
        )
        .unwrap();
        Tenant {
            _dir: dir,
            db: Arc::new(db),
            written: BTreeMap::new(),
        }
    }

    /// Appends one sample per minute in [from, to) to each series, in time order.
    fn write(&mut self, series: &[&[(&str, &str)]], from: i64, to: i64) {
        let mut app = self.db.appender();
        let mut t = from;
        while t < to {
            for (i, s) in series.iter().enumerate() {
                let v = value(i, t);
                app.append(&Labels::from_pairs(s.iter().copied()), t, v)
                    .unwrap();
                self.written
                    .entry(pairs(s))
                    .or_default()
                    .push((t, v.to_bits()));
            }
            t += MIN;
        }
        app.commit().unwrap();
    }
}

const UP_I1: &[(&str, &str)] = &[("__name__", "up"), ("job", "node"), ("instance", "i1")];
const REQS: &[(&str, &str)] = &[
    ("__name__", "http_requests_total"),
    ("job", "api"),
    ("code", "200"),
];
const UP_I2: &[(&str, &str)] = &[("__name__", "up"), ("job", "node"), ("instance", "i2")];

/// Tenant a: two series, three hours in blocks and one in the head. Tenant b: one series, head
/// only, from 3 h to 4 h.
fn two_tenants() -> (Tenant, Tenant) {
    let mut a = Tenant::open();
    a.write(&[UP_I1, REQS], 0, 3 * HOUR);
    a.db.flush().unwrap();
    assert_eq!(a.db.blocks().len(), 2, "blocks [0, 2h) and [2h, 3h)");
    a.write(&[UP_I1, REQS], 3 * HOUR, 4 * HOUR);
    let mut b = Tenant::open();
    b.write(&[UP_I2], 3 * HOUR, 4 * HOUR);
    (a, b)
}

fn ext_a() -> ExternalLabels {
    ext(&[("replica", "r1"), ("tenant_id", "a")])
}

fn ext_b() -> ExternalLabels {
    ext(&[("replica", "r1"), ("tenant_id", "b")])
}

struct Server {
    store: StoreClient<Channel>,
    info: InfoClient<Channel>,
    _stop: oneshot::Sender<()>,
}

async fn serve(tsdbs: Vec<(ExternalLabels, Arc<Db>)>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(TsdbStore::new(tsdbs).serve(listener, async {
        let _ = stopped.await;
    }));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Server {
        store: StoreClient::new(channel.clone()),
        info: InfoClient::new(channel),
        _stop: stop,
    }
}

async fn serve_two(a: &Tenant, b: &Tenant) -> Server {
    serve(vec![(ext_a(), a.db.clone()), (ext_b(), b.db.clone())]).await
}

fn m(t: label_matcher::Type, name: &str, value: &str) -> LabelMatcher {
    LabelMatcher {
        r#type: t as i32,
        name: name.into(),
        value: value.into(),
    }
}

fn eq(name: &str, value: &str) -> LabelMatcher {
    m(label_matcher::Type::Eq, name, value)
}

fn request(matchers: Vec<LabelMatcher>, min_time: i64, max_time: i64) -> SeriesRequest {
    SeriesRequest {
        min_time,
        max_time,
        matchers,
        ..Default::default()
    }
}

/// One series as received: labels and every chunk of all its frames.
#[derive(Debug)]
struct Got {
    labels: LabelPairs,
    chunks: Vec<AggrChunk>,
}

impl Got {
    /// Every sample of every chunk, in time order, each timestamp once.
    fn samples(&self) -> Samples {
        let mut out: Samples = Vec::new();
        for c in &self.chunks {
            let raw = c.raw.as_ref().expect("raw chunk");
            assert_eq!(raw.r#type, proto::thanos::chunk::Encoding::Xor as i32);
            let mut it = XorIterator::new(&raw.data);
            let mut n = 0;
            for (t, v) in it.by_ref() {
                assert!(
                    (c.min_time..=c.max_time).contains(&t),
                    "sample {t} outside its chunk [{}, {}]",
                    c.min_time,
                    c.max_time
                );
                out.push((t, v.to_bits()));
                n += 1;
            }
            assert!(n > 0, "empty chunk");
        }
        out.sort_by_key(|s| s.0);
        out.dedup_by_key(|s| s.0);
        out
    }
}

/// Calls Series and reassembles series split over frames or batched.
async fn series(server: &mut Server, req: SeriesRequest) -> Result<Vec<Got>, tonic::Status> {
    let mut stream = server.store.series(req).await?.into_inner();
    let mut got: Vec<Got> = Vec::new();
    while let Some(resp) = stream.message().await? {
        let frames = match resp.result.expect("a result") {
            series_response::Result::Series(s) => vec![s],
            series_response::Result::Batch(b) => b.series,
            other => panic!("unexpected response {other:?}"),
        };
        for s in frames {
            let labels: LabelPairs = s.labels.into_iter().map(|l| (l.name, l.value)).collect();
            match got.last_mut() {
                Some(last) if last.labels == labels => last.chunks.extend(s.chunks),
                _ => got.push(Got {
                    labels,
                    chunks: s.chunks,
                }),
            }
        }
    }
    Ok(got)
}

fn with_ext(series: &[(&str, &str)], e: &ExternalLabels) -> LabelPairs {
    let mut v = pairs(series);
    v.extend(e.iter().map(|(k, v)| (k.clone(), v.clone())));
    v.sort();
    v
}

fn in_range(s: &Samples, mint: i64, maxt: i64) -> Samples {
    s.iter()
        .copied()
        .filter(|(t, _)| (mint..=maxt).contains(t))
        .collect()
}

#[tokio::test]
async fn info_reports_tsdbs_external_labels_and_time_range() {
    let (a, b) = two_tenants();
    let mut server = serve_two(&a, &b).await;
    let info = server.info.info(InfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.component_type, "receive");
    let sets: Vec<LabelPairs> = info
        .label_sets
        .iter()
        .map(|s| {
            s.labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect()
        })
        .collect();
    assert_eq!(
        sets,
        vec![
            pairs(&[("replica", "r1"), ("tenant_id", "a")]),
            pairs(&[("replica", "r1"), ("tenant_id", "b")])
        ]
    );
    let store = info.store.expect("store info");
    assert_eq!(store.min_time, 0, "tenant a's oldest block starts at 0");
    assert_eq!(store.max_time, i64::MAX);
    assert!(store.supports_without_replica_labels);
    assert!(!store.supports_sharding);
    let ranges: Vec<(i64, i64)> = store
        .tsdb_infos
        .iter()
        .map(|t| (t.min_time, t.max_time))
        .collect();
    assert_eq!(ranges, vec![(0, i64::MAX), (3 * HOUR, i64::MAX)]);
    assert!(info.exemplars.is_none() && info.rules.is_none());

    // No TSDBs at all: the whole time range, no label sets. An empty TSDB: nothing to offer.
    let mut none = serve(Vec::new()).await;
    let store = none
        .info
        .info(InfoRequest {})
        .await
        .unwrap()
        .into_inner()
        .store
        .unwrap();
    assert_eq!((store.min_time, store.max_time), (i64::MIN, i64::MAX));
    let empty = Tenant::open();
    let mut one = serve(vec![(ext(&[("tenant_id", "e")]), empty.db.clone())]).await;
    let store = one
        .info
        .info(InfoRequest {})
        .await
        .unwrap()
        .into_inner()
        .store
        .unwrap();
    assert_eq!(store.min_time, i64::MAX);
}

#[tokio::test]
async fn series_are_sorted_carry_external_labels_and_exact_samples() {
    let (a, b) = two_tenants();
    let mut server = serve_two(&a, &b).await;

    let got = series(
        &mut server,
        request(vec![eq("__name__", "up")], i64::MIN, i64::MAX),
    )
    .await
    .unwrap();
    let labels: Vec<&LabelPairs> = got.iter().map(|g| &g.labels).collect();
    assert_eq!(
        labels,
        vec![&with_ext(UP_I1, &ext_a()), &with_ext(UP_I2, &ext_b())]
    );
    assert_eq!(got[0].samples(), a.written[&pairs(UP_I1)]);
    assert_eq!(got[1].samples(), b.written[&pairs(UP_I2)]);
    // Blocks and head: 240 samples in 120-sample chunks that never cross a 2 h boundary.
    assert_eq!(got[0].samples().len(), 240);
    assert!(got[0].chunks.len() >= 3);
    assert!(got[0]
        .chunks
        .windows(2)
        .all(|w| w[0].max_time < w[1].min_time));

    // Every series of both tenants, sorted by the full label set.
    let got = series(
        &mut server,
        request(
            vec![m(label_matcher::Type::Re, "__name__", ".+")],
            i64::MIN,
            i64::MAX,
        ),
    )
    .await
    .unwrap();
    let labels: Vec<LabelPairs> = got.iter().map(|g| g.labels.clone()).collect();
    let mut want = vec![
        with_ext(UP_I1, &ext_a()),
        with_ext(REQS, &ext_a()),
        with_ext(UP_I2, &ext_b()),
    ];
    want.sort();
    assert_eq!(labels, want);
    assert_eq!(labels[0][0].1, "http_requests_total");
    let reqs = got
        .iter()
        .find(|g| g.labels == with_ext(REQS, &ext_a()))
        .unwrap();
    assert_eq!(reqs.samples(), a.written[&pairs(REQS)]);
}

#[tokio::test]
async fn series_honour_time_bounds() {
    let (a, b) = two_tenants();
    let mut server = serve_two(&a, &b).await;

    // Inside tenant a's first block only: tenant b has nothing there.
    let (mint, maxt) = (30 * MIN, 45 * MIN);
    let got = series(&mut server, request(vec![eq("__name__", "up")], mint, maxt))
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].labels, with_ext(UP_I1, &ext_a()));
    // Chunks overlapping the range come whole (not trimmed) ...
    assert!(got[0]
        .chunks
        .iter()
        .all(|c| c.min_time <= maxt && c.max_time >= mint));
    assert_eq!(got[0].chunks.len(), 1);
    // ... and hold exactly the written samples.
    let samples = got[0].samples();
    assert_eq!(
        in_range(&samples, mint, maxt),
        in_range(&a.written[&pairs(UP_I1)], mint, maxt)
    );
    assert_eq!(
        samples,
        in_range(&a.written[&pairs(UP_I1)], 0, 2 * HOUR - 1)[..120].to_vec()
    );

    // The head range: both tenants.
    let got = series(
        &mut server,
        request(
            vec![eq("__name__", "up")],
            3 * HOUR + 10 * MIN,
            3 * HOUR + 20 * MIN,
        ),
    )
    .await
    .unwrap();
    assert_eq!(got.len(), 2);
    for g in &got {
        assert!(g.chunks.iter().all(|c| c.min_time >= 3 * HOUR));
    }

    // After everything: nothing.
    let got = series(
        &mut server,
        request(vec![eq("__name__", "up")], 5 * HOUR, 6 * HOUR),
    )
    .await
    .unwrap();
    assert!(got.is_empty());
}

#[tokio::test]
async fn external_label_matchers_pick_tsdbs() {
    let (a, b) = two_tenants();
    let mut server = serve_two(&a, &b).await;
    let names = |got: &[Got]| -> Vec<String> {
        got.iter()
            .map(|g| {
                let find = |n: &str| g.labels.iter().find(|l| l.0 == n).unwrap().1.clone();
                format!("{}/{}", find("tenant_id"), find("__name__"))
            })
            .collect()
    };

    let got = series(
        &mut server,
        request(
            vec![eq("tenant_id", "b"), eq("__name__", "up")],
            i64::MIN,
            i64::MAX,
        ),
    )
    .await
    .unwrap();
    assert_eq!(names(&got), ["b/up"]);
    assert_eq!(got[0].samples(), b.written[&pairs(UP_I2)]);

    let got = series(
        &mut server,
        request(
            vec![
                m(label_matcher::Type::Re, "tenant_id", "a|b"),
                m(label_matcher::Type::Neq, "replica", "r2"),
                eq("job", "node"),
            ],
            i64::MIN,
            i64::MAX,
        ),
    )
    .await
    .unwrap();
    assert_eq!(names(&got), ["a/up", "b/up"]);

    // A matcher that rejects an external value rules the TSDB out.
    for bad in [
        eq("tenant_id", "c"),
        m(label_matcher::Type::Nre, "replica", "r.*"),
        eq("replica", ""),
    ] {
        let got = series(
            &mut server,
            request(vec![bad.clone(), eq("job", "node")], i64::MIN, i64::MAX),
        )
        .await
        .unwrap();
        assert!(got.is_empty(), "{bad:?} selected {got:?}");
    }

    // Only external-label matchers: every series of the TSDBs they pick.
    let got = series(
        &mut server,
        request(vec![eq("tenant_id", "a")], i64::MIN, i64::MAX),
    )
    .await
    .unwrap();
    assert_eq!(names(&got), ["a/http_requests_total", "a/up"]);
}

#[tokio::test]
async fn skip_chunks_limit_and_batches() {
    let (a, b) = two_tenants();
    let mut server = serve_two(&a, &b).await;
    let all = vec![m(label_matcher::Type::Re, "job", "node|api")];

    let mut req = request(all.clone(), i64::MIN, i64::MAX);
    req.skip_chunks = true;
    let got = series(&mut server, req).await.unwrap();
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|g| g.chunks.is_empty()));

    let full = series(&mut server, request(all.clone(), i64::MIN, i64::MAX))
        .await
        .unwrap();
    for limit in [1, 2] {
        let mut req = request(all.clone(), i64::MIN, i64::MAX);
        req.limit = limit;
        let got = series(&mut server, req).await.unwrap();
        let want: Vec<&LabelPairs> = full
            .iter()
            .take(limit as usize)
            .map(|g| &g.labels)
            .collect();
        assert_eq!(got.iter().map(|g| &g.labels).collect::<Vec<_>>(), want);
    }

    // Batches of two series per response: the same series, fewer messages.
    let mut req = request(all.clone(), i64::MIN, i64::MAX);
    req.response_batch_size = 2;
    let mut stream = server.store.series(req.clone()).await.unwrap().into_inner();
    let mut sizes = Vec::new();
    while let Some(resp) = stream.message().await.unwrap() {
        match resp.result.unwrap() {
            series_response::Result::Batch(b) => sizes.push(b.series.len()),
            other => panic!("expected a batch, got {other:?}"),
        }
    }
    assert_eq!(sizes, [2, 1]);
    let got = series(&mut server, req).await.unwrap();
    assert_eq!(
        got.iter().map(|g| g.samples()).collect::<Vec<_>>(),
        full.iter().map(|g| g.samples()).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn without_replica_labels_drops_them_and_merges_replicas() {
    // Two replicas of one tenant holding the same series (replica r2 missed the first half hour).
    let mut r1 = Tenant::open();
    r1.write(&[UP_I1], 0, HOUR);
    let mut r2 = Tenant::open();
    r2.write(&[UP_I1], 30 * MIN, HOUR);
    // Replica r3 holds exactly what r1 holds: its chunks are r1's, byte for byte.
    let mut r3 = Tenant::open();
    r3.write(&[UP_I1], 0, HOUR);
    let e1 = ext(&[("replica", "r1"), ("tenant_id", "a")]);
    let e2 = ext(&[("replica", "r2"), ("tenant_id", "a")]);
    let e3 = ext(&[("replica", "r3"), ("tenant_id", "a")]);
    let mut server = serve(vec![
        (e1.clone(), r1.db.clone()),
        (e2.clone(), r2.db.clone()),
        (e3.clone(), r3.db.clone()),
    ])
    .await;

    let got = series(
        &mut server,
        request(vec![eq("__name__", "up")], i64::MIN, i64::MAX),
    )
    .await
    .unwrap();
    assert_eq!(
        got.iter().map(|g| g.labels.clone()).collect::<Vec<_>>(),
        vec![
            with_ext(UP_I1, &e1),
            with_ext(UP_I1, &e2),
            with_ext(UP_I1, &e3)
        ]
    );

    let mut req = request(vec![eq("__name__", "up")], i64::MIN, i64::MAX);
    req.without_replica_labels = vec!["replica".into()];
    let got = series(&mut server, req).await.unwrap();
    assert_eq!(got.len(), 1, "one series once the replica label is gone");
    assert_eq!(got[0].labels, with_ext(UP_I1, &ext(&[("tenant_id", "a")])));
    assert_eq!(
        got[0].chunks.len(),
        2,
        "one chunk from r1 and r2 each; r3's duplicates r1's"
    );
    assert!(got[0].chunks[0].min_time <= got[0].chunks[1].min_time);
    // Same samples where they overlap: the union is replica r1's.
    assert_eq!(got[0].samples(), r1.written[&pairs(UP_I1)]);

    // Also a label the series carry themselves.
    let mut req = request(vec![eq("__name__", "up")], i64::MIN, i64::MAX);
    req.without_replica_labels = vec!["instance".into()];
    let got = series(&mut server, req).await.unwrap();
    assert!(got
        .iter()
        .all(|g| g.labels.iter().all(|(n, _)| n != "instance")));
    assert_eq!(got.len(), 3);
}

#[tokio::test]
async fn label_names_and_values() {
    let (a, b) = two_tenants();
    let mut server = serve_two(&a, &b).await;
    let names = |start, end, matchers: Vec<LabelMatcher>, without: &[&str]| LabelNamesRequest {
        start,
        end,
        matchers,
        without_replica_labels: without.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };

    let got = server
        .store
        .label_names(names(i64::MIN, i64::MAX, vec![], &[]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        got.names,
        [
            "__name__",
            "code",
            "instance",
            "job",
            "replica",
            "tenant_id"
        ]
    );

    let got = server
        .store
        .label_names(names(
            i64::MIN,
            i64::MAX,
            vec![eq("__name__", "up")],
            &["replica"],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.names, ["__name__", "instance", "job", "tenant_id"]);

    // Tenant b only (by external label), and a range only tenant a has data in.
    let got = server
        .store
        .label_names(names(i64::MIN, i64::MAX, vec![eq("tenant_id", "b")], &[]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        got.names,
        ["__name__", "instance", "job", "replica", "tenant_id"]
    );
    let got = server
        .store
        .label_names(names(0, HOUR, vec![eq("tenant_id", "b")], &[]))
        .await
        .unwrap()
        .into_inner();
    assert!(got.names.is_empty());

    let mut req = names(i64::MIN, i64::MAX, vec![], &[]);
    req.limit = 2;
    let got = server.store.label_names(req).await.unwrap().into_inner();
    assert_eq!(got.names, ["__name__", "code"]);

    let values = |label: &str, start, end, matchers: Vec<LabelMatcher>| LabelValuesRequest {
        label: label.into(),
        start,
        end,
        matchers,
        ..Default::default()
    };
    let v = |r: tonic::Response<proto::thanos::LabelValuesResponse>| r.into_inner().values;

    let got = v(server
        .store
        .label_values(values("instance", i64::MIN, i64::MAX, vec![]))
        .await
        .unwrap());
    assert_eq!(got, ["i1", "i2"]);
    let got = v(server
        .store
        .label_values(values(
            "__name__",
            i64::MIN,
            i64::MAX,
            vec![eq("job", "api")],
        ))
        .await
        .unwrap());
    assert_eq!(got, ["http_requests_total"]);
    let got = v(server
        .store
        .label_values(values("instance", 0, HOUR, vec![]))
        .await
        .unwrap());
    assert_eq!(got, ["i1"], "tenant b has nothing before 3 h");

    // External labels: the TSDBs' values, for the TSDBs with matching series in the range.
    let got = v(server
        .store
        .label_values(values("tenant_id", i64::MIN, i64::MAX, vec![]))
        .await
        .unwrap());
    assert_eq!(got, ["a", "b"]);
    let got = v(server
        .store
        .label_values(values(
            "tenant_id",
            i64::MIN,
            i64::MAX,
            vec![eq("instance", "i2")],
        ))
        .await
        .unwrap());
    assert_eq!(got, ["b"]);
    let got = v(server
        .store
        .label_values(values("tenant_id", 0, HOUR, vec![]))
        .await
        .unwrap());
    assert_eq!(got, ["a"]);
    let got = v(server
        .store
        .label_values(values(
            "job",
            i64::MIN,
            i64::MAX,
            vec![eq("tenant_id", "b")],
        ))
        .await
        .unwrap());
    assert_eq!(got, ["node"]);

    // A replica label the client drops has no values.
    let mut req = values("replica", i64::MIN, i64::MAX, vec![]);
    let got = v(server.store.label_values(req.clone()).await.unwrap());
    assert_eq!(got, ["r1"]);
    req.without_replica_labels = vec!["replica".into()];
    assert!(v(server.store.label_values(req).await.unwrap()).is_empty());
}

#[tokio::test]
async fn bad_requests_are_invalid_argument() {
    let (a, b) = two_tenants();
    let mut server = serve_two(&a, &b).await;

    let err = series(
        &mut server,
        request(
            vec![m(label_matcher::Type::Re, "job", "(")],
            i64::MIN,
            i64::MAX,
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("job=~\"(\""), "{}", err.message());

    let err = series(&mut server, request(vec![], i64::MIN, i64::MAX))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("no matchers"));

    let err = server
        .store
        .label_values(LabelValuesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    let err = server
        .store
        .label_names(LabelNamesRequest {
            matchers: vec![m(label_matcher::Type::Nre, "x", "[")],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
}
