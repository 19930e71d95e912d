//! gRPC TLS flags, named as Thanos names them.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

/// A gRPC server's TLS (`receive`, `store`).
#[derive(Args, Debug, Clone, Default)]
pub struct GrpcServerTls {
    /// Certificate (PEM) for TLS on the gRPC listener; without it the listener is plaintext.
    /// Re-read when the file changes.
    #[arg(long = "grpc-server-tls-cert", requires = "grpc_server_tls_key")]
    pub grpc_server_tls_cert: Option<PathBuf>,
    /// Private key (PEM) for TLS on the gRPC listener.
    #[arg(long = "grpc-server-tls-key", requires = "grpc_server_tls_cert")]
    pub grpc_server_tls_key: Option<PathBuf>,
    /// CA bundle (PEM): when set, gRPC clients must present a certificate it signed (mutual
    /// TLS); a client without one is refused at the handshake.
    #[arg(long = "grpc-server-tls-client-ca", requires = "grpc_server_tls_cert")]
    pub grpc_server_tls_client_ca: Option<PathBuf>,
    /// The oldest TLS version the gRPC listener accepts: 1.2 or 1.3 (Thanos' default).
    #[arg(long = "grpc-server-tls-min-version", default_value = "1.3")]
    pub grpc_server_tls_min_version: tls::MinVersion,
}

impl GrpcServerTls {
    pub fn files(&self) -> Option<tls::ServerFiles> {
        Some(tls::ServerFiles {
            cert: self.grpc_server_tls_cert.clone()?,
            key: self.grpc_server_tls_key.clone()?,
            client_ca: self.grpc_server_tls_client_ca.clone(),
            min_version: self.grpc_server_tls_min_version,
        })
    }
}

/// TLS on an HTTP port (`receive`'s metrics and status port, `query`'s API and UI).
#[derive(Args, Debug, Clone, Default)]
pub struct HttpServerTls {
    /// Certificate (PEM) for TLS on the HTTP port; re-read when the file changes.
    #[arg(long = "http.server-tls-cert", requires = "http_tls_key")]
    pub http_tls_cert: Option<PathBuf>,
    /// Private key (PEM) for TLS on the HTTP port.
    #[arg(long = "http.server-tls-key", requires = "http_tls_cert")]
    pub http_tls_key: Option<PathBuf>,
    /// CA bundle (PEM): when set, HTTP clients must present a certificate it signed (mTLS).
    #[arg(long = "http.server-tls-client-ca", requires = "http_tls_cert")]
    pub http_tls_client_ca: Option<PathBuf>,
}

impl HttpServerTls {
    pub fn files(&self) -> Option<tls::ServerFiles> {
        Some(tls::ServerFiles {
            cert: self.http_tls_cert.clone()?,
            key: self.http_tls_key.clone()?,
            client_ca: self.http_tls_client_ca.clone(),
            ..Default::default()
        })
    }
}

/// `cairn query`'s TLS to its endpoints.
#[derive(Args, Debug, Clone, Default)]
pub struct GrpcClientTls {
    /// Use TLS when talking to the StoreAPI endpoints.
    #[arg(long = "grpc-client-tls-secure")]
    pub grpc_client_tls_secure: bool,
    /// Do not verify the endpoints' certificates (TLS still encrypts).
    #[arg(long = "grpc-client-tls-skip-verify")]
    pub grpc_client_tls_skip_verify: bool,
    /// Client certificate (PEM) presented to endpoints that ask for one (mutual TLS).
    #[arg(long = "grpc-client-tls-cert", requires = "grpc_client_tls_key")]
    pub grpc_client_tls_cert: Option<PathBuf>,
    /// Key (PEM) of the client certificate.
    #[arg(long = "grpc-client-tls-key", requires = "grpc_client_tls_cert")]
    pub grpc_client_tls_key: Option<PathBuf>,
    /// CA bundle (PEM) the endpoints' certificates are verified against; the system's
    /// bundle when unset.
    #[arg(long = "grpc-client-tls-ca")]
    pub grpc_client_tls_ca: Option<PathBuf>,
    /// Server name checked against the endpoints' certificates instead of the host dialled.
    #[arg(long = "grpc-client-server-name")]
    pub grpc_client_server_name: Option<String>,
}

