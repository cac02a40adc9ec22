//! An in-memory gateway for unit-testing plugins with plain `cargo test` on the native target.
//!
//! 1. `let host = TestHost::new()` and set the request: `host.set_request_header("x-key", "k1")`, `set_path`...
//! 2. `let cfg = host.configure::<MyPlugin>(json)?` parses and validates like the gateway does.
//! 3. Run phases: `host.access::<MyPlugin>(&cfg)` returns the [`Decision`]; the host modules
//!    ([`crate::request`], [`crate::kv`], ...) act on this host while the phase runs.
//! 4. Assert on the state: `host.request_header("x-added")`, `host.response_status()`, `host.logs()`, ...
//!
//! It enforces the same phase rules as the gateway (request writable in rewrite/access, response status and
//! headers in header-filter, body chunk in body-filter, nothing in log), and its stores (counters, gauges,
//! kv, cache, and one in-memory store standing in for every `shared` backend) use a fake clock you move with
//! [`TestHost::advance`].
//!
//! Where the gateway does something after a phase, the test host records it for you to assert on:
//! [`TestHost::delay_ms`] is the total `request::delay`, and `cache::store_response` stays pending until
//! you end the body with [`TestHost::finish_response_body`]. Request variables (`request::var`) are derived
//! from the test request and response as the gateway derives them; [`TestHost::set_var`] defines the rest.
use crate::cache::Lookup;
use crate::{
    Backend, BatchPolicy, Completion, Consumer, Decision, Destination, FieldError, Level, Method,
    OutboundError, OutboundRequest, Phase, Plugin, Response, SinkError, StoreError, WindowCount,
};
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

type OutboundFn = Rc<dyn Fn(&OutboundRequest) -> Result<Response, OutboundError>>;

/// The request as the test host holds it.
#[derive(Debug, Clone)]
pub struct TestRequest {
    /// Method.
    pub method: Method,
    /// Path.
    pub path: String,
    /// Raw query.
    pub query: Option<String>,
    /// Headers (lower-case names).
    pub headers: Vec<(String, String)>,
    /// Client address.
    pub client_addr: SocketAddr,
    /// Route id.
    pub route_id: String,
    /// Consumer.
    pub consumer: Option<String>,
}

/// The response as the test host holds it.
#[derive(Debug, Clone, Default)]
pub struct TestResponse {
    /// Status.
    pub status: u16,
    /// Headers (lower-case names).
    pub headers: Vec<(String, String)>,
    /// The current body chunk (body-filter).
    pub body_chunk: Vec<u8>,
    /// Whether the chunk is the last.
    pub end_of_stream: bool,
}

/// A cache entry; `stored_at` gives a hit its age, `expires_at` tells `Expired` from `Hit`.
#[doc(hidden)]
pub struct CacheEntry {
    pub response: Response,
    pub stored_at: u64,
    pub expires_at: u64,
}

