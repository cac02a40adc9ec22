//! The `dns` provider: A/AAAA and SRV records, looked up again when their TTL runs out and soon after a
//! connect to one of their addresses fails.
//!
//! Every address a name has becomes a node (a plain name: the configured weight and priority each, as
//! nginx does with `server name weight=N`; an SRV name: each record's weight, its priority negated so
//! that lower SRV priorities are preferred, and its port unless the service name gives one, as APISIX's
//! dns discovery). Lookups bypass hickory's answer cache: this loop already schedules them by TTL, and a
//! lookup after a failed connect must reach the server rather than return the answer that led there.
//! Lookups of one name are at least [`MIN_REFRESH`] apart, so a node failing under load cannot flood the
//! resolver; failed lookups keep the last good nodes and are retried with backoff up to [`MAX_RETRY`].
//!
//! Resolver addresses come from `--dns-resolver` (APISIX: `discovery.dns.servers`), else from the system
//! configuration (`/etc/resolv.conf`, `/etc/hosts`, search domains).

use super::{DiscoveredNode, Discovery, Feed, Service, Wake};
use hickory_resolver::config::{NameServerConfig, NameServerConfigGroup, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{Name, TokioResolver};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::time::Instant;

/// The shortest time between two lookups of one name, whatever the TTL or the failures.
pub const MIN_REFRESH: Duration = Duration::from_secs(1);
/// The longest wait before retrying a failed lookup.
pub const MAX_RETRY: Duration = Duration::from_secs(30);
/// How long an IP literal given as a service name is trusted: it never changes.
const LITERAL: Duration = Duration::from_secs(24 * 3600);

pub struct DnsDiscovery {
    resolver: TokioResolver,
}

/// `_service._proto.name`: the form APISIX treats as an SRV query.
pub fn is_srv_name(host: &str) -> bool {
    let mut labels = host.split('.');
    matches!((labels.next(), labels.next()), (Some(a), Some(b)) if a.starts_with('_') && b.starts_with('_'))
}

impl DnsDiscovery {
    /// A resolver on `servers` (UDP, falling back to TCP for truncated answers), or on the system
    /// configuration when `servers` is empty.
    pub fn new(servers: &[SocketAddr]) -> DnsDiscovery {
        let mut builder = if servers.is_empty() {
            TokioResolver::builder_tokio().unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot read system DNS configuration; using defaults");
                TokioResolver::builder_with_config(
                    ResolverConfig::default(),
                    TokioConnectionProvider::default(),
                )
            })
        } else {
            let mut group = NameServerConfigGroup::new();
            for s in servers {
                group.push(NameServerConfig::new(*s, Protocol::Udp));
                group.push(NameServerConfig::new(*s, Protocol::Tcp));
            }
            TokioResolver::builder_with_config(
                ResolverConfig::from_parts(None, Vec::new(), group),
                TokioConnectionProvider::default(),
            )
        };
        builder.options_mut().cache_size = 0;
        DnsDiscovery {
            resolver: builder.build(),
        }
    }

    /// The nodes of `service` now, and until when the answer holds (its smallest TTL).
    pub async fn lookup(
        &self,
        service: &Service,
    ) -> Result<(Vec<DiscoveredNode>, Instant), String> {
        let now = Instant::now();
        if let Ok(ip) = service.name.parse::<IpAddr>() {
            let port = service.port.unwrap_or(service.default_port);
            return Ok((vec![node(service, ip, port, None)], now + LITERAL));
        }
        if is_srv_name(&service.name) {
            self.srv(service).await
        } else {
            let (ips, until) = self.addresses(&service.name).await?;
            let port = service.port.unwrap_or(service.default_port);
            let nodes = ips
                .into_iter()
                .map(|ip| node(service, ip, port, Some(&service.name)))
                .collect();
            Ok((nodes, until))
        }
    }

    async fn addresses(&self, name: &str) -> Result<(Vec<IpAddr>, Instant), String> {
        let lookup = self
            .resolver
            .lookup_ip(name)
            .await
            .map_err(|e| format!("resolving {name}: {e}"))?;
        let ips: Vec<IpAddr> = lookup.iter().collect();
        if ips.is_empty() {
            return Err(format!("resolving {name}: no addresses"));
        }
        Ok((ips, Instant::from_std(lookup.valid_until())))
    }

    async fn srv(&self, service: &Service) -> Result<(Vec<DiscoveredNode>, Instant), String> {
        let name = &service.name;
        let srv = self
            .resolver
            .srv_lookup(name.as_str())
            .await
            .map_err(|e| format!("resolving SRV {name}: {e}"))?;
        let mut until = Instant::from_std(srv.as_lookup().valid_until());
        let mut nodes = Vec::new();
        let mut errors = Vec::new();
        for record in srv.iter() {
            let target = record.target();
            let port = match (service.port, record.port()) {
                (Some(p), _) => p,
                (None, 0) => service.default_port,
                (None, p) => p,
            };
            // Addresses the server sent along (additional section), else a lookup of the target.
            let given: Vec<IpAddr> = srv
                .as_lookup()
                .record_iter()
                .filter(|r| r.name() == target)
                .filter_map(|r| r.data().ip_addr())
                .collect();
            let target_name = display_name(target);
            let ips = if given.is_empty() {
                match self.addresses(&target.to_ascii()).await {
                    Ok((ips, t)) => {
                        until = until.min(t);
                        ips
                    }
                    Err(e) => {
                        errors.push(e);
                        continue;
                    }
                }
            } else {
                given
            };
            for ip in ips {
                nodes.push(DiscoveredNode {
                    addr: SocketAddr::new(ip, port),
                    name: Some(target_name.clone()),
                    weight: u32::from(record.weight()),
                    priority: -i32::from(record.priority()),
                });
            }
        }
        if nodes.is_empty() {
            return Err(if errors.is_empty() {
                format!("resolving SRV {name}: no records")
            } else {
                errors.join("; ")
            });
        }
        for e in errors {
            tracing::warn!(service = %name, error = %e, "SRV target left out: it has no address");
        }
        lift_zero_weights(&mut nodes);
        Ok((nodes, until))
    }
}

