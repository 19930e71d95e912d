use super::*;
use proptest::prelude::*;

fn spans(pairs: &[(i32, u32)]) -> Vec<Span> {
    pairs
        .iter()
        .map(|&(offset, length)| Span { offset, length })
        .collect()
}

/// An integer histogram with the given absolute positive bucket counts on `spans`.
fn int_hist(sp: &[(i32, u32)], counts: &[i64], zero: u64, sum: f64) -> Histogram {
    let total: i64 = counts.iter().sum();
    Histogram {
        schema: 1,
        zero_threshold: 0.001,
        zero_count: zero,
        count: total as u64 + zero,
        sum,
        positive_spans: spans(sp),
        positive_buckets: counts_to_deltas(counts),
        ..Default::default()
    }
}

/// Bytes from a string of '0'/'1' (spaces ignored), padded with zero bits.
fn bits(s: &str) -> Vec<u8> {
    let bits: Vec<bool> = s
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c == '1')
        .collect();
    bits.chunks(8)
        .map(|c| {
            c.iter()
                .enumerate()
                .fold(0u8, |b, (i, &bit)| b | (u8::from(bit) << (7 - i)))
        })
        .collect()
}

/// Worked from the format description, not from the encoder.
#[test]
fn one_sample_matches_the_format_bit_for_bit() {
    let h = Histogram {
        schema: 0,
        count: 2,
        sum: 1.0,
        positive_spans: spans(&[(0, 1)]),
        positive_buckets: vec![2],
        ..Default::default()
    };
    let mut c = HistogramChunk::new();
    c.append(1000, &h).unwrap();
    let mut expected = vec![0, 1, 0];
    expected.extend(bits(
        "00000000 \
         0 \
         10001 10001 0 \
         0 \
         11110 001111101000 \
         10010 \
         0 \
         0011111111110000000000000000000000000000000000000000000000000000 \
         10010",
    ));
    assert_eq!(c.bytes(), expected);
    let back: Vec<_> = c.iter().collect();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].0, 1000);
    assert_eq!(back[0].1.positive_buckets, vec![2]);
}

#[test]
fn varbit_classes_round_trip_at_their_edges() {
    let ints: Vec<i64> = [
        0i64, 1, -1, 4, -3, 5, -4, 32, -31, 33, 256, -255, 257, 2048, -2047,
    ]
    .into_iter()
    .chain([2049, 131_072, -131_071, 131_073, 16_777_216, -16_777_215])
    .chain([
        16_777_217,
        1 << 55,
        -(1 << 55) + 1,
        (1 << 55) + 1,
        i64::MAX,
        i64::MIN,
    ])
    .collect();
    let uints: Vec<u64> = vec![0, 1, 7, 8, 63, 64, 511, 512, 4095, 4096, 262_143, 262_144]
        .into_iter()
        .chain([33_554_431, 33_554_432, (1 << 56) - 1, 1 << 56, u64::MAX])
        .collect();
    let mut buf = Vec::new();
    let mut w = BitWriter::new(&mut buf, 0);
    for &v in &ints {
        put_varbit_int(&mut w, v);
    }
    for &v in &uints {
        put_varbit_uint(&mut w, v);
    }
    let mut r = BitReader::new(&buf);
    for &v in &ints {
        assert_eq!(read_varbit_int(&mut r), Some(v), "int {v}");
    }
    for &v in &uints {
        assert_eq!(read_varbit_uint(&mut r), Some(v), "uint {v}");
    }
}

#[test]
fn zero_thresholds_and_custom_bounds_take_their_short_forms() {
    let mut buf = Vec::new();
    let mut w = BitWriter::new(&mut buf, 0);
    for zt in [0.0, 2f64.powi(-128), 0.5, 1024.0, 0.001, 2048.0, -1.0] {
        put_zero_threshold(&mut w, zt);
    }
    for b in [0.0, 0.25, 1.5, 33_554.43, 0.0001, -1.0, f64::NAN, 1e12] {
        put_custom_bound(&mut w, b);
    }
    let mut r = BitReader::new(&buf);
    // 2^-128 and 1024 are powers of two in range: one byte each.
    assert_eq!(r.clone().read_byte(), Some(0));
    for zt in [0.0, 2f64.powi(-128), 0.5, 1024.0, 0.001, 2048.0, -1.0] {
        assert_eq!(read_zero_threshold(&mut r), Some(zt));
    }
    for b in [0.0, 0.25, 1.5, 33_554.43, 0.0001, -1.0, f64::NAN, 1e12] {
        let got = read_custom_bound(&mut r).unwrap();
        assert!(
            got == b || (got.is_nan() && b.is_nan()),
            "{b} read as {got}"
        );
    }
    // 0.5 = 0.5 * 2^0 is byte 243; 1024 = 0.5 * 2^11 is byte 254.
    let mut buf = Vec::new();
    let mut w = BitWriter::new(&mut buf, 0);
    put_zero_threshold(&mut w, 0.5);
    put_zero_threshold(&mut w, 1024.0);
    assert_eq!(&buf[..2], &[243, 254]);
}

