//! Safe wrappers for every host import. On `wasm32` they call the gateway; on the native target they act on
//! the [`crate::testing::TestHost`] whose phase is running (calling them outside a test-host phase panics
//! with a message saying so).
//!
//! Each function's doc says in which phases it may write; a write in another phase returns
//! [`crate::FieldError::NotInThisPhase`] (for the cache, [`crate::StoreError::NotInThisPhase`]).

#[cfg(target_arch = "wasm32")]
use crate::guest::{bindings::sluice::plugin as w, conv};
#[cfg(not(target_arch = "wasm32"))]
use crate::testing::with_host as th;

/// WIT durations are `u64` milliseconds; a `Duration` beyond that saturates rather than wrapping to a tiny TTL.
fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The client request. Writable in `rewrite` and `access`.
pub mod request {
    use super::*;
    use crate::{FieldError, Method};
    use std::net::SocketAddr;

    /// The request method.
    pub fn method() -> Method {
        #[cfg(target_arch = "wasm32")]
        return conv::method_from(w::request::method());
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| h.req.method.clone())
    }
    /// The path without the query.
    pub fn path() -> String {
        #[cfg(target_arch = "wasm32")]
        return w::request::path();
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| h.req.path.clone())
    }
    /// Replaces the path (what the upstream receives).
    pub fn set_path(path: &str) -> Result<(), FieldError> {
        #[cfg(target_arch = "wasm32")]
        return w::request::set_path(path).map_err(conv::field_error);
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| h.set_path(path))
    }
    /// The raw query string without `?`.
    pub fn query() -> Option<String> {
        #[cfg(target_arch = "wasm32")]
        return w::request::query();
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| h.req.query.clone())
    }
    /// Replaces (or with `None` removes) the query string.
    pub fn set_query(query: Option<&str>) -> Result<(), FieldError> {
        #[cfg(target_arch = "wasm32")]
        return w::request::set_query(query).map_err(conv::field_error);
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| h.set_query(query))
    }
    /// First value of a request header.
    pub fn header(name: &str) -> Option<String> {
        #[cfg(target_arch = "wasm32")]
        return w::request::header(name);
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| crate::testing::first(&h.req.headers, name))
    }
    /// All values of a request header.
    pub fn header_values(name: &str) -> Vec<String> {
        #[cfg(target_arch = "wasm32")]
        return w::request::header_values(name);
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| crate::testing::all(&h.req.headers, name))
    }
    /// Every request header in order (names lower-case).
    pub fn headers() -> Vec<(String, String)> {
        #[cfg(target_arch = "wasm32")]
        return conv::headers_from(w::request::headers());
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| h.req.headers.clone())
    }
    /// Replaces every value of a request header.
    pub fn set_header(name: &str, value: &str) -> Result<(), FieldError> {
        #[cfg(target_arch = "wasm32")]
        return w::request::set_header(name, value).map_err(conv::field_error);
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| h.req_header_op(name, Some(value), false).map(|_| ()))
    }
    /// Appends a request header value.
    pub fn append_header(name: &str, value: &str) -> Result<(), FieldError> {
        #[cfg(target_arch = "wasm32")]
        return w::request::append_header(name, value).map_err(conv::field_error);
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| h.req_header_op(name, Some(value), true).map(|_| ()))
    }
    /// Removes a request header; `Ok(true)` if it was present.
    pub fn remove_header(name: &str) -> Result<bool, FieldError> {
        #[cfg(target_arch = "wasm32")]
        return w::request::remove_header(name).map_err(conv::field_error);
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| h.req_header_op(name, None, false))
    }
    /// The client's address.
    pub fn client_addr() -> SocketAddr {
        #[cfg(target_arch = "wasm32")]
        return conv::socket_addr_from(w::request::client_address());
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| h.req.client_addr)
    }
    /// The matched route's id.
    pub fn route_id() -> String {
        #[cfg(target_arch = "wasm32")]
        return w::request::route_id();
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| h.req.route_id.clone())
    }
    /// The authenticated consumer, if any.
    pub fn consumer() -> Option<String> {
        #[cfg(target_arch = "wasm32")]
        return w::request::consumer();
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| h.req.consumer.clone())
    }
    /// Marks the request as authenticated as this consumer (`rewrite`/`access`).
    pub fn set_consumer(username: &str) -> Result<(), FieldError> {
        #[cfg(target_arch = "wasm32")]
        return w::request::set_consumer(username).map_err(conv::field_error);
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| h.set_consumer(username))
    }
    /// Changes the method the upstream receives (`rewrite`/`access`).
    pub fn set_method(method: Method) -> Result<(), FieldError> {
        #[cfg(target_arch = "wasm32")]
        return w::request::set_method(&conv::method_to(&method)).map_err(conv::field_error);
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| h.set_method(method))
    }
    /// An APISIX/nginx variable (`uri`, `arg_<name>`, `http_<name>`, `cookie_<name>`, `consumer_name`,
    /// in response phases `status` and `sent_http_<name>`, ...), resolved by the gateway exactly as route
    /// `vars` are. `None` is lua `nil` (absent), which differs from present-but-empty.
    pub fn var(name: &str) -> Option<String> {
        #[cfg(target_arch = "wasm32")]
        return w::request::var(name);
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| h.var(name))
    }
    /// Holds the request for `ms` milliseconds after this phase returns (`rewrite`/`access`). The wait is a
    /// timer on the gateway, so it costs no thread; calls add up, capped at 60 s.
    pub fn delay(ms: u32) -> Result<(), FieldError> {
        #[cfg(target_arch = "wasm32")]
        return w::request::delay(ms).map_err(conv::field_error);
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| h.delay(ms))
    }
}

