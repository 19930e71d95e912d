//! Full disks. A receiver whose TSDB volume fills up: writes it cannot log are answered 503
//! naming the full disk (never acknowledged), writes are accepted again once space is freed,
//! and after a SIGKILL every acknowledged sample is replayed from the WAL: a write that failed
//! part-way must not leave a torn record that hides the commits logged after it. A store
//! gateway and a compactor whose `--data-dir` is full stay up, say why, leave the bucket as it
//! was, and do their work once space is freed.
//!
//! The volumes are small tmpfs mounts the tests make (root is needed, as CI runs; the tests
//! fail rather than skip when they cannot mount).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{
    filesystem_yaml, http, snappy, store_samples, upload_blocks, wait_until, Cairn, CairnCompact,
    CairnStore,
};
use proto::remote_write::{encode_v1, Label, Sample, TimeSeries, WriteRequest};

/// A tmpfs mounted for the test, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "cannot mount a tmpfs at {} (the test needs root): {}",
            at.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

const T0: i64 = 1_700_000_000_000;

/// One request of 200 new series (`batch` in their names), one sample each.
fn request(batch: usize) -> Vec<u8> {
    let names: Vec<String> = (0..200).map(|i| format!("s{i}")).collect();
    let batch = batch.to_string();
    let timeseries = names
        .iter()
        .map(|n| TimeSeries {
            labels: vec![
                Label {
                    name: "__name__",
                    value: "full_disk_test",
                },
                Label {
                    name: "batch",
                    value: &batch,
                },
                Label {
                    name: "series",
                    value: n,
                },
            ],
            samples: vec![Sample {
                value: 1.0,
                timestamp: T0,
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
fn a_full_disk_answers_503_and_loses_no_acknowledged_sample() {
    let dir = tempfile::tempdir().unwrap();
    // The harness keeps the TSDB in `<dir>/tsdb`: that is the volume.
    let volume = Tmpfs::mount(&dir.path().join("tsdb"), "4m");
    // Most of the volume taken by something else, freed later.
    let filler = volume.0.join(".filler");
    std::fs::write(&filler, vec![0u8; 2 << 20]).unwrap();
    let mut cairn = Cairn::receive(dir.path(), &[]);

    let post = |cairn: &Cairn, batch: usize| {
        http(
            cairn.remote_write,
            "POST",
            "/api/v1/receive",
            &[("Content-Encoding", "snappy")],
            &request(batch),
        )
        .unwrap()
    };
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    let mut batch = 0;
    // Fill the disk: bounded by the volume (each request logs ~10 KiB).
    while refused < 5 {
        assert!(batch < 2_000, "the disk never filled");
        let r = post(&cairn, batch);
        match r.status {
            204 => acknowledged.push(batch),
            503 => {
                assert!(
                    r.body.contains("disk is full") && r.body.contains("No space left on device"),
                    "{}",
                    r.body
                );
                refused += 1;
            }
            other => panic!("batch {batch}: {other} {}", r.body),
        }
        batch += 1;
    }
    assert!(acknowledged.len() > 10, "{acknowledged:?}");
    assert_eq!(common::get(cairn.http, "/-/healthy").unwrap().status, 200);

    // Space comes back: writes are accepted again, logged after the failed ones.
    std::fs::remove_file(&filler).unwrap();
    for _ in 0..20 {
        let r = post(&cairn, batch);
        assert_eq!(r.status, 204, "after freeing space: {}", r.body);
        acknowledged.push(batch);
        batch += 1;
    }

    // SIGKILL: only the WAL has them.
    let _ = cairn.proc.child.kill();
    let _ = cairn.proc.child.wait();
    let ports = cairn.ports();
    drop(cairn);
    let restarted = Cairn::receive_on(dir.path(), ports, &[]);
    let log = restarted.proc.log_text();
    assert!(!log.contains("torn or corrupt"), "{log}");
    let stored = store_samples(restarted.grpc, "full_disk_test", &[]);
    let stored_batches: std::collections::BTreeSet<usize> = stored
        .keys()
        .filter_map(|k| {
            k.split(',')
                .find_map(|l| l.strip_prefix("batch="))
                .and_then(|b| b.parse().ok())
        })
        .collect();
    let missing: Vec<usize> = acknowledged
        .iter()
        .filter(|b| !stored_batches.contains(b))
        .copied()
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged batches lost after the restart: {missing:?}"
    );
    // Every acknowledged series, each with its one sample.
    let expected = acknowledged.len() * 200;
    let complete = stored
        .iter()
        .filter(|(k, v)| {
            v.len() == 1
                && k.split(',')
                    .find_map(|l| l.strip_prefix("batch="))
                    .and_then(|b| b.parse::<usize>().ok())
                    .is_some_and(|b| acknowledged.contains(&b))
        })
        .count();
    assert_eq!(complete, expected);
}

/// `n` promtool-made 2 h blocks of one gauge, uploaded to a local-directory bucket; its
/// objstore.yml.
fn bucket_with_blocks(dir: &Path, n: i64) -> String {
    // A 24 h boundary, so that the compactor's 8 h ranges are whole.
    const START: i64 = 1_699_920_000_000;
    let mut om = String::from("# TYPE g gauge\n");
    for part in 0..n {
        for i in 0..240 {
            let t = START + part * 7_200_000 + i * 30_000 + 1;
            om.push_str(&format!(
                "g{{part=\"{part}\"}} {i} {}.{:03}\n",
                t / 1000,
                t % 1000
            ));
        }
    }
    om.push_str("# EOF\n");
    let file = dir.join("data.om");
    std::fs::write(&file, om).unwrap();
    let out = Command::new(common::require_binary("/usr/bin/promtool", "prometheus"))
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&file)
        .arg(dir.join("blocks"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = filesystem_yaml(&dir.join("bucket"));
    upload_blocks(&yaml, &dir.join("blocks"), "replica=\"a\"");
    yaml
}

fn blocks_in(bucket: &Path) -> usize {
    std::fs::read_dir(bucket)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().join("meta.json").exists())
        .count()
}

#[test]
fn a_store_gateway_with_a_full_data_dir_stays_up_and_serves_once_space_is_freed() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = bucket_with_blocks(dir.path(), 3);
    // The harness keeps the store's index-headers in `<dir>/store-data`: that is the volume.
    let volume = Tmpfs::mount(&dir.path().join("store-data"), "256k");
    let filler = volume.0.join("filler");
    std::fs::write(&filler, vec![0u8; 256 << 10]).unwrap_or_default();
    // Ready (the bucket answered), but no block can be served without its index-header.
    let store = CairnStore::start(dir.path(), &yaml, &[]);
    wait_until(Duration::from_secs(20), "failed block loads", || {
        store
            .metric("thanos_bucket_store_block_load_failures_total")
            .unwrap_or(0.0)
            >= 3.0
    });
    assert_eq!(store.metric("thanos_bucket_store_blocks_loaded"), Some(0.0));
    let log = store.proc.log_text();
    assert!(log.contains("No space left on device"), "{log}");
    assert_eq!(common::get(store.http, "/-/healthy").unwrap().status, 200);

    std::fs::remove_file(&filler).unwrap();
    wait_until(Duration::from_secs(20), "every block served", || {
        store.metric("thanos_bucket_store_blocks_loaded") == Some(3.0)
    });
}

#[test]
fn a_compactor_with_a_full_data_dir_retries_and_compacts_once_space_is_freed() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = bucket_with_blocks(dir.path(), 12);
    let bucket = dir.path().join("bucket");
    assert_eq!(blocks_in(&bucket), 12);
    let volume = Tmpfs::mount(&dir.path().join("compact-data"), "256k");
    let filler = volume.0.join("filler");
    std::fs::write(&filler, vec![0u8; 200 << 10]).unwrap();
    let compact = CairnCompact::start(
        dir.path(),
        &yaml,
        &["--wait", "--wait-interval=1s", "--downsampling.disable"],
    );
    wait_until(Duration::from_secs(30), "a retried iteration", || {
        compact
            .metric("thanos_compact_retries_total")
            .unwrap_or(0.0)
            >= 1.0
    });
    let log = compact.proc.log_text();
    assert!(log.contains("No space left on device"), "{log}");
    assert_eq!(compact.metric("thanos_compact_halted"), Some(0.0), "{log}");
    assert_eq!(blocks_in(&bucket), 12, "the bucket is as it was");

    std::fs::remove_file(&filler).unwrap();
    // 24 h of 2 h blocks: whole 8 h ranges are compacted (the planner leaves the newest).
    wait_until(Duration::from_secs(60), "the compacted bucket", || {
        compact
            .metric("thanos_compact_group_compactions_total")
            .unwrap_or(0.0)
            >= 1.0
            && blocks_in(&bucket) < 12
    });
    assert_eq!(compact.metric("thanos_compact_halted"), Some(0.0));
}
