//! The write-ahead log that protects the head.
//!
//! Cairn's WAL is its own format (it need not be byte-compatible with Prometheus'; blocks are).
//!
//! ```text
//! wal/
//!   00000007                 segments, numbered; a new one is started on open and when one
//!   00000008                 would exceed the segment size (default 128 MiB)
//!   checkpoint.00000006/     the head's state as of a block cut: replaces segments <= 6
//!     00000000
//!
//! segment  := record*
//! record   := len:u32be  crc:u32be  payload[len]        crc = CRC-32C(payload), see [`crate::record_log`]
//! payload  := type:u8 body
//!   type 1 Series   ref:u64be  n:uvarint  (uvarint-len name, uvarint-len value){n}
//!   type 2 Samples  n:uvarint  (ref-delta:varint  t-delta:varint  value:u64be){n}
//!                   (deltas from the previous sample of the record; the first from 0)
//!   type 3 Chunk    ref:u64be  n:uvarint  XOR chunk bytes[n]   (checkpoints only)
//!   type 4 Batch    snappy(block format) of (len:uvarint  payload[len])*
//!   type 5 EncChunk ref:u64be  encoding:u8  n:uvarint  chunk bytes[n]   (checkpoints: histogram chunks)
//!   type 64 Exemplars  Prometheus' exemplar record body: base ref:u64be  base t:u64be, then
//!                   per exemplar ref-delta:varint  t-delta:varint  value:f64be  labels (as in
//!                   Series)
//!   type 7 Histograms, 8 FloatHistograms, 9 and 10 the same with custom buckets:
//!                   Prometheus' record bodies: base ref:u64be  base t:u64be, then per sample
//!                   ref-delta:varint  t-delta:varint  histogram (hint:u8  schema:varint
//!                   zero threshold:f64be  counts  sum:f64be  spans  buckets  [custom bounds])
//! ```
//! A record never spans two segments. With compression on (the default, as Prometheus'
//! `--storage.tsdb.wal-compression`), a commit is written as one Batch record holding its
//! records snappy-compressed together, when that is smaller: the label names and values that
//! a commit's series records repeat compress well together, one record at a time they do not.
//! A checkpoint is written in batches the same way. Replay reads both forms, so turning
//! compression on or off needs no migration.
//!
//! **Replay** reads the newest checkpoint and then every later segment. A record that is cut
//! short or fails its CRC ends the log: the segment is truncated there and later segments are
//! removed, with a warning. Only records after the damage are lost; the database always opens.
//! Zero bytes from a record boundary to the end of a segment are space reserved ahead of
//! commits ([`RESERVE_STEP`]), not damage: they are cut off quietly.
//!
//! **Durability** ([`FsyncPolicy`]): with `Always` (the default) every commit is fsynced before
//! it is acknowledged; concurrent commits share one fsync (group commit), so a write that got a
//! 2xx survives a crash. A caller waits either blocking ([`Wal::sync_through`]) or as an async
//! task ([`Wal::poll_synced`]: parked while another caller's fsync is under way). `Interval(d)`
//! fsyncs at most every `d` (a crash may lose the last `d` of acknowledged writes, like
//! Prometheus' default); `Never` leaves it to the OS.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::error::IoContext;
use crate::record_log;
use crate::{Error, Label, Labels, Result, Sample};
use model::histogram::{CounterResetHint, FloatHistogram, Histogram, Span, CUSTOM_BUCKETS_SCHEMA};

pub const DEFAULT_SEGMENT_SIZE: u64 = 128 * 1024 * 1024;
const TYPE_SERIES: u8 = 1;
const TYPE_SAMPLES: u8 = 2;
const TYPE_CHUNK: u8 = 3;
const TYPE_BATCH: u8 = 4;
const TYPE_ENC_CHUNK: u8 = 5;
/// Prometheus' histogram record types (`tsdb/record`), bodies included.
const TYPE_HISTOGRAMS: u8 = 7;
const TYPE_FLOAT_HISTOGRAMS: u8 = 8;
const TYPE_CUSTOM_HISTOGRAMS: u8 = 9;
const TYPE_CUSTOM_FLOAT_HISTOGRAMS: u8 = 10;
/// Prometheus' exemplar record body, under a type of Cairn's (4 is Cairn's batch).
const TYPE_EXEMPLARS: u8 = 64;
/// Commits encoding to less than this are framed record by record: snappy gains little there.
const MIN_BATCH_BYTES: usize = 256;
/// A checkpoint's records are compressed in batches of about this many bytes.
const CHECKPOINT_BATCH_BYTES: usize = 1 << 20;
/// Snappy's largest expansion (a 3-byte copy element writes at most 64 bytes): a block
/// declaring more than this many times its size is damaged, and is refused before allocating.
pub const SNAPPY_MAX_EXPANSION: usize = 22;
const CHECKPOINT_PREFIX: &str = "checkpoint.";
/// With fsync on, the current segment is extended ahead of its commits in steps of this many
/// zero bytes, written (not a hole, nor fallocate's unwritten extents, which a write converts
/// with a journal commit of its own). A commit then overwrites blocks the file already has,
/// and its fdatasync flushes the data without a journal commit for a new file size: on ext4
/// about a third less time per fsync. Replay reads an all-zero tail as the end of the log; a
/// segment is cut back to its commits when it is left and when the WAL is opened.
const RESERVE_STEP: u64 = 1 << 20;
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

/// When the WAL is fsynced; see the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    #[default]
    Always,
    Interval(Duration),
    Never,
}

/// A sample addressed by series ref.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RefSample {
    pub series_ref: u64,
    pub t: i64,
    pub v: f64,
}

/// An integer native histogram sample addressed by series ref.
#[derive(Clone, Debug, PartialEq)]
pub struct RefHistogram {
    pub series_ref: u64,
    pub t: i64,
    pub h: Histogram,
}

/// A float native histogram sample addressed by series ref.
#[derive(Clone, Debug, PartialEq)]
pub struct RefFloatHistogram {
    pub series_ref: u64,
    pub t: i64,
    pub h: FloatHistogram,
}

/// An exemplar addressed by its series' ref.
#[derive(Clone, Debug, PartialEq)]
pub struct RefExemplar {
    pub series_ref: u64,
    pub t: i64,
    pub v: f64,
    pub labels: Labels,
}

/// A decoded WAL record.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    Series {
        series_ref: u64,
        labels: Labels,
    },
    Samples(Vec<RefSample>),
    /// A head chunk (checkpoints only), in its chunk encoding (`crate::chunkenc::ENCODING_*`).
    Chunk {
        series_ref: u64,
        encoding: u8,
        data: Vec<u8>,
    },
    Histograms(Vec<RefHistogram>),
    FloatHistograms(Vec<RefFloatHistogram>),
    Exemplars(Vec<RefExemplar>),
}

