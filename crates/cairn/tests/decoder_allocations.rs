//! What hostile bytes can make a decoder allocate. A counting allocator records the peak of
//! live heap bytes while each decoder fed from outside reads random bytes, damaged valid
//! encodings and inputs built to lie (lengths and counts far beyond the input). Each must stay
//! within `EXPANSION` times its input plus `SLACK`: a few bytes must never buy megabytes. The
//! worst ratio per decoder is printed.
//!
//! One test function: the allocator's counters are global to the process.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator with the same arguments; the
// counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as the caller promised for `layout`.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` with this `layout`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as the caller promised for `ptr`, `layout` and `new_size`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let grow = new_size - layout.size();
                let live = LIVE.fetch_add(grow, Ordering::Relaxed) + grow;
                PEAK.fetch_max(live, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Bytes of heap one input byte may cost at most (snappy alone expands up to 21x); the
/// remote-write decoders get a factor of their own, from the size of a decoded series.
const EXPANSION: usize = 32;
/// Plus this much whatever the input: buffers of fixed size (snappy's frame decoder), a
/// parser's tables, one compiled regex (a relabel rule's, about 320 KiB; a file compiles each
/// distinct regex once, so a hand-written file of many distinct regexes is the one input here
/// whose cost is per rule rather than per byte).
const SLACK: usize = 512 << 10;

/// Peak heap growth while `f` runs.
fn peak_during(f: impl FnOnce()) -> usize {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    f();
    PEAK.load(Ordering::Relaxed).saturating_sub(base)
}

/// A deterministic byte source (no rand crate in the tests).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    /// `valid` with a few bytes overwritten, some with 0xff (huge varints and lengths).
    fn damage(&mut self, valid: &[u8]) -> Vec<u8> {
        let mut out = valid.to_vec();
        if out.is_empty() {
            return out;
        }
        for _ in 0..1 + self.next() % 4 {
            let i = self.next() as usize % out.len();
            out[i] = if self.next().is_multiple_of(2) {
                0xff
            } else {
                self.next() as u8
            };
        }
        if self.next().is_multiple_of(4) {
            let cut = self.next() as usize % out.len();
            out.truncate(cut);
        }
        out
    }
}

/// Runs `decode` over every input and checks the bound; returns (inputs, worst ratio).
struct Report {
    lines: Vec<String>,
    failures: Vec<String>,
    inputs: usize,
}

impl Report {
    fn check(&mut self, name: &str, inputs: &[Vec<u8>], decode: impl Fn(&[u8])) {
        self.check_with(name, EXPANSION, inputs, decode)
    }

    /// [`Report::check`] with a decoder's own expansion factor.
    fn check_with(
        &mut self,
        name: &str,
        expansion: usize,
        inputs: &[Vec<u8>],
        decode: impl Fn(&[u8]),
    ) {
        let mut worst = (0usize, 0usize);
        for input in inputs {
            let peak = peak_during(|| decode(input));
            let bound = input.len() * expansion + SLACK;
            if peak > bound {
                self.failures.push(format!(
                    "{name}: {} input bytes (starting {:02x?}) allocated {peak} bytes, the bound is {bound}",
                    input.len(),
                    &input[..input.len().min(16)]
                ));
            }
            if peak * worst.1.max(1) > worst.0 * input.len().max(1) {
                worst = (peak, input.len().max(1));
            }
        }
        self.inputs += inputs.len();
        self.lines.push(format!(
            "{name}: {} inputs, worst {} bytes for {} input bytes",
            inputs.len(),
            worst.0,
            worst.1
        ));
    }
}

/// Random bytes, damaged copies of `valid`, and `valid` itself.
fn corpus(rng: &mut Rng, valid: &[Vec<u8>], n: usize) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = valid.to_vec();
    for k in 0..n {
        let len = [0, 1, 7, 64, 512, 4096][k % 6];
        out.push(rng.bytes(len));
        for v in valid {
            out.push(rng.damage(v));
        }
    }
    out
}

