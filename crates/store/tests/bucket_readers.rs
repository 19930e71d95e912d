//! The bucket read path (index-header, ranged index and chunk readers) checked against Cairn's
//! own TSDB readers on a real block written by `tsdb::block::write_block` and uploaded to a
//! FILESYSTEM bucket.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use store::bucket::indexheader::{
    build_from_bucket, build_from_index_file, write_from_bucket, BinaryToc, IndexHeaderReader,
    DEFAULT_POSTING_OFFSETS_IN_MEM_SAMPLING, INDEX_HEADER_FILENAME,
};
use store::bucket::{
    BlockChunkReader, BlockIndexReader, Error, FetchStats, GapPartitioner, SeriesEntry,
};
use tsdb::block::{write_block, Block, BlockWriteOptions};
use tsdb::chunkenc::{XorChunk, ENCODING_XOR};
use tsdb::index::{Toc, TOC_LEN};
use tsdb::meta::{BlockMeta, ThanosMeta};
use tsdb::querier::{ChunkData, Series};
use tsdb::Labels;
use ulid::Ulid;

const SERIES: usize = 1200;
const ZONES: &[&str] = &[
    "a",
    "B",
    "Z",
    "z",
    "zürich",
    "東京",
    "ñandú",
    "Ωmega",
    "emoji-🦀",
    "~tilde",
    " space",
    "10",
    "9",
    // Longer than 127 bytes: a two-byte uvarint length.
    "long-long-long-long-long-long-long-long-long-long-long-long-long-long-long-long-long-long-long-long-long-long-long-long-long-long-long-long-value",
];
const NAMES: &[&str] = &["up", "http_requests_total", "Ünïcode_metric", "a:b"];

/// xorshift64, so the fixture is the same every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn chunk(rng: &mut Rng, start: i64, samples: usize, noisy: bool) -> ChunkData {
    let mut c = XorChunk::new();
    for k in 0..samples {
        let v = if noisy {
            f64::from_bits(rng.next() >> 2)
        } else {
            (rng.next() % 1000) as f64
        };
        c.append(start + k as i64 * 15, v);
    }
    ChunkData {
        min_time: start,
        max_time: start + (samples as i64 - 1) * 15,
        encoding: ENCODING_XOR,
        data: bytes::Bytes::copy_from_slice(c.bytes()),
    }
}

fn fixture_series() -> Vec<Series> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut out: Vec<Series> = (0..SERIES)
        .map(|i| {
            let mut pairs: Vec<(String, String)> = vec![
                ("__name__".into(), NAMES[i % NAMES.len()].into()),
                ("id".into(), i.to_string()),
                ("instance".into(), format!("host-{}", i % 100)),
                ("zone".into(), ZONES[i % ZONES.len()].into()),
                ("n32".into(), format!("v{}", i % 32)),
                ("n33".into(), format!("v{}", i % 33)),
                ("n64".into(), format!("{:02}", i % 64)),
                ("n65".into(), format!("ä{}", i % 65)),
            ];
            if i % 10 == 0 {
                pairs.push(("one".into(), "only".into()));
            }
            let mut chunks = Vec::new();
            for k in 0..1 + i % 3 {
                // Series 0 gets a chunk far larger than the 16000-byte estimate.
                let (n, noisy) = if i == 0 && k == 0 {
                    (4000, true)
                } else {
                    (3 + i % 7, false)
                };
                chunks.push(chunk(&mut rng, k as i64 * 100_000, n, noisy));
            }
            Series {
                labels: Labels::from_pairs(pairs),
                chunks,
            }
        })
        .collect();
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    out
}

