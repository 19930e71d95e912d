//! The engine over the fan-out, end to end in one process: two StoreAPI servers (the `store`
//! crate over TSDBs) with a `replica` external label each, holding two replicas of a counter
//! that do not agree (scraped 4 s apart, one lagging behind, each with a gap), read through
//! [`FanoutQueryable`].
//!
//! With de-duplication the merged counter never goes down: `resets` finds none, and `rate`
//! has no spike where the merge switches replica. A third, dead endpoint is a warning, or an
//! error with partial responses off.

use std::collections::BTreeMap;
use std::sync::Arc;

use promql::{Engine, EngineOpts, QueryValue};
use query::endpoints::{EndpointConfig, EndpointSet};
use query::fanout::FanoutOptions;
use query::{FanoutQueryable, ReadOptions};
use tsdb::db::{Db, DbOptions};
use tsdb::Labels;

/// A range query's answer: series (as text) -> points.
type Matrix = BTreeMap<String, Vec<(i64, f64)>>;

const START: i64 = 1_700_000_000_000;
const STEP: i64 = 15_000;
const POINTS: i64 = 240; // an hour

/// The true counter: +10 per scrape.
fn truth(p: i64) -> f64 {
    1000.0 + 10.0 * p as f64
}

async fn start_store(dir: &std::path::Path, replica: &str, samples: &[(i64, f64)]) -> String {
    let (db, _) = Db::open(dir, DbOptions::default()).unwrap();
    let db = Arc::new(db);
    let labels = Labels::from_pairs([("__name__", "requests_total"), ("job", "api")]);
    let mut app = db.appender();
    for &(t, v) in samples {
        app.append(&labels, t, v).unwrap();
    }
    app.commit().unwrap();
    let external: store::ExternalLabels = [("replica".to_string(), replica.to_string())].into();
    let store = store::TsdbStore::new(vec![(external, db)]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(store.serve(listener, std::future::pending()));
    addr
}

fn run_range(
    set: &Arc<EndpointSet>,
    handle: tokio::runtime::Handle,
    opts: ReadOptions,
    q: &str,
) -> (Result<Matrix, promql::Error>, Vec<String>) {
    let storage = FanoutQueryable::new(set.clone(), handle, opts, None);
    // Range functions on two threads (`Queryable::select_par`), as `cairn query` runs them.
    let engine = Engine::new(EngineOpts {
        parallelism: 2,
        ..Default::default()
    });
    let result = engine
        .range_query(
            &storage,
            q,
            START + 600_000,
            START + (POINTS - 1) * STEP,
            STEP,
        )
        .map(|r| match r.value {
            QueryValue::Matrix(m) => m
                .into_iter()
                .map(|s| {
                    (
                        s.labels.to_string(),
                        s.samples.iter().map(|p| (p.t, p.f)).collect(),
                    )
                })
                .collect(),
            v => panic!("{v:?}"),
        });
    (result, storage.take_warnings())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merged_counter_has_no_false_resets() {
    let dir = tempfile::tempdir().unwrap();
    // Replica a: on time, but misses minutes 20-25. Replica b: scraped 4 s later, its counter
    // 25 behind (it missed increments after a restart of its own), and misses minutes 40-45.
    let a: Vec<(i64, f64)> = (0..POINTS)
        .filter(|p| !(80..100).contains(p))
        .map(|p| (START + p * STEP, truth(p)))
        .collect();
    let b: Vec<(i64, f64)> = (0..POINTS)
        .filter(|p| !(160..180).contains(p))
        .map(|p| (START + p * STEP + 4_000, truth(p) - 25.0))
        .collect();
    let addr_a = start_store(&dir.path().join("a"), "a", &a).await;
    let addr_b = start_store(&dir.path().join("b"), "b", &b).await;
    // Nothing listens here.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let set = EndpointSet::new(EndpointConfig {
        static_endpoints: vec![addr_a.clone(), addr_b.clone(), dead.clone()],
        ..Default::default()
    });
    set.update().await;

    let dedup = ReadOptions {
        replica_labels: vec!["replica".into()],
        ..Default::default()
    };
    let handle = tokio::runtime::Handle::current();
    let (set2, h2, d2) = (set.clone(), handle.clone(), dedup.clone());
    let (resets, warnings) = tokio::task::spawn_blocking(move || {
        run_range(&set2, h2, d2, "resets(requests_total[30m])")
    })
    .await
    .unwrap();
    let resets = resets.unwrap();
    assert_eq!(resets.len(), 1);
    let points = &resets["{job=\"api\"}"];
    assert!(!points.is_empty());
    assert!(
        points.iter().all(|p| p.1 == 0.0),
        "false resets: {points:?}"
    );
    assert!(
        warnings.iter().any(|w| w.contains(&dead)),
        "no warning about the dead endpoint: {warnings:?}"
    );

    // rate stays near the true 10/15 per second everywhere: it dips where the merge switches
    // replica (the lagging replica is lifted to the last value, so an increment is lost), but
    // never spikes as a false reset would make it (to about 1800 / 120 s = 15/s).
    let (set2, h2, d2) = (set.clone(), handle.clone(), dedup.clone());
    let (rate, _) =
        tokio::task::spawn_blocking(move || run_range(&set2, h2, d2, "rate(requests_total[2m])"))
            .await
            .unwrap();
    let rate = rate.unwrap();
    for &(t, v) in &rate["{job=\"api\"}"] {
        assert!(
            v > 0.3 && v < 1.0,
            "rate at {} s is {v}",
            (t - START) / 1000
        );
    }

    // Without de-duplication both replicas are there, each with its replica label.
    let (set2, h2) = (set.clone(), handle.clone());
    let no_dedup = ReadOptions {
        dedup: false,
        ..dedup.clone()
    };
    let (all, _) =
        tokio::task::spawn_blocking(move || run_range(&set2, h2, no_dedup, "requests_total"))
            .await
            .unwrap();
    let names: Vec<String> = all.unwrap().into_keys().collect();
    assert_eq!(
        names,
        [
            "{__name__=\"requests_total\", job=\"api\", replica=\"a\"}",
            "{__name__=\"requests_total\", job=\"api\", replica=\"b\"}"
        ]
    );

    // Partial responses off: the dead endpoint fails the query.
    let strict = ReadOptions {
        fanout: FanoutOptions {
            partial_response: false,
            ..Default::default()
        },
        ..dedup
    };
    let (set2, h2) = (set.clone(), handle.clone());
    let (err, _) =
        tokio::task::spawn_blocking(move || run_range(&set2, h2, strict, "requests_total"))
            .await
            .unwrap();
    match err {
        Err(promql::Error::Storage(msg)) => assert!(msg.contains(&dead), "{msg}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_querys_selectors_are_fetched_together_and_answer_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let a: Vec<(i64, f64)> = (0..POINTS).map(|p| (START + p * STEP, truth(p))).collect();
    let addr = start_store(&dir.path().join("a"), "a", &a).await;
    let set = EndpointSet::new(EndpointConfig {
        static_endpoints: vec![addr],
        ..Default::default()
    });
    set.update().await;
    let handle = tokio::runtime::Handle::current();
    let q = "rate(requests_total[2m]) / rate(requests_total[5m]) + on() group_left() count(requests_total)";
    let (together, hits) = {
        let (set, handle) = (set.clone(), handle.clone());
        tokio::task::spawn_blocking(move || {
            let storage = FanoutQueryable::new(set, handle, ReadOptions::default(), None);
            let engine = Engine::new(EngineOpts {
                parallelism: 2,
                ..Default::default()
            });
            let r = engine
                .range_query(
                    &storage,
                    q,
                    START + 600_000,
                    START + (POINTS - 1) * STEP,
                    STEP,
                )
                .unwrap();
            (r, storage.prefetch_hits())
        })
        .await
        .unwrap()
    };
    // Three selects (two ranges, one instant), each answered from the fetch made ahead.
    assert_eq!(hits, 3);
    // The same query over storage that fetches one select at a time gives the same answer.
    struct OneByOne(FanoutQueryable);
    impl promql::Queryable for OneByOne {
        fn select(
            &self,
            hints: &promql::SelectHints,
            matchers: &[promql::Matcher],
        ) -> Result<Vec<promql::Series>, promql::Error> {
            self.0.select(hints, matchers)
        }
    }
    let alone = tokio::task::spawn_blocking(move || {
        let storage = OneByOne(FanoutQueryable::new(
            set,
            handle,
            ReadOptions::default(),
            None,
        ));
        Engine::default()
            .range_query(
                &storage,
                q,
                START + 600_000,
                START + (POINTS - 1) * STEP,
                STEP,
            )
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        format!("{:?}", together.value),
        format!("{:?}", alone.value)
    );
}

/// A StoreAPI server that answers every `Series` call with `series`, in that order, and says
/// in `Info` whether it honours `without_replica_labels`.
#[derive(Clone)]
struct FixedStore {
    series: Vec<proto::thanos::Series>,
    supports_without_replica_labels: bool,
    /// Fail the stream (Unavailable) after sending `series`.
    fail: bool,
}

#[tonic::async_trait]
impl proto::thanos::store_server::Store for FixedStore {
    type SeriesStream = futures::stream::Iter<
        std::vec::IntoIter<Result<proto::thanos::SeriesResponse, tonic::Status>>,
    >;

    async fn series(
        &self,
        _: tonic::Request<proto::thanos::SeriesRequest>,
    ) -> Result<tonic::Response<Self::SeriesStream>, tonic::Status> {
        let mut out: Vec<_> = self
            .series
            .iter()
            .map(|s| {
                Ok(proto::thanos::SeriesResponse {
                    result: Some(proto::thanos::series_response::Result::Series(s.clone())),
                })
            })
            .collect();
        if self.fail {
            out.push(Err(tonic::Status::unavailable("disk on fire")));
        }
        Ok(tonic::Response::new(futures::stream::iter(out)))
    }

    async fn label_names(
        &self,
        _: tonic::Request<proto::thanos::LabelNamesRequest>,
    ) -> Result<tonic::Response<proto::thanos::LabelNamesResponse>, tonic::Status> {
        Ok(tonic::Response::new(Default::default()))
    }

    async fn label_values(
        &self,
        _: tonic::Request<proto::thanos::LabelValuesRequest>,
    ) -> Result<tonic::Response<proto::thanos::LabelValuesResponse>, tonic::Status> {
        Ok(tonic::Response::new(Default::default()))
    }
}

#[tonic::async_trait]
impl proto::thanos::info::info_server::Info for FixedStore {
    async fn info(
        &self,
        _: tonic::Request<proto::thanos::info::InfoRequest>,
    ) -> Result<tonic::Response<proto::thanos::info::InfoResponse>, tonic::Status> {
        Ok(tonic::Response::new(proto::thanos::info::InfoResponse {
            component_type: "store".into(),
            store: Some(proto::thanos::info::StoreInfo {
                min_time: i64::MIN,
                max_time: i64::MAX,
                supports_without_replica_labels: self.supports_without_replica_labels,
                ..Default::default()
            }),
            ..Default::default()
        }))
    }
}

async fn start_fixed(store: FixedStore) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let incoming = tokio_stream_from(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(proto::thanos::store_server::StoreServer::new(store.clone()))
            .add_service(proto::thanos::info::info_server::InfoServer::new(store))
            .serve_with_incoming(incoming),
    );
    addr
}

fn tokio_stream_from(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures::stream::unfold(listener, |l| async move {
        let conn = l.accept().await.map(|(s, _)| s);
        Some((conn, l))
    })
}

/// One series of `value` at every step, with `labels`.
fn fixed_series(labels: &[(&str, &str)], value: f64) -> proto::thanos::Series {
    let mut c = tsdb::chunkenc::XorChunk::new();
    for p in 0..POINTS {
        c.append(START + p * STEP, value);
    }
    proto::thanos::Series {
        labels: labels
            .iter()
            .map(|&(name, value)| proto::thanos::Label {
                name: name.into(),
                value: value.into(),
            })
            .collect(),
        chunks: vec![proto::thanos::AggrChunk {
            min_time: START,
            max_time: START + (POINTS - 1) * STEP,
            raw: Some(proto::thanos::Chunk {
                r#type: proto::thanos::chunk::Encoding::Xor as i32,
                data: c.into_bytes().into(),
                hash: 0,
            }),
            ..Default::default()
        }],
    }
}

/// Series arrive merged in label order whatever order a store that does not sort without the
/// replica labels sends them in; a store that says it sorts but does not is a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_answer_order_is_checked_or_restored() {
    // Sorted with the replica label, not without it: `a` comes back after `b` once `replica`
    // is gone.
    let old = vec![
        fixed_series(&[("__name__", "up"), ("job", "b"), ("replica", "1")], 2.0),
        fixed_series(&[("__name__", "up"), ("job", "a"), ("replica", "2")], 1.0),
    ];
    let unsorting = start_fixed(FixedStore {
        series: old.clone(),
        supports_without_replica_labels: false,
        fail: false,
    })
    .await;
    let failing = start_fixed(FixedStore {
        series: old.clone(),
        supports_without_replica_labels: false,
        fail: true,
    })
    .await;
    let lying = start_fixed(FixedStore {
        series: old,
        supports_without_replica_labels: true,
        fail: false,
    })
    .await;
    // Sorted without the replica label, but sent with it: two copies of one series, one after
    // the other, are joined as copies.
    let copies = start_fixed(FixedStore {
        series: vec![
            fixed_series(&[("__name__", "up"), ("job", "a"), ("replica", "1")], 1.0),
            fixed_series(&[("__name__", "up"), ("job", "a"), ("replica", "2")], 1.0),
            fixed_series(&[("__name__", "up"), ("job", "b"), ("replica", "1")], 2.0),
        ],
        supports_without_replica_labels: true,
        fail: false,
    })
    .await;
    let handle = tokio::runtime::Handle::current();
    let dedup = ReadOptions {
        replica_labels: vec!["replica".into()],
        ..Default::default()
    };
    let run = |addr: String, opts: ReadOptions| {
        let handle = handle.clone();
        async move {
            let set = EndpointSet::new(EndpointConfig {
                static_endpoints: vec![addr],
                ..Default::default()
            });
            set.update().await;
            tokio::task::spawn_blocking(move || {
                run_range(&set, handle, opts, "sum_over_time(up[1m])")
            })
            .await
            .unwrap()
        }
    };
    let (got, warnings) = run(unsorting, dedup.clone()).await;
    let got = got.unwrap();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        ["{job=\"a\"}", "{job=\"b\"}"],
        "{warnings:?}"
    );
    assert!(warnings.is_empty(), "{warnings:?}");

    // A store that fails after sending its series: what it sent is used (held and sorted
    // first), and the failure is a warning.
    let (got, warnings) = run(failing.clone(), dedup.clone()).await;
    assert_eq!(
        got.unwrap().keys().collect::<Vec<_>>(),
        ["{job=\"a\"}", "{job=\"b\"}"]
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains(&failing) && w.contains("disk on fire")),
        "{warnings:?}"
    );

    let (got, warnings) = run(copies, dedup.clone()).await;
    let got = got.unwrap();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got["{job=\"a\"}"].first().map(|p| p.1), Some(4.0));
    assert!(warnings.is_empty(), "{warnings:?}");

    let (got, warnings) = run(lying.clone(), dedup.clone()).await;
    assert!(
        warnings
            .iter()
            .any(|w| w.contains(&lying) && w.contains("not in label order")),
        "{got:?} {warnings:?}"
    );
    let strict = ReadOptions {
        fanout: FanoutOptions {
            partial_response: false,
            ..Default::default()
        },
        ..dedup
    };
    match run(lying, strict).await.0 {
        Err(promql::Error::Storage(msg)) => assert!(msg.contains("not in label order"), "{msg}"),
        other => panic!("{other:?}"),
    }
}
