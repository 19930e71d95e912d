//! Placement against Thanos: fixed expectations, distribution and movement.

use super::analysis::{exact_movement, synthetic_series, Distribution, Movement};
use super::ring::{HashmodRing, KetamaRing};
use super::*;

/// A series' labels (or endpoints with zones) in a test table.
type Pairs = [(&'static str, &'static str)];

/// (endpoints, algorithm, replication factor, series index, expected owners)
type PlacementRow<'a> = (&'a Vec<Endpoint>, Algorithm, usize, usize, &'a [&'a str]);

fn endpoints(addresses: &[&str]) -> Vec<Endpoint> {
    addresses.iter().map(|a| Endpoint::new(a)).collect()
}

fn zoned(pairs: &[(&str, &str)]) -> Vec<Endpoint> {
    pairs.iter().map(|(a, z)| Endpoint::with_az(a, z)).collect()
}

fn owners_of(ring: &Hashring, hash: u64) -> Vec<&str> {
    ring.owners(hash).map(|e| e.address.as_str()).collect()
}

fn pairs<'a>(labels: &'a [(&'a str, &'a str)]) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
    labels.iter().copied()
}

fn synthetic_hashes(tenant: &str, n: u64) -> Vec<u64> {
    (0..n)
        .map(|i| {
            let s = synthetic_series(i);
            series_hash(tenant, s.iter().map(|(a, b)| (a.as_str(), b.as_str())))
        })
        .collect()
}

#[test]
fn series_hash_is_xxhash64_of_tenant_and_labels_with_0xff_separators() {
    // xxHash64's published test vector: the empty input with seed 0.
    assert_eq!(xxhash_rust::xxh64::xxh64(b"", 0), 0xEF46_DB37_51D8_E999);
    let manual = xxhash_rust::xxh64::xxh64(b"t\xffa\xffb\xffc\xffd\xff", 0);
    assert_eq!(series_hash("t", [("a", "b"), ("c", "d")]), manual);
    // Values from an independent implementation of Thanos' labelpb.HashWithPrefix (Python's
    // xxhash binding over the same byte sequence).
    let cases: &[(&str, &Pairs, u64)] = &[
        (
            "default-tenant",
            &[
                ("__name__", "up"),
                ("instance", "10.0.0.1:9100"),
                ("job", "node"),
            ],
            8657129961809366156,
        ),
        (
            "team-a",
            &[
                ("__name__", "http_requests_total"),
                ("code", "200"),
                ("handler", "/api"),
                ("method", "GET"),
            ],
            14702078460197236332,
        ),
        ("", &[("a", "b")], 14830090537182641481),
        ("team-b", &[], 12607172640189100029),
        ("ünïcode", &[("pod", "nginx-7d9f")], 15742519087079092081),
        ("tenant", &[("pod", "nginx")], 2721383669947386403),
        ("tenant", &[("pod", "thanos")], 15248111468711021632),
    ];
    for (tenant, labels, want) in cases {
        assert_eq!(
            series_hash(tenant, pairs(labels)),
            *want,
            "{tenant} {labels:?}"
        );
    }
    // A long series hashes the same whatever the buffering (Thanos switches to streaming
    // past 1 KiB).
    let long = "x".repeat(5000);
    let streamed = series_hash("t", [("a", long.as_str()), ("b", "c")]);
    let mut bytes = b"t\xffa\xff".to_vec();
    bytes.extend_from_slice(long.as_bytes());
    bytes.extend_from_slice(b"\xffb\xffc\xff");
    assert_eq!(streamed, xxhash_rust::xxh64::xxh64(&bytes, 0));
    // tsdb::Labels hash in their (sorted) order.
    let l = tsdb::labels::Labels::from_pairs([
        ("job", "node"),
        ("__name__", "up"),
        ("instance", "10.0.0.1:9100"),
    ]);
    assert_eq!(labels_hash("default-tenant", &l), 8657129961809366156);
}

