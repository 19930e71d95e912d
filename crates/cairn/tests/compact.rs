//! `cairn compact` over the bucket a real RF=3 pool shipped to (s3s-fs): the three receivers'
//! copies become one, every written sample is in the bucket's live blocks exactly once,
//! promtool reads each of them, and `cairn query` -> `cairn store` answers the same before and
//! after; a compactor killed at any moment leaves a bucket that still answers the same.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{
    free_port, remote_write_request, require_binary, wait_until, CairnCompact, CairnQuery,
    CairnStore, DelayProxy, ReceivePool, S3Server,
};

/// Each test starts a pool and several servers: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const SERIES: usize = 30;
/// One round every 15 s of sample time, 150 minutes in all: thirty 5-minute blocks a receiver,
/// which fill one 2 h compaction range and start the next.
const STEP_MS: i64 = 15_000;
const ROUNDS: i64 = 600;
/// 5-minute aligned, 15 minutes into a 2 h range (Nov 2023): receivers accept any start on a
/// fresh head.
const T0: i64 = 1_700_000_100_000;
const BUCKET: &str = "metrics";

fn round(r: i64) -> Vec<common::WriteSeries> {
    (0..SERIES)
        .map(|i| {
            (
                vec![
                    ("__name__".to_string(), "compact_e2e".to_string()),
                    ("series".to_string(), format!("s{i:03}")),
                ],
                vec![(T0 + r * STEP_MS, (r * 10) as f64 + i as f64 / 1000.0)],
            )
        })
        .collect()
}

/// `promtool tsdb dump` rows of everything written: `{labels} value timestamp`.
fn expected_rows() -> BTreeSet<(String, i64, u64)> {
    let mut rows = BTreeSet::new();
    for r in 0..ROUNDS {
        for (labels, samples) in round(r) {
            let text: Vec<String> = labels.iter().map(|(n, v)| format!("{n}=\"{v}\"")).collect();
            for (t, v) in samples {
                rows.insert((format!("{{{}}}", text.join(", ")), t, v.to_bits()));
            }
        }
    }
    rows
}

/// The pool writes the whole load (each round through another node), then shuts down: each
/// receiver flushes its head into a last block and ships it. Returns the bucket's root dir.
fn pool_ships_everything(dir: &Path, s3: &S3Server) -> PathBuf {
    let yaml = s3.objstore_yaml(BUCKET);
    let mut pool = ReceivePool::new(dir, 3, None);
    pool.extra = vec![
        "--tsdb.block-duration=5m".into(),
        "--shipper.interval=300ms".into(),
        format!("--objstore.config={yaml}"),
        "--label=cluster=\"edge\"".into(),
    ];
    pool.write_ring(&pool.endpoints);
    pool.start_all();
    for r in 0..ROUNDS {
        let node = pool.node((r % 3) as usize).remote_write;
        let resp = remote_write_request(node, "default-tenant", &round(r)).unwrap();
        assert_eq!(resp.status, 204, "round {r}: {}", resp.body);
    }
    for i in 0..3 {
        let node = pool.nodes[i].as_mut().unwrap();
        let status = node.proc.terminate(Duration::from_secs(30));
        assert!(status.success(), "receiver {i} exit: {status}");
    }
    s3.root.join(BUCKET)
}

/// Blocks (ULID dirs) of the bucket with a meta.json, and their metas.
fn bucket_metas(root: &Path) -> BTreeMap<String, serde_json::Value> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(root).unwrap() {
        let path = entry.unwrap().path();
        let meta = path.join("meta.json");
        if let Ok(text) = std::fs::read_to_string(&meta) {
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            out.insert(name, serde_json::from_str(&text).unwrap());
        }
    }
    out
}

