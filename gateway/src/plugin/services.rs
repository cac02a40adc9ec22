//! What the host imports need from the gateway: counters, kv, response cache, consumers, outbound HTTP, a
//! metrics sink and the stores shared between nodes ([`super::shared_store`]), each behind a trait, with
//! working implementations ([`HostServices::local`]) used by tests and the gateway alike.
//!
//! Keys reaching these traits are already namespaced per plugin (`<plugin>\u{0}<key>`), so plugins cannot
//! read each other's entries.
use super::bounded_map::{BoundedTtlMap, Eviction};
use super::io_runtime::{IoError, IoRuntime};
pub use super::response_cache::{CacheLookup, CachedResponse, FillLock, LocalCache, ResponseCache};
use super::shared_store::{RedisShared, SharedStores};
use bytes::Bytes;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

/// Failure of a shared store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Backend unreachable.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Key or value over the store's limit.
    #[error("key or value too large")]
    TooLarge,
}

/// A counter's value after an increment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowCount {
    /// Value after the increment.
    pub count: u64,
    /// Time until the window resets.
    pub reset_after: Duration,
}

/// Shared counters with fixed windows.
pub trait Counters: Send + Sync {
    /// Atomically adds `delta` to `key` in a window of `window`.
    fn incr(&self, key: &str, delta: u64, window: Duration) -> Result<WindowCount, StoreError>;
    /// Atomically adds `delta` to the windowless gauge `key`; returns the value after. Zero removes it.
    fn add(&self, key: &str, delta: i64) -> Result<i64, StoreError>;
}

/// Shared bounded key/value store with TTL.
pub trait KvStore: Send + Sync {
    /// Reads a live value.
    fn get(&self, key: &str) -> Option<Vec<u8>>;
    /// Stores a value; `ttl` `None` keeps it until evicted.
    fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), StoreError>;
    /// Deletes; true if present.
    fn delete(&self, key: &str) -> bool;
    /// Sets `key` to `new` if it currently holds `expected` (`None`: absent or expired), atomically.
    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError>;
}

/// A consumer as auth plugins see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// Username.
    pub username: String,
    /// The consumer's config for the asking plugin (JSON as stored).
    pub plugin_config: String,
    /// Labels.
    pub labels: Vec<(String, String)>,
}

/// Consumer lookup by plugin credential.
pub trait ConsumerStore: Send + Sync {
    /// The consumer whose `plugin` config carries `credential`.
    fn lookup(&self, plugin: &str, credential: &str) -> Option<ConsumerRecord>;
}

/// A request to a named upstream.
#[derive(Debug, Clone)]
pub struct OutboundRequest {
    /// Method.
    pub method: http::Method,
    /// Path and query.
    pub path_with_query: String,
    /// Headers.
    pub headers: http::HeaderMap,
    /// Body.
    pub body: Bytes,
}

/// An upstream's answer.
#[derive(Debug, Clone)]
pub struct OutboundResponse {
    /// Status.
    pub status: u16,
    /// Headers.
    pub headers: http::HeaderMap,
    /// Body (bounded by the implementation).
    pub body: Bytes,
}

/// Why an outbound call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    /// No such upstream.
    #[error("unknown upstream {0:?}")]
    UnknownUpstream(String),
    /// Bad request.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// Connect failed.
    #[error("connect failed: {0}")]
    ConnectFailed(String),
    /// Timed out.
    #[error("timed out")]
    Timeout,
    /// Bad answer.
    #[error("bad response: {0}")]
    BadResponse(String),
}

/// Outbound HTTP to named upstreams. **Blocking** from the caller's view: the host calls it from inside a
/// synchronous guest call, wrapped in `tokio::task::block_in_place` when on a multi-threaded runtime worker,
/// so the worker's other tasks move to another thread meanwhile. Implementations must honour `timeout`
/// (the rest of the phase deadline, or the plugin's own lower timeout).
pub trait OutboundHttp: Send + Sync {
    /// Performs the call.
    fn call(
        &self,
        upstream: &str,
        request: OutboundRequest,
        timeout: Duration,
    ) -> Result<OutboundResponse, OutboundError>;
}

/// Receives plugin metrics (exported later by the metrics endpoint with a `plugin` label).
pub trait MetricsSink: Send + Sync {
    /// Adds to a counter.
    fn counter(&self, plugin: &str, name: &str, labels: &[(String, String)], delta: u64);
    /// Records a histogram observation.
    fn histogram(&self, plugin: &str, name: &str, labels: &[(String, String)], value: f64);
}

