# Shared by bench/promql.sh and bench/query.sh (sourced, not run): the environment defaults and
# checks, Prometheus 2.42 and promtool (the Debian package, installed when missing), the work
# directory and its cleanup, the promtool-made blocks of `promql_bench generate`, and starting
# Prometheus over those blocks. The sourcing script sets NAME and WORK_PREFIX first, and BENCH
# (the promql_bench binary) before calling make_blocks or start_prometheus.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export TARGETS=${TARGETS:-100} HOURS=${HOURS:-8} SCRAPE=${SCRAPE:-15}
export STEP=${STEP:-60} RUNS=${RUNS:-7}
PROMETHEUS_BIN=${PROMETHEUS_BIN:-/usr/bin/prometheus}
PROMTOOL_BIN=${PROMTOOL_BIN:-/usr/bin/promtool}
READY_TIMEOUT=${READY_TIMEOUT:-120}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

die() { echo "$NAME: $*" >&2; exit 2; }
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

# --- work dir, cleanup -------------------------------------------------------------------------
if [[ -n ${WORKDIR:-} ]]; then
  mkdir -p "$WORKDIR"
  WORK=$(cd "$WORKDIR" && pwd)
  REMOVE_WORK=0
else
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/$WORK_PREFIX.XXXXXX")
  REMOVE_WORK=1
fi
# Processes to stop at exit, in this order.
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

# Generates the data and its blocks in $WORK/prom (reused when WORKDIR holds the same shape).
make_blocks() {
  local shape="targets=$TARGETS hours=$HOURS scrape=$SCRAPE" t0
  if [[ -f $WORK/shape && $(cat "$WORK/shape") == "$shape" && -f $WORK/meta.json ]]; then
    log "reusing the data in $WORK ($shape)"
    return 0
  fi
  rm -rf "$WORK/prom" "$WORK/shape" "$WORK/meta.json" "$WORK/data.om"
  log "generating OpenMetrics ($shape)"
  "$BENCH" generate "$WORK/data.om" "$WORK/meta.json"
  log "promtool tsdb create-blocks-from openmetrics"
  t0=$(date +%s)
  "$PROMTOOL_BIN" tsdb create-blocks-from openmetrics "$WORK/data.om" "$WORK/prom" >"$WORK/promtool.log" 2>&1 ||
    { tail -20 "$WORK/promtool.log" >&2; die "promtool failed"; }
  log "blocks written in $(($(date +%s) - t0)) s"
  rm -f "$WORK/data.om"
  echo "$shape" >"$WORK/shape"
}

wait_ready() { # name url pid log
  for _ in $(seq 1 $((READY_TIMEOUT * 5))); do
    kill -0 "$3" 2>/dev/null || { tail -20 "$4" >&2; die "$1 exited"; }
    if [[ $(curl -s -o /dev/null -w '%{http_code}' "$2" || true) == 200 ]]; then return 0; fi
    sleep 0.2
  done
  tail -20 "$4" >&2
  die "$1 not ready in ${READY_TIMEOUT}s"
}

# Starts Prometheus over $WORK/prom on a free port and waits for it; sets PROM_PORT.
start_prometheus() {
  PROM_PORT=$("$BENCH" free-port)
  printf 'scrape_configs: []\n' >"$WORK/prometheus.yml"
  log "starting Prometheus on 127.0.0.1:$PROM_PORT"
  # max-block-duration = min = 2h: no compaction, so Prometheus reads the very blocks Cairn reads.
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
}
