//! The gRPC codec of the generated clients and servers: prost's, except that a message's
//! buffer is reserved at its exact encoded length before it is written.
//!
//! tonic's encode buffer starts at 8 KiB and prost writes into it field by field, so a large
//! message (a `Series` batch of 64 series is some 100-200 KiB) was grown, and copied, several
//! times while being written: on a receiver serving a wide query that copying was about 5% of
//! its CPU. The length costs one more walk of the message's fields, not of its bytes. Every
//! gRPC test of the workspace goes through it.

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic::Status;
use tonic_prost::ProstCodec;

/// [`ProstCodec`] with exactly sized encode buffers.
pub struct SizedCodec<T, U> {
    prost: ProstCodec<T, U>,
}

impl<T, U> Default for SizedCodec<T, U> {
    fn default() -> Self {
        SizedCodec {
            prost: ProstCodec::default(),
        }
    }
}

impl<T, U> Codec for SizedCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = SizedEncoder<T>;
    type Decoder = <ProstCodec<T, U> as Codec>::Decoder;

    fn encoder(&mut self) -> Self::Encoder {
        SizedEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        self.prost.decoder()
    }
}

/// Writes a message into a buffer reserved at its encoded length.
pub struct SizedEncoder<T>(PhantomData<T>);

impl<T: Message> Encoder for SizedEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.reserve(item.encoded_len());
        item.encode(buf)
            .map_err(|e| Status::internal(format!("encoding a message: {e}")))
    }
}
