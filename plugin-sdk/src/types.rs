//! The SDK's own value types; the same on wasm32 and on the native test host.
use std::fmt;
use std::time::Duration;

/// A request-lifecycle phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Rewrite path, query, headers.
    Rewrite,
    /// Authenticate, authorize, limit.
    Access,
    /// Response status and headers.
    HeaderFilter,
    /// Response body chunks.
    BodyFilter,
    /// After the response; read-only.
    Log,
}

/// A response produced by a plugin (or stored in the cache).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Header fields in order.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with this status, no headers and an empty body.
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
}

/// What the gateway does after a phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Go on.
    Continue,
    /// Answer with this response now (`rewrite`/`access`: the upstream is skipped; `header_filter`: replaces
    /// the upstream's response).
    Respond(Response),
}

impl Decision {
    /// Shorthand for `Respond` with a status and a text body.
    pub fn respond(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Decision::Respond(Response::new(status).body(body))
    }
}

/// HTTP method.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Patch,
    Options,
    Connect,
    Trace,
    Other(String),
}

impl Method {
    /// The method's name as on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Patch => "PATCH",
            Method::Options => "OPTIONS",
            Method::Connect => "CONNECT",
            Method::Trace => "TRACE",
            Method::Other(s) => s,
        }
    }
    /// Parses a method name (case-sensitive, as HTTP is).
    pub fn parse(s: &str) -> Self {
        match s {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "OPTIONS" => Method::Options,
            "CONNECT" => Method::Connect,
            "TRACE" => Method::Trace,
            other => Method::Other(other.to_string()),
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a request/response field could not be changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldError {
    /// Not a valid header name.
    InvalidName,
    /// Value has forbidden bytes (CR, LF, NUL) or the status is outside 100..=999.
    InvalidValue,
    /// Not writable in the current phase.
    NotInThisPhase,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FieldError::InvalidName => "invalid header name",
            FieldError::InvalidValue => "invalid value",
            FieldError::NotInThisPhase => "not writable in this phase",
        })
    }
}
impl std::error::Error for FieldError {}

/// Failure of a shared store (counters, kv, cache).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The backing store could not be reached.
    Unavailable(String),
    /// Key or value too large.
    TooLarge,
    /// Not allowed in the current phase (e.g. [`crate::cache::store_response`] outside `header_filter`).
    NotInThisPhase,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Unavailable(m) => write!(f, "store unavailable: {m}"),
            StoreError::TooLarge => f.write_str("key or value too large"),
            StoreError::NotInThisPhase => f.write_str("not allowed in this phase"),
        }
    }
}
impl std::error::Error for StoreError {}

/// A counter's value after an increment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowCount {
    /// Value after this increment.
    pub count: u64,
    /// Time until the window resets.
    pub reset_after: Duration,
}

/// One Redis server address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RedisNode {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl fmt::Display for RedisNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// A Redis server as a [`Backend`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Redis {
    /// The server.
    pub node: RedisNode,
    /// ACL user (Redis 6+); `None` with a password is the `default` user.
    pub username: Option<String>,
    /// `AUTH` password.
    pub password: Option<String>,
    /// Database number.
    pub database: u32,
    /// The bound of each call, connecting included (whole milliseconds, at most 60 s).
    pub timeout: Duration,
}

/// A Redis Cluster as a [`Backend`]: seed nodes; the host discovers the rest and routes keys to slots.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RedisCluster {
    /// Seed nodes.
    pub nodes: Vec<RedisNode>,
    /// ACL user (Redis 6+).
    pub username: Option<String>,
    /// `AUTH` password.
    pub password: Option<String>,
    /// The bound of each call, connecting included (whole milliseconds, at most 60 s).
    pub timeout: Duration,
}

/// A store several gateway nodes share, named by a plugin's config (see [`crate::shared`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Backend {
    /// One server.
    Redis(Redis),
    /// A cluster.
    RedisCluster(RedisCluster),
}

impl Backend {
    /// The bound of each call.
    pub fn timeout(&self) -> Duration {
        match self {
            Backend::Redis(r) => r.timeout,
            Backend::RedisCluster(c) => c.timeout,
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backend::Redis(r) => write!(f, "redis {} (db {})", r.node, r.database),
            Backend::RedisCluster(c) => {
                f.write_str("redis-cluster ")?;
                for (i, n) in c.nodes.iter().enumerate() {
                    write!(f, "{}{n}", if i == 0 { "" } else { "," })?;
                }
                Ok(())
            }
        }
    }
}