/// A `cache::store_response` waiting for the body to end (the status and headers are taken at the call).
#[doc(hidden)]
pub struct PendingStore {
    pub key: String,
    pub ttl_ms: u64,
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

/// Fixed-window counters and values with TTL on the fake clock: the test host's `counters`/`kv`, and one
/// more set standing in for every store `shared` names.
#[doc(hidden)]
#[derive(Default)]
pub struct Stores {
    pub counters: HashMap<String, (u64, u64)>,
    pub kv: HashMap<String, (Vec<u8>, Option<u64>)>,
}

impl Stores {
    fn incr(&mut self, now: u64, key: &str, delta: u64, window_ms: u64) -> WindowCount {
        let window_ms = window_ms.max(1);
        let entry = self.counters.entry(key.to_string()).or_insert((0, now));
        if now >= entry.1.saturating_add(window_ms) {
            *entry = (0, now);
        }
        entry.0 = entry.0.saturating_add(delta);
        WindowCount {
            count: entry.0,
            reset_after: Duration::from_millis(entry.1 + window_ms - now),
        }
    }
    /// The live value: an expired entry reads as absent even before anything removes it.
    fn get(&self, now: u64, key: &str) -> Option<Vec<u8>> {
        match self.kv.get(key) {
            Some((_, Some(exp))) if *exp <= now => None,
            Some((v, _)) => Some(v.clone()),
            None => None,
        }
    }
    fn set(&mut self, now: u64, key: &str, value: &[u8], ttl_ms: Option<u64>) {
        let exp = ttl_ms.map(|t| now.saturating_add(t));
        self.kv.insert(key.to_string(), (value.to_vec(), exp));
    }
    fn compare_and_swap(
        &mut self,
        now: u64,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
        ttl_ms: Option<u64>,
    ) -> bool {
        let swapped = self.get(now, key).as_deref() == expected;
        if swapped {
            self.set(now, key, new, ttl_ms);
        }
        swapped
    }
}

/// The gateway caps the sum of a request's `request::delay` calls at this.
const MAX_DELAY_MS: u64 = 60_000;
/// The most bytes one `random.fill` host call returns (a WIT contract the SDK's `random::fill` chunks to).
const MAX_RANDOM_PER_CALL: u32 = 1024;

#[doc(hidden)]
pub struct HostState {
    pub phase: Phase,
    pub req: TestRequest,
    pub resp: TestResponse,
    pub ctx: HashMap<String, String>,
    pub consumers: HashMap<(String, String), Consumer>,
    /// `counters` and `kv`.
    pub local: Stores,
    /// `shared`, for every backend.
    pub shared: Stores,
    pub shared_unavailable: bool,
    pub gauges: HashMap<String, i64>,
    pub cache: HashMap<String, CacheEntry>,
    pub pending_stores: Vec<PendingStore>,
    pub vars: HashMap<String, String>,
    pub delay_ms: u64,
    pub random_calls: u64,
    pub upstreams: HashMap<String, OutboundFn>,
    pub logs: Vec<(Level, String)>,
    pub counters_metric: HashMap<String, u64>,
    pub histograms: HashMap<String, Vec<f64>>,
    pub now_ms: u64,
    pub completion: Option<Completion>,
    pub sinks: Vec<TestSink>,
}

/// A log sink the plugin opened on the test host, with everything pushed to it.
#[doc(hidden)]
pub struct TestSink {
    pub destination: Destination,
    pub policy: BatchPolicy,
    pub entries: Vec<String>,
}

/// The gateway's `log-sink.check`, from the rules the gateway enforces (`sluice_log::sink_rules`).
#[doc(hidden)]
pub fn check_sink(destination: &Destination, policy: &BatchPolicy) -> Result<(), SinkError> {
    use sluice_log::sink_rules as rules;
    rules::check_batch_size(policy.max_size).map_err(SinkError::Invalid)?;
    match destination {
        Destination::Http {
            uri,
            auth_header,
            timeout,
            ..
        } => {
            let ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
            rules::check_http(uri, auth_header.as_deref(), ms)
        }
        // The test host has no log directory; the path rules are the gateway's.
        Destination::File(path) => rules::check_file_path(path),
    }
    .map_err(SinkError::Invalid)
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<RefCell<HostState>>>> = const { RefCell::new(None) };
}

#[doc(hidden)]
pub fn with_host<R>(f: impl FnOnce(&mut HostState) -> R) -> R {
    let state = CURRENT.with(|c| c.borrow().clone());
    match state {
        Some(s) => f(&mut s.borrow_mut()),
        None => panic!(
            "sluice-plugin-sdk: host functions on the native target work only inside a TestHost phase \
             (host.access::<P>(&cfg) etc.)"
        ),
    }
}

#[doc(hidden)]
pub fn outbound(upstream: &str, req: &OutboundRequest) -> Result<Response, OutboundError> {
    // Take the handler out first so it may itself call host functions without a double borrow.
    let handler = with_host(|h| h.upstreams.get(upstream).cloned());
    match handler {
        Some(f) => f(req),
        None => Err(OutboundError::UnknownUpstream(upstream.to_string())),
    }
}

#[doc(hidden)]
pub fn first(headers: &[(String, String)], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
}

#[doc(hidden)]
pub fn all(headers: &[(String, String)], name: &str) -> Vec<String> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
        .collect()
}

