//! XOR ("Gorilla") float chunk encoding, Prometheus encoding byte 1.
//!
//! ```text
//! ┌──────────────────┬───────────────────────────────────────────────────────────────┐
//! │ count (u16 BE)   │ bit stream, MSB first                                         │
//! └──────────────────┴───────────────────────────────────────────────────────────────┘
//! sample 0:   t0 as varint (whole bytes)   v0 as 64 raw bits
//! sample 1:   t1 - t0 as uvarint           value field
//! sample n≥2: timestamp field              value field
//!
//! timestamp field, dod = (t_n - t_n-1) - (t_n-1 - t_n-2):
//!   dod == 0                    '0'
//!   -8191   ..= 8192            '10'   + 14 bits two's complement
//!   -65535  ..= 65536           '110'  + 17 bits
//!   -524287 ..= 524288          '1110' + 20 bits
//!   anything else               '1111' + 64 bits
//!
//! value field, x = bits(v_n) ^ bits(v_n-1):
//!   x == 0                      '0'
//!   x fits the current window   '10' + the window's bits of x
//!   otherwise                   '11' + leading zeros (5 bits, at most 31)
//!                                    + significant bits (6 bits, 64 written as 0)
//!                                    + the significant bits of x
//! ```
//!
//! A "window" is the (leading, trailing) zero count of the last `'11'` field. Until the first one
//! is written there is no window, so the first non-zero XOR always takes the `'11'` form.
//!
//! Decoding is driven by the count: Prometheus' stream may carry one trailing empty byte (see
//! [`super::bstream`]), so the data length does not say where the samples end.

use super::bstream::{BitReader, BitWriter};
use super::varint;
use crate::{Error, Result};

/// Bytes of the big-endian sample count that opens every XOR chunk.
const HEADER_BYTES: usize = 2;

/// Prometheus' initial capacity for a new chunk; a full 120-sample chunk of a regular series
/// fits in about this much.
const INITIAL_CAPACITY: usize = 128;

/// `leading` value meaning "no window yet" (as in Prometheus' appender).
const NO_WINDOW: u8 = 0xff;

/// Leading zeros are stored in 5 bits, so counts of 32 and more are written as 31.
const MAX_LEADING: u8 = 31;

/// An XOR chunk under construction or read back: the encoded bytes plus the little state the
/// next append needs. No per-sample allocation; 56 bytes besides the data.
#[derive(Clone, Debug)]
pub struct XorChunk {
    /// Count header followed by the bit stream, exactly as stored.
    data: Vec<u8>,
    /// Timestamp and value bits of the last sample.
    t: i64,
    v: u64,
    /// `t - previous t` of the last sample, kept as Prometheus does (wrapping, unsigned).
    t_delta: u64,
    /// Current value window; `leading == NO_WINDOW` until one exists.
    leading: u8,
    trailing: u8,
    /// Unused low bits of the last data byte (0..=8).
    free: u8,
}

impl XorChunk {
    pub fn new() -> Self {
        let mut data = Vec::with_capacity(INITIAL_CAPACITY);
        data.extend_from_slice(&[0, 0]);
        XorChunk {
            data,
            t: 0,
            v: 0,
            t_delta: 0,
            leading: NO_WINDOW,
            trailing: 0,
            free: 0,
        }
    }

    /// Wraps stored chunk data so that more samples can be appended. The appender state is
    /// recovered by decoding every sample; fails with [`Error::Invalid`] if the data is
    /// truncated, malformed, or carries bytes past the last sample beyond Prometheus' single
    /// trailing empty byte.
    ///
    /// Appending to the result produces the same bytes as appending all samples to one new
    /// chunk. (Prometheus, reopening a chunk whose XORs were all zero, would resume without a
    /// window and later write one `'10'` field with 64 bits; both forms decode the same.)
    pub fn from_bytes(data: Vec<u8>) -> Result<Self> {
        let invalid = |detail: String| Error::Invalid(format!("xor chunk: {detail}"));
        let mut decoder = Decoder::new(&data).map_err(|e| invalid(e.to_string()))?;
        while decoder.next_sample().map_err(invalid)?.is_some() {}

        let used_bits = HEADER_BYTES * 8 + decoder.reader.position();
        let free = data.len() * 8 - used_bits;
        if free > 8 {
            return Err(invalid(format!(
                "{} bytes of data after the last of {} samples",
                free / 8,
                decoder.total
            )));
        }
        if free > 0 {
            let unused = data[data.len() - 1] & ((1u16 << free) - 1) as u8;
            if unused != 0 {
                return Err(invalid(
                    "non-zero bits after the last sample; cannot append".to_string(),
                ));
            }
        }
        Ok(XorChunk {
            t: decoder.t,
            v: decoder.v,
            t_delta: decoder.t_delta,
            leading: decoder.leading,
            trailing: decoder.trailing,
            free: free as u8,
            data,
        })
    }

