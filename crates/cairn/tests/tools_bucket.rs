//! `cairn tools bucket`: blocks made by promtool are uploaded (with external labels), listed and
//! verified; a damaged chunk file fails verification; blocks Cairn shipped to S3 verify too
//! (see shipper_s3_outage.rs for that bucket).

mod common;

use std::fmt::Write as _;
use std::process::Command;

fn cairn(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn upload_ls_verify_promtool_blocks() {
    let promtool = common::require_binary("/usr/bin/promtool", "prometheus");
    let dir = tempfile::tempdir().unwrap();
    let mut om = String::from("# TYPE demo_total counter\n");
    for s in 0..50 {
        for p in 0..(4 * 60) {
            writeln!(
                om,
                "demo_total{{instance=\"i{s}\"}} {} {}",
                p * s,
                1_700_000_000 + p * 60
            )
            .unwrap();
        }
    }
    om.push_str("# EOF\n");
    std::fs::write(dir.path().join("in.om"), om).unwrap();
    let blocks = dir.path().join("prom");
    let st = Command::new(promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(dir.path().join("in.om"))
        .arg(&blocks)
        .output()
        .unwrap();
    assert!(st.status.success(), "{st:?}");

    let config = format!(
        "--objstore.config=type: FILESYSTEM\nconfig:\n  directory: {}\n",
        dir.path().join("bucket").display()
    );
    let (ok, out) = cairn(&[
        "tools",
        "bucket",
        &config,
        "upload",
        blocks.to_str().unwrap(),
        "--label",
        "cluster=\"edge-1\"",
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("uploaded"), "{out}");
    let (ok, out) = cairn(&[
        "tools",
        "bucket",
        &config,
        "upload",
        blocks.to_str().unwrap(),
    ]);
    assert!(ok && out.contains("already in the bucket"), "{out}");

    let (ok, out) = cairn(&["tools", "bucket", &config, "ls", "--output", "json"]);
    assert!(ok, "{out}");
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    let listed = listed.as_array().unwrap();
    assert!(listed.len() >= 2);
    assert!(listed.iter().all(|b| b["labels"]["cluster"] == "edge-1"));
    assert_eq!(
        listed
            .iter()
            .map(|b| b["samples"].as_u64().unwrap())
            .sum::<u64>(),
        50 * 4 * 60
    );
    let (ok, out) = cairn(&["tools", "bucket", &config, "ls"]);
    assert!(ok && out.contains("2023-11-14T22:13:20Z"), "{out}");

    let (ok, out) = cairn(&["tools", "bucket", &config, "verify"]);
    assert!(ok, "{out}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("ok ")).count(),
        listed.len(),
        "{out}"
    );
    let first = listed[0]["ulid"].as_str().unwrap();
    let (ok, out) = cairn(&["tools", "bucket", &config, "inspect", first]);
    assert!(
        ok && out.contains("\"minTime\"") && out.contains("chunks/000001"),
        "{out}"
    );

    // Damage a chunk in the bucket: verify names the block and fails.
    let chunk = dir.path().join("bucket").join(first).join("chunks/000001");
    let mut data = std::fs::read(&chunk).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0x55;
    std::fs::write(&chunk, data).unwrap();
    let (ok, out) = cairn(&["tools", "bucket", &config, "verify"]);
    assert!(!ok, "{out}");
    assert!(out.contains(&format!("FAIL  {first}")), "{out}");
}
