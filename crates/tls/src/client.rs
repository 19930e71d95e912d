//! Client side: a configuration and tonic channels that dial over it.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint};

use crate::files::{read_certs, read_key, read_roots, system_bundle};
use crate::reload::Reloading;
use crate::{provider, TlsError};

/// A client's TLS settings, as Thanos' `--grpc-client-tls-*` flags give them.
#[derive(Clone, Debug, Default)]
pub struct ClientFiles {
    /// Client certificate and key, presented to servers that ask (mutual TLS).
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// CA that signs the servers' certificates; the system bundle when unset.
    pub ca: Option<PathBuf>,
    /// Name checked against the server's certificate instead of the host dialled.
    pub server_name: Option<String>,
    /// Do not verify the server's certificate at all (Thanos' `--grpc-client-tls-skip-verify`).
    pub skip_verify: bool,
}

/// A client's TLS configuration, re-read when its files change.
pub struct ClientTls {
    config: Reloading<ClientConfig>,
    server_name: Option<String>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("server_name", &self.server_name)
            .field("reloads", &self.reloads())
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    pub fn load(files: &ClientFiles) -> Result<Arc<ClientTls>, TlsError> {
        if files.cert.is_some() != files.key.is_some() {
            return Err(TlsError::Invalid(
                "a client certificate needs its key and a key its certificate".into(),
            ));
        }
        let ca = match (&files.ca, files.skip_verify) {
            (Some(ca), _) => Some(ca.clone()),
            (None, false) => Some(system_bundle()?),
            (None, true) => None,
        };
        let mut paths: Vec<PathBuf> = files.cert.iter().chain(&files.key).cloned().collect();
        paths.extend(ca.clone());
        let owned = files.clone();
        let config = Reloading::new(
            match &files.cert {
                Some(c) => format!("client certificate {}", c.display()),
                None => "client TLS".to_string(),
            },
            paths,
            Box::new(move || build(&owned, ca.as_ref())),
        )?;
        Ok(Arc::new(ClientTls {
            config,
            server_name: files.server_name.clone(),
        }))
    }

    /// The configuration for the next connection.
    pub fn config(&self) -> Arc<ClientConfig> {
        self.config.current()
    }

    /// How many times the files were reloaded.
    pub fn reloads(&self) -> u64 {
        self.config.reloads()
    }
}

fn build(files: &ClientFiles, ca: Option<&PathBuf>) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Invalid(format!("TLS protocol versions: {e}")))?;
    let builder = match (files.skip_verify, ca) {
        (true, _) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider()))),
        (false, Some(ca)) => builder.with_root_certificates(read_roots("CA", ca)?),
        (false, None) => unreachable!("ClientTls::load finds a CA unless verification is off"),
    };
    let mut config = match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(read_certs("client certificate", cert)?, read_key(key)?)
            .map_err(|e| {
                crate::files::invalid(
                    "client certificate",
                    cert,
                    format!("does not match key {}: {e}", key.display()),
                )
            })?,
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts any server certificate, still checking that the handshake is signed by its key.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Why an address cannot be dialled.
#[derive(Debug, thiserror::Error)]
#[error("invalid gRPC address {address:?}: {reason}")]
pub struct InvalidAddress {
    pub address: String,
    pub reason: String,
}

/// A channel to `address` (`host:port`, or a URI) that connects on first use, over TLS when
/// `tls` is given. `configure` sets the endpoint's time-outs and HTTP/2 options.
pub fn lazy_channel(
    address: &str,
    tls: Option<&Arc<ClientTls>>,
    configure: impl FnOnce(Endpoint) -> Endpoint,
) -> Result<Channel, InvalidAddress> {
    let bad = |reason: String| InvalidAddress {
        address: address.to_string(),
        reason,
    };
    let uri: http::Uri = if address.contains("://") {
        address
            .parse()
            .map_err(|e: http::uri::InvalidUri| bad(e.to_string()))?
    } else {
        format!("http://{address}")
            .parse()
            .map_err(|e: http::uri::InvalidUri| bad(e.to_string()))?
    };
    let authority = uri
        .authority()
        .ok_or_else(|| bad("no host".into()))?
        .to_string();
    match tls {
        None => {
            if uri.scheme_str() == Some("https") {
                return Err(bad(
                    "an https:// address needs client TLS to be turned on (--grpc-client-tls-secure)"
                        .into(),
                ));
            }
            let endpoint =
                Endpoint::from_shared(uri.to_string()).map_err(|e| bad(e.to_string()))?;
            Ok(configure(endpoint).connect_lazy())
        }
        Some(tls) => {
            // tonic's own connector refuses https:// without its TLS features; the scheme only
            // reaches the :scheme pseudo-header, which servers do not check.
            let endpoint = Endpoint::from_shared(format!("http://{authority}"))
                .map_err(|e| bad(e.to_string()))?;
            Ok(configure(endpoint).connect_with_connector_lazy(Connector { tls: tls.clone() }))
        }
    }
}

/// Dials TCP and runs the TLS handshake with the current client configuration.
#[derive(Clone)]
struct Connector {
    tls: Arc<ClientTls>,
}

impl tower_service::Service<http::Uri> for Connector {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let tls = self.tls.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no host"))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri.port_u16().unwrap_or(443);
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let name = tls.server_name.clone().unwrap_or(host);
            let name = ServerName::try_from(name.clone()).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("server name {name:?}: {e}"),
                )
            })?;
            let stream = TlsConnector::from(tls.config()).connect(name, tcp).await?;
            Ok(TokioIo::new(stream))
        })
    }
}
