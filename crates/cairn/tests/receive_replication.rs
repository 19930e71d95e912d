//! A pool of `cairn receive` processes on loopback sharing one hashrings file, replication
//! factor 3: every series lands on three nodes; one node down changes nothing for the client
//! and hinted handoff heals it when it returns; two down is a 503 that a retry gets past once a
//! node is back; a slow node does not slow the answers; the pool grows from 3 to 5 nodes by
//! editing the file while writes run.

mod common;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{
    remote_write_request, store_samples, vmagent, wait_until, Cairn, DelayProxy, ExpositionServer,
    Ports, ReceivePool,
};

/// These tests start several processes each; run them one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const TENANT: &str = "edge-1";
const SERIES: usize = 40;

/// Rounds are this far apart.
const ROUND_MS: i64 = 30_000;

/// Rounds of the outage test are this far apart: the rounds a node misses while it is down then
/// span 80 minutes, more than the out-of-order window (10m) and than the half block (1h) a head
/// accepts behind its newest sample, as in a long outage.
const LONG_ROUND_MS: i64 = 120_000;

/// The first round's timestamp: 45 minutes ago (writes must be within the head's range, which a
/// real client's current samples set).
fn base_ts() -> i64 {
    static BASE: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *BASE.get_or_init(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        (now - 45 * 60 * 1000) / 1000 * 1000
    })
}

fn samples(pool: &ReceivePool, i: usize) -> BTreeMap<String, Vec<(i64, u64)>> {
    store_samples(pool.node(i).grpc, "test_metric", &["replica", "tenant_id"])
}

fn pending_hints(pool: &ReceivePool, i: usize) -> f64 {
    pool.node(i).metric_sum("cairn_receive_hints_pending{")
}

/// Round `r` of the test load: one sample per series at `base_ts() + r * step`.
fn round(r: i64, step: i64) -> Vec<common::WriteSeries> {
    (0..SERIES)
        .map(|i| {
            (
                vec![
                    ("__name__".to_string(), "test_metric".to_string()),
                    ("series".to_string(), format!("s{i:03}")),
                ],
                vec![(base_ts() + r * step, r as f64 + i as f64 / 1000.0)],
            )
        })
        .collect()
}

/// What the store should hold after rounds `rounds`.
fn expected(rounds: std::ops::Range<i64>, step: i64) -> BTreeMap<String, Vec<(i64, u64)>> {
    let mut out: BTreeMap<String, Vec<(i64, u64)>> = BTreeMap::new();
    for r in rounds {
        for (labels, samples) in round(r, step) {
            let key: Vec<String> = labels.iter().map(|(n, v)| format!("{n}={v}")).collect();
            out.entry(key.join(","))
                .or_default()
                .extend(samples.iter().map(|&(t, v)| (t, v.to_bits())));
        }
    }
    out
}

fn write_round(addr: std::net::SocketAddr, r: i64, step: i64) -> common::HttpResponse {
    remote_write_request(addr, TENANT, &round(r, step)).unwrap()
}

