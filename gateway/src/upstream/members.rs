//! The node set an upstream balances over right now, and how service discovery changes it.
//!
//! A [`Members`] is immutable: the nodes (each a socket address, with the name it answers to), the
//! balancer over them and their health view. [`Membership`] holds the current one and swaps in a new one
//! whenever a discovery feed publishes a different list; a request keeps the set it started with for all
//! its attempts (see `discovery` for why). Upstreams whose nodes are all IP literals get one set at build
//! time and no feed, so they pay one `Arc` clone per request for all this.

use super::discovery::{DiscoveredNode, Discovery, Feed, NodeSink, Service};
use super::health::active::{self, Plan, ProbeNode};
use super::health::{Health, HealthView, Observation, Source, Tracked};
use crate::balancer::{Balancer, Kind, NodeSpec};
use crate::config::{ConfigError, NodeEntry};
use arc_swap::ArcSwap;
use rustls::pki_types::ServerName;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::watch;

/// One node the balancer can pick.
pub struct Member {
    /// Host (name or IP), port, weight and priority: the `Host` under `pass_host: node`, reports.
    pub node: NodeEntry,
    /// Where to connect.
    pub addr: SocketAddr,
    /// Identity across node sets (name and address): keys the balancer's hash ring, health state and
    /// pooled connections, so a connection opened for one name is never reused for another.
    pub key: Arc<str>,
    /// The TLS server name, for `https`/`grpcs` upstreams.
    pub tls_name: Option<ServerName<'static>>,
}

/// One immutable node set.
pub struct Members {
    pub list: Vec<Member>,
    /// `None` when no node can take traffic (none discovered, or every weight 0).
    balancer: Option<Balancer>,
    health: Option<HealthView>,
}

impl Members {
    /// A node to try, skipping `tried` and, while others are left, unhealthy nodes.
    pub fn pick(&self, hash_key: Option<&[u8]>, tried: &[usize]) -> Option<usize> {
        let balancer = self.balancer.as_ref()?;
        let avoid = self
            .health
            .as_ref()
            .map_or_else(Vec::new, HealthView::unhealthy);
        balancer.pick_avoiding(hash_key, tried, &avoid)
    }

    pub fn balancer(&self) -> Option<&Balancer> {
        self.balancer.as_ref()
    }

    /// Feeds a passive health-check result; free for upstreams without `checks`.
    pub fn observe(&self, idx: usize, obs: Observation) {
        if let Some(h) = &self.health {
            h.observe(idx, Source::Passive, obs);
        }
    }

