//! Native histogram chunks: Prometheus' encodings 2 (integer histograms) and 3 (float
//! histograms), byte for byte, so Prometheus reads Cairn's blocks and the other way round.
//!
//! ```text
//! u16 BE   sample count
//! u8       flags: top two bits are the counter-reset header (10 reset, 01 not reset,
//!          00 unknown, 11 gauge)
//! layout   zero threshold (1 byte: 0 = zero, 255 = 64 raw bits follow, else 2^(b-243-1)),
//!          varbit schema, positive spans, negative spans (each: varbit-uint count, then per
//!          span varbit-uint length and varbit-int offset), and for schema -53 the custom bounds
//!          (varbit-uint count, each bound varbit-uint `bound*1000+1` if that is exact and
//!          small, else a 0 and 64 raw bits)
//! sample 0 varbit t; integer: varbit-uint count, varbit-uint zero count, 64-bit sum, varbit
//!          bucket deltas; float: 64-bit count, zero count, sum and every bucket
//! later    varbit delta-of-delta of t; integer: varbit dod of count and zero count, XOR sum,
//!          varbit dod of every bucket delta; float: XOR of count, zero count, sum, every bucket
//! ```
//!
//! "varbit" is Prometheus' prefix-coded integer: `0` for zero, else `10`+3 bits, `110`+6,
//! `1110`+9, `11110`+12, `111110`+18, `1111110`+25, `11111110`+56, `11111111`+64. The XOR
//! fields use the value encoding of [`super::XorChunk`]. A stale marker carries only the sum
//! (counts unchanged, no buckets) and is always the last sample of its chunk.
//!
//! Every sample of a chunk has the chunk's layout. A histogram that brings buckets the chunk
//! lacks makes the chunk re-encode itself with the merged layout; buckets the chunk has and the
//! histogram lacks are added to the histogram as empty, when that keeps counters monotonic.
//! Anything else (schema or zero-threshold change, a counter going down) is a cut: the caller
//! starts a new chunk whose header says why.

use model::histogram::{
    bucket_indexes, counts_to_deltas, deltas_to_counts, is_valid_schema, span_buckets,
    spans_from_indexes, CounterResetHint, FloatHistogram, Histogram, Span, CUSTOM_BUCKETS_SCHEMA,
};

use super::bstream::{BitReader, BitWriter};
use crate::{is_stale_nan, Error, Result};

/// Count and flags bytes before the bit stream.
const HEADER_BYTES: usize = 3;
const NO_WINDOW: u8 = 0xff;
const MAX_LEADING: u8 = 31;

/// The counter-reset header in the top two bits of a histogram chunk's flags byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CounterResetHeader {
    #[default]
    Unknown,
    Reset,
    NotReset,
    Gauge,
}

impl CounterResetHeader {
    fn bits(self) -> u8 {
        match self {
            CounterResetHeader::Unknown => 0b0000_0000,
            CounterResetHeader::Reset => 0b1000_0000,
            CounterResetHeader::NotReset => 0b0100_0000,
            CounterResetHeader::Gauge => 0b1100_0000,
        }
    }

    fn from_flags(flags: u8) -> Self {
        match flags & 0b1100_0000 {
            0b1000_0000 => CounterResetHeader::Reset,
            0b0100_0000 => CounterResetHeader::NotReset,
            0b1100_0000 => CounterResetHeader::Gauge,
            _ => CounterResetHeader::Unknown,
        }
    }

    /// The hint a reader gives the `n`th sample (1-based) of a chunk with this header. The first
    /// sample's hint stays unknown unless the chunk is a gauge: the chunk before it may be gone.
    fn hint_for_sample(self, n: u16) -> CounterResetHint {
        match self {
            CounterResetHeader::Gauge => CounterResetHint::Gauge,
            _ if n > 1 => CounterResetHint::NotReset,
            _ => CounterResetHint::Unknown,
        }
    }
}