impl Record {
    /// Appends the payload (type byte and body) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Record::Series { series_ref, labels } => encode_series(out, *series_ref, labels),
            Record::Samples(samples) => encode_samples(out, samples),
            Record::Chunk {
                series_ref,
                encoding,
                data,
            } => {
                if *encoding == crate::chunkenc::ENCODING_XOR {
                    out.push(TYPE_CHUNK);
                    out.extend_from_slice(&series_ref.to_be_bytes());
                } else {
                    out.push(TYPE_ENC_CHUNK);
                    out.extend_from_slice(&series_ref.to_be_bytes());
                    out.push(*encoding);
                }
                put_uvarint(out, data.len() as u64);
                out.extend_from_slice(data);
            }
            Record::Histograms(samples) => {
                // Prometheus gives records with custom buckets types of their own, so that
                // older readers skip them; here one record may mix both (the schema of each
                // sample says whether bounds follow).
                let custom = samples.iter().any(|s| s.h.schema == CUSTOM_BUCKETS_SCHEMA);
                let ty = if custom {
                    TYPE_CUSTOM_HISTOGRAMS
                } else {
                    TYPE_HISTOGRAMS
                };
                let refs = samples.iter().map(|s| (s.series_ref, s.t));
                encode_histogram_record(out, ty, refs, |out, i| put_histogram(out, &samples[i].h));
            }
            Record::FloatHistograms(samples) => {
                let custom = samples.iter().any(|s| s.h.schema == CUSTOM_BUCKETS_SCHEMA);
                let ty = if custom {
                    TYPE_CUSTOM_FLOAT_HISTOGRAMS
                } else {
                    TYPE_FLOAT_HISTOGRAMS
                };
                let refs = samples.iter().map(|s| (s.series_ref, s.t));
                encode_histogram_record(out, ty, refs, |out, i| {
                    put_float_histogram(out, &samples[i].h)
                });
            }
            Record::Exemplars(exemplars) => {
                let refs = exemplars.iter().map(|e| (e.series_ref, e.t));
                encode_histogram_record(out, TYPE_EXEMPLARS, refs, |out, i| {
                    out.extend_from_slice(&exemplars[i].v.to_bits().to_be_bytes());
                    put_labels(out, &exemplars[i].labels);
                });
            }
        }
    }

    pub fn decode(payload: &[u8]) -> std::result::Result<Record, String> {
        let mut d = Decoder {
            buf: payload,
            pos: 1,
        };
        match payload.first() {
            Some(&TYPE_SERIES) => {
                let series_ref = d.u64be()?;
                let n = d.uvarint()? as usize;
                // Capacity from what the rest of the record can hold, not from the count it claims.
                let mut labels = Vec::with_capacity(n.min(d.remaining() / 2));
                for _ in 0..n {
                    let name = d.string()?;
                    let value = d.string()?;
                    labels.push(Label::new(name, value));
                }
                Ok(Record::Series {
                    series_ref,
                    labels: Labels::from_sorted(labels),
                })
            }
            Some(&TYPE_SAMPLES) => {
                let n = d.uvarint()? as usize;
                let mut samples = Vec::with_capacity(n.min(d.remaining() / 10));
                let (mut r, mut t) = (0i64, 0i64);
                for _ in 0..n {
                    r = r.wrapping_add(d.varint()?);
                    t = t.wrapping_add(d.varint()?);
                    let v = f64::from_bits(d.u64be()?);
                    samples.push(RefSample {
                        series_ref: r as u64,
                        t,
                        v,
                    });
                }
                Ok(Record::Samples(samples))
            }
            Some(&TYPE_CHUNK) => {
                let series_ref = d.u64be()?;
                let n = d.uvarint()? as usize;
                let data = d.bytes(n)?.to_vec();
                Ok(Record::Chunk {
                    series_ref,
                    encoding: crate::chunkenc::ENCODING_XOR,
                    data,
                })
            }
            Some(&TYPE_ENC_CHUNK) => {
                let series_ref = d.u64be()?;
                let encoding = d.bytes(1)?[0];
                let n = d.uvarint()? as usize;
                let data = d.bytes(n)?.to_vec();
                Ok(Record::Chunk {
                    series_ref,
                    encoding,
                    data,
                })
            }
            Some(&(TYPE_HISTOGRAMS | TYPE_CUSTOM_HISTOGRAMS)) => {
                let mut out = Vec::new();
                decode_histogram_record(&mut d, |d, series_ref, t| {
                    out.push(RefHistogram {
                        series_ref,
                        t,
                        h: get_histogram(d)?,
                    });
                    Ok(())
                })?;
                Ok(Record::Histograms(out))
            }
            Some(&(TYPE_FLOAT_HISTOGRAMS | TYPE_CUSTOM_FLOAT_HISTOGRAMS)) => {
                let mut out = Vec::new();
                decode_histogram_record(&mut d, |d, series_ref, t| {
                    out.push(RefFloatHistogram {
                        series_ref,
                        t,
                        h: get_float_histogram(d)?,
                    });
                    Ok(())
                })?;
                Ok(Record::FloatHistograms(out))
            }
            Some(&TYPE_EXEMPLARS) => {
                let mut out = Vec::new();
                decode_histogram_record(&mut d, |d, series_ref, t| {
                    let v = d.f64be()?;
                    out.push(RefExemplar {
                        series_ref,
                        t,
                        v,
                        labels: get_labels(d)?,
                    });
                    Ok(())
                })?;
                Ok(Record::Exemplars(out))
            }
            Some(t) => Err(format!("unknown record type {t}")),
            None => Err("empty record".into()),
        }
    }
}

fn put_labels(out: &mut Vec<u8>, labels: &Labels) {
    put_uvarint(out, labels.len() as u64);
    for l in labels {
        put_uvarint(out, l.name.len() as u64);
        out.extend_from_slice(l.name.as_bytes());
        put_uvarint(out, l.value.len() as u64);
        out.extend_from_slice(l.value.as_bytes());
    }
}

fn get_labels(d: &mut Decoder<'_>) -> std::result::Result<Labels, String> {
    let n = d.uvarint()? as usize;
    let mut labels = Vec::with_capacity(n.min(d.remaining() / 2));
    for _ in 0..n {
        let name = d.string()?;
        let value = d.string()?;
        labels.push(Label::new(name, value));
    }
    Ok(Labels::from_pairs(
        labels.iter().map(|l| (l.name.as_ref(), l.value.as_ref())),
    ))
}

fn encode_series(out: &mut Vec<u8>, series_ref: u64, labels: &Labels) {
    out.push(TYPE_SERIES);
    out.extend_from_slice(&series_ref.to_be_bytes());
    put_uvarint(out, labels.len() as u64);
    for l in labels {
        put_uvarint(out, l.name.len() as u64);
        out.extend_from_slice(l.name.as_bytes());
        put_uvarint(out, l.value.len() as u64);
        out.extend_from_slice(l.value.as_bytes());
    }
}

fn encode_samples(out: &mut Vec<u8>, samples: &[RefSample]) {
    out.push(TYPE_SAMPLES);
    put_uvarint(out, samples.len() as u64);
    let (mut r, mut t) = (0i64, 0i64);
    for s in samples {
        put_varint(out, (s.series_ref as i64).wrapping_sub(r));
        put_varint(out, s.t.wrapping_sub(t));
        out.extend_from_slice(&s.v.to_bits().to_be_bytes());
        r = s.series_ref as i64;
        t = s.t;
    }
}

/// Writes a histogram record of type `ty`: base ref and timestamp (those of the first sample,
/// 0 when there is none), then per sample the deltas from them and the histogram
/// `put(out, i)` writes.
fn encode_histogram_record(
    out: &mut Vec<u8>,
    ty: u8,
    mut refs: impl Iterator<Item = (u64, i64)>,
    mut put: impl FnMut(&mut Vec<u8>, usize),
) {
    out.push(ty);
    let Some((br, bt)) = refs.next() else {
        out.extend_from_slice(&[0; 16]);
        return;
    };
    out.extend_from_slice(&br.to_be_bytes());
    out.extend_from_slice(&(bt as u64).to_be_bytes());
    for (i, (r, t)) in std::iter::once((br, bt)).chain(refs).enumerate() {
        put_varint(out, (r as i64).wrapping_sub(br as i64));
        put_varint(out, t.wrapping_sub(bt));
        put(out, i);
    }
}