/// The response. Status and headers writable in `header_filter`, the body chunk in `body_filter`.
pub mod response {
    use super::*;
    use crate::FieldError;

    /// The response status (`None` before the upstream answered).
    pub fn status() -> Option<u16> {
        #[cfg(target_arch = "wasm32")]
        return w::response::status();
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| h.resp_visible().then_some(h.resp.status))
    }
    /// Changes the status (`header_filter`).
    pub fn set_status(status: u16) -> Result<(), FieldError> {
        #[cfg(target_arch = "wasm32")]
        return w::response::set_status(status).map_err(conv::field_error);
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| h.set_status(status))
    }
    /// First value of a response header.
    pub fn header(name: &str) -> Option<String> {
        #[cfg(target_arch = "wasm32")]
        return w::response::header(name);
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| {
            h.resp_visible()
                .then(|| crate::testing::first(&h.resp.headers, name))
                .flatten()
        })
    }
    /// All values of a response header.
    pub fn header_values(name: &str) -> Vec<String> {
        #[cfg(target_arch = "wasm32")]
        return w::response::header_values(name);
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| {
            if h.resp_visible() {
                crate::testing::all(&h.resp.headers, name)
            } else {
                Vec::new()
            }
        })
    }
    /// Every response header.
    pub fn headers() -> Vec<(String, String)> {
        #[cfg(target_arch = "wasm32")]
        return conv::headers_from(w::response::headers());
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| {
            if h.resp_visible() {
                h.resp.headers.clone()
            } else {
                Vec::new()
            }
        })
    }
    /// Replaces a response header (`header_filter`).
    pub fn set_header(name: &str, value: &str) -> Result<(), FieldError> {
        #[cfg(target_arch = "wasm32")]
        return w::response::set_header(name, value).map_err(conv::field_error);
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| h.resp_header_op(name, Some(value), false).map(|_| ()))
    }
    /// Appends a response header (`header_filter`).
    pub fn append_header(name: &str, value: &str) -> Result<(), FieldError> {
        #[cfg(target_arch = "wasm32")]
        return w::response::append_header(name, value).map_err(conv::field_error);
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| h.resp_header_op(name, Some(value), true).map(|_| ()))
    }
    /// Removes a response header (`header_filter`).
    pub fn remove_header(name: &str) -> Result<bool, FieldError> {
        #[cfg(target_arch = "wasm32")]
        return w::response::remove_header(name).map_err(conv::field_error);
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| h.resp_header_op(name, None, false))
    }
    /// The current body chunk (`body_filter`).
    pub fn body_chunk() -> Option<Vec<u8>> {
        #[cfg(target_arch = "wasm32")]
        return w::response::body_chunk();
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| h.body_chunk())
    }
    /// Replaces the current body chunk (`body_filter`).
    pub fn set_body_chunk(chunk: &[u8]) -> Result<(), FieldError> {
        #[cfg(target_arch = "wasm32")]
        return w::response::set_body_chunk(chunk).map_err(conv::field_error);
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| h.set_body_chunk(chunk))
    }
    /// Whether the current chunk is the last (`body_filter`).
    pub fn end_of_stream() -> bool {
        #[cfg(target_arch = "wasm32")]
        return w::response::end_of_stream();
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| h.phase == crate::Phase::BodyFilter && h.resp.end_of_stream)
    }
    /// `log` only: what the gateway measured once the exchange was over (latencies, sizes, upstream).
    pub fn completion() -> Option<crate::Completion> {
        #[cfg(target_arch = "wasm32")]
        return w::response::completed().map(conv::completion_from);
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| {
            (h.phase == crate::Phase::Log)
                .then(|| h.completion.clone())
                .flatten()
        })
    }
}

