//! Minimal protobuf wire-format reading and writing (varints, tags, length-delimited fields).

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed protobuf at byte {offset}: {what}")]
pub struct WireError {
    pub offset: usize,
    pub what: &'static str,
}

pub const VARINT: u8 = 0;
pub const FIXED64: u8 = 1;
pub const LEN: u8 = 2;
pub const FIXED32: u8 = 5;

/// A cursor over a protobuf message; `base` is the message's offset in the whole request, so
/// errors point at the right byte.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], base: usize) -> Self {
        Reader { buf, pos: 0, base }
    }

    pub fn offset(&self) -> usize {
        self.base + self.pos
    }

    pub fn err(&self, what: &'static str) -> WireError {
        WireError {
            offset: self.offset(),
            what,
        }
    }

    pub fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// The bytes not read yet and their offset in the request.
    pub fn rest(&self) -> (&'a [u8], usize) {
        (&self.buf[self.pos.min(self.buf.len())..], self.offset())
    }

    #[inline]
    pub fn varint(&mut self) -> Result<u64, WireError> {
        let mut x = 0u64;
        let mut shift = 0;
        loop {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(self.err("truncated varint"));
            };
            self.pos += 1;
            if shift == 63 && b > 1 {
                return Err(self.err("varint overflows 64 bits"));
            }
            x |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(x);
            }
            shift += 7;
        }
    }

    /// Reads a field tag: (field number, wire type).
    #[inline]
    pub fn tag(&mut self) -> Result<(u32, u8), WireError> {
        let t = self.varint()?;
        let field = (t >> 3) as u32;
        if field == 0 {
            return Err(self.err("field number 0"));
        }
        Ok((field, (t & 7) as u8))
    }

    #[inline]
    pub fn fixed64(&mut self) -> Result<u64, WireError> {
        let end = self.pos + 8;
        let Some(b) = self.buf.get(self.pos..end) else {
            return Err(self.err("truncated fixed64"));
        };
        self.pos = end;
        Ok(u64::from_le_bytes(b.try_into().unwrap()))
    }

    /// A length-delimited field's bytes and their offset in the request.
    #[inline]
    pub fn bytes(&mut self) -> Result<(&'a [u8], usize), WireError> {
        let n = self.varint()? as usize;
        let start = self.pos;
        let Some(b) = start
            .checked_add(n)
            .and_then(|end| self.buf.get(start..end))
        else {
            return Err(self.err("length-delimited field runs past the end"));
        };
        self.pos = start + n;
        Ok((b, self.base + start))
    }

    pub fn str(&mut self) -> Result<&'a str, WireError> {
        let at = self.offset();
        let (b, _) = self.bytes()?;
        // Label strings are short and nearly always ASCII: an inlined ASCII check is much
        // cheaper than the general validator's call for each of them.
        if b.is_ascii() {
            // SAFETY: ASCII bytes are valid UTF-8.
            return Ok(unsafe { std::str::from_utf8_unchecked(b) });
        }
        std::str::from_utf8(b).map_err(|_| WireError {
            offset: at,
            what: "string is not valid UTF-8",
        })
    }

    /// Skips a field of the given wire type.
    pub fn skip(&mut self, wire_type: u8) -> Result<(), WireError> {
        match wire_type {
            VARINT => self.varint().map(|_| ()),
            FIXED64 => self.fixed64().map(|_| ()),
            LEN => self.bytes().map(|_| ()),
            FIXED32 => {
                if self.pos + 4 > self.buf.len() {
                    return Err(self.err("truncated fixed32"));
                }
                self.pos += 4;
                Ok(())
            }
            _ => Err(self.err("unsupported wire type")),
        }
    }
}

/// Undoes `sint64`'s zigzag encoding.
pub fn unzigzag64(n: u64) -> i64 {
    ((n >> 1) as i64) ^ -((n & 1) as i64)
}

/// Undoes `sint32`'s zigzag encoding; like every protobuf parser, keeps the low 32 bits of an
/// over-long varint.
pub fn unzigzag32(n: u64) -> i32 {
    let n = n as u32;
    ((n >> 1) as i32) ^ -((n & 1) as i32)
}

pub fn zigzag64(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub fn zigzag32(v: i32) -> u64 {
    u64::from(((v << 1) ^ (v >> 31)) as u32)
}

pub fn put_varint(out: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        out.push((x as u8) | 0x80);
        x >>= 7;
    }
    out.push(x as u8);
}

/// Bytes [`put_varint`] writes for `x`.
pub fn varint_len(x: u64) -> usize {
    (64 - (x | 1).leading_zeros() as usize).div_ceil(7)
}

pub fn put_tag(out: &mut Vec<u8>, field: u32, wire_type: u8) {
    put_varint(out, (u64::from(field) << 3) | u64::from(wire_type));
}

pub fn put_bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    put_tag(out, field, LEN);
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Writes a nested message: tag, then the length, then whatever `f` writes.
pub fn put_message(out: &mut Vec<u8>, field: u32, f: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    f(&mut inner);
    put_bytes(out, field, &inner);
}