#[doc(hidden)]
pub fn metric_key(name: &str, labels: &[(&str, &str)]) -> String {
    let mut key = name.to_string();
    for (n, v) in labels {
        key.push_str(&format!(",{n}={v}"));
    }
    key
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn valid_value(value: &str) -> bool {
    value.bytes().all(|b| b != b'\r' && b != b'\n' && b != 0)
}

/// Every value of a header joined with `", "`, as nginx (and so the gateway) does for `http_*` variables.
fn joined(headers: &[(String, String)], name: &str) -> Option<String> {
    let values = all(headers, name);
    (!values.is_empty()).then(|| values.join(", "))
}

/// Decodes one `application/x-www-form-urlencoded` component (`+` is a space, `%XX` a byte; a bad escape
/// stays as is), the way the gateway's `arg_*` lookup does.
fn form_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| s.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (bytes[i], escaped) {
            (_, Some(b)) => {
                out.push(b);
                i += 3;
                continue;
            }
            (b'+', None) => out.push(b' '),
            (b, None) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// First value of query argument `name`, percent-decoded (APISIX `arg_<name>`).
fn query_arg(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find(|(k, _)| form_decode(k) == name)
        .map(|(_, v)| form_decode(v))
}

/// Cookie `name` from one `Cookie` header (`a=1; b=2`).
fn cookie<'c>(header: &'c str, name: &str) -> Option<&'c str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// nginx `$host`: the Host header lower-cased, without the port.
fn host_name(host: &str) -> String {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6
            .split_once(']')
            .map_or(host, |(ip, _)| &host[..ip.len() + 2]),
        None => host.split_once(':').map_or(host, |(name, _)| name),
    };
    name.to_ascii_lowercase()
}

/// splitmix64: a few lines of well-mixed, deterministic bytes, so tests are repeatable yet every
/// `random.fill` call answers differently (a plugin that reused one nonce would show up).
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn header_op(
    headers: &mut Vec<(String, String)>,
    name: &str,
    value: Option<&str>,
    append: bool,
) -> Result<bool, FieldError> {
    if !valid_name(name) {
        return Err(FieldError::InvalidName);
    }
    if value.is_some_and(|v| !valid_value(v)) {
        return Err(FieldError::InvalidValue);
    }
    let lower = name.to_ascii_lowercase();
    let before = headers.len();
    if !append {
        headers.retain(|(n, _)| *n != lower);
    }
    let removed = headers.len() != before;
    if let Some(v) = value {
        headers.push((lower, v.to_string()));
    }
    Ok(removed)
}

