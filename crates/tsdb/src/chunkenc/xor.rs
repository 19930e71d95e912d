//! XOR ("Gorilla") float chunk encoding, Prometheus encoding byte 1.

use crate::Result;

pub struct XorChunk {}

impl XorChunk {
    pub fn new() -> Self {
        todo!()
    }
    pub fn from_bytes(_data: Vec<u8>) -> Result<Self> {
        todo!()
    }
    pub fn append(&mut self, _t: i64, _v: f64) {
        todo!()
    }
    pub fn num_samples(&self) -> u16 {
        todo!()
    }
    pub fn bytes(&self) -> &[u8] {
        todo!()
    }
    /// Shrinks allocation once the chunk is full (head memory).
    pub fn shrink_to_fit(&mut self) {
        todo!()
    }
    /// Heap bytes allocated for the chunk's data.
    pub fn capacity(&self) -> usize {
        todo!()
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

pub struct XorIterator<'a> {
    _data: &'a [u8],
}

impl<'a> XorIterator<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        XorIterator { _data: data }
    }
    /// Advances to the first sample with timestamp >= t; returns it, or None when exhausted.
    pub fn seek(&mut self, _t: i64) -> Option<(i64, f64)> {
        todo!()
    }
    /// Corruption found while decoding (data ended before the sample count was reached).
    pub fn err(&self) -> Option<&str> {
        todo!()
    }
}

impl Iterator for XorIterator<'_> {
    type Item = (i64, f64);
    fn next(&mut self) -> Option<(i64, f64)> {
        todo!()
    }
}