    /// Appends a sample. The caller guarantees `t` is greater than the last sample's timestamp
    /// (timestamp arithmetic wraps like Prometheus' so any i64 pair still round-trips).
    ///
    /// # Panics
    /// If the chunk already holds `u16::MAX` samples (the head cuts chunks long before).
    pub fn append(&mut self, t: i64, v: f64) {
        let num = self.num_samples();
        assert!(num < u16::MAX, "xor chunk is full ({num} samples)");
        let v = v.to_bits();
        let mut w = BitWriter::new(&mut self.data, self.free);
        let mut varint_buf = [0u8; varint::MAX_LEN_64];

        let t_delta = match num {
            0 => {
                let n = varint::encode_varint(t, &mut varint_buf);
                for &byte in &varint_buf[..n] {
                    w.write_byte(byte);
                }
                w.write_bits(v, 64);
                0
            }
            1 => {
                let t_delta = t.wrapping_sub(self.t) as u64;
                let n = varint::encode_uvarint(t_delta, &mut varint_buf);
                for &byte in &varint_buf[..n] {
                    w.write_byte(byte);
                }
                write_value(&mut w, v ^ self.v, &mut self.leading, &mut self.trailing);
                t_delta
            }
            _ => {
                let t_delta = t.wrapping_sub(self.t) as u64;
                let dod = t_delta.wrapping_sub(self.t_delta) as i64;
                // Prometheus keeps millisecond timestamps, so its buckets are wider than
                // Gorilla's second-resolution ones.
                if dod == 0 {
                    w.write_bit(false);
                } else if fits_in_bits(dod, 14) {
                    w.write_bits(0b10, 2);
                    w.write_bits(dod as u64, 14);
                } else if fits_in_bits(dod, 17) {
                    w.write_bits(0b110, 3);
                    w.write_bits(dod as u64, 17);
                } else if fits_in_bits(dod, 20) {
                    w.write_bits(0b1110, 4);
                    w.write_bits(dod as u64, 20);
                } else {
                    w.write_bits(0b1111, 4);
                    w.write_bits(dod as u64, 64);
                }
                write_value(&mut w, v ^ self.v, &mut self.leading, &mut self.trailing);
                t_delta
            }
        };
        self.free = w.free();
        self.t = t;
        self.v = v;
        self.t_delta = t_delta;
        self.data[..HEADER_BYTES].copy_from_slice(&(num + 1).to_be_bytes());
    }

    pub fn num_samples(&self) -> u16 {
        u16::from_be_bytes([self.data[0], self.data[1]])
    }

    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    /// The chunk data, giving up the appender state.
    pub fn into_bytes(self) -> Vec<u8> {
        self.data
    }

    /// The newest sample, or `None` for an empty chunk.
    pub fn last_sample(&self) -> Option<(i64, f64)> {
        (self.num_samples() > 0).then(|| (self.t, f64::from_bits(self.v)))
    }

    /// Timestamp of the oldest sample, or `None` for an empty chunk.
    pub fn first_timestamp(&self) -> Option<i64> {
        if self.num_samples() == 0 {
            return None;
        }
        varint::decode_varint(&self.data[HEADER_BYTES..]).map(|(t, _)| t)
    }

    /// Shrinks allocation once the chunk is full (head memory).
    pub fn shrink_to_fit(&mut self) {
        self.data.shrink_to_fit();
    }

    /// Heap bytes allocated for the chunk's data (head memory accounting).
    pub fn capacity(&self) -> usize {
        self.data.capacity()
    }

    pub fn iter(&self) -> XorIterator<'_> {
        XorIterator::new(self.bytes())
    }
}

impl Default for XorChunk {
    fn default() -> Self {
        Self::new()
    }
}