/// Thanos' own expectations (`TestKetamaHashringGet`, rings of 10 sections per node, built
/// for replication factor n+1).
#[test]
fn ketama_matches_thanos_test_expectations() {
    let nginx = series_hash("tenant", [("pod", "nginx")]);
    let thanos = series_hash("tenant", [("pod", "thanos")]);
    let cases: &[(&[&str], u64, usize, &str)] = &[
        (&["node-1", "node-2", "node-3"], nginx, 0, "node-2"),
        (&["node-1", "node-2", "node-3"], nginx, 1, "node-1"),
        (&["node-1", "node-2", "node-3"], nginx, 2, "node-3"),
        (&["node-1", "node-3", "node-2"], nginx, 2, "node-3"),
        (
            &["node-0", "node-1", "node-2", "node-3"],
            nginx,
            0,
            "node-2",
        ),
        (
            &["node-1", "node-2", "node-3", "node-4"],
            nginx,
            0,
            "node-2",
        ),
        (&["node-1", "node-2", "node-3"], thanos, 0, "node-3"),
    ];
    for &(eps, hash, n, want) in cases {
        let ring = Hashring::Ketama(KetamaRing::with_sections(endpoints(eps), 10, n + 1).unwrap());
        assert_eq!(ring.get_n(hash, n).unwrap().address, want, "{eps:?} n={n}");
        assert!(ring.get_n(hash, n + 1).is_none());
    }
    // Thanos' TestKetamaHashringBadConfigIsRejected.
    assert!(KetamaRing::with_sections(endpoints(&["node-1"]), 1, 2).is_err());
}

const E3: &[&str] = &[
    "receive-0.receive.monitoring.svc.cluster.local:10901",
    "receive-1.receive.monitoring.svc.cluster.local:10901",
    "receive-2.receive.monitoring.svc.cluster.local:10901",
];
const E5: &[&str] = &[
    "receive-0.receive.monitoring.svc.cluster.local:10901",
    "receive-1.receive.monitoring.svc.cluster.local:10901",
    "receive-2.receive.monitoring.svc.cluster.local:10901",
    "receive-3.receive.monitoring.svc.cluster.local:10901",
    "receive-4.receive.monitoring.svc.cluster.local:10901",
];
const AZ6: &[(&str, &str)] = &[
    ("r-a1:10901", "eu-1a"),
    ("r-b1:10901", "eu-1b"),
    ("r-c1:10901", "eu-1c"),
    ("r-a2:10901", "eu-1a"),
    ("r-b2:10901", "eu-1b"),
    ("r-c2:10901", "eu-1c"),
];
/// Endpoints with and without a zone: "no az" is a zone of its own.
const MIX4: &[(&str, &str)] = &[
    ("m-0:10901", "z1"),
    ("m-1:10901", ""),
    ("m-2:10901", "z1"),
    ("m-3:10901", ""),
];

