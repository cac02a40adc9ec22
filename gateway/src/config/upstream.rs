//! `upstreams`: the nodes a route forwards to and how (balancing, retries, timeouts, keepalive).

use super::checks::Checks;
use super::common::{opt_id, ConfigError, Labels, Timeout};
use super::nodes::{parse_nodes, NodeEntry};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeepalivePool {
    /// Idle connections kept per upstream (APISIX default 320).
    pub size: Option<u32>,
    /// Seconds an idle connection is kept (APISIX default 60).
    pub idle_timeout: Option<f64>,
    /// Requests served on one connection before it is closed (APISIX default 1000).
    pub requests: Option<u32>,
}

/// `tls` of an upstream, in APISIX's shape: a client certificate for mTLS and whether to verify the server.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    #[serde(default, deserialize_with = "opt_id")]
    pub client_cert_id: Option<String>,
    /// Verify the upstream's certificate against the system roots. Sluice defaults to `true` (APISIX: `false`).
    pub verify: Option<bool>,
}

impl UpstreamTls {
    pub fn spec(&self) -> crate::tls::UpstreamTlsSpec<'_> {
        crate::tls::UpstreamTlsSpec {
            verify: self.verify.unwrap_or(true),
            client_cert: self.client_cert.as_deref(),
            client_key: self.client_key.as_deref(),
        }
    }
}

/// How the `Host` header sent upstream is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassHost {
    /// The client's Host, unchanged (default).
    Pass,
    /// The chosen node's `host:port`.
    Node,
    /// `upstream_host`.
    Rewrite,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    #[serde(default, deserialize_with = "opt_id")]
    pub id: Option<String>,
    pub name: Option<String>,
    pub desc: Option<String>,
    pub labels: Option<Labels>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub nodes: Option<serde_json::Value>,
    /// APISIX's service discovery: nodes come from this provider (`dns`) instead of `nodes`.
    pub discovery_type: Option<String>,
    /// What `discovery_type` looks up: `host[:port]`; for `dns`, an SRV name (`_http._tcp.web.internal`)
    /// or an A/AAAA name.
    pub service_name: Option<String>,
    /// Provider-specific arguments (APISIX: Nacos/Consul namespaces, metadata), passed through.
    pub discovery_args: Option<serde_json::Value>,
    pub hash_on: Option<String>,
    pub key: Option<String>,
    /// Health checks in APISIX's shape; kept raw so a stored document round-trips unchanged, typed by
    /// [`Upstream::health_checks`].
    pub checks: Option<serde_json::Value>,
    /// Sluice extension (APISIX has none): also re-send non-idempotent requests (POST, PATCH, ...) to
    /// another node after they reached one that failed. Off by default, because the first node may
    /// already have acted on them.
    pub retry_non_idempotent: Option<bool>,
    pub retries: Option<u32>,
    pub retry_timeout: Option<f64>,
    pub timeout: Option<Timeout>,
    pub keepalive_pool: Option<KeepalivePool>,
    pub scheme: Option<String>,
    pub pass_host: Option<String>,
    pub upstream_host: Option<String>,
    pub tls: Option<UpstreamTls>,
    pub create_time: Option<u64>,
    pub update_time: Option<u64>,
}

impl Upstream {
    pub fn balancer_type(&self) -> &str {
        self.kind.as_deref().unwrap_or("roundrobin")
    }

    pub fn scheme(&self) -> &str {
        self.scheme.as_deref().unwrap_or("http")
    }

    pub fn default_port(&self) -> u16 {
        match self.scheme() {
            "https" | "grpcs" => 443,
            _ => 80,
        }
    }

    /// The configured nodes; none when they come from `discovery_type`.
    pub fn parsed_nodes(&self) -> Result<Vec<NodeEntry>, ConfigError> {
        match (&self.nodes, &self.discovery_type) {
            (Some(v), _) => parse_nodes(v, self.default_port()),
            (None, Some(_)) => Ok(Vec::new()),
            (None, None) => Err(ConfigError::new(
                "nodes: required (or discovery_type and service_name)",
            )),
        }
    }

    /// `discovery_type`, `service_name` and `nodes` in one of APISIX's two shapes: `nodes`, or
    /// `discovery_type` with `service_name` (whether the provider exists is checked when the upstream is
    /// built).
    fn check_discovery(&self) -> Result<(), ConfigError> {
        match (&self.discovery_type, &self.service_name) {
            (Some(_), None) => Err(ConfigError::new(
                "service_name: required with discovery_type",
            )),
            (None, Some(_)) => Err(ConfigError::new(
                "discovery_type: required with service_name",
            )),
            (None, None) if self.discovery_args.is_some() => {
                Err(ConfigError::new("discovery_args: only with discovery_type"))
            }
            (Some(_), Some(_)) if self.nodes.is_some() => Err(ConfigError::new(
                "nodes: not allowed with discovery_type (the nodes come from service discovery)",
            )),
            _ => Ok(()),
        }
    }

