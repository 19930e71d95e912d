//! The end-to-end harness: starts the real `cairn` binary and real peers (Prometheus, vmagent)
//! on loopback with free ports and temp dirs, waits for readiness, and cleans up on drop.
#![allow(dead_code)]

pub mod load;
pub mod netns;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A port that was free a moment ago on 127.0.0.1, for a process the test starts next.
///
/// The port is handed to another process, which binds it a little later, so two things keep
/// anyone else from taking it in between: it is never handed out twice by one test binary
/// (tests run in parallel threads), and it lies below Linux's ephemeral range (32768-60999),
/// where neither `bind(0)` nor the local end of an outgoing connection lands.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    const LOW: u64 = 20_000;
    const SPAN: u64 = 12_000;
    let mut state = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        ^ (u64::from(std::process::id()) << 32);
    let mut given = GIVEN.lock().unwrap();
    for _ in 0..10_000 {
        // xorshift: cheap, and different in every test binary.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let port = (LOW + state % SPAN) as u16;
        if !given.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
    panic!("no free port in {LOW}..{}", LOW + SPAN);
}

pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.1 client (one request per connection), enough for tests.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<HttpResponse> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let req = request_head(addr, method, path, headers, body.len());
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse_response(&raw)
}

fn request_head(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    len: usize,
) -> String {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {len}\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req
}

