//! One upstream exchange: pick a node, connect (reusing a pooled connection when one is ready), send,
//! and wait for the response head — moving to the next node when a connect fails, up to `retries`
//! and `retry_timeout`.
//!
//! Failures before the request leaves are retried on the next node. After it was sent, only bodiless
//! idempotent requests are re-sent ([`replay`]): the body is streamed, so once a byte of it is sent
//! there is nothing left to resend, and a POST may already have been acted on. A pooled connection that
//! the upstream closed while idle hands the unsent request back (hyper's `try_send_request`) and we
//! retry it once on a fresh connection to the same node. A re-sent copy shares the exchange's read
//! timer: the client waits at most one read timeout for the response head, however many nodes it took.
//!
//! Unhealthy nodes (`checks`) are picked only when no healthy untried node is left, and every attempt's
//! outcome (status, connect/exchange failure, timeout) feeds the upstream's passive health checks. The
//! request keeps the node set it started with for all its attempts; a failed connect also asks service
//! discovery to look the upstream's names up again, and the retry goes to another node, which for a DNS
//! name is first of all its next address.

mod replay;

use super::body::{upstream_body, IdleTimeout, UpstreamRequestBody};
use super::client_body::{ClientBody, ClientBodyError};
use super::error::ProxyError;
use super::headers::{for_http2, upstream_host};
use crate::balancer::Balancer;
use crate::upstream::health::Observation;
use crate::upstream::{ConnPool, Member, PooledConn, Protocol, Timeouts, UpstreamRuntime};
use http::header::{HeaderValue, HOST};
use http::request::Parts;
use http::{Request, Response};
use hyper::body::Incoming;
use replay::Replay;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

pub struct Exchanged {
    pub response: Response<Incoming>,
    pub node: SocketAddr,
    /// How long opening the connection took; `None` when a pooled one was reused.
    pub connect: Option<Duration>,
}

/// Where the request was sent, whether or not it worked, for the access log.
pub struct Failed {
    pub error: ProxyError,
    pub node: Option<SocketAddr>,
}

enum Attempt {
    Done(Exchanged),
    /// The request did not leave; try another node (or the same one on a fresh connection).
    Unsent(Request<UpstreamRequestBody>, ProxyError),
    Fatal(ProxyError),
}

pub struct Forward<'a> {
    pub upstream: &'a Arc<UpstreamRuntime>,
    pub timeouts: Timeouts,
    pub hash_key: Option<&'a [u8]>,
    pub client_host: Option<HeaderValue>,
    /// A `Host` a plugin set: sent to every node instead of what `pass_host` would choose.
    pub host_override: Option<HeaderValue>,
}

impl Forward<'_> {
    pub async fn run(self, parts: Parts, body: ClientBody) -> Result<Exchanged, Failed> {
        let up = self.upstream;
        let replay = Replay::capture(
            &parts,
            hyper::body::Body::is_end_stream(&body),
            up.retry_non_idempotent,
        );
        let mut body = IdleTimeout::new(body, self.timeouts.send);
        let body_sent = body.notify_end();
        let progress = body.progress();
        let (send_idle, read) = (self.timeouts.send, self.timeouts.read);
        // One timer for the whole exchange once a connection is up. While the request body streams, no
        // progress for `send` is a timeout (checked from outside the body: an upstream that stops
        // reading blocks hyper's writes, and then nothing polls the body). Once the body is fully sent,
        // the response head must come within `read`.
        let read_timer = async move {
            let watch_from = Instant::now();
            tokio::pin!(body_sent);
            loop {
                let deadline = progress.last().max(watch_from) + send_idle;
                tokio::select! {
                    _ = &mut body_sent => break,
                    () = tokio::time::sleep_until(deadline) => {
                        if progress.last().max(watch_from) + send_idle <= Instant::now() {
                            return;
                        }
                    }
                }
            }
            tokio::time::sleep(read).await;
        };
        tokio::pin!(read_timer);

        let mut request = Request::from_parts(parts, upstream_body(body));
        let started = Instant::now();
        let members = up.members(self.timeouts.connect).await;
        let Some(balancer) = members.balancer() else {
            tracing::warn!(upstream = %up.name, "upstream has no node to send to (service discovery found none yet)");
            return Err(Failed {
                error: ProxyError::UpstreamUnreachable,
                node: None,
            });
        };
        let mut tried: Vec<usize> = Vec::new();
        let mut last = ProxyError::UpstreamUnreachable;
        let mut last_node = None;
        for attempt in 0..=up.retries(&members) {
            if attempt > 0 && up.retry_timeout.is_some_and(|t| started.elapsed() >= t) {
                break;
            }
            let Some(idx) = members.pick(self.hash_key, &tried) else {
                break;
            };
            tried.push(idx);
            let member = &members.list[idx];
            let addr = member.addr;
            last_node = Some(addr);
            let chosen = match &self.host_override {
                Some(h) => Some(h.clone()),
                None => upstream_host(up, &member.node, self.client_host.as_ref()),
            };
            match chosen {
                Some(h) => {
                    request.headers_mut().insert(HOST, h);
                }
                None => {
                    request.headers_mut().remove(HOST);
                }
            }
            let mut fresh_only = false;
            loop {
                let flight = InFlight::start(balancer, idx);
                let connecting = Instant::now();
                let conn = match connect(&up.pool, member, self.timeouts.connect, fresh_only).await
                {
                    Ok(c) => c,
                    Err(e) => {
                        flight.finish(false);
                        tracing::warn!(upstream = %up.name, node = %member.node.authority(), %addr, error = ?e, "upstream connect failed");
                        members.observe(idx, failure_observation(&e));
                        up.connect_failed();
                        last = e;
                        break;
                    }
                };
                let reused = conn.reused;
                let connect_took = (!reused).then(|| connecting.elapsed());
                match send(&up.pool, conn, request, read_timer.as_mut()).await {
                    Attempt::Done(mut ex) => {
                        flight.finish(true);
                        members.observe(idx, Observation::Status(ex.response.status().as_u16()));
                        ex.connect = connect_took;
                        return Ok(ex);
                    }
                    Attempt::Fatal(error) if error.is_client_fault() => {
                        // The client's body failed, not the node: nothing to retry or hold against it.
                        flight.finish(true);
                        return Err(Failed {
                            error,
                            node: Some(addr),
                        });
                    }
                    Attempt::Fatal(error) => {
                        flight.finish(false);
                        members.observe(idx, failure_observation(&error));
                        match (&replay, &error) {
                            (Some(r), ProxyError::UpstreamFailed) => {
                                tracing::info!(upstream = %up.name, node = %addr, method = %r.method(), "exchange broke after the request was sent; re-sending it (no body) to another node");
                                request = r.request();
                                last = error;
                                break;
                            }
                            _ => {
                                return Err(Failed {
                                    error,
                                    node: Some(addr),
                                })
                            }
                        }
                    }
                    Attempt::Unsent(back, error) => {
                        flight.finish(false);
                        if !reused {
                            members.observe(idx, Observation::TcpFailure);
                        }
                        request = back;
                        last = error;
                        if reused && !fresh_only {
                            fresh_only = true;
                            continue;
                        }
                        break;
                    }
                }
            }
        }
        Err(Failed {
            error: last,
            node: last_node,
        })
    }
}

