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

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export TARGETS=${TARGETS:-100} HOURS=${HOURS:-8} SCRAPE=${SCRAPE:-15}
export STEP=${STEP:-60} RUNS=${RUNS:-7}
PROMETHEUS_BIN=${PROMETHEUS_BIN:-/usr/bin/prometheus}
PROMTOOL_BIN=${PROMTOOL_BIN:-/usr/bin/promtool}
READY_TIMEOUT=${READY_TIMEOUT:-120}

die() { echo "query.sh: $*" >&2; exit 2; }
log() { echo "== $*" >&2; }

for v in TARGETS HOURS SCRAPE STEP RUNS READY_TIMEOUT; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
command -v curl >/dev/null || die "curl is required"

# --- Prometheus and promtool: install the Debian package if missing ---------------------------
if [[ ! -x $PROMETHEUS_BIN || ! -x $PROMTOOL_BIN ]]; then
  log "installing prometheus with apt-get"
  sudo=()
  [[ $(id -u) -ne 0 ]] && sudo=(sudo -n)
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    prometheus >&2 ||
    { "${sudo[@]}" apt-get update >&2 &&
      "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        prometheus >&2; } ||
    die "could not install prometheus; install the Debian package and rerun"
fi
[[ -x $PROMETHEUS_BIN && -x $PROMTOOL_BIN ]] || die "$PROMETHEUS_BIN or $PROMTOOL_BIN missing"
"$PROMETHEUS_BIN" --version 2>&1 | head -1 | grep -q 'version 2\.42\.' ||
  echo "warning: $PROMETHEUS_BIN is not Prometheus 2.42: $("$PROMETHEUS_BIN" --version 2>&1 | head -1)" >&2

# --- builds ------------------------------------------------------------------------------------
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
log "building cairn and promql_bench (release, target dir $CARGO_TARGET_DIR)"
(cd "$ROOT" && cargo build --release -j "${CARGO_JOBS:-1}" -p cairn --bin cairn &&
  cargo build --release -j "${CARGO_JOBS:-1}" -p query --example promql_bench) >&2 ||
  die "cargo build failed"
CAIRN=$CARGO_TARGET_DIR/release/cairn
BENCH=$CARGO_TARGET_DIR/release/examples/promql_bench

# --- work dir, cleanup -------------------------------------------------------------------------
if [[ -n ${WORKDIR:-} ]]; then
  mkdir -p "$WORKDIR"
  WORK=$(cd "$WORKDIR" && pwd)
  REMOVE_WORK=0
else
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/cairn-query-bench.XXXXXX")
  REMOVE_WORK=1
fi
PIDS=()
stop_all() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
}
cleanup() {
  stop_all
  if [[ $REMOVE_WORK == 1 ]]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- data ----------------------------------------------------------------------------------------
SHAPE="targets=$TARGETS hours=$HOURS scrape=$SCRAPE"
if [[ -f $WORK/shape && $(cat "$WORK/shape") == "$SHAPE" && -f $WORK/meta.json ]]; then
  log "reusing the data in $WORK ($SHAPE)"
else
  rm -rf "$WORK/prom" "$WORK/shape" "$WORK/meta.json" "$WORK/data.om"
  log "generating OpenMetrics ($SHAPE)"
  "$BENCH" generate "$WORK/data.om" "$WORK/meta.json"
  log "promtool tsdb create-blocks-from openmetrics"
  "$PROMTOOL_BIN" tsdb create-blocks-from openmetrics "$WORK/data.om" "$WORK/prom" >"$WORK/promtool.log" 2>&1 ||
    { tail -20 "$WORK/promtool.log" >&2; die "promtool failed"; }
  rm -f "$WORK/data.om"
  echo "$SHAPE" >"$WORK/shape"
fi

wait_ready() { # name url pid log
  for _ in $(seq 1 $((READY_TIMEOUT * 5))); do
    kill -0 "$3" 2>/dev/null || { tail -20 "$4" >&2; die "$1 exited"; }
    if [[ $(curl -s -o /dev/null -w '%{http_code}' "$2" || true) == 200 ]]; then return 0; fi
    sleep 0.2
  done
  tail -20 "$4" >&2
  die "$1 not ready in ${READY_TIMEOUT}s"
}

# --- Prometheus ----------------------------------------------------------------------------------
PROM_PORT=$("$BENCH" free-port)
printf 'scrape_configs: []\n' >"$WORK/prometheus.yml"
log "starting Prometheus on 127.0.0.1:$PROM_PORT"
"$PROMETHEUS_BIN" \
  --config.file="$WORK/prometheus.yml" \
  --storage.tsdb.path="$WORK/prom" \
  --storage.tsdb.retention.time=100y \
  --storage.tsdb.min-block-duration=2h \
  --storage.tsdb.max-block-duration=2h \
  --web.listen-address="127.0.0.1:$PROM_PORT" \
  >"$WORK/prometheus.log" 2>&1 &
PIDS+=($!)
wait_ready Prometheus "http://127.0.0.1:$PROM_PORT/-/ready" "${PIDS[-1]}" "$WORK/prometheus.log"

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