fn decode_histogram_record(
    d: &mut Decoder<'_>,
    mut each: impl FnMut(&mut Decoder<'_>, u64, i64) -> std::result::Result<(), String>,
) -> std::result::Result<(), String> {
    let base_ref = d.u64be()? as i64;
    let base_t = d.u64be()? as i64;
    while d.remaining() > 0 {
        let r = base_ref.wrapping_add(d.varint()?) as u64;
        let t = base_t.wrapping_add(d.varint()?);
        each(d, r, t)?;
    }
    Ok(())
}

fn hint_byte(h: CounterResetHint) -> u8 {
    match h {
        CounterResetHint::Unknown => 0,
        CounterResetHint::Reset => 1,
        CounterResetHint::NotReset => 2,
        CounterResetHint::Gauge => 3,
    }
}

fn hint_from_byte(b: u8) -> std::result::Result<CounterResetHint, String> {
    Ok(match b {
        0 => CounterResetHint::Unknown,
        1 => CounterResetHint::Reset,
        2 => CounterResetHint::NotReset,
        3 => CounterResetHint::Gauge,
        _ => return Err(format!("unknown counter reset hint {b}")),
    })
}

fn put_spans(out: &mut Vec<u8>, spans: &[Span]) {
    put_uvarint(out, spans.len() as u64);
    for s in spans {
        put_varint(out, i64::from(s.offset));
        put_uvarint(out, u64::from(s.length));
    }
}

fn get_spans(d: &mut Decoder<'_>) -> std::result::Result<Vec<Span>, String> {
    let n = d.uvarint()? as usize;
    // Each span takes at least two bytes.
    let mut spans = Vec::with_capacity(n.min(d.remaining() / 2));
    for _ in 0..n {
        let offset = d.varint()?;
        let length = d.uvarint()?;
        spans.push(Span {
            offset: i32::try_from(offset).map_err(|_| "span offset out of range")?,
            length: u32::try_from(length).map_err(|_| "span length out of range")?,
        });
    }
    Ok(spans)
}

fn put_f64s(out: &mut Vec<u8>, v: &[f64]) {
    put_uvarint(out, v.len() as u64);
    for x in v {
        out.extend_from_slice(&x.to_bits().to_be_bytes());
    }
}

fn get_f64s(d: &mut Decoder<'_>) -> std::result::Result<Vec<f64>, String> {
    let n = d.uvarint()? as usize;
    let mut v = Vec::with_capacity(n.min(d.remaining() / 8));
    for _ in 0..n {
        v.push(d.f64be()?);
    }
    Ok(v)
}

fn put_histogram(out: &mut Vec<u8>, h: &Histogram) {
    out.push(hint_byte(h.counter_reset_hint));
    put_varint(out, i64::from(h.schema));
    out.extend_from_slice(&h.zero_threshold.to_bits().to_be_bytes());
    put_uvarint(out, h.zero_count);
    put_uvarint(out, h.count);
    out.extend_from_slice(&h.sum.to_bits().to_be_bytes());
    put_spans(out, &h.positive_spans);
    put_spans(out, &h.negative_spans);
    for buckets in [&h.positive_buckets, &h.negative_buckets] {
        put_uvarint(out, buckets.len() as u64);
        for &b in buckets {
            put_varint(out, b);
        }
    }
    if h.schema == CUSTOM_BUCKETS_SCHEMA {
        put_f64s(out, &h.custom_values);
    }
}

fn get_histogram(d: &mut Decoder<'_>) -> std::result::Result<Histogram, String> {
    let mut h = Histogram {
        counter_reset_hint: hint_from_byte(d.bytes(1)?[0])?,
        schema: i32::try_from(d.varint()?).map_err(|_| "schema out of range")?,
        zero_threshold: d.f64be()?,
        zero_count: d.uvarint()?,
        count: d.uvarint()?,
        sum: d.f64be()?,
        positive_spans: get_spans(d)?,
        negative_spans: get_spans(d)?,
        ..Default::default()
    };
    for buckets in [&mut h.positive_buckets, &mut h.negative_buckets] {
        let n = d.uvarint()? as usize;
        buckets.reserve(n.min(d.remaining()));
        for _ in 0..n {
            buckets.push(d.varint()?);
        }
    }
    if h.schema == CUSTOM_BUCKETS_SCHEMA {
        h.custom_values = get_f64s(d)?;
    }
    Ok(h)
}

fn put_float_histogram(out: &mut Vec<u8>, h: &FloatHistogram) {
    out.push(hint_byte(h.counter_reset_hint));
    put_varint(out, i64::from(h.schema));
    for v in [h.zero_threshold, h.zero_count, h.count, h.sum] {
        out.extend_from_slice(&v.to_bits().to_be_bytes());
    }
    put_spans(out, &h.positive_spans);
    put_spans(out, &h.negative_spans);
    put_f64s(out, &h.positive_buckets);
    put_f64s(out, &h.negative_buckets);
    if h.schema == CUSTOM_BUCKETS_SCHEMA {
        put_f64s(out, &h.custom_values);
    }
}

fn get_float_histogram(d: &mut Decoder<'_>) -> std::result::Result<FloatHistogram, String> {
    let mut h = FloatHistogram {
        counter_reset_hint: hint_from_byte(d.bytes(1)?[0])?,
        schema: i32::try_from(d.varint()?).map_err(|_| "schema out of range")?,
        zero_threshold: d.f64be()?,
        zero_count: d.f64be()?,
        count: d.f64be()?,
        sum: d.f64be()?,
        positive_spans: get_spans(d)?,
        negative_spans: get_spans(d)?,
        positive_buckets: get_f64s(d)?,
        negative_buckets: get_f64s(d)?,
        ..Default::default()
    };
    if h.schema == CUSTOM_BUCKETS_SCHEMA {
        h.custom_values = get_f64s(d)?;
    }
    Ok(h)
}

pub(crate) fn put_uvarint(out: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        out.push((x as u8) | 0x80);
        x >>= 7;
    }
    out.push(x as u8);
}

pub(crate) fn put_varint(out: &mut Vec<u8>, x: i64) {
    put_uvarint(out, ((x << 1) ^ (x >> 63)) as u64);
}

struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn bytes(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or("record ends early")?;
        let b = &self.buf[self.pos..end];
        self.pos = end;
        Ok(b)
    }
    fn u64be(&mut self) -> std::result::Result<u64, String> {
        Ok(u64::from_be_bytes(self.bytes(8)?.try_into().unwrap()))
    }
    fn f64be(&mut self) -> std::result::Result<f64, String> {
        Ok(f64::from_bits(self.u64be()?))
    }
    fn uvarint(&mut self) -> std::result::Result<u64, String> {
        let mut x = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or("record ends inside a varint")?;
            self.pos += 1;
            x |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(x);
            }
        }
        Err("varint overflows 64 bits".into())
    }
    fn varint(&mut self) -> std::result::Result<i64, String> {
        let u = self.uvarint()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }
    fn string(&mut self) -> std::result::Result<String, String> {
        let n = self.uvarint()? as usize;
        let b = self.bytes(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| "label is not UTF-8".to_string())
    }
}

#[derive(Clone, Debug)]
pub struct WalOptions {
    pub segment_size: u64,
    pub fsync: FsyncPolicy,
    /// Snappy-compress each commit's records together (see the module documentation).
    pub compression: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_size: DEFAULT_SEGMENT_SIZE,
            fsync: FsyncPolicy::Always,
            compression: true,
        }
    }
}

/// Collects encoded records and frames them, as one compressed batch or one by one.
struct Batcher {
    compress: bool,
    /// (len:uvarint payload)* of the records pushed since the last flush.
    raw: Vec<u8>,
    payload: Vec<u8>,
}

impl Batcher {
    fn new(compress: bool) -> Batcher {
        Batcher {
            compress,
            raw: Vec::with_capacity(256),
            payload: Vec::with_capacity(256),
        }
    }

