//! TLS for Cairn's listeners and gRPC clients, on rustls with the ring provider.
//!
//! - [`ServerTls`]: a server configuration from a certificate, its key and optionally a client
//!   CA (then every client must present a certificate that CA signed, or the handshake fails).
//!   [`TlsListener`] serves axum over it; [`grpc_incoming`] feeds tonic.
//! - [`ClientTls`]: a client configuration (a CA to verify servers with, or the system bundle;
//!   optionally a client certificate; an optional server name), and [`lazy_channel`], a tonic
//!   channel that dials over it.
//!
//! Both re-read their files when they change (size, modification time or inode, checked at
//! every handshake), so a rotated certificate (a Kubernetes secret update, cert-manager) takes
//! effect for the next connection without a restart. Files that fail to load keep the previous
//! configuration in use and log why; at start-up they are an error.

mod client;
mod files;
mod reload;
mod server;
#[cfg(test)]
mod tests;

pub use client::{lazy_channel, ClientFiles, ClientTls, InvalidAddress};
pub use files::TlsError;
pub use server::{grpc_incoming, GrpcConn, MinVersion, ServerFiles, ServerTls, TlsListener};

/// The crypto provider every configuration uses.
fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}
