//! What `limit-count`, `limit-req` and `limit-conn` share, so the three behave identically where APISIX's do:
//! the `key_type`/`key` resolution, the fields that say how to reject (`rejected_code`, `rejected_msg`,
//! `policy`, `allow_degradation`), the rejection response and the answer when the counter store fails.

use crate::reply::{json_object, json_response};
use crate::schema::{field, not_empty, one_of, within};
use crate::template::Template;
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
    json_response(status, json_object("error_msg", msg))
}

/// How `key` is read (APISIX `key_type`). Any string parses, so that `validate` can word the error the
/// APISIX way rather than serde's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub enum KeyType {
    /// `key` names one variable (`remote_addr`, `http_x_user`, ...).
    #[default]
    Var,
    /// `key` is a [`Template`] of `$var`/`${var}` references (`$remote_addr $consumer_name`).
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
                let mut resolved = 0;
                let value = Template::parse(key).render(|name| {
                    let value = request::var(name);
                    resolved += usize::from(value.is_some());
                    value
                });
                (resolved > 0).then_some(value)
            }
        };
        resolved
            .or_else(|| request::var("remote_addr"))
            .unwrap_or_default()
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_plugin_sdk::testing::TestHost;
    use sluice_plugin_sdk::Plugin;

    /// A limiting plugin whose counter store fails: it calls the failure path the way each plugin's
    /// `access` does (the test host's stores never fail).
    struct Failing;

    impl Plugin for Failing {
        type Config = Common;
        fn access(common: &Common) -> Decision {
            common.store_failed("count", "store unavailable: redis down")
        }
    }

    #[test]
    fn a_store_failure_answers_500_unless_degradation_is_allowed() {
        let host = TestHost::new();
        let strict = host.configure::<Failing>("{}").expect("config");
        let Decision::Respond(r) = host.access(&strict) else {
            panic!("must answer")
        };
        assert_eq!(
            (r.status, r.body.as_slice()),
            (500, &br#"{"error_msg":"failed to limit count"}"#[..])
        );
        let lenient = host
            .configure::<Failing>(r#"{"allow_degradation": true}"#)
            .expect("config");
        assert_eq!(host.access(&lenient), Decision::Continue);
        assert!(host
            .logs()
            .iter()
            .any(|(_, m)| m == "failed to limit count: store unavailable: redis down"));
    }

    #[test]
    fn a_rejection_carries_rejected_msg_as_json_or_nothing() {
        let common = |json: &str| serde_json::from_str::<Common>(json).expect("config");
        let r = common(r#"{"rejected_code": 429, "rejected_msg": "slow \"down\""}"#).rejection();
        assert_eq!(r.status, 429);
        assert_eq!(r.body, br#"{"error_msg":"slow \"down\""}"#);
        assert!(r
            .headers
            .contains(&("content-type".into(), "application/json".into())));
        let r = common("{}").rejection();
        assert_eq!((r.status, r.body.len(), r.headers.len()), (503, 0, 0));
    }
}