struct Fixture {
    _dir: tempfile::TempDir,
    block_dir: PathBuf,
    bucket_dir: PathBuf,
    bucket: objstore::Bucket,
    meta: BlockMeta,
    block: Block,
    index: Vec<u8>,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("local");
    let bucket_dir = dir.path().join("bucket");
    std::fs::create_dir_all(&local).unwrap();
    std::fs::create_dir_all(&bucket_dir).unwrap();
    let mut extra = BTreeMap::new();
    extra.insert("segment_files".to_string(), serde_json::json!(["000001"]));
    let opts = BlockWriteOptions {
        thanos: Some(ThanosMeta {
            labels: [("replica".to_string(), "r0".to_string())].into(),
            source: "test".into(),
            extra,
            ..Default::default()
        }),
        ..Default::default()
    };
    let meta = write_block(&local, 0, 1_000_000, &fixture_series(), opts).unwrap();
    let block_dir = local.join(meta.ulid.to_string());
    let bucket = objstore::BucketConfig::filesystem(&bucket_dir)
        .build()
        .unwrap();
    objstore::bucket::upload_block(&bucket, &block_dir)
        .await
        .unwrap();
    let block = Block::open(&block_dir).unwrap();
    assert_eq!(block.meta().stats.num_series, SERIES as u64);
    let index = std::fs::read(block_dir.join("index")).unwrap();
    Fixture {
        _dir: dir,
        block_dir,
        bucket_dir,
        bucket,
        meta,
        block,
        index,
    }
}

fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

fn index_toc(index: &[u8]) -> Toc {
    Toc::decode(index[index.len() - TOC_LEN..].try_into().unwrap()).unwrap()
}

/// Every (name, value) of the block, the all-postings key first, as tsdb reads them.
fn all_keys(b: &Block) -> Vec<(String, String)> {
    let mut keys = vec![(String::new(), String::new())];
    for n in b.index().label_names().unwrap() {
        for v in b.index().label_values(&n).unwrap() {
            keys.push((n.clone(), v));
        }
    }
    keys
}

fn header(f: &Fixture, bytes: Vec<u8>) -> IndexHeaderReader {
    IndexHeaderReader::from_bytes(bytes, f.meta.ulid, DEFAULT_POSTING_OFFSETS_IN_MEM_SAMPLING)
        .unwrap()
}

#[tokio::test]
async fn index_header_bytes_follow_thanos_layout() {
    let f = fixture().await;
    let from_bucket = build_from_bucket(&f.bucket, f.meta.ulid).await.unwrap();
    let from_file = build_from_index_file(&f.block_dir.join("index"), f.meta.ulid).unwrap();
    assert_eq!(from_bucket, from_file);

    let h = &from_bucket;
    let toc = index_toc(&f.index);
    assert_eq!(&h[..4], &0xBAAA_D792u32.to_be_bytes());
    assert_eq!(h[4], 1, "index-header version");
    assert_eq!(h[5], 2, "index version");
    assert_eq!(be64(h, 6), toc.postings_offset_table, "indexLastPostingEnd");
    let s = (toc.series - toc.symbols) as usize;
    let p = f.index.len() - toc.postings_offset_table as usize;
    assert_eq!(h.len(), 14 + s + p + 20);
    assert_eq!(
        &h[14..14 + s],
        &f.index[toc.symbols as usize..toc.series as usize]
    );
    assert_eq!(
        &h[14 + s..14 + s + p],
        &f.index[toc.postings_offset_table as usize..]
    );
    let t = h.len() - 20;
    assert_eq!(be64(h, t), 14);
    assert_eq!(be64(h, t + 8), (14 + s) as u64);
    assert_eq!(
        u32::from_be_bytes(h[t + 16..].try_into().unwrap()),
        crc32c::crc32c(&h[t..t + 16])
    );

    let r = header(&f, from_bucket.clone());
    assert_eq!(
        r.toc(),
        BinaryToc {
            symbols: 14,
            postings_offset_table: (14 + s) as u64
        }
    );
    assert_eq!(r.index_version(), 2);
    assert_eq!(r.index_last_posting_end(), toc.postings_offset_table);
    assert_eq!(r.size(), h.len() as u64);

    // The file variant writes the same bytes, atomically, and opens.
    let cache = f.bucket_dir.parent().unwrap().join("cache");
    let path = write_from_bucket(&f.bucket, f.meta.ulid, &cache)
        .await
        .unwrap();
    assert_eq!(
        path,
        cache
            .join(f.meta.ulid.to_string())
            .join(INDEX_HEADER_FILENAME)
    );
    assert_eq!(std::fs::read(&path).unwrap(), from_bucket);
    assert!(!path.with_file_name("index-header.tmp").exists());

    // A damaged file on disk is rebuilt by open_or_build.
    std::fs::write(&path, &from_bucket[..100]).unwrap();
    let r = IndexHeaderReader::open_or_build(&f.bucket, &cache, f.meta.ulid, 32)
        .await
        .unwrap();
    assert_eq!(r.size(), from_bucket.len() as u64);
    assert_eq!(std::fs::read(&path).unwrap(), from_bucket);
}

