//! Tests for the index writer and reader: layout, round trips (unit and property based),
//! rejection of bad input, and robustness against truncated and damaged files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::enc::{crc32c, Decoder};
use super::*;
use crate::{labels, Error, Labels};

type Series = Vec<(Labels, Vec<ChunkMeta>)>;

fn symbols_of(series: &Series) -> BTreeSet<String> {
    let mut syms = BTreeSet::new();
    for (ls, _) in series {
        for l in ls {
            syms.insert(l.name.to_string());
            syms.insert(l.value.to_string());
        }
    }
    syms
}

/// Writes `series` (sorted) to `dir/index`, returning the path and each series' ref.
fn write_index(dir: &Path, series: &Series) -> (PathBuf, Vec<u32>) {
    let path = dir.join("index");
    let mut w = IndexWriter::create(&path, &symbols_of(series)).unwrap();
    let refs = series
        .iter()
        .map(|(ls, chunks)| w.add_series(ls, chunks).unwrap())
        .collect();
    w.finish().unwrap();
    (path, refs)
}

fn chunk(min_time: i64, max_time: i64, chunk_ref: u64) -> ChunkMeta {
    ChunkMeta {
        min_time,
        max_time,
        chunk_ref,
    }
}

fn sample_series() -> Series {
    let mut s: Series = vec![
        (
            labels!("__name__" => "up", "job" => "node", "instance" => "a:9100"),
            vec![chunk(1000, 2000, 8), chunk(2001, 3000, 140)],
        ),
        (
            labels!("__name__" => "up", "job" => "node", "instance" => "b:9100"),
            vec![chunk(1000, 1000, 300)],
        ),
        (
            labels!("__name__" => "http_requests_total", "code" => "200", "path" => "/ü"),
            vec![],
        ),
        (
            labels!("__name__" => "http_requests_total", "code" => "500"),
            vec![
                chunk(-5000, -10, 1 << 32),
                chunk(0, 7_200_000, (1 << 32) + 9),
                chunk(7_200_001, 7_200_001, (2 << 32) + 8),
            ],
        ),
        (labels!("zzz" => "ω"), vec![chunk(5, 6, 7)]),
    ];
    s.sort_by(|a, b| a.0.cmp(&b.0));
    s
}

