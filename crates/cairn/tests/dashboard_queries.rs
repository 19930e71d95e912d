//! Every query of the Grafana dashboard (`deploy/grafana`) asked through `cairn query` against a
//! running system: a three-receiver RF=3 pool shipping to a local S3 server, a store gateway and
//! a compactor over that bucket, and the query layer over all of them. Prometheus 2.42 in agent
//! mode scrapes every component with the job and pod labels the Kubernetes ServiceMonitor gives
//! them and remote-writes into the pool, so the dashboard reads Cairn's own metrics through
//! Cairn. Each query must parse and return at least one series.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    free_port, get_json, require_binary, CairnCompact, CairnQuery, CairnStore, Proc, ReceivePool,
    S3Server,
};

/// Every target expression of every panel (rows included).
fn dashboard_queries() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/grafana");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let d: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let mut panels: Vec<serde_json::Value> = d["panels"].as_array().unwrap().clone();
        while let Some(p) = panels.pop() {
            panels.extend(p["panels"].as_array().cloned().unwrap_or_default());
            for t in p["targets"].as_array().into_iter().flatten() {
                out.push(t["expr"].as_str().unwrap().to_string());
            }
        }
    }
    assert!(out.len() >= 20, "{out:?}");
    out
}

/// A scrape job of the agent: `job` with one static target per `(pod, address)`.
fn scrape_job(job: &str, targets: &[(String, SocketAddr)]) -> String {
    let mut s = format!("  - job_name: {job}\n    static_configs:\n");
    for (pod, addr) in targets {
        s.push_str(&format!(
            "      - targets: ['{addr}']\n        labels: {{namespace: monitoring, pod: {pod}}}\n"
        ));
    }
    s
}

#[test]
fn every_dashboard_query_returns_data_from_a_running_pool() {
    let queries = dashboard_queries();
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(dir.path(), &dir.path().join("s3"), free_port(), "metrics");
    let yaml = s3.objstore_yaml("metrics");

    let mut pool = ReceivePool::new(dir.path(), 3, None);
    pool.write_ring(&pool.endpoints.clone());
    // Short blocks, so that blocks reach the bucket (and the store and compactor) within the test.
    pool.extra = vec![
        "--tsdb.block-duration=2s".into(),
        format!("--objstore.config={yaml}"),
    ];
    pool.start_all();
    let store = CairnStore::start(dir.path(), &yaml, &[]);
    let compact = CairnCompact::start(
        dir.path(),
        &yaml,
        &[
            "--wait",
            "--wait-interval=2s",
            "--deduplication.replica-label=replica",
        ],
    );
    let mut endpoints: Vec<SocketAddr> = (0..3).map(|i| pool.node(i).grpc).collect();
    endpoints.push(store.grpc);
    let query = CairnQuery::start(dir.path(), &endpoints, &["--query.replica-label=replica"]);

    let receivers: Vec<(String, SocketAddr)> = (0..3)
        .map(|i| (format!("cairn-receive-{i}"), pool.node(i).http))
        .collect();
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n{}{}{}{}remote_write:\n  - url: http://{}/api/v1/receive\n    queue_config:\n      batch_send_deadline: 1s\n",
        scrape_job("cairn-receive", &receivers),
        scrape_job("cairn-query", &[("cairn-query-0".into(), query.http)]),
        scrape_job("cairn-store", &[("cairn-store-0".into(), store.http)]),
        scrape_job("cairn-compact", &[("cairn-compact-0".into(), compact.http)]),
        pool.node(0).remote_write,
    );
    let config_file = dir.path().join("agent.yml");
    std::fs::write(&config_file, config).unwrap();
    let _agent = Proc::spawn(
        "prometheus-agent",
        Command::new(require_binary("/usr/bin/prometheus", "prometheus"))
            .arg("--enable-feature=agent")
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.agent.path={}",
                dir.path().join("agent").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{}", free_port())),
        dir.path(),
    );

    // Some PromQL traffic for the query-latency panel, and Series calls for the store's cache.
    let ask = |q: &str| {
        let (status, v) = get_json(query.http, "/api/v1/query", &[("query", q)]);
        assert_eq!(status, 200, "{q}: {v}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    };
    let mut missing: Vec<String> = queries.clone();
    let deadline = Instant::now() + Duration::from_secs(90);
    while !missing.is_empty() && Instant::now() < deadline {
        ask("up");
        missing.retain(|q| ask(q).is_empty());
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        missing.is_empty(),
        "no data after 90 s for {} of {} dashboard queries: {missing:#?}\nscrapes: {:?}",
        missing.len(),
        queries.len(),
        ask("up")
    );
}
