#!/usr/bin/env bash
# Compaction benchmark: `cairn compact` vs Prometheus 2.42 compacting the same promtool-made 2 h
# blocks into larger ones.
#
# Generates the data of bench/promql.sh (promtool blocks, 2 h each) over HOURS hours, then:
# - Prometheus: a copy of the blocks as its data directory, started with its default block
#   ranges (2h, 6h, 18h, 54h, ...); its TSDB compacts them about a minute after start. The
#   script waits until `prometheus_tsdb_compactions_total` stops moving and reads each
#   compaction's range and duration from its log ("compact blocks").
# - Cairn: the same blocks uploaded to a local-directory bucket (`cairn tools bucket upload`),
#   then `cairn compact --downsampling.disable` (one run until nothing is left to do; Thanos'
#   ranges 2h, 8h, 2d; Prometheus does not downsample). Each
#   compaction logs its range, its samples and the time of each step (download, verify the
#   inputs, merge, verify the output, upload); the upload is left out of its "whole" time
#   (Prometheus has nothing to upload).
# Throughput = samples written by compactions / seconds spent in them (for Prometheus the
# samples of a compaction's range, counted from the 2 h blocks' meta.json). Peak RSS = VmHWM,
# polled from /proc while the process runs (Prometheus: its whole life up to the end of the
# last compaction, so including its start).
#
# Environment (defaults in brackets):
#   TARGETS [100] HOURS [56] SCRAPE [60]   data shape (see bench/promql.sh): ~30 series a target
#   WORKDIR            keep data here and reuse it when the shape matches (default: a temp dir)
#   CARGO_TARGET_DIR [<repo>/target]  where the release build goes
#   CARGO_JOBS [1]     cargo build -j
#   PROMETHEUS_BIN [/usr/bin/prometheus] PROMTOOL_BIN [/usr/bin/promtool]
#   REQUIRE_TARGETS [0] 1 exits 3 when Cairn's merge throughput is below Prometheus' or its
#                       peak RSS above Prometheus'
# Exit: 0 done, 2 a failure, 3 target missed (if required).
set -euo pipefail

export HOURS=${HOURS:-56} SCRAPE=${SCRAPE:-60}
NAME=compact.sh WORK_PREFIX=cairn-compact-bench
source "$(dirname "${BASH_SOURCE[0]}")/prom-blocks.sh"

log "building cairn and promql_bench (release, target dir $CARGO_TARGET_DIR)"
(cd "$ROOT" && cargo build --release -j "${CARGO_JOBS:-1}" -p cairn --bin cairn &&
  cargo build --release -j "${CARGO_JOBS:-1}" -p query --example promql_bench) >&2 ||
  die "cargo build failed"
CAIRN=$CARGO_TARGET_DIR/release/cairn
BENCH=$CARGO_TARGET_DIR/release/examples/promql_bench

make_blocks
BLOCKS=$(find "$WORK/prom" -mindepth 1 -maxdepth 1 -type d -name '01*' | wc -l)
log "$BLOCKS blocks of 2 h in $WORK/prom"

# Samples of the 2 h blocks, as "minTime maxTime numSamples" lines.
python3 - "$WORK/prom" >"$WORK/block-samples" <<'PY'
import json, os, sys
root = sys.argv[1]
for name in sorted(os.listdir(root)):
    meta = os.path.join(root, name, "meta.json")
    if os.path.exists(meta):
        m = json.load(open(meta))
        print(m["minTime"], m["maxTime"], m["stats"]["numSamples"])
PY
TOTAL_SAMPLES=$(awk '{s += $3} END {print s}' "$WORK/block-samples")

# Peak RSS of $1 (kB) while it runs, written to $2 when it exits.
watch_rss() {
  local pid=$1 out=$2 peak=0 v
  while kill -0 "$pid" 2>/dev/null; do
    v=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    [[ -n $v && $v -gt $peak ]] && peak=$v
    echo "$peak" >"$out"
    sleep 0.1
  done
}

# --- Prometheus --------------------------------------------------------------------------------
rm -rf "$WORK/prom-compact" && cp -a "$WORK/prom" "$WORK/prom-compact"
rm -rf "$WORK/prom-compact/wal" "$WORK/prom-compact/chunks_head" "$WORK/prom-compact/lock"
PROM_PORT=$("$BENCH" free-port)
printf 'scrape_configs: []\n' >"$WORK/prometheus.yml"
log "starting Prometheus over a copy of the blocks (it compacts them ~1 minute after start)"
"$PROMETHEUS_BIN" \
  --config.file="$WORK/prometheus.yml" \
  --storage.tsdb.path="$WORK/prom-compact" \
  --storage.tsdb.retention.time=100y \
  --web.listen-address="127.0.0.1:$PROM_PORT" \
  >"$WORK/prometheus-compact.log" 2>&1 &
PROM_PID=$!
PIDS+=($PROM_PID)
watch_rss "$PROM_PID" "$WORK/prom-rss" &
wait_ready Prometheus "http://127.0.0.1:$PROM_PORT/-/ready" "$PROM_PID" "$WORK/prometheus-compact.log"
compactions() {
  curl -s "http://127.0.0.1:$PROM_PORT/metrics" |
    awk '/^prometheus_tsdb_compactions_total / {print $2}'
}
last=$(compactions) still=0
for _ in $(seq 1 900); do
  sleep 1
  now=$(compactions)
  if [[ $now != "0" && $now == "$last" ]]; then
    still=$((still + 1))
    [[ $still -ge 10 ]] && break
  else
    still=0
  fi
  last=$now
