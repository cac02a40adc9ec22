//! `routes`: which requests go where, with which plugins.

use super::common::{check_host, check_plugins, opt_id, ConfigError, Labels, Plugins, Timeout};
use super::upstream::Upstream;
use serde::Deserialize;

/// HTTP methods APISIX accepts in `methods`.
const METHODS: [&str; 10] = [
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE", "PURGE",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    #[serde(default, deserialize_with = "opt_id")]
    pub id: Option<String>,
    pub name: Option<String>,
    pub desc: Option<String>,
    pub labels: Option<Labels>,
    pub uri: Option<String>,
    pub uris: Option<Vec<String>>,
    pub methods: Option<Vec<String>>,
    pub host: Option<String>,
    pub hosts: Option<Vec<String>>,
    pub remote_addr: Option<String>,
    pub remote_addrs: Option<Vec<String>>,
    pub vars: Option<serde_json::Value>,
    pub priority: Option<i64>,
    pub plugins: Option<Plugins>,
    #[serde(default, deserialize_with = "opt_id")]
    pub plugin_config_id: Option<String>,
    pub upstream: Option<Upstream>,
    #[serde(default, deserialize_with = "opt_id")]
    pub upstream_id: Option<String>,
    #[serde(default, deserialize_with = "opt_id")]
    pub service_id: Option<String>,
    /// 1 = enabled (default), 0 = disabled: kept but never matched.
    pub status: Option<u8>,
    pub timeout: Option<Timeout>,
    pub enable_websocket: Option<bool>,
    pub create_time: Option<u64>,
    pub update_time: Option<u64>,
}

impl Route {
    /// `uri` and `uris` merged, as APISIX treats them.
    pub fn all_uris(&self) -> Vec<String> {
        let mut out: Vec<String> = self.uri.iter().cloned().collect();
        out.extend(self.uris.iter().flatten().cloned());
        out
    }

    pub fn all_hosts(&self) -> Vec<String> {
        let mut out: Vec<String> = self.host.iter().cloned().collect();
        out.extend(self.hosts.iter().flatten().cloned());
        out
    }

    pub fn all_remote_addrs(&self) -> Vec<String> {
        let mut out: Vec<String> = self.remote_addr.iter().cloned().collect();
        out.extend(self.remote_addrs.iter().flatten().cloned());
        out
    }

    pub fn enabled(&self) -> bool {
        self.status != Some(0)
    }

    /// Checks that need only this document; references and vars are checked when the snapshot is built.
    pub fn check(&self) -> Result<(), ConfigError> {
        let uris = self.all_uris();
        if uris.is_empty() {
            return Err(ConfigError::new("uri: a route needs `uri` or `uris`"));
        }
        if self.uri.is_some() && self.uris.is_some() {
            return Err(ConfigError::new(
                "uri: set either `uri` or `uris`, not both",
            ));
        }
        for (i, uri) in uris.iter().enumerate() {
            if !uri.starts_with('/') {
                let field = if self.uri.is_some() {
                    "uri".to_string()
                } else {
                    format!("uris[{i}]")
                };
                return Err(ConfigError::new(format!(
                    "{field}: {uri:?} must start with \"/\""
                )));
            }
        }
        if self.host.is_some() && self.hosts.is_some() {
            return Err(ConfigError::new(
                "host: set either `host` or `hosts`, not both",
            ));
        }
        for (i, h) in self.all_hosts().iter().enumerate() {
            check_host(&format!("hosts[{i}]"), h)?;
        }
        for (i, m) in self.methods.iter().flatten().enumerate() {
            if !METHODS.contains(&m.as_str()) {
                return Err(ConfigError::new(format!(
                    "methods[{i}]: unknown method {m:?}; expected one of {}",
                    METHODS.join(", ")
                )));
            }
        }
        if let Some(status) = self.status {
            if status > 1 {
                return Err(ConfigError::new(
                    "status: must be 0 (disabled) or 1 (enabled)",
                ));
            }
        }
        if let Some(t) = &self.timeout {
            t.check()?;
        }
        if let Some(p) = &self.plugins {
            check_plugins(p)?;
        }
        if let Some(up) = &self.upstream {
            up.check().map_err(|e| e.at("upstream"))?;
        }
        let sources = [self.upstream.is_some(), self.upstream_id.is_some()];
        if sources.iter().filter(|s| **s).count() > 1 {
            return Err(ConfigError::new(
                "upstream: set either `upstream` or `upstream_id`, not both",
            ));
        }
        Ok(())
    }
}
