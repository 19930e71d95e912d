//! The design's whole read path: three receivers in one hashring with replication factor 3 and
//! `--label replica="rN"`, written through by a real remote-write client (vmagent) and by exact
//! test writes, and `cairn query --query.replica-label replica` over their StoreAPIs: every
//! series comes back once with exactly the samples written; with one receiver down the answers
//! do not change; with `dedup=false` the three replicas appear.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{
    remote_write_request, vmagent, wait_until, CairnQuery, ExpositionServer, ReceivePool,
    WriteSeries,
};
use serde_json::Value;

const SERIES: usize = 12;

/// Matrix results as sorted `labels -> [(t, value)]`.
fn matrix(v: &Value) -> Vec<(String, Vec<(f64, String)>)> {
    assert_eq!(v["status"], "success", "{v}");
    assert_eq!(v["data"]["resultType"], "matrix", "{v}");
    let mut out: Vec<(String, Vec<(f64, String)>)> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let labels = s["metric"].to_string();
            let values = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_f64().unwrap(), p[1].as_str().unwrap().to_string()))
                .collect();
            (labels, values)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn cairn_query_over_an_rf3_pool_returns_each_series_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut pool = ReceivePool::new(dir.path(), 3, None);
    pool.write_ring(&pool.endpoints);
    pool.start_all();

    // A real client, scraping two series and writing them to one node.
    let expo =
        ExpositionServer::start("pool_scraped{kind=\"a\"} 1\npool_scraped{kind=\"b\"} 2\n".into());
    let url = format!("http://{}/api/v1/receive", pool.node(0).remote_write);
    let vm = vmagent(dir.path(), "edge", expo.addr, &url, &[]);

    // Exact writes through every node in turn.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let base = (now - 20 * 60_000) / 1000 * 1000;
    let mut want: Vec<Vec<(f64, String)>> = vec![Vec::new(); SERIES];
    for r in 0..30i64 {
        let t = base + r * 15_000;
        let batch: Vec<WriteSeries> = (0..SERIES)
            .map(|i| {
                let v = (r * 10 + i as i64) as f64 / 4.0;
                want[i].push((t as f64 / 1000.0, format!("{v}")));
                (
                    vec![
                        ("__name__".to_string(), "pool_metric".to_string()),
                        ("series".to_string(), format!("s{i:02}")),
                    ],
                    vec![(t, v)],
                )
            })
            .collect();
        let resp = remote_write_request(
            pool.node(r as usize % 3).remote_write,
            "default-tenant",
            &batch,
        )
        .unwrap();
        assert_eq!(resp.status, 204, "{}", resp.body);
    }

    let grpcs: Vec<_> = (0..3).map(|i| pool.node(i).grpc).collect();
    let query = CairnQuery::start(dir.path(), &grpcs, &["--query.replica-label=replica"]);
    let at = format!("{:.3}", (base + 29 * 15_000) as f64 / 1000.0);
    let raw = |dedup: &str| {
        let (status, v) = query.get_json(
            "/api/v1/query",
            &[
                ("query", "pool_metric[10m]"),
                ("time", &at),
                ("dedup", dedup),
            ],
        );
        assert_eq!(status, 200, "{v}");
        matrix(&v)
    };

    let check = |got: &[(String, Vec<(f64, String)>)]| {
        assert_eq!(got.len(), SERIES, "{got:?}");
        for (i, (labels, values)) in got.iter().enumerate() {
            assert!(
                labels.contains(&format!("\"series\":\"s{i:02}\"")),
                "{labels}"
            );
            assert!(!labels.contains("replica"), "{labels}");
            assert_eq!(
                values,
                &want[i][want[i].len() - 40.min(want[i].len())..],
                "{labels}"
            );
        }
    };
    let deduped = raw("true");
    check(&deduped);
    // Every replica holds every series: without dedup each shows three times.
    let all = raw("false");
    assert_eq!(all.len(), 3 * SERIES, "{all:?}");
    for r in ["r0", "r1", "r2"] {
        let n = all
            .iter()
            .filter(|(l, _)| l.contains(&format!("\"replica\":\"{r}\"")))
            .count();
        assert_eq!(n, SERIES, "replica {r}");
    }

    // The real client's series: once each, from all three replicas.
    wait_until(Duration::from_secs(30), "vmagent's series", || {
        let (_, v) = query.get_json("/api/v1/query", &[("query", "pool_scraped")]);
        v["data"]["result"].as_array().is_some_and(|r| r.len() == 2)
    });
    wait_until(
        Duration::from_secs(30),
        "vmagent's series on three replicas",
        || {
            let (_, v) = query.get_json(
                "/api/v1/query",
                &[
                    ("query", "count by (replica) (pool_scraped)"),
                    ("dedup", "false"),
                ],
            );
            v["data"]["result"].as_array().is_some_and(|r| r.len() == 3)
        },
    );
    drop(vm);

    // One receiver down: the same answer.
    pool.kill(1);
    let after = raw("true");
    assert_eq!(after, deduped);
    let (_, v) = query.get_json(
        "/api/v1/query_range",
        &[
            ("query", "sum(pool_metric)"),
            ("start", &format!("{:.3}", base as f64 / 1000.0)),
            ("end", &at),
            ("step", "15"),
        ],
    );
    let sums = matrix(&v);
    assert_eq!(sums.len(), 1);
    assert_eq!(sums[0].1.len(), 30);
    let last: f64 = sums[0].1[29].1.parse().unwrap();
    let want_last: f64 = (0..SERIES).map(|i| (290 + i) as f64 / 4.0).sum();
    assert_eq!(last, want_last);
}
