//! MSB-first bit stream writer and reader used by the XOR encoding.
//!
//! Bits fill each byte from its most significant bit down:
//!
//! ```text
//! write_bits(0b101, 3); write_bits(0b11, 2)   ->   byte 0: 1 0 1 1 1 . . .   (free = 3)
//! ```
//!
//! The writer reproduces one quirk of Prometheus' Go `bstream` so that chunk bytes are identical
//! to Prometheus' (a chunk's length is part of what is stored and checksummed): Go writes whole
//! bytes with a routine that always leaves a fresh byte after the one it completed, so when a
//! write of a multiple of 8 bits ends exactly on a byte boundary the stream carries one extra,
//! still empty, trailing byte (`free == 8`). Later bits go into that byte before a new one is
//! added. A write whose width is not a multiple of 8 ends bit by bit and leaves no such byte.

/// Appends bits to a byte vector. Borrows the vector and carries `free`, the number of unused
/// low bits in its last byte (0..=8), so the owner (an XOR chunk) stores only the vector and one
/// byte of state between appends.
pub(crate) struct BitWriter<'a> {
    buf: &'a mut Vec<u8>,
    free: u8,
}

impl<'a> BitWriter<'a> {
    /// Resumes writing at the end of `buf`, whose last byte has `free` unused low bits.
    #[inline]
    pub(crate) fn new(buf: &'a mut Vec<u8>, free: u8) -> Self {
        debug_assert!(free <= 8);
        debug_assert!(free == 0 || !buf.is_empty());
        BitWriter { buf, free }
    }

    /// Unused low bits in the last byte after the writes so far; store it to resume later.
    #[inline]
    pub(crate) fn free(&self) -> u8 {
        self.free
    }

    #[inline]
    pub(crate) fn write_bit(&mut self, bit: bool) {
        if self.free == 0 {
            self.buf.push(0);
            self.free = 8;
        }
        self.free -= 1;
        if bit {
            // `free > 0` implies the vector has a last byte.
            let last = self.buf.len() - 1;
            self.buf[last] |= 1 << self.free;
        }
    }

    /// Writes the low `nbits` bits of `value` (1..=64), most significant first.
    #[inline]
    pub(crate) fn write_bits(&mut self, value: u64, nbits: u32) {
        debug_assert!((1..=64).contains(&nbits));
        // Left-align the bits to write; everything below them is zero.
        let mut bits = value << (64 - nbits);
        let mut left = nbits;

        if self.free > 0 {
            let free = u32::from(self.free);
            let last = self.buf.len() - 1;
            self.buf[last] |= (bits >> (64 - free)) as u8;
            let used = free.min(left);
            bits <<= used;
            left -= used;
            self.free -= used as u8;
        }
        while left >= 8 {
            self.buf.push((bits >> 56) as u8);
            bits <<= 8;
            left -= 8;
        }
        if left > 0 {
            self.buf.push((bits >> 56) as u8);
            self.free = (8 - left) as u8;
        }
        // Go's whole-byte writer leaves an empty byte behind (see the module doc).
        if nbits.is_multiple_of(8) && self.free == 0 {
            self.buf.push(0);
            self.free = 8;
        }
    }

    #[inline]
    pub(crate) fn write_byte(&mut self, byte: u8) {
        self.write_bits(u64::from(byte), 8);
    }
}

