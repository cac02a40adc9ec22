//! `origin()`: a real HTTP/1.1 upstream on `127.0.0.1:0` that records what it receives.
//!
//! Every response carries `x-origin: <name>`. The body is, by default, a JSON echo of the request
//! (`origin`, `method`, `path`, `query`, `headers`, `body_len`, `body_intact`, `conn`); [`OriginBuilder::body`]
//! fixes it instead. A request can steer the origin through headers (they pass through the gateway untouched):
//!
//! | request header | effect |
//! |---|---|
//! | `x-delay-ms: N` | wait N ms before answering (read-timeout, least_conn, in-flight tests) |
//! | `x-status: N` | answer with status N |
//! | `x-stream-bytes: N` | answer with N bytes of the [`crate::PatternCheck`] pattern, streamed, with Content-Length |
//! | `x-drip: COUNT:MS` | answer with COUNT small chunks, MS ms apart (chunked) |
//!
//! Request bodies are consumed as a stream: only their length and whether they match the pattern are kept.
//! The server runs on a shared background runtime, so it keeps serving whatever the test's own runtime does,
//! and it stops (listener and every connection) when the [`Origin`] is dropped; [`OriginBuilder::start_at`]
//! brings it back on the same address, and [`Origin::set_status`] makes it fail (or recover) while running.
//!
//! [`OriginBuilder::tls`] makes it an HTTPS origin (for `scheme: "https"` upstreams); [`Origin::sni`] then tells
//! which server names clients asked for.

use crate::pattern::{pattern_stream, PatternCheck};
use bytes::Bytes;
use futures_util::{stream, StreamExt};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

type Body = BoxBody<Bytes, Infallible>;

/// The runtime every origin runs on, independent of the tests' runtimes.
pub(crate) fn background() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("origin")
            .enable_all()
            .build()
            .expect("origin runtime")
    })
}

/// Starts describing an origin named `name` (the value of its `x-origin` header).
pub fn origin(name: &str) -> OriginBuilder {
    OriginBuilder {
        name: name.to_string(),
        body: None,
        delay: None,
        status: 200,
        headers: Vec::new(),
        keep_alive: true,
        idle_close: None,
        tls: None,
    }
}

