//! Admin API errors: a status and an APISIX-style `{"error_msg": ...}` body.

use crate::store::StoreError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

#[derive(Debug, thiserror::Error)]
#[error("{msg}")]
pub struct AdminError {
    pub status: StatusCode,
    pub msg: String,
}

impl AdminError {
    pub fn bad_request(msg: impl Into<String>) -> Self {
        AdminError {
            status: StatusCode::BAD_REQUEST,
            msg: msg.into(),
        }
    }

    pub fn not_found(msg: impl Into<String>) -> Self {
        AdminError {
            status: StatusCode::NOT_FOUND,
            msg: msg.into(),
        }
    }

    pub fn unauthorized() -> Self {
        AdminError {
            status: StatusCode::UNAUTHORIZED,
            msg: "missing or invalid X-API-KEY header".into(),
        }
    }

    pub fn internal(msg: impl Into<String>) -> Self {
        AdminError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            msg: msg.into(),
        }
    }
}

impl AdminError {
    /// A store failure while `doing` something: 503 when the store is unreachable (etcd down: the data
    /// plane keeps its last configuration, so the client should retry later), 409 when another node's
    /// write won, 500 otherwise.
    pub fn from_store(e: StoreError, doing: &str) -> Self {
        let status = match e {
            StoreError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            StoreError::Conflict => StatusCode::CONFLICT,
            StoreError::Backend(_) | StoreError::Corrupt { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let hint = match e {
            StoreError::Unavailable(_) => {
                "; this node keeps serving its last configuration, retry once the store is back"
            }
            _ => "",
        };
        AdminError {
            status,
            msg: format!("{doing} failed: {e}{hint}"),
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "error_msg": self.msg })),
        )
            .into_response()
    }
}
