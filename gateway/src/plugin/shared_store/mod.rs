//! The `shared` import: counters and values every gateway node sees, in a store the plugin's config names
//! (APISIX's `policy: "redis"` / `"redis-cluster"` for `limit-count` and `limit-req`).
//!
//! Why the plugin names the store rather than the gateway: APISIX configures Redis per plugin instance, so
//! one gateway may count one route in one Redis and another route elsewhere; an APISIX config carries its
//! `redis_*` fields over unchanged. The host keeps one connection per distinct [`Backend`] (bounded, see
//! [`redis::MAX_BACKENDS`]), so naming the store on every call costs a map lookup, not a connection.
//!
//! Calls are synchronous for the guest: the I/O runs on the host's own runtime and the guest's thread waits
//! inside `block_in_place`, never longer than the store's timeout (see [`super::io_runtime`]), and that wait
//! is not charged to the phase deadline (as with `cache.lookup`).

mod redis;

pub use self::redis::RedisShared;
use super::services::{StoreError, WindowCount};
use std::time::Duration;

/// A password or other secret: compared and hashed like a string, never printed.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RedisNode {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for RedisNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Who to log in as, and how long one call may take.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RedisAccess {
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub timeout: Duration,
}

/// A store named by a plugin's config.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Backend {
    Redis {
        node: RedisNode,
        database: u32,
        access: RedisAccess,
    },
    RedisCluster {
        nodes: Vec<RedisNode>,
        access: RedisAccess,
    },
}

impl Backend {
    /// The bound of every call to this store, connecting included.
    pub fn timeout(&self) -> Duration {
        match self {
            Backend::Redis { access, .. } | Backend::RedisCluster { access, .. } => access.timeout,
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Redis { node, database, .. } => write!(f, "redis {node} (db {database})"),
            Backend::RedisCluster { nodes, .. } => {
                let nodes: Vec<String> = nodes.iter().map(ToString::to_string).collect();
                write!(f, "redis-cluster {}", nodes.join(","))
            }
        }
    }
}

/// Stores shared between gateway nodes. Keys arrive namespaced per plugin.
pub trait SharedStores: Send + Sync {
    /// Atomically adds `delta` to `key` in a fixed window of `window` that starts with the first increment.
    fn incr(
        &self,
        backend: &Backend,
        key: &str,
        delta: u64,
        window: Duration,
    ) -> Result<WindowCount, StoreError>;
    /// The live value of `key`.
    fn get(&self, backend: &Backend, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Sets `key` to `new` (for `ttl`) if it holds `expected` (`None`: absent), atomically.
    fn compare_and_swap(
        &self,
        backend: &Backend,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError>;
}
