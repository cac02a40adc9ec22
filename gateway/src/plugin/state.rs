//! What the gateway hands a phase call and gets back: the request state plugins read and change, and
//! the decision.
use super::services::{FillLock, ResponseCache};
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, Version};
use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// A request-lifecycle phase (mirrors the WIT `phase` enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// Rewrite path, query, headers.
    Rewrite,
    /// Authenticate, authorize, limit; may short-circuit.
    Access,
    /// Response status and headers.
    HeaderFilter,
    /// Response body chunks.
    BodyFilter,
    /// After the response; read-only.
    Log,
}

impl Phase {
    /// All phases in request order.
    pub const ALL: [Phase; 5] = [
        Phase::Rewrite,
        Phase::Access,
        Phase::HeaderFilter,
        Phase::BodyFilter,
        Phase::Log,
    ];

    /// The WIT name (`header-filter`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Rewrite => "rewrite",
            Phase::Access => "access",
            Phase::HeaderFilter => "header-filter",
            Phase::BodyFilter => "body-filter",
            Phase::Log => "log",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// Request fields (path, query, headers, consumer) are writable.
    pub fn request_writable(self) -> bool {
        matches!(self, Phase::Rewrite | Phase::Access)
    }

    /// The response exists (status and headers readable).
    pub fn response_visible(self) -> bool {
        !matches!(self, Phase::Rewrite | Phase::Access)
    }

    /// `respond` is allowed.
    pub fn may_respond(self) -> bool {
        matches!(self, Phase::Rewrite | Phase::Access | Phase::HeaderFilter)
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The response as the response phases see it.
#[derive(Debug, Clone)]
pub struct ResponseState {
    /// Status (writable in `header-filter`).
    pub status: StatusCode,
    /// Headers (writable in `header-filter`).
    pub headers: HeaderMap,
    /// The current body chunk in `body-filter` (writable there).
    pub body_chunk: Option<Bytes>,
    /// Whether `body_chunk` is the last.
    pub end_of_stream: bool,
}

impl ResponseState {
    /// A response with this status and headers, no chunk.
    pub fn new(status: StatusCode, headers: HeaderMap) -> Self {
        Self {
            status,
            headers,
            body_chunk: None,
            end_of_stream: false,
        }
    }
}

/// One request's state as plugins see it. The gateway builds it once per request, passes it to every phase
/// call of every plugin, and applies the changes (path, query, headers, consumer, response) it finds after.
#[derive(Debug, Clone)]
pub struct RequestState {
    /// Method.
    pub method: Method,
    /// Path without the query.
    pub path: String,
    /// Raw query string without `?`.
    pub query: Option<String>,
    /// Request headers.
    pub headers: HeaderMap,
    /// The client's HTTP version (for `server_protocol`).
    pub version: Version,
    /// The host the client asked for, without port (for `host`).
    pub host: Option<String>,
    /// Client address.
    pub client_addr: SocketAddr,
    /// The listener's address (for `server_addr`/`server_port`).
    pub local_addr: SocketAddr,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The matched route's id.
    pub route_id: String,
    /// The authenticated consumer's username.
    pub consumer: Option<String>,
    /// Per-request context shared between phases and plugins.
    pub ctx: HashMap<String, String>,
    /// The response, once the upstream (or a plugin) produced one; `None` in `rewrite`/`access`.
    pub response: Option<ResponseState>,
    /// Time the gateway waits after the current phase (`request.delay`), then resets to zero.
    pub delay: Duration,
    /// Response-cache fill locks this request holds (`cache.lookup` missed), by namespaced key. Released
    /// when the state is dropped, unless `cache_store` took one over.
    pub fill_locks: Vec<(String, Arc<FillLock>)>,
    /// A `cache.store-response` request: the gateway tees the response body into the cache.
    pub cache_store: Option<PendingStore>,
    /// The finished exchange's figures, set before the `log` phase (`response.completed`).
    pub completion: Option<Completion>,
}

/// What the gateway measured once the exchange was over (the WIT `response.completion`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// When the request head arrived, milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
    /// From the request head to the end of the response body.
    pub latency: Duration,
    /// Until the upstream's response head arrived.
    pub upstream_latency: Option<Duration>,
    /// The node the request went to last.
    pub upstream: Option<SocketAddr>,
    /// Declared request body length.
    pub request_body_bytes: u64,
    /// Response body bytes sent.
    pub response_body_bytes: u64,
    /// Whether the whole body reached the client.
    pub complete: bool,
    /// The route's service.
    pub service_id: Option<String>,
}

/// The longest total delay one request may ask for.
pub const MAX_DELAY: Duration = Duration::from_secs(60);

/// A response to store in the cache once its body has streamed to the client.
#[derive(Clone)]
pub struct PendingStore {
    /// Where to store it.
    pub cache: Arc<dyn ResponseCache>,
    /// Namespaced key.
    pub key: String,
    /// Lifetime.
    pub ttl: Duration,
    /// Status as it was when the plugin asked.
    pub status: u16,
    /// Headers as they were when the plugin asked.
    pub headers: Vec<(String, String)>,
    /// The fill lock to hold until the entry is stored (waiters then hit).
    pub lock: Option<Arc<FillLock>>,
}

impl fmt::Debug for PendingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingStore")
            .field("key", &self.key)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Default for RequestState {
    fn default() -> Self {
        Self {
            method: Method::GET,
            path: "/".to_string(),
            query: None,
            headers: HeaderMap::new(),
            version: Version::HTTP_11,
            host: None,
            client_addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            local_addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            scheme: "http",
            route_id: String::new(),
            consumer: None,
            ctx: HashMap::new(),
            response: None,
            delay: Duration::ZERO,
            fill_locks: Vec::new(),
            cache_store: None,
            completion: None,
        }
    }
}

/// A response produced by a plugin.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginResponse {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

/// What the gateway does after a phase call.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Go on.
    Continue,
    /// Answer with this response: from `rewrite`/`access` the upstream is skipped (response phases and `log`
    /// still run); from `header-filter` it replaces the upstream's response.
    Respond(PluginResponse),
}
