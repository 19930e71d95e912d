//! The head: the in-memory, appendable part of the database.
//!
//! Each series ([`MemSeries`]) holds its samples as a list of XOR chunks; a chunk is closed at
//! [`SAMPLES_PER_CHUNK`] samples or when the next sample falls into the next block range (so a
//! chunk never crosses a block boundary). A closed chunk keeps only its bytes and time range
//! (32 bytes plus the data), with no appender state and no spare capacity. Label
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
//! Writes go through an [`Appender`]: samples are validated as they are added, logged to the WAL
//! at commit (series records are logged as soon as a series is created, so a sample record
//! never precedes its series on replay), then applied.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::chunkenc::{XorChunk, XorIterator, ENCODING_XOR, SAMPLES_PER_CHUNK};
use crate::labels::IdentityHash;
use crate::matcher::{postings_for_matchers, Matcher, PostingsIndex};
use crate::querier::{names_of, values_of, ChunkData, Querier, Series};
use crate::wal::{Record, RefSample, Wal};
use crate::{Error, Label, Labels, Result};

/// One series in the head.
pub struct MemSeries {
    pub series_ref: u64,
    pub labels: Labels,
    /// `labels.identity_hash()`, kept to find the series from borrowed labels.
    identity: u128,
    samples: Mutex<SeriesSamples>,
    /// Appenders holding this series: truncation never drops a series someone is about to
    /// append to (it would otherwise lose the samples to an orphaned series).
    pending: AtomicU32,
}

/// A full chunk: just its bytes (no appender state, no spare capacity).
struct ClosedChunk {
    min_t: i64,
    max_t: i64,
    data: Box<[u8]>,
}

/// The chunk being appended to.
struct OpenChunk {
    min_t: i64,
    max_t: i64,
    chunk: XorChunk,
}

#[derive(Default)]
struct SeriesSamples {
    /// Time-ordered, non-overlapping, all older than `open`.
    closed: Vec<ClosedChunk>,
    open: Option<OpenChunk>,
    last_t: Option<i64>,
    last_v_bits: u64,
}

impl SeriesSamples {
    /// Checks the ordering rules against the newest sample. `Ok(false)` means an exact
    /// duplicate that is accepted but not stored.
    fn check(&self, t: i64, v: f64) -> Result<bool> {
        match self.last_t {
            Some(last) if t < last => Err(Error::OutOfOrder { t, newest: last }),
            Some(last) if t == last => {
                if v.to_bits() == self.last_v_bits {
                    Ok(false)
                } else {
                    Err(Error::DuplicateTimestamp { t })
                }
            }
            _ => Ok(true),
        }
    }

    /// Inserts a sample older than the newest one in place, re-encoding the one chunk it
    /// joins. `Ok(false)` is an exact duplicate. Chunks stay time-ordered, non-overlapping and
    /// within one `chunk_range` bucket each.
    fn insert_out_of_order(&mut self, t: i64, v: f64, chunk_range: i64) -> Result<bool> {
        let bucket = range_start(t, chunk_range);
        let n_closed = self.closed.len();
        // (index in closed + open, min, max) of every chunk.
        let spans: Vec<(i64, i64)> = self.iter().map(|(lo, hi, _)| (lo, hi)).collect();
        // The chunk holding t, else the one before it in the same bucket, else the next one in
        // the same bucket, else a new chunk.
        let pos = spans.partition_point(|&(_, hi)| hi < t);
        let target = if pos < spans.len() && spans[pos].0 <= t {
            Some(pos)
        } else if pos > 0 && range_start(spans[pos - 1].0, chunk_range) == bucket {
            Some(pos - 1)
        } else if pos < spans.len() && range_start(spans[pos].0, chunk_range) == bucket {
            Some(pos)
        } else {
            None
        };
        let Some(i) = target else {
            let mut c = XorChunk::new();
            c.append(t, v);
            self.closed.insert(
                pos.min(n_closed),
                ClosedChunk {
                    min_t: t,
                    max_t: t,
                    data: c.into_bytes().into_boxed_slice(),
                },
            );
            return Ok(true);
        };
        let bytes: &[u8] = if i < n_closed {
            &self.closed[i].data
        } else {
            self.open
                .as_ref()
                .expect("span of the open chunk")
                .chunk
                .bytes()
        };
        let mut samples: Vec<(i64, f64)> = XorIterator::new(bytes).collect();
        let at = samples.partition_point(|&(st, _)| st < t);
        if let Some(&(st, sv)) = samples.get(at) {
            if st == t {
                return if sv.to_bits() == v.to_bits() {
                    Ok(false)
                } else {
                    Err(Error::DuplicateTimestamp { t })
                };
            }
        }
        samples.insert(at, (t, v));
        let mut c = XorChunk::new();
        for &(st, sv) in &samples {
            c.append(st, sv);
        }
        let (min_t, max_t) = (samples[0].0, samples[samples.len() - 1].0);
        if i < n_closed {
            self.closed[i] = ClosedChunk {
                min_t,
                max_t,
                data: c.into_bytes().into_boxed_slice(),
            };
        } else {
            self.open = Some(OpenChunk {
                min_t,
                max_t,
                chunk: c,
            });
        }
        Ok(true)
    }

