//! `services`: an upstream plus plugins shared by many routes; a route's own settings win.

use super::common::{check_host, check_plugins, opt_id, ConfigError, Labels, Plugins};
use super::upstream::Upstream;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    #[serde(default, deserialize_with = "opt_id")]
    pub id: Option<String>,
    pub name: Option<String>,
    pub desc: Option<String>,
    pub labels: Option<Labels>,
    pub upstream: Option<Upstream>,
    #[serde(default, deserialize_with = "opt_id")]
    pub upstream_id: Option<String>,
    pub plugins: Option<Plugins>,
    pub hosts: Option<Vec<String>>,
    pub enable_websocket: Option<bool>,
    pub create_time: Option<u64>,
    pub update_time: Option<u64>,
}

impl Service {
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.upstream.is_some() && self.upstream_id.is_some() {
            return Err(ConfigError::new(
                "upstream: set either `upstream` or `upstream_id`, not both",
            ));
        }
        if let Some(up) = &self.upstream {
            up.check().map_err(|e| e.at("upstream"))?;
        }
        if let Some(p) = &self.plugins {
            check_plugins(p)?;
        }
        for (i, h) in self.hosts.iter().flatten().enumerate() {
            check_host(&format!("hosts[{i}]"), h)?;
        }
        Ok(())
    }
}
