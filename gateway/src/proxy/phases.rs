//! Plugin phases around the upstream exchange: `rewrite` and `access` on the request head,
//! `header_filter` on the response head, `log` once the response is done.
//!
//! The request head moves into the plugin-visible [`RequestState`] for the request phases and back out
//! afterwards (headers are moved, not copied), so a route without plugins pays nothing here.

use super::body::ResponseBody;
use super::Conn;
use crate::chain::PluginChain;
use crate::otel::SpanScope;
use crate::plugin::{Phase, PluginResponse, RequestState, ResponseState};
use http::header::{HeaderName, HeaderValue};
use http::request::Parts;
use http::{Response, StatusCode};
use std::sync::Arc;

/// The global rules' chain and the route's chain; in each phase the global one runs first.
#[derive(Clone)]
pub struct Chains {
    pub global: Arc<PluginChain>,
    pub route: Arc<PluginChain>,
    /// The request's span when spans are exported: each phase gets a child span (but `body_filter`,
    /// which runs per chunk).
    pub trace: Option<SpanScope>,
}

/// A plugin faulted and the request must get a 500.
#[derive(Debug)]
pub struct Faulted;

impl Chains {
    pub fn implements(&self, phase: Phase) -> bool {
        self.global.implements(phase) || self.route.implements(phase)
    }

    pub fn run(
        &self,
        phase: Phase,
        state: &mut RequestState,
    ) -> Result<Option<PluginResponse>, Faulted> {
        let span = match &self.trace {
            Some(t) if phase != Phase::BodyFilter && self.implements(phase) => Some(t.phase(phase)),
            _ => None,
        };
        let ran = self.run_chains(phase, state, span.as_ref());
        if let Some(span) = span {
            if ran.is_err() {
                span.fail("plugin fault");
            }
            span.end();
        }
        ran
    }

    fn run_chains(
        &self,
        phase: Phase,
        state: &mut RequestState,
        span: Option<&SpanScope>,
    ) -> Result<Option<PluginResponse>, Faulted> {
        for chain in [&self.global, &self.route] {
            if let Some(r) = chain.run(phase, state, span).map_err(|_| Faulted)? {
                return Ok(Some(r));
            }
        }
        Ok(None)
    }
}

/// Moves the request head into the state plugins see.
pub fn request_state(
    parts: &mut Parts,
    conn: Conn,
    host: Option<&str>,
    route_id: &str,
) -> RequestState {
    RequestState {
        method: parts.method.clone(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: std::mem::take(&mut parts.headers),
        version: parts.version,
        host: host.map(str::to_string),
        client_addr: conn.client,
        local_addr: conn.local,
        scheme: conn.scheme,
        route_id: route_id.to_string(),
        ..RequestState::default()
    }
}

static X_CONSUMER_USERNAME: HeaderName = HeaderName::from_static("x-consumer-username");

/// Moves what plugins left (method, headers, path, query, consumer) back into the request head.
///
/// The headers are copied instead of moved when a response phase will run, since plugins read request
/// headers there too (proxy-cache's `no_cache: ["$http_x_no_cache"]`); chains with request phases only
/// keep the cheaper move. The consumer an auth plugin matched reaches the upstream as
/// `X-Consumer-Username` (as in APISIX), replacing any the client sent.
pub fn apply_request(chains: &Chains, state: &mut RequestState, parts: &mut Parts) {
    parts.method = state.method.clone();
    let later = [Phase::HeaderFilter, Phase::BodyFilter, Phase::Log];
    parts.headers = if later.into_iter().any(|p| chains.implements(p)) {
        state.headers.clone()
    } else {
        std::mem::take(&mut state.headers)
    };
    if let Some(v) = state
        .consumer
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
    {
        parts.headers.insert(X_CONSUMER_USERNAME.clone(), v);
    }
    let changed = parts.uri.path() != state.path || parts.uri.query() != state.query.as_deref();
    if changed {
        let pq = match &state.query {
            Some(q) if !q.is_empty() => format!("{}?{q}", state.path),
            _ => state.path.clone(),
        };
        match pq.parse() {
            Ok(uri) => parts.uri = uri,
            Err(_) => tracing::warn!(path = %state.path, "plugin set an invalid path; ignored"),
        }
    }
}

/// A response a plugin produced (`respond`).
pub fn plugin_response(r: PluginResponse) -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::local(r.body));
    *resp.status_mut() = r.status;
    *resp.headers_mut() = r.headers;
    resp
}

