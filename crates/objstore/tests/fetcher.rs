//! The meta fetcher and its filters against a filesystem bucket: partial blocks, the meta
//! cache, and each filter's Thanos semantics.

use std::sync::Arc;
use std::time::Duration;

use model::time::{now_millis as now_ms, TimeOrDuration};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use objstore::bucket::Bucket;
use objstore::fetcher::{state, MetaFetcher, MetaFilter, PartialBlock};
use objstore::filters::{
    ConsistencyDelayFilter, DeduplicateFilter, GatherNoCompactMarks, GatherNoDownsampleMarks,
    IgnoreDeletionMarkFilter, LabelShardFilter, ReplicaLabelRemover, TimePartitionFilter,
};
use objstore::markers::{self, DeletionMark, Marker, MARKER_VERSION};
use objstore::relabel::{parse_relabel_configs, SELECTOR_ACTIONS};
use objstore::BucketConfig;
use serde_json::json;
use tsdb::meta::BlockMeta;
use ulid::Ulid;

const HOUR_MS: i64 = 3_600_000;

struct Env {
    _dir: tempfile::TempDir,
    data_dir: std::path::PathBuf,
    bucket: Bucket,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let bucket = BucketConfig::filesystem(dir.path().join("bucket"))
        .build()
        .unwrap();
    Env {
        data_dir: dir.path().join("data"),
        _dir: dir,
        bucket,
    }
}

/// A ULID made `age_ms` ago.
fn ulid_aged(age_ms: i64, n: u128) -> Ulid {
    Ulid::from_parts((now_ms() - age_ms) as u64, n)
}

fn meta(ulid: Ulid, min: i64, max: i64, labels: serde_json::Value, sources: &[Ulid]) -> BlockMeta {
    serde_json::from_value(json!({
        "ulid": ulid.to_string(),
        "minTime": min,
        "maxTime": max,
        "compaction": {"level": 1, "sources": sources.iter().map(|s| s.to_string()).collect::<Vec<_>>()},
        "version": 1,
        "thanos": {"labels": labels, "downsample": {"resolution": 0}, "source": "receive"},
    }))
    .unwrap()
}

async fn put(bucket: &Bucket, path: String, body: impl Into<Vec<u8>>) {
    bucket
        .put(&ObjectPath::from(path), PutPayload::from(body.into()))
        .await
        .unwrap();
}

async fn upload(bucket: &Bucket, meta: &BlockMeta) {
    put(bucket, format!("{}/index", meta.ulid), b"index".to_vec()).await;
    put(bucket, format!("{}/meta.json", meta.ulid), meta.to_json()).await;
}

fn fetcher(env: &Env, filters: Vec<Arc<dyn MetaFilter>>) -> MetaFetcher {
    MetaFetcher::new(env.bucket.clone(), Some(&env.data_dir), 4, filters).unwrap()
}

#[tokio::test]
async fn partial_blocks_are_reported_not_errors() {
    let env = env();
    let good = meta(ulid_aged(HOUR_MS, 1), 0, 10, json!({"a": "1"}), &[]);
    upload(&env.bucket, &good).await;
    let no_meta = ulid_aged(HOUR_MS, 2);
    put(&env.bucket, format!("{no_meta}/index"), b"x".to_vec()).await;
    let corrupted = ulid_aged(HOUR_MS, 3);
    put(
        &env.bucket,
        format!("{corrupted}/meta.json"),
        b"{\"ulid\":".to_vec(),
    )
    .await;
    // Not a block directory: ignored entirely.
    put(&env.bucket, "debug/metas/x.json".into(), b"{}".to_vec()).await;

    let result = fetcher(&env, vec![]).fetch().await.unwrap();
    assert!(result.is_complete());
    assert_eq!(result.metas.keys().collect::<Vec<_>>(), vec![&good.ulid]);
    assert_eq!(result.partial[&no_meta], PartialBlock::NoMeta);
    assert!(matches!(
        result.partial[&corrupted],
        PartialBlock::CorruptedMeta(_)
    ));
    assert_eq!(result.counts.synced(state::NO_META), 1);
    assert_eq!(result.counts.synced(state::CORRUPTED_META), 1);
    assert_eq!(result.counts.synced(state::LOADED), 1);
}