#[test]
fn rf3_replicates_survives_a_dead_node_and_hinted_handoff_heals_it() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut pool = ReceivePool::new(dir.path(), 3, None);
    pool.write_ring(&pool.endpoints);
    for i in 0..3 {
        pool.start(i);
    }

    // (a) A real client (vmagent) writing to one node: its series reach all three.
    let expo = ExpositionServer::start(
        "cairn_e2e_scraped{kind=\"a\"} 1\ncairn_e2e_scraped{kind=\"b\"} 2\n".into(),
    );
    let url = format!("http://{}/api/v1/receive", pool.node(0).remote_write);
    let vm = vmagent(
        dir.path(),
        "edge",
        expo.addr,
        &url,
        &[format!("-remoteWrite.headers=THANOS-TENANT:{TENANT}")],
    );
    wait_until(
        Duration::from_secs(40),
        "vmagent's series on all three nodes",
        || {
            (0..3).all(|i| {
                store_samples(
                    pool.node(i).grpc,
                    "cairn_e2e_scraped",
                    &["replica", "tenant_id"],
                )
                .len()
                    == 2
            })
        },
    );
    drop(vm);

    // All healthy: every series on all three nodes, whichever node took the write.
    for r in 0..20 {
        let resp = write_round(pool.node(r as usize % 3).remote_write, r, LONG_ROUND_MS);
        assert_eq!(resp.status, 204, "round {r}: {}", resp.body);
    }
    let want = expected(0..20, LONG_ROUND_MS);
    for i in 0..3 {
        assert_eq!(samples(&pool, i), want, "node {i} after healthy writes");
    }
    assert!(
        pool.node(0)
            .metric_sum("thanos_receive_replications_total{result=\"success\"}")
            > 0.0
    );

    // (b) One node killed: writes still succeed, nothing acknowledged is lost.
    pool.kill(2);
    for r in 20..60 {
        let resp = write_round(pool.node(r as usize % 2).remote_write, r, LONG_ROUND_MS);
        assert!(
            (200..300).contains(&resp.status),
            "round {r} with a node down: {} {}",
            resp.status,
            resp.body
        );
    }
    let want = expected(0..60, LONG_ROUND_MS);
    for i in 0..2 {
        assert_eq!(samples(&pool, i), want, "node {i} with node 2 down");
    }
    assert!(
        pending_hints(&pool, 0) + pending_hints(&pool, 1) > 0.0,
        "hints were queued"
    );

    // (e) The node comes back: hinted handoff brings it to the same samples as its peers.
    pool.start(2);
    wait_until(Duration::from_secs(60), "hint queues to drain", || {
        pending_hints(&pool, 0) == 0.0 && pending_hints(&pool, 1) == 0.0
    });
    assert_eq!(samples(&pool, 2), want, "node 2 after hinted handoff");
    assert!(
        pool.node(0)
            .metric_sum("cairn_receive_hints_delivered_total")
            > 0.0
    );
    for i in 0..3 {
        let log = pool.node(i).proc.log_text();
        assert!(!log.contains("panicked"), "node {i}:\n{log}");
    }
}

#[test]
fn two_nodes_down_is_503_and_a_retry_succeeds_once_one_is_back() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut pool = ReceivePool::new(dir.path(), 3, None);
    pool.write_ring(&pool.endpoints);
    for i in 0..3 {
        pool.start(i);
    }
    assert_eq!(
        write_round(pool.node(0).remote_write, 0, ROUND_MS).status,
        204
    );
    pool.kill(1);
    pool.kill(2);
    let resp = write_round(pool.node(0).remote_write, 1, ROUND_MS);
    assert_eq!(resp.status, 503, "{}", resp.body);
    assert!(
        resp.body.contains("quorum (2 of 3) not reached"),
        "{}",
        resp.body
    );

    pool.start(1);
    let started = Instant::now();
    let mut last = (0, String::new());
    while started.elapsed() < Duration::from_secs(40) {
        let resp = write_round(pool.node(0).remote_write, 1, ROUND_MS);
        if resp.status == 204 {
            break;
        }
        // A remote-write client retries 5xx only.
        assert!(resp.status >= 500, "{} {}", resp.status, resp.body);
        last = (resp.status, resp.body);
        std::thread::sleep(Duration::from_millis(250));
    }
    let resp = write_round(pool.node(0).remote_write, 2, ROUND_MS);
    assert_eq!(resp.status, 204, "after retries ({last:?}): {}", resp.body);
    let want = expected(0..3, ROUND_MS);
    assert_eq!(samples(&pool, 0), want);
    wait_until(Duration::from_secs(30), "node 1 to catch up", || {
        samples(&pool, 1) == want
    });
}

#[test]
fn a_replica_slowed_by_5s_does_not_delay_answers() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<Ports> = (0..3).map(|_| Ports::new()).collect();
    // Node 2 is reached through a proxy that holds every byte for 5 s.
    let proxy = DelayProxy::start(ports[2].grpc, Duration::from_secs(5));
    let endpoints = vec![
        ports[0].grpc.to_string(),
        ports[1].grpc.to_string(),
        proxy.addr.to_string(),
    ];
    let mut pool = ReceivePool::new(dir.path(), 3, Some(endpoints));
    pool.ports = ports;
    pool.write_ring(&pool.endpoints);
    for i in 0..3 {
        pool.start(i);
    }
    let mut latencies = Vec::new();
    for r in 0..100 {
        let started = Instant::now();
        let resp = write_round(pool.node(r as usize % 2).remote_write, r, ROUND_MS);
        latencies.push(started.elapsed());
        assert_eq!(resp.status, 204, "round {r}: {}", resp.body);
    }
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100 - 1];
    let max = *latencies.last().unwrap();
    eprintln!(
        "client latency with a 5 s replica: p50 {:?} p99 {p99:?} max {max:?}",
        latencies[50]
    );
    assert!(p99 < Duration::from_secs(1), "p99 {p99:?}");
    let want = expected(0..100, ROUND_MS);
    assert_eq!(samples(&pool, 0), want);
    assert_eq!(samples(&pool, 1), want);
    // The slow replica was in the path all along, and catches up.
    let started = Instant::now();
    wait_until(
        Duration::from_secs(90),
        "the slow replica to catch up",
        || samples(&pool, 2) == want,
    );
    eprintln!("the slow replica caught up after {:?}", started.elapsed());
}

