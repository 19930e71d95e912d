//! `cairn tools hashring validate/plan/diff` on files the test writes.

use std::path::Path;
use std::process::{Command, Output};

fn cairn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["tools", "hashring"])
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("running cairn")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn write(dir: &Path, name: &str, content: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p.to_str().unwrap().to_string()
}

fn ring(addresses: &[&str]) -> String {
    let eps: Vec<String> = addresses.iter().map(|a| format!("{a:?}")).collect();
    format!(
        r#"[{{"hashring": "default", "endpoints": [{}]}}]"#,
        eps.join(", ")
    )
}

/// The percentage after `label` in the output, e.g. "primary owner changed: 39.63%".
fn percent_after(out: &str, label: &str) -> f64 {
    let i = out
        .find(label)
        .unwrap_or_else(|| panic!("{label:?} not in {out}"))
        + label.len();
    let rest = out[i..].trim_start();
    let end = rest.find('%').unwrap();
    rest[..end].parse().unwrap()
}

#[test]
fn validate_accepts_good_files_and_fails_on_problems() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(
        dir.path(),
        "good.json",
        r#"[{"hashring": "team-a", "tenants": ["team-a"], "endpoints": ["r0:10901", "r1:10901", "r2:10901"]},
            {"hashring": "teams", "tenants": ["team-*"], "tenant_matcher_type": "glob",
             "endpoints": [{"address": "r2:10901", "az": "a"}, {"address": "r3:10901", "az": "b"}, {"address": "r4:10901", "az": "c"}]},
            {"hashring": "default", "endpoints": ["r0:10901", "r1:10901", "r2:10901", "r3:10901", "r4:10901"]}]"#,
    );
    let o = cairn(&["validate", &good, "--replication-factor", "3"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(
        out.contains("OK: 3 hashring(s), 5 endpoint(s), replication factor 3"),
        "{out}"
    );

    // The design's incident: the default ring is a single node.
    let incident = write(
        dir.path(),
        "incident.json",
        r#"[{"hashring": "team-a", "tenants": ["team-a"], "endpoints": ["r0:10901", "r1:10901", "r2:10901"]},
            {"hashring": "default", "endpoints": ["r0:10901"]}]"#,
    );
    let o = cairn(&["validate", &incident]);
    let (out, err) = text(&o);
    assert!(!o.status.success());
    assert!(
        out.contains("incident: hashring \"team-a\": the default hashring \"default\" does not include 2 of this hashring's endpoints: r1:10901, r2:10901"),
        "{out}"
    );
    assert!(err.contains("1 problem(s)"), "{err}");

    let small = write(dir.path(), "small.json", &ring(&["r0:10901", "r1:10901"]));
    let o = cairn(&["validate", &small, "--replication-factor", "3"]);
    let (out, _) = text(&o);
    assert!(!o.status.success());
    assert!(
        out.contains(
            "error: hashring \"default\": 2 endpoint(s), fewer than the replication factor 3"
        ),
        "{out}"
    );

    let dup = write(
        dir.path(),
        "dup.json",
        &ring(&["r0:10901", "r1:10901", "r0:10901"]),
    );
    let o = cairn(&["validate", &dup]);
    assert!(!o.status.success());
    assert!(text(&o)
        .0
        .contains("endpoint \"r0:10901\" is listed more than once"));

    let broken = write(dir.path(), "broken.json", r#"[{"endpoints": ["r0:10901""#);
    let o = cairn(&["validate", &broken]);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("does not parse"), "{err}");

    let glob = write(
        dir.path(),
        "glob.json",
        r#"[{"tenants": ["team-["], "tenant_matcher_type": "glob", "endpoints": ["r0"]}, {"endpoints": ["r0"]}]"#,
    );
    let o = cairn(&["validate", &glob]);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("malformed glob \"team-[\""), "{err}");

    let hashmod_az = write(
        dir.path(),
        "hashmod-az.json",
        r#"[{"algorithm": "hashmod", "endpoints": [{"address": "r0", "az": "a"}, "r1"]}]"#,
    );
    let o = cairn(&["validate", &hashmod_az]);
    assert!(!o.status.success());
    assert!(text(&o).0.contains("does not support endpoints with an az"));

    let missing = dir.path().join("missing.json");
    let o = cairn(&["validate", missing.to_str().unwrap()]);
    assert!(!o.status.success());
}

