#!/usr/bin/env bash
# Native histograms: ingest and bytes per histogram sample, Cairn next to Prometheus 2.42.
#
# Prometheus 2.42 cannot receive native histograms over remote write (its receiver drops them),
# so the two are compared on the path each has, over the very same histograms:
#
# Phase 1, side by side in one run: `cairn bench histogram-target` serves SERIES native
# histograms of BUCKETS buckets in the protobuf exposition format; Prometheus 2.42 (native
# histograms on) scrapes it every SCRAPE_INTERVAL and remote-writes every histogram to
# `cairn receive`. After DURATION seconds the script reports, for each, the histograms it
# ingested and the CPU seconds it spent (Prometheus: scrape, parse, append, WAL, and the remote
# write it sends; Cairn: decode, validation, WAL with fsync, head), then bytes per histogram
# sample in blocks: Prometheus' head is snapshotted into a block (admin API), Cairn's head is
# flushed into a block at shutdown; bytes of the blocks' chunk files / histogram samples.
#
# Phase 2, Cairn's ceiling: `cairn bench remote-write --native-histograms BUCKETS` sends
# LOAD_SERIES series x LOAD_ROUNDS rounds of histograms as fast as Cairn takes them:
# histograms/s with every request's WAL fsynced.
#
# Environment (defaults in brackets):
#   SERIES [2000] BUCKETS [20] SCRAPE_INTERVAL [1s] DURATION [60]
#   LOAD_SERIES [20000] LOAD_ROUNDS [20] CONCURRENCY [4] BATCH_SERIES [500]
#   CAIRN_BIN, CARGO_TARGET_DIR [<repo>/target], PROMETHEUS_BIN [/usr/bin/prometheus]
#   BENCH_TMPDIR [$TMPDIR or /tmp]   KEEP [0] keeps the temp dir
# Exit: 0 clean, 2 a run failed (a peer missing histograms, a crash, a timeout).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SERIES=${SERIES:-2000}
BUCKETS=${BUCKETS:-20}
SCRAPE_INTERVAL=${SCRAPE_INTERVAL:-1s}
DURATION=${DURATION:-60}
LOAD_SERIES=${LOAD_SERIES:-20000}
LOAD_ROUNDS=${LOAD_ROUNDS:-20}
CONCURRENCY=${CONCURRENCY:-4}
BATCH_SERIES=${BATCH_SERIES:-500}
PROMETHEUS_BIN=${PROMETHEUS_BIN:-/usr/bin/prometheus}
KEEP=${KEEP:-0}

die() { echo "histograms.sh: $*" >&2; exit 1; }
fail() { echo "histograms.sh: $*" >&2; exit 2; }
log() { echo "== $*" >&2; }

for v in SERIES BUCKETS DURATION LOAD_SERIES LOAD_ROUNDS CONCURRENCY BATCH_SERIES; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
for tool in curl awk timeout du; do
  command -v "$tool" >/dev/null || die "$tool is required"
