//! The names a `plugins` map may use, and each plugin's own config check.
//!
//! Config writes ask the catalog before anything is stored, so an unknown plugin name or a config the
//! plugin rejects never reaches traffic. The Wasm plugin registry implements this trait; until a
//! plugin is loaded, its name is unknown.

/// Looks up plugins by name and runs their config validation.
pub trait PluginCatalog: Send + Sync {
    /// `Err` carries a message for the admin user, e.g. `unknown plugin "foo"` or the plugin's own complaint.
    fn check(&self, name: &str, config: &serde_json::Value) -> Result<(), String>;
    /// Every plugin name usable in a `plugins` map, sorted.
    fn names(&self) -> Vec<String>;
}

/// The catalog of a gateway with no plugins loaded.
#[derive(Debug, Default, Clone, Copy)]
pub struct EmptyCatalog;

impl PluginCatalog for EmptyCatalog {
    fn check(&self, name: &str, _config: &serde_json::Value) -> Result<(), String> {
        Err(format!("unknown plugin {name:?}"))
    }

    fn names(&self) -> Vec<String> {
        Vec::new()
    }
}
