//! Replaying WAL records into the head and the head's side of a WAL checkpoint.

use std::sync::atomic::Ordering;

use super::Head;
use crate::chunkenc::value::{self, Value};
use crate::exemplars::Exemplar;
use crate::wal::{Record, RefExemplar};

impl Head {
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
                index.insert(series_ref, &labels, true);
                self.next_ref.fetch_max(series_ref + 1, Ordering::Relaxed);
            }
            Record::Samples(samples) => {
                for s in samples {
                    if !self.replay_sample(s.series_ref, s.t, s.v) {
                        *unknown_refs += 1;
                    }
                }
            }
            Record::Chunk {
                series_ref,
                encoding,
                data,
            } => match value::decode(encoding, &data) {
                Ok(samples) => {
                    for (t, v) in samples {
                        if !self.replay_value(series_ref, t, v) {
                            *unknown_refs += 1;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(series_ref, error = %e, "skipping undecodable chunk in WAL checkpoint")
                }
            },
            Record::Histograms(samples) => {
                for s in samples {
                    if !self.replay_value(s.series_ref, s.t, Value::Histogram(Box::new(s.h))) {
                        *unknown_refs += 1;
                    }
                }
            }
            Record::Exemplars(exemplars) => {
                for e in exemplars {
                    let Some(series) = self.series_by_ref(e.series_ref) else {
                        *unknown_refs += 1;
                        continue;
                    };
                    // Duplicates and out-of-order ones were refused before they were logged;
                    // a store smaller than before keeps the newest.
                    let _ = self.exemplars().add(
                        &series.labels,
                        Exemplar {
                            labels: e.labels,
                            value: e.v,
                            ts: e.t,
                        },
                    );
                }
            }
            Record::FloatHistograms(samples) => {
                for s in samples {
                    let v = Value::FloatHistogram(Box::new(s.h));
                    if !self.replay_value(s.series_ref, s.t, v) {
                        *unknown_refs += 1;
                    }
                }
            }
        }
    }

    fn replay_value(&self, series_ref: u64, t: i64, v: Value) -> bool {
        let Some(series) = self.series_by_ref(series_ref) else {
            return false;
        };
        if t < self.min_valid_time.load(Ordering::Acquire) {
            return true;
        }
        let mut s = series.samples.lock().unwrap();
        if let Ok(true) = s.add_value(t, v, self.opts.chunk_range, i64::MAX) {
            drop(s);
            self.update_time_bounds(t, t);
        }
        true
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

    /// WAL checkpoint content: every live series and its chunks from `t` on, and the
    /// exemplars from `t` on of live series.
    pub fn checkpoint_records(&self, t: i64) -> Vec<Record> {
        let mut out = Vec::new();
        let mut exemplars = Vec::new();
        let index = self.index.read().unwrap();
        for s in self.exemplars().select(t, i64::MAX, &[]) {
            let Some(series) = index.get(s.series_labels.identity_hash()) else {
                continue;
            };
            exemplars.extend(s.exemplars.into_iter().map(|e| RefExemplar {
                series_ref: series.series_ref,
                t: e.ts,
                v: e.value,
                labels: e.labels,
            }));
        }
        drop(index);
        for s in self.index.read().unwrap().by_ref.values() {
            out.push(Record::Series {
                series_ref: s.series_ref,
                labels: s.labels.clone(),
            });
            for c in s.chunks(t, i64::MAX) {
                out.push(Record::Chunk {
                    series_ref: s.series_ref,
                    encoding: c.encoding,
                    data: c.data.to_vec(),
                });
            }
        }
        if !exemplars.is_empty() {
            out.push(Record::Exemplars(exemplars));
        }
        out
    }
}
