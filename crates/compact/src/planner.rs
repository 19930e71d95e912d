//! Which blocks of a compaction group to compact next: Thanos' `tsdbBasedPlanner` (Prometheus'
//! leveled planner without the filesystem) and its large-total-index-size wrapper.
//!
//! Input: the group's blocks sorted by min time, and the blocks carrying a no-compact mark.
//! The plan, in order of preference:
//!
//! 1. **Overlaps first**: the first run of blocks whose time ranges overlap, among blocks
//!    without a no-compact mark (vertical compaction).
//! 2. Otherwise the newest block (highest min time) is set aside: it may have just been
//!    uploaded and an operator gets a block's length of time to act on it.
//! 3. For each range after the first (`ranges[1..]`; Thanos: 2h, 8h, 2d, 14d), the blocks
//!    are split into buckets aligned to that range (`[t0, t0 + range]`, `t0` a multiple of the
//!    range; blocks too long for their bucket are skipped). The first bucket with two blocks or
//!    more and no block whose compaction failed is taken, if it spans the whole range or ends
//!    before the newest remaining block starts (so a bucket still filling up waits).
//!    No-compact blocks split a bucket into runs; the first run of two or more is the plan.
//! 4. Otherwise a single block of at least `ranges[len / 2]` (8h for Thanos' ranges) whose
//!    tombstones exceed 5% of its series, to rewrite it without the deleted data.
//!
//! [`LargeTotalIndexSizeFilter`] then checks the plan: when the inputs' index sizes add up to
//! 85% of the limit, the biggest of the blocks summed so far gets a no-compact mark
//! (`index-size-exceeding`) and planning starts again without it.

use std::collections::BTreeSet;

use object_store::path::Path as ObjectPath;
use object_store::ObjectStoreExt;
use objstore::bucket::Bucket;
use objstore::markers::{self, no_compact_reason, MarkOutcome, MarkerError};
use tsdb::meta::BlockMeta;
use ulid::Ulid;

const HOUR_MS: i64 = 3_600_000;

/// Thanos' compaction levels (`compactions` in cmd/thanos/compact.go): 1h, 2h, 8h, 2d, 14d.
/// The first is only the base range; planning uses the others. `--debug.max-compaction-level`
/// (default 4) keeps levels `0..=max`, all five by default.
pub const THANOS_COMPACTION_RANGES: [i64; 5] = [
    HOUR_MS,
    2 * HOUR_MS,
    8 * HOUR_MS,
    48 * HOUR_MS,
    336 * HOUR_MS,
];

/// Thanos' `--compact.block-max-index-size` default: 64 GiB.
pub const DEFAULT_MAX_INDEX_SIZE_BYTES: i64 = 64 << 30;

/// The share of the index size limit that triggers a no-compact mark: 15% is left for the
/// bloat of the compacted index.
const INDEX_SIZE_HEADROOM: f64 = 0.85;

/// The tombstone share of series (`numTombstones / (numSeries + 1)`) above which a big block is
/// rewritten alone.
const TOMBSTONE_RATIO: f64 = 0.05;

/// Thanos' `tsdbBasedPlanner`.
#[derive(Clone, Debug)]
pub struct Planner {
    ranges: Vec<i64>,
}

impl Planner {
    /// A planner over these block ranges (ms, ascending, the first being the base range).
    pub fn new(ranges: Vec<i64>) -> Planner {
        Planner { ranges }
    }

    /// The planner Thanos' compactor uses by default.
    pub fn thanos() -> Planner {
        Planner::new(THANOS_COMPACTION_RANGES.to_vec())
    }

    pub fn ranges(&self) -> &[i64] {
        &self.ranges
    }