/// The header a new chunk gets when it starts with a sample carrying `hint`.
fn header_for_hint(hint: CounterResetHint) -> Option<CounterResetHeader> {
    match hint {
        CounterResetHint::Reset => Some(CounterResetHeader::Reset),
        CounterResetHint::Gauge => Some(CounterResetHeader::Gauge),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// varbit integers and the layout section

#[inline]
fn fits(x: i64, nbits: u32) -> bool {
    let half = 1i64 << (nbits - 1);
    -(half - 1) <= x && x <= half
}

/// (prefix, prefix width, payload width) of the varbit classes after the single-bit zero.
const VARBIT_CLASSES: [(u64, u32, u32); 7] = [
    (0b10, 2, 3),
    (0b110, 3, 6),
    (0b1110, 4, 9),
    (0b11110, 5, 12),
    (0b111110, 6, 18),
    (0b1111110, 7, 25),
    (0b11111110, 8, 56),
];

fn put_varbit_int(w: &mut BitWriter<'_>, v: i64) {
    if v == 0 {
        w.write_bit(false);
        return;
    }
    for (prefix, plen, width) in VARBIT_CLASSES {
        if fits(v, width) {
            w.write_bits(prefix, plen);
            w.write_bits(v as u64 & ((1u64 << width) - 1), width);
            return;
        }
    }
    w.write_bits(0xff, 8);
    w.write_bits(v as u64, 64);
}

fn put_varbit_uint(w: &mut BitWriter<'_>, v: u64) {
    if v == 0 {
        w.write_bit(false);
        return;
    }
    for (prefix, plen, width) in VARBIT_CLASSES {
        if v < (1u64 << width) {
            w.write_bits(prefix, plen);
            w.write_bits(v, width);
            return;
        }
    }
    w.write_bits(0xff, 8);
    w.write_bits(v, 64);
}

/// The payload width announced by a varbit prefix (`None` = data ended; `Some(64)` for the
/// widest class; `Some(0)` for zero).
fn read_varbit_width(r: &mut BitReader<'_>) -> Option<u32> {
    let mut ones = 0;
    while ones < 8 && r.read_bit()? {
        ones += 1;
    }
    Some(match ones {
        0 => 0,
        8 => 64,
        n => VARBIT_CLASSES[n - 1].2,
    })
}

fn read_varbit_int(r: &mut BitReader<'_>) -> Option<i64> {
    let width = read_varbit_width(r)?;
    Some(match width {
        0 => 0,
        64 => r.read_bits(64)? as i64,
        w => {
            let bits = r.read_bits(w)?;
            if bits > 1 << (w - 1) {
                bits as i64 - (1i64 << w)
            } else {
                bits as i64
            }
        }
    })
}

fn read_varbit_uint(r: &mut BitReader<'_>) -> Option<u64> {
    let width = read_varbit_width(r)?;
    Some(match width {
        0 => 0,
        w => r.read_bits(w)?,
    })
}

fn put_zero_threshold(w: &mut BitWriter<'_>, zt: f64) {
    if zt == 0.0 {
        w.write_byte(0);
        return;
    }
    // Powers of two between 2^-243 and 2^10 take one byte: the exponent of zt as 0.5 * 2^e.
    let bits = zt.to_bits();
    let mantissa = bits & ((1u64 << 52) - 1);
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let e = biased - 1022; // zt = 0.5 * 2^e for normal numbers with a zero mantissa
    if zt > 0.0 && mantissa == 0 && biased != 0 && (-242..=11).contains(&e) {
        w.write_byte((e + 243) as u8);
    } else {
        w.write_byte(255);
        w.write_bits(bits, 64);
    }
}

fn read_zero_threshold(r: &mut BitReader<'_>) -> Option<f64> {
    Some(match r.read_byte()? {
        0 => 0.0,
        255 => f64::from_bits(r.read_bits(64)?),
        b => 0.5 * 2f64.powi(i32::from(b) - 243),
    })
}

fn put_spans(w: &mut BitWriter<'_>, spans: &[Span]) {
    put_varbit_uint(w, spans.len() as u64);
    for s in spans {
        put_varbit_uint(w, u64::from(s.length));
        put_varbit_int(w, i64::from(s.offset));
    }
}

/// Reads spans; the number of buckets they describe is bounded by `max_buckets` so that a
/// damaged chunk cannot make the reader allocate more than the data could hold.
fn read_spans(r: &mut BitReader<'_>, max_buckets: usize) -> Option<Result<Vec<Span>, String>> {
    let n = read_varbit_uint(r)?;
    let mut spans = Vec::new();
    let mut total = 0u64;
    for _ in 0..n {
        let length = read_varbit_uint(r)?;
        let offset = read_varbit_int(r)?;
        total += length;
        if length > u64::from(u32::MAX) || total > max_buckets as u64 {
            return Some(Err(format!(
                "spans describe more buckets than the chunk could hold ({max_buckets} at most)"
            )));
        }
        spans.push(Span {
            offset: offset as i32,
            length: length as u32,
        });
    }
    Some(Ok(spans))
}

fn put_custom_bound(w: &mut BitWriter<'_>, b: f64) {
    let scaled = b * 1000.0;
    let whole = (scaled.round() / 1000.0) == b;
    if (0.0..=33_554_430.0).contains(&scaled) && whole {
        put_varbit_uint(w, scaled.round() as u64 + 1);
    } else {
        w.write_bit(false);
        w.write_bits(b.to_bits(), 64);
    }
}

fn read_custom_bound(r: &mut BitReader<'_>) -> Option<f64> {
    Some(match read_varbit_uint(r)? {
        0 => f64::from_bits(r.read_bits(64)?),
        v => (v - 1) as f64 / 1000.0,
    })
}

/// Schema, zero threshold, spans and custom bounds: what every sample of a chunk shares.
#[derive(Clone, Debug, PartialEq, Default)]
struct Layout {
    schema: i32,
    zero_threshold: f64,
    positive: Vec<Span>,
    negative: Vec<Span>,
    custom_values: Vec<f64>,
}

impl Layout {
    fn write(&self, w: &mut BitWriter<'_>) {
        put_zero_threshold(w, self.zero_threshold);
        put_varbit_int(w, i64::from(self.schema));
        put_spans(w, &self.positive);
        put_spans(w, &self.negative);
        if self.schema == CUSTOM_BUCKETS_SCHEMA {
            put_varbit_uint(w, self.custom_values.len() as u64);
            for &b in &self.custom_values {
                put_custom_bound(w, b);
            }
        }
    }

    fn read(r: &mut BitReader<'_>, data_bits: usize) -> Option<Result<Layout, String>> {
        let zero_threshold = read_zero_threshold(r)?;
        let schema = read_varbit_int(r)?;
        if !is_valid_schema(schema as i32) || i64::from(schema as i32) != schema {
            return Some(Err(format!("unknown histogram schema {schema}")));
        }
        // Every bucket costs at least one bit per sample.
        let positive = match read_spans(r, data_bits)? {
            Ok(s) => s,
            Err(e) => return Some(Err(e)),
        };
        let negative = match read_spans(r, data_bits)? {
            Ok(s) => s,
            Err(e) => return Some(Err(e)),
        };
        let mut custom_values = Vec::new();
        if schema as i32 == CUSTOM_BUCKETS_SCHEMA {
            let n = read_varbit_uint(r)?;
            if n > data_bits as u64 {
                return Some(Err(format!("{n} custom bounds cannot fit the chunk")));
            }
            for _ in 0..n {
                custom_values.push(read_custom_bound(r)?);
            }
        }
        Some(Ok(Layout {
            schema: schema as i32,
            zero_threshold,
            positive,
            negative,
            custom_values,
        }))
    }

    fn of_int(h: &Histogram) -> Layout {
        Layout {
            schema: h.schema,
            zero_threshold: h.zero_threshold,
            positive: h.positive_spans.clone(),
            negative: h.negative_spans.clone(),
            custom_values: h.custom_values.clone(),
        }
    }

    fn of_float(h: &FloatHistogram) -> Layout {
        Layout {
            schema: h.schema,
            zero_threshold: h.zero_threshold,
            positive: h.positive_spans.clone(),
            negative: h.negative_spans.clone(),
            custom_values: h.custom_values.clone(),
        }
    }

    /// Same schema, zero threshold and (for custom buckets) bounds: samples can share a chunk.
    fn compatible(&self, schema: i32, zero_threshold: f64, custom_values: &[f64]) -> bool {
        self.schema == schema
            && self.zero_threshold == zero_threshold
            && (schema != CUSTOM_BUCKETS_SCHEMA || self.custom_values == custom_values)
    }
}

// ---------------------------------------------------------------------------------------------
// XOR value fields (as in the XOR chunk)

#[derive(Clone, Copy, Debug)]
struct XorState {
    bits: u64,
    leading: u8,
    trailing: u8,
}

impl XorState {
    fn new(v: f64) -> Self {
        XorState {
            bits: v.to_bits(),
            leading: NO_WINDOW,
            trailing: 0,
        }
    }

    fn write(&mut self, w: &mut BitWriter<'_>, v: f64) {
        let v = v.to_bits();
        let xor = v ^ self.bits;
        self.bits = v;
        if xor == 0 {
            w.write_bit(false);
            return;
        }
        w.write_bit(true);
        let leading = (xor.leading_zeros() as u8).min(MAX_LEADING);
        let trailing = xor.trailing_zeros() as u8;
        if self.leading != NO_WINDOW && leading >= self.leading && trailing >= self.trailing {
            w.write_bit(false);
            let width = 64 - u32::from(self.leading) - u32::from(self.trailing);
            w.write_bits(xor >> self.trailing, width);
            return;
        }
        self.leading = leading;
        self.trailing = trailing;
        let significant = 64 - u32::from(leading) - u32::from(trailing);
        w.write_bit(true);
        w.write_bits(u64::from(leading), 5);
        w.write_bits(u64::from(significant) & 0x3f, 6);
        w.write_bits(xor >> trailing, significant);
    }

    fn read(&mut self, r: &mut BitReader<'_>) -> Option<Result<(), String>> {
        if !r.read_bit()? {
            return Some(Ok(()));
        }
        if r.read_bit()? {
            let leading = r.read_bits(5)? as u8;
            let significant = match r.read_bits(6)? as u8 {
                0 => 64,
                n => n,
            };
            if u32::from(leading) + u32::from(significant) > 64 {
                return Some(Err("value window wider than 64 bits".into()));
            }
            self.leading = leading;
            self.trailing = 64 - leading - significant;
        } else if self.leading == NO_WINDOW {
            self.leading = 0;
            self.trailing = 0;
        }
        let width = 64 - u32::from(self.leading) - u32::from(self.trailing);
        let bits = r.read_bits(width)?;
        self.bits ^= bits << self.trailing;
        Some(Ok(()))
    }
}

// ---------------------------------------------------------------------------------------------
// Appendability: shared by both flavours over absolute bucket counts.

/// What appending a histogram to a chunk takes.
#[derive(Debug, PartialEq)]
enum Plan {
    /// Append as is (possibly after adding empty buckets to the histogram: `merged` layout).
    Append {
        positive: Option<Vec<i32>>,
        negative: Option<Vec<i32>>,
    },
    /// Start a new chunk with this header.
    Cut(CounterResetHeader),
}

/// Merges one side's bucket indexes. For counters, a bucket the chunk has and the histogram
/// lacks must be empty in the chunk's last sample, and no common bucket may go down; otherwise
/// it is a counter reset (`None`). Returns the merged index list when it differs from `chunk`'s
/// or `new`'s.
fn merge_side<T: Copy + PartialOrd + Default>(
    chunk: &[i32],
    last: &[T],
    new: &[i32],
    counts: &[T],
    gauge: bool,
) -> Option<Option<Vec<i32>>> {
    let zero = T::default();
    let (mut i, mut j) = (0, 0);
    let mut merged = Vec::with_capacity(chunk.len().max(new.len()));
    while i < chunk.len() || j < new.len() {
        let a = chunk.get(i).copied();
        let b = new.get(j).copied();
        match (a, b) {
            (Some(x), Some(y)) if x == y => {
                if !gauge && counts[j] < last[i] {
                    return None;
                }
                merged.push(x);
                i += 1;
                j += 1;
            }
            (Some(x), y) if y.is_none_or(|y| x < y) => {
                if !gauge && last[i] != zero {
                    return None;
                }
                merged.push(x);
                i += 1;
            }
            (_, Some(y)) => {
                merged.push(y);
                j += 1;
            }
            _ => unreachable!("loop runs while one side has buckets"),
        }
    }
    if merged == chunk && merged == new {
        Some(None)
    } else {
        Some(Some(merged))
    }
}

/// Inputs of the appendability check, in absolute counts.
struct Candidate<'a, T> {
    hint: CounterResetHint,
    stale: bool,
    schema: i32,
    zero_threshold: f64,
    custom_values: &'a [f64],
    count: T,
    zero_count: T,
    positive: Vec<i32>,
    negative: Vec<i32>,
    positive_counts: Vec<T>,
    negative_counts: Vec<T>,
}

fn int_candidate(h: &Histogram) -> Candidate<'_, i64> {
    Candidate {
        hint: h.counter_reset_hint,
        stale: h.is_stale(),
        schema: h.schema,
        zero_threshold: h.zero_threshold,
        custom_values: &h.custom_values,
        count: h.count as i64,
        zero_count: h.zero_count as i64,
        positive: bucket_indexes(&h.positive_spans).collect(),
        negative: bucket_indexes(&h.negative_spans).collect(),
        positive_counts: deltas_to_counts(&h.positive_buckets).collect(),
        negative_counts: deltas_to_counts(&h.negative_buckets).collect(),
    }
}