impl HostState {
    fn request_writable(&self) -> Result<(), FieldError> {
        match self.phase {
            Phase::Rewrite | Phase::Access => Ok(()),
            _ => Err(FieldError::NotInThisPhase),
        }
    }
    pub fn resp_visible(&self) -> bool {
        !matches!(self.phase, Phase::Rewrite | Phase::Access)
    }
    pub fn set_path(&mut self, path: &str) -> Result<(), FieldError> {
        self.request_writable()?;
        if !path.starts_with('/') || !valid_value(path) || path.contains('?') {
            return Err(FieldError::InvalidValue);
        }
        self.req.path = path.to_string();
        Ok(())
    }
    pub fn set_query(&mut self, query: Option<&str>) -> Result<(), FieldError> {
        self.request_writable()?;
        if query.is_some_and(|q| !valid_value(q) || q.contains('#')) {
            return Err(FieldError::InvalidValue);
        }
        self.req.query = query.map(str::to_string);
        Ok(())
    }
    pub fn set_method(&mut self, method: Method) -> Result<(), FieldError> {
        self.request_writable()?;
        if let Method::Other(name) = &method {
            if !valid_name(name) {
                return Err(FieldError::InvalidValue);
            }
        }
        self.req.method = method;
        Ok(())
    }
    pub fn delay(&mut self, ms: u32) -> Result<(), FieldError> {
        self.request_writable()?;
        self.delay_ms = (self.delay_ms + u64::from(ms)).min(MAX_DELAY_MS);
        Ok(())
    }
    /// `request::var`: a variable defined with `TestHost::set_var` wins, the rest is derived like the gateway.
    pub fn var(&self, name: &str) -> Option<String> {
        if let Some(v) = self.vars.get(name) {
            return Some(v.clone());
        }
        let req = &self.req;
        if let Some(arg) = name.strip_prefix("arg_") {
            return query_arg(req.query.as_deref()?, arg);
        }
        if let Some(h) = name.strip_prefix("http_") {
            return joined(&req.headers, &h.replace('_', "-"));
        }
        if let Some(c) = name.strip_prefix("cookie_") {
            return all(&req.headers, "cookie")
                .iter()
                .find_map(|h| cookie(h, c).map(str::to_string));
        }
        let resp_header = name
            .strip_prefix("sent_http_")
            .or_else(|| name.strip_prefix("upstream_http_"));
        if let Some(h) = resp_header {
            return self
                .resp_visible()
                .then(|| first(&self.resp.headers, &h.replace('_', "-")))
                .flatten();
        }
        match name {
            "uri" => Some(req.path.clone()),
            "request_uri" => Some(match &req.query {
                Some(q) => format!("{}?{q}", req.path),
                None => req.path.clone(),
            }),
            "args" | "query_string" => req.query.clone(),
            "host" => first(&req.headers, "host").map(|h| host_name(&h)),
            "request_method" => Some(req.method.as_str().to_string()),
            "remote_addr" => Some(req.client_addr.ip().to_string()),
            "remote_port" => Some(req.client_addr.port().to_string()),
            "route_id" => Some(req.route_id.clone()),
            "consumer_name" => req.consumer.clone(),
            "status" => self.resp_visible().then(|| self.resp.status.to_string()),
            _ => None,
        }
    }
    pub fn set_consumer(&mut self, username: &str) -> Result<(), FieldError> {
        self.request_writable()?;
        self.req.consumer = Some(username.to_string());
        Ok(())
    }
    pub fn req_header_op(
        &mut self,
        name: &str,
        value: Option<&str>,
        append: bool,
    ) -> Result<bool, FieldError> {
        self.request_writable()?;
        header_op(&mut self.req.headers, name, value, append)
    }
    pub fn resp_header_op(
        &mut self,
        name: &str,
        value: Option<&str>,
        append: bool,
    ) -> Result<bool, FieldError> {
        if self.phase != Phase::HeaderFilter {
            return Err(FieldError::NotInThisPhase);
        }
        header_op(&mut self.resp.headers, name, value, append)
    }
    pub fn set_status(&mut self, status: u16) -> Result<(), FieldError> {
        if self.phase != Phase::HeaderFilter {
            return Err(FieldError::NotInThisPhase);
        }
        if !(100..=999).contains(&status) {
            return Err(FieldError::InvalidValue);
        }
        self.resp.status = status;
        Ok(())
    }
    pub fn body_chunk(&self) -> Option<Vec<u8>> {
        (self.phase == Phase::BodyFilter).then(|| self.resp.body_chunk.clone())
    }
    pub fn set_body_chunk(&mut self, chunk: &[u8]) -> Result<(), FieldError> {
        if self.phase != Phase::BodyFilter {
            return Err(FieldError::NotInThisPhase);
        }
        self.resp.body_chunk = chunk.to_vec();
        Ok(())
    }
    pub fn incr(&mut self, key: &str, delta: u64, window_ms: u64) -> WindowCount {
        self.local.incr(self.now_ms, key, delta, window_ms)
    }
    pub fn gauge_add(&mut self, key: &str, delta: i64) -> i64 {
        let value = self
            .gauges
            .get(key)
            .copied()
            .unwrap_or(0)
            .saturating_add(delta);
        if value == 0 {
            self.gauges.remove(key);
        } else {
            self.gauges.insert(key.to_string(), value);
        }
        value
    }
    pub fn kv_get(&self, key: &str) -> Option<Vec<u8>> {
        self.local.get(self.now_ms, key)
    }
    pub fn kv_set(&mut self, key: &str, value: &[u8], ttl_ms: Option<u64>) {
        self.local.set(self.now_ms, key, value, ttl_ms);
    }
    pub fn kv_delete(&mut self, key: &str) -> bool {
        let live = self.kv_get(key).is_some();
        self.local.kv.remove(key);
        live
    }
    pub fn kv_compare_and_swap(
        &mut self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
        ttl_ms: Option<u64>,
    ) -> bool {
        self.local
            .compare_and_swap(self.now_ms, key, expected, new, ttl_ms)
    }
    /// Every backend shares one store here; keys carry the backend's name so two differ.
    fn shared_store(
        &mut self,
        backend: &Backend,
        key: &str,
    ) -> Result<(&mut Stores, String), StoreError> {
        if self.shared_unavailable {
            return Err(StoreError::Unavailable(format!(
                "{backend}: unreachable (TestHost::set_shared_unavailable)"
            )));
        }
        Ok((&mut self.shared, format!("{backend}/{key}")))
    }
    pub fn shared_incr(
        &mut self,
        backend: &Backend,
        key: &str,
        delta: u64,
        window_ms: u64,
    ) -> Result<WindowCount, StoreError> {
        let now = self.now_ms;
        let (store, key) = self.shared_store(backend, key)?;
        Ok(store.incr(now, &key, delta, window_ms))
    }
    pub fn shared_get(
        &mut self,
        backend: &Backend,
        key: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let now = self.now_ms;
        let (store, key) = self.shared_store(backend, key)?;
        Ok(store.get(now, &key))
    }
    pub fn shared_compare_and_swap(
        &mut self,
        backend: &Backend,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
        ttl_ms: Option<u64>,
    ) -> Result<bool, StoreError> {
        let now = self.now_ms;
        let (store, key) = self.shared_store(backend, key)?;
        Ok(store.compare_and_swap(now, &key, expected, new, ttl_ms))
    }
    /// Expired entries stay until replaced or purged, so a lookup can tell `Expired` from `Miss`.
    pub fn cache_lookup(&self, key: &str) -> Lookup {
        match self.cache.get(key) {
            None => Lookup::Miss,
            Some(e) if e.expires_at <= self.now_ms => Lookup::Expired,
            Some(e) => Lookup::Hit {
                response: e.response.clone(),
                age: Duration::from_millis(self.now_ms - e.stored_at),
            },
        }
    }
    pub fn cache_get(&self, key: &str) -> Option<Response> {
        match self.cache_lookup(key) {
            Lookup::Hit { response, .. } => Some(response),
            Lookup::Miss | Lookup::Expired => None,
        }
    }
    pub fn cache_put(&mut self, key: &str, value: &Response, ttl_ms: u64) {
        let entry = CacheEntry {
            response: value.clone(),
            stored_at: self.now_ms,
            expires_at: self.now_ms.saturating_add(ttl_ms),
        };
        self.cache.insert(key.to_string(), entry);
    }
    pub fn cache_store_response(&mut self, key: &str, ttl_ms: u64) -> Result<(), StoreError> {
        if self.phase != Phase::HeaderFilter {
            return Err(StoreError::NotInThisPhase);
        }
        self.pending_stores.push(PendingStore {
            key: key.to_string(),
            ttl_ms,
            status: self.resp.status,
            headers: self.resp.headers.clone(),
        });
        Ok(())
    }
    pub fn sink_open(
        &mut self,
        destination: &Destination,
        policy: &BatchPolicy,
    ) -> Result<usize, SinkError> {
        check_sink(destination, policy)?;
        let same = |s: &TestSink| s.destination == *destination && s.policy == *policy;
        if let Some(i) = self.sinks.iter().position(same) {
            return Ok(i);
        }
        self.sinks.push(TestSink {
            destination: destination.clone(),
            policy: *policy,
            entries: Vec::new(),
        });
        Ok(self.sinks.len() - 1)
    }
    pub fn sink_push(&mut self, index: usize, entry: &str) -> Result<(), SinkError> {
        sluice_log::sink_rules::check_entry(entry).map_err(SinkError::Invalid)?;
        match self.sinks.get_mut(index) {
            Some(sink) => {
                sink.entries.push(entry.to_string());
                Ok(())
            }
            None => panic!("sluice-plugin-sdk: a Sink from another TestHost"),
        }
    }
    pub fn random_fill(&mut self, len: u32) -> Vec<u8> {
        assert!(
            len <= MAX_RANDOM_PER_CALL,
            "random.fill: at most {MAX_RANDOM_PER_CALL} bytes per call, asked for {len}"
        );
        self.random_calls += 1;
        let mut state = self.random_calls;
        let mut out = Vec::with_capacity(len as usize);
        while out.len() < len as usize {
            out.extend_from_slice(&splitmix64(&mut state).to_le_bytes());
        }
        out.truncate(len as usize);
        out
    }
}

