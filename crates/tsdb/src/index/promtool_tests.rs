//! Compatibility with Prometheus 2.42: blocks built by `promtool tsdb create-blocks-from
//! openmetrics` are read with [`IndexReader`], and [`IndexWriter`] must reproduce their index
//! byte for byte from the same symbols and series.
//!
//! `promtool` (Debian package `prometheus`) must be installed: without it these tests fail.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{ChunkMeta, IndexReader, IndexWriter};
use crate::Labels;

/// Two hours in milliseconds: promtool's block range.
const BLOCK_MS: i64 = 2 * 3600 * 1000;
/// A 2h-aligned start, in seconds.
const BASE_S: i64 = 7200 * 236_000;

struct GenSeries {
    metric: &'static str,
    labels: Labels,
    /// Sample timestamps in milliseconds, ascending.
    times: Vec<i64>,
}

fn generate() -> Vec<GenSeries> {
    let mut out = Vec::new();
    let zones = ["eu", "us", "ап-восток", "zone \"quoted\"", "back\\slash"];
    for i in 0..7 {
        // Instance 5 only lives in the first block, instance 6 only in the second.
        let (from, to) = match i {
            5 => (0, 100),
            6 => (125, 175),
            _ => (0, 175),
        };
        let times = (from..to)
            .step_by(10)
            .map(|m| (BASE_S + m * 60) * 1000)
            .collect();
        out.push(GenSeries {
            metric: "cairn_up",
            labels: Labels::from_pairs([
                ("__name__", "cairn_up".to_string()),
                ("job", "node".to_string()),
                ("instance", format!("host-{i}:9100")),
                ("zone", zones[i % zones.len()].to_string()),
            ]),
            times,
        });
    }
    for i in 0..150i64 {
        let code = ["200", "404", "500"][(i % 3) as usize];
        let mut pairs = vec![
            ("__name__", "cairn_requests".to_string()),
            ("path", format!("/api/v1/{i:03}/ü")),
            ("code", code.to_string()),
        ];
        if i % 5 == 0 {
            pairs.push(("note", format!("line one\nline two {i}")));
        }
        if i % 25 == 0 {
            pairs.push(("emoji", "😀".repeat(1 + (i / 25) as usize)));
        }
        // Spread series over both blocks.
        let start = (i % 4) * 40;
        let times = (start..start + 30)
            .step_by(15)
            .map(|m| (BASE_S + m * 60) * 1000)
            .collect();
        out.push(GenSeries {
            metric: "cairn_requests",
            labels: Labels::from_pairs(pairs),
            times,
        });
    }
    out
}

fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

fn openmetrics(series: &[GenSeries]) -> String {
    let mut text = String::new();
    let mut last_metric = "";
    for s in series {
        if s.metric != last_metric {
            writeln!(text, "# TYPE {} gauge", s.metric).unwrap();
            last_metric = s.metric;
        }
        let labels: Vec<String> = s
            .labels
            .iter()
            .filter(|l| &*l.name != "__name__")
            .map(|l| format!("{}=\"{}\"", l.name, escape(&l.value)))
            .collect();
        for (k, t) in s.times.iter().enumerate() {
            writeln!(
                text,
                "{}{{{}}} {} {}",
                s.metric,
                labels.join(","),
                k as f64 * 1.5,
                t / 1000
            )
            .unwrap();
        }
    }
    text.push_str("# EOF\n");
    text
}

/// Runs promtool on the generated data; returns the block directories, sorted.
fn build_blocks(dir: &Path, series: &[GenSeries]) -> Vec<PathBuf> {
    let input = dir.join("input.om");
    std::fs::write(&input, openmetrics(series)).unwrap();
    let out_dir = dir.join("blocks");
    std::fs::create_dir(&out_dir).unwrap();
    let output = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(&out_dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run promtool ({e}): these tests need Prometheus 2.42's promtool \
                 (Debian package `prometheus`) on PATH"
            )
        });
    assert!(
        output.status.success(),
        "promtool failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let mut blocks: Vec<PathBuf> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("index").is_file())
        .collect();
    blocks.sort();
    blocks
}

fn block_range(block: &Path) -> (i64, i64) {
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(block.join("meta.json")).unwrap()).unwrap();
    (
        meta["minTime"].as_i64().unwrap(),
        meta["maxTime"].as_i64().unwrap(),
    )
}