impl GrpcClientTls {
    pub fn load(&self) -> anyhow::Result<Option<Arc<tls::ClientTls>>> {
        client(
            "--grpc-client-tls",
            self.grpc_client_tls_secure,
            tls::ClientFiles {
                cert: self.grpc_client_tls_cert.clone(),
                key: self.grpc_client_tls_key.clone(),
                ca: self.grpc_client_tls_ca.clone(),
                server_name: self.grpc_client_server_name.clone(),
                skip_verify: self.grpc_client_tls_skip_verify,
            },
        )
    }
}

/// A receiver's TLS to the other receivers (forwarded writes, replicas, hints). Thanos keeps
/// the `remote-write` prefix for these gRPC client flags.
#[derive(Args, Debug, Clone, Default)]
pub struct ForwardClientTls {
    /// Use TLS when forwarding to the other receivers.
    #[arg(long = "remote-write.client-tls-secure")]
    pub rw_client_tls_secure: bool,
    /// Do not verify the other receivers' certificates (TLS still encrypts).
    #[arg(long = "remote-write.client-tls-skip-verify")]
    pub rw_client_tls_skip_verify: bool,
    /// Client certificate (PEM) presented to the other receivers (mutual TLS).
    #[arg(long = "remote-write.client-tls-cert", requires = "rw_client_tls_key")]
    pub rw_client_tls_cert: Option<PathBuf>,
    /// Key (PEM) of the client certificate.
    #[arg(long = "remote-write.client-tls-key", requires = "rw_client_tls_cert")]
    pub rw_client_tls_key: Option<PathBuf>,
    /// CA bundle (PEM) the other receivers' certificates are verified against; the system's
    /// bundle when unset.
    #[arg(long = "remote-write.client-tls-ca")]
    pub rw_client_tls_ca: Option<PathBuf>,
    /// Server name checked against the other receivers' certificates instead of the host.
    #[arg(long = "remote-write.client-server-name")]
    pub rw_client_server_name: Option<String>,
}

impl ForwardClientTls {
    /// The files, when TLS is on; loading them is the receiver's (it reports bad files).
    pub fn files(&self) -> Option<tls::ClientFiles> {
        let files = tls::ClientFiles {
            cert: self.rw_client_tls_cert.clone(),
            key: self.rw_client_tls_key.clone(),
            ca: self.rw_client_tls_ca.clone(),
            server_name: self.rw_client_server_name.clone(),
            skip_verify: self.rw_client_tls_skip_verify,
        };
        enabled(
            "--remote-write.client-tls",
            self.rw_client_tls_secure,
            &files,
        )
        .then_some(files)
    }
}

/// Whether client TLS is on. As in Thanos the `-secure` flag turns it on; files given
/// without it leave the connection plaintext, which is logged, since it is rarely meant.
fn enabled(prefix: &str, secure: bool, files: &tls::ClientFiles) -> bool {
    if !secure
        && (files.cert.is_some()
            || files.ca.is_some()
            || files.server_name.is_some()
            || files.skip_verify)
    {
        tracing::warn!(
            "{prefix}-* options are set but {prefix}-secure is not: connections stay plaintext"
        );
    }
    secure
}

fn client(
    prefix: &str,
    secure: bool,
    files: tls::ClientFiles,
) -> anyhow::Result<Option<Arc<tls::ClientTls>>> {
    if !enabled(prefix, secure, &files) {
        return Ok(None);
    }
    Ok(Some(tls::ClientTls::load(&files)?))
}
