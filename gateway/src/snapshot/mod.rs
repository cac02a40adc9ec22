//! The live configuration: an immutable [`Snapshot`] compiled from every stored object and swapped
//! atomically.
//!
//! Each request loads the current snapshot once and keeps it to the end, so a config change never
//! shows a request half of an update, and requests in flight finish on the snapshot they started with.
//! Building a snapshot is also the full validation of a write: the admin API builds the candidate
//! snapshot first and stores the write only if that succeeds.

mod build;
mod config_set;

pub use build::{RouteEntry, Snapshot};
pub use config_set::{ConfigSet, Objects};

use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// The pointer every request reads and the admin API replaces.
pub struct Live {
    current: ArcSwap<Snapshot>,
    /// Snapshots installed since start (1 = the one loaded at start); exported as `sluice_config_version`.
    version: AtomicU64,
    /// When the current snapshot was installed, in milliseconds since the Unix epoch.
    installed_ms: AtomicU64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Live {
    pub fn new(initial: Snapshot) -> Self {
        Live {
            current: ArcSwap::from_pointee(initial),
            version: AtomicU64::new(1),
            installed_ms: AtomicU64::new(now_ms()),
        }
    }

    /// How many snapshots have been installed since start, and when the current one was (Unix seconds).
    pub fn version(&self) -> (u64, f64) {
        let at = self.installed_ms.load(Relaxed) as f64 / 1000.0;
        (self.version.load(Relaxed), at)
    }

    /// The snapshot to use for one whole request.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    pub fn store(&self, next: Snapshot) {
        self.current.store(Arc::new(next));
        self.installed_ms.store(now_ms(), Relaxed);
        self.version.fetch_add(1, Relaxed);
    }
}
