//! Real remote-write clients on loopback: vmagent 1.79 (with a tenant header) and Prometheus 2.42
//! in agent mode (without) scrape a page the test serves and push to `cairn receive`; every
//! scraped series is found in the right tenant's TSDB afterwards.
//!
//! Debian's Prometheus 2.42.0+ds does not send the `headers` of a remote_write section
//! (prometheus/prometheus#13030), so the tenant header comes from vmagent here.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Cairn, ExpositionServer};
use tsdb::db::{Db, DbOptions};
use tsdb::matcher::Matcher;
use tsdb::querier::Querier;

fn exposition() -> (String, Vec<String>) {
    let mut text = String::new();
    let mut names = Vec::new();
    text.push_str("# HELP demo_requests_total Requests.\n# TYPE demo_requests_total counter\n");
    for path in ["/a", "/b", "/c"] {
        for code in ["200", "500"] {
            text.push_str(&format!(
                "demo_requests_total{{path=\"{path}\",code=\"{code}\"}} 42\n"
            ));
            names.push(format!(
                "demo_requests_total{{code={code:?}, path={path:?}}}"
            ));
        }
    }
    text.push_str("# TYPE demo_temperature gauge\n");
    for room in 0..10 {
        text.push_str(&format!(
            "demo_temperature{{room=\"r{room}\"}} {}.5\n",
            20 + room
        ));
        names.push(format!("demo_temperature{{room=\"r{room}\"}}"));
    }
    (text, names)
}

/// The scraped series of one job in a tenant: labels rendered without job/instance.
fn scraped(db: &Db, job: &str) -> (BTreeSet<String>, usize) {
    let q = db.querier(i64::MIN, i64::MAX);
    let series = q
        .select(
            &[
                Matcher::equal("job", job),
                Matcher::regex("__name__", "demo_.*").unwrap(),
            ],
            i64::MIN,
            i64::MAX,
        )
        .unwrap();
    let mut samples = 0;
    let names = series
        .iter()
        .map(|s| {
            assert!(
                s.labels.get("instance").is_some(),
                "{} has no instance label",
                s.labels
            );
            samples += s.samples(i64::MIN, i64::MAX).len();
            let l = s.labels.without(&["__name__", "job", "instance"]);
            let inner = l.to_string();
            format!("{}{}", s.labels.metric_name().unwrap(), inner)
        })
        .collect();
    (names, samples)
}

#[test]
fn prometheus_agent_and_vmagent_write_into_their_tenants() {
    let dir = tempfile::tempdir().unwrap();
    let (text, expected) = exposition();
    let target = ExpositionServer::start(text);
    let mut cairn = Cairn::receive(dir.path(), &[]);
    let url = format!("http://{}/api/v1/receive", cairn.remote_write);

    let mut prom = common::prometheus_agent(dir.path(), "prom-demo", target.addr, &url, "");
    let tenant = ["-remoteWrite.headers=X-Prometheus-Remote-Write-Tenant: team-a".to_string()];
    let mut vm = common::vmagent(dir.path(), "vm-demo", target.addr, &url, &tenant);

    // Three scrapes' worth of every series from both clients.
    let want = (expected.len() * 3) as f64;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let a = cairn
            .metric("cairn_receive_samples_ingested_total{tenant=\"team-a\"}")
            .unwrap_or(0.0);
        let d = cairn
            .metric("cairn_receive_samples_ingested_total{tenant=\"default-tenant\"}")
            .unwrap_or(0.0);
        if a >= want && d >= want {
            break;
        }
        if std::time::Instant::now() > deadline {
            panic!(
                "timed out waiting for samples (team-a {a}, default {d}, want {want} each)\n\
                 cairn /metrics:\n{}\ncairn log:\n{}\nprometheus log:\n{}\nvmagent log:\n{}",
                common::get(cairn.http, "/metrics")
                    .map(|r| r.body)
                    .unwrap_or_default(),
                cairn.proc.log_text(),
                prom.log_text(),
                vm.log_text()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    prom.terminate(Duration::from_secs(30));
    vm.terminate(Duration::from_secs(30));
    let rejected = cairn.metric("cairn_receive_samples_rejected_total");
    assert!(
        cairn.proc.terminate(Duration::from_secs(30)).success(),
        "{}",
        cairn.proc.log_text()
    );

    let want: BTreeSet<String> = expected.into_iter().collect();
    let open = |tenant: &str| {
        Db::open(
            &cairn.tsdb_path.join(tenant),
            DbOptions {
                retention: None,
                ..Default::default()
            },
        )
        .unwrap()
        .0
    };
    let team_a = open("team-a");
    let (names, samples) = scraped(&team_a, "vm-demo");
    assert_eq!(names, want, "vmagent's series in tenant team-a");
    assert!(samples >= want.len() * 3);
    assert!(
        scraped(&team_a, "prom-demo").0.is_empty(),
        "Prometheus' series leaked into team-a"
    );
    let default = open("default-tenant");
    let (names, samples) = scraped(&default, "prom-demo");
    assert_eq!(
        names, want,
        "Prometheus agent's series in the default tenant"
    );
    assert!(samples >= want.len() * 3);
    assert!(
        scraped(&default, "vm-demo").0.is_empty(),
        "vmagent's series leaked into the default tenant"
    );
    assert_eq!(
        team_a.blocks()[0].meta().thanos.as_ref().unwrap().labels["tenant_id"],
        "team-a"
    );
    assert_eq!(rejected, None, "no sample should have been rejected");
}