#[test]
fn samples_with_one_layout_round_trip() {
    let mut c = HistogramChunk::new();
    let mut want = Vec::new();
    for i in 0..120i64 {
        let h = int_hist(
            &[(-1, 2), (2, 3)],
            &[i, 2 * i, 3, 4 + i, i * i],
            7 + i as u64,
            1.5 * i as f64,
        );
        c.append(1000 + 15_000 * i + (i % 3), &h).unwrap();
        want.push((1000 + 15_000 * i + (i % 3), h));
    }
    let mut it = c.iter();
    let got: Vec<_> = it.by_ref().collect();
    assert_eq!(it.err(), None);
    assert_eq!(got.len(), 120);
    for ((t, h), (wt, wh)) in got.iter().zip(&want) {
        assert_eq!(t, wt);
        assert_eq!(h.positive_buckets, wh.positive_buckets);
        assert_eq!(
            (h.count, h.zero_count, h.sum),
            (wh.count, wh.zero_count, wh.sum)
        );
        assert_eq!(h.positive_spans, wh.positive_spans);
    }
    // Reopened, the chunk appends exactly as if it had never been closed.
    let mut reopened = HistogramChunk::from_bytes(c.bytes().to_vec()).unwrap();
    let next = int_hist(&[(-1, 2), (2, 3)], &[200, 300, 3, 400, 20_000], 900, 1e6);
    reopened.append(10_000_000, &next).unwrap();
    c.append(10_000_000, &next).unwrap();
    assert_eq!(reopened.bytes(), c.bytes());
}

#[test]
fn new_buckets_recode_the_chunk_and_missing_empty_ones_are_added() {
    let mut c = HistogramChunk::new();
    c.append(1, &int_hist(&[(0, 2)], &[1, 0], 0, 1.0)).unwrap();
    c.append(2, &int_hist(&[(0, 2)], &[2, 0], 0, 2.0)).unwrap();
    // Bucket 3 appears: the chunk is re-encoded with buckets 0, 1, 3.
    c.append(3, &int_hist(&[(0, 1), (2, 1)], &[3, 5], 0, 3.0))
        .unwrap();
    let got: Vec<_> = c.iter().collect();
    assert_eq!(got.len(), 3);
    for (_, h) in &got {
        assert_eq!(h.positive_spans, spans(&[(0, 2), (1, 1)]));
        h.validate().unwrap();
    }
    let counts: Vec<Vec<i64>> = got
        .iter()
        .map(|(_, h)| deltas_to_counts(&h.positive_buckets).collect())
        .collect();
    assert_eq!(counts, [vec![1, 0, 0], vec![2, 0, 0], vec![3, 0, 5]]);
    assert_eq!(c.counter_reset_header(), CounterResetHeader::Unknown);
}

#[test]
fn resets_and_layout_changes_cut_with_the_right_header() {
    let base = int_hist(&[(0, 2)], &[4, 4], 1, 10.0);
    let mut c = HistogramChunk::new();
    c.append(1, &base).unwrap();

    let lower_bucket = int_hist(&[(0, 2)], &[4, 3], 2, 10.0);
    assert_eq!(
        c.append(2, &lower_bucket),
        Err(Cut(CounterResetHeader::Reset))
    );
    let lost_bucket = int_hist(&[(0, 1)], &[9], 1, 10.0);
    assert_eq!(
        c.append(2, &lost_bucket),
        Err(Cut(CounterResetHeader::Reset))
    );
    let lower_zero = int_hist(&[(0, 2)], &[5, 5], 0, 10.0);
    assert_eq!(
        c.append(2, &lower_zero),
        Err(Cut(CounterResetHeader::Reset))
    );
    let mut other_schema = base.clone();
    other_schema.schema = 2;
    assert_eq!(
        c.append(2, &other_schema),
        Err(Cut(CounterResetHeader::Unknown))
    );
    let mut hinted = base.clone();
    hinted.counter_reset_hint = CounterResetHint::Reset;
    assert_eq!(c.append(2, &hinted), Err(Cut(CounterResetHeader::Reset)));
    let mut gauge = base.clone();
    gauge.counter_reset_hint = CounterResetHint::Gauge;
    assert_eq!(c.append(2, &gauge), Err(Cut(CounterResetHeader::Gauge)));
    // A failed append leaves the chunk untouched.
    assert_eq!(c.num_samples(), 1);

    // The new chunk starts with the header it was cut for.
    let mut next = HistogramChunk::new();
    next.set_counter_reset_header(CounterResetHeader::Reset);
    next.append(2, &lower_bucket).unwrap();
    assert_eq!(next.counter_reset_header(), CounterResetHeader::Reset);
    assert_eq!(next.bytes()[2], 0b1000_0000);
}

