//! A receiver whose TSDB volume fills up: writes it cannot log are answered 503 naming the full
//! disk (never acknowledged), writes are accepted again once space is freed, and after a
//! SIGKILL every acknowledged sample is replayed from the WAL: a write that failed part-way
//! must not leave a torn record that hides the commits logged after it.
//!
//! The volume is a 4 MiB tmpfs the test mounts (root is needed, as CI runs; the test fails
//! rather than skips when it cannot mount).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{http, snappy, store_samples, Cairn};
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
