//! The balancer kinds and the node description they work on.

use std::fmt;
use std::str::FromStr;

use super::error::BalancerError;

/// Load-balancing algorithm, named as in APISIX's upstream `type` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `roundrobin`: nginx smooth weighted round robin.
    RoundRobin,
    /// `chash`: consistent hashing on a request key.
    Chash,
    /// `least_conn`: fewest in-flight requests per unit of weight.
    LeastConn,
    /// `ewma`: peak-EWMA latency, power of two choices.
    Ewma,
}

impl Kind {
    /// The APISIX spelling, so config round-trips unchanged.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::RoundRobin => "roundrobin",
            Kind::Chash => "chash",
            Kind::LeastConn => "least_conn",
            Kind::Ewma => "ewma",
        }
    }
}

impl FromStr for Kind {
    type Err = BalancerError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "roundrobin" => Ok(Kind::RoundRobin),
            "chash" => Ok(Kind::Chash),
            "least_conn" => Ok(Kind::LeastConn),
            "ewma" => Ok(Kind::Ewma),
            other => Err(BalancerError::UnknownKind(other.to_owned())),
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One upstream node as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    /// `host:port`; also the identity used to place the node on the chash
    /// ring, so the same address hashes the same way in every config version.
    pub addr: String,
    /// Relative share of traffic; 0 means "configured but never picked".
    pub weight: u32,
    /// APISIX node priority: higher groups are used first, lower groups only
    /// once every node above them has been tried in the current request.
    pub priority: i32,
}

impl NodeSpec {
    /// A node with APISIX's default priority 0.
    pub fn new(addr: impl Into<String>, weight: u32) -> Self {
        Self {
            addr: addr.into(),
            weight,
            priority: 0,
        }
    }

    /// Same node with another priority (builder style for terse configs).
    pub fn with_priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }
}

/// A pickable node inside one priority group: its index in
/// [`super::Balancer::nodes`] and its (non-zero) weight.
///
/// Algorithms return `idx` directly so callers never translate indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Member {
    pub idx: usize,
    pub weight: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_round_trips_apisix_names() {
        for name in ["roundrobin", "chash", "least_conn", "ewma"] {
            let kind: Kind = name.parse().expect("known kind");
            assert_eq!(kind.as_str(), name);
            assert_eq!(kind.to_string(), name);
        }
        assert_eq!(
            "random".parse::<Kind>(),
            Err(BalancerError::UnknownKind("random".into()))
        );
    }
}
