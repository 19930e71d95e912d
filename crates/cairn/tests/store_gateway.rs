//! `cairn store` over a bucket it shares with the test: which blocks it serves (partial
//! uploads, deletion marks, blocks superseded by a compacted one, relabel shards), how the set
//! follows the bucket without restarts, what a damaged block does to an answer, and an
//! unreachable bucket at start.
//!
//! The blocks are promtool's (`create-blocks-from openmetrics`): six hours of one gauge per
//! 2 h part, so each block holds exactly one series, `part="0"`, `"1"` or `"2"`, and which
//! parts a query sees says which blocks were served.

mod common;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{
    free_port, get, remote_write, require_binary, wait_until, Cairn, CairnQuery, CairnStore, Proc,
    S3Server,
};

/// A 2 h boundary in November 2023.
const DATA_START: i64 = 1_699_999_200_000;
const PARTS: i64 = 3;
const TWO_HOURS: i64 = 7_200_000;

/// Writes the blocks under `dir/blocks` and returns them (ULID, path), oldest first.
fn blocks(dir: &Path) -> Vec<(String, PathBuf)> {
    let promtool = require_binary("/usr/bin/promtool", "prometheus");
    let mut om = String::from("# HELP g A gauge.\n# TYPE g gauge\n");
    for part in 0..PARTS {
        for i in 0..240 {
            let t = DATA_START + part * TWO_HOURS + i * 30_000 + 1;
            let _ = writeln!(om, "g{{part=\"{part}\"}} {i} {}.{:03}", t / 1000, t % 1000);
        }
    }
    om.push_str("# EOF\n");
    let file = dir.join("data.om");
    std::fs::write(&file, om).unwrap();
    let out_dir = dir.join("blocks");
    let out = Command::new(promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&file)
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut blocks: Vec<(String, PathBuf)> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().to_string_lossy().into_owned(), e.path())
        })
        .collect();
    blocks.sort();
    assert_eq!(blocks.len(), PARTS as usize, "one block per 2 h part");
    blocks
}

/// The `part` values `cairn query` sees over the whole period.
fn parts_seen(query: &CairnQuery) -> (BTreeSet<String>, serde_json::Value) {
    let start = format!("{}", DATA_START / 1000);
    let end = format!("{}", (DATA_START + PARTS * TWO_HOURS) / 1000);
    let (status, v) = query.get_json(
        "/api/v1/query_range",
        &[
            ("query", "max by (part) (g)"),
            ("start", &start),
            ("end", &end),
            ("step", "600"),
        ],
    );
    assert_eq!(status, 200, "{v}");
    let parts = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["metric"]["part"].as_str().unwrap().to_string())
        .collect();
    (parts, v)
}

fn set(parts: &[&str]) -> BTreeSet<String> {
    parts.iter().map(|p| p.to_string()).collect()
}

/// Blocks (ULIDs) the store keeps an index-header for.
fn headers(store: &CairnStore) -> BTreeSet<String> {
    std::fs::read_dir(&store.data_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "meta-syncer")
        .collect()
}

fn wait_for_parts(query: &CairnQuery, want: &[&str], what: &str) {
    let want = set(want);
    let mut last = BTreeSet::new();
    wait_until(Duration::from_secs(20), what, || {
        last = parts_seen(query).0;
        last == want
    });
}

