//! The cluster view behind `GET /api/v1/status/cluster` and the UI's Cluster page: every
//! receiver's own report (`cairn.status.v1.Status/Node`, asked in parallel with a short
//! time-out), merged into one row per hashring member.
//!
//! Which endpoints are asked: those whose last Info said `receive` (up or down), and those that
//! never answered Info (they may be receivers that are down since before this process started).
//! Members are the union of the hashrings the nodes report; a member is matched to the query
//! endpoint whose node says it is that member (`--receive.local-endpoint`; remembered, so a
//! node that goes down keeps its row), or else whose address is the member's. A member no
//! endpoint reaches is listed with unknown health: the "hashring missing nodes" incident is a
//! hashring member the query layer cannot see, or a receiver no hashring lists.
//!
//! Definitions:
//! - `seriesShare`: the node's head series over the sum of head series of the nodes that
//!   answered, i.e. its share of the pool's stored copies (the shares sum to 1; with
//!   replication factor RF over N even nodes each holds about 1/N).
//! - `hintsToward`: writes the other nodes hold for this member (hinted handoff), summed over
//!   their queues, with the oldest age among them and which nodes hold them.
//! - `forwardErrors`: the nodes whose last write to this member failed (their last error is
//!   newer than their last success), with the error.
//! - `replication.ratio`: series this node replicated that reached quorum, over all it
//!   replicated since it started (`thanos_receive_replications_total`); null before any.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::cairn::status::v1::status_client::StatusClient;
use proto::cairn::status::v1::{NodeRequest, NodeResponse};
use serde_json::{json, Value};

use crate::endpoints::{EndpointSet, Health};

/// The Info component type of receivers (Thanos' and Cairn's).
const RECEIVE: &str = "receive";

/// How long one node may take to answer.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(3);

/// What one query endpoint said, or why it said nothing.
#[derive(Clone, Debug)]
pub struct NodeReport {
    /// The query layer's address of the endpoint.
    pub address: String,
    pub health: Health,
    /// The endpoint's last Info error (when down).
    pub endpoint_error: Option<String>,
    /// Whether its last Info said `receive` (false: it never answered Info).
    pub is_receiver: bool,
    pub node: Result<NodeResponse, String>,
}

/// Asks every receiver endpoint (and every endpoint of unknown type) for its node status.
pub async fn collect(endpoints: &EndpointSet, timeout: Duration) -> Vec<NodeReport> {
    let calls = endpoints.endpoints().into_iter().filter_map(|e| {
        let snap = e.snapshot();
        let is_receiver = match &snap.info {
            Some(info) if info.component_type == RECEIVE => true,
            Some(_) => return None,
            None => false,
        };
        Some(async move {
            let node = match e.channel() {
                Err(err) => Err(err.to_string()),
                Ok(channel) => {
                    let mut client = StatusClient::new(channel);
                    match tokio::time::timeout(timeout, client.node(NodeRequest {})).await {
                        Ok(Ok(r)) => Ok(r.into_inner()),
                        Ok(Err(s)) if s.code() == tonic::Code::Unimplemented => {
                            Err("no Cairn status (not a Cairn receiver)".to_string())
                        }
                        Ok(Err(s)) => Err(crate::fanout::describe_status(&s)),
                        Err(_) => Err(format!("no answer within {timeout:?}")),
                    }
                }
            };
            NodeReport {
                address: snap.address,
                health: snap.health,
                endpoint_error: match snap.health {
                    Health::Down => snap.last_error,
                    _ => None,
                },
                is_receiver,
                node,
            }
        })
    });
    futures::future::join_all(calls).await
}

/// Remembers which hashring member each endpoint said it is, so that a node that stops
/// answering keeps its name (its row does not turn into an "unreached member" plus an
/// unnamed endpoint).
#[derive(Debug, Default)]
pub struct Names(Mutex<HashMap<String, String>>);

impl Names {
    fn learn(&self, reports: &[NodeReport]) -> HashMap<String, String> {
        let mut names = self.0.lock().unwrap();
        for r in reports {
            if let Ok(n) = &r.node {
                if !n.local_endpoint.is_empty() {
                    names.insert(r.address.clone(), n.local_endpoint.clone());
                }
            }
        }
        names.clone()
    }
}

/// The hints other nodes hold for one member.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HintsToward {
    pub pending: u64,
    pub bytes: u64,
    pub oldest_age_seconds: i64,
    /// The members holding them.
    pub holders: Vec<String>,
}