/// Per-request key/value context shared between phases and plugins.
pub mod context {
    #[allow(unused_imports)]
    use super::*;

    /// Reads a context value.
    pub fn get(key: &str) -> Option<String> {
        #[cfg(target_arch = "wasm32")]
        return w::context::get(key);
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| h.ctx.get(key).cloned())
    }
    /// Sets a context value.
    pub fn set(key: &str, value: &str) {
        #[cfg(target_arch = "wasm32")]
        return w::context::set(key, value);
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| {
            h.ctx.insert(key.to_string(), value.to_string());
        })
    }
    /// Removes a context value; true if it was there.
    pub fn remove(key: &str) -> bool {
        #[cfg(target_arch = "wasm32")]
        return w::context::remove(key);
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| h.ctx.remove(key).is_some())
    }
}

/// The gateway's consumers, for auth plugins.
pub mod consumers {
    #[allow(unused_imports)]
    use super::*;
    use crate::Consumer;

    /// Finds the consumer whose `plugin` config carries `credential` (key-auth: the key).
    pub fn lookup(plugin: &str, credential: &str) -> Option<Consumer> {
        #[cfg(target_arch = "wasm32")]
        return w::consumers::lookup(plugin, credential).map(|c| Consumer {
            username: c.username,
            plugin_config: c.plugin_config,
            labels: c.labels,
        });
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| {
            h.consumers
                .get(&(plugin.to_string(), credential.to_string()))
                .cloned()
        })
    }
}

/// Counters with fixed time windows in this gateway's memory ([`shared`] has them on a store several
/// gateways share).
pub mod counters {
    #[allow(unused_imports)]
    use super::*;
    use crate::{StoreError, WindowCount};
    use std::time::Duration;

    /// Adds `delta` to counter `key` in a window of length `window`; returns the new count and the time
    /// until the window resets.
    pub fn incr(key: &str, delta: u64, window: Duration) -> Result<WindowCount, StoreError> {
        let window_ms = super::millis(window);
        #[cfg(target_arch = "wasm32")]
        return w::counters::incr(key, delta, window_ms)
            .map(|c| WindowCount {
                count: c.count,
                reset_after: Duration::from_millis(c.reset_after_ms),
            })
            .map_err(conv::store_error);
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| Ok(h.incr(key, delta, window_ms)))
    }
    /// Adds `delta` (may be negative) to the windowless gauge `key` and returns the value after; a gauge
    /// that reaches zero is removed, so `limit-conn` style +1/-1 pairs leave no garbage behind.
    pub fn add(key: &str, delta: i64) -> Result<i64, StoreError> {
        #[cfg(target_arch = "wasm32")]
        return w::counters::add(key, delta).map_err(conv::store_error);
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| Ok(h.gauge_add(key, delta)))
    }
}

