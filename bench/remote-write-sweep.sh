#!/usr/bin/env bash
# Ingest at every load shape: bench/remote-write.sh once per (requests in flight, series per
# request) pair, each time Cairn, Prometheus 2.42 and VictoriaMetrics 1.79 side by side, then
# one table of samples/s and Cairn's ratios per shape. Cairn fsyncs every acknowledged request
# (its default) throughout.
#
# Environment (defaults in brackets):
#   SHAPES ["1:500 2:500 4:500 8:500 1:2000 2:2000 4:2000 8:2000"]  in-flight:series-per-request
#   SERIES [20000] ROUNDS [30]   the load of each shape (SERIES x ROUNDS samples)
#   REPEAT [1]                   runs per peer and shape (best samples/s counts)
#   PEERS, CAIRN_BIN, CAIRN_ARGS, BENCH_NICE, ...   passed on to bench/remote-write.sh
# Exit: 0 when every run was clean (targets are reported, not enforced), 2 when one failed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHAPES=${SHAPES:-"1:500 2:500 4:500 8:500 1:2000 2:2000 4:2000 8:2000"}
export SERIES=${SERIES:-20000} ROUNDS=${ROUNDS:-30} REPEAT=${REPEAT:-1}
export PEERS=${PEERS:-"cairn prometheus victoria-metrics"}

if [[ -z ${CAIRN_BIN:-} ]]; then
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
  echo "== building cairn (release)" >&2
  (cd "$ROOT" && cargo build --release -p cairn) >&2
  CAIRN_BIN=$CARGO_TARGET_DIR/release/cairn
fi
export CAIRN_BIN

LOGS=$(mktemp -d "${TMPDIR:-/tmp}/cairn-sweep.XXXXXX")
FAILED=0
ROWS=()
for shape in $SHAPES; do
  c=${shape%%:*} b=${shape##*:}
  log=$LOGS/c$c-b$b.log
  echo "== $c in flight, $b series per request" >&2
  rc=0
  CONCURRENCY=$c BATCH_SERIES=$b "$ROOT/bench/remote-write.sh" >"$log" 2>&1 || rc=$?
  # 3 only says a target was missed; anything else is a failed run.
  if ((rc != 0 && rc != 3)); then
    echo "   failed (exit $rc); log: $log" >&2
    FAILED=1
  fi
  # The best samples/s of each peer, from the run table ("cairn#1  452547 ...").
  best() {
    awk -v p="$1" '$1 ~ ("^" p "#[0-9]+$") && $NF == "ok" { if ($2 > m) m = $2 } END { print m + 0 }' "$log"
  }
  ROWS+=("$c $b $(best cairn) $(best prometheus) $(best victoria-metrics)")
done

echo
printf '%9s %8s %12s %12s %12s %9s %9s\n' in-flight series cairn prometheus victoria "/ VM" "/ Prom"
for row in "${ROWS[@]}"; do
  awk -v r="$row" 'BEGIN {
    split(r, f, " ")
    vm = f[5] > 0 ? sprintf("%.2fx", f[3] / f[5]) : "-"
    pr = f[4] > 0 ? sprintf("%.2fx", f[3] / f[4]) : "-"
    printf "%9s %8s %12.0f %12.0f %12.0f %9s %9s\n", f[1], f[2], f[3], f[4], f[5], vm, pr }'
done
echo "(samples/s, best of $REPEAT run(s) per peer and shape; $SERIES series x $ROUNDS rounds each;"
echo " targets: >= 1.2x VictoriaMetrics and >= 3x Prometheus at 2, 4 and 8 in flight; logs in $LOGS)"
exit $((FAILED ? 2 : 0))
