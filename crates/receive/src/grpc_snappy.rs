//! Snappy message compression for gRPC, the way Thanos receivers compress forwarded writes
//! (`grpc-encoding: snappy`, each message a snappy *framed* stream, the gRPC frame's
//! compressed flag set).
//!
//! tonic only knows gzip, deflate and zstd, so this sits around tonic instead of inside it:
//! - [`SnappyChannel`] wraps a client channel and compresses every outgoing message;
//! - [`SnappyDecompressLayer`] wraps the server and turns compressed incoming messages back
//!   into plain ones before tonic sees them.
//!
//! Both collect the (unary) request body first. On the server that is bounded: the body by the
//! receiver's request byte limit and each decompressed message by its decoded byte limit, so a
//! peer cannot make it hold more than those (a snappy stream expands up to ~20x).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body_util::BodyExt;
use tonic::body::Body;

pub const ENCODING: &str = "snappy";
const GRPC_ENCODING: &str = "grpc-encoding";
const GRPC_ACCEPT_ENCODING: &str = "grpc-accept-encoding";

/// Snappy framed-format compression of one message.
pub fn compress(msg: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(msg.len() / 2 + 64);
    compress_into(msg, &mut out)?;
    Ok(out)
}

/// A request's whole gRPC body, one message already compressed by [`compressed_frame`]: in a
/// request's extensions, [`SnappyChannel`] sends it in place of the body tonic encoded. A
/// message that goes to several peers is compressed once this way.
#[derive(Clone, Debug)]
pub struct Precompressed(pub Bytes);

/// One message as a compressed gRPC frame: the compressed flag, the length, the framed stream.
pub fn compressed_frame(msg: &[u8]) -> std::io::Result<Bytes> {
    // Room for the worst case (incompressible chunks), so the frame is never copied to grow.
    let chunks = msg.len().div_ceil(MAX_BLOCK);
    let mut out = Vec::with_capacity(5 + STREAM_IDENTIFIER.len() + msg.len() + chunks * 8);
    out.extend_from_slice(&[1, 0, 0, 0, 0]);
    compress_into(msg, &mut out)?;
    let len = u32::try_from(out.len() - 5)
        .map_err(|_| std::io::Error::other("gRPC message over 4 GiB"))?;
    out[1..5].copy_from_slice(&len.to_be_bytes());
    Ok(Bytes::from(out))
}

/// Chunks of the framed format hold at most this much uncompressed data.
const MAX_BLOCK: usize = 1 << 16;
/// The stream identifier chunk that opens every framed stream.
const STREAM_IDENTIFIER: &[u8] = b"\xff\x06\x00\x00sNaPpY";

thread_local! {
    /// A block encoder and its output buffer, reused by every message a thread compresses
    /// (`snap::write::FrameEncoder` allocated and zeroed ~150 KiB of buffers per message).
    static ENCODER: std::cell::RefCell<(snap::raw::Encoder, Vec<u8>)> =
        std::cell::RefCell::new((snap::raw::Encoder::new(), Vec::new()));
}

/// The framed format's checksum of a chunk's uncompressed data: CRC-32C, masked.
fn masked_crc(data: &[u8]) -> u32 {
    let c = crc32c::crc32c(data);
    (c.rotate_right(15)).wrapping_add(0xa282_ead8)
}

fn corrupt(detail: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("malformed snappy framed stream: {detail}"),
    )
}

/// [`compress`], appending to `out`: the stream identifier, then a chunk per 64 KiB of the
/// message, compressed unless that saves less than an eighth (as Go's and Rust's snappy
/// writers decide).
fn compress_into(msg: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
    out.extend_from_slice(STREAM_IDENTIFIER);
    ENCODER.with(|cell| {
        let (encoder, buf) = &mut *cell.borrow_mut();
        let need = snap::raw::max_compress_len(MAX_BLOCK);
        if buf.len() < need {
            buf.resize(need, 0);
        }
        for block in msg.chunks(MAX_BLOCK) {
            let n = encoder
                .compress(block, buf)
                .map_err(std::io::Error::other)?;
            let (kind, body) = if n >= block.len() - block.len() / 8 {
                (0x01, block)
            } else {
                (0x00, &buf[..n])
            };
            let len = body.len() + 4;
            out.extend_from_slice(&[kind, len as u8, (len >> 8) as u8, (len >> 16) as u8]);
            out.extend_from_slice(&masked_crc(block).to_le_bytes());
            out.extend_from_slice(body);
        }
        Ok(())
    })
}

