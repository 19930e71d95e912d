//! Chunk encodings. Only XOR (Prometheus encoding 1) for float samples so far.
//!
//! API contract (used by head, block writer and readers):
//! - `XorChunk::new()` starts an empty chunk; `append(t, v)` adds a sample (caller guarantees
//!   t strictly increasing); `num_samples()`; `bytes()` is the chunk data exactly as stored in
//!   a Prometheus chunk segment file (2-byte BE count + bitstream), without the encoding byte.
//! - `XorChunk::from_bytes(Vec<u8>)` wraps stored data and allows further appends (the
//!   appender state is recovered by decoding).
//! - `XorIterator::new(&[u8])` decodes stored data; `next()` yields `(t, v)`;
//!   `seek(t)` advances to the first sample with timestamp >= t; `err()` reports corruption.

mod bstream;
mod xor;

pub use xor::{XorChunk, XorIterator};

/// Encoding byte of XOR float chunks in segment files.
pub const ENCODING_XOR: u8 = 1;
/// Encoding byte of native histogram chunks (not supported yet; readers skip them with an error).
pub const ENCODING_HISTOGRAM: u8 = 2;
/// Encoding byte of float native histogram chunks.
pub const ENCODING_FLOAT_HISTOGRAM: u8 = 3;

/// Samples per chunk before the head cuts a new one (Prometheus' default target).
pub const SAMPLES_PER_CHUNK: u16 = 120;
