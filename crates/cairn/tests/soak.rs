//! The soak: a pool of receivers (RF=3) under steady load for `CAIRN_SOAK_SECS` (300 by
//! default; longer runs by setting it), with one node killed (SIGKILL) and restarted every
//! minute and the hashring growing from three nodes to four midway. At the end every
//! acknowledged sample is on at least a quorum of replicas (read from each node's StoreAPI)
//! and comes back through `cairn query` (`--deduplication.func=chain`), and the resident memory of the node that is never
//! killed shows no upward trend beyond what the head's new samples account for (least-squares
//! slope over the second half, reported).
//!
//! The writer retries as Prometheus does and sends to the nodes that are up, as a Service in
//! front of ready pods would.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::load::Writer;
use common::{store_samples, wait_until, CairnQuery, ReceivePool};

const SERIES: usize = 100;
const PAUSE: Duration = Duration::from_millis(100);
const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);

fn soak_duration() -> Duration {
    let secs = std::env::var("CAIRN_SOAK_SECS")
        .ok()
        .map(|s| {
            s.parse::<u64>()
                .expect("CAIRN_SOAK_SECS is a number of seconds")
        })
        .unwrap_or(300);
    Duration::from_secs(secs.max(60))
}

/// Resident set size of a process, in bytes.
fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Least-squares slope of `points` (seconds, bytes), in bytes per minute.
fn slope_per_minute(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), &(x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = points.iter().fold((0.0, 0.0), |(a, b), &(x, y)| {
        (a + (x - mx) * (y - my), b + (x - mx) * (x - mx))
    });
    if den == 0.0 {
        0.0
    } else {
        num / den * 60.0
    }
}

/// A cheap deterministic choice (no rand crate in the tests).
fn pick(seed: &mut u64, n: usize) -> usize {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    (*seed % n as u64) as usize
}