/// A consumer found by [`crate::consumers::lookup`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    /// The consumer's username.
    pub username: String,
    /// The consumer's config for the asking plugin (JSON as stored).
    pub plugin_config: String,
    /// The consumer's labels.
    pub labels: Vec<(String, String)>,
}

/// A request to a named upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRequest {
    /// Method.
    pub method: Method,
    /// Path and query, e.g. `/verify?x=1`.
    pub path_with_query: String,
    /// Header fields.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Optional timeout below the phase deadline.
    pub timeout: Option<Duration>,
}

impl OutboundRequest {
    /// A GET of this path.
    pub fn get(path_with_query: impl Into<String>) -> Self {
        Self {
            method: Method::Get,
            path_with_query: path_with_query.into(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: None,
        }
    }
}

/// Why an outbound call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboundError {
    /// No upstream of that name.
    UnknownUpstream(String),
    /// Bad header or path.
    InvalidRequest(String),
    /// Could not connect.
    ConnectFailed(String),
    /// Timed out (own timeout or the phase deadline).
    Timeout,
    /// Not valid HTTP, or too large.
    BadResponse(String),
}

impl fmt::Display for OutboundError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutboundError::UnknownUpstream(u) => write!(f, "unknown upstream {u:?}"),
            OutboundError::InvalidRequest(m) => write!(f, "invalid request: {m}"),
            OutboundError::ConnectFailed(m) => write!(f, "connect failed: {m}"),
            OutboundError::Timeout => f.write_str("timed out"),
            OutboundError::BadResponse(m) => write!(f, "bad response: {m}"),
        }
    }
}
impl std::error::Error for OutboundError {}

/// Log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[allow(missing_docs)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// What the gateway measured once the exchange was over ([`crate::response::completion`], `log` only):
/// the facts a log entry needs that the request and response fields do not carry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Completion {
    /// When the request head arrived, milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
    /// From the request head to the end of the response body (or to the client going away).
    pub latency: Duration,
    /// Until the upstream's response head arrived, retries included; `None` when no upstream answered.
    pub upstream_latency: Option<Duration>,
    /// The upstream node the request went to last.
    pub upstream_addr: Option<std::net::SocketAddr>,
    /// Request body bytes as declared by `Content-Length`.
    pub request_body_bytes: u64,
    /// Response body bytes sent to the client.
    pub response_body_bytes: u64,
    /// Whether the whole response body reached the client.
    pub complete: bool,
    /// The matched route's service, if it has one.
    pub service_id: Option<String>,
}

/// How the entries of one batch become one HTTP request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConcatMethod {
    /// A JSON array of the entries (each entry must be one JSON value).
    Json,
    /// The entries, each followed by a newline.
    NewLine,
}

/// Where a [`crate::log_sink::Sink`] delivers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Destination {
    /// POST each batch to a URL.
    Http {
        /// `http://` or `https://` URL.
        uri: String,
        /// Sent as `Authorization`.
        auth_header: Option<String>,
        /// Longest one delivery attempt may take.
        timeout: Duration,
        /// How entries are joined.
        concat: ConcatMethod,
    },
    /// Append each entry as a line to this file, relative to the gateway's plugin log directory.
    File(String),
}

/// APISIX's batch-processor settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BatchPolicy {
    /// Most entries per batch (`batch_max_size`), at least 1.
    pub max_size: u32,
    /// A batch that is not full goes out after this long without a new entry (`inactive_timeout`).
    pub inactive_timeout: Duration,
    /// A batch goes out at the latest this long after its oldest entry (`buffer_duration`).
    pub buffer_duration: Duration,
    /// Retries of a failed delivery before the batch is dropped (`max_retry_count`).
    pub max_retry_count: u32,
    /// Wait before the first retry, doubled for each further one (`retry_delay`).
    pub retry_delay: Duration,
}

impl Default for BatchPolicy {
    /// APISIX's defaults: 1000 entries, 5 s inactive, 60 s buffer, no retry, 1 s retry delay.
    fn default() -> Self {
        BatchPolicy {
            max_size: 1000,
            inactive_timeout: Duration::from_secs(5),
            buffer_duration: Duration::from_secs(60),
            max_retry_count: 0,
            retry_delay: Duration::from_secs(1),
        }
    }
}

/// Why a log sink refused something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkError {
    /// The destination, policy or entry is refused; the message says why.
    Invalid(String),
    /// The sink's queue is full: the entry was dropped (and the gateway counted it).
    QueueFull,
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SinkError::Invalid(m) => f.write_str(m),
            SinkError::QueueFull => f.write_str("log sink queue full; entry dropped"),
        }
    }
}
impl std::error::Error for SinkError {}