fn check_symbols_and_labels(f: &Fixture, r: &IndexHeaderReader) {
    let idx = f.block.index();
    assert_eq!(r.label_names(), idx.label_names().unwrap());
    assert!(r.label_names().iter().any(|n| n == "zone"));
    for n in idx.label_names().unwrap() {
        assert_eq!(
            r.label_values(&n).unwrap(),
            idx.label_values(&n).unwrap(),
            "{n}"
        );
    }
    assert!(r.label_values("no_such_name").unwrap().is_empty());

    let symbols: Vec<&str> = idx.symbols().map(|s| s.unwrap()).collect();
    assert!(
        symbols.len() > 1024 + 64,
        "the fixture wants cache collisions"
    );
    assert_eq!(r.symbol_count() as usize, symbols.len());
    for (i, s) in symbols.iter().enumerate() {
        assert_eq!(&*r.lookup_symbol(i as u32).unwrap(), *s, "symbol {i}");
    }
    // Backwards, and refs sharing a cache slot, alternately.
    for i in (0..symbols.len()).rev() {
        assert_eq!(&*r.lookup_symbol(i as u32).unwrap(), symbols[i]);
        let j = (i + 1024) % symbols.len();
        assert_eq!(&*r.lookup_symbol(j as u32).unwrap(), symbols[j]);
    }
    assert!(r.lookup_symbol(symbols.len() as u32).is_err());
    assert!(r.lookup_symbol(u32::MAX).is_err());
}

#[tokio::test]
async fn index_header_reader_agrees_with_tsdb_index() {
    let f = fixture().await;
    let bytes = build_from_bucket(&f.bucket, f.meta.ulid).await.unwrap();
    let path = f.bucket_dir.parent().unwrap().join("index-header");
    std::fs::write(&path, &bytes).unwrap();
    let opened = IndexHeaderReader::open(&path, f.meta.ulid, 32).unwrap();
    check_symbols_and_labels(&f, &opened);
    // Other samplings must give the same answers (1 keeps everything, 1000 only first/last).
    for sampling in [1, 2, 3, 32, 33, 1000] {
        let r = IndexHeaderReader::from_bytes(bytes.clone(), f.meta.ulid, sampling).unwrap();
        check_symbols_and_labels(&f, &r);
        check_postings_offsets(&f, &r);
    }
}

fn check_postings_offsets(f: &Fixture, r: &IndexHeaderReader) {
    let idx = f.block.index();
    let keys = all_keys(&f.block);
    let last = keys.last().unwrap().clone();
    for (n, v) in &keys {
        let got = r.postings_offset(n, v).unwrap().expect("present key");
        let want = idx.postings_range(n, v).unwrap().unwrap();
        if (n, v) == (&last.0, &last.1) {
            // Thanos guesses the very last list's end from the TOC: at or past the real end.
            assert_eq!(got.start, want.start);
            assert!(got.end >= want.end && got.end < r.index_last_posting_end());
        } else {
            assert_eq!(got.as_range(), want, "{n}={v:?}");
        }
        let s = got.start as usize;
        let count = u32::from_be_bytes(f.index[s..s + 4].try_into().unwrap()) as usize;
        let refs: Vec<u32> = f.index[s + 4..s + 4 + 4 * count]
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(refs, idx.postings(n, v).unwrap(), "{n}={v:?}");
    }
    for (n, v) in missing_keys() {
        assert_eq!(r.postings_offset(n, v).unwrap(), None, "{n}={v:?}");
    }
    let got = r
        .postings_offsets("n65", &["ä64", "nope", "ä0", "ä31", "ä32", "ä33"])
        .unwrap();
    for (g, v) in got.iter().zip(["ä64", "nope", "ä0", "ä31", "ä32", "ä33"]) {
        assert_eq!(
            g.map(|g| g.as_range()),
            idx.postings_range("n65", v).unwrap()
        );
    }
    assert_eq!(
        r.postings_offsets("nope", &["a", "b"]).unwrap(),
        [None, None]
    );
}

