//! Prometheus Remote Write 1.0 and 2.0 request bodies (the protobuf, after snappy).
//!
//! Field numbers (see `prompb/remote.proto`, `prompb/types.proto` and
//! `prompb/io/prometheus/write/v2/types.proto` upstream):
//!
//! ```text
//! 1.0 WriteRequest   timeseries=1 (TimeSeries), metadata=3 (MetricMetadata)
//!     TimeSeries     labels=1 (Label), samples=2 (Sample), exemplars=3, histograms=4
//!     Label          name=1, value=2            Sample  value=1 (double), timestamp=2 (int64)
//!     Exemplar       labels=1, value=2, timestamp=3
//!     MetricMetadata type=1, metric_family_name=2, help=4, unit=5
//! 2.0 Request        symbols=4 (string; symbols[0] == ""), timeseries=5
//!     TimeSeries     labels_refs=1 (packed uint32 pairs), samples=2, histograms=3,
//!                    exemplars=4, metadata=5
//!     Sample         value=1, timestamp=2, start_timestamp=3
//!     Exemplar       labels_refs=1, value=2, timestamp=3
//!     Metadata       type=1, help_ref=3, unit_ref=4
//! Both Histogram     count_int=1 (uint64) | count_float=2 (double), sum=3, schema=4 (sint32),
//!                    zero_threshold=5, zero_count_int=6 | zero_count_float=7,
//!                    negative_spans=8, negative_deltas=9 (sint64), negative_counts=10 (double),
//!                    positive_spans=11, positive_deltas=12, positive_counts=13,
//!                    reset_hint=14 (enum), timestamp=15, custom_values=16 (double)
//!     2.0 only       start_timestamp=17
//!     BucketSpan     offset=1 (sint32), length=2 (uint32)
//! ```
//! Decoding borrows every string from the input; unknown fields are skipped, as protobuf
//! requires. Native histograms are decoded in full (integer and float flavours, custom buckets);
//! repeated numbers are accepted packed or not, and encoded packed. What the decoders allocate is
//! bounded by the input's size: vectors are reserved from counts of what the bytes hold, never
//! from a count the input declares.

use crate::wire::{
    self, put_bytes, put_message, put_tag, put_varint, unzigzag32, unzigzag64, varint_len,
    zigzag32, zigzag64, Reader, WireError,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Label<'a> {
    pub name: &'a str,
    pub value: &'a str,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub value: f64,
    pub timestamp: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Exemplar<'a> {
    pub labels: Vec<Label<'a>>,
    pub value: f64,
    pub timestamp: i64,
}

/// Metric types as both versions number them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MetricType {
    #[default]
    Unknown,
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
}

impl MetricType {
    fn from_wire(v: u64) -> MetricType {
        match v {
            1 => MetricType::Counter,
            2 => MetricType::Gauge,
            3 => MetricType::Histogram,
            4 => MetricType::GaugeHistogram,
            5 => MetricType::Summary,
            6 => MetricType::Info,
            7 => MetricType::StateSet,
            _ => MetricType::Unknown,
        }
    }

    fn to_wire(self) -> u64 {
        match self {
            MetricType::Unknown => 0,
            MetricType::Counter => 1,
            MetricType::Gauge => 2,
            MetricType::Histogram => 3,
            MetricType::GaugeHistogram => 4,
            MetricType::Summary => 5,
            MetricType::Info => 6,
            MetricType::StateSet => 7,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Unknown => "unknown",
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Metadata<'a> {
    pub metric_type: MetricType,
    /// The family name (1.0); in 2.0 it is the series' `__name__`.
    pub metric_family_name: &'a str,
    pub help: &'a str,
    pub unit: &'a str,
}

/// A run of consecutive native-histogram buckets: `length` buckets starting `offset` buckets
/// after the end of the previous span (for the first span: at bucket index `offset`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct BucketSpan {
    pub offset: i32,
    pub length: u32,
}

/// A histogram's observation count (or zero-bucket count): integer histograms carry integers,
/// float histograms floats. On the wire it is a oneof; an absent one decodes as `Int(0)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum HistogramCount {
    Int(u64),
    Float(f64),
}

impl Default for HistogramCount {
    fn default() -> Self {
        HistogramCount::Int(0)
    }
}

/// What the sender knows about counter resets at this histogram sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ResetHint {
    /// Not known: the receiver checks for a reset itself. Also what an unknown value decodes to.
    #[default]
    Unknown,
    /// A counter reset happened right before this sample.
    Yes,
    /// No counter reset since the previous sample.
    No,
    /// A gauge histogram: counter resets do not apply.
    Gauge,
}

impl ResetHint {
    fn from_wire(v: u64) -> ResetHint {
        match v {
            1 => ResetHint::Yes,
            2 => ResetHint::No,
            3 => ResetHint::Gauge,
            _ => ResetHint::Unknown,
        }
    }

    fn to_wire(self) -> u64 {
        match self {
            ResetHint::Unknown => 0,
            ResetHint::Yes => 1,
            ResetHint::No => 2,
            ResetHint::Gauge => 3,
        }
    }
}

/// One native histogram sample, as sent. Integer histograms carry bucket counts as deltas
/// (`*_deltas`, each bucket relative to the previous one), float histograms as absolute counts
/// (`*_counts`); the decoder does not check that a histogram uses one flavour consistently, nor
/// that spans and buckets agree: validation is the receiver's.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Histogram {
    pub count: HistogramCount,
    pub sum: f64,
    /// -4..=8: exponential buckets; -53: custom buckets (bounds in `custom_values`).
    pub schema: i32,
    pub zero_threshold: f64,
    pub zero_count: HistogramCount,
    pub negative_spans: Vec<BucketSpan>,
    pub negative_deltas: Vec<i64>,
    pub negative_counts: Vec<f64>,
    pub positive_spans: Vec<BucketSpan>,
    pub positive_deltas: Vec<i64>,
    pub positive_counts: Vec<f64>,
    pub reset_hint: ResetHint,
    /// Milliseconds.
    pub timestamp: i64,
    /// Upper bucket bounds for custom-bucket histograms (schema -53).
    pub custom_values: Vec<f64>,
    /// Milliseconds, 0 when not set. Remote Write 2.0 only: 1.0 has no such field, so the 1.0
    /// encoders (and forwarding between receivers) leave it out.
    pub start_timestamp: i64,
}

impl Histogram {
    /// The schema of histograms with custom buckets.
    pub const CUSTOM_BUCKETS_SCHEMA: i32 = -53;

    /// Whether this is a float histogram (its count is a float).
    pub fn is_float(&self) -> bool {
        matches!(self.count, HistogramCount::Float(_))
    }
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct TimeSeries<'a> {
    /// As sent: the receiver validates order, duplicates and emptiness.
    pub labels: Vec<Label<'a>>,
    pub samples: Vec<Sample>,
    pub exemplars: Vec<Exemplar<'a>>,
    /// Native histogram samples.
    pub histograms: Vec<Histogram>,
    /// Per-series metadata (2.0 only).
    pub metadata: Option<Metadata<'a>>,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct WriteRequest<'a> {
    pub timeseries: Vec<TimeSeries<'a>>,
    /// 1.0 metadata (sent by Prometheus in separate requests).
    pub metadata: Vec<Metadata<'a>>,
}

impl WriteRequest<'_> {
    /// Float samples (histogram samples not included).
    pub fn num_samples(&self) -> usize {
        self.timeseries.iter().map(|s| s.samples.len()).sum()
    }

    /// Native histogram samples.
    pub fn num_histograms(&self) -> usize {
        self.timeseries.iter().map(|s| s.histograms.len()).sum()
    }
}

/// Why a body could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("symbol reference {reference} is out of range (the request has {symbols} symbols)")]
    SymbolOutOfRange { reference: u64, symbols: usize },
    #[error("labels_refs has an odd number of entries ({0})")]
    OddLabelRefs(usize),
    #[error("the first symbol must be the empty string")]
    FirstSymbolNotEmpty,
    #[error("{count} series, the limit is {limit}")]
    TooManySeries { count: usize, limit: usize },
    #[error("the request holds more than {limit} native histograms")]
    TooManyHistograms { limit: usize },
}