/// Per member: the hints the other nodes' queues hold for it.
pub fn hints_toward(nodes: &[(&str, &NodeResponse)]) -> BTreeMap<String, HintsToward> {
    let mut out: BTreeMap<String, HintsToward> = BTreeMap::new();
    for (holder, n) in nodes {
        for p in &n.peers {
            let h = out.entry(p.endpoint.clone()).or_default();
            if p.hints_pending == 0 {
                continue;
            }
            h.pending += p.hints_pending;
            h.bytes += p.hints_pending_bytes;
            h.oldest_age_seconds = h.oldest_age_seconds.max(p.hints_oldest_age_seconds);
            h.holders.push(holder.to_string());
        }
    }
    out
}

/// Each node's share of the head series of the nodes that answered (None when none holds any).
pub fn series_shares(head_series: &[u64]) -> Vec<Option<f64>> {
    let total: u64 = head_series.iter().sum();
    head_series
        .iter()
        .map(|&n| (total > 0).then(|| n as f64 / total as f64))
        .collect()
}

/// The cluster page's data.
pub fn view(reports: &[NodeReport], names: &Names) -> Value {
    let names = names.learn(reports);
    // Each report's member name.
    let name_of = |r: &NodeReport| -> String {
        match &r.node {
            Ok(n) if !n.local_endpoint.is_empty() => n.local_endpoint.clone(),
            _ => names
                .get(&r.address)
                .cloned()
                .unwrap_or_else(|| r.address.clone()),
        }
    };
    let answered: Vec<(String, &NodeResponse)> = reports
        .iter()
        .filter_map(|r| r.node.as_ref().ok().map(|n| (name_of(r), n)))
        .collect();

    // Hashrings as the nodes see them; nodes that disagree (a file not yet everywhere) are
    // flagged rather than hidden.
    let mut rings: BTreeMap<String, (Value, Vec<String>, bool)> = BTreeMap::new();
    let mut members: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut replication_factor = 0;
    for (reporter, n) in &answered {
        replication_factor = replication_factor.max(n.replication_factor);
        for h in &n.hashrings {
            for e in &h.endpoints {
                members.entry(e.clone()).or_default().insert(h.name.clone());
            }
            let this = json!({
                "name": h.name,
                "endpoints": h.endpoints,
                "tenants": h.tenants,
                "skew": h.skew,
            });
            match rings.get_mut(&h.name) {
                None => {
                    rings.insert(h.name.clone(), (this, vec![reporter.clone()], false));
                }
                Some((seen, by, differs)) => {
                    by.push(reporter.clone());
                    if seen["endpoints"] != this["endpoints"] || seen["tenants"] != this["tenants"]
                    {
                        *differs = true;
                    }
                }
            }
        }
    }
    let hints = hints_toward(
        &answered
            .iter()
            .map(|(name, n)| (name.as_str(), *n))
            .collect::<Vec<_>>(),
    );
    let forward_errors = |member: &str| -> Vec<Value> {
        answered
            .iter()
            .flat_map(|(from, n)| n.peers.iter().map(move |p| (from, p)))
            .filter(|(_, p)| {
                p.endpoint == member
                    && p.last_error_unix_millis > 0
                    && p.last_error_unix_millis >= p.last_success_unix_millis
            })
            .map(|(from, p)| {
                json!({"from": from, "error": p.last_error, "atMillis": p.last_error_unix_millis})
            })
            .collect()
    };
    let shares = series_shares(
        &answered
            .iter()
            .map(|(_, n)| n.head_series)
            .collect::<Vec<_>>(),
    );
    let share_of: HashMap<&str, Option<f64>> = answered
        .iter()
        .zip(&shares)
        .map(|((name, _), s)| (name.as_str(), *s))
        .collect();

    let mut rows: Vec<(String, Value)> = Vec::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for r in reports {
        let name = name_of(r);
        // An endpoint of unknown type that no hashring lists is not (known to be) a receiver.
        if !r.is_receiver && !members.contains_key(&name) && r.node.is_err() {
            continue;
        }
        seen.insert(name.clone());
        let mut row = json!({
            "member": name,
            "endpoint": r.address,
            "health": r.health.as_str(),
            "endpointError": r.endpoint_error,
            "inHashrings": members.get(&name).map(|s| s.iter().cloned().collect::<Vec<_>>()).unwrap_or_default(),
            "hintsToward": hints_json(hints.get(&name)),
            "forwardErrors": forward_errors(&name),
        });
        match &r.node {
            Ok(n) => {
                let rep = n.replication.unwrap_or_default();
                let total = rep.success + rep.error;
                let shipper = n.shipper.clone().unwrap_or_default();
                row["node"] = json!({
                    "headSeries": n.head_series,
                    "seriesShare": share_of.get(name.as_str()).copied().flatten(),
                    "tenants": n.tenants.iter().map(|t| json!({"tenant": t.tenant, "headSeries": t.head_series})).collect::<Vec<_>>(),
                    "replication": {
                        "success": rep.success,
                        "error": rep.error,
                        "ratio": (total > 0).then(|| rep.success as f64 / total as f64),
                    },
                    "hintsOwed": n.peers.iter().map(|p| p.hints_pending).sum::<u64>(),
                    "shipper": {
                        "enabled": shipper.enabled,
                        "pendingBlocks": shipper.pending_blocks,
                        "pendingBytes": shipper.pending_bytes,
                        "oldestPendingAgeSeconds": shipper.oldest_pending_age_seconds,
                        "lastError": (!shipper.last_error.is_empty()).then_some(shipper.last_error),
                    },
                    "volume": n.volume.as_ref().map(|v| json!({"sizeBytes": v.size_bytes, "availableBytes": v.available_bytes})),
                    "peers": n.peers.iter().map(|p| json!({
                        "endpoint": p.endpoint,
                        "hintsPending": p.hints_pending,
                        "hintsPendingBytes": p.hints_pending_bytes,
                        "hintsOldestAgeSeconds": p.hints_oldest_age_seconds,
                        "lastSuccessMillis": (p.last_success_unix_millis > 0).then_some(p.last_success_unix_millis),
                        "lastErrorMillis": (p.last_error_unix_millis > 0).then_some(p.last_error_unix_millis),
                        "lastError": (!p.last_error.is_empty()).then_some(&p.last_error),
                    })).collect::<Vec<_>>(),
                });
                row["error"] = Value::Null;
            }
            Err(e) => {
                row["node"] = Value::Null;
                row["error"] = json!(e);
            }
        }
        rows.push((name, row));
    }
    for (member, in_rings) in &members {
        if seen.contains(member) {
            continue;
        }
        rows.push((
            member.clone(),
            json!({
                "member": member,
                "endpoint": null,
                "health": "unknown",
                "endpointError": null,
                "inHashrings": in_rings,
                "hintsToward": hints_json(hints.get(member)),
                "forwardErrors": forward_errors(member),
                "node": null,
                "error": "no endpoint of this query layer reaches this hashring member",
            }),
        ));
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    json!({
        "replicationFactor": replication_factor,
        "headSeriesTotal": answered.iter().map(|(_, n)| n.head_series).sum::<u64>(),
        "hashrings": rings.into_values().map(|(mut v, by, differs)| {
            v["reportedBy"] = json!(by);
            v["nodesDisagree"] = json!(differs);
            v
        }).collect::<Vec<_>>(),
        "members": rows.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
    })
}

fn hints_json(h: Option<&HintsToward>) -> Value {
    let h = h.cloned().unwrap_or_default();
    json!({
        "pending": h.pending,
        "bytes": h.bytes,
        "oldestAgeSeconds": h.oldest_age_seconds,
        "holders": h.holders,
    })
}

/// The cluster view now.
pub async fn cluster(endpoints: &Arc<EndpointSet>, names: &Names) -> Value {
    let reports = collect(endpoints, NODE_TIMEOUT).await;
    view(&reports, names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::cairn::status::v1::{Hashring, Peer, Replication};

    fn node(name: &str, series: u64, peers: &[(&str, u64, i64)]) -> NodeResponse {
        NodeResponse {
            local_endpoint: name.into(),
            head_series: series,
            replication_factor: 3,
            hashrings: vec![Hashring {
                name: "default".into(),
                endpoints: vec!["a:1".into(), "b:1".into(), "c:1".into(), "d:1".into()],
                tenants: vec![],
                skew: 1.02,
            }],
            peers: peers
                .iter()
                .map(|(e, n, age)| Peer {
                    endpoint: e.to_string(),
                    hints_pending: *n,
                    hints_pending_bytes: n * 10,
                    hints_oldest_age_seconds: *age,
                    ..Default::default()
                })
                .collect(),
            replication: Some(Replication {
                success: 9,
                error: 1,
            }),
            ..Default::default()
        }
    }

    fn report(address: &str, health: Health, node: Result<NodeResponse, String>) -> NodeReport {
        NodeReport {
            address: address.into(),
            health,
            endpoint_error: None,
            is_receiver: true,
            node,
        }
    }

    #[test]
    fn shares_are_of_the_stored_copies() {
        assert_eq!(
            series_shares(&[100, 100, 200]),
            [Some(0.25), Some(0.25), Some(0.5)]
        );
        assert_eq!(series_shares(&[0, 0]), [None, None]);
    }

    #[test]
    fn hints_toward_a_member_are_summed_over_the_other_nodes() {
        let a = node("a:1", 10, &[("b:1", 0, 0), ("c:1", 5, 30)]);
        let b = node("b:1", 10, &[("a:1", 0, 0), ("c:1", 2, 70)]);
        let h = hints_toward(&[("a:1", &a), ("b:1", &b)]);
        assert_eq!(
            h["c:1"],
            HintsToward {
                pending: 7,
                bytes: 70,
                oldest_age_seconds: 70,
                holders: vec!["a:1".into(), "b:1".into()],
            }
        );
        assert_eq!(h["b:1"], HintsToward::default());
    }

    #[test]
    fn the_view_has_a_row_per_member_and_flags_the_unreached_ones() {
        let names = Names::default();
        let reports = vec![
            // Query addresses differ from the hashring's: the node's own name is used.
            report(
                "10.0.0.1:10901",
                Health::Up,
                Ok(node("a:1", 300, &[("c:1", 4, 12)])),
            ),
            report("10.0.0.2:10901", Health::Up, Ok(node("b:1", 100, &[]))),
            report(
                "10.0.0.3:10901",
                Health::Down,
                Err("Unavailable: refused".into()),
            ),
            report(
                "thanos:10901",
                Health::Up,
                Err("no Cairn status (not a Cairn receiver)".into()),
            ),
        ];
        let v = view(&reports, &names);
        let members: Vec<&str> = v["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["member"].as_str().unwrap())
            .collect();
        assert_eq!(
            members,
            ["10.0.0.3:10901", "a:1", "b:1", "c:1", "d:1", "thanos:10901"]
        );
        let row = |name: &str| {
            v["members"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["member"] == name)
                .unwrap()
                .clone()
        };
        assert_eq!(row("a:1")["node"]["seriesShare"], 0.75);
        assert_eq!(row("b:1")["node"]["seriesShare"], 0.25);
        assert_eq!(row("a:1")["node"]["replication"]["ratio"], 0.9);
        assert_eq!(row("c:1")["health"], "unknown");
        assert_eq!(row("c:1")["endpoint"], Value::Null);
        assert_eq!(row("c:1")["hintsToward"]["pending"], 4);
        assert_eq!(row("c:1")["hintsToward"]["holders"], json!(["a:1"]));
        assert_eq!(row("10.0.0.3:10901")["health"], "down");
        assert_eq!(row("10.0.0.3:10901")["error"], "Unavailable: refused");
        assert_eq!(v["hashrings"][0]["skew"], 1.02);
        assert_eq!(v["hashrings"][0]["nodesDisagree"], false);
        assert_eq!(v["replicationFactor"], 3);

        // Once c:1 has answered under its query address, it keeps its name when it goes down.
        let mut reports2 = reports.clone();
        reports2[2].node = Ok(node("c:1", 100, &[]));
        view(&reports2, &names);
        let v = view(&reports, &names);
        let c = v["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["member"] == "c:1")
            .unwrap();
        assert_eq!(c["endpoint"], "10.0.0.3:10901");
        assert_eq!(c["health"], "down");
    }

    #[test]
    fn a_forward_error_counts_until_a_later_success() {
        let mut a = node("a:1", 1, &[("b:1", 0, 0)]);
        a.peers[0].last_error_unix_millis = 2000;
        a.peers[0].last_error = "refused".into();
        a.peers[0].last_success_unix_millis = 1000;
        let reports = vec![report("a:1", Health::Up, Ok(a.clone()))];
        let v = view(&reports, &Names::default());
        let b = v["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["member"] == "b:1")
            .unwrap()
            .clone();
        assert_eq!(b["forwardErrors"][0]["from"], "a:1");
        a.peers[0].last_success_unix_millis = 3000;
        let v = view(&[report("a:1", Health::Up, Ok(a))], &Names::default());
        let b = v["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["member"] == "b:1")
            .unwrap()
            .clone();
        assert_eq!(b["forwardErrors"], json!([]));
    }
}
