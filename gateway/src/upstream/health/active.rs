//! The active checker: one task per [`Health`], probing each node on its own schedule.
//!
//! The task keeps only a `Weak<Health>`: it upgrades it to record results and exits as soon as that
//! fails, so dropping the upstream runtime (config change or delete) stops its checker without any
//! explicit shutdown, and a candidate snapshot the admin API rejected leaves no checker behind.

use super::probe::{self, Target};
use super::{Health, Source};
use crate::config::{Active, ConfigError, NodeEntry, ProbeKind};
use futures_util::{stream, StreamExt};
use rustls::pki_types::ServerName;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::time::Instant;

/// How often a node whose state has probing switched off (`interval: 0`) is looked at again.
const PARKED_RECHECK: Duration = Duration::from_secs(1);

/// Everything the checker needs, resolved from config up front so a bad value fails the admin write.
pub(crate) struct Plan {
    targets: Vec<Target>,
    timeout: Duration,
    concurrency: usize,
    healthy_interval: Duration,
    unhealthy_interval: Duration,
}

impl Plan {
    pub(crate) fn new(
        nodes: &[NodeEntry],
        a: &Active,
        tls: Option<crate::tls::UpstreamTlsSpec<'_>>,
    ) -> Result<Plan, ConfigError> {
        let tls_config = match a.kind {
            ProbeKind::Https => {
                let mut spec = tls.unwrap_or(crate::tls::UpstreamTlsSpec {
                    verify: true,
                    client_cert: None,
                    client_key: None,
                });
                spec.verify = a.https_verify_certificate;
                Some(
                    crate::tls::client_config(&spec)
                        .map_err(|e| ConfigError::new(e.to_string()))?,
                )
            }
            _ => None,
        };
        let mut targets = Vec::with_capacity(nodes.len());
        for n in nodes {
            let host = a.host.clone().unwrap_or_else(|| n.host.clone());
            let port = a.port.unwrap_or(n.port);
            let header_host = match a.host {
                Some(_) => host.clone(),
                None => n.authority(),
            };
            let request = (a.kind != ProbeKind::Tcp)
                .then(|| probe::request(&a.http_path, &header_host, &a.req_headers));
            let tls = match &tls_config {
                Some(cfg) => {
                    let name = ServerName::try_from(host.clone()).map_err(|_| {
                        ConfigError::new(format!(
                            "checks.active.host: {host:?} is not usable as a TLS server name"
                        ))
                    })?;
                    Some((Arc::clone(cfg), name))
                }
                None => None,
            };
            targets.push(Target {
                host: n.host.clone(),
                port,
                request,
                tls,
            });
        }
        Ok(Plan {
            targets,
            timeout: Duration::from_secs_f64(a.timeout),
            concurrency: a.concurrency,
            healthy_interval: Duration::from_secs_f64(a.healthy.interval),
            unhealthy_interval: Duration::from_secs_f64(a.unhealthy.interval),
        })
    }

    fn interval(&self, healthy: bool) -> Duration {
        if healthy {
            self.healthy_interval
        } else {
            self.unhealthy_interval
        }
    }
}

pub(crate) fn spawn(rt: &tokio::runtime::Handle, health: &Arc<Health>, plan: Plan) {
    let weak = Arc::downgrade(health);
    tracing::debug!(upstream = %health.upstream(), nodes = plan.targets.len(), "active health checker started");
    rt.spawn(run(weak, plan));
}

async fn run(weak: Weak<Health>, plan: Plan) {
    let start = Instant::now();
    let mut due = vec![start; plan.targets.len()];
    loop {
        let Some(&next) = due.iter().min() else {
            return;
        };
        tokio::time::sleep_until(next).await;
        let now = Instant::now();
        let mut probe_now = Vec::new();
        {
            let Some(health) = weak.upgrade() else {
                break;
            };
            for (i, at) in due.iter_mut().enumerate() {
                if *at > now {
                    continue;
                }
                if plan.interval(health.is_healthy(i)).is_zero() {
                    *at = now + PARKED_RECHECK;
                } else {
                    probe_now.push(i);
                }
            }
        }
        // Probes run without holding the Health, so a dropped upstream is not kept alive by a slow node.
        let results: Vec<_> = stream::iter(probe_now)
            .map(|i| {
                let target = &plan.targets[i];
                async move { (i, probe::run(target, plan.timeout).await) }
            })
            .buffer_unordered(plan.concurrency)
            .collect()
            .await;
        let Some(health) = weak.upgrade() else {
            break;
        };
        for (i, obs) in results {
            health.observe(i, Source::Active, obs);
            let interval = plan.interval(health.is_healthy(i));
            due[i] = Instant::now() + interval.max(Duration::from_millis(10));
        }
    }
    tracing::debug!("active health checker stopped: its upstream is gone");
}
