//! Server side: configurations, an axum listener, and a connection stream for tonic.
//!
//! Handshakes run in their own tasks (bounded by a time-out) and finished connections are
//! handed over through a channel, so a slow or hostile client cannot stall accepting others.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};

use crate::files::{invalid, read_certs, read_key, read_roots};
use crate::reload::Reloading;
use crate::{provider, TlsError};

/// How long a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Certificate, key and optional client CA of one listener.
#[derive(Clone, Debug, Default)]
pub struct ServerFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by this CA.
    pub client_ca: Option<PathBuf>,
    /// The oldest TLS version accepted.
    pub min_version: MinVersion,
}

/// The oldest TLS version a listener accepts (rustls speaks 1.2 and 1.3 only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MinVersion {
    #[default]
    Tls12,
    Tls13,
}

impl std::str::FromStr for MinVersion {
    type Err = String;
    /// Thanos' `--grpc-server-tls-min-version` values.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "1.2" => Ok(MinVersion::Tls12),
            "1.3" => Ok(MinVersion::Tls13),
            "1.0" | "1.1" => Err(format!(
                "TLS {s} is not supported (TLS 1.2 and 1.3 are): use 1.2 or 1.3"
            )),
            other => Err(format!("unknown TLS version {other:?}: use 1.2 or 1.3")),
        }
    }
}

/// A listener's TLS configuration, re-read when its files change.
pub struct ServerTls {
    config: Reloading<ServerConfig>,
}

impl ServerTls {
    /// Loads the files; `alpn` lists the protocols offered (`h2` for gRPC, which gRPC clients
    /// require; `h2` and `http/1.1` for HTTP).
    pub fn load(files: &ServerFiles, alpn: &[&[u8]]) -> Result<Arc<ServerTls>, TlsError> {
        let mut paths = vec![files.cert.clone(), files.key.clone()];
        paths.extend(files.client_ca.clone());
        let alpn: Vec<Vec<u8>> = alpn.iter().map(|p| p.to_vec()).collect();
        let owned = files.clone();
        let config = Reloading::new(
            format!("server certificate {}", files.cert.display()),
            paths,
            Box::new(move || build(&owned, &alpn)),
        )?;
        Ok(Arc::new(ServerTls { config }))
    }

    /// The configuration for the next handshake.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.config.current()
    }

    /// How many times the files were reloaded.
    pub fn reloads(&self) -> u64 {
        self.config.reloads()
    }
}

fn build(files: &ServerFiles, alpn: &[Vec<u8>]) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = read_certs("certificate", &files.cert)?;
    let key = read_key(&files.key)?;
    let versions: &[&'static rustls::SupportedProtocolVersion] = match files.min_version {
        MinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        MinVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .map_err(|e| TlsError::Invalid(format!("TLS protocol versions: {e}")))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let roots = read_roots("client CA", ca)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| invalid("client CA", ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        invalid(
            "certificate",
            &files.cert,
            format!("does not match key {}: {e}", files.key.display()),
        )
    })?;
    config.alpn_protocols = alpn.to_vec();
    Ok(Arc::new(config))
}

/// A listener that yields connections whose TLS handshake has completed.
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accept_loop: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, tls: Arc<ServerTls>) -> io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, rx) = mpsc::channel(128);
        let accept_loop = tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let acceptor = TlsAcceptor::from(tls.config());
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener {
            rx,
            local,
            accept_loop,
        })
    }

    /// The next connection whose handshake completed.
    pub async fn next(&mut self) -> (TlsStream<TcpStream>, SocketAddr) {
        match self.rx.recv().await {
            Some(x) => x,
            // The accept loop only ends when the listener is dropped.
            None => std::future::pending().await,
        }
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        self.next().await
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// One accepted gRPC connection, plain or TLS.
pub enum GrpcConn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// The connections of `listener` for tonic's `serve_with_incoming*`: over TLS when `tls` is
/// given (a client the configuration refuses never reaches the server), plain otherwise. Both
/// set TCP_NODELAY.
pub fn grpc_incoming(
    listener: TcpListener,
    tls: Option<Arc<ServerTls>>,
) -> io::Result<BoxStream<'static, io::Result<GrpcConn>>> {
    Ok(match tls {
        None => TcpIncoming::from(listener)
            .with_nodelay(Some(true))
            .map_ok(GrpcConn::Plain)
            .boxed(),
        Some(tls) => {
            let listener = TlsListener::new(listener, tls)?;
            futures::stream::unfold(listener, |mut l| async move {
                let (conn, _) = l.next().await;
                Some((Ok(GrpcConn::Tls(Box::new(conn))), l))
            })
            .boxed()
        }
    })
}

impl Connected for GrpcConn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        let tcp = match self {
            GrpcConn::Plain(s) => s,
            GrpcConn::Tls(s) => s.get_ref().0,
        };
        tcp.connect_info()
    }
}

impl AsyncRead for GrpcConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            GrpcConn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            GrpcConn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for GrpcConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            GrpcConn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            GrpcConn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            GrpcConn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            GrpcConn::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            GrpcConn::Plain(s) => s.is_write_vectored(),
            GrpcConn::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            GrpcConn::Plain(s) => Pin::new(s).poll_flush(cx),
            GrpcConn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            GrpcConn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            GrpcConn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
