#!/usr/bin/env bash
# Remote-write ingest benchmark: Cairn vs Prometheus 2.42 vs VictoriaMetrics 1.79.
#
# Each peer is started fresh on loopback with its own temp data dir, one after the other; the
# same `cairn bench remote-write` load (pre-encoded before the clock starts) is sent to each;
# then the peer's peak RSS (VmHWM) and CPU time are read and it is stopped. A table with
# samples/s, RSS and the Cairn ratios closes the run. See bench/README.md.
#
# Environment (defaults in brackets):
#   SERIES [100000] ROUNDS [60] CONCURRENCY [8] SAMPLES_PER_SERIES [1] BATCH_SERIES [500]
#   INTERVAL [15s]              sample spacing within a series (the run must span <= 1h)
#   PEERS ["cairn prometheus victoria-metrics"]   which peers, in this order
#   CAIRN_WAL_FSYNC [always]    Cairn's --tsdb.wal-fsync
#   CAIRN_ARGS                  more flags for `cairn receive` (e.g. --tsdb.wal-compression=false)
#   CAIRN_BIN                   use this cairn binary instead of building one
#   CARGO_TARGET_DIR [<repo>/target]  where the release build goes (reused)
#   PROMETHEUS_BIN [/usr/bin/prometheus] VM_BIN [/usr/bin/victoria-metrics]
#   BENCH_TMPDIR [$TMPDIR or /tmp]  parent of the temp data dirs (use a real disk, not tmpfs)
#   READY_TIMEOUT [60] RUN_TIMEOUT [600] STOP_TIMEOUT [60]   seconds
#   REPEAT [1]                  runs per peer (interleaved); the ratios use each peer's best
#                               samples/s and highest peak RSS (other builds on a shared machine
#                               only ever slow a run down)
#   BENCH_NICE                  run peers and the load generator under `nice -n BENCH_NICE`
#                               (e.g. -10 as root, to keep other work on a shared machine from
#                               disturbing the runs; the same for every peer)
#   KEEP [0]                    1 keeps the temp dir (data and logs)
#   REQUIRE_TARGETS [0]         1 exits 3 when a target is missed
# Exit: 0 all runs clean, 2 a run failed (errors, crash, timeout), 3 targets missed (if required).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SERIES=${SERIES:-100000}
ROUNDS=${ROUNDS:-60}
CONCURRENCY=${CONCURRENCY:-8}
SAMPLES_PER_SERIES=${SAMPLES_PER_SERIES:-1}
BATCH_SERIES=${BATCH_SERIES:-500}
INTERVAL=${INTERVAL:-15s}
PEERS=${PEERS:-"cairn prometheus victoria-metrics"}
CAIRN_WAL_FSYNC=${CAIRN_WAL_FSYNC:-always}
PROMETHEUS_BIN=${PROMETHEUS_BIN:-/usr/bin/prometheus}
VM_BIN=${VM_BIN:-/usr/bin/victoria-metrics}
READY_TIMEOUT=${READY_TIMEOUT:-60}
RUN_TIMEOUT=${RUN_TIMEOUT:-600}
STOP_TIMEOUT=${STOP_TIMEOUT:-60}
KEEP=${KEEP:-0}
REPEAT=${REPEAT:-1}
BENCH_NICE=${BENCH_NICE:-}
REQUIRE_TARGETS=${REQUIRE_TARGETS:-0}

die() { echo "remote-write.sh: $*" >&2; exit 1; }
log() { echo "== $*" >&2; }

for v in SERIES ROUNDS CONCURRENCY SAMPLES_PER_SERIES BATCH_SERIES REPEAT READY_TIMEOUT RUN_TIMEOUT STOP_TIMEOUT; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
for p in $PEERS; do
  case $p in
  cairn | prometheus | victoria-metrics) ;;
  *) die "unknown peer '$p' in PEERS (cairn, prometheus, victoria-metrics)" ;;
  esac