/// Runs `header_filter` over a response head; a plugin may change status and headers or replace the
/// response entirely.
pub fn filter_response(
    chains: &Chains,
    state: &mut RequestState,
    resp: Response<ResponseBody>,
) -> Result<Response<ResponseBody>, Faulted> {
    let (mut head, body) = resp.into_parts();
    state.response = Some(ResponseState::new(
        head.status,
        std::mem::take(&mut head.headers),
    ));
    let replaced = chains.run(Phase::HeaderFilter, state)?;
    let after = state.response.as_mut();
    if let Some(r) = replaced {
        if let Some(s) = after {
            s.status = r.status;
            s.headers = r.headers.clone();
        }
        return Ok(plugin_response(r));
    }
    match after {
        Some(s) => {
            head.status = s.status;
            head.headers = s.headers.clone();
        }
        None => head.status = StatusCode::INTERNAL_SERVER_ERROR,
    }
    Ok(Response::from_parts(head, body))
}

/// A response body that runs `body_filter` on each data chunk and the `log` phase when the response is over
/// ([`PhasedBody::finish`], after the last byte went out or the client went away).
///
/// Holds the request's plugin state for the rest of the exchange, so `log` sees what every earlier phase
/// left in the context. With `body_filter` active the length may change, so the caller drops
/// `Content-Length` and the body advertises no exact size.
pub struct PhasedBody {
    inner: ResponseBody,
    chains: Chains,
    state: RequestState,
    filter: bool,
    /// `body_filter` has seen the end of the stream (so it runs exactly once with `end_of_stream`).
    filtered_end: bool,
    /// `log` has run.
    logged: bool,
}

impl PhasedBody {
    pub fn new(inner: ResponseBody, chains: Chains, state: RequestState) -> Self {
        let filter = chains.implements(Phase::BodyFilter);
        PhasedBody {
            inner,
            chains,
            state,
            filter,
            filtered_end: false,
            logged: false,
        }
    }

    /// Runs `log` with the finished exchange's figures (called once the response is over).
    pub fn finish(&mut self, completion: crate::plugin::Completion) {
        self.state.completion = Some(completion);
        self.run_log();
    }

    fn run_log(&mut self) {
        if !self.logged && self.chains.implements(Phase::Log) {
            let _ = self.chains.run(Phase::Log, &mut self.state);
        }
        self.logged = true;
    }

    /// Passes one chunk through `body_filter`; the plugins may replace it.
    fn filter_chunk(&mut self, chunk: bytes::Bytes, end: bool) -> Result<bytes::Bytes, Faulted> {
        let Some(resp) = self.state.response.as_mut() else {
            return Ok(chunk);
        };
        resp.body_chunk = Some(chunk);
        resp.end_of_stream = end;
        self.chains.run(Phase::BodyFilter, &mut self.state)?;
        Ok(self
            .state
            .response
            .as_mut()
            .and_then(|r| r.body_chunk.take())
            .unwrap_or_default())
    }
}

impl http_body::Body for PhasedBody {
    type Data = bytes::Bytes;
    type Error = super::body::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        use std::task::Poll;
        let this = &mut *self;
        let polled = std::pin::Pin::new(&mut this.inner).poll_frame(cx);
        if !this.filter {
            return polled;
        }
        match polled {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => {
                    let end = http_body::Body::is_end_stream(&this.inner);
                    this.filtered_end |= end;
                    match this.filter_chunk(data, end) {
                        Ok(out) => Poll::Ready(Some(Ok(http_body::Frame::data(out)))),
                        // The head is already sent: all we can do is cut the stream.
                        Err(Faulted) => Poll::Ready(Some(Err("body_filter plugin failed".into()))),
                    }
                }
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            // Chunked and close-delimited bodies only say "done" after the last chunk: give the
            // plugins one final, empty chunk marked as the end, so buffering filters can flush.
            Poll::Ready(None) if !this.filtered_end => {
                this.filtered_end = true;
                match this.filter_chunk(bytes::Bytes::new(), true) {
                    Ok(out) if !out.is_empty() => {
                        Poll::Ready(Some(Ok(http_body::Frame::data(out))))
                    }
                    Ok(_) => Poll::Ready(None),
                    Err(Faulted) => Poll::Ready(Some(Err("body_filter plugin failed".into()))),
                }
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        // With `body_filter` active the stream is not over until the filters saw its end: an empty
        // upstream body must still reach them once (a filter may replace it with a whole body).
        self.inner.is_end_stream() && (!self.filter || self.filtered_end)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        if self.filter {
            http_body::SizeHint::default()
        } else {
            self.inner.size_hint()
        }
    }
}

impl Drop for PhasedBody {
    /// `log` runs from [`PhasedBody::finish`]; this only covers a body dropped without it.
    fn drop(&mut self) {
        self.run_log();
    }
}
