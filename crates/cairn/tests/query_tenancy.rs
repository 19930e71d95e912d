//! Tenant isolation on reads: with `--query.enforce-tenancy`, a request naming tenant A in its
//! tenant header sees A's series only, in every API, whatever matchers it sends (a regex over
//! `tenant_id` included); a request without the header is the default tenant's. The receiver's
//! StoreAPI enforces the tenant named in the gRPC metadata too, so a client that forwards a
//! tenant cannot read another one's series through it. With `--http.auth-file`, every request
//! needs credentials, and credentials bound to a tenant read that tenant only.

mod common;

use common::{
    basic_auth, get as get_plain, http, now_ms, query_string, remote_write, Cairn, CairnQuery,
};
use proto::thanos::store_client::StoreClient;
use proto::thanos::{label_matcher, LabelMatcher, SeriesRequest};

/// GET `path?params` with the tenant header (if any), parsed as JSON.
fn get(
    query: &CairnQuery,
    tenant: Option<&str>,
    path: &str,
    params: &[(&str, &str)],
) -> serde_json::Value {
    let headers: Vec<(&str, &str)> = tenant.map(|t| ("THANOS-TENANT", t)).into_iter().collect();
    let r = http(
        query.http,
        "GET",
        &format!("{path}?{}", query_string(params)),
        &headers,
        &[],
    )
    .unwrap();
    assert_eq!(r.status, 200, "{path} {params:?}: {}", r.body);
    serde_json::from_str(&r.body).unwrap()
}

