//! Service discovery: where an upstream's nodes come from when they are not fixed addresses in its
//! config.
//!
//! Two things use it. An upstream with `discovery_type` and `service_name` (APISIX's fields) gets all its
//! nodes from the named provider; and a node in `nodes` whose host is a DNS name is followed by the
//! `dns` provider, so its addresses track the records instead of being looked up once. Only `dns`
//! ([`dns::DnsDiscovery`]) ships today; Consul, Nacos or Kubernetes providers are meant to be added the
//! same way, as [`Discovery`] implementations registered in the [`Registry`] at startup.
//!
//! # What a provider does
//! - [`Discovery::check`] validates `service_name` / `discovery_args` when the upstream is written, so a
//!   bad value fails the admin request instead of the traffic.
//! - [`Discovery::follow`] starts following one service for one upstream runtime and returns at once: the
//!   provider runs its own loop (poll by TTL like DNS, or a blocking query / watch like Consul and
//!   Kubernetes) and hands every new node list to [`Feed::publish`]. A failed lookup goes to
//!   [`Feed::fail`]: the upstream keeps the nodes it had, because a resolver hiccup must not take a
//!   working upstream down. [`Feed::wait`] sleeps until a deadline, until the data path asks for fresh
//!   nodes (a connect to one failed, [`Wake::Refresh`]), or until the upstream is gone
//!   ([`Wake::Closed`]), when the loop must end. A provider serving many upstreams may share one watch
//!   between them and publish into each feed.
//! - Nodes are resolved socket addresses ([`DiscoveredNode`]), each with the name it answers to (for the
//!   `Host` header under `pass_host: node` and for TLS), a weight and a priority.
//!
//! # How nodes change under a running upstream
//! Every publish builds a new immutable node set (nodes, balancer, health view) and swaps it in
//! atomically (`upstream::members`). A request takes the set current when it starts and keeps it for all
//! its attempts, so in-flight requests finish on the nodes they were balanced over, while new requests see
//! the new set at once; connections already open to a removed node are not cut, and idle ones are closed by
//! the pool's idle sweep. A publish equal to the current set changes nothing, so a DNS refresh that finds the
//! same records keeps the balancer's state (round-robin position, ewma scores).
//!
//! # How health state maps onto discovered nodes
//! Health is kept per node *address* (and the name it was found under), not per config entry: each
//! address of a name is probed and scored on its own, so one dead address among three is skipped while the
//! others keep serving. A node that survives a publish keeps its state and counters; a new one starts
//! healthy; a removed one's state is dropped with the last set that used it. The active checker stays one
//! task per upstream and probes whatever the current set holds.

pub mod dns;
mod feed;

pub use feed::{Feed, NodeSink, Wake};

use crate::config::ConfigError;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

/// One node a provider found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredNode {
    pub addr: SocketAddr,
    /// The name the node answers to (`Host` under `pass_host: node`, TLS server name); `None`: its IP.
    pub name: Option<String>,
    pub weight: u32,
    /// Higher first, as APISIX node priorities.
    pub priority: i32,
}

/// What to follow: APISIX's `service_name` (host part), plus what the upstream config adds.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    /// `service_name` without a port: `web.internal`, `_http._tcp.web.internal`, a Consul service name...
    pub name: String,
    /// A port given with the name; it wins over ports the provider finds (APISIX's rule).
    pub port: Option<u16>,
    /// The port for nodes the provider found without one (by `scheme`: 80 or 443).
    pub default_port: u16,
    /// Weight and priority for nodes whose source says nothing about them (a plain A record).
    pub weight: u32,
    pub priority: i32,
    /// APISIX's `discovery_args`, passed through to the provider.
    pub args: Option<serde_json::Value>,
}

