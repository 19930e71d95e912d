#!/usr/bin/env bash
# Replication benchmark: samples/s through a 3-node pool with replication factor 3 (hashring,
# quorum writes, gRPC forwarding) against the same load on one receiver with RF=1, on this
# machine. The load generator spreads its workers over the pool's three nodes (as a load
# balancer would); every sample is stored three times in the pool. See bench/README.md.
#
# Environment (defaults in brackets):
#   SERIES [50000] ROUNDS [30] CONCURRENCY [8] BATCH_SERIES [500]
#   CAIRN_WAL_FSYNC [always]   --tsdb.wal-fsync of every node
#   CAIRN_BIN                  use this cairn binary instead of building one
#   CARGO_TARGET_DIR [<repo>/target]
#   BENCH_TMPDIR [$TMPDIR or /tmp]   parent of the temp data dirs (use a real disk)
#   KEEP [0]                   1 keeps the temp dir (data and logs)
# Exit: 0 both runs clean, 2 a run had errors.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SERIES=${SERIES:-50000}
ROUNDS=${ROUNDS:-30}
CONCURRENCY=${CONCURRENCY:-8}
BATCH_SERIES=${BATCH_SERIES:-500}
CAIRN_WAL_FSYNC=${CAIRN_WAL_FSYNC:-always}
KEEP=${KEEP:-0}

die() { echo "replication.sh: $*" >&2; exit 1; }
log() { echo "== $*" >&2; }
for v in SERIES ROUNDS CONCURRENCY BATCH_SERIES; do
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

WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/cairn-repl-bench.XXXXXX")
PIDS=()
stop_all() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 1 300); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  PIDS=()
}
cleanup() {
  stop_all
  if [[ $KEEP == 1 ]]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

source "$(dirname "${BASH_SOURCE[0]}")/ports.sh"

# start_node NAME RW HTTP GRPC [extra args...]
start_node() {
  local name=$1 rw=$2 http=$3 grpc=$4
  shift 4
  mkdir -p "$WORK/$name"
  CAIRN_LOG=warn "$CAIRN_BIN" receive --remote-write.address="127.0.0.1:$rw" \
    --http-address="127.0.0.1:$http" --grpc-address="127.0.0.1:$grpc" \
    --tsdb.path="$WORK/$name/tsdb" --tsdb.wal-fsync="$CAIRN_WAL_FSYNC" "$@" \
    >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$http/-/ready" >/dev/null 2>&1 && return 0
    kill -0 "${PIDS[-1]}" 2>/dev/null || { cat "$WORK/$name.log" >&2; die "$name exited"; }
    sleep 0.1
  done
  die "$name not ready"
}

# run_load LABEL URLS -> prints the JSON line, sets RATE
run_load() {
  local label=$1 urls=$2 out
  out=$("$CAIRN_BIN" bench remote-write --url "$urls" --series "$SERIES" --rounds "$ROUNDS" \
    --concurrency "$CONCURRENCY" --batch-series "$BATCH_SERIES" --header "THANOS-TENANT: bench")
  echo "$label $out"
  RATE=$(sed -n 's/.*"samples_per_second":\([0-9.]*\).*/\1/p' <<<"$out")
  grep -q '"ok":true' <<<"$out" || { echo "$label: the run had errors" >&2; FAILED=1; }
}
FAILED=0

log "one receiver, RF=1"
free_port; rw=$PORT; free_port; http=$PORT; free_port; grpc=$PORT
start_node single "$rw" "$http" "$grpc"
run_load single "http://127.0.0.1:$rw/api/v1/receive"
SINGLE=$RATE
stop_all

log "three receivers, RF=3"
declare -a RW HTTP GRPC
for i in 0 1 2; do
  free_port; RW[i]=$PORT; free_port; HTTP[i]=$PORT; free_port; GRPC[i]=$PORT
done
cat >"$WORK/hashrings.json" <<EOF
[{"hashring": "default", "endpoints": ["127.0.0.1:${GRPC[0]}", "127.0.0.1:${GRPC[1]}", "127.0.0.1:${GRPC[2]}"]}]
EOF
for i in 0 1 2; do
  start_node "node$i" "${RW[i]}" "${HTTP[i]}" "${GRPC[i]}" \
    --receive.hashrings-file="$WORK/hashrings.json" --receive.local-endpoint="127.0.0.1:${GRPC[i]}" \
    --receive.replication-factor=3 --label="replica=\"r$i\""
done
URLS="http://127.0.0.1:${RW[0]}/api/v1/receive,http://127.0.0.1:${RW[1]}/api/v1/receive,http://127.0.0.1:${RW[2]}/api/v1/receive"
run_load pool-rf3 "$URLS"
POOL=$RATE
for i in 0 1 2; do
  stored=$(curl -s "http://127.0.0.1:${HTTP[i]}/metrics" | awk '/^cairn_receive_samples_ingested_total/ {s += $2} END {printf "%d", s}')
  echo "node$i stored $stored samples"
done
stop_all

awk -v s="$SINGLE" -v p="$POOL" 'BEGIN {
  printf "\nsamples/s accepted: one node RF=1 %.0f, 3-node pool RF=3 %.0f; pool/single = %.2f\n", s, p, p / s
  printf "(the pool stores each sample 3 times: %.0f stored samples/s across the pool)\n", 3 * p
}'
[[ $FAILED == 0 ]] || exit 2