/// Reads bits MSB-first from a byte slice. Reads past the end return `None` and do not move.
#[derive(Clone, Debug)]
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    /// Position of the next bit to read, counted from the first bit of `data`.
    pos: usize,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        BitReader { data, pos: 0 }
    }

    /// Bits read so far.
    #[inline]
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    #[inline]
    pub(crate) fn read_bit(&mut self) -> Option<bool> {
        let byte = *self.data.get(self.pos >> 3)?;
        let bit = (byte >> (7 - (self.pos & 7))) & 1;
        self.pos += 1;
        Some(bit != 0)
    }

    /// Reads `nbits` bits (1..=64) into the low bits of the result.
    #[inline]
    pub(crate) fn read_bits(&mut self, nbits: u32) -> Option<u64> {
        debug_assert!((1..=64).contains(&nbits));
        let n = nbits as usize;
        if n > self.data.len() * 8 - self.pos {
            return None;
        }
        let index = self.pos >> 3;
        let offset = (self.pos & 7) as u32;
        let mut window = self.load_be_u64(index) << offset;
        if offset + nbits > 64 {
            // The bits straddle nine bytes; the bounds check above guarantees the ninth exists.
            window |= u64::from(self.data[index + 8]) >> (8 - offset);
        }
        self.pos += n;
        Some(window >> (64 - nbits))
    }

    #[inline]
    pub(crate) fn read_byte(&mut self) -> Option<u8> {
        self.read_bits(8).map(|b| b as u8)
    }

    /// Eight bytes from `index` as a big-endian word, zero-filled past the end of the data.
    #[inline]
    fn load_be_u64(&self, index: usize) -> u64 {
        match self.data.get(index..index + 8) {
            Some(word) => u64::from_be_bytes(word.try_into().expect("slice of 8 bytes")),
            None => {
                let rest = &self.data[index..];
                let mut word = [0u8; 8];
                word[..rest.len()].copy_from_slice(rest);
                u64::from_be_bytes(word)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bits_fill_bytes_from_the_top() {
        let mut buf = Vec::new();
        let mut w = BitWriter::new(&mut buf, 0);
        w.write_bits(0b101, 3);
        w.write_bits(0b11, 2);
        w.write_bit(false);
        w.write_bit(true);
        assert_eq!(w.free(), 1);
        assert_eq!(buf, [0b1011_1010]);
    }

    #[test]
    fn whole_byte_writes_leave_an_empty_byte_like_go() {
        let mut buf = Vec::new();
        let mut w = BitWriter::new(&mut buf, 0);
        w.write_byte(0xab);
        assert_eq!(w.free(), 8);
        w.write_bits(0x1234, 16);
        assert_eq!(w.free(), 8);
        // A bit-wise write that ends on the boundary leaves no empty byte.
        w.write_bits(0b1, 1);
        w.write_bits(0x7f, 7);
        assert_eq!(w.free(), 0);
        assert_eq!(buf, [0xab, 0x12, 0x34, 0xff]);

        // Unaligned whole-byte writes straddle two bytes and keep `free`.
        let mut buf = Vec::new();
        let mut w = BitWriter::new(&mut buf, 0);
        w.write_bit(true);
        w.write_byte(0xff);
        assert_eq!(w.free(), 7);
        assert_eq!(buf, [0xff, 0x80]);
    }

    #[test]
    fn reads_past_the_end_fail_without_moving() {
        let data = [0xf0, 0x0f];
        let mut r = BitReader::new(&data);
        assert_eq!(r.read_bits(4), Some(0xf));
        assert_eq!(r.read_bits(13), None);
        assert_eq!(r.read_bits(12), Some(0x00f));
        assert_eq!(r.read_bit(), None);
        assert_eq!(r.position(), 16);
    }

    #[test]
    fn reads_64_bits_at_every_offset() {
        let data: Vec<u8> = (1..=17).collect();
        for offset in 0..8u32 {
            let mut r = BitReader::new(&data);
            if offset > 0 {
                r.read_bits(offset).unwrap();
            }
            let got = r.read_bits(64).unwrap();
            let want = (u128::from_be_bytes(data[..16].try_into().unwrap()) << offset >> 64) as u64;
            assert_eq!(got, want, "offset {offset}");
        }
    }

    proptest! {
        #[test]
        fn writes_read_back(fields in prop::collection::vec((any::<u64>(), 1u32..=64), 0..64)) {
            let mut buf = Vec::new();
            let mut w = BitWriter::new(&mut buf, 0);
            let mut total = 0usize;
            for &(value, nbits) in &fields {
                if nbits == 1 {
                    w.write_bit(value & 1 == 1);
                } else {
                    w.write_bits(value, nbits);
                }
                total += nbits as usize;
            }
            let free = usize::from(w.free());
            prop_assert_eq!(buf.len() * 8 - free, total);
            let mut r = BitReader::new(&buf);
            for &(value, nbits) in &fields {
                let mask = if nbits == 64 { u64::MAX } else { (1 << nbits) - 1 };
                prop_assert_eq!(r.read_bits(nbits), Some(value & mask));
            }
            prop_assert_eq!(r.position(), total);
        }
    }
}