/// A parsed config, as the gateway keeps it per (plugin, config version).
pub struct TestConfig<P: Plugin>(P::Config);

impl<P: Plugin> TestConfig<P> {
    /// The parsed config.
    pub fn get(&self) -> &P::Config {
        &self.0
    }
}

/// The in-memory gateway. Cheap to create; one per test.
pub struct TestHost {
    state: Rc<RefCell<HostState>>,
}

impl Default for TestHost {
    fn default() -> Self {
        Self::new()
    }
}

impl TestHost {
    /// A `GET /` from 127.0.0.1:40000 on route `"1"`, no headers, clock at 1_700_000_000_000 ms.
    pub fn new() -> Self {
        let state = HostState {
            phase: Phase::Rewrite,
            req: TestRequest {
                method: Method::Get,
                path: "/".to_string(),
                query: None,
                headers: Vec::new(),
                client_addr: SocketAddr::from(([127, 0, 0, 1], 40000)),
                route_id: "1".to_string(),
                consumer: None,
            },
            resp: TestResponse {
                status: 200,
                ..TestResponse::default()
            },
            ctx: HashMap::new(),
            consumers: HashMap::new(),
            local: Stores::default(),
            shared: Stores::default(),
            shared_unavailable: false,
            gauges: HashMap::new(),
            cache: HashMap::new(),
            pending_stores: Vec::new(),
            vars: HashMap::new(),
            delay_ms: 0,
            random_calls: 0,
            upstreams: HashMap::new(),
            logs: Vec::new(),
            counters_metric: HashMap::new(),
            histograms: HashMap::new(),
            now_ms: 1_700_000_000_000,
            completion: None,
            sinks: Vec::new(),
        };
        Self {
            state: Rc::new(RefCell::new(state)),
        }
    }