#[test]
fn a_pool_under_load_with_kills_and_a_hashring_edit_loses_nothing() {
    let duration = soak_duration();
    let dir = tempfile::tempdir().unwrap();
    let mut pool = ReceivePool::new(dir.path(), 4, None);
    pool.extra = vec![format!(
        "--receive-forward-timeout={}s",
        FORWARD_TIMEOUT.as_secs()
    )];
    let all = pool.endpoints.clone();
    pool.write_ring(&all[..3]);
    for i in 0..3 {
        pool.start(i);
    }
    let rw: Vec<SocketAddr> = pool.ports.iter().map(|p| p.remote_write).collect();

    // The writer sends to the nodes that are up.
    let up: Arc<Mutex<Vec<SocketAddr>>> = Arc::new(Mutex::new(rw[..3].to_vec()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (up, stop) = (up.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut w = Writer::new("soak_metric", SERIES);
            let mut k = 0;
            while !stop.load(Ordering::Relaxed) {
                let target = {
                    let up = up.lock().unwrap();
                    up[k % up.len()]
                };
                w.round(target);
                k += 1;
                std::thread::sleep(PAUSE);
            }
            w
        })
    };

    let started = Instant::now();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut kills = 0;
    let mut ring_edited = false;
    let mut next_kill = Duration::from_secs(30);
    let mut rss_node0: Vec<(f64, f64)> = Vec::new();
    while started.elapsed() < duration {
        std::thread::sleep(Duration::from_secs(2));
        let t = started.elapsed();
        if let Some(b) = rss(pool.node(0).proc.child.id()) {
            rss_node0.push((t.as_secs_f64(), b as f64));
        }
        if !ring_edited && t >= duration / 2 {
            // The pool grows: node 3 starts, then the hashrings file lists it.
            pool.start(3);
            pool.write_ring(&all);
            up.lock().unwrap().push(rw[3]);
            ring_edited = true;
        }
        if t >= next_kill && t + Duration::from_secs(15) < duration {
            // A node other than 0 (whose memory is watched) dies and comes back 5 s later.
            let running = if ring_edited { 4 } else { 3 };
            let victim = 1 + pick(&mut seed, running - 1);
            up.lock().unwrap().retain(|a| *a != rw[victim]);
            pool.kill(victim);
            kills += 1;
            std::thread::sleep(Duration::from_secs(5));
            pool.start(victim);
            up.lock().unwrap().push(rw[victim]);
            next_kill += Duration::from_secs(60);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let w = writer.join().unwrap();

    // Forwards in flight land or turn into hints within the forward timeout; then every hint
    // queue drains.
    std::thread::sleep(FORWARD_TIMEOUT + Duration::from_secs(1));
    wait_until(Duration::from_secs(120), "every hint delivered", || {
        (0..4).all(|i| pool.node(i).metric_sum("cairn_receive_hints_pending{") == 0.0)
    });

    // Per replica: how many nodes hold each acknowledged sample.
    let mut copies: BTreeMap<(String, i64), usize> = BTreeMap::new();
    for i in 0..4 {
        let stored = store_samples(pool.node(i).grpc, "soak_metric", &["replica", "tenant_id"]);
        for (key, samples) in stored {
            for (t, _) in samples {
                *copies.entry((key.clone(), t)).or_default() += 1;
            }
        }
    }
    let mut by_copies = [0usize; 5];
    for (key, ts) in &w.acked {
        for &t in ts {
            let c = copies.get(&(key.clone(), t)).copied().unwrap_or(0);
            by_copies[c.min(4)] += 1;
        }
    }
    let below_quorum = by_copies[0] + by_copies[1];

    // Through the query layer: with `chain`, the merge for replicas that hold the same samples,
    // and (reported) with Thanos' default `penalty`, which drops samples where it switches
    // replica, as it must when the hashring edit moves a series to another node.
    let grpc: Vec<SocketAddr> = (0..4).map(|i| pool.node(i).grpc).collect();
    let range = format!("soak_metric[{}s]", started.elapsed().as_secs() + 120);
    let lost_with = |func: &str| {
        let d = dir.path().join(func);
        std::fs::create_dir_all(&d).unwrap();
        let query = CairnQuery::start(
            &d,
            &grpc,
            &[
                "--query.replica-label=replica",
                &format!("--deduplication.func={func}"),
            ],
        );
        let (status, v) = query.get_json("/api/v1/query", &[("query", &range)]);
        assert_eq!(status, 200);
        w.missing_in_query(&v)
    };
    let lost_query = lost_with("chain");
    let lost_penalty = lost_with("penalty");

    let second_half: Vec<(f64, f64)> = rss_node0
        .iter()
        .copied()
        .filter(|&(t, _)| t >= duration.as_secs_f64() / 2.0)
        .collect();
    let slope = slope_per_minute(&second_half);
    let (first, last) = (rss_node0[0].1, rss_node0[rss_node0.len() - 1].1);
    eprintln!(
        "soak: {}s, {kills} kills, 1 hashring edit (3 -> 4 nodes); {} requests ({} retries, {} failed), {} samples acknowledged; copies per acknowledged sample: 0: {}, 1: {}, 2: {}, 3: {}, 4: {}; {lost_query} lost through the query layer (chain; {lost_penalty} with penalty); node 0 RSS {:.1} -> {:.1} MiB, slope over the second half {:.2} MiB/min",
        duration.as_secs(),
        w.requests,
        w.retries,
        w.failed,
        w.acked_samples(),
        by_copies[0],
        by_copies[1],
        by_copies[2],
        by_copies[3],
        by_copies[4],
        first / 1048576.0,
        last / 1048576.0,
        slope / 1048576.0,
    );
    assert!(kills >= 1, "no node was killed");
    assert_eq!(w.failed, 0, "requests failed for good: {:?}", w.errors);
    assert_eq!(
        below_quorum, 0,
        "acknowledged samples on fewer than 2 replicas"
    );
    assert_eq!(
        lost_query, 0,
        "acknowledged samples missing through the query layer"
    );
    // Node 0 holds every series (RF 3 of 3, then of 4): its head grows by the samples it
    // stores, about 2 bytes each at most (XOR chunks of regular samples take ~1.4) plus chunk
    // headers; RSS growing much faster than that is a leak.
    let samples_per_minute = SERIES as f64 * 60.0 / PAUSE.as_secs_f64();
    let bound = samples_per_minute * 2.0 + 4.0 * 1048576.0;
    assert!(
        slope < bound,
        "node 0's RSS grows {:.2} MiB/min, more than {:.2} MiB/min",
        slope / 1048576.0,
        bound / 1048576.0
    );
}
