//! Network faults between receivers, for real: three `cairn receive` processes (RF=3), each in
//! a network namespace of its own, joined by veth pairs to a bridge (see `common::netns`). A
//! writer in the test's namespace sends rounds of samples all along, retrying a failed request
//! as Prometheus would, while the network misbehaves:
//!
//! 1. one replica cut off from everything (nftables drops): writes go to the other two;
//! 2. an asymmetric partition: node 1 drops what node 0 sends, node 0 still hears node 1;
//! 3. 10% of the packets every node sends lost at random (nftables `numgen random`);
//! 4. 200 ms added to every byte node 0 and node 2 send to node 1's gRPC port (a delaying proxy
//!    that nftables DNAT puts in the path; this kernel has no `sch_netem`).
//!
//! The partitions must cost the client nothing (no request failed for good; retries, as
//! Prometheus makes them, are counted). At the end, once hinted
//! handoff has drained, every acknowledged sample is on all three replicas (read from each
//! node's StoreAPI) and comes back through `cairn query`.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::load::Writer;
use common::netns::Lab;
use common::now_ms;
use common::{ring_json, store_samples, wait_until, Cairn, CairnQuery, DelayProxy, Ports};

const SERIES: usize = 20;
/// Between two rounds of the writer.
const PAUSE: Duration = Duration::from_millis(50);
const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);
/// How long each fault lasts while the writer runs.
const FAULT: Duration = Duration::from_secs(8);

#[test]
fn acknowledged_samples_survive_partitions_loss_and_latency() {
    let dir = tempfile::tempdir().unwrap();
    let lab = Lab::new(3);
    let ports: Vec<Ports> = (0..3)
        .map(|i| {
            let ip = lab.ip(i);
            Ports {
                remote_write: (ip, 19291).into(),
                http: (ip, 10902).into(),
                grpc: (ip, 10901).into(),
            }
        })
        .collect();
    let endpoints: Vec<String> = ports.iter().map(|p| p.grpc.to_string()).collect();
    let ring = dir.path().join("hashrings.json");
    std::fs::write(&ring, ring_json(&endpoints)).unwrap();
    let nodes: Vec<Cairn> = (0..3)
        .map(|i| {
            let d = dir.path().join(format!("node{i}"));
            std::fs::create_dir_all(&d).unwrap();
            let args = [
                format!("--receive.hashrings-file={}", ring.display()),
                format!("--receive.local-endpoint={}", endpoints[i]),
                "--receive.replication-factor=3".to_string(),
                format!("--receive-forward-timeout={}s", FORWARD_TIMEOUT.as_secs()),
                format!("--label=replica=\"r{i}\""),
            ];
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            Cairn::receive_in(Some(&lab.ns(i)), &d, ports[i], &args)
        })
        .collect();
    let rw: Vec<SocketAddr> = ports.iter().map(|p| p.remote_write).collect();
    // Hints node `from` queued for node `to`: proof that a fault cut that path.
    let hints = |from: usize, to: usize| {
        nodes[from].metric_sum(&format!(
            "cairn_receive_hints_queued_total{{peer=\"{}\"}}",
            endpoints[to]
        ))
    };
    let mut w = Writer::new("net_metric", SERIES);
    let mut faults = 0;
    let mut phases: Vec<(&str, i64)> = Vec::new();

    assert_eq!(
        w.run(&rw, Duration::from_secs(2), PAUSE),
        0,
        "healthy network"
    );

    // 1. Node 2 cut off: writes go to the others, and none fails.
    phases.push(("partition", now_ms()));
    lab.isolate(2);
    faults += 1;
    let failed = w.run(&rw[..2], FAULT, PAUSE);
    lab.heal(2);
    assert!(
        hints(0, 2) > 0.0 && hints(1, 2) > 0.0,
        "the partition cut nothing"
    );
    assert_eq!(
        failed, 0,
        "a partitioned replica failed client writes: {:?}",
        w.errors
    );

    // 2. Node 1 drops node 0's packets; node 0 still receives node 1's.
    phases.push(("asymmetric", now_ms()));
    lab.drop_from(1, 0);
    faults += 1;
    let before = (hints(0, 1), hints(1, 0));
    let failed = w.run(&rw, FAULT, PAUSE);
    lab.heal(1);
    assert!(hints(0, 1) > before.0, "node 0 still reached node 1");
    assert_eq!(
        failed, 0,
        "an asymmetric partition failed client writes: {:?}",
        w.errors
    );

    // 3. 10% loss on every node's link.
    phases.push(("loss", now_ms()));
    for i in 0..3 {
        lab.loss(i, 10);
    }
    faults += 1;
    let failed_loss = w.run(&rw, FAULT, PAUSE);
    lab.heal_all();

    // 4. 200 ms on the way to node 1's gRPC port, from both its peers.
    let proxy = DelayProxy::start_on(
        lab.test_ip().into(),
        ports[1].grpc,
        Duration::from_millis(200),
    );
    phases.push(("latency", now_ms()));
    lab.detour(0, 1, 10901, proxy.addr);
    lab.detour(2, 1, 10901, proxy.addr);
    faults += 1;
    let failed_latency = w.run(&rw, FAULT, PAUSE);
    lab.heal_all();

    phases.push(("healed", now_ms()));
    // Healed. A forward still in flight either lands or times out into a hint within the
    // forward timeout; then hinted handoff catches every replica up.
    std::thread::sleep(FORWARD_TIMEOUT + Duration::from_secs(1));
    wait_until(Duration::from_secs(120), "every hint delivered", || {
        nodes
            .iter()
            .all(|n| n.metric_sum("cairn_receive_hints_pending{") == 0.0)
    });

    let mut lost = 0;
    for (i, p) in ports.iter().enumerate() {
        let missing = w.missing_in(&store_samples(
            p.grpc,
            "net_metric",
            &["replica", "tenant_id"],
        ));
        if missing > 0 {
            eprintln!(
                "node {i} misses {missing} acknowledged samples (phases began at {phases:?})"
            );
        }
        lost += missing;
    }

    // And through the query layer, de-duplicated.
    let grpc: Vec<SocketAddr> = ports.iter().map(|p| p.grpc).collect();
    let query = CairnQuery::start(dir.path(), &grpc, &["--query.replica-label=replica"]);
    let (status, v) = query.get_json("/api/v1/query", &[("query", "net_metric[10m]")]);
    assert_eq!(status, 200, "{v}");
    let lost_query = w.missing_in_query(&v);

    let reordered = nodes
        .iter()
        .map(|n| n.metric_sum("cairn_receive_forwards_reordered_total{") as u64)
        .sum::<u64>();
    eprintln!(
        "network faults: {faults} faults injected; {reordered} forwards re-sent after arriving out of order; {} requests ({} retries, {} failed: {failed_loss} under 10% loss, {failed_latency} under 200 ms latency); {} samples acknowledged; {lost} lost on replicas, {lost_query} lost through the query layer",
        w.requests,
        w.retries,
        w.failed,
        w.acked_samples(),
    );
    assert!(w.acked_samples() > 1000, "too little load to tell");
    if lost > 0 {
        for (i, n) in nodes.iter().enumerate() {
            for line in n.proc.log_text().lines() {
                if line.contains("WARN") || line.contains("ERROR") || line.contains("hint") {
                    eprintln!("node {i}: {line}");
                }
            }
        }
    }
    assert_eq!(lost, 0, "acknowledged samples missing on a replica");
    assert_eq!(
        lost_query, 0,
        "acknowledged samples missing through the query layer"
    );
}