/// Inverse of [`compress`], refusing output larger than `max` bytes.
pub fn decompress(data: &[u8], max: usize) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    decompress_into(data, max, &mut out)?;
    Ok(out)
}

/// [`decompress`], appending to `out`. The chunks declare what they hold: the output is
/// reserved once, an oversized message is refused before anything is decompressed, and each
/// block is decompressed straight into its place and checked against its checksum.
fn decompress_into(data: &[u8], max: usize, out: &mut Vec<u8>) -> std::io::Result<()> {
    let declared = framed_len(data).ok_or_else(|| corrupt("chunk headers do not add up"))?;
    if declared > max {
        return Err(too_large(max));
    }
    out.reserve(declared);
    let mut rest = data;
    let mut identified = false;
    while !rest.is_empty() {
        // framed_len walked these headers: they are whole.
        let len = usize::from(rest[1]) | usize::from(rest[2]) << 8 | usize::from(rest[3]) << 16;
        let (kind, body) = (rest[0], &rest[4..4 + len]);
        rest = &rest[4 + len..];
        if kind == 0xff {
            if body != &STREAM_IDENTIFIER[4..] {
                return Err(corrupt("bad stream identifier"));
            }
            identified = true;
            continue;
        }
        if !identified {
            return Err(corrupt("no stream identifier first"));
        }
        if !matches!(kind, 0x00 | 0x01) {
            continue; // padding and skippable chunks
        }
        let (crc, block) = body.split_at(4);
        let at = out.len();
        if kind == 0x00 {
            let n = snap::raw::decompress_len(block).map_err(std::io::Error::other)?;
            if n > MAX_BLOCK {
                return Err(corrupt("a chunk holds more than 64 KiB"));
            }
            out.resize(at + n, 0);
            let got = snap::raw::Decoder::new()
                .decompress(block, &mut out[at..])
                .map_err(std::io::Error::other)?;
            if got != n {
                return Err(corrupt("a block decompresses short of its length"));
            }
        } else {
            if block.len() > MAX_BLOCK {
                return Err(corrupt("a chunk holds more than 64 KiB"));
            }
            out.extend_from_slice(block);
        }
        let stored = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
        if masked_crc(&out[at..]) != stored {
            return Err(corrupt("checksum mismatch"));
        }
    }
    Ok(())
}

fn too_large(max: usize) -> std::io::Error {
    std::io::Error::other(format!("the message decompresses to more than {max} bytes"))
}

/// The uncompressed size a snappy framed stream declares: the sum of its chunks' lengths
/// (compressed chunks declare theirs in the block header). `None` if the chunk headers do not
/// walk to the end of the data.
fn framed_len(data: &[u8]) -> Option<usize> {
    let mut rest = data;
    let mut total = 0usize;
    while !rest.is_empty() {
        let header = rest.get(..4)?;
        let len =
            usize::from(header[1]) | usize::from(header[2]) << 8 | usize::from(header[3]) << 16;
        let body = rest.get(4..4 + len)?;
        match header[0] {
            // Compressed data: a 4-byte checksum, then a snappy block.
            0x00 => total += snap::raw::decompress_len(body.get(4..)?).ok()?,
            // Uncompressed data: a 4-byte checksum, then the bytes.
            0x01 => total += len.checked_sub(4)?,
            // Stream identifier, padding and skippable chunks hold no data.
            0x80..=0xff => {}
            _ => return None,
        }
        rest = &rest[4 + len..];
    }
    Some(total)
}

