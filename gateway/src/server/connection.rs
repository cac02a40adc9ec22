//! One client connection, from accept to close: a slot under the listener's connection limit, the TLS
//! handshake (HTTPS listener) within the head-read time, HTTP/1.1 or HTTP/2 (told apart by the client's
//! first bytes) under the [`ClientLimits`], and a graceful close when the connection idles or the gateway
//! drains.
//!
//! Why our own drain instead of hyper-util's `GracefulShutdown`: a connection must also close itself after
//! `idle_timeout` with no request in flight, and only the code that owns the connection future can both
//! watch its requests and call `graceful_shutdown` on it. A [`TaskTracker`] then tells when the last
//! connection task has finished.

use crate::limits::{
    ClientLimits, H2_KEEPALIVE_INTERVAL, H2_KEEPALIVE_TIMEOUT, H2_MAX_FRAME_SIZE,
    H2_MAX_LOCAL_ERROR_RESET_STREAMS, H2_MAX_PENDING_ACCEPT_RESET_STREAMS, H2_MAX_SEND_BUF,
};
use crate::metrics::HttpMetrics;
use crate::proxy::{self, Conn, ProxyState};
use crate::tls::TlsAcceptor;
use http_body::{Body, Frame, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

/// Everything the proxy listeners share for serving connections.
pub struct ConnServer {
    builder: auto::Builder<TokioExecutor>,
    limits: ClientLimits,
    state: Arc<ProxyState>,
    metrics: Option<Arc<HttpMetrics>>,
    tracker: TaskTracker,
    stop: watch::Receiver<bool>,
}

/// The connection budget of one listener.
pub struct Slots(Arc<Semaphore>);

impl Slots {
    pub fn new(limits: &ClientLimits) -> Self {
        Slots(Arc::new(Semaphore::new(limits.max_connections)))
    }

    /// A slot for one more connection, or `None` when the listener is full.
    pub fn take(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.0).try_acquire_owned().ok()
    }
}

impl ConnServer {
    pub fn new(
        limits: ClientLimits,
        state: Arc<ProxyState>,
        metrics: Option<Arc<HttpMetrics>>,
        stop: watch::Receiver<bool>,
    ) -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // hyper's read buffer bounds the request head exactly: a head that does not fit is refused with 431.
        // It also caps how much of a body is buffered per read, which streaming does not mind.
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_headers(limits.max_headers)
            .max_buf_size(limits.max_head_bytes.max(8192));
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.h2_max_concurrent_streams)
            .max_pending_accept_reset_streams(H2_MAX_PENDING_ACCEPT_RESET_STREAMS)
            .max_local_error_reset_streams(H2_MAX_LOCAL_ERROR_RESET_STREAMS)
            .max_header_list_size(u32::try_from(limits.max_head_bytes).unwrap_or(u32::MAX))
            .max_frame_size(H2_MAX_FRAME_SIZE)
            .max_send_buf_size(H2_MAX_SEND_BUF)
            .keep_alive_interval(H2_KEEPALIVE_INTERVAL)
            .keep_alive_timeout(H2_KEEPALIVE_TIMEOUT);
        ConnServer {
            builder,
            limits,
            state,
            metrics,
            tracker: TaskTracker::new(),
            stop,
        }
    }

    /// Serves a plain-TCP connection on its own task.
    pub fn spawn_plain(
        self: &Arc<Self>,
        stream: TcpStream,
        conn: Conn,
        slot: OwnedSemaphorePermit,
    ) {
        let this = Arc::clone(self);
        self.tracker.spawn(async move {
            let _slot = slot;
            let _open = this.metrics.as_ref().map(|m| m.connection());
            this.serve(stream, conn).await;
        });
    }

    /// Serves an HTTPS connection on its own task: the handshake runs there, so a slow client never
    /// stalls accepting, and it must finish within the head-read time like any request head.
    pub fn spawn_tls(
        self: &Arc<Self>,
        stream: TcpStream,
        conn: Conn,
        slot: OwnedSemaphorePermit,
        acceptor: Arc<TlsAcceptor>,
    ) {
        let this = Arc::clone(self);
        self.tracker.spawn(async move {
            let _slot = slot;
            let _open = this.metrics.as_ref().map(|m| m.connection());
            let stream = match acceptor
                .accept(stream, this.limits.header_read_timeout)
                .await
            {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(client = %conn.client, error = %e, "TLS handshake failed");
                    return;
                }
            };
            this.serve(stream, conn).await;
        });
    }

    async fn serve<I>(&self, io: I, conn: Conn)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::new(Activity::new());
        let state = Arc::clone(&self.state);
        let requests = Arc::clone(&activity);
        let svc = service_fn(move |req| {
            let state = Arc::clone(&state);
            let busy = Busy::start(&requests);
            async move {
                let resp = proxy::handle(state, conn, req).await;
                Ok::<_, Infallible>(resp.map(|body| InFlight { body, _busy: busy }))
            }
        });
        let connection = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), svc);
        tokio::pin!(connection);
        let mut stop = self.stop.clone();
        let mut closing = false;
        loop {
            tokio::select! {
                ended = connection.as_mut() => {
                    if let Err(e) = ended {
                        tracing::debug!(client = %conn.client, error = %e, "client connection ended with error");
                    }
                    return;
                }
                _ = stop.wait_for(|s| *s), if !closing => {
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
                () = activity.idle_for(self.limits.idle_timeout), if !closing => {
                    tracing::debug!(client = %conn.client, "closing an idle client connection");
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }

    /// Stops taking connections into account for the drain and waits up to `timeout` for the open ones to
    /// finish (they were told to close by the stop signal). False when some were still open.
    pub async fn drain(&self, timeout: Duration) -> bool {
        self.tracker.close();
        tokio::time::timeout(timeout, self.tracker.wait())
            .await
            .is_ok()
    }
}

/// Requests in flight on one connection and when the last one finished.
struct Activity {
    base: Instant,
    in_flight: AtomicUsize,
    /// Nanoseconds after `base` when the connection last became idle.
    idle_since: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            base: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
        }
    }

    /// Completes once no request has been in flight for `timeout`.
    async fn idle_for(&self, timeout: Duration) {
        loop {
            let deadline = if self.in_flight.load(Ordering::Acquire) == 0 {
                self.base + Duration::from_nanos(self.idle_since.load(Ordering::Acquire)) + timeout
            } else {
                Instant::now() + timeout
            };
            if deadline <= Instant::now() && self.in_flight.load(Ordering::Acquire) == 0 {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// One request in flight, from its head to the end of its response body.
struct Busy(Arc<Activity>);

impl Busy {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(Arc::clone(activity))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let a = &self.0;
        let nanos = u64::try_from(a.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        a.idle_since.store(nanos, Ordering::Release);
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request counted as in flight until hyper drops it (sent or abandoned).
struct InFlight<B> {
    body: B,
    _busy: Busy,
}

impl<B: Body + Unpin> Body for InFlight<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
