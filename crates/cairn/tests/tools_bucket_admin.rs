//! `cairn tools bucket mark | cleanup | retention | web`, the real binary against buckets of
//! blocks written with `tsdb::block::write_block` (Thanos external labels, levels, sources,
//! resolutions) and uploaded with `objstore::bucket::upload_block`: marks put, kept and
//! removed; an unknown block refused before anything is marked; cleanup deleting only what is
//! due (on s3s-fs); retention marking only blocks past their resolution's retention; the web
//! page's JSON (groups, sizes, marks, refresh) and the page itself rendered by Chromium.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use objstore::bucket::{block_objects, upload_block};
use objstore::markers::{
    read_marker, write_marker, DeletionMark, NoCompactMark, NoDownsampleMark, MARKER_VERSION,
};
use objstore::{Bucket, BucketConfig};
use tsdb::block::{write_block, BlockWriteOptions};
use tsdb::chunkenc::{XorChunk, ENCODING_XOR};
use tsdb::labels;
use tsdb::meta::{Compaction, Downsample, ThanosMeta};
use tsdb::querier::{ChunkData, Series};
use ulid::Ulid;

use common::now_ms;

const H: i64 = 3_600_000;
const D: i64 = 24 * H;

/// Runs `cairn tools bucket <objstore flag> args...` (bounded: every command here is one pass).
fn cairn(config: &str, args: &[&str]) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["tools", "bucket", config])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("cairn tools bucket {args:?} did not finish within 60s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// What a block to upload looks like.
struct Spec {
    mint: i64,
    maxt: i64,
    ext: &'static [(&'static str, &'static str)],
    level: u32,
    sources: Vec<Ulid>,
    resolution: i64,
    source: &'static str,
}

impl Spec {
    fn raw(mint: i64, maxt: i64, ext: &'static [(&'static str, &'static str)]) -> Spec {
        Spec {
            mint,
            maxt,
            ext,
            level: 1,
            sources: Vec::new(),
            resolution: 0,
            source: "receive",
        }
    }
}

struct Env {
    dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    bucket: Bucket,
    /// `--objstore.config=...` for the binary.
    flag: String,
}

impl Env {
    fn new(objstore_yaml: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let bucket = BucketConfig::parse(objstore_yaml).unwrap().build().unwrap();
        Env {
            dir,
            rt,
            bucket,
            flag: format!("--objstore.config={objstore_yaml}"),
        }
    }

    fn filesystem() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("bucket");
        std::fs::create_dir_all(&root).unwrap();
        let mut env = Env::new(&format!(
            "type: FILESYSTEM\nconfig:\n  directory: {}\n",
            root.display()
        ));
        env.dir = dir;
        env
    }

    fn run(&self, args: &[&str]) -> (bool, String) {
        cairn(&self.flag, args)
    }

    /// Writes a block of two series sampled every 15 s over [mint, maxt) and uploads it.
    fn block(&self, spec: Spec) -> Ulid {
        let local = self.dir.path().join("local");
        std::fs::create_dir_all(&local).unwrap();
        let step = if spec.resolution > 0 {
            spec.resolution
        } else {
            15_000
        };
        let samples: Vec<(i64, f64)> = (spec.mint..spec.maxt)
            .step_by(step as usize)
            .map(|t| (t, (t / 1000) as f64))
            .collect();
        // In label order, as a block's index wants them.
        let series: Vec<Series> = [
            labels!("__name__" => "http_requests_total", "code" => "200"),
            labels!("__name__" => "up", "job" => "node"),
        ]
        .into_iter()
        .map(|labels| Series {
            labels,
            chunks: samples.chunks(120).map(chunk).collect(),
        })
        .collect();
        let opts = BlockWriteOptions {
            compaction: Compaction {
                level: spec.level,
                sources: spec.sources.iter().map(Ulid::to_string).collect(),
                ..Default::default()
            },
            thanos: Some(ThanosMeta {
                labels: spec
                    .ext
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect(),
                source: spec.source.into(),
                downsample: Downsample {
                    resolution: spec.resolution,
                },
                ..Default::default()
            }),
        };
        let meta = write_block(&local, spec.mint, spec.maxt, &series, opts).unwrap();
        let block_dir = local.join(meta.ulid.to_string());
        self.rt
            .block_on(upload_block(&self.bucket, &block_dir))
            .unwrap();
        std::fs::remove_dir_all(block_dir).unwrap();
        meta.ulid
    }

    /// An aborted upload: an index but no meta.json.
    fn partial(&self, ulid: Ulid) {
        let path = ObjectPath::from(format!("{ulid}/index"));
        self.rt
            .block_on(self.bucket.put(&path, PutPayload::from(vec![1u8; 64])))
            .unwrap();
    }

    /// Blocks (complete or not) present in the bucket.
    fn present(&self) -> BTreeSet<Ulid> {
        self.rt
            .block_on(async {
                self.bucket.list_with_delimiter(None).await.map(|l| {
                    l.common_prefixes
                        .iter()
                        .filter_map(|p| p.filename().and_then(|n| Ulid::from_string(n).ok()))
                        .collect()
                })
            })
            .unwrap()
    }

    fn deletion_mark(&self, ulid: Ulid) -> Option<DeletionMark> {
        self.rt
            .block_on(read_marker::<DeletionMark>(&self.bucket, ulid))
            .unwrap()
    }

    fn no_compact_mark(&self, ulid: Ulid) -> Option<NoCompactMark> {
        self.rt
            .block_on(read_marker::<NoCompactMark>(&self.bucket, ulid))
            .unwrap()
    }

    /// A deletion mark written `age` ago.
    fn mark_deleted_ago(&self, ulid: Ulid, age: Duration) {
        let mark = DeletionMark {
            id: ulid,
            version: MARKER_VERSION,
            details: "by the test".into(),
            deletion_time: (now_ms() / 1000) - age.as_secs() as i64,
        };
        self.rt
            .block_on(write_marker(&self.bucket, ulid, &mark))
            .unwrap();
    }

    fn object_bytes(&self, ulid: Ulid) -> u64 {
        self.rt
            .block_on(block_objects(&self.bucket, ulid))
            .unwrap()
            .iter()
            .map(|(_, s)| s)
            .sum()
    }
}

