//! Everything about reaching an upstream: the per-upstream runtime built from config (timeouts, retry
//! policy, host rewriting), its current node set ([`members`]: balancer and health view, swapped when
//! [`discovery`] finds other nodes), the keepalive connection pool, and node [`health`] checks (active
//! probes and passive observation, APISIX's `checks`).
//!
//! A runtime is built once per upstream config version and shared by every request (and every snapshot
//! that did not change it), so balancer state and pooled connections survive unrelated config writes.

pub mod discovery;
pub mod health;
mod members;
mod pool;
mod runtime;

pub use members::{Member, Members};
pub use pool::{ConnPool, ConnectError, PoolSettings, PoolTls, PooledConn, Protocol};
pub use runtime::{HashOn, Timeouts, UpstreamRuntime};
