//! `key-auth`: authenticates a request by an API key that a consumer carries in its `key-auth` config,
//! APISIX-compatible (same fields, defaults, priority, status codes and messages).
//!
//! Route config: `header` (default `apikey`), `query` (default `apikey`, read when the header is absent),
//! `hide_credentials` (default false: strip the key before proxying), `realm` (default `key`, in the
//! `WWW-Authenticate` challenge), `bearer_token` (default false: read `Authorization: Bearer <key>`).
//! Consumer config: `key` (required, unique: the gateway indexes consumers by it).
//!
//! Runs in `rewrite`, as in APISIX, so the consumer is known before any `access` plugin (e.g. a rate limit
//! keyed by consumer).

use serde::Deserialize;
use sluice_builtin_support::auth::{admit, consumer_config, secrets_equal, unauthorized};
use sluice_builtin_support::ngx::{query_arg, remove_query_arg};
use sluice_builtin_support::schema::{non_empty_string, required_string};
use sluice_plugin_sdk::{consumers, export_plugin, request, Decision, Plugin};

const MISSING_KEY: &str = "Missing API key in request";
const INVALID_KEY: &str = "Invalid API key in request";

/// Route-level config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_name")]
    header: String,
    #[serde(default = "default_name")]
    query: String,
    #[serde(default)]
    hide_credentials: bool,
    #[serde(default = "default_realm")]
    realm: String,
    #[serde(default)]
    bearer_token: bool,
}

fn default_name() -> String {
    "apikey".to_string()
}

fn default_realm() -> String {
    "key".to_string()
}

/// A consumer's `key-auth` config.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsumerConfig {
    key: Option<String>,
}

fn consumer_key(json: &str) -> Result<String, String> {
    let c: ConsumerConfig = serde_json::from_str(json).map_err(|e| e.to_string())?;
    required_string("key", c.key)
}

/// Where the presented key came from: `hide_credentials` removes it from there.
enum Source {
    Header,
    Query,
}

pub struct KeyAuth;

impl KeyAuth {
    fn deny(cfg: &Config, message: &str) -> Decision {
        let scheme = if cfg.bearer_token { "Bearer" } else { "apikey" };
        unauthorized(scheme, &cfg.realm, message)
    }

    /// `bearer_token` reads the standard header instead of the configured one, as in APISIX.
    fn header_name(cfg: &Config) -> &str {
        if cfg.bearer_token {
            "authorization"
        } else {
            &cfg.header
        }
    }

    /// The presented key and where it was found, or the 401 message.
    fn presented_key(cfg: &Config) -> Result<(String, Source), &'static str> {
        if let Some(value) = request::header(Self::header_name(cfg)) {
            if !cfg.bearer_token {
                return Ok((value, Source::Header));
            }
            return match value.strip_prefix("Bearer ") {
                Some(key) => Ok((key.to_string(), Source::Header)),
                None => Err("Invalid Bearer token format"),
            };
        }
        query_arg(&cfg.query)
            .map(|v| (v, Source::Query))
            .ok_or(MISSING_KEY)
    }
}

#[export_plugin]
impl Plugin for KeyAuth {
    type Config = Config;
    const NAME: &'static str = "key-auth";
    const PRIORITY: i32 = 2500;
    const CONSUMER_CREDENTIAL: Option<&'static str> = Some("key");

    fn validate(cfg: &Config) -> Result<(), String> {
        non_empty_string("header", &cfg.header)?;
        non_empty_string("query", &cfg.query)
    }

    fn validate_consumer(json: &str) -> Result<(), String> {
        consumer_key(json).map(|_| ())
    }

    fn rewrite(cfg: &Config) -> Decision {
        let (key, source) = match Self::presented_key(cfg) {
            Ok(found) => found,
            Err(message) => return Self::deny(cfg, message),
        };
        let Some(consumer) = consumers::lookup(Self::NAME, &key) else {
            return Self::deny(cfg, INVALID_KEY);
        };
        // The gateway found the consumer by a hash of the key; confirming the key itself (in constant time)
        // keeps a wrong index entry or a hash collision from authenticating anyone.
        let Some(stored) = consumer_config(Self::NAME, &consumer, consumer_key) else {
            return Self::deny(cfg, INVALID_KEY);
        };
        if !secrets_equal(key.as_bytes(), stored.as_bytes()) {
            return Self::deny(cfg, INVALID_KEY);
        }
        let hide = || match source {
            Source::Header => request::remove_header(Self::header_name(cfg)).map(|_| ()),
            Source::Query => remove_query_arg(&cfg.query),
        };
        if !admit(Self::NAME, &consumer.username, cfg.hide_credentials, hide) {
            return Self::deny(cfg, INVALID_KEY);
        }
        Decision::Continue
    }
}

#[cfg(test)]
mod tests;
