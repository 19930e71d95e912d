//! A receiver killed in the middle of a block upload: the half-uploaded block is never listed
//! (no meta.json), and after a restart it is uploaded once, completely.

mod common;

use std::time::Duration;

use common::{free_port, http, snappy, wait_until, Cairn, S3Server, SlowProxy};
use proto::remote_write::{encode_v1, Label, Sample, TimeSeries, WriteRequest};

fn body(t: i64, names: &[String]) -> Vec<u8> {
    let timeseries = names
        .iter()
        .map(|n| TimeSeries {
            labels: vec![
                Label {
                    name: "__name__",
                    value: "load",
                },
                Label {
                    name: "i",
                    value: n,
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

#[test]
fn killed_mid_upload_the_block_is_shipped_once_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s3_root = dir.path().join("s3");
    let s3_port = free_port();
    let _s3 = S3Server::start(dir.path(), &s3_root, s3_port, "metrics");
    // The receiver talks to S3 through a proxy passing 4 KB/s: a block takes seconds to upload.
    let proxy = SlowProxy::start(format!("127.0.0.1:{s3_port}").parse().unwrap(), 4096);
    let slow = S3Server::objstore_yaml_for_port(proxy.port, "metrics");
    let args = [
        "--tsdb.block-duration=2s".to_string(),
        "--shipper.interval=200ms".to_string(),
        format!("--objstore.config={slow}"),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cairn = Cairn::receive(dir.path(), &args);
    let tenant_dir = cairn.tsdb_path.join("default-tenant");

    // 200 series: blocks of a few tens of KB.
    let names: Vec<String> = (0..200).map(|i| i.to_string()).collect();
    let mut t = 1_700_000_000_000i64;
    for _ in 0..20 {
        let r = http(
            cairn.remote_write,
            "POST",
            "/api/v1/receive",
            &[],
            &body(t, &names),
        )
        .unwrap();
        assert_eq!(r.status, 204, "{}", r.body);
        t += 250;
    }
    // Wait for the first block and for its upload to be under way, then kill the receiver.
    let mut first = String::new();
    wait_until(Duration::from_secs(30), "an upload in progress", || {
        let mut blocks: Vec<String> = std::fs::read_dir(&tenant_dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("meta.json").exists())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        blocks.sort();
        match blocks.first() {
            Some(b) => {
                first = b.clone();
                // Some of the block's files are in the bucket, its meta.json not yet.
                let remote = s3_root.join("metrics").join(b);
                proxy.forwarded.load(std::sync::atomic::Ordering::Relaxed) > 0
                    && remote.join("chunks").exists()
                    && !remote.join("meta.json").exists()
            }
            None => false,
        }
    });
    let _ = cairn.proc.child.kill();
    let _ = cairn.proc.child.wait();
    assert!(
        !s3_root
            .join("metrics")
            .join(&first)
            .join("meta.json")
            .exists(),
        "the upload was not caught in the middle"
    );
    assert!(
        s3_root.join("metrics").join(&first).exists(),
        "nothing of the block reached the bucket before the kill"
    );

    let direct = S3Server::objstore_yaml_for_port(s3_port, "metrics");
    let bucket = objstore::BucketConfig::parse(&direct)
        .unwrap()
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let listed = rt.block_on(objstore::bucket::list_blocks(&bucket)).unwrap();
    assert!(
        listed.iter().all(|m| m.ulid.to_string() != first),
        "a block without meta.json was listed"
    );

    // Restart, now with a direct connection: the block goes up again, whole, once.
    let args = [
        "--tsdb.block-duration=2s".to_string(),
        "--shipper.interval=200ms".to_string(),
        format!("--objstore.config={direct}"),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let cairn = Cairn::receive(dir.path(), &args);
    wait_until(
        Duration::from_secs(60),
        "the interrupted block shipped",
        || {
            std::fs::read_to_string(tenant_dir.join("thanos.shipper.json"))
                .is_ok_and(|s| s.contains(&first))
        },
    );
    let diff = rt
        .block_on(objstore::bucket::diff_with_local(
            &bucket,
            &tenant_dir.join(&first),
        ))
        .unwrap();
    assert!(diff.is_empty(), "{diff:?}");
    let listed = rt.block_on(objstore::bucket::list_blocks(&bucket)).unwrap();
    assert_eq!(
        listed
            .iter()
            .filter(|m| m.ulid.to_string() == first)
            .count(),
        1
    );
    let uploads = cairn
        .proc
        .log_text()
        .lines()
        .filter(|l| l.contains("uploaded block") && l.contains(&first))
        .count();
    assert_eq!(
        uploads, 1,
        "the block was uploaded {uploads} times after the restart"
    );
}
