//! The bucket store end to end in-process: two blocks written by `tsdb::block::write_block` in a
//! FILESYSTEM bucket, a sync, and Series calls: series merged across blocks and streamed in
//! sorted order, index-headers opened lazily and closed when idle, the index cache saving GETs
//! on a repeated request, and the limits answering ResourceExhausted with the flag's name.

use std::sync::Arc;
use std::time::Duration;

use objstore::fetcher::MetaFetcher;
use proto::thanos::label_matcher::Type;
use proto::thanos::{series_response, LabelMatcher, SeriesRequest};
use store::bucket::cache::IndexCache;
use store::bucket::store::{collect, BucketStore, BucketStoreConfig, BucketStoreMetrics};
use tsdb::block::{write_block, BlockWriteOptions};
use tsdb::chunkenc::{XorChunk, ENCODING_XOR};
use tsdb::meta::ThanosMeta;
use tsdb::querier::{ChunkData, Series};
use tsdb::Labels;

const SERIES: usize = 600;
const HOUR: i64 = 3_600_000;

/// One XOR chunk of 60 samples, a minute apart, from `start`; values 0..60 plus `base`.
fn chunk(start: i64, base: f64) -> ChunkData {
    let mut c = XorChunk::new();
    for i in 0..60 {
        c.append(start + i * 60_000, base + i as f64);
    }
    ChunkData {
        min_time: start,
        max_time: start + 59 * 60_000,
        encoding: ENCODING_XOR,
        data: bytes::Bytes::copy_from_slice(c.bytes()),
    }
}

fn series(hour: i64) -> Vec<Series> {
    let mut out: Vec<Series> = (0..SERIES)
        .map(|i| Series {
            labels: Labels::from_pairs(vec![
                ("__name__".to_string(), "m".to_string()),
                ("i".to_string(), format!("{i:04}")),
                ("parity".to_string(), ["even", "odd"][i % 2].to_string()),
            ]),
            chunks: vec![chunk(hour * HOUR, i as f64)],
        })
        .collect();
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    out
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<BucketStore>,
    registry: prometheus_client::registry::Registry,
}

