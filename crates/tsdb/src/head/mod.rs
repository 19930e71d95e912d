//! The head: the in-memory, appendable part of the database.
//!
//! Each series ([`MemSeries`]) holds its samples as a list of chunks: XOR for floats, Prometheus'
//! histogram and float-histogram encodings for native histograms. A chunk is closed at
//! [`SAMPLES_PER_CHUNK`] samples (histograms: about 1 KiB once it holds 10), when the next
//! sample falls into the next block range (so a chunk never crosses a block boundary), when the
//! kind of value changes, or when a histogram cannot join it (a counter reset or a new schema:
//! the next chunk's header says which). A closed chunk keeps only its bytes, encoding and time
//! range (40 bytes plus the data), with no appender state and no spare capacity. Label
//! strings are interned: every series with `job="node"` shares the same two allocations.
//!
//! An inverted index maps each label pair to the ascending refs of the series holding it
//! (postings), which [`crate::matcher::postings_for_matchers`] turns into matcher lookups.
//!
//! Appending follows Prometheus' rules:
//! - a sample older than the head accepts ([`Head::min_valid_time`]: the end of the last cut
//!   block, or half a block range before the newest sample, whichever is later) is
//!   [`Error::OutOfBounds`];
//! - a sample older than the series' newest one is [`Error::OutOfOrder`];
//! - a sample at the same timestamp with a different value is [`Error::DuplicateTimestamp`]
//!   (the same value again is accepted and ignored).
//!
//! Writes go through an [`Appender`]: samples are validated as they are added, then logged to
//! the WAL at commit (with the records of the series they create, ahead of the samples, so a
//! sample record never precedes its series on replay) and applied.
//!
//! The files follow Prometheus' split of its head: `series` (one series' chunks), `index`
//! (postings and lookups), `append` (the write path), `read` (queriers), `wal` (replay and
//! checkpoint content) and `status` (statistics).

mod append;
mod index;
mod read;
mod series;
mod status;
#[cfg(test)]
mod tests;
mod wal;

pub use append::{Appender, Durable, SeriesHandle};
pub use read::HeadQuerier;
pub use series::{range_start, MemSeries};
pub use status::{HeadMemory, HeadStatus};

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::exemplars::ExemplarStorage;
use crate::wal::Wal;

use index::HeadIndex;

#[derive(Clone, Debug)]
pub struct HeadOptions {
    /// Block duration in milliseconds: chunks never cross a multiple of it.
    pub chunk_range: i64,
    /// How far (ms) behind a series' newest sample an older sample is still accepted and
    /// inserted in place (0: out-of-order samples are refused).
    pub out_of_order_window: i64,
    /// Exemplars kept in the circular exemplar store (0: exemplars are not stored).
    pub max_exemplars: usize,
}

impl Default for HeadOptions {
    fn default() -> Self {
        HeadOptions {
            chunk_range: 2 * 3600 * 1000,
            out_of_order_window: 0,
            max_exemplars: 0,
        }
    }
}

pub struct Head {
    opts: HeadOptions,
    index: RwLock<HeadIndex>,
    next_ref: AtomicU64,
    min_time: AtomicI64,
    max_time: AtomicI64,
    /// Samples below this are out of bounds (end of the last block cut from the head).
    min_valid_time: AtomicI64,
    wal: Option<Arc<Wal>>,
    /// Commits hold it shared from WAL write to head apply; a WAL checkpoint takes it
    /// exclusively to cut the segment, so every commit in the old segments is in the head.
    pub(crate) commit_lock: RwLock<()>,
    exemplars: ExemplarStorage,
    /// Lazy selections streaming from the head; truncation waits for them.
    pub(crate) readers: crate::select::ReadLeases,
}

/// Counters a commit reports.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CommitStats {
    /// Float samples stored.
    pub samples: usize,
    /// Native histogram samples stored (integer and float).
    pub histograms: usize,
    /// Exemplars stored.
    pub exemplars: usize,
    /// Samples that passed validation at append but lost a race with a concurrent commit to
    /// the same series (out-of-order by the time they were applied).
    pub rejected_late: usize,
    /// The same for native histogram samples.
    pub rejected_late_histograms: usize,
}