/// Rewrites every length-prefixed gRPC message of `body`: `f(compressed_flag, message, out)`
/// appends the new message to `out` and returns its flag. The messages are written in place
/// after their headers, with no copy in between.
fn rewrite_frames(
    mut body: Bytes,
    mut f: impl FnMut(u8, &[u8], &mut Vec<u8>) -> std::io::Result<u8>,
) -> std::io::Result<Bytes> {
    let mut out = Vec::with_capacity(body.len() + 16);
    while body.has_remaining() {
        if body.len() < 5 {
            return Err(std::io::Error::other("truncated gRPC frame header"));
        }
        let flag = body.get_u8();
        let len = body.get_u32() as usize;
        if body.len() < len {
            return Err(std::io::Error::other("truncated gRPC message"));
        }
        let header = out.len();
        out.extend_from_slice(&[0; 5]);
        out[header] = f(flag, &body[..len], &mut out)?;
        body.advance(len);
        let written = u32::try_from(out.len() - header - 5)
            .map_err(|_| std::io::Error::other("gRPC message over 4 GiB"))?;
        out[header + 1..header + 5].copy_from_slice(&written.to_be_bytes());
    }
    Ok(Bytes::from(out))
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A client channel that compresses requests with snappy (`compress`; otherwise it passes
/// them on as they are).
#[derive(Clone, Debug)]
pub struct SnappyChannel<S> {
    inner: S,
    compress: bool,
}

impl<S> SnappyChannel<S> {
    pub fn new(inner: S, compress: bool) -> Self {
        SnappyChannel { inner, compress }
    }
}

impl<S> tower_service::Service<http::Request<Body>> for SnappyChannel<S>
where
    S: tower_service::Service<http::Request<Body>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        // The ready service is the one polled; keep it and leave a clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if !self.compress {
            return Box::pin(async move { inner.call(req).await.map_err(Into::into) });
        }
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            let bytes = match parts.extensions.remove::<Precompressed>() {
                Some(Precompressed(bytes)) => bytes,
                None => {
                    let bytes = body
                        .collect()
                        .await
                        .map_err(Into::<BoxError>::into)?
                        .to_bytes();
                    rewrite_frames(bytes, |flag, msg, out| {
                        if flag != 0 {
                            out.extend_from_slice(msg);
                            return Ok(flag);
                        }
                        compress_into(msg, out)?;
                        Ok(1)
                    })?
                }
            };
            parts
                .headers
                .insert(GRPC_ENCODING, http::HeaderValue::from_static(ENCODING));
            let req = http::Request::from_parts(parts, Body::new(http_body_util::Full::new(bytes)));
            inner.call(req).await.map_err(Into::into)
        })
    }
}

/// Server layer: accepts `grpc-encoding: snappy` requests of at most `max_body` bytes whose
/// messages decompress to at most `max_message` bytes each.
#[derive(Clone, Copy, Debug)]
pub struct SnappyDecompressLayer {
    pub max_body: usize,
    pub max_message: usize,
}

impl<S> tower_layer::Layer<S> for SnappyDecompressLayer {
    type Service = SnappyDecompress<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SnappyDecompress {
            inner,
            limits: *self,
        }
    }
}

#[derive(Clone, Debug)]
pub struct SnappyDecompress<S> {
    inner: S,
    limits: SnappyDecompressLayer,
}

impl<S, ResBody> tower_service::Service<http::Request<Body>> for SnappyDecompress<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let snappy = req
            .headers()
            .get(GRPC_ENCODING)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(ENCODING.as_bytes()));
        if !snappy {
            return Box::pin(async move { inner.call(req).await.map_err(Into::into) });
        }
        let limits = self.limits;
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            let bytes = match http_body_util::Limited::new(body, limits.max_body)
                .collect()
                .await
            {
                Ok(collected) => collected.to_bytes(),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    return Ok(grpc_error(
                        8,
                        &format!("request body over {} bytes", limits.max_body),
                    ))
                }
                Err(e) => return Err(e),
            };
            let rewritten = rewrite_frames(bytes, |flag, msg, out| {
                if flag == 0 {
                    out.extend_from_slice(msg);
                } else {
                    decompress_into(msg, limits.max_message, out)?;
                }
                Ok(0)
            });
            let bytes = match rewritten {
                Ok(b) => b,
                Err(e) => return Ok(grpc_error(3, &format!("bad snappy message: {e}"))),
            };
            parts.headers.remove(GRPC_ENCODING);
            parts.headers.remove(GRPC_ACCEPT_ENCODING);
            let req = http::Request::from_parts(parts, Body::new(http_body_util::Full::new(bytes)));
            inner.call(req).await.map_err(Into::into)
        })
    }
}

/// A trailers-only gRPC error response.
fn grpc_error<B: Default>(code: i32, message: &str) -> http::Response<B> {
    let mut resp = http::Response::new(B::default());
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    h.insert("grpc-status", http::HeaderValue::from(code));
    if let Ok(v) = http::HeaderValue::from_str(&message.replace(|c: char| !c.is_ascii(), "?")) {
        h.insert("grpc-message", v);
    }
    resp
}

