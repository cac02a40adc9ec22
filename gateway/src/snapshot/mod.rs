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
use std::sync::Arc;

/// The pointer every request reads and the admin API replaces.
pub struct Live {
    current: ArcSwap<Snapshot>,
}

impl Live {
    pub fn new(initial: Snapshot) -> Self {
        Live {
            current: ArcSwap::from_pointee(initial),
        }
    }

    /// The snapshot to use for one whole request.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    pub fn store(&self, next: Snapshot) {
        self.current.store(Arc::new(next));
    }
}
