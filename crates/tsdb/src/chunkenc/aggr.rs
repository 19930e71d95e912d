//! Thanos' aggregate chunk (`AggrChunk`, chunk encoding byte [`ENCODING_AGGR`] = `0xFF`): the
//! chunk a downsampled block stores, holding up to five sub-chunks over the same windows, one
//! per [`AggrType`] in this fixed order: count, sum, min, max, counter.
//!
//! ```text
//! ┌───────────────┬───────────────┬───────────────┬───────────────┬───────────────┐
//! │ count entry   │ sum entry     │ min entry     │ max entry     │ counter entry │
//! └───────────────┴───────────────┴───────────────┴───────────────┴───────────────┘
//! present entry:  uvarint L │ encoding byte │ L bytes of sub-chunk data
//! absent entry:   uvarint 0
//! ```
//!
//! `L` counts the sub-chunk's data only, not its encoding byte (Thanos' `EncodeAggrChunk` in
//! `pkg/compact/downsample/aggr.go`). Float aggregates are XOR sub-chunks (encoding 1); Thanos'
//! native-histogram aggregates use float-histogram sub-chunks (encoding 3) for sum and counter
//! and leave min and max absent, which this module can frame and unframe but not decode.
//!
//! In a chunk segment the whole payload is framed like any chunk: length, `0xFF`, payload, CRC.
//! A chunk's sample count is that of its count sub-chunk (Thanos' `AggrChunk.NumSamples`).
//!
//! One deliberate difference from Thanos' reader (`AggrChunk.Get`): Go demands at least one
//! byte after every length prefix, including a zero one, so a chunk whose last entry is absent
//! fails there with "invalid size" when the counter is asked for. Here a zero length is simply
//! an absent aggregate wherever it is; everything Go accepts is read the same way.

use super::varint;
use super::XorIterator;
use super::ENCODING_XOR;
use crate::{Error, Result};

/// The aggregates of an [`AggrChunk`], numbered as Thanos' `AggrType` (the entry order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AggrType {
    /// Raw samples in the window.
    Count = 0,
    /// Sum of the raw values in the window.
    Sum = 1,
    /// Smallest raw value in the window.
    Min = 2,
    /// Largest raw value in the window.
    Max = 3,
    /// Reset-corrected running counter, framed by the first and last raw values.
    Counter = 4,
}

impl AggrType {
    /// Every aggregate, in entry order.
    pub const ALL: [AggrType; 5] = [
        AggrType::Count,
        AggrType::Sum,
        AggrType::Min,
        AggrType::Max,
        AggrType::Counter,
    ];

    /// Thanos' name for the aggregate (`AggrType.String`).
    pub fn name(self) -> &'static str {
        match self {
            AggrType::Count => "count",
            AggrType::Sum => "sum",
            AggrType::Min => "min",
            AggrType::Max => "max",
            AggrType::Counter => "counter",
        }
    }
}

impl std::fmt::Display for AggrType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One aggregate's sub-chunk: its own encoding byte and chunk data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubChunk<'a> {
    pub encoding: u8,
    pub data: &'a [u8],
}

impl<'a> SubChunk<'a> {
    /// An XOR sub-chunk over `data` (e.g. [`super::XorChunk::bytes`]).
    pub fn xor(data: &'a [u8]) -> Self {
        SubChunk {
            encoding: ENCODING_XOR,
            data,
        }
    }

    /// The samples of an XOR sub-chunk; other encodings are an error.
    pub fn xor_samples(&self) -> Result<XorIterator<'a>> {
        if self.encoding != ENCODING_XOR {
            return Err(Error::Invalid(format!(
                "aggr chunk: sub-chunk of encoding {} is not XOR",
                self.encoding
            )));
        }
        Ok(XorIterator::new(self.data))
    }
}

/// Encodes an aggregate chunk's payload from its five optional sub-chunks, indexed by
/// [`AggrType`] (Thanos' `EncodeAggrChunk`).
pub fn encode_aggr_chunk(subs: &[Option<SubChunk<'_>>; 5]) -> Vec<u8> {
    let len: usize = subs
        .iter()
        .map(|s| s.map_or(1, |s| varint::MAX_LEN_64 + 1 + s.data.len()))
        .sum();
    let mut out = Vec::with_capacity(len);
    for sub in subs {
        match sub {
            None => varint::put_uvarint(&mut out, 0),
            Some(s) => {
                varint::put_uvarint(&mut out, s.data.len() as u64);
                out.push(s.encoding);
                out.extend_from_slice(s.data);
            }
        }
    }
    out
}

/// A stored aggregate chunk's payload (the bytes after the `0xFF` encoding byte), read lazily.
#[derive(Clone, Copy, Debug)]
pub struct AggrChunk<'a> {
    data: &'a [u8],
}

