//! The shipper against the filesystem bucket: blocks arrive byte-identical, oldest first, meta.json
//! last; a restart does not upload twice; an interrupted upload is redone completely.

use std::path::Path;

use object_store::path::Path as ObjectPath;
use object_store::ObjectStoreExt;
use objstore::bucket::{block_objects, list_blocks, Bucket};
use objstore::shipper::{Shipper, SHIPPER_STATE_FILENAME};
use objstore::BucketConfig;
use tsdb::db::{Db, DbOptions};
use tsdb::labels;

/// A TSDB with three cut blocks (1 s block duration).
fn tsdb_with_blocks(dir: &Path) -> Db {
    let (db, _) = Db::open(
        dir,
        DbOptions {
            block_duration: 1000,
            retention: None,
            ..Default::default()
        },
    )
    .unwrap();
    for t in (0..4000).step_by(10) {
        let mut app = db.appender();
        app.append(&labels!("__name__" => "m", "i" => "1"), t, t as f64)
            .unwrap();
        app.append(&labels!("__name__" => "m", "i" => "2"), t, -(t as f64))
            .unwrap();
        app.commit().unwrap();
        db.maintain().unwrap();
    }
    assert!(db.blocks().len() >= 2);
    db
}

async fn assert_identical(bucket: &Bucket, tsdb: &Path, ulid: &str) {
    let diff = objstore::bucket::diff_with_local(bucket, &tsdb.join(ulid))
        .await
        .unwrap();
    assert!(diff.is_empty(), "block {ulid}: {diff:?}");
    let objects = block_objects(bucket, ulid.parse().unwrap()).await.unwrap();
    assert!(objects.iter().any(|(p, _)| p.ends_with("/chunks/000001")));
}

#[tokio::test]
async fn ships_every_block_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let tsdb_dir = dir.path().join("tsdb");
    let db = tsdb_with_blocks(&tsdb_dir);
    let bucket: Bucket = BucketConfig::filesystem(dir.path().join("bucket"))
        .build()
        .unwrap();
    let metas: Vec<_> = db.blocks().iter().map(|b| b.meta().clone()).collect();

    let shipper = Shipper::new(&tsdb_dir, bucket.clone());
    let stats = shipper.sync(&metas, 0).await;
    assert_eq!(stats.failed, None);
    assert_eq!(stats.uploaded, metas.len());
    for m in &metas {
        assert!(shipper.is_uploaded(m));
        assert_identical(&bucket, &tsdb_dir, &m.ulid.to_string()).await;
    }
    let listed = list_blocks(&bucket).await.unwrap();
    assert_eq!(
        listed.iter().map(|m| m.ulid).collect::<Vec<_>>(),
        metas.iter().map(|m| m.ulid).collect::<Vec<_>>()
    );

    // A restart reads the state file: nothing to do.
    let again = Shipper::new(&tsdb_dir, bucket.clone())
        .sync(&metas, 0)
        .await;
    assert_eq!((again.uploaded, again.already_in_bucket), (0, 0));
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tsdb_dir.join(SHIPPER_STATE_FILENAME)).unwrap())
            .unwrap();
    assert_eq!(state["version"], 1);
    assert_eq!(state["uploaded"].as_array().unwrap().len(), metas.len());

    // Without the state file, blocks already in the bucket are recognised, not uploaded twice.
    std::fs::remove_file(tsdb_dir.join(SHIPPER_STATE_FILENAME)).unwrap();
    let fresh = Shipper::new(&tsdb_dir, bucket.clone())
        .sync(&metas, 0)
        .await;
    assert_eq!((fresh.uploaded, fresh.already_in_bucket), (0, metas.len()));
}

#[tokio::test]
async fn an_interrupted_upload_is_redone_completely() {
    let dir = tempfile::tempdir().unwrap();
    let tsdb_dir = dir.path().join("tsdb");
    let db = tsdb_with_blocks(&tsdb_dir);
    let bucket: Bucket = BucketConfig::filesystem(dir.path().join("bucket"))
        .build()
        .unwrap();
    let first = db.blocks()[0].meta().clone();
    let ulid = first.ulid.to_string();
    // As if the process died after the chunks went up: no meta.json, no index.
    let chunk = std::fs::read(tsdb_dir.join(&ulid).join("chunks/000001")).unwrap();
    bucket
        .put(
            &ObjectPath::from(format!("{ulid}/chunks/000001")),
            chunk[..chunk.len() / 2].to_vec().into(),
        )
        .await
        .unwrap();
    assert!(
        list_blocks(&bucket).await.unwrap().is_empty(),
        "a block without meta.json is not listed"
    );

    let stats = Shipper::new(&tsdb_dir, bucket.clone())
        .sync(std::slice::from_ref(&first), 0)
        .await;
    assert_eq!((stats.uploaded, stats.failed.clone()), (1, None));
    assert_identical(&bucket, &tsdb_dir, &ulid).await;
}

#[tokio::test]
async fn a_failing_bucket_stops_the_pass_and_reports_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let tsdb_dir = dir.path().join("tsdb");
    let db = tsdb_with_blocks(&tsdb_dir);
    // An S3 endpoint where nothing listens.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = BucketConfig::parse(&format!(
        "type: S3\nconfig:\n  bucket: b\n  endpoint: 127.0.0.1:{port}\n  access_key: a\n  secret_key: s\n  insecure: true\n"
    ))
    .unwrap();
    let bucket = config.build().unwrap();
    let metas: Vec<_> = db.blocks().iter().map(|b| b.meta().clone()).collect();
    let shipper = Shipper::new(&tsdb_dir, bucket);
    let stats = shipper.sync(&metas, 10_000).await;
    assert!(stats.failed.is_some());
    assert_eq!(stats.pending, metas.len());
    assert_eq!(stats.uploaded, 0);
    assert!(metas.iter().all(|m| !shipper.is_uploaded(m)));
}
