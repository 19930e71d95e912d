//! The compactor's iteration (Thanos' `compactMainFn` loop body): sync the bucket's metas,
//! mark the duplicates the last compactions left, compact every group until none has work,
//! downsample (two passes, so that a 5m block made by the first is brought to 1h by the
//! second), apply retention, and delete the blocks whose deletion marks are past
//! `--delete-delay`.
//!
//! Downsampling (Thanos' `downsampleBucket`) takes, in ULID order, every raw block spanning
//! at least 40h and every 5m block spanning at least 10d whose `compaction.sources` are not
//! all already in a block of the target resolution, and that carries no
//! `no-downsample-mark.json`; it downloads, verifies, downsamples ([`crate::downsample`]),
//! verifies and uploads. The source block stays: retention per resolution removes it.
//!
//! Each compaction downloads its inputs into `<data-dir>/compact/<group key>/`, merges them
//! series by series ([`tsdb::compact`]), verifies the output, uploads it with meta.json last
//! and only then marks the inputs for deletion. A crash at any point leaves the bucket
//! answering the same: an output without meta.json is a partial upload every reader ignores,
//! and a complete output supersedes its inputs (readers' deduplicate filter) until the
//! inputs' marks let them be deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use objstore::bucket::{delete_block, read_meta, upload_block};
use objstore::fetcher::{FetchError, MetaFetcher, MetaFilter, PartialBlock};
use objstore::filters::{
    ConsistencyDelayFilter, DeduplicateFilter, GatherMarks, IgnoreDeletionMarkFilter,
    LabelShardFilter, ReplicaLabelRemover,
};
use objstore::markers::{
    self, MarkOutcome, NoCompactMark, NoDownsampleMark, DELETION_MARK_FILENAME,
    NO_COMPACT_MARK_FILENAME,
};
use objstore::relabel::RelabelConfig;
use objstore::verify::{download_block, verify_local_block};
use objstore::Bucket;
use tsdb::block::Block;
use tsdb::compact::{compact_blocks, MergeMode};
use tsdb::meta::BlockMeta;
use ulid::Ulid;

use crate::downsample::{
    downsample_block, DownsampleError, RES_LEVEL1_DOWNSAMPLE_RANGE, RES_LEVEL2_DOWNSAMPLE_RANGE,
};
use crate::group::{group_blocks, Group};
use crate::meta::{compacted_meta, CompactedBlock, IndexStats};
use crate::metrics::CompactMetrics;
use crate::planner::{LargeTotalIndexSizeFilter, Planner, DEFAULT_MAX_INDEX_SIZE_BYTES};

/// Resolutions, as `thanos.downsample.resolution` says them.
pub const RESOLUTION_RAW: i64 = 0;
pub const RESOLUTION_5M: i64 = 5 * 60 * 1000;
pub const RESOLUTION_1H: i64 = 60 * 60 * 1000;

/// Partial uploads older than this are deleted (Thanos' `PartialUploadThresholdAge`).
pub const PARTIAL_UPLOAD_THRESHOLD: Duration = Duration::from_secs(2 * 24 * 3600);

/// What `cairn compact` is configured with; the flags are Thanos'.
#[derive(Clone, Debug)]
pub struct CompactorConfig {
    /// `--data-dir`: scratch space for downloaded and written blocks.
    pub data_dir: PathBuf,
    /// `--consistency-delay`.
    pub consistency_delay: Duration,
    /// `--compact.concurrency`: groups compacted at once.
    pub concurrency: usize,
    /// `--block-meta-fetch-concurrency`.
    pub block_meta_fetch_concurrency: usize,
    /// `--deduplication.replica-label`.
    pub replica_labels: Vec<String>,
    /// `--deduplication.func`: one-to-one (empty) or penalty.
    pub dedup_func: MergeMode,
    /// `--compact.enable-vertical-compaction` (implied by replica labels, as in Thanos).
    pub vertical_compaction: bool,
    /// `--retention.resolution-raw`, `-5m`, `-1h`; `None` keeps forever.
    pub retention: BTreeMap<i64, Duration>,
    /// `--delete-delay`.
    pub delete_delay: Duration,
    /// `--selector.relabel-config(-file)`.
    pub relabel_configs: Vec<RelabelConfig>,
    /// Block ranges of the planner (ms); Thanos' 2h, 8h, 2d, 14d by default.
    pub ranges: Vec<i64>,
    /// `--downsampling.disable`: no 5m and 1h blocks (and no no-downsample marks gathered).
    pub downsampling_disabled: bool,
}