    fn push(&mut self, r: &Record) {
        self.payload.clear();
        r.encode(&mut self.payload);
        put_uvarint(&mut self.raw, self.payload.len() as u64);
        self.raw.extend_from_slice(&self.payload);
    }

    /// Frames what was pushed into `out` and starts over.
    fn flush(&mut self, out: &mut Vec<u8>) {
        if self.raw.is_empty() {
            return;
        }
        if self.compress && self.raw.len() >= MIN_BATCH_BYTES {
            let mut enc = snap::raw::Encoder::new();
            let bound = snap::raw::max_compress_len(self.raw.len());
            self.payload.clear();
            self.payload.resize(1 + bound, 0);
            self.payload[0] = TYPE_BATCH;
            if let Ok(n) = enc.compress(&self.raw, &mut self.payload[1..]) {
                if n + 1 < self.raw.len() {
                    record_log::frame(&self.payload[..1 + n], out);
                    self.raw.clear();
                    return;
                }
            }
        }
        let mut d = Decoder {
            buf: &self.raw,
            pos: 0,
        };
        while d.remaining() > 0 {
            let payload = d
                .uvarint()
                .and_then(|n| d.bytes(n as usize))
                .expect("the batcher's own encoding");
            record_log::frame(payload, out);
        }
        self.raw.clear();
    }
}

/// Decodes one payload as read from a segment, a record or a batch of them, calling `f` for
/// each record.
fn decode_payload(payload: &[u8], f: &mut dyn FnMut(Record)) -> std::result::Result<(), String> {
    if payload.first() != Some(&TYPE_BATCH) {
        f(Record::decode(payload)?);
        return Ok(());
    }
    let body = &payload[1..];
    let declared = snap::raw::decompress_len(body).map_err(|e| format!("batch: {e}"))?;
    if declared > body.len().saturating_mul(SNAPPY_MAX_EXPANSION) {
        return Err(format!(
            "batch declares {declared} bytes, more than its {} bytes can hold",
            body.len()
        ));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| format!("batch: {e}"))?;
    let mut d = Decoder { buf: &raw, pos: 0 };
    while d.remaining() > 0 {
        let n = d.uvarint()? as usize;
        f(Record::decode(d.bytes(n)?)?);
    }
    Ok(())
}

struct Writer {
    index: u32,
    file: Arc<File>,
    /// Bytes of whole commits in the segment.
    size: u64,
    /// The file's length: past `size`, zero bytes written ahead of commits ([`RESERVE_STEP`]).
    reserved: u64,
    /// A failed write left bytes after `size` that could not be cut off yet: nothing may be
    /// appended until they are.
    torn: bool,
}

/// An open WAL, appended to by commits.
pub struct Wal {
    dir: PathBuf,
    opts: WalOptions,
    writer: Mutex<Writer>,
    /// Commits written so far (group commit bookkeeping, with `sync`).
    written: AtomicU64,
    sync: Mutex<SyncState>,
    /// How long the last fsync took, in microseconds.
    last_fsync_us: AtomicU64,
    /// Signalled when an fsync ends (blocking waiters; async ones are in [`SyncState::wakers`]).
    sync_done: Condvar,
}

/// Group commit: commits fsynced so far, and whether an fsync is under way.
struct SyncState {
    synced: u64,
    syncing: bool,
    /// When the last fsync ended (`Interval` policy).
    at: Instant,
    /// Tasks waiting for the fsync under way.
    wakers: Vec<Waker>,
}

/// What replay found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayStats {
    pub records: u64,
    pub segments: u32,
    /// Set when a damaged tail was cut off: (segment, offset) where the log now ends.
    pub truncated_at: Option<(u32, u64)>,
}

fn segment_name(i: u32) -> String {
    format!("{i:08}")
}

/// Segment indexes in `dir`, ascending.
fn list_segments(dir: &Path) -> Result<Vec<u32>> {
    let numbers =
        record_log::list_segments(dir, 8, "").ctx(|| format!("listing {}", dir.display()))?;
    Ok(numbers
        .into_iter()
        .filter_map(|n| u32::try_from(n).ok())
        .collect())
}