fn float_candidate(h: &FloatHistogram) -> Candidate<'_, f64> {
    Candidate {
        hint: h.counter_reset_hint,
        stale: h.is_stale(),
        schema: h.schema,
        zero_threshold: h.zero_threshold,
        custom_values: &h.custom_values,
        count: h.count,
        zero_count: h.zero_count,
        positive: bucket_indexes(&h.positive_spans).collect(),
        negative: bucket_indexes(&h.negative_spans).collect(),
        positive_counts: h.positive_buckets.clone(),
        negative_counts: h.negative_buckets.clone(),
    }
}

/// The chunk's side of the check: its header, layout and last sample.
struct Current<'a, T> {
    header: CounterResetHeader,
    layout: &'a Layout,
    last_stale: bool,
    count: T,
    zero_count: T,
    positive_counts: Vec<T>,
    negative_counts: Vec<T>,
}

fn plan<T: Copy + PartialOrd + Default>(cur: &Current<'_, T>, h: &Candidate<'_, T>) -> Plan {
    let gauge = h.hint == CounterResetHint::Gauge;
    if gauge != (cur.header == CounterResetHeader::Gauge) {
        return Plan::Cut(if gauge {
            CounterResetHeader::Gauge
        } else {
            CounterResetHeader::Unknown
        });
    }
    let unknown = if gauge {
        CounterResetHeader::Gauge
    } else {
        CounterResetHeader::Unknown
    };
    let reset = if gauge {
        CounterResetHeader::Gauge
    } else {
        CounterResetHeader::Reset
    };
    if !gauge && h.hint == CounterResetHint::Reset {
        return Plan::Cut(CounterResetHeader::Reset);
    }
    if h.stale {
        return Plan::Append {
            positive: None,
            negative: None,
        };
    }
    if cur.last_stale {
        return Plan::Cut(unknown);
    }
    if !gauge && h.count < cur.count {
        return Plan::Cut(reset);
    }
    if cur.layout.schema != h.schema || cur.layout.zero_threshold != h.zero_threshold {
        return Plan::Cut(unknown);
    }
    if !cur
        .layout
        .compatible(h.schema, h.zero_threshold, h.custom_values)
    {
        return Plan::Cut(reset);
    }
    if !gauge && h.zero_count < cur.zero_count {
        return Plan::Cut(reset);
    }
    let chunk_pos: Vec<i32> = bucket_indexes(&cur.layout.positive).collect();
    let chunk_neg: Vec<i32> = bucket_indexes(&cur.layout.negative).collect();
    let Some(positive) = merge_side(
        &chunk_pos,
        &cur.positive_counts,
        &h.positive,
        &h.positive_counts,
        gauge,
    ) else {
        return Plan::Cut(reset);
    };
    let Some(negative) = merge_side(
        &chunk_neg,
        &cur.negative_counts,
        &h.negative,
        &h.negative_counts,
        gauge,
    ) else {
        return Plan::Cut(reset);
    };
    Plan::Append { positive, negative }
}

