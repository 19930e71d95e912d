//! The cluster view over endpoints that are not Cairn receivers: a StoreAPI server that says
//! it is a receiver but has no `cairn.status.v1.Status` (as a Thanos receiver) is listed with
//! "no Cairn status"; a dead endpoint that never answered Info (of unknown type) and that no
//! hashring lists is left out; neither makes the view fail.

use std::sync::Arc;

use query::cluster::{cluster, Names};
use query::endpoints::{EndpointConfig, EndpointSet};
use tsdb::db::{Db, DbOptions};

#[tokio::test]
async fn receivers_without_the_status_service_show_no_cairn_status() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = Db::open(dir.path(), DbOptions::default()).unwrap();
    let store = store::TsdbStore::new(vec![(store::ExternalLabels::default(), Arc::new(db))]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(store.serve(listener, std::future::pending()));
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let set = EndpointSet::new(EndpointConfig {
        static_endpoints: vec![addr.clone(), dead.clone()],
        ..Default::default()
    });
    set.update().await;

    let v = cluster(&set, &Names::default()).await;
    let members = v["members"].as_array().unwrap();
    assert_eq!(members.len(), 1, "{v}");
    let thanos_like = members.iter().find(|m| m["endpoint"] == addr).unwrap();
    assert_eq!(thanos_like["health"], "up", "{v}");
    assert_eq!(thanos_like["node"], serde_json::Value::Null);
    assert!(
        thanos_like["error"]
            .as_str()
            .unwrap()
            .starts_with("no Cairn status"),
        "{v}"
    );
    assert!(!members.iter().any(|m| m["endpoint"] == dead), "{v}");
    assert_eq!(v["hashrings"], serde_json::json!([]));
}
