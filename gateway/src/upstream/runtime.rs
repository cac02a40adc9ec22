//! The live form of one upstream config: parsed once when the snapshot is built, then only read (its node
//! set excepted, which service discovery swaps: [`Membership`]).

use super::discovery::{self, dns::is_srv_name, Service};
use super::members::{Followed, Members, Membership, Setup, TlsNaming};
use super::pool::{ConnPool, PoolSettings, PoolTls, Protocol};
use crate::balancer::{Balancer, Kind, NodeSpec};
use crate::config::{ConfigError, NodeEntry, PassHost, Timeout, Upstream};
use crate::proxy::UpstreamRequestBody;
use http::HeaderValue;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// APISIX's default for each of connect, send and read.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeouts {
    pub connect: Duration,
    /// Longest pause while streaming the request body to the upstream.
    pub send: Duration,
    /// Longest wait for the response head after the request was sent, and longest pause between
    /// response body chunks.
    pub read: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: DEFAULT_TIMEOUT,
            send: DEFAULT_TIMEOUT,
            read: DEFAULT_TIMEOUT,
        }
    }
}

impl Timeouts {
    /// Fields set in `t` replace ours (route timeouts override the upstream's, as in APISIX).
    pub fn overridden_by(self, t: Option<&Timeout>) -> Timeouts {
        let secs = |v: Option<f64>, d: Duration| v.map(Duration::from_secs_f64).unwrap_or(d);
        match t {
            None => self,
            Some(t) => Timeouts {
                connect: secs(t.connect, self.connect),
                send: secs(t.send, self.send),
                read: secs(t.read, self.read),
            },
        }
    }
}

/// What the `chash` balancer hashes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashOn {
    /// A request variable such as `remote_addr`, `uri` or `arg_user`.
    Vars(String),
    Header(String),
    Cookie(String),
    Consumer,
    /// A template like `$host$uri` mixing several variables.
    VarsCombinations(String),
}

pub struct UpstreamRuntime {
    /// Where it came from (`upstreams/1`, `routes/7`), for logs.
    pub name: String,
    /// The JSON it was built from; a new snapshot reuses this runtime when the JSON is unchanged.
    pub source: serde_json::Value,
    pub hash_on: Option<HashOn>,
    /// Further nodes tried after a failed attempt; `None`: every other node once (APISIX's default).
    retries: Option<usize>,
    pub retry_timeout: Option<Duration>,
    pub timeouts: Timeouts,
    pub pass_host: PassHost,
    pub upstream_host: Option<HeaderValue>,
    pub pool: Arc<ConnPool<UpstreamRequestBody>>,
    /// `retry_non_idempotent`: a non-idempotent request that reached a failing node may be re-sent.
    pub retry_non_idempotent: bool,
    members: Arc<Membership>,
}

impl UpstreamRuntime {
    pub fn build(
        name: String,
        up: &Upstream,
        source: serde_json::Value,
    ) -> Result<Self, ConfigError> {
        up.check()?;
        let nodes = up.parsed_nodes()?;
        let kind = match up.balancer_type() {
            "chash" => Kind::Chash,
            "least_conn" => Kind::LeastConn,
            "ewma" => Kind::Ewma,
            _ => Kind::RoundRobin,
        };
        if !nodes.is_empty() {
            // The configured list must make a balancer (no duplicates, some weight), whatever discovery
            // later makes of its names.
            let specs = nodes
                .iter()
                .map(|n| NodeSpec {
                    addr: n.authority(),
                    weight: n.weight,
                    priority: n.priority,
                })
                .collect();
            Balancer::new(kind, specs).map_err(|e| ConfigError::new(format!("nodes: {e}")))?;
        }
        let hash_on = (kind == Kind::Chash).then(|| {
            let key = up.key.clone().unwrap_or_default();
            match up.hash_on.as_deref().unwrap_or("vars") {
                "header" => HashOn::Header(key),
                "cookie" => HashOn::Cookie(key),
                "consumer" => HashOn::Consumer,
                "vars_combinations" => HashOn::VarsCombinations(key),
                _ => HashOn::Vars(key),
            }
        });
        let upstream_host = match &up.upstream_host {
            Some(h) => Some(HeaderValue::from_str(h).map_err(|_| {
                ConfigError::new(format!("upstream_host: {h:?} is not a valid Host header"))
            })?),
            None => None,
        };
        let defaults = PoolSettings::default();
        let pool = up
            .keepalive_pool
            .as_ref()
            .map_or(defaults, |p| PoolSettings {
                size: p.size.map_or(defaults.size, |s| s as usize),
                idle_timeout: p
                    .idle_timeout
                    .map_or(defaults.idle_timeout, Duration::from_secs_f64),
                max_requests: p.requests.unwrap_or(defaults.max_requests),
            });
        let protocol = match up.scheme() {
            "grpc" | "grpcs" => Protocol::Http2,
            _ => Protocol::Http1,
        };
        let (tls, naming) = match up.scheme() {
            "https" | "grpcs" => {
                let naming = tls_naming(up)?;
                for n in &nodes {
                    naming.name_for(&n.host)?;
                }
                (Some(pool_tls(up, protocol)?), Some(naming))
            }
            _ => (None, None),
        };
        let health = match up.health_checks()? {
            Some(checks) => Some(super::health::prepare(
                &name,
                &checks,
                up.tls.as_ref().map(|t| t.spec()),
            )?),
            None => None,
        };
        let (fixed, services) = sources(up, nodes)?;
        let members = Membership::start(
            Setup {
                upstream: name.clone(),
                kind,
                tls: naming,
                health,
                services,
            },
            fixed,
        );
        Ok(UpstreamRuntime {
            retry_non_idempotent: up.retry_non_idempotent.unwrap_or(false),
            name,
            source,
            retries: up.retries.map(|r| r as usize),
            retry_timeout: up
                .retry_timeout
                .filter(|t| *t > 0.0)
                .map(Duration::from_secs_f64),
            timeouts: Timeouts::default().overridden_by(up.timeout.as_ref()),
            pass_host: up.pass_host()?,
            upstream_host,
            hash_on,
            members,
            pool: ConnPool::with_tls(pool, tls, protocol),
        })
    }

