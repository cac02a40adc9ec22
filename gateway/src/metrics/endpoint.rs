//! The metrics listener's routes: `/metrics` (Prometheus/OpenMetrics text), `/status` (liveness) and
//! `/status/ready` (readiness).
//!
//! The listener is bound only once the stored config has been loaded, so a process that is still starting
//! refuses connections there; after that, readiness means the store answers a read.

use super::Metrics;
use crate::store::ConfigStore;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

struct EndpointState {
    metrics: Arc<Metrics>,
    store: Arc<dyn ConfigStore>,
}

/// The routes of the metrics listener.
pub fn router(metrics: Arc<Metrics>, store: Arc<dyn ConfigStore>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .route("/status", get(alive))
        .route("/status/ready", get(ready))
        .with_state(Arc::new(EndpointState { metrics, store }))
}

/// Encodes off the async workers: collecting takes locks that a built-in plugin's first compile can hold
/// for a while, and a scrape must never stall proxy tasks.
async fn scrape(State(s): State<Arc<EndpointState>>) -> impl IntoResponse {
    let metrics = Arc::clone(&s.metrics);
    match tokio::task::spawn_blocking(move || metrics.encode()).await {
        Ok(Ok(text)) => ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response(),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "encoding metrics failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "metrics encoding task failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn alive() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

async fn ready(State(s): State<Arc<EndpointState>>) -> impl IntoResponse {
    readiness(s.store.as_ref()).await
}

async fn readiness(store: &dyn ConfigStore) -> (StatusCode, Json<serde_json::Value>) {
    match store.ping().await {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ok"}))),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "error": e.to_string()})),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{StoreError, StoreOp, StoredObject};

    /// A store whose backend is gone.
    struct Unreachable;

    fn gone<T>() -> Result<T, StoreError> {
        Err(StoreError::Backend("connection refused".into()))
    }

    #[async_trait::async_trait]
    impl ConfigStore for Unreachable {
        async fn load_all(&self) -> Result<Vec<StoredObject>, StoreError> {
            gone()
        }
        async fn apply(&self, _: Vec<StoreOp>) -> Result<(), StoreError> {
            gone()
        }
        async fn flush(&self) -> Result<(), StoreError> {
            gone()
        }
        async fn ping(&self) -> Result<(), StoreError> {
            gone()
        }
        async fn load_plugins(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
            gone()
        }
        async fn put_plugin(&self, _: &str, _: &[u8]) -> Result<(), StoreError> {
            gone()
        }
        async fn delete_plugin(&self, _: &str) -> Result<(), StoreError> {
            gone()
        }
    }

    #[tokio::test]
    async fn an_unreachable_store_is_not_ready() {
        let (status, Json(body)) = readiness(&Unreachable).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["status"], "unavailable");
        assert!(body["error"]
            .as_str()
            .unwrap()
            .contains("connection refused"));
    }
}