/// Keys the block lacks: below, between and above sampled values; unknown names.
fn missing_keys() -> Vec<(&'static str, &'static str)> {
    vec![
        ("zone", ""),
        ("zone", "0"),
        ("zone", "zz"),
        ("zone", "\u{10FFFF}"),
        ("zone", "zürich2"),
        ("instance", "host-"),
        ("instance", "host-1000"),
        ("instance", "host-55a"),
        ("n65", "ä"),
        ("n65", "ä99"),
        ("id", "1199x"),
        ("id", "99999"),
        ("nope", "x"),
        ("", "x"),
        ("one", "onl"),
    ]
}

#[tokio::test]
async fn fetch_postings_and_series_agree_with_tsdb() {
    let f = fixture().await;
    let bytes = build_from_bucket(&f.bucket, f.meta.ulid).await.unwrap();
    let h = Arc::new(header(&f, bytes));
    let idx = f.block.index();

    let owned = all_keys(&f.block);
    let mut keys: Vec<(&str, &str)> = owned
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    keys.reverse();
    // Missing keys interleaved, and repeats.
    let missing = missing_keys();
    keys.splice(3..3, missing.iter().copied());
    keys.push(("zone", "東京"));
    keys.push(("", ""));
    for gap in [0, 100, 512 * 1024] {
        let stats = Arc::new(FetchStats::default());
        let r = BlockIndexReader::new(f.bucket.clone(), h.clone(), 65536, stats.clone())
            .with_partitioner(GapPartitioner::new(gap));
        let got = r.fetch_postings(&keys).await.unwrap();
        assert_eq!(got.len(), keys.len());
        for ((n, v), list) in keys.iter().zip(&got) {
            assert_eq!(list, &idx.postings(n, v).unwrap(), "{n}={v:?} gap {gap}");
        }
        let s = stats.snapshot();
        assert!(s.postings_fetches >= 1);
        if gap == 512 * 1024 {
            assert_eq!(s.postings_fetches, 1, "one coalesced GET");
        }
    }
    assert_eq!(
        BlockIndexReader::new(f.bucket.clone(), h.clone(), 65536, Default::default())
            .fetch_postings(&missing)
            .await
            .unwrap(),
        vec![Vec::<u32>::new(); missing.len()]
    );

    let all = idx.all_postings().unwrap();
    assert_eq!(all.len(), SERIES);
    let mut refs = all.clone();
    refs.reverse();
    refs.push(all[0]);
    refs.push(all[all.len() / 2]);
    for (estimate, gap) in [(1, 0), (7, 0), (40, 16), (65536, 512 * 1024)] {
        let stats = Arc::new(FetchStats::default());
        let r = BlockIndexReader::new(f.bucket.clone(), h.clone(), estimate, stats.clone())
            .with_partitioner(GapPartitioner::new(gap));
        let got = r.fetch_series(&refs).await.unwrap();
        for (&sref, entry) in refs.iter().zip(&got) {
            let (labels, chunks) = idx.series(sref).unwrap();
            assert_eq!(
                entry,
                &SeriesEntry {
                    series_ref: sref,
                    labels,
                    chunks
                },
                "estimate {estimate}"
            );
        }
        let s = stats.snapshot();
        if estimate == 65536 {
            assert_eq!(s.series_refetches, 0);
        } else if estimate == 1 {
            assert!(s.series_refetches as usize >= all.len());
        }
    }
    // A ref outside the series section is an error, not a panic.
    let r = BlockIndexReader::new(f.bucket.clone(), h.clone(), 65536, Default::default());
    assert!(matches!(
        r.fetch_series(&[0]).await,
        Err(Error::Corrupt { .. })
    ));
    assert!(matches!(
        r.fetch_series(&[u32::MAX]).await,
        Err(Error::Corrupt { .. })
    ));
}