#[test]
fn index_promtool_is_installed() {
    let out = Command::new("promtool")
        .arg("--version")
        .output()
        .expect("promtool is not installed: install the Debian package `prometheus` (2.42)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("promtool, version 2."), "unexpected: {text}");
}

#[test]
fn index_reads_prometheus_blocks_and_writes_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let series = generate();
    let blocks = build_blocks(dir.path(), &series);
    assert_eq!(blocks.len(), 2, "expected two 2h blocks: {blocks:?}");

    let mut seen_series = 0;
    for block in &blocks {
        let (min_t, max_t) = block_range(block);
        assert_eq!(min_t.div_euclid(BLOCK_MS), (max_t - 1).div_euclid(BLOCK_MS));

        // What the block must hold: each series with samples in range, one chunk each.
        let mut expected: BTreeMap<Labels, (i64, i64)> = BTreeMap::new();
        for s in &series {
            let ts: Vec<i64> = s
                .times
                .iter()
                .copied()
                .filter(|&t| t >= min_t && t < max_t)
                .collect();
            if let (Some(&first), Some(&last)) = (ts.first(), ts.last()) {
                expected.insert(s.labels.clone(), (first, last));
            }
        }
        seen_series += expected.len();

        let index_path = block.join("index");
        let r = IndexReader::open(&index_path).unwrap();
        let chunks_len = std::fs::metadata(block.join("chunks").join("000001"))
            .unwrap()
            .len();

        let refs = r.all_postings().unwrap();
        assert_eq!(refs.len(), expected.len());
        let mut got: Vec<(Labels, Vec<ChunkMeta>)> = Vec::new();
        for &sref in &refs {
            got.push(r.series(sref).unwrap());
        }
        // Series come sorted by label set.
        assert!(got.windows(2).all(|w| w[0].0 < w[1].0));
        for ((ls, chunks), (want_ls, &(first, last))) in got.iter().zip(&expected) {
            assert_eq!(ls, want_ls);
            assert_eq!(chunks.len(), 1, "{ls}");
            let c = chunks[0];
            assert_eq!((c.min_time, c.max_time), (first, last), "{ls}");
            // Chunk refs point into the first segment file, past its 8-byte header.
            assert_eq!(c.chunk_ref >> 32, 0);
            assert!((8..chunks_len).contains(&(c.chunk_ref & 0xffff_ffff)));
        }

        // Postings, label names and values, computed from the series read back.
        let mut pairs: BTreeMap<(String, String), Vec<u32>> = BTreeMap::new();
        for ((ls, _), &sref) in got.iter().zip(&refs) {
            for l in ls {
                pairs
                    .entry((l.name.to_string(), l.value.to_string()))
                    .or_default()
                    .push(sref);
            }
        }
        let names: BTreeSet<String> = pairs.keys().map(|(n, _)| n.clone()).collect();
        assert_eq!(
            r.label_names().unwrap(),
            names.iter().cloned().collect::<Vec<_>>()
        );
        for n in &names {
            let values: Vec<String> = pairs
                .keys()
                .filter(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
                .collect();
            assert_eq!(r.label_values(n).unwrap(), values, "values of {n}");
        }
        for ((n, v), want) in &pairs {
            assert_eq!(&r.postings(n, v).unwrap(), want, "postings of {n}={v:?}");
        }
        assert!(names.contains("emoji") && names.contains("note"));

        // Our writer, given the same symbols and series, produces the same file.
        let symbols: BTreeSet<String> = r.symbols().map(|s| s.unwrap().to_string()).collect();
        assert_eq!(symbols.len(), r.symbol_count());
        let ours = dir.path().join("ours.index");
        let mut w = IndexWriter::create(&ours, &symbols).unwrap();
        for ((ls, chunks), &sref) in got.iter().zip(&refs) {
            assert_eq!(w.add_series(ls, chunks).unwrap(), sref);
        }
        w.finish().unwrap();
        let theirs = std::fs::read(&index_path).unwrap();
        let mine = std::fs::read(&ours).unwrap();
        if let Some(i) = (0..theirs.len().min(mine.len())).find(|&i| theirs[i] != mine[i]) {
            panic!(
                "index differs from Prometheus' at byte {i} (sizes {} vs {})",
                mine.len(),
                theirs.len()
            );
        }
        assert_eq!(mine.len(), theirs.len());
    }
    // Every generated series landed in at least one block.
    assert!(seen_series >= series.len());
}
