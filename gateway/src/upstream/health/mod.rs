//! Upstream health checks (`upstream.checks`, APISIX's shape): which nodes of one upstream are fit to
//! receive traffic.
//!
//! - **Active** ([`active`]): one background task per upstream probes every node of its current node set
//!   (`http`, `https` or `tcp`) every `healthy.interval` / `unhealthy.interval` seconds, at most
//!   `concurrency` at a time. The task holds the node set only weakly, so it ends once the upstream
//!   runtime is dropped (a config change that rebuilt it, or its deletion). Runtimes are shared by every
//!   route using the upstream and reused across snapshots while unchanged, so there is one checker per
//!   upstream, however often service discovery changes its nodes.
//! - **Passive**: the proxy reports each attempt's outcome ([`HealthView::observe`]); statuses are
//!   classified by `checks.passive` lists, connect/exchange errors count as `tcp_failures`, timeouts as
//!   `timeouts`. A node marked unhealthy recovers through active probes when `checks.active` is set;
//!   without it, after [`PASSIVE_RECOVERY`] (APISIX never recovers such a node; we follow nginx's
//!   `fail_timeout` idea instead, so a passive-only upstream cannot lose its nodes for good).
//!
//! State is per node address ([`NodeHealth`]), shared by every node set that holds the address, so a
//! discovery update keeps the state of the nodes it keeps ([`Health::view`]); the upstream-wide
//! [`Health`] holds the rules. The balancer avoids the nodes in [`HealthView::unhealthy`]; when every
//! remaining node is unhealthy the request still goes to one of them (as APISIX), because failing
//! everything helps nobody. State lives in atomics ([`state`]); the request path reads one counter when
//! all nodes are healthy. Transitions are logged (`warn` when a node goes down, `info` when it comes back)
//! with the upstream and node, and the admin API shows the state ([`HealthView::report`]).

pub(crate) mod active;
mod probe;
mod state;

pub use state::{Counters, Outcome, Thresholds, Transition};

use crate::config::{Checks, ProbeKind};
use state::NodeState;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a node marked unhealthy by passive checks alone stays out before it gets traffic again.
pub const PASSIVE_RECOVERY: Duration = Duration::from_secs(10);

/// Who produced a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Active,
    Passive,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Active => "active",
            Source::Passive => "passive",
        }
    }
}

/// A raw result before the configured status lists classify it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    /// A response head with this status.
    Status(u16),
    /// A TCP probe connected.
    Connected,
    /// Connect refused/reset, or the connection broke during the exchange.
    TcpFailure,
    Timeout,
}

/// One side's (active or passive) classification and thresholds.
#[derive(Debug, Clone)]
struct Rules {
    healthy_statuses: Vec<u16>,
    unhealthy_statuses: Vec<u16>,
    thresholds: Thresholds,
}

impl Rules {
    /// `failures` is `[http_failures, tcp_failures, timeouts]`.
    fn new(healthy: &[u16], successes: u32, unhealthy: &[u16], failures: [u32; 3]) -> Rules {
        let [http_failures, tcp_failures, timeouts] = failures;
        Rules {
            healthy_statuses: healthy.to_vec(),
            unhealthy_statuses: unhealthy.to_vec(),
            thresholds: Thresholds {
                successes,
                http_failures,
                tcp_failures,
                timeouts,
            },
        }
    }

    /// A status in neither list is evidence of nothing, as in lua-resty-healthcheck.
    fn classify(&self, obs: Observation) -> Option<Outcome> {
        match obs {
            Observation::Status(s) if self.healthy_statuses.contains(&s) => Some(Outcome::Success),
            Observation::Status(s) if self.unhealthy_statuses.contains(&s) => {
                Some(Outcome::HttpFailure)
            }
            Observation::Status(_) => None,
            Observation::Connected => Some(Outcome::Success),
            Observation::TcpFailure => Some(Outcome::TcpFailure),
            Observation::Timeout => Some(Outcome::Timeout),
        }
    }
}