#[inline(always)]
fn decode_sample(buf: &[u8], base: usize) -> Result<Sample, WireError> {
    // The layout every encoder writes for a non-zero value and timestamp: the value's tag and
    // 8 bytes, then the timestamp's tag and a varint that ends the message.
    if buf.len() > 10 && buf[0] == 0x09 && buf[9] == 0x10 {
        let value = f64::from_bits(u64::from_le_bytes(buf[1..9].try_into().expect("8 bytes")));
        let mut r = Reader::new(&buf[10..], base + 10);
        let timestamp = r.varint()? as i64;
        if r.done() {
            return Ok(Sample { value, timestamp });
        }
    }
    decode_sample_fields(buf, base)
}

/// [`decode_sample`] for any layout.
fn decode_sample_fields(buf: &[u8], base: usize) -> Result<Sample, WireError> {
    let mut r = Reader::new(buf, base);
    let mut s = Sample {
        value: 0.0,
        timestamp: 0,
    };
    while !r.done() {
        match r.tag()? {
            (1, wire::FIXED64) => s.value = f64::from_bits(r.fixed64()?),
            (2, wire::VARINT) => s.timestamp = r.varint()? as i64,
            (_, wt) => r.skip(wt)?,
        }
    }
    Ok(s)
}

#[inline(always)]
fn decode_label<'a>(buf: &'a [u8], base: usize) -> Result<Label<'a>, WireError> {
    // The layout every encoder writes for a non-empty name and value of under 128 bytes each:
    // name's tag and length, the name, value's tag and length, the value. Tags and one-byte
    // lengths are ASCII, so one check over the whole label proves both strings UTF-8.
    if let [0x0a, n, rest @ ..] = buf {
        let n = usize::from(*n);
        if let Some([0x12, m, value @ ..]) = rest.get(n..) {
            if usize::from(*m) == value.len() && n < 0x80 && value.len() < 0x80 && buf.is_ascii() {
                // SAFETY: ASCII bytes are valid UTF-8.
                let text = |b| unsafe { std::str::from_utf8_unchecked(b) };
                return Ok(Label {
                    name: text(&rest[..n]),
                    value: text(value),
                });
            }
        }
    }
    decode_label_fields(buf, base)
}

/// [`decode_label`] for any layout.
fn decode_label_fields<'a>(buf: &'a [u8], base: usize) -> Result<Label<'a>, WireError> {
    let mut r = Reader::new(buf, base);
    let mut l = Label {
        name: "",
        value: "",
    };
    while !r.done() {
        match r.tag()? {
            (1, wire::LEN) => l.name = r.str()?,
            (2, wire::LEN) => l.value = r.str()?,
            (_, wt) => r.skip(wt)?,
        }
    }
    Ok(l)
}

/// How many top-level length-delimited fields numbered `field` `buf` holds (a scan that
/// allocates nothing); `base` is `buf`'s offset in the request, for errors.
fn count_fields(buf: &[u8], base: usize, field: u32) -> Result<usize, WireError> {
    let mut r = Reader::new(buf, base);
    let mut n = 0;
    while !r.done() {
        let (f, wt) = r.tag()?;
        if f == field && wt == wire::LEN {
            n += 1;
        }
        r.skip(wt)?;
    }
    Ok(n)
}

/// How many series (top-level fields numbered `field`) `buf` holds, refused above `limit`
/// before anything is allocated for them.
fn series_count(buf: &[u8], field: u32, limit: usize) -> Result<usize, DecodeError> {
    let count = count_fields(buf, 0, field)?;
    if count > limit {
        return Err(DecodeError::TooManySeries { count, limit });
    }
    Ok(count)
}

/// Decodes a Remote Write 1.0 `WriteRequest`. Memory: one [`TimeSeries`] per series the
/// buffer holds, reserved once (a series takes at least 2 bytes of the buffer).
pub fn decode_v1(buf: &[u8]) -> Result<WriteRequest<'_>, DecodeError> {
    decode_v1_limited(buf, usize::MAX, usize::MAX)
}

/// [`decode_v1`], refusing a request of more than `max_series` series from a scan that
/// allocates nothing (the receiver's series limit), and one of more than `max_histograms`
/// native histograms before a series' histograms are allocated (a histogram decodes to ~240
/// bytes from as little as 2 bytes of request).
pub fn decode_v1_limited(
    buf: &[u8],
    max_series: usize,
    max_histograms: usize,
) -> Result<WriteRequest<'_>, DecodeError> {
    let mut budget = Budget::new(max_histograms);
    let mut req = WriteRequest::default();
    req.timeseries
        .reserve_exact(series_count(buf, 1, max_series)?);
    let mut r = Reader::new(buf, 0);
    while !r.done() {
        match r.tag()? {
            (1, wire::LEN) => {
                let (b, base) = r.bytes()?;
                push_series_v1(&mut req.timeseries, b, base, &mut budget)?;
            }
            (3, wire::LEN) => {
                let (b, base) = r.bytes()?;
                req.metadata.push(decode_metadata_v1(b, base)?);
            }
            (_, wt) => r.skip(wt)?,
        }
    }
    Ok(req)
}

/// A decoded Thanos `thanos.WriteRequest` (receiver-to-receiver forwarding), borrowing from
/// the buffer: each tenant's series (`timeseries` + `tenant`, and every
/// `timeseriesTenantData` entry) and the replica number.
#[derive(Debug, Default)]
pub struct ThanosWrite<'a> {
    pub replica: i64,
    pub tenants: Vec<(&'a str, WriteRequest<'a>)>,
}

/// Decodes a `thanos.WriteRequest` without copying label strings.
pub fn decode_thanos_write(buf: &[u8]) -> Result<ThanosWrite<'_>, DecodeError> {
    // Peers forward what they accepted within their own limits.
    let mut budget = Budget::new(usize::MAX);
    let mut out = ThanosWrite::default();
    out.tenants.reserve_exact(count_fields(buf, 0, 4)? + 1);
    let mut main = WriteRequest::default();
    main.timeseries.reserve_exact(count_fields(buf, 0, 1)?);
    let mut tenant = "";
    let mut r = Reader::new(buf, 0);
    while !r.done() {
        match r.tag()? {
            (1, wire::LEN) => {
                let (b, base) = r.bytes()?;
                push_series_v1(&mut main.timeseries, b, base, &mut budget)?;
            }
            (2, wire::LEN) => tenant = r.str()?,
            (3, wire::VARINT) => out.replica = r.varint()? as i64,
            (4, wire::LEN) => {
                let (b, base) = r.bytes()?;
                let mut tr = Reader::new(b, base);
                let (mut t, mut req) = ("", WriteRequest::default());
                req.timeseries.reserve_exact(count_fields(b, base, 1)?);
                while !tr.done() {
                    match tr.tag()? {
                        (1, wire::LEN) => {
                            let (sb, sbase) = tr.bytes()?;
                            push_series_v1(&mut req.timeseries, sb, sbase, &mut budget)?;
                        }
                        (2, wire::LEN) => t = tr.str()?,
                        (_, wt) => tr.skip(wt)?,
                    }
                }
                out.tenants.push((t, req));
            }
            (_, wt) => r.skip(wt)?,
        }
    }
    if out.tenants.is_empty() || !main.timeseries.is_empty() {
        out.tenants.insert(0, (tenant, main));
    }
    Ok(out)
}

/// Which version's messages: 2.0's `Histogram` adds `start_timestamp` (field 17), which a 1.0
/// decoder skips as unknown and a 1.0 encoder leaves out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// Appends a repeated `sint64` field's values, packed (one length-delimited run) or not (one
/// varint). The packed run reserves one slot per varint it holds (counted from its bytes).
fn read_sint64s(r: &mut Reader<'_>, wire_type: u8, out: &mut Vec<i64>) -> Result<(), WireError> {
    if wire_type == wire::VARINT {
        out.push(unzigzag64(r.varint()?));
        return Ok(());
    }
    let (b, at) = r.bytes()?;
    out.reserve(b.iter().filter(|&&x| x < 0x80).count());
    let mut packed = Reader::new(b, at);
    while !packed.done() {
        out.push(unzigzag64(packed.varint()?));
    }
    Ok(())
}