/// `counts` laid out on `from` indexes, re-laid on the `to` superset (absent buckets are zero).
fn expand<T: Copy + Default>(from: &[i32], counts: &[T], to: &[i32]) -> Vec<T> {
    let mut out = Vec::with_capacity(to.len());
    let mut i = 0;
    for &idx in to {
        if from.get(i) == Some(&idx) {
            out.push(counts[i]);
            i += 1;
        } else {
            out.push(T::default());
        }
    }
    out
}

/// Why appending failed: the caller must cut a new chunk with this header and append there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cut(pub CounterResetHeader);

// ---------------------------------------------------------------------------------------------
// The chunks: one frame and appender, two flavours.

/// What differs between the integer (encoding 2) and the float (encoding 3) histogram chunk:
/// the sample type, the appender/decoder state and how one sample is written and read.
///
/// Sealed: [`Integer`] and [`Float`] are the only flavours, and the methods are the chunk's
/// internals (hence the private types in their signatures).
#[allow(private_interfaces)]
pub trait Flavour: sealed::Sealed + 'static {
    type H: Clone + std::fmt::Debug;
    /// Absolute bucket counts, as the appendability rules compare them.
    type T: Copy + PartialOrd + Default;
    #[doc(hidden)]
    type State: Clone + std::fmt::Debug + Default;
    /// Names the chunk in errors.
    const WHAT: &'static str;

    #[doc(hidden)]
    fn candidate(h: &Self::H) -> Candidate<'_, Self::T>;
    #[doc(hidden)]
    fn current(s: &Self::State, header: CounterResetHeader) -> Current<'_, Self::T>;
    /// `h` laid out on the merged indexes `pos`/`neg` (from its own `from_p`/`from_n`).
    #[doc(hidden)]
    fn relay(h: &Self::H, from: (&[i32], &[i32]), to: (&[i32], &[i32])) -> Self::H;
    #[doc(hidden)]
    fn is_stale(h: &Self::H) -> bool;
    #[doc(hidden)]
    fn hint(h: &Self::H) -> CounterResetHint;
    #[doc(hidden)]
    fn layout(s: &Self::State) -> &Layout;
    #[doc(hidden)]
    fn last_t(s: &Self::State) -> i64;
    /// Writes one sample with the chunk's layout (the first sample sets it).
    #[doc(hidden)]
    fn write(s: &mut Self::State, w: &mut BitWriter<'_>, first: bool, t: i64, h: &Self::H);
    /// Decodes the next sample into the state: `None` when the data ends early.
    #[doc(hidden)]
    fn decode(
        s: &mut Self::State,
        r: &mut BitReader<'_>,
        first: bool,
        data_bits: usize,
    ) -> Option<std::result::Result<(), String>>;
    #[doc(hidden)]
    fn histogram(s: &Self::State, hint: CounterResetHint) -> Self::H;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Integer {}
    impl Sealed for super::Float {}
}

/// Integer native histograms (Prometheus encoding 2).
#[derive(Clone, Copy, Debug)]
pub enum Integer {}

