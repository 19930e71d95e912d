//! Samples of any chunk encoding as one type, for the paths that re-encode chunks whatever
//! they hold: block trimming, out-of-order inserts in the head, merges.

use model::histogram::{FloatHistogram, Histogram};

use super::{
    CounterResetHeader, FloatHistogramChunk, FloatHistogramIterator, HistogramChunk,
    HistogramIterator, XorChunk, XorIterator, ENCODING_FLOAT_HISTOGRAM, ENCODING_HISTOGRAM,
    ENCODING_XOR, SAMPLES_PER_CHUNK,
};

/// One sample's value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Float(f64),
    Histogram(Box<Histogram>),
    FloatHistogram(Box<FloatHistogram>),
}

impl Value {
    /// The chunk encoding that stores values of this kind.
    pub fn encoding(&self) -> u8 {
        match self {
            Value::Float(_) => ENCODING_XOR,
            Value::Histogram(_) => ENCODING_HISTOGRAM,
            Value::FloatHistogram(_) => ENCODING_FLOAT_HISTOGRAM,
        }
    }

    /// Whether this is a staleness marker.
    pub fn is_stale(&self) -> bool {
        match self {
            Value::Float(f) => crate::is_stale_nan(*f),
            Value::Histogram(h) => h.is_stale(),
            Value::FloatHistogram(h) => h.is_stale(),
        }
    }

    /// True for the same value bit for bit (how duplicates are told from conflicts).
    pub fn same(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Float(a), Value::Float(b)) => a.to_bits() == b.to_bits(),
            (Value::Histogram(a), Value::Histogram(b)) => {
                // A stale marker decodes without a layout: markers are the same as markers.
                (a.is_stale() && b.is_stale()) || a.same_as(b)
            }
            (Value::FloatHistogram(a), Value::FloatHistogram(b)) => {
                (a.is_stale() && b.is_stale()) || a.same_as(b)
            }
            _ => false,
        }
    }
}

/// A sample of any kind, for the generic replica merges of [`model::dedup`].
#[derive(Clone, Debug, PartialEq)]
pub struct TimedValue {
    pub t: i64,
    pub v: Value,
}

impl model::dedup::ReplicaSample for TimedValue {
    fn t(&self) -> i64 {
        self.t
    }

    fn float(&self) -> Option<f64> {
        match self.v {
            Value::Float(f) => Some(f),
            _ => None,
        }
    }

    fn add(&mut self, delta: f64) {
        if let Value::Float(f) = &mut self.v {
            *f += delta;
        }
    }
}

/// Decodes chunk data of any sample encoding (XOR, histogram, float histogram).
pub fn decode(encoding: u8, data: &[u8]) -> Result<Vec<(i64, Value)>, String> {
    match encoding {
        ENCODING_XOR => {
            let mut it = XorIterator::new(data);
            let out = it.by_ref().map(|(t, v)| (t, Value::Float(v))).collect();
            it.err().map_or(Ok(out), |e| Err(e.to_string()))
        }
        ENCODING_HISTOGRAM => {
            let mut it = HistogramIterator::new(data);
            let out = it
                .by_ref()
                .map(|(t, h)| (t, Value::Histogram(Box::new(h))))
                .collect();
            it.err().map_or(Ok(out), |e| Err(e.to_string()))
        }
        ENCODING_FLOAT_HISTOGRAM => {
            let mut it = FloatHistogramIterator::new(data);
            let out = it
                .by_ref()
                .map(|(t, h)| (t, Value::FloatHistogram(Box::new(h))))
                .collect();
            it.err().map_or(Ok(out), |e| Err(e.to_string()))
        }
        other => Err(format!("chunk encoding {other} holds no samples")),
    }
}

/// A chunk being filled by [`Encoder`].
/// Histogram chunks are boxed: their appender state is large, and every float series' open
/// chunk is one of these.
pub enum AnyChunk {
    Xor(XorChunk),
    Histogram(Box<HistogramChunk>),
    FloatHistogram(Box<FloatHistogramChunk>),
}

impl AnyChunk {
    pub fn encoding(&self) -> u8 {
        match self {
            AnyChunk::Xor(_) => ENCODING_XOR,
            AnyChunk::Histogram(_) => ENCODING_HISTOGRAM,
            AnyChunk::FloatHistogram(_) => ENCODING_FLOAT_HISTOGRAM,
        }
    }

    pub fn num_samples(&self) -> u16 {
        match self {
            AnyChunk::Xor(c) => c.num_samples(),
            AnyChunk::Histogram(c) => c.num_samples(),
            AnyChunk::FloatHistogram(c) => c.num_samples(),
        }
    }