#[test]
fn the_pool_grows_from_3_to_5_nodes_while_writes_run() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut pool = ReceivePool::new(dir.path(), 5, None);
    pool.write_ring(&pool.endpoints[..3]);
    for i in 0..5 {
        pool.start(i);
    }
    let pids: Vec<u32> = (0..5).map(|i| pool.node(i).proc.child.id()).collect();
    let mut grown_at = None;
    for r in 0..80 {
        if r == 30 {
            pool.write_ring(&pool.endpoints);
            grown_at = Some(Instant::now());
        }
        let resp = write_round(pool.node(r as usize % 3).remote_write, r, ROUND_MS);
        assert_eq!(resp.status, 204, "round {r}: {}", resp.body);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(grown_at.unwrap().elapsed() > Duration::from_secs(2));
    // No restarts: the same processes, and every node reloaded the file.
    for (i, pid) in pids.iter().enumerate() {
        assert_eq!(pool.node(i).proc.child.id(), *pid);
        assert_eq!(
            pool.node(i).metric_sum("thanos_receive_hashring_nodes{"),
            5.0,
            "node {i} uses the grown ring"
        );
    }
    // A broken edit is refused: the old (grown) ring stays and writes go on.
    std::fs::write(
        &pool.ring_file,
        common::ring_json(&[pool.endpoints[0].clone(), pool.endpoints[0].clone()]),
    )
    .unwrap();
    wait_until(
        Duration::from_secs(10),
        "the broken file to be refused",
        || {
            pool.node(0)
                .metric_sum("thanos_receive_hashrings_file_errors_total")
                >= 1.0
        },
    );
    assert_eq!(
        pool.node(0)
            .metric_sum("thanos_receive_config_last_reload_successful"),
        0.0
    );
    assert_eq!(
        pool.node(0).metric_sum("thanos_receive_hashring_nodes{"),
        5.0
    );
    assert_eq!(
        write_round(pool.node(1).remote_write, 80, ROUND_MS).status,
        204
    );
    assert!(pool
        .node(0)
        .proc
        .log_text()
        .contains("hashrings file refused"));

    // The new nodes took their share, and the last round sits on exactly three nodes per series.
    let held: Vec<BTreeMap<String, Vec<(i64, u64)>>> = (0..5).map(|i| samples(&pool, i)).collect();
    for (i, h) in held.iter().enumerate().skip(3) {
        assert!(
            h.len() >= SERIES / 5,
            "node {i} holds only {} series",
            h.len()
        );
    }
    let last_ts = base_ts() + 80 * ROUND_MS;
    for key in expected(0..1, ROUND_MS).keys() {
        let copies = held
            .iter()
            .filter(|h| {
                h.get(key)
                    .is_some_and(|s| s.iter().any(|&(t, _)| t == last_ts))
            })
            .count();
        assert_eq!(copies, 3, "{key}");
    }
}

#[test]
fn a_router_only_node_forwards_everything_and_stores_nothing() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut pool = ReceivePool::new(dir.path(), 3, None);
    pool.write_ring(&pool.endpoints);
    for i in 0..3 {
        pool.start(i);
    }
    // No --receive.local-endpoint: router mode. It forwards uncompressed (the ingestors
    // compress theirs), which the ingestors take as well.
    let router_dir = dir.path().join("router");
    std::fs::create_dir_all(&router_dir).unwrap();
    let ring = format!("--receive.hashrings-file={}", pool.ring_file.display());
    let router = Cairn::receive(
        &router_dir,
        &[
            &ring,
            "--receive.replication-factor=3",
            "--receive.grpc-compression=none",
        ],
    );
    for r in 0..5 {
        let resp = write_round(router.remote_write, r, ROUND_MS);
        assert_eq!(resp.status, 204, "{}", resp.body);
    }
    let want = expected(0..5, ROUND_MS);
    wait_until(
        Duration::from_secs(10),
        "all three ingestors to hold every sample",
        || (0..3).all(|i| samples(&pool, i) == want),
    );
    assert!(store_samples(router.grpc, "test_metric", &[]).is_empty());
    assert!(router.metric_sum("thanos_receive_forward_requests_total{") >= 15.0);
}