fn chunk(samples: &[(i64, f64)]) -> ChunkData {
    let mut c = XorChunk::new();
    for &(t, v) in samples {
        c.append(t, v);
    }
    ChunkData {
        min_time: samples[0].0,
        max_time: samples[samples.len() - 1].0,
        encoding: ENCODING_XOR,
        data: c.bytes().to_vec().into(),
    }
}

const EU: &[(&str, &str)] = &[("cluster", "eu"), ("replica", "r0")];
const US: &[(&str, &str)] = &[("cluster", "us"), ("replica", "r0")];

#[test]
fn mark_keeps_existing_marks_removes_on_request_and_refuses_unknown_blocks() {
    let env = Env::filesystem();
    let t0 = now_ms() - 10 * H;
    let a = env.block(Spec::raw(t0, t0 + 2 * H, EU));
    let b = env.block(Spec::raw(t0 + 2 * H, t0 + 4 * H, EU));
    let (a_s, b_s) = (a.to_string(), b.to_string());

    // Repeated --id: both get a no-compact mark, reason manual, with the details.
    let (ok, out) = env.run(&[
        "mark",
        "--id",
        &a_s,
        "--id",
        &b_s,
        "--marker",
        "no-compact-mark.json",
        "--details",
        "broken <index> & co",
    ]);
    assert!(ok, "{out}");
    assert_eq!(
        out.matches("marked with no-compact-mark.json").count(),
        2,
        "{out}"
    );
    for ulid in [a, b] {
        let mark = env.no_compact_mark(ulid).expect("no-compact mark");
        assert_eq!(
            (mark.id, mark.reason.as_str(), mark.details.as_str()),
            (ulid, "manual", "broken <index> & co")
        );
    }
    let raw_path = env
        .dir
        .path()
        .join(format!("bucket/{a}/no-compact-mark.json"));
    let first = std::fs::read_to_string(&raw_path).unwrap();
    assert!(
        first.contains(r#""details":"broken \u003cindex\u003e \u0026 co""#),
        "{first}"
    );

    // Marking again reports the existing mark and leaves it byte for byte.
    let (ok, out) = env.run(&[
        "mark",
        "--id",
        &a_s,
        "--marker",
        "no-compact-mark.json",
        "--details",
        "something else",
    ]);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("{a}: already has no-compact-mark.json")),
        "{out}"
    );
    assert_eq!(std::fs::read_to_string(&raw_path).unwrap(), first);

    // Deletion and no-downsample marks.
    let (ok, out) = env.run(&[
        "mark",
        "--id",
        &b_s,
        "--marker",
        "deletion-mark.json",
        "--details",
        "operator",
    ]);
    assert!(ok, "{out}");
    let deletion = env.deletion_mark(b).expect("deletion mark");
    assert_eq!(deletion.details, "operator");
    assert!((now_ms() / 1000 - deletion.deletion_time).abs() < 120);
    let (ok, out) = env.run(&[
        "mark",
        "--id",
        &a_s,
        "--marker",
        "no-downsample-mark.json",
        "--details",
        "keep raw",
    ]);
    assert!(ok, "{out}");
    let nd = env
        .rt
        .block_on(read_marker::<NoDownsampleMark>(&env.bucket, a))
        .unwrap()
        .expect("no-downsample mark");
    assert_eq!(
        (nd.reason.as_str(), nd.details.as_str()),
        ("manual", "keep raw")
    );

    // --remove takes one kind of mark off and leaves the others; no --details needed.
    let (ok, out) = env.run(&[
        "mark",
        "--id",
        &a_s,
        "--marker",
        "no-compact-mark.json",
        "--remove",
    ]);
    assert!(
        ok && out.contains(&format!("{a}: removed no-compact-mark.json")),
        "{out}"
    );
    assert!(env.no_compact_mark(a).is_none());
    assert!(env.no_compact_mark(b).is_some());
    assert!(env
        .rt
        .block_on(read_marker::<NoDownsampleMark>(&env.bucket, a))
        .unwrap()
        .is_some());
    let (ok, out) = env.run(&[
        "mark",
        "--id",
        &a_s,
        "--marker",
        "no-compact-mark.json",
        "--remove",
    ]);
    assert!(ok && out.contains("has no no-compact-mark.json"), "{out}");

    // Refusals: no details, an unknown block (nothing marked, not even the known one), a
    // string that is no ULID, a marker that does not exist.
    let (ok, out) = env.run(&["mark", "--id", &a_s, "--marker", "deletion-mark.json"]);
    assert!(!ok && out.contains("--details"), "{out}");
    let unknown = Ulid::new();
    let (ok, out) = env.run(&[
        "mark",
        "--id",
        &a_s,
        "--id",
        &unknown.to_string(),
        "--marker",
        "deletion-mark.json",
        "--details",
        "x",
    ]);
    assert!(!ok, "{out}");
    assert!(out.contains(&format!("block {unknown} not found")), "{out}");
    assert!(
        env.deletion_mark(a).is_none(),
        "a was marked despite the error"
    );
    assert!(!env.present().contains(&unknown));
    let (ok, out) = env.run(&[
        "mark",
        "--id",
        "not-a-ulid",
        "--marker",
        "deletion-mark.json",
        "--details",
        "x",
    ]);
    assert!(!ok && out.contains("not a ULID"), "{out}");
    let (ok, out) = env.run(&[
        "mark",
        "--id",
        &a_s,
        "--marker",
        "other.json",
        "--details",
        "x",
    ]);
    assert!(!ok && out.contains("possible values"), "{out}");
}

