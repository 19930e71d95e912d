#!/usr/bin/env bash
# Query latency benchmark: `cairn query` over three receivers holding replicas of the same data
# vs Prometheus 2.42 holding that data, over HTTP, with dashboard-like range queries.
#
# Generates the data of bench/promql.sh (OpenMetrics -> `promtool tsdb create-blocks-from
# openmetrics` -> 2 h blocks), starts Prometheus 2.42 over the blocks (compaction off), starts
# three `cairn receive` (release build) with `--label replica="rN"` whose tenant directory holds
# the same blocks (hard links: the RF=3 picture, every series three times), and `cairn query
# --query.replica-label replica --query.replica-label tenant_id` over their StoreAPIs. Then
# `promql_bench http` checks that both APIs give the same answers (same series, same steps,
# values within 1e-9 relative) and times each query's HTTP round trip on both sides,
# interleaved; it prints the medians and Prometheus' time / Cairn's time (above 1: Cairn is
# faster). See bench/README.md.
#
# Environment (defaults in brackets):
#   TARGETS [100] HOURS [8] SCRAPE [15]   data shape (see bench/promql.sh)
#   STEP [60]          query step in seconds
#   RUNS [7]           timed runs per query and side (medians are reported)
#   QUERIES            comma-separated query names (default: all)
#   WORKDIR            keep data here and reuse it when the shape matches (default: a temp dir,
#                      removed at exit)
#   CARGO_TARGET_DIR [<repo>/target]  where the release build goes
#   CARGO_JOBS [1]     cargo build -j
#   PROMETHEUS_BIN [/usr/bin/prometheus] PROMTOOL_BIN [/usr/bin/promtool]
#   READY_TIMEOUT [120] seconds for the servers to become ready
#   REQUIRE_TARGETS [0] 1 exits 3 when Cairn's median latency is above Prometheus'
# Exit: 0 done, 2 a failure (answers differ, errors), 3 target missed (if required).
set -euo pipefail

NAME=query.sh WORK_PREFIX=cairn-query-bench
source "$(dirname "${BASH_SOURCE[0]}")/prom-blocks.sh"

log "building cairn and promql_bench (release, target dir $CARGO_TARGET_DIR)"
(cd "$ROOT" && cargo build --release -j "${CARGO_JOBS:-1}" -p cairn --bin cairn &&
  cargo build --release -j "${CARGO_JOBS:-1}" -p query --example promql_bench) >&2 ||
  die "cargo build failed"
CAIRN=$CARGO_TARGET_DIR/release/cairn
BENCH=$CARGO_TARGET_DIR/release/examples/promql_bench

make_blocks
start_prometheus

# --- three receivers with the same blocks --------------------------------------------------------
ENDPOINTS=()
for r in 1 2 3; do
  dir=$WORK/receive-$r
  rm -rf "$dir"
  mkdir -p "$dir/default-tenant"
  for b in "$WORK"/prom/*/; do
    [[ -f $b/meta.json ]] && cp -al "$b" "$dir/default-tenant/"
  done
  rw=$("$BENCH" free-port) http=$("$BENCH" free-port) grpc=$("$BENCH" free-port)
  log "starting receiver r$r (StoreAPI 127.0.0.1:$grpc)"
  "$CAIRN" receive \
    --remote-write.address="127.0.0.1:$rw" --http-address="127.0.0.1:$http" \
    --grpc-address="127.0.0.1:$grpc" --tsdb.path="$dir" --tsdb.retention=0s \
    --label="replica=\"r$r\"" >"$WORK/receive-$r.log" 2>&1 &
  PIDS+=($!)
  wait_ready "receiver r$r" "http://127.0.0.1:$http/-/ready" "${PIDS[-1]}" "$WORK/receive-$r.log"
  ENDPOINTS+=(--endpoint="127.0.0.1:$grpc")
done

# --- cairn query ---------------------------------------------------------------------------------
QUERY_PORT=$("$BENCH" free-port)
log "starting cairn query on 127.0.0.1:$QUERY_PORT"
"$CAIRN" query --http-address="127.0.0.1:$QUERY_PORT" "${ENDPOINTS[@]}" \
  --query.replica-label=replica --query.replica-label=tenant_id \
  >"$WORK/query.log" 2>&1 &
PIDS+=($!)
wait_ready "cairn query" "http://127.0.0.1:$QUERY_PORT/-/ready" "${PIDS[-1]}" "$WORK/query.log"

# --- run -----------------------------------------------------------------------------------------
log "running queries"
set +e
"$BENCH" http "$WORK/meta.json" "http://127.0.0.1:$PROM_PORT" "http://127.0.0.1:$QUERY_PORT"
status=$?
set -e
exit $status
