//! What Grafana's Prometheus data source asks, against `cairn query` over a receiver, each
//! answer checked field by field against the shapes of Prometheus' HTTP API: the `1+1` health
//! check, metric names for the query editor, series by `match[]`, a range query sent as a POST
//! form, label names, build info, and the error shapes and status codes.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::{remote_write, Cairn, CairnQuery};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect();
    k.sort();
    k
}

/// A `[<seconds>, "<value>"]` pair: a number and a string.
fn point(p: &Value) -> (f64, &str) {
    let a = p.as_array().unwrap_or_else(|| panic!("not a pair: {p}"));
    assert_eq!(a.len(), 2, "{p}");
    (
        a[0].as_f64()
            .unwrap_or_else(|| panic!("timestamp is not a number: {p}")),
        a[1].as_str()
            .unwrap_or_else(|| panic!("value is not a string: {p}")),
    )
}

fn labels_object(m: &Value) {
    for (k, v) in m.as_object().unwrap() {
        assert!(!k.is_empty());
        assert!(v.is_string(), "label {k} is not a string: {m}");
    }
}

#[test]
fn grafana_requests_get_prometheus_shaped_answers() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Cairn::receive(dir.path(), &[]);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let start = (now - 600_000) / 1000 * 1000;
    let series = |name: &str, job: &str, scale: f64| {
        (
            vec![
                ("__name__".to_string(), name.to_string()),
                ("job".to_string(), job.to_string()),
            ],
            (0..40)
                .map(|i| (start + i * 15_000, scale * i as f64))
                .collect::<Vec<_>>(),
        )
    };
    remote_write(
        receiver.remote_write,
        None,
        &[
            series("smoke_requests_total", "api", 2.0),
            series("smoke_requests_total", "web", 3.0),
            series("smoke_up", "api", 0.0),
        ],
    );
    let query = CairnQuery::start(dir.path(), &[receiver.grpc], &[]);
    let t = (start + 39 * 15_000) as f64 / 1000.0;
    let t_s = format!("{t}");

    // Grafana's data source test: 1+1.
    let (status, v) = query.get_json("/api/v1/query", &[("query", "1+1"), ("time", &t_s)]);
    assert_eq!(status, 200);
    assert_eq!(keys(&v), ["data", "status"]);
    assert_eq!(v["status"], "success");
    assert_eq!(keys(&v["data"]), ["result", "resultType"]);
    assert_eq!(v["data"]["resultType"], "scalar");
    assert_eq!(point(&v["data"]["result"]), (t, "2"));

    // An instant vector.
    let (status, v) = query.get_json(
        "/api/v1/query",
        &[("query", "smoke_requests_total"), ("time", &t_s)],
    );
    assert_eq!(status, 200);
    assert_eq!(v["data"]["resultType"], "vector");
    let result = v["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 2);
    for r in result {
        assert_eq!(keys(r), ["metric", "value"]);
        labels_object(&r["metric"]);
        let (ts, value) = point(&r["value"]);
        assert_eq!(ts, t);
        assert!(value == "78" || value == "117", "{value}");
    }
    assert_eq!(result[0]["metric"]["job"], "api");
    assert_eq!(result[0]["metric"]["tenant_id"], "default-tenant");

    // Metric names for the query editor.
    let (status, v) = query.get_json(
        "/api/v1/label/__name__/values",
        &[("start", &format!("{}", start / 1000)), ("end", &t_s)],
    );
    assert_eq!(status, 200);
    assert_eq!(keys(&v), ["data", "status"]);
    assert_eq!(
        v["data"],
        serde_json::json!(["smoke_requests_total", "smoke_up"])
    );

    // Label names.
    let (status, v) = query.get_json("/api/v1/labels", &[]);
    assert_eq!(status, 200);
    assert_eq!(
        v["data"],
        serde_json::json!(["__name__", "job", "tenant_id"])
    );

    // Series by match[] (two selectors, one matching nothing).
    let (status, v) = query.get_json(
        "/api/v1/series",
        &[
            ("match[]", r#"smoke_requests_total{job="web"}"#),
            ("match[]", r#"{__name__="nothing_here"}"#),
            ("start", &format!("{}", start / 1000)),
            ("end", &t_s),
        ],
    );
    assert_eq!(status, 200);
    assert_eq!(keys(&v), ["data", "status"]);
    assert_eq!(
        v["data"],
        serde_json::json!([{"__name__": "smoke_requests_total", "job": "web", "tenant_id": "default-tenant"}])
    );

    // A range query as Grafana sends it: POST with a form body.
    // Windows inside the data (a 2 m window needs 2 m of samples before it for a steady rate).
    let range_start = (start + 150_000) as f64 / 1000.0;
    let (status, v) = query.post_form(
        "/api/v1/query_range",
        &[
            ("query", "sum by (job) (rate(smoke_requests_total[2m]))"),
            ("start", &format!("{range_start}")),
            ("end", &t_s),
            ("step", "30"),
        ],
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(keys(&v), ["data", "status"]);
    assert_eq!(keys(&v["data"]), ["result", "resultType"]);
    assert_eq!(v["data"]["resultType"], "matrix");
    let result = v["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 2);
    for (r, per_second) in result.iter().zip([2.0 / 15.0, 3.0 / 15.0]) {
        assert_eq!(keys(r), ["metric", "values"]);
        labels_object(&r["metric"]);
        assert_eq!(keys(&r["metric"]), ["job"]);
        let values = r["values"].as_array().unwrap();
        assert_eq!(values.len(), 15, "{r}");
        for (i, p) in values.iter().enumerate() {
            let (ts, value) = point(p);
            assert_eq!(ts, range_start + 30.0 * i as f64);
            let value: f64 = value.parse().unwrap();
            assert!((value - per_second).abs() < 1e-9, "{value} vs {per_second}");
        }
    }

    // Build info, metadata.
    let (status, v) = query.get_json("/api/v1/status/buildinfo", &[]);
    assert_eq!(status, 200);
    for k in [
        "branch",
        "buildDate",
        "buildUser",
        "goVersion",
        "revision",
        "version",
    ] {
        assert!(v["data"][k].is_string(), "{k}: {v}");
    }
    let (status, v) = query.get_json("/api/v1/metadata", &[]);
    assert_eq!((status, &v["data"]), (200, &serde_json::json!({})));

    // Errors: their shape and status codes.
    let error = |v: &Value, kind: &str| {
        assert_eq!(keys(v), ["error", "errorType", "status"], "{v}");
        assert_eq!(v["status"], "error");
        assert_eq!(v["errorType"], kind, "{v}");
    };
    let (status, v) = query.get_json("/api/v1/query", &[("query", "sum(")]);
    assert_eq!(status, 400);
    error(&v, "bad_data");
    assert!(v["error"]
        .as_str()
        .unwrap()
        .starts_with("invalid parameter \"query\": "));
    let (status, v) = query.get_json(
        "/api/v1/query_range",
        &[
            ("query", "up"),
            ("start", "10"),
            ("end", "5"),
            ("step", "1"),
        ],
    );
    assert_eq!(status, 400);
    error(&v, "bad_data");
    assert_eq!(
        v["error"],
        "invalid parameter \"end\": end timestamp must not be before start time"
    );
    let (status, v) = query.get_json("/api/v1/series", &[]);
    assert_eq!(status, 400);
    error(&v, "bad_data");
    assert_eq!(v["error"], "no match[] parameter provided");
    // Many-to-many matching is an execution error: 422.
    let (status, v) = query.get_json(
        "/api/v1/query",
        &[
            ("query", "smoke_requests_total + on() smoke_requests_total"),
            ("time", &t_s),
        ],
    );
    assert_eq!(status, 422, "{v}");
    error(&v, "execution");
    let (status, v) = query.get_json("/api/v1/query", &[("query", "up"), ("dedup", "maybe")]);
    assert_eq!(status, 400);
    error(&v, "bad_data");

    // Health, readiness and metrics.
    assert_eq!(common::get(query.http, "/-/healthy").unwrap().status, 200);
    let m = common::get(query.http, "/metrics").unwrap();
    assert_eq!(m.status, 200);
    assert!(m.body.contains("http_requests_total{"), "{}", m.body);
    assert!(m.body.contains("thanos_store_nodes_grpc_connections{"));
    let index = common::get(query.http, "/").unwrap();
    assert_eq!(index.status, 200);
    assert!(
        index.body.contains(r#"<script src="static/app.js">"#),
        "{}",
        index.body
    );
    let js = common::get(query.http, "/static/app.js").unwrap();
    assert_eq!(js.status, 200);
    assert!(js.body.contains("api/v1/stores"));
}

/// `cairn up` answers PromQL over what was written to it.
#[test]
fn cairn_up_serves_promql_over_its_receiver() {
    let dir = tempfile::tempdir().unwrap();
    let addr = || -> SocketAddr {
        format!("127.0.0.1:{}", common::free_port())
            .parse()
            .unwrap()
    };
    let (rw, http, grpc, promql) = (addr(), addr(), addr(), addr());
    let (store_grpc, store_http, compact_http) = (addr(), addr(), addr());
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"));
    cmd.arg("up")
        .arg(format!("--data-dir={}", dir.path().join("data").display()))
        .arg(format!("--remote-write.address={rw}"))
        .arg(format!("--http-address={http}"))
        .arg(format!("--grpc-address={grpc}"))
        .arg(format!("--query.http-address={promql}"))
        .arg(format!("--store.grpc-address={store_grpc}"))
        .arg(format!("--store.http-address={store_http}"))
        .arg(format!("--compact.http-address={compact_http}"));
    let _up = common::Proc::spawn("cairn-up", &mut cmd, dir.path());
    common::wait_until(Duration::from_secs(30), "cairn up ready", || {
        matches!(common::get(http, "/-/ready"), Ok(r) if r.status == 200)
            && matches!(common::get(promql, "/-/ready"), Ok(r) if r.status == 200)
            && matches!(common::get(store_http, "/-/ready"), Ok(r) if r.status == 200)
            && matches!(common::get(compact_http, "/-/ready"), Ok(r) if r.status == 200)
    });
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    remote_write(
        rw,
        None,
        &[(
            vec![("__name__".into(), "up_test".into())],
            vec![(now - 1000, 42.0)],
        )],
    );
    let t = format!("{}", now as f64 / 1000.0);
    common::wait_until(Duration::from_secs(10), "the sample via PromQL", || {
        let (status, v) = common::get_json(
            promql,
            "/api/v1/query",
            &[("query", "up_test"), ("time", &t)],
        );
        status == 200 && v["data"]["result"][0]["value"][1] == "42"
    });
}

/// Endpoints from `--endpoint.sd-files` are used, and a change to the file is picked up.
#[test]
fn file_sd_endpoints_are_read_and_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let receivers: Vec<Cairn> = ["a", "b"]
        .iter()
        .map(|name| {
            let d = dir.path().join(name);
            std::fs::create_dir_all(&d).unwrap();
            let r = Cairn::receive(&d, &[&format!("--label=site=\"{name}\"")]);
            remote_write(
                r.remote_write,
                None,
                &[(
                    vec![("__name__".into(), format!("sd_metric_{name}"))],
                    vec![(now - 1000, 1.0)],
                )],
            );
            r
        })
        .collect();
    let sd_dir = dir.path().join("sd");
    std::fs::create_dir_all(&sd_dir).unwrap();
    let sd_file = sd_dir.join("endpoints.yml");
    std::fs::write(&sd_file, format!("- targets: ['{}']\n", receivers[0].grpc)).unwrap();
    let query = CairnQuery::start(
        dir.path(),
        &[],
        &[
            &format!("--endpoint.sd-files={}", sd_dir.join("*.yml").display()),
            "--endpoint.sd-interval=200ms",
        ],
    );
    let names = || {
        let (status, v) = query.get_json("/api/v1/label/__name__/values", &[]);
        assert_eq!(status, 200, "{v}");
        v["data"].clone()
    };
    assert_eq!(names(), serde_json::json!(["sd_metric_a"]));
    std::fs::write(
        &sd_file,
        format!(
            "- targets: ['{}']\n- targets: ['{}']\n",
            receivers[0].grpc, receivers[1].grpc
        ),
    )
    .unwrap();
    common::wait_until(Duration::from_secs(10), "the second endpoint", || {
        names() == serde_json::json!(["sd_metric_a", "sd_metric_b"])
    });
    let (_, v) = query.get_json("/api/v1/stores", &[]);
    let stores = v["data"]["receive"].as_array().unwrap();
    assert_eq!(stores.len(), 2, "{v}");
}
