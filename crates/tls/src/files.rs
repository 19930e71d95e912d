//! Reading PEM files, with errors that name the file and what is wrong with it.

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// `what` is the file's role ("certificate", "private key", "client CA", "CA").
    #[error("{what} {}: {reason}", path.display())]
    File {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{0}")]
    Invalid(String),
}

pub(crate) fn invalid(what: &'static str, path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File {
        what,
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

pub(crate) fn read_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| invalid(what, path, format!("reading certificates: {e}")))?
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(what, path, format!("parsing certificates: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(what, path, "no certificate found"));
    }
    Ok(certs)
}

pub(crate) fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| invalid("private key", path, format!("reading private key: {e}")))
}

pub(crate) fn read_roots(what: &'static str, path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in read_certs(what, path)? {
        roots.add(c).map_err(|e| invalid(what, path, e))?;
    }
    Ok(roots)
}

/// Where Debian, Fedora and Alpine keep the system's CA bundle.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// The system CA bundle (`SSL_CERT_FILE` first), used when no CA file is given, as Go's
/// `x509.SystemCertPool` would be in Thanos.
pub(crate) fn system_bundle() -> Result<PathBuf, TlsError> {
    if let Some(p) = std::env::var_os("SSL_CERT_FILE") {
        return Ok(PathBuf::from(p));
    }
    SYSTEM_BUNDLES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            TlsError::Invalid(format!(
                "no CA file was given and no system CA bundle was found (looked at SSL_CERT_FILE, {})",
                SYSTEM_BUNDLES.join(", ")
            ))
        })
}