#[test]
fn the_served_blocks_follow_the_bucket_and_its_filters() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = blocks(dir.path());
    let bucket = dir.path().join("bucket");
    let yaml = common::filesystem_yaml(&bucket);
    common::upload_blocks(&yaml, &dir.path().join("blocks"), "cluster=\"a\"");
    let (b0, b1, b2) = (&blocks[0].0, &blocks[1].0, &blocks[2].0);

    // A partial upload: a block directory without meta.json (a copy of part 0's files under a
    // new ULID) is never served.
    let partial = bucket.join("01HAAAAAAAAAAAAAAAAAAAAAAA");
    std::fs::create_dir_all(partial.join("chunks")).unwrap();
    std::fs::copy(bucket.join(b0).join("index"), partial.join("index")).unwrap();
    // Part 0 is marked for deletion (long ago); with a delay of 1h it is not served.
    let mark = format!(
        "{{\"id\":\"{b0}\",\"version\":1,\"deletion_time\":{}}}",
        DATA_START / 1000
    );
    std::fs::write(bucket.join(b0).join("deletion-mark.json"), mark).unwrap();
    // Part 2's block claims to be the compaction of parts 1 and 2: part 1's block is superseded.
    let meta_path = bucket.join(b2).join("meta.json");
    let original_meta = std::fs::read_to_string(&meta_path).unwrap();
    let mut meta: serde_json::Value = serde_json::from_str(&original_meta).unwrap();
    meta["compaction"]["level"] = 2.into();
    meta["compaction"]["sources"] = serde_json::json!([b1, b2]);
    std::fs::write(&meta_path, meta.to_string()).unwrap();

    let store = CairnStore::start(dir.path(), &yaml, &["--ignore-deletion-marks-delay=1h"]);
    let query = CairnQuery::start(dir.path(), &[store.grpc], &[]);
    let (parts, v) = parts_seen(&query);
    assert_eq!(
        parts,
        set(&["2"]),
        "only the compacted block is served: {v}"
    );
    assert_eq!(headers(&store), set(&[b2]));
    assert_eq!(store.metric("thanos_bucket_store_blocks_loaded"), Some(1.0));

    // The bucket changes; the store follows within a sync or two, without a restart.
    std::fs::remove_file(bucket.join(b0).join("deletion-mark.json")).unwrap();
    wait_for_parts(&query, &["0", "2"], "the unmarked block to be served");
    std::fs::write(&meta_path, &original_meta).unwrap();
    // The meta of a block never changes in Thanos' model, so the store keeps its cached
    // copy; a rewrite is a new block. Deleting the block makes it disappear.
    std::fs::remove_dir_all(bucket.join(b2)).unwrap();
    wait_for_parts(
        &query,
        &["0", "1"],
        "the superseded block to come back once its successor is gone",
    );
    wait_until(
        Duration::from_secs(10),
        "the dropped block's index-header to be removed",
        || headers(&store) == set(&[b0, b1]),
    );
    assert!(
        store
            .metric("thanos_bucket_store_block_drops_total")
            .unwrap()
            >= 1.0
    );
}

#[test]
fn relabel_selectors_shard_the_bucket_across_two_stores() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = blocks(dir.path());
    let bucket = dir.path().join("bucket");
    let yaml = common::filesystem_yaml(&bucket);
    common::upload_blocks(&yaml, &dir.path().join("blocks"), "cluster=\"a\"");
    let shard = |n: u32| {
        format!(
            "- action: hashmod\n  source_labels: [__block_id]\n  target_label: shard\n  modulus: 2\n\
             - action: keep\n  source_labels: [shard]\n  regex: \"{n}\"\n"
        )
    };
    let stores: Vec<CairnStore> = (0..2)
        .map(|n| {
            let d = dir.path().join(format!("s{n}"));
            std::fs::create_dir_all(&d).unwrap();
            CairnStore::start(
                &d,
                &yaml,
                &[&format!("--selector.relabel-config={}", shard(n))],
            )
        })
        .collect();
    let (a, b) = (headers(&stores[0]), headers(&stores[1]));
    assert!(a.is_disjoint(&b), "a block served twice: {a:?} {b:?}");
    let all: BTreeSet<String> = blocks.iter().map(|(u, _)| u.clone()).collect();
    assert_eq!(a.union(&b).cloned().collect::<BTreeSet<_>>(), all);
    let grpc: Vec<_> = stores.iter().map(|s| s.grpc).collect();
    let query = CairnQuery::start(dir.path(), &grpc, &[]);
    assert_eq!(parts_seen(&query).0, set(&["0", "1", "2"]));
}

