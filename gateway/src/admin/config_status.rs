//! `GET /apisix/admin/cluster/status`: what configuration this node serves, as a digest, so an operator (or
//! a test) can check that every node of a cluster serves what etcd holds.

use super::AdminState;
use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;

pub async fn show(State(state): State<Arc<AdminState>>) -> Json<Value> {
    let snapshot = state.live.load();
    let objects: usize = crate::config::ResourceKind::ALL
        .into_iter()
        .map(|k| snapshot.config.count(k))
        .sum();
    let mut plugins: Vec<Value> = state
        .catalog
        .registry()
        .list()
        .iter()
        .map(|p| json!({"name": p.name(), "sha256": p.sha256()}))
        .collect();
    plugins.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Json(json!({
        // See `ConfigSet::digest` for how it is computed.
        "config_digest": snapshot.config.digest(),
        "objects": objects,
        // The etcd revision the live configuration reflects; null with the embedded store.
        "revision": state.store.revision(),
        "wasm_plugins": plugins,
    }))
}
