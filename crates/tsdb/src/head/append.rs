//! The write side: appenders stage and validate samples, commit logs them to the WAL and applies them.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::series::MemSeries;
use super::{CommitStats, Head};
use crate::chunkenc::Value;
use crate::exemplars::{Exemplar, ExemplarError};
use crate::labels::IdentityHash;
use crate::wal::{Record, RefExemplar, RefFloatHistogram, RefHistogram, RefSample, Wal};
use crate::{Error, Label, Labels, Result};
use model::histogram::{FloatHistogram, Histogram};

impl Head {
    pub fn appender(&self) -> Appender<'_> {
        Appender {
            head: self,
            held: Vec::new(),
            held_by_ref: HashMap::default(),
            pending: Vec::new(),
            pending_histograms: Vec::new(),
            pending_exemplars: Vec::new(),
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

    /// The existing series among `identities` ([`crate::labels::identity_hash_pairs`]), with
    /// their pending counts raised; None for those not in the head. One index lock for all,
    /// and the lookups run in one tight loop, whose cache misses (a large head's index does
    /// not fit in cache) the CPU overlaps instead of taking one after another.
    fn lookup_many(&self, identities: &[u128]) -> Vec<Option<Arc<MemSeries>>> {
        let index = self.index.read().unwrap();
        let found: Vec<Option<&Arc<MemSeries>>> =
            identities.iter().map(|&id| index.get(id)).collect();
        found
            .into_iter()
            .map(|s| {
                s.map(|s| {
                    s.pending.fetch_add(1, Ordering::AcqRel);
                    s.clone()
                })
            })
            .collect()
    }

    /// Looks a series up by labels, creating it if new. The series is returned
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
        // Not logged here: the commit that first writes samples to it logs its record (see
        // `MemSeries::logged`), so the index lock is never held across a WAL write.
        let series = index.insert(series_ref, labels, false);
        series.pending.fetch_add(1, Ordering::AcqRel);
        Ok(series)
    }
}

/// A series an appender holds (see [`Appender::series`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeriesHandle(usize);

struct HeldSeries {
    series: Arc<MemSeries>,
    /// Newest staged (t, value bits), so a batch is validated as a whole.
    /// (`None` bits: a histogram).
    last_pending: Option<(i64, Option<u64>)>,
    /// Index in `pending_exemplars` of this series' newest staged exemplar.
    last_exemplar: Option<usize>,
}

