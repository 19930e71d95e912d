//! The Kubernetes manifests are not fiction: this test reads `deploy/kubernetes`, takes the
//! receive StatefulSet's, the store StatefulSet's and the query and compactor Deployments'
//! container args exactly as written, mounts their ConfigMaps and Secret as files, and starts
//! every pod as a process on loopback. Only what a cluster provides is substituted: `$(POD_NAME)`,
//! the pods' DNS names (`<pod>.<service>.monitoring.svc.cluster.local:<port>`) and `0.0.0.0`
//! listen addresses become loopback ports, mount paths become temp directories, and the
//! objstore Secret (whose keys are placeholders) points at a local S3 server. Each pod must pass
//! its readiness probe; a sample written to one receiver is then stored on all three (RF=3 from
//! the args and the ConfigMap's hashring) and read back once through the query layer.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{free_port, get, get_json, remote_write, wait_until, Proc, S3Server};
use serde_json::Value;

const NAMESPACE: &str = "monitoring";

fn manifests() -> Vec<Value> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes");
    let mut docs = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let parsed: Vec<Value> =
            serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        docs.extend(parsed.into_iter().filter(|d| !d.is_null()));
    }
    docs
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/kubernetes"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// One pod of a workload, as a process would run it here.
struct Pod {
    name: String,
    /// containerPort -> loopback address.
    ports: BTreeMap<u64, SocketAddr>,
}

/// A workload (StatefulSet or Deployment) and the pods the test runs of it.
struct Workload<'a> {
    spec: &'a Value,
    pods: Vec<Pod>,
}

impl<'a> Workload<'a> {
    fn new(doc: &'a Value, replicas: usize) -> Workload<'a> {
        let spec = &doc["spec"]["template"]["spec"];
        let name = doc["metadata"]["name"].as_str().unwrap();
        let pods = (0..replicas)
            .map(|i| Pod {
                name: format!("{name}-{i}"),
                ports: spec["containers"][0]["ports"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| {
                        let port = p["containerPort"].as_u64().unwrap();
                        let addr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
                        (port, addr)
                    })
                    .collect(),
            })
            .collect();
        Workload { spec, pods }
    }

    fn container(&self) -> &Value {
        &self.spec["containers"][0]
    }

    /// The loopback address of a pod's named container port (as probes name them).
    fn named_port(&self, pod: &Pod, name: &str) -> SocketAddr {
        let port = self.container()["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no port named {name}"))["containerPort"]
            .as_u64()
            .unwrap();
        pod.ports[&port]
    }
}

