use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::block::{write_block, BlockQuerier, BlockWriteOptions};
use crate::meta::META_VERSION;
use crate::querier::{Querier, Series};
use crate::{labels, Labels};

fn chunk(samples: &[(i64, f64)]) -> ChunkData {
    let mut c = XorChunk::new();
    for &(t, v) in samples {
        c.append(t, v);
    }
    ChunkData {
        min_time: samples[0].0,
        max_time: samples[samples.len() - 1].0,
        encoding: ENCODING_XOR,
        data: bytes::Bytes::copy_from_slice(c.bytes()),
    }
}

/// A series whose samples are cut into chunks of `per_chunk`.
fn series(labels: Labels, samples: &[(i64, f64)], per_chunk: usize) -> Series {
    Series {
        labels,
        chunks: samples.chunks(per_chunk).map(chunk).collect(),
    }
}

fn block(dir: &Path, mint: i64, maxt: i64, mut series: Vec<Series>) -> Arc<Block> {
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    let meta = write_block(dir, mint, maxt, &series, BlockWriteOptions::default()).unwrap();
    Arc::new(Block::open(&dir.join(meta.ulid.to_string())).unwrap())
}

fn compact(dir: &Path, inputs: &[Arc<Block>], mode: MergeMode) -> (Arc<Block>, MergeStats) {
    let refs: Vec<&Block> = inputs.iter().map(|b| &**b).collect();
    let metas: Vec<BlockMeta> = inputs.iter().map(|b| b.meta().clone()).collect();
    let ulid = Ulid::new();
    let (meta, stats) = compact_blocks(dir, ulid, &refs, mode, |_, written, _| {
        let mut meta = metas[0].clone();
        meta.ulid = ulid;
        meta.min_time = metas.iter().map(|m| m.min_time).min().unwrap();
        meta.max_time = metas.iter().map(|m| m.max_time).max().unwrap();
        meta.stats = written.stats.clone();
        meta.version = META_VERSION;
        Ok(meta)
    })
    .unwrap();
    assert_eq!(meta.ulid, ulid);
    (
        Arc::new(Block::open(&dir.join(ulid.to_string())).unwrap()),
        stats,
    )
}

/// Every series of a block with its samples.
fn contents(block: &Arc<Block>) -> BTreeMap<Labels, Vec<(i64, f64)>> {
    let q = BlockQuerier(block.clone());
    let all = [
        crate::matcher::Matcher::new(crate::matcher::MatchType::Regex, "__name__", ".+").unwrap(),
    ];
    q.select(&all, i64::MIN, i64::MAX)
        .unwrap()
        .into_iter()
        .map(|s| {
            let samples = s.iter(i64::MIN, i64::MAX).map(|x| (x.t, x.v)).collect();
            (s.labels, samples)
        })
        .collect()
}

fn points(from: i64, to: i64, step: i64, value: impl Fn(i64) -> f64) -> Vec<(i64, f64)> {
    (from..to)
        .step_by(step as usize)
        .map(|t| (t, value(t)))
        .collect()
}

#[test]
fn adjacent_blocks_become_their_union_with_chunks_kept_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let a = block(
        dir.path(),
        0,
        1000,
        vec![
            series(
                labels!("__name__" => "up", "job" => "a"),
                &points(0, 1000, 10, |t| t as f64),
                30,
            ),
            series(
                labels!("__name__" => "only_in_a"),
                &points(0, 1000, 100, |_| 1.0),
                120,
            ),
        ],
    );
    let b = block(
        dir.path(),
        1000,
        2000,
        vec![
            series(
                labels!("__name__" => "up", "job" => "a"),
                &points(1000, 2000, 10, |t| t as f64),
                30,
            ),
            series(
                labels!("__name__" => "only_in_b"),
                &points(1000, 2000, 100, |_| 2.0),
                120,
            ),
        ],
    );
    let out_dir = tempfile::tempdir().unwrap();
    let (out, stats) = compact(out_dir.path(), &[a.clone(), b.clone()], MergeMode::OneToOne);
    let mut want = contents(&a);
    for (labels, samples) in contents(&b) {
        want.entry(labels).or_default().extend(samples);
    }
    assert_eq!(contents(&out), want);
    assert_eq!(stats.merged_series, 0);
    assert_eq!(
        stats.input_samples,
        a.meta().stats.num_samples + b.meta().stats.num_samples
    );
    // No chunk was re-encoded: the counts add up.
    assert_eq!(
        out.meta().stats.num_chunks,
        a.meta().stats.num_chunks + b.meta().stats.num_chunks
    );
    assert_eq!(out.meta().stats.num_series, 3);
}

#[test]
fn identical_replicas_become_one_copy() {
    let dir = tempfile::tempdir().unwrap();
    let data = points(0, 10_000, 15, |t| (t / 15) as f64);
    let replicas: Vec<Arc<Block>> = (0..3)
        .map(|_| {
            block(
                dir.path(),
                0,
                10_000,
                vec![
                    series(labels!("__name__" => "c", "i" => "1"), &data, 120),
                    series(labels!("__name__" => "c", "i" => "2"), &data, 120),
                ],
            )
        })
        .collect();
    for mode in [MergeMode::OneToOne, MergeMode::Penalty] {
        let out_dir = tempfile::tempdir().unwrap();
        let (out, stats) = compact(out_dir.path(), &replicas, mode);
        assert_eq!(contents(&out), contents(&replicas[0]), "{mode:?}");
        assert_eq!(stats.merged_series, 2);
        assert_eq!(out.meta().stats.num_samples, 2 * data.len() as u64);
        assert_eq!(stats.input_samples, 6 * data.len() as u64);
    }
}

