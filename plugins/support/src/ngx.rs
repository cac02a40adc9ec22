//! nginx/OpenResty reading rules the plugins mirror, so input that APISIX accepts is read the same way.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use sluice_plugin_sdk::{request, FieldError};

/// `ngx.decode_base64`: the standard alphabet, padding optional (clients and configs differ on padding;
/// accepting both costs nothing and matches nginx). Used for Basic credentials, `base64_secret` and
/// `body_base64`.
pub const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

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

/// Removes every occurrence of query argument `name` (e.g. `hide_credentials`), leaving the other arguments
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

/// Decodes a query-string component as `ngx.req.get_uri_args` does.
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
    use base64::Engine as _;

    #[test]
    fn url_decoding_matches_nginx_args() {
        assert_eq!(url_decode("a+b%20c"), "a b c");
        assert_eq!(url_decode("100%"), "100%");
        assert_eq!(url_decode("%zz"), "%zz");
        assert_eq!(url_decode("%E2%9C%93"), "\u{2713}");
    }

    #[test]
    fn base64_padding_is_optional() {
        assert_eq!(BASE64.decode("aGk=").unwrap(), b"hi");
        assert_eq!(BASE64.decode("aGk").unwrap(), b"hi");
        assert!(BASE64.decode("a-b_").is_err(), "standard alphabet only");
    }
}
