//! Pieces shared by several resource types: ids, labels, plugin maps, timeouts, and the error type.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;

/// A configuration problem, phrased for the person who sent the JSON: it names the field path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl ConfigError {
    pub fn new(msg: impl Into<String>) -> Self {
        ConfigError(msg.into())
    }

    /// Prefixes the message with the field it concerns (`upstream.nodes: ...`).
    pub fn at(self, field: &str) -> Self {
        ConfigError(format!("{field}: {}", self.0))
    }
}

/// Parses one admin document, reporting serde's complaint together with the path of the offending field.
pub fn parse_resource<T: DeserializeOwned>(value: &serde_json::Value) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path == "." || path.is_empty() {
            ConfigError(inner)
        } else {
            ConfigError(format!("{path}: {inner}"))
        }
    })
}

/// Plugin name → that plugin's own config object, as in APISIX.
pub type Plugins = serde_json::Map<String, serde_json::Value>;

/// Free-form labels; APISIX allows only string values.
pub type Labels = BTreeMap<String, String>;

/// APISIX accepts ids as strings or integers; we keep them as strings everywhere.
pub fn opt_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        S(String),
        N(u64),
    }
    let raw: Option<Raw> = Option::deserialize(d)?;
    Ok(raw.map(|r| match r {
        Raw::S(s) => s,
        Raw::N(n) => n.to_string(),
    }))
}

/// Checks an id's syntax: APISIX allows `[a-zA-Z0-9-_.]`, 1 to 64 characters.
pub fn check_id(id: &str) -> Result<(), ConfigError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(format!(
            "invalid id {id:?}: use 1 to 64 characters of [a-zA-Z0-9-_.]"
        )))
    }
}

/// Upstream timeouts in seconds (fractions allowed), as APISIX's `timeout` object.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Timeout {
    pub connect: Option<f64>,
    pub send: Option<f64>,
    pub read: Option<f64>,
}

impl Timeout {
    pub fn check(&self) -> Result<(), ConfigError> {
        for (name, v) in [
            ("connect", self.connect),
            ("send", self.send),
            ("read", self.read),
        ] {
            if let Some(v) = v {
                if !(v > 0.0 && v.is_finite() && v <= 86_400.0) {
                    return Err(ConfigError::new(format!(
                        "timeout.{name}: must be a number of seconds above 0 and at most 86400, got {v}"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// A plugins map must hold an object per plugin; the plugin's own schema is checked when the snapshot is built.
pub fn check_plugins(plugins: &Plugins) -> Result<(), ConfigError> {
    for (name, conf) in plugins {
        if !conf.is_object() {
            return Err(ConfigError::new(format!(
                "plugins.{name}: config must be a JSON object"
            )));
        }
    }
    Ok(())
}

/// Hosts may be exact names or one leading wildcard label (`*.example.com`), as APISIX.
pub fn check_host(field: &str, host: &str) -> Result<(), ConfigError> {
    let name = host.strip_prefix("*.").unwrap_or(host);
    let valid = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        && !name.starts_with('.')
        && !name.contains('*');
    if valid {
        Ok(())
    } else {
        Err(ConfigError::new(format!(
            "{field}: invalid host {host:?}: expected a DNS name, optionally starting with \"*.\""
        )))
    }
}
