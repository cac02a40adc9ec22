//! `jwt-auth`: authenticates a request by a JSON Web Token signed with a consumer's key,
//! APISIX-compatible (same fields, defaults, priority, status codes and messages).
//!
//! Route config: `header` (default `authorization`, a `Bearer ` prefix is stripped), `query` (default
//! `jwt`), `cookie` (default `jwt`), tried in that order; `hide_credentials` (default false: strip the
//! token before proxying); `key_claim_name` (default `key`: the claim naming the consumer);
//! `claims_to_verify` (default `["exp", "nbf"]`); `store_in_ctx` (default false: put the verified payload
//! in the request context as `jwt_auth_payload`); `realm` (default `jwt`).
//! Consumer config: `key` (required, unique: the gateway indexes consumers by it), `algorithm` (default
//! HS256; HS256/384/512, RS256/384/512, PS256/384/512, ES256), `secret` (HS*, with `base64_secret`) or
//! `public_key` (PEM, the others), `lifetime_grace_period` (seconds of clock skew, default 0).
//!
//! Stricter than APISIX where APISIX is unsafe: the token's `alg` must equal the consumer's algorithm
//! (so `none` and algorithm confusion never verify), and with `exp` in `claims_to_verify` (the default) a
//! token without `exp` is refused rather than valid forever.

use serde::Deserialize;
use serde_json::Value;
use sluice_builtin_support::auth::{admit, consumer_config, unauthorized};
use sluice_builtin_support::ngx::{query_arg, remove_query_arg};
use sluice_builtin_support::schema::{invalid, non_empty_string};
use sluice_plugin_sdk::{clock, consumers, context, export_plugin, log, request, Decision, Plugin};

mod keys;
mod token;

use keys::ConsumerKey;

const MISSING_TOKEN: &str = "Missing JWT token in request";
const INVALID_TOKEN: &str = "JWT token invalid";
const MISSING_KEY: &str = "missing user key in JWT token";
const INVALID_KEY: &str = "Invalid user key in JWT token";
const NOT_VERIFIED: &str = "failed to verify jwt";

/// A registered claim checked after the signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Claim {
    Exp,
    Nbf,
}

/// Route-level config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_header")]
    header: String,
    #[serde(default = "default_jwt")]
    query: String,
    #[serde(default = "default_jwt")]
    cookie: String,
    #[serde(default)]
    hide_credentials: bool,
    #[serde(default = "default_key_claim")]
    key_claim_name: String,
    #[serde(default = "default_claims")]
    claims_to_verify: Vec<Claim>,
    #[serde(default)]
    store_in_ctx: bool,
    #[serde(default = "default_jwt")]
    realm: String,
}

fn default_header() -> String {
    "authorization".to_string()
}
fn default_jwt() -> String {
    "jwt".to_string()
}
fn default_key_claim() -> String {
    "key".to_string()
}
fn default_claims() -> Vec<Claim> {
    vec![Claim::Exp, Claim::Nbf]
}

/// Where the token was found: `hide_credentials` removes it from there.
#[derive(Clone, Copy)]
enum Source {
    Header,
    Query,
    Cookie,
}

/// Why a request is refused: the client's message, and the detail for the log (the client gets APISIX's
/// terse message; the operator needs to know whether the token was expired, forged or for another key).
struct Refusal {
    message: &'static str,
    reason: Option<String>,
}

impl Refusal {
    fn new(message: &'static str) -> Self {
        Self {
            message,
            reason: None,
        }
    }
    fn because(message: &'static str, reason: impl Into<String>) -> Self {
        Self {
            message,
            reason: Some(reason.into()),
        }
    }
}

/// The first value of cookie `name` across the request's `Cookie` headers.
fn cookie(name: &str) -> Option<String> {
    request::header_values("cookie").iter().find_map(|header| {
        header.split(';').find_map(|pair| {
            let (n, v) = pair.trim().split_once('=')?;
            (n == name).then(|| v.to_string())
        })
    })
}

/// Removes cookie `name`, keeping the others in order (one `Cookie` header, or none if nothing is left).
fn remove_cookie(name: &str) -> Result<(), sluice_plugin_sdk::FieldError> {
    let kept: Vec<String> = request::header_values("cookie")
        .iter()
        .flat_map(|header| header.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty() && pair.split_once('=').map_or(*pair, |(n, _)| n) != name)
        .map(str::to_string)
        .collect();
    if kept.is_empty() {
        request::remove_header("cookie").map(|_| ())
    } else {
        request::set_header("cookie", &kept.join("; "))
    }
}

fn fetch_token(cfg: &Config) -> Option<(String, Source)> {
    if let Some(value) = request::header(&cfg.header) {
        let token = match value.get(..7) {
            Some(prefix) if prefix.eq_ignore_ascii_case("bearer ") => value[7..].to_string(),
            _ => value,
        };
        return Some((token, Source::Header));
    }
    if let Some(token) = query_arg(&cfg.query) {
        return Some((token, Source::Query));
    }
    cookie(&cfg.cookie).map(|token| (token, Source::Cookie))
}