impl Head {
    pub fn new(opts: HeadOptions, wal: Option<Arc<Wal>>) -> Head {
        Head {
            exemplars: ExemplarStorage::new(opts.max_exemplars),
            readers: Default::default(),
            opts,
            index: RwLock::new(HeadIndex::default()),
            next_ref: AtomicU64::new(1),
            min_time: AtomicI64::new(i64::MAX),
            max_time: AtomicI64::new(i64::MIN),
            min_valid_time: AtomicI64::new(i64::MIN),
            wal,
            commit_lock: RwLock::new(()),
        }
    }

    pub fn options(&self) -> &HeadOptions {
        &self.opts
    }

    /// The head's exemplars (the circular store of [`HeadOptions::max_exemplars`]).
    pub fn exemplars(&self) -> &ExemplarStorage {
        &self.exemplars
    }

    pub(crate) fn set_wal(&mut self, wal: Arc<Wal>) {
        self.wal = Some(wal);
    }

    pub fn wal(&self) -> Option<&Arc<Wal>> {
        self.wal.as_ref()
    }

    /// Oldest sample timestamp in the head (i64::MAX when empty).
    pub fn min_time(&self) -> i64 {
        self.min_time.load(Ordering::Acquire)
    }

    /// Newest sample timestamp in the head (i64::MIN when empty).
    pub fn max_time(&self) -> i64 {
        self.max_time.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.max_time() == i64::MIN
    }

    /// The oldest timestamp an append may carry right now.
    pub fn min_valid_time(&self) -> i64 {
        let block_end = self.min_valid_time.load(Ordering::Acquire);
        let max = self.max_time();
        if max == i64::MIN {
            return block_end;
        }
        block_end.max(max.saturating_sub(self.opts.chunk_range / 2))
    }

    pub(crate) fn set_min_valid_time(&self, t: i64) {
        self.min_valid_time.fetch_max(t, Ordering::AcqRel);
    }

    pub fn num_series(&self) -> usize {
        self.index.read().unwrap().by_ref.len()
    }

    pub fn series_by_ref(&self, series_ref: u64) -> Option<Arc<MemSeries>> {
        self.index.read().unwrap().by_ref.get(&series_ref).cloned()
    }

    fn update_time_bounds(&self, mint: i64, maxt: i64) {
        self.min_time.fetch_min(mint, Ordering::AcqRel);
        self.max_time.fetch_max(maxt, Ordering::AcqRel);
    }

    /// Drops every chunk that ends before `t` and every series left empty, and makes `t` the
    /// lower bound for appends. Called after the data below `t` was written to a block.
    pub fn truncate(&self, t: i64) -> usize {
        self.set_min_valid_time(t);
        let mut empty = Vec::new();
        let mut new_min = i64::MAX;
        {
            let index = self.index.read().unwrap();
            for s in index.by_ref.values() {
                let mut samples = s.samples.lock().unwrap();
                samples.truncate(t);
                match samples.first_min_t() {
                    None => empty.push(s.clone()),
                    // A chunk straddling `t` (only possible when flushing at an unaligned
                    // time) keeps its older samples, but those are in the block now.
                    Some(min_t) => new_min = new_min.min(min_t.max(t)),
                }
            }
        }
        let removed = empty.len();
        if !empty.is_empty() {
            let mut index = self.index.write().unwrap();
            // A series may have received a sample since the scan, or be held by an appender.
            empty.retain(|s| {
                s.pending.load(Ordering::Acquire) == 0 && s.samples.lock().unwrap().is_empty()
            });
            index.remove(&empty);
        }
        self.min_time.store(new_min, Ordering::Release);
        if new_min == i64::MAX {
            self.max_time.store(i64::MIN, Ordering::Release);
        }
        removed
    }
}