/// Placement of fixed series on fixed rings with 1000 sections per endpoint, as Thanos'
/// algorithm gives it. The expected owners were derived by running an independent
/// re-statement of Thanos' hashring.go (Python, with the reference xxHash64) on the same
/// inputs; the same re-statement reproduces every expectation of Thanos' own tests above.
#[test]
fn placement_table() {
    let series: &[(&str, &[(&str, &str)])] = &[
        (
            "default-tenant",
            &[
                ("__name__", "up"),
                ("instance", "10.0.0.1:9100"),
                ("job", "node"),
            ],
        ),
        (
            "team-a",
            &[
                ("__name__", "http_requests_total"),
                ("code", "200"),
                ("handler", "/api"),
                ("method", "GET"),
            ],
        ),
        ("", &[("a", "b")]),
        ("team-b", &[]),
        ("ünïcode", &[("pod", "nginx-7d9f")]),
    ];
    let e3 = endpoints(E3);
    let e5 = endpoints(E5);
    let az6 = zoned(AZ6);
    let mix4 = zoned(MIX4);
    // "receive-N" stands for E3/E5's long addresses.
    #[rustfmt::skip]
    let table: &[PlacementRow<'_>] = &[
        (&e3, Algorithm::Ketama, 3, 0, &["receive-1", "receive-0", "receive-2"]),
        (&e3, Algorithm::Ketama, 3, 1, &["receive-1", "receive-0", "receive-2"]),
        (&e3, Algorithm::Ketama, 3, 2, &["receive-1", "receive-2", "receive-0"]),
        (&e3, Algorithm::Ketama, 3, 3, &["receive-2", "receive-1", "receive-0"]),
        (&e3, Algorithm::Ketama, 3, 4, &["receive-2", "receive-0", "receive-1"]),
        (&e3, Algorithm::Hashmod, 3, 0, &["receive-2", "receive-0", "receive-1"]),
        (&e3, Algorithm::Hashmod, 3, 1, &["receive-0", "receive-1", "receive-2"]),
        (&e3, Algorithm::Hashmod, 3, 2, &["receive-0", "receive-1", "receive-2"]),
        (&e3, Algorithm::Hashmod, 3, 3, &["receive-0", "receive-1", "receive-2"]),
        (&e3, Algorithm::Hashmod, 3, 4, &["receive-1", "receive-2", "receive-0"]),
        (&e5, Algorithm::Ketama, 2, 0, &["receive-3", "receive-1"]),
        (&e5, Algorithm::Ketama, 2, 1, &["receive-1", "receive-4"]),
        (&e5, Algorithm::Ketama, 2, 2, &["receive-1", "receive-2"]),
        (&e5, Algorithm::Ketama, 2, 3, &["receive-4", "receive-3"]),
        (&e5, Algorithm::Ketama, 2, 4, &["receive-2", "receive-4"]),
        (&e5, Algorithm::Hashmod, 2, 0, &["receive-1", "receive-2"]),
        (&e5, Algorithm::Hashmod, 2, 1, &["receive-2", "receive-3"]),
        (&e5, Algorithm::Hashmod, 2, 2, &["receive-1", "receive-2"]),
        (&e5, Algorithm::Hashmod, 2, 3, &["receive-4", "receive-0"]),
        (&e5, Algorithm::Hashmod, 2, 4, &["receive-1", "receive-2"]),
        (&e5, Algorithm::Ketama, 1, 0, &["receive-3"]),
        (&e5, Algorithm::Ketama, 1, 1, &["receive-1"]),
        (&e5, Algorithm::Ketama, 1, 2, &["receive-1"]),
        (&e5, Algorithm::Ketama, 1, 3, &["receive-4"]),
        (&e5, Algorithm::Ketama, 1, 4, &["receive-2"]),
        (&az6, Algorithm::Ketama, 3, 0, &["r-c1:10901", "r-b2:10901", "r-a1:10901"]),
        (&az6, Algorithm::Ketama, 3, 1, &["r-b2:10901", "r-a1:10901", "r-c2:10901"]),
        (&az6, Algorithm::Ketama, 3, 2, &["r-c1:10901", "r-a1:10901", "r-b1:10901"]),
        (&az6, Algorithm::Ketama, 3, 3, &["r-c2:10901", "r-a1:10901", "r-b1:10901"]),
        (&az6, Algorithm::Ketama, 3, 4, &["r-c2:10901", "r-a1:10901", "r-b2:10901"]),
        (&az6, Algorithm::Ketama, 2, 0, &["r-c1:10901", "r-b2:10901"]),
        (&az6, Algorithm::Ketama, 2, 1, &["r-b2:10901", "r-a1:10901"]),
        (&az6, Algorithm::Ketama, 2, 2, &["r-c1:10901", "r-a1:10901"]),
        (&az6, Algorithm::Ketama, 2, 3, &["r-c2:10901", "r-a1:10901"]),
        (&az6, Algorithm::Ketama, 2, 4, &["r-c2:10901", "r-a1:10901"]),
        (&mix4, Algorithm::Ketama, 3, 0, &["m-3:10901", "m-0:10901", "m-1:10901"]),
        (&mix4, Algorithm::Ketama, 3, 1, &["m-0:10901", "m-1:10901", "m-3:10901"]),
        (&mix4, Algorithm::Ketama, 3, 2, &["m-0:10901", "m-3:10901", "m-2:10901"]),
        (&mix4, Algorithm::Ketama, 3, 3, &["m-0:10901", "m-1:10901", "m-2:10901"]),
        (&mix4, Algorithm::Ketama, 3, 4, &["m-0:10901", "m-1:10901", "m-3:10901"]),
    ];
    let expand = |a: &str| -> String {
        if a.starts_with("receive-") {
            format!("{a}.receive.monitoring.svc.cluster.local:10901")
        } else {
            a.to_string()
        }
    };
    let mut rings = std::collections::HashMap::new();
    for &(eps, algorithm, rf, s, want) in table {
        let ring = rings
            .entry((eps.as_ptr(), algorithm, rf))
            .or_insert_with(|| Hashring::new(algorithm, eps.clone(), rf).unwrap());
        let (tenant, labels) = series[s];
        let got = owners_of(ring, series_hash(tenant, pairs(labels)));
        let want: Vec<String> = want.iter().map(|a| expand(a)).collect();
        assert_eq!(got, want, "{algorithm} rf={rf} series {s} on {eps:?}");
    }
}

