//! The store data of every plugin instance and the host side of the world's imports.
//!
//! A phase call moves the gateway's [`RequestState`] into the store (a swap, no copy), runs the guest, and
//! moves it back; imports read and change it under the phase's rules: request writable in
//! `rewrite`/`access`, response status and headers in `header-filter`, the body chunk in `body-filter`,
//! nothing in `log` (`not-in-this-phase` otherwise).
use super::bindings::sluice::plugin::{
    cache, clock, consumers, context, counters, http_outbound, kv, log_sink, logging, metrics,
    random, request, response, shared, types,
};
use super::bindings::HttpMethod;
use super::services::{self, CacheLookup, HostServices};
use super::shared_store::{self, RedisAccess, RedisNode, Secret};
use super::state::{PendingStore, Phase, RequestState, MAX_DELAY};
use crate::request_vars::RequestVars;
use crate::router::VarSource;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use types::FieldError;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime::{ResourceLimiter, StoreLimits};

/// Per-store resource limiter: wasmtime's [`StoreLimits`] plus the memory high-water mark and a flag that
/// says a grow was refused (how a memory fault is told apart from other traps: a Rust guest whose
/// allocation fails aborts with `unreachable`).
pub(crate) struct Limiter {
    inner: StoreLimits,
    pub(crate) peak_memory: usize,
    pub(crate) memory_denied: bool,
}

impl Limiter {
    pub(crate) fn new(inner: StoreLimits) -> Self {
        Self {
            inner,
            peak_memory: 0,
            memory_denied: false,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.inner.memory_growing(current, desired, maximum)?;
        if allowed {
            self.peak_memory = self.peak_memory.max(desired);
        } else {
            self.memory_denied = true;
        }
        Ok(allowed)
    }
    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.inner.table_growing(current, desired, maximum)?;
        if !allowed {
            self.memory_denied = true;
        }
        Ok(allowed)
    }
    fn instances(&self) -> usize {
        self.inner.instances()
    }
    fn tables(&self) -> usize {
        self.inner.tables()
    }
    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

/// The `T` of `Store<T>` for plugin instances.
pub(crate) struct StoreData {
    pub(crate) plugin: Arc<str>,
    pub(crate) services: Arc<HostServices>,
    pub(crate) limiter: Limiter,
    /// The phase running, `None` during `info`/`validate`/`configure`/`release`.
    pub(crate) phase: Option<Phase>,
    /// The request, moved in for the duration of a phase call.
    pub(crate) req: RequestState,
    /// When the current call must be over (bounds outbound HTTP calls, which epochs cannot interrupt).
    pub(crate) deadline_at: Instant,
    pub(crate) monotonic_base: Instant,
    /// Resources the guest holds (its `log-sink.sink` handles).
    pub(crate) table: ResourceTable,
}

impl StoreData {
    pub(crate) fn new(plugin: Arc<str>, services: Arc<HostServices>, limits: StoreLimits) -> Self {
        Self {
            plugin,
            services,
            limiter: Limiter::new(limits),
            phase: None,
            req: RequestState::default(),
            deadline_at: Instant::now(),
            monotonic_base: Instant::now(),
            table: ResourceTable::new(),
        }
    }

    fn request_writable(&self) -> Result<(), FieldError> {
        match self.phase {
            Some(p) if p.request_writable() => Ok(()),
            _ => Err(FieldError::NotInThisPhase),
        }
    }

    fn response_visible(&self) -> Option<&super::state::ResponseState> {
        match self.phase {
            Some(p) if p.response_visible() => self.req.response.as_ref(),
            _ => None,
        }
    }

    fn response_writable(
        &mut self,
        phase: Phase,
    ) -> Result<&mut super::state::ResponseState, FieldError> {
        if self.phase != Some(phase) {
            return Err(FieldError::NotInThisPhase);
        }
        self.req.response.as_mut().ok_or(FieldError::NotInThisPhase)
    }