fn valid_write_request() -> proto::remote_write::WriteRequest<'static> {
    use proto::remote_write::{Label, Sample, TimeSeries, WriteRequest};
    WriteRequest {
        timeseries: (0..20)
            .map(|i| TimeSeries {
                labels: vec![
                    Label {
                        name: "__name__",
                        value: "http_requests_total",
                    },
                    Label {
                        name: "instance",
                        value: ["a:9090", "b:9090", "c:9090", "d:9090"][i % 4],
                    },
                ],
                samples: (0..5)
                    .map(|j| Sample {
                        value: (i * j) as f64,
                        timestamp: 1_700_000_000_000 + j as i64 * 15_000,
                    })
                    .collect(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// Native histograms of each kind (integer, float, custom buckets) on a few series.
fn valid_histogram_request() -> proto::remote_write::WriteRequest<'static> {
    use proto::remote_write::{
        BucketSpan, Histogram, HistogramCount, Label, ResetHint, TimeSeries, WriteRequest,
    };
    let span = |offset, length| BucketSpan { offset, length };
    WriteRequest {
        timeseries: (0..6)
            .map(|i| TimeSeries {
                labels: vec![
                    Label {
                        name: "__name__",
                        value: "request_duration_seconds",
                    },
                    Label {
                        name: "instance",
                        value: ["a:9090", "b:9090", "c:9090"][i % 3],
                    },
                ],
                histograms: (0..3)
                    .map(|j| {
                        let t = 1_700_000_000_000 + j as i64 * 15_000;
                        match (i + j) % 3 {
                            0 => Histogram {
                                count: HistogramCount::Int(40 + j as u64),
                                sum: 12.5,
                                schema: 3,
                                zero_threshold: 1e-128,
                                zero_count: HistogramCount::Int(1),
                                negative_spans: vec![span(-3, 2)],
                                negative_deltas: vec![2, -1],
                                positive_spans: vec![span(0, 4), span(2, 3)],
                                positive_deltas: vec![1, 3, -2, 0, 5, -4, 1],
                                reset_hint: ResetHint::No,
                                timestamp: t,
                                ..Default::default()
                            },
                            1 => Histogram {
                                count: HistogramCount::Float(17.25),
                                sum: -3.5,
                                schema: -2,
                                zero_count: HistogramCount::Float(0.25),
                                positive_spans: vec![span(1, 3)],
                                positive_counts: vec![4.0, 8.5, 4.5],
                                reset_hint: ResetHint::Gauge,
                                timestamp: t,
                                start_timestamp: t - 60_000,
                                ..Default::default()
                            },
                            _ => Histogram {
                                count: HistogramCount::Int(9),
                                sum: 4.0,
                                schema: Histogram::CUSTOM_BUCKETS_SCHEMA,
                                positive_spans: vec![span(0, 5)],
                                positive_deltas: vec![1, 1, 0, -1, 2],
                                custom_values: vec![0.005, 0.01, 0.1, 1.0, 10.0],
                                timestamp: t,
                                ..Default::default()
                            },
                        }
                    })
                    .collect(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// A uvarint.
fn uvarint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[test]
fn hostile_bytes_buy_no_more_than_their_size() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut r = Report {
        lines: Vec::new(),
        failures: Vec::new(),
        inputs: 0,
    };
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(120usize);

    // Remote write 1.0 and 2.0, and the Thanos WriteRequest receivers forward.
    let req = valid_write_request();
    let v1 = proto::remote_write::encode_v1(&req);
    let v2 = proto::remote_write::encode_v2(&req);
    let thanos = proto::remote_write::encode_thanos_write("team-a", 1, req.timeseries.iter());
    // A repeated field whose length claims 2^62 bytes, and a million empty series in 2 MB.
    let mut liar = vec![0x0a];
    uvarint(1 << 62, &mut liar);
    let empties: Vec<u8> = std::iter::repeat_n([0x0a, 0x00], 1 << 20)
        .flatten()
        .collect();
    // Native histograms: valid ones of each kind in 1.0, 2.0 and Thanos form; a series of 2^17
    // empty histograms (2 bytes each) in each version; histograms whose packed deltas or custom
    // values claim 2^62 bytes; packed deltas and doubles that are really there.
    let hreq = valid_histogram_request();
    let h1 = proto::remote_write::encode_v1(&hreq);
    let h2 = proto::remote_write::encode_v2(&hreq);
    let hthanos = proto::remote_write::encode_thanos_write("team-a", 1, hreq.timeseries.iter());
    // A length-delimited field: its tag's bytes, then the length, then `body`.
    let field = |tag: &[u8], body: &[u8]| {
        let mut out = tag.to_vec();
        uvarint(body.len() as u64, &mut out);
        out.extend_from_slice(body);
        out
    };
    // 1.0: series = field 1, histogram = field 4; 2.0: series = field 5, histogram = field 3.
    let v1_series = |h: &[u8]| field(&[0x0a], &field(&[0x22], h));
    let empty_histograms = |tag: u8| -> Vec<u8> {
        std::iter::repeat_n([tag, 0x00], 1 << 17)
            .flatten()
            .collect()
    };
    // positive_deltas (field 12) and custom_values (field 16) claiming 2^62 bytes.
    let mut lying_deltas = vec![0x62];
    uvarint(1 << 62, &mut lying_deltas);
    let mut lying_doubles = vec![0x82, 0x01];
    uvarint(1 << 62, &mut lying_doubles);
    // 64 Ki one-byte deltas and 8 Ki doubles, packed.
    let mut dense = field(&[0x62], &vec![0x01; 1 << 16]);
    dense.extend(field(&[0x82, 0x01], &vec![0u8; 1 << 16]));
    let rw = corpus(
        &mut rng,
        &[
            v1.clone(),
            v2,
            thanos,
            liar,
            empties,
            h1,
            h2,
            hthanos,
            field(&[0x0a], &empty_histograms(0x22)),
            field(&[0x2a], &empty_histograms(0x1a)),
            v1_series(&lying_deltas),
            v1_series(&lying_doubles),
            v1_series(&dense),
        ],
        cases,
    );
    // The decoded form takes one `TimeSeries` per series, and a series can be 2 bytes of
    // input (a receiver refuses requests over its series limit before decoding them); so can a
    // native histogram, which is larger.
    let per_series = size_of::<proto::remote_write::TimeSeries<'_>>()
        .max(size_of::<proto::remote_write::Histogram>())
        / 2
        + 8;
    r.check_with("remote write 1.0", per_series, &rw, |b| {
        let _ = proto::remote_write::decode_v1(b);
    });
    r.check_with("remote write 2.0", per_series, &rw, |b| {
        let _ = proto::remote_write::decode_v2(b);
    });
    r.check_with("thanos WriteRequest", per_series, &rw, |b| {
        let _ = proto::remote_write::decode_thanos_write(b);
    });

    // Snappy: a remote-write body, and gRPC's framed snappy.
    let block = snap::raw::Encoder::new().compress_vec(&v1).unwrap();
    let zeros = snap::raw::Encoder::new()
        .compress_vec(&vec![0u8; 1 << 20])
        .unwrap();
    let mut declares_60mib = Vec::new();
    uvarint(60 << 20, &mut declares_60mib);
    declares_60mib.extend_from_slice(&[0, 0, 0]);
    let framed = receive::grpc_snappy::compress(&v1).unwrap();
    let snappy = corpus(&mut rng, &[block, zeros, declares_60mib, framed], cases);
    r.check("snappy remote-write body", &snappy, |b| {
        let _ = receive::ingest::decode_snappy_body(b, 64 << 20);
    });
    r.check("gRPC framed snappy", &snappy, |b| {
        let _ = receive::grpc_snappy::decompress(b, 64 << 20);
    });

    // WAL and hint-queue records (one framing), and the records inside.
    use tsdb::wal::{Record, RefSample};
    let mut records = Vec::new();
    let mut series = Vec::new();
    Record::Series {
        series_ref: 7,
        labels: tsdb::Labels::from_pairs([("__name__", "up"), ("job", "node")]),
    }
    .encode(&mut series);
    let mut samples = Vec::new();
    Record::Samples(
        (0..50)
            .map(|i| RefSample {
                series_ref: 7,
                t: 1_700_000_000_000 + i * 15_000,
                v: i as f64,
            })
            .collect(),
    )
    .encode(&mut samples);
    let mut many_samples = vec![samples[0]];
    uvarint(u64::MAX >> 1, &mut many_samples);
    for payload in [&series, &samples] {
        tsdb::record_log::frame(payload, &mut records);
    }
    let wal = corpus(
        &mut rng,
        &[
            series.clone(),
            samples.clone(),
            many_samples,
            records.clone(),
        ],
        cases,
    );
    r.check("WAL record", &wal, |b| {
        let _ = Record::decode(b);
    });
    r.check("WAL segment / hint queue framing", &wal, |b| {
        let _ = tsdb::record_log::read(b, |payload, _| {
            let _ = Record::decode(payload);
            true
        });
    });

    // Chunks.
    let mut xor = tsdb::chunkenc::XorChunk::new();
    for i in 0..120 {
        xor.append(1_700_000_000_000 + i * 15_000, (i * i) as f64);
    }
    let chunks = corpus(&mut rng, &[xor.bytes().to_vec()], cases);
    r.check("XOR chunk", &chunks, |b| {
        let _ = tsdb::chunkenc::XorIterator::new(b).count();
    });

    // An index file.
    let dir = tempfile::tempdir().unwrap();
    let index_path = dir.path().join("index");
    {
        let lsets: Vec<tsdb::Labels> = (0..50)
            .map(|i| {
                tsdb::Labels::from_pairs([
                    ("__name__", "metric"),
                    ("i", &format!("{i:03}")),
                    ("job", "j"),
                ])
            })
            .collect();
        let symbols: std::collections::BTreeSet<String> = lsets
            .iter()
            .flat_map(|l| {
                l.iter()
                    .flat_map(|x| [x.name.to_string(), x.value.to_string()])
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut w = tsdb::index::IndexWriter::create(&index_path, &symbols).unwrap();
        for (k, l) in lsets.iter().enumerate() {
            let meta = tsdb::index::ChunkMeta {
                min_time: 0,
                max_time: 1000,
                chunk_ref: 8 + k as u64 * 100,
            };
            w.add_series(l, &[meta]).unwrap();
        }
        w.finish().unwrap();
    }
    let index = corpus(&mut rng, &[std::fs::read(&index_path).unwrap()], cases / 3);
    r.check("index", &index, |b| {
        if let Ok(reader) = tsdb::index::IndexReader::from_bytes("index", b.to_vec()) {
            let _ = reader.label_values("i");
            let _ = reader.postings("job", "j");
        }
    });

    // Files an operator or a bucket hands in.
    let texts: Vec<Vec<u8>> = [
        r#"[{"hashring": "default", "endpoints": ["r0:10901", "r1:10901", "r2:10901"]}]"#,
        "write:\n  default:\n    request:\n      series_limit: 5000\n    head_series_limit: 1000\n",
        "type: S3\nconfig:\n  bucket: metrics\n  endpoint: 127.0.0.1:9000\n  insecure: true\n",
        "- action: keep\n  source_labels: [cluster]\n  regex: eu-.*\n",
        r#"{"ulid":"01HF6Z4V3Q7Y3D6M3Q9K2C7X1A","minTime":0,"maxTime":7200000,"version":1,"thanos":{"labels":{"replica":"a"},"source":"receive"}}"#,
        // YAML aliases expanding exponentially ("billion laughs").
        "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n",
    ]
    .iter()
    .map(|t| t.as_bytes().to_vec())
    .collect();
    let texts = corpus(&mut rng, &texts, cases / 3);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    r.check("hashrings.json", &texts, |b| {
        let _ = receive::hashring::HashringsConfig::parse(&text(b));
    });
    r.check("limits file", &texts, |b| {
        let _ = receive::limits::LimitsConfig::parse(&text(b));
    });
    r.check("objstore.yml", &texts, |b| {
        let _ = objstore::config::BucketConfig::parse(&text(b));
    });
    r.check("relabel config", &texts, |b| {
        let _ = objstore::relabel::parse_relabel_configs(&text(b), None);
    });
    r.check("meta.json", &texts, |b| {
        let _ = serde_json::from_slice::<tsdb::meta::BlockMeta>(b);
    });

    eprintln!(
        "decoder allocations: {} hostile inputs, bound {EXPANSION} x input + {} KiB",
        r.inputs,
        SLACK >> 10
    );
    for l in &r.lines {
        eprintln!("  {l}");
    }
    assert!(r.failures.is_empty(), "{}", r.failures.join("\n"));
}