    /// The blocks to compact next, in min-time order; empty when there is nothing to do.
    /// `metas_by_min_time` is one group's blocks sorted by min time.
    pub fn plan<'a>(
        &self,
        metas_by_min_time: &'a [BlockMeta],
        no_compact: &BTreeSet<Ulid>,
    ) -> Vec<&'a BlockMeta> {
        let Some(newest) = metas_by_min_time.last() else {
            return Vec::new();
        };
        let mut compactable: Vec<&BlockMeta> = metas_by_min_time
            .iter()
            .filter(|m| !no_compact.contains(&m.ulid))
            .collect();
        let overlapping = select_overlapping(&compactable);
        if !overlapping.is_empty() {
            return overlapping;
        }
        // Leave out the newest block, and from `compactable` only if it is in there.
        if !no_compact.contains(&newest.ulid) {
            compactable.pop();
        }
        let older: Vec<&BlockMeta> = metas_by_min_time[..metas_by_min_time.len() - 1]
            .iter()
            .collect();
        let selected = select_by_ranges(&self.ranges, no_compact, &older);
        if !selected.is_empty() {
            return selected;
        }
        // Newest first, as long as blocks are big enough.
        let Some(&min_span) = self.ranges.get(self.ranges.len() / 2) else {
            return Vec::new();
        };
        for meta in compactable.iter().rev() {
            if meta.max_time - meta.min_time < min_span {
                break;
            }
            let ratio = meta.stats.num_tombstones as f64 / (meta.stats.num_series + 1) as f64;
            if ratio > TOMBSTONE_RATIO {
                return vec![meta];
            }
        }
        Vec::new()
    }
}

/// Prometheus' `selectMetas` with Thanos' no-compact handling; see the module docs, step 3.
fn select_by_ranges<'a>(
    ranges: &[i64],
    no_compact: &BTreeSet<Ulid>,
    metas_by_min_time: &[&'a BlockMeta],
) -> Vec<&'a BlockMeta> {
    if ranges.len() < 2 {
        return Vec::new();
    }
    let Some(newest) = metas_by_min_time.last() else {
        return Vec::new();
    };
    let high_time = newest.min_time;
    for &range in &ranges[1..] {
        'bucket: for bucket in split_by_range(metas_by_min_time, range) {
            if bucket
                .iter()
                .any(|m| objstore::thanos_meta::compaction_failed(m))
            {
                continue 'bucket;
            }
            if bucket.len() < 2 {
                continue;
            }
            let min_time = bucket[0].min_time;
            let max_time = bucket[bucket.len() - 1].max_time;
            // Take a bucket that spans its whole range (gaps allowed) or that lies before the
            // newest block: a bucket still being filled would be compacted too early.
            if max_time - min_time != range && max_time > high_time {
                continue;
            }
            // No-compact blocks split the bucket into runs, so no gap opens in what gets
            // compacted; the first run of two or more blocks is the plan.
            let mut run_start = 0;
            for (i, meta) in bucket.iter().enumerate() {
                if !no_compact.contains(&meta.ulid) {
                    continue;
                }
                if i - run_start > 1 {
                    return bucket[run_start..i].to_vec();
                }
                run_start = i + 1;
            }
            if bucket.len() - run_start > 1 {
                return bucket[run_start..].to_vec();
            }
        }
    }
    Vec::new()
}

/// The first run of overlapping blocks (Prometheus' `selectOverlappingDirs`), in input order.
fn select_overlapping<'a>(metas_by_min_time: &[&'a BlockMeta]) -> Vec<&'a BlockMeta> {
    let mut overlapping: Vec<&BlockMeta> = Vec::new();
    let Some(first) = metas_by_min_time.first() else {
        return overlapping;
    };
    let mut global_max = first.max_time;
    for (i, meta) in metas_by_min_time.iter().enumerate().skip(1) {
        if meta.min_time < global_max {
            if overlapping.is_empty() {
                overlapping.push(metas_by_min_time[i - 1]);
            }
            overlapping.push(meta);
        } else if !overlapping.is_empty() {
            break;
        }
        global_max = global_max.max(meta.max_time);
    }
    overlapping
}

/// Splits blocks into buckets aligned to `range` (Prometheus' `splitByRange`): a bucket is
/// `[t0, t0 + range]` with `t0` the multiple of `range` at or below the first block's min
/// time; blocks reaching past their bucket's end are skipped.
fn split_by_range<'a>(metas_by_min_time: &[&'a BlockMeta], range: i64) -> Vec<Vec<&'a BlockMeta>> {
    let mut buckets = Vec::new();
    let mut i = 0;
    while i < metas_by_min_time.len() {
        let start = metas_by_min_time[i].min_time.div_euclid(range) * range;
        let end = start + range;
        if metas_by_min_time[i].max_time > end {
            i += 1;
            continue;
        }
        let mut bucket = Vec::new();
        while i < metas_by_min_time.len() && metas_by_min_time[i].max_time <= end {
            bucket.push(metas_by_min_time[i]);
            i += 1;
        }
        buckets.push(bucket);
    }
    buckets
}