#[test]
fn gauge_chunks_take_decreases_and_merge_both_ways() {
    let mut g = int_hist(&[(0, 2)], &[4, 4], 3, 10.0);
    g.counter_reset_hint = CounterResetHint::Gauge;
    let mut c = HistogramChunk::new();
    c.append(1, &g).unwrap();
    assert_eq!(c.counter_reset_header(), CounterResetHeader::Gauge);
    let mut down = int_hist(&[(1, 2)], &[1, 7], 0, 2.0);
    down.counter_reset_hint = CounterResetHint::Gauge;
    c.append(2, &down).unwrap();
    let got: Vec<_> = c.iter().collect();
    for (_, h) in &got {
        assert_eq!(h.counter_reset_hint, CounterResetHint::Gauge);
        assert_eq!(h.positive_spans, spans(&[(0, 3)]));
    }
    let last: Vec<i64> = deltas_to_counts(&got[1].1.positive_buckets).collect();
    assert_eq!(last, [0, 1, 7]);
    // A counter histogram does not join a gauge chunk.
    assert!(c.append(3, &int_hist(&[(0, 1)], &[1], 0, 1.0)).is_err());
}

#[test]
fn stale_marker_ends_the_chunk() {
    let mut c = HistogramChunk::new();
    c.append(1, &int_hist(&[(0, 1)], &[1], 0, 1.0)).unwrap();
    let stale = Histogram {
        sum: crate::stale_nan(),
        ..Default::default()
    };
    c.append(2, &stale).unwrap();
    let got: Vec<_> = c.iter().collect();
    assert!(got[1].1.is_stale());
    assert_eq!(
        c.append(3, &int_hist(&[(0, 1)], &[2], 0, 1.0)),
        Err(Cut(CounterResetHeader::Unknown))
    );
    // A chunk can start with a marker, too.
    let mut s = FloatHistogramChunk::new();
    s.append(5, &stale.to_float()).unwrap();
    assert!(s.iter().next().unwrap().1.is_stale());
}

#[test]
fn hints_on_read_follow_prometheus() {
    let mut c = HistogramChunk::new();
    c.set_counter_reset_header(CounterResetHeader::NotReset);
    for i in 0..3 {
        c.append(i, &int_hist(&[(0, 1)], &[i], 0, 1.0)).unwrap();
    }
    let hints: Vec<_> = c.iter().map(|(_, h)| h.counter_reset_hint).collect();
    assert_eq!(
        hints,
        [
            CounterResetHint::Unknown,
            CounterResetHint::NotReset,
            CounterResetHint::NotReset
        ]
    );
}

#[test]
fn custom_bucket_float_histograms_round_trip() {
    let h = |t: f64| FloatHistogram {
        schema: CUSTOM_BUCKETS_SCHEMA,
        count: 6.0 * t,
        sum: 0.1 * t,
        positive_spans: spans(&[(0, 3)]),
        positive_buckets: vec![t, 2.0 * t, 3.0 * t],
        custom_values: vec![0.005, 0.1, 2.5e-7],
        ..Default::default()
    };
    let mut c = FloatHistogramChunk::new();
    for i in 1..50 {
        c.append(i * 1000, &h(i as f64 * 0.7)).unwrap();
    }
    let mut it = c.iter();
    for (i, (t, got)) in it.by_ref().enumerate() {
        let want = h((i + 1) as f64 * 0.7);
        assert_eq!(t, (i as i64 + 1) * 1000);
        assert_eq!(got.positive_buckets, want.positive_buckets);
        assert_eq!(got.custom_values, want.custom_values);
        assert_eq!((got.count, got.sum), (want.count, want.sum));
    }
    assert_eq!(it.err(), None);
    // Other bounds are a reset, not a recode.
    let mut other = h(100.0);
    other.custom_values = vec![0.005, 0.2, 1.0];
    assert_eq!(
        c.append(100_000, &other),
        Err(Cut(CounterResetHeader::Reset))
    );
    let reopened = FloatHistogramChunk::from_bytes(c.bytes().to_vec()).unwrap();
    assert_eq!(reopened.num_samples(), 49);
}

#[test]
fn damaged_chunks_report_errors() {
    let mut c = HistogramChunk::new();
    for i in 0..10 {
        c.append(i, &int_hist(&[(0, 3)], &[i, i, i], 0, 1.0))
            .unwrap();
    }
    let data = c.bytes();
    let mut it = HistogramIterator::new(&data[..data.len() - 3]);
    assert!(it.by_ref().count() < 10);
    assert!(it.err().unwrap().contains("data ends inside sample"));
    assert!(HistogramIterator::new(&[0, 1])
        .err()
        .unwrap()
        .contains("3-byte header"));
    assert!(HistogramChunk::from_bytes(data[..data.len() - 3].to_vec()).is_err());
    let mut long = data.to_vec();
    long.extend([0, 0]);
    assert!(HistogramChunk::from_bytes(long).is_err());
}