/// Checks everything the reader can say about an index holding exactly `series` at `refs`.
fn check_index(r: &IndexReader, series: &Series, refs: &[u32]) {
    assert!(refs.windows(2).all(|w| w[0] < w[1]), "refs ascending");
    assert_eq!(r.all_postings().unwrap(), refs);
    let mut expected: BTreeMap<(String, String), Vec<u32>> = BTreeMap::new();
    for ((ls, chunks), &sref) in series.iter().zip(refs) {
        let (got_ls, got_chunks) = r.series(sref).unwrap();
        assert_eq!(&got_ls, ls);
        assert_eq!(&got_chunks, chunks);
        for l in ls {
            expected
                .entry((l.name.to_string(), l.value.to_string()))
                .or_default()
                .push(sref);
        }
    }
    let mut names: Vec<String> = expected.keys().map(|(n, _)| n.clone()).collect();
    names.dedup();
    assert_eq!(r.label_names().unwrap(), names);
    for n in &names {
        let values: Vec<String> = expected
            .keys()
            .filter(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
            .collect();
        let got = r.label_values(n).unwrap();
        assert!(got.windows(2).all(|w| w[0] < w[1]), "values sorted");
        assert_eq!(got, values, "values of {n:?}");
        // A value that is not there.
        assert!(r.postings(n, "\u{10FFFF}absent").unwrap().is_empty());
    }
    for ((n, v), want) in &expected {
        assert_eq!(&r.postings(n, v).unwrap(), want, "postings of {n}={v:?}");
    }
    assert!(r.postings("\u{10FFFF}absent", "x").unwrap().is_empty());
    assert!(r.label_values("\u{10FFFF}absent").unwrap().is_empty());
    assert!(r.label_values("").unwrap().is_empty());
    // The symbol table is readable and sorted.
    let syms: Vec<&str> = r.symbols().collect::<Result<_, _>>().unwrap();
    assert!(syms.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(syms.len(), r.symbol_count());
}

fn be32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes(b[off..off + 4].try_into().unwrap())
}

fn be64(b: &[u8], off: usize) -> u64 {
    u64::from_be_bytes(b[off..off + 8].try_into().unwrap())
}

fn toc_of(b: &[u8]) -> Toc {
    Toc::decode(b[b.len() - TOC_LEN..].try_into().unwrap()).unwrap()
}

fn is_corruption(e: &Error) -> bool {
    matches!(e, Error::Corruption { .. })
}

#[test]
fn index_round_trip_basic() {
    let dir = tempfile::tempdir().unwrap();
    let series = sample_series();
    let (path, refs) = write_index(dir.path(), &series);
    let r = IndexReader::open(&path).unwrap();
    assert_eq!(r.size(), std::fs::metadata(&path).unwrap().len());
    assert_eq!(r.path(), path);
    check_index(&r, &series, &refs);
    assert_eq!(
        r.label_names().unwrap(),
        ["__name__", "code", "instance", "job", "path", "zzz"]
    );
    assert_eq!(r.label_values("job").unwrap(), ["node"]);
    assert_eq!(r.postings("job", "node").unwrap(), &refs[2..4]);
    // The same bytes read from memory give the same answers.
    let r2 = IndexReader::from_bytes("mem", std::fs::read(&path).unwrap()).unwrap();
    check_index(&r2, &series, &refs);
    assert!(format!("{r:?}").contains("IndexReader"));
}

#[test]
fn index_empty_index() {
    let dir = tempfile::tempdir().unwrap();
    let (path, refs) = write_index(dir.path(), &Vec::new());
    assert!(refs.is_empty());
    let r = IndexReader::open(&path).unwrap();
    assert!(r.all_postings().unwrap().is_empty());
    assert!(r.label_names().unwrap().is_empty());
    assert_eq!(r.symbol_count(), 0);
    assert!(r.series(0).is_err());
    assert!(r.series(1).is_err());
}

/// Decodes the raw file by hand and checks the layout details Prometheus 2.42 produces.
#[test]
fn index_layout_matches_prometheus_writer() {
    let dir = tempfile::tempdir().unwrap();
    let series = sample_series();
    let (path, refs) = write_index(dir.path(), &series);
    let b = std::fs::read(&path).unwrap();
    let syms: Vec<String> = symbols_of(&series).into_iter().collect();

    assert_eq!(&b[..5], &[0xBA, 0xAA, 0xD7, 0x00, 2]);
    let toc = toc_of(&b);
    // Symbol table right after the header: len counts count + entries, CRC covers them.
    assert_eq!(toc.symbols, 5);
    let len = be32(&b, 5) as usize;
    assert_eq!(be32(&b, 9) as usize, syms.len());
    assert_eq!(be32(&b, 9 + len), crc32c(&b[9..9 + len]));
    let mut d = Decoder::new(&b[13..9 + len], 13);
    for s in &syms {
        assert_eq!(d.uvarint_bytes("sym").unwrap(), s.as_bytes());
    }
    assert_eq!(d.remaining(), 0);
    // Series section starts right after the symbol table's CRC (before padding).
    assert_eq!(toc.series, 13 + len as u64);
    for &r in &refs {
        let off = r as usize * 16;
        assert!(off as u64 >= toc.series);
        let mut d = Decoder::new(&b[off..], off as u64);
        let n = d.uvarint("len").unwrap() as usize;
        let body_at = d.offset() as usize;
        assert_eq!(be32(&b, body_at + n), crc32c(&b[body_at..body_at + n]));
    }
    // Padding between series entries is zeros.
    assert!(b[toc.series as usize..refs[0] as usize * 16]
        .iter()
        .all(|&x| x == 0));

    // Label indices: one per name, 4-byte aligned, #names = 1, values as symbol refs.
    let names = ["__name__", "code", "instance", "job", "path", "zzz"];
    let mut off = toc.label_indices as usize;
    let mut label_index_offsets = Vec::new();
    for name in names {
        off = off.next_multiple_of(4);
        label_index_offsets.push(off);
        let len = be32(&b, off) as usize;
        assert_eq!(be32(&b, off + 4), 1);
        let n = be32(&b, off + 8) as usize;
        assert_eq!(len, 8 + 4 * n);
        assert_eq!(be32(&b, off + 4 + len), crc32c(&b[off + 4..off + 4 + len]));
        let mut values: Vec<&str> = series.iter().filter_map(|(ls, _)| ls.get(name)).collect();
        values.sort();
        values.dedup();
        let got: Vec<&str> = (0..n)
            .map(|i| syms[be32(&b, off + 12 + 4 * i) as usize].as_str())
            .collect();
        assert_eq!(got, values);
        off += 4 + len + 4;
    }
    // Postings: TOC points before the padding; the first list is all series.
    assert_eq!(toc.postings as usize, off);
    let first = off.next_multiple_of(4);
    assert_eq!(be32(&b, first), 4 + 4 * refs.len() as u32);
    assert_eq!(be32(&b, first + 4), refs.len() as u32);
    let end = first + 8 + 4 * refs.len();
    assert_eq!(be32(&b, end), crc32c(&b[first + 4..end]));

    // Label offset table: (1, name, offset) per name.
    let lot = toc.label_offset_table as usize;
    let len = be32(&b, lot) as usize;
    assert_eq!(be32(&b, lot + 4) as usize, names.len());
    assert_eq!(be32(&b, lot + 4 + len), crc32c(&b[lot + 4..lot + 4 + len]));
    let mut d = Decoder::new(&b[lot + 8..lot + 4 + len], 0);
    for (name, &o) in names.iter().zip(&label_index_offsets) {
        assert_eq!(d.uvarint("k").unwrap(), 1);
        assert_eq!(d.uvarint_bytes("n").unwrap(), name.as_bytes());
        assert_eq!(d.uvarint("o").unwrap(), o as u64);
    }
    assert_eq!(d.remaining(), 0);

    // Postings offset table: ("", "") first, then sorted pairs, each pointing at its list.
    let pot = toc.postings_offset_table as usize;
    assert_eq!(pot, lot + 4 + len + 4);
    let len = be32(&b, pot) as usize;
    assert_eq!(be32(&b, pot + 4 + len), crc32c(&b[pot + 4..pot + 4 + len]));
    let count = be32(&b, pot + 4) as usize;
    let mut d = Decoder::new(&b[pot + 8..pot + 4 + len], 0);
    let mut pairs = Vec::new();
    let mut last_end = first;
    for i in 0..count {
        assert_eq!(d.uvarint("k").unwrap(), 2);
        let n = String::from_utf8(d.uvarint_bytes("n").unwrap().to_vec()).unwrap();
        let v = String::from_utf8(d.uvarint_bytes("v").unwrap().to_vec()).unwrap();
        let o = d.uvarint("o").unwrap() as usize;
        assert_eq!(o % 4, 0);
        if i == 0 {
            assert_eq!((n.as_str(), v.as_str(), o), ("", "", first));
        } else {
            // Lists follow each other without gaps.
            assert_eq!(o, last_end);
            pairs.push((n, v));
        }
        last_end = o + 4 + be32(&b, o) as usize + 4;
    }
    assert_eq!(last_end, lot);
    let mut want: Vec<(String, String)> = series
        .iter()
        .flat_map(|(ls, _)| ls.iter().map(|l| (l.name.to_string(), l.value.to_string())))
        .collect();
    want.sort();
    want.dedup();
    assert_eq!(pairs, want);

    // TOC closes the file, its CRC covering the six offsets.
    assert_eq!(b.len(), pot + 4 + len + 4 + TOC_LEN);
    assert_eq!(be64(&b, b.len() - TOC_LEN), 5);
    assert_eq!(
        be32(&b, b.len() - 4),
        crc32c(&b[b.len() - TOC_LEN..b.len() - 4])
    );
}

#[test]
fn index_writer_rejects_bad_series() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index");
    let syms: BTreeSet<String> = ["a", "b", "1", "2", ""]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut w = IndexWriter::create(&path, &syms).unwrap();
    let bad = |r: crate::Result<u32>| matches!(r, Err(Error::Invalid(_)));

    assert!(bad(w.add_series(&Labels::default(), &[])));
    assert!(bad(w.add_series(&labels!("" => "1"), &[])));
    assert!(
        bad(w.add_series(&labels!("a" => "3"), &[])),
        "value not a symbol"
    );
    assert!(
        bad(w.add_series(&labels!("c" => "1"), &[])),
        "name not a symbol"
    );
    let r1 = w.add_series(&labels!("a" => "1", "b" => "2"), &[]).unwrap();
    assert!(
        bad(w.add_series(&labels!("a" => "1", "b" => "2"), &[])),
        "duplicate"
    );
    assert!(
        bad(w.add_series(&labels!("a" => "1"), &[])),
        "prefix sorts first"
    );
    assert!(bad(w.add_series(&labels!("a" => "1", "b" => "1"), &[])));
    let r2 = w.add_series(&labels!("a" => "2"), &[]).unwrap();
    let r3 = w.add_series(&labels!("b" => "1"), &[]).unwrap();
    assert!(r1 < r2 && r2 < r3);
    w.finish().unwrap();

    // The rejected series left no trace.
    let r = IndexReader::open(&path).unwrap();
    assert_eq!(r.all_postings().unwrap(), [r1, r2, r3]);
    assert_eq!(r.label_values("a").unwrap(), ["1", "2"]);
    assert_eq!(r.label_values("b").unwrap(), ["1", "2"]);
    assert_eq!(r.postings("b", "1").unwrap(), [r3]);
}

