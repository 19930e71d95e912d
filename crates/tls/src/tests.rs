//! A real tonic server and client over loopback: who gets through the handshake, and what a
//! file rotation changes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use proto::thanos::info::info_client::InfoClient;
use proto::thanos::info::info_server::{Info, InfoServer};
use proto::thanos::info::{InfoRequest, InfoResponse};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use tonic::{Request, Response, Status};

use super::*;
use crate::files::read_certs;

struct Ca {
    cert: Certificate,
    key: KeyPair,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            cert,
            key,
        }
    }

    /// A certificate and key for `names`, for servers or for clients.
    fn issue(&self, names: &[&str], server: bool) -> (String, String) {
        let mut p = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

fn write(dir: &Path, name: &str, pem: &str) -> PathBuf {
    let p = dir.join(name);
    // Written aside and renamed, as a secret update would.
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, pem).unwrap();
    std::fs::rename(&tmp, &p).unwrap();
    p
}

struct Answer;

#[tonic::async_trait]
impl Info for Answer {
    async fn info(&self, _: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        Ok(Response::new(InfoResponse {
            component_type: "test".into(),
            ..Default::default()
        }))
    }
}

async fn serve(tls: Option<Arc<ServerTls>>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = grpc_incoming(listener, tls).unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(InfoServer::new(Answer))
            .serve_with_incoming(incoming),
    );
    addr
}

/// One Info call over a fresh channel (so a fresh handshake).
async fn call(addr: std::net::SocketAddr, tls: Option<&Arc<ClientTls>>) -> Result<(), String> {
    let channel = lazy_channel(&addr.to_string(), tls, |e| {
        e.connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(5))
    })
    .map_err(|e| e.to_string())?;
    let r = InfoClient::new(channel)
        .info(InfoRequest::default())
        .await
        .map_err(|e| format!("{e:?}"))?;
    assert_eq!(r.into_inner().component_type, "test");
    Ok(())
}

#[tokio::test]
async fn mutual_tls_refuses_strangers_and_follows_rotated_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ca1, ca2) = (Ca::new("ca-1"), Ca::new("ca-2"));
    let (cert, key) = ca1.issue(&["127.0.0.1", "localhost"], true);
    let server_files = ServerFiles {
        cert: write(d, "server.pem", &cert),
        key: write(d, "server-key.pem", &key),
        client_ca: Some(write(d, "client-ca.pem", &ca1.pem)),
        ..Default::default()
    };
    let server = ServerTls::load(&server_files, &[b"h2"]).unwrap();
    let addr = serve(Some(server.clone())).await;

    let (ccert, ckey) = ca1.issue(&["querier"], false);
    let client_files = ClientFiles {
        cert: Some(write(d, "client.pem", &ccert)),
        key: Some(write(d, "client-key.pem", &ckey)),
        ca: Some(write(d, "ca.pem", &ca1.pem)),
        ..Default::default()
    };
    let client = ClientTls::load(&client_files).unwrap();
    call(addr, Some(&client)).await.unwrap();

    // No client certificate: refused at the handshake.
    let anonymous = ClientTls::load(&ClientFiles {
        ca: client_files.ca.clone(),
        ..Default::default()
    })
    .unwrap();
    let err = call(addr, Some(&anonymous)).await.unwrap_err();
    assert!(
        err.contains("CertificateRequired") || err.contains("certificate"),
        "{err}"
    );

    // A client certificate from another CA: refused.
    let (scert, skey) = ca2.issue(&["stranger"], false);
    let stranger = ClientTls::load(&ClientFiles {
        cert: Some(write(d, "stranger.pem", &scert)),
        key: Some(write(d, "stranger-key.pem", &skey)),
        ca: client_files.ca.clone(),
        ..Default::default()
    })
    .unwrap();
    call(addr, Some(&stranger)).await.unwrap_err();

    // Plaintext: refused.
    call(addr, None).await.unwrap_err();

    // The server's certificate is rotated to one from CA 2: a client still trusting CA 1
    // fails, and after its CA file is rotated too, the same client object gets through.
    let (cert2, key2) = ca2.issue(&["127.0.0.1"], true);
    write(d, "server-key.pem", &key2);
    write(d, "server.pem", &cert2);
    let err = call(addr, Some(&client)).await.unwrap_err();
    assert!(
        err.contains("UnknownIssuer") || err.contains("certificate"),
        "{err}"
    );
    assert_eq!(server.reloads(), 1);
    write(d, "ca.pem", &ca2.pem);
    call(addr, Some(&client)).await.unwrap();
    assert_eq!(client.reloads(), 1);

    // A server name that the certificate does not carry fails; skip-verify gets through.
    let wrong_name = ClientTls::load(&ClientFiles {
        server_name: Some("elsewhere.example".into()),
        ..client_files.clone()
    })
    .unwrap();
    call(addr, Some(&wrong_name)).await.unwrap_err();
    let unverified = ClientTls::load(&ClientFiles {
        ca: None,
        skip_verify: true,
        ..client_files.clone()
    })
    .unwrap();
    call(addr, Some(&unverified)).await.unwrap();
}

