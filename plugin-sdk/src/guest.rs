//! wasm32 only: the WIT bindings (the SDK's only `generate!`), the component exports that forward to
//! [`crate::Plugin`], and conversions between binding types and the SDK's types.
use crate::__private::{plugin_name, Exported};
use crate::{Decision, Phase, Plugin};
use std::any::Any;
use std::cell::RefCell;
use std::marker::PhantomData;
use std::rc::Rc;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit/sluice-plugin@0.1.0",
        world: "sluice:plugin/plugin@0.1.0",
        pub_export_macro: true,
        export_macro_name: "export_world",
        default_bindings_module: "::sluice_plugin_sdk::__private::bindings",
    });
}

use bindings::sluice::plugin::types as t;

thread_local! {
    /// Parsed configs by handle. Slots are reused after `release`.
    static CONFIGS: RefCell<Vec<Option<Rc<dyn Any>>>> = const { RefCell::new(Vec::new()) };
}

/// Routes panic messages into the gateway log (wasm32-unknown-unknown has no stderr), so a trap's log line
/// says why, next to the host's backtrace. Installed by the first `info`/`validate*`/`configure` call of an
/// instance (every instance gets `configure` before any phase).
fn install_panic_hook() {
    thread_local! {
        static INSTALLED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    if INSTALLED.with(|i| i.replace(true)) {
        return;
    }
    std::panic::set_hook(Box::new(|info| {
        bindings::sluice::plugin::logging::log(
            bindings::sluice::plugin::logging::Level::Error,
            &format!("plugin panicked: {info}"),
        );
    }));
}

fn config<P: Plugin>(handle: u32) -> Rc<P::Config> {
    let slot = CONFIGS.with(|c| c.borrow().get(handle as usize).cloned().flatten());
    match slot.and_then(|any| any.downcast::<P::Config>().ok()) {
        Some(cfg) => cfg,
        // The host only passes handles `configure` returned in this instance; anything else is a host bug.
        None => panic!("sluice plugin: unknown config handle {handle}"),
    }
}

/// Implements the component's exports for a [`Plugin`]; instantiated by `#[export_plugin]`.
pub struct Adapter<P>(PhantomData<P>);

impl<P: Plugin + Exported> bindings::Guest for Adapter<P> {
    fn info() -> bindings::PluginInfo {
        install_panic_hook();
        bindings::PluginInfo {
            name: plugin_name::<P>().to_string(),
            version: P::CRATE_VERSION.to_string(),
            priority: P::PRIORITY,
            phases: P::PHASES.iter().map(|p| phase_to(*p)).collect(),
            consumer_credential: P::CONSUMER_CREDENTIAL.map(str::to_string),
        }
    }

    fn validate(config: String) -> Result<(), String> {
        install_panic_hook();
        crate::parse_config::<P>(&config).map(|_| ())
    }

    fn validate_consumer(config: String) -> Result<(), String> {
        install_panic_hook();
        P::validate_consumer(&config)
    }

    fn configure(config: String) -> Result<u32, String> {
        install_panic_hook();
        let cfg: Rc<dyn Any> = Rc::new(crate::parse_config::<P>(&config)?);
        CONFIGS.with(|c| {
            let mut slots = c.borrow_mut();
            if let Some(i) = slots.iter().position(Option::is_none) {
                slots[i] = Some(cfg);
                Ok(i as u32)
            } else {
                slots.push(Some(cfg));
                Ok((slots.len() - 1) as u32)
            }
        })
    }

    fn release(handle: u32) {
        CONFIGS.with(|c| {
            if let Some(slot) = c.borrow_mut().get_mut(handle as usize) {
                *slot = None;
            }
        })
    }

    fn rewrite(handle: u32) -> bindings::Decision {
        decision_to(P::rewrite(&config::<P>(handle)))
    }
    fn access(handle: u32) -> bindings::Decision {
        decision_to(P::access(&config::<P>(handle)))
    }
    fn header_filter(handle: u32) -> bindings::Decision {
        decision_to(P::header_filter(&config::<P>(handle)))
    }
    fn body_filter(handle: u32) -> bindings::Decision {
        P::body_filter(&config::<P>(handle));
        bindings::Decision::Continue
    }
    fn log(handle: u32) -> bindings::Decision {
        P::log(&config::<P>(handle));
        bindings::Decision::Continue
    }
}

fn phase_to(p: Phase) -> t::Phase {
    match p {
        Phase::Rewrite => t::Phase::Rewrite,
        Phase::Access => t::Phase::Access,
        Phase::HeaderFilter => t::Phase::HeaderFilter,
        Phase::BodyFilter => t::Phase::BodyFilter,
        Phase::Log => t::Phase::Log,
    }
}

fn decision_to(d: Decision) -> bindings::Decision {
    match d {
        Decision::Continue => bindings::Decision::Continue,
        Decision::Respond(r) => bindings::Decision::Respond(conv::response_to(&r)),
    }
}

/// Conversions between binding types and SDK types.
pub mod conv {
    use super::bindings::sluice::plugin::{
        cache, http_outbound as ho, log_sink as ls, logging, response as rsp, shared, types as t,
    };
    use crate::cache::Lookup;
    use crate::{
        BatchPolicy, Completion, ConcatMethod, Destination, FieldError, Level, Method,
        OutboundError, OutboundRequest, Response, SinkError, StoreError,
    };
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

    pub fn method_from(m: t::HttpMethod) -> Method {
        match m {
            t::HttpMethod::Get => Method::Get,
            t::HttpMethod::Head => Method::Head,
            t::HttpMethod::Post => Method::Post,
            t::HttpMethod::Put => Method::Put,
            t::HttpMethod::Delete => Method::Delete,
            t::HttpMethod::Patch => Method::Patch,
            t::HttpMethod::Options => Method::Options,
            t::HttpMethod::Connect => Method::Connect,
            t::HttpMethod::Trace => Method::Trace,
            t::HttpMethod::Other(s) => Method::Other(s),
        }
    }
    pub fn method_to(m: &Method) -> t::HttpMethod {
        match m {
            Method::Get => t::HttpMethod::Get,
            Method::Head => t::HttpMethod::Head,
            Method::Post => t::HttpMethod::Post,
            Method::Put => t::HttpMethod::Put,
            Method::Delete => t::HttpMethod::Delete,
            Method::Patch => t::HttpMethod::Patch,
            Method::Options => t::HttpMethod::Options,
            Method::Connect => t::HttpMethod::Connect,
            Method::Trace => t::HttpMethod::Trace,
            Method::Other(s) => t::HttpMethod::Other(s.clone()),
        }
    }
    pub fn field_error(e: t::FieldError) -> FieldError {
        match e {
            t::FieldError::InvalidName => FieldError::InvalidName,
            t::FieldError::InvalidValue => FieldError::InvalidValue,
            t::FieldError::NotInThisPhase => FieldError::NotInThisPhase,
        }
    }
    pub fn backend_to(b: &crate::Backend) -> shared::Backend {
        let node = |n: &crate::RedisNode| shared::RedisNode {
            host: n.host.clone(),
            port: n.port,
        };
        let ms = |d: std::time::Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
        match b {
            crate::Backend::Redis(r) => shared::Backend::Redis(shared::Redis {
                node: node(&r.node),
                username: r.username.clone(),
                password: r.password.clone(),
                database: r.database,
                timeout_ms: ms(r.timeout),
            }),
            crate::Backend::RedisCluster(c) => {
                shared::Backend::RedisCluster(shared::RedisCluster {
                    nodes: c.nodes.iter().map(node).collect(),
                    username: c.username.clone(),
                    password: c.password.clone(),
                    timeout_ms: ms(c.timeout),
                })
            }
        }
    }
    pub fn store_error(e: t::StoreError) -> StoreError {
        match e {
            t::StoreError::Unavailable(m) => StoreError::Unavailable(m),
            t::StoreError::TooLarge => StoreError::TooLarge,
            t::StoreError::NotInThisPhase => StoreError::NotInThisPhase,
        }
    }
    pub fn outbound_error(e: ho::OutboundError) -> OutboundError {
        match e {
            ho::OutboundError::UnknownUpstream(u) => OutboundError::UnknownUpstream(u),
            ho::OutboundError::InvalidRequest(m) => OutboundError::InvalidRequest(m),
            ho::OutboundError::ConnectFailed(m) => OutboundError::ConnectFailed(m),
            ho::OutboundError::Timeout => OutboundError::Timeout,
            ho::OutboundError::BadResponse(m) => OutboundError::BadResponse(m),
        }
    }
    pub fn headers_from(h: Vec<t::HeaderField>) -> Vec<(String, String)> {
        h.into_iter().map(|h| (h.name, h.value)).collect()
    }
    fn headers_to(h: &[(String, String)]) -> Vec<t::HeaderField> {
        h.iter()
            .map(|(n, v)| t::HeaderField {
                name: n.clone(),
                value: v.clone(),
            })
            .collect()
    }
    pub fn response_from(r: t::Response) -> Response {
        Response {
            status: r.status,
            headers: headers_from(r.headers),
            body: r.body,
        }
    }
    pub fn response_to(r: &Response) -> t::Response {
        t::Response {
            status: r.status,
            headers: headers_to(&r.headers),
            body: r.body.clone(),
        }
    }
    pub fn lookup_from(l: cache::LookupResult) -> Lookup {
        match l {
            cache::LookupResult::Hit(c) => Lookup::Hit {
                response: response_from(c.response),
                age: std::time::Duration::from_millis(c.age_ms),
            },
            cache::LookupResult::Miss => Lookup::Miss,
            cache::LookupResult::Expired => Lookup::Expired,
        }
    }
    pub fn outbound_to(r: &OutboundRequest) -> ho::OutboundRequest {
        ho::OutboundRequest {
            method: method_to(&r.method),
            path_with_query: r.path_with_query.clone(),
            headers: headers_to(&r.headers),
            body: r.body.clone(),
            timeout_ms: r
                .timeout
                .map(|d| u32::try_from(d.as_millis()).unwrap_or(u32::MAX)),
        }
    }
    pub fn socket_addr_from(a: t::SocketAddress) -> SocketAddr {
        let ip = match a.ip {
            t::IpAddress::V4((a, b, c, d)) => IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
            t::IpAddress::V6((a, b, c, d, e, f, g, h)) => {
                IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h))
            }
        };
        SocketAddr::new(ip, a.port)
    }
    pub fn level_to(l: Level) -> logging::Level {
        match l {
            Level::Trace => logging::Level::Trace,
            Level::Debug => logging::Level::Debug,
            Level::Info => logging::Level::Info,
            Level::Warn => logging::Level::Warn,
            Level::Error => logging::Level::Error,
        }
    }
    pub fn completion_from(c: rsp::Completion) -> Completion {
        use std::time::Duration;
        Completion {
            started_unix_ms: c.started_unix_ms,
            latency: Duration::from_micros(c.latency_us),
            upstream_latency: c.upstream_latency_us.map(Duration::from_micros),
            upstream_addr: c.upstream_address.map(socket_addr_from),
            request_body_bytes: c.request_body_bytes,
            response_body_bytes: c.response_body_bytes,
            complete: c.complete,
            service_id: c.service_id,
        }
    }
    fn ms32(d: std::time::Duration) -> u32 {
        u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
    }
    pub fn destination_to(d: &Destination) -> ls::Destination {
        match d {
            Destination::Http {
                uri,
                auth_header,
                timeout,
                concat,
            } => ls::Destination::Http(ls::HttpDestination {
                uri: uri.clone(),
                auth_header: auth_header.clone(),
                timeout_ms: ms32(*timeout),
                concat: match concat {
                    ConcatMethod::Json => ls::ConcatMethod::Json,
                    ConcatMethod::NewLine => ls::ConcatMethod::NewLine,
                },
            }),
            Destination::File(path) => ls::Destination::File(path.clone()),
        }
    }
    pub fn policy_to(p: &BatchPolicy) -> ls::BatchPolicy {
        ls::BatchPolicy {
            max_size: p.max_size,
            inactive_timeout_ms: ms32(p.inactive_timeout),
            buffer_duration_ms: ms32(p.buffer_duration),
            max_retry_count: p.max_retry_count,
            retry_delay_ms: ms32(p.retry_delay),
        }
    }
    pub fn sink_error_from(e: ls::SinkError) -> SinkError {
        match e {
            ls::SinkError::Invalid(m) => SinkError::Invalid(m),
            ls::SinkError::QueueFull => SinkError::QueueFull,
        }
    }
    pub fn labels_to(l: &[(&str, &str)]) -> Vec<t::Label> {
        l.iter()
            .map(|(n, v)| t::Label {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect()
    }
}