#[tokio::test]
async fn a_meta_with_another_version_makes_the_view_incomplete() {
    let env = env();
    let good = meta(ulid_aged(HOUR_MS, 1), 0, 10, json!({}), &[]);
    upload(&env.bucket, &good).await;
    let mut future = meta(ulid_aged(HOUR_MS, 2), 0, 10, json!({}), &[]);
    future.version = 2;
    upload(&env.bucket, &future).await;
    let result = fetcher(&env, vec![]).fetch().await.unwrap();
    assert!(!result.is_complete());
    let message = result.failed[0].to_string();
    assert!(
        message.contains(&future.ulid.to_string()) && message.contains("meta.json"),
        "{message}"
    );
    assert_eq!(result.counts.synced(state::FAILED), 1);
    assert!(result.metas.contains_key(&good.ulid));
}

#[tokio::test]
async fn metas_are_cached_in_memory_and_on_disk_and_dropped_with_their_block() {
    let env = env();
    let first = meta(ulid_aged(HOUR_MS, 1), 0, 10, json!({"a": "1"}), &[]);
    let second = meta(ulid_aged(HOUR_MS, 2), 10, 20, json!({"a": "1"}), &[]);
    upload(&env.bucket, &first).await;
    upload(&env.bucket, &second).await;
    let f = fetcher(&env, vec![]);
    assert_eq!(f.fetch().await.unwrap().metas.len(), 2);
    let cached = env
        .data_dir
        .join("meta-syncer")
        .join(first.ulid.to_string())
        .join("meta.json");
    assert!(cached.exists());

    // Rewriting meta.json in the bucket (which Thanos never does) shows that a re-sync does
    // not read it again: the cached meta is returned.
    let mut changed = first.clone();
    changed.max_time = 99;
    put(
        &env.bucket,
        format!("{}/meta.json", first.ulid),
        changed.to_json(),
    )
    .await;
    assert_eq!(f.fetch().await.unwrap().metas[&first.ulid].max_time, 10);
    // A new fetcher on the same data dir (a restart) reads the disk cache.
    let restarted = fetcher(&env, vec![]);
    assert_eq!(
        restarted.fetch().await.unwrap().metas[&first.ulid].max_time,
        10
    );
    // An unreadable cached meta is dropped and fetched again.
    std::fs::write(&cached, b"garbage").unwrap();
    let again = fetcher(&env, vec![]);
    assert_eq!(again.fetch().await.unwrap().metas[&first.ulid].max_time, 99);

    // A deleted block disappears from the view and from the cache.
    objstore::bucket::delete_block(&env.bucket, second.ulid)
        .await
        .unwrap();
    let result = f.fetch().await.unwrap();
    assert!(!result.metas.contains_key(&second.ulid));
    assert!(result.partial.is_empty(), "{:?}", result.partial);
    assert!(!env
        .data_dir
        .join("meta-syncer")
        .join(second.ulid.to_string())
        .exists());
}

#[tokio::test]
async fn time_partition_keeps_overlapping_blocks() {
    let env = env();
    let now = now_ms();
    let old = meta(
        ulid_aged(HOUR_MS, 1),
        now - 30 * 24 * HOUR_MS,
        now - 29 * 24 * HOUR_MS,
        json!({}),
        &[],
    );
    let recent = meta(
        ulid_aged(HOUR_MS, 2),
        now - 3 * HOUR_MS,
        now - HOUR_MS,
        json!({}),
        &[],
    );
    let edge = meta(ulid_aged(HOUR_MS, 3), 0, 1000, json!({}), &[]);
    for m in [&old, &recent, &edge] {
        upload(&env.bucket, m).await;
    }
    let filter = TimePartitionFilter {
        min_time: TimeOrDuration::parse("-2w").unwrap(),
        max_time: TimeOrDuration::LATEST,
    };
    let result = fetcher(&env, vec![Arc::new(filter)]).fetch().await.unwrap();
    assert_eq!(result.metas.keys().collect::<Vec<_>>(), vec![&recent.ulid]);
    assert_eq!(result.counts.synced(state::TIME_EXCLUDED), 2);

    // Both bounds are inclusive.
    let filter = TimePartitionFilter {
        min_time: TimeOrDuration::parse("1970-01-01T00:00:01Z").unwrap(),
        max_time: TimeOrDuration::parse("1970-01-01T00:00:00Z").unwrap(),
    };
    let result = fetcher(&env, vec![Arc::new(filter)]).fetch().await.unwrap();
    assert_eq!(result.metas.keys().collect::<Vec<_>>(), vec![&edge.ulid]);
}

