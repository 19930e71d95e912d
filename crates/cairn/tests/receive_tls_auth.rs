//! TLS with client certificates and writer authentication, with real clients: vmagent (basic
//! auth as a writer bound to tenant team-a) and Prometheus 2.42 in agent mode (basic auth as an
//! unbound writer) push over mTLS; unauthenticated or cross-tenant writes are refused and never
//! reach storage.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{basic_auth as basic, https, snappy, Cairn, ExpositionServer, Pki};
use proto::remote_write::{encode_v1, Label, Sample, TimeSeries, WriteRequest};
use tsdb::db::{Db, DbOptions};
use tsdb::matcher::Matcher;
use tsdb::querier::Querier;

fn body(name: &str) -> Vec<u8> {
    // Now-ish, like the scraped samples, so no block is cut and aged out during the test.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let ts = TimeSeries {
        labels: vec![Label {
            name: "__name__",
            value: name,
        }],
        samples: vec![Sample {
            value: 1.0,
            timestamp: now,
        }],
        ..Default::default()
    };
    snappy(&encode_v1(&WriteRequest {
        timeseries: vec![ts],
        metadata: vec![],
    }))
}

#[test]
fn mtls_and_basic_auth_with_real_clients() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path());
    let hash = |s: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(["tools", "bcrypt", s, "--cost", "4"])
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let auth = dir.path().join("auth.yaml");
    std::fs::write(
        &auth,
        format!(
            "users:\n  - username: edge-a\n    password_hash: \"{}\"\n    tenant: team-a\n  - username: edge-any\n    password_hash: \"{}\"\n",
            hash("pw-a"),
            hash("pw-any")
        ),
    )
    .unwrap();
    let mut cairn = Cairn::receive_with_scheme(
        dir.path(),
        &[
            &format!(
                "--remote-write.server-tls-cert={}",
                pki.server_cert.display()
            ),
            &format!("--remote-write.server-tls-key={}", pki.server_key.display()),
            &format!("--remote-write.server-tls-client-ca={}", pki.ca.display()),
            &format!("--remote-write.auth-file={}", auth.display()),
        ],
    );
    let post = |with_cert: bool, headers: &[(&str, &str)], name: &str| {
        https(
            pki.client_config(with_cert),
            cairn.remote_write,
            "POST",
            "/api/v1/receive",
            headers,
            &body(name),
        )
    };

    // No client certificate: the handshake fails, nothing is written.
    assert!(post(false, &[], "no_cert").is_err());
    // No credentials: 401 with a challenge.
    let r = post(true, &[], "anonymous").unwrap();
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.header("WWW-Authenticate").unwrap().starts_with("Basic"));
    let r = post(
        true,
        &[("Authorization", &basic("edge-a", "wrong"))],
        "bad_password",
    )
    .unwrap();
    assert_eq!(r.status, 401);
    // A writer bound to team-a cannot write elsewhere.
    let a = basic("edge-a", "pw-a");
    let r = post(
        true,
        &[("Authorization", &a), ("THANOS-TENANT", "team-b")],
        "cross_tenant",
    )
    .unwrap();
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("team-b"));
    let r = post(true, &[("Authorization", &a)], "direct_a").unwrap();
    assert_eq!(r.status, 204, "{}", r.body);

    // Real clients over mTLS with basic auth.
    let target = ExpositionServer::start("demo_up{zone=\"x\"} 1\n".to_string());
    let url = format!(
        "https://127.0.0.1:{}/api/v1/receive",
        cairn.remote_write.port()
    );
    let tls = |indent: &str| {
        format!(
            "{indent}tls_config:\n{indent}  ca_file: {}\n{indent}  cert_file: {}\n{indent}  key_file: {}\n",
            pki.ca.display(),
            pki.client_cert.display(),
            pki.client_key.display()
        )
    };
    let extra = format!(
        "    basic_auth:\n      username: edge-any\n      password: pw-any\n{}",
        tls("    ")
    );
    let mut prom = common::prometheus_agent(dir.path(), "prom", target.addr, &url, &extra);
    let vm_args = [
        format!("-remoteWrite.tlsCAFile={}", pki.ca.display()),
        format!("-remoteWrite.tlsCertFile={}", pki.client_cert.display()),
        format!("-remoteWrite.tlsKeyFile={}", pki.client_key.display()),
        "-remoteWrite.basicAuth.username=edge-a".to_string(),
        "-remoteWrite.basicAuth.password=pw-a".to_string(),
    ];
    let mut vm = common::vmagent(dir.path(), "vm", target.addr, &url, &vm_args);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let a = cairn
            .metric("cairn_receive_samples_ingested_total{tenant=\"team-a\"}")
            .unwrap_or(0.0);
        let d = cairn
            .metric("cairn_receive_samples_ingested_total{tenant=\"default-tenant\"}")
            .unwrap_or(0.0);
        if a >= 4.0 && d >= 3.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no samples from the clients (team-a {a}, default {d})\ncairn:\n{}\nprometheus:\n{}\nvmagent:\n{}",
            cairn.proc.log_text(),
            prom.log_text(),
            vm.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    prom.terminate(Duration::from_secs(30));
    vm.terminate(Duration::from_secs(30));
    assert!(cairn.proc.terminate(Duration::from_secs(30)).success());

    let names = |tenant: &str| -> Vec<String> {
        let path = cairn.tsdb_path.join(tenant);
        if !path.exists() {
            return Vec::new();
        }
        let (db, _) = Db::open(
            &path,
            DbOptions {
                retention: None,
                ..Default::default()
            },
        )
        .unwrap();
        let q = db.querier(i64::MIN, i64::MAX);
        let mut v: Vec<String> = q
            .select(
                &[Matcher::regex(
                    "__name__",
                    "demo_up|direct_a|no_cert|anonymous|bad_password|cross_tenant",
                )
                .unwrap()],
                i64::MIN,
                i64::MAX,
            )
            .unwrap()
            .iter()
            .map(|s| {
                format!(
                    "{}@{}",
                    s.labels.metric_name().unwrap(),
                    s.labels.get("job").unwrap_or("-")
                )
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(names("team-a"), vec!["demo_up@vm", "direct_a@-"]);
    assert_eq!(names("default-tenant"), vec!["demo_up@prom"]);
    assert!(
        names("team-b").is_empty(),
        "a refused write created tenant team-b"
    );
}
