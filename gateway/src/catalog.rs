//! The names a `plugins` map may use, each plugin's config check, and the parsed configs routes hold.
//!
//! Config writes go through here before anything is stored, so an unknown plugin name or a config the
//! plugin rejects never reaches traffic. Parsed configs are shared: the same (plugin version, config
//! JSON) is configured once and reused by every snapshot that still uses it, so an unrelated admin write
//! does not re-parse ten thousand route configs.

use crate::chain::ChainEntry;
use crate::plugin::{
    ConfigError as PluginConfigError, ConfiguredPlugin, LoadedPlugin, PluginRegistry,
};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

/// APISIX's `_meta` object inside a plugin's config: gateway-level switches the plugin never sees.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Meta {
    pub disable: bool,
    pub priority: Option<i64>,
    /// Skip the plugin (instead of answering 500) when it traps, overruns its deadline or memory.
    pub fail_open: bool,
}

/// Splits `_meta` off a plugin config; the rest is what the plugin gets, as compact JSON.
pub fn split_meta(config: &Value) -> Result<(Meta, String), String> {
    let Some(obj) = config.as_object() else {
        return Err("config must be a JSON object".into());
    };
    let mut meta = Meta::default();
    if let Some(m) = obj.get("_meta") {
        let m = m
            .as_object()
            .ok_or_else(|| "_meta: must be an object".to_string())?;
        for (k, v) in m {
            match k.as_str() {
                "disable" => {
                    meta.disable = v
                        .as_bool()
                        .ok_or_else(|| "_meta.disable: must be a boolean".to_string())?
                }
                "fail_open" => {
                    meta.fail_open = v
                        .as_bool()
                        .ok_or_else(|| "_meta.fail_open: must be a boolean".to_string())?
                }
                "priority" => {
                    meta.priority = Some(
                        v.as_i64()
                            .ok_or_else(|| "_meta.priority: must be an integer".to_string())?,
                    )
                }
                other => {
                    return Err(format!(
                    "_meta: unknown field `{other}`; expected `disable`, `priority` or `fail_open`"
                ))
                }
            }
        }
    }
    let mut rest = obj.clone();
    rest.remove("_meta");
    Ok((meta, Value::Object(rest).to_string()))
}

#[derive(Hash, PartialEq, Eq)]
struct ConfigKey {
    name: String,
    sha256: String,
    config: String,
}

pub struct Catalog {
    /// Uploaded plugins (`/apisix/admin/wasm_plugins`).
    registry: PluginRegistry,
    /// Built-in plugins compiled so far (on first use, see [`crate::builtins`]).
    builtins: Mutex<HashMap<String, Arc<LoadedPlugin>>>,
    configured: Mutex<HashMap<ConfigKey, Weak<ConfiguredPlugin>>>,
}

/// The admin-facing message for a plugin's refusal or fault while checking a config.
pub fn plugin_error(e: PluginConfigError) -> String {
    match e {
        PluginConfigError::Rejected(msg) => msg,
        PluginConfigError::Fault(f) => format!("the plugin failed while checking its config: {f}"),
    }
}

impl Catalog {
    pub fn new(registry: PluginRegistry) -> Self {
        Catalog {
            registry,
            builtins: Mutex::new(HashMap::new()),
            configured: Mutex::new(HashMap::new()),
        }
    }

    /// The plugin served under `name`: an uploaded one, or a built-in (compiled now if this is its
    /// first use; the compile runs on the caller's thread, which is an admin write or startup, never a
    /// request). `Err` is the message for the admin user.
    pub fn plugin(&self, name: &str) -> Result<Arc<LoadedPlugin>, String> {
        if let Some(p) = self.registry.get(name) {
            return Ok(p);
        }
        let Some(bytes) = crate::builtins::component(name) else {
            return Err(format!("unknown plugin {name:?}"));
        };
        // Held across the compile so two builds never compile the same built-in twice.
        let mut loaded = self.builtins.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = loaded.get(name) {
            return Ok(Arc::clone(p));
        }
        let p = self
            .registry
            .prepare(name, bytes)
            .map_err(|e| format!("built-in plugin {name:?} failed to load: {e}"))?;
        loaded.insert(name.to_string(), Arc::clone(&p));
        Ok(p)
    }

    /// Built into the binary: an embedded Wasm plugin, or a natively served one. Uploads may not take
    /// these names (an upload named `traffic-split` would never run).
    pub fn is_builtin(&self, name: &str) -> bool {
        crate::builtins::component(name).is_some() || crate::native::is_native(name)
    }

    pub fn registry(&self) -> &PluginRegistry {
        &self.registry
    }

    /// Every plugin loaded now, one per name: uploaded ones, then built-ins compiled so far that no upload
    /// shadows. The metrics endpoint reads their counters at scrape time.
    pub fn loaded(&self) -> Vec<Arc<LoadedPlugin>> {
        let mut out = self.registry.list();
        let builtins = self.builtins.lock().unwrap_or_else(|p| p.into_inner());
        for (name, p) in builtins.iter() {
            if !out.iter().any(|u| u.name() == name) {
                out.push(Arc::clone(p));
            }
        }
        out
    }

    /// Every plugin name usable in a `plugins` map (built-in and uploaded), sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .registry
            .list()
            .iter()
            .map(|p| p.name().to_string())
            .chain(crate::builtins::names().map(str::to_string))
            .chain(crate::native::NAMES.iter().map(|n| n.to_string()))
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Validates one `plugins` entry. `Err` is the message for the admin user.
    pub fn check(&self, name: &str, config: &Value) -> Result<(), String> {
        self.configure(name, config).map(|_| ())
    }

    /// The chain entry for one `plugins` entry: validated and parsed once per (plugin version, config).
    /// `Ok(None)` when `_meta.disable` is set.
    pub fn configure(&self, name: &str, config: &Value) -> Result<Option<ChainEntry>, String> {
        let (meta, json) = split_meta(config)?;
        let plugin = self.plugin(name)?;
        let key = ConfigKey {
            name: name.to_string(),
            sha256: plugin.sha256().to_string(),
            config: json,
        };
        let cached = self
            .configured
            .lock()
            .ok()
            .and_then(|m| m.get(&key).and_then(Weak::upgrade));
        let configured = match cached {
            Some(c) => c,
            None => {
                plugin.validate(&key.config).map_err(plugin_error)?;
                let c = Arc::new(plugin.configure(&key.config).map_err(plugin_error)?);
                if let Ok(mut m) = self.configured.lock() {
                    m.retain(|_, w| w.strong_count() > 0);
                    m.insert(key, Arc::downgrade(&c));
                }
                c
            }
        };
        if meta.disable {
            return Ok(None);
        }
        Ok(Some(ChainEntry {
            name: name.to_string(),
            priority: meta
                .priority
                .unwrap_or_else(|| i64::from(plugin.info().priority)),
            fail_open: meta.fail_open,
            plugin: configured,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn meta_is_split_off_and_checked() {
        let (meta, rest) =
            split_meta(&json!({"a": 1, "_meta": {"disable": true, "priority": 5}})).unwrap();
        assert!(meta.disable && meta.priority == Some(5) && !meta.fail_open);
        assert_eq!(rest, r#"{"a":1}"#);
        let err = split_meta(&json!({"_meta": {"disabled": true}})).unwrap_err();
        assert!(err.contains("disabled"), "{err}");
    }
}