pub struct OriginBuilder {
    name: String,
    body: Option<Bytes>,
    delay: Option<Duration>,
    status: u16,
    headers: Vec<(String, String)>,
    keep_alive: bool,
    idle_close: Option<Duration>,
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl OriginBuilder {
    /// Serve HTTPS with this certificate instead of plain HTTP.
    pub fn tls(mut self, id: &crate::tls::Issued) -> Self {
        self.tls = Some(crate::tls::server_config(id, None));
        self
    }
    /// Serve HTTPS with this certificate and require a client certificate issued by `client_ca`.
    pub fn mtls(mut self, id: &crate::tls::Issued, client_ca: &crate::tls::TestCa) -> Self {
        self.tls = Some(crate::tls::server_config(id, Some(client_ca)));
        self
    }
    /// Answer every request with this fixed body instead of the JSON echo.
    pub fn body(mut self, body: &str) -> Self {
        self.body = Some(Bytes::copy_from_slice(body.as_bytes()));
        self
    }
    /// Wait this long before answering every request (a slow node).
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = Some(d);
        self
    }
    /// Answer with this status by default.
    pub fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }
    /// Add this header to every response.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Close every connection after one response (`Connection: close`).
    pub fn no_keepalive(mut self) -> Self {
        self.keep_alive = false;
        self
    }
    /// Close a kept-alive connection when no new request starts within `d` (a server idle timeout shorter
    /// than the gateway's pool idle timeout).
    pub fn idle_close(mut self, d: Duration) -> Self {
        self.idle_close = Some(d);
        self
    }

    /// Binds `127.0.0.1:0` and starts serving.
    pub fn start(self) -> Origin {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind origin");
        self.serve(listener)
    }

    /// Binds `addr` (a stopped origin's, to bring a node back) and starts serving. Retries the bind for a
    /// few seconds: the stopped origin's listener closes on its background runtime, not instantly.
    pub fn start_at(self, addr: SocketAddr) -> Origin {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match std::net::TcpListener::bind(addr) {
                Ok(l) => return self.serve(l),
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("rebind origin on {addr}: {e}"),
            }
        }
    }

    fn serve(self, listener: std::net::TcpListener) -> Origin {
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("origin addr");
        let state = Arc::new(State {
            name: self.name.clone(),
            body: self.body,
            delay: self.delay,
            status: AtomicU16::new(self.status),
            headers: self.headers,
            records: Mutex::new(Vec::new()),
            connections: AtomicUsize::new(0),
            arrivals: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            snis: Mutex::new(Vec::new()),
        });
        let st = state.clone();
        let (keep_alive, idle_close, tls) = (self.keep_alive, self.idle_close, self.tls);
        let task = background().spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            let mut conns = tokio::task::JoinSet::new();
            let next_conn = AtomicU64::new(0);
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                st.connections.fetch_add(1, Ordering::SeqCst);
                let conn = next_conn.fetch_add(1, Ordering::SeqCst);
                let st = st.clone();
                let tls = tls.clone();
                let st2 = st.clone();
                conns.spawn(async move {
                    let svc = service_fn(move |req| handle(st.clone(), conn, req));
                    let mut http = hyper::server::conn::http1::Builder::new();
                    // Far above the gateway's own limits, so a limit test hears the gateway's answer.
                    http.keep_alive(keep_alive).max_headers(1000);
                    if let Some(d) = idle_close {
                        http.timer(hyper_util::rt::TokioTimer::new())
                            .header_read_timeout(d);
                    }
                    match tls {
                        None => {
                            let _ = http.serve_connection(TokioIo::new(tcp), svc).await;
                        }
                        Some(cfg) => {
                            let Ok(stream) = tokio_rustls::TlsAcceptor::from(cfg).accept(tcp).await
                            else {
                                return;
                            };
                            let sni = stream.get_ref().1.server_name().map(str::to_string);
                            st2.snis.lock().unwrap().push(sni);
                            let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                        }
                    }
                });
                while conns.try_join_next().is_some() {}
            }
        });
        Origin {
            name: self.name,
            addr,
            state,
            task,
        }
    }
}

struct State {
    name: String,
    body: Option<Bytes>,
    delay: Option<Duration>,
    status: AtomicU16,
    headers: Vec<(String, String)>,
    records: Mutex<Vec<Record>>,
    connections: AtomicUsize,
    arrivals: AtomicUsize,
    active: AtomicUsize,
    snis: Mutex<Vec<Option<String>>>,
}

/// One request as the origin received it.
#[derive(Debug, Clone)]
pub struct Record {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body_len: u64,
    /// The body matched the test pattern (trivially true for an empty body).
    pub body_intact: bool,
    /// The body ended as framed; false when the sender broke off mid-body (a connection reset, bad framing).
    pub body_complete: bool,
    /// Which accepted TCP connection (0, 1, ...) carried it.
    pub conn: u64,
}

impl Record {
    /// The first value of header `name`, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// Every value of header `name`.
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect()
    }
}