/// Counters and values every gateway node sees, in a store the plugin's config names ([`crate::Backend`]:
/// Redis or Redis Cluster, as APISIX's `policy: "redis"` / `"redis-cluster"`). Each call is one atomic round
/// trip, waits at most the backend's timeout (not charged to the phase deadline), and fails with
/// [`crate::StoreError::Unavailable`] when the store cannot be reached or does not answer in time; what to do
/// then (refuse, or fall back to [`counters`]/[`kv`] on this node) is the plugin's choice. Keys are
/// namespaced per plugin by the host. On the native test host every backend is one in-memory store apart
/// from the local ones; [`crate::testing::TestHost::set_shared_unavailable`] makes it fail.
pub mod shared {
    #[allow(unused_imports)]
    use super::*;
    pub use crate::{Backend, Redis, RedisCluster, RedisNode};
    use crate::{StoreError, WindowCount};
    use std::time::Duration;

    /// [`counters::incr`](super::counters::incr) on `backend`.
    pub fn incr(
        backend: &Backend,
        key: &str,
        delta: u64,
        window: Duration,
    ) -> Result<WindowCount, StoreError> {
        let window_ms = super::millis(window);
        #[cfg(target_arch = "wasm32")]
        return w::shared::incr(&conv::backend_to(backend), key, delta, window_ms)
            .map(|c| WindowCount {
                count: c.count,
                reset_after: Duration::from_millis(c.reset_after_ms),
            })
            .map_err(conv::store_error);
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| h.shared_incr(backend, key, delta, window_ms))
    }
    /// [`kv::get`](super::kv::get) on `backend`.
    pub fn get(backend: &Backend, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        #[cfg(target_arch = "wasm32")]
        return w::shared::get(&conv::backend_to(backend), key).map_err(conv::store_error);
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| h.shared_get(backend, key))
    }
    /// [`kv::compare_and_swap`](super::kv::compare_and_swap) on `backend`, atomic on the server.
    pub fn compare_and_swap(
        backend: &Backend,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        let ttl_ms = ttl.map(super::millis);
        #[cfg(target_arch = "wasm32")]
        return w::shared::compare_and_swap(&conv::backend_to(backend), key, expected, new, ttl_ms)
            .map_err(conv::store_error);
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| h.shared_compare_and_swap(backend, key, expected, new, ttl_ms))
    }
}

/// Shared bounded key/value store with TTL.
pub mod kv {
    #[allow(unused_imports)]
    use super::*;
    use crate::StoreError;
    use std::time::Duration;

    /// Reads a value.
    pub fn get(key: &str) -> Option<Vec<u8>> {
        #[cfg(target_arch = "wasm32")]
        return w::kv::get(key);
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| h.kv_get(key))
    }
    /// Stores a value; `ttl` `None` keeps it until evicted.
    pub fn set(key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), StoreError> {
        let ttl_ms = ttl.map(super::millis);
        #[cfg(target_arch = "wasm32")]
        return w::kv::set(key, value, ttl_ms).map_err(conv::store_error);
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| {
            h.kv_set(key, value, ttl_ms);
            Ok(())
        })
    }
    /// Deletes a value; true if it was there.
    pub fn delete(key: &str) -> bool {
        #[cfg(target_arch = "wasm32")]
        return w::kv::delete(key);
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| h.kv_delete(key))
    }
    /// Atomically sets `key` to `new` (for `ttl`) if its value is `expected`, where `None` means absent or
    /// expired; returns whether it was set. A get / compute / compare-and-swap loop builds any atomic state
    /// machine (e.g. a leaky bucket) without a lock.
    pub fn compare_and_swap(
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        let ttl_ms = ttl.map(super::millis);
        #[cfg(target_arch = "wasm32")]
        return w::kv::compare_and_swap(key, expected, new, ttl_ms).map_err(conv::store_error);
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| Ok(h.kv_compare_and_swap(key, expected, new, ttl_ms)))
    }
}

