//! The fetcher's filters, with Thanos' semantics (`pkg/block/fetcher.go`, and the compactor's
//! mark gatherers). Each removes or rewrites metas of one sync's view and counts what it did
//! under Thanos' state names ([`crate::fetcher::state`]); see [`crate::fetcher`] for the order
//! each component runs them in.
//!
//! | filter | drops or changes | counted as |
//! |---|---|---|
//! | [`TimePartitionFilter`] | blocks wholly outside `[min-time, max-time]` | `time-excluded` |
//! | [`LabelShardFilter`] | blocks whose external labels + `__block_id` the relabel rules drop | `label-excluded` |
//! | [`ConsistencyDelayFilter`] | blocks uploaded less than the delay ago (compactor output exempt) | `too-fresh` |
//! | [`IgnoreDeletionMarkFilter`] | blocks whose deletion mark is older than the delay | `marked-for-deletion` |
//! | [`ReplicaLabelRemover`] | removes replica labels from `thanos.labels` | modified `replica-label-removed` |
//! | [`DeduplicateFilter`] | blocks whose sources another block of the group already covers | `duplicate` |
//! | [`GatherNoCompactMarks`] | nothing; remembers no-compact marks | `marked-for-no-compact` |
//! | [`GatherNoDownsampleMarks`] | nothing; remembers no-downsample marks | `marked-for-no-downsample` |
//!
//! Mark readers fail the sync on a mark with an unknown version, and log and skip a mark that
//! does not parse (most likely caught half-uploaded), as Thanos does.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use tsdb::meta::ThanosMeta;
use ulid::Ulid;

use crate::bucket::Bucket;
use crate::fetcher::{state, FetchError, MetaFilter, Metas, SyncCounts};
use crate::markers::{
    read_marker, DeletionMark, Marker, MarkerError, NoCompactMark, NoDownsampleMark,
};
use crate::relabel::{self, RelabelConfig, BLOCK_ID_LABEL};
use crate::thanos_meta;
use model::time::{now_millis as now_ms, TimeOrDuration};

/// Keeps blocks that overlap `[min_time, max_time]` (both inclusive, evaluated at each sync
/// for relative values): Thanos' `--min-time` and `--max-time`.
#[derive(Clone, Debug)]
pub struct TimePartitionFilter {
    pub min_time: TimeOrDuration,
    pub max_time: TimeOrDuration,
}

impl Default for TimePartitionFilter {
    /// Thanos' defaults: every block.
    fn default() -> Self {
        TimePartitionFilter {
            min_time: TimeOrDuration::EARLIEST,
            max_time: TimeOrDuration::LATEST,
        }
    }
}

impl MetaFilter for TimePartitionFilter {
    fn name(&self) -> &'static str {
        "time-partition"
    }

    fn filter<'a>(
        &'a self,
        metas: &'a mut Metas,
        counts: &'a mut SyncCounts,
    ) -> BoxFuture<'a, Result<(), FetchError>> {
        let now = now_ms();
        let min = self.min_time.timestamp_ms(now);
        let max = self.max_time.timestamp_ms(now);
        let before = metas.len();
        metas.retain(|_, m| m.max_time >= min && m.min_time <= max);
        counts.add_synced(state::TIME_EXCLUDED, (before - metas.len()) as u64);
        futures::future::ready(Ok(())).boxed()
    }
}

/// Block selection by relabelling (`--selector.relabel-config`): the rules run over the
/// block's external labels plus `__block_id=<ULID>`, and a block is dropped when nothing is
/// left. The compactor passes its replica labels, which are left out of the input so that
/// replicas of one stream land on the same shard (and can be deduplicated there).
#[derive(Clone, Debug)]
pub struct LabelShardFilter {
    relabel_configs: Vec<RelabelConfig>,
    replica_labels: HashSet<String>,
}

impl LabelShardFilter {
    pub fn new(relabel_configs: Vec<RelabelConfig>, replica_labels: &[String]) -> Self {
        LabelShardFilter {
            relabel_configs,
            replica_labels: replica_labels.iter().cloned().collect(),
        }
    }
}

