//! Node host names → socket addresses, cached by record TTL.
//!
//! hickory's resolver keeps its own TTL-respecting cache, so every connect asks it and a changed DNS
//! record is picked up when the old one expires. IP literals skip the resolver entirely.

use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::TokioResolver;
use std::net::{IpAddr, SocketAddr};

#[derive(Clone)]
pub struct Dns {
    resolver: TokioResolver,
}

impl Dns {
    /// Uses the system resolver configuration (`/etc/resolv.conf`, `/etc/hosts`); falls back to
    /// hickory's defaults where the system file cannot be read, so the gateway still starts.
    pub fn from_system() -> Self {
        let builder = TokioResolver::builder_tokio().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read system DNS configuration; using defaults");
            TokioResolver::builder_with_config(
                hickory_resolver::config::ResolverConfig::default(),
                TokioConnectionProvider::default(),
            )
        });
        Dns {
            resolver: builder.build(),
        }
    }

    pub async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let lookup = self
            .resolver
            .lookup_ip(host)
            .await
            .map_err(|e| std::io::Error::other(format!("resolving {host}: {e}")))?;
        let addrs: Vec<SocketAddr> = lookup.iter().map(|ip| SocketAddr::new(ip, port)).collect();
        if addrs.is_empty() {
            return Err(std::io::Error::other(format!(
                "resolving {host}: no addresses"
            )));
        }
        Ok(addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn literals_and_hosts_file_resolve() {
        let dns = Dns::from_system();
        let a = dns.resolve("127.0.0.1", 80).await.unwrap();
        assert_eq!(a, vec!["127.0.0.1:80".parse().unwrap()]);
        let l = dns.resolve("localhost", 8080).await.unwrap();
        assert!(l.iter().all(|a| a.ip().is_loopback() && a.port() == 8080));
    }
}