#[test]
fn hashmod_sorts_endpoints_and_wraps_like_go_uint64() {
    let ring = Hashring::Hashmod(HashmodRing::new(endpoints(&["c", "a", "b"]), 2).unwrap());
    let addrs: Vec<&str> = ring
        .endpoints()
        .iter()
        .map(|e| e.address.as_str())
        .collect();
    assert_eq!(addrs, ["a", "b", "c"]);
    assert_eq!(owners_of(&ring, 4), ["b", "c"]);
    assert_eq!(owners_of(&ring, 5), ["c", "a"]);
    // (2^64-1) mod 3 = 0, and 2^64-1 + 1 wraps to 0 in Go's uint64: Thanos gives replica 0 and
    // replica 1 to the same endpoint for this one hash, and so does Cairn.
    assert_eq!(owners_of(&ring, u64::MAX), ["a", "a"]);
    assert_eq!(
        HashmodRing::new(zoned(&[("a", "1"), ("b", "2")]), 1).unwrap_err(),
        ProblemKind::HashmodWithAz
    );
}

/// Thanos' `TestHashringGet`: which hashring (and so which nodes) a tenant goes to.
#[test]
fn tenant_matching_follows_thanos() {
    let labels = [("foo", "bar"), ("baz", "qux")];
    let cases: &[(&str, &str, Option<&[&str]>)] = &[
        (r#"[{"endpoints": ["node1"]}]"#, "", Some(&["node1"])),
        (
            r#"[{"endpoints": ["node2"], "tenants": ["tenant2"]}, {"endpoints": ["node1"]}]"#,
            "tenant2",
            Some(&["node2"]),
        ),
        (
            r#"[{"endpoints": ["node1"], "tenants": ["tenant1"]},
                {"endpoints": ["node2"], "tenants": ["tenant2"]},
                {"endpoints": ["node3"], "tenants": ["tenant3"]}]"#,
            "tenant1",
            Some(&["node1"]),
        ),
        (
            r#"[{"endpoints": ["node1"], "tenants": ["tenant1"]},
                {"endpoints": ["node2"], "tenants": ["tenant2"]},
                {"endpoints": ["node3"], "tenants": ["tenant3"]}]"#,
            "tenant4",
            None,
        ),
        (
            r#"[{"endpoints": ["node1", "node2", "node3"], "tenants": ["tenant1"]},
                {"endpoints": ["node4", "node5", "node6"]}]"#,
            "tenant1",
            Some(&["node1", "node2", "node3"]),
        ),
        (
            r#"[{"endpoints": ["node1", "node2", "node3"], "tenants": ["tenant1"]},
                {"endpoints": ["node4", "node5", "node6"]}]"#,
            "",
            Some(&["node4", "node5", "node6"]),
        ),
        (
            r#"[{"endpoints": ["node1", "node2", "node3"], "tenants": ["prefix*"], "tenant_matcher_type": "glob"},
                {"endpoints": ["node4", "node5", "node6"]}]"#,
            "prefix-1",
            Some(&["node1", "node2", "node3"]),
        ),
        (
            r#"[{"endpoints": ["node1", "node2", "node3"], "tenants": ["prefix*"], "tenant_matcher_type": "glob"},
                {"endpoints": ["node4", "node5", "node6"]}]"#,
            "suffix-1",
            Some(&["node4", "node5", "node6"]),
        ),
        (
            r#"[{"endpoints": ["node1", "node2", "node3"], "tenants": ["t1-*", "t2", "t3-*"], "tenant_matcher_type": "glob"},
                {"endpoints": ["node4", "node5", "node6"]}]"#,
            "t2",
            Some(&["node1", "node2", "node3"]),
        ),
        // An exact hashring does not treat its tenants as patterns.
        (
            r#"[{"endpoints": ["node1"], "tenants": ["prefix*"]}, {"endpoints": ["node4"]}]"#,
            "prefix-1",
            Some(&["node4"]),
        ),
        (
            r#"[{"endpoints": ["node1"], "tenants": ["prefix*"]}, {"endpoints": ["node4"]}]"#,
            "prefix*",
            Some(&["node1"]),
        ),
    ];
    for &(file, tenant, want) in cases {
        for algorithm in [Algorithm::Hashmod, Algorithm::Ketama] {
            let rings = Hashrings::parse(file, algorithm, 1).unwrap();
            match (rings.owners(tenant, labels), want) {
                (Ok(owners), Some(nodes)) => {
                    assert_eq!(owners.len(), 1);
                    assert!(
                        nodes.contains(&owners[0].address.as_str()),
                        "{file} {tenant}: {owners:?}"
                    );
                }
                (Err(HashringError::NoMatchingHashring(t)), None) => assert_eq!(t, tenant),
                (got, want) => panic!("{file} {tenant}: got {got:?}, want {want:?}"),
            }
        }
    }
}

