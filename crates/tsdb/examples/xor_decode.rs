//! Times XOR chunk decoding: `cargo run --release -p tsdb --example xor_decode`.
//!
//! Builds 20,000 chunks of 120 samples shaped like scraped data (15 s interval with a little
//! jitter; counters, gauges with decimals, constant values) and prints the decode rate.

// A benchmark prints its figures.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::time::Instant;

use tsdb::chunkenc::{XorChunk, XorIterator};

fn main() {
    let mut chunks = Vec::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for c in 0..20_000u64 {
        let mut chunk = XorChunk::new();
        let mut t = 1_700_000_000_000i64 + (rand() % 15_000) as i64;
        let mut v = (rand() % 1000) as f64;
        for _ in 0..120 {
            chunk.append(t, v);
            t += 15_000 + (rand() % 5) as i64 - 2;
            v = match c % 3 {
                0 => v + (rand() % 100) as f64,
                1 => (rand() % 10_000) as f64 / 100.0,
                _ => v,
            };
        }
        chunks.push(chunk.into_bytes());
    }
    let samples = chunks.len() * 120;
    let mut best = f64::MAX;
    let mut check = 0f64;
    for _ in 0..7 {
        let started = Instant::now();
        for c in &chunks {
            for (t, v) in XorIterator::new(c) {
                check += v + t as f64;
            }
        }
        best = best.min(started.elapsed().as_secs_f64());
    }
    println!(
        "{samples} samples: best {:.2} ns/sample ({:.0} M samples/s) [{check:e}]",
        best * 1e9 / samples as f64,
        samples as f64 / best / 1e6
    );
}
