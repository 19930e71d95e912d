//! The limits file sets per-tenant limits and is re-read when it changes; an invalid edit keeps
//! the old limits. `/api/v1/status/tsdb` reports the tenant's head in Prometheus' JSON shape.

mod common;

use std::time::Duration;

use common::{http, snappy, wait_until, Cairn};
use proto::remote_write::{encode_v1, Label, Sample, TimeSeries, WriteRequest};

const T0: i64 = 1_700_000_000_000;

fn body(names: &[&str], t: i64) -> Vec<u8> {
    let timeseries = names
        .iter()
        .map(|n| TimeSeries {
            labels: vec![
                Label {
                    name: "__name__",
                    value: n,
                },
                Label {
                    name: "job",
                    value: "j",
                },
            ],
            samples: vec![Sample {
                value: 1.0,
                timestamp: t,
            }],
            ..Default::default()
        })
        .collect();
    snappy(&encode_v1(&WriteRequest {
        timeseries,
        metadata: vec![],
    }))
}

#[test]
fn limits_file_reloads_and_status_reports_the_head() {
    let dir = tempfile::tempdir().unwrap();
    let limits = dir.path().join("limits.yaml");
    std::fs::write(&limits, "write:\n  default:\n    head_series_limit: 2\n  tenants:\n    big:\n      head_series_limit: 100\n").unwrap();
    let cairn = Cairn::receive(
        dir.path(),
        &[&format!(
            "--receive.limits-config-file={}",
            limits.display()
        )],
    );
    let post = |tenant: &str, b: &[u8]| {
        http(
            cairn.remote_write,
            "POST",
            "/api/v1/receive",
            &[("Content-Encoding", "snappy"), ("THANOS-TENANT", tenant)],
            b,
        )
        .unwrap()
    };

    assert_eq!(post("small", &body(&["a", "b"], T0)).status, 204);
    let r = post("small", &body(&["a", "c"], T0 + 1000));
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(
        r.body.contains("limit of 2 active series") && r.body.contains("accepted 1 of 2"),
        "{}",
        r.body
    );
    assert_eq!(post("big", &body(&["a", "b", "c"], T0)).status, 204);

    // Raise the default; the receiver picks it up without a restart.
    std::fs::write(&limits, "write:\n  default:\n    head_series_limit: 3\n").unwrap();
    wait_until(Duration::from_secs(20), "the new limits", || {
        post("small", &body(&["c"], T0 + 2000)).status == 204
    });
    // A broken edit is refused; the limits in force stay.
    std::fs::write(&limits, "write: {default: [").unwrap();
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(post("small", &body(&["d"], T0 + 3000)).status, 429);
    assert_eq!(common::get(cairn.http, "/-/healthy").unwrap().status, 200);

    let st = http(
        cairn.http,
        "GET",
        "/api/v1/status/tsdb",
        &[("THANOS-TENANT", "small")],
        &[],
    )
    .unwrap();
    assert_eq!(st.status, 200);
    let json: serde_json::Value = serde_json::from_str(&st.body).unwrap();
    assert_eq!(json["status"], "success");
    let data = &json["data"];
    assert_eq!(data["headStats"]["numSeries"], 3);
    assert_eq!(data["headStats"]["minTime"], T0);
    assert_eq!(data["headStats"]["maxTime"], T0 + 2000);
    assert_eq!(data["seriesCountByMetricName"].as_array().unwrap().len(), 3);
    assert_eq!(
        data["labelValueCountByLabelName"][0],
        serde_json::json!({"name": "__name__", "value": 3})
    );
    assert_eq!(
        data["seriesCountByLabelValuePair"][0],
        serde_json::json!({"name": "job=j", "value": 3})
    );
    let st = common::get(cairn.http, "/api/v1/status/tsdb?tenant=big&limit=1").unwrap();
    let json: serde_json::Value = serde_json::from_str(&st.body).unwrap();
    assert_eq!(
        json["data"]["seriesCountByMetricName"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let st = common::get(cairn.http, "/api/v1/status/tsdb?tenant=nobody").unwrap();
    assert_eq!(st.status, 404);
}

/// The guards from the design's incidents: a per-receiver limit across tenants answers 429 with
/// a message naming it, `/api/v1/status/tsdb?tenant=*` gives the node's totals, and /metrics
/// shows the TSDB volume's free space, the shipper's backlog in bytes and the hashrings file's
/// problems (a default hashring missing receivers).
#[test]
fn node_limit_node_totals_and_incident_guards() {
    let dir = tempfile::tempdir().unwrap();
    let ring = dir.path().join("hashrings.json");
    let cairn_ports = common::Ports::new();
    let me = cairn_ports.grpc.to_string();
    // The tenant hashring lists two receivers the default hashring lacks: the file loads (one
    // replica), but it is the "hashring missing nodes" outage in the making.
    std::fs::write(
        &ring,
        format!(
            r#"[{{"hashring": "team", "tenants": ["team"], "endpoints": ["{me}", "127.0.0.1:1", "127.0.0.1:2"]}},
                {{"hashring": "default", "endpoints": ["{me}"]}}]"#
        ),
    )
    .unwrap();
    let cairn = Cairn::receive_on(
        dir.path(),
        cairn_ports,
        &[
            "--receive.node-head-series-limit=4",
            &format!("--receive.hashrings-file={}", ring.display()),
            &format!("--receive.local-endpoint={me}"),
        ],
    );
    let post = |tenant: &str, b: &[u8]| {
        http(
            cairn.remote_write,
            "POST",
            "/api/v1/receive",
            &[("Content-Encoding", "snappy"), ("THANOS-TENANT", tenant)],
            b,
        )
        .unwrap()
    };
    assert_eq!(post("a", &body(&["x", "y"], T0)).status, 204);
    assert_eq!(post("b", &body(&["x", "y"], T0)).status, 204);
    // Four series across two tenants: the node is full for new series of any tenant...
    let r = post("c", &body(&["z"], T0));
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(
        r.body
            .contains("this receiver is at its limit of 4 active series across tenants"),
        "{}",
        r.body
    );
    // ... and still takes samples of the series it has.
    assert_eq!(post("a", &body(&["x"], T0 + 1000)).status, 204);

    let st = common::get(cairn.http, "/api/v1/status/tsdb?tenant=*").unwrap();
    assert_eq!(st.status, 200, "{}", st.body);
    let json: serde_json::Value = serde_json::from_str(&st.body).unwrap();
    let data = &json["data"];
    assert_eq!(data["headStats"]["numSeries"], 4);
    // x and y in two tenants: two distinct values of __name__, each in two series.
    assert_eq!(
        data["labelValueCountByLabelName"][0],
        serde_json::json!({"name": "__name__", "value": 2})
    );
    assert_eq!(
        data["seriesCountByMetricName"][0],
        serde_json::json!({"name": "x", "value": 2})
    );
    assert_eq!(data["nodeHeadStats"]["numSeries"], 4);
    // A tenant's own status tells its share of the node too.
    let st = common::get(cairn.http, "/api/v1/status/tsdb?tenant=a").unwrap();
    let json: serde_json::Value = serde_json::from_str(&st.body).unwrap();
    assert_eq!(json["data"]["headStats"]["numSeries"], 2);
    assert_eq!(
        json["data"]["nodeHeadStats"]["tenants"],
        // c's TSDB was opened by its refused write and holds nothing.
        serde_json::json!([
            {"tenant": "a", "numSeries": 2},
            {"tenant": "b", "numSeries": 2},
            {"tenant": "c", "numSeries": 0}
        ])
    );

    let size = cairn
        .metric("cairn_receive_tsdb_volume_size_bytes")
        .unwrap();
    let free = cairn
        .metric("cairn_receive_tsdb_volume_available_bytes")
        .unwrap();
    assert!(size > 0.0 && free > 0.0 && free <= size, "{free} of {size}");
    assert_eq!(
        cairn.metric(r#"cairn_receive_hashring_problems{severity="incident"}"#),
        Some(1.0)
    );
    let skew = cairn
        .metric(r#"cairn_receive_hashring_skew{name="team"}"#)
        .unwrap();
    assert!((1.0..1.2).contains(&skew), "{skew}");
    assert!(
        cairn
            .proc
            .log_text()
            .contains("the hashrings file in use has a problem"),
        "{}",
        cairn.proc.log_text()
    );
}
