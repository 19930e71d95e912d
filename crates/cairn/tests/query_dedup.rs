//! `cairn query` over three receivers holding replicas of the same data (each started with
//! `--label replica="rN"`, the same samples remote-written to each, as RF=3 would leave them):
//! every series comes back once, without the replica label, with exactly the samples written;
//! `dedup=false` shows the three replicas; with one receiver killed the answers are the same
//! (with a warning naming it), and `partial_response=false` then fails the query.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{now_ms, remote_write, wait_until, Cairn, CairnQuery, WriteSeries};
use serde_json::Value;

const STEP_MS: i64 = 15_000;
const POINTS: i64 = 60;

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// Two counters (one with a reset) and a gauge, every 15 s for 15 minutes ending about now.
fn data(start: i64) -> Vec<WriteSeries> {
    let mut out = Vec::new();
    for (i, instance) in ["a", "b"].into_iter().enumerate() {
        let mut v = 100.0 * i as f64;
        let samples = (0..POINTS)
            .map(|p| {
                v += (p * 7 % 5 + 1) as f64;
                if i == 1 && p == 40 {
                    v = 3.0; // the target restarted
                }
                (start + p * STEP_MS + 250 * i as i64, v)
            })
            .collect();
        out.push((
            labels(&[
                ("__name__", "test_requests_total"),
                ("instance", instance),
                ("job", "api"),
            ]),
            samples,
        ));
    }
    let samples = (0..POINTS)
        .map(|p| (start + p * STEP_MS + 500, 20.0 + (p as f64 * 0.3).sin()))
        .collect();
    out.push((
        labels(&[("__name__", "test_temperature"), ("room", "x")]),
        samples,
    ));
    out
}

fn success(status: u16, v: &Value) -> &Value {
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "success", "{v}");
    &v["data"]
}

fn metric(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect()
}

/// A matrix answer as metric -> points.
fn matrix(data: &Value) -> BTreeMap<BTreeMap<String, String>, Vec<(i64, f64)>> {
    assert_eq!(data["resultType"], "matrix", "{data}");
    data["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let points = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                    (t, p[1].as_str().unwrap().parse::<f64>().unwrap())
                })
                .collect();
            (metric(&s["metric"]), points)
        })
        .collect()
}

fn expected_metric(pairs: &[(String, String)]) -> BTreeMap<String, String> {
    let mut m: BTreeMap<String, String> = pairs.iter().cloned().collect();
    m.insert("tenant_id".into(), "default-tenant".into());
    m
}