#[tokio::test]
async fn label_shards_split_the_bucket_and_ignore_replica_labels() {
    let env = env();
    let mut ulids = Vec::new();
    for i in 0..20u128 {
        let m = meta(
            ulid_aged(HOUR_MS, i),
            0,
            10,
            json!({"tenant": "t", "replica": format!("r{i}")}),
            &[],
        );
        upload(&env.bucket, &m).await;
        ulids.push(m.ulid);
    }
    let shard = |n: u64| {
        parse_relabel_configs(
            &format!("- action: hashmod\n  source_labels: [__block_id]\n  target_label: shard\n  modulus: 2\n- action: keep\n  source_labels: [shard]\n  regex: {n}\n"),
            Some(SELECTOR_ACTIONS),
        )
        .unwrap()
    };
    let mut total = 0;
    for n in 0..2 {
        let filter = LabelShardFilter::new(shard(n), &[]);
        let result = fetcher(&env, vec![Arc::new(filter)]).fetch().await.unwrap();
        for ulid in result.metas.keys() {
            assert_eq!(objstore::relabel::hashmod(&ulid.to_string(), 2), n);
        }
        assert_eq!(
            result.counts.synced(state::LABEL_EXCLUDED) as usize + result.metas.len(),
            20
        );
        total += result.metas.len();
    }
    assert_eq!(total, 20);

    // Sharding on labels: the replica label is not seen when it is a replica label.
    let by_replica = parse_relabel_configs(
        "- action: drop\n  source_labels: [replica]\n  regex: r.*\n",
        Some(SELECTOR_ACTIONS),
    )
    .unwrap();
    let drops = LabelShardFilter::new(by_replica.clone(), &[]);
    let result = fetcher(&env, vec![Arc::new(drops)]).fetch().await.unwrap();
    assert!(result.metas.is_empty());
    let ignores = LabelShardFilter::new(by_replica, &["replica".to_string()]);
    let result = fetcher(&env, vec![Arc::new(ignores)])
        .fetch()
        .await
        .unwrap();
    assert_eq!(result.metas.len(), 20);
}

#[tokio::test]
async fn consistency_delay_holds_back_fresh_uploads_except_the_compactors() {
    let env = env();
    let fresh = meta(ulid_aged(60_000, 1), 0, 10, json!({}), &[]);
    let old = meta(ulid_aged(2 * HOUR_MS, 2), 0, 10, json!({}), &[]);
    let mut compacted = meta(ulid_aged(60_000, 3), 0, 10, json!({}), &[]);
    compacted.thanos.as_mut().unwrap().source = "compactor".into();
    // An old ULID but a recent upload time: the upload time decides.
    let mut late_upload = meta(ulid_aged(2 * HOUR_MS, 4), 0, 10, json!({}), &[]);
    let upload_time = rfc3339_utc(now_ms() - 60_000);
    late_upload
        .thanos
        .as_mut()
        .unwrap()
        .extra
        .insert("upload_time".into(), json!(upload_time));
    for m in [&fresh, &old, &compacted, &late_upload] {
        upload(&env.bucket, m).await;
    }
    let filter = ConsistencyDelayFilter {
        delay: Duration::from_secs(30 * 60),
    };
    let result = fetcher(&env, vec![Arc::new(filter)]).fetch().await.unwrap();
    let mut kept: Vec<Ulid> = result.metas.keys().copied().collect();
    kept.sort();
    let mut expected = vec![old.ulid, compacted.ulid];
    expected.sort();
    assert_eq!(kept, expected);
    assert_eq!(result.counts.synced(state::TOO_FRESH), 2);
}

/// RFC 3339 with milliseconds for a Unix-ms timestamp (test helper; UTC only).
fn rfc3339_utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant), enough for a test.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}

