//! Keepalive connections to upstream nodes, honouring APISIX's `keepalive_pool` (`size`, `idle_timeout`,
//! `requests`).
//!
//! Our own pool rather than hyper-util's client pool because the proxy must choose the node itself
//! (balancer, retries across nodes), bound connect time per attempt, and cap requests per connection,
//! none of which that client exposes. The shape follows hyper-util's: a connection goes back to the pool
//! only once hyper reports it ready again, i.e. after the previous response body was fully read, so a
//! half-read connection is never handed to another request.
//!
//! HTTP/2 upstreams (`scheme: "grpc"`, h2c with prior knowledge, and `"grpcs"`, TLS with ALPN `h2`) need no
//! such pool: one connection per node multiplexes every request, so the pool keeps that one connection
//! ([`Protocol::Http2`]) and hands out clones of its sender until the connection closes; `keepalive_pool`
//! does not apply to them.
//!
//! For `scheme: "https"` / `"grpcs"` the pool also runs the TLS handshake ([`PoolTls`]). Idle connections are keyed by
//! node address *and* node key (which holds the name the node was found under), so a connection opened with
//! one node's server name (SNI, certificate identity) is never reused for another node that happens to
//! resolve to the same address; and since a pool belongs to one upstream runtime, which is rebuilt when
//! `scheme` or `tls` changes, TLS and plain connections never mix. Keys rather than indexes also keep
//! connections usable across node sets when service discovery changes the nodes.

use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2, TrySendError};
use hyper_util::rt::{TokioExecutor, TokioIo};
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

/// The HTTP version a pool speaks to its nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

/// A connection's request sender, HTTP/1.1 (one request at a time) or HTTP/2 (multiplexed, shared).
pub enum Sender<B> {
    H1(http1::SendRequest<B>),
    H2(http2::SendRequest<B>),
}

impl<B> Sender<B>
where
    B: Body + 'static,
{
    pub fn is_closed(&self) -> bool {
        match self {
            Sender::H1(s) => s.is_closed(),
            Sender::H2(s) => s.is_closed(),
        }
    }

    /// Sends `req`, or hands it back unsent when the connection turned out not to be usable.
    pub async fn try_send_request(
        &mut self,
        req: Request<B>,
    ) -> Result<Response<Incoming>, TrySendError<Request<B>>> {
        match self {
            Sender::H1(s) => s.try_send_request(req).await,
            Sender::H2(s) => s.try_send_request(req).await,
        }
    }
}

struct IdleConn<B> {
    sender: http1::SendRequest<B>,
    since: Instant,
    uses: u32,
}

/// A connection checked out for one request.
pub struct PooledConn<B> {
    pub sender: Sender<B>,
    pub addr: SocketAddr,
    /// The node's key (`upstream::members::Member::key`).
    pub node: Arc<str>,
    /// True when the connection carried earlier requests (so a failure may be a stale keepalive race).
    pub reused: bool,
    uses: u32,
}

/// TLS towards the nodes of one upstream (each node brings its server name to [`ConnPool::connect`]).
pub struct PoolTls {
    pub config: Arc<ClientConfig>,
}

/// Idle connections are kept per (address, node key): see the module docs.
type PoolKey = (SocketAddr, Arc<str>);

pub struct ConnPool<B> {
    settings: PoolSettings,
    tls: Option<PoolTls>,
    protocol: Protocol,
    idle: Mutex<HashMap<PoolKey, Vec<IdleConn<B>>>>,
    /// HTTP/2: the one connection per node, shared by every request.
    shared: Mutex<HashMap<PoolKey, http2::SendRequest<B>>>,
    opened: AtomicU64,
}

impl<B> ConnPool<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    pub fn new(settings: PoolSettings) -> Arc<Self> {
        Self::with_tls(settings, None, Protocol::Http1)
    }

    /// A pool speaking `protocol`, over TLS when `tls` is given.
    pub fn with_tls(settings: PoolSettings, tls: Option<PoolTls>, protocol: Protocol) -> Arc<Self> {
        let pool = Arc::new(ConnPool {
            settings,
            tls,
            protocol,
            idle: Mutex::new(HashMap::new()),
            shared: Mutex::new(HashMap::new()),
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

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// A ready connection to node `node` at `addr`: an idle HTTP/1.1 one fresh enough, or the node's open
    /// HTTP/2 connection.
    pub fn checkout(&self, addr: SocketAddr, node: &Arc<str>) -> Option<PooledConn<B>> {
        let key = (addr, Arc::clone(node));
        if self.protocol == Protocol::Http2 {
            let shared = self.shared.lock().ok()?;
            let sender = shared.get(&key).filter(|s| !s.is_closed())?;
            return Some(PooledConn {
                sender: Sender::H2(sender.clone()),
                addr,
                node: key.1,
                reused: true,
                uses: 0,
            });
        }
        let mut idle = self.idle.lock().ok()?;
        let list = idle.get_mut(&key)?;
        while let Some(conn) = list.pop() {
            if conn.since.elapsed() < self.settings.idle_timeout
                && !conn.sender.is_closed()
                && conn.sender.is_ready()
            {
                return Some(PooledConn {
                    sender: Sender::H1(conn.sender),
                    addr,
                    node: key.1,
                    reused: true,
                    uses: conn.uses + 1,
                });
            }
        }
        None
    }

    /// Opens a new connection to node `node` at `addr`, bounding TCP connect plus any TLS handshake by
    /// `timeout`. `name` is the TLS server name (SNI and the identity the certificate must show); without
    /// one the node's IP is verified.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        node: &Arc<str>,
        name: Option<&ServerName<'static>>,
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
                None => handshake(addr, stream, self.protocol).await?,
                Some(tls) => {
                    let name = name
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
                    handshake(addr, stream, self.protocol).await?
                }
            };
        self.opened.fetch_add(1, Ordering::Relaxed);
        if let (Sender::H2(s), Ok(mut shared)) = (&sender, self.shared.lock()) {
            shared.insert((addr, Arc::clone(node)), s.clone());
        }
        Ok(PooledConn {
            sender,
            addr,
            node: Arc::clone(node),
            reused: false,
            uses: 1,
        })
    }

    /// Hands a connection back once its response has been read; retired if it hit `max_requests`, the pool
    /// for that node is full, or it never becomes ready (the body was abandoned or the peer closed).
    /// HTTP/2 connections stay shared and need no handing back.
    pub fn release(self: &Arc<Self>, conn: PooledConn<B>) {
        if conn.uses >= self.settings.max_requests || self.settings.size == 0 {
            return;
        }
        let PooledConn {
            sender,
            addr,
            node,
            uses,
            ..
        } = conn;
        let Sender::H1(mut sender) = sender else {
            return;
        };
        let pool = Arc::clone(self);
        tokio::spawn(async move {
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

/// HTTP/1.1 or HTTP/2 over an established stream; the connection task runs until the peer or the pool
/// drops it.
async fn handshake<B, I>(
    addr: SocketAddr,
    io: I,
    protocol: Protocol,
) -> Result<Sender<B>, ConnectError>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    if protocol == Protocol::Http2 {
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(20))
            .keep_alive_timeout(Duration::from_secs(20))
            .handshake(TokioIo::new(io))
            .await
            .map_err(|source| ConnectError::Handshake { addr, source })?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%addr, error = %e, "upstream HTTP/2 connection closed with error");
            }
        });
        return Ok(Sender::H2(sender));
    }
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
    Ok(Sender::H1(sender))
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