#[tokio::test]
async fn a_half_written_rotation_keeps_the_previous_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Ca::new("ca");
    let (cert, key) = ca.issue(&["127.0.0.1"], true);
    let files = ServerFiles {
        cert: write(d, "server.pem", &cert),
        key: write(d, "server-key.pem", &key),
        client_ca: None,
        ..Default::default()
    };
    let server = ServerTls::load(&files, &[b"h2"]).unwrap();
    let addr = serve(Some(server.clone())).await;
    let client = ClientTls::load(&ClientFiles {
        ca: Some(write(d, "ca.pem", &ca.pem)),
        ..Default::default()
    })
    .unwrap();
    // A new certificate without its key yet: it does not load, the old pair stays.
    let (cert2, key2) = ca.issue(&["127.0.0.1"], true);
    write(d, "server.pem", &cert2);
    call(addr, Some(&client)).await.unwrap();
    assert_eq!(server.reloads(), 0);
    write(d, "server-key.pem", &key2);
    call(addr, Some(&client)).await.unwrap();
    assert_eq!(server.reloads(), 1);
}

#[test]
fn errors_name_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Ca::new("ca");
    let (cert, _) = ca.issue(&["127.0.0.1"], true);
    let (_, other_key) = ca.issue(&["127.0.0.1"], true);
    let missing = ServerTls::load(
        &ServerFiles {
            cert: d.join("nope.pem"),
            key: d.join("nope-key.pem"),
            client_ca: None,
            ..Default::default()
        },
        &[],
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        missing.starts_with("certificate ") && missing.contains("nope.pem"),
        "{missing}"
    );
    let mismatched = ServerTls::load(
        &ServerFiles {
            cert: write(d, "c.pem", &cert),
            key: write(d, "k.pem", &other_key),
            client_ca: None,
            ..Default::default()
        },
        &[],
    )
    .err()
    .unwrap()
    .to_string();
    assert!(mismatched.contains("does not match key"), "{mismatched}");
    let garbage = ServerTls::load(
        &ServerFiles {
            cert: write(d, "g.pem", "not a certificate"),
            key: d.join("k.pem"),
            client_ca: None,
            ..Default::default()
        },
        &[],
    )
    .err()
    .unwrap()
    .to_string();
    assert!(garbage.contains("no certificate found"), "{garbage}");
    let lone_cert = ClientTls::load(&ClientFiles {
        cert: Some(d.join("c.pem")),
        skip_verify: true,
        ..Default::default()
    })
    .err()
    .unwrap()
    .to_string();
    assert!(lone_cert.contains("needs its key"), "{lone_cert}");
    let bad_address = lazy_channel("https://127.0.0.1:1", None, |e| e)
        .err()
        .unwrap()
        .to_string();
    assert!(
        bad_address.contains("--grpc-client-tls-secure"),
        "{bad_address}"
    );
}

/// Whether a client speaking only TLS 1.2 completes a handshake with the server at `addr`.
async fn tls12_handshake(addr: std::net::SocketAddr, ca: &Path) -> bool {
    let mut roots = rustls::RootCertStore::empty();
    for c in read_certs("CA", ca).unwrap() {
        roots.add(c).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .is_ok()
}

#[tokio::test]
async fn the_minimum_version_refuses_older_clients() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Ca::new("ca");
    let (cert, key) = ca.issue(&["127.0.0.1"], true);
    let ca_file = write(d, "ca.pem", &ca.pem);
    let base = ServerFiles {
        cert: write(d, "server.pem", &cert),
        key: write(d, "server-key.pem", &key),
        ..Default::default()
    };
    let tls12 = serve(Some(ServerTls::load(&base, &[b"h2"]).unwrap())).await;
    assert!(tls12_handshake(tls12, &ca_file).await);
    let only13 = ServerFiles {
        min_version: MinVersion::Tls13,
        ..base
    };
    let tls13 = serve(Some(ServerTls::load(&only13, &[b"h2"]).unwrap())).await;
    assert!(!tls12_handshake(tls13, &ca_file).await);
    assert_eq!("1.3".parse::<MinVersion>(), Ok(MinVersion::Tls13));
    assert!("1.1"
        .parse::<MinVersion>()
        .unwrap_err()
        .contains("not supported"));
}
