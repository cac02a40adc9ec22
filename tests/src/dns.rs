//! `dns_server()`: a real authoritative DNS server (hickory-server) for the zone `test.` on
//! `127.0.0.1:<ephemeral>`, UDP and TCP, whose records a test changes while the gateway resolves them.
//!
//! Point a gateway at it with `--dns-resolver <addr>` ([`DnsServer::addr`]). Records are replaced whole per
//! name and type ([`DnsServer::set_a`], [`DnsServer::set_srv`]) or removed ([`DnsServer::remove`]), with the
//! TTL the test chooses; answers carry it, so the gateway's re-resolution by TTL is what a test observes.
//! The server runs on the origins' background runtime and stops when the [`DnsServer`] is dropped.

use crate::origin::background;
use hickory_server::authority::{AuthorityObject, Catalog, ZoneType};
use hickory_server::proto::rr::rdata::{A, SOA, SRV};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordSet, RecordType, RrKey};
use hickory_server::store::in_memory::InMemoryAuthority;
use hickory_server::ServerFuture;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// One SRV record: `priority`, `weight`, `port`, `target` (a name in `test.`).
pub struct Srv<'a> {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    pub target: &'a str,
}

pub struct DnsServer {
    addr: SocketAddr,
    authority: Arc<InMemoryAuthority>,
    serial: AtomicU32,
    task: tokio::task::JoinHandle<()>,
}

fn name(n: &str) -> Name {
    let fqdn = if n.ends_with('.') {
        n.to_string()
    } else {
        format!("{n}.")
    };
    Name::from_ascii(&fqdn).unwrap_or_else(|e| panic!("DNS name {n:?}: {e}"))
}

/// Starts a server for `test.` with no records but its SOA.
pub async fn dns_server() -> DnsServer {
    let zone = name("test");
    let mut authority = InMemoryAuthority::empty(zone.clone(), ZoneType::Primary, false);
    let soa = SOA::new(name("ns.test"), name("admin.test"), 1, 60, 60, 60, 1);
    authority.upsert_mut(Record::from_rdata(zone.clone(), 60, RData::SOA(soa)), 1);
    let authority = Arc::new(authority);
    let mut catalog = Catalog::new();
    let object: Arc<dyn AuthorityObject> = authority.clone();
    catalog.upsert(LowerName::new(&zone), vec![object]);

    let rt = background();
    let (addr, task) = rt
        .spawn(async move {
            let udp = tokio::net::UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("bind DNS UDP");
            let addr = udp.local_addr().expect("addr");
            let mut server = ServerFuture::new(catalog);
            server.register_socket(udp);
            // TCP on the same port for truncated answers; UDP alone serves the tests if it is taken.
            if let Ok(tcp) = tokio::net::TcpListener::bind(addr).await {
                server.register_listener(tcp, Duration::from_secs(5));
            }
            let task = tokio::spawn(async move {
                let _ = server.block_until_done().await;
            });
            (addr, task)
        })
        .await
        .expect("start DNS server");
    DnsServer {
        addr,
        authority,
        serial: AtomicU32::new(1),
        task,
    }
}

impl DnsServer {
    /// Where it listens: the gateway's `--dns-resolver`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    async fn replace(&self, n: &str, kind: RecordType, data: Vec<RData>, ttl: u32) {
        let serial = self.serial.fetch_add(1, Ordering::SeqCst) + 1;
        let owner = name(n);
        let mut set = RecordSet::new(owner.clone(), kind, serial);
        for d in data {
            set.insert(Record::from_rdata(owner.clone(), ttl, d), serial);
        }
        let key = RrKey::new(LowerName::new(&owner), kind);
        self.authority
            .records_mut()
            .await
            .insert(key, Arc::new(set));
    }

    /// Makes `n`'s A records exactly `ips`, with `ttl` seconds.
    pub async fn set_a(&self, n: &str, ips: &[Ipv4Addr], ttl: u32) {
        let data = ips.iter().map(|ip| RData::A(A(*ip))).collect();
        self.replace(n, RecordType::A, data, ttl).await;
    }

    /// Makes `n`'s SRV records exactly `records`, with `ttl` seconds.
    pub async fn set_srv(&self, n: &str, records: &[Srv<'_>], ttl: u32) {
        let data = records
            .iter()
            .map(|r| RData::SRV(SRV::new(r.priority, r.weight, r.port, name(r.target))))
            .collect();
        self.replace(n, RecordType::SRV, data, ttl).await;
    }

    /// Removes `n`'s records of type `kind` (queries for it then get NXDOMAIN).
    pub async fn remove(&self, n: &str, kind: RecordType) {
        let key = RrKey::new(LowerName::new(&name(n)), kind);
        self.authority.records_mut().await.remove(&key);
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub use hickory_server::proto::rr::RecordType as DnsRecordType;