impl MetaFilter for LabelShardFilter {
    fn name(&self) -> &'static str {
        "label-shard"
    }

    fn filter<'a>(
        &'a self,
        metas: &'a mut Metas,
        counts: &'a mut SyncCounts,
    ) -> BoxFuture<'a, Result<(), FetchError>> {
        let before = metas.len();
        metas.retain(|ulid, meta| {
            // `__block_id` first, so that an external label of that name (odd, but possible)
            // wins, as in Thanos' label builder. Empty values mean "no label" there too.
            let mut labels = BTreeMap::from([(BLOCK_ID_LABEL.to_string(), ulid.to_string())]);
            for (name, value) in thanos_meta::labels(meta) {
                if self.replica_labels.contains(name) {
                    continue;
                }
                if value.is_empty() {
                    labels.remove(name);
                } else {
                    labels.insert(name.clone(), value.clone());
                }
            }
            relabel::process(&self.relabel_configs, &mut labels) && !labels.is_empty()
        });
        counts.add_synced(state::LABEL_EXCLUDED, (before - metas.len()) as u64);
        futures::future::ready(Ok(())).boxed()
    }
}

/// Hides blocks younger than the delay, measured from `thanos.upload_time` or, without one,
/// from the ULID's time (Thanos' `--consistency-delay`), so that readers of an eventually
/// consistent bucket do not see a block before all its files are visible. Blocks written by
/// the compactor or a repair are never held back: their inputs would vanish meanwhile.
#[derive(Clone, Debug)]
pub struct ConsistencyDelayFilter {
    pub delay: Duration,
}

impl MetaFilter for ConsistencyDelayFilter {
    fn name(&self) -> &'static str {
        "consistency-delay"
    }

    fn filter<'a>(
        &'a self,
        metas: &'a mut Metas,
        counts: &'a mut SyncCounts,
    ) -> BoxFuture<'a, Result<(), FetchError>> {
        let now = now_ms();
        let delay_ms = self.delay.as_millis() as i64;
        let before = metas.len();
        metas.retain(|ulid, meta| {
            let too_fresh = match thanos_meta::upload_time(meta) {
                Some(uploaded) => now - uploaded.unix_millis() < delay_ms,
                // Unsigned like Thanos: a ULID from the future wraps around and is never
                // too fresh.
                None => (now as u64).wrapping_sub(ulid.timestamp_ms()) < delay_ms as u64,
            };
            let exempt = matches!(
                thanos_meta::source(meta),
                thanos_meta::SOURCE_COMPACTOR
                    | thanos_meta::SOURCE_COMPACTOR_REPAIR
                    | thanos_meta::SOURCE_BUCKET_REPAIR
            );
            if too_fresh && !exempt {
                tracing::debug!(block = %ulid, "block is too fresh for now");
            }
            !too_fresh || exempt
        });
        counts.add_synced(state::TOO_FRESH, (before - metas.len()) as u64);
        futures::future::ready(Ok(())).boxed()
    }
}

/// Reads one kind of mark for every block of the view, `concurrency` at a time. Blocks
/// without the mark, and marks that do not parse (logged), are left out; any other error, a
/// version other than 1 included, fails.
async fn gather_marks<M: Marker + Send>(
    bucket: &Bucket,
    ulids: Vec<Ulid>,
    concurrency: usize,
) -> Result<BTreeMap<Ulid, M>, FetchError> {
    let mut reads = futures::stream::iter(ulids)
        .map(|ulid| async move { (ulid, read_marker::<M>(bucket, ulid).await) })
        .buffer_unordered(concurrency.max(1));
    let mut found = BTreeMap::new();
    let mut last_error = None;
    while let Some((ulid, read)) = reads.next().await {
        match read {
            Ok(Some(mark)) => {
                found.insert(ulid, mark);
            }
            Ok(None) => {}
            Err(e @ MarkerError::Unparsable { .. }) => {
                tracing::warn!(block = %ulid, error = %e, "found a partial {}; if this keeps happening for the block, delete the file from the bucket", M::FILENAME);
            }
            // Like Thanos, read every other mark before failing with the last error.
            Err(source) => {
                last_error = Some(FetchError::Marker {
                    block: ulid,
                    source: Box::new(source),
                })
            }
        }
    }
    match last_error {
        Some(e) => Err(e),
        None => Ok(found),
    }
}