    fn key(&self, key: &str) -> String {
        let mut k = String::with_capacity(self.plugin.len() + 1 + key.len());
        k.push_str(&self.plugin);
        k.push('\u{0}');
        k.push_str(key);
        k
    }

    /// Keys in stores other programs can read (Redis): printable, and free of `{}`, which Redis Cluster
    /// would read as a hash tag.
    fn shared_key(&self, key: &str) -> String {
        format!("sluice/{}/{key}", self.plugin)
    }

    /// Runs a host operation that waits on the plugin's behalf (a coalesced cache fill, a shared store):
    /// off the async worker, and not charged to the phase deadline (the epoch callback in `registry` reads
    /// `deadline_at`).
    fn wait_for<R>(&mut self, f: impl FnOnce() -> R) -> R {
        let started = Instant::now();
        let result = run_blocking(f);
        self.deadline_at += started.elapsed();
        result
    }
}

// ---- helpers shared by request and response header access ----

fn header_first(map: &HeaderMap, name: &str) -> Option<String> {
    map.get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

fn header_all(map: &HeaderMap, name: &str) -> Vec<String> {
    map.get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect()
}

fn header_list(map: &HeaderMap) -> Vec<types::HeaderField> {
    map.iter()
        .map(|(n, v)| types::HeaderField {
            name: n.as_str().to_string(),
            value: String::from_utf8_lossy(v.as_bytes()).into_owned(),
        })
        .collect()
}

pub(crate) fn parse_header(
    name: &str,
    value: &str,
) -> Result<(HeaderName, HeaderValue), FieldError> {
    let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| FieldError::InvalidName)?;
    let value = HeaderValue::from_str(value).map_err(|_| FieldError::InvalidValue)?;
    Ok((name, value))
}

fn header_set(
    map: &mut HeaderMap,
    name: &str,
    value: &str,
    append: bool,
) -> Result<(), FieldError> {
    let (name, value) = parse_header(name, value)?;
    if append {
        map.append(name, value);
    } else {
        map.insert(name, value);
    }
    Ok(())
}

fn header_remove(map: &mut HeaderMap, name: &str) -> Result<bool, FieldError> {
    let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| FieldError::InvalidName)?;
    Ok(map.remove(name).is_some())
}

pub(crate) fn method_to_wit(m: &http::Method) -> HttpMethod {
    match *m {
        http::Method::GET => HttpMethod::Get,
        http::Method::HEAD => HttpMethod::Head,
        http::Method::POST => HttpMethod::Post,
        http::Method::PUT => HttpMethod::Put,
        http::Method::DELETE => HttpMethod::Delete,
        http::Method::PATCH => HttpMethod::Patch,
        http::Method::OPTIONS => HttpMethod::Options,
        http::Method::CONNECT => HttpMethod::Connect,
        http::Method::TRACE => HttpMethod::Trace,
        ref other => HttpMethod::Other(other.as_str().to_string()),
    }
}

fn method_from_wit(m: HttpMethod) -> Result<http::Method, String> {
    Ok(match m {
        HttpMethod::Get => http::Method::GET,
        HttpMethod::Head => http::Method::HEAD,
        HttpMethod::Post => http::Method::POST,
        HttpMethod::Put => http::Method::PUT,
        HttpMethod::Delete => http::Method::DELETE,
        HttpMethod::Patch => http::Method::PATCH,
        HttpMethod::Options => http::Method::OPTIONS,
        HttpMethod::Connect => http::Method::CONNECT,
        HttpMethod::Trace => http::Method::TRACE,
        HttpMethod::Other(s) => {
            http::Method::from_bytes(s.as_bytes()).map_err(|_| format!("invalid method {s:?}"))?
        }
    })
}

/// Longest a `cache.lookup` waits for another request's fill (nginx's `proxy_cache_lock_timeout` is 5 s).
const MAX_LOCK_WAIT: Duration = Duration::from_secs(10);