/// Errors of the large-total-index-size filter; each names the object.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("bucket {op} {path}: {source}")]
    Bucket {
        op: &'static str,
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error("marking block {block} for no compaction: {source}")]
    Mark {
        block: Ulid,
        #[source]
        source: MarkerError,
    },
}

/// A plan, and the blocks the filter marked no-compact on the way.
#[derive(Debug, Default)]
pub struct FilteredPlan<'a> {
    pub plan: Vec<&'a BlockMeta>,
    /// Blocks that got a no-compact mark now (Thanos counts these in
    /// `thanos_compact_blocks_marked_total{marker="no-compact-mark.json"}`). Also excluded from
    /// the plan: blocks found already marked in the bucket.
    pub marked: Vec<Ulid>,
    /// Every block excluded because of its index size, marked now or before.
    pub excluded: Vec<Ulid>,
}

/// Thanos' `WithLargeTotalIndexSizeFilter`: a planner that keeps the summed index size of a
/// plan's inputs under 85% of `max_total_index_size_bytes`. The estimate is deliberately
/// rough (indexes sharing nothing), so the limit should be set below the real one.
pub struct LargeTotalIndexSizeFilter {
    planner: Planner,
    bucket: Bucket,
    max_total_index_size_bytes: i64,
}

impl LargeTotalIndexSizeFilter {
    pub fn new(planner: Planner, bucket: Bucket, max_total_index_size_bytes: i64) -> Self {
        LargeTotalIndexSizeFilter {
            planner,
            bucket,
            max_total_index_size_bytes,
        }
    }

    pub fn planner(&self) -> &Planner {
        &self.planner
    }

    /// Plans, marking blocks no-compact and planning again while the plan's indexes are too
    /// big together.
    pub async fn plan<'a>(
        &self,
        metas_by_min_time: &'a [BlockMeta],
        no_compact: &BTreeSet<Ulid>,
    ) -> Result<FilteredPlan<'a>, PlanError> {
        let mut no_compact = no_compact.clone();
        let mut result = FilteredPlan::default();
        let threshold = (self.max_total_index_size_bytes as f64 * INDEX_SIZE_HEADROOM) as i64;
        'plan: loop {
            let plan = self.planner.plan(metas_by_min_time, &no_compact);
            let mut total: i64 = 0;
            let mut biggest: Option<(i64, &BlockMeta)> = None;
            for meta in &plan {
                let size = self.index_size(meta).await?;
                if biggest.is_none_or(|(max, _)| max < size) {
                    biggest = Some((size, meta));
                }
                total += size;
                if total >= threshold {
                    let (_, victim) = biggest.expect("set above");
                    let details = format!(
                        "largeTotalIndexSizeFilter: Total compacted block's index size could exceed: {} with this block. See https://github.com/thanos-io/thanos/issues/1424",
                        self.max_total_index_size_bytes
                    );
                    let outcome = markers::mark_for_no_compact(
                        &self.bucket,
                        victim.ulid,
                        no_compact_reason::INDEX_SIZE_EXCEEDING,
                        &details,
                    )
                    .await
                    .map_err(|source| PlanError::Mark {
                        block: victim.ulid,
                        source,
                    })?;
                    if outcome == MarkOutcome::Written {
                        result.marked.push(victim.ulid);
                    }
                    result.excluded.push(victim.ulid);
                    no_compact.insert(victim.ulid);
                    continue 'plan;
                }
            }
            result.plan = plan;
            return Ok(result);
        }
    }

    /// The block's index size from `thanos.files`, else from the bucket.
    async fn index_size(&self, meta: &BlockMeta) -> Result<i64, PlanError> {
        let recorded = objstore::thanos_meta::files(meta)
            .iter()
            .rev()
            .find(|f| f.rel_path == tsdb::block::INDEX_FILENAME)
            .and_then(|f| f.size_bytes)
            .map_or(-1, |s| s as i64);
        if recorded > 0 {
            return Ok(recorded);
        }
        let path = ObjectPath::from(format!("{}/{}", meta.ulid, tsdb::block::INDEX_FILENAME));
        let object = self
            .bucket
            .head(&path)
            .await
            .map_err(|source| PlanError::Bucket {
                op: "head",
                path: path.to_string(),
                source,
            })?;
        Ok(object.size as i64)
    }
}

#[cfg(test)]
mod tests;