#[test]
fn first_matching_hashring_wins_and_default_catches_the_rest() {
    let rings = Hashrings::parse(
        r#"[{"hashring": "exact", "tenants": ["team-a"], "endpoints": ["a1", "a2"]},
            {"hashring": "globbed", "tenants": ["team-*"], "tenant_matcher_type": "glob", "endpoints": ["g1", "g2"]},
            {"hashring": "default", "endpoints": ["d1", "d2", "d3"], "external_labels": {"ring": "default"}}]"#,
        Algorithm::Ketama,
        2,
    )
    .unwrap();
    assert_eq!(rings.replication_factor(), 2);
    assert_eq!(rings.hashring_for("team-a").unwrap().name, "exact");
    assert_eq!(rings.hashring_for("team-b").unwrap().name, "globbed");
    assert_eq!(
        rings.hashring_for("team/b").unwrap().name,
        "default",
        "* stops at /"
    );
    assert_eq!(rings.hashring_for("other").unwrap().name, "default");
    let d = rings.hashring_for("").unwrap();
    assert!(d.is_default());
    assert_eq!(d.external_labels.get("ring").unwrap(), "default");
    let owners = rings.owners("other", [("__name__", "up")]).unwrap();
    assert_eq!(owners.len(), 2);
    assert_ne!(owners[0], owners[1]);
    assert!(owners.iter().all(|e| e.address.starts_with('d')));
    let l = tsdb::labels::Labels::from_pairs([("__name__", "up")]);
    assert_eq!(rings.owners_of_labels("other", &l).unwrap(), owners);
    assert_eq!(
        rings.addresses(),
        ["a1", "a2", "d1", "d2", "d3", "g1", "g2"]
    );
}

#[test]
fn building_refuses_what_the_file_checks_refuse() {
    let invalid = |text: &str, algorithm, rf| match Hashrings::parse(text, algorithm, rf) {
        Err(HashringError::Invalid(p)) => p.into_iter().map(|p| p.kind).collect::<Vec<_>>(),
        other => panic!("{text}: {other:?}"),
    };
    assert_eq!(
        invalid(r#"[{"endpoints": ["a", "b"]}]"#, Algorithm::Ketama, 3),
        [ProblemKind::TooFewEndpoints {
            have: 2,
            replication_factor: 3
        }]
    );
    assert_eq!(
        invalid(r#"[{"endpoints": ["a", "b", "a"]}]"#, Algorithm::Hashmod, 1),
        [ProblemKind::DuplicateEndpoint("a".into())]
    );
    assert_eq!(
        invalid(
            r#"[{"endpoints": [{"address": "a", "az": "1"}, {"address": "b", "az": "2"}]}]"#,
            Algorithm::Hashmod,
            2
        ),
        [ProblemKind::HashmodWithAz]
    );
    // Zone 1 has three endpoints, zone 2 one: a fourth replica would crowd zone 1 past the
    // least-used zone forever (Thanos' replica walk never ends here).
    assert_eq!(
        invalid(
            r#"[{"endpoints": [{"address": "a", "az": "1"}, {"address": "b", "az": "1"},
                               {"address": "c", "az": "1"}, {"address": "d", "az": "2"}]}]"#,
            Algorithm::Ketama,
            4
        ),
        [ProblemKind::AzUnplaceable {
            replication_factor: 4
        }]
    );
    assert!(matches!(
        Hashrings::parse(r#"[{"endpoints": ["a"]}]"#, Algorithm::Ketama, 0),
        Err(HashringError::Invalid(_))
    ));
}

