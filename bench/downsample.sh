#!/usr/bin/env bash
# Downsampling benchmark: bucket bytes of raw vs 5m vs 1h blocks of the same 14 days, and the
# latency of a 14-day `avg_over_time(x[1h])` at a 1 h step through `cairn query` -> `cairn store`
# at each resolution (`max_source_resolution` 0s, 5m, 1h).
#
# Generates the data of bench/promql.sh over HOURS hours at SCRAPE seconds (promtool blocks of
# 2 h), uploads them to a local-directory bucket and runs `cairn compact` once: 2h -> 8h -> 2d
# -> 14d, then a 5m copy of every raw block of 40 h or more and a 1h copy of the 5m 14-day
# block. The data starts at promql_bench's fixed start (2023-11-14T22:00Z); the first complete
# 14-day compaction range starts 194 h later, so HOURS must reach past 194 + 336 h.
#
# Environment (defaults in brackets):
#   TARGETS [2] HOURS [540] SCRAPE [15]   data shape (~27 series a target)
#   RUNS [7]           timed runs of the query at each resolution (medians)
#   WORKDIR            keep data here and reuse it when the shape matches (default: a temp dir)
#   CARGO_TARGET_DIR [<repo>/target] CARGO_JOBS [1]
# Exit: 0 done, 2 a failure.
set -euo pipefail

export TARGETS=${TARGETS:-2} HOURS=${HOURS:-540} SCRAPE=${SCRAPE:-15}
NAME=downsample.sh WORK_PREFIX=cairn-downsample-bench
source "$(dirname "${BASH_SOURCE[0]}")/prom-blocks.sh"
((HOURS >= 540)) || die "HOURS must be at least 540 (a complete 14-day compaction range)"

log "building cairn and promql_bench (release, target dir $CARGO_TARGET_DIR)"
(cd "$ROOT" && cargo build --release -j "${CARGO_JOBS:-1}" -p cairn --bin cairn &&
  cargo build --release -j "${CARGO_JOBS:-1}" -p query --example promql_bench) >&2 ||
  die "cargo build failed"
CAIRN=$CARGO_TARGET_DIR/release/cairn
BENCH=$CARGO_TARGET_DIR/release/examples/promql_bench

make_blocks

rm -rf "$WORK/bucket" "$WORK/compact-data" "$WORK/store-data" && mkdir -p "$WORK/bucket"
OBJSTORE="type: FILESYSTEM
config:
  directory: $WORK/bucket"
log "uploading the blocks to a local-directory bucket"
"$CAIRN" tools bucket --objstore.config="$OBJSTORE" upload "$WORK/prom" --label 'cluster="bench"' \
  >"$WORK/upload.log" 2>&1 || { tail "$WORK/upload.log" >&2; die "upload failed"; }
log "cairn compact (compaction and downsampling)"
t0=$(date +%s.%N)
"$CAIRN" compact --objstore.config="$OBJSTORE" --data-dir="$WORK/compact-data" \
  --consistency-delay=0s --delete-delay=0s --http-address="127.0.0.1:$("$BENCH" free-port)" \
  >"$WORK/cairn-compact.log" 2>&1 || { tail -20 "$WORK/cairn-compact.log" >&2; die "cairn compact failed"; }
t1=$(date +%s.%N)

# The 14-day raw block and its 5m and 1h copies (same minTime and maxTime).
read -r MINT MAXT RAW_BYTES M5_BYTES H1_BYTES < <(python3 - "$WORK/bucket" <<'PY'
import json, os, sys
root = sys.argv[1]
blocks = []
for name in os.listdir(root):
    meta = os.path.join(root, name, "meta.json")
    if not os.path.exists(meta):
        continue
    m = json.load(open(meta))
    size = sum(os.path.getsize(os.path.join(d, f))
               for d, _, files in os.walk(os.path.join(root, name)) for f in files)
    blocks.append((m["minTime"], m["maxTime"], m["thanos"]["downsample"]["resolution"], size))
by_res = {}
for mint, maxt, res, size in blocks:
    if maxt - mint >= 10 * 24 * 3600 * 1000:
        by_res.setdefault((mint, maxt), {})[res] = size
full = [(k, v) for k, v in by_res.items() if {0, 300000, 3600000} <= set(v)]
if not full:
    sys.exit("downsample.sh: no 14-day block with 5m and 1h copies in the bucket")
(mint, maxt), sizes = full[0]
print(mint, maxt, sizes[0], sizes[300000], sizes[3600000])
PY
)
log "14-day block [$MINT, $MAXT): raw $RAW_BYTES bytes, 5m $M5_BYTES, 1h $H1_BYTES"

