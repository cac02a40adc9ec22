//! What `limit-count`, `limit-req` and `limit-conn` share, so the three behave identically where APISIX's do:
//! the `key_type`/`key` resolution, the fields that say how to reject (`rejected_code`, `rejected_msg`,
//! `policy`, `allow_degradation`) and the rejection response. Included by the other two through `#[path]`
//! (see `schema.rs` for why not a crate).
#![allow(dead_code)] // Each plugin includes this file and uses a different subset.

use crate::schema::{field, not_empty, one_of, within};
use serde::Deserialize;
use sluice_plugin_sdk::{log, request, Decision, Response};
use std::fmt::Display;

/// The fields every limiting plugin has, with APISIX's defaults; `#[serde(flatten)]`ed into each config.
#[derive(Debug, Deserialize)]
pub struct Common {
    #[serde(default = "default_rejected_code")]
    rejected_code: i64,
    rejected_msg: Option<String>,
    #[serde(default = "default_policy")]
    policy: String,
    /// When the counter store fails: let the request through (`true`) or answer 500 (`false`).
    #[serde(default)]
    allow_degradation: bool,
}

fn default_rejected_code() -> i64 {
    503
}

fn default_policy() -> String {
    "local".to_string()
}

impl Common {
    /// Checks the shared fields. Redis policies are valid APISIX but not served yet: refusing them at admin
    /// time is better than silently counting per gateway when the operator asked for a cluster-wide limit.
    pub fn validate(&self) -> Result<(), String> {
        field(
            "rejected_code",
            within(self.rejected_code, Some(200), Some(599)),
        )?;
        field("rejected_msg", not_empty(self.rejected_msg.as_deref()))?;
        field(
            "policy",
            one_of(&self.policy, &["local", "redis", "redis-cluster"]),
        )?;
        if self.policy != "local" {
            return Err(format!(
                "policy \"{}\" is not available yet: Redis policies are not supported by this gateway, \
                 counters are kept in its memory (use \"local\")",
                self.policy
            ));
        }
        Ok(())
    }

    /// The answer to a request over the limit: `rejected_code` with `{"error_msg": rejected_msg}`, or an
    /// empty body when no message is configured (as APISIX).
    pub fn rejection(&self) -> Response {
        // Validated to 200..=599, so the fallback is never used.
        let status = u16::try_from(self.rejected_code).unwrap_or(503);
        match &self.rejected_msg {
            Some(msg) => json_error(status, msg),
            None => Response::new(status),
        }
    }

    /// The shared store failed: with `allow_degradation` the request goes on unlimited, otherwise it gets a
    /// 500 (as APISIX), and either way the failure is logged.
    pub fn store_failed(&self, plugin: &str, err: impl Display) -> Decision {
        log::error(&format!("failed to limit {plugin}: {err}"));
        if self.allow_degradation {
            Decision::Continue
        } else {
            Decision::Respond(json_error(500, &format!("failed to limit {plugin}")))
        }
    }
}

/// `{"error_msg": "..."}`, APISIX's error body.
fn json_error(status: u16, msg: &str) -> Response {
    Response::new(status)
        .header("content-type", "application/json")
        .body(serde_json::json!({ "error_msg": msg }).to_string())
}

/// How `key` is read (APISIX `key_type`). Any string parses, so that `validate` can word the error the
/// APISIX way rather than serde's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub enum KeyType {
    /// `key` names one variable (`remote_addr`, `http_x_user`, ...).
    #[default]
    Var,
    /// `key` is a template of `$var`/`${var}` references (`$remote_addr $consumer_name`).
    VarCombination,
    /// `key` itself is the key: one counter for every client.
    Constant,
    /// Anything else; refused by [`KeyType::validate`].
    Unknown(String),
}

impl From<String> for KeyType {
    fn from(name: String) -> Self {
        match name.as_str() {
            "var" => KeyType::Var,
            "var_combination" => KeyType::VarCombination,
            "constant" => KeyType::Constant,
            _ => KeyType::Unknown(name),
        }
    }
}

impl KeyType {
    /// Checks `key_type`; `allowed` lists the names the plugin accepts (limit-req and limit-conn have no
    /// `constant`).
    pub fn validate(&self, allowed: &[&str]) -> Result<(), String> {
        let name = match self {
            KeyType::Var => "var",
            KeyType::VarCombination => "var_combination",
            KeyType::Constant => "constant",
            KeyType::Unknown(name) => name,
        };
        field("key_type", one_of(name, allowed))
    }

    /// The limiting key of this request. Like APISIX, a variable that is absent (or a combination in which
    /// none resolved) falls back to the client address, so such clients are limited one by one rather
    /// than all together under one empty key.
    pub fn resolve(&self, key: &str) -> String {
        let resolved = match self {
            KeyType::Constant => Some(key.to_string()),
            // Unknown is refused at admin time; reading it as a variable name is the harmless reading.
            KeyType::Var | KeyType::Unknown(_) => request::var(key),
            KeyType::VarCombination => {
                let (value, resolved) = interpolate(key);
                (resolved > 0).then_some(value)
            }
        };
        resolved
            .or_else(|| request::var("remote_addr"))
            .unwrap_or_default()
    }
}

/// Replaces `$name` and `${name}` (name: ASCII letters, digits, `_`) with the variable's value, an absent
/// variable with nothing; a `$` preceded by `\` is left alone. Returns the text and how many variables
/// resolved (APISIX `core.utils.resolve_var`).
pub fn interpolate(template: &str) -> (String, usize) {
    let bytes = template.as_bytes();
    let is_name = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut out = String::with_capacity(template.len());
    let mut resolved = 0;
    let mut copied = 0; // bytes of `template` already in `out`
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' || (i > 0 && bytes[i - 1] == b'\\') {
            i += 1;
            continue;
        }
        let braced = bytes.get(i + 1) == Some(&b'{');
        let start = if braced { i + 2 } else { i + 1 };
        let end = start
            + bytes[start.min(bytes.len())..]
                .iter()
                .take_while(|b| is_name(**b))
                .count();
        let closed = !braced || bytes.get(end) == Some(&b'}');
        if end == start || !closed {
            i += 1;
            continue;
        }
        // `$` and the name are ASCII, so these are char boundaries.
        out.push_str(&template[copied..i]);
        if let Some(value) = request::var(&template[start..end]) {
            out.push_str(&value);
            resolved += 1;
        }
        i = if braced { end + 1 } else { end };
        copied = i;
    }
    out.push_str(&template[copied..]);
    (out, resolved)
}

/// Scopes a key to the matched route, so two routes with the same plugin config keep separate counters
/// (APISIX scopes by the config's owner).
pub fn route_scoped(key: &str) -> String {
    format!("route:{}:{key}", request::route_id())
}

/// Whole seconds, rounded up: a client told "0" would retry while the window is still closed.
pub fn ceil_secs(d: std::time::Duration) -> u64 {
    d.as_millis().div_ceil(1000).try_into().unwrap_or(u64::MAX)
}
