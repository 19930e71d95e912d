//! Hostile bytes: every damaged index-header or index is an error, never a panic. The fixture
//! is a real block written by `tsdb::block::write_block`.

use std::sync::OnceLock;

use proptest::prelude::*;
use tsdb::block::{write_block, BlockWriteOptions};
use tsdb::chunkenc::{XorChunk, ENCODING_XOR};
use tsdb::querier::{ChunkData, Series};
use tsdb::Labels;

use super::*;

const BLOCK: Ulid = Ulid::from_parts(1, 2);

/// A block with 40 values of `v` (more than one sampling stride), a few other names and some
/// unicode; its index bytes and the index-header built from them.
struct Fixture {
    index: Vec<u8>,
    header: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let mut series: Vec<Series> = (0..80)
            .map(|i| {
                let mut c = XorChunk::new();
                c.append(i, i as f64);
                Series {
                    labels: Labels::from_pairs([
                        ("__name__", format!("m{}", i % 3)),
                        ("v", format!("{}", i % 40)),
                        ("u", ["é", "東京", "z", "Z"][i as usize % 4].to_string()),
                        ("i", i.to_string()),
                    ]),
                    chunks: vec![ChunkData {
                        min_time: i,
                        max_time: i,
                        encoding: ENCODING_XOR,
                        data: bytes::Bytes::copy_from_slice(c.bytes()),
                    }],
                }
            })
            .collect();
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        let meta = write_block(dir.path(), 0, 1000, &series, BlockWriteOptions::default()).unwrap();
        let path = dir.path().join(meta.ulid.to_string()).join(INDEX_FILE);
        let index = std::fs::read(&path).unwrap();
        let header = build_from_index_file(&path, BLOCK).unwrap();
        Fixture { index, header }
    })
}

fn parse(data: Vec<u8>) -> Result<IndexHeaderReader> {
    IndexHeaderReader::from_bytes(data, BLOCK, 4)
}

fn is_corrupt(r: Result<IndexHeaderReader>) -> bool {
    matches!(r, Err(Error::Corrupt { block, .. }) if block == BLOCK)
}

/// Calls every query of the reader; any answer is fine, a panic is not.
fn exercise(r: &IndexHeaderReader) {
    for n in r
        .label_names()
        .into_iter()
        .chain(["".into(), "nope".into()])
    {
        let values = r.label_values(&n).unwrap_or_default();
        for v in values
            .iter()
            .map(String::as_str)
            .chain(["", "0", "\u{10FFFF}"])
        {
            let _ = r.postings_offset(&n, v);
        }
        let vs: Vec<&str> = values.iter().map(String::as_str).collect();
        let _ = r.postings_offsets(&n, &vs);
    }
    for s in 0..r.symbol_count().saturating_add(2).min(10_000) {
        let _ = r.lookup_symbol(s);
    }
}

fn binary_toc(data: &mut [u8], symbols: u64, postings: u64) {
    let t = data.len() - BINARY_TOC_LEN as usize;
    data[t..].copy_from_slice(&binary_toc_bytes(BinaryToc {
        symbols,
        postings_offset_table: postings,
    }));
}

/// Recomputes the CRC of the `len, body, CRC` section at `off`, when it fits.
fn fix_section_crc(data: &mut [u8], off: usize) {
    let Some(len) = data.get(off..off + 4) else {
        return;
    };
    let len = u32::from_be_bytes(len.try_into().unwrap()) as usize;
    let body = off + 4..off + 4 + len;
    if body.end + 4 > data.len() {
        return;
    }
    let crc = crc32c::crc32c(&data[body.clone()]);
    data[body.end..body.end + 4].copy_from_slice(&crc.to_be_bytes());
}

#[test]
fn fixture_header_parses() {
    let f = fixture();
    let r = parse(f.header.clone()).unwrap();
    assert_eq!(r.label_values("v").unwrap().len(), 40);
    assert_eq!(r.label_names(), ["__name__", "i", "u", "v"]);
    exercise(&r);
}

#[test]
fn truncated_header_is_corrupt() {
    let h = &fixture().header;
    let n = h.len();
    for cut in [
        0,
        1,
        4,
        13,
        14,
        33,
        34,
        35,
        n / 2,
        n - 21,
        n - 20,
        n - 19,
        n - 4,
        n - 1,
    ] {
        assert!(is_corrupt(parse(h[..cut].to_vec())), "cut at {cut}");
    }
}

#[test]
fn damaged_binary_toc_is_corrupt() {
    let h = &fixture().header;
    for i in h.len() - BINARY_TOC_LEN as usize..h.len() {
        for bit in [0x01, 0x80] {
            let mut d = h.clone();
            d[i] ^= bit;
            assert!(is_corrupt(parse(d)), "byte {i} bit {bit:#x}");
        }
    }
    // A valid CRC over offsets that do not fit.
    let n = h.len() as u64;
    let sym = HEADER_LEN;
    let post = IndexHeaderReader::from_bytes(h.clone(), BLOCK, 32)
        .unwrap()
        .toc()
        .postings_offset_table;
    for (s, p) in [
        (0, post),
        (13, post),
        (sym, sym),
        (sym + 1, post),
        (sym, post - 1),
        (sym, post + 1),
        (sym, n - 20),
        (sym, n),
        (post, sym),
        (u64::MAX, u64::MAX),
        (sym, u64::MAX),
    ] {
        let mut d = h.clone();
        binary_toc(&mut d, s, p);
        assert!(is_corrupt(parse(d)), "toc {s} {p}");
    }
}