    pub fn health(&self) -> Option<&HealthView> {
        self.health.as_ref()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// How members are named for TLS: by their own host, or all by the `upstream_host` of `pass_host:
/// rewrite`. `None` for plain upstreams.
#[derive(Clone)]
pub struct TlsNaming {
    pub rewrite: Option<String>,
}

impl TlsNaming {
    pub fn name_for(&self, host: &str) -> Result<ServerName<'static>, ConfigError> {
        let host = self.rewrite.as_deref().unwrap_or(host);
        ServerName::try_from(host.to_string()).map_err(|_| {
            ConfigError::new(format!(
                "nodes: {host:?} is not usable as a TLS server name"
            ))
        })
    }
}

/// What one discovery feed has reported so far.
#[derive(Default)]
struct Slot {
    nodes: Vec<DiscoveredNode>,
    reported: bool,
    error: Option<String>,
}

/// The current node set of one upstream runtime and the feeds that change it.
pub struct Membership {
    upstream: String,
    kind: Kind,
    tls: Option<TlsNaming>,
    /// Nodes given as IP literals: in every set.
    fixed: Vec<NodeEntry>,
    slots: Mutex<Vec<Slot>>,
    current: ArcSwap<Members>,
    health: Option<Arc<Health>>,
    /// Every feed has reported at least once (always true without feeds).
    ready: AtomicBool,
    ready_tx: watch::Sender<bool>,
    /// Bumped to ask the feeds for fresh nodes; dropped with the membership, which ends the feeds.
    refresh: watch::Sender<u64>,
}

/// A service an upstream follows, with the provider that follows it.
pub type Followed = (Arc<dyn Discovery>, Service);

/// What [`Membership::start`] needs besides the fixed nodes.
pub struct Setup {
    pub upstream: String,
    pub kind: Kind,
    pub tls: Option<TlsNaming>,
    pub health: Option<(Arc<Health>, Option<Plan>)>,
    /// Followed services, each with its provider.
    pub services: Vec<Followed>,
}

impl Membership {
    /// The first node set (the fixed nodes), then the feeds and the active checker are started.
    pub fn start(setup: Setup, fixed: Vec<NodeEntry>) -> Arc<Membership> {
        let Setup {
            upstream,
            kind,
            tls,
            health,
            services,
        } = setup;
        let (health, plan) = match health {
            Some((h, p)) => (Some(h), p),
            None => (None, None),
        };
        let feeds = services.len();
        let (ready_tx, _) = watch::channel(feeds == 0);
        let membership = Arc::new(Membership {
            upstream,
            kind,
            tls,
            fixed,
            slots: Mutex::new((0..feeds).map(|_| Slot::default()).collect()),
            current: ArcSwap::from_pointee(Members {
                list: Vec::new(),
                balancer: None,
                health: None,
            }),
            health,
            ready: AtomicBool::new(feeds == 0),
            ready_tx,
            refresh: watch::channel(0).0,
        });
        membership.rebuild(&[]);
        let sink: Weak<dyn NodeSink> = Arc::downgrade(&membership) as Weak<dyn NodeSink>;
        for (slot, (provider, service)) in services.into_iter().enumerate() {
            let feed = Feed::new(sink.clone(), slot, membership.refresh.subscribe());
            provider.follow(service, feed);
        }
        if let (Some(plan), Some(health)) = (plan, &membership.health) {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let weak = Arc::downgrade(&membership);
                active::spawn(&rt, health, plan, move || {
                    weak.upgrade().map(|m| m.probe_nodes())
                });
            }
        }
        membership
    }

    /// The current node set.
    pub fn current(&self) -> Arc<Members> {
        self.current.load_full()
    }

    /// The current node set once every feed has reported (waiting at most `wait` for the first answers
    /// of a new upstream).
    pub async fn ready(&self, wait: Duration) -> Arc<Members> {
        if !self.ready.load(Ordering::Acquire) {
            let mut rx = self.ready_tx.subscribe();
            let _ = tokio::time::timeout(wait, rx.wait_for(|r| *r)).await;
        }
        self.current()
    }