impl<'a> AggrChunk<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        AggrChunk { data }
    }

    pub fn bytes(&self) -> &'a [u8] {
        self.data
    }

    /// The sub-chunk of aggregate `at`, `None` if it is absent; an error if the entries up to
    /// it are truncated or their lengths run past the data.
    pub fn get(&self, at: AggrType) -> Result<Option<SubChunk<'a>>> {
        let invalid = || Error::Invalid(format!("aggr chunk: invalid size reading {at}"));
        let mut rest = self.data;
        for i in AggrType::ALL {
            let (len, n) = varint::decode_uvarint(rest).ok_or_else(invalid)?;
            rest = &rest[n..];
            let sub = if len == 0 {
                None
            } else {
                // The encoding byte, then `len` bytes of data.
                let end = usize::try_from(len)
                    .ok()
                    .and_then(|l| l.checked_add(1))
                    .filter(|&end| end <= rest.len())
                    .ok_or_else(invalid)?;
                let (entry, after) = rest.split_at(end);
                rest = after;
                Some(SubChunk {
                    encoding: entry[0],
                    data: &entry[1..],
                })
            };
            if i == at {
                return Ok(sub);
            }
        }
        unreachable!("every AggrType is in AggrType::ALL")
    }

    /// The samples of XOR aggregate `at`, `None` if it is absent.
    pub fn samples(&self, at: AggrType) -> Result<Option<XorIterator<'a>>> {
        self.get(at)?.map(|s| s.xor_samples()).transpose()
    }

    /// The sample count of the count sub-chunk, 0 if it is absent or unreadable (Thanos'
    /// `AggrChunk.NumSamples`, which block stats count).
    pub fn num_samples(&self) -> usize {
        match self.get(AggrType::Count) {
            Ok(Some(sub)) if sub.data.len() >= 2 => {
                usize::from(u16::from_be_bytes([sub.data[0], sub.data[1]]))
            }
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunkenc::XorChunk;
    use proptest::prelude::*;

    #[test]
    fn hand_computed_bytes() {
        let data = [0xAAu8; 200];
        let subs = [
            Some(SubChunk {
                encoding: 1,
                data: &[0, 1, 2],
            }),
            None,
            None,
            Some(SubChunk {
                encoding: 1,
                data: &data,
            }),
            Some(SubChunk {
                encoding: 3,
                data: &[9],
            }),
        ];
        let got = encode_aggr_chunk(&subs);
        let mut want = vec![0x03, 0x01, 0, 1, 2, 0x00, 0x00];
        // 200 = 0b1_1001000: low seven bits with the continuation bit, then 1.
        want.extend_from_slice(&[0xC8, 0x01, 0x01]);
        want.extend_from_slice(&data);
        want.extend_from_slice(&[0x01, 0x03, 0x09]);
        assert_eq!(got, want);

        let c = AggrChunk::new(&got);
        assert_eq!(c.get(AggrType::Count).unwrap(), subs[0]);
        assert_eq!(c.get(AggrType::Sum).unwrap(), None);
        assert_eq!(c.get(AggrType::Min).unwrap(), None);
        assert_eq!(c.get(AggrType::Max).unwrap(), subs[3]);
        assert_eq!(c.get(AggrType::Counter).unwrap(), subs[4]);
        // The count sub-chunk's first two bytes are its XOR sample count: 0x0001.
        assert_eq!(c.num_samples(), 1);
        assert!(
            c.samples(AggrType::Counter).is_err(),
            "encoding 3 is not XOR"
        );
    }

    #[test]
    fn xor_sub_chunks_by_hand() {
        // One sample (t=1, v=0.0): count 0x0001, zig-zag varint 1 -> 0x02, 64 zero bits, and
        // the empty byte Prometheus' bit stream leaves after whole bytes: 12 bytes.
        let mut x = XorChunk::new();
        x.append(1, 0.0);
        let xor = [0x00, 0x01, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(x.bytes(), xor);
        let subs = [
            Some(SubChunk::xor(x.bytes())),
            None,
            None,
            None,
            Some(SubChunk::xor(x.bytes())),
        ];
        let got = encode_aggr_chunk(&subs);
        let mut want = vec![12, 1];
        want.extend_from_slice(&xor);
        want.extend_from_slice(&[0, 0, 0, 12, 1]);
        want.extend_from_slice(&xor);
        assert_eq!(got, want);
        let c = AggrChunk::new(&got);
        let samples: Vec<_> = c.samples(AggrType::Counter).unwrap().unwrap().collect();
        assert_eq!(samples, vec![(1, 0.0)]);
        assert!(c.samples(AggrType::Sum).unwrap().is_none());
    }

    #[test]
    fn truncated_and_overlong_entries_are_invalid() {
        // Nothing at all: even the count's length prefix is missing.
        assert!(AggrChunk::new(&[]).get(AggrType::Count).is_err());
        // A length of 5 with only the encoding byte and 2 data bytes behind it.
        let short = [5, 1, 0, 0];
        assert!(AggrChunk::new(&short).get(AggrType::Count).is_err());
        assert_eq!(AggrChunk::new(&short).num_samples(), 0);
        // Count present and complete, but the chunk ends before the sum entry.
        let ends = [2, 1, 0, 0];
        assert!(AggrChunk::new(&ends)
            .get(AggrType::Count)
            .unwrap()
            .is_some());
        assert!(AggrChunk::new(&ends).get(AggrType::Sum).is_err());
        // A length prefix that is not a valid varint.
        let bad = [0xff; 11];
        assert!(AggrChunk::new(&bad).get(AggrType::Count).is_err());
    }

    #[test]
    fn trailing_absent_counter_reads_as_absent() {
        // Go's Get fails here ("invalid size"); see the module docs.
        let got = encode_aggr_chunk(&[Some(SubChunk::xor(&[0, 0])), None, None, None, None]);
        assert_eq!(got, vec![2, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(AggrChunk::new(&got).get(AggrType::Counter).unwrap(), None);
    }

    #[test]
    fn chunk_data_counts_windows_not_counter_samples() {
        let (mut count, mut counter) = (XorChunk::new(), XorChunk::new());
        for t in [99, 199, 250] {
            count.append(t, 1.0);
        }
        for (t, v) in [(20, 1.0), (99, 4.0), (199, 13.0), (250, 14.0), (250, 1.0)] {
            counter.append(t, v);
        }
        let subs = [
            Some(SubChunk::xor(count.bytes())),
            None,
            None,
            None,
            Some(SubChunk::xor(counter.bytes())),
        ];
        let chunk = crate::querier::ChunkData {
            min_time: 99,
            max_time: 250,
            encoding: crate::chunkenc::ENCODING_AGGR,
            data: encode_aggr_chunk(&subs).into(),
        };
        assert_eq!(chunk.num_samples(), 3);
        // The duplicate final timestamp of a counter sub-chunk survives the XOR encoding.
        let c = AggrChunk::new(&chunk.data);
        let got: Vec<_> = c.samples(AggrType::Counter).unwrap().unwrap().collect();
        assert_eq!(got[3..], [(250, 14.0), (250, 1.0)]);
    }

    fn sub_chunk() -> impl Strategy<Value = Option<(u8, Vec<u8>)>> {
        // Non-empty data: an empty present sub-chunk would encode as a zero length, i.e.
        // absent, exactly as in Thanos.
        proptest::option::of((any::<u8>(), proptest::collection::vec(any::<u8>(), 1..300)))
    }

    fn samples() -> impl Strategy<Value = Vec<(i64, f64)>> {
        proptest::collection::vec((0i64..1_000_000, any::<f64>()), 0..50).prop_map(|mut v| {
            v.sort_by_key(|s| s.0);
            v
        })
    }

    proptest! {
        #[test]
        fn round_trips_any_sub_chunks(
            subs in proptest::array::uniform5(sub_chunk()),
        ) {
            let refs: [Option<SubChunk<'_>>; 5] = std::array::from_fn(|i| {
                subs[i].as_ref().map(|(e, d)| SubChunk { encoding: *e, data: d })
            });
            let bytes = encode_aggr_chunk(&refs);
            let c = AggrChunk::new(&bytes);
            for at in AggrType::ALL {
                prop_assert_eq!(c.get(at).unwrap(), refs[at as usize]);
            }
        }

        #[test]
        fn round_trips_xor_samples(per in proptest::array::uniform5(samples())) {
            let chunks: Vec<XorChunk> = per
                .iter()
                .map(|s| {
                    let mut c = XorChunk::new();
                    for &(t, v) in s {
                        c.append(t, v);
                    }
                    c
                })
                .collect();
            let refs: [Option<SubChunk<'_>>; 5] =
                std::array::from_fn(|i| Some(SubChunk::xor(chunks[i].bytes())));
            let bytes = encode_aggr_chunk(&refs);
            let c = AggrChunk::new(&bytes);
            prop_assert_eq!(c.num_samples(), per[0].len());
            for at in AggrType::ALL {
                let got: Vec<(i64, u64)> = c
                    .samples(at)
                    .unwrap()
                    .unwrap()
                    .map(|(t, v)| (t, v.to_bits()))
                    .collect();
                let want: Vec<(i64, u64)> =
                    per[at as usize].iter().map(|&(t, v)| (t, v.to_bits())).collect();
                prop_assert_eq!(got, want);
            }
        }

        #[test]
        fn never_panics_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let c = AggrChunk::new(&data);
            for at in AggrType::ALL {
                let _ = c.get(at);
            }
            let _ = c.num_samples();
        }
    }
}
