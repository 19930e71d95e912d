//! The database: a directory of blocks, a head protected by a WAL, cutting and retention.
//!
//! ```text
//! <dir>/
//!   01H.../     blocks (see [`crate::block`])
//!   cairn-wal/  the head's write-ahead log (see [`crate::wal`]); not named `wal` because its
//!               format is Cairn's own, and Prometheus tools (promtool) would try to read `wal/`
//!   wal/        always empty: `promtool tsdb dump` needs it to open the directory
//! ```
//! [`Db::maintain`] (called periodically by the owner) cuts the head's oldest block range once
//! the head spans more than 1.5 block durations, then applies retention. [`Db::close`] flushes the
//! whole head into blocks, so a clean shutdown leaves nothing that needs replay.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use crate::block::{
    write_block, Block, BlockQuerier, BlockWriteOptions, TMP_CREATION_SUFFIX, TMP_DELETION_SUFFIX,
};
use crate::error::IoContext;
use crate::head::{range_start, Appender, Head, HeadOptions, HeadQuerier};
use crate::matcher::{postings_for_matchers, Matcher};
use crate::meta::{BlockMeta, ThanosMeta};
use crate::querier::{MergeQuerier, Querier};
use crate::select::{Part, ReadLease, Selection};
use crate::wal::{Wal, WalOptions};
use crate::{Error, Result};

pub const WAL_DIRNAME: &str = "cairn-wal";
/// An empty directory named like Prometheus' WAL: `promtool tsdb dump` (a read-only Prometheus
/// open) refuses a data directory without one.
pub const PROMETHEUS_WAL_DIRNAME: &str = "wal";

/// How long truncating the head waits for lazy selections that still read what it drops (a
/// query streaming to a slow client); those still open then fail with
/// [`Error::ReadOutlived`](crate::Error::ReadOutlived) rather than answer with a gap.
pub const READER_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Decides whether a block may be deleted by retention (the shipper says no until uploaded).
pub type DeletionVeto = Arc<dyn Fn(&BlockMeta) -> bool + Send + Sync>;

#[derive(Clone)]
pub struct DbOptions {
    /// Block duration in milliseconds (default 2 h). Blocks are aligned to multiples of it.
    pub block_duration: i64,
    /// Blocks whose end is older than this (ms) before the newest data are deleted. None keeps all.
    pub retention: Option<i64>,
    pub wal: WalOptions,
    /// When set, every block's meta.json carries this Thanos section (labels, source).
    pub thanos: Option<ThanosMeta>,
    /// Out-of-order samples up to this many ms behind a series' newest are accepted (0: none).
    pub out_of_order_window: i64,
    /// Size of the circular exemplar store (0: exemplars are not kept), `--tsdb.max-exemplars`.
    pub max_exemplars: usize,
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions {
            block_duration: 2 * 3600 * 1000,
            retention: Some(15 * 24 * 3600 * 1000),
            wal: WalOptions::default(),
            thanos: None,
            out_of_order_window: 0,
            max_exemplars: 0,
        }
    }
}

pub struct Db {
    dir: PathBuf,
    opts: DbOptions,
    head: Arc<Head>,
    wal: Arc<Wal>,
    blocks: RwLock<Vec<Arc<Block>>>,
    /// One cut or retention pass at a time.
    maintenance: Mutex<()>,
    can_delete: RwLock<Option<DeletionVeto>>,
}

/// What replay found on open, for logs and tests.
#[derive(Debug, Clone, Default)]
pub struct OpenStats {
    pub blocks: usize,
    pub wal_records: u64,
    pub unknown_series_refs: u64,
    pub wal_truncated: bool,
}

impl Db {
    pub fn open(dir: &Path, opts: DbOptions) -> Result<(Db, OpenStats)> {
        fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
        let prom_wal = dir.join(PROMETHEUS_WAL_DIRNAME);
        fs::create_dir_all(&prom_wal).ctx(|| format!("creating {}", prom_wal.display()))?;
        let mut stats = OpenStats::default();
        let blocks = open_blocks(dir)?;
        stats.blocks = blocks.len();

        let mut head = Head::new(
            HeadOptions {
                chunk_range: opts.block_duration,
                out_of_order_window: opts.out_of_order_window,
                max_exemplars: opts.max_exemplars,
            },
            None,
        );
        if let Some(last) = blocks.iter().map(|b| b.meta().max_time).max() {
            head.set_min_valid_time(last);
        }
        let mut unknown = 0;
        let (wal, replay) = Wal::open(&dir.join(WAL_DIRNAME), opts.wal.clone(), |r| {
            head.replay_record(r, &mut unknown)
        })?;
        stats.wal_records = replay.records;
        stats.unknown_series_refs = unknown;
        stats.wal_truncated = replay.truncated_at.is_some();
        let wal = Arc::new(wal);
        head.set_wal(wal.clone());
        tracing::info!(dir = %dir.display(), blocks = stats.blocks, wal_records = stats.wal_records, head_series = head.num_series(), "opened TSDB");
        Ok((
            Db {
                dir: dir.to_path_buf(),
                opts,
                head: Arc::new(head),
                wal,
                blocks: RwLock::new(blocks),
                maintenance: Mutex::new(()),
                can_delete: RwLock::new(None),
            },
            stats,
        ))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn options(&self) -> &DbOptions {
        &self.opts
    }

    pub fn head(&self) -> &Arc<Head> {
        &self.head
    }

    pub fn appender(&self) -> Appender<'_> {
        self.head.appender()
    }

