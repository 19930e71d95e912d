//! A value built from files, rebuilt when one of them changes.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::TlsError;

/// What identifies one version of a file: inode (a Kubernetes secret update swaps a symlink to
/// a new file), size and modification time. `None` when it cannot be read.
type Stamp = Option<(u64, u64, SystemTime)>;

fn stamp(path: &PathBuf) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.ino(), m.len(), m.modified().ok()?))
}

type Build<T> = Box<dyn Fn() -> Result<Arc<T>, TlsError> + Send + Sync>;

pub(crate) struct Reloading<T> {
    /// For logs: which configuration this is.
    what: String,
    paths: Vec<PathBuf>,
    build: Build<T>,
    state: Mutex<(Vec<Stamp>, Arc<T>)>,
    reloads: AtomicU64,
}

impl<T> Reloading<T> {
    /// Builds the first version; its errors are the caller's.
    pub(crate) fn new(
        what: String,
        paths: Vec<PathBuf>,
        build: Build<T>,
    ) -> Result<Self, TlsError> {
        let stamps = paths.iter().map(stamp).collect();
        let first = build()?;
        Ok(Reloading {
            what,
            paths,
            build,
            state: Mutex::new((stamps, first)),
            reloads: AtomicU64::new(0),
        })
    }

    /// The current version, rebuilt first if a file changed since the last look. A rebuild
    /// that fails (a half-rotated pair, say) keeps the previous version and is tried again
    /// at the next change.
    pub(crate) fn current(&self) -> Arc<T> {
        let stamps: Vec<Stamp> = self.paths.iter().map(stamp).collect();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if stamps != state.0 {
            state.0 = stamps;
            match (self.build)() {
                Ok(new) => {
                    state.1 = new;
                    self.reloads.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(what = %self.what, "TLS files changed; reloaded");
                }
                Err(e) => tracing::warn!(
                    what = %self.what,
                    error = %e,
                    "TLS files changed but do not load; keeping the previous ones"
                ),
            }
        }
        state.1.clone()
    }

    /// How many times the files were reloaded successfully.
    pub(crate) fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }
}