/// Appends a repeated `double` field's values, packed (8 bytes each) or not (one fixed64).
fn read_doubles(r: &mut Reader<'_>, wire_type: u8, out: &mut Vec<f64>) -> Result<(), WireError> {
    if wire_type == wire::FIXED64 {
        out.push(f64::from_bits(r.fixed64()?));
        return Ok(());
    }
    let (b, at) = r.bytes()?;
    if !b.len().is_multiple_of(8) {
        return Err(WireError {
            offset: at,
            what: "packed doubles: length is not a multiple of 8",
        });
    }
    out.reserve(b.len() / 8);
    out.extend(
        b.chunks_exact(8)
            .map(|c| f64::from_bits(u64::from_le_bytes(c.try_into().unwrap()))),
    );
    Ok(())
}

fn decode_span(buf: &[u8], base: usize) -> Result<BucketSpan, WireError> {
    let mut r = Reader::new(buf, base);
    let mut s = BucketSpan::default();
    while !r.done() {
        match r.tag()? {
            (1, wire::VARINT) => s.offset = unzigzag32(r.varint()?),
            // Out-of-range values keep their low 32 bits, as protobuf parsers do.
            (2, wire::VARINT) => s.length = r.varint()? as u32,
            (_, wt) => r.skip(wt)?,
        }
    }
    Ok(s)
}

/// Decodes a `Histogram` message (the same in both versions but for `start_timestamp`).
fn decode_histogram(buf: &[u8], base: usize, version: Version) -> Result<Histogram, WireError> {
    let mut h = Histogram::default();
    let mut r = Reader::new(buf, base);
    while !r.done() {
        match r.tag()? {
            // A oneof: the last of its fields on the wire wins.
            (1, wire::VARINT) => h.count = HistogramCount::Int(r.varint()?),
            (2, wire::FIXED64) => h.count = HistogramCount::Float(f64::from_bits(r.fixed64()?)),
            (3, wire::FIXED64) => h.sum = f64::from_bits(r.fixed64()?),
            (4, wire::VARINT) => h.schema = unzigzag32(r.varint()?),
            (5, wire::FIXED64) => h.zero_threshold = f64::from_bits(r.fixed64()?),
            (6, wire::VARINT) => h.zero_count = HistogramCount::Int(r.varint()?),
            (7, wire::FIXED64) => {
                h.zero_count = HistogramCount::Float(f64::from_bits(r.fixed64()?));
            }
            (8, wire::LEN) => {
                let (b, at) = r.bytes()?;
                h.negative_spans.push(decode_span(b, at)?);
            }
            (9, wt @ (wire::VARINT | wire::LEN)) => {
                read_sint64s(&mut r, wt, &mut h.negative_deltas)?
            }
            (10, wt @ (wire::FIXED64 | wire::LEN)) => {
                read_doubles(&mut r, wt, &mut h.negative_counts)?;
            }
            (11, wire::LEN) => {
                let (b, at) = r.bytes()?;
                h.positive_spans.push(decode_span(b, at)?);
            }
            (12, wt @ (wire::VARINT | wire::LEN)) => {
                read_sint64s(&mut r, wt, &mut h.positive_deltas)?;
            }
            (13, wt @ (wire::FIXED64 | wire::LEN)) => {
                read_doubles(&mut r, wt, &mut h.positive_counts)?;
            }
            (14, wire::VARINT) => h.reset_hint = ResetHint::from_wire(r.varint()?),
            (15, wire::VARINT) => h.timestamp = r.varint()? as i64,
            (16, wt @ (wire::FIXED64 | wire::LEN)) => {
                read_doubles(&mut r, wt, &mut h.custom_values)?;
            }
            (17, wire::VARINT) if version == Version::V2 => {
                h.start_timestamp = r.varint()? as i64;
            }
            (_, wt) => r.skip(wt)?,
        }
    }
    Ok(h)
}

/// Decodes a series' histogram (field `field`, just read as `b` at `at`) into `out`. The first
/// one reserves room for every histogram field left in the series, so a series of many small
/// histograms takes one exact allocation rather than a doubling vector.
///
/// `budget` is what is left of the request's histogram limit: a series whose histograms exceed
/// it is refused before they are allocated.
fn push_histogram(
    r: &Reader<'_>,
    field: u32,
    (b, at): (&[u8], usize),
    version: Version,
    out: &mut Vec<Histogram>,
    budget: &mut Budget,
) -> Result<(), DecodeError> {
    if out.is_empty() {
        let (rest, rest_at) = r.rest();
        let n = 1 + count_fields(rest, rest_at, field)?;
        budget.take(n)?;
        out.reserve_exact(n);
    }
    out.push(decode_histogram(b, at, version)?);
    Ok(())
}

/// What is left of a request's native histogram limit while decoding.
struct Budget {
    left: usize,
    limit: usize,
}

impl Budget {
    fn new(limit: usize) -> Self {
        Budget { left: limit, limit }
    }

    fn take(&mut self, n: usize) -> Result<(), DecodeError> {
        self.left = self
            .left
            .checked_sub(n)
            .ok_or(DecodeError::TooManyHistograms { limit: self.limit })?;
        Ok(())
    }
}

/// Decodes a `prometheus.TimeSeries` onto `out`. Its labels are allocated once, as many as
/// the series before had (the series of a request mostly have the same number).
fn push_series_v1<'a>(
    out: &mut Vec<TimeSeries<'a>>,
    buf: &'a [u8],
    base: usize,
    budget: &mut Budget,
) -> Result<(), DecodeError> {
    // A label takes at least two bytes (its tag and length): the hint never reserves more
    // than the series' own bytes can fill.
    let hint = out
        .last()
        .map_or(0, |ts| ts.labels.len())
        .min(buf.len() / 2);
    out.push(decode_series_v1(buf, base, budget, hint)?);
    Ok(())
}

fn decode_series_v1<'a>(
    buf: &'a [u8],
    base: usize,
    budget: &mut Budget,
    label_hint: usize,
) -> Result<TimeSeries<'a>, DecodeError> {
    let mut ts = TimeSeries {
        labels: Vec::with_capacity(label_hint),
        ..TimeSeries::default()
    };
    let mut r = Reader::new(buf, base);
    while !r.done() {
        match r.tag()? {
            (1, wire::LEN) => {
                let (b, at) = r.bytes()?;
                ts.labels.push(decode_label(b, at)?);
            }
            (2, wire::LEN) => {
                let (b, at) = r.bytes()?;
                ts.samples.push(decode_sample(b, at)?);
            }
            (3, wire::LEN) => {
                let (b, at) = r.bytes()?;
                let mut e = Exemplar {
                    labels: Vec::new(),
                    value: 0.0,
                    timestamp: 0,
                };
                let mut er = Reader::new(b, at);
                while !er.done() {
                    match er.tag()? {
                        (1, wire::LEN) => {
                            let (lb, lat) = er.bytes()?;
                            e.labels.push(decode_label(lb, lat)?);
                        }
                        (2, wire::FIXED64) => e.value = f64::from_bits(er.fixed64()?),
                        (3, wire::VARINT) => e.timestamp = er.varint()? as i64,
                        (_, wt) => er.skip(wt)?,
                    }
                }
                ts.exemplars.push(e);
            }
            (4, wire::LEN) => {
                let b = r.bytes()?;
                push_histogram(&r, 4, b, Version::V1, &mut ts.histograms, budget)?;
            }
            (_, wt) => r.skip(wt)?,
        }
    }
    Ok(ts)
}

