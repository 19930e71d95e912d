#!/usr/bin/env bash
# Store gateway benchmark: `cairn query` -> `cairn store` over an S3 bucket (s3s-fs on loopback)
# vs Prometheus 2.42 over the same blocks on local disk, with the dashboard range queries of
# bench/query.sh.
#
# Generates the data of bench/promql.sh (promtool blocks, 2 h each), starts Prometheus over the
# blocks, uploads them with `cairn tools bucket upload --label replica="s"` to s3s-fs, starts
# `cairn store` with an empty data dir (index-headers are built at its first sync) and
# `cairn query --query.replica-label replica` over it. `promql_bench http` checks that both
# answer the same, then times each query on both sides, interleaved: the first request of each
# query meets an index cache that is cold for its selectors ("first request"), the timed runs
# after it are warm (medians). Then it reports the store's RSS with every block's index-header
# open against the total size of the blocks' `index` files, the bytes the store fetched
# from the bucket per Series request, and what its index and chunks caches answered. The store
# runs with its default chunks cache (in-memory, 256 MiB); STORE_ARGS adds flags, e.g.
# STORE_ARGS='--store.caching-bucket.config=type: NONE' for none. See bench/README.md.
#
# Environment (defaults in brackets):
#   TARGETS [100] HOURS [8] SCRAPE [15]   data shape (see bench/promql.sh)
#   STEP [60] RUNS [7] QUERIES            as bench/query.sh
#   WORKDIR            keep data here and reuse it when the shape matches (default: a temp dir)
#   CARGO_TARGET_DIR [<repo>/target]  where the release build goes
#   CARGO_JOBS [1]     cargo build -j
#   PROMETHEUS_BIN [/usr/bin/prometheus] PROMTOOL_BIN [/usr/bin/promtool] S3S_FS_BIN [s3s-fs]
#   READY_TIMEOUT [120] seconds for the servers to become ready
#   REQUIRE_TARGETS [0] 1 exits 3 when a target is missed (warm median slower than Prometheus',
#                       or store RSS not under the total index size)
# Exit: 0 done, 2 a failure, 3 target missed (if required).
set -euo pipefail

NAME=store.sh WORK_PREFIX=cairn-store-bench
source "$(dirname "${BASH_SOURCE[0]}")/prom-blocks.sh"

S3S_FS_BIN=${S3S_FS_BIN:-$(command -v s3s-fs || echo "$HOME/.cargo/bin/s3s-fs")}
[[ -x $S3S_FS_BIN ]] || die "s3s-fs not found: cargo install s3s-fs@0.14.1 --locked --features binary"

log "building cairn and promql_bench (release, target dir $CARGO_TARGET_DIR)"
(cd "$ROOT" && cargo build --release -j "${CARGO_JOBS:-1}" -p cairn --bin cairn &&
  cargo build --release -j "${CARGO_JOBS:-1}" -p query --example promql_bench) >&2 ||
  die "cargo build failed"
CAIRN=$CARGO_TARGET_DIR/release/cairn
BENCH=$CARGO_TARGET_DIR/release/examples/promql_bench

make_blocks
start_prometheus

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
log "uploading the blocks"
"$CAIRN" tools bucket --objstore.config="$OBJSTORE" upload "$WORK/prom" --label 'replica="s"' \
  >"$WORK/upload.log" 2>&1 || { tail -20 "$WORK/upload.log" >&2; die "upload failed"; }
BLOCKS=$(find "$WORK/prom" -mindepth 2 -maxdepth 2 -name meta.json | wc -l)
INDEX_BYTES=$(find "$WORK/prom" -mindepth 2 -maxdepth 2 -name index -printf '%s\n' | awk '{s+=$1} END {print s+0}')
BLOCK_BYTES=$(du -sb --exclude=wal --exclude=chunks_head "$WORK/prom" | cut -f1)

# --- cairn store and cairn query -----------------------------------------------------------------
STORE_GRPC=$("$BENCH" free-port) STORE_HTTP=$("$BENCH" free-port)
rm -rf "$WORK/store-data"
log "starting cairn store (StoreAPI 127.0.0.1:$STORE_GRPC)"
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
# Info is asked every 5 s: wait until the query layer routes to the store.
for _ in $(seq 1 100); do
  curl -s "http://127.0.0.1:$QUERY_PORT/api/v1/stores" | grep -q '"health":"up"' && break
  sleep 0.2
done

metric_sum() { # prefix
  curl -s "http://127.0.0.1:$STORE_HTTP/metrics" | awk -v p="$1" 'index($0, p) == 1 {s += $NF} END {printf "%.0f\n", s}'
}

# --- run -----------------------------------------------------------------------------------------
log "running queries"
set +e
"$BENCH" http "$WORK/meta.json" "http://127.0.0.1:$PROM_PORT" "http://127.0.0.1:$QUERY_PORT"
status=$?
set -e

RSS_KB=$(awk '/^VmRSS/ {print $2}' "/proc/$STORE_PID/status")
HWM_KB=$(awk '/^VmHWM/ {print $2}' "/proc/$STORE_PID/status")
HEADER_BYTES=$(find "$WORK/store-data" -name index-header -printf '%s\n' | awk '{s+=$1} END {print s+0}')
FETCHED=$(metric_sum thanos_bucket_store_series_data_fetched_sum)
REQUESTS=$(metric_sum 'thanos_bucket_store_series_data_fetched_count{data_type="chunks"}')
HITS=$(metric_sum thanos_store_index_cache_hits_total)
LOOKUPS=$(metric_sum thanos_store_index_cache_requests_total)
OPEN=$(metric_sum thanos_bucket_store_indexheader_lazy_load)
FROM_CACHE=$(metric_sum 'thanos_store_bucket_cache_getrange_fetched_bytes_total{origin="cache"')
FROM_BUCKET=$(metric_sum 'thanos_store_bucket_cache_getrange_fetched_bytes_total{origin="bucket"')
CHUNK_READS=$(metric_sum thanos_store_bucket_cache_operation_requests_total)
CHUNK_HITS=$(metric_sum thanos_store_bucket_cache_operation_hits_total)
echo
echo "store: $BLOCKS blocks ($((BLOCK_BYTES / 1048576)) MiB, index files $((INDEX_BYTES / 1048576)) MiB, index-headers $((HEADER_BYTES / 1048576)) MiB), first sync ${SYNC_MS} ms"
echo "store RSS after the queries: $((RSS_KB / 1024)) MiB (peak $((HWM_KB / 1024)) MiB) with $OPEN index-headers open; index files $((INDEX_BYTES / 1048576)) MiB: ratio $(awk -v r="$RSS_KB" -v i="$INDEX_BYTES" 'BEGIN {printf "%.2f", r * 1024 / i}')"
echo "bucket bytes fetched: $((FETCHED / 1048576)) MiB over $REQUESTS Series requests, $(awk -v f="$FETCHED" -v n="$REQUESTS" 'BEGIN {printf "%.1f", n ? f / n / 1024 : 0}') KiB per request"
echo "index cache: $HITS hits of $LOOKUPS lookups"
echo "chunks cache: $((FROM_CACHE / 1048576)) MiB from memory, $((FROM_BUCKET / 1048576)) MiB from the bucket; $CHUNK_HITS of $CHUNK_READS segment reads from memory alone"
if [[ $status == 0 && ${REQUIRE_TARGETS:-0} == 1 && $((RSS_KB * 1024)) -ge $INDEX_BYTES ]]; then
  echo "RSS target MISSED"
  status=3
fi
exit $status