/// True if `x` is in the range a `nbits`-wide timestamp field holds: `-(2^(n-1) - 1) ..= 2^(n-1)`.
/// The range is shifted by one from two's complement because the decoder reads the pattern
/// `100..0` as `+2^(n-1)`.
#[inline]
fn fits_in_bits(x: i64, nbits: u32) -> bool {
    let half = 1i64 << (nbits - 1);
    -(half - 1) <= x && x <= half
}

/// Writes the value field for `xor = bits(v) ^ bits(previous v)`, updating the window.
#[inline]
fn write_value(w: &mut BitWriter<'_>, xor: u64, leading: &mut u8, trailing: &mut u8) {
    if xor == 0 {
        w.write_bit(false);
        return;
    }
    let new_leading = (xor.leading_zeros() as u8).min(MAX_LEADING);
    let new_trailing = xor.trailing_zeros() as u8;

    if *leading != NO_WINDOW && new_leading >= *leading && new_trailing >= *trailing {
        // The significant bits fit the current window: reuse it.
        w.write_bits(0b10, 2);
        let width = 64 - u32::from(*leading) - u32::from(*trailing);
        w.write_bits(xor >> *trailing, width);
        return;
    }
    *leading = new_leading;
    *trailing = new_trailing;
    let significant = 64 - u32::from(new_leading) - u32::from(new_trailing);
    // 64 significant bits do not fit 6 bits; 0 never occurs (xor != 0), so it stands for 64.
    let stored = u64::from(significant) & 0x3f;
    w.write_bits(0b11, 2);
    // leading (5 bits) and significant (6 bits) as one 11-bit field.
    w.write_bits((u64::from(new_leading) << 6) | stored, 11);
    w.write_bits(xor >> new_trailing, significant);
}

/// Decoding state shared by the iterator and [`XorChunk::from_bytes`].
#[derive(Clone, Debug)]
struct Decoder<'a> {
    reader: BitReader<'a>,
    total: u16,
    read: u16,
    t: i64,
    v: u64,
    t_delta: u64,
    leading: u8,
    trailing: u8,
}

impl<'a> Decoder<'a> {
    fn new(data: &'a [u8]) -> Result<Self, &'static str> {
        if data.len() < HEADER_BYTES {
            return Err("data shorter than the 2-byte sample count");
        }
        Ok(Decoder {
            reader: BitReader::new(&data[HEADER_BYTES..]),
            total: u16::from_be_bytes([data[0], data[1]]),
            read: 0,
            t: 0,
            v: 0,
            t_delta: 0,
            leading: NO_WINDOW,
            trailing: 0,
        })
    }

    fn truncated(&self) -> String {
        format!(
            "data ends inside sample {} of {}",
            u32::from(self.read) + 1,
            self.total
        )
    }

    /// Decodes the next sample: `Ok(None)` once `total` samples were read.
    #[inline]
    fn next_sample(&mut self) -> Result<Option<(i64, u64)>, String> {
        if self.read == self.total {
            return Ok(None);
        }
        match self.decode() {
            Some(Ok(())) => {
                self.read += 1;
                Ok(Some((self.t, self.v)))
            }
            Some(Err(detail)) => Err(format!(
                "sample {} of {}: {detail}",
                u32::from(self.read) + 1,
                self.total
            )),
            None => Err(self.truncated()),
        }
    }

    /// `None` when the data ends early; `Some(Err)` for impossible field values.
    #[inline]
    fn decode(&mut self) -> Option<Result<(), &'static str>> {
        let r = &mut self.reader;
        match self.read {
            0 => {
                let Some(t) = read_uvarint(r)? else {
                    return Some(Err("timestamp varint longer than 64 bits"));
                };
                self.t = varint::unzigzag(t);
                self.v = r.read_bits(64)?;
                Some(Ok(()))
            }
            1 => {
                let Some(t_delta) = read_uvarint(r)? else {
                    return Some(Err("timestamp delta varint longer than 64 bits"));
                };
                self.t_delta = t_delta;
                self.t = self.t.wrapping_add(t_delta as i64);
                self.decode_value()
            }
            _ => {
                // Count the '1' bits of the prefix, stopping at a '0' or after four.
                let mut ones = 0;
                while ones < 4 && r.read_bit()? {
                    ones += 1;
                }
                let dod = match ones {
                    0 => 0,
                    1 => read_signed(r, 14)?,
                    2 => read_signed(r, 17)?,
                    3 => read_signed(r, 20)?,
                    _ => r.read_bits(64)? as i64,
                };
                self.t_delta = self.t_delta.wrapping_add(dod as u64);
                self.t = self.t.wrapping_add(self.t_delta as i64);
                self.decode_value()
            }
        }
    }

