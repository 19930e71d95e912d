#!/usr/bin/env bash
# PromQL range-query benchmark: Cairn's engine vs Prometheus 2.42 over the same blocks.
#
# Generates dashboard-like data as OpenMetrics, turns it into 2 h blocks with
# `promtool tsdb create-blocks-from openmetrics`, starts Prometheus 2.42 on loopback over those
# blocks (compaction off, so both sides read the same blocks), then `promql_bench run` opens the
# same blocks in-process, checks every query gives the same result on both sides and times each
# one. Prometheus is timed by its own execTotalTime (stats=all); Cairn by the evaluation alone.
# Prints a table (Prometheus ms, Cairn ms, speedup) and whether the targets of issue 7 are met.
# See bench/README.md.
#
# Environment (defaults in brackets):
#   TARGETS [100]      scrape targets; each has 12 counters, 14 histogram series, 1 gauge
#   HOURS [8]          hours of data (queries cover all but the first hour)
#   SCRAPE [15]        seconds between samples
#   STEP [60]          query step in seconds
#   RUNS [7]           timed runs per query and side, interleaved (medians are reported)
#   QUERIES            comma-separated query names to run (default: all; see the table)
#   WORKDIR            keep data here and reuse it when the shape matches (default: a temp dir,
#                      removed at exit)
#   CARGO_TARGET_DIR [<repo>/target]  where the release build goes
#   CARGO_JOBS [1]     cargo build -j
#   PROMETHEUS_BIN [/usr/bin/prometheus] PROMTOOL_BIN [/usr/bin/promtool]
#   READY_TIMEOUT [120] seconds for Prometheus to become ready
#   REQUIRE_TARGETS [0] 1 exits 3 when a target is missed
# Exit: 0 done, 2 a failure (results differ, errors), 3 targets missed (if required).
set -euo pipefail

NAME=promql.sh WORK_PREFIX=cairn-promql-bench
source "$(dirname "${BASH_SOURCE[0]}")/prom-blocks.sh"

log "building promql_bench (release, target dir $CARGO_TARGET_DIR)"
(cd "$ROOT" && cargo build --release -j "${CARGO_JOBS:-1}" -p query --example promql_bench) >&2 ||
  die "cargo build failed"
BENCH=$CARGO_TARGET_DIR/release/examples/promql_bench

make_blocks
start_prometheus

# --- run -----------------------------------------------------------------------------------------
log "running queries"
set +e
"$BENCH" run "$WORK/meta.json" "$WORK/prom" "http://127.0.0.1:$PROM_PORT"
status=$?
set -e
exit $status