/// Thanos' `TestKetamaHashringEvenAZSpread`: the replicas of a series cover min(RF, zones)
/// zones, and no zone holds more than one replica more than another.
#[test]
fn ketama_spreads_replicas_evenly_across_zones() {
    let hash = series_hash("default-tenant", [("foo", "bar")]);
    let cases: &[(&[(&str, &str)], usize)] = &[
        (&[("a", "1"), ("b", "2"), ("c", "1"), ("d", "2")], 1),
        (&[("a", ""), ("b", ""), ("c", ""), ("d", "")], 1),
        (&[("a", "1"), ("b", "2"), ("c", "1"), ("d", "2")], 2),
        (
            &[
                ("a", "1"),
                ("b", "2"),
                ("c", "3"),
                ("d", "1"),
                ("e", "2"),
                ("f", "3"),
            ],
            3,
        ),
        (
            &[
                ("a", ""),
                ("b", ""),
                ("c", ""),
                ("d", ""),
                ("e", ""),
                ("f", ""),
                ("g", ""),
            ],
            3,
        ),
        (
            &[
                ("a", "1"),
                ("b", "2"),
                ("c", "3"),
                ("d", "1"),
                ("e", "2"),
                ("f", "3"),
                ("g", "4"),
                ("h", "4"),
                ("i", "4"),
                ("j", "5"),
                ("k", "5"),
                ("l", "5"),
            ],
            10,
        ),
    ];
    for &(eps, rf) in cases {
        let ring = Hashring::new(Algorithm::Ketama, zoned(eps), rf).unwrap();
        let zones: std::collections::BTreeSet<&str> = eps.iter().map(|(_, z)| *z).collect();
        let mut spread = BTreeMap::new();
        for e in ring.owners(hash) {
            *spread.entry(e.az.as_str()).or_insert(0i64) += 1;
        }
        assert_eq!(spread.len(), rf.min(zones.len()), "{eps:?}");
        let min = *spread.values().min().unwrap();
        assert!(
            spread.values().all(|&v| v - min <= 1),
            "{eps:?}: {spread:?}"
        );
    }
}