    /// Blocks, oldest first.
    pub fn blocks(&self) -> Vec<Arc<Block>> {
        self.blocks.read().unwrap().clone()
    }

    /// Installs the retention veto (e.g. "not yet uploaded").
    pub fn set_deletion_veto(&self, veto: DeletionVeto) {
        *self.can_delete.write().unwrap() = Some(veto);
    }

    /// A querier over the blocks overlapping [mint, maxt] and the head.
    pub fn querier(&self, mint: i64, maxt: i64) -> MergeQuerier {
        let mut qs: Vec<Box<dyn Querier>> = self
            .blocks()
            .into_iter()
            .filter(|b| b.overlaps(mint, maxt))
            .map(|b| Box::new(BlockQuerier(b)) as Box<dyn Querier>)
            .collect();
        qs.push(Box::new(HeadQuerier(self.head.clone())));
        MergeQuerier::new(qs)
    }

    /// The series matching `matchers` with data in [mint, maxt] as a lazy [`Selection`]:
    /// handles now, chunks as its iterator reaches each series. It holds a read lease on the
    /// head until dropped (with every iterator made from it).
    pub fn select_lazy(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Selection> {
        // Taken before the blocks are listed: a cut that lands in between then waits for this
        // reader, which reads the head as it was (dropped again below if the head is not read).
        let mut lease = Some(ReadLease::new(self.head.clone(), mint));
        let mut parts = Vec::new();
        for b in self.blocks().into_iter().filter(|b| b.overlaps(mint, maxt)) {
            let refs = postings_for_matchers(&*b, matchers)?
                .into_iter()
                .map(|r| {
                    u32::try_from(r)
                        .map_err(|_| Error::Invalid(format!("series ref {r} out of range")))
                })
                .collect::<Result<Arc<[u32]>>>()?;
            parts.push(Part::Block(b, refs));
        }
        let head = &self.head;
        if !head.is_empty() && maxt >= head.min_time() && mint <= head.max_time() {
            let refs = postings_for_matchers(&**head, matchers)?;
            parts.push(Part::Head(head.series_sorted(&refs).into()));
        } else {
            lease = None;
        }
        Ok(Selection::new(parts, mint, maxt, lease))
    }

    /// Cuts due blocks, then applies retention. Returns the blocks written.
    pub fn maintain(&self) -> Result<Vec<BlockMeta>> {
        let written = self.cut_due_blocks()?;
        self.apply_retention()?;
        Ok(written)
    }

    /// Writes the head's oldest block range to a block while the head spans more than 1.5
    /// block durations (so late samples for the range have had half a block to arrive).
    pub fn cut_due_blocks(&self) -> Result<Vec<BlockMeta>> {
        let _guard = self.maintenance.lock().unwrap();
        let range = self.opts.block_duration;
        let mut written = Vec::new();
        loop {
            let (mint, maxt) = (self.head.min_time(), self.head.max_time());
            if self.head.is_empty() || maxt - mint <= range / 2 * 3 {
                break;
            }
            let end = range_start(mint, range) + range;
            if let Some(meta) = self.cut(mint, end)? {
                written.push(meta);
            }
        }
        Ok(written)
    }

    /// Writes everything in the head to blocks (one per aligned range), e.g. on shutdown.
    pub fn flush(&self) -> Result<Vec<BlockMeta>> {
        let _guard = self.maintenance.lock().unwrap();
        let range = self.opts.block_duration;
        let mut written = Vec::new();
        while !self.head.is_empty() {
            let (mint, maxt) = (self.head.min_time(), self.head.max_time());
            let end = (range_start(mint, range) + range).min(maxt + 1);
            if let Some(meta) = self.cut(mint, end)? {
                written.push(meta);
            }
        }
        Ok(written)
    }

    /// Writes the head's data in [mint, maxt) to a block, then truncates head and WAL.
    fn cut(&self, mint: i64, maxt: i64) -> Result<Option<BlockMeta>> {
        // From here on nothing older than `maxt` is accepted: a sample committed while the block
        // is being written would otherwise be in neither the block nor (after truncation) the
        // head.
        {
            let _no_commits = self.head.commit_lock.write().unwrap();
            self.head.set_min_valid_time(maxt);
        }
        let series: Vec<_> = self
            .head
            .all_series_sorted()
            .into_iter()
            .filter_map(|s| {
                let chunks = s.chunks(mint, maxt - 1);
                (!chunks.is_empty()).then(|| crate::querier::Series {
                    labels: s.labels.clone(),
                    chunks,
                })
            })
            .collect();
        let meta = if series.is_empty() {
            None
        } else {
            let opts = BlockWriteOptions {
                thanos: self.opts.thanos.clone(),
                ..Default::default()
            };
            let meta = write_block(&self.dir, mint, maxt, &series, opts)?;
            let block = Block::open(&self.dir.join(meta.ulid.to_string()))?;
            self.blocks.write().unwrap().push(Arc::new(block));
            Some(meta)
        };
        self.truncate_head_and_wal(maxt)?;
        Ok(meta)
    }

    fn truncate_head_and_wal(&self, t: i64) -> Result<()> {
        let last_segment = {
            let _no_commits = self.head.commit_lock.write().unwrap();
            self.head.set_min_valid_time(t);
            self.wal.cut_segment()?
        };
        let outlived = self.head.readers.wait_below(t, READER_WAIT);
        if outlived > 0 {
            tracing::warn!(
                t,
                readers = outlived,
                wait_s = READER_WAIT.as_secs(),
                "truncating the head under readers still streaming from before the cut; they fail"
            );
        }
        let removed = self.head.truncate(t);
        let records = self.head.checkpoint_records(t);
        self.wal.checkpoint(last_segment, records.into_iter())?;
        tracing::debug!(t, removed_series = removed, "truncated head and WAL");
        Ok(())
    }

    /// Deletes blocks that ended more than the retention before the newest data, unless vetoed.
    pub fn apply_retention(&self) -> Result<Vec<BlockMeta>> {
        let Some(retention) = self.opts.retention else {
            return Ok(Vec::new());
        };
        let blocks = self.blocks();
        let newest = blocks
            .iter()
            .map(|b| b.meta().max_time)
            .chain(std::iter::once(self.head.max_time()))
            .max()
            .unwrap_or(i64::MIN);
        if newest == i64::MIN {
            return Ok(Vec::new());
        }
        let veto = self.can_delete.read().unwrap().clone();
        let doomed: Vec<Arc<Block>> = blocks
            .into_iter()
            .filter(|b| b.meta().max_time <= newest - retention)
            .filter(|b| veto.as_ref().is_none_or(|allow| allow(b.meta())))
            .collect();
        if doomed.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<_> = doomed.iter().map(|b| b.meta().ulid).collect();
        self.blocks
            .write()
            .unwrap()
            .retain(|b| !ids.contains(&b.meta().ulid));
        let mut deleted = Vec::new();
        for b in doomed {
            // Rename first so a crash mid-delete leaves a temp dir, not a half block.
            let tmp = self
                .dir
                .join(format!("{}{TMP_DELETION_SUFFIX}", b.meta().ulid));
            fs::rename(b.dir(), &tmp).ctx(|| format!("renaming {}", b.dir().display()))?;
            fs::remove_dir_all(&tmp).ctx(|| format!("removing {}", tmp.display()))?;
            tracing::info!(block = %b.meta().ulid, max_time = b.meta().max_time, "deleted block past retention");
            deleted.push(b.meta().clone());
        }
        Ok(deleted)
    }

    /// Flushes the head to blocks and syncs the WAL.
    pub fn close(self) -> Result<Vec<BlockMeta>> {
        let written = self.flush()?;
        self.wal.sync()?;
        Ok(written)
    }

    /// Bytes of all blocks on disk.
    pub fn blocks_size(&self) -> u64 {
        self.blocks().iter().map(|b| b.size()).sum()
    }
}

/// Opens every complete block in `dir`, removing leftovers of interrupted writes and deletes.
fn open_blocks(dir: &Path) -> Result<Vec<Arc<Block>>> {
    let mut blocks = Vec::new();
    for entry in fs::read_dir(dir).ctx(|| format!("listing {}", dir.display()))? {
        let entry = entry.ctx(|| format!("listing {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().to_string();
        let path = entry.path();
        if name.ends_with(TMP_CREATION_SUFFIX) || name.ends_with(TMP_DELETION_SUFFIX) {
            tracing::warn!(path = %path.display(), "removing leftover of an interrupted block write or delete");
            fs::remove_dir_all(&path).ctx(|| format!("removing {}", path.display()))?;
            continue;
        }
        if ulid::Ulid::from_string(&name).is_err()
            || !path.join(crate::meta::META_FILENAME).exists()
        {
            continue;
        }
        blocks.push(Arc::new(Block::open(&path)?));
    }
    blocks.sort_by_key(|b| (b.meta().min_time, b.meta().ulid));
    Ok(blocks)
}
