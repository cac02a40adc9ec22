//! The one path every admin write takes: candidate snapshot → durable store → live swap.

use super::{AdminError, AdminState};
use crate::config::{common_check_id, ResourceKind};
use crate::snapshot::{ConfigSet, Snapshot};
use crate::store::{StoreError, StoreOp};
use axum::http::StatusCode;
use serde_json::Value;
use std::future::Future;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Builds (and so fully validates) the snapshot `config` would give, off the async workers: plugin
/// `validate`/`configure` calls and large route sets take real CPU time.
pub async fn build_candidate(
    state: &AdminState,
    config: ConfigSet,
    current: &Arc<Snapshot>,
) -> Result<Snapshot, AdminError> {
    let catalog = Arc::clone(&state.catalog);
    let previous = Arc::clone(current);
    tokio::task::spawn_blocking(move || Snapshot::build(config, Some(&previous), &catalog))
        .await
        .map_err(|e| AdminError::internal(format!("building the configuration failed: {e}")))?
        .map_err(|e| AdminError::bad_request(e.to_string()))
}

/// Why one attempt at a write did not happen.
pub enum Failure {
    /// The answer to the client.
    Refused(AdminError),
    /// Another node wrote first (shared store): validate again against its change.
    Conflict,
}

impl From<AdminError> for Failure {
    fn from(e: AdminError) -> Self {
        Failure::Refused(e)
    }
}

/// Maps a store failure while `doing` something: conflicts are retried, the rest answer the client.
pub fn store_failed(doing: &'static str) -> impl Fn(StoreError) -> Failure {
    move |e| match e {
        StoreError::Conflict => Failure::Conflict,
        other => Failure::Refused(AdminError::from_store(other, doing)),
    }
}

/// How many times a write is validated before giving up on a configuration that keeps changing.
const ATTEMPTS: usize = 3;

/// Runs `attempt` (which takes the write lock itself) until no other node's write beat it, catching up
/// with the store in between so that the next attempt validates against what it will really apply to.
pub async fn retrying<T, F, Fut>(state: &AdminState, mut attempt: F) -> Result<T, AdminError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    for _ in 0..ATTEMPTS {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(Failure::Refused(e)) => return Err(e),
            Err(Failure::Conflict) => state
                .store
                .catch_up()
                .await
                .map_err(|e| AdminError::from_store(e, "catching up with other nodes"))?,
        }
    }
    Err(AdminError {
        status: StatusCode::CONFLICT,
        msg: "the configuration kept changing on other nodes while this write was validated; retry it"
            .into(),
    })
}

#[derive(Clone)]
pub enum Change {
    Put(Value),
    /// A JSON merge patch, applied to the stored object under the write lock so that two concurrent
    /// PATCHes of one object both take effect.
    Patch(Value),
    Delete,
}

/// Fills or checks the id inside the body against the one in the path.
pub fn reconcile_id(kind: ResourceKind, id: &str, value: &mut Value) -> Result<(), AdminError> {
    common_check_id(id).map_err(|e| AdminError::bad_request(e.to_string()))?;
    let field = if kind == ResourceKind::Consumers {
        "username"
    } else {
        "id"
    };
    let Some(obj) = value.as_object_mut() else {
        return Ok(());
    };
    match obj.get(field) {
        None => {
            obj.insert(field.into(), Value::from(id));
        }
        Some(v) => {
            let body_id = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                other => {
                    return Err(AdminError::bad_request(format!(
                        "{field}: expected a string, got {other}"
                    )))
                }
            };
            if body_id != id {
                return Err(AdminError::bad_request(format!(
                    "wrong {field}: the body says {body_id:?} but the path says {id:?}"
                )));
            }
        }
    }
    Ok(())
}

/// The shape checks every stored document passes: id agreement and the resource's schema.
fn checked(kind: ResourceKind, id: &str, mut value: Value) -> Result<Value, AdminError> {
    reconcile_id(kind, id, &mut value)?;
    kind.check_shape(&value)
        .map_err(|e| AdminError::bad_request(e.to_string()))?;
    Ok(value)
}

/// Applies one change. Returns the value as stored (for puts) and whether the object existed before.
/// Runs [`apply`] on its own task: if the admin client disconnects mid-write, hyper drops the handler's
/// future, and a write cut off between "stored" and "swapped live" would leave the store ahead of
/// what is serving. A spawned task always finishes what it started.
pub async fn commit(
    state: &Arc<AdminState>,
    kind: ResourceKind,
    id: &str,
    change: Change,
) -> Result<(Option<Value>, bool), AdminError> {
    let state = Arc::clone(state);
    let id = id.to_string();
    tokio::spawn(async move { retrying(&state, || apply(&state, kind, &id, change.clone())).await })
        .await
        .map_err(|e| AdminError::internal(format!("the write task failed: {e}")))?
}

async fn apply(
    state: &AdminState,
    kind: ResourceKind,
    id: &str,
    change: Change,
) -> Result<(Option<Value>, bool), Failure> {
    let _guard = state.write_lock.lock().await;
    let current = state.live.load();
    let existed = current.config.get(kind, id).is_some();
    let mut config = current.config.clone();
    // The document to store, or `None` for a delete.
    let document = match change {
        Change::Patch(patch) => {
            let existing = current.config.get(kind, id).ok_or_else(|| {
                AdminError::not_found(format!("{} {id:?} not found", kind.noun()))
            })?;
            let mut merged = (**existing).clone();
            json_patch::merge(&mut merged, &patch);
            Some(merged)
        }
        Change::Put(value) => Some(value),
        Change::Delete => None,
    };
    let (op, stored) = match document {
        None => {
            if !existed {
                return Err(
                    AdminError::not_found(format!("{} {id:?} not found", kind.noun())).into(),
                );
            }
            if let Some((rkind, rid)) = config.referrers(kind, id).into_iter().next() {
                return Err(AdminError::bad_request(format!(
                    "can not delete this {}, {} [{rid}] is still using it now",
                    kind.noun(),
                    rkind.noun()
                ))
                .into());
            }
            config.remove(kind, id);
            (
                StoreOp::Delete {
                    kind,
                    id: id.to_string(),
                },
                None,
            )
        }
        Some(value) => {
            let mut value = checked(kind, id, value)?;
            let now = now_secs();
            let created = current
                .config
                .get(kind, id)
                .and_then(|v| v.get("create_time").cloned())
                .unwrap_or_else(|| Value::from(now));
            if let Some(obj) = value.as_object_mut() {
                if kind != ResourceKind::Consumers {
                    obj.insert("id".into(), Value::from(id));
                }
                obj.insert("create_time".into(), created);
                obj.insert("update_time".into(), Value::from(now));
            }
            config.put(kind, id.to_string(), value.clone());
            (
                StoreOp::Put {
                    kind,
                    id: id.to_string(),
                    value: value.clone(),
                },
                Some(value),
            )
        }
    };
    let next = build_candidate(state, config, &current).await?;
    state
        .store
        .apply(vec![op])
        .await
        .map_err(store_failed("storing the change"))?;
    state.live.store(next);
    Ok((stored, existed))
}