fn decode_metadata_v1(buf: &[u8], base: usize) -> Result<Metadata<'_>, WireError> {
    let mut m = Metadata::default();
    let mut r = Reader::new(buf, base);
    while !r.done() {
        match r.tag()? {
            (1, wire::VARINT) => m.metric_type = MetricType::from_wire(r.varint()?),
            (2, wire::LEN) => m.metric_family_name = r.str()?,
            (4, wire::LEN) => m.help = r.str()?,
            (5, wire::LEN) => m.unit = r.str()?,
            (_, wt) => r.skip(wt)?,
        }
    }
    Ok(m)
}

/// Decodes a Remote Write 2.0 `io.prometheus.write.v2.Request`, resolving symbol references.
pub fn decode_v2(buf: &[u8]) -> Result<WriteRequest<'_>, DecodeError> {
    decode_v2_limited(buf, usize::MAX, usize::MAX)
}

/// [`decode_v2`] with the limits of [`decode_v1_limited`].
pub fn decode_v2_limited(
    buf: &[u8],
    max_series: usize,
    max_histograms: usize,
) -> Result<WriteRequest<'_>, DecodeError> {
    let mut budget = Budget::new(max_histograms);
    // Symbols may come after the series that reference them: collect both first.
    let mut symbols: Vec<&str> = Vec::new();
    let mut series: Vec<(&[u8], usize)> = Vec::with_capacity(series_count(buf, 5, max_series)?);
    let mut r = Reader::new(buf, 0);
    while !r.done() {
        match r.tag()? {
            (4, wire::LEN) => symbols.push(r.str()?),
            (5, wire::LEN) => series.push(r.bytes()?),
            (_, wt) => r.skip(wt)?,
        }
    }
    if symbols.first().is_some_and(|s| !s.is_empty()) {
        return Err(DecodeError::FirstSymbolNotEmpty);
    }
    let mut req = WriteRequest::default();
    req.timeseries.reserve_exact(series.len());
    for (b, base) in series {
        req.timeseries
            .push(decode_series_v2(b, base, &symbols, &mut budget)?);
    }
    Ok(req)
}

fn symbol<'a>(symbols: &[&'a str], reference: u64) -> Result<&'a str, DecodeError> {
    symbols
        .get(reference as usize)
        .copied()
        .ok_or(DecodeError::SymbolOutOfRange {
            reference,
            symbols: symbols.len(),
        })
}

/// Reads a repeated uint32 field, packed or not, appending to `out`.
fn read_refs(r: &mut Reader<'_>, wire_type: u8, out: &mut Vec<u64>) -> Result<(), WireError> {
    if wire_type == wire::VARINT {
        out.push(r.varint()?);
        return Ok(());
    }
    let (b, at) = r.bytes()?;
    let mut packed = Reader::new(b, at);
    while !packed.done() {
        out.push(packed.varint()?);
    }
    Ok(())
}

fn labels_from_refs<'a>(refs: &[u64], symbols: &[&'a str]) -> Result<Vec<Label<'a>>, DecodeError> {
    if !refs.len().is_multiple_of(2) {
        return Err(DecodeError::OddLabelRefs(refs.len()));
    }
    refs.chunks_exact(2)
        .map(|p| {
            Ok(Label {
                name: symbol(symbols, p[0])?,
                value: symbol(symbols, p[1])?,
            })
        })
        .collect()
}

fn decode_series_v2<'a>(
    buf: &'a [u8],
    base: usize,
    symbols: &[&'a str],
    budget: &mut Budget,
) -> Result<TimeSeries<'a>, DecodeError> {
    let mut ts = TimeSeries::default();
    let mut refs = Vec::new();
    let mut r = Reader::new(buf, base);
    while !r.done() {
        match r.tag()? {
            (1, wt @ (wire::LEN | wire::VARINT)) => read_refs(&mut r, wt, &mut refs)?,
            (2, wire::LEN) => {
                let (b, at) = r.bytes()?;
                ts.samples.push(decode_sample(b, at)?);
            }
            (3, wire::LEN) => {
                let b = r.bytes()?;
                push_histogram(&r, 3, b, Version::V2, &mut ts.histograms, budget)?;
            }
            (4, wire::LEN) => {
                let (b, at) = r.bytes()?;
                let mut er = Reader::new(b, at);
                let mut erefs = Vec::new();
                let mut e = Exemplar {
                    labels: Vec::new(),
                    value: 0.0,
                    timestamp: 0,
                };
                while !er.done() {
                    match er.tag()? {
                        (1, wt @ (wire::LEN | wire::VARINT)) => read_refs(&mut er, wt, &mut erefs)?,
                        (2, wire::FIXED64) => e.value = f64::from_bits(er.fixed64()?),
                        (3, wire::VARINT) => e.timestamp = er.varint()? as i64,
                        (_, wt) => er.skip(wt)?,
                    }
                }
                e.labels = labels_from_refs(&erefs, symbols)?;
                ts.exemplars.push(e);
            }
            (5, wire::LEN) => {
                let (b, at) = r.bytes()?;
                let mut mr = Reader::new(b, at);
                let mut m = Metadata::default();
                while !mr.done() {
                    match mr.tag()? {
                        (1, wire::VARINT) => m.metric_type = MetricType::from_wire(mr.varint()?),
                        (3, wire::VARINT) => m.help = symbol(symbols, mr.varint()?)?,
                        (4, wire::VARINT) => m.unit = symbol(symbols, mr.varint()?)?,
                        (_, wt) => mr.skip(wt)?,
                    }
                }
                ts.metadata = Some(m);
            }
            (_, wt) => r.skip(wt)?,
        }
    }
    ts.labels = labels_from_refs(&refs, symbols)?;
    if let Some(m) = &mut ts.metadata {
        m.metric_family_name = ts
            .labels
            .iter()
            .find(|l| l.name == "__name__")
            .map_or("", |l| l.value);
    }
    Ok(ts)
}

fn put_sample(out: &mut Vec<u8>, field: u32, s: &Sample) {
    put_message(out, field, |m| {
        if s.value.to_bits() != 0 {
            put_tag(m, 1, wire::FIXED64);
            m.extend_from_slice(&s.value.to_bits().to_le_bytes());
        }
        if s.timestamp != 0 {
            put_tag(m, 2, wire::VARINT);
            put_varint(m, s.timestamp as u64);
        }
    });
}

fn put_f64(out: &mut Vec<u8>, field: u32, v: f64) {
    put_tag(out, field, wire::FIXED64);
    out.extend_from_slice(&v.to_bits().to_le_bytes());
}

fn put_count(out: &mut Vec<u8>, int_field: u32, c: HistogramCount) {
    match c {
        HistogramCount::Int(n) => {
            put_tag(out, int_field, wire::VARINT);
            put_varint(out, n);
        }
        HistogramCount::Float(f) => put_f64(out, int_field + 1, f),
    }
}

fn put_spans(out: &mut Vec<u8>, field: u32, spans: &[BucketSpan]) {
    for s in spans {
        put_message(out, field, |m| {
            if s.offset != 0 {
                put_tag(m, 1, wire::VARINT);
                put_varint(m, zigzag32(s.offset));
            }
            if s.length != 0 {
                put_tag(m, 2, wire::VARINT);
                put_varint(m, u64::from(s.length));
            }
        });
    }
}

fn put_packed_sint64s(out: &mut Vec<u8>, field: u32, vals: &[i64]) {
    if vals.is_empty() {
        return;
    }
    put_message(out, field, |m| {
        for &v in vals {
            put_varint(m, zigzag64(v));
        }
    });
}

fn put_packed_doubles(out: &mut Vec<u8>, field: u32, vals: &[f64]) {
    if vals.is_empty() {
        return;
    }
    put_tag(out, field, wire::LEN);
    put_varint(out, vals.len() as u64 * 8);
    for v in vals {
        out.extend_from_slice(&v.to_bits().to_le_bytes());
    }
}

