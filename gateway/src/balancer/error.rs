//! Errors raised while building a [`super::Balancer`].

use thiserror::Error;

/// Why an upstream's node list cannot be turned into a balancer.
///
/// These are configuration errors: they are reported when the upstream is
/// loaded so that a broken upstream is rejected up front instead of failing
/// every request at pick time.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BalancerError {
    /// The upstream lists no nodes at all.
    #[error("upstream has no nodes")]
    NoNodes,
    /// Every node has weight 0, so no node could ever be picked.
    #[error("all upstream nodes have weight 0")]
    AllZeroWeight,
    /// A node's address is empty.
    #[error("upstream node {0} has an empty address")]
    EmptyAddr(usize),
    /// The same `host:port` appears twice. APISIX keys nodes by address, so a
    /// duplicate is a config mistake; accepting it would also put identical
    /// points on the chash ring.
    #[error("upstream node address {0:?} appears more than once")]
    DuplicateNode(String),
    /// The `type` string is not one of the supported balancer kinds.
    #[error("unknown balancer type {0:?} (expected roundrobin, chash, least_conn or ewma)")]
    UnknownKind(String),
}