impl CompactorConfig {
    /// Thanos' defaults.
    pub fn new(data_dir: PathBuf) -> CompactorConfig {
        CompactorConfig {
            data_dir,
            consistency_delay: Duration::from_secs(30 * 60),
            concurrency: 1,
            block_meta_fetch_concurrency: 32,
            replica_labels: Vec::new(),
            dedup_func: MergeMode::OneToOne,
            vertical_compaction: false,
            retention: BTreeMap::new(),
            delete_delay: Duration::from_secs(48 * 3600),
            relabel_configs: Vec::new(),
            ranges: Planner::thanos().ranges().to_vec(),
            downsampling_disabled: false,
        }
    }

    /// Whether overlapping blocks of a group are merged (otherwise they halt the compactor).
    pub fn merges_overlaps(&self) -> bool {
        self.vertical_compaction || !self.replica_labels.is_empty()
    }
}

/// Why an iteration stopped.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    /// Stops the compactor for good (Thanos' `HaltError`): a human must look at the bucket.
    #[error("critical error, compactor halted: {0}")]
    Halt(String),
    /// Worth retrying at the next iteration.
    #[error("{0}")]
    Retry(String),
}

impl CompactError {
    pub fn is_halt(&self) -> bool {
        matches!(self, CompactError::Halt(_))
    }
}

/// What one iteration did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IterationReport {
    /// Blocks written by compaction (uploaded).
    pub compactions: u64,
    /// Of those, compactions whose inputs overlapped.
    pub vertical_compactions: u64,
    /// Blocks marked for deletion: compaction sources, duplicates, past retention.
    pub marked_for_deletion: u64,
    /// Blocks deleted from the bucket.
    pub deleted: u64,
    /// Downsampled blocks written (uploaded).
    pub downsamples: u64,
}

/// The compactor over one bucket.
pub struct Compactor {
    bucket: Bucket,
    config: CompactorConfig,
    fetcher: MetaFetcher,
    deletion_marks: Arc<IgnoreDeletionMarkFilter>,
    duplicates: Arc<DeduplicateFilter>,
    no_compact: Arc<GatherMarks<NoCompactMark>>,
    no_downsample: Arc<GatherMarks<NoDownsampleMark>>,
    planner: LargeTotalIndexSizeFilter,
    metrics: Arc<CompactMetrics>,
    /// Partial uploads the last sync found old enough to delete.
    stale_partials: std::sync::Mutex<Vec<Ulid>>,
}

impl Compactor {
    pub fn new(
        bucket: Bucket,
        config: CompactorConfig,
        metrics: Arc<CompactMetrics>,
    ) -> Result<Compactor, FetchError> {
        let concurrency = config.block_meta_fetch_concurrency.max(1);
        let deletion_marks = Arc::new(IgnoreDeletionMarkFilter::new(
            bucket.clone(),
            config.delete_delay / 2,
            concurrency,
        ));
        let duplicates = Arc::new(DeduplicateFilter::new());
        let no_compact = Arc::new(GatherMarks::<NoCompactMark>::new(
            bucket.clone(),
            concurrency,
        ));
        let no_downsample = Arc::new(GatherMarks::<NoDownsampleMark>::new(
            bucket.clone(),
            concurrency,
        ));
        // Thanos' compactor order: label shard, consistency delay, deletion marks, replica
        // labels removed, duplicates, no-compact marks gathered, no-downsample marks gathered
        // unless downsampling is off.
        let mut filters: Vec<Arc<dyn MetaFilter>> = vec![
            Arc::new(LabelShardFilter::new(
                config.relabel_configs.clone(),
                &config.replica_labels,
            )),
            Arc::new(ConsistencyDelayFilter {
                delay: config.consistency_delay,
            }),
            deletion_marks.clone(),
            Arc::new(ReplicaLabelRemover::new(config.replica_labels.clone())),
            duplicates.clone(),
            no_compact.clone(),
        ];
        if !config.downsampling_disabled {
            filters.push(no_downsample.clone());
        }
        let fetcher =
            MetaFetcher::new(bucket.clone(), Some(&config.data_dir), concurrency, filters)?;
        let planner = LargeTotalIndexSizeFilter::new(
            Planner::new(config.ranges.clone()),
            bucket.clone(),
            DEFAULT_MAX_INDEX_SIZE_BYTES,
        );
        Ok(Compactor {
            bucket,
            config,
            fetcher,
            deletion_marks,
            duplicates,
            no_compact,
            no_downsample,
            planner,
            metrics,
            stale_partials: Default::default(),
        })
    }

