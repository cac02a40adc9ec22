//! The active checker: one task per upstream, probing each node of its current node set on the node's own
//! schedule.
//!
//! The task reads the node set through a closure that holds the upstream only weakly: it returns `None`
//! once the upstream runtime is dropped (config change or delete), and the task exits, so no explicit
//! shutdown is needed and a candidate snapshot the admin API rejected leaves no checker behind. Schedules
//! are kept by node key, so a discovery update neither resets the schedule of nodes it keeps nor probes
//! nodes it removed.

use super::probe::{self, Target};
use super::{Health, NodeHealth, Source};
use crate::config::{Active, ConfigError, ProbeKind};
use futures_util::{stream, StreamExt};
use rustls::pki_types::ServerName;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::time::Instant;

/// How often a node whose state has probing switched off (`interval: 0`), or an upstream with no nodes
/// yet, is looked at again.
const PARKED_RECHECK: Duration = Duration::from_secs(1);

/// One node as the checker sees it.
pub struct ProbeNode {
    pub health: Arc<NodeHealth>,
    /// The name the node answers to: the probe's `Host` and TLS server name unless `checks.active.host`.
    pub host: String,
}

/// Everything the checker needs from config, resolved up front so a bad value fails the admin write.
pub struct Plan {
    kind: ProbeKind,
    http_path: String,
    req_headers: Vec<String>,
    host: Option<String>,
    port: Option<u16>,
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
    concurrency: usize,
    healthy_interval: Duration,
    unhealthy_interval: Duration,
}

impl Plan {
    pub(crate) fn new(
        a: &Active,
        tls: Option<crate::tls::UpstreamTlsSpec<'_>>,
    ) -> Result<Plan, ConfigError> {
        let tls = match a.kind {
            ProbeKind::Https => {
                let mut spec = tls.unwrap_or(crate::tls::UpstreamTlsSpec {
                    verify: true,
                    client_cert: None,
                    client_key: None,
                });
                spec.verify = a.https_verify_certificate;
                if let Some(host) = &a.host {
                    ServerName::try_from(host.clone()).map_err(|_| {
                        ConfigError::new(format!(
                            "checks.active.host: {host:?} is not usable as a TLS server name"
                        ))
                    })?;
                }
                Some(
                    crate::tls::client_config(&spec)
                        .map_err(|e| ConfigError::new(e.to_string()))?,
                )
            }
            _ => None,
        };
        Ok(Plan {
            kind: a.kind,
            http_path: a.http_path.clone(),
            req_headers: a.req_headers.clone(),
            host: a.host.clone(),
            port: a.port,
            tls,
            timeout: Duration::from_secs_f64(a.timeout),
            concurrency: a.concurrency,
            healthy_interval: Duration::from_secs_f64(a.healthy.interval),
            unhealthy_interval: Duration::from_secs_f64(a.unhealthy.interval),
        })
    }

    /// How to probe `node`: its address (on `checks.active.port` if set), with `checks.active.host` or
    /// the node's own name as `Host` and TLS server name. `None` when that name cannot be a TLS server
    /// name (counted as a failed probe).
    fn target(&self, node: &ProbeNode) -> Option<Target> {
        let addr = SocketAddr::new(
            node.health.addr().ip(),
            self.port.unwrap_or(node.health.addr().port()),
        );
        let header_host = match &self.host {
            Some(h) => h.clone(),
            None => node.health.authority().to_string(),
        };
        let request = (self.kind != ProbeKind::Tcp)
            .then(|| probe::request(&self.http_path, &header_host, &self.req_headers));
        let tls = match &self.tls {
            Some(cfg) => {
                let name = self.host.clone().unwrap_or_else(|| node.host.clone());
                Some((Arc::clone(cfg), ServerName::try_from(name).ok()?))
            }
            None => None,
        };
        Some(Target { addr, request, tls })
    }

    fn interval(&self, healthy: bool) -> Duration {
        if healthy {
            self.healthy_interval
        } else {
            self.unhealthy_interval
        }
    }
}

/// Starts the checker of `health`; `nodes` gives the current node set, `None` once the upstream is gone.
pub fn spawn<F>(rt: &tokio::runtime::Handle, health: &Arc<Health>, plan: Plan, nodes: F)
where
    F: Fn() -> Option<Vec<ProbeNode>> + Send + 'static,
{
    tracing::debug!(upstream = %health.upstream(), "active health checker started");
    rt.spawn(run(Arc::downgrade(health), plan, nodes));
}

async fn run<F>(weak: Weak<Health>, plan: Plan, nodes: F)
where
    F: Fn() -> Option<Vec<ProbeNode>>,
{
    let mut due: HashMap<Arc<str>, Instant> = HashMap::new();
    loop {
        let Some(current) = nodes() else {
            break;
        };
        let Some(health) = weak.upgrade() else {
            break;
        };
        let now = Instant::now();
        due.retain(|key, _| current.iter().any(|n| n.health.key() == key));
        let mut probe_now = Vec::new();
        for node in current {
            let at = due.entry(Arc::clone(node.health.key())).or_insert(now);
            if *at > now {
                continue;
            }
            if plan.interval(health.is_healthy(&node.health)).is_zero() {
                *at = now + PARKED_RECHECK;
            } else {
                probe_now.push(node);
            }
        }
        drop(health);
        // Probes run without holding the Health, so a dropped upstream is not kept alive by a slow node.
        let results: Vec<_> = stream::iter(probe_now)
            .map(|node| {
                let target = plan.target(&node);
                async move {
                    let obs = match &target {
                        Some(t) => probe::run(t, plan.timeout).await,
                        None => super::Observation::TcpFailure,
                    };
                    (node, obs)
                }
            })
            .buffer_unordered(plan.concurrency.max(1))
            .collect()
            .await;
        let Some(health) = weak.upgrade() else {
            break;
        };
        for (node, obs) in results {
            health.observe(&node.health, Source::Active, obs);
            let interval = plan.interval(health.is_healthy(&node.health));
            due.insert(
                Arc::clone(node.health.key()),
                Instant::now() + interval.max(Duration::from_millis(10)),
            );
        }
        drop(health);
        let next = due
            .values()
            .min()
            .copied()
            .unwrap_or_else(|| Instant::now() + PARKED_RECHECK);
        tokio::time::sleep_until(next).await;
    }
    tracing::debug!("active health checker stopped: its upstream is gone");
}