#[cfg(test)]
mod tests {

    #[test]
    fn decompression_stops_at_the_bound() {
        // 16 MiB of zeros compress to well under 1 MiB: a small message, a large answer.
        let bomb = compress(&vec![0u8; 16 << 20]).unwrap();
        assert!(bomb.len() < 1 << 20, "{}", bomb.len());
        let e = decompress(&bomb, 1 << 20).unwrap_err();
        assert!(e.to_string().contains("more than 1048576 bytes"), "{e}");
        assert_eq!(decompress(&bomb, 16 << 20).unwrap().len(), 16 << 20);
    }

    /// Our framing is the framing format `snap` (and Go's snappy, which Thanos uses) read and
    /// write: each side reads the other's streams, and a flipped bit fails the checksum.
    #[test]
    fn streams_interoperate_with_the_snap_crate() {
        use std::io::{Read, Write};
        for n in [0usize, 1, 1000, 65_536, 65_537, 300_000] {
            // Half compressible, half not: both chunk kinds.
            let data: Vec<u8> = (0..n)
                .map(|i| {
                    if i % 2 == 0 {
                        (i / 1000) as u8
                    } else {
                        (i.wrapping_mul(2_654_435_761) >> 13) as u8
                    }
                })
                .collect();
            let ours = compress(&data).unwrap();
            let mut theirs_read = Vec::new();
            snap::read::FrameDecoder::new(&ours[..])
                .read_to_end(&mut theirs_read)
                .unwrap();
            assert_eq!(theirs_read, data, "snap reads ours ({n} bytes)");
            let mut theirs = Vec::new();
            let mut w = snap::write::FrameEncoder::new(&mut theirs);
            w.write_all(&data).unwrap();
            w.flush().unwrap();
            drop(w);
            assert_eq!(
                decompress(&theirs, n).unwrap(),
                data,
                "we read snap's ({n} bytes)"
            );
            if n > 0 {
                let mut bad = ours.clone();
                let last = bad.len() - 1;
                bad[last] ^= 1;
                assert!(decompress(&bad, n).is_err());
            }
        }
        let random = noise(5000);
        let packed = compress(&random).unwrap();
        assert_eq!(
            packed[STREAM_IDENTIFIER.len()],
            0x01,
            "incompressible data goes uncompressed"
        );
        let e = decompress(&packed[STREAM_IDENTIFIER.len()..], 1 << 20).unwrap_err();
        assert!(e.to_string().contains("no stream identifier"), "{e}");
    }

    #[test]
    fn the_declared_length_is_what_comes_out() {
        for n in [0usize, 1, 1000, 70_000, 300_000] {
            let data: Vec<u8> = (0..n).map(|i| (i % 251) as u8 ^ (i / 7) as u8).collect();
            let packed = compress(&data).unwrap();
            assert_eq!(framed_len(&packed), Some(n));
            assert_eq!(decompress(&packed, n).unwrap(), data);
        }
        assert_eq!(framed_len(&[0x00, 9, 0, 0]), None);
    }