fn millis(d: u64) -> Duration {
    Duration::from_millis(d)
}

/// `request.var`: the plugin-only names first, then the request variables the router uses too.
fn state_var(req: &RequestState, phase: Option<Phase>, name: &str) -> Option<String> {
    match name {
        "route_id" => return Some(req.route_id.clone()),
        "consumer_name" => return req.consumer.clone(),
        _ => {}
    }
    let response = match phase {
        Some(p) if p.response_visible() => req.response.as_ref(),
        _ => None,
    };
    if name == "status" {
        return response.map(|r| r.status.as_u16().to_string());
    }
    if let Some(h) = name
        .strip_prefix("sent_http_")
        .or_else(|| name.strip_prefix("upstream_http_"))
    {
        return header_first(&response?.headers, &h.replace('_', "-"));
    }
    RequestVars {
        method: &req.method,
        path: &req.path,
        query: req.query.as_deref(),
        headers: &req.headers,
        version: req.version,
        client: req.client_addr,
        local: req.local_addr,
        host: req.host.as_deref(),
        scheme: req.scheme,
    }
    .var(name)
    .map(std::borrow::Cow::into_owned)
}

fn socket_address(addr: std::net::SocketAddr) -> types::SocketAddress {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            types::IpAddress::V4((a, b, c, d))
        }
        std::net::IpAddr::V6(v6) => {
            let [a, b, c, d, e, f, g, h] = v6.segments();
            types::IpAddress::V6((a, b, c, d, e, f, g, h))
        }
    };
    types::SocketAddress {
        ip,
        port: addr.port(),
    }
}

fn sink_spec(d: log_sink::Destination) -> crate::log_sink::DestinationSpec {
    use crate::log_sink::{Concat, DestinationSpec};
    match d {
        log_sink::Destination::Http(h) => DestinationSpec::Http {
            uri: h.uri,
            auth_header: h.auth_header,
            timeout: millis(u64::from(h.timeout_ms)),
            concat: match h.concat {
                log_sink::ConcatMethod::Json => Concat::JsonArray,
                log_sink::ConcatMethod::NewLine => Concat::NewLine,
            },
        },
        log_sink::Destination::File(path) => DestinationSpec::File(path),
    }
}

fn sink_policy(p: log_sink::BatchPolicy) -> crate::log_sink::Policy {
    crate::log_sink::Policy {
        max_size: p.max_size,
        inactive_timeout: millis(u64::from(p.inactive_timeout_ms)),
        buffer_duration: millis(u64::from(p.buffer_duration_ms)),
        max_retry_count: p.max_retry_count,
        retry_delay: millis(u64::from(p.retry_delay_ms)),
    }
}

fn sink_error(e: crate::log_sink::SinkError) -> log_sink::SinkError {
    match e {
        crate::log_sink::SinkError::Invalid(m) => log_sink::SinkError::Invalid(m),
        crate::log_sink::SinkError::QueueFull => log_sink::SinkError::QueueFull,
    }
}

fn response_to_wit(c: services::CachedResponse) -> types::Response {
    types::Response {
        status: c.status,
        headers: c
            .headers
            .into_iter()
            .map(|(name, value)| types::HeaderField { name, value })
            .collect(),
        body: c.body.to_vec(),
    }
}

