#!/usr/bin/env bash
# A receiver's memory under a wide query: how much one query selecting SERIES series (1 M by
# default) through `cairn query` raises the RSS of the receiver that serves them over the
# StoreAPI, against a stated bound.
#
# Starts one `cairn receive` (RF=1) on loopback, writes SERIES series x ROUNDS samples to it with
# `cairn bench remote-write`, starts `cairn query` with the receiver as its only endpoint, reads
# the receiver's VmRSS, resets its peak (VmHWM, `echo 5 > /proc/PID/clear_refs`), asks
# `count({env="prod"})` (every series of the load) over HTTP, and reads the peak again. The
# increase is what serving that answer cost the receiver.
#
# Environment (defaults in brackets):
#   SERIES [1000000] ROUNDS [3] CONCURRENCY [4] BATCH_SERIES [2000]   the load
#   QUERIES [3]                 times the query is asked (the peak is over all of them)
#   BOUND_BYTES_PER_SERIES [48] BOUND_BASE_MIB [64]   the stated bound: the increase may be at
#                               most BASE + BYTES_PER_SERIES x SERIES (handles and postings)
#   CAIRN_BIN                   use this cairn binary instead of building one
#   CARGO_TARGET_DIR [<repo>/target]
#   BENCH_TMPDIR [$TMPDIR or /tmp]   parent of the temp data dirs
#   READY_TIMEOUT [60] QUERY_TIMEOUT [300]   seconds
#   KEEP [0]                    1 keeps the temp dir (data and logs)
#   REQUIRE_TARGETS [0]         1 exits 3 when the increase is above the bound
# Exit: 0 done, 2 a failure, 3 the bound was missed (if required).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SERIES=${SERIES:-1000000}
ROUNDS=${ROUNDS:-3}
CONCURRENCY=${CONCURRENCY:-4}
BATCH_SERIES=${BATCH_SERIES:-2000}
QUERIES=${QUERIES:-3}
BOUND_BYTES_PER_SERIES=${BOUND_BYTES_PER_SERIES:-48}
BOUND_BASE_MIB=${BOUND_BASE_MIB:-64}
READY_TIMEOUT=${READY_TIMEOUT:-60}
QUERY_TIMEOUT=${QUERY_TIMEOUT:-300}
KEEP=${KEEP:-0}
REQUIRE_TARGETS=${REQUIRE_TARGETS:-0}

die() { echo "receive-query-rss.sh: $*" >&2; exit 2; }
log() { echo "== $*" >&2; }
for v in SERIES ROUNDS CONCURRENCY BATCH_SERIES QUERIES BOUND_BYTES_PER_SERIES BOUND_BASE_MIB \
  READY_TIMEOUT QUERY_TIMEOUT; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
command -v curl >/dev/null || die "curl is required"

if [[ -z ${CAIRN_BIN:-} ]]; then
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
  log "building cairn (release, target dir $CARGO_TARGET_DIR)"
  (cd "$ROOT" && cargo build --release -p cairn) >&2 || die "cargo build failed"
  CAIRN_BIN=$CARGO_TARGET_DIR/release/cairn
fi
[[ -x $CAIRN_BIN ]] || die "$CAIRN_BIN is not executable"

WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/cairn-rq-rss.XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 1 300); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  if [[ $KEEP == 1 ]]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

source "$(dirname "${BASH_SOURCE[0]}")/ports.sh"

# wait_ready NAME URL PID
wait_ready() {
  local i
  for ((i = 0; i < READY_TIMEOUT * 10; i++)); do
    curl -sf "$2" >/dev/null 2>&1 && return 0
    kill -0 "$3" 2>/dev/null || { cat "$WORK/$1.log" >&2; die "$1 exited"; }
    sleep 0.1
  done
  die "$1 not ready after ${READY_TIMEOUT}s"
}

kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }

free_port; RW=$PORT; free_port; RHTTP=$PORT; free_port; GRPC=$PORT; free_port; QHTTP=$PORT
CAIRN_LOG=warn "$CAIRN_BIN" receive --remote-write.address="127.0.0.1:$RW" \
  --http-address="127.0.0.1:$RHTTP" --grpc-address="127.0.0.1:$GRPC" \
  --tsdb.path="$WORK/receive" >"$WORK/receive.log" 2>&1 &
RECEIVER=$!
PIDS+=("$RECEIVER")
wait_ready receive "http://127.0.0.1:$RHTTP/-/ready" "$RECEIVER"

log "writing $SERIES series x $ROUNDS samples"
out=$("$CAIRN_BIN" bench remote-write --url "http://127.0.0.1:$RW/api/v1/receive" \
  --series "$SERIES" --rounds "$ROUNDS" --concurrency "$CONCURRENCY" --batch-series "$BATCH_SERIES")
grep -q '"ok":true' <<<"$out" || die "the load had errors: $out"

CAIRN_LOG=warn "$CAIRN_BIN" query --http-address="127.0.0.1:$QHTTP" --endpoint="127.0.0.1:$GRPC" \
  >"$WORK/query.log" 2>&1 &
PIDS+=($!)
wait_ready query "http://127.0.0.1:$QHTTP/-/ready" "${PIDS[-1]}"

before=$(kib "$RECEIVER" VmRSS)
echo 5 >"/proc/$RECEIVER/clear_refs"
log "receiver RSS before the query: $((before / 1024)) MiB; asking count({env=\"prod\"}) $QUERIES times"
for ((q = 1; q <= QUERIES; q++)); do
  started=$(date +%s%N)
  answer=$(curl -sf -m "$QUERY_TIMEOUT" "http://127.0.0.1:$QHTTP/api/v1/query" \
    --data-urlencode 'query=count({env="prod"})') || die "the query failed: $(tail -5 "$WORK/query.log")"
  ms=$((($(date +%s%N) - started) / 1000000))
  count=$(sed -n 's/.*"value":\[[0-9.]*,"\([0-9]*\)"\].*/\1/p' <<<"$answer")
  [[ $count == "$SERIES" ]] || die "count({env=\"prod\"}) = '${count}', expected $SERIES: $answer"
  echo "query $q: $count series in $ms ms"
done
peak=$(kib "$RECEIVER" VmHWM)
rise=$((peak > before ? peak - before : 0))
bound=$((BOUND_BASE_MIB * 1024 + SERIES * BOUND_BYTES_PER_SERIES / 1024))
awk -v b="$before" -v p="$peak" -v r="$rise" -v bound="$bound" -v n="$SERIES" 'BEGIN {
  printf "\nreceiver RSS before %.0f MiB, peak during the queries %.0f MiB: +%.1f MiB (%.1f bytes per series)\n", b / 1024, p / 1024, r / 1024, r * 1024 / n
  printf "bound: %.0f MiB -> %s\n", bound / 1024, (r <= bound ? "met" : "MISSED")
}'
if ((rise > bound)) && [[ $REQUIRE_TARGETS == 1 ]]; then exit 3; fi