fn node(service: &Service, ip: IpAddr, port: u16, name: Option<&str>) -> DiscoveredNode {
    DiscoveredNode {
        addr: SocketAddr::new(ip, port),
        name: name.map(str::to_string),
        weight: service.weight,
        priority: service.priority,
    }
}

/// `web.example.` → `web.example`.
fn display_name(name: &Name) -> String {
    name.to_ascii().trim_end_matches('.').to_string()
}

/// RFC 2782: weight 0 records are for when nothing else is there. A priority level whose records all
/// weigh 0 shares evenly; elsewhere weight 0 records get no traffic.
fn lift_zero_weights(nodes: &mut [DiscoveredNode]) {
    let mut all_zero: Vec<i32> = nodes.iter().map(|n| n.priority).collect();
    all_zero.sort_unstable();
    all_zero.dedup();
    all_zero.retain(|p| {
        nodes
            .iter()
            .filter(|n| n.priority == *p)
            .all(|n| n.weight == 0)
    });
    for n in nodes.iter_mut().filter(|n| all_zero.contains(&n.priority)) {
        n.weight = 1;
    }
}

impl Discovery for DnsDiscovery {
    fn check(&self, service: &Service) -> Result<(), String> {
        if service.name.parse::<IpAddr>().is_ok() || Name::from_ascii(&service.name).is_ok() {
            Ok(())
        } else {
            Err(format!("{:?} is not a DNS name", service.name))
        }
    }

    fn follow(&self, service: Service, feed: Feed) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            feed.fail("no async runtime to resolve in");
            return;
        };
        let dns = DnsDiscovery {
            resolver: self.resolver.clone(),
        };
        rt.spawn(async move { dns.run(service, feed).await });
    }
}

impl DnsDiscovery {
    async fn run(self, service: Service, mut feed: Feed) {
        let mut backoff = MIN_REFRESH;
        loop {
            let started = Instant::now();
            let mut next = match self.lookup(&service).await {
                Ok((nodes, until)) => {
                    backoff = MIN_REFRESH;
                    if !feed.publish(nodes) {
                        return;
                    }
                    until
                }
                Err(e) => {
                    if !feed.fail(&e) {
                        return;
                    }
                    let next = started + backoff;
                    backoff = (backoff * 2).min(MAX_RETRY);
                    next
                }
            };
            let earliest = started + MIN_REFRESH;
            next = next.max(earliest);
            loop {
                match feed.wait(next).await {
                    Wake::Timer => break,
                    Wake::Refresh => next = next.min(earliest),
                    Wake::Closed => return,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srv_names_are_recognised_by_their_leading_labels() {
        assert!(is_srv_name("_http._tcp.web.internal"));
        assert!(!is_srv_name("_web.internal"));
        assert!(!is_srv_name("web.internal"));
    }

    #[test]
    fn zero_weights_count_only_where_a_whole_level_is_zero() {
        let n = |w, p| DiscoveredNode {
            addr: "127.0.0.1:1".parse().unwrap(),
            name: None,
            weight: w,
            priority: p,
        };
        let mut nodes = vec![n(0, 0), n(5, 0), n(0, -1), n(0, -1)];
        lift_zero_weights(&mut nodes);
        let w: Vec<u32> = nodes.iter().map(|n| n.weight).collect();
        assert_eq!(w, [0, 5, 1, 1]);
    }

    #[tokio::test]
    async fn literals_and_the_hosts_file_resolve() {
        let dns = DnsDiscovery::new(&[]);
        let s = Service::parse("127.0.0.1:8080", 80).unwrap();
        let (nodes, _) = dns.lookup(&s).await.unwrap();
        assert_eq!(nodes[0].addr, "127.0.0.1:8080".parse().unwrap());
        let s = Service::parse("localhost", 80).unwrap();
        let (nodes, _) = dns.lookup(&s).await.unwrap();
        assert!(nodes
            .iter()
            .all(|n| n.addr.ip().is_loopback() && n.addr.port() == 80));
        assert_eq!(nodes[0].name.as_deref(), Some("localhost"));
    }
}