fn failure_observation(e: &ProxyError) -> Observation {
    match e {
        ProxyError::UpstreamTimeout => Observation::Timeout,
        _ => Observation::TcpFailure,
    }
}

/// Pairs the balancer's `on_start` with exactly one `on_finish`, also when the request future is
/// dropped mid-exchange (the client went away): otherwise least_conn/ewma would count that request
/// as in flight forever and starve the node.
struct InFlight<'a> {
    balancer: &'a Balancer,
    idx: usize,
    started: Instant,
    finished: bool,
}

impl<'a> InFlight<'a> {
    fn start(balancer: &'a Balancer, idx: usize) -> Self {
        balancer.on_start(idx);
        InFlight {
            balancer,
            idx,
            started: Instant::now(),
            finished: false,
        }
    }

    fn finish(mut self, ok: bool) {
        self.finished = true;
        self.balancer
            .on_finish(self.idx, self.started.elapsed(), ok);
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.balancer
                .on_finish(self.idx, self.started.elapsed(), false);
        }
    }
}

async fn connect(
    pool: &Arc<ConnPool<UpstreamRequestBody>>,
    member: &Member,
    timeout: Duration,
    fresh_only: bool,
) -> Result<PooledConn<UpstreamRequestBody>, ProxyError> {
    if !fresh_only {
        if let Some(c) = pool.checkout(member.addr, &member.key) {
            return Ok(c);
        }
    }
    pool.connect(member.addr, &member.key, member.tls_name.as_ref(), timeout)
        .await
        .map_err(|e| match e {
            crate::upstream::ConnectError::Timeout(_) => ProxyError::UpstreamTimeout,
            _ => ProxyError::UpstreamUnreachable,
        })
}

async fn send(
    pool: &Arc<ConnPool<UpstreamRequestBody>>,
    mut conn: PooledConn<UpstreamRequestBody>,
    mut request: Request<UpstreamRequestBody>,
    read_timer: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> Attempt {
    let node = conn.addr;
    if pool.protocol() == Protocol::Http2 {
        for_http2(&mut request, pool.is_tls(), node);
    }
    let outcome = tokio::select! {
        r = conn.sender.try_send_request(request) => r,
        () = read_timer => return Attempt::Fatal(ProxyError::UpstreamTimeout),
    };
    match outcome {
        Ok(response) => {
            pool.release(conn);
            Attempt::Done(Exchanged {
                response,
                node,
                connect: None,
            })
        }
        Err(mut e) => {
            let err = e.error();
            let kind = match client_body_error(err) {
                Some(ClientBodyError::TooLarge { .. }) => ProxyError::BodyTooLarge,
                Some(ClientBodyError::Broken(_)) => ProxyError::BrokenBody,
                None if is_timeout(err) => ProxyError::UpstreamTimeout,
                None => ProxyError::UpstreamFailed,
            };
            if kind.is_client_fault() {
                tracing::info!(node = %node, error = %err, "request body refused while streaming upstream");
            } else {
                tracing::warn!(node = %node, error = %err, "upstream exchange failed");
            }
            match e.take_message() {
                Some(back) => Attempt::Unsent(back, ProxyError::UpstreamUnreachable),
                None => Attempt::Fatal(kind),
            }
        }
    }
}

/// The first error of type `E` in `err`'s source chain: our body errors surface wrapped in hyper's.
fn find_source<E: std::error::Error + 'static>(err: &hyper::Error) -> Option<&E> {
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        if let Some(found) = s.downcast_ref::<E>() {
            return Some(found);
        }
        source = s.source();
    }
    None
}

/// A body that stalled past its idle timeout.
fn is_timeout(err: &hyper::Error) -> bool {
    find_source::<super::body::BodyTimeout>(err).is_some()
}

/// The client's own body failed (over the limit, broken framing) while it streamed upstream.
fn client_body_error(err: &hyper::Error) -> Option<&ClientBodyError> {
    find_source::<ClientBodyError>(err)
}