/// Everything the host imports use; shared by all plugins of an engine.
#[derive(Clone)]
pub struct HostServices {
    /// Counters.
    pub counters: Arc<dyn Counters>,
    /// Stores shared between gateway nodes, named by the plugin's config (Redis).
    pub shared: Arc<dyn SharedStores>,
    /// Key/value store.
    pub kv: Arc<dyn KvStore>,
    /// Response cache.
    pub cache: Arc<dyn ResponseCache>,
    /// Consumers.
    pub consumers: Arc<dyn ConsumerStore>,
    /// Outbound HTTP.
    pub outbound: Arc<dyn OutboundHttp>,
    /// Metrics sink.
    pub metrics: Arc<dyn MetricsSink>,
    /// Log sinks (batched delivery for logger plugins).
    pub log_sinks: Arc<crate::log_sink::LogSinks>,
}

impl HostServices {
    /// In-process implementations: local counters, a 64 MiB kv, a 256 MiB cache, an empty consumer table,
    /// no outbound upstreams, in-memory metrics; shared stores on whatever Redis a plugin's config names;
    /// log sinks without a log directory (file destinations refused).
    pub fn local() -> Self {
        Self {
            counters: Arc::new(LocalCounters::default()),
            shared: Arc::new(RedisShared::default()),
            kv: Arc::new(LocalKv::new(64 << 20, 1 << 20)),
            cache: Arc::new(LocalCache::new(256 << 20, 16 << 20)),
            consumers: Arc::new(MemoryConsumers::default()),
            outbound: Arc::new(HyperOutbound::new(HashMap::new())),
            metrics: Arc::new(MemoryMetrics::default()),
            log_sinks: Arc::new(crate::log_sink::LogSinks::new(None)),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// In-process implementations.

/// Fixed-window counters in a mutex-protected map; windows that ended are swept when the map doubles.
#[derive(Default)]
pub struct LocalCounters {
    inner: Mutex<CountersInner>,
    gauges: Mutex<HashMap<String, i64>>,
}

#[derive(Default)]
struct CountersInner {
    map: HashMap<String, (u64, Instant, Duration)>,
    sweep_at: usize,
}

impl Counters for LocalCounters {
    fn incr(&self, key: &str, delta: u64, window: Duration) -> Result<WindowCount, StoreError> {
        let now = Instant::now();
        let window = window.max(Duration::from_millis(1));
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.map.len() >= inner.sweep_at.max(1024) {
            inner.map.retain(|_, (_, start, w)| now < *start + *w);
            inner.sweep_at = inner.map.len() * 2;
        }
        let entry = inner.map.entry(key.to_string()).or_insert((0, now, window));
        if now >= entry.1 + entry.2 {
            *entry = (0, now, window);
        }
        entry.0 = entry.0.saturating_add(delta);
        Ok(WindowCount {
            count: entry.0,
            reset_after: (entry.1 + entry.2).saturating_duration_since(now),
        })
    }

    fn add(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        let mut gauges = self.gauges.lock().unwrap_or_else(|p| p.into_inner());
        let value = gauges.get(key).copied().unwrap_or(0).saturating_add(delta);
        if value == 0 {
            gauges.remove(key);
        } else {
            gauges.insert(key.to_string(), value);
        }
        Ok(value)
    }
}

/// In-process kv: bounded by total bytes, evicting oldest-written entries first.
pub struct LocalKv {
    map: Mutex<BoundedTtlMap<Vec<u8>>>,
}

impl LocalKv {
    /// At most `max_bytes` in all and `max_entry` per entry (key + value).
    pub fn new(max_bytes: usize, max_entry: usize) -> Self {
        Self {
            map: Mutex::new(BoundedTtlMap::new(
                max_bytes,
                max_entry,
                Eviction::OldestWritten,
            )),
        }
    }
}

impl KvStore for LocalKv {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).get(key)
    }
    fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), StoreError> {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).insert(
            key,
            value.to_vec(),
            value.len(),
            ttl,
        )
    }
    fn delete(&self, key: &str) -> bool {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key)
    }
    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(key).as_deref() != expected {
            return Ok(false);
        }
        map.insert(key, new.to_vec(), new.len(), ttl)?;
        Ok(true)
    }
}

/// Consumers in memory, indexed by (plugin, credential).
#[derive(Default)]
pub struct MemoryConsumers {
    map: RwLock<HashMap<(String, String), ConsumerRecord>>,
}