/// Response cache store, bounded in bytes with LRU eviction.
pub mod cache {
    #[allow(unused_imports)]
    use super::*;
    use crate::{Response, StoreError};
    use std::time::Duration;

    /// What [`lookup`] found.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Lookup {
        /// Cached and fresh.
        Hit {
            /// The stored response.
            response: Response,
            /// Time since it was stored (for an `Age` header or revalidation).
            age: Duration,
        },
        /// Not cached; the caller now holds the key's fill lock and should [`store_response`].
        Miss,
        /// Was cached but its TTL ran out; the caller now holds the key's fill lock.
        Expired,
    }

    /// Looks `key` up. Concurrent misses are coalesced: while another request holds the key's fill lock this
    /// waits (on the host, up to `lock_wait` and never past the phase deadline) for that response, then
    /// answers `Hit`, or `Miss` without the lock if the wait ran out. `Miss`/`Expired` make the caller the
    /// filler until it calls [`store_response`] and the body ends, or the request ends.
    pub fn lookup(key: &str, lock_wait: Duration) -> Lookup {
        let lock_wait_ms = u32::try_from(lock_wait.as_millis()).unwrap_or(u32::MAX);
        #[cfg(target_arch = "wasm32")]
        return conv::lookup_from(w::cache::lookup(key, lock_wait_ms));
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| {
            let _ = lock_wait_ms; // One request at a time: the test host never has a fill to wait for.
            h.cache_lookup(key)
        })
    }
    /// `header_filter` only: stores the response being sent under `key` for `ttl` (status and headers as
    /// they are now, the body as it streams to the client), committed when the body ends; dropped if it
    /// exceeds the store's entry size limit or the stream fails. Releases the fill lock either way.
    pub fn store_response(key: &str, ttl: Duration) -> Result<(), StoreError> {
        let ttl_ms = super::millis(ttl);
        #[cfg(target_arch = "wasm32")]
        return w::cache::store_response(key, ttl_ms).map_err(conv::store_error);
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| h.cache_store_response(key, ttl_ms))
    }

    /// A cached response.
    pub fn get(key: &str) -> Option<Response> {
        #[cfg(target_arch = "wasm32")]
        return w::cache::get(key).map(conv::response_from);
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| h.cache_get(key))
    }
    /// Stores a response for `ttl`.
    pub fn put(key: &str, value: &Response, ttl: Duration) -> Result<(), StoreError> {
        let ttl_ms = super::millis(ttl);
        #[cfg(target_arch = "wasm32")]
        return w::cache::put(key, &conv::response_to(value), ttl_ms).map_err(conv::store_error);
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| {
            h.cache_put(key, value, ttl_ms);
            Ok(())
        })
    }
    /// Removes a cached response; true if it was there.
    pub fn purge(key: &str) -> bool {
        #[cfg(target_arch = "wasm32")]
        return w::cache::purge(key);
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| h.cache.remove(key).is_some())
    }
}

/// Cryptographically secure random bytes from the host (request ids, nonces). The guest has no entropy
/// source of its own (`wasm32-unknown-unknown`), so this is the one to use.
pub mod random {
    #[allow(unused_imports)]
    use super::*;

    /// The most bytes the host returns per call; [`fill`] asks in chunks of this size.
    const MAX_PER_CALL: usize = 1024;