#[test]
fn replicas_scraped_at_other_moments_do_not_interleave_with_penalty() {
    let dir = tempfile::tempdir().unwrap();
    let l = labels!("__name__" => "g");
    // Two replicas 7 s apart, every 15 s; the first misses a minute in the middle.
    let a: Vec<(i64, f64)> = points(0, 600_000, 15_000, |_| 1.0)
        .into_iter()
        .filter(|(t, _)| !(200_000..260_000).contains(t))
        .collect();
    let b = points(7_000, 600_000, 15_000, |_| 2.0);
    let ba = block(dir.path(), 0, 600_000, vec![series(l.clone(), &a, 120)]);
    let bb = block(dir.path(), 0, 600_000, vec![series(l.clone(), &b, 120)]);

    let out_dir = tempfile::tempdir().unwrap();
    let (penalty, _) = compact(
        out_dir.path(),
        &[ba.clone(), bb.clone()],
        MergeMode::Penalty,
    );
    let got = &contents(&penalty)[&l];
    // About one sample per 15 s, never the doubled rate of the union.
    assert!(got.len() <= b.len() + 1, "{} samples", got.len());
    assert!(got.windows(2).all(|w| w[1].0 - w[0].0 >= 7_000), "{got:?}");
    // The gap of the first replica is filled from the second.
    assert!(got.iter().any(|(t, _)| (200_000..260_000).contains(t)));

    let (union, _) = compact(out_dir.path(), &[ba, bb], MergeMode::OneToOne);
    assert_eq!(contents(&union)[&l].len(), a.len() + b.len());
}

#[test]
fn merged_series_are_cut_into_chunks_of_at_most_120_samples() {
    let dir = tempfile::tempdir().unwrap();
    let l = labels!("__name__" => "x");
    let a = block(
        dir.path(),
        0,
        100_000,
        vec![series(l.clone(), &points(0, 100_000, 100, |_| 1.0), 500)],
    );
    let b = block(
        dir.path(),
        0,
        100_000,
        vec![series(l.clone(), &points(50, 100_000, 100, |_| 2.0), 500)],
    );
    let out_dir = tempfile::tempdir().unwrap();
    let (out, _) = compact(out_dir.path(), &[a, b], MergeMode::OneToOne);
    let (_, metas) = out
        .index()
        .series(out.index().all_postings().unwrap()[0])
        .unwrap();
    assert_eq!(metas.len(), 2000usize.div_ceil(MAX_SAMPLES_PER_CHUNK));
    for m in &metas {
        assert!(out.chunk(m).unwrap().num_samples() <= MAX_SAMPLES_PER_CHUNK);
    }
    assert_eq!(out.meta().stats.num_samples, 2000);
}

#[test]
fn a_failed_compaction_leaves_no_block() {
    let dir = tempfile::tempdir().unwrap();
    let a = block(
        dir.path(),
        0,
        1000,
        vec![series(
            labels!("__name__" => "x"),
            &points(0, 1000, 10, |_| 1.0),
            120,
        )],
    );
    let out_dir = tempfile::tempdir().unwrap();
    let err = compact_blocks(
        out_dir.path(),
        Ulid::new(),
        &[&a],
        MergeMode::OneToOne,
        |_, _, _| Err(Error::Invalid("no meta".into())),
    )
    .unwrap_err();
    assert!(err.to_string().contains("no meta"), "{err}");
    assert_eq!(std::fs::read_dir(out_dir.path()).unwrap().count(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Whatever the blocks hold, the one-to-one merge is the union of their samples, every
    /// timestamp once with the first block's value.
    #[test]
    fn one_to_one_is_the_first_wins_union(
        blocks in prop::collection::vec(
            prop::collection::btree_map(0u8..6, prop::collection::btree_map(0i64..400, -5i32..5, 1..60), 0..5),
            1..4,
        ),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut want: BTreeMap<Labels, BTreeMap<i64, f64>> = BTreeMap::new();
        let mut inputs = Vec::new();
        for (b, content) in blocks.iter().enumerate() {
            let mut ss = Vec::new();
            for (name, samples) in content {
                let l = labels!("__name__" => format!("m{name}"));
                let pts: Vec<(i64, f64)> = samples.iter().map(|(&t, &v)| (t * 10, v as f64 + b as f64 / 10.0)).collect();
                let entry = want.entry(l.clone()).or_default();
                for &(t, v) in &pts {
                    entry.entry(t).or_insert(v);
                }
                ss.push(series(l, &pts, 7));
            }
            inputs.push(block(dir.path(), 0, 4000, ss));
        }
        let out_dir = tempfile::tempdir().unwrap();
        let (out, _) = compact(out_dir.path(), &inputs, MergeMode::OneToOne);
        let want: BTreeMap<Labels, Vec<(i64, f64)>> = want
            .into_iter()
            .map(|(l, m)| (l, m.into_iter().collect()))
            .collect();
        prop_assert_eq!(contents(&out), want);
    }
}