    /// The typed `checks`, with APISIX's defaults; `None` when the upstream has none.
    pub fn health_checks(&self) -> Result<Option<Checks>, ConfigError> {
        self.checks.as_ref().map(Checks::parse).transpose()
    }

    pub fn pass_host(&self) -> Result<PassHost, ConfigError> {
        match self.pass_host.as_deref() {
            None | Some("pass") => Ok(PassHost::Pass),
            Some("node") => Ok(PassHost::Node),
            Some("rewrite") => Ok(PassHost::Rewrite),
            Some(other) => Err(ConfigError::new(format!(
                "pass_host: {other:?} is not one of \"pass\", \"node\", \"rewrite\""
            ))),
        }
    }

    pub fn check(&self) -> Result<(), ConfigError> {
        match self.balancer_type() {
            "roundrobin" | "chash" | "least_conn" | "ewma" => {}
            other => {
                return Err(ConfigError::new(format!(
                "type: {other:?} is not one of \"roundrobin\", \"chash\", \"least_conn\", \"ewma\""
            )))
            }
        }
        self.check_discovery()?;
        let nodes = self.parsed_nodes()?;
        if nodes.is_empty() && self.discovery_type.is_none() {
            return Err(ConfigError::new("nodes: at least one node is required"));
        }
        if !nodes.is_empty() && nodes.iter().all(|n| n.weight == 0) {
            return Err(ConfigError::new(
                "nodes: at least one node needs a weight above 0",
            ));
        }
        if self.balancer_type() == "chash" {
            match self.hash_on.as_deref().unwrap_or("vars") {
                on @ ("vars" | "header" | "cookie" | "vars_combinations") => {
                    let key = self.key.as_deref().unwrap_or("");
                    if key.is_empty() {
                        return Err(ConfigError::new("key: required when type is \"chash\""));
                    }
                    let token = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
                    if matches!(on, "header" | "cookie" | "vars") && !key.chars().all(token) {
                        return Err(ConfigError::new(format!(
                            "key: {key:?} is not a valid {on} name"
                        )));
                    }
                }
                "consumer" => {}
                other => {
                    return Err(ConfigError::new(format!(
                        "hash_on: {other:?} is not one of \"vars\", \"header\", \"cookie\", \"consumer\", \"vars_combinations\""
                    )))
                }
            }
        }
        match self.scheme() {
            "http" | "https" | "grpc" | "grpcs" => {}
            other => {
                return Err(ConfigError::new(format!(
                    "scheme: {other:?} is not one of \"http\", \"https\", \"grpc\", \"grpcs\""
                )))
            }
        }
        let pass_host = self.pass_host()?;
        if pass_host == PassHost::Rewrite && self.upstream_host.as_deref().unwrap_or("").is_empty()
        {
            return Err(ConfigError::new(
                "upstream_host: required when pass_host is \"rewrite\"",
            ));
        }
        if let Some(t) = &self.timeout {
            t.check()?;
        }
        if let Some(rt) = self.retry_timeout {
            if !(rt >= 0.0 && rt.is_finite()) {
                return Err(ConfigError::new(
                    "retry_timeout: must be a number of seconds >= 0",
                ));
            }
        }
        if let Some(pool) = &self.keepalive_pool {
            if let Some(idle) = pool.idle_timeout {
                if !(idle >= 0.0 && idle.is_finite()) {
                    return Err(ConfigError::new(
                        "keepalive_pool.idle_timeout: must be a number of seconds >= 0",
                    ));
                }
            }
            if pool.size == Some(0) {
                return Err(ConfigError::new("keepalive_pool.size: must be at least 1"));
            }
            if pool.requests == Some(0) {
                return Err(ConfigError::new(
                    "keepalive_pool.requests: must be at least 1",
                ));
            }
        }
        if let Some(tls) = &self.tls {
            if tls.client_cert_id.is_some()
                && (tls.client_cert.is_some() || tls.client_key.is_some())
            {
                return Err(ConfigError::new(
                    "tls.client_cert_id: give either client_cert_id or client_cert and client_key, not both",
                ));
            }
            if matches!(self.scheme(), "https" | "grpcs") {
                crate::tls::client_config(&tls.spec())
                    .map_err(|e| ConfigError::new(e.to_string()))?;
            }
        }
        self.health_checks()?;
        Ok(())
    }
}