impl Service {
    /// Parses `service_name` in APISIX's `host[:port]` form.
    pub fn parse(service_name: &str, default_port: u16) -> Result<Service, ConfigError> {
        let bad = || ConfigError::new(format!("service_name: {service_name:?} is not host[:port]"));
        let (name, port) = match service_name.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => {
                let port = port
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(bad)?;
                (host, Some(port))
            }
            Some(_) => return Err(bad()),
            None => (service_name, None),
        };
        if name.is_empty() || name.len() > 253 {
            return Err(bad());
        }
        Ok(Service {
            name: name.to_string(),
            port,
            default_port,
            weight: 1,
            priority: 0,
            args: None,
        })
    }
}

/// A source of upstream nodes, named by APISIX's `discovery_type`. See the module docs for the contract.
pub trait Discovery: Send + Sync + 'static {
    /// Validates a service reference at admin-write time; the message names what is wrong.
    fn check(&self, service: &Service) -> Result<(), String>;
    /// Starts following `service`, publishing its nodes into `feed` until [`Wake::Closed`].
    fn follow(&self, service: Service, feed: Feed);
}

/// The providers of this process, by `discovery_type`.
#[derive(Clone)]
pub struct Registry {
    providers: HashMap<&'static str, Arc<dyn Discovery>>,
}

impl Registry {
    /// The built-in providers: `dns`, querying `servers` (the system resolver configuration when empty).
    pub fn standard(servers: &[SocketAddr]) -> Registry {
        Registry {
            providers: HashMap::new(),
        }
        .with("dns", Arc::new(dns::DnsDiscovery::new(servers)))
    }

    /// Adds (or replaces) the provider for `kind`: how a Consul, Nacos or Kubernetes provider would be
    /// plugged in.
    pub fn with(mut self, kind: &'static str, provider: Arc<dyn Discovery>) -> Registry {
        self.providers.insert(kind, provider);
        self
    }

    pub fn get(&self, kind: &str) -> Option<&Arc<dyn Discovery>> {
        self.providers.get(kind)
    }

    /// The `dns` provider, which also follows DNS names in `nodes`.
    pub fn dns(&self) -> Option<&Arc<dyn Discovery>> {
        self.get("dns")
    }

    fn kinds(&self) -> String {
        let mut k: Vec<&str> = self.providers.keys().copied().collect();
        k.sort_unstable();
        k.join(", ")
    }

    /// Resolves `discovery_type` to its provider, or an error listing the available ones.
    pub fn provider(&self, kind: &str) -> Result<&Arc<dyn Discovery>, ConfigError> {
        self.get(kind).ok_or_else(|| {
            ConfigError::new(format!(
                "discovery_type: {kind:?} is not available (available: {})",
                self.kinds()
            ))
        })
    }
}

static REGISTRY: OnceLock<Registry> = OnceLock::new();

/// Sets the process's providers; done once by `sluice serve` from its settings before the first snapshot is
/// built. Providers are process-wide like APISIX's `discovery` section of `config.yaml`: upstream runtimes
/// are built deep inside snapshot construction, which has no other way to reach them. False when a
/// registry was already in place (it is kept).
pub fn install(registry: Registry) -> bool {
    REGISTRY.set(registry).is_ok()
}

/// The installed providers, or the standard ones on the system resolver when none were installed (unit
/// tests, tools that build snapshots without serving).
pub fn registry() -> &'static Registry {
    REGISTRY.get_or_init(|| Registry::standard(&[]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_parse_in_apisix_form() {
        let s = Service::parse("web.internal:8080", 80).unwrap();
        assert_eq!((s.name.as_str(), s.port), ("web.internal", Some(8080)));
        let s = Service::parse("_http._tcp.web.internal", 443).unwrap();
        assert_eq!(
            (s.name.as_str(), s.port, s.default_port),
            ("_http._tcp.web.internal", None, 443)
        );
        for bad in ["", "web:0", "web:x", "a:b:c", ":80"] {
            assert!(Service::parse(bad, 80).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_discovery_types_name_the_available_ones() {
        let r = Registry::standard(&[]);
        let e = r.provider("consul").err().unwrap();
        assert!(
            e.to_string()
                .contains("\"consul\" is not available (available: dns)"),
            "{e}"
        );
    }
}
