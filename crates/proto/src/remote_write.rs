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
//! ```
//! Decoding borrows every string from the input; unknown fields are skipped, as protobuf
//! requires. Histograms are counted, not decoded: the storage does not keep them yet.

use crate::wire::{self, put_bytes, put_message, put_tag, put_varint, Reader, WireError};

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

#[derive(Clone, Debug, PartialEq, Default)]
pub struct TimeSeries<'a> {
    /// As sent: the receiver validates order, duplicates and emptiness.
    pub labels: Vec<Label<'a>>,
    pub samples: Vec<Sample>,
    pub exemplars: Vec<Exemplar<'a>>,
    /// Native histogram samples present (not decoded).
    pub histograms: usize,
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
    pub fn num_samples(&self) -> usize {
        self.timeseries.iter().map(|s| s.samples.len()).sum()
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
}

fn decode_sample(buf: &[u8], base: usize) -> Result<Sample, WireError> {
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

fn decode_label<'a>(buf: &'a [u8], base: usize) -> Result<Label<'a>, WireError> {
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

/// How many top-level fields numbered `field` `buf` holds (a scan that allocates nothing).
fn count_fields(buf: &[u8], field: u32) -> Result<usize, WireError> {
    let mut r = Reader::new(buf, 0);
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
    let count = count_fields(buf, field)?;
    if count > limit {
        return Err(DecodeError::TooManySeries { count, limit });
    }
    Ok(count)
}

/// Decodes a Remote Write 1.0 `WriteRequest`. Memory: one [`TimeSeries`] per series the
/// buffer holds, reserved once (a series takes at least 2 bytes of the buffer).
pub fn decode_v1(buf: &[u8]) -> Result<WriteRequest<'_>, DecodeError> {
    decode_v1_limited(buf, usize::MAX)
}

/// [`decode_v1`], refusing a request of more than `max_series` series from a scan that
/// allocates nothing (the receiver's series limit).
pub fn decode_v1_limited(buf: &[u8], max_series: usize) -> Result<WriteRequest<'_>, DecodeError> {
    let mut req = WriteRequest::default();
    req.timeseries
        .reserve_exact(series_count(buf, 1, max_series)?);
    let mut r = Reader::new(buf, 0);
    while !r.done() {
        match r.tag()? {
            (1, wire::LEN) => {
                let (b, base) = r.bytes()?;
                req.timeseries.push(decode_series_v1(b, base)?);
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
    let mut out = ThanosWrite::default();
    out.tenants.reserve_exact(count_fields(buf, 4)? + 1);
    let mut main = WriteRequest::default();
    main.timeseries.reserve_exact(count_fields(buf, 1)?);
    let mut tenant = "";
    let mut r = Reader::new(buf, 0);
    while !r.done() {
        match r.tag()? {
            (1, wire::LEN) => {
                let (b, base) = r.bytes()?;
                main.timeseries.push(decode_series_v1(b, base)?);
            }
            (2, wire::LEN) => tenant = r.str()?,
            (3, wire::VARINT) => out.replica = r.varint()? as i64,
            (4, wire::LEN) => {
                let (b, base) = r.bytes()?;
                let mut tr = Reader::new(b, base);
                let (mut t, mut req) = ("", WriteRequest::default());
                req.timeseries.reserve_exact(count_fields(b, 1)?);
                while !tr.done() {
                    match tr.tag()? {
                        (1, wire::LEN) => {
                            let (sb, sbase) = tr.bytes()?;
                            req.timeseries.push(decode_series_v1(sb, sbase)?);
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

fn decode_series_v1(buf: &[u8], base: usize) -> Result<TimeSeries<'_>, WireError> {
    let mut ts = TimeSeries::default();
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
                r.bytes()?;
                ts.histograms += 1;
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
    decode_v2_limited(buf, usize::MAX)
}

/// [`decode_v2`] with the series limit of [`decode_v1_limited`].
pub fn decode_v2_limited(buf: &[u8], max_series: usize) -> Result<WriteRequest<'_>, DecodeError> {
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
        req.timeseries.push(decode_series_v2(b, base, &symbols)?);
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
                r.bytes()?;
                ts.histograms += 1;
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

/// Encodes one `prometheus.TimeSeries` as field `field` of a message (histograms are not
/// encoded).
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
pub fn encode_thanos_write_raw<'a>(
    tenant: &str,
    replica: u64,
    series: impl IntoIterator<Item = &'a [u8]>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
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

/// Encodes a Remote Write 1.0 `WriteRequest` (histograms are not encoded).
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
        put_message(&mut series_bytes, 5, |m| {
            let mut packed = Vec::new();
            for r in &refs {
                put_varint(&mut packed, *r);
            }
            put_bytes(m, 1, &packed);
            for s in &ts.samples {
                put_sample(m, 2, s);
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
mod tests {
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

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_v1(&bytes);
            let _ = decode_v2(&bytes);
        }
    }
}