#[test]
fn three_replicas_are_merged_and_survive_a_dead_receiver() {
    let dir = tempfile::tempdir().unwrap();
    let start = (now_ms() - POINTS * STEP_MS - 60_000) / 1000 * 1000;
    let data = data(start);
    let receivers: Vec<Cairn> = (1..=3)
        .map(|i| {
            let d = dir.path().join(format!("r{i}"));
            std::fs::create_dir_all(&d).unwrap();
            Cairn::receive(&d, &[&format!("--label=replica=\"r{i}\"")])
        })
        .collect();
    for r in &receivers {
        remote_write(r.remote_write, None, &data);
    }
    let grpc: Vec<_> = receivers.iter().map(|r| r.grpc).collect();
    let query = CairnQuery::start(dir.path(), &grpc, &["--query.replica-label=replica"]);

    let at = start + POINTS * STEP_MS;
    let at_s = format!("{}", at as f64 / 1000.0);
    let raw = |extra: &[(&str, &str)]| {
        let mut params = vec![
            ("query", r#"{__name__=~"test_.+"}[20m]"#),
            ("time", at_s.as_str()),
        ];
        params.extend_from_slice(extra);
        let (status, v) = query.get_json("/api/v1/query", &params);
        (matrix(success(status, &v)), v)
    };

    // Each series once, without the replica label, with exactly the samples written.
    let (got, v) = raw(&[]);
    assert!(v.get("warnings").is_none(), "{v}");
    let want: BTreeMap<_, _> = data
        .iter()
        .map(|(l, s)| (expected_metric(l), s.clone()))
        .collect();
    assert_eq!(got, want);

    // dedup=false: every replica, with its replica label.
    let (all, _) = raw(&[("dedup", "false")]);
    assert_eq!(all.len(), 3 * data.len());
    for (l, s) in &data {
        for r in ["r1", "r2", "r3"] {
            let mut m = expected_metric(l);
            m.insert("replica".into(), r.into());
            assert_eq!(all.get(&m), Some(s), "{m:?}");
        }
    }

    // rate over the merged series is rate over one replica.
    let range = |q: &str, extra: &[(&str, &str)]| {
        let (s, e) = (
            format!("{}", (start + 300_000) as f64 / 1000.0),
            format!("{}", at as f64 / 1000.0),
        );
        let mut params = vec![("query", q), ("start", &s), ("end", &e), ("step", "30")];
        params.extend_from_slice(extra);
        let (status, v) = query.get_json("/api/v1/query_range", &params);
        (matrix(success(status, &v)), v)
    };
    let (merged, _) = range("sum by (instance) (rate(test_requests_total[5m]))", &[]);
    let (one, _) = range(
        r#"sum by (instance) (rate(test_requests_total{replica="r2"}[5m]))"#,
        &[("dedup", "false")],
    );
    assert_eq!(merged.len(), 2);
    assert_eq!(merged, one);

    // The series and label APIs see one copy too.
    let (status, v) = query.get_json(
        "/api/v1/series",
        &[("match[]", "test_requests_total"), ("start", "0")],
    );
    let series = success(status, &v).as_array().unwrap();
    assert_eq!(series.len(), 2, "{v}");
    assert!(series.iter().all(|s| s.get("replica").is_none()));
    let (status, v) = query.get_json("/api/v1/labels", &[]);
    let names = success(status, &v).clone();
    assert!(
        !names.as_array().unwrap().contains(&"replica".into()),
        "{names}"
    );
    let (status, v) = query.get_json("/api/v1/labels", &[("dedup", "false")]);
    assert!(success(status, &v)
        .as_array()
        .unwrap()
        .contains(&"replica".into()));
    let (status, v) = query.get_json("/api/v1/label/replica/values", &[("dedup", "false")]);
    assert_eq!(success(status, &v), &serde_json::json!(["r1", "r2", "r3"]));

    // The stores page lists the three receivers, healthy, with their label sets.
    let (status, v) = query.get_json("/api/v1/stores", &[]);
    let stores = success(status, &v)["receive"].as_array().unwrap().clone();
    assert_eq!(stores.len(), 3, "{v}");
    for s in &stores {
        assert_eq!(s["health"], "up", "{s}");
        assert!(s["lastError"].is_null());
        assert_eq!(s["minTime"].as_i64(), Some(start));
        let sets = s["labelSets"].as_array().unwrap();
        assert_eq!(sets.len(), 1);
        assert_eq!(sets[0]["tenant_id"], "default-tenant");
    }

    // Kill receiver 2: the answers do not change, and say that r2 did not answer.
    let mut receivers = receivers;
    let dead = receivers[1].grpc.to_string();
    receivers[1].proc.child.kill().unwrap();
    receivers[1].proc.child.wait().unwrap();
    let (after, v) = raw(&[]);
    assert_eq!(after, want);
    let warnings = v["warnings"].as_array().expect("a warning about r2");
    assert!(
        warnings.iter().any(|w| w.as_str().unwrap().contains(&dead)),
        "{warnings:?}"
    );
    let (merged_after, _) = range("sum by (instance) (rate(test_requests_total[5m]))", &[]);
    assert_eq!(merged_after, merged);

    // Once Info has failed, the endpoint is down on the stores page and not called any more.
    wait_until(Duration::from_secs(10), "r2 marked down", || {
        let (_, v) = query.get_json("/api/v1/stores", &[]);
        v["data"]["receive"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == dead.as_str() && s["health"] == "down")
    });
    let (again, v) = raw(&[]);
    assert_eq!(again, want);
    assert!(v["warnings"].to_string().contains("is down"), "{v}");

    // partial_response=false: a missing replica fails the query.
    let (status, v) = query.get_json(
        "/api/v1/query",
        &[
            ("query", "test_temperature"),
            ("time", &at_s),
            ("partial_response", "false"),
        ],
    );
    assert_eq!(status, 500, "{v}");
    assert_eq!(v["status"], "error");
    assert_eq!(v["errorType"], "internal");
    assert!(v["error"].as_str().unwrap().contains(&dead), "{v}");
    // ... and so do the label APIs.
    let (status, v) = query.get_json(
        "/api/v1/label/__name__/values",
        &[("partial_response", "false")],
    );
    assert_eq!(status, 500, "{v}");
}
