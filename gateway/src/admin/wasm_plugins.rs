//! `/apisix/admin/wasm_plugins`: upload, describe and remove plugin binaries, with no restart.
//!
//! An upload is checked and compiled off the async workers, then every config that already names the
//! plugin is validated against the new version, and only then is it stored and swapped in (validated
//! again if another node changed the configuration meanwhile). Requests in
//! flight keep the version their snapshot holds; new requests get the new one.

use super::write::{build_candidate, retrying, store_failed, Failure};
use super::{AdminError, AdminState};
use crate::catalog::split_meta;
use crate::config::ResourceKind;
use crate::plugin::LoadedPlugin;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

type AdminResult = Result<Response, AdminError>;

fn check_name(name: &str) -> Result<(), AdminError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(AdminError::bad_request(format!(
            "invalid plugin name {name:?}: use 1 to 64 characters of [a-z0-9-_]"
        )))
    }
}

fn describe_plugin(p: &LoadedPlugin) -> Value {
    let info = p.info();
    json!({
        "name": p.name(),
        "sha256": p.sha256(),
        "size": p.size(),
        "phases": info.phases.iter().map(|ph| ph.as_str()).collect::<Vec<_>>(),
        "priority": info.priority,
        "version": info.version,
        "plugin_name": info.name,
        "upload_time": p.loaded_at().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        "compiled_from_cache": p.loaded_from_cache(),
    })
}

/// Objects whose `plugins` map names `name`, with that entry's config.
fn users(state: &AdminState, name: &str) -> Vec<(ResourceKind, String, Value)> {
    let snapshot = state.live.load();
    let kinds = [
        ResourceKind::Routes,
        ResourceKind::Services,
        ResourceKind::GlobalRules,
        ResourceKind::PluginConfigs,
        ResourceKind::Consumers,
    ];
    let mut out = Vec::new();
    for kind in kinds {
        for (id, v) in snapshot.config.objects(kind) {
            if let Some(conf) = v.get("plugins").and_then(|p| p.get(name)) {
                out.push((kind, id.clone(), conf.clone()));
            }
        }
    }
    out
}

pub async fn upload(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> AdminResult {
    check_name(&name)?;
    if state.catalog.is_builtin(&name) {
        return Err(AdminError {
            status: StatusCode::CONFLICT,
            msg: format!(
                "{name:?} is a built-in plugin; upload your version under another name and use that name in `plugins`"
            ),
        });
    }
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("");
        if !(ct.starts_with("application/wasm") || ct.starts_with("application/octet-stream")) {
            return Err(AdminError::bad_request(format!(
                "Content-Type must be application/wasm, got {ct:?}"
            )));
        }
    }
    // On its own task, so a client that disconnects cannot stop the swap between "installed" and
    // "stored" (see `write::commit`).
    let state = Arc::clone(&state);
    tokio::spawn(async move { install(&state, name, body).await })
        .await
        .map_err(|e| AdminError::internal(format!("the upload task failed: {e}")))?
}

async fn install(state: &AdminState, name: String, body: Bytes) -> AdminResult {
    let catalog = Arc::clone(&state.catalog);
    let (n, bytes) = (name.clone(), body.clone());
    let prepared = tokio::task::spawn_blocking(move || catalog.registry().prepare(&n, &bytes))
        .await
        .map_err(|e| AdminError::internal(format!("loading the plugin failed: {e}")))?
        .map_err(|e| AdminError::bad_request(e.to_string()))?;
    retrying(state, || install_prepared(state, &name, &prepared, &body)).await
}

/// Validates every config naming the plugin against the new version, then stores and swaps it in.
async fn install_prepared(
    state: &AdminState,
    name: &str,
    prepared: &Arc<LoadedPlugin>,
    body: &Bytes,
) -> Result<Response, Failure> {
    let _guard = state.write_lock.lock().await;
    for (kind, id, conf) in users(state, name) {
        let (_, json) = split_meta(&conf).map_err(AdminError::bad_request)?;
        let checked = if kind == ResourceKind::Consumers {
            prepared.validate_consumer(&json)
        } else {
            prepared.validate(&json)
        };
        checked.map_err(|e| {
            AdminError::bad_request(format!(
                "the new version rejects the config of {} {id}: plugins.{name}: {e}",
                kind.noun()
            ))
        })?;
    }

    let current = state.live.load();
    let previous = state.catalog.registry().install(Arc::clone(prepared));
    let rollback = |state: &AdminState| match &previous {
        Some(p) => {
            state.catalog.registry().install(Arc::clone(p));
        }
        None => {
            state.catalog.registry().remove(name);
        }
    };
    let next = match build_candidate(state, current.config.clone(), &current).await {
        Ok(n) => n,
        Err(e) => {
            rollback(state);
            return Err(e.into());
        }
    };
    if let Err(e) = state.store.put_plugin(name, body).await {
        rollback(state);
        return Err(store_failed("storing the plugin")(e));
    }
    state.live.store(next);
    tracing::info!(plugin = %name, sha256 = %prepared.sha256(), replaced = previous.is_some(), "wasm plugin installed");
    let status = if previous.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(describe_plugin(prepared))).into_response())
}

pub async fn describe(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> AdminResult {
    let p = state
        .catalog
        .registry()
        .get(&name)
        .ok_or_else(|| AdminError::not_found(format!("wasm plugin {name:?} not found")))?;
    Ok(Json(describe_plugin(&p)).into_response())
}

pub async fn list(State(state): State<Arc<AdminState>>) -> Json<Value> {
    let mut plugins = state.catalog.registry().list();
    plugins.sort_by(|a, b| a.name().cmp(b.name()));
    let list: Vec<Value> = plugins.iter().map(|p| describe_plugin(p)).collect();
    Json(json!({ "total": list.len(), "list": list }))
}

pub async fn remove(State(state): State<Arc<AdminState>>, Path(name): Path<String>) -> AdminResult {
    retrying(&state, || remove_once(&state, &name)).await
}

async fn remove_once(state: &AdminState, name: &str) -> Result<Response, Failure> {
    let _guard = state.write_lock.lock().await;
    if state.catalog.registry().get(name).is_none() {
        return Err(AdminError::not_found(format!("wasm plugin {name:?} not found")).into());
    }
    if let Some((kind, id, _)) = users(state, name).into_iter().next() {
        return Err(AdminError {
            status: StatusCode::CONFLICT,
            msg: format!(
                "wasm plugin {name:?} is in use by {} [{id}]; remove it from there first",
                kind.noun()
            ),
        }
        .into());
    }
    state
        .store
        .delete_plugin(name)
        .await
        .map_err(store_failed("deleting the plugin"))?;
    state.catalog.registry().remove(name);
    Ok(Json(json!({ "deleted": "1", "name": name })).into_response())
}
