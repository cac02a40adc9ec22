//! `GET /apisix/admin/healthcheck` and `GET /apisix/admin/healthcheck/{kind}/{id}`: node health of every
//! upstream that has `checks`.
//!
//! APISIX serves this on its control API (`/v1/healthcheck`, `/v1/healthcheck/upstreams/{id}`). Sluice has
//! no control listener, so it lives on the admin listener behind the admin key: node addresses and failure
//! details are operational data not meant for the proxy port. `{kind}` is `upstreams`, `routes` or
//! `services` (inline upstreams are named after their owner), and the reply shape follows APISIX's
//! (`name`, `type`, `nodes[].status`, `nodes[].counter`) plus `last_check`.

use super::{AdminError, AdminState};
use axum::extract::{Path, State};
use axum::Json;
use serde_json::Value;
use std::sync::Arc;

pub async fn list(State(state): State<Arc<AdminState>>) -> Json<Value> {
    let snapshot = state.live.load();
    let mut reports: Vec<(String, Value)> = snapshot
        .upstream_runtimes()
        .filter_map(|(name, rt)| rt.health_report().map(|r| (name.to_string(), r)))
        .collect();
    reports.sort_by(|a, b| a.0.cmp(&b.0));
    Json(Value::Array(reports.into_iter().map(|(_, r)| r).collect()))
}

pub async fn one(
    State(state): State<Arc<AdminState>>,
    Path((kind, id)): Path<(String, String)>,
) -> Result<Json<Value>, AdminError> {
    let name = format!("{kind}/{id}");
    let snapshot = state.live.load();
    let runtime = snapshot
        .upstream_runtimes()
        .find(|(n, _)| *n == name)
        .map(|(_, rt)| rt);
    match runtime.and_then(|rt| rt.health_report()) {
        Some(report) => Ok(Json(report)),
        None => Err(AdminError::not_found(format!(
            "no health checks for {name}: unknown, or it has no `checks`"
        ))),
    }
}
