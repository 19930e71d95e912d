//! The receiver's composition root: binds the listeners and runs every part of a receiver
//! together until shutdown — the remote-write and HTTP servers ([`crate::http`]), the gRPC
//! server (StoreAPI over the tenants' TSDBs, `thanos.WriteableStore` and Cairn's
//! `cairn.status.v1.Status`), TSDB maintenance
//! (block cuts, retention), the shipper, the hashrings and limits file watchers, and the
//! replicator's hint delivery. Like Thanos' `cmd/thanos/receive.go`, it wires and holds no
//! ingest logic of its own ([`crate::ingest`] does).

use std::future::Future;
use std::sync::Arc;

use axum::Router;

use crate::ingest::Receiver;
use crate::limits::LimitsWatcher;
use crate::ReceiveConfig;
use tls::{ServerTls, TlsListener};

/// One shipper pass over every tenant; false if any upload failed.
async fn ship_all(receiver: &Receiver) -> bool {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64;
    let mut ok = true;
    for (tenant, db) in receiver.tenants.all() {
        let Some(shipper) = receiver.tenants.shipper(&tenant) else {
            continue;
        };
        let metas: Vec<_> = db.blocks().iter().map(|b| b.meta().clone()).collect();
        let stats = shipper.sync(&metas, now).await;
        let l = vec![("tenant".to_string(), tenant.clone())];
        let m = &receiver.metrics;
        m.shipper_uploads
            .get_or_create(&l)
            .inc_by(stats.uploaded as u64);
        m.shipper_bytes.get_or_create(&l).inc_by(stats.bytes);
        m.shipper_queue.get_or_create(&l).set(stats.pending as i64);
        m.shipper_queue_bytes
            .get_or_create(&l)
            .set(stats.pending_bytes as i64);
        m.shipper_oldest_age
            .get_or_create(&l)
            .set(stats.oldest_pending_max_time.map_or(0, |ms| ms / 1000));
        if let Some(e) = &stats.failed {
            ok = false;
            m.shipper_failures.get_or_create(&l).inc();
            tracing::warn!(tenant, pending = stats.pending, error = %e, "upload failed; will retry with backoff");
        }
        receiver
            .shipper_backlog
            .lock()
            .unwrap()
            .insert(tenant, stats);
    }
    ok
}

/// Serves `router` on `listener`, over TLS when configured, until `stop` resolves.
fn spawn_server(
    listener: tokio::net::TcpListener,
    tls: Option<&tls::ServerFiles>,
    router: Router,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    Ok(match tls {
        None => tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(stop)
                .await
        }),
        Some(files) => {
            let config =
                ServerTls::load(files, &[b"h2", b"http/1.1"]).map_err(std::io::Error::other)?;
            let listener = TlsListener::new(listener, config)?;
            tokio::spawn(async move {
                axum::serve(listener, router)
                    .with_graceful_shutdown(stop)
                    .await
            })
        }
    })
}

/// Runs the receiver until `shutdown` resolves, then stops accepting, finishes in-flight
/// requests and flushes every head to blocks.
pub async fn run(
    config: ReceiveConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let receiver = Receiver::new(config.clone()).map_err(std::io::Error::other)?;
    let rw_listener = tokio::net::TcpListener::bind(config.remote_write_address).await?;
    let http_listener = tokio::net::TcpListener::bind(config.http_address).await?;
    let grpc_listener = tokio::net::TcpListener::bind(config.grpc_address).await?;
    serve(
        receiver,
        rw_listener,
        http_listener,
        grpc_listener,
        shutdown,
    )
    .await
}