/// The newest complete checkpoint: (last segment it covers, its directory).
fn latest_checkpoint(dir: &Path) -> Result<Option<(u32, PathBuf)>> {
    let mut best: Option<(u32, PathBuf)> = None;
    for entry in fs::read_dir(dir).ctx(|| format!("listing {}", dir.display()))? {
        let entry = entry.ctx(|| format!("listing {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(num) = name.strip_prefix(CHECKPOINT_PREFIX) else {
            continue;
        };
        let Ok(n) = num.parse::<u32>() else {
            // `checkpoint.N.tmp` is a checkpoint that was never finished: discard it.
            let _ = fs::remove_dir_all(entry.path());
            continue;
        };
        if best.as_ref().is_none_or(|(b, _)| n > *b) {
            best = Some((n, entry.path()));
        }
    }
    Ok(best)
}

/// Reads records from one file, calling `f` for each. Returns the offset where valid data ends
/// and whether the file was damaged there. Zero bytes from there to the end of the file are
/// space reserved ahead of commits ([`RESERVE_STEP`]), not damage: no record starts with a
/// zero length.
fn read_segment(path: &Path, f: &mut dyn FnMut(Record)) -> Result<(u64, bool)> {
    let mut data = Vec::new();
    File::open(path)
        .and_then(|mut file| file.read_to_end(&mut data))
        .ctx(|| format!("reading WAL segment {}", path.display()))?;
    let mut undecodable = false;
    let end = record_log::read(&data, |payload, _| {
        // A batch is decoded whole before its records are handed on: a damaged one gives none.
        let mut records = Vec::new();
        match decode_payload(payload, &mut |r| records.push(r)) {
            Ok(()) => {
                records.into_iter().for_each(&mut *f);
                true
            }
            Err(_) => {
                undecodable = true;
                false
            }
        }
    });
    let reserved = data[end.offset..].iter().all(|&b| b == 0);
    Ok((end.offset as u64, (end.damaged || undecodable) && !reserved))
}

impl Wal {
    /// Replays the WAL in `dir` (creating it if needed), repairing a damaged tail, then opens
    /// it for appending in a fresh segment.
    pub fn open(
        dir: &Path,
        opts: WalOptions,
        mut on_record: impl FnMut(Record),
    ) -> Result<(Wal, ReplayStats)> {
        fs::create_dir_all(dir).ctx(|| format!("creating WAL directory {}", dir.display()))?;
        let mut stats = ReplayStats::default();
        let mut count = |r: Record| {
            stats.records += 1;
            on_record(r)
        };
        let checkpoint = latest_checkpoint(dir)?;
        let mut first_segment = 0;
        if let Some((n, cp_dir)) = &checkpoint {
            for seg in list_segments(cp_dir)? {
                let path = cp_dir.join(segment_name(seg));
                let (_, damaged) = read_segment(&path, &mut count)?;
                if damaged {
                    tracing::warn!(path = %path.display(), "WAL checkpoint is damaged; replaying what is readable");
                }
            }
            first_segment = n + 1;
        }
        let segments: Vec<u32> = list_segments(dir)?
            .into_iter()
            .filter(|&s| s >= first_segment)
            .collect();
        let mut last = checkpoint.as_ref().map_or(0, |(n, _)| *n);
        let mut damaged_at = None;
        for &seg in &segments {
            let path = dir.join(segment_name(seg));
            if damaged_at.is_some() {
                tracing::warn!(path = %path.display(), "removing WAL segment after damaged record");
                fs::remove_file(&path).ctx(|| format!("removing {}", path.display()))?;
                continue;
            }
            stats.segments += 1;
            last = last.max(seg);
            let (end, damaged) = read_segment(&path, &mut count)?;
            let len = fs::metadata(&path)
                .ctx(|| format!("reading WAL segment {}", path.display()))?
                .len();
            if damaged {
                tracing::warn!(path = %path.display(), offset = end, "WAL ends in a torn or corrupt record; truncating it there");
                damaged_at = Some((seg, end));
            }
            // Cut off a damaged tail, or quietly the zeros reserved ahead of commits.
            if end < len {
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .ctx(|| format!("opening {}", path.display()))?;
                f.set_len(end)
                    .and_then(|_| f.sync_all())
                    .ctx(|| format!("truncating {}", path.display()))?;
            }
        }
        stats.truncated_at = damaged_at;
        let next = if segments.is_empty() && checkpoint.is_none() {
            0
        } else {
            last + 1
        };
        let writer = Self::create_segment(dir, next)?;
        sync_dir(dir)?;
        Ok((
            Wal {
                dir: dir.to_path_buf(),
                opts,
                writer: Mutex::new(writer),
                written: AtomicU64::new(0),
                sync: Mutex::new(SyncState {
                    synced: 0,
                    syncing: false,
                    at: Instant::now(),
                    wakers: Vec::new(),
                }),
                last_fsync_us: AtomicU64::new(0),
                sync_done: Condvar::new(),
            },
            stats,
        ))
    }

    fn create_segment(dir: &Path, index: u32) -> Result<Writer> {
        let path = dir.join(segment_name(index));
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .ctx(|| format!("creating WAL segment {}", path.display()))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(Writer {
            index,
            file: Arc::new(file),
            size,
            reserved: size,
            torn: false,
        })
    }

    /// Makes the current segment durable as it is left: cut back to its commits, then synced.
    fn leave_segment(w: &Writer) -> Result<()> {
        if w.reserved > w.size {
            w.file.set_len(w.size).ctx(|| {
                format!(
                    "cutting WAL segment {} back to its commits",
                    segment_name(w.index)
                )
            })?;
        }
        w.file.sync_data().ctx(|| "syncing WAL segment".to_string())
    }

    /// Writes zeros after the segment's reserved bytes until at least `end` plus one step is
    /// reserved. On failure the segment is cut back to its commits.
    fn reserve(w: &mut Writer, end: u64) -> Result<()> {
        let to = end + RESERVE_STEP;
        let mut at = w.reserved;
        while at < to {
            let n = (to - at).min(ZEROS.len() as u64) as usize;
            if let Err(e) = w.file.write_all_at(&ZEROS[..n], at) {
                let cut = w.file.set_len(w.size);
                w.reserved = w.size;
                w.torn = cut.is_err();
                return Err(e)
                    .ctx(|| format!("reserving space in WAL segment {}", segment_name(w.index)));
            }
            at += n as u64;
        }
        w.reserved = to;
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends records as one commit and makes them durable according to the fsync policy.
    pub fn log(&self, records: &[Record]) -> Result<()> {
        match self.write_commit(records)? {
            Some(seq) => self.sync_through(seq),
            None => Ok(()),
        }
    }

    /// Appends records as one commit. Returns the commit's sequence number when the fsync
    /// policy wants it synced before it is acknowledged ([`Wal::sync_through`],
    /// [`Wal::poll_synced`]).
    pub fn write_commit(&self, records: &[Record]) -> Result<Option<u64>> {
        let Some(seq) = self.write(records)? else {
            return Ok(None);
        };
        Ok(match self.opts.fsync {
            FsyncPolicy::Always => Some(seq),
            FsyncPolicy::Interval(d) => {
                (self.sync.lock().unwrap().at.elapsed() >= d).then_some(seq)
            }
            FsyncPolicy::Never => None,
        })
    }

    fn write(&self, records: &[Record]) -> Result<Option<u64>> {
        if records.is_empty() {
            return Ok(None);
        }
        let mut buf = Vec::with_capacity(256);
        let mut batch = Batcher::new(self.opts.compression);
        for r in records {
            batch.push(r);
        }
        batch.flush(&mut buf);
        let seq = {
            let mut w = self.writer.lock().unwrap();
            if w.size > 0 && w.size + buf.len() as u64 > self.opts.segment_size {
                // The old segment must be durable before commits land in the new one.
                Self::leave_segment(&w)?;
                *w = Self::create_segment(&self.dir, w.index + 1)?;
                sync_dir(&self.dir)?;
            }
            if w.torn {
                let size = w.size;
                w.file.set_len(size).ctx(|| {
                    format!(
                        "cutting WAL segment {} back to its last whole commit ({size} bytes)",
                        segment_name(w.index)
                    )
                })?;
                w.torn = false;
                w.reserved = size;
            }
            let end = w.size + buf.len() as u64;
            if self.opts.fsync != FsyncPolicy::Never && end > w.reserved {
                Self::reserve(&mut w, end)?;
            }
            if let Err(e) = w.file.write_all_at(&buf, w.size) {
                // A write that failed part-way (a full disk) leaves a torn record. Later commits
                // appended after it would be lost at replay, which stops at the first damaged
                // record: cut the segment back to its last whole commit first.
                let cut = w.file.set_len(w.size);
                w.reserved = w.size;
                w.torn = cut.is_err();
                return Err(e).ctx(|| match cut {
                    Ok(()) => format!("writing WAL segment {}", segment_name(w.index)),
                    Err(c) => format!(
                        "writing WAL segment {} (and cutting it back to {} bytes: {c})",
                        segment_name(w.index),
                        w.size
                    ),
                });
            }
            w.size += buf.len() as u64;
            self.written.fetch_add(1, Ordering::SeqCst) + 1
        };
        Ok(Some(seq))
    }

    /// Returns once commit `seq` is durable. Group commit: one fsync covers every commit
    /// written before it started; a caller that finds one under way waits for it (and, if that
    /// did not cover `seq`, runs the next).
    pub fn sync_through(&self, seq: u64) -> Result<()> {
        let mut st = self.sync.lock().unwrap();
        loop {
            if st.synced >= seq {
                return Ok(());
            }
            if !st.syncing {
                break;
            }
            st = self.sync_done.wait(st).unwrap();
        }
        st.syncing = true;
        drop(st);
        // Read the target and the file together: every commit up to `target` is in this file
        // or in an earlier segment, which was synced when it was left.
        let (target, file) = {
            let w = self.writer.lock().unwrap();
            (self.written.load(Ordering::SeqCst), w.file.clone())
        };
        let started = Instant::now();
        let synced = file.sync_data().ctx(|| "syncing WAL".to_string());
        self.last_fsync_us
            .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        let mut st = self.sync.lock().unwrap();
        st.syncing = false;
        if synced.is_ok() {
            st.synced = st.synced.max(target);
            st.at = Instant::now();
        }
        // Waiters not covered (or all of them, after a failure) run the next fsync themselves.
        let wakers = std::mem::take(&mut st.wakers);
        drop(st);
        self.sync_done.notify_all();
        wakers.into_iter().for_each(Waker::wake);
        synced
    }

    /// [`Wal::sync_through`] for async callers: ready when commit `seq` is durable. A task that
    /// finds an fsync under way is woken when it ends instead of blocking its thread; one that
    /// finds none runs the fsync itself, in this call, through `run` (an async runtime's way of
    /// running blocking work, say; `|fsync| fsync()` runs it right here).
    pub fn poll_synced(
        &self,
        seq: u64,
        cx: &mut Context<'_>,
        run: impl FnOnce(&mut dyn FnMut() -> Result<()>) -> Result<()>,
    ) -> Poll<Result<()>> {
        let mut st = self.sync.lock().unwrap();
        if st.synced >= seq {
            return Poll::Ready(Ok(()));
        }
        if st.syncing {
            st.wakers.push(cx.waker().clone());
            return Poll::Pending;
        }
        drop(st);
        Poll::Ready(run(&mut || self.sync_through(seq)))
    }

    /// How long the last fsync took.
    pub fn last_fsync(&self) -> Duration {
        Duration::from_micros(self.last_fsync_us.load(Ordering::Relaxed))
    }

    /// Fsyncs everything written so far (periodic policy, shutdown).
    pub fn sync(&self) -> Result<()> {
        self.sync_through(self.written.load(Ordering::SeqCst))
    }

    /// Starts a new segment and returns the index of the last segment before it. Every commit
    /// that finished before this call is in a segment <= the returned index.
    pub fn cut_segment(&self) -> Result<u32> {
        let mut w = self.writer.lock().unwrap();
        Self::leave_segment(&w)?;
        let last = w.index;
        *w = Self::create_segment(&self.dir, last + 1)?;
        sync_dir(&self.dir)?;
        Ok(last)
    }

    /// Writes a checkpoint replacing segments `..= last_segment` with `records`, then deletes
    /// those segments and older checkpoints.
    pub fn checkpoint(
        &self,
        last_segment: u32,
        records: impl Iterator<Item = Record>,
    ) -> Result<()> {
        let name = format!("{CHECKPOINT_PREFIX}{last_segment:08}");
        let tmp = self.dir.join(format!("{name}.tmp"));
        let dst = self.dir.join(&name);
        if tmp.exists() {
            fs::remove_dir_all(&tmp).ctx(|| format!("removing {}", tmp.display()))?;
        }
        fs::create_dir_all(&tmp).ctx(|| format!("creating {}", tmp.display()))?;
        let path = tmp.join(segment_name(0));
        let mut file = std::io::BufWriter::new(
            File::create(&path).ctx(|| format!("creating {}", path.display()))?,
        );
        let mut batch = Batcher::new(self.opts.compression);
        let mut framed = Vec::new();
        let mut records = records.peekable();
        while let Some(r) = records.next() {
            batch.push(&r);
            if batch.raw.len() >= CHECKPOINT_BATCH_BYTES || records.peek().is_none() {
                framed.clear();
                batch.flush(&mut framed);
                file.write_all(&framed)
                    .ctx(|| format!("writing {}", path.display()))?;
            }
        }
        let file = file
            .into_inner()
            .map_err(|e| Error::io(format!("writing {}", path.display()), e.into_error()))?;
        file.sync_all()
            .ctx(|| format!("syncing {}", path.display()))?;
        sync_dir(&tmp)?;
        if dst.exists() {
            fs::remove_dir_all(&dst).ctx(|| format!("removing {}", dst.display()))?;
        }
        fs::rename(&tmp, &dst).ctx(|| format!("renaming {}", tmp.display()))?;
        sync_dir(&self.dir)?;
        // The checkpoint is in place: what it replaces can go.
        for seg in list_segments(&self.dir)? {
            if seg <= last_segment {
                let p = self.dir.join(segment_name(seg));
                fs::remove_file(&p).ctx(|| format!("removing {}", p.display()))?;
            }
        }
        for entry in fs::read_dir(&self.dir).ctx(|| format!("listing {}", self.dir.display()))? {
            let entry = entry.ctx(|| format!("listing {}", self.dir.display()))?;
            let n = entry.file_name().to_string_lossy().to_string();
            if let Some(num) = n
                .strip_prefix(CHECKPOINT_PREFIX)
                .and_then(|s| s.parse::<u32>().ok())
            {
                if num < last_segment {
                    fs::remove_dir_all(entry.path())
                        .ctx(|| format!("removing {}", entry.path().display()))?;
                }
            }
        }
        Ok(())
    }

    /// Total bytes of the WAL directory's segments (for metrics), not counting the zeros
    /// reserved ahead of commits in the current one.
    pub fn size(&self) -> u64 {
        let (current, size) = {
            let w = self.writer.lock().unwrap();
            (w.index, w.size)
        };
        list_segments(&self.dir)
            .unwrap_or_default()
            .iter()
            .filter(|&&s| s != current)
            .filter_map(|s| fs::metadata(self.dir.join(segment_name(*s))).ok())
            .map(|m| m.len())
            .sum::<u64>()
            + size
    }
}

impl Drop for Wal {
    /// Cuts the current segment back to its commits (best effort: replay also reads the zeros
    /// reserved ahead of commits as the end).
    fn drop(&mut self) {
        if let Ok(w) = self.writer.get_mut() {
            if w.reserved > w.size && w.file.set_len(w.size).is_ok() {
                w.reserved = w.size;
            }
        }
    }
}

/// Convenience for samples records.
pub fn samples_record(series_ref: u64, samples: &[Sample]) -> Record {
    Record::Samples(
        samples
            .iter()
            .map(|s| RefSample {
                series_ref,
                t: s.t,
                v: s.v,
            })
            .collect(),
    )
}

/// Fsyncs a directory so renames and new files in it survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx(|| format!("syncing directory {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels;
    use proptest::prelude::*;

    fn replay_all(dir: &Path) -> (Vec<Record>, ReplayStats) {
        let mut out = Vec::new();
        let (_, stats) = Wal::open(dir, WalOptions::default(), |r| out.push(r)).unwrap();
        (out, stats)
    }

    fn sample_records(n: usize) -> Vec<Record> {
        let mut records = vec![Record::Series {
            series_ref: 1,
            labels: labels!("__name__" => "up", "job" => "node"),
        }];
        for i in 0..n {
            records.push(Record::Samples(vec![
                RefSample {
                    series_ref: 1,
                    t: 1000 * i as i64,
                    v: i as f64,
                },
                RefSample {
                    series_ref: 7,
                    t: 1000 * i as i64 + 5,
                    v: f64::from_bits(crate::STALE_NAN_BITS),
                },
            ]));
        }
        records
    }

    fn bits_eq(a: &[Record], b: &[Record]) -> bool {
        // Compare through the encoding so NaN bit patterns count as equal.
        let enc = |rs: &[Record]| {
            let mut v = Vec::new();
            rs.iter().for_each(|r| r.encode(&mut v));
            v
        };
        enc(a) == enc(b)
    }

    #[test]
    fn writes_and_replays_across_segments_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let records = sample_records(50);
        {
            let opts = WalOptions {
                segment_size: 200,
                fsync: FsyncPolicy::Always,
                compression: true,
            };
            let (wal, stats) = Wal::open(dir.path(), opts, |_| {}).unwrap();
            assert_eq!(stats.records, 0);
            for r in &records {
                wal.log(std::slice::from_ref(r)).unwrap();
            }
        }
        assert!(list_segments(dir.path()).unwrap().len() > 3);
        let (got, stats) = replay_all(dir.path());
        assert!(bits_eq(&got, &records));
        assert_eq!(stats.truncated_at, None);
        // Reopening starts a new segment and replays the same records.
        let (got, _) = replay_all(dir.path());
        assert!(bits_eq(&got, &records));
    }

    /// A commit of many series, as a remote-write request of new series makes.
    fn series_commit(n: usize, offset: usize) -> Vec<Record> {
        (0..n)
            .map(|i| Record::Series {
                series_ref: (offset + i) as u64,
                labels: Labels::from_pairs([
                    ("__name__", "node_cpu_seconds_total"),
                    ("cluster", "eu-west-1"),
                    ("cpu", &format!("{}", i % 64)),
                    (
                        "instance",
                        &format!("node-{:04}.example.com:9100", (offset + i) / 64),
                    ),
                    ("job", "node"),
                    ("mode", ["user", "system", "idle", "iowait"][i % 4]),
                ]),
            })
            .collect()
    }

    #[test]
    fn compressed_commits_are_smaller_and_replay_alongside_plain_ones() {
        let sizes: Vec<u64> = [false, true]
            .iter()
            .map(|&compression| {
                let dir = tempfile::tempdir().unwrap();
                let opts = WalOptions {
                    compression,
                    fsync: FsyncPolicy::Never,
                    ..Default::default()
                };
                let (wal, _) = Wal::open(dir.path(), opts, |_| {}).unwrap();
                wal.log(&series_commit(2000, 0)).unwrap();
                wal.size()
            })
            .collect();
        assert!(sizes[1] * 3 < sizes[0], "{sizes:?}");

        // Plain, compressed, small (left plain) and plain again in one WAL: all replay.
        let dir = tempfile::tempdir().unwrap();
        let mut all = Vec::new();
        for (k, compression) in [false, true, true, false].into_iter().enumerate() {
            let opts = WalOptions {
                compression,
                ..Default::default()
            };
            let (wal, _) = Wal::open(dir.path(), opts, |_| {}).unwrap();
            let commit = if k == 2 {
                sample_records(1)[..1].to_vec()
            } else {
                let mut c = series_commit(100, 1000 * k);
                c.extend(sample_records(20));
                c
            };
            wal.log(&commit).unwrap();
            all.extend(commit);
        }
        let (got, stats) = replay_all(dir.path());
        assert!(bits_eq(&got, &all));
        assert_eq!(stats.truncated_at, None);
    }

    #[test]
    fn a_damaged_batch_ends_the_log_there() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path(), WalOptions::default(), |_| {}).unwrap();
        let first = series_commit(50, 0);
        wal.log(&first).unwrap();
        wal.log(&series_commit(50, 50)).unwrap();
        drop(wal);
        // Flip a byte inside the second batch's compressed body, and fix up its CRC so that
        // only the snappy decoding can notice.
        let seg = dir
            .path()
            .join(segment_name(list_segments(dir.path()).unwrap()[0]));
        let mut data = fs::read(&seg).unwrap();
        let first_len = u32::from_be_bytes(data[0..4].try_into().unwrap()) as usize;
        let second = record_log::HEADER + first_len;
        let len = u32::from_be_bytes(data[second..second + 4].try_into().unwrap()) as usize;
        let body = second + record_log::HEADER;
        data[body + 1] = 0xff;
        data[body + 2] = 0xff;
        let crc = crc32c::crc32c(&data[body..body + len]);
        data[second + 4..second + 8].copy_from_slice(&crc.to_be_bytes());
        fs::write(&seg, &data).unwrap();
        let (got, stats) = replay_all(dir.path());
        assert!(bits_eq(&got, &first));
        assert!(stats.truncated_at.is_some());
    }

    #[test]
    fn checkpoint_replaces_old_segments() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path(), WalOptions::default(), |_| {}).unwrap();
        wal.log(&sample_records(3)).unwrap();
        let last = wal.cut_segment().unwrap();
        let after = Record::Samples(vec![RefSample {
            series_ref: 1,
            t: 99_000,
            v: 1.5,
        }]);
        wal.log(std::slice::from_ref(&after)).unwrap();
        let kept = Record::Chunk {
            series_ref: 1,
            encoding: crate::chunkenc::ENCODING_XOR,
            data: vec![0, 1, 2, 3],
        };
        wal.checkpoint(last, std::iter::once(kept.clone())).unwrap();
        drop(wal);
        assert!(!dir.path().join(segment_name(last)).exists());
        let (got, _) = replay_all(dir.path());
        assert!(bits_eq(&got, &[kept, after]));
    }

    #[test]
    fn unfinished_checkpoint_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (wal, _) = Wal::open(dir.path(), WalOptions::default(), |_| {}).unwrap();
            wal.log(&sample_records(2)).unwrap();
        }
        fs::create_dir_all(dir.path().join("checkpoint.00000005.tmp")).unwrap();
        let (got, _) = replay_all(dir.path());
        assert!(bits_eq(&got, &sample_records(2)));
        assert!(!dir.path().join("checkpoint.00000005.tmp").exists());
    }

    /// Group commit for async callers: a task finding an fsync under way is parked (not
    /// blocked) and woken when it ends; a blocking caller waiting behind it then runs the fsync
    /// that covers the parked task's commit.
    #[test]
    fn async_waiters_park_behind_an_fsync_under_way() {
        struct Count(std::sync::atomic::AtomicUsize);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path(), WalOptions::default(), |_| {}).unwrap();
        let wal = Arc::new(wal);
        let seq = wal
            .write_commit(&sample_records(2))
            .unwrap()
            .expect("fsync always");
        let count = Arc::new(Count(Default::default()));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);

        wal.sync.lock().unwrap().syncing = true; // another caller's fsync is under way
        assert!(wal.poll_synced(seq, &mut cx, |fsync| fsync()).is_pending());
        let blocked = {
            let wal = wal.clone();
            std::thread::spawn(move || wal.sync_through(seq))
        };
        // The fsync under way ends without covering `seq` (it failed, say).
        {
            let mut st = wal.sync.lock().unwrap();
            st.syncing = false;
            std::mem::take(&mut st.wakers)
                .into_iter()
                .for_each(Waker::wake);
        }
        wal.sync_done.notify_all();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        blocked.join().unwrap().unwrap();
        assert!(matches!(
            wal.poll_synced(seq, &mut cx, |fsync| fsync()),
            Poll::Ready(Ok(()))
        ));
        assert_eq!(wal.sync.lock().unwrap().synced, seq);

        // Many concurrent committers, blocking and async alike: all durable, all replayed.
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let wal = wal.clone();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let seq = wal.write_commit(&sample_records(1)).unwrap().unwrap();
                        if i % 2 == 0 {
                            wal.sync_through(seq).unwrap();
                        } else {
                            let count = Arc::new(Count(Default::default()));
                            let waker = Waker::from(count);
                            let mut cx = Context::from_waker(&waker);
                            while wal.poll_synced(seq, &mut cx, |fsync| fsync()).is_pending() {
                                std::thread::yield_now();
                            }
                        }
                        assert!(wal.sync.lock().unwrap().synced >= seq);
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        drop(wal);
        let (got, stats) = replay_all(dir.path());
        assert_eq!(
            got.len(),
            sample_records(2).len() + 8 * 50 * sample_records(1).len()
        );
        assert_eq!(stats.truncated_at, None);
    }

    /// With fsync on, a segment carries zeros reserved ahead of its commits. A crash leaves
    /// them there: replay reads them as the end of the log (no damage), and cuts them off.
    #[test]
    fn zeros_reserved_ahead_of_commits_read_as_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let records = sample_records(6);
        let seg = dir.path().join(segment_name(0));
        let (wal, _) = Wal::open(dir.path(), WalOptions::default(), |_| {}).unwrap();
        wal.log(&records[..3]).unwrap();
        let size = wal.writer.lock().unwrap().size;
        assert!(fs::metadata(&seg).unwrap().len() >= size + RESERVE_STEP);
        assert_eq!(wal.size(), size, "reserved zeros are not counted");
        wal.log(&records[3..]).unwrap();
        let size = wal.writer.lock().unwrap().size;
        let _crashed = std::mem::ManuallyDrop::new(wal); // nothing cuts the reserved zeros off
        let (got, stats) = replay_all(dir.path());
        assert!(bits_eq(&got, &records));
        assert_eq!(stats.truncated_at, None);
        assert_eq!(fs::metadata(&seg).unwrap().len(), size);

        // A torn commit before the zeros is damage, as without them.
        let dir = tempfile::tempdir().unwrap();
        let seg = dir.path().join(segment_name(0));
        let (wal, _) = Wal::open(dir.path(), WalOptions::default(), |_| {}).unwrap();
        wal.log(&records[..3]).unwrap();
        let before = wal.writer.lock().unwrap().size;
        wal.log(&records[3..]).unwrap();
        let after = wal.writer.lock().unwrap().size;
        let _crashed = std::mem::ManuallyDrop::new(wal);
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        let keep = record_log::HEADER as u64 + 1; // the length, the CRC, a byte of payload
        f.write_all_at(&ZEROS[..(after - before - keep) as usize], before + keep)
            .unwrap();
        let (got, stats) = replay_all(dir.path());
        assert!(bits_eq(&got, &records[..3]));
        assert_eq!(stats.truncated_at, Some((0, before)));

        // Without fsync nothing is reserved; a clean close leaves no zeros either way.
        let dir = tempfile::tempdir().unwrap();
        let opts = WalOptions {
            fsync: FsyncPolicy::Never,
            ..Default::default()
        };
        let (wal, _) = Wal::open(dir.path(), opts, |_| {}).unwrap();
        wal.log(&records).unwrap();
        let size = wal.writer.lock().unwrap().size;
        assert_eq!(
            fs::metadata(dir.path().join(segment_name(0)))
                .unwrap()
                .len(),
            size
        );
    }

    /// Truncating the last segment at every byte offset loses exactly the records after the cut.
    #[test]
    fn truncation_at_every_offset_loses_only_the_tail() {
        let records = sample_records(12);
        let src = tempfile::tempdir().unwrap();
        let mut ends = Vec::new(); // byte offset after each record
        {
            let (wal, _) = Wal::open(src.path(), WalOptions::default(), |_| {}).unwrap();
            for r in &records {
                wal.log(std::slice::from_ref(r)).unwrap();
                ends.push(wal.writer.lock().unwrap().size);
            }
        }
        let full = fs::read(src.path().join(segment_name(0))).unwrap();
        for cut in 0..=full.len() {
            let dir = tempfile::tempdir().unwrap();
            fs::write(dir.path().join(segment_name(0)), &full[..cut]).unwrap();
            let (got, stats) = replay_all(dir.path());
            let complete = ends.iter().filter(|&&e| e as usize <= cut).count();
            assert!(bits_eq(&got, &records[..complete]), "cut at {cut}");
            // A torn tail of zero bytes (the start of a length) reads as reserved space.
            let last_end = ends.iter().rev().find(|&&e| e as usize <= cut).copied();
            let clean = full[last_end.unwrap_or(0) as usize..cut]
                .iter()
                .all(|&b| b == 0);
            assert_eq!(stats.truncated_at.is_some(), !clean, "cut at {cut}");
            // The repaired log replays the same way again, with no further damage.
            let (again, stats) = replay_all(dir.path());
            assert!(bits_eq(&again, &records[..complete]));
            assert_eq!(stats.truncated_at, None);
        }
    }

    #[test]
    fn corruption_mid_log_drops_later_segments() {
        let dir = tempfile::tempdir().unwrap();
        {
            let opts = WalOptions {
                segment_size: 100,
                fsync: FsyncPolicy::Never,
                ..Default::default()
            };
            let (wal, _) = Wal::open(dir.path(), opts, |_| {}).unwrap();
            for r in &sample_records(10) {
                wal.log(std::slice::from_ref(r)).unwrap();
            }
        }
        let segs = list_segments(dir.path()).unwrap();
        assert!(segs.len() >= 4);
        let victim = dir.path().join(segment_name(segs[2]));
        let mut data = fs::read(&victim).unwrap();
        let last = data.len() - 1;
        data[last] ^= 0xff;
        fs::write(&victim, data).unwrap();
        let (got, stats) = replay_all(dir.path());
        assert_eq!(stats.truncated_at.map(|t| t.0), Some(segs[2]));
        assert!(got.len() < 11);
        // Later segments are gone; the one after the damage is the fresh, empty write segment.
        assert_eq!(list_segments(dir.path()).unwrap(), segs[..4].to_vec());
        assert_eq!(
            fs::metadata(dir.path().join(segment_name(segs[3])))
                .unwrap()
                .len(),
            0
        );
    }

    proptest! {
        /// Hostile bytes: a damaged or foreign segment yields records or a stop, never a panic.
        #[test]
        fn garbage_segments_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Record::decode(&data);
            let end = record_log::read(&data, |payload, _| Record::decode(payload).is_ok());
            prop_assert!(end.offset <= data.len());
        }

        #[test]
        fn record_round_trip(
            refs in proptest::collection::vec((any::<u64>(), any::<i64>(), any::<u64>()), 0..50),
            names in proptest::collection::btree_map("[a-z_]{1,8}", "\\PC{1,8}", 0..6),
        ) {
            let samples: Vec<RefSample> = refs.iter().map(|&(r, t, v)| RefSample { series_ref: r, t, v: f64::from_bits(v) }).collect();
            let rec = Record::Samples(samples);
            let mut buf = Vec::new();
            rec.encode(&mut buf);
            let back = Record::decode(&buf).unwrap();
            prop_assert!(bits_eq(&[back], &[rec]));
            let rec = Record::Series { series_ref: 3, labels: Labels::from_pairs(names) };
            let mut buf = Vec::new();
            rec.encode(&mut buf);
            prop_assert_eq!(Record::decode(&buf).unwrap(), rec);
        }

        /// Histogram records keep every field, custom bounds included, and never panic on
        /// damage.
        #[test]
        fn histogram_records_round_trip(
            hs in proptest::collection::vec(
                (any::<u64>(), any::<i64>(), 0u8..4, -4i32..9, any::<bool>(),
                 proptest::collection::vec((-5i32..5, 0u32..4), 0..4),
                 proptest::collection::vec(any::<i64>(), 0..8), any::<u64>(), any::<f64>()),
                1..20),
            cut in any::<usize>(),
        ) {
            let hint = |b: u8| hint_from_byte(b).unwrap();
            let ints: Vec<RefHistogram> = hs.iter().map(|(r, t, hb, schema, custom, spans, buckets, count, sum)| RefHistogram {
                series_ref: *r,
                t: *t,
                h: Histogram {
                    counter_reset_hint: hint(*hb),
                    schema: if *custom { CUSTOM_BUCKETS_SCHEMA } else { *schema },
                    zero_threshold: *sum / 3.0,
                    zero_count: count / 2,
                    count: *count,
                    sum: *sum,
                    positive_spans: spans.iter().map(|&(offset, length)| Span { offset, length }).collect(),
                    negative_spans: spans.iter().rev().map(|&(offset, length)| Span { offset, length }).collect(),
                    positive_buckets: buckets.clone(),
                    negative_buckets: buckets.iter().rev().copied().collect(),
                    custom_values: if *custom { vec![0.5, *sum] } else { Vec::new() },
                },
            }).collect();
            let floats: Vec<RefFloatHistogram> = ints.iter().map(|r| RefFloatHistogram {
                series_ref: r.series_ref, t: r.t, h: r.h.to_float(),
            }).collect();
            for rec in [Record::Histograms(ints), Record::FloatHistograms(floats)] {
                let mut buf = Vec::new();
                rec.encode(&mut buf);
                let back = Record::decode(&buf).unwrap();
                // Compare through the encoding: NaN sums are equal bit for bit.
                let mut again = Vec::new();
                back.encode(&mut again);
                prop_assert_eq!(&again, &buf);
                let _ = Record::decode(&buf[..cut % buf.len()]);
            }
        }
    }
}
