//! Byte-level helpers shared by the index writer and reader: Go-compatible (LEB128) varints,
//! CRC-32C, and a bounds-checked decoder that never panics on malformed input. Public so that
//! readers of index pieces fetched from elsewhere (the store's index-header and bucket reads)
//! decode them the same way.

/// Longest valid encoding of a u64 as a uvarint.
pub const MAX_VARINT_LEN64: usize = 10;

/// Appends `x` as an unsigned LEB128 varint (Go's `binary.PutUvarint`).
pub fn put_uvarint(buf: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        buf.push((x as u8) | 0x80);
        x >>= 7;
    }
    buf.push(x as u8);
}

/// Appends `x` zigzag-encoded as a varint (Go's `binary.PutVarint`).
pub fn put_varint(buf: &mut Vec<u8>, x: i64) {
    put_uvarint(buf, ((x << 1) ^ (x >> 63)) as u64);
}

/// Number of bytes `put_uvarint(x)` appends.
pub fn uvarint_len(x: u64) -> usize {
    let bits = 64 - (x | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// CRC-32C (Castagnoli) of `data`.
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// Why decoding stopped: what was being read and at which absolute file offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub offset: u64,
    pub what: &'static str,
}

pub type DecResult<T> = Result<T, DecodeError>;

/// A cursor over a byte slice that knows the slice's absolute position in the file, so errors can
/// name an offset. Every read is bounds-checked.
#[derive(Clone)]
pub struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
    base: u64,
}

impl<'a> Decoder<'a> {
    /// `base` is the absolute file offset of `buf[0]`.
    pub fn new(buf: &'a [u8], base: u64) -> Self {
        Decoder { buf, pos: 0, base }
    }

    /// Absolute file offset of the next byte to read.
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn err<T>(&self, what: &'static str) -> DecResult<T> {
        Err(DecodeError {
            offset: self.offset(),
            what,
        })
    }

    pub fn bytes(&mut self, n: usize, what: &'static str) -> DecResult<&'a [u8]> {
        if n > self.remaining() {
            return self.err(what);
        }
        let b = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(b)
    }

    pub fn be32(&mut self, what: &'static str) -> DecResult<u32> {
        let b = self.bytes(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Decodes a uvarint, rejecting truncated and overflowing encodings like Go's
    /// `binary.Uvarint`.
    pub fn uvarint(&mut self, what: &'static str) -> DecResult<u64> {
        let mut x: u64 = 0;
        let mut shift = 0u32;
        for i in 0..MAX_VARINT_LEN64 {
            let Some(&b) = self.buf.get(self.pos + i) else {
                return self.err(what);
            };
            if b < 0x80 {
                if i == MAX_VARINT_LEN64 - 1 && b > 1 {
                    return self.err(what);
                }
                self.pos += i + 1;
                return Ok(x | (u64::from(b) << shift));
            }
            x |= u64::from(b & 0x7f) << shift;
            shift += 7;
        }
        self.err(what)
    }

    /// Decodes a zigzag varint.
    pub fn varint(&mut self, what: &'static str) -> DecResult<i64> {
        let ux = self.uvarint(what)?;
        Ok(((ux >> 1) as i64) ^ -((ux & 1) as i64))
    }

    /// A uvarint that must fit in `u32`.
    pub fn uvarint32(&mut self, what: &'static str) -> DecResult<u32> {
        let start = self.pos;
        let v = self.uvarint(what)?;
        u32::try_from(v).or_else(|_| {
            self.pos = start;
            self.err(what)
        })
    }

    /// A uvarint length followed by that many bytes.
    pub fn uvarint_bytes(&mut self, what: &'static str) -> DecResult<&'a [u8]> {
        let start = self.pos;
        let n = self.uvarint(what)?;
        match usize::try_from(n) {
            Ok(n) if n <= self.remaining() => self.bytes(n, what),
            _ => {
                self.pos = start;
                self.err(what)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_enc_uvarint_round_trip_and_lengths() {
        let values = [
            0u64,
            1,
            127,
            128,
            255,
            300,
            16_383,
            16_384,
            u32::MAX as u64,
            u64::MAX / 2,
            u64::MAX,
        ];
        for &v in &values {
            let mut buf = Vec::new();
            put_uvarint(&mut buf, v);
            assert_eq!(buf.len(), uvarint_len(v), "length of {v}");
            let mut d = Decoder::new(&buf, 0);
            assert_eq!(d.uvarint("v").unwrap(), v);
            assert_eq!(d.remaining(), 0);
        }
        for &v in &[0i64, 1, -1, 63, -64, 64, -65, i64::MAX, i64::MIN] {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            let mut d = Decoder::new(&buf, 0);
            assert_eq!(d.varint("v").unwrap(), v);
        }
        // Go's encoding of -1 as a varint is 0x01, of 1 is 0x02.
        let mut buf = Vec::new();
        put_varint(&mut buf, -1);
        put_varint(&mut buf, 1);
        assert_eq!(buf, [1, 2]);
    }

    #[test]
    fn index_enc_decoder_rejects_bad_input() {
        let mut d = Decoder::new(&[0x80, 0x80], 100);
        assert_eq!(
            d.uvarint("x"),
            Err(DecodeError {
                offset: 100,
                what: "x"
            })
        );
        // 11 continuation bytes: overflow.
        let long = [0xffu8; 11];
        assert!(Decoder::new(&long, 0).uvarint("x").is_err());
        // 10th byte > 1: overflow.
        let mut over = [0xffu8; 10];
        over[9] = 2;
        assert!(Decoder::new(&over, 0).uvarint("x").is_err());
        over[9] = 1;
        assert_eq!(Decoder::new(&over, 0).uvarint("x"), Ok(u64::MAX));
        // Length prefix larger than what remains.
        let mut d = Decoder::new(&[5, b'a', b'b'], 0);
        assert!(d.uvarint_bytes("s").is_err());
        assert_eq!(d.remaining(), 3);
        let mut d = Decoder::new(&[0, 0, 1], 7);
        assert_eq!(d.be32("n").unwrap_err().offset, 7);
        // uvarint32 rejects values above u32::MAX.
        let mut buf = Vec::new();
        put_uvarint(&mut buf, u64::from(u32::MAX) + 1);
        assert!(Decoder::new(&buf, 0).uvarint32("r").is_err());
    }
}