    /// Stores a sample: appended when newest, inserted when out of order within `window`.
    fn add(&mut self, t: i64, v: f64, chunk_range: i64, window: i64) -> Result<bool> {
        match self.check(t, v) {
            Ok(true) => {
                self.push(t, v, chunk_range);
                Ok(true)
            }
            Err(Error::OutOfOrder { newest, .. })
                if window > 0 && t >= newest.saturating_sub(window) =>
            {
                self.insert_out_of_order(t, v, chunk_range)
            }
            other => other,
        }
    }

    fn close_open_chunk(&mut self) {
        if let Some(c) = self.open.take() {
            self.closed.push(ClosedChunk {
                min_t: c.min_t,
                max_t: c.max_t,
                data: c.chunk.into_bytes().into_boxed_slice(),
            });
        }
    }

    fn push(&mut self, t: i64, v: f64, chunk_range: i64) {
        if let Some(c) = &self.open {
            if range_start(t, chunk_range) != range_start(c.min_t, chunk_range) {
                self.close_open_chunk();
            }
        }
        let c = self.open.get_or_insert_with(|| OpenChunk {
            min_t: t,
            max_t: t,
            chunk: XorChunk::new(),
        });
        c.chunk.append(t, v);
        c.max_t = t;
        if c.chunk.num_samples() >= SAMPLES_PER_CHUNK {
            self.close_open_chunk();
        }
        self.last_t = Some(t);
        self.last_v_bits = v.to_bits();
    }

    fn is_empty(&self) -> bool {
        self.closed.is_empty() && self.open.is_none()
    }

    fn first_min_t(&self) -> Option<i64> {
        self.closed
            .first()
            .map(|c| c.min_t)
            .or(self.open.as_ref().map(|c| c.min_t))
    }

    /// Every chunk as (min_t, max_t, bytes), oldest first.
    fn iter(&self) -> impl Iterator<Item = (i64, i64, &[u8])> {
        self.closed
            .iter()
            .map(|c| (c.min_t, c.max_t, &*c.data))
            .chain(
                self.open
                    .iter()
                    .map(|c| (c.min_t, c.max_t, c.chunk.bytes())),
            )
    }

    /// Drops chunks that end before `t`.
    fn truncate(&mut self, t: i64) {
        self.closed.retain(|c| c.max_t >= t);
        if self.open.as_ref().is_some_and(|c| c.max_t < t) {
            self.open = None;
        }
    }
}

/// Start of the aligned range of width `range` holding `t`.
pub fn range_start(t: i64, range: i64) -> i64 {
    t.div_euclid(range) * range
}

impl MemSeries {
    /// Copies out the chunks overlapping [mint, maxt].
    pub fn chunks(&self, mint: i64, maxt: i64) -> Vec<ChunkData> {
        let s = self.samples.lock().unwrap();
        s.iter()
            .filter(|&(lo, hi, _)| hi >= mint && lo <= maxt)
            .map(|(lo, hi, data)| ChunkData {
                min_time: lo,
                max_time: hi,
                encoding: ENCODING_XOR,
                data: data.into(),
            })
            .collect()
    }

    /// (min, max) timestamp of the samples held, if any.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        let s = self.samples.lock().unwrap();
        Some((s.first_min_t()?, s.iter().last()?.1))
    }

    /// Heap bytes held by this series' chunks (capacity, not length).
    fn chunk_bytes(&self) -> usize {
        let s = self.samples.lock().unwrap();
        s.closed.iter().map(|c| c.data.len()).sum::<usize>()
            + s.closed.capacity() * std::mem::size_of::<ClosedChunk>()
            + s.open.as_ref().map_or(0, |c| c.chunk.capacity())
    }
}

#[derive(Default)]
struct HeadIndex {
    /// Series by the upper 64 bits of their identity hash (one pointer per series: the hot
    /// lookup of every incoming sample touches this map and the series only)...
    by_hash: HashMap<u64, Arc<MemSeries>, IdentityHash>,
    /// ...and the rare series whose upper 64 bits are taken by another series.
    collisions: HashMap<u64, Vec<Arc<MemSeries>>, IdentityHash>,
    by_ref: BTreeMap<u64, Arc<MemSeries>>,
    postings: HashMap<Arc<str>, HashMap<Arc<str>, Vec<u64>>>,
    symbols: HashSet<Arc<str>>,
}

impl HeadIndex {
    /// The series with this identity hash (see [`crate::labels::identity_hash_pairs`]).
    fn get(&self, identity: u128) -> Option<&Arc<MemSeries>> {
        let key = (identity >> 64) as u64;
        match self.by_hash.get(&key) {
            Some(s) if s.identity == identity => Some(s),
            Some(_) => self
                .collisions
                .get(&key)
                .and_then(|v| v.iter().find(|s| s.identity == identity)),
            None => None,
        }
    }