/// Encodes a `Histogram` message as field `field`: fields in number order, repeated numbers
/// packed, zero scalars left out (floats compared by bits, so -0.0 is kept) and both oneofs
/// always written, as Prometheus does.
fn put_histogram(out: &mut Vec<u8>, field: u32, h: &Histogram, version: Version) {
    put_message(out, field, |m| {
        put_count(m, 1, h.count);
        if h.sum.to_bits() != 0 {
            put_f64(m, 3, h.sum);
        }
        if h.schema != 0 {
            put_tag(m, 4, wire::VARINT);
            put_varint(m, zigzag32(h.schema));
        }
        if h.zero_threshold.to_bits() != 0 {
            put_f64(m, 5, h.zero_threshold);
        }
        put_count(m, 6, h.zero_count);
        put_spans(m, 8, &h.negative_spans);
        put_packed_sint64s(m, 9, &h.negative_deltas);
        put_packed_doubles(m, 10, &h.negative_counts);
        put_spans(m, 11, &h.positive_spans);
        put_packed_sint64s(m, 12, &h.positive_deltas);
        put_packed_doubles(m, 13, &h.positive_counts);
        if h.reset_hint != ResetHint::Unknown {
            put_tag(m, 14, wire::VARINT);
            put_varint(m, h.reset_hint.to_wire());
        }
        if h.timestamp != 0 {
            put_tag(m, 15, wire::VARINT);
            put_varint(m, h.timestamp as u64);
        }
        put_packed_doubles(m, 16, &h.custom_values);
        if version == Version::V2 && h.start_timestamp != 0 {
            put_tag(m, 17, wire::VARINT);
            put_varint(m, h.start_timestamp as u64);
        }
    });
}

/// Encodes one `prometheus.TimeSeries` as field `field` of a message (a histogram's
/// `start_timestamp`, which 1.0 does not have, is left out).
fn put_series(out: &mut Vec<u8>, field: u32, ts: &TimeSeries<'_>) {
    put_message(out, field, |m| {
        for l in &ts.labels {
            put_message(m, 1, |lm| {
                put_bytes(lm, 1, l.name.as_bytes());
                put_bytes(lm, 2, l.value.as_bytes());
            });
        }
        for s in &ts.samples {
            put_sample(m, 2, s);
        }
        for e in &ts.exemplars {
            put_message(m, 3, |em| {
                for l in &e.labels {
                    put_message(em, 1, |lm| {
                        put_bytes(lm, 1, l.name.as_bytes());
                        put_bytes(lm, 2, l.value.as_bytes());
                    });
                }
                put_tag(em, 2, wire::FIXED64);
                em.extend_from_slice(&e.value.to_bits().to_le_bytes());
                put_tag(em, 3, wire::VARINT);
                put_varint(em, e.timestamp as u64);
            });
        }
        for h in &ts.histograms {
            put_histogram(m, 4, h, Version::V1);
        }
    });
}

/// Encodes a Thanos `thanos.WriteRequest` (receiver-to-receiver forwarding): the series, the
/// tenant and the 1-based replica number (0: not replicated yet).
pub fn encode_thanos_write<'a, 'b: 'a>(
    tenant: &str,
    replica: u64,
    series: impl IntoIterator<Item = &'a TimeSeries<'b>>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    for ts in series {
        put_series(&mut out, 1, ts);
    }
    put_bytes(&mut out, 2, tenant.as_bytes());
    if replica != 0 {
        put_tag(&mut out, 3, wire::VARINT);
        put_varint(&mut out, replica);
    }
    out
}

/// The encoded bytes of each `TimeSeries` of a Remote Write 1.0 body, in order (the same
/// series [`decode_v1`] returns). A `thanos.WriteRequest` carries series with the same field
/// number and encoding, so a router can forward them without re-encoding.
pub fn series_bytes_v1(buf: &[u8]) -> Result<Vec<&[u8]>, DecodeError> {
    let mut out = Vec::new();
    let mut r = Reader::new(buf, 0);
    while !r.done() {
        match r.tag()? {
            (1, wire::LEN) => out.push(r.bytes()?.0),
            (_, wt) => r.skip(wt)?,
        }
    }
    Ok(out)
}

/// [`encode_thanos_write`] from series already encoded as `prometheus.TimeSeries` messages.
pub fn encode_thanos_write_raw<'a, I>(tenant: &str, replica: u64, series: I) -> Vec<u8>
where
    I: Iterator<Item = &'a [u8]> + Clone,
{
    // Sized exactly up front (a tag, a length and the bytes per series): growing it would copy
    // the request several times over.
    let field = |n: usize| 1 + varint_len(n as u64) + n;
    let size = series.clone().map(|ts| field(ts.len())).sum::<usize>()
        + field(tenant.len())
        + if replica != 0 {
            1 + varint_len(replica)
        } else {
            0
        };
    let mut out = Vec::with_capacity(size);
    for ts in series {
        put_bytes(&mut out, 1, ts);
    }
    put_bytes(&mut out, 2, tenant.as_bytes());
    if replica != 0 {
        put_tag(&mut out, 3, wire::VARINT);
        put_varint(&mut out, replica);
    }
    out
}

/// Encodes a Remote Write 1.0 `WriteRequest` (without histograms' `start_timestamp`, which 1.0
/// does not have).
pub fn encode_v1(req: &WriteRequest<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(req.timeseries.len() * 64);
    for ts in &req.timeseries {
        put_series(&mut out, 1, ts);
    }
    for md in &req.metadata {
        put_message(&mut out, 3, |m| {
            put_tag(m, 1, wire::VARINT);
            put_varint(m, md.metric_type.to_wire());
            put_bytes(m, 2, md.metric_family_name.as_bytes());
            put_bytes(m, 4, md.help.as_bytes());
            put_bytes(m, 5, md.unit.as_bytes());
        });
    }
    out
}