#[test]
fn cleanup_on_s3_deletes_only_what_is_due_and_marks_superseded_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = common::S3Server::start(
        dir.path(),
        &dir.path().join("s3"),
        common::free_port(),
        "blocks",
    );
    let env = Env::new(&s3.objstore_yaml("blocks"));
    let t0 = now_ms() - 20 * H;

    // a and b were compacted into c (whose sources list both); nothing has marked them yet.
    let a = env.block(Spec::raw(t0, t0 + 2 * H, EU));
    let b = env.block(Spec::raw(t0 + 2 * H, t0 + 4 * H, EU));
    let c = env.block(Spec {
        level: 2,
        sources: vec![a, b],
        source: "compactor",
        ..Spec::raw(t0, t0 + 4 * H, EU)
    });
    // d's deletion mark is 3h old (past a 1h delay), e's is fresh; f has nothing to do with
    // any of it (another group).
    let d = env.block(Spec::raw(t0 + 4 * H, t0 + 6 * H, EU));
    env.mark_deleted_ago(d, Duration::from_secs(3 * 3600));
    let e = env.block(Spec::raw(t0 + 6 * H, t0 + 8 * H, EU));
    env.mark_deleted_ago(e, Duration::ZERO);
    let f = env.block(Spec::raw(t0, t0 + 2 * H, US));
    // Partial uploads: one abandoned 3 days ago, one maybe still under way.
    let old_partial = Ulid::from_parts((now_ms() - 3 * D) as u64, 7);
    env.partial(old_partial);
    let new_partial = Ulid::new();
    env.partial(new_partial);

    let (ok, out) = env.run(&["cleanup", "--delete-delay=1h", "--consistency-delay=0s"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("cleanup done: 2 block(s) marked for deletion, 2 deleted"),
        "{out}"
    );
    assert_eq!(
        env.present(),
        BTreeSet::from([a, b, c, e, f, new_partial]),
        "{out}"
    );
    for superseded in [a, b] {
        let mark = env
            .deletion_mark(superseded)
            .expect("superseded block marked");
        assert_eq!(mark.details, "outdated block");
    }
    for kept in [c, f] {
        assert!(env.deletion_mark(kept).is_none(), "{kept} marked");
    }
    assert_eq!(env.deletion_mark(e).unwrap().details, "by the test");

    // Nothing more is due: a second pass changes nothing.
    let (ok, out) = env.run(&["cleanup", "--delete-delay=1h", "--consistency-delay=0s"]);
    assert!(
        ok && out.contains("0 block(s) marked for deletion, 0 deleted"),
        "{out}"
    );
    assert_eq!(env.present().len(), 6);

    // With no delay every marked block goes; the partial upload is still too young.
    let (ok, out) = env.run(&["cleanup", "--delete-delay=0s", "--consistency-delay=0s"]);
    assert!(ok && out.contains("3 deleted"), "{out}");
    assert_eq!(env.present(), BTreeSet::from([c, f, new_partial]), "{out}");
}

