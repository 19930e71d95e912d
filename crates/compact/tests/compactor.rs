//! The compactor's iteration over a filesystem bucket, in process: replica de-duplication,
//! level-by-level compaction, the halt on overlaps, no-compact marks, retention and the
//! deletion of marked blocks.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use compact::compactor::{CompactError, Compactor, CompactorConfig, RESOLUTION_RAW};
use compact::metrics::CompactMetrics;
use objstore::bucket::{list_blocks, upload_block};
use objstore::markers::{read_marker, DeletionMark};
use objstore::verify::download_block;
use objstore::{Bucket, BucketConfig};
use tsdb::block::{write_block, Block, BlockQuerier, BlockWriteOptions};
use tsdb::chunkenc::{XorChunk, ENCODING_XOR};
use tsdb::compact::MergeMode;
use tsdb::matcher::{MatchType, Matcher};
use tsdb::meta::{BlockMeta, ThanosMeta};
use tsdb::querier::{ChunkData, Querier, Series};
use tsdb::{labels, Labels};
use ulid::Ulid;

const H: i64 = 3_600_000;

type Contents = BTreeMap<Labels, Vec<(i64, f64)>>;

struct Env {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    bucket: Bucket,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        std::fs::create_dir_all(root.join("bucket")).unwrap();
        let bucket = BucketConfig::filesystem(root.join("bucket"))
            .build()
            .unwrap();
        Env {
            _dir: dir,
            root,
            bucket,
        }
    }

    fn config(&self) -> CompactorConfig {
        let mut c = CompactorConfig::new(self.root.join("compactor"));
        c.consistency_delay = Duration::ZERO;
        c.delete_delay = Duration::ZERO;
        c
    }

    fn compactor(&self, config: CompactorConfig) -> (Compactor, Arc<CompactMetrics>) {
        let metrics = Arc::new(CompactMetrics::default());
        let c = Compactor::new(self.bucket.clone(), config, metrics.clone()).unwrap();
        (c, metrics)
    }

    /// Writes a block of `contents` over [mint, maxt) with external `ext` labels and uploads it.
    async fn upload(
        &self,
        mint: i64,
        maxt: i64,
        ext: &[(&str, &str)],
        contents: &Contents,
    ) -> BlockMeta {
        let local = self.root.join("local");
        std::fs::create_dir_all(&local).unwrap();
        let series: Vec<Series> = contents
            .iter()
            .map(|(labels, samples)| Series {
                labels: labels.clone(),
                chunks: samples.chunks(120).map(chunk).collect(),
            })
            .collect();
        let opts = BlockWriteOptions {
            thanos: Some(ThanosMeta {
                labels: ext
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect(),
                source: "receive".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let meta = write_block(&local, mint, maxt, &series, opts).unwrap();
        upload_block(&self.bucket, &local.join(meta.ulid.to_string()))
            .await
            .unwrap();
        meta
    }

    /// The blocks in the bucket without a deletion mark.
    async fn live(&self) -> Vec<BlockMeta> {
        let mut live = Vec::new();
        for meta in list_blocks(&self.bucket).await.unwrap() {
            if read_marker::<DeletionMark>(&self.bucket, meta.ulid)
                .await
                .unwrap()
                .is_none()
            {
                live.push(meta);
            }
        }
        live.sort_by_key(|m| (m.min_time, m.ulid));
        live
    }

    async fn contents(&self, ulid: Ulid) -> Contents {
        let dest = self.root.join("read");
        let dir = download_block(&self.bucket, ulid, &dest).await.unwrap();
        let block = Arc::new(Block::open(&dir).unwrap());
        let all = [Matcher::new(MatchType::Regex, "__name__", ".+").unwrap()];
        let out = BlockQuerier(block)
            .select(&all, i64::MIN, i64::MAX)
            .unwrap()
            .into_iter()
            .map(|s| {
                let samples = s.iter(i64::MIN, i64::MAX).map(|x| (x.t, x.v)).collect();
                (s.labels, samples)
            })
            .collect();
        std::fs::remove_dir_all(&dir).unwrap();
        out
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

/// Samples every 15 s over [from, to), valued by their timestamp.
fn scrape(from: i64, to: i64) -> Vec<(i64, f64)> {
    (from..to)
        .step_by(15_000)
        .map(|t| (t, (t / 1000) as f64))
        .collect()
}

fn contents(series: &[(Labels, Vec<(i64, f64)>)]) -> Contents {
    series.iter().cloned().collect()
}

/// Every (series, timestamp) of `parts`, once: what a correct de-duplication yields.
fn union(parts: &[&Contents]) -> Contents {
    let mut out: BTreeMap<Labels, BTreeMap<i64, f64>> = BTreeMap::new();
    for part in parts {
        for (labels, samples) in *part {
            let series = out.entry(labels.clone()).or_default();
            for &(t, v) in samples {
                series.entry(t).or_insert(v);
            }
        }
    }
    out.into_iter()
        .map(|(l, s)| (l, s.into_iter().collect()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_become_one_block_holding_every_sample_once() {
    let env = Env::new();
    let up = labels!("__name__" => "up", "job" => "node");
    let rate = labels!("__name__" => "http_requests_total", "code" => "200");
    // r0 and r1 hold everything; r2 missed the middle of the period and has a series of its
    // own (written only while the others were down).
    let full = contents(&[
        (up.clone(), scrape(0, 2 * H)),
        (rate.clone(), scrape(0, 2 * H)),
    ]);
    let mut holed = full.clone();
    for samples in holed.values_mut() {
        samples.retain(|&(t, _)| !(H / 2..H).contains(&t));
    }
    let only_r2 = labels!("__name__" => "late", "job" => "node");
    holed.insert(only_r2.clone(), scrape(H, H + 60_000));
    let mut inputs = Vec::new();
    for (replica, data) in [("r0", &full), ("r1", &full), ("r2", &holed)] {
        let ext = [("cluster", "eu"), ("replica", replica)];
        inputs.push(env.upload(0, 2 * H, &ext, data).await);
    }

    let mut config = env.config();
    config.replica_labels = vec!["replica".into()];
    config.delete_delay = Duration::from_secs(3600);
    let (compactor, metrics) = env.compactor(config);
    let report = compactor.run_once().await.unwrap();
    assert_eq!(report.compactions, 1, "{report:?}");
    assert_eq!(report.vertical_compactions, 1);
    assert_eq!(report.marked_for_deletion, 3);
    assert_eq!(report.deleted, 0, "delete delay not yet passed");

    let live = env.live().await;
    assert_eq!(live.len(), 1, "one live block: {live:?}");
    let out = &live[0];
    assert_eq!((out.min_time, out.max_time), (0, 2 * H));
    assert_eq!(out.compaction.level, 2);
    let sources: BTreeSet<String> = inputs.iter().map(|m| m.ulid.to_string()).collect();
    assert_eq!(
        out.compaction
            .sources
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>(),
        sources
    );
    assert_eq!(out.compaction.parents.len(), 3);
    let thanos = out.thanos.as_ref().unwrap();
    assert_eq!(
        thanos.labels,
        BTreeMap::from([("cluster".to_string(), "eu".to_string())]),
        "the replica label is dropped"
    );
    assert_eq!(thanos.source, "compactor");
    let got = env.contents(out.ulid).await;
    assert_eq!(got, union(&[&full, &holed]), "every sample exactly once");
    assert_eq!(
        out.stats.num_samples,
        got.values().map(|s| s.len() as u64).sum::<u64>()
    );
    assert!(got.contains_key(&only_r2));

    // The sources are marked, not yet deleted; a second iteration has nothing to do.
    for m in &inputs {
        assert!(read_marker::<DeletionMark>(&env.bucket, m.ulid)
            .await
            .unwrap()
            .is_some());
    }
    let again = compactor.run_once().await.unwrap();
    assert_eq!(again.compactions, 0, "{again:?}");
    let body = encode(&metrics);
    assert!(
        body.contains("thanos_compact_group_vertical_compactions_total{resolution=\"0\"} 1"),
        "{body}"
    );
    assert!(body.contains("thanos_compact_iterations_total 2"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn penalty_dedup_keeps_one_replica_where_they_scraped_at_other_moments() {
    let env = Env::new();
    let s = labels!("__name__" => "c");
    // Two replicas scraping the same counter 5 s apart: one-to-one would interleave them and
    // double the sample rate; penalty follows one replica.
    let a = contents(&[(s.clone(), scrape(0, 10 * 60_000))]);
    let b = contents(&[(
        s.clone(),
        scrape(0, 10 * 60_000)
            .into_iter()
            .map(|(t, v)| (t + 5_000, v))
            .collect(),
    )]);
    env.upload(0, 2 * H, &[("replica", "a")], &a).await;
    env.upload(0, 2 * H, &[("replica", "b")], &b).await;
    let mut config = env.config();
    config.replica_labels = vec!["replica".into()];
    config.dedup_func = MergeMode::Penalty;
    let (compactor, _) = env.compactor(config);
    compactor.run_once().await.unwrap();
    let live = env.live().await;
    assert_eq!(live.len(), 1);
    let got = env.contents(live[0].ulid).await;
    assert_eq!(
        got[&s], a[&s],
        "one replica's samples, not both interleaved"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hour_blocks_become_eight_hour_blocks_and_marked_sources_are_deleted() {
    let env = Env::new();
    let s = labels!("__name__" => "g");
    let mut parts = Vec::new();
    // Four 2 h blocks fill [0, 8h); a fifth after them closes that range.
    for i in 0..5 {
        let data = contents(&[(s.clone(), scrape(i * 2 * H, (i + 1) * 2 * H))]);
        env.upload(i * 2 * H, (i + 1) * 2 * H, &[("cluster", "eu")], &data)
            .await;
        parts.push(data);
    }
    let (compactor, _) = env.compactor(env.config());
    let report = compactor.run_once().await.unwrap();
    assert_eq!(report.compactions, 1, "{report:?}");
    assert_eq!(report.vertical_compactions, 0);
    assert_eq!(report.deleted, 4, "delete delay 0: the sources are gone");
    let live = env.live().await;
    let ranges: Vec<(i64, i64, u32)> = live
        .iter()
        .map(|m| (m.min_time, m.max_time, m.compaction.level))
        .collect();
    assert_eq!(ranges, vec![(0, 8 * H, 2), (8 * H, 10 * H, 1)]);
    let refs: Vec<&Contents> = parts[..4].iter().collect();
    assert_eq!(env.contents(live[0].ulid).await, union(&refs));
    assert_eq!(list_blocks(&env.bucket).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlap_without_deduplication_halts_naming_the_blocks() {
    let env = Env::new();
    let a_data = contents(&[(labels!("__name__" => "x"), scrape(0, 2 * H))]);
    let b_data = contents(&[(labels!("__name__" => "x"), scrape(H, 3 * H))]);
    let a = env.upload(0, 2 * H, &[("cluster", "eu")], &a_data).await;
    let b = env.upload(H, 3 * H, &[("cluster", "eu")], &b_data).await;
    let (compactor, metrics) = env.compactor(env.config());
    let err = compactor.run_once().await.unwrap_err();
    assert!(matches!(err, CompactError::Halt(_)), "{err}");
    let msg = err.to_string();
    for m in [&a, &b] {
        assert!(msg.contains(&m.ulid.to_string()), "{msg}");
    }
    assert!(msg.contains("vertical"), "{msg}");
    assert!(encode(&metrics).contains("thanos_compact_halted 1"));
    assert_eq!(env.live().await.len(), 2, "nothing touched");

    // With vertical compaction on, the same bucket compacts into one block.
    let mut config = env.config();
    config.vertical_compaction = true;
    let (compactor, _) = env.compactor(config);
    compactor.run_once().await.unwrap();
    let live = env.live().await;
    assert_eq!(live.len(), 1);
    assert_eq!((live[0].min_time, live[0].max_time), (0, 3 * H));
    assert_eq!(env.contents(live[0].ulid).await, union(&[&a_data, &b_data]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_compact_marks_are_honoured_and_retention_deletes_whole_blocks() {
    let env = Env::new();
    let s = labels!("__name__" => "g");
    let mut metas = Vec::new();
    for i in 0..5 {
        let data = contents(&[(s.clone(), scrape(i * 2 * H, (i + 1) * 2 * H))]);
        metas.push(
            env.upload(i * 2 * H, (i + 1) * 2 * H, &[("cluster", "eu")], &data)
                .await,
        );
    }
    objstore::markers::mark_for_no_compact(&env.bucket, metas[1].ulid, "manual", "test")
        .await
        .unwrap();
    let (compactor, _) = env.compactor(env.config());
    compactor.run_once().await.unwrap();
    // The marked block splits [0, 8h) into runs: [0, 2h) alone stays, [4h, 8h) is compacted.
    let live = env.live().await;
    let ranges: Vec<(i64, i64)> = live.iter().map(|m| (m.min_time, m.max_time)).collect();
    assert_eq!(
        ranges,
        vec![(0, 2 * H), (2 * H, 4 * H), (4 * H, 8 * H), (8 * H, 10 * H)]
    );
    assert_eq!(
        live[1].ulid, metas[1].ulid,
        "the marked block is left alone"
    );

    // Every block ended long ago (1970): a 1 d raw retention deletes all of them.
    let mut config = env.config();
    config
        .retention
        .insert(RESOLUTION_RAW, Duration::from_secs(24 * 3600));
    let (compactor, _) = env.compactor(config);
    let report = compactor.run_once().await.unwrap();
    assert_eq!(report.deleted, 4, "{report:?}");
    assert!(list_blocks(&env.bucket).await.unwrap().is_empty());
}

fn encode(metrics: &CompactMetrics) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
    out
}

/// The windows a downsampled block's series hold: the sum of its count sub-chunks' values.
async fn downsampled_count(env: &Env, ulid: Ulid) -> f64 {
    use tsdb::chunkenc::{AggrChunk, AggrType, ENCODING_AGGR};
    let dest = env.root.join("read");
    let dir = download_block(&env.bucket, ulid, &dest).await.unwrap();
    let block = Block::open(&dir).unwrap();
    let mut total = 0.0;
    for r in block.index().all_postings().unwrap() {
        for m in block.index().series(r).unwrap().1 {
            let c = block.chunk(&m).unwrap();
            assert_eq!(c.encoding, ENCODING_AGGR);
            let counts = AggrChunk::new(&c.data).samples(AggrType::Count).unwrap();
            total += counts.unwrap().map(|(_, v)| v).sum::<f64>();
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_blocks_of_40h_get_one_5m_block_unless_marked_or_disabled() {
    let env = Env::new();
    let s = labels!("__name__" => "c");
    let h40 = 40 * H;
    let data = contents(&[(s.clone(), scrape(0, h40))]);
    // One group each, so that nothing is compacted: 40h (downsampled), 39h (too short),
    // 40h with a no-downsample mark.
    let big = env.upload(0, h40, &[("cluster", "eu")], &data).await;
    let short_data = contents(&[(s.clone(), scrape(0, 39 * H))]);
    env.upload(0, 39 * H, &[("cluster", "us")], &short_data)
        .await;
    let marked = env.upload(0, h40, &[("cluster", "ap")], &data).await;
    objstore::markers::mark_for_no_downsample(&env.bucket, marked.ulid, "manual", "test")
        .await
        .unwrap();

    let (compactor, metrics) = env.compactor(env.config());
    let report = compactor.run_once().await.unwrap();
    assert_eq!(report.downsamples, 1, "{report:?}");
    assert_eq!(report.compactions, 0, "{report:?}");
    let live = env.live().await;
    assert_eq!(live.len(), 4);
    let down: Vec<&BlockMeta> = live.iter().filter(|m| m.resolution() == 300_000).collect();
    assert_eq!(down.len(), 1);
    let d = down[0];
    assert_eq!((d.min_time, d.max_time), (0, h40));
    assert_eq!(d.compaction, big.compaction);
    let thanos = d.thanos.as_ref().unwrap();
    assert_eq!(thanos.labels, big.thanos.as_ref().unwrap().labels);
    assert_eq!(thanos.source, "compactor");
    // Every raw sample counted once: 40h every 15s.
    assert_eq!(downsampled_count(&env, d.ulid).await, (h40 / 15_000) as f64);
    // 40h / 5m windows.
    assert_eq!(d.stats.num_samples, 480);
    let text = encode(&metrics);
    assert!(
        text.contains("thanos_compact_downsample_total{resolution=\"0\"} 1"),
        "{text}"
    );
    assert!(text.contains("thanos_compact_downsample_failures_total{resolution=\"0\"} 0"));

    // The sources are covered now: nothing more to do. (The 5m block spans 40h < 10d.)
    let report = compactor.run_once().await.unwrap();
    assert_eq!(report.downsamples, 0, "{report:?}");
    assert_eq!(env.live().await.len(), 4);

    // Disabled: the marked-aside and short blocks aside, a new 40h block stays raw only.
    env.upload(0, h40, &[("cluster", "sa")], &data).await;
    let mut config = env.config();
    config.downsampling_disabled = true;
    let (compactor, _) = env.compactor(config);
    let report = compactor.run_once().await.unwrap();
    assert_eq!(report.downsamples, 0, "{report:?}");
    assert_eq!(env.live().await.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_10d_raw_block_gets_5m_and_1h_blocks_in_one_run() {
    let env = Env::new();
    let d10 = 240 * H;
    // A sample every 5 minutes: 2880 of them.
    let samples: Vec<(i64, f64)> = (0..d10).step_by(300_000).map(|t| (t, 1.0)).collect();
    let raw = env
        .upload(
            0,
            d10,
            &[("cluster", "eu")],
            &contents(&[(labels!("__name__" => "g"), samples)]),
        )
        .await;
    let (compactor, _) = env.compactor(env.config());
    let report = compactor.run_once().await.unwrap();
    assert_eq!(report.downsamples, 2, "{report:?}");
    let live = env.live().await;
    let mut resolutions: Vec<i64> = live.iter().map(|m| m.resolution()).collect();
    resolutions.sort();
    assert_eq!(resolutions, vec![0, 300_000, 3_600_000]);
    for m in &live {
        assert_eq!(m.compaction.sources, raw.compaction.sources);
        assert_eq!((m.min_time, m.max_time), (0, d10));
    }
    let hourly = live.iter().find(|m| m.resolution() == 3_600_000).unwrap();
    // 240 hours, two of them split: the 5m block has 5 chunks (576 expected windows, at most
    // 140 per chunk), re-aggregated 2 + 2 + 1 along chunk boundaries, and a raw batch ending
    // at 96h05m leaves that hour's window in two output chunks (likewise at 192h15m).
    assert_eq!(hourly.stats.num_samples, 242);
    assert_eq!(hourly.stats.num_chunks, 3);
    assert_eq!(downsampled_count(&env, hourly.ulid).await, 2880.0);
    assert_eq!(compactor.run_once().await.unwrap().downsamples, 0);
}