#[test]
fn a_damaged_block_is_skipped_with_a_warning_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = blocks(dir.path());
    let bucket = dir.path().join("bucket");
    let yaml = common::filesystem_yaml(&bucket);
    common::upload_blocks(&yaml, &dir.path().join("blocks"), "cluster=\"a\"");
    // Part 1's index is cut short: its index-header cannot be built, it is not served.
    let index = bucket.join(&blocks[1].0).join("index");
    let len = std::fs::metadata(&index).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&index)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    // No chunks cache: with one, the chunks deleted below would still be served from memory.
    let store = CairnStore::start(
        dir.path(),
        &yaml,
        &["--store.caching-bucket.config=type: NONE"],
    );
    assert_eq!(store.metric("thanos_bucket_store_blocks_loaded"), Some(2.0));
    assert!(
        store
            .metric("thanos_bucket_store_block_load_failures_total")
            .unwrap()
            >= 1.0
    );
    assert!(
        store.proc.log_text().contains(&blocks[1].0),
        "the log names the block"
    );

    // Part 2's chunks are deleted under the running store: its answer is a warning naming the
    // block, the other blocks still answer, and nothing crashes.
    let query = CairnQuery::start(dir.path(), &[store.grpc], &[]);
    assert_eq!(parts_seen(&query).0, set(&["0", "2"]));
    let chunks = bucket.join(&blocks[2].0).join("chunks");
    std::fs::remove_dir_all(&chunks).unwrap();
    let (parts, v) = parts_seen(&query);
    assert_eq!(parts, set(&["0"]), "{v}");
    let warnings = v["warnings"].to_string();
    assert!(
        warnings.contains(&blocks[2].0),
        "warning names the block: {v}"
    );
    assert!(
        store
            .metric("thanos_bucket_store_partial_blocks_total")
            .unwrap()
            >= 1.0
    );
    assert!(matches!(get(store.http, "/-/healthy"), Ok(r) if r.status == 200));
}