/// Thanos' `TestKetamaHashringEvenNodeSpread` (each endpoint within 10% of the optimal share)
/// and the consistency tests: growing a ring never gives old endpoints series they did not have.
#[test]
fn ketama_even_node_spread_and_growth_consistency() {
    let cases: &[(&Pairs, usize, u64)] = &[
        (&[("a", "1"), ("b", "2"), ("c", "1"), ("d", "2")], 2, 1000),
        (&[("a", ""), ("b", ""), ("c", ""), ("d", "")], 2, 1000),
        (
            &[
                ("a", "1"),
                ("b", "2"),
                ("c", "3"),
                ("d", "2"),
                ("e", "1"),
                ("f", "3"),
            ],
            3,
            10000,
        ),
        (
            &[
                ("a", "1"),
                ("b", "2"),
                ("c", "3"),
                ("d", "2"),
                ("e", "1"),
                ("f", "3"),
                ("g", "1"),
                ("h", "2"),
                ("i", "3"),
            ],
            2,
            10000,
        ),
        (
            &[
                ("a", "1"),
                ("b", "2"),
                ("c", "3"),
                ("d", "2"),
                ("e", "1"),
                ("f", "3"),
                ("g", "1"),
                ("h", "2"),
                ("i", "3"),
            ],
            9,
            10000,
        ),
    ];
    for &(eps, rf, n) in cases {
        let ring = Hashring::new(Algorithm::Ketama, zoned(eps), rf).unwrap();
        let hashes =
            (0..n).map(|i| series_hash("default-tenant", [("foo", i.to_string().as_str())]));
        let d = Distribution::measure(&ring, hashes);
        let optimal = (n as usize * rf / eps.len()) as f64;
        for e in &d.endpoints {
            assert!(
                (e.series as f64 - optimal).abs() / optimal < 0.1,
                "{eps:?} rf={rf}: {} has {} (optimal {optimal})",
                e.address,
                e.series
            );
        }
    }

    let pods: Vec<u64> = (0..10_000)
        .map(|i| series_hash("tenant", [("pod", format!("nginx-{i}").as_str())]))
        .collect();
    let consistent = |initial: Vec<Endpoint>, resized: Vec<Endpoint>, rf: usize| {
        let a = Hashring::new(Algorithm::Ketama, initial.clone(), rf).unwrap();
        let b = Hashring::new(Algorithm::Ketama, resized, rf).unwrap();
        for &h in &pods {
            let before: Vec<&str> = owners_of(&a, h);
            for e in b.owners(h) {
                if initial.iter().any(|i| i.address == e.address) {
                    assert!(
                        before.contains(&e.address.as_str()),
                        "{} gained a series",
                        e.address
                    );
                }
            }
        }
    };
    consistent(
        endpoints(&["node-1", "node-2", "node-3"]),
        endpoints(&["node-1", "node-2", "node-3", "node-4", "node-5"]),
        1,
    );
    consistent(
        endpoints(&["node-1", "node-3"]),
        endpoints(&["node-1", "node-2", "node-3"]),
        1,
    );
    consistent(
        endpoints(&["node-1", "node-4", "node-5"]),
        endpoints(&["node-4", "node-3", "node-1", "node-2", "node-5"]),
        2,
    );
    for (initial, resized, rf) in [
        (
            &[("a", "1"), ("b", "2"), ("c", "3")][..],
            &[("b", "2"), ("c", "3"), ("a", "1"), ("d", "2"), ("e", "4")][..],
            3,
        ),
        (
            &[("a", "1"), ("b", "2"), ("c", "3")],
            &[
                ("a", "1"),
                ("b", "2"),
                ("c", "3"),
                ("d", "1"),
                ("e", "2"),
                ("f", "3"),
            ],
            3,
        ),
        (
            &[("a", "1"), ("b", "2"), ("c", "3")],
            &[
                ("a", "1"),
                ("b", "2"),
                ("c", "3"),
                ("d", "4"),
                ("e", "5"),
                ("f", "6"),
            ],
            2,
        ),
        (
            &[("a", "1"), ("c", "2"), ("f", "3")],
            &[("a", "1"), ("b", "1"), ("c", "2"), ("d", "2"), ("f", "3")],
            2,
        ),
    ] {
        consistent(zoned(initial), zoned(resized), rf);
    }
}

fn numbered(n: usize) -> Vec<Endpoint> {
    (0..n)
        .map(|i| Endpoint::new(&format!("receive-{i}.receive.monitoring.svc:10901")))
        .collect()
}

/// The spread of a ketama ring of 3..20 endpoints: exact (over the hash space) and measured
/// (on 200k synthetic series). Prints the table with `--nocapture`.
#[test]
fn ketama_skew_across_3_to_20_nodes() {
    let hashes = synthetic_hashes("default-tenant", 200_000);
    println!("nodes  rf  exact max/mean  measured max/mean  measured min/mean");
    let mut worst: f64 = 0.0;
    for n in 3..=20 {
        for rf in [1, 3] {
            let ring = Hashring::new(Algorithm::Ketama, numbered(n), rf).unwrap();
            let d = Distribution::measure(&ring, hashes.iter().copied());
            let exact = d.expected_max_over_mean();
            println!(
                "{n:5} {rf:3}  {exact:14.3}  {:17.3}  {:17.3}",
                d.max_over_mean(),
                d.min_over_mean()
            );
            let total: f64 = d.endpoints.iter().map(|e| e.expected_share).sum();
            assert!(
                (total - rf as f64).abs() < 1e-9,
                "shares sum to the replication factor"
            );
            worst = worst.max(exact);
            assert!(exact < 1.10, "{n} nodes rf {rf}: exact max/mean {exact}");
            assert!(
                d.max_over_mean() < 1.12,
                "{n} nodes rf {rf}: measured {}",
                d.max_over_mean()
            );
        }
    }
    println!("worst exact max/mean: {worst:.3}");
}