done
[[ ${now:-0} != 0 ]] || die "Prometheus did not compact within 15 minutes"
PROM_RSS_KB=$(cat "$WORK/prom-rss")
stop_all

# --- Cairn ---------------------------------------------------------------------------------------
rm -rf "$WORK/bucket" "$WORK/compact-data" && mkdir -p "$WORK/bucket"
OBJSTORE="type: FILESYSTEM
config:
  directory: $WORK/bucket"
log "uploading the blocks to a local-directory bucket"
"$CAIRN" tools bucket --objstore.config="$OBJSTORE" upload "$WORK/prom" --label 'cluster="bench"' \
  >"$WORK/upload.log" 2>&1 || { tail "$WORK/upload.log" >&2; die "upload failed"; }
sync
log "cairn compact"
t0=$(date +%s.%N)
CAIRN_LOG=info "$CAIRN" compact --objstore.config="$OBJSTORE" --data-dir="$WORK/compact-data" \
  --consistency-delay=0s --delete-delay=0s --downsampling.disable \
  --http-address="127.0.0.1:$("$BENCH" free-port)" \
  >"$WORK/cairn-compact.log" 2>&1 &
CAIRN_PID=$!
watch_rss "$CAIRN_PID" "$WORK/cairn-rss" &
RSS_WATCHER=$!
wait "$CAIRN_PID" || { tail -20 "$WORK/cairn-compact.log" >&2; die "cairn compact failed"; }
t1=$(date +%s.%N)
wait "$RSS_WATCHER" || true
CAIRN_RSS_KB=$(cat "$WORK/cairn-rss")

# --- figures --------------------------------------------------------------------------------------
python3 - "$WORK" "$TOTAL_SAMPLES" "$PROM_RSS_KB" "$CAIRN_RSS_KB" "$t0" "$t1" "${REQUIRE_TARGETS:-0}" <<'PY'
import re, sys
work, total, prom_rss, cairn_rss, t0, t1, require = sys.argv[1:8]
total, prom_rss, cairn_rss = int(total), int(prom_rss), int(cairn_rss)
blocks = [tuple(map(int, l.split())) for l in open(f"{work}/block-samples")]

def go_seconds(d):
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * units[u] for n, u in re.findall(r"([0-9.]+)(ns|us|µs|ms|s|m|h)", d))

def range_samples(mint, maxt):
    return sum(n for (a, b, n) in blocks if a >= mint and b <= maxt)

prom = []
for line in open(f"{work}/prometheus-compact.log"):
    if 'msg="compact blocks"' in line:
        f = dict(re.findall(r'(\w+)=("[^"]*"|\S+)', line))
        prom.append((int(f["mint"]), int(f["maxt"]), go_seconds(f["duration"])))
cairn = []
for line in open(f"{work}/cairn-compact.log"):
    if "compacted blocks" in line:
        f = dict(re.findall(r'(\w+)=("[^"]*"|\[[^\]]*\]|\S+)', line))
        # The whole compaction but its upload (Prometheus has nothing to upload).
        whole = go_seconds(f["duration"]) - go_seconds(f["upload_duration"])
        cairn.append((int(f["samples"]), go_seconds(f["merge_duration"]), whole))
if not prom or not cairn:
    sys.exit(f"compact.sh: no compaction found in a log (prometheus {len(prom)}, cairn {len(cairn)})")

p_samples = sum(range_samples(a, b) for a, b, _ in prom)
p_secs = sum(d for _, _, d in prom)
c_samples = sum(s for s, _, _ in cairn)
c_merge = sum(m for _, m, _ in cairn)
c_whole = sum(d for _, _, d in cairn)
p_rate, c_merge_rate, c_whole_rate = p_samples / p_secs, c_samples / c_merge, c_samples / c_whole
print(f"data: {len(blocks)} blocks of 2 h, {total:,} samples")
print("| | compactions | samples written | seconds | samples/s | peak RSS |")
print("|---|---|---|---|---|---|")
print(f"| Prometheus 2.42 | {len(prom)} | {p_samples:,} | {p_secs:.2f} | {p_rate:,.0f} | {prom_rss/1024:.0f} MiB |")
print(f"| cairn compact (merge) | {len(cairn)} | {c_samples:,} | {c_merge:.2f} | {c_merge_rate:,.0f} | {cairn_rss/1024:.0f} MiB |")
print(f"| cairn compact (download, verify inputs, merge, verify output) | {len(cairn)} | {c_samples:,} | {c_whole:.2f} | {c_whole_rate:,.0f} | |")
print(f"cairn compact run, wall clock (with sync, uploads, deletions): {float(t1) - float(t0):.2f} s")
print(f"ratios: merge throughput cairn/prometheus {c_merge_rate / p_rate:.2f}x, "
      f"with downloads and verification {c_whole_rate / p_rate:.2f}x, peak RSS cairn/prometheus {cairn_rss / prom_rss:.2f}")
missed = c_merge_rate < p_rate or cairn_rss > prom_rss
if missed:
    print("target missed: cairn's merge is slower or its peak RSS higher than Prometheus'")
sys.exit(3 if missed and require == "1" else 0)
PY
