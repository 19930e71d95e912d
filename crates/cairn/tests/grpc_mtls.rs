//! Every gRPC hop over mutual TLS, with Thanos' flag names: three receivers (RF=3) forward to
//! each other, a store gateway serves a bucket, and `cairn query` reads them all. A peer
//! without a client certificate, with one from another CA, or in plaintext gets nothing.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{
    now_ms, remote_write_request, store_samples_over, wait_until, CairnQuery, CairnStore, Pki,
    ReceivePool,
};

const SERIES: usize = 25;

#[test]
fn every_grpc_hop_is_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = Pki::generate(d);
    let other_ca = tempfile::tempdir().unwrap();
    let stranger = Pki::generate(other_ca.path());
    let p = |p: &std::path::Path| p.display().to_string();

    let server_tls = vec![
        format!("--grpc-server-tls-cert={}", p(&pki.server_cert)),
        format!("--grpc-server-tls-key={}", p(&pki.server_key)),
        format!("--grpc-server-tls-client-ca={}", p(&pki.ca)),
    ];
    let client_tls = |prefix: &str| {
        vec![
            format!("--{prefix}-tls-secure"),
            format!("--{prefix}-tls-cert={}", p(&pki.client_cert)),
            format!("--{prefix}-tls-key={}", p(&pki.client_key)),
            format!("--{prefix}-tls-ca={}", p(&pki.ca)),
        ]
    };

    let mut pool = ReceivePool::new(d, 3, None);
    pool.extra = server_tls.clone();
    pool.extra.extend(client_tls("remote-write.client"));
    pool.write_ring(&pool.endpoints.clone());
    pool.start_all();

    // A write to node 0 reaches quorum only if forwarding over mutual TLS works.
    let ts = now_ms() / 1000 * 1000;
    let series: Vec<common::WriteSeries> = (0..SERIES)
        .map(|i| {
            (
                vec![
                    ("__name__".to_string(), "tls_metric".to_string()),
                    ("series".to_string(), format!("s{i:02}")),
                ],
                vec![(ts, i as f64)],
            )
        })
        .collect();
    let mut last = String::new();
    wait_until(
        Duration::from_secs(30),
        "a write acknowledged by quorum",
        || match remote_write_request(pool.node(0).remote_write, "default-tenant", &series) {
            Ok(r) => {
                last = format!("{} {}", r.status, r.body);
                r.status / 100 == 2
            }
            Err(e) => {
                last = e.to_string();
                false
            }
        },
    );
    // Both forwards were made (the answer came at quorum; the second may finish after it).
    wait_until(Duration::from_secs(10), "two forwards counted", || {
        pool.node(0)
            .metric_sum("thanos_receive_forward_requests_total{")
            >= 2.0
    });
    assert!(last.starts_with("204"), "{last}");

    // Every replica holds every series (all three are owners with RF=3), read over mTLS.
    let client = tls::ClientTls::load(&tls::ClientFiles {
        cert: Some(pki.client_cert.clone()),
        key: Some(pki.client_key.clone()),
        ca: Some(pki.ca.clone()),
        ..Default::default()
    })
    .unwrap();
    for i in 0..3 {
        let grpc = pool.node(i).grpc;
        wait_until(
            Duration::from_secs(10),
            "every series on the replica",
            || {
                store_samples_over(grpc, Some(&client), "tls_metric", &["replica", "tenant_id"])
                    .unwrap()
                    .len()
                    == SERIES
            },
        );
    }

    // Refused: no client certificate, a certificate from another CA, plaintext.
    let grpc = pool.node(1).grpc;
    let anonymous = tls::ClientTls::load(&tls::ClientFiles {
        ca: Some(pki.ca.clone()),
        ..Default::default()
    })
    .unwrap();
    let foreign = tls::ClientTls::load(&tls::ClientFiles {
        cert: Some(stranger.client_cert.clone()),
        key: Some(stranger.client_key.clone()),
        ca: Some(pki.ca.clone()),
        ..Default::default()
    })
    .unwrap();
    for (who, tls) in [
        ("no client certificate", Some(&anonymous)),
        ("a foreign certificate", Some(&foreign)),
        ("plaintext", None::<&Arc<tls::ClientTls>>),
    ] {
        let r = store_samples_over(grpc, tls, "tls_metric", &[]);
        assert!(r.is_err(), "{who} was let in");
    }

    // A store gateway with the same server flags, over an empty bucket.
    let bucket = d.join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    let yaml = format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        bucket.display()
    );
    let store_args: Vec<&str> = server_tls.iter().map(String::as_str).collect();
    let store = CairnStore::start(d, &yaml, &store_args);

    let mut endpoints: Vec<_> = (0..3).map(|i| pool.node(i).grpc).collect();
    endpoints.push(store.grpc);
    let mut args = client_tls("grpc-client");
    args.push("--query.replica-label=replica".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let query = CairnQuery::start(d, &endpoints, &args);
    wait_until(Duration::from_secs(15), "four healthy stores", || {
        let (_, v) = query.get_json("/api/v1/stores", &[]);
        let all: Vec<&serde_json::Value> = v["data"]
            .as_object()
            .map(|m| m.values().flat_map(|l| l.as_array().unwrap()).collect())
            .unwrap_or_default();
        all.len() == 4 && all.iter().all(|s| s["health"] == "up")
    });
    let (status, v) = query.get_json("/api/v1/query", &[("query", "count(tls_metric)")]);
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["data"]["result"][0]["value"][1],
        SERIES.to_string(),
        "{v}"
    );
    assert!(v["warnings"].is_null(), "{v}");

    // A query layer without a client certificate reads nothing, and says why.
    let ca_only = [
        "--grpc-client-tls-secure".to_string(),
        format!("--grpc-client-tls-ca={}", p(&pki.ca)),
    ];
    let ca_only: Vec<&str> = ca_only.iter().map(String::as_str).collect();
    let outsider = CairnQuery::start(d, &endpoints[..1], &ca_only);
    let (status, v) = outsider.get_json("/api/v1/query", &[("query", "count(tls_metric)")]);
    let empty = v["data"]["result"].as_array().is_none_or(|r| r.is_empty());
    assert!(empty, "{status} {v}");
    let (_, v) = outsider.get_json("/api/v1/stores", &[]);
    assert!(v.to_string().contains("\"down\""), "{v}");

    // The query layer's HTTP port over mutual TLS too: Grafana with a client certificate
    // gets answers, a client without one gets no handshake.
    let http: std::net::SocketAddr = format!("127.0.0.1:{}", common::free_port())
        .parse()
        .unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"));
    cmd.arg("query")
        .arg(format!("--http-address={http}"))
        .arg(format!("--http.server-tls-cert={}", p(&pki.server_cert)))
        .arg(format!("--http.server-tls-key={}", p(&pki.server_key)))
        .arg(format!("--http.server-tls-client-ca={}", p(&pki.ca)))
        .args(endpoints.iter().map(|e| format!("--endpoint={e}")))
        .args(&args)
        .arg("--endpoint.info-interval=200ms");
    let _https_query = common::Proc::spawn("cairn-query-https", &mut cmd, d);
    let path = format!(
        "/api/v1/query?{}",
        common::query_string(&[("query", "count(tls_metric)")])
    );
    wait_until(
        Duration::from_secs(30),
        "the HTTPS query port answers",
        || {
            common::https(pki.client_config(true), http, "GET", &path, &[], &[])
                .is_ok_and(|r| r.status == 200 && r.body.contains(&format!("\"{SERIES}\"")))
        },
    );
    assert!(common::https(pki.client_config(false), http, "GET", &path, &[], &[]).is_err());
    assert!(common::get(http, "/-/ready").map_or(true, |r| r.status != 200));
}
