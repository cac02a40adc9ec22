//! `collector()`: an HTTP endpoint on `127.0.0.1:0` that keeps every request it receives, body included —
//! where logger plugins POST their batches and the OTLP exporter sends its spans.
//!
//! It answers `200` with an empty body, or what [`Collector::set_status`] says (an endpoint that fails,
//! then recovers). Requests are recorded whatever the answer, so a test sees every delivery attempt.
//! Like [`crate::origin`] it runs on the shared background runtime and stops when dropped.

use crate::origin::background;
use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

/// One request the collector received.
#[derive(Debug, Clone)]
pub struct Posted {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The status it was answered with.
    pub status: u16,
}

impl Posted {
    /// The body as UTF-8 text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

struct State {
    status: AtomicU16,
    posts: Mutex<Vec<Posted>>,
}

/// A running collector; stops when dropped.
pub struct Collector {
    addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

/// Starts a collector answering 200.
pub fn collector() -> Collector {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind collector");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("collector addr");
    let state = Arc::new(State {
        status: AtomicU16::new(200),
        posts: Mutex::new(Vec::new()),
    });
    let st = Arc::clone(&state);
    let task = background().spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let st = Arc::clone(&st);
            tokio::spawn(async move {
                let svc = service_fn(move |req| record(Arc::clone(&st), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    Collector { addr, state, task }
}

async fn record(
    st: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let status = st.status.load(Ordering::SeqCst);
    st.posts.lock().unwrap().push(Posted {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        headers: parts.headers,
        body,
        status,
    });
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    Ok(resp)
}

impl Collector {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// `http://127.0.0.1:PORT<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
    /// Every request received so far, in arrival order.
    pub fn posts(&self) -> Vec<Posted> {
        self.state.posts.lock().unwrap().clone()
    }
    /// Answer later requests with `status`.
    pub fn set_status(&self, status: u16) {
        self.state.status.store(status, Ordering::SeqCst);
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}