#[test]
fn plan_prints_shares_and_skew() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "five.json",
        &ring(&["r0:10901", "r1:10901", "r2:10901", "r3:10901", "r4:10901"]),
    );
    let o = cairn(&[
        "plan",
        &file,
        "--series",
        "20000",
        "--replication-factor",
        "3",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("hashring \"default\" (ketama, 5 endpoints), replication factor 3: 20000 series of tenant \"default-tenant\""), "{out}");
    for r in ["r0:10901", "r1:10901", "r2:10901", "r3:10901", "r4:10901"] {
        let line = out.lines().find(|l| l.trim_start().starts_with(r)).unwrap();
        // Each endpoint holds ~3/5 of the series: columns endpoint, az, series, share, ...
        let share: f64 = line
            .split_whitespace()
            .nth(3)
            .unwrap()
            .trim_end_matches('%')
            .parse()
            .unwrap();
        assert!((share - 60.0).abs() < 6.0, "{line}");
    }
    let skew: f64 = out
        .split("max/mean ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1.0..1.1).contains(&skew), "{out}");

    // Supplied series, one tenant's hashring.
    let tenants = write(
        dir.path(),
        "tenants.json",
        r#"[{"hashring": "a", "tenants": ["team-a"], "algorithm": "hashmod", "endpoints": ["a0", "a1"]},
            {"hashring": "default", "endpoints": ["d0", "d1", "d2"]}]"#,
    );
    let series = write(
        dir.path(),
        "series.txt",
        "# two series\nup{job=\"api\", instance=\"a:1\"}\nup{job=\"api\", instance=\"b:1\"}\n",
    );
    let o = cairn(&[
        "plan",
        &tenants,
        "--tenant",
        "team-a",
        "--series-file",
        &series,
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("hashring \"a\" (hashmod, 2 endpoints), replication factor 1: 2 series of tenant \"team-a\""), "{out}");
    assert!(!out.contains("d0"), "{out}");
    // Without --tenant every hashring is planned.
    let o = cairn(&["plan", &tenants, "--series", "1000"]);
    let (out, _) = text(&o);
    assert!(
        out.contains("hashring \"a\"") && out.contains("hashring \"default\""),
        "{out}"
    );
}

#[test]
fn diff_measures_movement() {
    let dir = tempfile::tempdir().unwrap();
    let three = write(
        dir.path(),
        "three.json",
        &ring(&["r0:10901", "r1:10901", "r2:10901"]),
    );
    let five = write(
        dir.path(),
        "five.json",
        &ring(&["r0:10901", "r1:10901", "r2:10901", "r3:10901", "r4:10901"]),
    );
    let o = cairn(&["diff", &three, &five, "--series", "20000"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    let moved = percent_after(&out, "primary owner changed:");
    assert!(
        (moved - 40.0).abs() < 4.0,
        "3 -> 5 with ketama moves ~2/5: {out}"
    );
    let exact = percent_after(&out, "exact over the hash space: owners");
    assert!((exact - 40.0).abs() < 4.0, "{out}");
    assert!(
        out.contains("least possible primary movement 40.00%"),
        "{out}"
    );

    // hashmod on the same change moves most series.
    let o = cairn(&[
        "diff",
        &three,
        &five,
        "--series",
        "20000",
        "--algorithm",
        "hashmod",
    ]);
    let (out, _) = text(&o);
    assert!(
        percent_after(&out, "primary owner changed:") > 70.0,
        "{out}"
    );

    // Removing one of four endpoints moves ~1/4.
    let four = write(
        dir.path(),
        "four.json",
        &ring(&["r0:10901", "r1:10901", "r2:10901", "r3:10901"]),
    );
    let o = cairn(&["diff", &four, &three, "--series", "20000"]);
    let (out, _) = text(&o);
    let moved = percent_after(&out, "primary owner changed:");
    assert!((moved - 25.0).abs() < 5.0, "{out}");

    // The same file moves nothing.
    let o = cairn(&["diff", &three, &three, "--series", "1000", "--tenant", "x"]);
    let (out, _) = text(&o);
    assert_eq!(percent_after(&out, "owners changed:"), 0.0, "{out}");

    // An invalid file is an error.
    let bad = write(dir.path(), "bad.json", "[]");
    let o = cairn(&["diff", &three, &bad]);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("lists no hashrings"));
}

/// The hashrings file in `deploy/kubernetes`'s ConfigMap.
fn configmap_hashrings() -> String {
    let manifest = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/kubernetes/receive-hashrings.yaml"
    ))
    .unwrap();
    let doc: serde_json::Value = serde_saphyr::from_str(&manifest).unwrap();
    doc["data"]["hashrings.json"].as_str().unwrap().to_string()
}