    /// Parses and validates a config like the gateway's `configure` (serde error or the plugin's `validate`).
    pub fn configure<P: Plugin>(&self, json: &str) -> Result<TestConfig<P>, String> {
        crate::parse_config::<P>(json).map(TestConfig)
    }

    /// The phases `#[export_plugin]` recorded for `P` (what the gateway would call).
    pub fn phases<P: crate::__private::Exported>(&self) -> &'static [Phase] {
        P::PHASES
    }

    fn run<R>(&self, phase: Phase, f: impl FnOnce() -> R) -> R {
        self.state.borrow_mut().phase = phase;
        let previous = CURRENT.with(|c| c.replace(Some(self.state.clone())));
        struct Restore(Option<Rc<RefCell<HostState>>>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let prev = self.0.take();
                CURRENT.with(|c| *c.borrow_mut() = prev);
            }
        }
        let _restore = Restore(previous);
        f()
    }

    /// Runs `rewrite`.
    pub fn rewrite<P: Plugin>(&self, cfg: &TestConfig<P>) -> Decision {
        self.run(Phase::Rewrite, || P::rewrite(&cfg.0))
    }
    /// Runs `access`.
    pub fn access<P: Plugin>(&self, cfg: &TestConfig<P>) -> Decision {
        self.run(Phase::Access, || P::access(&cfg.0))
    }
    /// Runs `header_filter` on the current response (see [`TestHost::set_response`]).
    pub fn header_filter<P: Plugin>(&self, cfg: &TestConfig<P>) -> Decision {
        self.run(Phase::HeaderFilter, || P::header_filter(&cfg.0))
    }
    /// Runs `body_filter` on one chunk; returns the chunk as the plugin left it.
    pub fn body_filter<P: Plugin>(
        &self,
        cfg: &TestConfig<P>,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> Vec<u8> {
        {
            let mut s = self.state.borrow_mut();
            s.resp.body_chunk = chunk.to_vec();
            s.resp.end_of_stream = end_of_stream;
        }
        self.run(Phase::BodyFilter, || P::body_filter(&cfg.0));
        std::mem::take(&mut self.state.borrow_mut().resp.body_chunk)
    }
    /// Runs `log`.
    pub fn log<P: Plugin>(&self, cfg: &TestConfig<P>) {
        self.run(Phase::Log, || P::log(&cfg.0))
    }

    // ---- setting up the request and the world ----

    /// What [`crate::response::completion`] returns in `log` (nothing until this is called).
    pub fn set_completion(&self, completion: Completion) -> &Self {
        self.state.borrow_mut().completion = Some(completion);
        self
    }

    /// Every entry pushed to the sinks opened for `destination`, in order.
    pub fn sink_entries(&self, destination: &Destination) -> Vec<String> {
        self.state
            .borrow()
            .sinks
            .iter()
            .filter(|s| s.destination == *destination)
            .flat_map(|s| s.entries.iter().cloned())
            .collect()
    }

    /// How many distinct sinks plugins opened (sinks with one destination and policy are one).
    pub fn open_sinks(&self) -> usize {
        self.state.borrow().sinks.len()
    }

    /// Sets the method.
    pub fn set_method(&self, method: Method) -> &Self {
        self.state.borrow_mut().req.method = method;
        self
    }
    /// Sets the path, and the query if `path` has `?`.
    pub fn set_path(&self, path: &str) -> &Self {
        let mut s = self.state.borrow_mut();
        match path.split_once('?') {
            Some((p, q)) => {
                s.req.path = p.to_string();
                s.req.query = Some(q.to_string());
            }
            None => s.req.path = path.to_string(),
        }
        drop(s);
        self
    }
    /// Appends a request header.
    pub fn set_request_header(&self, name: &str, value: &str) -> &Self {
        self.state
            .borrow_mut()
            .req
            .headers
            .push((name.to_ascii_lowercase(), value.to_string()));
        self
    }
    /// Sets the client address.
    pub fn set_client_addr(&self, addr: SocketAddr) -> &Self {
        self.state.borrow_mut().req.client_addr = addr;
        self
    }
    /// Sets the route id.
    pub fn set_route_id(&self, id: &str) -> &Self {
        self.state.borrow_mut().req.route_id = id.to_string();
        self
    }
    /// Sets the upstream response seen by the response phases.
    pub fn set_response(&self, status: u16, headers: &[(&str, &str)]) -> &Self {
        let mut s = self.state.borrow_mut();
        s.resp.status = status;
        s.resp.headers = headers
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
            .collect();
        drop(s);
        self
    }
    /// Registers a consumer found by `consumers::lookup(plugin, credential)`.
    pub fn add_consumer(&self, plugin: &str, credential: &str, consumer: Consumer) -> &Self {
        self.state
            .borrow_mut()
            .consumers
            .insert((plugin.to_string(), credential.to_string()), consumer);
        self
    }
    /// Registers a named upstream for `http::call`.
    pub fn add_upstream(
        &self,
        name: &str,
        handler: impl Fn(&OutboundRequest) -> Result<Response, OutboundError> + 'static,
    ) -> &Self {
        self.state
            .borrow_mut()
            .upstreams
            .insert(name.to_string(), Rc::new(handler));
        self
    }
    /// Moves the fake clock forward (counter windows, kv and cache TTLs).
    pub fn advance(&self, by: Duration) -> &Self {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        let mut s = self.state.borrow_mut();
        s.now_ms = s.now_ms.saturating_add(ms);
        drop(s);
        self
    }
    /// Defines a request variable for `request::var` (`host`, `server_port`, `scheme`...); it takes
    /// precedence over the variables derived from the test request. Reset by [`TestHost::next_request`].
    pub fn set_var(&self, name: &str, value: &str) -> &Self {
        self.state
            .borrow_mut()
            .vars
            .insert(name.to_string(), value.to_string());
        self
    }
    /// Ends the response body with `body` (the whole body as the client got it): commits the responses that
    /// `cache::store_response` queued, as the gateway does when the stream completes.
    pub fn finish_response_body(&self, body: &[u8]) -> &Self {
        let mut s = self.state.borrow_mut();
        for p in std::mem::take(&mut s.pending_stores) {
            let response = Response {
                status: p.status,
                headers: p.headers,
                body: body.to_vec(),
            };
            s.cache_put(&p.key, &response, p.ttl_ms);
        }
        drop(s);
        self
    }
    /// Starts a new request on the same host (stores, consumers and upstreams kept; request, response,
    /// context, variables, delay and uncommitted cache stores reset).
    pub fn next_request(&self) -> &Self {
        let fresh = TestHost::new();
        let fresh = fresh.state.borrow();
        let mut s = self.state.borrow_mut();
        s.req = fresh.req.clone();
        s.resp = fresh.resp.clone();
        s.ctx.clear();
        s.vars.clear();
        s.delay_ms = 0;
        s.pending_stores.clear();
        drop(s);
        self
    }

    // ---- reading the state back ----

    /// First value of a request header.
    pub fn request_header(&self, name: &str) -> Option<String> {
        first(&self.state.borrow().req.headers, name)
    }
    /// The request as plugins left it.
    pub fn request(&self) -> TestRequest {
        self.state.borrow().req.clone()
    }
    /// The consumer a plugin authenticated the request as (`request::set_consumer`).
    pub fn consumer(&self) -> Option<String> {
        self.state.borrow().req.consumer.clone()
    }
    /// Total `request::delay` of this request, in milliseconds (capped at 60 s like the gateway).
    pub fn delay_ms(&self) -> u64 {
        self.state.borrow().delay_ms
    }
    /// A gauge's value (`counters::add`); `None` once it is back at zero, since the store removes it then.
    pub fn gauge(&self, key: &str) -> Option<i64> {
        self.state.borrow().gauges.get(key).copied()
    }
    /// A kv value, unless absent or expired on the fake clock.
    pub fn kv(&self, key: &str) -> Option<Vec<u8>> {
        self.state.borrow().kv_get(key)
    }
    /// Makes every `shared` call fail with [`StoreError::Unavailable`] (Redis down) until turned off.
    pub fn set_shared_unavailable(&self, unavailable: bool) -> &Self {
        self.state.borrow_mut().shared_unavailable = unavailable;
        self
    }
    /// A `shared` value of `backend`, unless absent or expired on the fake clock.
    pub fn shared_kv(&self, backend: &Backend, key: &str) -> Option<Vec<u8>> {
        let s = self.state.borrow();
        s.shared.get(s.now_ms, &format!("{backend}/{key}"))
    }
    /// What `cache::lookup` would answer for `key` now.
    pub fn cache_lookup(&self, key: &str) -> Lookup {
        self.state.borrow().cache_lookup(key)
    }
    /// First value of a response header.
    pub fn response_header(&self, name: &str) -> Option<String> {
        first(&self.state.borrow().resp.headers, name)
    }
    /// The response status.
    pub fn response_status(&self) -> u16 {
        self.state.borrow().resp.status
    }
    /// A context value.
    pub fn context(&self, key: &str) -> Option<String> {
        self.state.borrow().ctx.get(key).cloned()
    }
    /// Sets a context value (as another plugin would have).
    pub fn set_context(&self, key: &str, value: &str) -> &Self {
        self.state
            .borrow_mut()
            .ctx
            .insert(key.to_string(), value.to_string());
        self
    }
    /// Everything logged so far.
    pub fn logs(&self) -> Vec<(Level, String)> {
        self.state.borrow().logs.clone()
    }
    /// A counter metric's value (`name` plus `,label=value` for each label, in the order given).
    pub fn metric_counter(&self, key: &str) -> u64 {
        self.state
            .borrow()
            .counters_metric
            .get(key)
            .copied()
            .unwrap_or(0)
    }
    /// A histogram metric's observations.
    pub fn metric_histogram(&self, key: &str) -> Vec<f64> {
        self.state
            .borrow()
            .histograms
            .get(key)
            .cloned()
            .unwrap_or_default()
    }
}
