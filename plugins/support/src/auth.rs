//! What the built-in auth plugins (`key-auth`, `basic-auth`, `jwt-auth`) share, so all three refuse,
//! compare secrets and admit a consumer the same way: one 401 format, one constant-time comparison, one
//! rule for what happens when hiding the credential or naming the consumer fails.

use crate::reply::{json_object, json_response};
use sha2::{Digest, Sha256};
use sluice_plugin_sdk::{log, request, Consumer, Decision, FieldError};
use subtle::ConstantTimeEq;

/// The 401 every auth failure answers with: APISIX's `{"message": ...}` body and a `WWW-Authenticate`
/// challenge (`<scheme> realm="<realm>"`), so clients and APISIX-era tooling see the same thing.
pub fn unauthorized(scheme: &str, realm: &str, message: &str) -> Decision {
    Decision::Respond(
        json_response(401, json_object("message", message))
            .header("www-authenticate", format!("{scheme} realm=\"{realm}\"")),
    )
}

/// Compares two secrets in time independent of where they differ *and* of their lengths: both sides are
/// hashed first, so a timing probe learns neither a prefix of the stored secret nor its length.
pub fn secrets_equal(presented: &[u8], stored: &[u8]) -> bool {
    Sha256::digest(presented)
        .ct_eq(&Sha256::digest(stored))
        .into()
}

/// Completes a successful authentication: runs `hide` when `hide_credentials` is set, then marks the
/// request as `username`'s. `false` when either step failed (logged): the caller then refuses the request,
/// because forwarding a credential the admin asked to hide, or a request whose consumer later plugins and
/// the upstream cannot see, is worse than a 401.
pub fn admit(
    plugin: &str,
    username: &str,
    hide_credentials: bool,
    hide: impl FnOnce() -> Result<(), FieldError>,
) -> bool {
    if hide_credentials {
        if let Err(e) = hide() {
            log::error(&format!("{plugin}: could not hide the credential: {e}"));
            return false;
        }
    }
    if let Err(e) = request::set_consumer(username) {
        log::error(&format!("{plugin}: could not set consumer {username}: {e}"));
        return false;
    }
    true
}

/// Parses the matched consumer's stored config with `parse`. The gateway validated it on write, so a
/// failure means the store and the plugin disagree (e.g. across an upgrade): it is logged and `None` makes
/// the caller refuse the request with a 401 rather than fail it with a 500.
pub fn consumer_config<T>(
    plugin: &str,
    consumer: &Consumer,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Option<T> {
    match parse(&consumer.plugin_config) {
        Ok(config) => Some(config),
        Err(e) => {
            log::error(&format!(
                "{plugin}: consumer {} has an unusable config: {e}",
                consumer.username
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_by_content_only() {
        assert!(secrets_equal(b"k1", b"k1"));
        assert!(!secrets_equal(b"k1", b"k2"));
        assert!(!secrets_equal(b"k1", b"k1 "));
        assert!(!secrets_equal(b"", b"k1"));
    }

    #[test]
    fn the_401_carries_the_challenge_and_apisix_body() {
        let Decision::Respond(resp) = unauthorized("Basic", "staff", "Invalid \"user\"") else {
            panic!("a refusal");
        };
        assert_eq!(resp.status, 401);
        assert_eq!(
            resp.headers,
            [
                ("content-type".to_string(), "application/json".to_string()),
                (
                    "www-authenticate".to_string(),
                    r#"Basic realm="staff""#.to_string()
                )
            ]
        );
        assert_eq!(resp.body, br#"{"message":"Invalid \"user\""}"#);
    }
}