    fn intern(&mut self, s: &Arc<str>) -> Arc<str> {
        if let Some(x) = self.symbols.get(s) {
            return x.clone();
        }
        self.symbols.insert(s.clone());
        s.clone()
    }

    fn insert(&mut self, series_ref: u64, labels: &Labels) -> Arc<MemSeries> {
        let interned: Vec<Label> = labels
            .iter()
            .map(|l| Label {
                name: self.intern(&l.name),
                value: self.intern(&l.value),
            })
            .collect();
        let labels = Labels::from_sorted(interned);
        let identity = labels.identity_hash();
        let series = Arc::new(MemSeries {
            series_ref,
            labels,
            identity,
            samples: Mutex::new(SeriesSamples::default()),
            pending: AtomicU32::new(0),
        });
        for l in &series.labels {
            let list = self
                .postings
                .entry(l.name.clone())
                .or_default()
                .entry(l.value.clone())
                .or_default();
            // Refs are handed out in increasing order except on WAL replay of old series.
            match list.last() {
                Some(&last) if last > series_ref => {
                    let i = list.partition_point(|&r| r < series_ref);
                    list.insert(i, series_ref);
                }
                _ => list.push(series_ref),
            }
        }
        let key = (identity >> 64) as u64;
        match self.by_hash.entry(key) {
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(series.clone());
            }
            std::collections::hash_map::Entry::Occupied(_) => {
                self.collisions.entry(key).or_default().push(series.clone())
            }
        }
        self.by_ref.insert(series_ref, series.clone());
        series
    }

    fn remove(&mut self, removed: &[Arc<MemSeries>]) {
        let mut touched: HashSet<(Arc<str>, Arc<str>)> = HashSet::new();
        for s in removed {
            self.by_ref.remove(&s.series_ref);
            let key = (s.identity >> 64) as u64;
            if self
                .by_hash
                .get(&key)
                .is_some_and(|x| x.series_ref == s.series_ref)
            {
                self.by_hash.remove(&key);
                // Promote a colliding series into the primary slot.
                if let Some(v) = self.collisions.get_mut(&key) {
                    if let Some(next) = v.pop() {
                        self.by_hash.insert(key, next);
                    }
                    if v.is_empty() {
                        self.collisions.remove(&key);
                    }
                }
            } else if let Some(v) = self.collisions.get_mut(&key) {
                v.retain(|x| x.series_ref != s.series_ref);
                if v.is_empty() {
                    self.collisions.remove(&key);
                }
            }
            for l in &s.labels {
                touched.insert((l.name.clone(), l.value.clone()));
            }
        }
        let gone: HashSet<u64> = removed.iter().map(|s| s.series_ref).collect();
        for (name, value) in touched {
            let Some(values) = self.postings.get_mut(&name) else {
                continue;
            };
            if let Some(list) = values.get_mut(&value) {
                list.retain(|r| !gone.contains(r));
                if list.is_empty() {
                    values.remove(&value);
                }
            }
            if values.is_empty() {
                self.postings.remove(&name);
            }
        }
        // Drop symbols nobody references any more (the index's copy is the last one).
        self.symbols.retain(|s| Arc::strong_count(s) > 1);
    }
}

#[derive(Clone, Debug)]
pub struct HeadOptions {
    /// Block duration in milliseconds: chunks never cross a multiple of it.
    pub chunk_range: i64,
    /// How far (ms) behind a series' newest sample an older sample is still accepted and
    /// inserted in place (0: out-of-order samples are refused).
    pub out_of_order_window: i64,
}