fn header_pairs(map: &HeaderMap) -> Vec<(String, String)> {
    map.iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

fn store_error(e: services::StoreError) -> types::StoreError {
    match e {
        services::StoreError::Unavailable(m) => types::StoreError::Unavailable(m),
        services::StoreError::TooLarge => types::StoreError::TooLarge,
    }
}

/// Runs a blocking host operation without stalling a tokio worker: on a multi-threaded runtime the
/// worker's other tasks move to another thread meanwhile (`block_in_place`); elsewhere it just runs.
fn run_blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

// ---- the imports ----

impl types::Host for StoreData {}

impl request::Host for StoreData {
    fn method(&mut self) -> HttpMethod {
        method_to_wit(&self.req.method)
    }
    fn path(&mut self) -> String {
        self.req.path.clone()
    }
    fn set_path(&mut self, path: String) -> Result<(), FieldError> {
        self.request_writable()?;
        if !path.starts_with('/')
            || path.contains(['?', '#'])
            || http::uri::PathAndQuery::try_from(path.as_str()).is_err()
        {
            return Err(FieldError::InvalidValue);
        }
        self.req.path = path;
        Ok(())
    }
    fn query(&mut self) -> Option<String> {
        self.req.query.clone()
    }
    fn set_query(&mut self, query: Option<String>) -> Result<(), FieldError> {
        self.request_writable()?;
        if let Some(q) = &query {
            if q.contains('#') || http::uri::PathAndQuery::try_from(format!("/?{q}")).is_err() {
                return Err(FieldError::InvalidValue);
            }
        }
        self.req.query = query;
        Ok(())
    }
    fn header(&mut self, name: String) -> Option<String> {
        header_first(&self.req.headers, &name)
    }
    fn header_values(&mut self, name: String) -> Vec<String> {
        header_all(&self.req.headers, &name)
    }
    fn headers(&mut self) -> Vec<types::HeaderField> {
        header_list(&self.req.headers)
    }
    fn set_header(&mut self, name: String, value: String) -> Result<(), FieldError> {
        self.request_writable()?;
        header_set(&mut self.req.headers, &name, &value, false)
    }
    fn append_header(&mut self, name: String, value: String) -> Result<(), FieldError> {
        self.request_writable()?;
        header_set(&mut self.req.headers, &name, &value, true)
    }
    fn remove_header(&mut self, name: String) -> Result<bool, FieldError> {
        self.request_writable()?;
        header_remove(&mut self.req.headers, &name)
    }
    fn client_address(&mut self) -> types::SocketAddress {
        socket_address(self.req.client_addr)
    }
    fn route_id(&mut self) -> String {
        self.req.route_id.clone()
    }
    fn consumer(&mut self) -> Option<String> {
        self.req.consumer.clone()
    }
    fn set_consumer(&mut self, username: String) -> Result<(), FieldError> {
        self.request_writable()?;
        if username.is_empty() {
            return Err(FieldError::InvalidValue);
        }
        self.req.consumer = Some(username);
        Ok(())
    }
    fn set_method(&mut self, method: HttpMethod) -> Result<(), FieldError> {
        self.request_writable()?;
        self.req.method = method_from_wit(method).map_err(|_| FieldError::InvalidValue)?;
        Ok(())
    }
    fn var(&mut self, name: String) -> Option<String> {
        state_var(&self.req, self.phase, &name)
    }
    fn delay(&mut self, ms: u32) -> Result<(), FieldError> {
        self.request_writable()?;
        self.req.delay = (self.req.delay + millis(u64::from(ms))).min(MAX_DELAY);
        Ok(())
    }
}

impl response::Host for StoreData {
    fn status(&mut self) -> Option<u16> {
        self.response_visible().map(|r| r.status.as_u16())
    }
    fn set_status(&mut self, status: u16) -> Result<(), FieldError> {
        let resp = self.response_writable(Phase::HeaderFilter)?;
        resp.status = http::StatusCode::from_u16(status).map_err(|_| FieldError::InvalidValue)?;
        Ok(())
    }
    fn header(&mut self, name: String) -> Option<String> {
        self.response_visible()
            .and_then(|r| header_first(&r.headers, &name))
    }
    fn header_values(&mut self, name: String) -> Vec<String> {
        self.response_visible()
            .map(|r| header_all(&r.headers, &name))
            .unwrap_or_default()
    }
    fn headers(&mut self) -> Vec<types::HeaderField> {
        self.response_visible()
            .map(|r| header_list(&r.headers))
            .unwrap_or_default()
    }
    fn set_header(&mut self, name: String, value: String) -> Result<(), FieldError> {
        let resp = self.response_writable(Phase::HeaderFilter)?;
        header_set(&mut resp.headers, &name, &value, false)
    }
    fn append_header(&mut self, name: String, value: String) -> Result<(), FieldError> {
        let resp = self.response_writable(Phase::HeaderFilter)?;
        header_set(&mut resp.headers, &name, &value, true)
    }
    fn remove_header(&mut self, name: String) -> Result<bool, FieldError> {
        let resp = self.response_writable(Phase::HeaderFilter)?;
        header_remove(&mut resp.headers, &name)
    }
    fn body_chunk(&mut self) -> Option<Vec<u8>> {
        if self.phase != Some(Phase::BodyFilter) {
            return None;
        }
        self.req
            .response
            .as_ref()
            .and_then(|r| r.body_chunk.as_ref().map(|b| b.to_vec()))
    }
    fn set_body_chunk(&mut self, chunk: Vec<u8>) -> Result<(), FieldError> {
        let resp = self.response_writable(Phase::BodyFilter)?;
        resp.body_chunk = Some(Bytes::from(chunk));
        Ok(())
    }
    fn end_of_stream(&mut self) -> bool {
        self.phase == Some(Phase::BodyFilter)
            && self.req.response.as_ref().is_some_and(|r| r.end_of_stream)
    }
    fn completed(&mut self) -> Option<response::Completion> {
        if self.phase != Some(Phase::Log) {
            return None;
        }
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.req.completion.as_ref().map(|c| response::Completion {
            started_unix_ms: c.started_unix_ms,
            latency_us: micros(c.latency),
            upstream_latency_us: c.upstream_latency.map(micros),
            upstream_address: c.upstream.map(socket_address),
            request_body_bytes: c.request_body_bytes,
            response_body_bytes: c.response_body_bytes,
            complete: c.complete,
            service_id: c.service_id.clone(),
        })
    }
}

impl context::Host for StoreData {
    fn get(&mut self, key: String) -> Option<String> {
        self.req.ctx.get(&key).cloned()
    }
    fn set(&mut self, key: String, value: String) {
        if self.phase.is_some() {
            self.req.ctx.insert(key, value);
        }
    }
    fn remove(&mut self, key: String) -> bool {
        self.req.ctx.remove(&key).is_some()
    }
}

impl consumers::Host for StoreData {
    fn lookup(&mut self, plugin: String, credential: String) -> Option<consumers::Consumer> {
        self.services
            .consumers
            .lookup(&plugin, &credential)
            .map(|c| consumers::Consumer {
                username: c.username,
                plugin_config: c.plugin_config,
                labels: c.labels,
            })
    }
}

impl counters::Host for StoreData {
    fn incr(
        &mut self,
        key: String,
        delta: u64,
        window_ms: u64,
    ) -> Result<counters::WindowCount, types::StoreError> {
        let key = self.key(&key);
        self.services
            .counters
            .incr(&key, delta, millis(window_ms))
            .map(window_to_wit)
            .map_err(store_error)
    }
    fn add(&mut self, key: String, delta: i64) -> Result<i64, types::StoreError> {
        let key = self.key(&key);
        self.services.counters.add(&key, delta).map_err(store_error)
    }
}

fn window_to_wit(c: services::WindowCount) -> counters::WindowCount {
    counters::WindowCount {
        count: c.count,
        reset_after_ms: u64::try_from(c.reset_after.as_millis()).unwrap_or(u64::MAX),
    }
}

/// The longest a plugin may make one shared-store call wait (its `timeout-ms` is capped to this).
const MAX_SHARED_TIMEOUT: Duration = Duration::from_secs(60);

fn backend_from_wit(backend: shared::Backend) -> shared_store::Backend {
    let node = |n: shared::RedisNode| RedisNode {
        host: n.host,
        port: n.port,
    };
    let access = |username, password: Option<String>, timeout_ms: u32| RedisAccess {
        username,
        password: password.map(Secret),
        timeout: millis(u64::from(timeout_ms)).clamp(Duration::from_millis(1), MAX_SHARED_TIMEOUT),
    };
    match backend {
        shared::Backend::Redis(r) => shared_store::Backend::Redis {
            node: node(r.node),
            database: r.database,
            access: access(r.username, r.password, r.timeout_ms),
        },
        shared::Backend::RedisCluster(c) => shared_store::Backend::RedisCluster {
            nodes: c.nodes.into_iter().map(node).collect(),
            access: access(c.username, c.password, c.timeout_ms),
        },
    }
}

impl shared::Host for StoreData {
    fn incr(
        &mut self,
        backend: shared::Backend,
        key: String,
        delta: u64,
        window_ms: u64,
    ) -> Result<counters::WindowCount, types::StoreError> {
        let (backend, key) = (backend_from_wit(backend), self.shared_key(&key));
        let stores = Arc::clone(&self.services.shared);
        self.wait_for(|| stores.incr(&backend, &key, delta, millis(window_ms)))
            .map(window_to_wit)
            .map_err(store_error)
    }
    fn get(
        &mut self,
        backend: shared::Backend,
        key: String,
    ) -> Result<Option<Vec<u8>>, types::StoreError> {
        let (backend, key) = (backend_from_wit(backend), self.shared_key(&key));
        let stores = Arc::clone(&self.services.shared);
        self.wait_for(|| stores.get(&backend, &key))
            .map_err(store_error)
    }
    fn compare_and_swap(
        &mut self,
        backend: shared::Backend,
        key: String,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> Result<bool, types::StoreError> {
        let (backend, key) = (backend_from_wit(backend), self.shared_key(&key));
        let stores = Arc::clone(&self.services.shared);
        self.wait_for(|| {
            stores.compare_and_swap(
                &backend,
                &key,
                expected.as_deref(),
                &new,
                ttl_ms.map(millis),
            )
        })
        .map_err(store_error)
    }
}

impl kv::Host for StoreData {
    fn get(&mut self, key: String) -> Option<Vec<u8>> {
        let key = self.key(&key);
        self.services.kv.get(&key)
    }
    fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> Result<(), types::StoreError> {
        let key = self.key(&key);
        self.services
            .kv
            .set(&key, &value, ttl_ms.map(millis))
            .map_err(store_error)
    }
    fn delete(&mut self, key: String) -> bool {
        let key = self.key(&key);
        self.services.kv.delete(&key)
    }
    fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> Result<bool, types::StoreError> {
        let key = self.key(&key);
        self.services
            .kv
            .compare_and_swap(&key, expected.as_deref(), &new, ttl_ms.map(millis))
            .map_err(store_error)
    }
}

impl cache::Host for StoreData {
    fn lookup(&mut self, key: String, lock_wait_ms: u32) -> cache::LookupResult {
        let key = self.key(&key);
        let wait = millis(u64::from(lock_wait_ms)).min(MAX_LOCK_WAIT);
        let store = Arc::clone(&self.services.cache);
        // A hit, or a miss that makes us the filler, answers at once: only a lookup that must wait
        // for another request's fill moves off the async worker (`block_in_place` hands the worker's
        // other tasks to a new thread, which costs far more than a hit).
        let found = match store.lookup(&key, Duration::ZERO) {
            CacheLookup::Miss(None) | CacheLookup::Expired(None) if !wait.is_zero() => {
                // Waiting for another request's fill is the host's time, not the guest's.
                self.wait_for(|| store.lookup(&key, wait))
            }
            found => found,
        };
        let (lock, result) = match found {
            CacheLookup::Hit { response, age } => {
                return cache::LookupResult::Hit(cache::Cached {
                    response: response_to_wit(response),
                    age_ms: u64::try_from(age.as_millis()).unwrap_or(u64::MAX),
                })
            }
            CacheLookup::Miss(lock) => (lock, cache::LookupResult::Miss),
            CacheLookup::Expired(lock) => (lock, cache::LookupResult::Expired),
        };
        if let Some(lock) = lock {
            self.req.fill_locks.push((key, Arc::new(lock)));
        }
        result
    }
    fn store_response(&mut self, key: String, ttl_ms: u64) -> Result<(), types::StoreError> {
        if self.phase != Some(Phase::HeaderFilter) {
            return Err(types::StoreError::NotInThisPhase);
        }
        let Some(resp) = self.req.response.as_ref() else {
            return Err(types::StoreError::NotInThisPhase);
        };
        if self.req.method == http::Method::HEAD {
            // No body to store; a GET must never be answered from a HEAD's empty one.
            return Ok(());
        }
        let key = self.key(&key);
        let (status, headers) = (resp.status.as_u16(), header_pairs(&resp.headers));
        let lock = self
            .req
            .fill_locks
            .iter()
            .position(|(k, _)| *k == key)
            .map(|i| self.req.fill_locks.swap_remove(i).1);
        self.req.cache_store = Some(PendingStore {
            cache: Arc::clone(&self.services.cache),
            key,
            ttl: millis(ttl_ms),
            status,
            headers,
            lock,
        });
        Ok(())
    }
    fn get(&mut self, key: String) -> Option<types::Response> {
        let key = self.key(&key);
        self.services.cache.get(&key).map(response_to_wit)
    }
    fn put(
        &mut self,
        key: String,
        value: types::Response,
        ttl_ms: u64,
    ) -> Result<(), types::StoreError> {
        let key = self.key(&key);
        let value = services::CachedResponse {
            status: value.status,
            headers: value
                .headers
                .into_iter()
                .map(|h| (h.name, h.value))
                .collect(),
            body: Bytes::from(value.body),
        };
        self.services
            .cache
            .put(&key, value, millis(ttl_ms))
            .map_err(store_error)
    }
    fn purge(&mut self, key: String) -> bool {
        let key = self.key(&key);
        self.services.cache.purge(&key)
    }
}

impl http_outbound::Host for StoreData {
    fn call(
        &mut self,
        upstream: String,
        request: http_outbound::OutboundRequest,
    ) -> Result<types::Response, http_outbound::OutboundError> {
        use http_outbound::OutboundError as E;
        let method = method_from_wit(request.method).map_err(E::InvalidRequest)?;
        let mut headers = HeaderMap::new();
        for h in request.headers {
            let (n, v) = parse_header(&h.name, &h.value)
                .map_err(|_| E::InvalidRequest(format!("header {:?}", h.name)))?;
            headers.append(n, v);
        }
        if !request.path_with_query.starts_with('/') {
            return Err(E::InvalidRequest("path must start with '/'".to_string()));
        }
        let remaining = self.deadline_at.saturating_duration_since(Instant::now());
        let timeout = match request.timeout_ms {
            Some(ms) => remaining.min(millis(u64::from(ms))),
            None => remaining,
        };
        if timeout.is_zero() {
            return Err(E::Timeout);
        }
        let outbound = self.services.outbound.clone();
        let req = services::OutboundRequest {
            method,
            path_with_query: request.path_with_query,
            headers,
            body: Bytes::from(request.body),
        };
        let result = run_blocking(|| outbound.call(&upstream, req, timeout));
        match result {
            Ok(resp) => Ok(types::Response {
                status: resp.status,
                headers: header_list(&resp.headers),
                body: resp.body.to_vec(),
            }),
            Err(e) => Err(match e {
                services::OutboundError::UnknownUpstream(u) => E::UnknownUpstream(u),
                services::OutboundError::InvalidRequest(m) => E::InvalidRequest(m),
                services::OutboundError::ConnectFailed(m) => E::ConnectFailed(m),
                services::OutboundError::Timeout => E::Timeout,
                services::OutboundError::BadResponse(m) => E::BadResponse(m),
            }),
        }
    }
}

impl logging::Host for StoreData {
    fn log(&mut self, level: logging::Level, message: String) {
        let plugin = &*self.plugin;
        let route = self.req.route_id.as_str();
        match level {
            logging::Level::Trace => tracing::trace!(plugin, route, "{message}"),
            logging::Level::Debug => tracing::debug!(plugin, route, "{message}"),
            logging::Level::Info => tracing::info!(plugin, route, "{message}"),
            logging::Level::Warn => tracing::warn!(plugin, route, "{message}"),
            logging::Level::Error => tracing::error!(plugin, route, "{message}"),
        }
    }
}

impl log_sink::Host for StoreData {
    fn check(
        &mut self,
        destination: log_sink::Destination,
        policy: log_sink::BatchPolicy,
    ) -> Result<(), log_sink::SinkError> {
        self.services
            .log_sinks
            .check(&sink_spec(destination), &sink_policy(policy))
            .map(drop)
            .map_err(sink_error)
    }
}

impl log_sink::HostSink for StoreData {
    fn open(
        &mut self,
        destination: log_sink::Destination,
        policy: log_sink::BatchPolicy,
    ) -> Result<Resource<crate::log_sink::SinkHandle>, log_sink::SinkError> {
        let sink = self
            .services
            .log_sinks
            .open(&self.plugin, &sink_spec(destination), &sink_policy(policy))
            .map_err(sink_error)?;
        self.table
            .push(crate::log_sink::SinkHandle(sink))
            .map_err(|e| log_sink::SinkError::Invalid(format!("no room for another sink: {e}")))
    }

    fn push(
        &mut self,
        sink: Resource<crate::log_sink::SinkHandle>,
        entry: String,
    ) -> Result<(), log_sink::SinkError> {
        match self.table.get(&sink) {
            Ok(handle) => handle.0.push(entry).map_err(sink_error),
            // The guest can only name handles it holds; a stale one is its bug, not the request's.
            Err(e) => Err(log_sink::SinkError::Invalid(format!("unknown sink: {e}"))),
        }
    }

    fn drop(&mut self, sink: Resource<crate::log_sink::SinkHandle>) -> wasmtime::Result<()> {
        self.table.delete(sink)?;
        Ok(())
    }
}

impl metrics::Host for StoreData {
    fn counter(&mut self, name: String, labels: Vec<types::Label>, delta: u64) {
        let labels: Vec<(String, String)> = labels.into_iter().map(|l| (l.name, l.value)).collect();
        self.services
            .metrics
            .counter(&self.plugin, &name, &labels, delta);
    }
    fn histogram(&mut self, name: String, labels: Vec<types::Label>, value: f64) {
        let labels: Vec<(String, String)> = labels.into_iter().map(|l| (l.name, l.value)).collect();
        self.services
            .metrics
            .histogram(&self.plugin, &name, &labels, value);
    }
}

impl random::Host for StoreData {
    fn fill(&mut self, len: u32) -> Vec<u8> {
        let mut buf = vec![0u8; len.min(1024) as usize];
        match getrandom::fill(&mut buf) {
            Ok(()) => buf,
            Err(e) => {
                // Never hand out predictable bytes: an empty answer makes the SDK's `random::bytes`
                // trap, which the gateway contains as a plugin fault (500 for that request).
                tracing::error!(plugin = &*self.plugin, "random source failed: {e}");
                Vec::new()
            }
        }
    }
}

impl clock::Host for StoreData {
    fn now_unix_ms(&mut self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
    fn monotonic_ns(&mut self) -> u64 {
        u64::try_from(self.monotonic_base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}
