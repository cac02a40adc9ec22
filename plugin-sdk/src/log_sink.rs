//! Batched, retried delivery of log entries off the request path (the WIT `log-sink` import), for logger
//! plugins such as `http-logger` and `file-logger`.
//!
//! Open a [`Sink`] once per parsed config (keep it in the config, e.g. in a `OnceCell`) and [`Sink::push`]
//! one entry per request in `log`. `push` only queues: the gateway groups entries into batches by the
//! [`BatchPolicy`], delivers them from its own task and retries failures, so a slow or dead destination
//! never holds a request. Sinks with the same destination and policy are one sink on the gateway (the
//! entries of every instance of the plugin share its batches). Call [`check`] from `Plugin::validate` so
//! that a destination the gateway would refuse is refused at the admin write.
//!
//! [`apisix_entry`] builds the entry APISIX's loggers send, from the request, the response and
//! [`crate::response::completion`].
//!
//! On the native target the [`crate::testing::TestHost`] records what each sink was given
//! ([`crate::testing::TestHost::sink_entries`]).

#[cfg(target_arch = "wasm32")]
use crate::guest::{bindings::sluice::plugin::log_sink as w, conv};
use crate::{BatchPolicy, Destination, SinkError};

/// An open log sink.
#[derive(Debug)]
pub struct Sink {
    #[cfg(target_arch = "wasm32")]
    inner: w::Sink,
    #[cfg(not(target_arch = "wasm32"))]
    index: usize,
}

impl Sink {
    /// Opens the sink for this destination and policy, or joins the one the gateway already has open.
    pub fn open(destination: &Destination, policy: &BatchPolicy) -> Result<Sink, SinkError> {
        #[cfg(target_arch = "wasm32")]
        return w::Sink::open(&conv::destination_to(destination), conv::policy_to(policy))
            .map(|inner| Sink { inner })
            .map_err(conv::sink_error_from);
        #[cfg(not(target_arch = "wasm32"))]
        crate::testing::with_host(|h| h.sink_open(destination, policy)).map(|index| Sink { index })
    }

    /// Queues one entry and returns at once. [`SinkError::QueueFull`] means the entry was dropped because
    /// the destination is slower than the traffic; the gateway counts it, so plugins usually ignore it.
    pub fn push(&self, entry: &str) -> Result<(), SinkError> {
        #[cfg(target_arch = "wasm32")]
        return self.inner.push(entry).map_err(conv::sink_error_from);
        #[cfg(not(target_arch = "wasm32"))]
        crate::testing::with_host(|h| h.sink_push(self.index, entry))
    }
}

/// Checks a destination and policy as [`Sink::open`] would, without opening anything.
pub fn check(destination: &Destination, policy: &BatchPolicy) -> Result<(), SinkError> {
    #[cfg(target_arch = "wasm32")]
    return w::check(&conv::destination_to(destination), conv::policy_to(policy))
        .map_err(conv::sink_error_from);
    #[cfg(not(target_arch = "wasm32"))]
    crate::testing::check_sink(destination, policy)
}

/// `log` only: this request's entry in APISIX's log format, as one line of JSON (see `sluice_log::entry`;
/// the gateway's own access log writes the same format). `None` outside `log`.
pub fn apisix_entry() -> Option<String> {
    use crate::{request, response};
    let done = response::completion()?;
    let req_headers = request::headers();
    let resp_headers = response::headers();
    let method = request::method();
    let scheme = request::var("scheme").unwrap_or_else(|| "http".to_string());
    let host = request::header("host")
        .or_else(|| request::var("host"))
        .unwrap_or_default();
    let path = request::path();
    let query = request::query();
    let route_id = request::route_id();
    let consumer = request::consumer();
    let entry = sluice_log::Entry {
        request: sluice_log::Request {
            method: method.as_str(),
            scheme: &scheme,
            host: &host,
            path: &path,
            query: query.as_deref(),
            headers: &req_headers,
            size: done.request_body_bytes,
        },
        response: sluice_log::Response {
            status: response::status().unwrap_or(0),
            headers: &resp_headers,
            size: done.response_body_bytes,
        },
        upstream: done.upstream_addr,
        latency: done.latency,
        upstream_latency: done.upstream_latency,
        client_ip: request::client_addr().ip(),
        route_id: &route_id,
        service_id: done.service_id.as_deref().unwrap_or(""),
        consumer: consumer.as_deref(),
        start_time_ms: done.started_unix_ms,
        complete: done.complete,
    };
    Some(entry.to_json())
}
