//! Plugin components for tests: the fixtures that `scripts/build-plugins.sh` builds into
//! `<target dir>/plugins/<name>.wasm`, and uploading them through the admin API.

use crate::admin::Reply;
use crate::gateway::{sluice_bin, Gateway};
use serde_json::Value;
use std::path::PathBuf;

/// The built component `name` (e.g. `add-header`, `phases`, `faults`, `noop`).
pub fn plugin_wasm(name: &str) -> Vec<u8> {
    let bin = sluice_bin();
    let target = bin
        .parent()
        .and_then(|debug| debug.parent())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    let path = target.join("plugins").join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "plugin component {} is missing ({e}); build the plugins first: scripts/build-plugins.sh",
            path.display()
        )
    })
}

impl Gateway {
    /// `PUT /apisix/admin/wasm_plugins/<name>` with `bytes` as the body.
    pub async fn upload_plugin(&self, name: &str, bytes: Vec<u8>) -> Reply {
        let url = self.admin().url(&format!("wasm_plugins/{name}"));
        let resp = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client")
            .put(url)
            .header("X-API-KEY", self.key())
            .header("Content-Type", "application/wasm")
            .body(bytes)
            .send()
            .await
            .expect("admin API reachable");
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let text = resp.text().await.unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            content_type,
            text,
            json,
        }
    }
}
