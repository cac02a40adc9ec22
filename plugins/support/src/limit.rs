//! What `limit-count`, `limit-req` and `limit-conn` share, so the three behave identically where APISIX's do:
//! the `key_type`/`key` resolution, the fields that say how to reject (`rejected_code`, `rejected_msg`,
//! `allow_degradation`), where to count (`policy` and the `redis_*` fields, see [`crate::store`]), the
//! rejection response and the answer when the counter store fails.
//!
//! `allow_degradation` when a shared store (Redis) is down: this gateway counts in its own memory instead
//! ([`Common::on_store`]), so each node still enforces the limit on its own share of the traffic. APISIX
//! lets such requests through unlimited; counting locally keeps a node from being overrun while Redis is
//! away. Without it the request gets a 500, as in APISIX.

use crate::compiled::Compiled;
use crate::reply::{json_object, json_response};
use crate::schema::{field, not_empty, one_of, within};
use crate::store::{Policy, Store};
use crate::template::Template;
use serde::Deserialize;
use sluice_plugin_sdk::{clock, log, request, Backend, Decision, Response, StoreError};
use std::cell::Cell;
use std::fmt::Display;

/// The fields every limiting plugin has, with APISIX's defaults; `#[serde(flatten)]`ed into each config.
#[derive(Debug, Deserialize)]
pub struct Common {
    #[serde(default = "default_rejected_code")]
    rejected_code: i64,
    rejected_msg: Option<String>,
    /// When the shared store fails: count on this gateway (`true`) or answer 500 (`false`).
    #[serde(default)]
    allow_degradation: bool,
    #[serde(flatten)]
    policy: Compiled<Policy>,
}

fn default_rejected_code() -> i64 {
    503
}

thread_local! {
    /// When this instance last logged that it counts locally (ms since the epoch); see [`Common::on_store`].
    static DEGRADED_LOGGED_AT: Cell<u64> = const { Cell::new(0) };
}

/// An outage logs once per this many milliseconds per instance, not once per request.
const DEGRADED_LOG_EVERY_MS: u64 = 10_000;

impl Common {
    /// Checks the shared fields, `policy` and the `redis_*` fields included.
    pub fn validate(&self) -> Result<(), String> {
        field(
            "rejected_code",
            within(self.rejected_code, Some(200), Some(599)),
        )?;
        field("rejected_msg", not_empty(self.rejected_msg.as_deref()))?;
        self.policy.validate()
    }

    /// For plugins that count in this gateway's memory only (`limit-conn`): a Redis policy is valid APISIX,
    /// but refusing it at admin time beats silently counting per gateway when a cluster-wide limit was
    /// asked for.
    pub fn local_only(&self, plugin: &str) -> Result<(), String> {
        let policy = match self.policy.rules() {
            Some(Policy::Shared(Backend::Redis(_))) => "redis",
            Some(Policy::Shared(Backend::RedisCluster(_))) => "redis-cluster",
            _ => return Ok(()),
        };
        Err(format!(
            "policy \"{policy}\" is not available for {plugin} yet: it counts in this gateway's memory \
             (use \"local\")"
        ))
    }

    /// Runs `op` on the store the policy names. When that is a shared store that cannot be reached and
    /// `allow_degradation` is set, `op` runs again on this gateway's own store (logged, at most every 10 s).
    pub fn on_store<T>(
        &self,
        op: impl Fn(Store<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let Some(Policy::Shared(backend)) = self.policy.rules() else {
            return op(Store::Local);
        };
        match op(Store::Shared(backend)) {
            Err(StoreError::Unavailable(why)) if self.allow_degradation => {
                let now = clock::now_unix_ms();
                let last = DEGRADED_LOGGED_AT.with(Cell::get);
                if last == 0 || now.saturating_sub(last) >= DEGRADED_LOG_EVERY_MS {
                    DEGRADED_LOGGED_AT.with(|t| t.set(now));
                    log::warn(&format!(
                        "{why}; counting on this gateway only (allow_degradation)"
                    ));
                }
                op(Store::Local)
            }
            other => other,
        }
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
