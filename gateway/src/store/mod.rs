//! Where configuration lives between restarts.
//!
//! The gateway talks to a [`ConfigStore`] only: sled is the default (one binary, no other service),
//! and [`etcd`] plugs in behind the same trait for clusters of nodes. Keys are APISIX's etcd keys
//! (`/apisix/routes/1`) so that the admin API's `key` field and an etcd-backed deployment agree.

pub mod etcd;
mod sled_store;

pub use etcd::EtcdStore;
pub use sled_store::{SledArtifacts, SledStore};

use crate::config::ResourceKind;
use async_trait::async_trait;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("store backend: {0}")]
    Backend(String),
    #[error("stored object {key} is not valid JSON: {reason}")]
    Corrupt { key: String, reason: String },
    /// A shared backend cannot be reached; the gateway keeps serving its last configuration.
    #[error("{0}")]
    Unavailable(String),
    /// Another node changed the configuration after this node last saw it; nothing was written. Retry once
    /// [`ConfigStore::catch_up`] returns, so the change is validated against what it would really apply to.
    #[error("the configuration changed on another node while this write was being validated")]
    Conflict,
}

/// One object as stored: the exact JSON a user wrote, plus the bookkeeping fields.
#[derive(Debug, Clone)]
pub struct StoredObject {
    pub kind: ResourceKind,
    pub id: String,
    pub value: serde_json::Value,
}

/// A change to apply; a list of them is applied all-or-nothing.
#[derive(Debug, Clone)]
pub enum StoreOp {
    Put {
        kind: ResourceKind,
        id: String,
        value: serde_json::Value,
    },
    Delete {
        kind: ResourceKind,
        id: String,
    },
}

#[async_trait]
pub trait ConfigStore: Send + Sync + 'static {
    /// Every stored resource, in key order; used at start-up to rebuild the live snapshot.
    async fn load_all(&self) -> Result<Vec<StoredObject>, StoreError>;
    /// Applies `ops` atomically and returns only once they are durable.
    async fn apply(&self, ops: Vec<StoreOp>) -> Result<(), StoreError>;
    /// Makes everything written so far durable (called on shutdown).
    async fn flush(&self) -> Result<(), StoreError>;
    /// A cheap read that fails when the backend cannot be used (`/status/ready`).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Every uploaded Wasm plugin binary, by name.
    async fn load_plugins(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
    /// Stores (or replaces) a plugin binary durably.
    async fn put_plugin(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError>;
    async fn delete_plugin(&self, name: &str) -> Result<(), StoreError>;

    /// Waits until the live snapshot reflects every change the backend had accepted when this was called.
    /// The embedded store is always caught up; a shared one may be behind other nodes' writes.
    async fn catch_up(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// The backend's revision the live configuration reflects (etcd's), `None` where there is no such thing.
    fn revision(&self) -> Option<i64> {
        None
    }
}

/// Splits a store key back into its kind and id; `None` for keys of other subsystems.
pub fn parse_key(key: &str) -> Option<(ResourceKind, &str)> {
    let rest = key.strip_prefix("/apisix/")?;
    let (segment, id) = rest.split_once('/')?;
    Some((ResourceKind::from_segment(segment)?, id))
}