#[test]
fn an_unreachable_bucket_keeps_the_store_up_and_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = blocks(dir.path());
    let port = free_port();
    let yaml = S3Server::objstore_yaml_for_port(port, "metrics");
    let http: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let grpc = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn"));
    cmd.arg("store")
        .arg(format!("--http-address={http}"))
        .arg(format!("--grpc-address={grpc}"))
        .arg(format!(
            "--data-dir={}",
            dir.path().join("store-data").display()
        ))
        .arg(format!("--objstore.config={yaml}"))
        .arg("--sync-block-duration=1s");
    let mut proc = Proc::spawn("cairn-store", &mut cmd, dir.path());
    wait_until(
        Duration::from_secs(20),
        "the store to answer /-/healthy",
        || matches!(get(http, "/-/healthy"), Ok(r) if r.status == 200),
    );
    // Several sync attempts fail; the process stays up and says why it is not ready.
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        proc.child.try_wait().unwrap().is_none(),
        "{}",
        proc.log_text()
    );
    let r = get(http, "/-/ready").unwrap();
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("not ready"), "{}", r.body);

    // The bucket comes up (with the blocks in it): the next sync makes the store ready.
    let s3_root = dir.path().join("s3");
    let s3 = S3Server::start(dir.path(), &s3_root, port, "metrics");
    common::upload_blocks(
        &s3.objstore_yaml("metrics"),
        &dir.path().join("blocks"),
        "cluster=\"a\"",
    );
    wait_until(
        Duration::from_secs(30),
        "the store to become ready",
        || matches!(get(http, "/-/ready"), Ok(r) if r.status == 200),
    );
    let body = get(http, "/metrics").unwrap().body;
    let loaded = |b: &str| {
        b.lines()
            .find(|l| l.starts_with("thanos_bucket_store_blocks_loaded"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    let mut seen = loaded(&body);
    wait_until(Duration::from_secs(10), "every block to be loaded", || {
        seen = loaded(&get(http, "/metrics").unwrap().body);
        seen == Some(blocks.len() as f64)
    });
    proc.terminate(Duration::from_secs(10));
}

/// A receiver with 2 s blocks and 6 s of local retention ships to S3 (s3s-fs) while a store
/// serves the bucket. Once most blocks are gone from the receiver's disk, a query over the whole
/// period through both sees every sample exactly once: no gap where the receiver's head meets
/// the store's blocks, no double count where both hold the same block.
#[test]
fn receiver_and_store_together_answer_every_sample_once() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(dir.path(), &dir.path().join("s3"), free_port(), "metrics");
    let yaml = s3.objstore_yaml("metrics");
    std::fs::create_dir_all(dir.path().join("r")).unwrap();
    let receiver = Cairn::receive(
        &dir.path().join("r"),
        &[
            "--tsdb.block-duration=2s",
            "--tsdb.retention=6s",
            "--shipper.interval=300ms",
            &format!("--objstore.config={yaml}"),
            "--label=cluster=\"edge\"",
        ],
    );
    std::fs::create_dir_all(dir.path().join("s")).unwrap();
    let store = CairnStore::start(&dir.path().join("s"), &yaml, &[]);
    let query = CairnQuery::start(dir.path(), &[receiver.grpc, store.grpc], &[]);

    // Synthetic time moves 250 ms per write: 60 s of data, thirty 2 s blocks.
    let t0 = 1_700_000_000_000i64;
    let n = 240;
    for i in 0..n {
        let series = vec![("__name__".to_string(), "handover".to_string())];
        remote_write(
            receiver.remote_write,
            None,
            &[(series, vec![(t0 + i * 250, i as f64)])],
        );
    }
    let tenant_dir = receiver.tsdb_path.join("default-tenant");
    let local = || -> usize {
        std::fs::read_dir(&tenant_dir)
            .map(|d| {
                d.filter(|e| {
                    let name = e.as_ref().unwrap().file_name();
                    name.len() == 26 && name.to_string_lossy().starts_with("01")
                })
                .count()
            })
            .unwrap_or(0)
    };
    wait_until(
        Duration::from_secs(30),
        "blocks shipped and served by the store",
        || {
            store
                .metric("thanos_bucket_store_blocks_loaded")
                .unwrap_or(0.0)
                >= 20.0
        },
    );
    // Retention runs on its own schedule after the uploads: wait for it rather than race it.
    wait_until(
        Duration::from_secs(30),
        "retention to delete most local blocks",
        || local() < 10,
    );
    // Retention deletes only shipped blocks, so a block can be gone from the receiver and not
    // yet synced by the store (it syncs every second). The claim is about the settled state:
    // nothing left to ship and the store serving every block of the bucket.
    let bucket_blocks = || -> usize {
        std::fs::read_dir(s3.root.join("metrics"))
            .map(|d| {
                d.filter(|e| e.as_ref().unwrap().path().join("meta.json").exists())
                    .count()
            })
            .unwrap_or(0)
    };
    wait_until(
        Duration::from_secs(30),
        "nothing left to ship and every bucket block loaded by the store",
        || {
            receiver.metric_sum("cairn_shipper_queue_blocks") == 0.0
                && store.metric("thanos_bucket_store_blocks_loaded") == Some(bucket_blocks() as f64)
        },
    );

    let at = format!("{}", (t0 + n * 250) as f64 / 1000.0);
    // ...and the query layer has seen the store's new time range (Info, every 200 ms here).
    let store_name = store.grpc.to_string();
    wait_until(
        Duration::from_secs(10),
        "the query layer to route to the store",
        || {
            let (_, v) = query.get_json("/api/v1/stores", &[]);
            v["data"]["store"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["name"] == store_name.as_str() && s["minTime"].as_i64() == Some(t0))
        },
    );
    let ask = |q: &str| -> String {
        let (status, v) = query.get_json("/api/v1/query", &[("query", q), ("time", &at)]);
        assert_eq!(status, 200, "{q}: {v}");
        v["data"]["result"][0]["value"][1]
            .as_str()
            .unwrap_or("none")
            .to_string()
    };
    assert_eq!(
        ask("count_over_time(handover[2m])"),
        n.to_string(),
        "every sample once"
    );
    let sum: i64 = (0..n).sum();
    assert_eq!(ask("sum_over_time(handover[2m])"), sum.to_string());
    assert_eq!(
        ask("count(handover)"),
        "1",
        "one series, not one per source"
    );
}
