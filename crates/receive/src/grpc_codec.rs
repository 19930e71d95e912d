//! The raw tonic codec of `thanos.WriteableStore/RemoteWrite`, on both sides of a forward.
//!
//! Receivers never build a prost `WriteRequest`: a router sends request bytes it encoded itself
//! (or the client's own Remote Write 1.0 series bytes), and a receiver decodes them without
//! copying label strings. The response, `WriteResponse{}`, has no fields. So the client sends
//! [`Bytes`] and reads `()`, the server reads [`Bytes`] and sends `()`: one codec,
//! [`RawCodec<Send, Receive>`], over a message type that is either raw bytes or empty.

use std::marker::PhantomData;

use bytes::{Buf, BufMut, Bytes};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;

/// A message passed through tonic as it is on the wire.
pub trait RawMessage: Send + 'static {
    fn encode(self, dst: &mut EncodeBuf<'_>);
    fn decode(src: &mut DecodeBuf<'_>) -> Self;
}

/// An encoded protobuf message.
impl RawMessage for Bytes {
    fn encode(self, dst: &mut EncodeBuf<'_>) {
        dst.put_slice(&self);
    }
    fn decode(src: &mut DecodeBuf<'_>) -> Self {
        let n = src.remaining();
        src.copy_to_bytes(n)
    }
}

/// A message without fields (`WriteResponse{}`): nothing is written, anything read is skipped.
impl RawMessage for () {
    fn encode(self, _: &mut EncodeBuf<'_>) {}
    fn decode(src: &mut DecodeBuf<'_>) -> Self {
        let n = src.remaining();
        src.advance(n);
    }
}

/// Sends `S` and receives `R` as raw messages.
pub struct RawCodec<S, R>(PhantomData<fn(S) -> R>);

/// A router's side of a forward: request bytes out, empty response in.
pub type ClientCodec = RawCodec<Bytes, ()>;
/// A receiver's side: request bytes in, empty response out.
pub type ServerCodec = RawCodec<(), Bytes>;

impl<S, R> Default for RawCodec<S, R> {
    fn default() -> Self {
        RawCodec(PhantomData)
    }
}

pub struct RawEncoder<S>(PhantomData<fn(S)>);
pub struct RawDecoder<R>(PhantomData<fn() -> R>);

impl<S: RawMessage> Encoder for RawEncoder<S> {
    type Item = S;
    type Error = Status;
    fn encode(&mut self, item: S, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst);
        Ok(())
    }
}

impl<R: RawMessage> Decoder for RawDecoder<R> {
    type Item = R;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<R>, Status> {
        Ok(Some(R::decode(src)))
    }
}

impl<S: RawMessage, R: RawMessage> Codec for RawCodec<S, R> {
    type Encode = S;
    type Decode = R;
    type Encoder = RawEncoder<S>;
    type Decoder = RawDecoder<R>;
    fn encoder(&mut self) -> RawEncoder<S> {
        RawEncoder(PhantomData)
    }
    fn decoder(&mut self) -> RawDecoder<R> {
        RawDecoder(PhantomData)
    }
}