#[tokio::test]
async fn fetch_chunks_agrees_with_local_chunk_files() {
    let f = fixture().await;
    let idx = f.block.index();
    let mut metas = Vec::new();
    for r in idx.all_postings().unwrap() {
        metas.extend(idx.series(r).unwrap().1);
    }
    metas.reverse();
    metas.push(metas[0]);
    let refs: Vec<u64> = metas.iter().map(|m| m.chunk_ref).collect();
    let want: Vec<(u8, Vec<u8>)> = metas
        .iter()
        .map(|m| {
            let c = f.block.chunk(m).unwrap();
            (c.encoding, c.data.to_vec())
        })
        .collect();
    assert!(
        want.iter().any(|(_, d)| d.len() > 16_000),
        "the fixture wants a chunk beyond the default estimate"
    );

    let bucket_meta = objstore::bucket::read_meta(&f.bucket, f.meta.ulid)
        .await
        .unwrap();
    let mut listed_meta = bucket_meta.clone();
    listed_meta.thanos = None;
    for meta in [&bucket_meta, &listed_meta] {
        for (estimate, gap) in [(1, 0), (3, 0), (100, 10), (16_000, 512 * 1024)] {
            let stats = Arc::new(FetchStats::default());
            let r = BlockChunkReader::open(f.bucket.clone(), meta, estimate, stats.clone())
                .await
                .unwrap()
                .with_partitioner(GapPartitioner::new(gap));
            assert_eq!(r.segments().len(), 1);
            assert_eq!(r.segments()[0].file, "chunks/000001");
            assert!(r.segments()[0].size.is_some());
            let got = r.fetch_chunks(&refs).await.unwrap();
            for (g, (enc, data)) in got.iter().zip(&want) {
                assert_eq!(g.encoding, *enc);
                assert_eq!(&g.data[..], &data[..], "estimate {estimate}");
            }
        }
    }
    // Alone, the big chunk does not fit its estimate and is fetched again.
    let (i, _) = want
        .iter()
        .enumerate()
        .find(|(_, (_, d))| d.len() > 16_000)
        .unwrap();
    let stats = Arc::new(FetchStats::default());
    let r = BlockChunkReader::open(f.bucket.clone(), &bucket_meta, 16_000, stats.clone())
        .await
        .unwrap();
    let got = r.fetch_chunks(&[refs[i]]).await.unwrap();
    assert_eq!(&got[0].data[..], &want[i].1[..]);
    assert_eq!(stats.snapshot().chunk_refetches, 1);
    assert_eq!(stats.snapshot().chunks_fetches, 2);
    let r = BlockChunkReader::open(f.bucket.clone(), &bucket_meta, 16_000, Default::default())
        .await
        .unwrap();
    for bad in [0u64, 7, 1 << 32, u64::MAX] {
        assert!(
            matches!(r.fetch_chunks(&[bad]).await, Err(Error::Corrupt { .. })),
            "{bad:#x}"
        );
    }
}

async fn put(bucket: &objstore::Bucket, block: Ulid, file: &str, data: Vec<u8>) {
    bucket
        .put(
            &ObjectPath::from(format!("{block}/{file}")),
            PutPayload::from(data),
        )
        .await
        .unwrap();
}

fn assert_corrupt_naming(e: Error, block: Ulid) {
    assert_eq!(e.block(), block);
    assert!(matches!(e, Error::Corrupt { .. }), "{e:?}");
    assert!(e.to_string().contains(&block.to_string()), "{e}");
}