done
if [[ ! -x $PROMETHEUS_BIN ]]; then
  log "installing prometheus with apt-get"
  sudo=()
  [[ $(id -u) -ne 0 ]] && sudo=(sudo -n)
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >&2 ||
    { "${sudo[@]}" apt-get update >&2 &&
      "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >&2; } ||
    die "could not install the Debian package prometheus"
fi
"$PROMETHEUS_BIN" --version 2>&1 | head -1 | grep -q 'version 2\.42\.' ||
  echo "warning: $PROMETHEUS_BIN is not Prometheus 2.42" >&2

if [[ -z ${CAIRN_BIN:-} ]]; then
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
  log "building cairn (release, target dir $CARGO_TARGET_DIR)"
  (cd "$ROOT" && cargo build --release -p cairn) >&2 || die "cargo build failed"
  CAIRN_BIN=$CARGO_TARGET_DIR/release/cairn
fi
[[ -x $CAIRN_BIN ]] || die "$CAIRN_BIN is not executable"

WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/cairn-bench-hist.XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do
    kill -KILL "$p" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  if [[ $KEEP == 1 ]]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

source "$(dirname "${BASH_SOURCE[0]}")/ports.sh"
wait_ready() { # url what
  for ((i = 0; i < 600; i++)); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  fail "$2 not ready at $1"
}
cpu_seconds() { # pid -> utime+stime in seconds
  awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"
}
metric() { # url name-regex -> sum of matching samples
  curl -fsS "$1" | awk -v re="$2" '$1 ~ re { s += $2 } END { printf "%.0f", s }'
}
chunk_bytes() { # block dirs... -> bytes of their chunk files
  local total=0 d
  for d in "$@"; do
    total=$((total + $(du -sb "$d/chunks" | awk '{print $1}')))
  done
  echo "$total"
}
meta_samples() { # block dirs... -> stats.numSamples summed
  local total=0 d n
  for d in "$@"; do
    n=$(grep -o '"numSamples": *[0-9]*' "$d/meta.json" | grep -o '[0-9]*$')
    total=$((total + n))
  done
  echo "$total"
}

# ---- phase 1 -------------------------------------------------------------------------------
free_port; TARGET=127.0.0.1:$PORT
free_port; RW=127.0.0.1:$PORT
free_port; CHTTP=127.0.0.1:$PORT
free_port; CGRPC=127.0.0.1:$PORT
free_port; PHTTP=127.0.0.1:$PORT

"$CAIRN_BIN" bench histogram-target --listen "$TARGET" --series "$SERIES" --buckets "$BUCKETS" \
  2>"$WORK/target.log" &
TARGET_PID=$!
PIDS+=($TARGET_PID)
"$CAIRN_BIN" receive --remote-write.address "$RW" --http-address "$CHTTP" --grpc-address "$CGRPC" \
  --tsdb.path "$WORK/cairn" --label 'replica="bench"' >"$WORK/cairn.log" 2>&1 &
CAIRN_PID=$!
PIDS+=($CAIRN_PID)
wait_ready "http://$CHTTP/-/ready" "cairn receive"
cat >"$WORK/prometheus.yml" <<EOF
global:
  scrape_interval: $SCRAPE_INTERVAL
  scrape_timeout: $SCRAPE_INTERVAL
scrape_configs:
  - job_name: hist
    static_configs:
      - targets: ['$TARGET']
remote_write:
  - url: http://$RW/api/v1/receive
    send_native_histograms: true
    queue_config:
      batch_send_deadline: 1s
      max_samples_per_send: 2000
EOF
"$PROMETHEUS_BIN" --enable-feature=native-histograms --web.enable-admin-api \
  --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/prometheus" \
  --web.listen-address="$PHTTP" >"$WORK/prometheus.log" 2>&1 &
PROM_PID=$!
PIDS+=($PROM_PID)
wait_ready "http://$PHTTP/-/ready" "prometheus"

log "phase 1: $SERIES histograms x $BUCKETS buckets every $SCRAPE_INTERVAL for ${DURATION}s"
p_cpu0=$(cpu_seconds "$PROM_PID")
c_cpu0=$(cpu_seconds "$CAIRN_PID")
sleep "$DURATION"
p_cpu1=$(cpu_seconds "$PROM_PID")
c_cpu1=$(cpu_seconds "$CAIRN_PID")
p_hist=$(metric "http://$PHTTP/metrics" '^prometheus_tsdb_head_samples_appended_total\\{type="histogram"\\}')
# Stop the target (scrapes fail from now on, nothing new is appended), then wait for remote
# write, a few seconds behind the scrape, to deliver everything.
kill -TERM "$TARGET_PID"
sleep 2
for ((i = 0; i < 60; i++)); do
  c_hist=$(metric "http://$CHTTP/metrics" '^cairn_receive_histograms_ingested_total')
  p_now=$(metric "http://$PHTTP/metrics" '^prometheus_tsdb_head_samples_appended_total\\{type="histogram"\\}')
  [[ $c_hist -ge $p_now ]] && break
  sleep 1
done
p_total=$(metric "http://$PHTTP/metrics" '^prometheus_tsdb_head_samples_appended_total\\{type="histogram"\\}')
c_total=$(metric "http://$CHTTP/metrics" '^cairn_receive_histograms_ingested_total')
[[ $p_total -gt 0 ]] || fail "Prometheus ingested no histograms; see $WORK/prometheus.log"
[[ $c_total -ge $p_total ]] ||
  fail "Cairn ingested $c_total histograms of the $p_total Prometheus sent; see $WORK/cairn.log"

# Blocks: Prometheus' head snapshotted, Cairn's head flushed on shutdown.
snap=$(curl -fsS -X POST "http://$PHTTP/api/v1/admin/tsdb/snapshot" | grep -o '"name":"[^"]*"' | cut -d'"' -f4)
[[ -n $snap ]] || fail "Prometheus' snapshot failed"
kill -TERM "$PROM_PID"
wait "$PROM_PID" 2>/dev/null || true
kill -TERM "$CAIRN_PID"
timeout 120 tail --pid="$CAIRN_PID" -f /dev/null || fail "cairn receive did not stop"
mapfile -t p_blocks < <(find "$WORK/prometheus/snapshots/$snap" -mindepth 1 -maxdepth 1 -type d)
mapfile -t c_blocks < <(find "$WORK/cairn" -mindepth 3 -maxdepth 3 -name meta.json -printf '%h\n')
((${#p_blocks[@]})) || fail "no block in Prometheus' snapshot"
((${#c_blocks[@]})) || fail "Cairn flushed no block; see $WORK/cairn.log"
p_bytes=$(chunk_bytes "${p_blocks[@]}")
c_bytes=$(chunk_bytes "${c_blocks[@]}")
p_samples=$(meta_samples "${p_blocks[@]}")
c_samples=$(meta_samples "${c_blocks[@]}")

# ---- phase 2 -------------------------------------------------------------------------------
free_port; RW2=127.0.0.1:$PORT
free_port; CHTTP2=127.0.0.1:$PORT
free_port; CGRPC2=127.0.0.1:$PORT
"$CAIRN_BIN" receive --remote-write.address "$RW2" --http-address "$CHTTP2" --grpc-address "$CGRPC2" \
  --tsdb.path "$WORK/cairn-load" --label 'replica="bench"' >"$WORK/cairn-load.log" 2>&1 &
LOAD_PID=$!
PIDS+=($LOAD_PID)
wait_ready "http://$CHTTP2/-/ready" "cairn receive (load)"
log "phase 2: cairn bench remote-write --native-histograms $BUCKETS, $LOAD_SERIES series x $LOAD_ROUNDS rounds"
load_json=$("$CAIRN_BIN" bench remote-write --url "http://$RW2/api/v1/receive" \
  --series "$LOAD_SERIES" --rounds "$LOAD_ROUNDS" --concurrency "$CONCURRENCY" \
  --batch-series "$BATCH_SERIES" --native-histograms "$BUCKETS") ||
  fail "the load failed: $load_json"
kill -TERM "$LOAD_PID"
wait "$LOAD_PID" 2>/dev/null || true
rate=$(grep -o '"samples_per_second":[0-9.]*' <<<"$load_json" | cut -d: -f2)

# ---- report --------------------------------------------------------------------------------
awk -v pc0="$p_cpu0" -v pc1="$p_cpu1" -v cc0="$c_cpu0" -v cc1="$c_cpu1" -v ph="$p_hist" \
  -v pt="$p_total" -v ct="$c_total" -v pb="$p_bytes" -v cb="$c_bytes" -v ps="$p_samples" \
  -v cs="$c_samples" -v rate="$rate" -v dur="$DURATION" -v series="$SERIES" -v buckets="$BUCKETS" 'BEGIN {
  pcpu = pc1 - pc0; ccpu = cc1 - cc0
  printf "\nnative histograms: %d series x %d buckets, %ds of scraping\n\n", series, buckets, dur
  printf "%-34s %14s %14s %8s\n", "", "Prometheus", "Cairn", "ratio"
  printf "%-34s %14d %14d\n", "histograms ingested", pt, ct
  printf "%-34s %14.2f %14.2f %8.2f\n", "CPU seconds during the scrape", pcpu, ccpu, (pcpu > 0 ? ccpu / pcpu : 0)
  if (ph > 0 && pcpu > 0 && ccpu > 0)
    printf "%-34s %14.0f %14.0f %8.2f\n", "histograms per CPU-second", ph / pcpu, ph / ccpu, pcpu / ccpu
  printf "%-34s %14d %14d\n", "histogram samples in blocks", ps, cs
  if (ps > 0 && cs > 0)
    printf "%-34s %14.2f %14.2f %8.2f\n", "chunk bytes per histogram sample", pb / ps, cb / cs, (cb / cs) / (pb / ps)
  printf "\nCairn alone, remote write at full speed (WAL fsynced per request): %.0f histograms/s\n", rate
  printf "(Prometheus 2.42 has no remote-write path for native histograms to compare with.)\n"
}'