/// What readers (store gateway, compactor) serve: blocks with meta.json that no other block
/// lists among its compaction sources.
fn served_blocks(root: &Path) -> BTreeSet<String> {
    let metas = bucket_metas(root);
    let sources = |m: &serde_json::Value| -> BTreeSet<String> {
        m["compaction"]["sources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    metas
        .iter()
        .filter(|(id, m)| {
            let mine = sources(m);
            !metas
                .iter()
                .any(|(other, o)| other != *id && mine.is_subset(&sources(o)) && sources(o) != mine)
        })
        .map(|(id, _)| id.clone())
        .collect()
}

fn bucket_bytes(root: &Path) -> u64 {
    fn walk(p: &Path) -> u64 {
        std::fs::read_dir(p)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| {
                        let m = e.metadata().unwrap();
                        if m.is_dir() {
                            walk(&e.path())
                        } else {
                            m.len()
                        }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    walk(root)
}

/// `promtool tsdb dump` of the given blocks, copied into a directory promtool opens as a TSDB.
fn promtool_dump(
    root: &Path,
    blocks: &BTreeSet<String>,
    scratch: &Path,
) -> Vec<(String, i64, u64)> {
    let promtool = require_binary("/usr/bin/promtool", "prometheus");
    let db = scratch.join("promtool-db");
    let _ = std::fs::remove_dir_all(&db);
    std::fs::create_dir_all(db.join("wal")).unwrap();
    for id in blocks {
        common::copy_dir(&root.join(id), &db.join(id));
        let analyze = Command::new(&promtool)
            .args(["tsdb", "analyze", db.to_str().unwrap(), id])
            .output()
            .unwrap();
        assert!(
            analyze.status.success(),
            "promtool tsdb analyze {id}: {}",
            String::from_utf8_lossy(&analyze.stderr)
        );
    }
    let out = Command::new(&promtool)
        .args(["tsdb", "dump", db.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool tsdb dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let close = line.rfind('}').unwrap();
            let mut rest = line[close + 1..].split_whitespace();
            let v: f64 = rest.next().unwrap().parse().unwrap();
            let t: i64 = rest.next().unwrap().parse().unwrap();
            (line[..=close].to_string(), t, v.to_bits())
        })
        .collect()
}

/// The answers the test compares before and after compaction.
fn answers(query: &CairnQuery) -> Vec<String> {
    let end = format!("{}", (T0 + ROUNDS * STEP_MS) as f64 / 1000.0);
    let start = format!("{}", T0 as f64 / 1000.0);
    let mut out = Vec::new();
    for q in [
        "count_over_time(compact_e2e[3h])",
        "sum_over_time(compact_e2e[3h])",
        "max_over_time(compact_e2e[3h])",
    ] {
        let (status, v) = query.get_json("/api/v1/query", &[("query", q), ("time", &end)]);
        assert_eq!(status, 200, "{q}: {v}");
        let mut rows: Vec<String> = v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| format!("{} {}", s["metric"], s["value"][1]))
            .collect();
        rows.sort();
        out.push(format!("{q}: {}", rows.join("; ")));
    }
    let (status, v) = query.get_json(
        "/api/v1/query_range",
        &[
            ("query", "sum(compact_e2e)"),
            ("start", &start),
            ("end", &end),
            ("step", "60"),
        ],
    );
    assert_eq!(status, 200, "{v}");
    out.push(format!("sum range: {}", v["data"]["result"]));
    out
}

/// A store over the bucket (fresh: its first sync sees the bucket as it is now) and a query
/// layer over it de-duplicating by `replica`.
fn answers_now(dir: &Path, yaml: &str, name: &str) -> Vec<String> {
    let sdir = dir.join(name);
    std::fs::create_dir_all(&sdir).unwrap();
    let store = CairnStore::start(&sdir, yaml, &["--ignore-deletion-marks-delay=0s"]);
    let query = CairnQuery::start(&sdir, &[store.grpc], &["--query.replica-label=replica"]);
    wait_until(
        Duration::from_secs(20),
        "the query layer to see the store",
        || {
            let (_, v) = query.get_json("/api/v1/stores", &[]);
            v["data"]["store"]
                .as_array()
                .is_some_and(|a| a.iter().any(|s| s["minTime"].as_i64() == Some(T0)))
        },
    );
    answers(&query)
}

/// Series the store serves for one label set when de-duplication is off: 3 while the replicas'
/// copies are in the bucket, 1 once they are compacted into one.
fn copies_without_dedup(dir: &Path, yaml: &str, name: &str) -> usize {
    let sdir = dir.join(name);
    std::fs::create_dir_all(&sdir).unwrap();
    let store = CairnStore::start(&sdir, yaml, &["--ignore-deletion-marks-delay=0s"]);
    let query = CairnQuery::start(&sdir, &[store.grpc], &[]);
    let end = format!("{}", (T0 + ROUNDS * STEP_MS) as f64 / 1000.0);
    let (status, v) = query.get_json(
        "/api/v1/query",
        &[("query", "compact_e2e{series=\"s000\"}"), ("time", &end)],
    );
    assert_eq!(status, 200, "{v}");
    v["data"]["result"].as_array().unwrap().len()
}

#[test]
fn an_rf3_bucket_is_compacted_into_one_copy_that_answers_the_same() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(dir.path(), &dir.path().join("s3"), free_port(), BUCKET);
    let yaml = s3.objstore_yaml(BUCKET);
    let root = pool_ships_everything(dir.path(), &s3);

    let before_blocks = bucket_metas(&root);
    let shipped_samples: u64 = before_blocks
        .values()
        .map(|m| m["stats"]["numSamples"].as_u64().unwrap())
        .sum();
    let written = (ROUNDS as u64) * SERIES as u64;
    assert_eq!(
        shipped_samples,
        3 * written,
        "three copies of every sample shipped"
    );
    let bytes_before = bucket_bytes(&root);
    let before = answers_now(dir.path(), &yaml, "before");
    assert_eq!(copies_without_dedup(dir.path(), &yaml, "before-raw"), 3);
    assert!(
        before[0].contains(&format!("\"{ROUNDS}\"")),
        "every sample once through dedup: {}",
        before[0]
    );

    let mut compact = CairnCompact::start(
        dir.path(),
        &yaml,
        &["--deduplication.replica-label=replica"],
    );
    let started = Instant::now();
    let status = compact.wait(Duration::from_secs(120));
    let log = compact.proc.log_text();
    assert!(status.success(), "cairn compact: {status}; log:\n{log}");
    eprintln!(
        "compaction of {} blocks took {:?}",
        before_blocks.len(),
        started.elapsed()
    );

    // Sources are deleted (delete delay 0). The replicas' copies of each 5-minute range became
    // one block; the complete 2 h range [T0 - 15m, T0 + 105m) became one block of level 3; the
    // 5-minute blocks of the range still filling up wait (as Prometheus' planner has them).
    let after_blocks = bucket_metas(&root);
    let mut spans: Vec<(i64, i64, u64)> = after_blocks
        .values()
        .map(|m| {
            (
                m["minTime"].as_i64().unwrap(),
                m["maxTime"].as_i64().unwrap(),
                m["compaction"]["level"].as_u64().unwrap(),
            )
        })
        .collect();
    spans.sort();
    assert_eq!(spans[0], (T0, T0 + 105 * 60_000, 3), "{spans:?}");
    assert!(
        spans[1..]
            .iter()
            .all(|&(a, b, l)| b - a <= 5 * 60_000 && l == 2),
        "{spans:?}"
    );
    assert!(
        spans.windows(2).all(|w| w[0].1 <= w[1].0),
        "no overlap: {spans:?}"
    );
    for (id, meta) in &after_blocks {
        assert!(
            !root.join(id).join("deletion-mark.json").exists(),
            "{id} is marked"
        );
        assert_eq!(
            meta["thanos"]["labels"],
            serde_json::json!({"cluster": "edge", "tenant_id": "default-tenant"}),
            "{id}: the replica label is gone"
        );
        assert_eq!(meta["thanos"]["source"], "compactor", "{id}");
    }
    let live: BTreeSet<String> = after_blocks.keys().cloned().collect();
    let rows = promtool_dump(&root, &live, dir.path());
    let unique: BTreeSet<(String, i64, u64)> = rows.iter().cloned().collect();
    assert_eq!(
        rows.len(),
        unique.len(),
        "no sample twice across the live blocks"
    );
    assert_eq!(unique, expected_rows(), "every written sample, as written");

    let bytes_after = bucket_bytes(&root);
    let ratio = bytes_after as f64 / bytes_before as f64;
    eprintln!(
        "bucket bytes: {bytes_before} before, {bytes_after} after de-duplication ({ratio:.2})"
    );
    assert!(
        ratio <= 0.40,
        "bucket after de-duplication is {ratio:.2} of before"
    );

    let after = answers_now(dir.path(), &yaml, "after");
    assert_eq!(before, after, "the same answers before and after");
    assert_eq!(copies_without_dedup(dir.path(), &yaml, "after-raw"), 1);
}

/// Runs `cairn compact` through `yaml` and SIGKILLs it `after_ms` into each run (its bucket
/// traffic slowed by a proxy, so each moment falls in another phase); after each kill a fresh
/// store answers exactly `before`. Returns, for each run killed before it finished, its last
/// log line (what it was doing).
fn kill_runs(
    dir: &Path,
    name: &str,
    yaml: &str,
    extra: &[&str],
    kill_after_ms: &[u64],
    before: &[String],
    real_yaml: &str,
) -> Vec<String> {
    let mut kills = Vec::new();
    for (i, &after_ms) in kill_after_ms.iter().enumerate() {
        let run_dir = dir.join(format!("{name}-{i}"));
        std::fs::create_dir_all(&run_dir).unwrap();
        let mut compact = CairnCompact::start(&run_dir, yaml, extra);
        std::thread::sleep(Duration::from_millis(after_ms));
        if compact.proc.child.try_wait().unwrap().is_none() {
            let _ = compact.proc.child.kill();
            let _ = compact.proc.child.wait();
            let log = compact.proc.log_text();
            kills.push(format!(
                "{name} run {i} killed after {after_ms} ms; its last words: {}",
                log.lines().last().unwrap_or("")
            ));
        }
        let now = answers_now(dir, real_yaml, &format!("{name}-{i}-answers"));
        assert_eq!(
            before, now,
            "answers after a kill {after_ms} ms into {name} run {i}"
        );
    }
    kills
}

/// The compactor is SIGKILLed at several moments while it compacts, then (once everything is
/// compacted and the sources only marked) while it deletes the marked sources; after each kill
/// a fresh store answers exactly as before any compaction, and a last run to the end leaves
/// every sample once.
#[test]
fn a_compactor_killed_at_any_moment_leaves_a_bucket_that_answers_the_same() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(dir.path(), &dir.path().join("s3"), free_port(), BUCKET);
    let yaml = s3.objstore_yaml(BUCKET);
    let root = pool_ships_everything(dir.path(), &s3);
    let before = answers_now(dir.path(), &yaml, "before");

    // Every request to the bucket waits 20 ms: a run takes seconds, not milliseconds.
    let proxy = DelayProxy::start(
        format!("127.0.0.1:{}", s3.port).parse().unwrap(),
        Duration::from_millis(20),
    );
    let slow_yaml = S3Server::objstore_yaml_for_port(proxy.addr.port(), BUCKET);
    let dedup = "--deduplication.replica-label=replica";
    // Downloads, merges, uploads, marks.
    let kills = kill_runs(
        dir.path(),
        "compacting",
        &slow_yaml,
        &[dedup],
        &[300, 900, 1_800, 2_400, 3_000],
        &before,
        &yaml,
    );
    eprintln!("{}", kills.join("\n"));
    assert!(
        kills.len() >= 3,
        "only {} compacting runs were killed",
        kills.len()
    );

    // Killed in the middle of uploading a compacted block: as soon as a block directory without
    // meta.json shows up in the bucket (each upload request waits 20 ms at the proxy).
    let upload_dir = dir.path().join("uploading");
    std::fs::create_dir_all(&upload_dir).unwrap();
    let partials = || -> BTreeSet<String> {
        std::fs::read_dir(&root)
            .unwrap()
            .filter_map(|e| {
                let path = e.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                (name.len() == 26 && name.starts_with("01") && !path.join("meta.json").exists())
                    .then_some(name)
            })
            .collect()
    };
    // Earlier kills may have left partial uploads of their own.
    let earlier = partials();
    let mut uploading = CairnCompact::start(&upload_dir, &slow_yaml, &[dedup]);
    let partial = || partials().difference(&earlier).next().cloned();
    let deadline = Instant::now() + Duration::from_secs(60);
    let caught = loop {
        if let Some(id) = partial() {
            break id;
        }
        assert!(
            Instant::now() < deadline && uploading.proc.child.try_wait().unwrap().is_none(),
            "no upload caught in the act; log:\n{}",
            uploading.proc.log_text()
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    let _ = uploading.proc.child.kill();
    let _ = uploading.proc.child.wait();
    assert!(
        !root.join(&caught).join("meta.json").exists(),
        "killed before {caught}'s meta.json was written"
    );
    assert_eq!(
        before,
        answers_now(dir.path(), &yaml, "after-upload-kill"),
        "answers with {caught} half uploaded"
    );

    // Everything compacted, the sources marked and kept for an hour.
    let marking_dir = dir.path().join("marking");
    std::fs::create_dir_all(&marking_dir).unwrap();
    let mut marking = CairnCompact::start(&marking_dir, &yaml, &[dedup, "--delete-delay=1h"]);
    let status = marking.wait(Duration::from_secs(120));
    assert!(status.success(), "log:\n{}", marking.proc.log_text());
    let marked = std::fs::read_dir(&root)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .join("deletion-mark.json")
                .exists()
        })
        .count();
    assert!(marked >= 60, "{marked} blocks marked for deletion");
    assert_eq!(before, answers_now(dir.path(), &yaml, "marked"));

    // Deletions (about six slowed requests a block).
    let kills = kill_runs(
        dir.path(),
        "deleting",
        &slow_yaml,
        &[dedup],
        &[500, 1_500, 3_000],
        &before,
        &yaml,
    );
    eprintln!("{}", kills.join("\n"));
    assert!(
        kills.len() >= 2,
        "only {} deleting runs were killed",
        kills.len()
    );

    let last_dir = dir.path().join("last");
    std::fs::create_dir_all(&last_dir).unwrap();
    let mut last = CairnCompact::start(&last_dir, &yaml, &[dedup]);
    let status = last.wait(Duration::from_secs(120));
    assert!(status.success(), "log:\n{}", last.proc.log_text());
    let live = served_blocks(&root);
    assert_eq!(
        live.len(),
        bucket_metas(&root).len(),
        "every source deleted"
    );
    let rows = promtool_dump(&root, &live, dir.path());
    let unique: BTreeSet<(String, i64, u64)> = rows.iter().cloned().collect();
    assert_eq!(
        rows.len(),
        unique.len(),
        "no sample twice across the served blocks"
    );
    assert_eq!(unique, expected_rows());
    assert_eq!(before, answers_now(dir.path(), &yaml, "final"));
}

/// A 2-day boundary (2023-11-15T00:00:00Z).
const D0: i64 = 1_700_006_400_000;
const HOUR: i64 = 3_600_000;

/// promtool's 2 h blocks of three gauges over [D0, D0 + 52h), every 5 minutes, under `out`.
fn promtool_blocks(dir: &Path, out: &Path) -> Vec<String> {
    use std::fmt::Write as _;
    let promtool = require_binary("/usr/bin/promtool", "prometheus");
    let mut om = String::from("# HELP levels A gauge.\n# TYPE levels gauge\n");
    for k in 0..(52 * 12) {
        for s in 0..3 {
            let t = D0 + k * 300_000 + s * 1_000;
            let _ = writeln!(om, "levels{{s=\"{s}\"}} {}.{s} {}", k * 7 % 101, t / 1000);
        }
    }
    om.push_str("# EOF\n");
    let file = dir.join(format!("{}.om", out.file_name().unwrap().to_string_lossy()));
    std::fs::write(&file, om).unwrap();
    let run = Command::new(promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&file)
        .arg(out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let mut ids: Vec<String> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    assert_eq!(ids.len(), 26, "one block per 2 h");
    ids
}

/// promtool's 2 h blocks go 2h -> 8h -> 2d in one run; the 2-day block holds exactly their
/// samples (promtool dump of both equal) and lists them all as its sources, and, being over
/// 40 h, gets a 5m downsampled copy.
#[test]
fn promtool_blocks_are_compacted_level_by_level_into_their_exact_union() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("inputs");
    let ids = promtool_blocks(dir.path(), &inputs);
    let bucket = dir.path().join("bucket");
    let yaml = common::filesystem_yaml(&bucket);
    common::upload_blocks(&yaml, &inputs, "cluster=\"edge\"");
    let all: BTreeSet<String> = ids.iter().cloned().collect();
    let want = promtool_dump(&inputs, &all, &dir.path().join("want"));

    let mut compact = CairnCompact::start(dir.path(), &yaml, &[]);
    let status = compact.wait(Duration::from_secs(120));
    assert!(status.success(), "log:\n{}", compact.proc.log_text());

    let (metas, downsampled): (BTreeMap<_, _>, BTreeMap<_, _>) = bucket_metas(&bucket)
        .into_iter()
        .partition(|(_, m)| m["thanos"]["downsample"]["resolution"] == 0);
    let mut spans: Vec<(i64, i64, u64, usize)> = metas
        .values()
        .map(|m| {
            (
                m["minTime"].as_i64().unwrap() - D0,
                m["maxTime"].as_i64().unwrap() - D0,
                m["compaction"]["level"].as_u64().unwrap(),
                m["compaction"]["sources"].as_array().unwrap().len(),
            )
        })
        .collect();
    spans.sort();
    // [0, 48h): six 8 h blocks of four 2 h blocks each, merged into one 2-day block (its
    // max time is its last sample + 1, as promtool's blocks have it). The last two 2 h blocks
    // wait for their 8 h range to fill.
    assert_eq!(spans.len(), 3, "{spans:?}");
    let (min, max, level, sources) = spans[0];
    assert_eq!((min, level, sources), (0, 3, 24), "{spans:?}");
    assert!(max > 46 * HOUR && max <= 48 * HOUR, "{spans:?}");
    assert!(
        spans[1..]
            .iter()
            .all(|s| s.2 == 1 && s.3 == 1 && s.0 >= 48 * HOUR),
        "{spans:?}"
    );
    let two_days = metas.values().find(|m| m["minTime"] == D0).unwrap();
    let fives: Vec<&serde_json::Value> = downsampled.values().collect();
    assert_eq!(
        fives.len(),
        1,
        "one 5m block, of the 2-day block: {fives:?}"
    );
    assert_eq!(fives[0]["thanos"]["downsample"]["resolution"], 300_000);
    for field in ["minTime", "maxTime", "compaction"] {
        assert_eq!(fives[0][field], two_days[field], "{field}");
    }

    let live: BTreeSet<String> = metas.keys().cloned().collect();
    let got = promtool_dump(&bucket, &live, &dir.path().join("got"));
    let as_set = |rows: Vec<(String, i64, u64)>| -> BTreeSet<(String, i64, u64)> {
        rows.into_iter().collect()
    };
    assert_eq!(got.len(), want.len());
    assert_eq!(as_set(got), as_set(want), "promtool dump before and after");
}

/// Two copies of the same blocks under the same labels, without de-duplication or vertical
/// compaction: the compactor halts, names the overlapping blocks, reports
/// `thanos_compact_halted 1` and stays up until it is stopped.
#[test]
fn overlapping_blocks_without_deduplication_halt_the_compactor() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = dir.path().join("bucket");
    let yaml = common::filesystem_yaml(&bucket);
    let a = promtool_blocks(dir.path(), &dir.path().join("a"));
    let b = promtool_blocks(dir.path(), &dir.path().join("b"));
    common::upload_blocks(&yaml, &dir.path().join("a"), "cluster=\"edge\"");
    common::upload_blocks(&yaml, &dir.path().join("b"), "cluster=\"edge\"");

    let mut compact = CairnCompact::start(dir.path(), &yaml, &[]);
    wait_until(Duration::from_secs(60), "thanos_compact_halted 1", || {
        compact.metric("thanos_compact_halted") == Some(1.0)
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        compact.proc.child.try_wait().unwrap().is_none(),
        "a halted compactor stays up for inspection"
    );
    let log = compact.proc.log_text();
    assert!(log.contains("overlapping blocks"), "{log}");
    assert!(
        log.contains(&a[0]) && log.contains(&b[0]),
        "names the blocks: {log}"
    );
    assert!(
        log.contains("--deduplication.replica-label"),
        "says what to do: {log}"
    );
    assert_eq!(
        bucket_metas(&bucket).len(),
        52,
        "nothing compacted, nothing marked"
    );
    let status = compact.proc.terminate(Duration::from_secs(10));
    assert!(!status.success(), "a halted compactor exits non-zero");
}
