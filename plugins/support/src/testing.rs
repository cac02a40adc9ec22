//! Helpers for the built-in plugins' native unit tests, on top of the SDK's [`TestHost`]: the config and
//! answer plumbing every plugin's tests repeat, so a test reads as what it checks.
//!
//! Enabled by the `testing` feature, which plugins turn on from `[dev-dependencies]` only.

use serde_json::Value;
use sluice_plugin_sdk::testing::{TestConfig, TestHost};
use sluice_plugin_sdk::{Consumer, Decision, Plugin, Response};

/// Parses and validates `json` as `P`'s config like the gateway does; panics when it is refused.
pub fn configure<P: Plugin>(host: &TestHost, json: &str) -> TestConfig<P> {
    host.configure::<P>(json)
        .unwrap_or_else(|e| panic!("config {json} refused: {e}"))
}

/// A fresh [`TestHost`] and config `json` of `P` on it (panics when the config is refused).
pub fn setup<P: Plugin>(json: &str) -> (TestHost, TestConfig<P>) {
    let host = TestHost::new();
    let cfg = configure(&host, json);
    (host, cfg)
}

/// The message the gateway refuses config `json` of `P` with; panics when it is accepted.
pub fn refused<P: Plugin>(json: &str) -> String {
    match TestHost::new().configure::<P>(json) {
        Ok(_) => panic!("config {json} was accepted"),
        Err(e) => e,
    }
}

/// The response a phase answered with; panics when it let the request through.
pub fn answer(decision: Decision) -> Response {
    match decision {
        Decision::Respond(response) => response,
        other => panic!("expected an answer, got {other:?}"),
    }
}

/// The first value of header `name` (ASCII case-insensitive) of an answer.
pub fn header(response: &Response, name: &str) -> Option<String> {
    header_values(&response.headers, name)
        .first()
        .map(|v| v.to_string())
}

/// Every value of header `name` (ASCII case-insensitive) in a header list, in order.
pub fn header_values<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// The JSON body of an answer; panics when it is not JSON.
pub fn json_body(response: &Response) -> Value {
    serde_json::from_slice(&response.body).expect("JSON body")
}

/// A consumer as the gateway hands it to an auth plugin: `username` with this plugin's `config`.
pub fn consumer(username: &str, config: &str) -> Consumer {
    Consumer {
        username: username.to_string(),
        plugin_config: config.to_string(),
        labels: Vec::new(),
    }
}

/// What an auth plugin's refusal ([`crate::auth::unauthorized`]) tells the client: the status, the
/// `WWW-Authenticate` challenge and the JSON `message`; `None` when the request was let through. Checks
/// that the body is declared JSON.
pub fn auth_refusal(decision: Decision) -> Option<(u16, String, String)> {
    let Decision::Respond(response) = decision else {
        return None;
    };
    assert_eq!(
        header(&response, "content-type").as_deref(),
        Some("application/json")
    );
    let message = json_body(&response)["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let challenge = header(&response, "www-authenticate").unwrap_or_default();
    Some((response.status, challenge, message))
}