    pub fn bytes(&self) -> &[u8] {
        match self {
            AnyChunk::Xor(c) => c.bytes(),
            AnyChunk::Histogram(c) => c.bytes(),
            AnyChunk::FloatHistogram(c) => c.bytes(),
        }
    }

    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            AnyChunk::Xor(c) => c.into_bytes(),
            AnyChunk::Histogram(c) => c.into_bytes(),
            AnyChunk::FloatHistogram(c) => c.into_bytes(),
        }
    }

    pub fn capacity(&self) -> usize {
        match self {
            AnyChunk::Xor(c) => c.capacity(),
            AnyChunk::Histogram(c) => c.capacity(),
            AnyChunk::FloatHistogram(c) => c.capacity(),
        }
    }

    /// Whether the chunk is full: 120 samples for floats; for histograms, as Prometheus, about
    /// 1 KiB once it holds at least 10 samples (or 120 samples).
    pub fn is_full(&self) -> bool {
        let n = self.num_samples();
        match self {
            AnyChunk::Xor(_) => n >= SAMPLES_PER_CHUNK,
            _ => n >= SAMPLES_PER_CHUNK || (n >= 10 && self.bytes().len() >= 1024),
        }
    }

    /// An empty chunk for values of `encoding`'s kind with this counter-reset header.
    pub fn new(encoding: u8, header: CounterResetHeader) -> AnyChunk {
        match encoding {
            ENCODING_HISTOGRAM => {
                let mut c = HistogramChunk::new();
                c.set_counter_reset_header(header);
                AnyChunk::Histogram(Box::new(c))
            }
            ENCODING_FLOAT_HISTOGRAM => {
                let mut c = FloatHistogramChunk::new();
                c.set_counter_reset_header(header);
                AnyChunk::FloatHistogram(Box::new(c))
            }
            _ => AnyChunk::Xor(XorChunk::new()),
        }
    }

    /// Appends when the value's kind matches and the chunk takes it; otherwise returns the
    /// header the next chunk should start with (`Unknown` for a change of kind).
    pub fn append(&mut self, t: i64, v: &Value) -> Result<(), CounterResetHeader> {
        match (self, v) {
            (AnyChunk::Xor(c), Value::Float(f)) => {
                c.append(t, *f);
                Ok(())
            }
            (AnyChunk::Histogram(c), Value::Histogram(h)) => c.append(t, h).map_err(|cut| cut.0),
            (AnyChunk::FloatHistogram(c), Value::FloatHistogram(h)) => {
                c.append(t, h).map_err(|cut| cut.0)
            }
            _ => Err(CounterResetHeader::Unknown),
        }
    }

    /// The header a chunk following this one starts with when `v` would have fitted here
    /// (`NotReset`), or the reason it would not.
    pub fn next_header(&self, v: &Value) -> CounterResetHeader {
        let r = match (self, v) {
            (AnyChunk::Histogram(c), Value::Histogram(h)) => c.check(h),
            (AnyChunk::FloatHistogram(c), Value::FloatHistogram(h)) => c.check(h),
            _ => return CounterResetHeader::Unknown,
        };
        r.map_or_else(|cut| cut.0, |()| CounterResetHeader::NotReset)
    }
}

/// The counter-reset header of stored histogram chunk data (`Unknown` for other encodings).
pub fn header(encoding: u8, data: &[u8]) -> CounterResetHeader {
    match encoding {
        ENCODING_HISTOGRAM | ENCODING_FLOAT_HISTOGRAM if data.len() > 2 => {
            super::histogram::header_of(data)
        }
        _ => CounterResetHeader::Unknown,
    }
}

/// Time-ordered samples into chunks: (min t, max t, encoding, data) each. A chunk ends when
/// the kind of value changes, a histogram cannot join it, or it is full. The first chunk
/// starts with an unknown counter-reset header.
pub fn encode(samples: &[(i64, Value)]) -> Vec<(i64, i64, u8, Vec<u8>)> {
    encode_from(CounterResetHeader::Unknown, samples)
}

/// [`encode`], the first chunk starting with `first` (the header of the chunk these samples
/// came from, when its first sample is still the first).
pub fn encode_from(
    first: CounterResetHeader,
    samples: &[(i64, Value)],
) -> Vec<(i64, i64, u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut cur: Option<(i64, i64, AnyChunk)> = None;
    for (t, v) in samples {
        let header = match &mut cur {
            None => first,
            Some((_, hi, c)) => {
                let appended = if c.is_full() {
                    Err(c.next_header(v))
                } else {
                    c.append(*t, v)
                };
                match appended {
                    Ok(()) => {
                        *hi = *t;
                        continue;
                    }
                    Err(header) => header,
                }
            }
        };
        if let Some((lo, hi, c)) = cur.take() {
            out.push((lo, hi, c.encoding(), c.into_bytes()));
        }
        let mut chunk = AnyChunk::new(v.encoding(), header);
        chunk
            .append(*t, v)
            .expect("an empty chunk takes any value of its kind");
        cur = Some((*t, *t, chunk));
    }
    if let Some((lo, hi, c)) = cur {
        out.push((lo, hi, c.encoding(), c.into_bytes()));
    }
    out
}