#[test]
fn index_chunk_metas_use_wrapping_deltas() {
    // Prometheus writes deltas with wrapping arithmetic, so even odd metas round-trip.
    let dir = tempfile::tempdir().unwrap();
    let series: Series = vec![
        (
            labels!("a" => "extremes"),
            vec![
                chunk(i64::MIN, i64::MAX, u64::MAX),
                chunk(i64::MIN, i64::MIN, 0),
                chunk(i64::MAX, 0, 1 << 63),
            ],
        ),
        (
            labels!("a" => "overlap"),
            vec![chunk(10, 20, 500), chunk(15, 30, 100), chunk(0, 0, 100)],
        ),
    ];
    let (path, refs) = write_index(dir.path(), &series);
    check_index(&IndexReader::open(&path).unwrap(), &series, &refs);
}

#[test]
fn index_long_and_odd_strings() {
    let dir = tempfile::tempdir().unwrap();
    let long = "x".repeat(70_000);
    let mut series: Series = vec![
        (labels!("a" => long.as_str()), vec![]),
        (labels!("a" => "\0"), vec![]),
        (labels!("a" => "a\0"), vec![]),
        (labels!("a" => "ab"), vec![]),
        (labels!("a" => "ω😀"), vec![]),
        (labels!(long.as_str() => "v"), vec![]),
        (labels!("\u{7f}" => " "), vec![]),
    ];
    series.sort_by(|a, b| a.0.cmp(&b.0));
    // Empty values may be stored when they are symbols (Labels::from_sorted keeps them).
    series.insert(
        0,
        (
            Labels::from_sorted(vec![crate::Label::new("a", "")]),
            vec![chunk(1, 2, 3)],
        ),
    );
    let (path, refs) = write_index(dir.path(), &series);
    let r = IndexReader::open(&path).unwrap();
    check_index(&r, &series, &refs);
    assert_eq!(r.label_values("a").unwrap()[0], "");
}

