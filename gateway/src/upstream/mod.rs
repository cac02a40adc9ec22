//! Everything about reaching an upstream: the per-upstream runtime built from config (balancer, timeouts,
//! retry policy, host rewriting), name resolution, the keepalive connection pool, and node [`health`]
//! checks (active probes and passive observation, APISIX's `checks`).
//!
//! A runtime is built once per upstream config version and shared by every request (and every snapshot
//! that did not change it), so balancer state and pooled connections survive unrelated config writes.

mod dns;
pub mod health;
mod pool;
mod runtime;

pub use dns::Dns;
pub use pool::{ConnPool, ConnectError, PoolSettings, PoolTls, PooledConn, Protocol};
pub use runtime::{HashOn, Timeouts, UpstreamRuntime};