/// Encodes a Remote Write 2.0 `Request` with a symbol table built from the labels.
pub fn encode_v2(req: &WriteRequest<'_>) -> Vec<u8> {
    let mut table: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    let mut symbols: Vec<String> = Vec::new();
    let mut intern = |s: &str| -> u64 {
        if let Some(&r) = table.get(s) {
            return r;
        }
        symbols.push(s.to_string());
        table.insert(s.to_string(), (symbols.len() - 1) as u64);
        (symbols.len() - 1) as u64
    };
    intern("");
    let mut series_bytes = Vec::new();
    for ts in &req.timeseries {
        let refs: Vec<u64> = ts
            .labels
            .iter()
            .flat_map(|l| [l.name, l.value])
            .map(&mut intern)
            .collect();
        let md = ts
            .metadata
            .as_ref()
            .map(|m| (m.metric_type, intern(m.help), intern(m.unit)));
        let exemplar_refs: Vec<Vec<u64>> = ts
            .exemplars
            .iter()
            .map(|e| {
                e.labels
                    .iter()
                    .flat_map(|l| [l.name, l.value])
                    .map(&mut intern)
                    .collect()
            })
            .collect();
        put_message(&mut series_bytes, 5, |m| {
            let mut packed = Vec::new();
            for r in &refs {
                put_varint(&mut packed, *r);
            }
            put_bytes(m, 1, &packed);
            for s in &ts.samples {
                put_sample(m, 2, s);
            }
            for h in &ts.histograms {
                put_histogram(m, 3, h, Version::V2);
            }
            for (e, refs) in ts.exemplars.iter().zip(&exemplar_refs) {
                put_message(m, 4, |em| {
                    let mut packed = Vec::new();
                    for r in refs {
                        put_varint(&mut packed, *r);
                    }
                    put_bytes(em, 1, &packed);
                    put_tag(em, 2, wire::FIXED64);
                    em.extend_from_slice(&e.value.to_bits().to_le_bytes());
                    put_tag(em, 3, wire::VARINT);
                    put_varint(em, e.timestamp as u64);
                });
            }
            if let Some((t, help, unit)) = md {
                put_message(m, 5, |mm| {
                    put_tag(mm, 1, wire::VARINT);
                    put_varint(mm, t.to_wire());
                    put_tag(mm, 3, wire::VARINT);
                    put_varint(mm, help);
                    put_tag(mm, 4, wire::VARINT);
                    put_varint(mm, unit);
                });
            }
        });
    }
    let mut out = Vec::with_capacity(series_bytes.len() + symbols.len() * 16);
    for s in &symbols {
        put_bytes(&mut out, 4, s.as_bytes());
    }
    out.extend_from_slice(&series_bytes);
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn series<'a>(labels: &[(&'a str, &'a str)], samples: &[(i64, f64)]) -> TimeSeries<'a> {
        TimeSeries {
            labels: labels
                .iter()
                .map(|&(name, value)| Label { name, value })
                .collect(),
            samples: samples
                .iter()
                .map(|&(timestamp, value)| Sample { value, timestamp })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn v1_round_trip_with_metadata_and_exemplars() {
        let mut ts = series(
            &[("__name__", "up"), ("job", "node")],
            &[(1000, 1.0), (2000, 0.0)],
        );
        ts.exemplars.push(Exemplar {
            labels: vec![Label {
                name: "trace_id",
                value: "abc",
            }],
            value: 2.5,
            timestamp: 1500,
        });
        let req = WriteRequest {
            timeseries: vec![ts],
            metadata: vec![Metadata {
                metric_type: MetricType::Counter,
                metric_family_name: "http_requests",
                help: "Requests.",
                unit: "",
            }],
        };
        let bytes = encode_v1(&req);
        assert_eq!(decode_v1(&bytes).unwrap(), req);
    }

    #[test]
    fn v2_resolves_symbols() {
        let mut ts = series(&[("__name__", "up"), ("job", "node")], &[(1000, 1.0)]);
        ts.metadata = Some(Metadata {
            metric_type: MetricType::Gauge,
            metric_family_name: "up",
            help: "Up.",
            unit: "",
        });
        ts.exemplars.push(Exemplar {
            labels: vec![Label {
                name: "trace_id",
                value: "abc",
            }],
            value: 2.5,
            timestamp: 1500,
        });
        let req = WriteRequest {
            timeseries: vec![ts],
            metadata: vec![],
        };
        let bytes = encode_v2(&req);
        assert_eq!(decode_v2(&bytes).unwrap(), req);
    }

    #[test]
    fn v2_rejects_bad_references() {
        // symbols ["", "a"], one series with labels_refs [1, 5]
        let mut buf = Vec::new();
        put_bytes(&mut buf, 4, b"");
        put_bytes(&mut buf, 4, b"a");
        put_message(&mut buf, 5, |m| put_bytes(m, 1, &[1, 5]));
        assert_eq!(
            decode_v2(&buf).unwrap_err(),
            DecodeError::SymbolOutOfRange {
                reference: 5,
                symbols: 2
            }
        );
    }

    #[test]
    fn errors_name_the_offset() {
        let req = WriteRequest {
            timeseries: vec![series(&[("__name__", "up")], &[(1, 1.0)])],
            metadata: vec![],
        };
        let bytes = encode_v1(&req);
        let err = decode_v1(&bytes[..bytes.len() - 3]).unwrap_err();
        assert!(
            err.to_string().contains("malformed protobuf at byte"),
            "{err}"
        );
        let mut bad_utf8 = bytes.clone();
        let pos = bad_utf8.windows(2).position(|w| w == b"up").unwrap();
        bad_utf8[pos] = 0xff;
        assert!(decode_v1(&bad_utf8)
            .unwrap_err()
            .to_string()
            .contains("UTF-8"));
    }

    #[test]
    fn accepts_unpacked_label_refs_and_skips_unknown_fields() {
        let mut buf = Vec::new();
        put_bytes(&mut buf, 4, b"");
        put_bytes(&mut buf, 4, b"__name__");
        put_bytes(&mut buf, 4, b"x");
        put_tag(&mut buf, 9, wire::VARINT); // unknown field
        put_varint(&mut buf, 7);
        put_message(&mut buf, 5, |m| {
            for r in [1u64, 2] {
                put_tag(m, 1, wire::VARINT);
                put_varint(m, r);
            }
        });
        let req = decode_v2(&buf).unwrap();
        assert_eq!(
            req.timeseries[0].labels,
            vec![Label {
                name: "__name__",
                value: "x"
            }]
        );
    }

    fn span(offset: i32, length: u32) -> BucketSpan {
        BucketSpan { offset, length }
    }

    pub(crate) fn int_histogram() -> Histogram {
        Histogram {
            count: HistogramCount::Int(12),
            sum: 34.5,
            schema: 3,
            zero_threshold: 0.001,
            zero_count: HistogramCount::Int(2),
            negative_spans: vec![span(-2, 2)],
            negative_deltas: vec![1, 2],
            positive_spans: vec![span(0, 2), span(3, 1)],
            positive_deltas: vec![2, -1, 3],
            reset_hint: ResetHint::No,
            timestamp: 1_700_000_000_000,
            ..Default::default()
        }
    }

    pub(crate) fn float_histogram() -> Histogram {
        Histogram {
            count: HistogramCount::Float(7.5),
            sum: -0.0,
            schema: -4,
            zero_threshold: 1e-128,
            zero_count: HistogramCount::Float(0.5),
            negative_spans: vec![span(1, 1)],
            negative_counts: vec![2.0],
            positive_spans: vec![span(-1, 3)],
            positive_counts: vec![1.0, f64::from_bits(0x7ff0_0000_0000_0002), 4.0],
            reset_hint: ResetHint::Gauge,
            timestamp: -5,
            start_timestamp: 1_699_999_000_000,
            ..Default::default()
        }
    }

    /// A histogram with custom buckets (schema -53): bounds in `custom_values`.
    pub(crate) fn custom_buckets_histogram() -> Histogram {
        Histogram {
            count: HistogramCount::Int(9),
            sum: 12.0,
            schema: Histogram::CUSTOM_BUCKETS_SCHEMA,
            positive_spans: vec![span(0, 3), span(1, 1)],
            positive_deltas: vec![1, 2, -1, 0],
            custom_values: vec![0.1, 0.5, 1.0, 5.0],
            reset_hint: ResetHint::Yes,
            timestamp: 42,
            ..Default::default()
        }
    }

    /// Every field, floats as bits, vectors with their lengths: equal keys, equal histograms
    /// (NaN payloads and the sign of zero included).
    pub(crate) fn key(h: &Histogram) -> Vec<u64> {
        fn count(c: HistogramCount) -> [u64; 2] {
            match c {
                HistogramCount::Int(n) => [0, n],
                HistogramCount::Float(f) => [1, f.to_bits()],
            }
        }
        let mut k = Vec::new();
        k.extend(count(h.count));
        k.extend([h.sum.to_bits(), h.schema as u64, h.zero_threshold.to_bits()]);
        k.extend(count(h.zero_count));
        for spans in [&h.negative_spans, &h.positive_spans] {
            k.push(spans.len() as u64);
            k.extend(
                spans
                    .iter()
                    .flat_map(|s| [s.offset as u64, u64::from(s.length)]),
            );
        }
        for deltas in [&h.negative_deltas, &h.positive_deltas] {
            k.push(deltas.len() as u64);
            k.extend(deltas.iter().map(|&d| d as u64));
        }
        for counts in [&h.negative_counts, &h.positive_counts, &h.custom_values] {
            k.push(counts.len() as u64);
            k.extend(counts.iter().map(|c| c.to_bits()));
        }
        k.extend([
            h.reset_hint.to_wire(),
            h.timestamp as u64,
            h.start_timestamp as u64,
        ]);
        k
    }

    fn keys(req: &WriteRequest<'_>) -> Vec<Vec<Vec<u64>>> {
        req.timeseries
            .iter()
            .map(|s| s.histograms.iter().map(key).collect())
            .collect()
    }

    /// What survives 1.0: everything but `start_timestamp`.
    pub(crate) fn without_start(mut h: Histogram) -> Histogram {
        h.start_timestamp = 0;
        h
    }

    /// `put_histogram` with every repeated number unpacked (one tag per value), as a sender
    /// may legally write them.
    fn put_histogram_unpacked(out: &mut Vec<u8>, field: u32, h: &Histogram, version: Version) {
        put_message(out, field, |m| {
            put_count(m, 1, h.count);
            put_f64(m, 3, h.sum);
            put_tag(m, 4, wire::VARINT);
            put_varint(m, zigzag32(h.schema));
            put_f64(m, 5, h.zero_threshold);
            put_count(m, 6, h.zero_count);
            put_spans(m, 8, &h.negative_spans);
            for (f, deltas) in [(9, &h.negative_deltas), (12, &h.positive_deltas)] {
                for &d in deltas {
                    put_tag(m, f, wire::VARINT);
                    put_varint(m, zigzag64(d));
                }
            }
            put_spans(m, 11, &h.positive_spans);
            for (f, counts) in [
                (10, &h.negative_counts),
                (13, &h.positive_counts),
                (16, &h.custom_values),
            ] {
                for &c in counts {
                    put_f64(m, f, c);
                }
            }
            put_tag(m, 14, wire::VARINT);
            put_varint(m, h.reset_hint.to_wire());
            put_tag(m, 15, wire::VARINT);
            put_varint(m, h.timestamp as u64);
            if version == Version::V2 {
                put_tag(m, 17, wire::VARINT);
                put_varint(m, h.start_timestamp as u64);
            }
        });
    }

    fn histogram_request(hs: Vec<Histogram>) -> WriteRequest<'static> {
        let mut ts = series(&[("__name__", "latency_seconds")], &[]);
        ts.histograms = hs;
        WriteRequest {
            timeseries: vec![ts, series(&[("__name__", "up")], &[(1, 1.0)])],
            metadata: vec![],
        }
    }

    #[test]
    fn histograms_round_trip_v1_and_v2() {
        let hs = vec![
            int_histogram(),
            float_histogram(),
            custom_buckets_histogram(),
        ];
        let req = histogram_request(hs.clone());
        assert_eq!(req.num_histograms(), 3);
        assert_eq!(req.num_samples(), 1);

        let v2_bytes = encode_v2(&req);
        let v2 = decode_v2(&v2_bytes).unwrap();
        assert_eq!(keys(&v2), keys(&req));
        assert!(v2.timeseries[0].histograms[1].is_float());
        assert!(!v2.timeseries[0].histograms[0].is_float());

        // 1.0 has no start_timestamp; everything else survives.
        let v1_bytes = encode_v1(&req);
        let v1 = decode_v1(&v1_bytes).unwrap();
        let want = histogram_request(hs.into_iter().map(without_start).collect());
        assert_eq!(keys(&v1), keys(&want));
        assert_eq!(v1.timeseries[1].samples, req.timeseries[1].samples);

        // Forwarding between receivers carries them, raw or re-encoded.
        let fwd = encode_thanos_write("t", 1, &req.timeseries);
        let got = decode_thanos_write(&fwd).unwrap();
        assert_eq!(keys(&got.tenants[0].1), keys(&want));
        let raw = series_bytes_v1(&v1_bytes).unwrap();
        assert_eq!(encode_thanos_write_raw("t", 1, raw.into_iter()), fwd);
    }

    #[test]
    fn a_1_0_decoder_skips_start_timestamp() {
        // Field 17 in a 1.0 histogram is an unknown field, not start_timestamp.
        let mut buf = Vec::new();
        put_message(&mut buf, 1, |ts| {
            put_histogram(ts, 4, &float_histogram(), Version::V2);
        });
        let h = &decode_v1(&buf).unwrap().timeseries[0].histograms[0];
        assert_eq!(key(h), key(&without_start(float_histogram())));
    }

    #[test]
    fn unpacked_and_split_repeated_numbers_decode_like_packed() {
        for h in [
            int_histogram(),
            float_histogram(),
            custom_buckets_histogram(),
        ] {
            let mut v1 = Vec::new();
            put_message(&mut v1, 1, |ts| {
                put_histogram_unpacked(ts, 4, &h, Version::V1)
            });
            let got = decode_v1(&v1).unwrap();
            assert_eq!(
                key(&got.timeseries[0].histograms[0]),
                key(&without_start(h.clone()))
            );

            let mut v2 = Vec::new();
            put_bytes(&mut v2, 4, b"");
            put_message(&mut v2, 5, |ts| {
                put_histogram_unpacked(ts, 3, &h, Version::V2)
            });
            let got = decode_v2(&v2).unwrap();
            assert_eq!(key(&got.timeseries[0].histograms[0]), key(&h));
        }

        // One field as a packed run, a lone value, then another packed run: all appended.
        let mut buf = Vec::new();
        put_message(&mut buf, 1, |ts| {
            put_message(ts, 4, |m| {
                put_packed_sint64s(m, 12, &[1, -2]);
                put_tag(m, 12, wire::VARINT);
                put_varint(m, zigzag64(i64::MIN));
                put_packed_sint64s(m, 12, &[i64::MAX]);
                put_packed_doubles(m, 16, &[0.5]);
                put_f64(m, 16, 1.5);
                put_packed_doubles(m, 16, &[2.5, 3.5]);
            });
        });
        let h = &decode_v1(&buf).unwrap().timeseries[0].histograms[0];
        assert_eq!(h.positive_deltas, vec![1, -2, i64::MIN, i64::MAX]);
        assert_eq!(h.custom_values, vec![0.5, 1.5, 2.5, 3.5]);
        assert_eq!(h.count, HistogramCount::Int(0), "absent count");
    }

    #[test]
    fn oneofs_take_the_last_value_and_unknown_hints_are_unknown() {
        let mut buf = Vec::new();
        put_message(&mut buf, 1, |ts| {
            put_message(ts, 4, |m| {
                put_count(m, 1, HistogramCount::Int(3));
                put_count(m, 1, HistogramCount::Float(2.5));
                put_count(m, 6, HistogramCount::Float(1.0));
                put_count(m, 6, HistogramCount::Int(4));
                put_tag(m, 14, wire::VARINT);
                put_varint(m, 99);
                put_tag(m, 4, wire::VARINT);
                put_varint(m, zigzag32(i32::MIN));
                put_message(m, 11, |s| {
                    put_tag(s, 1, wire::VARINT);
                    put_varint(s, zigzag32(i32::MAX));
                    put_tag(s, 2, wire::VARINT);
                    put_varint(s, u64::from(u32::MAX));
                });
            });
        });
        let h = &decode_v1(&buf).unwrap().timeseries[0].histograms[0];
        assert_eq!(h.count, HistogramCount::Float(2.5));
        assert_eq!(h.zero_count, HistogramCount::Int(4));
        assert_eq!(h.reset_hint, ResetHint::Unknown);
        assert_eq!(h.schema, i32::MIN);
        assert_eq!(h.positive_spans, vec![span(i32::MAX, u32::MAX)]);
    }

    #[test]
    fn malformed_histograms_are_errors_that_say_what() {
        let in_series = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut buf = Vec::new();
            put_message(&mut buf, 1, |ts| put_message(ts, 4, f));
            decode_v1(&buf).unwrap_err().to_string()
        };
        let e = in_series(&|m| {
            put_tag(m, 13, wire::LEN);
            put_varint(m, 7);
            m.extend_from_slice(&[0; 7]);
        });
        assert!(e.contains("not a multiple of 8"), "{e}");
        let e = in_series(&|m| put_bytes(m, 9, &[0x80, 0x80]));
        assert!(e.contains("truncated varint"), "{e}");
        let e = in_series(&|m| put_bytes(m, 8, &[0x08]));
        assert!(e.contains("truncated varint"), "{e}");
        let e = in_series(&|m| {
            put_tag(m, 3, wire::FIXED64);
            m.extend_from_slice(&[0; 4]);
        });
        assert!(e.contains("truncated fixed64"), "{e}");
        let e = in_series(&|m| {
            put_tag(m, 16, wire::LEN);
            put_varint(m, 1 << 40);
        });
        assert!(e.contains("runs past the end"), "{e}");

        // The same in 2.0.
        let mut buf = Vec::new();
        put_bytes(&mut buf, 4, b"");
        put_message(&mut buf, 5, |ts| {
            put_message(ts, 3, |m| put_bytes(m, 10, &[1, 2, 3]))
        });
        let e = decode_v2(&buf).unwrap_err().to_string();
        assert!(e.contains("not a multiple of 8"), "{e}");
    }

    #[test]
    fn many_empty_histograms_take_one_exact_allocation() {
        let mut buf = Vec::new();
        put_message(&mut buf, 1, |ts| {
            for _ in 0..1000 {
                put_bytes(ts, 4, b"");
            }
        });
        let req = decode_v1(&buf).unwrap();
        assert_eq!(req.num_histograms(), 1000);
        assert_eq!(req.timeseries[0].histograms.capacity(), 1000);
    }

    fn arb_count() -> impl Strategy<Value = HistogramCount> {
        prop_oneof![
            any::<u64>().prop_map(HistogramCount::Int),
            any::<u64>().prop_map(|b| HistogramCount::Float(f64::from_bits(b))),
        ]
    }

    fn arb_spans() -> impl Strategy<Value = Vec<BucketSpan>> {
        proptest::collection::vec(
            (any::<i32>(), any::<u32>()).prop_map(|(offset, length)| BucketSpan { offset, length }),
            0..4,
        )
    }

    fn arb_floats() -> impl Strategy<Value = Vec<f64>> {
        proptest::collection::vec(any::<u64>().prop_map(f64::from_bits), 0..6)
    }

    pub(crate) fn arb_histogram() -> impl Strategy<Value = Histogram> {
        (
            (
                arb_count(),
                any::<u64>(),
                any::<i32>(),
                any::<u64>(),
                arb_count(),
            ),
            (
                arb_spans(),
                proptest::collection::vec(any::<i64>(), 0..6),
                arb_floats(),
            ),
            (
                arb_spans(),
                proptest::collection::vec(any::<i64>(), 0..6),
                arb_floats(),
            ),
            (0..4u64, any::<i64>(), arb_floats(), any::<i64>()),
        )
            .prop_map(|(a, n, p, z)| Histogram {
                count: a.0,
                sum: f64::from_bits(a.1),
                schema: a.2,
                zero_threshold: f64::from_bits(a.3),
                zero_count: a.4,
                negative_spans: n.0,
                negative_deltas: n.1,
                negative_counts: n.2,
                positive_spans: p.0,
                positive_deltas: p.1,
                positive_counts: p.2,
                reset_hint: ResetHint::from_wire(z.0),
                timestamp: z.1,
                custom_values: z.2,
                start_timestamp: z.3,
            })
    }

    proptest! {
        #[test]
        fn histograms_round_trip(
            data in proptest::collection::vec(proptest::collection::vec(arb_histogram(), 0..4), 1..4),
        ) {
            let req = WriteRequest {
                timeseries: data
                    .iter()
                    .map(|hs| {
                        let mut ts = series(&[("__name__", "h")], &[(5, 1.0)]);
                        ts.histograms = hs.clone();
                        ts
                    })
                    .collect(),
                metadata: vec![],
            };
            let mut v1_req = req.clone();
            for ts in &mut v1_req.timeseries {
                for h in &mut ts.histograms {
                    h.start_timestamp = 0;
                }
            }
            prop_assert_eq!(keys(&decode_v2(&encode_v2(&req)).unwrap()), keys(&req));
            prop_assert_eq!(keys(&decode_v1(&encode_v1(&req)).unwrap()), keys(&v1_req));

            // Unpacked, the same histograms.
            for ts in &req.timeseries {
                let mut buf = Vec::new();
                put_message(&mut buf, 1, |m| {
                    for h in &ts.histograms {
                        put_histogram_unpacked(m, 4, h, Version::V1);
                    }
                });
                let got = decode_v1(&buf).unwrap();
                let want: Vec<Vec<u64>> =
                    ts.histograms.iter().map(|h| key(&without_start(h.clone()))).collect();
                let got: Vec<Vec<u64>> = got.timeseries[0].histograms.iter().map(key).collect();
                prop_assert_eq!(got, want);
            }
        }

        #[test]
        fn damaged_histograms_never_panic(
            h in arb_histogram(),
            at in any::<usize>(),
            byte in any::<u8>(),
            cut in any::<usize>(),
        ) {
            let mut req = WriteRequest::default();
            let mut ts = series(&[("__name__", "h")], &[]);
            ts.histograms.push(h);
            req.timeseries.push(ts);
            for mut bytes in [encode_v1(&req), encode_v2(&req)] {
                let n = bytes.len();
                bytes[at % n] = byte;
                bytes.truncate(n - cut % (n / 2).max(1));
                let _ = decode_v1(&bytes);
                let _ = decode_v2(&bytes);
            }
        }
    }

    proptest! {
        #[test]
        fn round_trips(
            data in proptest::collection::vec(
                (proptest::collection::vec(("[a-zA-Z_][a-zA-Z0-9_]{0,10}", "\\PC{0,12}"), 0..6),
                 proptest::collection::vec((any::<i64>(), any::<u64>()), 0..8)),
                0..8),
        ) {
            let timeseries: Vec<TimeSeries<'_>> = data.iter().map(|(labels, samples)| TimeSeries {
                labels: labels.iter().map(|(n, v)| Label { name: n, value: v }).collect(),
                samples: samples.iter().map(|&(t, v)| Sample { value: f64::from_bits(v), timestamp: t }).collect(),
                ..Default::default()
            }).collect();
            let req = WriteRequest { timeseries, metadata: vec![] };
            let bits = |r: &WriteRequest<'_>| -> Vec<Vec<(i64, u64)>> {
                r.timeseries.iter().map(|s| s.samples.iter().map(|x| (x.timestamp, x.value.to_bits())).collect()).collect()
            };
            for decoded in [decode_v1(&encode_v1(&req)).unwrap(), decode_v2(&encode_v2(&req)).unwrap()] {
                prop_assert_eq!(decoded.timeseries.len(), req.timeseries.len());
                for (a, b) in decoded.timeseries.iter().zip(&req.timeseries) {
                    prop_assert_eq!(&a.labels, &b.labels);
                }
                prop_assert_eq!(bits(&decoded), bits(&req));
            }
        }

        /// The fast paths for the usual layouts of a label and a sample decode what the field
        /// by field decoder does, errors included, on bytes near those layouts.
        #[test]
        fn label_and_sample_fast_paths_agree(
            pieces in proptest::collection::vec(prop_oneof![
                Just(vec![0x0a]), Just(vec![0x12]), Just(vec![0x09]), Just(vec![0x10]),
                (0u8..=255).prop_map(|b| vec![b]),
                "\\PC{0,6}".prop_map(|s| s.into_bytes()),
                proptest::collection::vec(any::<u8>(), 0..9),
            ], 0..8),
        ) {
            let bytes: Vec<u8> = pieces.concat();
            prop_assert_eq!(decode_label(&bytes, 7), decode_label_fields(&bytes, 7));
            let same = match (decode_sample(&bytes, 7), decode_sample_fields(&bytes, 7)) {
                (Ok(a), Ok(b)) => a.timestamp == b.timestamp && a.value.to_bits() == b.value.to_bits(),
                (a, b) => a.err() == b.err(),
            };
            prop_assert!(same);
        }

        #[test]
        fn fast_paths_take_the_usual_layouts(
            name in "\\PC{1,20}", value in "\\PC{1,20}", v in any::<u64>(), t in 1i64..,
        ) {
            let mut label = vec![0x0a, name.len() as u8];
            label.extend_from_slice(name.as_bytes());
            label.extend_from_slice(&[0x12, value.len() as u8]);
            label.extend_from_slice(value.as_bytes());
            let l = decode_label(&label, 0).unwrap();
            prop_assert_eq!((l.name, l.value), (name.as_str(), value.as_str()));
            let mut sample = vec![0x09];
            sample.extend_from_slice(&v.to_le_bytes());
            sample.push(0x10);
            let mut x = t as u64;
            while x >= 0x80 {
                sample.push(x as u8 | 0x80);
                x >>= 7;
            }
            sample.push(x as u8);
            let s = decode_sample(&sample, 0).unwrap();
            prop_assert_eq!((s.value.to_bits(), s.timestamp), (v, t));
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_v1(&bytes);
            let _ = decode_v2(&bytes);
        }
    }
}