#[test]
fn index_many_series_postings() {
    let dir = tempfile::tempdir().unwrap();
    let mut series: Series = (0..3000)
        .map(|i| {
            (
                Labels::from_pairs([
                    ("__name__", "m".to_string()),
                    ("i", format!("{i:05}")),
                    ("mod", format!("{}", i % 7)),
                ]),
                vec![chunk(i, i + 10, 8 + 100 * i as u64)],
            )
        })
        .collect();
    series.sort_by(|a, b| a.0.cmp(&b.0));
    let (path, refs) = write_index(dir.path(), &series);
    let r = IndexReader::open(&path).unwrap();
    check_index(&r, &series, &refs);
    assert_eq!(r.postings("__name__", "m").unwrap().len(), 3000);
    assert_eq!(r.postings("mod", "3").unwrap().len(), 3000 / 7 + 1);
}

#[test]
fn index_reader_rejects_bad_headers() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_index(dir.path(), &sample_series());
    let good = std::fs::read(&path).unwrap();
    let open = |b: Vec<u8>| IndexReader::from_bytes("idx", b).unwrap_err();

    let mut b = good.clone();
    b[0] = 0;
    assert!(open(b).to_string().contains("magic"));
    let mut b = good.clone();
    b[4] = 1;
    let e = open(b);
    assert!(is_corruption(&e));
    assert!(e.to_string().contains("version 1 is not supported"), "{e}");
    let mut b = good.clone();
    b[4] = 3;
    assert!(open(b).to_string().contains("version 3"));
    let mut b = good.clone();
    let n = b.len();
    b[n - 10] ^= 1;
    assert!(open(b).to_string().contains("TOC"));
    assert!(open(Vec::new()).to_string().contains("too small"));

    let missing = IndexReader::open(&dir.path().join("nope")).unwrap_err();
    assert!(matches!(missing, Error::Io { .. }));
    std::fs::write(dir.path().join("short"), &good[..20]).unwrap();
    let short = IndexReader::open(&dir.path().join("short")).unwrap_err();
    assert!(is_corruption(&short), "{short}");
}