/// Float native histograms (Prometheus encoding 3).
#[derive(Clone, Copy, Debug)]
pub enum Float {}

/// A native histogram chunk under construction or read back: the encoded bytes plus the state
/// the next append needs.
#[derive(Clone, Debug)]
pub struct Chunk<F: Flavour> {
    data: Vec<u8>,
    /// Unused low bits of the last data byte (0..=8).
    free: u8,
    state: F::State,
}

/// An integer native histogram chunk (Prometheus encoding 2).
pub type HistogramChunk = Chunk<Integer>;
/// A float native histogram chunk (Prometheus encoding 3).
pub type FloatHistogramChunk = Chunk<Float>;
/// Iterates the samples of integer histogram chunk data.
pub type HistogramIterator<'a> = ChunkIterator<'a, Integer>;
/// Iterates the samples of float histogram chunk data.
pub type FloatHistogramIterator<'a> = ChunkIterator<'a, Float>;

impl<F: Flavour> Default for Chunk<F> {
    fn default() -> Self {
        Self::new()
    }
}

/// The counter-reset header of histogram chunk data (at least 3 bytes).
pub(crate) fn header_of(data: &[u8]) -> CounterResetHeader {
    CounterResetHeader::from_flags(data[2])
}

impl<F: Flavour> Chunk<F> {
    pub fn new() -> Self {
        Chunk {
            data: vec![0; HEADER_BYTES],
            free: 0,
            state: F::State::default(),
        }
    }

    /// Wraps stored chunk data so that more samples can be appended (the appender state is
    /// recovered by decoding every sample).
    pub fn from_bytes(data: Vec<u8>) -> Result<Self> {
        let mut dec = Decoder::<F>::new(&data).map_err(Error::Invalid)?;
        while dec.next().map_err(Error::Invalid)? {}
        let used = HEADER_BYTES * 8 + dec.reader.position();
        let free = data.len() * 8 - used;
        if free > 8 {
            return Err(Error::Invalid(format!(
                "{}: {} bytes after the last sample",
                F::WHAT,
                free / 8
            )));
        }
        let state = dec.state;
        Ok(Chunk {
            data,
            free: free as u8,
            state,
        })
    }

    pub fn num_samples(&self) -> u16 {
        u16::from_be_bytes([self.data[0], self.data[1]])
    }

    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.data
    }

    pub fn counter_reset_header(&self) -> CounterResetHeader {
        header_of(&self.data)
    }

    pub fn set_counter_reset_header(&mut self, h: CounterResetHeader) {
        self.data[2] = (self.data[2] & 0b0011_1111) | h.bits();
    }

    /// Timestamp of the newest sample (`None` when empty).
    pub fn last_timestamp(&self) -> Option<i64> {
        (self.num_samples() > 0).then(|| F::last_t(&self.state))
    }

    pub fn capacity(&self) -> usize {
        self.data.capacity()
    }

    pub fn iter(&self) -> ChunkIterator<'_, F> {
        ChunkIterator::new(&self.data)
    }

    /// Whether [`Chunk::append`] would take `h`, without changing the chunk.
    pub fn check(&self, h: &F::H) -> std::result::Result<(), Cut> {
        if self.num_samples() == 0 {
            return Ok(());
        }
        let current = F::current(&self.state, self.counter_reset_header());
        match plan(&current, &F::candidate(h)) {
            Plan::Cut(hdr) => Err(Cut(hdr)),
            Plan::Append { .. } => Ok(()),
        }
    }

    /// Appends `h` at `t` (greater than the last timestamp), re-encoding the chunk if `h` brings
    /// new buckets. Fails with the header of the chunk the caller must start instead.
    ///
    /// # Panics
    /// If the chunk already holds `u16::MAX` samples.
    pub fn append(&mut self, t: i64, h: &F::H) -> std::result::Result<(), Cut> {
        let n = self.num_samples();
        assert!(n < u16::MAX, "{} is full", F::WHAT);
        if n == 0 {
            if let Some(hdr) = header_for_hint(F::hint(h)) {
                self.set_counter_reset_header(hdr);
            }
            self.write_sample(t, h);
            return Ok(());
        }
        let cand = F::candidate(h);
        let current = F::current(&self.state, self.counter_reset_header());
        let (positive, negative) = match plan(&current, &cand) {
            Plan::Cut(hdr) => return Err(Cut(hdr)),
            Plan::Append { positive, negative } => (positive, negative),
        };
        if positive.is_none() && negative.is_none() {
            self.write_sample(t, h);
            return Ok(());
        }
        let layout = F::layout(&self.state);
        let chunk_pos: Vec<i32> = bucket_indexes(&layout.positive).collect();
        let chunk_neg: Vec<i32> = bucket_indexes(&layout.negative).collect();
        let pos = positive.unwrap_or_else(|| chunk_pos.clone());
        let neg = negative.unwrap_or_else(|| chunk_neg.clone());
        if pos != chunk_pos || neg != chunk_neg {
            // Re-encode every sample with the merged layout.
            let old: Vec<(i64, F::H)> = self.iter().collect();
            let header = self.counter_reset_header();
            *self = Chunk::new();
            self.set_counter_reset_header(header);
            for (ot, oh) in &old {
                let r = if F::is_stale(oh) {
                    oh.clone()
                } else {
                    F::relay(oh, (&chunk_pos, &chunk_neg), (&pos, &neg))
                };
                self.write_sample(*ot, &r);
            }
        }
        let new = F::relay(h, (&cand.positive, &cand.negative), (&pos, &neg));
        self.write_sample(t, &new);
        Ok(())
    }

    fn write_sample(&mut self, t: i64, h: &F::H) {
        let n = self.num_samples();
        let mut w = BitWriter::new(&mut self.data, self.free);
        F::write(&mut self.state, &mut w, n == 0, t, h);
        self.free = w.free();
        self.data[..2].copy_from_slice(&(n + 1).to_be_bytes());
    }
}

