//! Upstream load balancing with APISIX's four balancer types.
//!
//! A [`Balancer`] is built once per upstream config version and shared by all
//! requests. Each request calls [`Balancer::pick`] (again with the failed
//! indexes in `tried` for every retry), and reports [`Balancer::on_start`] /
//! [`Balancer::on_finish`] so the load-aware kinds see in-flight counts and
//! latency.
//!
//! Algorithms:
//! - **`roundrobin`** ([`round_robin`]): nginx smooth weighted round robin.
//!   Exact weight ratio over each cycle of `sum(weights)` picks, interleaved
//!   (`5,1,1` → `a a b a c a a`).
//! - **`chash`** ([`chash`]): ketama ring, 160 points per weight unit at
//!   `crc32("addr#i")` (+ murmur3 finaliser). Same key → same node while the
//!   node set is unchanged; adding a node moves ~`1/(n+1)` of keys; retries
//!   walk clockwise to the next untried node. Without a key it falls back to
//!   smooth round robin (APISIX falls back to the client address: the gateway
//!   should pass `remote_addr` as the key to get that behaviour).
//! - **`least_conn`** ([`least_conn`]): lowest `(active + 1) / weight`, as
//!   APISIX's heap scores it; ties rotate.
//! - **`ewma`** ([`ewma`]): peak-EWMA latency decaying with a 10 s time
//!   constant; cost `ewma * (active + 1) / weight`; best of two random
//!   candidates. Never-observed nodes cost 0, so they get tried.
//!
//! Cross-cutting rules:
//! - **Weight 0** nodes are kept in [`Balancer::nodes`] (indexes match the
//!   config) but are never picked by any kind.
//! - **Priority**: nodes are grouped by APISIX `priority`. A pick uses the
//!   highest-priority group that still has a node not in `tried`, so lower
//!   groups serve only after every node above has failed for this request.
//!   Each group runs its own instance of the algorithm, like APISIX's
//!   priority balancer.
//! - `pick` returns `None` once every pickable node is in `tried`.
//! - **Health**: [`Balancer::pick_avoiding`] skips unhealthy nodes (from `upstream.checks`) for every
//!   kind, falling back to them only when nothing else is left.

mod chash;
mod error;
mod ewma;
mod kind;
mod least_conn;
mod load;
mod rng;
mod round_robin;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::time::{Duration, Instant};

pub use self::error::BalancerError;
pub use self::kind::{Kind, NodeSpec};

use self::chash::Chash;
use self::ewma::Ewma;
use self::kind::Member;
use self::least_conn::LeastConn;
use self::load::NodeLoad;
use self::rng::SplitMix;
use self::round_robin::RoundRobin;

/// Picks upstream nodes for one upstream config version.
///
/// `Send + Sync`: round-robin scores sit behind one short mutex, in-flight
/// counts are atomics, latency estimates have a mutex per node.
#[derive(Debug)]
pub struct Balancer {
    kind: Kind,
    nodes: Vec<NodeSpec>,
    /// Highest priority first; only nodes with weight > 0.
    groups: Vec<Group>,
    /// Feedback per node, indexed like `nodes`.
    loads: Vec<NodeLoad>,
}

#[derive(Debug)]
struct Group {
    priority: i32,
    picker: Picker,
}

#[derive(Debug)]
enum Picker {
    RoundRobin(RoundRobin),
    Chash(Chash),
    LeastConn(LeastConn),
    Ewma(Ewma),
}