#[test]
fn cleanup_leaves_blocks_within_the_consistency_delay_alone() {
    let env = Env::filesystem();
    let t0 = now_ms() - 20 * H;
    // Freshly uploaded (by its ULID), so with the default 30m delay the compacted block's
    // inputs are not seen and not marked.
    let a = env.block(Spec::raw(t0, t0 + 2 * H, EU));
    let b = env.block(Spec::raw(t0 + 2 * H, t0 + 4 * H, EU));
    let _c = env.block(Spec {
        level: 2,
        sources: vec![a, b],
        source: "compactor",
        ..Spec::raw(t0, t0 + 4 * H, EU)
    });
    let (ok, out) = env.run(&["cleanup"]);
    assert!(
        ok && out.contains("0 block(s) marked for deletion, 0 deleted"),
        "{out}"
    );
    assert!(env.deletion_mark(a).is_none() && env.deletion_mark(b).is_none());
}

#[test]
fn retention_marks_only_blocks_past_their_resolutions_retention() {
    let env = Env::filesystem();
    let now = now_ms();
    let old = now - 40 * D;
    let old_raw = env.block(Spec::raw(old, old + 2 * H, EU));
    let recent_raw = env.block(Spec::raw(now - 3 * H, now - H, EU));
    let old_5m = env.block(Spec {
        resolution: 300_000,
        ..Spec::raw(old, old + 2 * D, EU)
    });
    let old_1h = env.block(Spec {
        resolution: 3_600_000,
        ..Spec::raw(old, old + 14 * D, EU)
    });
    let all = BTreeSet::from([old_raw, recent_raw, old_5m, old_1h]);

    let (ok, out) = env.run(&["retention"]);
    assert!(!ok && out.contains("no retention given"), "{out}");

    // Raw data kept 30 days, 1h data a year, 5m data forever: only the old raw block goes,
    // marked (the default delete delay keeps it in the bucket).
    let (ok, out) = env.run(&[
        "retention",
        "--consistency-delay=0s",
        "--retention.resolution-raw=30d",
        "--retention.resolution-1h=365d",
    ]);
    assert!(ok, "{out}");
    assert!(
        out.contains("retention done: 1 block(s) marked for deletion, 0 deleted"),
        "{out}"
    );
    assert_eq!(
        env.deletion_mark(old_raw).map(|m| m.details),
        Some("block exceeding retention period".to_string())
    );
    for kept in [recent_raw, old_5m, old_1h] {
        assert!(env.deletion_mark(kept).is_none(), "{kept} marked");
    }
    assert_eq!(env.present(), all);

    // A block marked for another reason is not retention's to delete.
    let recent_2 = env.block(Spec::raw(now - 5 * H, now - 3 * H, US));
    env.mark_deleted_ago(recent_2, Duration::from_secs(3600));

    // 5m data now kept 30 days, deleted at once: the old 5m block, and the raw block marked
    // by the last pass, go.
    let (ok, out) = env.run(&[
        "retention",
        "--consistency-delay=0s",
        "--delete-delay=0s",
        "--retention.resolution-raw=30d",
        "--retention.resolution-5m=30d",
    ]);
    assert!(ok, "{out}");
    assert!(
        out.contains("retention done: 1 block(s) marked for deletion, 2 deleted"),
        "{out}"
    );
    assert_eq!(
        env.present(),
        BTreeSet::from([recent_raw, old_1h, recent_2])
    );
}