impl MemoryConsumers {
    /// Adds or replaces a consumer's credential for a plugin.
    pub fn insert(&self, plugin: &str, credential: &str, consumer: ConsumerRecord) {
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert((plugin.to_string(), credential.to_string()), consumer);
    }
}

impl ConsumerStore for MemoryConsumers {
    fn lookup(&self, plugin: &str, credential: &str) -> Option<ConsumerRecord> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(plugin.to_string(), credential.to_string()))
            .cloned()
    }
}

/// Counters and histograms in memory, keyed `plugin/name{labels}`.
#[derive(Default)]
pub struct MemoryMetrics {
    counters: Mutex<HashMap<String, u64>>,
    histograms: Mutex<HashMap<String, Vec<f64>>>,
}

impl MemoryMetrics {
    fn key(plugin: &str, name: &str, labels: &[(String, String)]) -> String {
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{plugin}/{name}{{{}}}", labels.join(","))
    }
    /// A counter's value.
    pub fn counter_value(&self, plugin: &str, name: &str, labels: &[(String, String)]) -> u64 {
        let key = Self::key(plugin, name, labels);
        self.counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .copied()
            .unwrap_or(0)
    }
}

impl MetricsSink for MemoryMetrics {
    fn counter(&self, plugin: &str, name: &str, labels: &[(String, String)], delta: u64) {
        let key = Self::key(plugin, name, labels);
        *self
            .counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_default() += delta;
    }
    fn histogram(&self, plugin: &str, name: &str, labels: &[(String, String)], value: f64) {
        let key = Self::key(plugin, name, labels);
        let mut h = self.histograms.lock().unwrap_or_else(|p| p.into_inner());
        let v = h.entry(key).or_default();
        if v.len() < 10_000 {
            v.push(value);
        }
    }
}

/// HTTP/1.1 client to named upstreams (`name -> address`), running on its own small tokio runtime
/// ([`IoRuntime`]) so that the blocking [`OutboundHttp::call`] works from any thread. Bodies over 1 MiB are
/// refused.
pub struct HyperOutbound {
    upstreams: RwLock<HashMap<String, SocketAddr>>,
    io: IoRuntime,
    client: OnceLock<
        hyper_util::client::legacy::Client<
            hyper_util::client::legacy::connect::HttpConnector,
            http_body_util::Full<Bytes>,
        >,
    >,
}

const OUTBOUND_BODY_LIMIT: usize = 1 << 20;

impl HyperOutbound {
    /// A client for these upstreams.
    pub fn new(upstreams: HashMap<String, SocketAddr>) -> Self {
        Self {
            upstreams: RwLock::new(upstreams),
            io: IoRuntime::new("plugin-outbound"),
            client: OnceLock::new(),
        }
    }

    /// Adds or replaces an upstream.
    pub fn set_upstream(&self, name: &str, addr: SocketAddr) {
        self.upstreams
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), addr);
    }
}

impl OutboundHttp for HyperOutbound {
    fn call(
        &self,
        upstream: &str,
        request: OutboundRequest,
        timeout: Duration,
    ) -> Result<OutboundResponse, OutboundError> {
        use http_body_util::BodyExt;
        let addr = self
            .upstreams
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(upstream)
            .copied()
            .ok_or_else(|| OutboundError::UnknownUpstream(upstream.to_string()))?;
        let uri: http::Uri = format!("http://{addr}{}", request.path_with_query)
            .parse()
            .map_err(|e| OutboundError::InvalidRequest(format!("path: {e}")))?;
        let mut req = http::Request::new(http_body_util::Full::new(request.body));
        *req.method_mut() = request.method;
        *req.uri_mut() = uri;
        *req.headers_mut() = request.headers;
        let client = self
            .client
            .get_or_init(|| {
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http()
            })
            .clone();
        let call = async move {
            let resp = client
                .request(req)
                .await
                .map_err(|e| OutboundError::ConnectFailed(e.to_string()))?;
            let (parts, body) = resp.into_parts();
            let body = http_body_util::Limited::new(body, OUTBOUND_BODY_LIMIT)
                .collect()
                .await
                .map_err(|e| OutboundError::BadResponse(e.to_string()))?
                .to_bytes();
            Ok(OutboundResponse {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
            })
        };
        match self.io.run(timeout, call) {
            Ok(result) => result,
            Err(IoError::Timeout) => Err(OutboundError::Timeout),
            Err(e @ IoError::NoRuntime(..)) => Err(OutboundError::ConnectFailed(e.to_string())),
        }
    }
}