/// Adding and removing endpoints moves about K/N of the series with ketama, and most of them
/// with hashmod.
#[test]
fn movement_on_add_and_remove_is_close_to_k_over_n() {
    let hashes = synthetic_hashes("default-tenant", 100_000);
    let ring = |alg, eps: Vec<Endpoint>, rf| Hashring::new(alg, eps, rf).unwrap();

    // 3 -> 5 endpoints: 2/5 of the series get a new owner.
    let (old, new) = (
        ring(Algorithm::Ketama, numbered(3), 1),
        ring(Algorithm::Ketama, numbered(5), 1),
    );
    let m = Movement::measure(Some(&old), Some(&new), hashes.iter().copied());
    let (exact, _) = exact_movement(&old, &new).unwrap();
    println!(
        "ketama 3->5 rf 1: measured {:.4}, exact {exact:.4}, ideal 0.4",
        m.primary_fraction()
    );
    assert!((m.primary_fraction() - 0.4).abs() < 0.04, "{m:?}");
    assert!((exact - 0.4).abs() < 0.04, "{exact}");
    assert_eq!(m.owners_changed, m.primary_changed);

    // With 3 replicas the primary still moves ~2/5; more owner sets change (any of 3).
    let (old3, new3) = (
        ring(Algorithm::Ketama, numbered(3), 3),
        ring(Algorithm::Ketama, numbered(5), 3),
    );
    let m3 = Movement::measure(Some(&old3), Some(&new3), hashes.iter().copied());
    println!(
        "ketama 3->5 rf 3: primary {:.4}, owner set {:.4}",
        m3.primary_fraction(),
        m3.owners_fraction()
    );
    assert!((m3.primary_fraction() - 0.4).abs() < 0.04, "{m3:?}");

    // hashmod moves most series on the same change.
    let (hold, hnew) = (
        ring(Algorithm::Hashmod, numbered(3), 1),
        ring(Algorithm::Hashmod, numbered(5), 1),
    );
    let hm = Movement::measure(Some(&hold), Some(&hnew), hashes.iter().copied());
    println!("hashmod 3->5 rf 1: {:.4}", hm.primary_fraction());
    assert!(hm.primary_fraction() > 0.7, "{hm:?}");
    assert!(exact_movement(&hold, &hnew).is_none());

    // Removing one of N endpoints moves ~1/N: exactly the removed endpoint's share.
    for n in 4..=12 {
        let old = ring(Algorithm::Ketama, numbered(n), 1);
        let mut fewer = numbered(n);
        fewer.remove(n / 2);
        let new = ring(Algorithm::Ketama, fewer, 1);
        let m = Movement::measure(Some(&old), Some(&new), hashes.iter().copied());
        let (exact, _) = exact_movement(&old, &new).unwrap();
        let ideal = 1.0 / n as f64;
        println!(
            "ketama remove 1 of {n}: measured {:.4}, exact {exact:.4}, ideal {ideal:.4}",
            m.primary_fraction()
        );
        assert!(
            (m.primary_fraction() - ideal).abs() < 0.3 * ideal,
            "{n}: {m:?}"
        );
        assert!((exact - ideal).abs() < 0.2 * ideal, "{n}: {exact}");
        // The series that move are exactly those the removed endpoint held.
        let removed = &old.endpoints()[n / 2].address;
        for &h in hashes.iter().take(5000) {
            let before = old.get_n(h, 0).unwrap();
            let after = new.get_n(h, 0).unwrap();
            assert_eq!(before != after, &before.address == removed);
        }
    }

    // A tenant without a hashring in one file counts as moved entirely.
    let all = Movement::measure(None, Some(&new), hashes.iter().copied().take(10));
    assert_eq!(
        (all.series, all.owners_changed, all.primary_changed),
        (10, 10, 10)
    );
}

#[test]
fn ketama_placement_does_not_depend_on_file_order() {
    let hashes = synthetic_hashes("team-a", 5000);
    let mut reversed = zoned(AZ6);
    reversed.reverse();
    let a = Hashring::new(Algorithm::Ketama, zoned(AZ6), 3).unwrap();
    let b = Hashring::new(Algorithm::Ketama, reversed, 3).unwrap();
    for &h in &hashes {
        assert_eq!(owners_of(&a, h), owners_of(&b, h));
    }
}