    /// The node set to balance a request over: the current one, or for an upstream whose discovery has
    /// not answered yet, the first one (waiting at most `wait`).
    pub async fn members(&self, wait: Duration) -> Arc<Members> {
        self.members.ready(wait).await
    }

    /// The node set now, without waiting.
    pub fn current_members(&self) -> Arc<Members> {
        self.members.current()
    }

    /// How many further nodes a request over `members` may try.
    pub fn retries(&self, members: &Members) -> usize {
        self.retries
            .unwrap_or_else(|| members.len().saturating_sub(1))
    }

    /// A connect to one of the nodes failed: discovered nodes are looked up again soon.
    pub fn connect_failed(&self) {
        self.members.request_refresh();
    }

    /// Health figures for metrics; `None` without `checks`.
    pub fn health_tally(&self) -> Option<super::health::HealthTally> {
        self.current_members().health().map(|h| h.tally())
    }

    /// The admin health report; `None` without `checks`.
    pub fn health_report(&self) -> Option<serde_json::Value> {
        self.current_members().health().map(|h| h.report())
    }

    /// The source JSON without bookkeeping fields, so a re-PUT of identical content keeps the runtime.
    pub fn comparable(value: &serde_json::Value) -> serde_json::Value {
        let mut v = value.clone();
        if let Some(obj) = v.as_object_mut() {
            obj.remove("create_time");
            obj.remove("update_time");
        }
        v
    }
}

/// Where the nodes come from: the IP literals of `nodes` are fixed; each DNS name in `nodes` is followed
/// by the `dns` provider (its addresses carry the node's weight and priority; an SRV name brings its own
/// ports and weights); with `discovery_type`, the one named service is followed.
fn sources(
    up: &Upstream,
    nodes: Vec<NodeEntry>,
) -> Result<(Vec<NodeEntry>, Vec<Followed>), ConfigError> {
    let registry = discovery::registry();
    if let (Some(kind), Some(name)) = (&up.discovery_type, &up.service_name) {
        let provider = registry.provider(kind)?;
        let mut service = Service::parse(name, up.default_port())?;
        service.args = up.discovery_args.clone();
        provider
            .check(&service)
            .map_err(|e| ConfigError::new(format!("service_name: {e}")))?;
        return Ok((Vec::new(), vec![(Arc::clone(provider), service)]));
    }
    let (fixed, named): (Vec<NodeEntry>, Vec<NodeEntry>) = nodes
        .into_iter()
        .partition(|n| n.host.parse::<IpAddr>().is_ok());
    let mut services = Vec::with_capacity(named.len());
    for n in named {
        let provider = registry.dns().ok_or_else(|| {
            ConfigError::new(format!(
                "nodes: {:?} is a DNS name, and no dns provider is available",
                n.host
            ))
        })?;
        let service = Service {
            port: (!is_srv_name(&n.host)).then_some(n.port),
            name: n.host,
            default_port: up.default_port(),
            weight: n.weight,
            priority: n.priority,
            args: None,
        };
        provider
            .check(&service)
            .map_err(|e| ConfigError::new(format!("nodes: {e}")))?;
        services.push((Arc::clone(provider), service));
    }
    Ok((fixed, services))
}

/// How nodes are named towards TLS: `upstream_host` (without port) under `pass_host: rewrite`, else each
/// node's host (an IP literal is then verified against the certificate's IP addresses and sends no SNI).
fn tls_naming(up: &Upstream) -> Result<TlsNaming, ConfigError> {
    let rewrite = match (up.pass_host()?, up.upstream_host.as_deref()) {
        (PassHost::Rewrite, Some(h)) => Some(strip_port(h).to_string()),
        _ => None,
    };
    Ok(TlsNaming { rewrite })
}

/// TLS towards the nodes, offering by ALPN the one protocol the pool speaks.
fn pool_tls(up: &Upstream, protocol: Protocol) -> Result<PoolTls, ConfigError> {
    let spec = up
        .tls
        .as_ref()
        .map(|t| t.spec())
        .unwrap_or(crate::tls::UpstreamTlsSpec {
            verify: true,
            client_cert: None,
            client_key: None,
        });
    let mut config =
        crate::tls::client_config(&spec).map_err(|e| ConfigError::new(e.to_string()))?;
    if protocol == Protocol::Http2 {
        let mut h2 = (*config).clone();
        h2.alpn_protocols = vec![b"h2".to_vec()];
        config = Arc::new(h2);
    }
    Ok(PoolTls { config })
}

/// `example.com:8443` → `example.com`; `[::1]:443` → `::1`.
fn strip_port(h: &str) -> &str {
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(host, _)| host);
    }
    match h.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            host
        }
        _ => h,
    }
}