#[tokio::test]
async fn truncated_index_in_bucket_fails_build_naming_the_block() {
    let f = fixture().await;
    let toc = index_toc(&f.index);
    let cuts = [
        0,
        3,
        5,
        56,
        toc.series as usize,
        toc.postings_offset_table as usize,
        f.index.len() - TOC_LEN,
        f.index.len() - 1,
    ];
    for cut in cuts {
        put(&f.bucket, f.meta.ulid, "index", f.index[..cut].to_vec()).await;
        let e = build_from_bucket(&f.bucket, f.meta.ulid)
            .await
            .expect_err("truncated index");
        assert_corrupt_naming(e, f.meta.ulid);
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("index");
        std::fs::write(&local, &f.index[..cut]).unwrap();
        assert_corrupt_naming(
            build_from_index_file(&local, f.meta.ulid).expect_err("truncated index"),
            f.meta.ulid,
        );
    }
}

/// Series entries and chunks whose length fields claim absurd sizes fail cleanly.
#[tokio::test]
async fn hostile_lengths_in_bucket_are_errors() {
    let f = fixture().await;
    let bytes = build_from_bucket(&f.bucket, f.meta.ulid).await.unwrap();
    let h = Arc::new(header(&f, bytes));
    let idx = f.block.index();
    let sref = idx.all_postings().unwrap()[5];
    let (_, metas) = idx.series(sref).unwrap();
    for huge in [u64::MAX, u64::MAX - 4096, u64::MAX / 2 + 1] {
        hostile_lengths(&f, &h, sref, &metas, huge).await;
    }
}

async fn hostile_lengths(
    f: &Fixture,
    h: &Arc<IndexHeaderReader>,
    sref: u32,
    metas: &[tsdb::index::ChunkMeta],
    huge: u64,
) {
    // A 10-byte uvarint, then whatever follows.
    let mut huge_bytes = Vec::new();
    tsdb::index::enc::put_uvarint(&mut huge_bytes, huge);
    assert_eq!(huge_bytes.len(), 10);
    let huge = &huge_bytes[..];

    let mut index = f.index.clone();
    let off = sref as usize * 16;
    index[off..off + 10].copy_from_slice(huge);
    put(&f.bucket, f.meta.ulid, "index", index).await;
    for estimate in [1, 5, 65536] {
        let r = BlockIndexReader::new(f.bucket.clone(), h.clone(), estimate, Default::default());
        let e = r
            .fetch_series(&[sref])
            .await
            .expect_err("huge series length");
        assert_corrupt_naming(e, f.meta.ulid);
    }

    let seg = f.block_dir.join("chunks/000001");
    let mut chunks = std::fs::read(&seg).unwrap();
    let off = (metas[0].chunk_ref & 0xffff_ffff) as usize;
    chunks[off..off + 10].copy_from_slice(huge);
    put(&f.bucket, f.meta.ulid, "chunks/000001", chunks).await;
    let meta = objstore::bucket::read_meta(&f.bucket, f.meta.ulid)
        .await
        .unwrap();
    for estimate in [1, 5, 16_000] {
        let r = BlockChunkReader::open(f.bucket.clone(), &meta, estimate, Default::default())
            .await
            .unwrap();
        let e = r
            .fetch_chunks(&[metas[0].chunk_ref])
            .await
            .expect_err("huge chunk length");
        assert_corrupt_naming(e, f.meta.ulid);
        // Without known segment sizes.
        let r = BlockChunkReader::with_segments(
            f.bucket.clone(),
            f.meta.ulid,
            vec![store::bucket::chunk_reader::Segment {
                file: "chunks/000001".into(),
                size: None,
            }],
            estimate,
            Default::default(),
        );
        let e = r
            .fetch_chunks(&[metas[0].chunk_ref])
            .await
            .expect_err("huge chunk length");
        assert_eq!(e.block(), f.meta.ulid);
    }
}