impl Balancer {
    /// Validates the node list and builds per-priority pickers.
    ///
    /// Errors: no nodes, every weight 0, an empty address, or a duplicated
    /// address.
    pub fn new(kind: Kind, nodes: Vec<NodeSpec>) -> Result<Self, BalancerError> {
        if nodes.is_empty() {
            return Err(BalancerError::NoNodes);
        }
        let mut seen = HashSet::with_capacity(nodes.len());
        for (i, node) in nodes.iter().enumerate() {
            if node.addr.is_empty() {
                return Err(BalancerError::EmptyAddr(i));
            }
            if !seen.insert(node.addr.as_str()) {
                return Err(BalancerError::DuplicateNode(node.addr.clone()));
            }
        }
        if nodes.iter().all(|n| n.weight == 0) {
            return Err(BalancerError::AllZeroWeight);
        }

        let mut priorities: Vec<i32> = nodes
            .iter()
            .filter(|n| n.weight > 0)
            .map(|n| n.priority)
            .collect();
        priorities.sort_unstable_by(|a, b| b.cmp(a));
        priorities.dedup();

        let rng_seed = SplitMix::from_entropy();
        let groups = priorities
            .into_iter()
            .map(|priority| {
                let members: Vec<Member> = nodes
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| n.weight > 0 && n.priority == priority)
                    .map(|(idx, n)| Member {
                        idx,
                        weight: n.weight,
                    })
                    .collect();
                let picker = match kind {
                    Kind::RoundRobin => Picker::RoundRobin(RoundRobin::new(members)),
                    Kind::Chash => Picker::Chash(Chash::new(members, |i| nodes[i].addr.as_str())),
                    Kind::LeastConn => Picker::LeastConn(LeastConn::new(members)),
                    Kind::Ewma => {
                        Picker::Ewma(Ewma::new(members, SplitMix::with_seed(rng_seed.next_u64())))
                    }
                };
                Group { priority, picker }
            })
            .collect();

        let loads = nodes.iter().map(|_| NodeLoad::default()).collect();
        Ok(Self {
            kind,
            nodes,
            groups,
            loads,
        })
    }

    /// Chooses a node index into [`Self::nodes`].
    ///
    /// `hash_key` is only used by `chash`. `tried` holds the indexes that
    /// already failed in this request; they are never returned, and `None`
    /// means every pickable node has been tried (stop retrying).
    pub fn pick(&self, hash_key: Option<&[u8]>, tried: &[usize]) -> Option<usize> {
        self.pick_at(hash_key, tried, Instant::now())
    }

    /// [`Self::pick`], but nodes in `avoid` (unhealthy ones) are used only when no other untried node
    /// is left, so health checks work the same for every kind, and a request still goes somewhere when
    /// every node is unhealthy (as APISIX).
    pub fn pick_avoiding(
        &self,
        hash_key: Option<&[u8]>,
        tried: &[usize],
        avoid: &[usize],
    ) -> Option<usize> {
        if avoid.is_empty() {
            return self.pick(hash_key, tried);
        }
        let skip: Vec<usize> = tried.iter().chain(avoid).copied().collect();
        self.pick(hash_key, &skip)
            .or_else(|| self.pick(hash_key, tried))
    }

    /// [`Self::pick`] at an explicit time, so ewma decay is testable.
    pub(crate) fn pick_at(
        &self,
        hash_key: Option<&[u8]>,
        tried: &[usize],
        now: Instant,
    ) -> Option<usize> {
        self.groups.iter().find_map(|group| match &group.picker {
            Picker::RoundRobin(p) => p.pick(tried),
            Picker::Chash(p) => p.pick(hash_key, tried),
            Picker::LeastConn(p) => p.pick(&self.loads, tried),
            Picker::Ewma(p) => p.pick(&self.loads, tried, now),
        })
    }

    /// A request to node `idx` is being sent. Out-of-range indexes are
    /// ignored: feedback must never be able to crash the data path.
    pub fn on_start(&self, idx: usize) {
        if let Some(load) = self.loads.get(idx) {
            load.start();
        }
    }

    /// The request to `idx` got response headers (or failed) after
    /// `latency`. Must pair with one [`Self::on_start`].
    pub fn on_finish(&self, idx: usize, latency: Duration, ok: bool) {
        self.on_finish_at(idx, latency, ok, Instant::now());
    }

    pub(crate) fn on_finish_at(&self, idx: usize, latency: Duration, ok: bool, now: Instant) {
        let Some(load) = self.loads.get(idx) else {
            return;
        };
        load.finish();
        // Only ewma reads latency; skip its lock for the other kinds.
        if self.kind == Kind::Ewma {
            load.observe(ewma::sample(latency, ok), now);
        }
    }

    /// The configured nodes, in config order (zero-weight ones included).
    pub fn nodes(&self) -> &[NodeSpec] {
        &self.nodes
    }

    /// The balancer type this was built with.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Requests currently in flight to `idx` (for metrics/status pages).
    pub fn active(&self, idx: usize) -> usize {
        self.loads.get(idx).map_or(0, NodeLoad::active)
    }

    /// Priorities that have at least one pickable node, highest first.
    pub fn priorities(&self) -> impl Iterator<Item = i32> + '_ {
        self.groups.iter().map(|g| g.priority)
    }
}