#[test]
fn index_reader_reports_checksum_mismatches_with_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let series = sample_series();
    let (path, refs) = write_index(dir.path(), &series);
    let good = std::fs::read(&path).unwrap();
    let toc = toc_of(&good);

    // Symbol table.
    let mut b = good.clone();
    b[15] ^= 0x40;
    let e = IndexReader::from_bytes(&path, b).unwrap_err();
    assert!(is_corruption(&e));
    let msg = e.to_string();
    assert!(
        msg.contains("offset 5") && msg.contains("checksum"),
        "{msg}"
    );
    assert!(msg.contains(&path.display().to_string()), "{msg}");

    // A series entry: only that series fails.
    let mut b = good.clone();
    let off = refs[1] as usize * 16;
    b[off + 2] ^= 0x01;
    let r = IndexReader::from_bytes(&path, b).unwrap();
    let e = r.series(refs[1]).unwrap_err();
    assert!(is_corruption(&e));
    assert!(e.to_string().contains(&format!("offset {off}")), "{e}");
    assert!(r.series(refs[0]).is_ok());

    // A postings list.
    let mut b = good.clone();
    let first = (toc.postings as usize).next_multiple_of(4);
    b[first + 9] ^= 0x01;
    let r = IndexReader::from_bytes(&path, b).unwrap();
    let e = r.all_postings().unwrap_err();
    assert!(e.to_string().contains(&format!("offset {first}")), "{e}");
    assert!(r.postings("job", "node").is_ok());

    // Postings offset table.
    let mut b = good.clone();
    b[toc.postings_offset_table as usize + 10] ^= 0x01;
    let e = IndexReader::from_bytes(&path, b).unwrap_err();
    assert!(e.to_string().contains("postings offset table"), "{e}");

    // Label indices and the label offset table are not needed: zero them in the TOC, like
    // indexes written by recent Prometheus versions.
    let mut b = good.clone();
    let mut t = toc;
    t.label_indices = 0;
    t.label_offset_table = 0;
    let n = b.len();
    b[n - TOC_LEN..].copy_from_slice(&t.encode());
    check_index(&IndexReader::from_bytes(&path, b).unwrap(), &series, &refs);
}

#[test]
fn index_series_refs_outside_the_section_fail() {
    let dir = tempfile::tempdir().unwrap();
    let (path, refs) = write_index(dir.path(), &sample_series());
    let r = IndexReader::open(&path).unwrap();
    // The second series is longer than 16 bytes, so ref + 1 points into its middle.
    assert_ne!(refs[1] + 1, refs[2]);
    for bad in [
        0,
        1,
        refs[0] - 1,
        refs[1] + 1,
        u32::MAX,
        (r.size() / 16) as u32,
    ] {
        let e = r.series(bad).unwrap_err();
        assert!(is_corruption(&e), "{bad}: {e}");
    }
}