async fn fixture(config: impl FnOnce(&mut BucketStoreConfig)) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("local");
    std::fs::create_dir_all(&local).unwrap();
    let bucket = objstore::BucketConfig::filesystem(dir.path().join("bucket"))
        .build()
        .unwrap();
    for hour in 0..2 {
        let opts = BlockWriteOptions {
            thanos: Some(ThanosMeta {
                labels: [("replica".to_string(), "r0".to_string())].into(),
                source: "test".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let meta =
            write_block(&local, hour * HOUR, (hour + 1) * HOUR, &series(hour), opts).unwrap();
        objstore::bucket::upload_block(&bucket, &local.join(meta.ulid.to_string()))
            .await
            .unwrap();
    }
    let data = dir.path().join("store");
    let fetcher = MetaFetcher::new(bucket.clone(), Some(&data), 4, Vec::new()).unwrap();
    let mut cfg = BucketStoreConfig::new(data);
    config(&mut cfg);
    let cache = Arc::new(IndexCache::new(64 << 20, 32 << 20));
    let metrics = BucketStoreMetrics::default();
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    cache.register(&mut registry);
    let store = Arc::new(BucketStore::new(bucket, fetcher, cfg, cache, metrics).unwrap());
    let report = store.sync().await.unwrap();
    assert_eq!(report.added.len(), 2, "{report:?}");
    Fixture {
        _dir: dir,
        store,
        registry,
    }
}

fn matcher(t: Type, name: &str, value: &str) -> LabelMatcher {
    LabelMatcher {
        r#type: t as i32,
        name: name.into(),
        value: value.into(),
    }
}

fn request(matchers: Vec<LabelMatcher>) -> SeriesRequest {
    SeriesRequest {
        min_time: 0,
        max_time: 2 * HOUR,
        matchers,
        ..Default::default()
    }
}

/// (labels, number of chunks) of every series of an answer, frames joined.
fn answer(responses: &[proto::thanos::SeriesResponse]) -> Vec<(Vec<(String, String)>, usize)> {
    let mut out: Vec<(Vec<(String, String)>, usize)> = Vec::new();
    for r in responses {
        let Some(series_response::Result::Series(s)) = &r.result else {
            panic!("unexpected response {r:?}");
        };
        let labels: Vec<(String, String)> = s
            .labels
            .iter()
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect();
        match out.last_mut() {
            Some((l, n)) if *l == labels => *n += s.chunks.len(),
            _ => out.push((labels, s.chunks.len())),
        }
    }
    out
}

fn metric(registry: &prometheus_client::registry::Registry, prefix: &str) -> f64 {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn series_are_merged_across_blocks_and_streamed_sorted() {
    let f = fixture(|_| {}).await;
    let rx = f
        .store
        .series(request(vec![
            matcher(Type::Eq, "__name__", "m"),
            matcher(Type::Re, "parity", "odd|even"),
            matcher(Type::Neq, "i", "0007"),
        ]))
        .await
        .unwrap();
    let got = answer(&collect(rx).await.unwrap());
    assert_eq!(got.len(), SERIES - 1, "every series but i=0007, once");
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "sorted by labels");
    assert!(
        got.iter().all(|(_, chunks)| *chunks == 2),
        "one chunk from each block"
    );
    assert!(
        got[0]
            .0
            .contains(&("replica".to_string(), "r0".to_string())),
        "external labels added"
    );
    // A time range inside the second block reads only it.
    let mut r = request(vec![matcher(Type::Eq, "parity", "odd")]);
    r.min_time = HOUR + 1;
    let got = answer(&collect(f.store.series(r).await.unwrap()).await.unwrap());
    assert_eq!(got.len(), SERIES / 2);
    assert!(got.iter().all(|(_, chunks)| *chunks == 1));
    // Replica labels can be removed; a matcher on an external label selects blocks.
    let mut r = request(vec![
        matcher(Type::Eq, "replica", "r1"),
        matcher(Type::Eq, "i", "0001"),
    ]);
    assert!(answer(
        &collect(f.store.series(r.clone()).await.unwrap())
            .await
            .unwrap()
    )
    .is_empty());
    r.matchers[0].value = "r0".into();
    r.without_replica_labels = vec!["replica".into()];
    let got = answer(&collect(f.store.series(r).await.unwrap()).await.unwrap());
    assert_eq!(got.len(), 1);
    assert!(!got[0].0.iter().any(|(n, _)| n == "replica"));
}

#[tokio::test]
async fn index_headers_open_lazily_close_when_idle_and_reopen() {
    let f = fixture(|c| c.index_header_idle_timeout = Duration::ZERO).await;
    assert_eq!(
        f.store.open_index_headers(),
        0,
        "a sync builds headers but keeps none open"
    );
    let r = request(vec![matcher(Type::Eq, "i", "0042")]);
    let first = answer(
        &collect(f.store.series(r.clone()).await.unwrap())
            .await
            .unwrap(),
    );
    assert_eq!(f.store.open_index_headers(), 2);
    assert_eq!(f.store.close_idle_index_headers(), 2);
    assert_eq!(f.store.open_index_headers(), 0);
    let again = answer(&collect(f.store.series(r).await.unwrap()).await.unwrap());
    assert_eq!(first, again);
    assert_eq!(f.store.open_index_headers(), 2);
}

#[tokio::test]
async fn a_repeated_request_is_served_from_the_index_cache() {
    let f = fixture(|_| {}).await;
    let r = request(vec![matcher(Type::Eq, "parity", "even")]);
    collect(f.store.series(r.clone()).await.unwrap())
        .await
        .unwrap();
    let hits = metric(&f.registry, "thanos_store_index_cache_hits_total");
    collect(f.store.series(r).await.unwrap()).await.unwrap();
    let more = metric(&f.registry, "thanos_store_index_cache_hits_total") - hits;
    // Two blocks: one postings list and 300 series entries each.
    assert_eq!(more, 2.0 * (1.0 + SERIES as f64 / 2.0));
}

#[tokio::test]
async fn limits_refuse_with_resource_exhausted_naming_the_flag() {
    let f = fixture(|c| c.touched_series_limit = 100).await;
    let e = f
        .store
        .series(request(vec![matcher(Type::Eq, "__name__", "m")]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted);
    assert!(
        e.message()
            .contains("--store.grpc.touched-series-limit=100"),
        "{}",
        e.message()
    );
    // Under the limit it answers.
    let ok = f
        .store
        .series(request(vec![matcher(Type::Eq, "i", "0001")]))
        .await;
    assert!(ok.is_ok());

    let f = fixture(|c| c.series_sample_limit = 120 * 10).await;
    let e = f
        .store
        .series(request(vec![matcher(Type::Re, "i", "00[0-9][0-9]")]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted);
    assert!(
        e.message()
            .contains("--store.grpc.series-sample-limit=1200"),
        "{}",
        e.message()
    );
    assert!(e.message().contains("200 chunks"), "{}", e.message());
    // Without chunks (a series call for labels only) the sample limit does not apply.
    let mut r = request(vec![matcher(Type::Re, "i", "00[0-9][0-9]")]);
    r.skip_chunks = true;
    let got = answer(&collect(f.store.series(r).await.unwrap()).await.unwrap());
    assert_eq!(got.len(), 100);
}