fn arb_int_series() -> impl Strategy<Value = Vec<(i64, Vec<i64>, u64, f64)>> {
    prop::collection::vec(
        (
            1i64..100_000,
            prop::collection::vec(0i64..1000, 4),
            0u64..100,
            any::<f64>(),
        ),
        1..60,
    )
}

proptest! {
    /// Monotonic counters of any shape: every sample reads back, whatever recoding happened.
    #[test]
    fn int_chunks_round_trip(steps in arb_int_series(), present in prop::collection::vec(any::<bool>(), 4)) {
        let mut c = HistogramChunk::new();
        let mut t = 0i64;
        let mut acc = [0i64; 4];
        let mut zero = 0u64;
        let mut want = Vec::new();
        for (i, (dt, inc, zinc, sum)) in steps.iter().enumerate() {
            t += dt;
            zero += zinc;
            let mut idx = Vec::new();
            let mut counts = Vec::new();
            for b in 0..4 {
                // Buckets appear over time; once present with a count they stay.
                if present[b] || i > 3 * b || acc[b] > 0 {
                    acc[b] += inc[b];
                    idx.push(b as i32 * 2 - 3);
                    counts.push(acc[b]);
                }
            }
            let h = Histogram {
                schema: 3,
                zero_threshold: 1e-9,
                zero_count: zero,
                count: zero + counts.iter().sum::<i64>() as u64,
                sum: *sum,
                positive_spans: spans_from_indexes(&idx),
                positive_buckets: counts_to_deltas(&counts),
                negative_spans: spans_from_indexes(&idx),
                negative_buckets: counts_to_deltas(&counts),
                ..Default::default()
            };
            prop_assert_eq!(c.append(t, &h), Ok(()));
            want.push((t, h));
        }
        let mut it = c.iter();
        let got: Vec<_> = it.by_ref().collect();
        prop_assert_eq!(it.err(), None);
        prop_assert_eq!(got.len(), want.len());
        for ((t, h), (wt, wh)) in got.iter().zip(&want) {
            prop_assert_eq!(t, wt);
            prop_assert_eq!(h.count, wh.count);
            prop_assert_eq!(h.sum.to_bits(), wh.sum.to_bits());
            let wanted: std::collections::BTreeMap<i32, i64> = bucket_indexes(&wh.positive_spans)
                .zip(deltas_to_counts(&wh.positive_buckets)).collect();
            for (i, c) in bucket_indexes(&h.positive_spans).zip(deltas_to_counts(&h.positive_buckets)) {
                prop_assert_eq!(wanted.get(&i).copied().unwrap_or(0), c);
            }
        }
        let reopened = HistogramChunk::from_bytes(c.bytes().to_vec());
        prop_assert!(reopened.is_ok());
    }

    #[test]
    fn float_chunks_round_trip(vals in prop::collection::vec((1i64..1_000_000, prop::collection::vec(any::<f64>(), 3), any::<f64>()), 1..40)) {
        let mut c = FloatHistogramChunk::new();
        let mut t = 0;
        let mut want = Vec::new();
        for (dt, b, s) in &vals {
            t += dt;
            let h = FloatHistogram {
                counter_reset_hint: CounterResetHint::Gauge,
                schema: -2,
                count: b.iter().sum(),
                sum: *s,
                positive_spans: spans(&[(5, 3)]),
                positive_buckets: b.clone(),
                ..Default::default()
            };
            if h.is_stale() {
                continue;
            }
            prop_assert_eq!(c.append(t, &h), Ok(()));
            want.push((t, h));
        }
        let got: Vec<_> = c.iter().collect();
        prop_assert_eq!(got.len(), want.len());
        for ((t, h), (wt, wh)) in got.iter().zip(&want) {
            prop_assert_eq!(t, wt);
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            prop_assert_eq!(bits(&h.positive_buckets), bits(&wh.positive_buckets));
            prop_assert_eq!(h.sum.to_bits(), wh.sum.to_bits());
            prop_assert_eq!(h.count.to_bits(), wh.count.to_bits());
        }
    }

    /// Garbage never panics and never allocates beyond what the bytes could describe.
    #[test]
    fn garbage_is_an_error_not_a_panic(data in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = HistogramIterator::new(&data).count();
        let _ = FloatHistogramIterator::new(&data).count();
        let _ = HistogramChunk::from_bytes(data.clone());
        let _ = FloatHistogramChunk::from_bytes(data);
    }
}
