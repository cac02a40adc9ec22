//! Plugin phases around the upstream exchange: `rewrite` and `access` on the request head,
//! `header_filter` on the response head, `log` once the response is done.
//!
//! The request head moves into the plugin-visible [`RequestState`] for the request phases and back out
//! afterwards (headers are moved, not copied), so a route without plugins pays nothing here.

use super::body::ResponseBody;
use super::Conn;
use crate::chain::PluginChain;
use crate::plugin::{Phase, PluginResponse, RequestState, ResponseState};
use http::request::Parts;
use http::{Response, StatusCode};
use std::sync::Arc;

/// The global rules' chain and the route's chain; in each phase the global one runs first.
#[derive(Clone)]
pub struct Chains {
    pub global: Arc<PluginChain>,
    pub route: Arc<PluginChain>,
}

/// A plugin faulted and the request must get a 500.
#[derive(Debug)]
pub struct Faulted;

impl Chains {
    pub fn is_empty(&self) -> bool {
        self.global.is_empty() && self.route.is_empty()
    }

    pub fn implements(&self, phase: Phase) -> bool {
        self.global.implements(phase) || self.route.implements(phase)
    }

    pub fn run(
        &self,
        phase: Phase,
        state: &mut RequestState,
    ) -> Result<Option<PluginResponse>, Faulted> {
        for chain in [&self.global, &self.route] {
            if let Some(r) = chain.run(phase, state).map_err(|_| Faulted)? {
                return Ok(Some(r));
            }
        }
        Ok(None)
    }
}

/// Moves the request head into the state plugins see.
pub fn request_state(parts: &mut Parts, conn: Conn, route_id: &str) -> RequestState {
    RequestState {
        method: parts.method.clone(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: std::mem::take(&mut parts.headers),
        client_addr: conn.client,
        route_id: route_id.to_string(),
        ..RequestState::default()
    }
}

/// Moves what plugins left (headers, path, query) back into the request head.
pub fn apply_request(state: &mut RequestState, parts: &mut Parts) {
    parts.headers = std::mem::take(&mut state.headers);
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
