//! The live form of one upstream config: parsed once when the snapshot is built, then only read.

use super::health::Health;
use super::pool::{ConnPool, PoolSettings, PoolTls, Protocol};
use crate::balancer::{Balancer, Kind, NodeSpec};
use crate::config::{ConfigError, NodeEntry, PassHost, Timeout, Upstream};
use crate::proxy::UpstreamRequestBody;
use http::HeaderValue;
use rustls::pki_types::ServerName;
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
    pub nodes: Vec<NodeEntry>,
    pub balancer: Balancer,
    pub hash_on: Option<HashOn>,
    /// Further nodes tried after a failed connect.
    pub retries: usize,
    pub retry_timeout: Option<Duration>,
    pub timeouts: Timeouts,
    pub pass_host: PassHost,
    pub upstream_host: Option<HeaderValue>,
    pub pool: Arc<ConnPool<UpstreamRequestBody>>,
    /// Node health from `checks`; `None` without checks, so such upstreams pay nothing for it.
    pub health: Option<Arc<Health>>,
    /// `retry_non_idempotent`: a non-idempotent request that reached a failing node may be re-sent.
    pub retry_non_idempotent: bool,
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
        let specs = nodes
            .iter()
            .map(|n| NodeSpec {
                addr: n.authority(),
                weight: n.weight,
                priority: n.priority,
            })
            .collect();
        let balancer =
            Balancer::new(kind, specs).map_err(|e| ConfigError::new(format!("nodes: {e}")))?;
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
        let tls = match up.scheme() {
            "https" | "grpcs" => Some(pool_tls(up, &nodes, protocol)?),
            _ => None,
        };
        let retries = match up.retries {
            Some(r) => r as usize,
            // APISIX: by default retry over every other node once.
            None => nodes.len().saturating_sub(1),
        };
        let health = match up.health_checks()? {
            Some(checks) => Some(super::health::start(
                &name,
                &nodes,
                &checks,
                up.tls.as_ref().map(|t| t.spec()),
            )?),
            None => None,
        };
        Ok(UpstreamRuntime {
            health,
            retry_non_idempotent: up.retry_non_idempotent.unwrap_or(false),
            name,
            source,
            retries,
            retry_timeout: up
                .retry_timeout
                .filter(|t| *t > 0.0)
                .map(Duration::from_secs_f64),
            timeouts: Timeouts::default().overridden_by(up.timeout.as_ref()),
            pass_host: up.pass_host()?,
            upstream_host,
            hash_on,
            balancer,
            nodes,
            pool: ConnPool::with_tls(pool, tls, protocol),
        })
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

/// TLS for an `https` upstream: its client config and, per node, the name the node's certificate must carry:
/// `upstream_host` (without port) under `pass_host: rewrite`, else the node's host (an IP literal is then
/// verified against the certificate's IP addresses and sends no SNI).
/// TLS towards the nodes, offering by ALPN the one protocol the pool speaks.
fn pool_tls(
    up: &Upstream,
    nodes: &[NodeEntry],
    protocol: Protocol,
) -> Result<PoolTls, ConfigError> {
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
    let rewrite = match (up.pass_host()?, up.upstream_host.as_deref()) {
        (PassHost::Rewrite, Some(h)) => Some(strip_port(h)),
        _ => None,
    };
    let mut names = Vec::with_capacity(nodes.len());
    for n in nodes {
        let host = rewrite.unwrap_or(&n.host);
        let name = ServerName::try_from(host.to_string()).map_err(|_| {
            ConfigError::new(format!(
                "nodes: {host:?} is not usable as a TLS server name"
            ))
        })?;
        names.push(name);
    }
    Ok(PoolTls { config, names })
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