    #[inline]
    fn decode_value(&mut self) -> Option<Result<(), &'static str>> {
        let r = &mut self.reader;
        if !r.read_bit()? {
            return Some(Ok(()));
        }
        let (leading, trailing) = if !r.read_bit()? {
            if self.leading == NO_WINDOW {
                // Prometheus' reader starts from a (0, 0) window, which a reopened Prometheus
                // appender can reference; read it the same way.
                self.leading = 0;
                self.trailing = 0;
            }
            (self.leading, self.trailing)
        } else {
            let field = r.read_bits(11)?;
            let leading = (field >> 6) as u8;
            let significant = match (field & 0x3f) as u8 {
                0 => 64,
                n => n,
            };
            if u32::from(leading) + u32::from(significant) > 64 {
                return Some(Err("value window wider than 64 bits"));
            }
            self.leading = leading;
            self.trailing = 64 - leading - significant;
            (self.leading, self.trailing)
        };
        let width = 64 - u32::from(leading) - u32::from(trailing);
        let bits = r.read_bits(width)?;
        self.v ^= bits << trailing;
        Some(Ok(()))
    }
}

/// Reads a Go uvarint from whole bytes of the bit stream: `None` if the data ends,
/// `Some(None)` if the value overflows 64 bits.
#[inline]
fn read_uvarint(r: &mut BitReader<'_>) -> Option<Option<u64>> {
    let mut x = 0u64;
    for i in 0..varint::MAX_LEN_64 {
        let b = r.read_byte()?;
        if i == varint::MAX_LEN_64 - 1 && b > 1 {
            return Some(None);
        }
        x |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Some(Some(x));
        }
    }
    Some(None)
}

/// Reads an `nbits`-wide timestamp field; values above `2^(nbits-1)` are negative.
#[inline]
fn read_signed(r: &mut BitReader<'_>, nbits: u32) -> Option<i64> {
    let bits = r.read_bits(nbits)? as i64;
    Some(if bits > 1 << (nbits - 1) {
        bits - (1 << nbits)
    } else {
        bits
    })
}

/// Decodes the samples of XOR chunk data, in order, by the sample count in its header.
///
/// `seek` follows Prometheus' semantics: the iterator has a current sample (the one last
/// returned by `next` or `seek`), and `seek(t)` returns it again if its timestamp is already
/// `>= t`; it never moves backwards.
#[derive(Clone, Debug)]
pub struct XorIterator<'a> {
    decoder: Decoder<'a>,
    /// The last sample returned, if any.
    current: Option<(i64, f64)>,
    done: bool,
    err: Option<String>,
}

impl<'a> XorIterator<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        match Decoder::new(data) {
            Ok(decoder) => XorIterator {
                decoder,
                current: None,
                done: false,
                err: None,
            },
            Err(detail) => XorIterator {
                decoder: Decoder::new(&[0, 0]).expect("empty chunk header"),
                current: None,
                done: true,
                err: Some(detail.to_string()),
            },
        }
    }

    /// Number of samples the chunk header announces.
    pub fn num_samples(&self) -> u16 {
        self.decoder.total
    }

    /// Advances to the first sample with timestamp >= t; returns it, or None when exhausted.
    pub fn seek(&mut self, t: i64) -> Option<(i64, f64)> {
        if let Some(current) = self.current {
            if current.0 >= t && !self.done {
                return Some(current);
            }
        }
        loop {
            let sample = self.next()?;
            if sample.0 >= t {
                return Some(sample);
            }
        }
    }

    /// Corruption found while decoding (data ended before the sample count was reached).
    pub fn err(&self) -> Option<&str> {
        self.err.as_deref()
    }
}

