//! `consumers`: API users; auth plugins attach their credentials here.

use super::common::{check_plugins, ConfigError, Labels, Plugins};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Consumer {
    /// APISIX keys consumers by username; it doubles as the id.
    pub username: String,
    pub desc: Option<String>,
    pub labels: Option<Labels>,
    pub plugins: Option<Plugins>,
    pub group_id: Option<String>,
    pub create_time: Option<u64>,
    pub update_time: Option<u64>,
}

impl Consumer {
    pub fn check(&self) -> Result<(), ConfigError> {
        let ok = !self.username.is_empty()
            && self.username.len() <= 100
            && self
                .username
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !ok {
            return Err(ConfigError::new(format!(
                "username: {:?} must be 1 to 100 characters of [a-zA-Z0-9_-]",
                self.username
            )));
        }
        if let Some(p) = &self.plugins {
            check_plugins(p)?;
        }
        Ok(())
    }
}