/// The `tenant_id` of every series of an instant query.
fn tenants_of(v: &serde_json::Value) -> Vec<String> {
    let mut out: Vec<String> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["metric"]["tenant_id"].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

/// A receiver holding `tenancy_shared` and `tenancy_<tenant>` for team-a, team-b and the
/// default tenant, written at `t - 1s`.
fn receiver_with_three_tenants(dir: &std::path::Path, t: i64) -> Cairn {
    let cairn = Cairn::receive(dir, &[]);
    for tenant in [Some("team-a"), Some("team-b"), None] {
        let name = format!("tenancy_{}", tenant.unwrap_or("default").replace('-', "_"));
        let series = vec![
            (
                vec![
                    ("__name__".to_string(), "tenancy_shared".to_string()),
                    ("job".to_string(), "j".to_string()),
                ],
                vec![(t - 1000, 1.0)],
            ),
            (
                vec![
                    ("__name__".to_string(), name),
                    ("job".to_string(), "j".to_string()),
                ],
                vec![(t - 1000, 1.0)],
            ),
        ];
        remote_write(cairn.remote_write, tenant, &series);
    }
    cairn
}

#[test]
fn a_tenant_sees_its_own_series_only_in_every_api() {
    let dir = tempfile::tempdir().unwrap();
    let t = now_ms();
    let cairn = receiver_with_three_tenants(dir.path(), t);

    // Without enforcement the query layer sees every tenant.
    for d in ["open", "enforced"] {
        std::fs::create_dir_all(dir.path().join(d)).unwrap();
    }
    let open = CairnQuery::start(&dir.path().join("open"), &[cairn.grpc], &[]);
    let all = get(
        &open,
        Some("team-a"),
        "/api/v1/query",
        &[("query", "tenancy_shared")],
    );
    assert_eq!(tenants_of(&all), ["default-tenant", "team-a", "team-b"]);

    let query = CairnQuery::start(
        &dir.path().join("enforced"),
        &[cairn.grpc],
        &["--query.enforce-tenancy"],
    );
    let a = Some("team-a");
    for q in [
        "tenancy_shared",
        r#"{__name__=~"tenancy_.*"}"#,
        r#"tenancy_shared{tenant_id=~".+"}"#,
        r#"tenancy_shared{tenant_id=~"team-.*|default-tenant"}"#,
        r#"{tenant_id!="team-a", job="j"} or tenancy_shared"#,
    ] {
        let v = get(&query, a, "/api/v1/query", &[("query", q)]);
        let tenants = tenants_of(&v);
        assert!(
            !tenants.is_empty() && tenants.iter().all(|t| t == "team-a"),
            "{q}: {tenants:?}"
        );
    }
    let other = get(
        &query,
        a,
        "/api/v1/query",
        &[("query", r#"tenancy_shared{tenant_id="team-b"}"#)],
    );
    assert_eq!(tenants_of(&other), Vec::<String>::new());
    // No header: the default tenant.
    let none = get(
        &query,
        None,
        "/api/v1/query",
        &[("query", "tenancy_shared")],
    );
    assert_eq!(tenants_of(&none), ["default-tenant"]);

    let (start, end) = (((t - 60_000) / 1000).to_string(), (t / 1000).to_string());
    let range = get(
        &query,
        a,
        "/api/v1/query_range",
        &[
            ("query", r#"{tenant_id=~".*", job="j"}"#),
            ("start", &start),
            ("end", &end),
            ("step", "15"),
        ],
    );
    let tenants = tenants_of(&range);
    assert!(
        !tenants.is_empty() && tenants.iter().all(|t| t == "team-a"),
        "{tenants:?}"
    );

    let series = get(&query, a, "/api/v1/series", &[("match[]", r#"{job="j"}"#)]);
    let names: Vec<&str> = series["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["__name__"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{series}");
    assert!(series["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["tenant_id"] == "team-a"));
    assert!(!names.contains(&"tenancy_team_b"), "{names:?}");

    let values = get(&query, a, "/api/v1/label/tenant_id/values", &[]);
    assert_eq!(values["data"], serde_json::json!(["team-a"]));
    let metric_names = get(&query, a, "/api/v1/label/__name__/values", &[]);
    assert_eq!(
        metric_names["data"],
        serde_json::json!(["tenancy_shared", "tenancy_team_a"])
    );
    let labels = get(
        &query,
        Some("team-b"),
        "/api/v1/labels",
        &[("match[]", "tenancy_team_a")],
    );
    assert_eq!(
        labels["data"],
        serde_json::json!([]),
        "team-b asking for team-a's series"
    );

    // The receiver enforces the tenant in the gRPC metadata on its own.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let names_for = |tenant: &str, matchers: Vec<LabelMatcher>| -> Vec<String> {
        rt.block_on(async {
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", cairn.grpc))
                .unwrap()
                .connect()
                .await
                .unwrap();
            let mut request = tonic::Request::new(SeriesRequest {
                min_time: i64::MIN,
                max_time: i64::MAX,
                matchers,
                skip_chunks: true,
                ..Default::default()
            });
            request
                .metadata_mut()
                .insert("thanos-tenant", tenant.parse().unwrap());
            let mut stream = StoreClient::new(channel)
                .series(request)
                .await
                .unwrap()
                .into_inner();
            let mut out = Vec::new();
            while let Some(msg) = stream.message().await.unwrap() {
                if let Some(proto::thanos::series_response::Result::Series(s)) = msg.result {
                    let get = |n: &str| {
                        s.labels
                            .iter()
                            .find(|l| l.name == n)
                            .map(|l| l.value.clone())
                            .unwrap_or_default()
                    };
                    out.push(format!("{}/{}", get("tenant_id"), get("__name__")));
                }
            }
            out.sort();
            out
        })
    };
    let matcher = |name: &str, t: label_matcher::Type, value: &str| LabelMatcher {
        r#type: t as i32,
        name: name.into(),
        value: value.into(),
    };
    assert_eq!(
        names_for(
            "team-b",
            vec![matcher("__name__", label_matcher::Type::Re, "tenancy_.*")]
        ),
        ["team-b/tenancy_shared", "team-b/tenancy_team_b"]
    );
    assert_eq!(
        names_for(
            "team-b",
            vec![
                matcher("__name__", label_matcher::Type::Re, "tenancy_.*"),
                matcher("tenant_id", label_matcher::Type::Eq, "team-a"),
            ]
        ),
        Vec::<String>::new()
    );
}

#[test]
fn credentials_bound_to_a_tenant_read_that_tenant_only() {
    let dir = tempfile::tempdir().unwrap();
    let t = now_ms();
    let cairn = receiver_with_three_tenants(dir.path(), t);
    let hash = |s: &str| bcrypt::hash(s, 4).unwrap();
    let auth_file = dir.path().join("query-auth.yaml");
    std::fs::write(
        &auth_file,
        format!(
            "users:\n  - username: alice\n    password_hash: \"{}\"\n    tenant: team-a\n  - username: admin\n    password_hash: \"{}\"\ntokens:\n  - name: grafana-b\n    token_hash: \"{}\"\n    tenant: team-b\n",
            hash("alice-pw"),
            hash("admin-pw"),
            hash("tok-b"),
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("q")).unwrap();
    let query = CairnQuery::start(
        &dir.path().join("q"),
        &[cairn.grpc],
        &[&format!("--http.auth-file={}", auth_file.display())],
    );
    let ask = |headers: &[(&str, &str)], q: &str| {
        let r = http(
            query.http,
            "GET",
            &format!("/api/v1/query?{}", query_string(&[("query", q)])),
            headers,
            &[],
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
        (
            r.status,
            v,
            r.header("www-authenticate").map(str::to_string),
        )
    };

    // No or wrong credentials: 401 with a challenge, on the API and the UI alike.
    let (status, v, challenge) = ask(&[], "tenancy_shared");
    assert_eq!(status, 401, "{v}");
    assert_eq!(v["errorType"], "unauthorized");
    assert!(challenge.unwrap().starts_with("Basic"));
    let wrong = basic_auth("alice", "nope");
    assert_eq!(ask(&[("Authorization", &wrong)], "up").0, 401);
    assert_eq!(get_plain(query.http, "/").unwrap().status, 401);
    // Probes and /metrics stay open.
    for path in ["/-/healthy", "/-/ready", "/metrics"] {
        assert_eq!(get_plain(query.http, path).unwrap().status, 200, "{path}");
    }

    // alice is bound to team-a: whatever she asks, she reads team-a, and naming another
    // tenant is refused.
    let alice = basic_auth("alice", "alice-pw");
    for q in ["tenancy_shared", r#"{tenant_id=~".+", job="j"}"#] {
        let (status, v, _) = ask(&[("Authorization", &alice)], q);
        assert_eq!(status, 200, "{v}");
        let tenants = tenants_of(&v);
        assert!(
            !tenants.is_empty() && tenants.iter().all(|t| t == "team-a"),
            "{q}: {tenants:?}"
        );
    }
    let (status, v, _) = ask(
        &[("Authorization", &alice), ("THANOS-TENANT", "team-b")],
        "tenancy_shared",
    );
    assert_eq!(status, 403, "{v}");
    assert!(v["error"].as_str().unwrap().contains("team-a"), "{v}");
    let (status, _, _) = ask(
        &[("Authorization", &alice), ("THANOS-TENANT", "team-a")],
        "tenancy_shared",
    );
    assert_eq!(status, 200);

    // A bearer token bound to team-b.
    let (status, v, _) = ask(&[("Authorization", "Bearer tok-b")], "tenancy_shared");
    assert_eq!(status, 200, "{v}");
    assert_eq!(tenants_of(&v), ["team-b"]);

    // An unbound user reads every tenant (tenancy is not enforced here).
    let admin = basic_auth("admin", "admin-pw");
    let (status, v, _) = ask(&[("Authorization", &admin)], "tenancy_shared");
    assert_eq!(status, 200, "{v}");
    assert_eq!(tenants_of(&v), ["default-tenant", "team-a", "team-b"]);

    // The admin pages name every tenant: unbound credentials only.
    for path in ["/api/v1/stores", "/api/v1/status/cluster"] {
        let status_for = |auth: &str| {
            http(query.http, "GET", path, &[("Authorization", auth)], &[])
                .unwrap()
                .status
        };
        assert_eq!(status_for(&admin), 200, "{path}");
        assert_eq!(status_for(&alice), 403, "{path}");
        assert_eq!(status_for("Bearer tok-b"), 403, "{path}");
    }
}