/// Hides blocks whose deletion mark is older than the delay, and remembers every deletion
/// mark it saw (the compactor deletes those blocks once past `--delete-delay`). The delay
/// keeps a block visible while the block replacing it may not be: the store uses 24h, the
/// compactor half its delete delay.
#[derive(Debug)]
pub struct IgnoreDeletionMarkFilter {
    bucket: Bucket,
    delay: Duration,
    concurrency: usize,
    marks: Mutex<BTreeMap<Ulid, DeletionMark>>,
}

impl IgnoreDeletionMarkFilter {
    pub fn new(bucket: Bucket, delay: Duration, concurrency: usize) -> Self {
        IgnoreDeletionMarkFilter {
            bucket,
            delay,
            concurrency,
            marks: Mutex::new(BTreeMap::new()),
        }
    }

    /// The deletion marks of the blocks in the last sync's view (before this filter), whatever
    /// their age.
    pub fn deletion_marks(&self) -> BTreeMap<Ulid, DeletionMark> {
        self.marks.lock().unwrap().clone()
    }

    async fn run(&self, metas: &mut Metas, counts: &mut SyncCounts) -> Result<(), FetchError> {
        let seen: BTreeSet<Ulid> = metas.keys().copied().collect();
        let found: BTreeMap<Ulid, DeletionMark> = gather_marks(
            &self.bucket,
            seen.iter().copied().collect(),
            self.concurrency,
        )
        .await?;
        let now_seconds = now_ms() as f64 / 1000.0;
        for (ulid, mark) in &found {
            // Strictly older than the delay, compared in (fractional) seconds as Thanos does.
            if now_seconds - mark.deletion_time as f64 > self.delay.as_secs_f64() {
                metas.remove(ulid);
                counts.add_synced(state::MARKED_FOR_DELETION, 1);
            }
        }
        let mut marks = self.marks.lock().unwrap();
        marks.extend(found);
        marks.retain(|ulid, _| seen.contains(ulid));
        Ok(())
    }
}

impl MetaFilter for IgnoreDeletionMarkFilter {
    fn name(&self) -> &'static str {
        "ignore-deletion-marks"
    }

    fn filter<'a>(
        &'a self,
        metas: &'a mut Metas,
        counts: &'a mut SyncCounts,
    ) -> BoxFuture<'a, Result<(), FetchError>> {
        self.run(metas, counts).boxed()
    }
}

/// The compactor's `--deduplication.replica-label`s removed from every block's external
/// labels, so replicas of one stream fall into one compaction group. A block left without
/// labels gets `<first replica label>="deduped"` (Thanos needs non-empty labels).
#[derive(Clone, Debug)]
pub struct ReplicaLabelRemover {
    replica_labels: Vec<String>,
}

/// The value Thanos gives the first replica label when removing replica labels leaves none.
pub const DEDUPED_LABEL_VALUE: &str = "deduped";

impl ReplicaLabelRemover {
    pub fn new(replica_labels: Vec<String>) -> Self {
        ReplicaLabelRemover { replica_labels }
    }
}

impl MetaFilter for ReplicaLabelRemover {
    fn name(&self) -> &'static str {
        "replica-label-remover"
    }

    fn filter<'a>(
        &'a self,
        metas: &'a mut Metas,
        counts: &'a mut SyncCounts,
    ) -> BoxFuture<'a, Result<(), FetchError>> {
        if let Some(first) = self.replica_labels.first() {
            for (ulid, meta) in metas.iter_mut() {
                let thanos = meta.thanos.get_or_insert_with(ThanosMeta::default);
                for name in &self.replica_labels {
                    if thanos.labels.remove(name).is_some() {
                        counts.add_modified(state::REPLICA_LABEL_REMOVED, 1);
                    }
                }
                if thanos.labels.is_empty() {
                    tracing::warn!(block = %ulid, label = %first, "block has no labels left, adding {first}=\"{DEDUPED_LABEL_VALUE}\"");
                    thanos
                        .labels
                        .insert(first.clone(), DEDUPED_LABEL_VALUE.to_string());
                }
            }
        }
        futures::future::ready(Ok(())).boxed()
    }
}