fn generate(extra: &[&str]) -> Output {
    let mut args = vec![
        "generate",
        "--statefulset",
        "cairn-receive",
        "--service",
        "cairn-receive",
        "--namespace",
        "monitoring",
        "--series",
        "20000",
    ];
    args.extend_from_slice(extra);
    cairn(&args)
}

#[test]
fn generate_prints_the_configmaps_file_and_the_movement_of_a_scale_out() {
    let dir = tempfile::tempdir().unwrap();
    // Three replicas: exactly the file the Kubernetes manifests ship.
    let o = generate(&["--replicas", "3"]);
    let (three, err) = text(&o);
    assert!(o.status.success(), "{three}{err}");
    let parse = |t: &str| serde_json::from_str::<serde_json::Value>(t).unwrap();
    assert_eq!(parse(&three), parse(&configmap_hashrings()));
    assert!(err.contains("skew: max/mean"), "{err}");
    let current = write(dir.path(), "three.json", &three);

    // 3 -> 5: the file validates, and stderr tells how many series move.
    let o = generate(&["--replicas", "5", "--current", &current]);
    let (five, err) = text(&o);
    assert!(o.status.success(), "{five}{err}");
    let endpoints = parse(&five)[0]["endpoints"].as_array().unwrap().clone();
    assert_eq!(endpoints.len(), 5);
    assert_eq!(
        endpoints[4],
        "cairn-receive-4.cairn-receive.monitoring.svc.cluster.local:10901"
    );
    let moved = percent_after(&err, "primary owner changed:");
    // Two new receivers of five take about 2/5 of the primaries (ketama moves little more).
    assert!((35.0..46.0).contains(&moved), "{moved} {err}");
    let five_path = write(dir.path(), "five.json", &five);
    let o = cairn(&["validate", &five_path, "--replication-factor", "3"]);
    assert!(o.status.success(), "{:?}", text(&o));

    // Zones: pod i in zone i mod 3; uneven zones are warned about.
    let o = generate(&["--replicas", "6", "--zones", "a,b,c", "--port", "10907"]);
    let (six, err) = text(&o);
    assert!(o.status.success(), "{six}{err}");
    let six = parse(&six);
    assert_eq!(
        six[0]["endpoints"][4],
        serde_json::json!({"address": "cairn-receive-4.cairn-receive.monitoring.svc.cluster.local:10907", "az": "b"})
    );
    assert!(!err.contains("warning"), "{err}");
    let o = generate(&["--replicas", "5", "--zones", "a,b,c"]);
    let (_, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("warning: zones hold different numbers of receivers (a: 2, b: 2, c: 1)"),
        "{err}"
    );

    // Fewer receivers than copies per series: refused, as the receivers would refuse the file.
    let o = generate(&["--replicas", "2"]);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("not usable"), "{:?}", text(&o));
}
