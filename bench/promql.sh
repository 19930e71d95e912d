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

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export TARGETS=${TARGETS:-100} HOURS=${HOURS:-8} SCRAPE=${SCRAPE:-15}
export STEP=${STEP:-60} RUNS=${RUNS:-7}
PROMETHEUS_BIN=${PROMETHEUS_BIN:-/usr/bin/prometheus}
PROMTOOL_BIN=${PROMTOOL_BIN:-/usr/bin/promtool}
READY_TIMEOUT=${READY_TIMEOUT:-120}

die() { echo "promql.sh: $*" >&2; exit 2; }
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

# --- the benchmark program ---------------------------------------------------------------------
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
log "building promql_bench (release, target dir $CARGO_TARGET_DIR)"
(cd "$ROOT" && cargo build --release -j "${CARGO_JOBS:-1}" -p query --example promql_bench) >&2 ||
  die "cargo build failed"
BENCH=$CARGO_TARGET_DIR/release/examples/promql_bench

# --- work dir, cleanup -------------------------------------------------------------------------
if [[ -n ${WORKDIR:-} ]]; then
  mkdir -p "$WORKDIR"
  WORK=$(cd "$WORKDIR" && pwd)
  REMOVE_WORK=0
else
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/cairn-promql-bench.XXXXXX")
  REMOVE_WORK=1
fi
PROM_PID=
cleanup() {
  if [[ -n $PROM_PID ]] && kill -0 "$PROM_PID" 2>/dev/null; then
    kill -TERM "$PROM_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$PROM_PID" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$PROM_PID" 2>/dev/null || true
    wait "$PROM_PID" 2>/dev/null || true
  fi
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
  t0=$(date +%s)
  "$PROMTOOL_BIN" tsdb create-blocks-from openmetrics "$WORK/data.om" "$WORK/prom" >"$WORK/promtool.log" 2>&1 ||
    { tail -20 "$WORK/promtool.log" >&2; die "promtool failed"; }
  log "blocks written in $(($(date +%s) - t0)) s"
  rm -f "$WORK/data.om"
  echo "$SHAPE" >"$WORK/shape"
fi

# --- Prometheus ----------------------------------------------------------------------------------
PORT=$("$BENCH" free-port)
printf 'scrape_configs: []\n' >"$WORK/prometheus.yml"
log "starting Prometheus on 127.0.0.1:$PORT"
# max-block-duration = min = 2h: no compaction, so Prometheus reads the very blocks Cairn reads.
"$PROMETHEUS_BIN" \
  --config.file="$WORK/prometheus.yml" \
  --storage.tsdb.path="$WORK/prom" \
  --storage.tsdb.retention.time=100y \
  --storage.tsdb.min-block-duration=2h \
  --storage.tsdb.max-block-duration=2h \
  --web.listen-address="127.0.0.1:$PORT" \
  >"$WORK/prometheus.log" 2>&1 &
PROM_PID=$!
ready=0
for _ in $(seq 1 $((READY_TIMEOUT * 5))); do
  kill -0 "$PROM_PID" 2>/dev/null || { tail -20 "$WORK/prometheus.log" >&2; die "Prometheus exited"; }
  if [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/-/ready" || true) == 200 ]]; then
    ready=1
    break
  fi
  sleep 0.2
done
[[ $ready == 1 ]] || { tail -20 "$WORK/prometheus.log" >&2; die "Prometheus not ready in ${READY_TIMEOUT}s"; }

# --- run -----------------------------------------------------------------------------------------
log "running queries"
set +e
"$BENCH" run "$WORK/meta.json" "$WORK/prom" "http://127.0.0.1:$PORT"
status=$?
set -e
exit $status
