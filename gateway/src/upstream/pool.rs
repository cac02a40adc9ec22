//! Keepalive connections to upstream nodes, honouring APISIX's `keepalive_pool` (`size`, `idle_timeout`,
//! `requests`).
//!
//! Our own pool rather than hyper-util's client pool because the proxy must choose the node itself
//! (balancer, retries across nodes), bound connect time per attempt, and cap requests per connection,
//! none of which that client exposes. The shape follows hyper-util's: a connection goes back to the pool
//! only once hyper reports it ready again, i.e. after the previous response body was fully read, so a
//! half-read connection is never handed to another request.
//!
//! For `scheme: "https"` the pool also runs the TLS handshake ([`PoolTls`]). Idle connections are keyed by
//! node address *and* node index, so a connection opened with one node's server name (SNI, certificate
//! identity) is never reused for another node that happens to resolve to the same address; and since a pool
//! belongs to one upstream runtime, which is rebuilt when `scheme` or `tls` changes, TLS and plain connections
//! never mix.

use http_body::Body;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolSettings {
    /// Most idle connections kept per node.
    pub size: usize,
    pub idle_timeout: Duration,
    /// Requests one connection may carry before it is retired.
    pub max_requests: u32,
}

impl Default for PoolSettings {
    /// APISIX's defaults.
    fn default() -> Self {
        PoolSettings {
            size: 320,
            idle_timeout: Duration::from_secs(60),
            max_requests: 1000,
        }
    }
}

/// Why a connection attempt failed; the proxy maps `Timeout` to 504 and the rest to 502.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect to {0} timed out")]
    Timeout(SocketAddr),
    #[error("connect to {addr}: {source}")]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS handshake with {addr}: {source}")]
    Tls {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP handshake with {addr}: {source}")]
    Handshake {
        addr: SocketAddr,
        source: hyper::Error,
    },
}

struct IdleConn<B> {
    sender: SendRequest<B>,
    since: Instant,
    uses: u32,
}

/// A connection checked out for one request.
pub struct PooledConn<B> {
    pub sender: SendRequest<B>,
    pub addr: SocketAddr,
    /// Index of the node in the upstream's `nodes`.
    pub node: usize,
    /// True when the connection carried earlier requests (so a failure may be a stale keepalive race).
    pub reused: bool,
    uses: u32,
}

/// TLS towards the nodes of one upstream.
pub struct PoolTls {
    pub config: Arc<ClientConfig>,
    /// The server name (SNI and the identity the certificate must show) for each node, by node index.
    pub names: Vec<ServerName<'static>>,
}

/// Idle connections are kept per (address, node index): see the module docs.
type PoolKey = (SocketAddr, usize);

pub struct ConnPool<B> {
    settings: PoolSettings,
    tls: Option<PoolTls>,
    idle: Mutex<HashMap<PoolKey, Vec<IdleConn<B>>>>,
    opened: AtomicU64,
}

