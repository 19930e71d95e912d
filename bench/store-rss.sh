#!/usr/bin/env bash
# Store gateway memory: `cairn store`'s RSS with every block's index-header open, against the
# total size of the blocks' `index` files, on blocks with many series (bench/store.sh's data is
# far too small for that figure to mean anything).
#
# Writes OpenMetrics for PODS x METRICS series (6 labels each: one pod and instance per pod,
# 10 jobs, 50 namespaces, 5 containers; with UNIQUE=1 a 7th label, `id`, with a value of its own
# for every series, which makes the symbol and postings offset tables, and so the index-headers,
# grow with the series), every series present in each of BLOCKS 2 h blocks
# with SAMPLES samples per block, and turns it into blocks with promtool (`tsdb
# create-blocks-from openmetrics`). Uploads them with `cairn tools bucket upload` to s3s-fs on
# loopback, starts `cairn store` with an empty data dir (index-headers are built at its first
# sync, then closed), and `cairn query` over it. A `/api/v1/labels` call over all time opens
# every block's index-header (thanos_bucket_store_indexheader_lazy_load); the store's VmRSS
# (anonymous and file-backed parts) and VmHWM are read then, and again after one Series request
# that reads every series of one metric (`count(app_metric_000)`, PODS series a block).
#
# Environment (defaults in brackets):
#   PODS [10000] METRICS [100] BLOCKS [4] SAMPLES [2] UNIQUE [0]   data shape: 1 M series x 4
#                        blocks, ~300 MiB of index files; ~3 min after the builds on 2 cores
#   WORKDIR            keep data here and reuse it when the shape matches (default: a temp dir)
#   CARGO_TARGET_DIR [<repo>/target]  where the release build goes
#   CARGO_JOBS [1]     cargo build -j
#   PROMTOOL_BIN [/usr/bin/promtool] S3S_FS_BIN [s3s-fs]
#   READY_TIMEOUT [600] seconds for the servers to become ready (the store's first sync
#                       builds every index-header)
#   STORE_ARGS         one more flag for `cairn store`
#   REQUIRE_TARGETS [0] 1 exits 3 when the RSS with every index-header open is not under half
#                       the total index size
# Exit: 0 done, 2 a failure, 3 target missed (if required).
set -euo pipefail

NAME=store-rss.sh WORK_PREFIX=cairn-store-rss
export READY_TIMEOUT=${READY_TIMEOUT:-600}
source "$(dirname "${BASH_SOURCE[0]}")/prom-blocks.sh"

PODS=${PODS:-10000} METRICS=${METRICS:-100} BLOCKS=${BLOCKS:-4} SAMPLES=${SAMPLES:-2}
UNIQUE=${UNIQUE:-0}
[[ $UNIQUE == 0 || $UNIQUE == 1 ]] || die "UNIQUE must be 0 or 1 (got '$UNIQUE')"
for v in PODS METRICS BLOCKS SAMPLES; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
((METRICS <= 1000 && SAMPLES <= 7200)) || die "METRICS must be at most 1000, SAMPLES at most 7200"

S3S_FS_BIN=${S3S_FS_BIN:-$(command -v s3s-fs || echo "$HOME/.cargo/bin/s3s-fs")}
[[ -x $S3S_FS_BIN ]] || die "s3s-fs not found: cargo install s3s-fs@0.14.1 --locked --features binary"

log "building cairn and promql_bench (release, target dir $CARGO_TARGET_DIR)"
(cd "$ROOT" && cargo build --release -j "${CARGO_JOBS:-1}" -p cairn --bin cairn &&
  cargo build --release -j "${CARGO_JOBS:-1}" -p query --example promql_bench) >&2 ||
  die "cargo build failed"
CAIRN=$CARGO_TARGET_DIR/release/cairn
BENCH=$CARGO_TARGET_DIR/release/examples/promql_bench

# --- the blocks ----------------------------------------------------------------------------------
shape="pods=$PODS metrics=$METRICS blocks=$BLOCKS samples=$SAMPLES unique=$UNIQUE"
if [[ -f $WORK/rss-shape && $(cat "$WORK/rss-shape") == "$shape" ]]; then
  log "reusing the blocks in $WORK/blocks ($shape)"
