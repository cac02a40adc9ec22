//! The channel between one provider loop and one upstream runtime: nodes go one way, refresh requests
//! and the end of the upstream the other.
//!
//! The feed holds the runtime only weakly, so a provider loop never keeps a deleted or replaced upstream
//! alive; dropping the runtime drops the refresh sender, which ends every [`Feed::wait`] with
//! [`Wake::Closed`].

use super::DiscoveredNode;
use std::sync::Weak;
use tokio::sync::watch;
use tokio::time::Instant;

/// What receives a provider's results: the upstream's node set (`upstream::members`).
pub trait NodeSink: Send + Sync {
    /// The complete current node list of feed `slot`.
    fn publish(&self, slot: usize, nodes: Vec<DiscoveredNode>);
    /// A lookup for feed `slot` failed; its previous nodes stay.
    fn failed(&self, slot: usize, error: &str);
}

/// Why [`Feed::wait`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// The deadline passed.
    Timer,
    /// The data path asked for fresh nodes (a connect to one of them failed).
    Refresh,
    /// The upstream is gone: stop following.
    Closed,
}

pub struct Feed {
    sink: Weak<dyn NodeSink>,
    slot: usize,
    refresh: watch::Receiver<u64>,
}

impl Feed {
    pub fn new(sink: Weak<dyn NodeSink>, slot: usize, refresh: watch::Receiver<u64>) -> Feed {
        Feed {
            sink,
            slot,
            refresh,
        }
    }

    /// Replaces this feed's nodes; false once the upstream is gone.
    pub fn publish(&self, nodes: Vec<DiscoveredNode>) -> bool {
        match self.sink.upgrade() {
            Some(sink) => {
                sink.publish(self.slot, nodes);
                true
            }
            None => false,
        }
    }

    /// Reports a failed lookup (logged once per change by the sink); false once the upstream is gone.
    pub fn fail(&self, error: &str) -> bool {
        match self.sink.upgrade() {
            Some(sink) => {
                sink.failed(self.slot, error);
                true
            }
            None => false,
        }
    }

    /// Sleeps until `until`, a refresh request or the end of the upstream, whichever comes first.
    pub async fn wait(&mut self, until: Instant) -> Wake {
        tokio::select! {
            () = tokio::time::sleep_until(until) => Wake::Timer,
            changed = self.refresh.changed() => match changed {
                Ok(()) => Wake::Refresh,
                Err(_) => Wake::Closed,
            },
        }
    }
}