/// `<pod>.<service>.monitoring.svc.cluster.local:<port>` -> loopback, for every StatefulSet pod.
fn dns_names(statefulsets: &[(&Value, &Workload<'_>)]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (doc, w) in statefulsets {
        let service = doc["spec"]["serviceName"].as_str().unwrap();
        for pod in &w.pods {
            for (port, addr) in &pod.ports {
                out.push((
                    format!(
                        "{}.{service}.{NAMESPACE}.svc.cluster.local:{port}",
                        pod.name
                    ),
                    addr.to_string(),
                ));
            }
        }
    }
    out
}

fn substitute(text: &str, names: &[(String, String)]) -> String {
    let mut out = text.to_string();
    for (from, to) in names {
        out = out.replace(from, to);
    }
    out
}

/// Starts one pod: its mounts as directories under `dir`, its args rewritten as described at the
/// top; waits for its readiness probe.
fn start_pod(
    dir: &Path,
    docs: &[Value],
    w: &Workload<'_>,
    pod: &Pod,
    names: &[(String, String)],
    objstore_yaml: &str,
) -> Proc {
    let root = dir.join(&pod.name);
    let container = w.container();
    let mut mounts = Vec::new();
    for m in container["volumeMounts"].as_array().unwrap() {
        let mount_path = m["mountPath"].as_str().unwrap();
        let local = root.join(mount_path.trim_start_matches('/'));
        std::fs::create_dir_all(&local).unwrap();
        let volume = w.spec["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["name"] == m["name"]);
        if let Some(v) = volume {
            if let Some(cm) = v["configMap"]["name"].as_str() {
                let data = find(docs, "ConfigMap", cm)["data"].as_object().unwrap();
                for (key, text) in data {
                    let text = substitute(text.as_str().unwrap(), names);
                    std::fs::write(local.join(key), text).unwrap();
                }
            }
            if let Some(secret) = v["secret"]["secretName"].as_str() {
                let data = find(docs, "Secret", secret)["stringData"]
                    .as_object()
                    .unwrap();
                for key in data.keys() {
                    assert_eq!(key, "objstore.yml", "a Secret this test does not know");
                    std::fs::write(local.join(key), objstore_yaml).unwrap();
                }
            }
        }
        // Anything else (the PVC, emptyDirs) is an empty directory.
        mounts.push((mount_path.to_string(), local));
    }
    // Longest mount path first, so /data/x is not rewritten as /data + x.
    mounts.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
    let mut env: Vec<(String, String)> = Vec::new();
    for e in container["env"].as_array().into_iter().flatten() {
        let name = e["name"].as_str().unwrap();
        assert_eq!(
            e["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name",
            "env {name}: only the pod's name is known here"
        );
        env.push((format!("$({name})"), pod.name.clone()));
    }
    let args: Vec<String> = strings(&container["args"])
        .into_iter()
        .map(|arg| {
            let mut arg = substitute(&arg, &env);
            arg = substitute(&arg, names);
            for (port, addr) in &pod.ports {
                arg = arg.replace(&format!("0.0.0.0:{port}"), &addr.to_string());
            }
            for (mount, local) in &mounts {
                if let Some(i) = arg.find(&format!("={mount}")) {
                    let rest = &arg[i + 1 + mount.len()..];
                    if rest.is_empty() || rest.starts_with('/') {
                        arg = format!("{}={}{rest}", &arg[..i], local.display());
                        break;
                    }
                }
            }
            assert!(
                !arg.contains("0.0.0.0") && !arg.contains("svc.cluster.local"),
                "{}: {arg} still names a cluster address",
                pod.name
            );
            arg
        })
        .collect();
    let mut proc = Proc::spawn(
        &pod.name,
        Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(&args)
            .env("CAIRN_LOG", "info"),
        dir,
    );
    let probe = &container["readinessProbe"]["httpGet"];
    let addr = w.named_port(pod, probe["port"].as_str().unwrap());
    let path = probe["path"].as_str().unwrap();
    wait_until(
        Duration::from_secs(60),
        &format!("{} ready", pod.name),
        || {
            if let Some(status) = proc.child.try_wait().unwrap() {
                panic!(
                    "{} ({args:?}) exited: {status}\n{}",
                    pod.name,
                    proc.log_text()
                );
            }
            matches!(get(addr, path), Ok(r) if r.status == 200)
        },
    );
    proc
}

#[test]
fn the_manifests_args_run_a_replicated_pool_with_store_compactor_and_query() {
    let dir = tempfile::tempdir().unwrap();
    let docs = manifests();
    let receive_doc = find(&docs, "StatefulSet", "cairn-receive");
    let store_doc = find(&docs, "StatefulSet", "cairn-store");
    let query_doc = find(&docs, "Deployment", "cairn-query");
    let compact_doc = find(&docs, "Deployment", "cairn-compact");
    let replicas = |d: &Value| d["spec"]["replicas"].as_u64().unwrap() as usize;
    assert_eq!(replicas(receive_doc), 3);
    assert_eq!(replicas(compact_doc), 1, "one compactor per bucket");
    let receive = Workload::new(receive_doc, replicas(receive_doc));
    let store = Workload::new(store_doc, replicas(store_doc));
    // Query pods are identical; one is enough to run here.
    let query = Workload::new(query_doc, 1);
    let compact = Workload::new(compact_doc, 1);
    let names = dns_names(&[(receive_doc, &receive), (store_doc, &store)]);

    // The bucket the Secret names, on a local S3 server.
    let secret = find(&docs, "Secret", "cairn-objstore")["stringData"]["objstore.yml"]
        .as_str()
        .unwrap();
    let secret: Value = serde_saphyr::from_str(secret).unwrap();
    let bucket = secret["config"]["bucket"].as_str().unwrap();
    let s3 = S3Server::start(dir.path(), &dir.path().join("s3"), free_port(), bucket);
    let objstore_yaml = s3.objstore_yaml(bucket);

    let mut procs = Vec::new();
    for w in [&receive, &store, &compact, &query] {
        for pod in &w.pods {
            procs.push(start_pod(dir.path(), &docs, w, pod, &names, &objstore_yaml));
        }
    }

    // One write to receiver 1 is stored on all three (replication factor 3 in the args, three
    // endpoints in the ConfigMap).
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let rw = receive.named_port(&receive.pods[1], "remote-write");
    remote_write(
        rw,
        None,
        &[(
            vec![
                ("__name__".into(), "k8s_args_test".into()),
                ("job".into(), "agent".into()),
            ],
            vec![(now - 1000, 42.0)],
        )],
    );

    let http = query.named_port(&query.pods[0], "http");
    // The query layer reaches every endpoint of its ConfigMap: three receivers, two stores.
    wait_until(Duration::from_secs(30), "five healthy stores", || {
        let (_, v) = get_json(http, "/api/v1/stores", &[]);
        let healthy = v["data"]
            .as_object()
            .into_iter()
            .flat_map(|m| m.values())
            .flat_map(|list| list.as_array().cloned().unwrap_or_default())
            .filter(|s| s["lastError"].is_null())
            .count();
        healthy == 5
    });
    let ask = |dedup: &str| {
        let (status, v) = get_json(
            http,
            "/api/v1/query",
            &[("query", "k8s_args_test"), ("dedup", dedup)],
        );
        assert_eq!(status, 200, "{v}");
        v["data"]["result"].as_array().unwrap().clone()
    };
    wait_until(
        Duration::from_secs(20),
        "three replicas of the sample",
        || ask("false").len() == 3,
    );
    let mut replicas_seen: Vec<String> = ask("false")
        .iter()
        .map(|s| s["metric"]["replica"].as_str().unwrap().to_string())
        .collect();
    replicas_seen.sort();
    assert_eq!(
        replicas_seen,
        ["cairn-receive-0", "cairn-receive-1", "cairn-receive-2"],
        "--label=replica=\"$(POD_NAME)\" names each copy"
    );
    // --query.replica-label=replica from the Deployment folds them into one.
    let one = ask("true");
    assert_eq!(one.len(), 1, "{one:?}");
    assert_eq!(one[0]["value"][1], "42");
    assert!(one[0]["metric"].get("replica").is_none());

    for p in &mut procs {
        assert!(
            p.child.try_wait().unwrap().is_none(),
            "{} exited:\n{}",
            p.name,
            p.log_text()
        );
    }
}