    /// Asks the feeds for fresh nodes (a connect to one failed); providers rate-limit it.
    pub fn request_refresh(&self) {
        if !self.fixed_only() {
            self.refresh.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    fn fixed_only(&self) -> bool {
        self.slots.lock().map(|s| s.is_empty()).unwrap_or(true)
    }

    fn probe_nodes(&self) -> Vec<ProbeNode> {
        let members = self.current();
        let Some(view) = members.health() else {
            return Vec::new();
        };
        members
            .list
            .iter()
            .zip(view.nodes())
            .map(|(m, h)| ProbeNode {
                health: Arc::clone(h),
                host: m.node.host.clone(),
            })
            .collect()
    }

    fn member(&self, node: NodeEntry, addr: SocketAddr) -> Member {
        let key: Arc<str> = if node.host.parse::<IpAddr>().is_ok() {
            addr.to_string().into()
        } else {
            format!("{}@{addr}", node.host).into()
        };
        let tls_name = self.tls.as_ref().and_then(|t| t.name_for(&node.host).ok());
        Member {
            node,
            addr,
            key,
            tls_name,
        }
    }

    /// Builds the set from the fixed nodes and every feed's latest nodes, and swaps it in unless it equals
    /// the current one.
    fn rebuild(&self, slots: &[Slot]) {
        let mut list: Vec<Member> = self
            .fixed
            .iter()
            .filter_map(|n| {
                let ip = n.host.parse::<IpAddr>().ok()?;
                Some(self.member(n.clone(), SocketAddr::new(ip, n.port)))
            })
            .collect();
        let mut discovered: Vec<Member> = slots
            .iter()
            .flat_map(|s| &s.nodes)
            .map(|d| {
                let host = d.name.clone().unwrap_or_else(|| d.addr.ip().to_string());
                let node = NodeEntry {
                    host,
                    port: d.addr.port(),
                    weight: d.weight,
                    priority: d.priority,
                };
                self.member(node, d.addr)
            })
            .collect();
        // DNS answers come in rotating order: sort so the same records make the same set.
        discovered.sort_by(|a, b| a.key.cmp(&b.key));
        for m in discovered {
            if !list.iter().any(|x| x.key == m.key) {
                list.push(m);
            }
        }
        let current = self.current.load();
        let same = current.list.len() == list.len()
            && current.list.iter().zip(&list).all(|(a, b)| {
                a.key == b.key
                    && a.node.weight == b.node.weight
                    && a.node.priority == b.node.priority
            });
        if same && (current.balancer.is_some() || list.is_empty()) {
            return;
        }
        let specs = list
            .iter()
            .map(|m| NodeSpec {
                addr: m.key.to_string(),
                weight: m.node.weight,
                priority: m.node.priority,
            })
            .collect();
        let balancer = match Balancer::new(self.kind, specs) {
            Ok(b) => Some(b),
            Err(e) if !list.is_empty() => {
                tracing::warn!(upstream = %self.upstream, error = %e, "no node can take traffic");
                None
            }
            Err(_) => None,
        };
        let health = self.health.as_ref().map(|h| {
            h.view(
                list.iter().map(|m| Tracked {
                    key: &m.key,
                    authority: m.node.authority(),
                    addr: m.addr,
                }),
                current.health.as_ref(),
            )
        });
        if !slots.is_empty() {
            let addrs: Vec<&str> = list.iter().map(|m| &*m.key).collect();
            tracing::info!(upstream = %self.upstream, nodes = list.len(), members = ?addrs, "upstream nodes changed");
        }
        self.current.store(Arc::new(Members {
            list,
            balancer,
            health,
        }));
    }

    fn mark_reported(&self, slots: &mut [Slot], slot: usize) {
        if let Some(s) = slots.get_mut(slot) {
            s.reported = true;
        }
        if !self.ready.load(Ordering::Acquire) && slots.iter().all(|s| s.reported) {
            self.ready.store(true, Ordering::Release);
            self.ready_tx.send_replace(true);
        }
    }
}

impl NodeSink for Membership {
    fn publish(&self, slot: usize, nodes: Vec<DiscoveredNode>) {
        let Ok(mut slots) = self.slots.lock() else {
            return;
        };
        if let Some(s) = slots.get_mut(slot) {
            if s.error.take().is_some() {
                tracing::info!(upstream = %self.upstream, "service discovery answers again");
            }
            s.nodes = nodes;
        }
        self.rebuild(&slots);
        self.mark_reported(&mut slots, slot);
    }

    fn failed(&self, slot: usize, error: &str) {
        let Ok(mut slots) = self.slots.lock() else {
            return;
        };
        if let Some(s) = slots.get_mut(slot) {
            if s.error.as_deref() != Some(error) {
                tracing::warn!(upstream = %self.upstream, error, kept = s.nodes.len(), "service discovery failed; keeping the nodes found before");
                s.error = Some(error.to_string());
            }
        }
        self.mark_reported(&mut slots, slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(feeds: usize) -> (Arc<Membership>, Vec<Feed>) {
        struct Nothing;
        impl Discovery for Nothing {
            fn check(&self, _: &Service) -> Result<(), String> {
                Ok(())
            }
            fn follow(&self, _: Service, _: Feed) {}
        }
        let services = (0..feeds)
            .map(|i| {
                let p: Arc<dyn Discovery> = Arc::new(Nothing);
                (p, Service::parse(&format!("s{i}.test"), 80).unwrap())
            })
            .collect();
        let fixed = vec![NodeEntry {
            host: "10.0.0.1".into(),
            port: 80,
            weight: 1,
            priority: 0,
        }];
        let checks = crate::config::Checks::parse(
            &serde_json::json!({"passive": {"unhealthy": {"tcp_failures": 1}}}),
        )
        .unwrap();
        let m = Membership::start(
            Setup {
                upstream: "upstreams/t".into(),
                kind: Kind::RoundRobin,
                tls: None,
                health: Some((Arc::new(Health::new("upstreams/t", &checks)), None)),
                services,
            },
            fixed,
        );
        let sink: Weak<dyn NodeSink> = Arc::downgrade(&m) as Weak<dyn NodeSink>;
        let feeds = (0..feeds)
            .map(|i| Feed::new(sink.clone(), i, m.refresh.subscribe()))
            .collect();
        (m, feeds)
    }

    fn found(addr: &str, name: &str) -> DiscoveredNode {
        DiscoveredNode {
            addr: addr.parse().unwrap(),
            name: Some(name.into()),
            weight: 1,
            priority: 0,
        }
    }

    fn keys(m: &Members) -> Vec<String> {
        m.list.iter().map(|m| m.key.to_string()).collect()
    }

    #[tokio::test]
    async fn fixed_nodes_are_ready_at_once_and_feeds_join_them() {
        let (m, feeds) = setup(1);
        assert!(!m.ready.load(Ordering::Acquire));
        assert_eq!(keys(&m.current()), ["10.0.0.1:80"]);
        let before = m.current();
        feeds[0].publish(vec![
            found("10.0.0.3:80", "s0.test"),
            found("10.0.0.2:80", "s0.test"),
        ]);
        let now = m.ready(Duration::ZERO).await;
        assert_eq!(
            keys(&now),
            ["10.0.0.1:80", "s0.test@10.0.0.2:80", "s0.test@10.0.0.3:80"]
        );
        // The old set is untouched: requests holding it finish on it.
        assert_eq!(before.len(), 1);
        // The same records in another order change nothing.
        feeds[0].publish(vec![
            found("10.0.0.2:80", "s0.test"),
            found("10.0.0.3:80", "s0.test"),
        ]);
        assert!(Arc::ptr_eq(&now, &m.current()));
    }

    #[tokio::test]
    async fn failures_keep_the_nodes_and_health_follows_addresses() {
        let (m, feeds) = setup(1);
        feeds[0].publish(vec![
            found("10.0.0.2:80", "s0.test"),
            found("10.0.0.3:80", "s0.test"),
        ]);
        let set = m.current();
        set.observe(2, Observation::TcpFailure);
        assert_eq!(set.health().unwrap().unhealthy(), [2]);
        feeds[0].fail("resolving s0.test: timed out");
        assert!(Arc::ptr_eq(&set, &m.current()));
        // 10.0.0.3 stays and stays unhealthy; 10.0.0.4 is new and healthy.
        feeds[0].publish(vec![
            found("10.0.0.3:80", "s0.test"),
            found("10.0.0.4:80", "s0.test"),
        ]);
        let next = m.current();
        assert_eq!(keys(&next)[1], "s0.test@10.0.0.3:80");
        assert_eq!(next.health().unwrap().unhealthy(), [1]);
        // Picks avoid it while others are left.
        for _ in 0..10 {
            assert_ne!(next.pick(None, &[]), Some(1));
        }
    }

    #[tokio::test]
    async fn feeds_end_when_the_membership_goes() {
        let (m, mut feeds) = setup(1);
        m.request_refresh();
        let far = tokio::time::Instant::now() + Duration::from_secs(3600);
        assert_eq!(
            feeds[0].wait(far).await,
            crate::upstream::discovery::Wake::Refresh
        );
        drop(m);
        assert_eq!(
            feeds[0].wait(far).await,
            crate::upstream::discovery::Wake::Closed
        );
        assert!(!feeds[0].publish(Vec::new()));
    }
}