/// Drops blocks whose data another block of the same compaction group already holds: inside
/// each group, blocks are taken by number of compaction sources (most first, then by ULID),
/// and one whose sources are all among the sources of a block already kept is a duplicate
/// (typically the inputs of a compaction whose deletion marks are not yet past their delay).
#[derive(Debug, Default)]
pub struct DeduplicateFilter {
    duplicates: Mutex<Vec<Ulid>>,
}

impl DeduplicateFilter {
    pub fn new() -> Self {
        Self::default()
    }

    /// The blocks the last sync found to be duplicates (the compactor marks them for deletion).
    pub fn duplicate_ids(&self) -> Vec<Ulid> {
        self.duplicates.lock().unwrap().clone()
    }

    /// The duplicates among `metas`, by Thanos' covering-set rule.
    pub fn find_duplicates(metas: &Metas) -> Vec<Ulid> {
        let mut groups: BTreeMap<String, Vec<(&Ulid, BTreeSet<&str>)>> = BTreeMap::new();
        for (ulid, meta) in metas {
            let sources = meta.compaction.sources.iter().map(String::as_str).collect();
            groups
                .entry(thanos_meta::group_key(meta))
                .or_default()
                .push((ulid, sources));
        }
        let mut duplicates = Vec::new();
        for mut blocks in groups.into_values() {
            blocks.sort_by(|(a_id, a), (b_id, b)| b.len().cmp(&a.len()).then(a_id.cmp(b_id)));
            let mut covering: Vec<&BTreeSet<&str>> = Vec::new();
            for (ulid, sources) in &blocks {
                // A block without sources counts as covered by anything, as in Thanos.
                if covering.iter().any(|kept| sources.is_subset(kept)) {
                    duplicates.push(**ulid);
                } else {
                    covering.push(sources);
                }
            }
        }
        duplicates.sort();
        duplicates
    }
}

impl MetaFilter for DeduplicateFilter {
    fn name(&self) -> &'static str {
        "deduplicate"
    }

    fn filter<'a>(
        &'a self,
        metas: &'a mut Metas,
        counts: &'a mut SyncCounts,
    ) -> BoxFuture<'a, Result<(), FetchError>> {
        let duplicates = Self::find_duplicates(metas);
        for ulid in &duplicates {
            metas.remove(ulid);
        }
        counts.add_synced(state::DUPLICATE, duplicates.len() as u64);
        *self.duplicates.lock().unwrap() = duplicates;
        futures::future::ready(Ok(())).boxed()
    }
}

/// A marker [`GatherMarks`] collects: the filter's name and the sync state its blocks count in.
pub trait GatheredMarker: Marker + Clone + Send + Sync + std::fmt::Debug {
    const FILTER_NAME: &'static str;
    const SYNC_STATE: &'static str;
}

impl GatheredMarker for NoCompactMark {
    const FILTER_NAME: &'static str = "gather-no-compact-marks";
    const SYNC_STATE: &'static str = state::MARKED_FOR_NO_COMPACT;
}

impl GatheredMarker for NoDownsampleMark {
    const FILTER_NAME: &'static str = "gather-no-downsample-marks";
    const SYNC_STATE: &'static str = state::MARKED_FOR_NO_DOWNSAMPLE;
}

/// Passes every block, remembering which carry a `no-compact-mark.json` (for the planner).
pub type GatherNoCompactMarks = GatherMarks<NoCompactMark>;

/// Passes every block, remembering which carry a `no-downsample-mark.json`.
pub type GatherNoDownsampleMarks = GatherMarks<NoDownsampleMark>;

/// Passes every block, remembering which carry a marker of type `M`.
#[derive(Debug)]
pub struct GatherMarks<M> {
    bucket: Bucket,
    concurrency: usize,
    marks: Mutex<BTreeMap<Ulid, M>>,
}