fn parse_response(raw: &[u8]) -> std::io::Result<HttpResponse> {
    let text = String::from_utf8_lossy(raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad response: {text:?}")))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect::<Vec<_>>();
    // Chunked bodies: good enough to strip the framing for small test bodies.
    let body = if headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"))
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

pub fn get(addr: SocketAddr, path: &str) -> std::io::Result<HttpResponse> {
    http(addr, "GET", path, &[], &[])
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// A child process killed on drop; its output goes to a log file in the test's temp dir.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command, log_dir: &Path) -> Proc {
        let log = log_dir.join(format!("{name}.log"));
        let f = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdout(Stdio::from(f.try_clone().unwrap()))
            .stderr(Stdio::from(f))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({cmd:?}): {e}"));
        Proc {
            name: name.to_string(),
            child,
            log,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then wait (bounded) for a clean exit.
    pub fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "{} did not stop within {timeout:?}; log:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The listen addresses of one receiver.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub remote_write: SocketAddr,
    pub http: SocketAddr,
    pub grpc: SocketAddr,
}

impl Ports {
    pub fn new() -> Ports {
        let addr = || -> SocketAddr { format!("127.0.0.1:{}", free_port()).parse().unwrap() };
        Ports {
            remote_write: addr(),
            http: addr(),
            grpc: addr(),
        }
    }
}

impl Default for Ports {
    fn default() -> Self {
        Ports::new()
    }
}

/// A `cairn receive` process.
pub struct Cairn {
    pub proc: Proc,
    pub remote_write: SocketAddr,
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    pub tsdb_path: PathBuf,
}

impl Cairn {
    pub fn receive(dir: &Path, extra: &[&str]) -> Cairn {
        Self::receive_with_scheme(dir, extra)
    }

    /// Starts `cairn receive`; readiness is polled on the (plain) HTTP port, so TLS on the
    /// remote-write port does not matter here.
    pub fn receive_with_scheme(dir: &Path, extra: &[&str]) -> Cairn {
        Self::receive_on(dir, Ports::new(), extra)
    }

    /// Starts `cairn receive` on given ports (a node of a pool, or a restart).
    pub fn receive_on(dir: &Path, ports: Ports, extra: &[&str]) -> Cairn {
        Self::receive_in(None, dir, ports, extra)
    }

    /// [`Cairn::receive_on`] inside network namespace `netns` when given (`ip netns exec`).
    pub fn receive_in(netns: Option<&str>, dir: &Path, ports: Ports, extra: &[&str]) -> Cairn {
        let Ports {
            remote_write,
            http: http_addr,
            grpc,
        } = ports;
        let tsdb_path = dir.join("tsdb");
        let mut cmd = match netns {
            None => Command::new(env!("CARGO_BIN_EXE_cairn")),
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_cairn")]);
                c
            }
        };
        cmd.arg("receive")
            .arg(format!("--remote-write.address={remote_write}"))
            .arg(format!("--http-address={http_addr}"))
            .arg(format!("--grpc-address={grpc}"))
            .arg(format!("--tsdb.path={}", tsdb_path.display()))
            .args(extra)
            .env("CAIRN_LOG", "info");
        let mut proc = Proc::spawn("cairn", &mut cmd, dir);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if matches!(get(http_addr, "/-/ready"), Ok(r) if r.status == 200) {
                break;
            }
            if let Some(status) = proc.child.try_wait().unwrap() {
                panic!("cairn exited early ({status}); log:\n{}", proc.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "cairn not ready; log:\n{}",
                proc.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Cairn {
            proc,
            remote_write,
            http: http_addr,
            grpc,
            tsdb_path,
        }
    }

    pub fn ports(&self) -> Ports {
        Ports {
            remote_write: self.remote_write,
            http: self.http,
            grpc: self.grpc,
        }
    }

    /// Sum of every metric line starting with `prefix` on /metrics.
    pub fn metric_sum(&self, prefix: &str) -> f64 {
        let Ok(m) = get(self.http, "/metrics") else {
            return f64::NAN;
        };
        m.body
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Value of a metric line on /metrics (first line starting with `prefix`).
    pub fn metric(&self, prefix: &str) -> Option<f64> {
        let m = get(self.http, "/metrics").ok()?;
        m.body
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }
}

/// Serves a fixed exposition text at any path, for Prometheus and vmagent to scrape.
pub struct ExpositionServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl ExpositionServer {
    pub fn start(text: String) -> ExpositionServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                        let mut buf = [0u8; 4096];
                        let _ = s.read(&mut buf);
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                            text.len(),
                            text
                        );
                        let _ = s.write_all(resp.as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        ExpositionServer { addr, stop }
    }
}

impl Drop for ExpositionServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A binary from a Debian package the test command installs; missing means failure.
pub fn require_binary(path: &str, package: &str) -> PathBuf {
    let p = PathBuf::from(path);
    assert!(
        p.exists(),
        "{path} not found: install the Debian package `{package}` (scripts/test-all does)"
    );
    p
}

/// Snappy-compresses a remote-write body.
pub fn snappy(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(raw).unwrap()
}

/// A test PKI: a CA, a server certificate for 127.0.0.1/localhost and a client certificate,
/// written as PEM files into `dir`.
pub struct Pki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl Pki {
    pub fn generate(dir: &Path) -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let mut sp =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate().unwrap();
        let server = sp.signed_by(&server_key, &ca, &ca_key).unwrap();
        let mut cp = CertificateParams::new(vec!["edge-client".to_string()]).unwrap();
        cp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_key = KeyPair::generate().unwrap();
        let client = cp.signed_by(&client_key, &ca, &ca_key).unwrap();
        let write = |name: &str, pem: String| {
            let p = dir.join(name);
            std::fs::write(&p, pem).unwrap();
            p
        };
        Pki {
            ca: write("ca.pem", ca.pem()),
            server_cert: write("server.pem", server.pem()),
            server_key: write("server-key.pem", server_key.serialize_pem()),
            client_cert: write("client.pem", client.pem()),
            client_key: write("client-key.pem", client_key.serialize_pem()),
        }
    }

    /// A rustls client trusting the CA, presenting the client certificate when `with_cert`.
    pub fn client_config(&self, with_cert: bool) -> Arc<rustls::ClientConfig> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(&self.ca).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
        let config = if with_cert {
            let certs = CertificateDer::pem_file_iter(&self.client_cert)
                .unwrap()
                .map(|c| c.unwrap())
                .collect();
            let key = PrivateKeyDer::from_pem_file(&self.client_key).unwrap();
            builder.with_client_auth_cert(certs, key).unwrap()
        } else {
            builder.with_no_client_auth()
        };
        Arc::new(config)
    }
}

/// Like [`http`] over TLS.
pub fn https(
    config: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<HttpResponse> {
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(config, name).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let req = request_head(addr, method, path, headers, body.len());
    tls.write_all(req.as_bytes())?;
    tls.write_all(body)?;
    let mut raw = Vec::new();
    match tls.read_to_end(&mut raw) {
        Ok(_) => {}
        // Servers may close without close_notify after Connection: close.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(e),
    }
    parse_response(&raw)
}

/// Prometheus 2.42 in agent mode, scraping `target` every second as job `job` and remote-writing
/// to `url`; `remote_write_extra` is YAML added to the remote_write entry (indented 4 spaces).
pub fn prometheus_agent(
    dir: &Path,
    job: &str,
    target: SocketAddr,
    url: &str,
    remote_write_extra: &str,
) -> Proc {
    let prometheus = require_binary("/usr/bin/prometheus", "prometheus");
    let cfg = dir.join(format!("prometheus-{job}.yml"));
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n\
             remote_write:\n  - url: {url}\n    queue_config:\n      batch_send_deadline: 1s\n{remote_write_extra}"
        ),
    )
    .unwrap();
    Proc::spawn(
        "prometheus",
        Command::new(prometheus)
            .arg("--enable-feature=agent")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.agent.path={}",
                dir.join(format!("agent-{job}")).display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{}", free_port())),
        dir,
    )
}

/// vmagent 1.79 scraping `target` every second as job `job` and remote-writing to `url`.
pub fn vmagent(
    dir: &Path,
    job: &str,
    target: SocketAddr,
    url: &str,
    extra_args: &[String],
) -> Proc {
    let vmagent = require_binary("/usr/bin/vmagent", "victoria-metrics");
    let cfg = dir.join(format!("vmagent-{job}.yml"));
    std::fs::write(
        &cfg,
        format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n"),
    )
    .unwrap();
    Proc::spawn(
        "vmagent",
        Command::new(vmagent)
            .arg(format!("-promscrape.config={}", cfg.display()))
            .arg(format!("-remoteWrite.url={url}"))
            .arg("-remoteWrite.flushInterval=1s")
            .arg(format!(
                "-remoteWrite.tmpDataPath={}",
                dir.join(format!("vmagent-{job}")).display()
            ))
            .arg(format!("-httpListenAddr=127.0.0.1:{}", free_port()))
            .args(extra_args),
        dir,
    )
}

/// The s3s-fs S3 server binary (`cargo install s3s-fs --features binary`; scripts/test-all
/// installs it). Missing means failure.
pub fn s3s_fs_binary() -> PathBuf {
    let candidates = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("s3s-fs"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .chain(std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/s3s-fs")));
    for c in candidates {
        if c.exists() {
            return c;
        }
    }
    panic!("s3s-fs not found: `cargo install s3s-fs@0.14.1 --locked --features binary` (scripts/test-all does)");
}

/// An S3-compatible server (s3s-fs) on loopback, serving bucket `bucket` from `root`.
pub struct S3Server {
    pub proc: Proc,
    pub port: u16,
    pub root: PathBuf,
}

pub const S3_ACCESS_KEY: &str = "cairn-test";
pub const S3_SECRET_KEY: &str = "cairn-test-secret";

impl S3Server {
    pub fn start(dir: &Path, root: &Path, port: u16, bucket: &str) -> S3Server {
        std::fs::create_dir_all(root.join(bucket)).unwrap();
        let proc = Proc::spawn(
            "s3s-fs",
            Command::new(s3s_fs_binary())
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
                .arg(root),
            dir,
        );
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        wait_until(Duration::from_secs(20), "s3s-fs listening", || {
            TcpStream::connect(addr).is_ok()
        });
        S3Server {
            proc,
            port,
            root: root.to_path_buf(),
        }
    }

    /// objstore.yml text for this server.
    pub fn objstore_yaml(&self, bucket: &str) -> String {
        Self::objstore_yaml_for_port(self.port, bucket)
    }

    /// objstore.yml text for an S3 endpoint on a loopback port (this server, or a proxy to it).
    pub fn objstore_yaml_for_port(port: u16, bucket: &str) -> String {
        format!(
            "type: S3\nconfig:\n  bucket: {bucket}\n  endpoint: 127.0.0.1:{port}\n  region: us-east-1\n  access_key: {S3_ACCESS_KEY}\n  secret_key: {S3_SECRET_KEY}\n  insecure: true\n"
        )
    }
}

/// A TCP proxy that forwards client bytes to `upstream` at most `bytes_per_sec` (to catch an
/// upload in the middle); counts what it forwarded.
pub struct SlowProxy {
    pub port: u16,
    pub forwarded: Arc<std::sync::atomic::AtomicU64>,
    stop: Arc<AtomicBool>,
}

/// Accepts connections on a fresh loopback port until `stop` is set and connects each to
/// `upstream`: the client's bytes go through `forward(client_read, server_write)` on a thread of
/// their own, the answers straight back.
fn spawn_proxy<F>(upstream: SocketAddr, stop: Arc<AtomicBool>, forward: F) -> SocketAddr
where
    F: Fn(TcpStream, TcpStream) + Clone + Send + 'static,
{
    spawn_proxy_on([127, 0, 0, 1].into(), upstream, stop, forward)
}

/// [`spawn_proxy`] listening on `bind` (a port of its own).
fn spawn_proxy_on<F>(
    bind: std::net::IpAddr,
    upstream: SocketAddr,
    stop: Arc<AtomicBool>,
    forward: F,
) -> SocketAddr
where
    F: Fn(TcpStream, TcpStream) + Clone + Send + 'static,
{
    let listener = TcpListener::bind((bind, 0)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let Ok((client, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            client.set_nonblocking(false).unwrap();
            let Ok(server) = TcpStream::connect(upstream) else {
                continue;
            };
            let (c_read, s_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (mut s_read, mut c_write) = (server, client);
            let forward = forward.clone();
            std::thread::spawn(move || forward(c_read, s_write));
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s_read, &mut c_write);
                let _ = c_write.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    addr
}

impl SlowProxy {
    pub fn start(upstream: SocketAddr, bytes_per_sec: u64) -> SlowProxy {
        let forwarded = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (fwd, flag) = (forwarded.clone(), stop.clone());
        let addr = spawn_proxy(upstream, stop.clone(), move |mut c_read, mut s_write| {
            let mut buf = [0u8; 256];
            let pause = Duration::from_micros(256 * 1_000_000 / bytes_per_sec.max(1));
            while !flag.load(Ordering::Relaxed) {
                match c_read.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if s_write.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        fwd.fetch_add(n as u64, Ordering::Relaxed);
                        std::thread::sleep(pause);
                    }
                }
            }
            let _ = s_write.shutdown(std::net::Shutdown::Both);
        });
        SlowProxy {
            port: addr.port(),
            forwarded,
            stop,
        }
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A TCP proxy that delivers client bytes to `upstream` only `delay` after they arrived (a slow
/// network path to one node); answers come back undelayed.
pub struct DelayProxy {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl DelayProxy {
    pub fn start(upstream: SocketAddr, delay: Duration) -> DelayProxy {
        Self::start_on([127, 0, 0, 1].into(), upstream, delay)
    }

    /// [`DelayProxy::start`] listening on `bind`.
    pub fn start_on(bind: std::net::IpAddr, upstream: SocketAddr, delay: Duration) -> DelayProxy {
        let stop = Arc::new(AtomicBool::new(false));
        let addr = spawn_proxy_on(
            bind,
            upstream,
            stop.clone(),
            move |mut c_read, mut s_write| {
                let (tx, rx) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        match c_read.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                });
                for (at, bytes) in rx {
                    if let Some(wait) = (at + delay).checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    if s_write.write_all(&bytes).is_err() {
                        break;
                    }
                }
                let _ = s_write.shutdown(std::net::Shutdown::Both);
            },
        );
        DelayProxy { addr, stop }
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Sends one remote-write 1.0 request of `series` (sorted labels with `__name__`, samples)
/// for `tenant` and returns the answer, whatever it is.
pub fn remote_write_request(
    addr: SocketAddr,
    tenant: &str,
    series: &[WriteSeries],
) -> std::io::Result<HttpResponse> {
    use proto::remote_write::{encode_v1, Label, Sample, TimeSeries, WriteRequest};
    let req = WriteRequest {
        timeseries: series
            .iter()
            .map(|(labels, samples)| TimeSeries {
                labels: labels
                    .iter()
                    .map(|(n, v)| Label { name: n, value: v })
                    .collect(),
                samples: samples
                    .iter()
                    .map(|&(timestamp, value)| Sample { value, timestamp })
                    .collect(),
                ..Default::default()
            })
            .collect(),
        metadata: vec![],
    };
    let body = snappy(&encode_v1(&req));
    http(
        addr,
        "POST",
        "/api/v1/receive",
        &[
            ("THANOS-TENANT", tenant),
            ("Content-Type", "application/x-protobuf"),
            ("Content-Encoding", "snappy"),
        ],
        &body,
    )
}

/// Every series a receiver's StoreAPI returns for `{__name__=~name_re}`: labels (without the
/// external labels named in `drop`) -> samples as (timestamp, value bits).
pub fn store_samples(
    grpc: SocketAddr,
    name_re: &str,
    drop: &[&str],
) -> std::collections::BTreeMap<String, Vec<(i64, u64)>> {
    store_samples_over(grpc, None, name_re, drop).unwrap()
}

/// Like [`store_samples`] over client TLS when `tls` is given; Err says why the call failed.
pub fn store_samples_over(
    grpc: SocketAddr,
    tls: Option<&Arc<tls::ClientTls>>,
    name_re: &str,
    drop: &[&str],
) -> Result<std::collections::BTreeMap<String, Vec<(i64, u64)>>, String> {
    use proto::thanos::store_client::StoreClient;
    use proto::thanos::{label_matcher, LabelMatcher, SeriesRequest};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let channel = tls::lazy_channel(&grpc.to_string(), tls, |e| {
            e.connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(30))
        })
        .map_err(|e| e.to_string())?;
        let req = SeriesRequest {
            min_time: i64::MIN,
            max_time: i64::MAX,
            matchers: vec![LabelMatcher {
                r#type: label_matcher::Type::Re as i32,
                name: "__name__".into(),
                value: name_re.into(),
            }],
            ..Default::default()
        };
        let mut stream = StoreClient::new(channel)
            .max_decoding_message_size(256 << 20)
            .series(req)
            .await
            .map_err(|e| format!("{e:?}"))?
            .into_inner();
        let mut out = std::collections::BTreeMap::new();
        while let Some(msg) = stream.message().await.map_err(|e| format!("{e:?}"))? {
            if let Some(proto::thanos::series_response::Result::Series(s)) = msg.result {
                let labels: Vec<String> = s
                    .labels
                    .iter()
                    .filter(|l| !drop.contains(&l.name.as_str()))
                    .map(|l| format!("{}={}", l.name, l.value))
                    .collect();
                let samples: &mut Vec<(i64, u64)> = out.entry(labels.join(",")).or_default();
                for c in &s.chunks {
                    for (t, v) in tsdb::chunkenc::XorIterator::new(&c.raw.as_ref().unwrap().data) {
                        samples.push((t, v.to_bits()));
                    }
                }
            }
        }
        Ok(out)
    })
}

/// A series to write: labels as name/value pairs, samples as (ms, value).
pub type WriteSeries = (Vec<(String, String)>, Vec<(i64, f64)>);

/// Remote-writes `series` to a receiver in one request, optionally for a tenant; panics unless
/// the receiver answers 2xx.
pub fn remote_write(addr: SocketAddr, tenant: Option<&str>, series: &[WriteSeries]) {
    use proto::remote_write::{encode_v1, Label, Sample, TimeSeries, WriteRequest};
    let timeseries = series
        .iter()
        .map(|(labels, samples)| TimeSeries {
            labels: labels
                .iter()
                .map(|(n, v)| Label {
                    name: n.as_str(),
                    value: v.as_str(),
                })
                .collect(),
            samples: samples
                .iter()
                .map(|&(timestamp, value)| Sample { value, timestamp })
                .collect(),
            ..Default::default()
        })
        .collect();
    let body = snappy(&encode_v1(&WriteRequest {
        timeseries,
        metadata: vec![],
    }));
    let mut headers = vec![
        ("Content-Type", "application/x-protobuf"),
        ("Content-Encoding", "snappy"),
        ("X-Prometheus-Remote-Write-Version", "0.1.0"),
    ];
    if let Some(t) = tenant {
        headers.push(("THANOS-TENANT", t));
    }
    let r = http(addr, "POST", "/api/v1/receive", &headers, &body).unwrap();
    assert!(
        (200..300).contains(&r.status),
        "remote write answered {}: {}",
        r.status,
        r.body
    );
}

/// Percent-encodes a query parameter value.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A query string from name/value pairs.
pub fn query_string(params: &[(&str, &str)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{}={}", url_encode(k), url_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A `cairn query` process.
pub struct CairnQuery {
    pub proc: Proc,
    pub http: SocketAddr,
}

impl CairnQuery {
    /// Starts `cairn query` over `endpoints` (Info asked every 200 ms so that tests see new data
    /// and dead endpoints quickly) and waits for readiness.
    pub fn start(dir: &Path, endpoints: &[SocketAddr], extra: &[&str]) -> CairnQuery {
        let http_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn"));
        cmd.arg("query")
            .arg(format!("--http-address={http_addr}"))
            .arg("--endpoint.info-interval=200ms")
            .args(endpoints.iter().map(|e| format!("--endpoint={e}")))
            .args(extra)
            .env("CAIRN_LOG", "info");
        let mut proc = Proc::spawn("cairn-query", &mut cmd, dir);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if matches!(get(http_addr, "/-/ready"), Ok(r) if r.status == 200) {
                break;
            }
            if let Some(status) = proc.child.try_wait().unwrap() {
                panic!(
                    "cairn query exited early ({status}); log:\n{}",
                    proc.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "cairn query not ready; log:\n{}",
                proc.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        CairnQuery {
            proc,
            http: http_addr,
        }
    }

    /// GET `path?params`, parsed as JSON; returns the status code too.
    pub fn get_json(&self, path: &str, params: &[(&str, &str)]) -> (u16, serde_json::Value) {
        get_json(self.http, path, params)
    }

    /// POST `params` as a form to `path`, parsed as JSON.
    pub fn post_form(&self, path: &str, params: &[(&str, &str)]) -> (u16, serde_json::Value) {
        let body = query_string(params);
        let r = http(
            self.http,
            "POST",
            path,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            body.as_bytes(),
        )
        .unwrap();
        let v = serde_json::from_str(&r.body)
            .unwrap_or_else(|e| panic!("POST {path}: {e}: {:?}", r.body));
        (r.status, v)
    }
}

/// GET `path?params` from any Prometheus-compatible HTTP API, parsed as JSON.
pub fn get_json(addr: SocketAddr, path: &str, params: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let url = if params.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", query_string(params))
    };
    let r = get(addr, &url).unwrap();
    let v =
        serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("GET {url}: {e}: {:?}", r.body));
    (r.status, v)
}

/// Prometheus 2.42 (server mode, no scraping) over the TSDB directory `data`, on a free port.
pub struct PrometheusServer {
    pub proc: Proc,
    pub http: SocketAddr,
}

impl PrometheusServer {
    pub fn start(dir: &Path, data: &Path) -> PrometheusServer {
        let prometheus = require_binary("/usr/bin/prometheus", "prometheus");
        let cfg = dir.join("prometheus-server.yml");
        std::fs::write(&cfg, "scrape_configs: []\n").unwrap();
        let http_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let proc = Proc::spawn(
            "prometheus-server",
            Command::new(prometheus)
                .arg(format!("--config.file={}", cfg.display()))
                .arg(format!("--storage.tsdb.path={}", data.display()))
                .arg("--storage.tsdb.retention.time=100y")
                // Min = max block duration: no compaction, Prometheus reads the blocks as given.
                .arg("--storage.tsdb.min-block-duration=2h")
                .arg("--storage.tsdb.max-block-duration=2h")
                .arg(format!("--web.listen-address={http_addr}")),
            dir,
        );
        wait_until(
            Duration::from_secs(60),
            "Prometheus ready",
            || matches!(get(http_addr, "/-/ready"), Ok(r) if r.status == 200),
        );
        PrometheusServer {
            proc,
            http: http_addr,
        }
    }
}

/// Receivers sharing one hashrings file, replication factor 3, `--label replica="rN"`.
pub struct ReceivePool {
    pub dir: PathBuf,
    pub ports: Vec<Ports>,
    /// What the hashrings file lists for each node (its gRPC address, or a proxy's).
    pub endpoints: Vec<String>,
    pub nodes: Vec<Option<Cairn>>,
    pub ring_file: PathBuf,
    /// More flags for every node (block duration, bucket, ...).
    pub extra: Vec<String>,
}

pub fn ring_json(endpoints: &[String]) -> String {
    let list: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
    format!(
        "[{{\"hashring\": \"default\", \"endpoints\": [{}]}}]",
        list.join(", ")
    )
}

impl ReceivePool {
    /// `n` nodes' ports; the file lists `endpoints` (default: every node's gRPC address).
    pub fn new(dir: &Path, n: usize, endpoints: Option<Vec<String>>) -> ReceivePool {
        let ports: Vec<Ports> = (0..n).map(|_| Ports::new()).collect();
        let endpoints =
            endpoints.unwrap_or_else(|| ports.iter().map(|p| p.grpc.to_string()).collect());
        ReceivePool {
            dir: dir.to_path_buf(),
            ring_file: dir.join("hashrings.json"),
            ports,
            endpoints,
            nodes: (0..n).map(|_| None).collect(),
            extra: Vec::new(),
        }
    }

    pub fn start(&mut self, i: usize) {
        let dir = self.dir.join(format!("node{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut args = vec![
            format!("--receive.hashrings-file={}", self.ring_file.display()),
            format!("--receive.local-endpoint={}", self.endpoints[i]),
            "--receive.replication-factor=3".to_string(),
            "--receive.hashrings-file-refresh-interval=1s".to_string(),
            format!("--label=replica=\"r{i}\""),
        ];
        args.extend(self.extra.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.nodes[i] = Some(Cairn::receive_on(&dir, self.ports[i], &args));
    }

    /// Replaces the hashrings file atomically with one default hashring of `endpoints`.
    pub fn write_ring(&self, endpoints: &[String]) {
        let tmp = self.ring_file.with_extension("tmp");
        std::fs::write(&tmp, ring_json(endpoints)).unwrap();
        std::fs::rename(&tmp, &self.ring_file).unwrap();
    }

    /// Starts every node.
    pub fn start_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.start(i);
        }
    }

    pub fn node(&self, i: usize) -> &Cairn {
        self.nodes[i].as_ref().expect("node is running")
    }

    /// SIGKILL: no flush, no goodbye.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].take() {
            let _ = c.proc.child.kill();
            let _ = c.proc.child.wait();
        }
    }
}

/// A `cairn store` process over a bucket.
pub struct CairnStore {
    pub proc: Proc,
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    pub data_dir: PathBuf,
}

impl CairnStore {
    /// Starts `cairn store` with `objstore_yaml` (syncing every second) and waits until it is
    /// ready (its first sync with the bucket succeeded).
    pub fn start(dir: &Path, objstore_yaml: &str, extra: &[&str]) -> CairnStore {
        let http_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let grpc: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let data_dir = dir.join("store-data");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn"));
        cmd.arg("store")
            .arg(format!("--http-address={http_addr}"))
            .arg(format!("--grpc-address={grpc}"))
            .arg(format!("--data-dir={}", data_dir.display()))
            .arg(format!("--objstore.config={objstore_yaml}"))
            .arg("--sync-block-duration=1s")
            .args(extra)
            .env("CAIRN_LOG", "info");
        let mut proc = Proc::spawn("cairn-store", &mut cmd, dir);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if matches!(get(http_addr, "/-/ready"), Ok(r) if r.status == 200) {
                break;
            }
            if let Some(status) = proc.child.try_wait().unwrap() {
                panic!(
                    "cairn store exited early ({status}); log:\n{}",
                    proc.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "cairn store not ready; log:\n{}",
                proc.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        CairnStore {
            proc,
            http: http_addr,
            grpc,
            data_dir,
        }
    }

    /// Value of the first /metrics line starting with `prefix`.
    pub fn metric(&self, prefix: &str) -> Option<f64> {
        let m = get(self.http, "/metrics").ok()?;
        m.body
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }
}

/// A `cairn compact` process (one-shot unless `--wait` is among `extra`).
pub struct CairnCompact {
    pub proc: Proc,
    pub http: SocketAddr,
}

impl CairnCompact {
    /// Starts `cairn compact` over `objstore_yaml` with scratch space under `dir`, no
    /// consistency delay and no delete delay unless `extra` says otherwise.
    pub fn start(dir: &Path, objstore_yaml: &str, extra: &[&str]) -> CairnCompact {
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn"));
        cmd.arg("compact")
            .arg(format!("--http-address={http}"))
            .arg(format!("--data-dir={}", dir.join("compact-data").display()))
            .arg(format!("--objstore.config={objstore_yaml}"))
            .args(
                ["--consistency-delay=0s", "--delete-delay=0s"]
                    .into_iter()
                    .filter(|d| {
                        !extra
                            .iter()
                            .any(|e| e.starts_with(d.split('=').next().unwrap()))
                    }),
            )
            .args(extra)
            .env("CAIRN_LOG", "info");
        CairnCompact {
            proc: Proc::spawn("cairn-compact", &mut cmd, dir),
            http,
        }
    }

    /// Waits (bounded) for the process to exit and returns its status.
    pub fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.proc.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "cairn compact still running after {timeout:?}; log:\n{}",
                self.proc.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Value of the first /metrics line starting with `prefix`.
    pub fn metric(&self, prefix: &str) -> Option<f64> {
        let m = get(self.http, "/metrics").ok()?;
        m.body
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }
}

/// Copies a directory tree (a block, a TSDB) file by file.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// objstore.yml text for a local-directory bucket (made if missing).
pub fn filesystem_yaml(bucket: &Path) -> String {
    std::fs::create_dir_all(bucket).unwrap();
    format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        bucket.display()
    )
}

/// `cairn tools bucket upload` of every block under `blocks_dir` with the external `label`
/// (`name="value"`).
pub fn upload_blocks(yaml: &str, blocks_dir: &Path, label: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args([
            "tools",
            "bucket",
            &format!("--objstore.config={yaml}"),
            "upload",
        ])
        .arg(blocks_dir)
        .arg(format!("--label={label}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "upload: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A `cairn up` process (receiver, query layer, store gateway, compactor and the self-scrape in
/// one), every address on a free loopback port and its data in `dir`.
pub struct CairnUp {
    pub proc: Proc,
    pub remote_write: SocketAddr,
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    pub query: SocketAddr,
    pub store_grpc: SocketAddr,
    pub store_http: SocketAddr,
    pub compact_http: SocketAddr,
    pub data_dir: PathBuf,
}

impl CairnUp {
    /// Starts `cairn up` and waits until the receiver and the query layer are ready.
    pub fn start(dir: &Path, extra: &[&str]) -> CairnUp {
        let addr = || -> SocketAddr { format!("127.0.0.1:{}", free_port()).parse().unwrap() };
        let (remote_write, http_addr, grpc, query) = (addr(), addr(), addr(), addr());
        let (store_grpc, store_http, compact_http) = (addr(), addr(), addr());
        let data_dir = dir.join("data");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn"));
        cmd.arg("up")
            .arg(format!("--data-dir={}", data_dir.display()))
            .arg(format!("--remote-write.address={remote_write}"))
            .arg(format!("--http-address={http_addr}"))
            .arg(format!("--grpc-address={grpc}"))
            .arg(format!("--query.http-address={query}"))
            .arg(format!("--store.grpc-address={store_grpc}"))
            .arg(format!("--store.http-address={store_http}"))
            .arg(format!("--compact.http-address={compact_http}"))
            .args(extra)
            .env("CAIRN_LOG", "info");
        let mut proc = Proc::spawn("cairn-up", &mut cmd, dir);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = |a| matches!(get(a, "/-/ready"), Ok(r) if r.status == 200);
            if ready(http_addr) && ready(query) {
                break;
            }
            if let Some(status) = proc.child.try_wait().unwrap() {
                panic!(
                    "cairn up exited early ({status}); log:\n{}",
                    proc.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "cairn up not ready; log:\n{}",
                proc.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        CairnUp {
            proc,
            remote_write,
            http: http_addr,
            grpc,
            query,
            store_grpc,
            store_http,
            compact_http,
            data_dir,
        }
    }
}

fn chromium_command(profile: &Path) -> Command {
    let mut cmd = Command::new(require_binary("/usr/bin/chromium", "chromium"));
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--hide-scrollbars",
        "--window-size=1280,900",
        // Scripts get this much (virtual) time after load; network waits do not count.
        "--virtual-time-budget=10000",
        "--timeout=30000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    cmd
}

/// How often `needle` occurs in `haystack` (rendered DOM checks).
pub fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

/// From the first `open` in `html` to the first `close` after it (inclusive).
pub fn between<'a>(html: &'a str, open: &str, close: &str) -> &'a str {
    let start = html
        .find(open)
        .unwrap_or_else(|| panic!("{open} not in page:\n{html}"));
    let rest = &html[start..];
    &rest[..rest.find(close).map_or(rest.len(), |e| e + close.len())]
}

/// Loads `url` in headless Chromium, lets its scripts run, and returns the DOM.
pub fn chromium_dom(profile: &Path, url: &str) -> String {
    let out = chromium_command(profile)
        .arg("--dump-dom")
        .arg(url)
        .output()
        .expect("running chromium");
    let html = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        html.contains("</html>"),
        "chromium printed no page for {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    html
}

/// Loads `url` in headless Chromium and saves a PNG of the window to `file`.
pub fn chromium_screenshot(profile: &Path, url: &str, file: &Path) {
    let out = chromium_command(profile)
        .arg(format!("--screenshot={}", file.display()))
        .arg(url)
        .output()
        .expect("running chromium");
    let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 1000,
        "chromium wrote no screenshot of {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Where tests keep what a person may want to look at afterwards (screenshots):
/// `target/test-artifacts/`, beside Cargo's temp dir for integration tests.
pub fn artifact_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp.parent().unwrap_or(tmp).join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An `Authorization` header value for HTTP basic auth (encoded by coreutils' `base64`).
pub fn basic_auth(user: &str, password: &str) -> String {
    let out = Command::new("base64")
        .arg("-w0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    out.stdin
        .as_ref()
        .unwrap()
        .write_all(format!("{user}:{password}").as_bytes())
        .unwrap();
    let o = out.wait_with_output().unwrap();
    format!("Basic {}", String::from_utf8(o.stdout).unwrap().trim())
}
