# The one `cairn` binary on a slim Debian runtime, running as an unprivileged user.
#   docker build -t cairn .
#   docker run --rm -p 9090:9090 -p 19291:19291 cairn up --data-dir=/data \
#     --query.http-address=0.0.0.0:9090 --remote-write.address=0.0.0.0:19291

# Builder: the workspace's rust-version (Cargo.toml). The proto crate compiles its .proto files
# with protox (pure Rust), so no protoc is needed.
FROM rust:1.88-bookworm AS builder
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p cairn \
    && cp target/release/cairn /usr/local/bin/cairn

# Runtime: CA certificates for S3 over HTTPS (TLS is rustls, which reads the system roots);
# nothing else is needed.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 cairn \
    && useradd --system --uid 10001 --gid cairn --home-dir /data --shell /usr/sbin/nologin cairn \
    && mkdir -p /data \
    && chown cairn:cairn /data
COPY --from=builder /usr/local/bin/cairn /usr/local/bin/cairn
# Numeric, so that Kubernetes' runAsNonRoot can check it without resolving the name.
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
# gRPC (StoreAPI, replication), HTTP (metrics, health), remote write, query.
EXPOSE 10901 10902 19291 9090
ENTRYPOINT ["/usr/local/bin/cairn"]
CMD ["--help"]
