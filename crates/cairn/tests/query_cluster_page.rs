//! The cluster page of `cairn query` (issue #16) over a three-receiver pool with replication
//! factor 3: `/api/v1/status/cluster` shows each hashring member with its head series and
//! share of the pool's stored copies; a killed receiver shows down, with the hints the others
//! hold for it after a write; a hashring member no query endpoint reaches shows with unknown
//! health; and the page renders a row per member in headless Chromium.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{
    artifact_dir, chromium_dom, chromium_screenshot, free_port, remote_write, wait_until,
    CairnQuery, ReceivePool, WriteSeries,
};
use serde_json::Value;

fn batch(name: &str, n: usize) -> Vec<WriteSeries> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    (0..n)
        .map(|i| {
            (
                vec![
                    ("__name__".to_string(), name.to_string()),
                    ("series".to_string(), format!("s{i:02}")),
                ],
                vec![(now, i as f64)],
            )
        })
        .collect()
}

fn member<'a>(data: &'a Value, name: &str) -> &'a Value {
    data["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["member"] == name)
        .unwrap_or_else(|| panic!("no member {name} in {data}"))
}

#[test]
fn the_cluster_page_shows_members_shares_hints_and_missing_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let mut pool = ReceivePool::new(dir.path(), 3, None);
    pool.write_ring(&pool.endpoints);
    pool.start_all();
    remote_write(
        pool.node(0).remote_write,
        None,
        &batch("cluster_metric", 10),
    );

    let grpcs: Vec<_> = (0..3).map(|i| pool.node(i).grpc).collect();
    let query = CairnQuery::start(dir.path(), &grpcs, &[]);
    let cluster = || {
        let (status, v) = query.get_json("/api/v1/status/cluster", &[]);
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["status"], "success", "{v}");
        v["data"].clone()
    };

    // RF 3 over 3 nodes: every node stores every series, a third of the copies each.
    wait_until(
        Duration::from_secs(30),
        "three nodes reporting 10 series each",
        || {
            let d = cluster();
            d["headSeriesTotal"] == 30 && d["members"].as_array().unwrap().len() == 3
        },
    );
    let d = cluster();
    assert_eq!(d["replicationFactor"], 3, "{d}");
    assert_eq!(d["hashrings"].as_array().unwrap().len(), 1, "{d}");
    assert_eq!(d["hashrings"][0]["endpoints"].as_array().unwrap().len(), 3);
    assert!(d["hashrings"][0]["skew"].as_f64().unwrap() >= 1.0, "{d}");
    let mut shares = 0.0;
    for e in &pool.endpoints {
        let m = member(&d, e);
        assert_eq!(m["health"], "up", "{m}");
        assert_eq!(m["endpoint"], e.as_str(), "{m}");
        assert_eq!(m["node"]["headSeries"], 10, "{m}");
        let share = m["node"]["seriesShare"].as_f64().unwrap();
        assert!((share - 1.0 / 3.0).abs() < 1e-9, "{m}");
        shares += share;
        assert_eq!(m["hintsToward"]["pending"], 0, "{m}");
        assert_eq!(m["forwardErrors"], serde_json::json!([]), "{m}");
        assert!(m["node"]["volume"]["availableBytes"].as_u64().unwrap() > 0);
        assert_eq!(m["node"]["shipper"]["enabled"], false);
    }
    assert!((shares - 1.0).abs() < 1e-9, "{d}");
    // node0 took the write and replicated it: every series reached quorum.
    let r = &member(&d, &pool.endpoints[0])["node"]["replication"];
    assert_eq!(
        (r["success"].as_u64(), r["error"].as_u64()),
        (Some(10), Some(0))
    );
    assert_eq!(r["ratio"], 1.0);

    let profile = dir.path().join("chromium-profile");
    let url = format!("http://{}/cluster", query.http);
    let html = chromium_dom(&profile, &url);
    assert!(html.contains(r#"data-state="done""#), "{html}");
    assert_eq!(html.matches(r#"<tr class="member""#).count(), 3, "{html}");
    for e in &pool.endpoints {
        assert!(
            html.contains(&format!(r#"data-member="{e}""#)),
            "{e}: {html}"
        );
    }
    assert!(html.contains("Hashring default"), "{html}");
    assert!(html.contains("33.3%"), "{html}");

    // node2 dies; a write through node0 still reaches quorum, and node0 keeps node2's copies.
    pool.kill(2);
    let dead = pool.endpoints[2].clone();
    remote_write(pool.node(0).remote_write, None, &batch("cluster_after", 5));
    wait_until(
        Duration::from_secs(30),
        "node2 down with hints toward it",
        || {
            let d = cluster();
            let m = member(&d, &dead);
            m["health"] == "down" && m["hintsToward"]["pending"].as_u64() > Some(0)
        },
    );
    let d = cluster();
    let m = member(&d, &dead);
    assert_eq!(m["node"], Value::Null, "{m}");
    assert!(m["error"].as_str().is_some_and(|e| !e.is_empty()), "{m}");
    assert_eq!(
        m["hintsToward"]["holders"],
        serde_json::json!([pool.endpoints[0]]),
        "{m}"
    );
    assert_eq!(
        m["forwardErrors"][0]["from"],
        pool.endpoints[0].as_str(),
        "{m}"
    );
    // The two left share what they store.
    for e in &pool.endpoints[..2] {
        let share = member(&d, e)["node"]["seriesShare"].as_f64().unwrap();
        assert!((share - 0.5).abs() < 1e-9, "{d}");
    }
    let html = chromium_dom(&profile, &url);
    assert_eq!(html.matches(r#"<tr class="member""#).count(), 2, "{html}");
    assert_eq!(
        html.matches(r#"<tr class="member error""#).count(),
        1,
        "{html}"
    );
    assert!(html.contains(r#"class="health-down""#), "{html}");

    // A hashring member no endpoint of the query layer knows: the "missing nodes" case.
    let ghost = format!("127.0.0.1:{}", free_port());
    let mut ring = pool.endpoints.clone();
    ring.push(ghost.clone());
    pool.write_ring(&ring);
    wait_until(Duration::from_secs(30), "the unknown member listed", || {
        let d = cluster();
        d["members"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["member"] == ghost.as_str())
    });
    let d = cluster();
    let g = member(&d, &ghost);
    assert_eq!(g["health"], "unknown", "{g}");
    assert_eq!(g["endpoint"], Value::Null, "{g}");
    assert_eq!(g["inHashrings"], serde_json::json!(["default"]), "{g}");
    let html = chromium_dom(&profile, &url);
    assert!(
        html.contains(&format!(r#"data-member="{ghost}""#)),
        "{html}"
    );
    assert_eq!(
        html.matches(r#"<tr class="member error""#).count(),
        2,
        "{html}"
    );
    chromium_screenshot(
        &profile,
        &url,
        &artifact_dir().join("query-cluster-page.png"),
    );
}