else
  rm -rf "$WORK/blocks" "$WORK/rss-shape" "$WORK/data.om"
  log "generating OpenMetrics ($shape: $((PODS * METRICS)) series)"
  # Series-major, one metric family after another; block b holds [start + 2h b, start + 2h (b+1)).
  awk -v pods="$PODS" -v metrics="$METRICS" -v blocks="$BLOCKS" -v samples="$SAMPLES" \
    -v unique="$UNIQUE" 'BEGIN {
    start = 1699999200; step = int(7200 / samples)
    for (m = 0; m < metrics; m++) {
      name = sprintf("app_metric_%03d", m)
      printf "# TYPE %s gauge\n", name
      for (p = 0; p < pods; p++) {
        series = sprintf("%s{container=\"c%d\",instance=\"10.%d.%d.%d:8080\",job=\"job-%d\",namespace=\"ns-%d\",pod=\"pod-%07d\"%s}",
          name, p % 5, int(p / 65536) % 256, int(p / 256) % 256, p % 256, p % 10, p % 50, p,
          unique ? sprintf(",id=\"%03d-%07d\"", m, p) : "")
        for (b = 0; b < blocks; b++)
          for (s = 0; s < samples; s++)
            printf "%s %d %d\n", series, (p + m + s) % 1000, start + b * 7200 + s * step
      }
    }
    print "# EOF"
  }' >"$WORK/data.om"
  log "promtool tsdb create-blocks-from openmetrics ($(($(stat -c %s "$WORK/data.om") / 1048576)) MiB of text)"
  t0=$(date +%s)
  "$PROMTOOL_BIN" tsdb create-blocks-from openmetrics "$WORK/data.om" "$WORK/blocks" \
    >"$WORK/promtool.log" 2>&1 || { tail -20 "$WORK/promtool.log" >&2; die "promtool failed"; }
  log "promtool took $(($(date +%s) - t0)) s"
  rm -f "$WORK/data.om"
  echo "$shape" >"$WORK/rss-shape"
fi
NBLOCKS=$(find "$WORK/blocks" -mindepth 2 -maxdepth 2 -name meta.json | wc -l)
INDEX_BYTES=$(find "$WORK/blocks" -mindepth 2 -maxdepth 2 -name index -printf '%s\n' | awk '{s+=$1} END {print s+0}')
BLOCK_BYTES=$(du -sb "$WORK/blocks" | cut -f1)

# --- the bucket ----------------------------------------------------------------------------------
S3_PORT=$("$BENCH" free-port)
rm -rf "$WORK/s3" && mkdir -p "$WORK/s3/metrics"
log "starting s3s-fs on 127.0.0.1:$S3_PORT"
"$S3S_FS_BIN" --host 127.0.0.1 --port "$S3_PORT" --access-key bench --secret-key bench-secret \
  "$WORK/s3" >"$WORK/s3s-fs.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do
  (echo >"/dev/tcp/127.0.0.1/$S3_PORT") 2>/dev/null && break
  sleep 0.1
done
OBJSTORE="type: S3
config:
  bucket: metrics
  endpoint: 127.0.0.1:$S3_PORT
  region: us-east-1
  access_key: bench
  secret_key: bench-secret
  insecure: true"
log "uploading $NBLOCKS blocks"
"$CAIRN" tools bucket --objstore.config="$OBJSTORE" upload "$WORK/blocks" --label 'replica="s"' \
  >"$WORK/upload.log" 2>&1 || { tail -20 "$WORK/upload.log" >&2; die "upload failed"; }

# --- cairn store and cairn query -----------------------------------------------------------------
STORE_GRPC=$("$BENCH" free-port) STORE_HTTP=$("$BENCH" free-port)
rm -rf "$WORK/store-data"
log "starting cairn store (StoreAPI 127.0.0.1:$STORE_GRPC); its first sync builds the index-headers"
t0=$(date +%s%N)
"$CAIRN" store --data-dir="$WORK/store-data" --objstore.config="$OBJSTORE" \
  --grpc-address="127.0.0.1:$STORE_GRPC" --http-address="127.0.0.1:$STORE_HTTP" \
  ${STORE_ARGS:+"$STORE_ARGS"} >"$WORK/store.log" 2>&1 &
