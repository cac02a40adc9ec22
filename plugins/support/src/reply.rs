//! The JSON answers plugins send in place of the upstream's response, byte for byte as APISIX's
//! `core.response.exit(code, {message = ...})` family sends them.

use sluice_plugin_sdk::Response;

/// A response with `content-type: application/json` and `body`.
pub fn json_response(status: u16, body: impl Into<Vec<u8>>) -> Response {
    Response::new(status)
        .header("content-type", "application/json")
        .body(body)
}

/// `{"<key>":"<message>"}` (compact, JSON-escaped): APISIX's error bodies use `message` (auth,
/// ip-restriction) or `error_msg` (limits, rewrites). The same bytes as `json!({key: message})`, written
/// without building a `serde_json::Value`, so a plugin that needs no `Value` does not link one.
pub fn json_object(key: &str, message: &str) -> String {
    let quoted = |s: &str| serde_json::to_string(s).unwrap_or_default();
    format!("{{{}:{}}}", quoted(key), quoted(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_what_serde_json_writes_for_the_object() {
        for message in ["plain", "quo\"te", "new\nline", "ünï", "\u{1}"] {
            assert_eq!(
                json_object("error_msg", message),
                serde_json::json!({ "error_msg": message }).to_string()
            );
        }
        let resp = json_response(429, json_object("message", "slow"));
        assert_eq!(resp.status, 429);
        assert_eq!(
            resp.headers,
            [("content-type".to_string(), "application/json".to_string())]
        );
        assert_eq!(resp.body, br#"{"message":"slow"}"#);
    }
}
