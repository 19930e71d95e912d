#!/usr/bin/env bash
# Longer runs of the hostile-input property tests: every decoder fed from outside (remote write
# 1.0/2.0 and Thanos' gRPC WriteRequest, gRPC snappy, XOR and aggregate chunks, chunk segments,
# index files and index-headers, WAL segments, hint queues, and the hashrings, limits,
# objstore, relabel and meta.json files) gets CASES random or damaged inputs and must answer
# with a value or an error, never a panic, and allocate no more than a bound proportional to
# its size (tests/decoder_allocations.rs). The suite runs the same tests with proptest's
# default of 256 cases (a few with a fixed count of their own).
#
# Usage: CASES=100000 bench/fuzz.sh      # default 20000 cases per test; release build
set -euo pipefail
cd "$(dirname "$0")/.."
export PROPTEST_CASES=${CASES:-20000}
echo "== $PROPTEST_CASES cases per property test" >&2
cargo test --release -p proto -p tsdb -p store -p receive --lib -- \
  never_panic garbage random_damage damage_behind
cargo test --release -p receive --test hostile_config
# What those inputs (and a few built to lie about their lengths) make each decoder allocate.
cargo test --release -p cairn --test decoder_allocations -- --nocapture