/// A running origin; stops when dropped.
pub struct Origin {
    name: String,
    addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Origin {
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// `"127.0.0.1:PORT"`, the key of an upstream `nodes` map.
    pub fn node(&self) -> String {
        self.addr.to_string()
    }
    /// Requests received so far whose body has been read, in arrival order.
    pub fn requests(&self) -> Vec<Record> {
        self.state.records.lock().unwrap().clone()
    }
    /// Number of requests whose body has been read.
    pub fn request_count(&self) -> usize {
        self.state.records.lock().unwrap().len()
    }
    /// The most recent request.
    pub fn last(&self) -> Option<Record> {
        self.state.records.lock().unwrap().last().cloned()
    }
    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }
    /// The SNI of each completed TLS handshake, in order (`None`: the client sent none).
    pub fn sni(&self) -> Vec<Option<String>> {
        self.state.snis.lock().unwrap().clone()
    }
    /// Requests that have started to arrive (headers read), including ones still being handled.
    pub fn arrivals(&self) -> usize {
        self.state.arrivals.load(Ordering::SeqCst)
    }
    /// From now on answer with `status` by default (a node that starts failing, or recovers).
    pub fn set_status(&self, status: u16) {
        self.state.status.store(status, Ordering::SeqCst);
    }
    /// Requests being handled right now.
    pub fn active(&self) -> usize {
        self.state.active.load(Ordering::SeqCst)
    }
    /// Waits until at least `n` requests have arrived; panics after `timeout`.
    pub async fn wait_for_arrivals(&self, n: usize, timeout: Duration) {
        let start = Instant::now();
        while self.arrivals() < n {
            assert!(
                start.elapsed() < timeout,
                "origin {}: {} request(s) arrived, waited {timeout:?} for {n}",
                self.name,
                self.arrivals()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every connection task.
        self.task.abort();
    }
}

struct ActiveGuard(Arc<State>);
impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

fn header_num(h: &HeaderMap, name: &str) -> Option<u64> {
    h.get(name)?.to_str().ok()?.trim().parse().ok()
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|e| match e {}).boxed()
}

async fn handle(
    st: Arc<State>,
    conn: u64,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    st.arrivals.fetch_add(1, Ordering::SeqCst);
    st.active.fetch_add(1, Ordering::SeqCst);
    let _active = ActiveGuard(st.clone());

    let (parts, mut body) = req.into_parts();
    let mut check = PatternCheck::new();
    let mut body_complete = true;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Some(d) = f.data_ref() {
                    check.update(d);
                }
            }
            Err(_) => {
                body_complete = false;
                break;
            }
        }
    }
    let rec = Record {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: parts.headers.clone(),
        body_len: check.len,
        body_intact: check.intact(),
        body_complete,
        conn,
    };
    st.records.lock().unwrap().push(rec.clone());

    let h = &parts.headers;
    let delay = header_num(h, "x-delay-ms")
        .map(Duration::from_millis)
        .or(st.delay);
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let status = header_num(h, "x-status").map_or(st.status.load(Ordering::SeqCst), |s| s as u16);

    let mut resp = Response::builder()
        .status(status)
        .header("x-origin", st.name.as_str());
    for (k, v) in &st.headers {
        resp = resp.header(k.as_str(), v.as_str());
    }

    let resp = if let Some(n) = header_num(h, "x-stream-bytes") {
        let s = pattern_stream::<Infallible>(n).map(|c| c.map(Frame::data));
        resp.header("content-length", n)
            .body(BodyExt::boxed(StreamBody::new(s)))
    } else if let Some(spec) = h.get("x-drip").and_then(|v| v.to_str().ok()) {
        let (count, ms) = spec.split_once(':').unwrap_or((spec, "100"));
        let count: u64 = count.parse().unwrap_or(1);
        let every = Duration::from_millis(ms.parse().unwrap_or(100));
        let s = stream::unfold(0u64, move |i| async move {
            if i >= count {
                return None;
            }
            if i > 0 {
                tokio::time::sleep(every).await;
            }
            let chunk = Bytes::from(format!("chunk-{i}\n"));
            Some((Ok::<_, Infallible>(Frame::data(chunk)), i + 1))
        });
        resp.body(BodyExt::boxed(StreamBody::new(s)))
    } else if let Some(b) = &st.body {
        resp.body(full(b.clone()))
    } else {
        let mut headers = serde_json::Map::new();
        for name in h.keys() {
            let vals: Vec<&str> = h
                .get_all(name)
                .iter()
                .map(|v: &HeaderValue| v.to_str().unwrap_or("<non-utf8>"))
                .collect();
            headers.insert(name.to_string(), vals.join(", ").into());
        }
        let echo = serde_json::json!({
            "origin": st.name,
            "method": rec.method,
            "path": rec.path,
            "query": rec.query,
            "headers": headers,
            "body_len": rec.body_len,
            "body_intact": rec.body_intact,
            "conn": conn,
        });
        resp.header("content-type", "application/json")
            .body(full(echo.to_string()))
    };
    Ok(resp.unwrap_or_else(|e| {
        let mut r = Response::new(full(format!("origin: bad response: {e}")));
        *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        r
    }))
}
