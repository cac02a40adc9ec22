//! Plugin components for tests: the fixtures that `scripts/build-plugins.sh` builds into
//! `<target dir>/plugins/<name>.wasm`, and uploading them through the admin API.

use crate::admin::Reply;
use crate::gateway::{sluice_bin, Gateway};
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
        self.admin()
            .put_bytes(&format!("wasm_plugins/{name}"), "application/wasm", bytes)
            .await
    }
}
