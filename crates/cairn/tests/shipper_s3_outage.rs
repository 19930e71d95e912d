//! The design's S3 outage case, against a real S3-compatible server (s3s-fs): the bucket goes
//! away while the receiver keeps taking writes and cutting blocks; writes keep getting 2xx, the
//! upload queue and its metrics grow, no block is deleted locally before it is uploaded; the
//! bucket comes back and every block arrives, byte-identical to the local copy. Then a receiver
//! killed with blocks still queued ships them after restart, once.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{free_port, http, snappy, wait_until, Cairn, S3Server};
use proto::remote_write::{encode_v1, Label, Sample, TimeSeries, WriteRequest};

fn body(t: i64) -> Vec<u8> {
    let timeseries = (0..20)
        .map(|i| TimeSeries {
            labels: vec![
                Label {
                    name: "__name__",
                    value: "load",
                },
                Label {
                    name: "i",
                    value: [
                        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13",
                        "14", "15", "16", "17", "18", "19",
                    ][i],
                },
            ],
            samples: vec![Sample {
                value: t as f64,
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

/// ULIDs of complete local blocks.
/// The finished blocks in a tenant directory: a ULID directory with a meta.json. A block being
/// written (`<ULID>.tmp-for-creation`, meta.json already in it) is not one yet: it is renamed
/// into place, which would look like a deletion.
fn local_blocks(tsdb: &Path) -> BTreeSet<String> {
    std::fs::read_dir(tsdb)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.path().join("meta.json").exists())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|name| ulid::Ulid::from_string(name).is_ok())
                .collect()
        })
        .unwrap_or_default()
}

fn bucket_of(yaml: &str) -> objstore::Bucket {
    objstore::BucketConfig::parse(yaml)
        .unwrap()
        .build()
        .unwrap()
}

/// Every given block still on local disk is in the bucket, file for file, byte for byte.
fn assert_shipped(
    rt: &tokio::runtime::Runtime,
    bucket: &objstore::Bucket,
    tsdb: &Path,
    blocks: &BTreeSet<String>,
) {
    rt.block_on(async {
        for ulid in blocks {
            let diff = match objstore::bucket::diff_with_local(bucket, &tsdb.join(ulid)).await {
                Ok(d) => d,
                // Uploaded, then deleted locally by retention (before or while being compared):
                // the ULID checks against the bucket listing cover it.
                Err(_) if !tsdb.join(ulid).exists() => continue,
                Err(e) => panic!("{ulid}: {e}"),
            };
            assert!(diff.is_empty(), "block {ulid}: {diff:?}");
        }
    });
}

#[test]
fn s3_outage_loses_nothing_and_a_restart_resumes_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let s3_root = dir.path().join("s3");
    let port = free_port();
    let s3 = S3Server::start(dir.path(), &s3_root, port, "metrics");
    let yaml = s3.objstore_yaml("metrics");
    let args = [
        "--tsdb.block-duration=2s".to_string(),
        // Short retention, so that only the upload veto keeps blocks during the outage.
        "--tsdb.retention=6s".to_string(),
        "--shipper.interval=300ms".to_string(),
        format!("--objstore.config={yaml}"),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cairn = Cairn::receive(dir.path(), &args);
    let tenant_dir = cairn.tsdb_path.join("default-tenant");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let bucket = bucket_of(&yaml);

    // Synthetic time moves 250 ms per request: a 2 s block is cut every 8 requests or so.
    let mut t = 1_700_000_000_000i64;
    let mut write = |cairn: &Cairn, n: usize| {
        for _ in 0..n {
            let r = http(
                cairn.remote_write,
                "POST",
                "/api/v1/receive",
                &[("Content-Encoding", "snappy")],
                &body(t),
            )
            .unwrap();
            assert_eq!(r.status, 204, "{}", r.body);
            t += 250;
        }
    };
    write(&cairn, 40);
    wait_until(Duration::from_secs(30), "first blocks shipped", || {
        cairn
            .metric("thanos_shipper_uploads_total{tenant=\"default-tenant\"}")
            .unwrap_or(0.0)
            >= 2.0
    });

    // Outage: the bucket disappears.
    drop(s3);
    let before = local_blocks(&tenant_dir);
    let mut seen = before.clone();
    let mut deleted_after_upload = 0;
    for _ in 0..8 {
        write(&cairn, 10);
        let now = local_blocks(&tenant_dir);
        let shipped =
            std::fs::read_to_string(tenant_dir.join("thanos.shipper.json")).unwrap_or_default();
        for gone in seen.iter().filter(|b| !now.contains(*b)) {
            assert!(
                shipped.contains(gone.as_str()),
                "block {gone} was deleted locally before it was uploaded"
            );
            deleted_after_upload += 1;
        }
        seen.extend(now);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        seen.len() >= before.len() + 5,
        "blocks keep being cut during the outage"
    );
    // Retention (6 s) did run: uploaded blocks went, the others stayed.
    let still_local = local_blocks(&tenant_dir);
    let unshipped: Vec<&String> = seen.iter().filter(|b| !before.contains(*b)).collect();
    assert!(
        unshipped.iter().all(|b| still_local.contains(*b)),
        "an unshipped block is gone"
    );
    let _ = deleted_after_upload;
    let mut all_seen = seen.clone();
    wait_until(
        Duration::from_secs(30),
        "the queue to show the outage",
        || {
            cairn
                .metric("cairn_shipper_queue_blocks{tenant=\"default-tenant\"}")
                .unwrap_or(0.0)
                >= 3.0
                && cairn
                    .metric("thanos_shipper_upload_failures_total{tenant=\"default-tenant\"}")
                    .unwrap_or(0.0)
                    >= 1.0
        },
    );

    // The backlog in bytes (what the outage adds to the volume): at least three blocks' files.
    let backlog = cairn
        .metric("cairn_shipper_queue_bytes{tenant=\"default-tenant\"}")
        .unwrap_or(0.0);
    assert!(backlog > 3.0 * 1024.0, "backlog {backlog} bytes");

    // The bucket comes back: everything arrives, byte-identical.
    let s3 = S3Server::start(dir.path(), &s3_root, port, "metrics");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let queue = cairn
            .metric("cairn_shipper_queue_blocks{tenant=\"default-tenant\"}")
            .unwrap_or(1.0);
        let shipped = std::fs::read(tenant_dir.join("thanos.shipper.json"))
            .map(|b| String::from_utf8_lossy(&b).to_string())
            .unwrap_or_default();
        let queue_bytes = cairn
            .metric("cairn_shipper_queue_bytes{tenant=\"default-tenant\"}")
            .unwrap_or(1.0);
        if queue == 0.0
            && queue_bytes == 0.0
            && local_blocks(&tenant_dir)
                .iter()
                .all(|b| shipped.contains(b))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "uploads did not catch up:\n{}",
            cairn.proc.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_shipped(&rt, &bucket, &tenant_dir, &all_seen);
    // Uploads went oldest first: the log's upload order is the blocks' time order.
    let log = cairn.proc.log_text();
    let order: Vec<String> = log
        .lines()
        .filter(|l| l.contains("uploaded block"))
        .filter_map(|l| {
            l.split("block=").nth(1).map(|r| {
                r.split_whitespace()
                    .next()
                    .unwrap()
                    .trim_matches(|c: char| !c.is_alphanumeric())
                    .to_string()
            })
        })
        .collect();
    let bucket_metas = rt.block_on(objstore::bucket::list_blocks(&bucket)).unwrap();
    let min_time = |u: &String| {
        bucket_metas
            .iter()
            .find(|m| m.ulid.to_string() == *u)
            .map(|m| m.min_time)
            .unwrap_or_else(|| panic!("{u} not in the bucket"))
    };
    let mut by_time = order.clone();
    by_time.sort_by_key(min_time);
    assert_eq!(order, by_time, "uploads out of time order");

    // Crash with blocks queued: S3 down, more blocks, SIGKILL; restart with S3 up.
    drop(s3);
    let shipped_before = local_blocks(&tenant_dir);
    all_seen.extend(shipped_before.iter().cloned());
    write(&cairn, 30);
    wait_until(
        Duration::from_secs(20),
        "new blocks cut while S3 is down",
        // Count new ULIDs: retention may delete shipped blocks meanwhile.
        || {
            local_blocks(&tenant_dir)
                .difference(&shipped_before)
                .count()
                >= 2
        },
    );
    let _ = cairn.proc.child.kill();
    let _ = cairn.proc.child.wait();
    all_seen.extend(local_blocks(&tenant_dir));
    let queued: BTreeSet<String> = {
        let shipped = std::fs::read_to_string(tenant_dir.join("thanos.shipper.json")).unwrap();
        local_blocks(&tenant_dir)
            .into_iter()
            .filter(|b| !shipped.contains(b.as_str()))
            .collect()
    };
    assert!(!queued.is_empty(), "the crash should leave blocks to ship");
    let _s3 = S3Server::start(dir.path(), &s3_root, port, "metrics");
    let cairn = Cairn::receive(dir.path(), &args);
    wait_until(
        Duration::from_secs(60),
        "queued blocks shipped after restart",
        || {
            let shipped =
                std::fs::read_to_string(tenant_dir.join("thanos.shipper.json")).unwrap_or_default();
            queued.iter().all(|b| shipped.contains(b.as_str()))
        },
    );
    assert_shipped(&rt, &bucket, &tenant_dir, &queued);
    let uploads_after_restart = cairn
        .proc
        .log_text()
        .lines()
        .filter(|l| l.contains("uploaded block"))
        .count();
    assert!(uploads_after_restart >= queued.len());
    let listed = rt.block_on(objstore::bucket::list_blocks(&bucket)).unwrap();
    let ids: BTreeSet<String> = listed.iter().map(|m| m.ulid.to_string()).collect();
    assert!(queued.iter().all(|b| ids.contains(b)));
    let missing: Vec<&String> = all_seen.iter().filter(|b| !ids.contains(*b)).collect();
    assert!(missing.is_empty(), "blocks never shipped: {missing:?}");
    assert_eq!(ids.len(), listed.len(), "a block is listed twice");

    // What Cairn shipped passes `cairn tools bucket verify`.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args([
            "tools",
            "bucket",
            &format!("--objstore.config={yaml}"),
            "verify",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        text.lines().filter(|l| l.starts_with("ok ")).count(),
        listed.len(),
        "{text}"
    );
}