STORE_PID=$!
PIDS+=($STORE_PID)
wait_ready "cairn store" "http://127.0.0.1:$STORE_HTTP/-/ready" "$STORE_PID" "$WORK/store.log"
SYNC_MS=$((($(date +%s%N) - t0) / 1000000))
QUERY_PORT=$("$BENCH" free-port)
log "starting cairn query on 127.0.0.1:$QUERY_PORT"
"$CAIRN" query --http-address="127.0.0.1:$QUERY_PORT" --endpoint="127.0.0.1:$STORE_GRPC" \
  --query.replica-label=replica >"$WORK/query.log" 2>&1 &
PIDS+=($!)
wait_ready "cairn query" "http://127.0.0.1:$QUERY_PORT/-/ready" "${PIDS[-1]}" "$WORK/query.log"
for _ in $(seq 1 100); do
  curl -s "http://127.0.0.1:$QUERY_PORT/api/v1/stores" | grep -q '"health":"up"' && break
  sleep 0.2
done

metric_sum() { # prefix
  curl -s "http://127.0.0.1:$STORE_HTTP/metrics" | awk -v p="$1" 'index($0, p) == 1 {s += $NF} END {printf "%.0f\n", s}'
}
status_kb() { # field of /proc/<store>/status
  awk -v f="$1:" '$1 == f {print $2}' "/proc/$STORE_PID/status"
}
mib() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1048576}'; }
HEADER_BYTES=$(find "$WORK/store-data" -name index-header -printf '%s\n' | awk '{s+=$1} END {print s+0}')
report() { # what
  local rss anon file hwm
  rss=$(status_kb VmRSS) anon=$(status_kb RssAnon) file=$(status_kb RssFile) hwm=$(status_kb VmHWM)
  echo "$1: RSS $(mib $((rss * 1024))) MiB (anonymous $(mib $((anon * 1024))), file-backed $(mib $((file * 1024)))), peak $(mib $((hwm * 1024))) MiB, $(metric_sum thanos_bucket_store_indexheader_lazy_load) index-headers open; RSS / index files $(awk -v r="$rss" -v i="$INDEX_BYTES" 'BEGIN {printf "%.3f", r * 1024 / i}')"
  LAST_RSS_KB=$rss
}

# Queries span the whole data: [start, start + BLOCKS x 2 h).
START=1699999200 END=$((1699999200 + BLOCKS * 7200 - 1))
echo
echo "store-rss: $NBLOCKS blocks, $((PODS * METRICS)) series each ($(mib "$BLOCK_BYTES") MiB); index files $(mib "$INDEX_BYTES") MiB, index-headers $(mib "$HEADER_BYTES") MiB; first sync ${SYNC_MS} ms"
report "after the first sync"
t0=$(date +%s%N)
curl -sf "http://127.0.0.1:$QUERY_PORT/api/v1/labels?start=$START&end=$END" >"$WORK/labels.json" ||
  die "/api/v1/labels failed"
echo "labels call: $((($(date +%s%N) - t0) / 1000000)) ms, $(grep -o '"[a-z_]*"' "$WORK/labels.json" | tr '\n' ' ')"
report "every index-header open"
OPEN_RSS_KB=$LAST_RSS_KB
t0=$(date +%s%N)
curl -sf "http://127.0.0.1:$QUERY_PORT/api/v1/query_range" --data-urlencode "query=count(app_metric_000)" \
  --data-urlencode "start=$START" --data-urlencode "end=$END" --data-urlencode "step=3600" \
  >"$WORK/count.json" || die "query_range failed"
echo "count(app_metric_000) over all blocks: $((($(date +%s%N) - t0) / 1000000)) ms: $(head -c 300 "$WORK/count.json")"
report "after one Series request over $PODS series a block"
status=0
if [[ ${REQUIRE_TARGETS:-0} == 1 && $((OPEN_RSS_KB * 1024 * 2)) -ge $INDEX_BYTES ]]; then
  echo "RSS target MISSED"
  status=3
fi
exit $status