done
NICE=()
if [[ -n $BENCH_NICE ]]; then
  [[ $BENCH_NICE =~ ^-?[0-9]+$ ]] || die "BENCH_NICE must be an integer (got '$BENCH_NICE')"
  NICE=(nice -n "$BENCH_NICE")
fi
for tool in curl awk timeout; do
  command -v "$tool" >/dev/null || die "$tool is required"
done

# --- peers' binaries: install the Debian packages if missing, fail loudly otherwise ---------
need_pkgs=()
[[ " $PEERS " == *" prometheus "* && ! -x $PROMETHEUS_BIN ]] && need_pkgs+=(prometheus)
[[ " $PEERS " == *" victoria-metrics "* && ! -x $VM_BIN ]] && need_pkgs+=(victoria-metrics)
if ((${#need_pkgs[@]})); then
  log "installing ${need_pkgs[*]} with apt-get"
  sudo=()
  [[ $(id -u) -ne 0 ]] && sudo=(sudo -n)
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    "${need_pkgs[@]}" >&2 ||
    { "${sudo[@]}" apt-get update >&2 &&
      "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        "${need_pkgs[@]}" >&2; } ||
    die "could not install ${need_pkgs[*]}; install them (Debian packages) and rerun"
fi
if [[ " $PEERS " == *" prometheus "* ]]; then
  [[ -x $PROMETHEUS_BIN ]] || die "$PROMETHEUS_BIN missing after installing package prometheus"
  "$PROMETHEUS_BIN" --version 2>&1 | head -1 | grep -q 'version 2\.42\.' ||
    echo "warning: $PROMETHEUS_BIN is not Prometheus 2.42: $("$PROMETHEUS_BIN" --version 2>&1 | head -1)" >&2
fi
if [[ " $PEERS " == *" victoria-metrics "* ]]; then
  [[ -x $VM_BIN ]] || die "$VM_BIN missing after installing package victoria-metrics"
fi

# --- cairn --------------------------------------------------------------------------------
if [[ -z ${CAIRN_BIN:-} ]]; then
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
  log "building cairn (release, target dir $CARGO_TARGET_DIR)"
  (cd "$ROOT" && cargo build --release -p cairn) >&2 || die "cargo build failed"
  CAIRN_BIN=$CARGO_TARGET_DIR/release/cairn
fi
[[ -x $CAIRN_BIN ]] || die "$CAIRN_BIN is not executable"

# --- work dir, cleanup --------------------------------------------------------------------
WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/cairn-bench.XXXXXX")
PEER_PID=
cleanup() {
  if [[ -n $PEER_PID ]] && kill -0 "$PEER_PID" 2>/dev/null; then
    kill -KILL "$PEER_PID" 2>/dev/null || true
    wait "$PEER_PID" 2>/dev/null || true
  fi
  if [[ $KEEP == 1 ]]; then
    echo "kept $WORK" >&2
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
FS_TYPE=$(stat -f -c %T "$WORK")
[[ $FS_TYPE == tmpfs ]] &&
  echo "warning: $WORK is on tmpfs: fsync is free there; set BENCH_TMPDIR to a real disk" >&2

source "$(dirname "${BASH_SOURCE[0]}")/ports.sh"

wait_ready() { # name url
  local deadline=$((SECONDS + READY_TIMEOUT))
  while ((SECONDS < deadline)); do
    if ! kill -0 "$PEER_PID" 2>/dev/null; then
      grep -v -E '^ +([0-9]+: |at )' "$WORK/$1.log" | tail -n 30 >&2
      die "$1 exited before it was ready (log above)"
    fi
    curl -sf -m 2 -o /dev/null "$2" && return 0
    sleep 0.2
  done
  grep -v -E '^ +([0-9]+: |at )' "$WORK/$1.log" | tail -n 30 >&2
  die "$1 not ready after ${READY_TIMEOUT}s ($2)"
}

# Sums a metric (all label sets) from a Prometheus exposition.
metric_sum() { # url metric-name
  curl -sf -m 10 "$1" |
    awk -v m="$2" '$1 == m || index($1, m "{") == 1 { s += $NF; n++ } END { if (n) printf "%.0f", s; else print "?" }'
}

proc_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
proc_cpu_s() { # utime+stime in seconds
  awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.1f", ($12 + $13) / hz }' "/proc/$1/stat"
}

stop_peer() { # name
  kill -TERM "$PEER_PID" 2>/dev/null || true
  local deadline=$((SECONDS + STOP_TIMEOUT))
  while kill -0 "$PEER_PID" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
  if kill -0 "$PEER_PID" 2>/dev/null; then
    echo "warning: $1 did not stop within ${STOP_TIMEOUT}s; killing it" >&2
    kill -KILL "$PEER_PID" 2>/dev/null || true
  fi
  wait "$PEER_PID" 2>/dev/null || true
  PEER_PID=
}

declare -A RATE RSS CPU GEN_CPU OTHER_CPU STATUS BEST_RATE MAX_RSS DISK WALK
RUNS=()
FAILED=0
WANT=$((SERIES * ROUNDS * SAMPLES_PER_SERIES))

run_peer() { # name run-number
  local name=$1 key="$1#$2" dir=$WORK/$1 port url ready metrics stored_metric
  mkdir -p "$dir"
  free_port
  port=$PORT
  case $name in
  cairn)
    local http_port grpc_port
    free_port
    http_port=$PORT
    free_port
    grpc_port=$PORT
    "${NICE[@]}" "$CAIRN_BIN" receive --tsdb.path "$dir" \
      --remote-write.address "127.0.0.1:$port" --http-address "127.0.0.1:$http_port" \
      --grpc-address "127.0.0.1:$grpc_port" --tsdb.wal-fsync "$CAIRN_WAL_FSYNC" \
      ${CAIRN_ARGS:-} >"$WORK/$name.log" 2>&1 &
    PEER_PID=$!
    url=http://127.0.0.1:$port/api/v1/receive
    ready=http://127.0.0.1:$http_port/-/ready
    metrics=http://127.0.0.1:$http_port/metrics
    stored_metric=cairn_receive_samples_ingested_total
    ;;
  prometheus)
    printf 'global:\n  scrape_interval: 1m\nscrape_configs: []\n' >"$WORK/prometheus.yml"
    "${NICE[@]}" "$PROMETHEUS_BIN" --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$dir" \
      --web.listen-address="127.0.0.1:$port" --web.enable-remote-write-receiver \
      >"$WORK/$name.log" 2>&1 &
    PEER_PID=$!
    url=http://127.0.0.1:$port/api/v1/write
    ready=http://127.0.0.1:$port/-/ready
    metrics=http://127.0.0.1:$port/metrics
    stored_metric=prometheus_tsdb_head_samples_appended_total
    ;;
  victoria-metrics)
    "${NICE[@]}" "$VM_BIN" -storageDataPath "$dir" -httpListenAddr "127.0.0.1:$port" \
      >"$WORK/$name.log" 2>&1 &
    PEER_PID=$!
    url=http://127.0.0.1:$port/api/v1/write
    ready=http://127.0.0.1:$port/health
    metrics=http://127.0.0.1:$port/metrics
    stored_metric=vm_rows_inserted_total
    ;;
  *) die "unknown peer $name (cairn, prometheus, victoria-metrics)" ;;
  esac
  wait_ready "$name" "$ready"
  log "$name ready (pid $PEER_PID, $url); sending the load (run $2 of $REPEAT)"
  local rc=0 cpu0 stored
  cpu0=$(proc_cpu_s "$PEER_PID")
  "${NICE[@]}" timeout -k 10 "$RUN_TIMEOUT" "$CAIRN_BIN" --log.level=warn bench remote-write --url "$url" \
    --series "$SERIES" --rounds "$ROUNDS" --concurrency "$CONCURRENCY" \
    --samples-per-series "$SAMPLES_PER_SERIES" --batch-series "$BATCH_SERIES" \
    --interval "$INTERVAL" >"$WORK/$key.json" || rc=$?
  cat "$WORK/$key.json"
  if ! kill -0 "$PEER_PID" 2>/dev/null; then
    grep -v -E '^ +([0-9]+: |at )' "$WORK/$name.log" | tail -n 30 >&2
    die "$name died during the run (log above)"
  fi
  RSS[$key]=$(proc_kib "$PEER_PID" VmHWM)
  # On disk right after the load: the whole data directory, and the WAL alone (Cairn: every
  # tenant's cairn-wal/; Prometheus: wal/; VictoriaMetrics has none).
  DISK[$key]=$(du -sk "$dir" | cut -f1)
  case $name in
  cairn) WALK[$key]=$(du -skc "$dir"/*/cairn-wal 2>/dev/null | tail -1 | cut -f1) ;;
  prometheus) WALK[$key]=$(du -sk "$dir/wal" | cut -f1) ;;
  *) WALK[$key]= ;;
  esac
  CPU[$key]=$(awk -v a="$(proc_cpu_s "$PEER_PID")" -v b="$cpu0" 'BEGIN { printf "%.2f", a - b }')
  RATE[$key]=$(sed -n 's/.*"samples_per_second":\([0-9.]*\).*/\1/p' "$WORK/$key.json")
  RATE[$key]=${RATE[$key]:-0}
  GEN_CPU[$key]=$(sed -n 's/.*"loadgen_cpu_seconds":\([0-9.]*\).*/\1/p' "$WORK/$key.json")
  # The peer is idle while the load generator encodes, so its CPU is its share of the send.
  OTHER_CPU[$key]=$(awk -v p="${CPU[$key]}" -v g="${GEN_CPU[$key]:-0}" \
    -v b="$(sed -n 's/.*"machine_busy_cpu_seconds":\([0-9.]*\).*/\1/p' "$WORK/$key.json")" \
    'BEGIN { if (b == "") { print "?"; exit } x = b - p - g; printf "%.1f", x < 0 ? 0 : x }')
  # Every peer must have taken every sample.
  stored=$(metric_sum "$metrics" "$stored_metric")
  if ((rc != 0)); then
    STATUS[$key]="FAILED (exit $rc)"
    FAILED=1
  elif [[ $stored != "$WANT" ]]; then
    STATUS[$key]="FAILED: $stored_metric is $stored, want $WANT"
    FAILED=1
  else
    STATUS[$key]=ok
  fi
  RUNS+=("$key")
  if [[ ${STATUS[$key]} == ok ]] &&
    awk -v a="${RATE[$key]}" -v b="${BEST_RATE[$name]:-0}" 'BEGIN { exit !(a > b) }'; then
    BEST_RATE[$name]=${RATE[$key]}
  fi
  if ((${RSS[$key]:-0} > ${MAX_RSS[$name]:-0})); then
    MAX_RSS[$name]=${RSS[$key]}
  fi
  stop_peer "$name"
  rm -rf "$dir"
  sync # the next peer's fsyncs should not wait for this one's dirty pages
}

log "load: ${BENCH_NICE:+nice $BENCH_NICE, }$SERIES series x $ROUNDS rounds x $SAMPLES_PER_SERIES samples = $WANT samples, $BATCH_SERIES series/request, concurrency $CONCURRENCY, $REPEAT run(s) per peer; data in $WORK ($FS_TYPE); $(nproc) CPUs; load average $(cut -d' ' -f1-3 /proc/loadavg)"
for ((i = 1; i <= REPEAT; i++)); do
  for p in $PEERS; do
    run_peer "$p" "$i"
  done
done

# --- summary ------------------------------------------------------------------------------
echo
printf '%-20s %10s %9s %8s %13s %9s %9s %9s %8s  %s\n' run samples/s "RSS MiB" "CPU s" samples/CPU-s \
  "gen CPU" "other CPU" "disk MiB" "WAL MiB" status
for k in "${RUNS[@]}"; do
  awk -v k="$k" -v r="${RATE[$k]}" -v rss="${RSS[$k]}" -v cpu="${CPU[$k]}" -v st="${STATUS[$k]}" \
    -v g="${GEN_CPU[$k]:-0}" -v o="${OTHER_CPU[$k]}" -v n="$WANT" -v disk="${DISK[$k]:-0}" \
    -v wal="${WALK[$k]}" 'BEGIN {
      printf "%-20s %10.0f %9.1f %8.1f %13s %9.1f %9s %9.1f %8s  %s\n", k, r, rss / 1024, cpu,
        (cpu > 0 ? sprintf("%.0f", n / cpu) : "-"), g, o, disk / 1024,
        (wal == "" ? "-" : sprintf("%.1f", wal / 1024)), st }'