#[tokio::test]
async fn deletion_marks_hide_blocks_after_the_delay() {
    let env = env();
    let marked_long_ago = meta(ulid_aged(HOUR_MS, 1), 0, 10, json!({}), &[]);
    let marked_now = meta(ulid_aged(HOUR_MS, 2), 0, 10, json!({}), &[]);
    let half_written = meta(ulid_aged(HOUR_MS, 3), 0, 10, json!({}), &[]);
    for m in [&marked_long_ago, &marked_now, &half_written] {
        upload(&env.bucket, m).await;
    }
    let old_mark = DeletionMark {
        id: marked_long_ago.ulid,
        version: MARKER_VERSION,
        details: "source of compacted block".into(),
        deletion_time: now_ms() / 1000 - 3 * 24 * 3600,
    };
    put(
        &env.bucket,
        format!("{}/deletion-mark.json", marked_long_ago.ulid),
        old_mark.to_json(),
    )
    .await;
    markers::mark_for_deletion(&env.bucket, marked_now.ulid, "outdated block")
        .await
        .unwrap();
    put(
        &env.bucket,
        format!("{}/deletion-mark.json", half_written.ulid),
        b"{\"id\":\"".to_vec(),
    )
    .await;

    let filter = Arc::new(IgnoreDeletionMarkFilter::new(
        env.bucket.clone(),
        Duration::from_secs(24 * 3600),
        4,
    ));
    let f = fetcher(&env, vec![filter.clone()]);
    let result = f.fetch().await.unwrap();
    assert!(!result.metas.contains_key(&marked_long_ago.ulid));
    assert!(result.metas.contains_key(&marked_now.ulid));
    assert!(result.metas.contains_key(&half_written.ulid));
    assert_eq!(result.counts.synced(state::MARKED_FOR_DELETION), 1);
    let marks = filter.deletion_marks();
    assert_eq!(
        marks.keys().copied().collect::<Vec<_>>(),
        vec![marked_long_ago.ulid, marked_now.ulid]
    );
    assert_eq!(marks[&marked_long_ago.ulid], old_mark);

    // A mark of an unknown version fails the sync, naming the block and file.
    put(
        &env.bucket,
        format!("{}/deletion-mark.json", half_written.ulid),
        format!(
            "{{\"id\":\"{}\",\"version\":2,\"deletion_time\":1}}",
            half_written.ulid
        ),
    )
    .await;
    let err = f.fetch().await.unwrap_err().to_string();
    assert!(
        err.contains(&half_written.ulid.to_string()) && err.contains("deletion-mark.json"),
        "{err}"
    );
}

#[tokio::test]
async fn the_compactor_chain_removes_replica_labels_then_deduplicates() {
    let env = env();
    let (a, b, c) = (
        ulid_aged(5 * HOUR_MS, 1),
        ulid_aged(5 * HOUR_MS, 2),
        ulid_aged(5 * HOUR_MS, 3),
    );
    // Two replicas' level-1 blocks and the block compacted from both after replica removal.
    let r0 = meta(a, 0, 10, json!({"tenant": "t", "replica": "0"}), &[a]);
    let r1 = meta(b, 0, 10, json!({"tenant": "t", "replica": "1"}), &[b]);
    let mut compacted = meta(c, 0, 10, json!({"tenant": "t"}), &[a, b]);
    compacted.compaction.level = 2;
    compacted.thanos.as_mut().unwrap().source = "compactor".into();
    // Only replica labels: gets replica="deduped" and its own group.
    let lone = meta(
        ulid_aged(5 * HOUR_MS, 4),
        0,
        10,
        json!({"replica": "2"}),
        &[],
    );
    for m in [&r0, &r1, &compacted, &lone] {
        upload(&env.bucket, m).await;
    }
    markers::mark_for_no_compact(&env.bucket, compacted.ulid, "manual", "")
        .await
        .unwrap();
    markers::mark_for_no_downsample(&env.bucket, lone.ulid, "manual", "")
        .await
        .unwrap();
    let dedup = Arc::new(DeduplicateFilter::new());
    let no_compact = Arc::new(GatherNoCompactMarks::new(env.bucket.clone(), 4));
    let no_downsample = Arc::new(GatherNoDownsampleMarks::new(env.bucket.clone(), 4));
    let filters: Vec<Arc<dyn MetaFilter>> = vec![
        Arc::new(ReplicaLabelRemover::new(vec!["replica".into()])),
        dedup.clone(),
        no_compact.clone(),
        no_downsample.clone(),
    ];
    let result = fetcher(&env, filters).fetch().await.unwrap();
    assert_eq!(dedup.duplicate_ids(), {
        let mut d = vec![a, b];
        d.sort();
        d
    });
    assert_eq!(result.counts.synced(state::DUPLICATE), 2);
    assert_eq!(result.counts.modified(state::REPLICA_LABEL_REMOVED), 3);
    assert_eq!(result.metas.len(), 2);
    assert_eq!(
        result.metas[&lone.ulid].thanos.as_ref().unwrap().labels["replica"],
        "deduped"
    );
    assert_eq!(
        no_compact.marks().keys().copied().collect::<Vec<_>>(),
        vec![compacted.ulid]
    );
    assert_eq!(
        no_downsample.marks().keys().copied().collect::<Vec<_>>(),
        vec![lone.ulid]
    );
    assert_eq!(result.counts.synced(state::MARKED_FOR_NO_COMPACT), 1);
    assert_eq!(result.counts.synced(state::MARKED_FOR_NO_DOWNSAMPLE), 1);
}