/// Decodes histogram chunk data sample by sample.
struct Decoder<'a, F: Flavour> {
    reader: BitReader<'a>,
    total: u16,
    read: u16,
    header: CounterResetHeader,
    state: F::State,
    data_bits: usize,
}

impl<'a, F: Flavour> Decoder<'a, F> {
    fn new(data: &'a [u8]) -> std::result::Result<Self, String> {
        if data.len() < HEADER_BYTES {
            return Err(format!("{}: data shorter than the 3-byte header", F::WHAT));
        }
        Ok(Decoder {
            reader: BitReader::new(&data[HEADER_BYTES..]),
            total: u16::from_be_bytes([data[0], data[1]]),
            read: 0,
            header: header_of(data),
            state: F::State::default(),
            data_bits: (data.len() - HEADER_BYTES) * 8,
        })
    }

    /// Decodes the next sample into `state`: `Ok(false)` once every sample was read.
    fn next(&mut self) -> std::result::Result<bool, String> {
        if self.read == self.total {
            return Ok(false);
        }
        let first = self.read == 0;
        match F::decode(&mut self.state, &mut self.reader, first, self.data_bits) {
            Some(Ok(())) => {
                self.read += 1;
                Ok(true)
            }
            Some(Err(e)) => Err(format!(
                "{}: sample {} of {}: {e}",
                F::WHAT,
                self.read + 1,
                self.total
            )),
            None => Err(format!(
                "{}: data ends inside sample {} of {}",
                F::WHAT,
                self.read + 1,
                self.total
            )),
        }
    }
}

/// Iterates the samples of histogram chunk data.
pub struct ChunkIterator<'a, F: Flavour> {
    dec: Option<Decoder<'a, F>>,
    err: Option<String>,
}

impl<'a, F: Flavour> ChunkIterator<'a, F> {
    pub fn new(data: &'a [u8]) -> Self {
        match Decoder::new(data) {
            Ok(d) => ChunkIterator {
                dec: Some(d),
                err: None,
            },
            Err(e) => ChunkIterator {
                dec: None,
                err: Some(e),
            },
        }
    }

    /// Corruption found while decoding.
    pub fn err(&self) -> Option<&str> {
        self.err.as_deref()
    }
}

