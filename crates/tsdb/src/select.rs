//! Lazy selection: the series matching a query as a sorted stream whose chunks are read one
//! series at a time, for readers (the StoreAPI) that forward an answer larger than they should
//! hold.
//!
//! [`Db::select_lazy`](crate::db::Db::select_lazy) resolves the matchers up front and keeps only
//! handles: for the head the matching series (one pointer each), for a block the matching series
//! refs (four bytes each). [`Selection::iter`] then walks the sources in label order, merging a
//! series present in several of them, and copies a series' chunks only when the iterator reaches
//! it; with `with_chunks` false it reads labels only (a cheap first pass).
//!
//! A selection holds a [`ReadLease`] on the head: truncating the head (after a block is cut)
//! waits for open leases that still need the data it drops, for up to
//! [`READER_WAIT`](crate::db::READER_WAIT); a lease that outlives the wait is marked, and its
//! iterator then fails with [`Error::ReadOutlived`] instead of silently missing data.

use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::block::Block;
use crate::head::{Head, MemSeries};
use crate::index::ChunkMeta;
use crate::querier::{ChunkData, Series};
use crate::{Error, Labels, Result};

/// The readers streaming from a head.
#[derive(Default)]
pub(crate) struct ReadLeases {
    open: Mutex<Vec<Arc<LeaseState>>>,
    changed: Condvar,
}

#[derive(Debug)]
struct LeaseState {
    /// The oldest timestamp the reader needs.
    mint: i64,
    /// Set when the head dropped data below `mint`'s reach before the reader finished.
    outlived: AtomicBool,
    /// The truncation time that outlived it.
    truncated_at: std::sync::atomic::AtomicI64,
}

impl ReadLeases {
    /// Waits until no open reader needs data before `t` (a reader from `mint` < `t`), for at
    /// most `timeout`; readers still open then are marked outlived. Returns how many were.
    pub(crate) fn wait_below(&self, t: i64, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        let mut open = self.open.lock().unwrap();
        loop {
            // A reader marked by an earlier wait already fails; it holds nothing back.
            let needs =
                |l: &&Arc<LeaseState>| l.mint < t && !l.outlived.load(AtomicOrdering::Acquire);
            let blocking = open.iter().filter(needs).count();
            if blocking == 0 {
                return 0;
            }
            let now = Instant::now();
            if now >= deadline {
                for l in open.iter().filter(needs) {
                    l.truncated_at.store(t, AtomicOrdering::Relaxed);
                    l.outlived.store(true, AtomicOrdering::Release);
                }
                return blocking;
            }
            open = self.changed.wait_timeout(open, deadline - now).unwrap().0;
        }
    }
}

/// An open reader of a head; dropping it lets truncation proceed.
pub struct ReadLease {
    head: Arc<Head>,
    state: Arc<LeaseState>,
}

impl ReadLease {
    pub(crate) fn new(head: Arc<Head>, mint: i64) -> Self {
        let state = Arc::new(LeaseState {
            mint,
            outlived: AtomicBool::new(false),
            truncated_at: std::sync::atomic::AtomicI64::new(i64::MIN),
        });
        head.readers.open.lock().unwrap().push(state.clone());
        ReadLease { head, state }
    }

    fn check(&self) -> Result<()> {
        if self.state.outlived.load(AtomicOrdering::Acquire) {
            return Err(Error::ReadOutlived {
                mint: self.state.mint,
                t: self.state.truncated_at.load(AtomicOrdering::Relaxed),
            });
        }
        Ok(())
    }
}

impl Drop for ReadLease {
    fn drop(&mut self) {
        let readers = &self.head.readers;
        readers
            .open
            .lock()
            .unwrap()
            .retain(|l| !Arc::ptr_eq(l, &self.state));
        readers.changed.notify_all();
    }
}

/// One source of a selection, its matching series in label order.
#[derive(Clone)]
pub(crate) enum Part {
    Head(Arc<[Arc<MemSeries>]>),
    Block(Arc<Block>, Arc<[u32]>),
}

/// The series of one query over a database, resolved to handles; see the module docs.
pub struct Selection {
    parts: Vec<Part>,
    mint: i64,
    maxt: i64,
    /// Held when the head is one of the parts.
    lease: Option<Arc<ReadLease>>,
}

impl Selection {
    pub(crate) fn new(parts: Vec<Part>, mint: i64, maxt: i64, lease: Option<ReadLease>) -> Self {
        Selection {
            parts,
            mint,
            maxt,
            lease: lease.map(Arc::new),
        }
    }

    /// Number of handles held (a series in two sources counts twice): what the selection
    /// costs in memory before any chunk is read.
    pub fn handles(&self) -> usize {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Head(s) => s.len(),
                Part::Block(_, refs) => refs.len(),
            })
            .sum()
    }

    /// The series in label order, each once with the chunks of all sources in time order
    /// (empty when `with_chunks` is false). The iterator owns what it reads, so it can move to
    /// another thread and outlive the selection.
    pub fn iter(&self, with_chunks: bool) -> SelectionIter {
        SelectionIter {
            cursors: self
                .parts
                .iter()
                .map(|p| Cursor {
                    part: p.clone(),
                    next: 0,
                    current: None,
                })
                .collect(),
            mint: self.mint,
            maxt: self.maxt,
            with_chunks,
            lease: self.lease.clone(),
            started: false,
            failed: false,
        }
    }
}

