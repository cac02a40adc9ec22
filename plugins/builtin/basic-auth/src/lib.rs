//! `basic-auth`: HTTP Basic authentication (RFC 7617) against consumers' `basic-auth` credentials,
//! APISIX-compatible (same fields, priority, status codes and messages).
//!
//! Route config: `hide_credentials` (default false: strip `Authorization` before proxying), `realm`
//! (default `basic`, in the `WWW-Authenticate` challenge).
//! Consumer config: `username` (required, unique: the gateway indexes consumers by it), `password`
//! (required).
//!
//! Runs in `rewrite`, as in APISIX, so the consumer is known before any `access` plugin.

use base64::Engine;
use serde::Deserialize;
use sluice_builtin_support::auth::{admit, consumer_config, secrets_equal, unauthorized};
use sluice_builtin_support::ngx::BASE64;
use sluice_builtin_support::schema::{invalid, required_string};
use sluice_plugin_sdk::{consumers, export_plugin, log, request, Decision, Plugin};

const MISSING: &str = "Missing authorization in request";
const MALFORMED: &str = "Invalid authorization in request";
const INVALID_USER: &str = "Invalid user authorization";

/// Route-level config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    hide_credentials: bool,
    #[serde(default = "default_realm")]
    realm: String,
}

fn default_realm() -> String {
    "basic".to_string()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConsumerConfig {
    username: Option<String>,
    password: Option<String>,
}

/// A consumer's validated `basic-auth` credentials.
struct Credentials {
    username: String,
    password: String,
}

fn parse_consumer(json: &str) -> Result<Credentials, String> {
    let raw: RawConsumerConfig = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let username = required_string("username", raw.username)?;
    let password = required_string("password", raw.password)?;
    if username.contains(':') {
        // RFC 7617: the user-id ends at the first colon, so such a user could never authenticate.
        return Err(invalid("username", r#"must not contain ":""#));
    }
    Ok(Credentials { username, password })
}

/// Splits `Basic <base64(user:password)>`; the error is the reason, for the log.
fn parse_authorization(header: &str) -> Result<Credentials, &'static str> {
    let (scheme, token) = header
        .trim()
        .split_once(char::is_whitespace)
        .ok_or("not of the form `Basic <credentials>`")?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err("the scheme is not Basic");
    }
    let decoded = BASE64
        .decode(token.trim())
        .map_err(|_| "the credentials are not base64")?;
    let decoded = String::from_utf8(decoded).map_err(|_| "the credentials are not UTF-8")?;
    // The password may itself contain colons; the user-id may not (RFC 7617).
    let (username, password) = decoded
        .split_once(':')
        .ok_or("the credentials have no `:` between user and password")?;
    Ok(Credentials {
        username: username.to_string(),
        password: password.to_string(),
    })
}

pub struct BasicAuth;

#[export_plugin]
impl Plugin for BasicAuth {
    type Config = Config;
    const NAME: &'static str = "basic-auth";
    const PRIORITY: i32 = 2520;
    const CONSUMER_CREDENTIAL: Option<&'static str> = Some("username");

    fn validate_consumer(json: &str) -> Result<(), String> {
        parse_consumer(json).map(|_| ())
    }

    fn rewrite(cfg: &Config) -> Decision {
        let deny = |message| unauthorized("Basic", &cfg.realm, message);
        let Some(header) = request::header("authorization") else {
            return deny(MISSING);
        };
        let presented = match parse_authorization(&header) {
            Ok(c) => c,
            Err(reason) => {
                log::debug(&format!(
                    "basic-auth: invalid Authorization header: {reason}"
                ));
                return deny(MALFORMED);
            }
        };
        let Some(consumer) = consumers::lookup(Self::NAME, &presented.username) else {
            return deny(INVALID_USER);
        };
        let Some(stored) = consumer_config(Self::NAME, &consumer, parse_consumer) else {
            return deny(INVALID_USER);
        };
        // Both compared in full (no short-circuit on the username), the password in constant time.
        let user_ok = stored.username == presented.username;
        let password_ok = secrets_equal(presented.password.as_bytes(), stored.password.as_bytes());
        if !(user_ok & password_ok) {
            return deny(INVALID_USER);
        }
        let hide = || request::remove_header("authorization").map(|_| ());
        if !admit(Self::NAME, &consumer.username, cfg.hide_credentials, hide) {
            return deny(INVALID_USER);
        }
        Decision::Continue
    }
}

#[cfg(test)]
mod tests;