/// The last result recorded for a node, packed into one atomic so the request path can store it.
/// Layout: `at_ms << 24 | status << 8 | source << 4 | observation code` (code 0: nothing yet).
#[derive(Debug, Default)]
struct LastCheck(AtomicU64);

impl LastCheck {
    fn store(&self, source: Source, obs: Observation, at_ms: u64) {
        let (code, status) = match obs {
            Observation::Status(s) => (1, s),
            Observation::Connected => (2, 0),
            Observation::TcpFailure => (3, 0),
            Observation::Timeout => (4, 0),
        };
        let src = u64::from(source == Source::Passive);
        self.0.store(
            (at_ms << 24) | (u64::from(status) << 8) | (src << 4) | code,
            Ordering::Relaxed,
        );
    }

    fn load(&self) -> Option<(Source, Observation, u64)> {
        let v = self.0.load(Ordering::Relaxed);
        let status = ((v >> 8) & 0xffff) as u16;
        let obs = match v & 0xf {
            1 => Observation::Status(status),
            2 => Observation::Connected,
            3 => Observation::TcpFailure,
            4 => Observation::Timeout,
            _ => return None,
        };
        let source = if (v >> 4) & 1 == 1 {
            Source::Passive
        } else {
            Source::Active
        };
        Some((source, obs, v >> 24))
    }
}

/// One node's health: shared by every node set (see [`HealthView`]) that holds the same address, so state
/// and counters survive a discovery update that keeps the node.
pub struct NodeHealth {
    /// What identifies the node across node sets (its name and address).
    key: Arc<str>,
    /// `host:port` as configured or discovered.
    authority: String,
    addr: SocketAddr,
    state: NodeState,
    last: LastCheck,
    /// The upstream's count of unhealthy nodes, kept right when this node is dropped while unhealthy.
    unhealthy: Arc<AtomicUsize>,
}

impl NodeHealth {
    pub fn key(&self) -> &Arc<str> {
        &self.key
    }
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    pub fn authority(&self) -> &str {
        &self.authority
    }
}