done
cat <<EOF
(RSS: peak resident set (VmHWM) after the run. disk, WAL: the data directory and its WAL right
after the load, before the peer stops. CPU s: the peer's CPU time during the load; gen
CPU: the load generator's while sending; other CPU: what everything else on the machine used
while it sent. Cairn WAL fsync: $CAIRN_WAL_FSYNC; data on $FS_TYPE; $(nproc) CPUs.)
EOF
if ((REPEAT > 1)); then
  echo
  echo "best samples/s and highest peak RSS of the $REPEAT runs per peer:"
  for p in $PEERS; do
    awk -v p="$p" -v r="${BEST_RATE[$p]:-0}" -v rss="${MAX_RSS[$p]:-0}" \
      'BEGIN { printf "%-20s %10.0f %9.1f\n", p, r, rss / 1024 }'
  done
fi
echo

MISSED=0
ratio_line() { # label numerator denominator op target
  awk -v l="$1" -v a="$2" -v b="$3" -v op="$4" -v t="$5" 'BEGIN {
    if (a == "" || b == "" || b == 0) { printf "%-36s n/a\n", l; exit 2 }
    x = a / b; ok = (op == ">=") ? (x >= t) : (x <= t)
    printf "%-36s %6.2fx  (target %s %sx)  %s\n", l, x, op, t, ok ? "MET" : "NOT MET"
    exit ok ? 0 : 1 }'
}
if [[ " $PEERS " == *" cairn "* ]]; then
  if [[ " $PEERS " == *" victoria-metrics "* ]]; then
    ratio_line "Cairn / VictoriaMetrics samples/s" "${BEST_RATE[cairn]:-}" "${BEST_RATE[victoria-metrics]:-}" '>=' 1.2 || MISSED=1
  fi
  if [[ " $PEERS " == *" prometheus "* ]]; then
    ratio_line "Cairn / Prometheus samples/s" "${BEST_RATE[cairn]:-}" "${BEST_RATE[prometheus]:-}" '>=' 3 || MISSED=1
    ratio_line "Cairn / Prometheus peak RSS" "${MAX_RSS[cairn]:-}" "${MAX_RSS[prometheus]:-}" '<=' 1 || MISSED=1
  fi
  if [[ " $PEERS " == *" victoria-metrics "* ]]; then
    awk -v a="${MAX_RSS[cairn]:-0}" -v b="${MAX_RSS[victoria-metrics]:-0}" \
      'BEGIN { if (b > 0) printf "%-36s %6.2fx  (informational)\n", "Cairn / VictoriaMetrics peak RSS", a / b }'
  fi
fi
((FAILED)) && { echo "at least one run failed (see status above)" >&2; exit 2; }
((MISSED)) && [[ $REQUIRE_TARGETS == 1 ]] && exit 3
exit 0