/// Checks the registered claims at `now_ms` with `grace` seconds of leeway. With `exp` listed, a token
/// must carry one: a token without expiry would stay valid forever if leaked.
fn check_claims(
    payload: &serde_json::Map<String, Value>,
    claims: &[Claim],
    grace: u64,
    now_ms: u64,
) -> Result<(), String> {
    let now = now_ms as f64 / 1000.0;
    let grace = grace as f64;
    for claim in claims {
        let (name, required) = match claim {
            Claim::Exp => ("exp", true),
            Claim::Nbf => ("nbf", false),
        };
        let value = match payload.get(name) {
            None | Some(Value::Null) if required => {
                return Err(format!("the token has no '{name}' claim"))
            }
            None | Some(Value::Null) => continue,
            Some(v) => v
                .as_f64()
                .ok_or_else(|| format!("claim '{name}' is not a number"))?,
        };
        match claim {
            Claim::Exp if now >= value + grace => {
                return Err(format!("'exp' claim expired at {value} (now {now})"))
            }
            Claim::Nbf if now + grace < value => {
                return Err(format!("'nbf' claim not valid until {value} (now {now})"))
            }
            _ => {}
        }
    }
    Ok(())
}

pub struct JwtAuth;

impl JwtAuth {
    /// Finds and verifies the token; on success, the consumer's username, where the token was, and the
    /// verified payload.
    fn authenticate(
        cfg: &Config,
    ) -> Result<(String, Source, serde_json::Map<String, Value>), Refusal> {
        let (raw, source) = fetch_token(cfg).ok_or(Refusal::new(MISSING_TOKEN))?;
        let token = token::parse(&raw).map_err(|why| Refusal::because(INVALID_TOKEN, why))?;
        let user_key = match token.payload.get(&cfg.key_claim_name) {
            None | Some(Value::Null) => return Err(Refusal::new(MISSING_KEY)),
            Some(Value::String(key)) => key.as_str(),
            Some(_) => return Err(Refusal::new(INVALID_KEY)),
        };
        let consumer = consumers::lookup(Self::NAME, user_key).ok_or(Refusal::new(INVALID_KEY))?;
        let key = consumer_config(Self::NAME, &consumer, ConsumerKey::parse)
            .ok_or(Refusal::new(NOT_VERIFIED))?;
        if token.alg != key.algorithm.name() {
            return Err(Refusal::because(
                NOT_VERIFIED,
                format!(
                    "token alg {:?} is not consumer {}'s algorithm {}",
                    token.alg,
                    consumer.username,
                    key.algorithm.name()
                ),
            ));
        }
        if !key.verify(token.signing_input.as_bytes(), &token.signature) {
            return Err(Refusal::because(NOT_VERIFIED, "signature mismatch"));
        }
        check_claims(
            &token.payload,
            &cfg.claims_to_verify,
            key.lifetime_grace_period,
            clock::now_unix_ms(),
        )
        .map_err(|why| Refusal::because(NOT_VERIFIED, why))?;
        Ok((consumer.username, source, token.payload))
    }
}

#[export_plugin]
impl Plugin for JwtAuth {
    type Config = Config;
    const NAME: &'static str = "jwt-auth";
    const PRIORITY: i32 = 2510;
    const CONSUMER_CREDENTIAL: Option<&'static str> = Some("key");

    fn validate(cfg: &Config) -> Result<(), String> {
        non_empty_string("header", &cfg.header)?;
        non_empty_string("query", &cfg.query)?;
        non_empty_string("cookie", &cfg.cookie)?;
        non_empty_string("key_claim_name", &cfg.key_claim_name)?;
        let claims = &cfg.claims_to_verify;
        if claims
            .iter()
            .enumerate()
            .any(|(i, c)| claims[..i].contains(c))
        {
            return Err(invalid("claims_to_verify", "expected unique items"));
        }
        Ok(())
    }

    fn validate_consumer(json: &str) -> Result<(), String> {
        ConsumerKey::parse(json).map(|_| ())
    }

    fn rewrite(cfg: &Config) -> Decision {
        let deny = |message| unauthorized("Bearer", &cfg.realm, message);
        let (username, source, payload) = match Self::authenticate(cfg) {
            Ok(found) => found,
            Err(refusal) => {
                if let Some(reason) = refusal.reason {
                    log::warn(&format!("jwt-auth: {}: {reason}", refusal.message));
                }
                return deny(refusal.message);
            }
        };
        let hide = || match source {
            Source::Header => request::remove_header(&cfg.header).map(|_| ()),
            Source::Query => remove_query_arg(&cfg.query),
            Source::Cookie => remove_cookie(&cfg.cookie),
        };
        if !admit(Self::NAME, &username, cfg.hide_credentials, hide) {
            return deny(NOT_VERIFIED);
        }
        if cfg.store_in_ctx {
            context::set("jwt_auth_payload", &Value::Object(payload).to_string());
        }
        Decision::Continue
    }
}

#[cfg(test)]
mod tests;