impl Default for HeadOptions {
    fn default() -> Self {
        HeadOptions {
            chunk_range: 2 * 3600 * 1000,
            out_of_order_window: 0,
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
}

/// Counters a commit reports.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CommitStats {
    pub samples: usize,
    /// Samples that passed validation at append but lost a race with a concurrent commit to
    /// the same series (out-of-order by the time they were applied).
    pub rejected_late: usize,
}

impl Head {
    pub fn new(opts: HeadOptions, wal: Option<Arc<Wal>>) -> Head {
        Head {
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

    pub fn appender(&self) -> Appender<'_> {
        Appender {
            head: self,
            held: Vec::new(),
            held_by_ref: HashMap::default(),
            pending: Vec::new(),
            out_of_order_window: self.opts.out_of_order_window,
            late: false,
        }
    }

    /// Like [`Head::get_or_create`] for borrowed, sorted, valid pairs: a known series is found
    /// without allocating anything.
    fn get_or_create_pairs(&self, pairs: &[(&str, &str)]) -> Result<Arc<MemSeries>> {
        let identity = crate::labels::identity_hash_pairs(pairs.iter().copied());
        if let Some(s) = self.index.read().unwrap().get(identity) {
            s.pending.fetch_add(1, Ordering::AcqRel);
            return Ok(s.clone());
        }
        let labels = Labels::from_sorted(pairs.iter().map(|&(n, v)| Label::new(n, v)).collect());
        self.get_or_create(&labels)
    }

    /// Looks a series up by labels, creating (and logging) it if new. The series is returned
    /// with its pending count raised (under the index lock, so truncation cannot drop it in
    /// between); the caller lowers it when done.
    fn get_or_create(&self, labels: &Labels) -> Result<Arc<MemSeries>> {
        let identity = labels.identity_hash();
        if let Some(s) = self.index.read().unwrap().get(identity) {
            s.pending.fetch_add(1, Ordering::AcqRel);
            return Ok(s.clone());
        }
        let mut index = self.index.write().unwrap();
        if let Some(s) = index.get(identity) {
            s.pending.fetch_add(1, Ordering::AcqRel);
            return Ok(s.clone());
        }
        let series_ref = self.next_ref.fetch_add(1, Ordering::Relaxed);
        // Logged under the index lock, before anyone can append to the series, so the series
        // record precedes every sample record of it. Made durable by the commit's fsync.
        if let Some(wal) = &self.wal {
            wal.log_unsynced(&[Record::Series {
                series_ref,
                labels: labels.clone(),
            }])?;
        }
        let series = index.insert(series_ref, labels);
        series.pending.fetch_add(1, Ordering::AcqRel);
        Ok(series)
    }

    pub fn series_by_ref(&self, series_ref: u64) -> Option<Arc<MemSeries>> {
        self.index.read().unwrap().by_ref.get(&series_ref).cloned()
    }

    /// Applies one WAL record during replay. Samples that break ordering are skipped.
    pub(crate) fn replay_record(&self, record: Record, unknown_refs: &mut u64) {
        match record {
            Record::Series { series_ref, labels } => {
                let mut index = self.index.write().unwrap();
                if index.by_ref.contains_key(&series_ref) {
                    return;
                }
                if index.get(labels.identity_hash()).is_some() {
                    // The same labels under a second ref cannot be produced by one head; if a
                    // damaged log holds it, the first ref wins and the second's samples count
                    // as unknown.
                    return;
                }
                index.insert(series_ref, &labels);
                self.next_ref.fetch_max(series_ref + 1, Ordering::Relaxed);
            }
            Record::Samples(samples) => {
                for s in samples {
                    if !self.replay_sample(s.series_ref, s.t, s.v) {
                        *unknown_refs += 1;
                    }
                }
            }
            Record::Chunk { series_ref, data } => match XorChunk::from_bytes(data) {
                Ok(chunk) => {
                    for (t, v) in chunk.iter() {
                        if !self.replay_sample(series_ref, t, v) {
                            *unknown_refs += 1;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(series_ref, error = %e, "skipping undecodable chunk in WAL checkpoint")
                }
            },
        }
    }

    fn replay_sample(&self, series_ref: u64, t: i64, v: f64) -> bool {
        let Some(series) = self.series_by_ref(series_ref) else {
            return false;
        };
        if t < self.min_valid_time.load(Ordering::Acquire) {
            return true;
        }
        let mut s = series.samples.lock().unwrap();
        // Everything in the WAL was acknowledged: out-of-order samples are put back wherever
        // the head still reaches (a write may have been accepted with a wider window).
        if let Ok(true) = s.add(t, v, self.opts.chunk_range, i64::MAX) {
            drop(s);
            self.update_time_bounds(t, t);
        }
        true
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

    /// Every series, sorted by labels.
    pub fn all_series_sorted(&self) -> Vec<Arc<MemSeries>> {
        let mut all: Vec<_> = self
            .index
            .read()
            .unwrap()
            .by_ref
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.labels.cmp(&b.labels));
        all
    }

    /// Series with these refs, sorted by labels.
    pub fn series_sorted(&self, refs: &[u64]) -> Vec<Arc<MemSeries>> {
        let index = self.index.read().unwrap();
        let mut out: Vec<_> = refs
            .iter()
            .filter_map(|r| index.by_ref.get(r).cloned())
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }

    /// WAL checkpoint content: every live series and its chunks from `t` on.
    pub fn checkpoint_records(&self, t: i64) -> Vec<Record> {
        let mut out = Vec::new();
        for s in self.index.read().unwrap().by_ref.values() {
            out.push(Record::Series {
                series_ref: s.series_ref,
                labels: s.labels.clone(),
            });
            for c in s.chunks(t, i64::MAX) {
                out.push(Record::Chunk {
                    series_ref: s.series_ref,
                    data: c.data.to_vec(),
                });
            }
        }
        out
    }

    /// Approximate heap bytes held by the head, for the memory-per-series measurement.
    pub fn memory_estimate(&self) -> HeadMemory {
        let index = self.index.read().unwrap();
        let chunk_bytes: usize = index.by_ref.values().map(|s| s.chunk_bytes()).sum();
        let symbol_bytes: usize = index.symbols.iter().map(|s| s.len() + 16).sum();
        HeadMemory {
            series: index.by_ref.len(),
            chunk_bytes,
            symbol_bytes,
        }
    }

    /// Label names and per-name value counts (for status pages).
    pub fn label_stats(&self) -> Vec<(String, usize, usize)> {
        let index = self.index.read().unwrap();
        let mut out: Vec<(String, usize, usize)> = index
            .postings
            .iter()
            .map(|(name, values)| {
                (
                    name.to_string(),
                    values.len(),
                    values.values().map(Vec::len).sum(),
                )
            })
            .collect();
        out.sort();
        out
    }
}

/// Head statistics in the shape of Prometheus' `/api/v1/status/tsdb`.
#[derive(Debug, Clone, Default)]
pub struct HeadStatus {
    pub num_series: usize,
    pub num_label_pairs: usize,
    pub chunk_count: usize,
    pub min_time: i64,
    pub max_time: i64,
    /// Top lists, largest first: (name, count).
    pub series_count_by_metric_name: Vec<(String, u64)>,
    pub label_value_count_by_label_name: Vec<(String, u64)>,
    /// Bytes of label values per label name (each value counted once per series holding it).
    pub memory_in_bytes_by_label_name: Vec<(String, u64)>,
    pub series_count_by_label_value_pair: Vec<(String, u64)>,
}

fn top(mut v: Vec<(String, u64)>, limit: usize) -> Vec<(String, u64)> {
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(limit);
    v
}

impl Head {
    /// Head statistics with top-`limit` lists.
    pub fn status(&self, limit: usize) -> HeadStatus {
        let index = self.index.read().unwrap();
        let mut by_metric = Vec::new();
        let mut values_per_name = Vec::new();
        let mut bytes_per_name = Vec::new();
        let mut by_pair = Vec::new();
        let mut pairs = 0;
        for (name, values) in &index.postings {
            pairs += values.len();
            values_per_name.push((name.to_string(), values.len() as u64));
            let mut bytes = 0u64;
            for (value, refs) in values {
                bytes += (value.len() * refs.len()) as u64;
                by_pair.push((format!("{name}={value}"), refs.len() as u64));
                if &**name == crate::labels::METRIC_NAME {
                    by_metric.push((value.to_string(), refs.len() as u64));
                }
            }
            bytes_per_name.push((name.to_string(), bytes));
        }
        let chunk_count = index
            .by_ref
            .values()
            .map(|s| {
                let samples = s.samples.lock().unwrap();
                samples.closed.len() + usize::from(samples.open.is_some())
            })
            .sum();
        HeadStatus {
            num_series: index.by_ref.len(),
            num_label_pairs: pairs,
            chunk_count,
            min_time: self.min_time(),
            max_time: self.max_time(),
            series_count_by_metric_name: top(by_metric, limit),
            label_value_count_by_label_name: top(values_per_name, limit),
            memory_in_bytes_by_label_name: top(bytes_per_name, limit),
            series_count_by_label_value_pair: top(by_pair, limit),
        }
    }

    /// Is there a series with exactly these (sorted) pairs?
    pub fn contains_pairs(&self, pairs: &[(&str, &str)]) -> bool {
        let identity = crate::labels::identity_hash_pairs(pairs.iter().copied());
        self.index.read().unwrap().get(identity).is_some()
    }

    /// Is there a series with exactly these labels?
    pub fn contains(&self, labels: &Labels) -> bool {
        self.index
            .read()
            .unwrap()
            .get(labels.identity_hash())
            .is_some()
    }
}

#[derive(Debug, Clone)]
pub struct HeadMemory {
    pub series: usize,
    pub chunk_bytes: usize,
    pub symbol_bytes: usize,
}

impl PostingsIndex for Head {
    fn all_postings(&self) -> Result<Vec<u64>> {
        Ok(self.index.read().unwrap().by_ref.keys().copied().collect())
    }

    fn postings(&self, name: &str, value: &str) -> Result<Vec<u64>> {
        Ok(self
            .index
            .read()
            .unwrap()
            .postings
            .get(name)
            .and_then(|values| values.get(value))
            .cloned()
            .unwrap_or_default())
    }

    fn label_values(&self, name: &str) -> Result<Vec<String>> {
        let index = self.index.read().unwrap();
        let mut values: Vec<String> = index
            .postings
            .get(name)
            .map(|values| values.keys().map(|v| v.to_string()).collect())
            .unwrap_or_default();
        values.sort();
        Ok(values)
    }
}

impl Head {
    pub fn label_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .index
            .read()
            .unwrap()
            .postings
            .keys()
            .map(|n| n.to_string())
            .collect();
        names.sort();
        names
    }
}

/// A querier over the head (or a shared handle to it).
pub struct HeadQuerier(pub Arc<Head>);

impl HeadQuerier {
    fn matching(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Arc<MemSeries>>> {
        let head = &self.0;
        if head.is_empty() || maxt < head.min_time() || mint > head.max_time() {
            return Ok(Vec::new());
        }
        let refs = postings_for_matchers(&**head, matchers)?;
        Ok(head.series_sorted(&refs))
    }
}

impl Querier for HeadQuerier {
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>> {
        Ok(self
            .matching(matchers, mint, maxt)?
            .into_iter()
            .filter_map(|s| {
                let chunks = s.chunks(mint, maxt);
                (!chunks.is_empty()).then(|| Series {
                    labels: s.labels.clone(),
                    chunks,
                })
            })
            .collect())
    }

    fn label_names(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<String>> {
        let head = &self.0;
        if head.is_empty() || maxt < head.min_time() || mint > head.max_time() {
            return Ok(Vec::new());
        }
        if matchers.is_empty() {
            return Ok(head.label_names());
        }
        Ok(names_of(&self.select(matchers, mint, maxt)?))
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>> {
        let head = &self.0;
        if head.is_empty() || maxt < head.min_time() || mint > head.max_time() {
            return Ok(Vec::new());
        }
        if matchers.is_empty() {
            return head.label_values(name);
        }
        Ok(values_of(&self.select(matchers, mint, maxt)?, name))
    }
}

/// A series an appender holds (see [`Appender::series`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeriesHandle(usize);

struct HeldSeries {
    series: Arc<MemSeries>,
    /// Newest staged (t, value bits), so a batch is validated as a whole.
    last_pending: Option<(i64, u64)>,
}

/// A batch of appends: samples are validated as they are staged, logged to the WAL and applied
/// at [`Appender::commit`]; dropping the appender discards them.
pub struct Appender<'a> {
    head: &'a Head,
    /// Series this appender raised the pending count of, once each.
    held: Vec<HeldSeries>,
    held_by_ref: HashMap<u64, usize, IdentityHash>,
    pending: Vec<(u32, i64, f64)>,
    /// [`HeadOptions::out_of_order_window`], unless overridden for this appender.
    out_of_order_window: i64,
    /// See [`Appender::accept_late`].
    late: bool,
}

impl Drop for Appender<'_> {
    fn drop(&mut self) {
        for h in &self.held {
            h.series.pending.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Appender<'_> {
    fn hold(&mut self, series: Arc<MemSeries>) -> SeriesHandle {
        match self.held_by_ref.entry(series.series_ref) {
            std::collections::hash_map::Entry::Occupied(e) => {
                // Already held: give back the count the lookup just took.
                series.pending.fetch_sub(1, Ordering::AcqRel);
                SeriesHandle(*e.get())
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(self.held.len());
                self.held.push(HeldSeries {
                    series,
                    last_pending: None,
                });
                SeriesHandle(self.held.len() - 1)
            }
        }
    }

    /// The series with these labels, created if new.
    pub fn series(&mut self, labels: &Labels) -> Result<SeriesHandle> {
        let s = self.head.get_or_create(labels)?;
        Ok(self.hold(s))
    }

    /// The series with these pairs (sorted by name, no duplicates, no empty values: the caller
    /// validated them), created if new. Known series cost no allocation.
    pub fn series_for_pairs(&mut self, pairs: &[(&str, &str)]) -> Result<SeriesHandle> {
        let s = self.head.get_or_create_pairs(pairs)?;
        Ok(self.hold(s))
    }

    pub fn series_ref(&self, h: SeriesHandle) -> u64 {
        self.held[h.0].series.series_ref
    }

    /// Accepts out-of-order samples up to `window` ms behind a series' newest for this
    /// appender's writes, whatever the head's default.
    pub fn set_out_of_order_window(&mut self, window: i64) {
        self.out_of_order_window = window;
    }

    /// For writes that are late on purpose (hinted handoff deliveries): samples are accepted
    /// anywhere after the last block cut, in or out of order, instead of only within half a
    /// block duration of the head's newest sample.
    pub fn accept_late(&mut self) {
        self.out_of_order_window = i64::MAX;
        self.late = true;
    }

    /// The oldest timestamp this appender may write now.
    fn min_valid_time(&self) -> i64 {
        if self.late {
            self.head.min_valid_time.load(Ordering::Acquire)
        } else {
            self.head.min_valid_time()
        }
    }

    /// Validates and stages one sample of a held series.
    pub fn append_to(&mut self, h: SeriesHandle, t: i64, v: f64) -> Result<()> {
        let min_valid = self.min_valid_time();
        if t < min_valid {
            return Err(Error::OutOfBounds { t, min_valid });
        }
        let window = self.out_of_order_window;
        let held = &mut self.held[h.0];
        let store = match held.last_pending {
            // Within the window, out-of-order samples are staged; commit inserts them.
            Some((last, _)) if t < last && window > 0 && t >= last.saturating_sub(window) => {
                self.pending.push((h.0 as u32, t, v));
                return Ok(());
            }
            Some((last, _)) if t < last => return Err(Error::OutOfOrder { t, newest: last }),
            Some((last, bits)) if t == last => {
                if bits != v.to_bits() {
                    return Err(Error::DuplicateTimestamp { t });
                }
                false
            }
            Some(_) => true,
            None => match held.series.samples.lock().unwrap().check(t, v) {
                Err(Error::OutOfOrder { newest, .. })
                    if window > 0 && t >= newest.saturating_sub(window) =>
                {
                    self.pending.push((h.0 as u32, t, v));
                    return Ok(());
                }
                other => other?,
            },
        };
        if store {
            held.last_pending = Some((t, v.to_bits()));
            self.pending.push((h.0 as u32, t, v));
        }
        Ok(())
    }

    /// Validates and stages one sample; returns the series ref.
    pub fn append(&mut self, labels: &Labels, t: i64, v: f64) -> Result<u64> {
        let h = self.series(labels)?;
        self.append_to(h, t, v)?;
        Ok(self.series_ref(h))
    }

    /// Number of samples staged so far.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Logs the staged samples to the WAL (durably, per the fsync policy), then applies them.
    pub fn commit(self) -> Result<CommitStats> {
        let mut stats = CommitStats::default();
        if self.pending.is_empty() {
            return Ok(stats);
        }
        let _commit = self.head.commit_lock.read().unwrap();
        if let Some(wal) = &self.head.wal {
            let samples = self
                .pending
                .iter()
                .map(|&(h, t, v)| RefSample {
                    series_ref: self.held[h as usize].series.series_ref,
                    t,
                    v,
                })
                .collect();
            wal.log(&[Record::Samples(samples)])?;
        }
        let (mut mint, mut maxt) = (i64::MAX, i64::MIN);
        let range = self.head.opts.chunk_range;
        let window = self.out_of_order_window;
        // A block cut may have moved the bound since these samples were staged (it holds the
        // commit lock while it does): what is now older goes to no block, so refuse it.
        let min_valid = self.min_valid_time();
        // Samples of one series are usually consecutive: lock each run once.
        let mut i = 0;
        while i < self.pending.len() {
            let h = self.pending[i].0;
            let mut s = self.held[h as usize].series.samples.lock().unwrap();
            while i < self.pending.len() && self.pending[i].0 == h {
                let (_, t, v) = self.pending[i];
                if t < min_valid {
                    stats.rejected_late += 1;
                    i += 1;
                    continue;
                }
                match s.add(t, v, range, window) {
                    Ok(true) => {
                        stats.samples += 1;
                        mint = mint.min(t);
                        maxt = maxt.max(t);
                    }
                    Ok(false) => {}
                    Err(_) => stats.rejected_late += 1,
                }
                i += 1;
            }
        }
        if stats.samples > 0 {
            self.head.update_time_bounds(mint, maxt);
        }
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels;

    #[test]
    fn out_of_order_samples_within_the_window_are_inserted_in_place() {
        let head = Head::new(
            HeadOptions {
                chunk_range: 1000,
                out_of_order_window: 500,
            },
            None,
        );
        let l = labels!("__name__" => "x");
        let mut app = head.appender();
        for t in [100, 200, 400, 1200, 1300] {
            app.append(&l, t, t as f64).unwrap();
        }
        // Staged in the same commit, before and after newer samples.
        app.append(&l, 1250, 1250.0).unwrap();
        assert!(matches!(
            app.append(&l, 700, 7.0),
            Err(Error::OutOfOrder { .. })
        ));
        app.commit().unwrap();
        let mut app = head.appender();
        app.append(&l, 900, 900.0).unwrap(); // after the 0..1000 chunk, same bucket
        app.append(&l, 300, 300.0).unwrap_err(); // older than newest - window
        app.append(&l, 1300, 1300.0).unwrap(); // exact duplicate
        app.commit().unwrap();
        let mut app = head.appender();
        app.append(&l, 1250, 1.0).unwrap(); // staged; conflicts at commit
        let stats = app.commit().unwrap();
        assert_eq!(stats.rejected_late, 1);

        let series = head.all_series_sorted();
        let chunks = series[0].chunks(i64::MIN, i64::MAX);
        let mut got = Vec::new();
        let mut prev_max = i64::MIN;
        for c in &chunks {
            assert!(c.min_time > prev_max, "chunks overlap: {chunks:?}");
            assert_eq!(range_start(c.min_time, 1000), range_start(c.max_time, 1000));
            prev_max = c.max_time;
            got.extend(XorIterator::new(&c.data).map(|(t, _)| t));
        }
        assert_eq!(got, vec![100, 200, 400, 900, 1200, 1250, 1300]);
    }

    #[test]
    fn an_appender_may_widen_the_out_of_order_window() {
        let head = Head::new(
            HeadOptions {
                chunk_range: 100_000,
                out_of_order_window: 10,
            },
            None,
        );
        let l = labels!("__name__" => "x");
        let mut app = head.appender();
        app.append(&l, 10_000, 1.0).unwrap();
        app.commit().unwrap();
        let mut app = head.appender();
        assert!(app.append(&l, 5_000, 2.0).is_err());
        app.set_out_of_order_window(i64::MAX);
        app.append(&l, 5_000, 2.0).unwrap();
        app.append(&l, 200_000, 3.0).unwrap();
        app.commit().unwrap();
        // Older than half a block behind the newest: only a late appender takes it.
        let mut app = head.appender();
        assert!(matches!(
            app.append(&l, 100, 4.0),
            Err(Error::OutOfBounds { .. })
        ));
        app.accept_late();
        app.append(&l, 100, 4.0).unwrap();
        app.commit().unwrap();
        let chunks = head.all_series_sorted()[0].chunks(i64::MIN, i64::MAX);
        let ts: Vec<i64> = chunks
            .iter()
            .flat_map(|c| {
                XorIterator::new(&c.data)
                    .map(|(t, _)| t)
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(ts, vec![100, 5_000, 10_000, 200_000]);
    }

    #[test]
    fn samples_staged_before_a_cut_moved_the_bound_are_refused_at_commit() {
        let head = Head::new(HeadOptions::default(), None);
        let l = labels!("__name__" => "x");
        let mut app = head.appender();
        app.append(&l, 1000, 1.0).unwrap();
        app.append(&l, 5000, 5.0).unwrap();
        // A block cut up to 2000 happens between staging and commit.
        head.set_min_valid_time(2000);
        let stats = app.commit().unwrap();
        assert_eq!((stats.samples, stats.rejected_late), (1, 1));
        let chunks = head.all_series_sorted()[0].chunks(i64::MIN, i64::MAX);
        let ts: Vec<i64> = chunks
            .iter()
            .flat_map(|c| {
                XorIterator::new(&c.data)
                    .map(|(t, _)| t)
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(ts, vec![5000]);
    }

    #[test]
    fn ordering_rules() {
        let head = Head::new(HeadOptions::default(), None);
        let l = labels!("__name__" => "up");
        let mut app = head.appender();
        app.append(&l, 1000, 1.0).unwrap();
        app.append(&l, 2000, 2.0).unwrap();
        assert!(matches!(
            app.append(&l, 1500, 1.0),
            Err(Error::OutOfOrder { .. })
        ));
        assert!(matches!(
            app.append(&l, 2000, 3.0),
            Err(Error::DuplicateTimestamp { .. })
        ));
        app.append(&l, 2000, 2.0).unwrap(); // exact duplicate: fine
        assert_eq!(app.commit().unwrap().samples, 2);

        let mut app = head.appender();
        assert!(matches!(
            app.append(&l, 1000, 1.0),
            Err(Error::OutOfOrder { .. })
        ));
        assert!(matches!(
            app.append(&l, 2000, 5.0),
            Err(Error::DuplicateTimestamp { .. })
        ));
        // Half a block range behind the newest sample is out of bounds.
        let far = 2000 + head.options().chunk_range;
        app.append(&l, far, 1.0).unwrap();
        app.commit().unwrap();
        let mut app = head.appender();
        let other = labels!("__name__" => "other");
        assert!(matches!(
            app.append(&other, 2000, 1.0),
            Err(Error::OutOfBounds { .. })
        ));
    }

    #[test]
    fn chunks_cut_at_120_samples_and_block_boundaries() {
        let head = Head::new(
            HeadOptions {
                chunk_range: 1_000_000,
                ..Default::default()
            },
            None,
        );
        let l = labels!("__name__" => "x");
        let mut app = head.appender();
        for i in 0..300 {
            app.append(&l, i * 1000, i as f64).unwrap();
        }
        app.commit().unwrap();
        let s = head.series_by_ref(1).unwrap();
        let chunks = s.chunks(i64::MIN, i64::MAX);
        let sizes: Vec<i64> = chunks.iter().map(|c| c.max_time - c.min_time).collect();
        // 0..999s is one block range: chunks of 120, 120, 60 samples (then 60 after the boundary? no)
        assert_eq!(chunks.len(), 3);
        assert_eq!(sizes, vec![119_000, 119_000, 59_000]);
        let mut app = head.appender();
        for i in 300..1100 {
            app.append(&l, i * 1000, i as f64).unwrap();
        }
        app.commit().unwrap();
        for c in s.chunks(i64::MIN, i64::MAX) {
            assert_eq!(
                range_start(c.min_time, 1_000_000),
                range_start(c.max_time, 1_000_000)
            );
        }
    }

    #[test]
    fn postings_and_truncate() {
        let head = Head::new(HeadOptions::default(), None);
        let mut app = head.appender();
        app.append(&labels!("__name__" => "a", "job" => "x"), 10, 1.0)
            .unwrap();
        app.append(&labels!("__name__" => "b", "job" => "x"), 5000, 1.0)
            .unwrap();
        app.commit().unwrap();
        assert_eq!(head.postings("job", "x").unwrap(), vec![1, 2]);
        assert_eq!(head.label_values("__name__").unwrap(), vec!["a", "b"]);
        assert_eq!(head.truncate(1000), 1);
        assert_eq!(head.postings("job", "x").unwrap(), vec![2]);
        assert_eq!(head.label_values("__name__").unwrap(), vec!["b"]);
        assert_eq!(head.min_time(), 5000);
        let mut app = head.appender();
        assert!(matches!(
            app.append(&labels!("__name__" => "a"), 999, 1.0),
            Err(Error::OutOfBounds { .. })
        ));
    }
}