    proptest::proptest! {
        /// Whatever a peer sends as a compressed message: an error or a bounded message, and a
        /// Thanos WriteRequest decoder that never panics on what comes out.
        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            if let Ok(out) = decompress(&data, 1 << 16) {
                proptest::prop_assert!(out.len() <= 1 << 16);
                let _ = proto::remote_write::decode_thanos_write(&out);
            }
            let _ = proto::remote_write::decode_thanos_write(&data);
        }
    }

    use super::*;
    use bytes::{BufMut, BytesMut};

    /// Pseudo-random (incompressible) bytes.
    fn noise(n: usize) -> Vec<u8> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect()
    }

    /// One uncompressed gRPC frame of `msg`.
    fn plain_frame(msg: &[u8]) -> Bytes {
        let mut frame = BytesMut::new();
        frame.put_u8(0);
        frame.put_u32(msg.len() as u32);
        frame.put_slice(msg);
        frame.freeze()
    }

    #[test]
    fn frames_round_trip_through_snappy() {
        let big = vec![7u8; 100_000];
        let msgs: [&[u8]; 3] = [b"", b"hello hello hello hello", &big];
        let mut body = BytesMut::new();
        for m in msgs {
            body.put_u8(0);
            body.put_u32(m.len() as u32);
            body.put_slice(m);
        }
        let plain = body.freeze();
        let packed = rewrite_frames(plain.clone(), |_, m, out| {
            compress_into(m, out)?;
            Ok(1)
        })
        .unwrap();
        assert!(packed.len() < plain.len());
        let back = rewrite_frames(packed.clone(), |_, m, out| {
            decompress_into(m, usize::MAX, out)?;
            Ok(0)
        })
        .unwrap();
        assert_eq!(back, plain);
        // Message by message, the same as the stand-alone functions.
        let standalone = rewrite_frames(packed, |_, m, out| {
            out.extend_from_slice(&decompress(m, usize::MAX)?);
            Ok(0)
        })
        .unwrap();
        assert_eq!(standalone, plain);
    }

    #[test]
    fn a_precompressed_frame_is_what_the_channel_would_send() {
        // Incompressible bytes too: the frame is sized for them up front.
        let noise = noise(200_000);
        let text = b"sample sample sample ".repeat(10_000);
        let msgs: [&[u8]; 4] = [b"", b"abc", &text, &noise];
        for m in msgs {
            let channel = rewrite_frames(plain_frame(m), |_, m, out| {
                compress_into(m, out)?;
                Ok(1)
            })
            .unwrap();
            assert_eq!(compressed_frame(m).unwrap(), channel);
        }
    }

    /// A request as a channel passed it on: its `grpc-encoding` and its body.
    type Sent = (Option<String>, Bytes);

    /// The last request a channel passed on.
    #[derive(Clone, Default)]
    struct Capture(std::sync::Arc<std::sync::Mutex<Option<Sent>>>);

    impl tower_service::Service<http::Request<Body>> for Capture {
        type Response = http::Response<Body>;
        type Error = std::convert::Infallible;
        type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: http::Request<Body>) -> Self::Future {
            let seen = self.0.clone();
            Box::pin(async move {
                let (parts, body) = req.into_parts();
                let encoding = parts
                    .headers
                    .get(GRPC_ENCODING)
                    .map(|v| v.to_str().unwrap().to_string());
                let body = body.collect().await.unwrap().to_bytes();
                *seen.lock().unwrap() = Some((encoding, body));
                Ok(http::Response::new(Body::empty()))
            })
        }
    }

    #[tokio::test]
    async fn the_channel_compresses_unless_told_not_to() {
        let msg = b"forwarded forwarded forwarded forwarded".repeat(100);
        let plain = plain_frame(&msg);
        let send = |compress: bool, extension: Option<Precompressed>| {
            let plain = plain.clone();
            async move {
                let capture = Capture::default();
                let mut channel = SnappyChannel::new(capture.clone(), compress);
                let mut req = http::Request::new(Body::new(http_body_util::Full::new(plain)));
                if let Some(e) = extension {
                    req.extensions_mut().insert(e);
                }
                tower_service::Service::call(&mut channel, req)
                    .await
                    .unwrap();
                let seen = capture.0.lock().unwrap().take();
                seen.unwrap()
            }
        };
        let frame = compressed_frame(&msg).unwrap();
        assert_eq!(
            send(true, None).await,
            (Some("snappy".to_string()), frame.clone())
        );
        // A precompressed frame replaces the body tonic encoded.
        let other = compressed_frame(b"another message").unwrap();
        assert_eq!(
            send(true, Some(Precompressed(other.clone()))).await,
            (Some("snappy".to_string()), other)
        );
        // `--receive.grpc-compression=none`: the request goes as it is.
        assert_eq!(send(false, None).await, (None, plain.clone()));
    }

    #[test]
    fn truncated_frames_are_errors() {
        let copy = |f: u8, m: &[u8], out: &mut Vec<u8>| {
            out.extend_from_slice(m);
            Ok(f)
        };
        assert!(rewrite_frames(Bytes::from_static(&[0, 0, 0]), copy).is_err());
        assert!(rewrite_frames(Bytes::from_static(&[0, 0, 0, 0, 9, 1]), copy).is_err());
    }

    #[test]
    fn framed_format_has_the_stream_identifier() {
        // A snappy framed stream starts with the stream identifier chunk "sNaPpY".
        let c = compress(b"abc").unwrap();
        assert_eq!(&c[..10], b"\xff\x06\x00\x00sNaPpY");
    }
}