impl<F: Flavour> Iterator for ChunkIterator<'_, F> {
    type Item = (i64, F::H);

    fn next(&mut self) -> Option<(i64, F::H)> {
        let dec = self.dec.as_mut()?;
        match dec.next() {
            Ok(true) => {
                let hint = dec.header.hint_for_sample(dec.read);
                Some((F::last_t(&dec.state), F::histogram(&dec.state, hint)))
            }
            Ok(false) => {
                self.dec = None;
                None
            }
            Err(e) => {
                self.err = Some(e);
                self.dec = None;
                None
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Integer histograms (encoding 2)

#[derive(Clone, Debug, Default)]
pub struct IntState {
    layout: Layout,
    t: i64,
    t_delta: i64,
    count: u64,
    count_delta: i64,
    zero_count: u64,
    zero_count_delta: i64,
    sum: XorState,
    /// Bucket deltas (as stored per sample) and their change since the previous sample.
    positive: Vec<i64>,
    positive_delta: Vec<i64>,
    negative: Vec<i64>,
    negative_delta: Vec<i64>,
}

impl Default for XorState {
    fn default() -> Self {
        XorState::new(0.0)
    }
}

#[allow(private_interfaces)] // see `Flavour`
impl Flavour for Integer {
    type H = Histogram;
    type T = i64;
    type State = IntState;
    const WHAT: &'static str = "histogram chunk";

    fn candidate(h: &Histogram) -> Candidate<'_, i64> {
        int_candidate(h)
    }

    fn current(s: &IntState, header: CounterResetHeader) -> Current<'_, i64> {
        Current {
            header,
            layout: &s.layout,
            last_stale: is_stale_nan(f64::from_bits(s.sum.bits)),
            count: s.count as i64,
            zero_count: s.zero_count as i64,
            positive_counts: deltas_to_counts(&s.positive).collect(),
            negative_counts: deltas_to_counts(&s.negative).collect(),
        }
    }

    fn relay(h: &Histogram, from: (&[i32], &[i32]), to: (&[i32], &[i32])) -> Histogram {
        let mut out = h.clone();
        out.positive_spans = spans_from_indexes(to.0);
        out.negative_spans = spans_from_indexes(to.1);
        let pc: Vec<i64> = deltas_to_counts(&h.positive_buckets).collect();
        let nc: Vec<i64> = deltas_to_counts(&h.negative_buckets).collect();
        out.positive_buckets = counts_to_deltas(&expand(from.0, &pc, to.0));
        out.negative_buckets = counts_to_deltas(&expand(from.1, &nc, to.1));
        out
    }

    fn is_stale(h: &Histogram) -> bool {
        h.is_stale()
    }

    fn hint(h: &Histogram) -> CounterResetHint {
        h.counter_reset_hint
    }

    fn layout(s: &IntState) -> &Layout {
        &s.layout
    }

    fn last_t(s: &IntState) -> i64 {
        s.t
    }

    fn write(s: &mut Self::State, w: &mut BitWriter<'_>, first: bool, t: i64, h: &Histogram) {
        if first {
            let stale_only;
            let h = if h.is_stale() {
                stale_only = Histogram {
                    sum: h.sum,
                    ..Default::default()
                };
                &stale_only
            } else {
                h
            };
            s.layout = Layout::of_int(h);
            s.layout.write(w);
            put_varbit_int(w, t);
            put_varbit_uint(w, h.count);
            put_varbit_uint(w, h.zero_count);
            w.write_bits(h.sum.to_bits(), 64);
            for &b in h.positive_buckets.iter().chain(&h.negative_buckets) {
                put_varbit_int(w, b);
            }
            s.t = t;
            s.t_delta = 0;
            s.count = h.count;
            s.count_delta = 0;
            s.zero_count = h.zero_count;
            s.zero_count_delta = 0;
            s.sum = XorState::new(h.sum);
            s.positive = h.positive_buckets.clone();
            s.negative = h.negative_buckets.clone();
            s.positive_delta = vec![0; s.positive.len()];
            s.negative_delta = vec![0; s.negative.len()];
        } else {
            let t_delta = t.wrapping_sub(s.t);
            put_varbit_int(w, t_delta.wrapping_sub(s.t_delta));
            s.t = t;
            s.t_delta = t_delta;
            if h.is_stale() {
                // Counts unchanged, no buckets: the marker ends the chunk.
                put_varbit_int(w, 0);
                put_varbit_int(w, 0);
                s.count = (s.count as i64).wrapping_add(s.count_delta) as u64;
                s.zero_count = (s.zero_count as i64).wrapping_add(s.zero_count_delta) as u64;
                s.sum.write(w, h.sum);
            } else {
                let cd = (h.count as i64).wrapping_sub(s.count as i64);
                put_varbit_int(w, cd.wrapping_sub(s.count_delta));
                let zd = (h.zero_count as i64).wrapping_sub(s.zero_count as i64);
                put_varbit_int(w, zd.wrapping_sub(s.zero_count_delta));
                s.count = h.count;
                s.count_delta = cd;
                s.zero_count = h.zero_count;
                s.zero_count_delta = zd;
                s.sum.write(w, h.sum);
                for (i, &b) in h.positive_buckets.iter().enumerate() {
                    let d = b.wrapping_sub(s.positive[i]);
                    put_varbit_int(w, d.wrapping_sub(s.positive_delta[i]));
                    s.positive[i] = b;
                    s.positive_delta[i] = d;
                }
                for (i, &b) in h.negative_buckets.iter().enumerate() {
                    let d = b.wrapping_sub(s.negative[i]);
                    put_varbit_int(w, d.wrapping_sub(s.negative_delta[i]));
                    s.negative[i] = b;
                    s.negative_delta[i] = d;
                }
            }
        }
    }

    fn decode(
        s: &mut Self::State,
        r: &mut BitReader<'_>,
        first: bool,
        data_bits: usize,
    ) -> Option<std::result::Result<(), String>> {
        if first {
            s.layout = match Layout::read(r, data_bits)? {
                Ok(l) => l,
                Err(e) => return Some(Err(e)),
            };
            let np = span_buckets(&s.layout.positive);
            let nn = span_buckets(&s.layout.negative);
            s.t = read_varbit_int(r)?;
            s.count = read_varbit_uint(r)?;
            s.zero_count = read_varbit_uint(r)?;
            s.sum = XorState::new(f64::from_bits(r.read_bits(64)?));
            s.positive = Vec::with_capacity(np);
            for _ in 0..np {
                s.positive.push(read_varbit_int(r)?);
            }
            s.negative = Vec::with_capacity(nn);
            for _ in 0..nn {
                s.negative.push(read_varbit_int(r)?);
            }
            s.positive_delta = vec![0; np];
            s.negative_delta = vec![0; nn];
            return Some(Ok(()));
        }
        s.t_delta = s.t_delta.wrapping_add(read_varbit_int(r)?);
        s.t = s.t.wrapping_add(s.t_delta);
        s.count_delta = s.count_delta.wrapping_add(read_varbit_int(r)?);
        s.count = (s.count as i64).wrapping_add(s.count_delta) as u64;
        s.zero_count_delta = s.zero_count_delta.wrapping_add(read_varbit_int(r)?);
        s.zero_count = (s.zero_count as i64).wrapping_add(s.zero_count_delta) as u64;
        if let Err(e) = s.sum.read(r)? {
            return Some(Err(e));
        }
        if is_stale_nan(f64::from_bits(s.sum.bits)) {
            return Some(Ok(()));
        }
        for i in 0..s.positive.len() {
            s.positive_delta[i] = s.positive_delta[i].wrapping_add(read_varbit_int(r)?);
            s.positive[i] = s.positive[i].wrapping_add(s.positive_delta[i]);
        }
        for i in 0..s.negative.len() {
            s.negative_delta[i] = s.negative_delta[i].wrapping_add(read_varbit_int(r)?);
            s.negative[i] = s.negative[i].wrapping_add(s.negative_delta[i]);
        }
        Some(Ok(()))
    }

    fn histogram(s: &Self::State, hint: CounterResetHint) -> Histogram {
        if is_stale_nan(f64::from_bits(s.sum.bits)) {
            return Histogram {
                counter_reset_hint: hint,
                sum: f64::from_bits(s.sum.bits),
                ..Default::default()
            };
        }
        Histogram {
            counter_reset_hint: hint,
            schema: s.layout.schema,
            zero_threshold: s.layout.zero_threshold,
            zero_count: s.zero_count,
            count: s.count,
            sum: f64::from_bits(s.sum.bits),
            positive_spans: s.layout.positive.clone(),
            negative_spans: s.layout.negative.clone(),
            positive_buckets: s.positive.clone(),
            negative_buckets: s.negative.clone(),
            custom_values: s.layout.custom_values.clone(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Float histograms (encoding 3)

#[derive(Clone, Debug, Default)]
pub struct FloatState {
    layout: Layout,
    t: i64,
    t_delta: i64,
    count: XorState,
    zero_count: XorState,
    sum: XorState,
    positive: Vec<XorState>,
    negative: Vec<XorState>,
}

#[allow(private_interfaces)] // see `Flavour`
impl Flavour for Float {
    type H = FloatHistogram;
    type T = f64;
    type State = FloatState;
    const WHAT: &'static str = "float histogram chunk";

    fn candidate(h: &FloatHistogram) -> Candidate<'_, f64> {
        float_candidate(h)
    }

    fn current(s: &FloatState, header: CounterResetHeader) -> Current<'_, f64> {
        Current {
            header,
            layout: &s.layout,
            last_stale: is_stale_nan(f64::from_bits(s.sum.bits)),
            count: f64::from_bits(s.count.bits),
            zero_count: f64::from_bits(s.zero_count.bits),
            positive_counts: s.positive.iter().map(|x| f64::from_bits(x.bits)).collect(),
            negative_counts: s.negative.iter().map(|x| f64::from_bits(x.bits)).collect(),
        }
    }

    fn relay(h: &FloatHistogram, from: (&[i32], &[i32]), to: (&[i32], &[i32])) -> FloatHistogram {
        let mut out = h.clone();
        out.positive_spans = spans_from_indexes(to.0);
        out.negative_spans = spans_from_indexes(to.1);
        out.positive_buckets = expand(from.0, &h.positive_buckets, to.0);
        out.negative_buckets = expand(from.1, &h.negative_buckets, to.1);
        out
    }

    fn is_stale(h: &FloatHistogram) -> bool {
        h.is_stale()
    }

    fn hint(h: &FloatHistogram) -> CounterResetHint {
        h.counter_reset_hint
    }

    fn layout(s: &FloatState) -> &Layout {
        &s.layout
    }

    fn last_t(s: &FloatState) -> i64 {
        s.t
    }

    fn write(s: &mut Self::State, w: &mut BitWriter<'_>, first: bool, t: i64, h: &FloatHistogram) {
        if first {
            let stale_only;
            let h = if h.is_stale() {
                stale_only = FloatHistogram {
                    sum: h.sum,
                    ..Default::default()
                };
                &stale_only
            } else {
                h
            };
            s.layout = Layout::of_float(h);
            s.layout.write(w);
            put_varbit_int(w, t);
            for v in [h.count, h.zero_count, h.sum] {
                w.write_bits(v.to_bits(), 64);
            }
            for &b in h.positive_buckets.iter().chain(&h.negative_buckets) {
                w.write_bits(b.to_bits(), 64);
            }
            s.t = t;
            s.t_delta = 0;
            s.count = XorState::new(h.count);
            s.zero_count = XorState::new(h.zero_count);
            s.sum = XorState::new(h.sum);
            s.positive = h
                .positive_buckets
                .iter()
                .map(|&b| XorState::new(b))
                .collect();
            s.negative = h
                .negative_buckets
                .iter()
                .map(|&b| XorState::new(b))
                .collect();
        } else {
            let t_delta = t.wrapping_sub(s.t);
            put_varbit_int(w, t_delta.wrapping_sub(s.t_delta));
            s.t = t;
            s.t_delta = t_delta;
            if h.is_stale() {
                // As Prometheus: the marker is an empty histogram carrying only the sum.
                s.count.write(w, 0.0);
                s.zero_count.write(w, 0.0);
                s.sum.write(w, h.sum);
            } else {
                s.count.write(w, h.count);
                s.zero_count.write(w, h.zero_count);
                s.sum.write(w, h.sum);
                for (x, &b) in s.positive.iter_mut().zip(&h.positive_buckets) {
                    x.write(w, b);
                }
                for (x, &b) in s.negative.iter_mut().zip(&h.negative_buckets) {
                    x.write(w, b);
                }
            }
        }
    }

    fn decode(
        s: &mut Self::State,
        r: &mut BitReader<'_>,
        first: bool,
        data_bits: usize,
    ) -> Option<std::result::Result<(), String>> {
        if first {
            s.layout = match Layout::read(r, data_bits)? {
                Ok(l) => l,
                Err(e) => return Some(Err(e)),
            };
            let np = span_buckets(&s.layout.positive);
            let nn = span_buckets(&s.layout.negative);
            s.t = read_varbit_int(r)?;
            s.count = XorState::new(f64::from_bits(r.read_bits(64)?));
            s.zero_count = XorState::new(f64::from_bits(r.read_bits(64)?));
            s.sum = XorState::new(f64::from_bits(r.read_bits(64)?));
            s.positive = Vec::with_capacity(np);
            for _ in 0..np {
                s.positive
                    .push(XorState::new(f64::from_bits(r.read_bits(64)?)));
            }
            s.negative = Vec::with_capacity(nn);
            for _ in 0..nn {
                s.negative
                    .push(XorState::new(f64::from_bits(r.read_bits(64)?)));
            }
            return Some(Ok(()));
        }
        s.t_delta = s.t_delta.wrapping_add(read_varbit_int(r)?);
        s.t = s.t.wrapping_add(s.t_delta);
        for x in [&mut s.count, &mut s.zero_count, &mut s.sum] {
            if let Err(e) = x.read(r)? {
                return Some(Err(e));
            }
        }
        if is_stale_nan(f64::from_bits(s.sum.bits)) {
            return Some(Ok(()));
        }
        for x in s.positive.iter_mut().chain(s.negative.iter_mut()) {
            if let Err(e) = x.read(r)? {
                return Some(Err(e));
            }
        }
        Some(Ok(()))
    }

    fn histogram(s: &Self::State, hint: CounterResetHint) -> FloatHistogram {
        if is_stale_nan(f64::from_bits(s.sum.bits)) {
            return FloatHistogram {
                counter_reset_hint: hint,
                sum: f64::from_bits(s.sum.bits),
                ..Default::default()
            };
        }
        FloatHistogram {
            counter_reset_hint: hint,
            schema: s.layout.schema,
            zero_threshold: s.layout.zero_threshold,
            zero_count: f64::from_bits(s.zero_count.bits),
            count: f64::from_bits(s.count.bits),
            sum: f64::from_bits(s.sum.bits),
            positive_spans: s.layout.positive.clone(),
            negative_spans: s.layout.negative.clone(),
            positive_buckets: s.positive.iter().map(|x| f64::from_bits(x.bits)).collect(),
            negative_buckets: s.negative.iter().map(|x| f64::from_bits(x.bits)).collect(),
            custom_values: s.layout.custom_values.clone(),
        }
    }
}

#[cfg(test)]
mod tests;