    pub fn metrics(&self) -> &Arc<CompactMetrics> {
        &self.metrics
    }

    /// One full iteration; see the module docs.
    pub async fn run_once(&self) -> Result<IterationReport, CompactError> {
        let mut report = IterationReport::default();
        let result = self.iterate(&mut report).await;
        match &result {
            Ok(()) => {
                self.metrics.iterations.inc();
            }
            Err(CompactError::Halt(_)) => {
                self.metrics.halted.set(1);
            }
            Err(CompactError::Retry(_)) => {
                self.metrics.retries.inc();
            }
        }
        result.map(|()| report)
    }

    /// One pass of the compactor's cleaning without compacting (`cairn tools bucket cleanup`,
    /// Thanos' `tools bucket cleanup`): blocks a compacted block supersedes (their
    /// `compaction.sources` all listed by it) are marked for deletion, blocks whose deletion
    /// marks are older than `--delete-delay` are deleted, and so are partial uploads (no
    /// meta.json) older than [`PARTIAL_UPLOAD_THRESHOLD`].
    pub async fn clean_only(&self) -> Result<IterationReport, CompactError> {
        let mut report = IterationReport::default();
        self.sync().await?;
        self.mark_duplicates(&mut report).await?;
        self.clean(&mut report).await?;
        Ok(report)
    }

    /// Retention alone (`cairn tools bucket retention`, Thanos' `tools bucket retention`):
    /// blocks past their resolution's retention are marked for deletion, and with a zero
    /// `--delete-delay` deleted at once: those, and those marked earlier that are past
    /// retention too; blocks marked for other reasons are left to the compactor or `cleanup`.
    pub async fn retention_only(&self) -> Result<IterationReport, CompactError> {
        let mut report = IterationReport::default();
        let mut expired = self.apply_retention(&mut report).await?;
        if self.config.delete_delay.is_zero() {
            // Blocks marked before are hidden from the view; their metas say whether they
            // are past retention.
            self.sync().await?;
            let now = now_ms();
            for ulid in self.deletion_marks.deletion_marks().into_keys() {
                if expired.contains(&ulid) {
                    continue;
                }
                match read_meta(&self.bucket, ulid).await {
                    Ok(meta) if self.past_retention(&meta, now) => {
                        expired.insert(ulid);
                    }
                    Ok(_) => {}
                    // Deleted meanwhile, or unreadable: not this pass's to delete.
                    Err(e) => {
                        tracing::warn!(block = %ulid, error = %e, "reading a marked block's meta.json")
                    }
                }
            }
            self.delete_marked(Some(&expired), &mut report).await?;
        }
        Ok(report)
    }