/// Calls every read method, following whatever the file says; results are ignored. Used to
/// show that damaged input never panics.
fn exercise(r: &IndexReader) {
    let _ = r.size();
    let _ = r.symbols().count();
    let mut refs: BTreeSet<u32> = r.all_postings().unwrap_or_default().into_iter().collect();
    for n in r.label_names().unwrap_or_default() {
        for v in r.label_values(&n).unwrap_or_default() {
            refs.extend(r.postings(&n, &v).unwrap_or_default());
        }
    }
    let _ = r.postings("a", "b");
    for sref in refs.into_iter().take(10_000) {
        let _ = r.series(sref);
    }
    for sref in 0..(r.size() / 16 + 2).min(100_000) as u32 {
        let _ = r.series(sref);
    }
}

fn try_bytes(b: Vec<u8>) {
    if let Ok(r) = IndexReader::from_bytes("fuzz", b) {
        exercise(&r);
    }
}

/// A small valid index (bytes, series, refs), written once.
fn fuzz_base() -> (Vec<u8>, Series, Vec<u32>) {
    static BASE: std::sync::OnceLock<(Vec<u8>, Series, Vec<u32>)> = std::sync::OnceLock::new();
    BASE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let series = sample_series();
        let (path, refs) = write_index(dir.path(), &series);
        (std::fs::read(path).unwrap(), series, refs)
    })
    .clone()
}

#[test]
fn index_truncated_files_never_panic() {
    let (good, series, refs) = fuzz_base();
    for n in 0..good.len() {
        let b = good[..n].to_vec();
        // The TOC is the last 52 bytes, so any truncation must be detected at open.
        let e = IndexReader::from_bytes("t", b).unwrap_err();
        assert!(is_corruption(&e), "length {n}: {e}");
    }
    // Cutting the front instead, and through real files.
    let dir = tempfile::tempdir().unwrap();
    for n in (0..good.len()).step_by(7) {
        try_bytes(good[n..].to_vec());
        let p = dir.path().join(format!("t{n}"));
        std::fs::write(&p, &good[..n]).unwrap();
        assert!(IndexReader::open(&p).is_err());
    }
    // Growing the file with junk before the TOC keeps TOC offsets valid.
    let mut b = good[..good.len() - TOC_LEN].to_vec();
    b.extend_from_slice(&[0xAB; 100]);
    b.extend_from_slice(&good[good.len() - TOC_LEN..]);
    check_index(&IndexReader::from_bytes("t", b).unwrap(), &series, &refs);
}

/// Byte ranges of every CRC-protected structure the reader uses: (body start, body end); the CRC
/// follows the body.
fn crc_sections(b: &[u8]) -> Vec<(usize, usize)> {
    let r = IndexReader::from_bytes("x", b.to_vec()).unwrap();
    let toc = toc_of(b);
    let mut out = Vec::new();
    let mut fixed = |off: usize| out.push((off + 4, off + 4 + be32(b, off) as usize));
    fixed(toc.symbols as usize);
    fixed(toc.postings_offset_table as usize);
    for off in r.postings_list_offsets() {
        fixed(off as usize);
    }
    for sref in r.all_postings().unwrap() {
        let off = sref as usize * 16;
        let mut d = Decoder::new(&b[off..], off as u64);
        let len = d.uvarint("len").unwrap() as usize;
        let start = d.offset() as usize;
        out.push((start, start + len));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn index_random_byte_flips_never_panic(
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..6)
    ) {
        let (good, _, _) = fuzz_base();
        let mut b = good.clone();
        for (i, x) in &flips {
            b[i.index(good.len())] ^= x;
        }
        try_bytes(b);
    }

    /// Damage inside sections, with the CRC recomputed so decoding goes past the check.
    #[test]
    fn index_damaged_sections_with_valid_crcs_never_panic(
        edits in prop::collection::vec(
            (any::<prop::sample::Index>(), any::<prop::sample::Index>(), any::<u8>()), 1..4)
    ) {
        let (good, _, _) = fuzz_base();
        let sections = crc_sections(&good);
        let mut b = good.clone();
        for (s, pos, x) in &edits {
            let (start, end) = sections[s.index(sections.len())];
            if end > start {
                b[start + pos.index(end - start)] = *x;
            }
            let crc = crc32c(&b[start..end]);
            b[end..end + 4].copy_from_slice(&crc.to_be_bytes());
        }
        try_bytes(b);
    }

    /// Random TOCs (with a valid CRC) pointing anywhere into random or real content.
    #[test]
    fn index_garbage_with_valid_toc_never_panics(
        body in prop::collection::vec(any::<u8>(), 0..600),
        use_real in any::<bool>(),
        offsets in prop::collection::vec(any::<prop::sample::Index>(), 6),
        big in prop::collection::vec(any::<u64>(), 6),
        use_big in prop::collection::vec(prop::bool::weighted(0.1), 6),
    ) {
        let mut b = if use_real {
            let (good, _, _) = fuzz_base();
            good[..good.len() - TOC_LEN].to_vec()
        } else {
            let mut b = vec![0xBA, 0xAA, 0xD7, 0x00, 2];
            b.extend_from_slice(&body);
            b
        };
        let pick = |i: usize| if use_big[i] { big[i] } else { offsets[i].index(b.len() + 8) as u64 };
        let toc = Toc {
            symbols: pick(0),
            series: pick(1),
            label_indices: pick(2),
            label_offset_table: pick(3),
            postings: pick(4),
            postings_offset_table: pick(5),
        };
        b.extend_from_slice(&toc.encode());
        try_bytes(b);
    }

    #[test]
    fn index_random_bytes_never_panic(
        body in prop::collection::vec(any::<u8>(), 0..300),
        header in any::<bool>(),
    ) {
        let mut b = if header { vec![0xBA, 0xAA, 0xD7, 0x00, 2] } else { Vec::new() };
        b.extend_from_slice(&body);
        try_bytes(b);
    }
}