fn get_json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let res = common::get(addr, path).unwrap();
    assert_eq!(res.status, 200, "{}", res.body);
    assert!(
        res.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{:?}",
        res.headers
    );
    serde_json::from_str(&res.body).unwrap()
}

fn by_ulid(data: &serde_json::Value) -> BTreeMap<String, serde_json::Value> {
    data["data"]["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["ulid"].as_str().unwrap().to_string(), b.clone()))
        .collect()
}

#[test]
fn web_serves_the_blocks_with_groups_sizes_and_marks_and_a_page_drawing_them() {
    let env = Env::filesystem();
    let t0 = now_ms() - 30 * H;
    let a = env.block(Spec::raw(t0, t0 + 2 * H, EU));
    let b = env.block(Spec::raw(t0 + 2 * H, t0 + 4 * H, EU));
    let c = env.block(Spec {
        level: 2,
        sources: vec![a, b],
        source: "compactor",
        ..Spec::raw(t0, t0 + 4 * H, EU)
    });
    let us = env.block(Spec::raw(t0, t0 + 2 * H, US));
    let eu_5m = env.block(Spec {
        resolution: 300_000,
        ..Spec::raw(t0, t0 + 8 * H, EU)
    });
    env.mark_deleted_ago(a, Duration::from_secs(60));
    env.rt
        .block_on(objstore::markers::mark_for_no_compact(
            &env.bucket,
            us,
            "manual",
            "too big",
        ))
        .unwrap();
    let partial = Ulid::new();
    env.partial(partial);
    // A meta without thanos.files (as another tool may write it).
    let meta_path = env.dir.path().join(format!("bucket/{eu_5m}/meta.json"));
    let mut meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta_path).unwrap()).unwrap();
    meta["thanos"].as_object_mut().unwrap().remove("files");
    std::fs::write(&meta_path, meta.to_string()).unwrap();

    let port = common::free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut web = common::Proc::spawn(
        "bucket-web",
        Command::new(env!("CARGO_BIN_EXE_cairn")).args([
            "tools",
            "bucket",
            &env.flag,
            "web",
            &format!("--http-address={addr}"),
            "--refresh=1h",
        ]),
        env.dir.path(),
    );
    common::wait_until(
        Duration::from_secs(20),
        "the web tool's first reading",
        || {
            common::get(addr, "/api/v1/blocks").is_ok_and(|r| {
                r.status == 200
                    && serde_json::from_str::<serde_json::Value>(&r.body)
                        .is_ok_and(|v| !v["data"]["refreshedAt"].is_null())
            })
        },
    );

    let data = get_json(addr, "/api/v1/blocks");
    assert_eq!(data["status"], "success");
    assert!(data["data"]["err"].is_null(), "{data}");
    assert_eq!(
        data["data"]["partial"],
        serde_json::json!([partial.to_string()])
    );
    let blocks = by_ulid(&data);
    assert_eq!(
        blocks.keys().cloned().collect::<BTreeSet<_>>(),
        [a, b, c, us, eu_5m].iter().map(Ulid::to_string).collect(),
        "{data}"
    );
    // Groups: EU raw (a, b, c), US raw, EU 5m: three, keyed "<resolution>@<labels hash>".
    let groups: BTreeMap<String, BTreeSet<String>> =
        blocks.iter().fold(BTreeMap::new(), |mut g, (u, b)| {
            g.entry(b["group"].as_str().unwrap().to_string())
                .or_default()
                .insert(u.clone());
            g
        });
    assert_eq!(groups.len(), 3, "{groups:?}");
    assert!(groups
        .values()
        .any(|g| g.len() == 3 && g.contains(&c.to_string())));
    assert!(blocks[&eu_5m.to_string()]["group"]
        .as_str()
        .unwrap()
        .starts_with("300000@"));
    assert_eq!(blocks[&eu_5m.to_string()]["resolution"], 300_000);
    assert_eq!(blocks[&us.to_string()]["labels"]["cluster"], "us");

    // Meta fields as meta.json has them, and the size: what meta.json's thanos.files says,
    // or for a block whose meta lists no files (eu_5m, see below) the sum of its objects.
    let cb = &blocks[&c.to_string()];
    assert_eq!(cb["minTime"], t0);
    assert_eq!(cb["maxTime"], t0 + 4 * H);
    assert_eq!(cb["compaction"]["level"], 2);
    assert_eq!(
        cb["compaction"]["sources"],
        serde_json::json!([a.to_string(), b.to_string()])
    );
    assert_eq!(cb["stats"]["numSeries"], 2);
    assert_eq!(cb["thanos"]["source"], "compactor");
    let listed: u64 = cb["thanos"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["size_bytes"].as_u64())
        .sum();
    assert!(listed > 1000);
    assert_eq!(cb["sizeBytes"], listed);
    assert_eq!(
        blocks[&eu_5m.to_string()]["sizeBytes"],
        env.object_bytes(eu_5m)
    );

    // Marks.
    let marks = |u: Ulid| blocks[&u.to_string()]["marks"].clone();
    assert_eq!(marks(a)["deletion"]["details"], "by the test");
    assert!(marks(a)["noCompact"].is_null());
    assert_eq!(marks(us)["noCompact"]["reason"], "manual");
    assert_eq!(marks(us)["noCompact"]["details"], "too big");
    assert!(marks(us)["deletion"].is_null());
    for u in [b, c, eu_5m] {
        assert!(
            marks(u)["deletion"].is_null() && marks(u)["noCompact"].is_null(),
            "{u}"
        );
    }

    // Changes show on the next reading only: --refresh is an hour, ?refresh=1 reads now.
    let (ok, out) = env.run(&[
        "mark",
        "--id",
        &b.to_string(),
        "--marker",
        "deletion-mark.json",
        "--details",
        "superseded",
    ]);
    assert!(ok, "{out}");
    let late = env.block(Spec::raw(t0 + 8 * H, t0 + 10 * H, US));
    let stale = by_ulid(&get_json(addr, "/api/v1/blocks"));
    assert!(stale[&b.to_string()]["marks"]["deletion"].is_null());
    assert!(!stale.contains_key(&late.to_string()));
    let fresh = by_ulid(&get_json(addr, "/api/v1/blocks?refresh=1"));
    assert_eq!(
        fresh[&b.to_string()]["marks"]["deletion"]["details"],
        "superseded"
    );
    assert!(fresh.contains_key(&late.to_string()));

    // The page: embedded, fetching the JSON above, no outside resources.
    let page = common::get(addr, "/").unwrap();
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/html")));
    assert!(page.body.contains("api/v1/blocks"), "{}", page.body);
    // The only absolute URL in it is the SVG namespace.
    assert_eq!(
        page.body.matches("://").count(),
        page.body.matches("http://www.w3.org/2000/svg").count(),
        "{}",
        page.body
    );

    // Rendered by a real browser (the test command installs Debian's chromium): a bar per
    // block, hatched when marked for deletion, one band title per group.
    {
        let chromium = common::require_binary("/usr/bin/chromium", "chromium");
        let profile = env.dir.path().join("chromium");
        let out = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--virtual-time-budget=10000",
                "--timeout=30000",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("--dump-dom")
            .arg(format!("http://{addr}/"))
            .output()
            .unwrap();
        let dom = String::from_utf8_lossy(&out.stdout);
        assert!(
            dom.contains("</html>"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(dom.matches("data-ulid=").count(), 6, "{dom}");
        assert_eq!(dom.matches("fill=\"url(#hatch)\"").count(), 2, "{dom}");
        assert_eq!(dom.matches("class=\"grp-title\"").count(), 3, "{dom}");
        assert!(dom.contains("6 blocks (6 shown) in 3 groups"), "{dom}");
    }

    let status = web.terminate(Duration::from_secs(10));
    assert!(status.success(), "{status:?}\n{}", web.log_text());
}