    /// `len` random bytes (any length: asked of the host in chunks of at most 1024).
    pub fn fill(len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            // At most 1024, so the cast is lossless.
            let want = (len - out.len()).min(MAX_PER_CALL) as u32;
            #[cfg(target_arch = "wasm32")]
            let chunk = w::random::fill(want);
            #[cfg(not(target_arch = "wasm32"))]
            let chunk = th(|h| h.random_fill(want));
            // A short answer would loop forever; it is a host bug, so say so.
            assert_eq!(
                chunk.len(),
                want as usize,
                "host random.fill returned {} bytes",
                chunk.len()
            );
            out.extend_from_slice(&chunk);
        }
        out
    }
    /// `N` random bytes as an array, e.g. `bytes::<16>()` for a request id.
    pub fn bytes<const N: usize>() -> [u8; N] {
        let mut out = [0u8; N];
        out.copy_from_slice(&fill(N));
        out
    }
}

/// Outbound HTTP calls to upstreams the gateway knows by name.
pub mod http {
    #[allow(unused_imports)]
    use super::*;
    use crate::{OutboundError, OutboundRequest, Response};

    /// Calls the named upstream. The call counts against the phase deadline.
    pub fn call(upstream: &str, request: &OutboundRequest) -> Result<Response, OutboundError> {
        #[cfg(target_arch = "wasm32")]
        return w::http_outbound::call(upstream, &conv::outbound_to(request))
            .map(conv::response_from)
            .map_err(conv::outbound_error);
        #[cfg(not(target_arch = "wasm32"))]
        crate::testing::outbound(upstream, request)
    }
}

/// Logging into the gateway log (tagged with plugin name and route).
pub mod log {
    #[allow(unused_imports)]
    use super::*;
    use crate::Level;

    /// Logs a message.
    pub fn log(level: Level, message: &str) {
        #[cfg(target_arch = "wasm32")]
        return w::logging::log(conv::level_to(level), message);
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| h.logs.push((level, message.to_string())))
    }
    /// Logs at debug level.
    pub fn debug(message: &str) {
        log(Level::Debug, message)
    }
    /// Logs at info level.
    pub fn info(message: &str) {
        log(Level::Info, message)
    }
    /// Logs at warn level.
    pub fn warn(message: &str) {
        log(Level::Warn, message)
    }
    /// Logs at error level.
    pub fn error(message: &str) {
        log(Level::Error, message)
    }
}

/// Plugin metrics (the gateway adds a `plugin` label).
pub mod metrics {
    #[allow(unused_imports)]
    use super::*;

    /// Adds to a counter.
    pub fn counter(name: &str, labels: &[(&str, &str)], delta: u64) {
        #[cfg(target_arch = "wasm32")]
        return w::metrics::counter(name, &conv::labels_to(labels), delta);
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| {
            *h.counters_metric
                .entry(crate::testing::metric_key(name, labels))
                .or_default() += delta
        })
    }
    /// Records a histogram observation.
    pub fn histogram(name: &str, labels: &[(&str, &str)], value: f64) {
        #[cfg(target_arch = "wasm32")]
        return w::metrics::histogram(name, &conv::labels_to(labels), value);
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| {
            h.histograms
                .entry(crate::testing::metric_key(name, labels))
                .or_default()
                .push(value)
        })
    }
}

/// The clock.
pub mod clock {
    #[allow(unused_imports)]
    use super::*;

    /// Wall-clock milliseconds since the Unix epoch.
    pub fn now_unix_ms() -> u64 {
        #[cfg(target_arch = "wasm32")]
        return w::clock::now_unix_ms();
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| h.now_ms)
    }
    /// Monotonic nanoseconds.
    pub fn monotonic_ns() -> u64 {
        #[cfg(target_arch = "wasm32")]
        return w::clock::monotonic_ns();
        #[cfg(not(target_arch = "wasm32"))]
        th(|h| h.now_ms.saturating_mul(1_000_000))
    }
}