    async fn iterate(&self, report: &mut IterationReport) -> Result<(), CompactError> {
        // Compact until no group has anything to do, syncing again after each round: each
        // round's outputs may be the next round's inputs (2h -> 8h -> 2d -> 14d).
        loop {
            let metas = self.sync().await?;
            self.mark_duplicates(report).await?;
            let groups =
                group_blocks(metas.into_values()).map_err(|e| CompactError::Halt(e.to_string()))?;
            let no_compact: BTreeSet<Ulid> = self.no_compact.marks().into_keys().collect();
            let mut todo = 0;
            let mut plans = Vec::new();
            for group in &groups {
                self.check_overlaps(group)?;
                let filtered = self
                    .planner
                    .plan(&group.metas, &no_compact)
                    .await
                    .map_err(|e| CompactError::Retry(e.to_string()))?;
                for _ in &filtered.marked {
                    self.metrics
                        .blocks_marked
                        .get_or_create(&marked_labels(NO_COMPACT_MARK_FILENAME, ""))
                        .inc();
                }
                if filtered.plan.len() > 1 {
                    todo += 1;
                    let plan: Vec<BlockMeta> = filtered.plan.into_iter().cloned().collect();
                    plans.push((group.clone(), plan));
                }
            }
            self.metrics.todo_compactions.set(todo);
            if plans.is_empty() {
                break;
            }
            let concurrency = self.config.concurrency.max(1);
            let mut results = futures::stream::iter(plans)
                .map(|(group, plan)| async move { self.compact_group(&group, &plan).await })
                .buffer_unordered(concurrency);
            let mut first_error = None;
            while let Some(r) = results.next().await {
                match r {
                    Ok((vertical, marked)) => {
                        report.compactions += 1;
                        report.vertical_compactions += u64::from(vertical);
                        report.marked_for_deletion += marked;
                    }
                    Err(e) if e.is_halt() => return Err(e),
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = first_error {
                return Err(e);
            }
        }
        self.metrics.todo_compactions.set(0);
        if self.config.downsampling_disabled {
            tracing::info!("downsampling was explicitly disabled");
        } else {
            for pass in ["first", "second"] {
                tracing::info!("start {pass} pass of downsampling");
                let mut metas = self.sync().await?;
                for ulid in self.no_downsample.marks().into_keys() {
                    metas.remove(&ulid);
                }
                report.downsamples += self.downsample_bucket(&metas).await?;
            }
            tracing::info!("downsampling iterations done");
        }
        self.apply_retention(report).await?;
        self.clean(report).await?;
        Ok(())
    }

    /// One downsampling pass over `metas` (Thanos' `downsampleBucket` with a concurrency of
    /// 1: the first failure ends the pass); returns the blocks written.
    async fn downsample_bucket(
        &self,
        metas: &BTreeMap<Ulid, BlockMeta>,
    ) -> Result<u64, CompactError> {
        let mut sources_5m = BTreeSet::new();
        let mut sources_1h = BTreeSet::new();
        for m in metas.values() {
            let sources = match m.resolution() {
                RESOLUTION_RAW => continue,
                RESOLUTION_5M => &mut sources_5m,
                RESOLUTION_1H => &mut sources_1h,
                other => {
                    return Err(CompactError::Halt(format!(
                        "unexpected downsampling resolution {other} of block {}",
                        m.ulid
                    )))
                }
            };
            sources.extend(m.compaction.sources.iter().cloned());
        }
        for m in metas.values() {
            let resolution = m.resolution().to_string();
            for family in [&self.metrics.downsamples, &self.metrics.downsample_failures] {
                // Present at 0 from the first pass on, as Thanos' `WithLabelValues` makes them.
                let _ = family.get_or_create(&vec![("resolution".into(), resolution.clone())]);
            }
        }
        let mut written = 0;
        // BTreeMap order is ULID order, as Thanos sorts them.
        for m in metas.values() {
            let (done, min_range, target) = match m.resolution() {
                RESOLUTION_RAW => (&sources_5m, RES_LEVEL1_DOWNSAMPLE_RANGE, RESOLUTION_5M),
                RESOLUTION_5M => (&sources_1h, RES_LEVEL2_DOWNSAMPLE_RANGE, RESOLUTION_1H),
                _ => continue,
            };
            // Already downsampled (a block with no sources counts as such, as in Thanos).
            if m.compaction.sources.iter().all(|s| done.contains(s)) {
                continue;
            }
            // Only ranges worth about two output chunks; the planner's ranges make sure
            // every block eventually gets there.
            if m.max_time - m.min_time < min_range {
                continue;
            }
            let labels = vec![("resolution".into(), m.resolution().to_string())];
            let result = self.downsample_one(m, target).await;
            if result.is_err() {
                self.metrics
                    .downsample_failures
                    .get_or_create(&labels)
                    .inc();
            }
            // Thanos counts attempts, failed ones included.
            self.metrics.downsamples.get_or_create(&labels).inc();
            result?;
            written += 1;
        }
        Ok(written)
    }

    /// Downloads, verifies, downsamples to `target`, verifies and uploads one block (Thanos'
    /// `processDownsampling`), in `<data-dir>/downsample/`.
    async fn downsample_one(&self, meta: &BlockMeta, target: i64) -> Result<(), CompactError> {
        let what = if target == RESOLUTION_5M {
            "downsampling to 5 min"
        } else {
            "downsampling to 60 min"
        };
        let dir = self.config.data_dir.join("downsample");
        // Whatever an earlier run left here is garbage: start clean.
        let _ = std::fs::remove_dir_all(&dir);
        let result = self.downsample_in(&dir, meta, target).await;
        let _ = std::fs::remove_dir_all(&dir);
        result.map_err(|e| match e {
            CompactError::Halt(m) => CompactError::Halt(format!("{what}: {m}")),
            CompactError::Retry(m) => CompactError::Retry(format!("{what}: {m}")),
        })
    }

    async fn downsample_in(
        &self,
        dir: &Path,
        meta: &BlockMeta,
        target: i64,
    ) -> Result<(), CompactError> {
        let started = std::time::Instant::now();
        let src = meta.ulid;
        let local = download_block(&self.bucket, src, dir)
            .await
            .map_err(|e| CompactError::Retry(format!("download block {src}: {e}")))?;
        let report = verify_local_block(&local)
            .map_err(|e| CompactError::Retry(format!("reading downloaded block {src}: {e}")))?;
        if !report.problems.is_empty() {
            return Err(CompactError::Halt(format!(
                "input block {src} index not valid: {}",
                report.problems.join("; ")
            )));
        }
        let block = Block::open(&local)
            .map_err(|e| CompactError::Retry(format!("open block {src}: {e}")))?;
        let out_dir = dir.join("output");
        std::fs::create_dir_all(&out_dir)
            .map_err(|e| CompactError::Retry(format!("creating {}: {e}", out_dir.display())))?;
        let ulid = Ulid::new();
        let out = tokio::task::block_in_place(|| downsample_block(&block, target, &out_dir, ulid))
            .map_err(|e| {
                let text = format!("downsample block {src} to window {target}: {e}");
                match e {
                    // Local I/O may work next time; anything about the data will not.
                    DownsampleError::Storage(tsdb::Error::Io { .. }) => CompactError::Retry(text),
                    _ => CompactError::Halt(text),
                }
            })?;
        drop(block);
        let block_dir = out_dir.join(ulid.to_string());
        let report = verify_local_block(&block_dir)
            .map_err(|e| CompactError::Retry(format!("reading downsampled block {ulid}: {e}")))?;
        if !report.problems.is_empty() {
            return Err(CompactError::Halt(format!(
                "output block {ulid} index not valid: {}",
                report.problems.join("; ")
            )));
        }
        upload_block(&self.bucket, &block_dir)
            .await
            .map_err(|e| CompactError::Retry(format!("upload downsampled block {ulid}: {e}")))?;
        tracing::info!(
            from = %src,
            to = %ulid,
            resolution = target,
            series = out.stats.num_series,
            samples = out.stats.num_samples,
            duration = ?started.elapsed(),
            "downsampled block"
        );
        Ok(())
    }

    /// A view of the bucket through the compactor's filters; an incomplete view is an error
    /// (acting on it could compact a group with a block missing).
    async fn sync(&self) -> Result<BTreeMap<Ulid, BlockMeta>, CompactError> {
        let result = self
            .fetcher
            .fetch()
            .await
            .map_err(|e| CompactError::Retry(format!("syncing metas: {e}")))?;
        if !result.is_complete() {
            let errors: Vec<String> = result.failed.iter().map(|e| e.to_string()).collect();
            return Err(CompactError::Retry(format!(
                "incomplete view of the bucket: {}",
                errors.join("; ")
            )));
        }
        self.cleanable_partials(&result.partial);
        Ok(result.metas)
    }

    /// Partial uploads old enough to be given up on (older than [`PARTIAL_UPLOAD_THRESHOLD`]
    /// and than the consistency delay, as in Thanos) are remembered for [`Self::clean`].
    fn cleanable_partials(&self, partial: &BTreeMap<Ulid, PartialBlock>) {
        let now = now_ms();
        let threshold = PARTIAL_UPLOAD_THRESHOLD
            .max(self.config.consistency_delay)
            .as_millis() as u64;
        let mut old = self.stale_partials.lock().unwrap();
        old.clear();
        for (ulid, why) in partial {
            if matches!(why, PartialBlock::NoMeta)
                && (now as u64).saturating_sub(ulid.timestamp_ms()) > threshold
            {
                old.push(*ulid);
            }
        }
    }

    /// Blocks whose data a compacted block already holds get a deletion mark (Thanos'
    /// garbage collection of the deduplicate filter's findings).
    async fn mark_duplicates(&self, report: &mut IterationReport) -> Result<(), CompactError> {
        for ulid in self.duplicates.duplicate_ids() {
            if self.deletion_marks.deletion_marks().contains_key(&ulid) {
                continue;
            }
            self.mark_deleted(ulid, "outdated block", report).await?;
        }
        Ok(())
    }

    async fn mark_deleted(
        &self,
        ulid: Ulid,
        details: &str,
        report: &mut IterationReport,
    ) -> Result<(), CompactError> {
        let outcome = markers::mark_for_deletion(&self.bucket, ulid, details)
            .await
            .map_err(|e| CompactError::Retry(format!("marking block {ulid} for deletion: {e}")))?;
        if outcome == MarkOutcome::Written {
            report.marked_for_deletion += 1;
            self.metrics
                .blocks_marked
                .get_or_create(&marked_labels(DELETION_MARK_FILENAME, details))
                .inc();
            tracing::info!(block = %ulid, details, "marked block for deletion");
        }
        Ok(())
    }

    /// Without vertical compaction, overlapping blocks in a group halt the compactor: merging
    /// them would mix data that is not meant to be merged, and dropping either loses data.
    fn check_overlaps(&self, group: &Group) -> Result<(), CompactError> {
        if self.config.merges_overlaps() {
            return Ok(());
        }
        let overlaps = overlapping_pairs(&group.metas);
        if overlaps.is_empty() {
            return Ok(());
        }
        let described: Vec<String> = overlaps
            .iter()
            .map(|(a, b)| {
                format!(
                    "{} [{}, {}) and {} [{}, {})",
                    a.ulid, a.min_time, a.max_time, b.ulid, b.min_time, b.max_time
                )
            })
            .collect();
        Err(CompactError::Halt(format!(
            "group {} {:?}: overlapping blocks {}; enable --compact.enable-vertical-compaction or --deduplication.replica-label to merge them, or mark one with no-compact-mark.json",
            group.key,
            group.labels,
            described.join(", ")
        )))
    }

    /// Compacts one plan of one group; returns (vertical, blocks marked for deletion).
    async fn compact_group(
        &self,
        group: &Group,
        plan: &[BlockMeta],
    ) -> Result<(bool, u64), CompactError> {
        let dir = self.config.data_dir.join("compact").join(&group.key);
        // Whatever an earlier run left here is garbage: start clean.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| CompactError::Retry(format!("creating {}: {e}", dir.display())))?;
        let result = self.compact_in(&dir, group, plan).await;
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    async fn compact_in(
        &self,
        dir: &Path,
        group: &Group,
        plan: &[BlockMeta],
    ) -> Result<(bool, u64), CompactError> {
        let started = std::time::Instant::now();
        let inputs_dir = dir.join("inputs");
        // All inputs at once: against S3 a download is mostly waiting.
        let downloads = plan.iter().map(|meta| {
            let inputs_dir = &inputs_dir;
            async move {
                download_block(&self.bucket, meta.ulid, inputs_dir)
                    .await
                    .map_err(|e| {
                        CompactError::Retry(format!("downloading block {}: {e}", meta.ulid))
                    })
            }
        });
        let locals = futures::future::try_join_all(downloads).await?;
        let download_took = started.elapsed();
        let verify_started = std::time::Instant::now();
        // Each input checked on a blocking thread of its own: decoding every chunk is the
        // costly part, and the inputs are independent.
        let checks = locals.iter().map(|local| {
            let local = local.clone();
            tokio::task::spawn_blocking(move || verify_local_block(&local))
        });
        let reports = futures::future::join_all(checks).await;
        let mut opened = Vec::with_capacity(plan.len());
        for ((meta, local), report) in plan.iter().zip(&locals).zip(reports) {
            let report = report
                .map_err(|e| CompactError::Retry(format!("verifying block {}: {e}", meta.ulid)))?
                .map_err(|e| {
                    CompactError::Retry(format!("reading downloaded block {}: {e}", meta.ulid))
                })?;
            if !report.problems.is_empty() {
                // Thanos marks such blocks no-compact only for some issues and halts on the
                // rest; a damaged input is not something to merge into a bigger block.
                return Err(CompactError::Halt(format!(
                    "block {} of group {} is damaged: {}",
                    meta.ulid,
                    group.key,
                    report.problems.join("; ")
                )));
            }
            let block = Block::open(local)
                .map_err(|e| CompactError::Retry(format!("opening block {}: {e}", meta.ulid)))?;
            opened.push(block);
        }
        let verify_took = verify_started.elapsed();
        let vertical = !overlapping_pairs(plan).is_empty();
        let mode = self.config.dedup_func;
        let ulid = Ulid::new();
        let out_dir = dir.join("output");
        std::fs::create_dir_all(&out_dir)
            .map_err(|e| CompactError::Retry(format!("creating {}: {e}", out_dir.display())))?;
        let inputs: Vec<&BlockMeta> = plan.iter().collect();
        let merge_started = std::time::Instant::now();
        let (meta, merge) = tokio::task::block_in_place(|| {
            let refs: Vec<&Block> = opened.iter().collect();
            compact_blocks(&out_dir, ulid, &refs, mode, |_, written, _| {
                let block = CompactedBlock {
                    stats: written.stats.clone(),
                    segment_files: written.segment_files.clone(),
                    index_stats: IndexStats {
                        series_max_size: 0,
                        chunk_max_size: written.chunk_max_size as i64,
                    },
                };
                Ok(compacted_meta(ulid, &inputs, group, &block))
            })
        })
        .map_err(|e| CompactError::Retry(format!("compacting group {}: {e}", group.key)))?;
        let merge_took = merge_started.elapsed();
        drop(opened);

        let sources: Vec<String> = plan.iter().map(|m| m.ulid.to_string()).collect();
        let mut marked = 0;
        if meta.stats.num_samples == 0 {
            // Nothing left (every input empty): no block to upload, the inputs just go.
            tracing::info!(group = %group.key, sources = ?sources, "compacted block would be empty; marking its sources for deletion");
        } else {
            let block_dir = out_dir.join(ulid.to_string());
            let output_verify_started = std::time::Instant::now();
            let report =
                tokio::task::block_in_place(|| verify_local_block(&block_dir)).map_err(|e| {
                    CompactError::Retry(format!("verifying compacted block {ulid}: {e}"))
                })?;
            if !report.problems.is_empty() {
                return Err(CompactError::Halt(format!(
                    "compacted block {ulid} of group {} failed verification: {}",
                    group.key,
                    report.problems.join("; ")
                )));
            }
            let output_verify_took = output_verify_started.elapsed();
            let upload_started = std::time::Instant::now();
            upload_block(&self.bucket, &block_dir).await.map_err(|e| {
                CompactError::Retry(format!("uploading compacted block {ulid}: {e}"))
            })?;
            let upload_took = upload_started.elapsed();
            let resolution = group.resolution.to_string();
            self.metrics
                .group_compactions
                .get_or_create(&vec![("resolution".into(), resolution.clone())])
                .inc();
            if vertical {
                self.metrics
                    .group_vertical_compactions
                    .get_or_create(&vec![("resolution".into(), resolution)])
                    .inc();
            }
            tracing::info!(
                group = %group.key,
                block = %ulid,
                sources = ?sources,
                level = meta.compaction.level,
                series = meta.stats.num_series,
                samples = meta.stats.num_samples,
                input_samples = merge.input_samples,
                merged_series = merge.merged_series,
                vertical,
                min_time = meta.min_time,
                max_time = meta.max_time,
                download_duration = ?download_took,
                verify_duration = ?verify_took,
                merge_duration = ?merge_took,
                output_verify_duration = ?output_verify_took,
                upload_duration = ?upload_took,
                duration = ?started.elapsed(),
                "compacted blocks"
            );
        }
        let mut report = IterationReport::default();
        for m in plan {
            self.mark_deleted(m.ulid, "source of compacted block", &mut report)
                .await?;
        }
        marked += report.marked_for_deletion;
        Ok((vertical, marked))
    }

    /// Marks for deletion every block whose max time is older than its resolution's retention
    /// (Thanos' `ApplyRetentionPolicyByResolution`); returns those blocks.
    async fn apply_retention(
        &self,
        report: &mut IterationReport,
    ) -> Result<BTreeSet<Ulid>, CompactError> {
        let mut expired = BTreeSet::new();
        if self.config.retention.values().all(|d| d.is_zero()) {
            return Ok(expired);
        }
        let metas = self.sync().await?;
        let now = now_ms();
        for meta in metas.values() {
            if self.past_retention(meta, now) {
                self.mark_deleted(meta.ulid, "block exceeding retention period", report)
                    .await?;
                expired.insert(meta.ulid);
            }
        }
        Ok(expired)
    }

    /// Whether the block's max time is older than its resolution's retention at `now` (ms).
    fn past_retention(&self, meta: &BlockMeta, now: i64) -> bool {
        let resolution = meta.thanos.as_ref().map_or(0, |t| t.downsample.resolution);
        self.config
            .retention
            .get(&resolution)
            .filter(|d| !d.is_zero())
            .is_some_and(|keep| meta.max_time < now - keep.as_millis() as i64)
    }

    /// Deletes blocks whose deletion mark is older than `--delete-delay`, and partial uploads
    /// older than [`PARTIAL_UPLOAD_THRESHOLD`] (Thanos' blocks cleaner).
    async fn clean(&self, report: &mut IterationReport) -> Result<(), CompactError> {
        // Marks written during this iteration are seen by a fresh sync.
        self.sync().await?;
        self.delete_marked(None, report).await?;
        let partials = self.stale_partials.lock().unwrap().clone();
        for ulid in partials {
            delete_block(&self.bucket, ulid)
                .await
                .map_err(|e| CompactError::Retry(format!("deleting partial block {ulid}: {e}")))?;
            report.deleted += 1;
            self.metrics.blocks_cleaned.inc();
            tracing::info!(block = %ulid, "deleted an aborted partial upload");
        }
        Ok(())
    }

    /// Deletes the blocks (of `only`, when given) whose deletion mark, as the last sync saw
    /// it, is older than `--delete-delay`.
    async fn delete_marked(
        &self,
        only: Option<&BTreeSet<Ulid>>,
        report: &mut IterationReport,
    ) -> Result<(), CompactError> {
        let now_s = now_ms() / 1000;
        let delay_s = self.config.delete_delay.as_secs() as i64;
        for (ulid, mark) in self.deletion_marks.deletion_marks() {
            if now_s - mark.deletion_time < delay_s || only.is_some_and(|o| !o.contains(&ulid)) {
                continue;
            }
            delete_block(&self.bucket, ulid)
                .await
                .map_err(|e| CompactError::Retry(format!("deleting block {ulid}: {e}")))?;
            report.deleted += 1;
            self.metrics.blocks_cleaned.inc();
            tracing::info!(block = %ulid, "deleted block marked for deletion");
        }
        Ok(())
    }
}

fn marked_labels(marker: &str, reason: &str) -> Vec<(String, String)> {
    vec![
        ("marker".into(), marker.into()),
        ("reason".into(), reason.into()),
    ]
}

/// Pairs of blocks (in min-time order) whose time ranges overlap.
pub fn overlapping_pairs(metas: &[BlockMeta]) -> Vec<(&BlockMeta, &BlockMeta)> {
    let mut sorted: Vec<&BlockMeta> = metas.iter().collect();
    sorted.sort_by_key(|m| (m.min_time, m.max_time, m.ulid));
    let mut pairs = Vec::new();
    for (i, a) in sorted.iter().enumerate() {
        for b in &sorted[i + 1..] {
            if b.min_time >= a.max_time {
                break;
            }
            pairs.push((*a, *b));
        }
    }
    pairs
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