fn name_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-d_]{1,3}",
        2 => "\\PC{1,6}",
        1 => Just("__name__".to_string()),
        1 => Just("a\0".to_string()),
        1 => Just("n".repeat(130)),
    ]
}

fn value_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-c0-2]{1,3}",
        3 => "\\PC{0,8}",
        1 => Just(String::new()),
        1 => Just("\0".to_string()),
        1 => Just("ω😀\u{10FFFF}".to_string()),
        1 => "[xy]{120,140}",
    ]
}

/// Per chunk: gap after the previous chunk, duration, ref increment.
fn chunks_strategy() -> impl Strategy<Value = (i64, Vec<(u32, u32, u64)>)> {
    (
        -(1i64 << 45)..(1i64 << 45),
        prop::collection::vec((0u32..100_000, 0u32..7_200_000, 1u64..(1 << 36)), 0..6),
    )
}

fn build_chunks(start: i64, spec: &[(u32, u32, u64)], ref_base: u64) -> Vec<ChunkMeta> {
    let mut out = Vec::with_capacity(spec.len());
    let mut t = start;
    let mut r = ref_base;
    for (i, &(gap, dur, dref)) in spec.iter().enumerate() {
        let min_time = if i == 0 { t } else { t + 1 + i64::from(gap) };
        let max_time = min_time + i64::from(dur);
        r += dref;
        out.push(chunk(min_time, max_time, r));
        t = max_time;
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn index_round_trip_property(
        raw in prop::collection::vec(
            (prop::collection::btree_map(name_strategy(), value_strategy(), 1..6),
             chunks_strategy(),
             0u64..(1 << 40)),
            0..40),
    ) {
        let mut by_labels: BTreeMap<Labels, Vec<ChunkMeta>> = BTreeMap::new();
        for (pairs, (start, spec), ref_base) in &raw {
            let ls = Labels::from_pairs(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())));
            if ls.is_empty() {
                continue;
            }
            by_labels.entry(ls).or_insert_with(|| build_chunks(*start, spec, *ref_base));
        }
        let series: Series = by_labels.into_iter().collect();
        let dir = tempfile::tempdir().unwrap();
        let (path, refs) = write_index(dir.path(), &series);
        let r = IndexReader::open(&path).unwrap();
        check_index(&r, &series, &refs);
        // The symbol table is exactly what was given.
        let syms: BTreeSet<String> = r.symbols().map(|s| s.unwrap().to_string()).collect();
        prop_assert_eq!(syms, symbols_of(&series));
    }
}