/// A batch of appends: samples are validated as they are staged, logged to the WAL and applied
/// at [`Appender::commit`]; dropping the appender discards them.
pub struct Appender<'a> {
    head: &'a Head,
    /// Series this appender raised the pending count of, once each.
    held: Vec<HeldSeries>,
    held_by_ref: HashMap<u64, usize, IdentityHash>,
    pending: Vec<(u32, i64, f64)>,
    /// Native histogram samples, apart so that float batches stay compact.
    pending_histograms: Vec<(u32, i64, Value)>,
    pending_exemplars: Vec<(u32, Exemplar)>,
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
                    last_exemplar: None,
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

    /// [`Appender::series_for_pairs`] for many series at once, for those already in the head:
    /// `identities` are their [`crate::labels::identity_hash_pairs`]; None where a series is
    /// new (create it with [`Appender::series_for_pairs`]).
    pub fn existing_series(&mut self, identities: &[u128]) -> Vec<Option<SeriesHandle>> {
        self.head
            .lookup_many(identities)
            .into_iter()
            .map(|s| s.map(|s| self.hold(s)))
            .collect()
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
                if bits != Some(v.to_bits()) {
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
            held.last_pending = Some((t, Some(v.to_bits())));
            self.pending.push((h.0 as u32, t, v));
        }
        Ok(())
    }

    /// Validates and stages one integer native histogram sample of a held series. The histogram
    /// must be valid ([`Histogram::validate`]); the caller checks, as it names the series.
    pub fn append_histogram_to(&mut self, h: SeriesHandle, t: i64, hist: Histogram) -> Result<()> {
        self.append_value_to(h, t, Value::Histogram(Box::new(hist)))
    }

    /// [`Appender::append_histogram_to`] for float histograms.
    pub fn append_float_histogram_to(
        &mut self,
        h: SeriesHandle,
        t: i64,
        hist: FloatHistogram,
    ) -> Result<()> {
        self.append_value_to(h, t, Value::FloatHistogram(Box::new(hist)))
    }

    fn append_value_to(&mut self, h: SeriesHandle, t: i64, v: Value) -> Result<()> {
        let min_valid = self.min_valid_time();
        if t < min_valid {
            return Err(Error::OutOfBounds { t, min_valid });
        }
        let window = self.out_of_order_window;
        let held = &mut self.held[h.0];
        match held.last_pending {
            Some((last, _)) if t < last && window > 0 && t >= last.saturating_sub(window) => {}
            Some((last, _)) if t < last => return Err(Error::OutOfOrder { t, newest: last }),
            // Two histograms for one timestamp in one batch: not a retry, a conflict.
            Some((last, _)) if t == last => return Err(Error::DuplicateTimestamp { t }),
            Some(_) => held.last_pending = Some((t, None)),
            None => match held.series.samples.lock().unwrap().check_value(t, &v) {
                Err(Error::OutOfOrder { newest, .. })
                    if window > 0 && t >= newest.saturating_sub(window) => {}
                Ok(false) => return Ok(()),
                Ok(true) => held.last_pending = Some((t, None)),
                Err(e) => return Err(e),
            },
        }
        self.pending_histograms.push((h.0 as u32, t, v));
        Ok(())
    }

    /// Validates and stages one exemplar of a held series. Refusals (storage disabled, labels
    /// too long, duplicate, out of order) are not write errors: the caller counts them.
    pub fn append_exemplar_to(
        &mut self,
        h: SeriesHandle,
        e: Exemplar,
    ) -> std::result::Result<(), ExemplarError> {
        let held = &self.held[h.0];
        // Against the batch's newest exemplar of the series, then the store's.
        if let Some((_, last)) = held.last_exemplar.map(|i| &self.pending_exemplars[i]) {
            if last == &e {
                return Err(ExemplarError::Duplicate);
            }
            if e.ts < last.ts {
                return Err(ExemplarError::OutOfOrder {
                    ts: e.ts,
                    newest: last.ts,
                });
            }
        } else {
            self.head.exemplars().validate(&held.series.labels, &e)?;
        }
        self.held[h.0].last_exemplar = Some(self.pending_exemplars.len());
        self.pending_exemplars.push((h.0 as u32, e));
        Ok(())
    }

    /// Validates and stages one sample; returns the series ref.
    pub fn append(&mut self, labels: &Labels, t: i64, v: f64) -> Result<u64> {
        let h = self.series(labels)?;
        self.append_to(h, t, v)?;
        Ok(self.series_ref(h))
    }

    /// Number of samples (floats and histograms) and exemplars staged so far.
    pub fn len(&self) -> usize {
        self.pending.len() + self.pending_histograms.len() + self.pending_exemplars.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Logs the staged samples to the WAL (durably, per the fsync policy), then applies them.
    pub fn commit(self) -> Result<CommitStats> {
        let (stats, durable) = self.commit_deferred()?;
        durable.wait()?;
        Ok(stats)
    }

    /// [`Appender::commit`] without waiting for the fsync: the samples are logged and applied
    /// (queries see them, as in Prometheus, whose WAL is not fsynced per commit), and the
    /// returned [`Durable`] says when the WAL holds them durably. Acknowledge the write only
    /// after it is ready; if it fails, the write failed.
    pub fn commit_deferred(mut self) -> Result<(CommitStats, Durable)> {
        let mut stats = CommitStats::default();
        if self.is_empty() {
            return Ok((stats, Durable::ready()));
        }
        let mut durable = Durable::ready();
        let _commit = self.head.commit_lock.read().unwrap();
        if let Some(wal) = &self.head.wal {
            // Series records of new series first, then the samples, in one write: replay meets
            // every series before its samples. Two commits racing on a new series may both log
            // it; replay ignores the second record.
            let unlogged: Vec<&MemSeries> = self
                .held
                .iter()
                .map(|h| &*h.series)
                .filter(|s| !s.logged.load(Ordering::Acquire))
                .collect();
            let mut records: Vec<Record> = unlogged
                .iter()
                .map(|s| Record::Series {
                    series_ref: s.series_ref,
                    labels: s.labels.clone(),
                })
                .collect();
            let samples = self
                .pending
                .iter()
                .map(|&(h, t, v)| RefSample {
                    series_ref: self.held[h as usize].series.series_ref,
                    t,
                    v,
                })
                .collect();
            if !self.pending.is_empty() {
                records.push(Record::Samples(samples));
            }
            let series_ref = |h: u32| self.held[h as usize].series.series_ref;
            let (mut ints, mut floats) = (Vec::new(), Vec::new());
            for (h, t, v) in &self.pending_histograms {
                match v {
                    Value::Histogram(x) => ints.push(RefHistogram {
                        series_ref: series_ref(*h),
                        t: *t,
                        h: (**x).clone(),
                    }),
                    Value::FloatHistogram(x) => floats.push(RefFloatHistogram {
                        series_ref: series_ref(*h),
                        t: *t,
                        h: (**x).clone(),
                    }),
                    Value::Float(_) => unreachable!("floats are staged in `pending`"),
                }
            }
            if !ints.is_empty() {
                records.push(Record::Histograms(ints));
            }
            if !floats.is_empty() {
                records.push(Record::FloatHistograms(floats));
            }
            if !self.pending_exemplars.is_empty() {
                records.push(Record::Exemplars(
                    self.pending_exemplars
                        .iter()
                        .map(|(h, e)| RefExemplar {
                            series_ref: series_ref(*h),
                            t: e.ts,
                            v: e.value,
                            labels: e.labels.clone(),
                        })
                        .collect(),
                ));
            }
            durable = Durable(wal.write_commit(&records)?.map(|seq| (wal.clone(), seq)));
            for s in unlogged {
                s.logged.store(true, Ordering::Release);
            }
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
        for (h, t, v) in std::mem::take(&mut self.pending_histograms) {
            if t < min_valid {
                stats.rejected_late_histograms += 1;
                continue;
            }
            let mut s = self.held[h as usize].series.samples.lock().unwrap();
            match s.add_value(t, v, range, window) {
                Ok(true) => {
                    stats.histograms += 1;
                    mint = mint.min(t);
                    maxt = maxt.max(t);
                }
                Ok(false) => {}
                Err(_) => stats.rejected_late_histograms += 1,
            }
        }
        for (h, e) in std::mem::take(&mut self.pending_exemplars) {
            let labels = &self.held[h as usize].series.labels;
            if self.head.exemplars().add(labels, e).is_ok() {
                stats.exemplars += 1;
            }
        }
        if stats.samples + stats.histograms > 0 {
            self.head.update_time_bounds(mint, maxt);
        }
        Ok((stats, durable))
    }
}

/// When a commit made by [`Appender::commit_deferred`] is durable: [`Durable::wait`] blocks
/// for it; [`Durable::poll_with`] parks the polling task instead while another commit's fsync
/// is under way.
#[must_use = "a commit is not durable before this is ready"]
pub struct Durable(Option<(Arc<Wal>, u64)>);

impl Durable {
    /// Nothing to wait for.
    pub fn ready() -> Durable {
        Durable(None)
    }

    /// Ready when the commit is durable; a task that finds another commit's fsync under way is
    /// woken when it ends, and the fsync this task runs itself goes through `run` (see
    /// [`Wal::poll_synced`]).
    pub fn poll_with(
        &self,
        cx: &mut Context<'_>,
        run: impl FnOnce(&mut dyn FnMut() -> Result<()>) -> Result<()>,
    ) -> Poll<Result<()>> {
        match &self.0 {
            Some((wal, seq)) => wal.poll_synced(*seq, cx, run),
            None => Poll::Ready(Ok(())),
        }
    }

    /// How long the WAL's last fsync took (zero without a WAL or fsync).
    pub fn last_fsync(&self) -> std::time::Duration {
        self.0
            .as_ref()
            .map_or(std::time::Duration::ZERO, |(wal, _)| wal.last_fsync())
    }

    /// Blocks until the commit is durable.
    pub fn wait(self) -> Result<()> {
        match self.0 {
            Some((wal, seq)) => wal.sync_through(seq),
            None => Ok(()),
        }
    }
}