# --- queries ---------------------------------------------------------------------------------------
STORE_GRPC=$("$BENCH" free-port) STORE_HTTP=$("$BENCH" free-port) QUERY_HTTP=$("$BENCH" free-port)
"$CAIRN" store --objstore.config="$OBJSTORE" --data-dir="$WORK/store-data" \
  --grpc-address="127.0.0.1:$STORE_GRPC" --http-address="127.0.0.1:$STORE_HTTP" \
  >"$WORK/store.log" 2>&1 &
PIDS+=($!)
wait_ready "cairn store" "http://127.0.0.1:$STORE_HTTP/-/ready" "${PIDS[-1]}" "$WORK/store.log"
"$CAIRN" query --http-address="127.0.0.1:$QUERY_HTTP" --endpoint="127.0.0.1:$STORE_GRPC" \
  >"$WORK/query.log" 2>&1 &
PIDS+=($!)
wait_ready "cairn query" "http://127.0.0.1:$QUERY_HTTP/-/ready" "${PIDS[-1]}" "$WORK/query.log"
sleep 2

python3 - "$QUERY_HTTP" "$MINT" "$MAXT" "${RUNS:-7}" "$RAW_BYTES" "$M5_BYTES" "$H1_BYTES" \
  "$t0" "$t1" <<'PY'
import json, statistics, sys, time, urllib.parse, urllib.request
port, mint, maxt, runs, raw, m5, h1, t0, t1 = sys.argv[1:10]
mint, maxt, runs, raw, m5, h1 = int(mint), int(maxt), int(runs), int(raw), int(m5), int(h1)
# Whole hours inside the block, half a second past, as bench/promql.sh's queries.
start = (mint // 3600000 + 2) * 3600 + 0.5
end = (maxt // 3600000 - 1) * 3600 + 0.5
query = "avg_over_time(http_requests_total[1h])"

def ask(res):
    params = urllib.parse.urlencode({"query": query, "start": start, "end": end, "step": 3600,
                                     "max_source_resolution": res})
    t = time.perf_counter()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/query_range?{params}") as r:
        body = json.load(r)
    took = time.perf_counter() - t
    if body["status"] != "success":
        sys.exit(f"downsample.sh: query at {res} failed: {body}")
    return took, body["data"]["result"]

answers, medians = {}, {}
for res in ["0s", "5m", "1h"]:
    ask(res)  # first request: index-headers opened, caches filled
for res in ["0s", "5m", "1h"]:
    times = []
    for _ in range(runs):
        took, result = ask(res)
        times.append(took)
    answers[res] = result
    medians[res] = statistics.median(times) * 1000

def deviation(a, b):
    worst = 0.0
    idx = {json.dumps(s["metric"], sort_keys=True): s["values"] for s in b}
    for s in a:
        other = dict(idx.get(json.dumps(s["metric"], sort_keys=True), []))
        for t, v in s["values"]:
            if t in other and float(v) != 0:
                worst = max(worst, abs(float(other[t]) - float(v)) / abs(float(v)))
    return worst

series = len(answers["0s"])
points = sum(len(s["values"]) for s in answers["0s"])
print(f"compaction and downsampling run: {float(t1) - float(t0):.1f} s")
print(f"14-day block: raw {raw:,} bytes, 5m {m5:,} bytes ({m5 / raw:.2f} of raw, {100 * (1 - m5 / raw):.0f}% less), "
      f"1h {h1:,} bytes ({h1 / raw:.2f} of raw, {100 * (1 - h1 / raw):.0f}% less)")
print(f"query: {query} over {(end - start) / 86400:.1f} days at a 1 h step ({series} series, {points} points)")
print("| resolution | median ms | speedup vs raw | largest deviation from raw |")
print("|---|---:|---:|---:|")
for res in ["0s", "5m", "1h"]:
    print(f"| {res} | {medians[res]:.1f} | {medians['0s'] / medians[res]:.2f}x | "
          f"{deviation(answers[res], answers['0s']):.2e} |")
PY
