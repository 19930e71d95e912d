//! The vectors of Thanos' `pkg/compact/downsample/downsample_test.go` (TestDownsample,
//! TestDownsampleCounterBoundaryReset, TestApplyCounterResetsIterator, the counter-iterator
//! seek tests and the XOR-chunks-in-an-aggregated-block tests), read back the way Thanos' test
//! reads them: each present aggregate's samples through `expandXorChunkIterator`.

use super::*;
use std::path::Path;

type S = (i64, f64);

const STALE: f64 = f64::from_bits(tsdb::STALE_NAN_BITS);

fn xor(samples: &[S]) -> XorChunk {
    let mut c = XorChunk::new();
    for &(t, v) in samples {
        c.append(t, v);
    }
    c
}

/// A raw XOR chunk whose meta spans its first and last sample.
fn raw(samples: &[S]) -> ChunkData {
    ChunkData {
        min_time: samples[0].0,
        max_time: samples[samples.len() - 1].0,
        encoding: ENCODING_XOR,
        data: xor(samples).bytes().to_vec().into(),
    }
}

/// An aggregate chunk as Thanos' test encodes one: all five sub-chunks present (empty ones
/// too), the meta spanning every sample of every aggregate.
fn aggr(per: [&[S]; 5]) -> ChunkData {
    let chunks: Vec<XorChunk> = per.iter().map(|s| xor(s)).collect();
    let subs: [Option<SubChunk<'_>>; 5] =
        std::array::from_fn(|i| Some(SubChunk::xor(chunks[i].bytes())));
    let all = per.iter().flat_map(|s| s.iter().map(|&(t, _)| t));
    ChunkData {
        min_time: all.clone().min().unwrap_or(i64::MAX),
        max_time: all.max().unwrap_or(i64::MIN),
        encoding: ENCODING_AGGR,
        data: encode_aggr_chunk(&subs).into(),
    }
}

type Read = [Option<Vec<S>>; 5];

/// Each chunk's present aggregates, expanded as Thanos' test does.
fn read(chunks: &[ChunkData]) -> Vec<Read> {
    chunks
        .iter()
        .map(|c| {
            assert_eq!(c.encoding, ENCODING_AGGR);
            assert_ne!(c.min_time, i64::MAX, "chunk MinTime is set");
            assert!(c.max_time >= c.min_time, "chunk MaxTime >= MinTime");
            let a = AggrChunk::new(&c.data);
            std::array::from_fn(|i| {
                a.get(AggrType::ALL[i]).unwrap().map(|sub| {
                    let mut buf = Vec::new();
                    expand_xor(sub.data, &mut buf).unwrap();
                    buf.into_iter().map(|s| (s.t, s.v)).collect()
                })
            })
        })
        .collect()
}

fn all5(count: &[S], sum: &[S], min: &[S], max: &[S], counter: &[S]) -> Read {
    [
        Some(count.to_vec()),
        Some(sum.to_vec()),
        Some(min.to_vec()),
        Some(max.to_vec()),
        Some(counter.to_vec()),
    ]
}

fn raw_case(input: &[&[S]], resolution: i64) -> Result<Vec<Read>> {
    let chunks: Vec<ChunkData> = input.iter().map(|s| raw(s)).collect();
    downsample_series(0, &chunks, RES_LEVEL0, resolution).map(|out| read(&out))
}

/// Thanos' test gives aggregated inputs a fake source resolution of `resolution - 1`.
fn aggr_case(input: &[ChunkData], resolution: i64) -> Result<Vec<Read>> {
    downsample_series(0, input, resolution - 1, resolution).map(|out| read(&out))
}

#[test]
fn windows_and_chunk_counts() {
    assert_eq!(current_window(0, 100), 99);
    assert_eq!(current_window(99, 100), 99);
    assert_eq!(current_window(100, 100), 199);
    assert_eq!(current_window(1587690005791, RES_LEVEL1), 1587690299999);
    // 40h of 1-minute raw samples: 480 5m windows, at most 140 per chunk -> 4 chunks.
    let h40 = RES_LEVEL1_DOWNSAMPLE_RANGE;
    assert_eq!(target_chunk_count(0, h40, 60_000, RES_LEVEL1, 2400), 4);
    // Half as dense: 240 windows expected -> 2 chunks.
    assert_eq!(target_chunk_count(0, h40, 60_000, RES_LEVEL1, 1200), 2);
    // 140 expected windows (+1) still need 2 chunks; 139 (+1) fit one.
    assert_eq!(target_chunk_count(0, 140 * 100, 1, 100, 1_000_000), 2);
    assert_eq!(target_chunk_count(0, 139 * 100, 1, 100, 1_000_000), 1);
    // An empty range (one sample, or none) is one chunk.
    assert_eq!(target_chunk_count(5, 5, 60_000, RES_LEVEL1, 1), 1);
    assert_eq!(target_chunk_count(0, 0, 300_000, RES_LEVEL2, 0), 1);
}

#[test]
fn single_chunk() {
    let got = raw_case(
        &[&[
            (20, 1.0),
            (40, 2.0),
            (60, 3.0),
            (80, 1.0),
            (100, 2.0),
            (101, STALE),
            (120, 5.0),
            (180, 10.0),
            (250, 1.0),
        ]],
        100,
    )
    .unwrap();
    assert_eq!(
        got,
        vec![all5(
            &[(99, 4.0), (199, 3.0), (250, 1.0)],
            &[(99, 7.0), (199, 17.0), (250, 1.0)],
            &[(99, 1.0), (199, 2.0), (250, 1.0)],
            &[(99, 3.0), (199, 10.0), (250, 1.0)],
            &[(20, 1.0), (99, 4.0), (199, 13.0), (250, 14.0), (250, 1.0)],
        )]
    );
}

const THREE_CHUNKS_TAIL: [&[S]; 2] = [
    &[
        (260, 1.0),
        (300, 10.0),
        (340, 15.0),
        (380, 25.0),
        (420, 35.0),
    ],
    &[(460, STALE), (500, 10.0), (540, 3.0)],
];

#[test]
fn three_chunks() {
    let first: &[S] = &[
        (20, 1.0),
        (40, 2.0),
        (60, 3.0),
        (80, 1.0),
        (100, 2.0),
        (101, STALE),
        (120, 5.0),
        (180, 10.0),
        (250, 2.0),
    ];
    let got = raw_case(&[first, THREE_CHUNKS_TAIL[0], THREE_CHUNKS_TAIL[1]], 100).unwrap();
    assert_eq!(
        got,
        vec![all5(
            &[
                (99, 4.0),
                (199, 3.0),
                (299, 2.0),
                (399, 3.0),
                (499, 1.0),
                (540, 2.0)
            ],
            &[
                (99, 7.0),
                (199, 17.0),
                (299, 3.0),
                (399, 50.0),
                (499, 35.0),
                (540, 13.0)
            ],
            &[
                (99, 1.0),
                (199, 2.0),
                (299, 1.0),
                (399, 10.0),
                (499, 35.0),
                (540, 3.0)
            ],
            &[
                (99, 3.0),
                (199, 10.0),
                (299, 2.0),
                (399, 25.0),
                (499, 35.0),
                (540, 10.0)
            ],
            &[
                (20, 1.0),
                (99, 4.0),
                (199, 13.0),
                (299, 16.0),
                (399, 40.0),
                (499, 50.0),
                (540, 63.0),
                (540, 3.0)
            ],
        )]
    );

    // "four chunks, two of them overlapping": the first chunk twice.
    let err = raw_case(
        &[first, first, THREE_CHUNKS_TAIL[0], THREE_CHUNKS_TAIL[1]],
        100,
    )
    .unwrap_err();
    assert!(matches!(
        err,
        DownsampleError::OverlappingChunks { series: 0, .. }
    ));
    assert_eq!(
        err.to_string(),
        "found overlapping chunks within series 0. Chunks expected to be ordered by min time \
         and non-overlapping, got: [{MinTime:20 MaxTime:250} {MinTime:20 MaxTime:250} \
         {MinTime:260 MaxTime:420} {MinTime:460 MaxTime:540}]"
    );
}

#[test]
fn three_chunks_the_first_with_nan_values_only() {
    // Go's value.NormalNaN (0x7ff8000000000001), math.NaN() (0x7ff8000000000001 as well) and
    // a stale marker.
    let nan = f64::from_bits(0x7ff8_0000_0000_0001);
    let first: &[S] = &[
        (20, nan),
        (40, nan),
        (60, nan),
        (80, nan),
        (100, f64::NAN),
        (101, STALE),
        (120, nan),
        (180, nan),
        (250, nan),
    ];
    let got = raw_case(&[first, THREE_CHUNKS_TAIL[0], THREE_CHUNKS_TAIL[1]], 100).unwrap();
    assert_eq!(
        got,
        vec![all5(
            &[(299, 1.0), (399, 3.0), (499, 1.0), (540, 2.0)],
            &[(299, 1.0), (399, 50.0), (499, 35.0), (540, 13.0)],
            &[(299, 1.0), (399, 10.0), (499, 35.0), (540, 3.0)],
            &[(299, 1.0), (399, 25.0), (499, 35.0), (540, 10.0)],
            &[
                (260, 1.0),
                (299, 1.0),
                (399, 25.0),
                (499, 35.0),
                (540, 48.0),
                (540, 3.0)
            ],
        )]
    );
}

/// The aggregated chunk of "single aggregated chunks" (and the first of "two aggregated
/// chunks"): counter samples of three original chunks, the third ending without its closing
/// raw value.
fn first_aggregated_chunk() -> ChunkData {
    let gauge: &[S] = &[
        (199, 5.0),
        (299, 1.0),
        (399, 10.0),
        (400, 3.0),
        (499, 10.0),
        (699, 0.0),
        (999, 100.0),
    ];
    let min_max: &[S] = &[
        (199, 5.0),
        (299, 1.0),
        (399, 10.0),
        (400, -3.0),
        (499, 10.0),
        (699, 0.0),
        (999, 100.0),
    ];
    let counter: &[S] = &[
        (99, 100.0),
        (299, 150.0),
        (499, 210.0),
        (499, 10.0),
        (599, 20.0),
        (799, 50.0),
        (999, 120.0),
        (999, 50.0),
        (1099, 40.0),
        (1199, 80.0),
        (1299, 110.0),
    ];
    aggr([gauge, gauge, min_max, min_max, counter])
}

fn single_aggregated_expected() -> Read {
    all5(
        &[(499, 29.0), (999, 100.0)],
        &[(499, 29.0), (999, 100.0)],
        &[(499, -3.0), (999, 0.0)],
        &[(499, 10.0), (999, 100.0)],
        &[
            (99, 100.0),
            (499, 210.0),
            (999, 320.0),
            (1299, 430.0),
            (1299, 110.0),
        ],
    )
}

#[test]
fn single_aggregated_chunks() {
    let got = aggr_case(&[first_aggregated_chunk()], 500).unwrap();
    assert_eq!(got, vec![single_aggregated_expected()]);
}

#[test]
fn downsampling_aggregates_again_to_the_same_resolution_changes_nothing() {
    let e = single_aggregated_expected();
    let slices: [&[S]; 5] = std::array::from_fn(|i| e[i].as_deref().unwrap());
    let got = aggr_case(&[aggr(slices)], 500).unwrap();
    assert_eq!(got, vec![e]);
}

#[test]
fn two_aggregated_chunks() {
    let gauge: &[S] = &[
        (1399, 10.0),
        (1400, 3.0),
        (1499, 10.0),
        (1699, 0.0),
        (1999, 100.0),
    ];
    let min_max: &[S] = &[
        (1399, 10.0),
        (1400, -3.0),
        (1499, 10.0),
        (1699, 0.0),
        (1999, 100.0),
    ];
    let counter: &[S] = &[
        (1499, 210.0),
        (1499, 10.0),
        (1599, 20.0),
        (1799, 50.0),
        (1999, 120.0),
        (1999, 50.0),
        (2099, 40.0),
        (2199, 80.0),
        (2299, 110.0),
    ];
    let second = aggr([gauge, gauge, min_max, min_max, counter]);
    let got = aggr_case(&[first_aggregated_chunk(), second], 500).unwrap();
    assert_eq!(
        got,
        vec![all5(
            &[(499, 29.0), (999, 100.0), (1499, 23.0), (1999, 100.0)],
            &[(499, 29.0), (999, 100.0), (1499, 23.0), (1999, 100.0)],
            &[(499, -3.0), (999, 0.0), (1499, -3.0), (1999, 0.0)],
            &[(499, 10.0), (999, 100.0), (1499, 10.0), (1999, 100.0)],
            &[
                (99, 100.0),
                (499, 210.0),
                (999, 320.0),
                (1499, 530.0),
                (1999, 640.0),
                (2299, 750.0),
                (2299, 110.0)
            ],
        )]
    );
}

#[test]
fn two_aggregated_overlapping_chunks() {
    let count: &[S] = &[
        (199, 5.0),
        (299, 1.0),
        (399, 10.0),
        (400, 3.0),
        (499, 10.0),
        (699, 0.0),
        (999, 100.0),
    ];
    let c = aggr([count, &[], &[], &[], &[]]);
    let err = aggr_case(&[c.clone(), c], 500).unwrap_err();
    assert!(err.to_string().starts_with(
        "found overlapping chunks within series 0. Chunks expected to be ordered by min time \
         and non-overlapping, got: [{MinTime:199 MaxTime:999} {MinTime:199 MaxTime:999}]"
    ));
}

/// Twelve 5m windows of a real counter with a reset (Thanos' "realistic ResLevel1 (5m)
/// downsampled chunks with from counter resets"), as one aggregate chunk.
fn realistic_5m_chunk() -> ChunkData {
    const T: [i64; 12] = [
        1587690299999,
        1587690599999,
        1587690899999,
        1587691199999,
        1587691499999,
        1587691799999,
        1587692099999,
        1587692399999,
        1587692699999,
        1587692999999,
        1587693299999,
        1587693590791,
    ];
    let zip = |vs: [f64; 12]| -> Vec<S> { T.iter().copied().zip(vs).collect() };
    let count = zip([
        20.0, 20.0, 20.0, 20.0, 20.0, 20.0, 20.0, 20.0, 16.0, 20.0, 20.0, 20.0,
    ]);
    let sum = zip([
        9.276972e+06,
        9.359861e+06,
        9.447457e+06,
        9.542732e+06,
        9.630379e+06,
        9.715631e+06,
        9.799808e+06,
        9.888117e+06,
        2.98928e+06,
        81592.0,
        163711.0,
        255746.0,
    ]);
    let min = zip([
        461968.0, 466070.0, 470131.0, 474913.0, 479625.0, 483709.0, 488036.0, 492223.0, 75.0,
        2261.0, 6210.0, 10464.0,
    ]);
    let max = zip([
        465870.0, 469951.0, 474726.0, 479368.0, 483566.0, 487787.0, 492065.0, 496245.0, 496544.0,
        6010.0, 10242.0, 14956.0,
    ]);
    let mut counter = vec![(1587690005791, 461968.0)];
    counter.extend(zip([
        465870.0, 469951.0, 474726.0, 479368.0, 483566.0, 487787.0, 492065.0, 496245.0, 498647.0,
        502554.0, 506786.0, 511500.0,
    ]));
    counter.push((1587693590791, 14956.0));
    aggr([&count, &sum, &min, &max, &counter])
}

#[test]
fn realistic_5m_chunks_with_a_counter_reset_to_1h() {
    let got = aggr_case(&[realistic_5m_chunk()], RES_LEVEL2).unwrap();
    let t = 1587693590791;
    assert_eq!(
        got,
        vec![all5(
            &[(t, 236.0)],
            &[(t, 8.0151286e+07)],
            &[(t, 75.0)],
            &[(t, 496544.0)],
            &[(1587690005791, 461968.0), (t, 511500.0), (t, 14956.0)],
        )]
    );
    // The same through the real source resolution.
    let out = downsample_series(7, &[realistic_5m_chunk()], RES_LEVEL1, RES_LEVEL2).unwrap();
    assert_eq!(read(&out), got);
    assert_eq!((out[0].min_time, out[0].max_time), (t, t));
    assert_eq!(out[0].num_samples(), 1);
}

#[test]
fn four_120_sample_chunks_for_2x_resolution_give_one_chunk() {
    // Only counters: the other sub-chunks are present but empty.
    let parts: Vec<Vec<S>> = (0..4)
        .map(|k| {
            (0..120)
                .map(|i| (120 * k + i, (120 * k + i) as f64))
                .collect()
        })
        .collect();
    let input: Vec<ChunkData> = parts
        .iter()
        .map(|p| aggr([&[], &[], &[], &[], p]))
        .collect();
    let got = aggr_case(&input, 2).unwrap();
    let mut counter = vec![(0, 0.0)];
    counter.extend((0..480).step_by(2).map(|i| (1 + i, (1 + i) as f64)));
    counter.push((479, 479.0));
    assert_eq!(got, vec![[None, None, None, None, Some(counter)]]);
}

#[test]
fn aggregated_block_with_an_empty_xor_chunk() {
    let empty = ChunkData {
        min_time: i64::MAX,
        max_time: i64::MIN,
        encoding: ENCODING_XOR,
        data: XorChunk::new().bytes().to_vec().into(),
    };
    let out = downsample_series(0, &[realistic_5m_chunk(), empty], RES_LEVEL1, RES_LEVEL2).unwrap();
    let alone = downsample_series(0, &[realistic_5m_chunk()], RES_LEVEL1, RES_LEVEL2).unwrap();
    assert_eq!(read(&out), read(&alone));
}

#[test]
fn aggregated_block_with_a_non_empty_xor_chunk() {
    let count: &[S] = &[
        (1587690299999, 20.0),
        (1587690599999, 20.0),
        (1587690899999, 20.0),
    ];
    let sum: &[S] = &[
        (1587690299999, 9.276972e+06),
        (1587690599999, 9.359861e+06),
        (1587693590791, 255746.0),
    ];
    let min: &[S] = &[
        (1587690299999, 461968.0),
        (1587690599999, 466070.0),
        (1587690899999, 470131.0),
        (1587691199999, 474913.0),
    ];
    let max: &[S] = &[
        (1587690299999, 465870.0),
        (1587690599999, 469951.0),
        (1587690899999, 474726.0),
    ];
    let counter: &[S] = &[
        (1587690005791, 461968.0),
        (1587690299999, 465870.0),
        (1587690599999, 469951.0),
    ];
    let mut xor_meta = raw(&[(1587690005794, 42.5)]);
    (xor_meta.min_time, xor_meta.max_time) = (i64::MAX, i64::MIN);
    let out = downsample_series(
        0,
        &[aggr([count, sum, min, max, counter]), xor_meta],
        RES_LEVEL1,
        RES_LEVEL2,
    )
    .unwrap();
    // The XOR chunk's 5m window, stamped at its only sample, ends every batch: every 1h window
    // is capped at that (earlier) timestamp, and the sample joins the last window.
    let t = 1587690005794;
    assert_eq!(
        read(&out),
        vec![all5(
            &[(t, 20.0), (t, 20.0), (t, 21.0)],
            &[(t, 9.276972e+06), (t, 9.359861e+06), (t, 255788.5)],
            &[(t, 461968.0), (t, 466070.0), (t, 470131.0), (t, 42.5)],
            &[(t, 465870.0), (t, 469951.0), (t, 474726.0)],
            &[
                (1587690005791, 461968.0),
                (1587690599999, 469951.0),
                (1587690599999, 469951.0)
            ],
        )]
    );
}

#[test]
fn counter_resets_at_chunk_boundaries_survive_two_levels() {
    let raw_samples: Vec<Sample> = [
        (10, 1.0),
        (20, 3.0),
        (30, 5.0),
        (50, 1.0),
        (60, 8.0),
        (70, 10.0),
        (120, 1.0),
        (130, 18.0),
        (140, 20.0),
        (160, 21.0),
        (170, 38.0),
        (180, 40.0),
    ]
    .iter()
    .map(|&(t, v)| Sample { t, v })
    .collect();
    let counter_samples = |chunks: &[ChunkData]| -> Vec<S> {
        chunks
            .iter()
            .flat_map(|c| {
                let a = AggrChunk::new(&c.data);
                a.samples(AggrType::Counter)
                    .unwrap()
                    .unwrap()
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let counter_iterate = |chunks: &[ChunkData]| -> Vec<S> {
        let iters = chunks
            .iter()
            .map(|c| {
                AggrChunk::new(&c.data)
                    .samples(AggrType::Counter)
                    .unwrap()
                    .unwrap()
            })
            .collect();
        CounterResets::new(iters).collect()
    };

    // More chunks than samples: every batch is a single 50ms window.
    let mut level1 = Vec::new();
    downsample_raw_loop(&raw_samples, 50, raw_samples.len() + 1, &mut level1);
    assert_eq!(level1.len(), 4);
    assert_eq!(
        counter_samples(&level1),
        vec![
            (10, 1.0),
            (30, 5.0),
            (30, 5.0),
            (50, 1.0),
            (70, 10.0),
            (70, 10.0),
            (120, 1.0),
            (140, 20.0),
            (140, 20.0),
            (160, 21.0),
            (180, 40.0),
            (180, 40.0)
        ]
    );
    assert_eq!(
        counter_iterate(&level1),
        vec![
            (10, 1.0),
            (30, 5.0),
            (50, 6.0),
            (70, 15.0),
            (120, 16.0),
            (140, 35.0),
            (160, 36.0),
            (180, 55.0)
        ]
    );

    let views: Vec<AggrChunk<'_>> = level1.iter().map(|c| AggrChunk::new(&c.data)).collect();
    let mut level2 = Vec::new();
    downsample_aggr_loop(&views, &mut Vec::new(), 100, 2, &mut level2).unwrap();
    assert_eq!(level2.len(), 2);
    assert_eq!(
        counter_samples(&level2),
        vec![
            (10, 1.0),
            (70, 15.0),
            (70, 10.0),
            (120, 1.0),
            (180, 40.0),
            (180, 40.0)
        ]
    );
    assert_eq!(
        counter_iterate(&level2),
        vec![(10, 1.0), (70, 15.0), (120, 16.0), (180, 55.0)]
    );
}

fn counter_resets_over(chunks: &[Vec<S>]) -> (Vec<XorChunk>, Vec<S>) {
    let encoded: Vec<XorChunk> = chunks.iter().map(|c| xor(c)).collect();
    let got = CounterResets::new(encoded.iter().map(|c| c.iter()).collect()).collect();
    (encoded, got)
}

#[test]
fn counter_resets_over_a_series_with_a_stale_marker() {
    let chunks = vec![
        vec![
            (100, 10.0),
            (200, 20.0),
            (300, 10.0),
            (400, 20.0),
            (400, 5.0),
        ],
        // No reset, just the closing sample downsampling adds.
        vec![
            (500, 10.0),
            (600, 20.0),
            (700, 30.0),
            (800, 40.0),
            (800, 10.0),
        ],
        // A real reset.
        vec![(900, 5.0), (1000, 10.0), (1100, 15.0)],
        // No closing sample, no reset.
        vec![(1200, 20.0), (1250, STALE), (1300, 40.0)],
        // No closing sample, a reset.
        vec![(1400, 30.0), (1500, 30.0), (1600, 50.0)],
    ];
    let (_, got) = counter_resets_over(&chunks);
    assert_eq!(
        got,
        vec![
            (100, 10.0),
            (200, 20.0),
            (300, 30.0),
            (400, 40.0),
            (500, 45.0),
            (600, 55.0),
            (700, 65.0),
            (800, 75.0),
            (900, 80.0),
            (1000, 85.0),
            (1100, 90.0),
            (1200, 95.0),
            (1300, 115.0),
            (1400, 145.0),
            (1500, 145.0),
            (1600, 165.0)
        ]
    );
}

#[test]
fn counter_resets_skip_overlapping_chunks() {
    let a = vec![(100, 1.0), (200, 2.0), (300, 3.0)];
    let b = vec![(400, 4.0), (500, 5.0)];
    let (_, once) = counter_resets_over(&[a.clone(), b.clone()]);
    let (_, repeated) = counter_resets_over(&[a.clone(), a, b.clone(), b]);
    assert_eq!(
        once,
        vec![(100, 1.0), (200, 2.0), (300, 3.0), (400, 4.0), (500, 5.0)]
    );
    assert_eq!(repeated, once);
}

#[test]
fn counter_resets_seek() {
    let chunk = xor(&[
        (100, 10.0),
        (200, 20.0),
        (300, 10.0),
        (400, 20.0),
        (400, 5.0),
    ]);
    let mut it = CounterResets::new(vec![chunk.iter()]);
    assert!(it.seek(150));
    let mut got = vec![it.at()];
    got.extend(&mut it);
    assert_eq!(got, vec![(200, 20.0), (300, 30.0), (400, 40.0)]);

    // Past the end.
    assert!(!CounterResets::new(vec![chunk.iter()]).seek(500));

    // Seeking behind the current sample stays on it.
    let one = xor(&[(100, 10.0)]);
    let mut it = CounterResets::new(vec![one.iter()]);
    assert_eq!(it.next(), Some((100, 10.0)));
    assert!(it.seek(50));
    assert_eq!(it.at(), (100, 10.0));
    assert_eq!(it.next(), None);
}

#[test]
fn resolution_must_go_down() {
    assert!(matches!(
        downsample_series(0, &[], RES_LEVEL1, RES_LEVEL1),
        Err(DownsampleError::ResolutionNotLower)
    ));
    assert!(downsample_series(0, &[], RES_LEVEL0, RES_LEVEL1)
        .unwrap()
        .is_empty());
}

// Whole blocks.

use tsdb::block::{write_block, BlockWriteOptions};
use tsdb::meta::ThanosMeta;
use tsdb::querier::Series;
use tsdb::{labels, Labels};

const MIN: i64 = 60_000;
const H2: i64 = 2 * 60 * MIN;

/// A raw 2h block: `c`, a counter scraped every minute that resets after an hour
/// (0, 1, ..., 59, 0, 1, ..., 59), and `g`, a gauge at 7 throughout, in 120-sample chunks.
fn raw_block(dir: &Path, extra_chunks: Option<Vec<ChunkData>>) -> BlockMeta {
    let counter: Vec<S> = (0..120).map(|i| (i * MIN, (i % 60) as f64)).collect();
    let gauge: Vec<S> = (0..120).map(|i| (i * MIN, 7.0)).collect();
    let mut c_chunks = vec![raw(&counter)];
    if let Some(extra) = extra_chunks {
        c_chunks.extend(extra);
    }
    let series = vec![
        Series {
            labels: labels!("__name__" => "c"),
            chunks: c_chunks,
        },
        Series {
            labels: labels!("__name__" => "g"),
            chunks: vec![raw(&gauge)],
        },
    ];
    let mut extra = std::collections::BTreeMap::new();
    extra.insert("upload_time".into(), "2026-01-01T00:00:00Z".into());
    let thanos = ThanosMeta {
        labels: [("tenant".to_string(), "a".to_string())].into(),
        source: "receive".into(),
        extra,
        ..Default::default()
    };
    write_block(
        dir,
        0,
        H2,
        &series,
        BlockWriteOptions {
            thanos: Some(thanos),
            ..Default::default()
        },
    )
    .unwrap()
}

/// Every series of a block with its chunks read back.
fn block_series(dir: &Path) -> Vec<(Labels, Vec<ChunkData>)> {
    let block = Block::open(dir).unwrap();
    let mut out = Vec::new();
    for r in block.index().all_postings().unwrap() {
        let (labels, metas) = block.index().series(r).unwrap();
        let chunks = metas.iter().map(|m| block.chunk(m).unwrap()).collect();
        out.push((labels, chunks));
    }
    out
}

fn samples_of(chunk: &ChunkData, at: AggrType) -> Vec<S> {
    AggrChunk::new(&chunk.data)
        .samples(at)
        .unwrap()
        .unwrap()
        .collect()
}

#[test]
fn raw_block_to_5m_to_1h() {
    let tmp = tempfile::tempdir().unwrap();
    let src_meta = raw_block(tmp.path(), None);
    let src = Block::open(&tmp.path().join(src_meta.ulid.to_string())).unwrap();
    let out_dir = tmp.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();

    let ulid5m = Ulid::new();
    let meta5m = downsample_block(&src, RES_LEVEL1, &out_dir, ulid5m).unwrap();
    let dir5m = out_dir.join(ulid5m.to_string());
    assert_eq!(BlockMeta::read(&dir5m).unwrap(), meta5m);
    assert_eq!(meta5m.ulid, ulid5m);
    assert_eq!((meta5m.min_time, meta5m.max_time), (0, H2));
    assert_eq!(meta5m.compaction, src_meta.compaction);
    // 24 windows per series, one chunk each (24 expected windows fit one chunk).
    assert_eq!(
        (
            meta5m.stats.num_series,
            meta5m.stats.num_chunks,
            meta5m.stats.num_samples
        ),
        (2, 2, 48)
    );
    let thanos = meta5m.thanos.as_ref().unwrap();
    assert_eq!(thanos.downsample.resolution, RES_LEVEL1);
    assert_eq!(thanos.source, "compactor");
    assert_eq!(thanos.labels, src_meta.thanos.as_ref().unwrap().labels);
    assert!(thanos.files.is_empty());
    assert_eq!(thanos.extra.get("upload_time"), None);
    assert_eq!(
        thanos.extra.get("segment_files"),
        Some(&serde_json::json!(["000001"]))
    );
    assert!(
        thanos.extra["index_stats"]["chunk_max_size"]
            .as_i64()
            .unwrap()
            > 0
    );

    // The compactor's verification reads aggregate chunks: 48 windows, as meta.json says.
    let report = objstore::verify::verify_local_block(&dir5m).unwrap();
    assert_eq!(report.problems, Vec::<String>::new());
    assert_eq!((report.series, report.chunks, report.samples), (2, 2, 48));

    let series = block_series(&dir5m);
    assert_eq!(series.len(), 2);
    let (labels, chunks) = &series[0];
    assert_eq!(labels, &labels!("__name__" => "c"));
    assert_eq!(chunks.len(), 1);
    let c = &chunks[0];
    assert_eq!(c.encoding, ENCODING_AGGR);
    // Window stamps run from 5m - 1 to the last sample (119 minutes).
    assert_eq!((c.min_time, c.max_time), (5 * MIN - 1, 119 * MIN));
    let count = samples_of(c, AggrType::Count);
    assert_eq!(count.len(), 24);
    assert!(count.iter().all(|&(_, v)| v == 5.0));
    let sum = samples_of(c, AggrType::Sum);
    assert_eq!(sum[0], (5 * MIN - 1, 10.0)); // 0 + 1 + 2 + 3 + 4
    assert_eq!(sum[23], (119 * MIN, 285.0)); // 55 + ... + 59
    assert_eq!(samples_of(c, AggrType::Min)[12], (65 * MIN - 1, 0.0));
    assert_eq!(samples_of(c, AggrType::Max)[11], (60 * MIN - 1, 59.0));
    let counter = samples_of(c, AggrType::Counter);
    assert_eq!(counter.len(), 26);
    assert_eq!(counter[0], (0, 0.0));
    assert_eq!(counter[1], (5 * MIN - 1, 4.0));
    // 59 before the reset, 0 at it, 59 more after.
    assert_eq!(counter[24..], [(119 * MIN, 118.0), (119 * MIN, 59.0)]);
    let (labels, chunks) = &series[1];
    assert_eq!(labels, &labels!("__name__" => "g"));
    assert!(samples_of(&chunks[0], AggrType::Max)
        .iter()
        .all(|&(_, v)| v == 7.0));

    // 5m -> 1h: two windows, the second capped at the last sample.
    let block5m = Block::open(&dir5m).unwrap();
    let ulid1h = Ulid::new();
    let meta1h = downsample_block(&block5m, RES_LEVEL2, &out_dir, ulid1h).unwrap();
    assert_eq!(
        meta1h.thanos.as_ref().unwrap().downsample.resolution,
        RES_LEVEL2
    );
    assert_eq!((meta1h.min_time, meta1h.max_time), (0, H2));
    assert_eq!(meta1h.stats.num_samples, 4);
    let report = objstore::verify::verify_local_block(&out_dir.join(ulid1h.to_string())).unwrap();
    assert_eq!((report.problems.len(), report.samples), (0, 4));
    let series = block_series(&out_dir.join(ulid1h.to_string()));
    let c = &series[0].1[0];
    assert_eq!(
        samples_of(c, AggrType::Count),
        vec![(60 * MIN - 1, 60.0), (119 * MIN, 60.0)]
    );
    assert_eq!(
        samples_of(c, AggrType::Sum),
        vec![(60 * MIN - 1, 1770.0), (119 * MIN, 1770.0)]
    );
    assert_eq!(
        samples_of(c, AggrType::Counter),
        vec![
            (0, 0.0),
            (60 * MIN - 1, 59.0),
            (119 * MIN, 118.0),
            (119 * MIN, 59.0)
        ]
    );

    // Not again to the same resolution, and nothing is left behind.
    let again = Ulid::new();
    assert!(matches!(
        downsample_block(&block5m, RES_LEVEL1, &out_dir, again),
        Err(DownsampleError::ResolutionNotLower)
    ));
    assert!(!out_dir.join(again.to_string()).exists());
}

#[test]
fn overlapping_chunks_fail_the_block_and_leave_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    // A second chunk for `c` inside the first one's range.
    let meta = raw_block(
        tmp.path(),
        Some(vec![raw(&[(30 * MIN, 1.0), (31 * MIN, 2.0)])]),
    );
    let src = Block::open(&tmp.path().join(meta.ulid.to_string())).unwrap();
    let out_dir = tmp.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let err = downsample_block(&src, RES_LEVEL1, &out_dir, Ulid::new()).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("found overlapping chunks within series "),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 0);
}

#[test]
fn native_histogram_series_stay_raw_and_do_not_halt_downsampling() {
    let tmp = tempfile::tempdir().unwrap();
    let mut hc = tsdb::chunkenc::HistogramChunk::new();
    for i in 0..10i64 {
        let h = model::histogram::Histogram {
            count: i as u64,
            sum: i as f64,
            positive_spans: vec![model::histogram::Span {
                offset: 0,
                length: 1,
            }],
            positive_buckets: vec![i],
            ..Default::default()
        };
        hc.append(i * MIN, &h).unwrap();
    }
    let hist = ChunkData {
        min_time: 0,
        max_time: 9 * MIN,
        encoding: ENCODING_HISTOGRAM,
        data: hc.bytes().to_vec().into(),
    };
    let h_only = tempfile::tempdir().unwrap();
    let series = vec![
        Series {
            labels: labels!("__name__" => "g"),
            chunks: vec![raw(&[(0, 1.0), (MIN, 2.0)])],
        },
        Series {
            labels: labels!("__name__" => "h"),
            chunks: vec![hist],
        },
    ];
    let meta = write_block(h_only.path(), 0, H2, &series, BlockWriteOptions::default()).unwrap();
    let src = Block::open(&h_only.path().join(meta.ulid.to_string())).unwrap();
    let out_dir = tmp.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let ulid = Ulid::new();
    let out = downsample_block(&src, RES_LEVEL1, &out_dir, ulid).unwrap();
    assert_eq!(out.stats.num_series, 1);
    let got = block_series(&out_dir.join(ulid.to_string()));
    assert_eq!(got[0].0, labels!("__name__" => "g"));
}