/// A source's position: the series it is at (labels and what to read its chunks from).
struct Cursor {
    part: Part,
    next: usize,
    current: Option<(Labels, Pending)>,
}

enum Pending {
    Head(Arc<MemSeries>),
    Block(Vec<ChunkMeta>),
}

impl Cursor {
    /// Whether this is the head's cursor and it may still read from the head.
    fn reads_head(&self) -> bool {
        match &self.part {
            Part::Head(series) => self.current.is_some() || self.next < series.len(),
            Part::Block(..) => false,
        }
    }

    /// Moves to the next series with data in [mint, maxt].
    fn advance(&mut self, mint: i64, maxt: i64) -> Result<()> {
        self.current = None;
        match &self.part {
            Part::Head(series) => {
                while let Some(s) = series.get(self.next) {
                    self.next += 1;
                    if s.has_chunks(mint, maxt) {
                        self.current = Some((s.labels.clone(), Pending::Head(s.clone())));
                        break;
                    }
                }
            }
            Part::Block(block, refs) => {
                while let Some(&r) = refs.get(self.next) {
                    self.next += 1;
                    let (labels, mut metas) = block.index.series(r)?;
                    metas.retain(|m| m.max_time >= mint && m.min_time <= maxt);
                    if !metas.is_empty() {
                        self.current = Some((labels, Pending::Block(metas)));
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    fn labels(&self) -> Option<&Labels> {
        self.current.as_ref().map(|(l, _)| l)
    }

    /// Takes the current series' chunks (when asked) and its labels.
    fn take(
        &mut self,
        mint: i64,
        maxt: i64,
        with_chunks: bool,
        out: &mut Vec<ChunkData>,
    ) -> Result<Labels> {
        let (labels, pending) = self.current.take().expect("a current series");
        if with_chunks {
            match (pending, &self.part) {
                (Pending::Head(s), _) => out.extend(s.chunks(mint, maxt)),
                (Pending::Block(metas), Part::Block(block, _)) => {
                    for m in &metas {
                        out.push(block.chunk(m)?);
                    }
                }
                (Pending::Block(_), Part::Head(_)) => unreachable!("block series from the head"),
            }
        }
        Ok(labels)
    }
}

/// Iterates a [`Selection`]; see [`Selection::iter`].
pub struct SelectionIter {
    cursors: Vec<Cursor>,
    mint: i64,
    maxt: i64,
    with_chunks: bool,
    lease: Option<Arc<ReadLease>>,
    started: bool,
    failed: bool,
}

impl SelectionIter {
    fn check(&self) -> Result<()> {
        self.lease.as_ref().map_or(Ok(()), |l| l.check())
    }

    fn step(&mut self) -> Result<Option<Series>> {
        let (mint, maxt) = (self.mint, self.maxt);
        if !self.started {
            self.started = true;
            for c in &mut self.cursors {
                c.advance(mint, maxt)?;
            }
        }
        loop {
            // Only a reader that still reads the head can miss what truncation dropped: the
            // check covers the series `advance` skipped and (below) the chunks just copied.
            let head_read = self.cursors.iter().any(Cursor::reads_head);
            if head_read {
                self.check()?;
            }
            let Some(min) = self
                .cursors
                .iter()
                .filter_map(Cursor::labels)
                .min()
                .cloned()
            else {
                return Ok(None);
            };
            let mut chunks = Vec::new();
            for c in &mut self.cursors {
                if c.labels() == Some(&min) {
                    c.take(mint, maxt, self.with_chunks, &mut chunks)?;
                    c.advance(mint, maxt)?;
                }
            }
            // The head may have dropped the chunks between the check and the copy.
            if head_read {
                self.check()?;
            }
            if self.with_chunks && chunks.is_empty() {
                continue;
            }
            chunks.sort_by_key(|c| (c.min_time, c.max_time));
            return Ok(Some(Series {
                labels: min,
                chunks,
            }));
        }
    }
}

impl Iterator for SelectionIter {
    type Item = Result<Series>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let r = self.step().transpose();
        if matches!(r, Some(Err(_))) {
            self.failed = true;
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::HeadOptions;

    #[test]
    fn a_reader_that_outlives_the_wait_fails_instead_of_missing_data() {
        let head = Arc::new(Head::new(HeadOptions::default(), None));
        let from_zero = ReadLease::new(head.clone(), 0);
        let from_later = ReadLease::new(head.clone(), 50);
        assert_eq!(head.readers.wait_below(0, Duration::from_millis(10)), 0);
        let started = Instant::now();
        assert_eq!(head.readers.wait_below(10, Duration::from_millis(50)), 1);
        assert!(started.elapsed() >= Duration::from_millis(50));
        let err = from_zero.check().unwrap_err();
        assert!(
            matches!(err, Error::ReadOutlived { mint: 0, t: 10 }),
            "{err}"
        );
        from_later.check().unwrap();
        // Marked once, it holds no later truncation back either.
        assert_eq!(head.readers.wait_below(20, Duration::from_secs(30)), 0);
        // A dropped lease no longer holds truncation back.
        drop(from_zero);
        assert_eq!(head.readers.wait_below(10, Duration::from_secs(5)), 0);
        let waiter = {
            let head = head.clone();
            std::thread::spawn(move || head.readers.wait_below(100, Duration::from_secs(30)))
        };
        std::thread::sleep(Duration::from_millis(50));
        drop(from_later);
        assert_eq!(
            waiter.join().unwrap(),
            0,
            "woken by the drop, not the timeout"
        );
    }
}