impl<B> ConnPool<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    pub fn new(settings: PoolSettings) -> Arc<Self> {
        Self::with_tls(settings, None)
    }

    /// A pool whose connections speak TLS when `tls` is given.
    pub fn with_tls(settings: PoolSettings, tls: Option<PoolTls>) -> Arc<Self> {
        let pool = Arc::new(ConnPool {
            settings,
            tls,
            idle: Mutex::new(HashMap::new()),
            opened: AtomicU64::new(0),
        });
        spawn_sweeper(Arc::downgrade(&pool), settings.idle_timeout);
        pool
    }

    pub fn settings(&self) -> PoolSettings {
        self.settings
    }

    /// Connections opened by this pool so far.
    pub fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Whether connections are TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// A ready idle connection to node `node` at `addr`, if one is fresh enough.
    pub fn checkout(&self, addr: SocketAddr, node: usize) -> Option<PooledConn<B>> {
        let mut idle = self.idle.lock().ok()?;
        let list = idle.get_mut(&(addr, node))?;
        while let Some(conn) = list.pop() {
            if conn.since.elapsed() < self.settings.idle_timeout
                && !conn.sender.is_closed()
                && conn.sender.is_ready()
            {
                return Some(PooledConn {
                    sender: conn.sender,
                    addr,
                    node,
                    reused: true,
                    uses: conn.uses + 1,
                });
            }
        }
        None
    }

    /// Opens a new connection to node `node` at `addr`, bounding TCP connect plus any TLS handshake by
    /// `timeout`.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        node: usize,
        timeout: Duration,
    ) -> Result<PooledConn<B>, ConnectError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let stream = match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
            Err(_) => return Err(ConnectError::Timeout(addr)),
            Ok(Err(source)) => return Err(ConnectError::Io { addr, source }),
            Ok(Ok(s)) => s,
        };
        // Small proxied writes must not wait for Nagle.
        let _ = stream.set_nodelay(true);
        let sender =
            match &self.tls {
                None => handshake(addr, stream).await?,
                Some(tls) => {
                    let name = tls
                        .names
                        .get(node)
                        .cloned()
                        .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
                    let connector = tokio_rustls::TlsConnector::from(Arc::clone(&tls.config));
                    let stream =
                        match tokio::time::timeout_at(deadline, connector.connect(name, stream))
                            .await
                        {
                            Err(_) => return Err(ConnectError::Timeout(addr)),
                            Ok(Err(source)) => return Err(ConnectError::Tls { addr, source }),
                            Ok(Ok(s)) => s,
                        };
                    handshake(addr, stream).await?
                }
            };
        self.opened.fetch_add(1, Ordering::Relaxed);
        Ok(PooledConn {
            sender,
            addr,
            node,
            reused: false,
            uses: 1,
        })
    }

    /// Hands a connection back once its response has been read; retired if it hit `max_requests`, the pool
    /// for that node is full, or it never becomes ready (the body was abandoned or the peer closed).
    pub fn release(self: &Arc<Self>, conn: PooledConn<B>) {
        if conn.uses >= self.settings.max_requests || self.settings.size == 0 {
            return;
        }
        let pool = Arc::clone(self);
        tokio::spawn(async move {
            let PooledConn {
                mut sender,
                addr,
                node,
                uses,
                ..
            } = conn;
            if sender.ready().await.is_err() {
                return;
            }
            let Ok(mut idle) = pool.idle.lock() else {
                return;
            };
            let list = idle.entry((addr, node)).or_default();
            if list.len() < pool.settings.size {
                list.push(IdleConn {
                    sender,
                    since: Instant::now(),
                    uses,
                });
            }
        });
    }

    fn sweep(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            let limit = self.settings.idle_timeout;
            for list in idle.values_mut() {
                list.retain(|c| c.since.elapsed() < limit && !c.sender.is_closed());
            }
            idle.retain(|_, list| !list.is_empty());
        }
    }
}

/// HTTP/1.1 over an established stream; the connection task runs until the peer or the pool drops it.
async fn handshake<B, I>(addr: SocketAddr, io: I) -> Result<SendRequest<B>, ConnectError>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
        .map_err(|source| ConnectError::Handshake { addr, source })?;
    // With upgrades: after a `101` the connection's I/O goes to the WebSocket tunnel instead of closing.
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(%addr, error = %e, "upstream connection closed with error");
        }
    });
    Ok(sender)
}

/// Closes idle connections once they pass `idle_timeout`, so upstreams are not held open forever by a
/// quiet gateway. Holds only a weak reference: the task ends when the upstream config is replaced.
fn spawn_sweeper<B>(pool: Weak<ConnPool<B>>, idle_timeout: Duration)
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let period = (idle_timeout / 2).clamp(Duration::from_millis(500), Duration::from_secs(30));
    if tokio::runtime::Handle::try_current().is_err() {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match pool.upgrade() {
                Some(p) => p.sweep(),
                None => return,
            }
        }
    });
}