impl Iterator for XorIterator<'_> {
    type Item = (i64, f64);

    #[inline]
    fn next(&mut self) -> Option<(i64, f64)> {
        if self.done {
            return None;
        }
        match self.decoder.next_sample() {
            Ok(Some((t, v))) => {
                let sample = (t, f64::from_bits(v));
                self.current = Some(sample);
                Some(sample)
            }
            Ok(None) => {
                self.done = true;
                None
            }
            Err(detail) => {
                self.done = true;
                self.err = Some(detail);
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.done {
            return (0, Some(0));
        }
        let left = usize::from(self.decoder.total - self.decoder.read);
        (0, Some(left))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::STALE_NAN_BITS;
    use proptest::prelude::*;

    fn encode(samples: &[(i64, u64)]) -> XorChunk {
        let mut chunk = XorChunk::new();
        for &(t, v) in samples {
            chunk.append(t, f64::from_bits(v));
        }
        chunk
    }

    fn decode_bits(data: &[u8]) -> (Vec<(i64, u64)>, Option<String>) {
        let mut it = XorIterator::new(data);
        let samples = it.by_ref().map(|(t, v)| (t, v.to_bits())).collect();
        (samples, it.err().map(str::to_string))
    }

    #[test]
    fn empty_chunk_is_the_count_alone() {
        let chunk = XorChunk::new();
        assert_eq!(chunk.bytes(), [0, 0]);
        assert_eq!(chunk.num_samples(), 0);
        assert_eq!(chunk.last_sample(), None);
        assert_eq!(chunk.first_timestamp(), None);
        assert_eq!(chunk.iter().next(), None);
        assert_eq!(chunk.iter().err(), None);
    }

    /// Worked by hand from the format description:
    ///
    /// ```text
    /// count 3                                       00 03
    /// s0: t=1000 varint(2000)=0xd0 0x0f             d0 0f
    ///     v=1.0 = 0x3ff0000000000000               3f f0 00 00 00 00 00 00
    ///     (whole-byte writes end aligned: one empty byte, free=8)
    /// s1: dt=1000 uvarint = 0xe8 0x07               e8 07   (again an empty byte after)
    ///     v=2.0: 0x4000000000000000 ^ 0x3ff0000000000000 = 0x7ff0000000000000
    ///       leading 1, trailing 52, significant 11
    ///     '11' 00001 001011 11111111111            -> 24 bits
    /// s2: dt=1000, dod=0: '0'; v=2.0 again: '0'    -> 2 bits
    /// bits after s1's uvarint: 11 00001 001011 11111111111 0 0 (26 bits, 6 free)
    ///   1100 0010 | 0101 1111 | 1111 1111 | 0000 0000 -> c2 5f ff 00
    /// ```
    #[test]
    fn hand_checked_vector() {
        let chunk = encode(&[
            (1000, 1.0f64.to_bits()),
            (2000, 2.0f64.to_bits()),
            (3000, 2.0f64.to_bits()),
        ]);
        let want = [
            0x00, 0x03, // count
            0xd0, 0x0f, // varint 1000
            0x3f, 0xf0, 0, 0, 0, 0, 0, 0, // 1.0
            0xe8, 0x07, // uvarint 1000
            0xc2, 0x5f, 0xff, 0x00,
        ];
        assert_eq!(chunk.bytes(), want);
        assert_eq!(
            chunk.iter().collect::<Vec<_>>(),
            [(1000, 1.0), (2000, 2.0), (3000, 2.0)]
        );
    }

    /// A chunk written by Prometheus 2.42 (`promtool tsdb create-blocks-from openmetrics` on
    /// these eight samples): exercises every dod bucket but the 64-bit one, window reuse and
    /// new windows, -0.0, +Inf and Go's NaN (`math.NaN()`, 0x7ff8000000000001).
    #[test]
    fn matches_a_chunk_written_by_prometheus() {
        const PROMETHEUS: [u8; 66] = [
            0x00, 0x08, 0x80, 0xa0, 0xab, 0xfe, 0xf9, 0x62, 0x3f, 0xf0, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x98, 0x75, 0xc2, 0x6f, 0xff, 0x48, 0x00, 0x1c, 0x07, 0x60, 0x03, 0x7f,
            0xfd, 0x7f, 0xf9, 0xc2, 0x98, 0x13, 0xb3, 0x48, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
            0xee, 0x7d, 0x48, 0xcf, 0xcf, 0x3f, 0x90, 0xf2, 0x20, 0x01, 0xd6, 0x77, 0x0d, 0xac,
            0x30, 0xfd, 0x06, 0x39, 0xf6, 0x94, 0x46, 0x67, 0xb0, 0x18,
        ];
        let samples = [
            (1_700_000_000_000, 1.0f64.to_bits()),
            (1_700_000_015_000, 2.5f64.to_bits()),
            (1_700_000_030_000, 2.5f64.to_bits()),
            (1_700_000_045_001, (-0.0f64).to_bits()),
            (1_700_000_060_000, f64::INFINITY.to_bits()),
            (1_700_000_160_000, 0x7ff8_0000_0000_0001),
            (1_700_000_161_000, 1e300f64.to_bits()),
            (1_700_000_176_000, 0.1f64.to_bits()),
        ];
        assert_eq!(decode_bits(&PROMETHEUS), (samples.to_vec(), None));
        assert_eq!(encode(&samples).bytes(), PROMETHEUS);
        for split in 0..=samples.len() {
            let mut c = XorChunk::from_bytes(encode(&samples[..split]).into_bytes()).unwrap();
            for &(t, v) in &samples[split..] {
                c.append(t, f64::from_bits(v));
            }
            assert_eq!(c.bytes(), PROMETHEUS, "split at {split}");
        }
    }

    #[test]
    fn single_sample_keeps_the_trailing_empty_byte() {
        let chunk = encode(&[(0, 0)]);
        // varint(0) = 00, 64 zero bits, then Go's empty trailing byte.
        assert_eq!(chunk.bytes(), [0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let reopened = XorChunk::from_bytes(chunk.bytes().to_vec()).unwrap();
        assert_eq!(reopened.free, 8);
    }

    #[test]
    fn stale_nan_and_special_floats_round_trip_bit_exactly() {
        let values = [
            STALE_NAN_BITS,
            f64::NAN.to_bits(),
            0x7ff8_0000_0000_0001, // NaN with payload
            0xfff8_0000_0000_0000, // negative NaN
            f64::INFINITY.to_bits(),
            f64::NEG_INFINITY.to_bits(),
            0.0f64.to_bits(),
            (-0.0f64).to_bits(),
            f64::MIN_POSITIVE.to_bits(),
            1, // smallest subnormal
            f64::MAX.to_bits(),
            STALE_NAN_BITS,
            STALE_NAN_BITS,
            u64::MAX,
            0,
        ];
        let samples: Vec<(i64, u64)> = values
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as i64 * 15_000, v))
            .collect();
        let chunk = encode(&samples);
        assert_eq!(decode_bits(chunk.bytes()), (samples, None));
        let (t, v) = chunk.last_sample().unwrap();
        assert_eq!((t, v.to_bits()), (14 * 15_000, 0));
    }

    #[test]
    fn dod_bucket_boundaries_and_huge_values() {
        let dods: [i64; 16] = [
            0,
            8192,
            -8191,
            8193,
            -8192,
            65536,
            -65535,
            65537,
            -65536,
            524288,
            -524287,
            524289,
            -524288,
            i64::MAX / 4,
            i64::MIN / 4,
            1,
        ];
        let mut samples = vec![(0i64, 0u64), (1_000_000_000, 1)];
        let mut delta = 1_000_000_000i64;
        for (i, dod) in dods.iter().enumerate() {
            delta += dod;
            let t = samples.last().unwrap().0 + delta;
            samples.push((t, i as u64));
        }
        let chunk = encode(&samples);
        assert_eq!(decode_bits(chunk.bytes()), (samples, None));
    }

    #[test]
    fn dod_fields_use_the_expected_widths() {
        // Three samples: the third's dod decides the field; values constant so each value
        // field after the first is a single '0' bit.
        let bit_len = |c: &XorChunk| c.bytes().len() * 8 - usize::from(c.free);
        let bits_for = |dod: i64| {
            let three = encode(&[(0, 0), (100_000, 0), (200_000 + dod, 0)]);
            let two = encode(&[(0, 0), (100_000, 0)]);
            bit_len(&three) - bit_len(&two)
        };
        assert_eq!(bits_for(0), 1 + 1);
        assert_eq!(bits_for(8192), 2 + 14 + 1);
        assert_eq!(bits_for(-8191), 2 + 14 + 1);
        assert_eq!(bits_for(-8192), 3 + 17 + 1);
        assert_eq!(bits_for(65536), 3 + 17 + 1);
        assert_eq!(bits_for(65537), 4 + 20 + 1);
        assert_eq!(bits_for(524288), 4 + 20 + 1);
        assert_eq!(bits_for(-524288), 4 + 64 + 1);
    }

    #[test]
    fn negative_and_extreme_timestamps() {
        let samples = [
            (i64::MIN, 1u64),
            (-1_000_000, 2),
            (-1, 3),
            (0, 4),
            (i64::MAX, 5),
        ];
        let chunk = encode(&samples);
        assert_eq!(decode_bits(chunk.bytes()), (samples.to_vec(), None));
        assert_eq!(chunk.first_timestamp(), Some(i64::MIN));
    }

    #[test]
    fn truncated_data_reports_corruption() {
        let samples: Vec<(i64, u64)> = (0..50)
            .map(|i| (i * 15_000 + i % 7, (i as f64 * 1.5).to_bits()))
            .collect();
        let chunk = encode(&samples);
        let full = chunk.bytes();
        for cut in 0..full.len() - 1 {
            let (got, err) = decode_bits(&full[..cut]);
            assert!(err.is_some(), "cut at {cut} not reported");
            assert_eq!(got, samples[..got.len()], "cut at {cut}");
            assert!(XorChunk::from_bytes(full[..cut].to_vec()).is_err());
        }
    }

    #[test]
    fn from_bytes_rejects_garbage_after_the_samples() {
        let mut data = encode(&[(1, 1), (2, 2), (3, 3)]).into_bytes();
        data.extend_from_slice(&[0, 0]);
        assert!(XorChunk::from_bytes(data).is_err());

        let mut data = encode(&[(1, 1)]).into_bytes();
        *data.last_mut().unwrap() = 1; // a set bit in the empty trailing byte
        assert!(XorChunk::from_bytes(data).is_err());
    }

    #[test]
    fn reopened_all_zero_xor_chunk_resumes_like_a_fresh_one() {
        // No window exists after constant values; the next change must open one.
        let samples = [(1, 7u64), (2, 7), (3, 7), (4, 0x1234_5678)];
        let reopened = {
            let mut c = XorChunk::from_bytes(encode(&samples[..3]).into_bytes()).unwrap();
            c.append(4, f64::from_bits(0x1234_5678));
            c
        };
        assert_eq!(reopened.bytes(), encode(&samples).bytes());
    }

    #[test]
    fn reads_prometheus_reopened_window_form() {
        // What a Prometheus appender reopened on [(1,7),(2,7)] writes for (3, 8): it starts from
        // a (0, 0) window and writes '10' + 64 bits rather than '11'.
        let mut data = encode(&[(1, 7), (2, 7)]).into_bytes();
        let mut free = XorChunk::from_bytes(data.clone()).unwrap().free;
        let mut w = BitWriter::new(&mut data, free);
        w.write_bit(false); // dod 0
        w.write_bits(0b10, 2);
        w.write_bits(7 ^ 8, 64);
        free = w.free();
        data[1] = 3;
        assert_eq!(decode_bits(&data).0, [(1, 7), (2, 7), (3, 8)]);
        let mut reopened = XorChunk::from_bytes(data).unwrap();
        assert_eq!(reopened.free, free);
        reopened.append(4, f64::from_bits(9));
        assert_eq!(
            decode_bits(reopened.bytes()).0,
            [(1, 7), (2, 7), (3, 8), (4, 9)]
        );
    }

    #[test]
    fn seek_follows_prometheus_semantics() {
        let chunk = encode(&[(10, 1), (20, 2), (30, 3), (40, 4)]);
        let mut it = chunk.iter();
        assert_eq!(it.seek(i64::MIN).map(|s| s.0), Some(10));
        assert_eq!(it.seek(5).map(|s| s.0), Some(10), "never moves backwards");
        assert_eq!(it.seek(25).map(|s| s.0), Some(30));
        assert_eq!(
            it.seek(30).map(|s| s.0),
            Some(30),
            "current sample satisfies"
        );
        assert_eq!(it.next().map(|s| s.0), Some(40));
        assert_eq!(it.seek(41), None);
        assert_eq!(it.seek(0), None, "exhausted");
        assert_eq!(it.err(), None);

        let mut it = chunk.iter();
        assert_eq!(it.seek(40).map(|s| s.0), Some(40));
        let mut it = chunk.iter();
        assert_eq!(it.seek(100), None);
    }

    #[test]
    fn short_header_is_an_error() {
        let mut it = XorIterator::new(&[1]);
        assert_eq!(it.next(), None);
        assert!(it.err().is_some());
        assert!(XorChunk::from_bytes(vec![]).is_err());
    }

    #[test]
    fn shrink_to_fit_releases_capacity() {
        let mut chunk = encode(&[(1, 1), (2, 2)]);
        assert!(chunk.data.capacity() >= INITIAL_CAPACITY);
        chunk.shrink_to_fit();
        assert_eq!(chunk.data.capacity(), chunk.data.len());
        chunk.append(3, 3.0);
        assert_eq!(decode_bits(chunk.bytes()).0.len(), 3);
    }

    #[test]
    fn chunk_state_stays_small() {
        assert!(size_of::<XorChunk>() <= 56);
    }

    /// Strictly increasing timestamps mixing regular scrapes, jitter and huge jumps.
    fn timestamps() -> impl Strategy<Value = Vec<i64>> {
        (
            any::<i64>(),
            prop::collection::vec(
                prop_oneof![
                    4 => Just(15_000i64),
                    4 => 14_000i64..16_000,
                    2 => 1i64..100_000_000,
                    1 => 1i64..i64::MAX / 200,
                ],
                0..300,
            ),
        )
            .prop_map(|(start, steps)| {
                let start = start / 2;
                let mut t = start;
                let mut ts = vec![start];
                for step in steps {
                    match t.checked_add(step) {
                        Some(next) => t = next,
                        None => break,
                    }
                    ts.push(t);
                }
                ts
            })
    }

    fn values(len: usize) -> impl Strategy<Value = Vec<u64>> {
        prop::collection::vec(
            prop_oneof![
                any::<u64>(),
                any::<u64>().prop_map(|x| x & 0xffff_ffff_0000_0000),
                (0u32..1000).prop_map(|x| f64::from(x).to_bits()),
                Just(STALE_NAN_BITS),
                Just(0u64),
            ],
            len,
        )
    }

    fn samples() -> impl Strategy<Value = Vec<(i64, u64)>> {
        timestamps().prop_flat_map(|ts| {
            let len = ts.len();
            values(len).prop_map(move |vs| ts.iter().copied().zip(vs).collect())
        })
    }

    proptest! {
        /// Hostile bytes: a damaged chunk decodes to some samples and an error, never a panic,
        /// and never to more samples than its bits can hold.
        #[test]
        fn garbage_chunks_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut it = XorIterator::new(&data);
            let n = it.by_ref().take(100_000).count();
            prop_assert!(n <= data.len() * 8 + 2);
            let _ = it.err();
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]


        #[test]
        fn round_trips_bit_exactly(samples in samples()) {
            let chunk = encode(&samples);
            prop_assert_eq!(usize::from(chunk.num_samples()), samples.len());
            let (got, err) = decode_bits(chunk.bytes());
            prop_assert_eq!(err, None);
            prop_assert_eq!(got, samples.clone());
            let last = chunk.last_sample().map(|(t, v)| (t, v.to_bits()));
            prop_assert_eq!(last, samples.last().copied());
            prop_assert_eq!(chunk.first_timestamp(), samples.first().map(|s| s.0));
        }

        #[test]
        fn append_after_from_bytes_equals_one_shot(samples in samples(), split in any::<prop::sample::Index>()) {
            let split = split.index(samples.len() + 1);
            let mut reopened = XorChunk::from_bytes(encode(&samples[..split]).into_bytes()).unwrap();
            for &(t, v) in &samples[split..] {
                reopened.append(t, f64::from_bits(v));
            }
            let one_shot = encode(&samples);
            prop_assert_eq!(reopened.bytes(), one_shot.bytes());
            prop_assert_eq!(reopened.free, one_shot.free);
        }

        /// Independent oracle: the rusty-chunkenc crate decodes what we encode.
        #[test]
        fn rusty_chunkenc_decodes_our_chunks(samples in samples()) {
            let chunk = encode(&samples);
            let (_, decoded) = rusty_chunkenc::xor::read_xor_chunk_data(chunk.bytes())
                .map_err(|e| TestCaseError::fail(format!("rusty-chunkenc: {e}")))?;
            let got: Vec<(i64, u64)> = decoded
                .samples()
                .iter()
                .map(|s| (s.timestamp, s.value.to_bits()))
                .collect();
            prop_assert_eq!(got, samples);
        }

        #[test]
        fn seek_finds_the_first_sample_at_or_after(samples in samples(), target in any::<i64>()) {
            let chunk = encode(&samples);
            let want = samples.iter().find(|s| s.0 >= target).copied();
            let got = chunk.iter().seek(target).map(|(t, v)| (t, v.to_bits()));
            prop_assert_eq!(got, want);
        }
    }
}
