//! Helpers shared by the built-in auth plugins (`key-auth`, `basic-auth`, `jwt-auth`).
//!
//! It lives in `key-auth` and the other two include it with `#[path]`: every crate under
//! `plugins/builtin/` is built and shipped as a plugin component, so a plain library crate cannot sit beside
//! them, and a plugin crate cannot depend on another (both would export the component's entry points).
//! Each includer uses a subset, hence the `dead_code` allowance at the include site.

use sha2::{Digest, Sha256};
use sluice_plugin_sdk::{log, request, Consumer, Decision, FieldError, Response};
use subtle::ConstantTimeEq;

/// The 401 every auth failure answers with: APISIX's `{"message": ...}` body and a `WWW-Authenticate`
/// challenge (`<scheme> realm="<realm>"`), so clients and APISIX-era tooling see the same thing.
pub fn unauthorized(scheme: &str, realm: &str, message: &str) -> Decision {
    // Serialized through a struct rather than `json!`: same bytes, without linking `Value` into every plugin.
    #[derive(serde::Serialize)]
    struct Body<'a> {
        message: &'a str,
    }
    let body = serde_json::to_vec(&Body { message }).unwrap_or_default();
    Decision::Respond(
        Response::new(401)
            .header("content-type", "application/json")
            .header("www-authenticate", format!("{scheme} realm=\"{realm}\""))
            .body(body),
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

/// A required, non-empty string property of a consumer config, with APISIX's schema wording so an
/// admin sees the message they would get from APISIX.
pub fn required_string(value: Option<String>, property: &str) -> Result<String, String> {
    match value {
        None => Err(format!("property \"{property}\" is required")),
        Some(v) if v.is_empty() => Err(format!(
            "property \"{property}\" validation failed: string too short, expected at least 1, got 0"
        )),
        Some(v) => Ok(v),
    }
}

/// Refuses an empty name for a route-level field naming a header, query argument or cookie: an empty name
/// could never match, so the plugin would reject every request.
pub fn non_empty_name(value: &str, property: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!(
            "property \"{property}\" validation failed: string too short, expected at least 1, got 0"
        ));
    }
    Ok(())
}

/// The first value of query argument `name`, decoded like nginx's `ngx.req.get_uri_args` (`+` is a space,
/// `%XX` escapes), so a credential that works against APISIX works here.
pub fn query_arg(name: &str) -> Option<String> {
    let query = request::query()?;
    query
        .split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (url_decode(k) == name).then(|| url_decode(v))
        })
        .next()
}

/// Removes every occurrence of query argument `name` (`hide_credentials`), leaving the other arguments
/// byte for byte as the client sent them.
pub fn remove_query_arg(name: &str) -> Result<(), FieldError> {
    let Some(query) = request::query() else {
        return Ok(());
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let key = pair.split_once('=').map_or(*pair, |(k, _)| k);
            url_decode(key) != name
        })
        .collect();
    let rest = kept.join("&");
    request::set_query(if rest.is_empty() { None } else { Some(&rest) })
}

fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    // A stray `%` stays literal, as nginx leaves it.
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_decoding_matches_nginx_args() {
        assert_eq!(url_decode("a+b%20c"), "a b c");
        assert_eq!(url_decode("100%"), "100%");
        assert_eq!(url_decode("%zz"), "%zz");
        assert_eq!(url_decode("%E2%9C%93"), "\u{2713}");
    }

    #[test]
    fn secrets_compare_by_content_only() {
        assert!(secrets_equal(b"k1", b"k1"));
        assert!(!secrets_equal(b"k1", b"k2"));
        assert!(!secrets_equal(b"k1", b"k1 "));
        assert!(!secrets_equal(b"", b"k1"));
    }

    #[test]
    fn required_strings_use_apisix_wording() {
        assert_eq!(
            required_string(None, "key").unwrap_err(),
            "property \"key\" is required"
        );
        assert!(required_string(Some(String::new()), "key")
            .unwrap_err()
            .contains("string too short"));
        assert_eq!(required_string(Some("k".into()), "key").unwrap(), "k");
    }
}
