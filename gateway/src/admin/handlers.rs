//! HTTP handlers: translate admin requests into [`commit`] calls and APISIX-shaped replies.

use super::write::{commit, Change};
use super::{AdminError, AdminState};
use crate::config::ResourceKind;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

type AdminResult = Result<Response, AdminError>;

fn kind_of(res: &str) -> Result<ResourceKind, AdminError> {
    ResourceKind::from_segment(res).ok_or_else(|| {
        AdminError::not_found(format!(
            "unknown resource {res:?}; expected one of: {}",
            ResourceKind::ALL.map(|k| k.segment()).join(", ")
        ))
    })
}

/// Parses a request body as a JSON object, with a message that points at the syntax error.
fn json_object(body: &Bytes) -> Result<Value, AdminError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| AdminError::bad_request(format!("invalid JSON body: {e}")))?;
    if !v.is_object() {
        return Err(AdminError::bad_request(
            "invalid JSON body: expected a JSON object",
        ));
    }
    Ok(v)
}

fn envelope(kind: ResourceKind, id: &str, value: Value) -> Value {
    json!({ "key": kind.key(id), "value": value })
}

async fn store_put(
    state: &Arc<AdminState>,
    kind: ResourceKind,
    id: &str,
    value: Value,
) -> AdminResult {
    let (stored, existed) = commit(state, kind, id, Change::Put(value)).await?;
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(envelope(kind, id, stored.unwrap_or_default()))).into_response())
}

pub async fn put(
    State(state): State<Arc<AdminState>>,
    Path((res, id)): Path<(String, String)>,
    body: Bytes,
) -> AdminResult {
    let kind = kind_of(&res)?;
    store_put(&state, kind, &id, json_object(&body)?).await
}

/// `PUT /consumers` names the object in the body (`username`), as APISIX v3 allows.
pub async fn put_without_id(
    State(state): State<Arc<AdminState>>,
    Path(res): Path<String>,
    body: Bytes,
) -> AdminResult {
    let kind = kind_of(&res)?;
    let value = json_object(&body)?;
    let field = if kind == ResourceKind::Consumers {
        "username"
    } else {
        "id"
    };
    let id = match value.get(field) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => {
            return Err(AdminError::bad_request(format!(
                "{field}: required in the body when the path has no id"
            )))
        }
    };
    store_put(&state, kind, &id, value).await
}

pub async fn create(
    State(state): State<Arc<AdminState>>,
    Path(res): Path<String>,
    body: Bytes,
) -> AdminResult {
    let kind = kind_of(&res)?;
    if kind == ResourceKind::Consumers {
        return put_without_id(State(state), Path(res), body).await;
    }
    let mut value = json_object(&body)?;
    if value.get("id").is_some() {
        return Err(AdminError::bad_request(
            "id: not allowed in a POST body; use PUT /apisix/admin/<resource>/<id> to choose the id",
        ));
    }
    let id = state.ids.next();
    if let Some(obj) = value.as_object_mut() {
        obj.insert("id".into(), Value::from(id.clone()));
    }
    store_put(&state, kind, &id, value).await
}

pub async fn patch(
    State(state): State<Arc<AdminState>>,
    Path((res, id)): Path<(String, String)>,
    body: Bytes,
) -> AdminResult {
    let kind = kind_of(&res)?;
    let patch = json_object(&body)?;
    let (stored, _) = commit(&state, kind, &id, Change::Patch(patch)).await?;
    Ok(Json(envelope(kind, &id, stored.unwrap_or_default())).into_response())
}

pub async fn delete(
    State(state): State<Arc<AdminState>>,
    Path((res, id)): Path<(String, String)>,
) -> AdminResult {
    let kind = kind_of(&res)?;
    commit(&state, kind, &id, Change::Delete).await?;
    Ok(Json(json!({ "deleted": "1", "key": kind.key(&id) })).into_response())
}

pub async fn get_one(
    State(state): State<Arc<AdminState>>,
    Path((res, id)): Path<(String, String)>,
) -> AdminResult {
    let kind = kind_of(&res)?;
    let snapshot = state.live.load();
    let v = snapshot
        .config
        .get(kind, &id)
        .ok_or_else(|| AdminError::not_found(format!("{} {id:?} not found", kind.noun())))?;
    Ok(Json(envelope(kind, &id, (**v).clone())).into_response())
}

#[derive(Deserialize)]
pub struct Paging {
    page: Option<usize>,
    page_size: Option<usize>,
}

pub async fn list(
    State(state): State<Arc<AdminState>>,
    Path(res): Path<String>,
    Query(paging): Query<Paging>,
) -> AdminResult {
    let kind = kind_of(&res)?;
    let snapshot = state.live.load();
    let total = snapshot.config.count(kind);
    let size = paging.page_size.unwrap_or(usize::MAX).clamp(1, usize::MAX);
    let skip = paging
        .page
        .unwrap_or(1)
        .saturating_sub(1)
        .saturating_mul(size);
    let list: Vec<Value> = snapshot
        .config
        .objects(kind)
        .skip(skip)
        .take(size)
        .map(|(id, v)| envelope(kind, id, (**v).clone()))
        .collect();
    Ok(Json(json!({ "total": total, "list": list })).into_response())
}

pub async fn plugin_list(State(state): State<Arc<AdminState>>) -> Json<Vec<String>> {
    Json(state.catalog.names())
}

pub async fn not_found() -> AdminError {
    AdminError::not_found("not found: admin paths are /apisix/admin/<resource>[/<id>]")
}