#[test]
fn wrong_magic_or_version_is_refused() {
    let h = &fixture().header;
    let mut d = h.clone();
    d[0] ^= 0x10;
    assert!(is_corrupt(parse(d)));
    let mut d = h.clone();
    d[..4].copy_from_slice(&MAGIC_INDEX.to_be_bytes());
    assert!(is_corrupt(parse(d)));
    for v in [0, 2, 255] {
        let mut d = h.clone();
        d[4] = v;
        assert!(is_corrupt(parse(d)), "header version {v}");
    }
    for v in [0, 1, 3] {
        let mut d = h.clone();
        d[5] = v;
        assert!(
            matches!(parse(d), Err(Error::Unsupported { .. })),
            "index version {v}"
        );
    }
}

#[test]
fn damaged_sections_are_corrupt() {
    let h = &fixture().header;
    let r = parse(h.clone()).unwrap();
    let toc = r.toc();
    // One flipped bit in each section's len, body, or CRC.
    for base in [toc.symbols as usize, toc.postings_offset_table as usize] {
        for i in [0, 3, 4, 7, 8, 20] {
            let mut d = h.clone();
            d[base + i] ^= 0x04;
            assert!(is_corrupt(parse(d)), "section at {base}, byte {i}");
        }
    }
    let sym_crc = r.symbols_end as usize;
    let table_crc = r.table.end as usize;
    for at in [sym_crc, table_crc + 3] {
        let mut d = h.clone();
        d[at] ^= 0x01;
        assert!(is_corrupt(parse(d)), "crc at {at}");
    }
    // indexLastPostingEnd before the last postings list.
    let mut d = h.clone();
    d[6..14].copy_from_slice(&0u64.to_be_bytes());
    assert!(is_corrupt(parse(d)));
}

/// An unsorted postings offset table, made consistent otherwise (CRC recomputed), is refused.
#[test]
fn unsorted_postings_table_is_corrupt() {
    let h = &fixture().header;
    let r = parse(h.clone()).unwrap();
    let body = &h[r.table.start as usize..r.table.end as usize];
    // The first entry after the all-postings key names "__name__"; rename it to sort last.
    let pos = body.windows(8).position(|w| w == b"__name__").unwrap();
    let mut d = h.clone();
    d[r.table.start as usize + pos] = b'~';
    fix_section_crc(&mut d, r.toc().postings_offset_table as usize);
    let e = parse(d).unwrap_err();
    assert!(e.to_string().contains("is not sorted"), "{e}");
}

#[test]
fn index_with_bad_magic_or_version_is_refused_by_the_builder() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index");
    let build = |data: &[u8]| {
        std::fs::write(&path, data).unwrap();
        build_from_index_file(&path, BLOCK)
    };
    let mut d = f.index.clone();
    d[1] ^= 1;
    assert!(matches!(build(&d), Err(Error::Corrupt { .. })));
    for v in [1, 3] {
        let mut d = f.index.clone();
        d[4] = v;
        assert!(matches!(build(&d), Err(Error::Unsupported { .. })), "{v}");
    }
    let n = f.index.len();
    let mut d = f.index.clone();
    d[n - 1] ^= 1;
    assert!(matches!(build(&d), Err(Error::Corrupt { .. })), "TOC CRC");
    assert!(matches!(
        build_from_index_file(&dir.path().join("missing"), BLOCK),
        Err(Error::Io { .. })
    ));
}

#[test]
fn open_refuses_short_files() {
    let h = &fixture().header;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(INDEX_HEADER_FILENAME);
    for cut in [0, 10, 33, h.len() - 1] {
        std::fs::write(&path, &h[..cut]).unwrap();
        assert!(
            is_corrupt(IndexHeaderReader::open(&path, BLOCK, 32)),
            "{cut}"
        );
    }
    std::fs::write(&path, h).unwrap();
    exercise(&IndexHeaderReader::open(&path, BLOCK, 32).unwrap());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Truncation plus random byte changes anywhere: never a panic.
    #[test]
    fn random_damage_never_panics(
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        sampling in 0usize..40,
    ) {
        let mut d = fixture().header.clone();
        for (i, b) in &flips {
            let i = i.index(d.len());
            d[i] = *b;
        }
        if truncate {
            d.truncate(cut.index(d.len()));
        }
        if let Ok(r) = IndexHeaderReader::from_bytes(d, BLOCK, sampling) {
            exercise(&r);
        }
    }

    /// Damage inside the symbol table or postings offset table with the CRCs recomputed, so
    /// the decoders behind the checksums see it: never a panic.
    #[test]
    fn damage_behind_valid_crcs_never_panics(
        in_table in any::<bool>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        sampling in 1usize..40,
        new_toc in prop::option::of((0u64..2000, 0u64..2000)),
    ) {
        let mut d = fixture().header.clone();
        let r = parse(d.clone()).unwrap();
        let toc = r.toc();
        let (section, body) = if in_table {
            (toc.postings_offset_table as usize, r.table.start as usize..r.table.end as usize)
        } else {
            (toc.symbols as usize, toc.symbols as usize + 4..r.symbols_end as usize)
        };
        for (i, b) in &flips {
            d[body.start + i.index(body.len())] = *b;
        }
        fix_section_crc(&mut d, section);
        if let Some((s, p)) = new_toc {
            binary_toc(&mut d, s, p);
        }
        if let Ok(r) = IndexHeaderReader::from_bytes(d, BLOCK, sampling) {
            exercise(&r);
        }
    }
}