/// Like [`run`] with listeners already bound (tests bind port 0).
pub async fn serve(
    receiver: Arc<Receiver>,
    rw_listener: tokio::net::TcpListener,
    http_listener: tokio::net::TcpListener,
    grpc_listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tracing::info!(
        remote_write = %rw_listener.local_addr()?,
        http = %http_listener.local_addr()?,
        grpc = %grpc_listener.local_addr()?,
        tsdb = %receiver.config.tsdb_path.display(),
        "receiver starting"
    );
    let limits_task = match &receiver.config.limits_file {
        Some(path) => {
            let watcher = LimitsWatcher::load(path.clone(), receiver.limits.clone())
                .map_err(std::io::Error::other)?;
            Some(tokio::spawn(watcher.run(std::time::Duration::from_secs(5))))
        }
        None => None,
    };
    let tenants = receiver.tenants.clone();
    let opened = tokio::task::spawn_blocking(move || tenants.open_existing())
        .await
        .map_err(std::io::Error::other)?
        .map_err(std::io::Error::other)?;
    tracing::info!(tenants = opened, "existing tenants opened");
    receiver.set_ready(true);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let maintenance = {
        let tenants = receiver.tenants.clone();
        let mut stop = stop_rx.clone();
        let every = receiver.config.maintenance_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let t = tenants.clone();
                        let _ = tokio::task::spawn_blocking(move || t.maintain()).await;
                    }
                    _ = stop.changed() => break,
                }
            }
        })
    };

    let shipping = receiver.config.objstore.is_some().then(|| {
        let receiver = receiver.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let mut failures = 0u32;
            loop {
                let delay = if failures == 0 {
                    receiver.config.shipper_interval
                } else {
                    objstore::shipper::backoff(
                        failures,
                        receiver
                            .config
                            .shipper_interval
                            .max(std::time::Duration::from_secs(30)),
                    )
                };
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.changed() => break,
                }
                if ship_all(&receiver).await {
                    failures = 0;
                } else {
                    failures += 1;
                }
            }
        })
    });

    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stopped| *stopped).await;
    };
    // The StoreAPI over every tenant's TSDB (heads and local blocks), with its external labels.
    let grpc = {
        let tenants = receiver.tenants.clone();
        let source = move || {
            tenants
                .all()
                .into_iter()
                .map(|(t, db)| (tenants.external_labels(&t), db))
                .collect::<Vec<_>>()
        };
        let store = store::TsdbStore::new(source)
            .with_tenant_label(&receiver.config.tenant_label_name)
            .with_exemplars(receiver.config.max_exemplars > 0);
        let writes = crate::grpc_write::WriteService::new(receiver.clone());
        let status = crate::status::StatusService::new(receiver.clone()).server();
        let stop = wait(stop_rx.clone());
        // Forwarded batches and concatenated hints may be larger than one client request.
        let snappy_limits = crate::grpc_snappy::SnappyDecompressLayer {
            max_body: receiver.config.limits.max_body_bytes.max(64 << 20),
            max_message: receiver.config.limits.max_decoded_bytes.max(64 << 20),
        };
        let grpc_tls = match &receiver.config.grpc_tls {
            Some(files) => Some(ServerTls::load(files, &[b"h2"]).map_err(std::io::Error::other)?),
            None => None,
        };
        let incoming = tls::grpc_incoming(grpc_listener, grpc_tls)?;
        tokio::spawn(async move {
            let served = tonic::transport::Server::builder()
                .layer(snappy_limits)
                .add_service(store.store_server())
                .add_service(store.info_server())
                .add_service(store.exemplars_server())
                .add_service(writes)
                .add_service(status)
                .serve_with_incoming_shutdown(incoming, stop)
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "gRPC server failed");
            }
        })
    };
    let watcher_task = receiver.take_watcher().map(|w| {
        tracing::info!(path = %w.path().display(), "watching the hashrings file");
        tokio::spawn(w.run(receiver.config.hashrings_refresh))
    });
    if let Some(r) = &receiver.replicator {
        r.start();
    }
    let rw = spawn_server(
        rw_listener,
        receiver.config.remote_write_tls.as_ref(),
        crate::http::remote_write_router(receiver.clone()),
        wait(stop_rx.clone()),
    )?;
    let http = spawn_server(
        http_listener,
        receiver.config.http_tls.as_ref(),
        crate::http::http_router(receiver.clone()),
        wait(stop_rx.clone()),
    )?;
    shutdown.await;
    tracing::info!("shutting down: finishing in-flight requests");
    receiver.set_ready(false);
    let _ = stop_tx.send(true);
    let _ = rw.await;
    let _ = http.await;
    let _ = grpc.await;
    let _ = maintenance.await;
    if let Some(t) = limits_task {
        t.abort();
    }
    if let Some(t) = watcher_task {
        t.abort();
    }
    if let Some(t) = shipping {
        let _ = t.await;
    }
    let tenants = receiver.tenants.clone();
    tokio::task::spawn_blocking(move || tenants.close_all())
        .await
        .map_err(std::io::Error::other)?;
    if receiver.config.objstore.is_some() {
        // The flushed heads are blocks now: one last, bounded, pass ships them.
        let last =
            tokio::time::timeout(std::time::Duration::from_secs(60), ship_all(&receiver)).await;
        if !matches!(last, Ok(true)) {
            tracing::warn!(
                "some blocks are not in the bucket yet; they are shipped after the next start"
            );
        }
    }
    tracing::info!("receiver stopped");
    Ok(())
}
