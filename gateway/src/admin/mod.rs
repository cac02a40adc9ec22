//! The admin API: APISIX Admin API v3 paths and reply shapes, over the config store.
//!
//! Every write follows one path ([`write::commit`]): parse and shape-check the document, build the
//! candidate snapshot from the whole config (references, regexes, plugin configs), persist, and only
//! then swap the live snapshot. A rejected write therefore changes nothing, and what is live is always
//! what is stored. With a shared store (etcd) another node may write first; the store then refuses the
//! write as a conflict, and it is validated again once this node has caught up ([`write::retrying`]).
//! `GET /apisix/admin/healthcheck[/upstreams/<id>]` ([`health`]) only reads: node health of upstreams
//! with `checks`. `GET /apisix/admin/cluster/status` ([`config_status`]) says which
//! configuration this node serves (digest, etcd revision), to check that the nodes of a cluster agree.

mod auth;
mod config_status;
mod error;
mod handlers;
mod health;
mod ids;
mod wasm_plugins;
mod write;

pub use auth::{AdminKey, KeySource};
pub use error::AdminError;
pub use write::build_candidate;

use crate::catalog::Catalog;
use crate::snapshot::Live;
use crate::store::ConfigStore;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

pub struct AdminState {
    pub store: Arc<dyn ConfigStore>,
    pub live: Arc<Live>,
    pub catalog: Arc<Catalog>,
    pub key: AdminKey,
    /// Serialises writes: each builds on the snapshot the previous one produced.
    pub(crate) write_lock: tokio::sync::Mutex<()>,
    pub(crate) ids: ids::IdGenerator,
}

impl AdminState {
    pub fn new(
        store: Arc<dyn ConfigStore>,
        live: Arc<Live>,
        catalog: Arc<Catalog>,
        key: AdminKey,
    ) -> Self {
        AdminState {
            store,
            live,
            catalog,
            key,
            write_lock: tokio::sync::Mutex::new(()),
            ids: ids::IdGenerator::default(),
        }
    }
}

/// The admin HTTP service: every path below `/apisix/admin` requires `X-API-KEY`.
pub fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/apisix/admin/plugins/list", get(handlers::plugin_list))
        .route("/apisix/admin/healthcheck", get(health::list))
        .route("/apisix/admin/cluster/status", get(config_status::show))
        .route("/apisix/admin/healthcheck/{kind}/{id}", get(health::one))
        .route("/apisix/admin/wasm_plugins", get(wasm_plugins::list))
        .route(
            "/apisix/admin/wasm_plugins/{name}",
            get(wasm_plugins::describe)
                .put(wasm_plugins::upload)
                .delete(wasm_plugins::remove)
                // Let oversized uploads reach the registry's own size check and its clear message.
                .layer(DefaultBodyLimit::max(64 << 20)),
        )
        .route(
            "/apisix/admin/{res}",
            get(handlers::list)
                .post(handlers::create)
                .put(handlers::put_without_id),
        )
        .route(
            "/apisix/admin/{res}/{id}",
            get(handlers::get_one)
                .put(handlers::put)
                .patch(handlers::patch)
                .delete(handlers::delete),
        )
        .fallback(handlers::not_found)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            auth::require_key,
        ))
        .with_state(state)
}
