//! Chunk encodings: XOR (Prometheus encoding 1) for float samples, and Thanos' aggregate chunk
//! (encoding `0xFF`, [`aggr`]) that downsampled blocks store.
//!
//! API contract (used by head, block writer and readers):
//! - `XorChunk::new()` starts an empty chunk; `append(t, v)` adds a sample (caller guarantees
//!   t strictly increasing); `num_samples()`; `bytes()` is the chunk data exactly as stored in
//!   a Prometheus chunk segment file (2-byte BE count + bitstream), without the encoding byte.
//! - `XorChunk::from_bytes(Vec<u8>)` wraps stored data and allows further appends (the
//!   appender state is recovered by decoding).
//! - `XorIterator::new(&[u8])` decodes stored data; `next()` yields `(t, v)`;
//!   `seek(t)` advances to the first sample with timestamp >= t; `err()` reports corruption.

pub mod aggr;
mod bstream;
pub mod histogram;
pub mod value;
mod xor;

pub use aggr::{encode_aggr_chunk, AggrChunk, AggrType, SubChunk};
pub use histogram::{
    CounterResetHeader, Cut, FloatHistogramChunk, FloatHistogramIterator, HistogramChunk,
    HistogramIterator,
};
pub use value::{AnyChunk, Value};
pub use xor::{XorChunk, XorIterator};

/// Encoding byte of XOR float chunks in segment files.
pub const ENCODING_XOR: u8 = 1;
/// Encoding byte of native histogram chunks ([`HistogramChunk`]).
pub const ENCODING_HISTOGRAM: u8 = 2;
/// Encoding byte of float native histogram chunks ([`FloatHistogramChunk`]).
pub const ENCODING_FLOAT_HISTOGRAM: u8 = 3;
/// Encoding byte of Thanos' aggregate chunks in downsampled blocks (`downsample.ChunkEncAggr`:
/// the highest byte, chosen by Thanos to stay clear of Prometheus' own encodings).
pub const ENCODING_AGGR: u8 = 0xFF;

/// Samples per chunk before the head cuts a new one (Prometheus' default target).
pub const SAMPLES_PER_CHUNK: u16 = 120;

/// Go's `encoding/binary` variable-length integers, as Prometheus' formats use them: unsigned
/// values in little-endian base-128 groups (high bit = more follows), signed values zig-zag
/// mapped first. Shared by the chunk, segment and tombstone encoders of this crate.
pub(crate) mod varint {
    /// Longest encoding of a 64-bit value (ten 7-bit groups).
    pub(crate) const MAX_LEN_64: usize = 10;

    /// Encodes `x` into `buf`, returning how many bytes were used.
    #[inline]
    pub(crate) fn encode_uvarint(mut x: u64, buf: &mut [u8; MAX_LEN_64]) -> usize {
        let mut i = 0;
        while x >= 0x80 {
            buf[i] = (x as u8) | 0x80;
            x >>= 7;
            i += 1;
        }
        buf[i] = x as u8;
        i + 1
    }

    /// Zig-zag maps `x` so small magnitudes of either sign stay short, then encodes it.
    #[inline]
    pub(crate) fn encode_varint(x: i64, buf: &mut [u8; MAX_LEN_64]) -> usize {
        encode_uvarint(zigzag(x), buf)
    }

    pub(crate) fn put_uvarint(out: &mut Vec<u8>, x: u64) {
        let mut buf = [0u8; MAX_LEN_64];
        let n = encode_uvarint(x, &mut buf);
        out.extend_from_slice(&buf[..n]);
    }

    pub(crate) fn put_varint(out: &mut Vec<u8>, x: i64) {
        put_uvarint(out, zigzag(x));
    }

    #[inline]
    pub(crate) fn zigzag(x: i64) -> u64 {
        ((x << 1) ^ (x >> 63)) as u64
    }

    #[inline]
    pub(crate) fn unzigzag(ux: u64) -> i64 {
        ((ux >> 1) as i64) ^ -((ux & 1) as i64)
    }

    /// Decodes an unsigned varint at the start of `buf`: `(value, bytes used)`, or `None` if
    /// `buf` ends inside the varint or the value does not fit 64 bits (as Go rejects it).
    #[inline]
    pub(crate) fn decode_uvarint(buf: &[u8]) -> Option<(u64, usize)> {
        let mut x = 0u64;
        for (i, &b) in buf.iter().enumerate().take(MAX_LEN_64) {
            // The tenth group may only hold the single top bit of a 64-bit value.
            if i == MAX_LEN_64 - 1 && b > 1 {
                return None;
            }
            x |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Some((x, i + 1));
            }
        }
        None
    }

    #[inline]
    pub(crate) fn decode_varint(buf: &[u8]) -> Option<(i64, usize)> {
        decode_uvarint(buf).map(|(ux, n)| (unzigzag(ux), n))
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use proptest::prelude::*;

        #[test]
        fn known_encodings_match_go() {
            let cases: &[(u64, &[u8])] = &[
                (0, &[0x00]),
                (1, &[0x01]),
                (127, &[0x7f]),
                (128, &[0x80, 0x01]),
                (300, &[0xac, 0x02]),
                (
                    u64::MAX,
                    &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
                ),
            ];
            for &(x, want) in cases {
                let mut out = Vec::new();
                put_uvarint(&mut out, x);
                assert_eq!(out, want, "uvarint {x}");
                assert_eq!(decode_uvarint(want), Some((x, want.len())));
            }
            // Zig-zag: 0 -> 0, -1 -> 1, 1 -> 2, -2 -> 3.
            for (x, z) in [(0i64, 0u64), (-1, 1), (1, 2), (-2, 3), (i64::MIN, u64::MAX)] {
                assert_eq!(zigzag(x), z);
                assert_eq!(unzigzag(z), x);
            }
        }

        #[test]
        fn rejects_truncated_and_overlong() {
            assert_eq!(decode_uvarint(&[]), None);
            assert_eq!(decode_uvarint(&[0x80]), None);
            assert_eq!(decode_uvarint(&[0xff; 10]), None);
            assert_eq!(
                decode_uvarint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]),
                None
            );
        }

        proptest! {
            #[test]
            fn varint_round_trip(x in any::<i64>(), ux in any::<u64>()) {
                let mut out = Vec::new();
                put_varint(&mut out, x);
                prop_assert_eq!(decode_varint(&out), Some((x, out.len())));
                out.clear();
                put_uvarint(&mut out, ux);
                prop_assert_eq!(decode_uvarint(&out), Some((ux, out.len())));
            }
        }
    }
}
