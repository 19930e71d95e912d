//! Compiles the vendored .proto files in pure Rust (`protox`, no `protoc`) and generates prost
//! messages plus tonic clients and servers from them.

const PROTOS: &[&str] = &[
    "prompb/types.proto",
    "prompb/remote.proto",
    "prompb/io/prometheus/write/v2/types.proto",
    "store/labelpb/types.proto",
    "store/storepb/types.proto",
    "store/storepb/rpc.proto",
    "info/infopb/rpc.proto",
    "exemplars/exemplarspb/rpc.proto",
    "cairn/status/v1/status.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(PROTOS, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Chunk bytes are shared, not copied: the server hands out the TSDB's chunk buffers and
        // a client's decoded chunks slice the received message.
        .bytes(".thanos.Chunk.data")
        // Prost's codec with exactly sized encode buffers (src/codec.rs).
        .codec_path("crate::codec::SizedCodec")
        .compile_fds(fds)?;
    Ok(())
}
