//! The one path every admin write takes: candidate snapshot → durable store → live swap.

use super::{AdminError, AdminState};
use crate::config::ResourceKind;
use crate::snapshot::{ConfigSet, Snapshot};
use crate::store::StoreOp;
use serde_json::Value;
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

pub enum Change {
    Put(Value),
    Delete,
}

/// Applies one change. Returns the value as stored (for puts) and whether the object existed before.
pub async fn commit(
    state: &AdminState,
    kind: ResourceKind,
    id: &str,
    change: Change,
) -> Result<(Option<Value>, bool), AdminError> {
    let _guard = state.write_lock.lock().await;
    let current = state.live.load();
    let existed = current.config.get(kind, id).is_some();
    let mut config = current.config.clone();
    let (op, stored) = match change {
        Change::Delete => {
            if !existed {
                return Err(AdminError::not_found(format!(
                    "{} {id:?} not found",
                    kind.noun()
                )));
            }
            if let Some((rkind, rid)) = config.referrers(kind, id).into_iter().next() {
                return Err(AdminError::bad_request(format!(
                    "can not delete this {}, {} [{rid}] is still using it now",
                    kind.noun(),
                    rkind.noun()
                )));
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
        Change::Put(mut value) => {
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
        .map_err(|e| AdminError::internal(format!("storing the change failed: {e}")))?;
    state.live.store(next);
    Ok((stored, existed))
}
