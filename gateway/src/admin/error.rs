//! Admin API errors: a status and an APISIX-style `{"error_msg": ...}` body.

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

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "error_msg": self.msg })),
        )
            .into_response()
    }
}
