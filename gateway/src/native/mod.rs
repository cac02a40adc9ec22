//! APISIX plugins the gateway serves natively instead of as Wasm components, each because it acts where
//! the plugin WIT world deliberately gives plugins no reach:
//! - `traffic-split` chooses the upstream ([`crate::traffic_split`]);
//! - `client-control` bounds the request body as it streams, before any upstream sees it
//!   ([`client_control`]);
//!
//! They are configured exactly as APISIX spells them, in the same `plugins` maps, and compiled with the
//! snapshot into the route ([`RouteNative`]), never into the Wasm chain. Global rules may not carry them:
//! each is a decision about one route's traffic.

pub mod client_control;

use crate::config::{parse_resource, ConfigError, Plugins};
use serde::de::DeserializeOwned;

/// Every natively served plugin name.
pub const NAMES: &[&str] = &[crate::traffic_split::NAME, client_control::NAME];

pub fn is_native(name: &str) -> bool {
    NAMES.contains(&name)
}

/// What the native plugins of one route's merged `plugins` map ask of its requests (traffic-split aside,
/// which the snapshot builder compiles with its upstreams).
#[derive(Debug, Default, Clone)]
pub struct RouteNative {
    /// `client-control.max_body_size`: overrides the listener's body limit for this route.
    pub max_body_size: Option<u64>,
}

impl RouteNative {
    pub fn compile(plugins: &Plugins) -> Result<Self, ConfigError> {
        Ok(RouteNative {
            max_body_size: client_control::compile(plugins)?,
        })
    }
}

/// The config of native plugin `name` in `plugins`, parsed with APISIX's field names; `Ok(None)` when
/// absent or `_meta.disable`d. Errors name the field (`plugins.client-control.max_body_size: ...`).
pub fn entry<T: DeserializeOwned>(plugins: &Plugins, name: &str) -> Result<Option<T>, ConfigError> {
    let Some(conf) = plugins.get(name) else {
        return Ok(None);
    };
    let path = format!("plugins.{name}");
    let (meta, json) = crate::catalog::split_meta(conf).map_err(|e| ConfigError(e).at(&path))?;
    if meta.disable {
        return Ok(None);
    }
    let value: serde_json::Value =
        serde_json::from_str(&json).map_err(|e| ConfigError(e.to_string()).at(&path))?;
    parse_resource(&value).map(Some).map_err(|e| e.at(&path))
}