impl Drop for NodeHealth {
    fn drop(&mut self) {
        if !self.state.is_healthy() {
            self.unhealthy.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Health rules and bookkeeping of one upstream runtime; the nodes themselves are in [`HealthView`]s.
pub struct Health {
    upstream: String,
    probe_kind: Option<ProbeKind>,
    /// Unhealthy nodes alive in any node set: the request path's fast check (0: skip the scan).
    unhealthy: Arc<AtomicUsize>,
    /// Nodes marked unhealthy, and healthy again, since this upstream runtime was built (metrics).
    went_down: AtomicU64,
    came_back: AtomicU64,
    epoch: Instant,
    active: Option<Rules>,
    passive: Option<Rules>,
}

/// A node to track: what [`Health::view`] needs of each member of a node set.
pub struct Tracked<'a> {
    pub key: &'a Arc<str>,
    pub authority: String,
    pub addr: SocketAddr,
}

impl Health {
    /// Rules for `checks`; the active checker is started separately ([`active::spawn`]).
    pub fn new(upstream: &str, checks: &Checks) -> Health {
        let active = checks.active.as_ref().map(|a| {
            let (h, u) = (&a.healthy, &a.unhealthy);
            Rules::new(
                &h.http_statuses,
                h.successes,
                &u.http_statuses,
                [u.http_failures, u.tcp_failures, u.timeouts],
            )
        });
        let passive = checks.passive.as_ref().map(|p| {
            let (h, u) = (&p.healthy, &p.unhealthy);
            Rules::new(
                &h.http_statuses,
                h.successes,
                &u.http_statuses,
                [u.http_failures, u.tcp_failures, u.timeouts],
            )
        });
        Health {
            upstream: upstream.to_string(),
            probe_kind: checks.active.as_ref().map(|a| a.kind),
            unhealthy: Arc::new(AtomicUsize::new(0)),
            went_down: AtomicU64::new(0),
            came_back: AtomicU64::new(0),
            epoch: Instant::now(),
            active,
            passive,
        }
    }

    /// Health of a node set: nodes also in `previous` (same key) keep their state, new ones start healthy.
    pub fn view<'a>(
        self: &Arc<Self>,
        nodes: impl IntoIterator<Item = Tracked<'a>>,
        previous: Option<&HealthView>,
    ) -> HealthView {
        let nodes = nodes
            .into_iter()
            .map(|t| {
                previous
                    .and_then(|p| p.nodes.iter().find(|n| n.key == *t.key))
                    .cloned()
                    .unwrap_or_else(|| {
                        Arc::new(NodeHealth {
                            key: Arc::clone(t.key),
                            authority: t.authority,
                            addr: t.addr,
                            state: NodeState::default(),
                            last: LastCheck::default(),
                            unhealthy: Arc::clone(&self.unhealthy),
                        })
                    })
            })
            .collect();
        HealthView {
            health: Arc::clone(self),
            nodes,
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Feeds one result for `node`. Results of a side that is not configured are ignored.
    pub fn observe(&self, node: &NodeHealth, source: Source, obs: Observation) {
        let rules = match source {
            Source::Active => &self.active,
            Source::Passive => &self.passive,
        };
        let Some(rules) = rules else {
            return;
        };
        let now = self.now_ms();
        node.last.store(source, obs, now);
        let Some(outcome) = rules.classify(obs) else {
            return;
        };
        match node.state.record(outcome, &rules.thresholds, now) {
            Some(Transition::BecameUnhealthy) => {
                self.unhealthy.fetch_add(1, Ordering::Relaxed);
                self.went_down.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(upstream = %self.upstream, node = %node.authority, addr = %node.addr, source = source.as_str(), cause = ?obs, "upstream node marked unhealthy");
            }
            Some(Transition::BecameHealthy) => {
                self.unhealthy.fetch_sub(1, Ordering::Relaxed);
                self.came_back.fetch_add(1, Ordering::Relaxed);
                tracing::info!(upstream = %self.upstream, node = %node.authority, addr = %node.addr, source = source.as_str(), "upstream node healthy again");
            }
            None => {}
        }
    }

    /// Whether `node` should get traffic. Also where a passive-only upstream lets a node back in after
    /// [`PASSIVE_RECOVERY`]: checking here needs no timer task.
    pub fn is_healthy(&self, node: &NodeHealth) -> bool {
        self.is_healthy_at(node, self.now_ms())
    }

    fn is_healthy_at(&self, node: &NodeHealth, now_ms: u64) -> bool {
        if node.state.is_healthy() {
            return true;
        }
        let recovery_ms = PASSIVE_RECOVERY.as_millis() as u64;
        if self.active.is_none()
            && now_ms.saturating_sub(node.state.unhealthy_since_ms()) >= recovery_ms
            && node.state.reset_healthy()
        {
            self.unhealthy.fetch_sub(1, Ordering::Relaxed);
            self.came_back.fetch_add(1, Ordering::Relaxed);
            tracing::info!(upstream = %self.upstream, node = %node.authority, addr = %node.addr, after_s = PASSIVE_RECOVERY.as_secs(), "upstream node back in after the passive recovery timeout");
            return true;
        }
        false
    }

    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// State changes since this runtime was built: (marked unhealthy, healthy again).
    pub fn transitions(&self) -> (u64, u64) {
        (
            self.went_down.load(Ordering::Relaxed),
            self.came_back.load(Ordering::Relaxed),
        )
    }
}

/// One upstream's health in figures, read at scrape time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthTally {
    pub nodes: usize,
    pub unhealthy: usize,
    pub went_down: u64,
    pub came_back: u64,
}

/// The health of one node set, indexed like its members and its balancer.
pub struct HealthView {
    health: Arc<Health>,
    nodes: Vec<Arc<NodeHealth>>,
}

impl HealthView {
    pub fn observe(&self, idx: usize, source: Source, obs: Observation) {
        if let Some(node) = self.nodes.get(idx) {
            self.health.observe(node, source, obs);
        }
    }

    pub fn is_healthy(&self, idx: usize) -> bool {
        self.nodes
            .get(idx)
            .is_none_or(|n| self.health.is_healthy(n))
    }

    /// Indexes of the nodes to avoid now; empty (no allocation) while every node is healthy.
    pub fn unhealthy(&self) -> Vec<usize> {
        if self.health.unhealthy.load(Ordering::Relaxed) == 0 {
            return Vec::new();
        }
        (0..self.nodes.len())
            .filter(|&i| !self.is_healthy(i))
            .collect()
    }

    pub fn nodes(&self) -> &[Arc<NodeHealth>] {
        &self.nodes
    }

    /// For metrics: the nodes of this set, how many are unhealthy now, and the upstream's transitions.
    pub fn tally(&self) -> HealthTally {
        let (went_down, came_back) = self.health.transitions();
        HealthTally {
            nodes: self.nodes.len(),
            unhealthy: (0..self.nodes.len())
                .filter(|&i| !self.is_healthy(i))
                .count(),
            went_down,
            came_back,
        }
    }

    /// The admin view: per node its state, counters and last result.
    pub fn report(&self) -> serde_json::Value {
        let h = &self.health;
        let now = h.now_ms();
        let nodes: Vec<serde_json::Value> = self
            .nodes
            .iter()
            .map(|n| {
                let last = n.last.load().map(|(source, obs, at)| {
                    let (result, status) = match obs {
                        Observation::Status(s) => ("http_status", Some(s)),
                        Observation::Connected => ("connected", None),
                        Observation::TcpFailure => ("tcp_failure", None),
                        Observation::Timeout => ("timeout", None),
                    };
                    serde_json::json!({
                        "source": source.as_str(),
                        "result": result,
                        "status": status,
                        "ms_ago": now.saturating_sub(at),
                    })
                });
                serde_json::json!({
                    "node": n.authority,
                    "addr": n.addr.to_string(),
                    "status": if h.is_healthy(n) { "healthy" } else { "unhealthy" },
                    "counter": n.state.counters(),
                    "last_check": last,
                })
            })
            .collect();
        serde_json::json!({
            "name": h.upstream,
            "type": h.probe_kind.map(ProbeKind::as_str),
            "active": h.active.is_some(),
            "passive": h.passive.is_some(),
            "nodes": nodes,
        })
    }
}

/// Health tracking for an upstream with `checks`: the rules, and the active probe plan when
/// `checks.active` is set (validated here, so a bad value fails the admin write). The node sets start the
/// checker ([`active::spawn`]) once they exist.
pub fn prepare(
    upstream: &str,
    checks: &Checks,
    tls: Option<crate::tls::UpstreamTlsSpec<'_>>,
) -> Result<(Arc<Health>, Option<active::Plan>), crate::config::ConfigError> {
    let health = Arc::new(Health::new(upstream, checks));
    let plan = match &checks.active {
        Some(a) => Some(active::Plan::new(a, tls)?),
        None => None,
    };
    Ok((health, plan))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view(checks: serde_json::Value) -> HealthView {
        let checks = Checks::parse(&checks).expect("checks");
        let health = Arc::new(Health::new("upstreams/t", &checks));
        let keys: Vec<Arc<str>> = vec!["127.0.0.1:1".into(), "127.0.0.1:2".into()];
        health.view(keys.iter().map(tracked), None)
    }

    fn tracked(key: &Arc<str>) -> Tracked<'_> {
        Tracked {
            key,
            authority: key.to_string(),
            addr: key.parse().expect("addr"),
        }
    }

    #[test]
    fn passive_statuses_are_classified_by_the_configured_lists() {
        let h = view(json!({"passive": {"unhealthy": {"http_failures": 2}}}));
        h.observe(0, Source::Passive, Observation::Status(500));
        h.observe(0, Source::Passive, Observation::Status(404)); // neither list: no evidence
        assert!(h.is_healthy(0));
        h.observe(0, Source::Passive, Observation::Status(503));
        assert!(!h.is_healthy(0));
        assert_eq!(h.unhealthy(), [0]);
        // Active results are ignored without checks.active.
        h.observe(0, Source::Active, Observation::Status(200));
        assert_eq!(h.unhealthy(), [0]);
        let r = h.report();
        assert_eq!(r["nodes"][0]["status"], "unhealthy");
        assert_eq!(r["nodes"][0]["last_check"]["status"], 503);
        assert_eq!(r["nodes"][1]["status"], "healthy");
        assert_eq!(r["nodes"][1]["last_check"], serde_json::Value::Null);
    }

    #[test]
    fn passive_only_nodes_come_back_after_the_recovery_timeout() {
        let h = view(json!({"passive": {"unhealthy": {"tcp_failures": 1}}}));
        h.observe(0, Source::Passive, Observation::TcpFailure);
        let node = &h.nodes[0];
        let since = node.state.unhealthy_since_ms();
        let recovery = PASSIVE_RECOVERY.as_millis() as u64;
        assert!(!h.health.is_healthy_at(node, since + recovery - 1));
        assert!(h.health.is_healthy_at(node, since + recovery));
        assert!(h.unhealthy().is_empty());
        // With active checks, only probes bring a node back.
        let h = view(
            json!({"active": {"unhealthy": {"tcp_failures": 1}}, "passive": {"unhealthy": {"tcp_failures": 1}}}),
        );
        h.observe(0, Source::Passive, Observation::TcpFailure);
        assert!(!h.health.is_healthy_at(&h.nodes[0], u64::MAX / 2));
    }

    #[test]
    fn last_check_round_trips_through_its_packing() {
        let l = LastCheck::default();
        assert_eq!(l.load(), None);
        l.store(Source::Passive, Observation::Status(503), 123_456);
        assert_eq!(
            l.load(),
            Some((Source::Passive, Observation::Status(503), 123_456))
        );
        l.store(Source::Active, Observation::Timeout, 7);
        assert_eq!(l.load(), Some((Source::Active, Observation::Timeout, 7)));
    }

    #[test]
    fn active_successes_bring_a_node_back() {
        let h = view(
            json!({"active": {"healthy": {"successes": 2}, "unhealthy": {"tcp_failures": 1}}}),
        );
        h.observe(1, Source::Active, Observation::TcpFailure);
        assert_eq!(h.unhealthy(), [1]);
        h.observe(1, Source::Active, Observation::Status(200));
        assert_eq!(h.unhealthy(), [1]);
        h.observe(1, Source::Active, Observation::Status(200));
        assert!(h.unhealthy().is_empty());
    }

    #[test]
    fn state_follows_a_node_into_the_next_set_and_leaves_with_it() {
        let h = view(json!({"passive": {"unhealthy": {"tcp_failures": 1}}}));
        h.observe(1, Source::Passive, Observation::TcpFailure);
        assert_eq!(h.health.unhealthy.load(Ordering::Relaxed), 1);
        // Node 2 stays (now first), node 1 goes, a new one comes.
        let keys: Vec<Arc<str>> = vec!["127.0.0.1:2".into(), "127.0.0.1:3".into()];
        let next = h.health.view(keys.iter().map(tracked), Some(&h));
        assert_eq!(next.unhealthy(), [0]);
        assert!(next.is_healthy(1));
        drop(h);
        assert_eq!(next.health.unhealthy.load(Ordering::Relaxed), 1);
        let keys: Vec<Arc<str>> = vec!["127.0.0.1:3".into()];
        let last = next.health.view(keys.iter().map(tracked), Some(&next));
        drop(next);
        // The unhealthy node left with the set that held it: the fast path is clear again.
        assert_eq!(last.health.unhealthy.load(Ordering::Relaxed), 0);
        assert!(last.unhealthy().is_empty());
    }
}