impl<M: GatheredMarker> GatherMarks<M> {
    pub fn new(bucket: Bucket, concurrency: usize) -> Self {
        GatherMarks {
            bucket,
            concurrency,
            marks: Mutex::new(BTreeMap::new()),
        }
    }

    /// The marks found by the last sync.
    pub fn marks(&self) -> BTreeMap<Ulid, M> {
        self.marks.lock().unwrap().clone()
    }

    async fn run(&self, metas: &Metas, counts: &mut SyncCounts) -> Result<(), FetchError> {
        let found: BTreeMap<Ulid, M> = gather_marks(
            &self.bucket,
            metas.keys().copied().collect(),
            self.concurrency,
        )
        .await?;
        counts.add_synced(M::SYNC_STATE, found.len() as u64);
        *self.marks.lock().unwrap() = found;
        Ok(())
    }
}

impl<M: GatheredMarker> MetaFilter for GatherMarks<M> {
    fn name(&self) -> &'static str {
        M::FILTER_NAME
    }

    fn filter<'a>(
        &'a self,
        metas: &'a mut Metas,
        counts: &'a mut SyncCounts,
    ) -> BoxFuture<'a, Result<(), FetchError>> {
        self.run(metas, counts).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsdb::meta::BlockMeta;

    /// Thanos' `ulid.MustNew(n, nil)`.
    fn u(n: u64) -> Ulid {
        Ulid::from_parts(n, 0)
    }

    fn meta(id: u64, sources: &[u64], resolution: i64) -> BlockMeta {
        let sources: Vec<String> = sources.iter().map(|s| u(*s).to_string()).collect();
        serde_json::from_value(serde_json::json!({
            "ulid": u(id).to_string(), "minTime": 0, "maxTime": 0, "version": 1,
            "compaction": {"level": 1, "sources": sources},
            "thanos": {"labels": {}, "downsample": {"resolution": resolution}, "source": ""},
        }))
        .unwrap()
    }

    /// (block, sources, resolution) per input, and the blocks that survive.
    type DedupCase = (&'static str, Vec<(u64, Vec<u64>, i64)>, Vec<u64>);

    /// Every case of Thanos' `TestDeduplicateFilter_Filter` (pkg/block/fetcher_test.go).
    #[tokio::test]
    async fn deduplicate_filter_cases_from_thanos() {
        let cases: Vec<DedupCase> = vec![
            ("3 non compacted blocks in bucket",
             vec![(1, vec![1], 0), (2, vec![2], 0), (3, vec![3], 0)], vec![1, 2, 3]),
            ("compacted block with sources in bucket",
             vec![(6, vec![6], 0), (4, vec![1, 3, 2], 0), (5, vec![5], 0)], vec![4, 5, 6]),
            ("two compacted blocks with same sources",
             vec![(5, vec![5], 0), (6, vec![6], 0), (3, vec![1, 2], 0), (4, vec![1, 2], 0)],
             vec![3, 5, 6]),
            ("two compacted blocks with overlapping sources",
             vec![(4, vec![1, 2], 0), (6, vec![6], 0), (5, vec![1, 3, 2], 0)], vec![5, 6]),
            ("3 non compacted blocks and compacted block of level 2 in bucket",
             vec![(6, vec![6], 0), (1, vec![1], 0), (2, vec![2], 0), (3, vec![3], 0),
                  (4, vec![2, 1, 3], 0)], vec![4, 6]),
            ("3 compacted blocks of level 2 and one compacted block of level 3 in bucket",
             vec![(10, vec![1, 2, 3], 0), (11, vec![6, 4, 5], 0), (14, vec![14], 0),
                  (1, vec![1], 0), (13, vec![1, 6, 2, 3, 5, 7, 4, 8, 9], 0),
                  (12, vec![7, 9, 8], 0)], vec![13, 14]),
            ("compacted blocks with overlapping sources",
             vec![(8, vec![1, 3, 2, 4], 0), (1, vec![1], 0), (5, vec![1, 2], 0),
                  (6, vec![1, 3, 2, 4], 0), (7, vec![3, 1, 2], 0)], vec![6]),
            ("compacted blocks of level 3 with overlapping sources of equal length",
             vec![(10, vec![1, 2, 6, 7], 0), (1, vec![1], 0), (11, vec![6, 8, 1, 2], 0)],
             vec![10, 11]),
            ("compacted blocks of level 3 with overlapping sources of different length",
             vec![(10, vec![6, 7, 1, 2], 0), (1, vec![1], 0), (5, vec![1, 2], 0),
                  (11, vec![2, 3, 1], 0)], vec![10, 11]),
            ("blocks with same sources and different resolutions",
             vec![(1, vec![1], 0), (2, vec![1], 1000), (3, vec![1], 10000)], vec![1, 2, 3]),
            ("compacted blocks with overlapping sources and different resolutions",
             vec![(1, vec![1], 0), (6, vec![6], 10000), (4, vec![1, 3, 2], 0),
                  (5, vec![2, 3, 1], 1000)], vec![4, 5, 6]),
            ("compacted blocks of level 3 with overlapping sources of different length and different resolutions",
             vec![(10, vec![7, 5, 1, 2], 0), (12, vec![6, 7, 1], 10000), (1, vec![1], 0),
                  (13, vec![1], 10000), (5, vec![1, 2], 0), (11, vec![2, 3, 1], 0)],
             vec![10, 11, 12]),
        ];
        for (name, input, expected) in cases {
            let mut metas: Metas = input
                .iter()
                .map(|(id, sources, resolution)| (u(*id), meta(*id, sources, *resolution)))
                .collect();
            let filter = DeduplicateFilter::new();
            let mut counts = SyncCounts::default();
            filter.filter(&mut metas, &mut counts).await.unwrap();
            let kept: Vec<Ulid> = metas.keys().copied().collect();
            let mut want: Vec<Ulid> = expected.iter().map(|n| u(*n)).collect();
            want.sort();
            assert_eq!(kept, want, "{name}");
            assert_eq!(
                counts.synced(state::DUPLICATE) as usize,
                input.len() - expected.len(),
                "{name}"
            );
            assert_eq!(filter.duplicate_ids().len(), input.len() - expected.len());
        }
    }

    /// Thanos' `TestReplicaLabelRemover_Modify` "with replica labels" case.
    #[tokio::test]
    async fn replica_label_remover() {
        let mut metas = Metas::new();
        for (id, labels) in [
            (1, vec![("message", "something")]),
            (2, vec![("replica", "cluster1"), ("message", "something")]),
            (
                3,
                vec![
                    ("replica", "cluster1"),
                    ("rule_replica", "rule1"),
                    ("message", "something"),
                ],
            ),
            (4, vec![("replica", "cluster1"), ("rule_replica", "rule1")]),
        ] {
            let mut m = meta(id, &[id], 0);
            m.thanos.as_mut().unwrap().labels = labels
                .into_iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            metas.insert(u(id), m);
        }
        let mut counts = SyncCounts::default();
        ReplicaLabelRemover::new(vec!["replica".into(), "rule_replica".into()])
            .filter(&mut metas, &mut counts)
            .await
            .unwrap();
        let labels = |id| metas[&u(id)].thanos.as_ref().unwrap().labels.clone();
        let something = BTreeMap::from([("message".to_string(), "something".to_string())]);
        assert_eq!(labels(1), something);
        assert_eq!(labels(2), something);
        assert_eq!(labels(3), something);
        assert_eq!(
            labels(4),
            BTreeMap::from([("replica".into(), "deduped".into())])
        );
        assert_eq!(counts.modified(state::REPLICA_LABEL_REMOVED), 5);

        // No replica labels configured: nothing changes.
        let before = metas.clone();
        let mut counts = SyncCounts::default();
        ReplicaLabelRemover::new(vec![])
            .filter(&mut metas, &mut counts)
            .await
            .unwrap();
        assert_eq!(metas, before);
        assert_eq!(counts.modified(state::REPLICA_LABEL_REMOVED), 0);
    }
}
