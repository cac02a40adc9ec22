//! The request path: router → (plugin phases) → upstream → response → access log.
//!
//! [`handle`] is the whole story for one request, read top to bottom. It loads the live snapshot once,
//! so a config change never affects a request already in flight, and every early answer comes from the
//! one table in [`error`].

mod access_log;
mod body;
mod cache_fill;
mod client_body;
mod compress;
mod error;
mod forward;
mod framing;
mod headers;
mod path;
mod phases;
mod trace_context;
mod tunnel;

pub use crate::request_vars::RequestVars;
pub use body::{ResponseBody, UpstreamRequestBody};
pub use error::ProxyError;

use crate::limits::ClientLimits;
use crate::native::compression::{Accepted, Encoding};
use crate::plugin::Phase;
use crate::router::VarSource;
use crate::snapshot::Live;
use crate::upstream::HashOn;
use access_log::{AccessRecord, Logged};
use body::IdleTimeout;
use client_body::ClientBody;
use http::header::{HeaderValue, HOST};
use http::{Request, Response};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::time::Instant;

/// What the proxy needs that outlives a request.
pub struct ProxyState {
    pub live: Arc<Live>,
    /// `None` when `--metrics-listen off`.
    pub metrics: Option<Arc<crate::metrics::HttpMetrics>>,
    /// `None` when `--access-log off`.
    pub access_log: Option<Arc<crate::access_log::AccessLog>>,
    /// `None` unless `--otlp-endpoint` is set: then every request gets spans.
    pub tracer: Option<Arc<crate::otel::Tracer>>,
    pub limits: ClientLimits,
}

/// Per-connection facts.
#[derive(Clone, Copy)]
pub struct Conn {
    pub client: SocketAddr,
    pub local: SocketAddr,
    pub scheme: &'static str,
}

pub type ProxyResponse = Response<Logged>;

/// The Host the client asked for: the `Host` header, or the `:authority` of an HTTP/2 request.
fn client_host(req: &Request<Incoming>) -> Option<HeaderValue> {
    req.headers().get(HOST).cloned().or_else(|| {
        req.uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    })
}

/// The `host` without a port, for matching.
fn host_name(h: &HeaderValue) -> Option<&str> {
    let s = h.to_str().ok()?;
    if s.starts_with('[') {
        return Some(s.split_once(']').map_or(s, |(h, _)| &s[..h.len() + 1]));
    }
    Some(s.rsplit_once(':').map_or(s, |(h, _)| h))
}

/// The bytes `chash` hashes for this request; falls back to the client address, as APISIX does.
fn hash_key(on: &HashOn, vars: &RequestVars<'_>) -> Vec<u8> {
    let found = match on {
        HashOn::Vars(name) => vars.var(name).map(|v| v.into_owned()),
        HashOn::Header(name) => vars
            .headers
            .get(name.as_str())
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        HashOn::Cookie(name) => vars.var(&format!("cookie_{name}")).map(|v| v.into_owned()),
        HashOn::Consumer => None,
        HashOn::VarsCombinations(template) => Some(expand_template(template, vars)),
    };
    found
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| vars.client.ip().to_string())
        .into_bytes()
}

/// Replaces each `$name` in `template` with that request variable (empty when unset).
fn expand_template(template: &str, vars: &RequestVars<'_>) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        if let Some(v) = vars.var(&after[..end]) {
            out.push_str(&v);
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// What the head alone already refuses, before routing: framing a proxy must not forward, and heads over
/// the URI, header-count or head-size limits.
fn refused_head(parts: &http::request::Parts, limits: &ClientLimits) -> Option<ProxyError> {
    if framing::is_ambiguous(parts) {
        return Some(ProxyError::AmbiguousFraming);
    }
    let uri_len = parts.uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    if uri_len > limits.max_uri_bytes {
        return Some(ProxyError::UriTooLong);
    }
    if parts.headers.len() > limits.max_headers {
        return Some(ProxyError::TooManyHeaders);
    }
    // HTTP/2 header lists are bounded by the h2 layer (SETTINGS_MAX_HEADER_LIST_SIZE).
    if parts.version < http::Version::HTTP_2 && head_size(parts, uri_len) > limits.max_head_bytes {
        return Some(ProxyError::HeadTooLarge);
    }
    None
}

/// The size of an HTTP/1.1 head as written without optional whitespace: request line, `name: value` lines,
/// blank line. hyper refuses heads that overflow its read buffer, which is sized to the limit, but the
/// buffer may grow a little past it; this makes the boundary exact.
fn head_size(parts: &http::request::Parts, uri_len: usize) -> usize {
    let request_line = parts.method.as_str().len() + 1 + uri_len + " HTTP/1.1\r\n".len();
    let fields: usize = parts
        .headers
        .iter()
        .map(|(n, v)| n.as_str().len() + 2 + v.len() + 2)
        .sum();
    request_line + fields + 2
}

/// Rewrites the URI to its normalised path (query kept), so routing and the upstream see one path.
fn normalize_path(uri: &mut http::Uri) -> Result<(), path::EscapesRoot> {
    let normalized = match path::normalize(uri.path())? {
        std::borrow::Cow::Borrowed(_) => return Ok(()),
        std::borrow::Cow::Owned(p) => p,
    };
    let rebuilt = match uri.query() {
        Some(q) => format!("{normalized}?{q}"),
        None => normalized,
    };
    *uri = rebuilt.parse().map_err(|_| path::EscapesRoot)?;
    Ok(())
}

pub async fn handle(state: Arc<ProxyState>, conn: Conn, req: Request<Incoming>) -> ProxyResponse {
    let started = Instant::now();
    let snapshot = state.live.load();
    let host = client_host(&req);
    let (mut parts, body) = req.into_parts();
    let mut record = AccessRecord {
        started,
        client: conn.client,
        scheme: conn.scheme,
        method: parts.method.clone(),
        uri: parts.uri.clone(),
        host: host.clone(),
        version: parts.version,
        request_headers: http::HeaderMap::new(),
        route_id: None,
        service_id: None,
        consumer: None,
        upstream: None,
        upstream_status: None,
        upstream_latency: None,
        upstream_connect: None,
        request_bytes: hyper::body::Body::size_hint(&body).exact().unwrap_or(0),
        status: http::StatusCode::OK,
        response_headers: http::HeaderMap::new(),
        metrics: state.metrics.clone(),
        access_log: state.access_log.clone(),
        span: state.tracer.as_ref().map(|t| request_span(t, conn, &parts)),
    };
    if record.keeps_headers() {
        record.request_headers = parts.headers.clone();
    }
    if let Some(refused) = refused_head(&parts, &state.limits) {
        return local(refused, record);
    }
    if normalize_path(&mut parts.uri).is_err() {
        return local(ProxyError::BadPath, record);
    }

    // router
    let vars = RequestVars::new(&parts, conn, host.as_ref().and_then(host_name));
    let Some(route) = snapshot
        .router
        .find(&parts.method, vars.host, parts.uri.path(), &vars)
    else {
        return local(ProxyError::RouteNotFound, record);
    };
    record.route_id = Some(route.id.clone());
    record.service_id.clone_from(&route.service_id);
    let body_limit = route
        .native
        .max_body_size
        .unwrap_or(state.limits.max_body_bytes);
    // An announced length over the limit is refused before any plugin or upstream sees the request.
    if hyper::body::Body::size_hint(&body).lower() > body_limit {
        return local(ProxyError::BodyTooLarge, record);
    }
    let body = ClientBody::new(body, body_limit);
    let encode = route
        .native
        .compression
        .as_ref()
        .filter(|_| parts.method != http::Method::HEAD)
        .and_then(|c| c.choose(Accepted::parse(&parts.headers), parts.version));
    if let Some(span) = &record.span {
        span.rename(format!("{} {}", parts.method, route.id));
        span.set("sluice.route_id", route.id.clone());
    }

    // request phases: rewrite, access
    let mut plugin_state = None;
    let mut host_override = None;
    // Routes without plugins skip the plugin state entirely (no Arc clones, no header moves).
    if !snapshot.global_chain.is_empty() || !route.chain.is_empty() {
        let chains = phases::Chains {
            global: Arc::clone(&snapshot.global_chain),
            route: Arc::clone(&route.chain),
            trace: record.span.clone(),
        };
        let mut st = phases::request_state(
            &mut parts,
            conn,
            host.as_ref().and_then(host_name),
            &route.id,
        );
        for phase in [Phase::Rewrite, Phase::Access] {
            let ran = chains.run(phase, &mut st);
            // `request.delay` (limit-req, limit-conn): a timer, no thread or instance held.
            let delay = std::mem::take(&mut st.delay);
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            match ran {
                Ok(None) => {}
                Ok(Some(r)) => {
                    return respond(
                        phases::plugin_response(r),
                        record,
                        Some((chains, st)),
                        encode,
                    );
                }
                Err(phases::Faulted) => {
                    return respond(
                        ProxyError::PluginFailed.to_response(),
                        record,
                        Some((chains, st)),
                        encode,
                    );
                }
            }
        }
        phases::apply_request(&chains, &mut st, &mut parts);
        // A plugin that set `Host` (proxy-rewrite `host`) overrides the upstream's `pass_host`.
        if parts.headers.get(HOST) != host.as_ref() {
            host_override = parts.headers.get(HOST).cloned();
        }
        plugin_state = Some((chains, st));
    }

    // upstream (traffic-split matches the request as the plugins left it)
    let vars = RequestVars::new(&parts, conn, host.as_ref().and_then(host_name));
    let Some((upstream, timeouts)) = route.upstream_for(&vars) else {
        return respond(
            ProxyError::NoUpstream.to_response(),
            record,
            plugin_state,
            encode,
        );
    };
    let key = upstream.hash_on.as_ref().map(|on| hash_key(on, &vars));
    // A WebSocket route keeps the client's side of the upgrade and asks the upstream to switch too.
    let upgrade = if route.websocket && tunnel::wants_upgrade(&parts) {
        let protocol = parts.headers.get(http::header::UPGRADE).cloned();
        parts
            .extensions
            .remove::<hyper::upgrade::OnUpgrade>()
            .zip(protocol)
    } else {
        None
    };
    headers::strip_hop_by_hop(&mut parts.headers);
    if let Some((_, protocol)) = &upgrade {
        tunnel::ask_upgrade(&mut parts.headers, protocol.clone());
    }
    headers::add_forwarded(
        &mut parts.headers,
        conn.client.ip(),
        conn.scheme,
        host.as_ref(),
    );
    let upstream_span = record.span.as_ref().map(crate::otel::SpanScope::upstream);
    trace_context::propagate(
        &mut parts.headers,
        upstream_span.as_ref().map(crate::otel::SpanScope::ids),
    );
    // Upstreams get origin-form HTTP/1.1 whatever the client spoke.
    parts.version = http::Version::HTTP_11;
    if parts.uri.authority().is_some() {
        if let Some(Ok(uri)) = parts.uri.path_and_query().map(|pq| pq.as_str().parse()) {
            parts.uri = uri;
        }
    }
    let asked = Instant::now();
    let outcome = forward::Forward {
        upstream,
        timeouts,
        hash_key: key.as_deref(),
        client_host: host,
        host_override,
    }
    .run(parts, body)
    .await;
    if let Some(span) = upstream_span {
        end_upstream_span(&span, &outcome);
    }

    // response phases
    let resp = match outcome {
        Ok(ex) => {
            record.upstream = Some(ex.node);
            record.upstream_status = Some(ex.response.status());
            record.upstream_latency = Some(asked.elapsed());
            record.upstream_connect = ex.connect;
            let (mut head, body) = ex.response.into_parts();
            let switching = head.status == http::StatusCode::SWITCHING_PROTOCOLS;
            let upstream_side = head.extensions.remove::<hyper::upgrade::OnUpgrade>();
            match (switching, upgrade, upstream_side) {
                (false, _, _) => {
                    headers::strip_hop_by_hop(&mut head.headers);
                    let body = ResponseBody::Proxied(IdleTimeout::new(body, timeouts.read));
                    Response::from_parts(head, body)
                }
                (true, Some((client_side, protocol)), Some(upstream_side)) => {
                    tunnel::spawn(client_side, upstream_side, timeouts.read);
                    headers::strip_hop_by_hop(&mut head.headers);
                    tunnel::ask_upgrade(&mut head.headers, protocol);
                    Response::from_parts(head, ResponseBody::local(bytes::Bytes::new()))
                }
                // A switch nobody asked for cannot be passed on: the client would be left half-upgraded.
                (true, _, _) => {
                    tracing::warn!(node = %ex.node, "upstream switched protocols unasked");
                    ProxyError::UpstreamFailed.to_response()
                }
            }
        }
        Err(failed) => {
            record.upstream = failed.node;
            failed.error.to_response()
        }
    };
    respond(resp, record, plugin_state, encode)
}

/// The request's `SERVER` span, under the client's trace when it sent a valid `traceparent`.
fn request_span(
    tracer: &crate::otel::Tracer,
    conn: Conn,
    parts: &http::request::Parts,
) -> crate::otel::SpanScope {
    let span = tracer.request(
        trace_context::client_parent(&parts.headers),
        parts.method.to_string(),
    );
    span.set("http.request.method", parts.method.to_string());
    span.set("url.path", parts.uri.path().to_string());
    span.set("url.scheme", conn.scheme);
    span.set("client.address", conn.client.ip().to_string());
    span
}

fn end_upstream_span(
    span: &crate::otel::SpanScope,
    outcome: &Result<forward::Exchanged, forward::Failed>,
) {
    match outcome {
        Ok(ex) => {
            span.set("server.address", ex.node.to_string());
            let status = ex.response.status().as_u16();
            span.set("http.response.status_code", i64::from(status));
            if status >= 500 {
                span.fail(format!("upstream answered {status}"));
            }
        }
        Err(failed) => {
            if let Some(node) = failed.node {
                span.set("server.address", node.to_string());
            }
            span.fail(failed.error.message());
        }
    }
    span.end();
}

/// Finishes a response: `header_filter`, compression (after every plugin has seen the plain body), then
/// the access log and the `log` phase when the body is done.
fn respond(
    resp: Response<ResponseBody>,
    mut record: AccessRecord,
    plugins: Option<(phases::Chains, crate::plugin::RequestState)>,
    encode: Option<&Encoding>,
) -> ProxyResponse {
    let resp = match plugins {
        None => resp,
        Some((chains, mut st)) => {
            record.consumer.clone_from(&st.consumer);
            let resp = if chains.implements(Phase::HeaderFilter) {
                match phases::filter_response(&chains, &mut st, resp) {
                    Ok(r) => r,
                    Err(phases::Faulted) => {
                        let r = ProxyError::PluginFailed.to_response();
                        // Later phases (log) must see what the client got, not the upstream's answer.
                        st.response = Some(crate::plugin::ResponseState::new(
                            r.status(),
                            r.headers().clone(),
                        ));
                        r
                    }
                }
            } else {
                resp
            };
            let resp = match st.cache_store.take() {
                Some(store) if matches!(resp.body(), ResponseBody::Proxied(_)) => resp.map(|b| {
                    ResponseBody::Filling(Box::new(cache_fill::CacheFillBody::new(b, store)))
                }),
                _ => resp,
            };
            if chains.implements(Phase::BodyFilter) || chains.implements(Phase::Log) {
                if st.response.is_none() {
                    st.response = Some(crate::plugin::ResponseState::new(
                        resp.status(),
                        resp.headers().clone(),
                    ));
                }
                let (mut head, body) = resp.into_parts();
                if chains.implements(Phase::BodyFilter) {
                    head.headers.remove(http::header::CONTENT_LENGTH);
                }
                let body = phases::PhasedBody::new(body, chains, st);
                Response::from_parts(head, ResponseBody::Phased(Box::new(body)))
            } else {
                resp
            }
        }
    };
    let resp = match encode {
        Some(e) => compress::maybe(resp, e),
        None => resp,
    };
    record.status = resp.status();
    if record.keeps_headers() {
        record.response_headers = resp.headers().clone();
    }
    let (head, body) = resp.into_parts();
    Response::from_parts(head, Logged::new(body, record))
}

fn local(err: ProxyError, record: AccessRecord) -> ProxyResponse {
    respond(err.to_response(), record, None, None)
}
