use super::*;
use sluice_builtin_support::testing::{auth_refusal, consumer, refused};
use sluice_plugin_sdk::testing::TestHost;
use sluice_plugin_sdk::{Level, Phase};

/// A host with consumer `jack` holding key `k1`, as the gateway indexes it.
fn host() -> TestHost {
    let host = TestHost::new();
    host.add_consumer("key-auth", "k1", consumer("jack", r#"{"key":"k1"}"#));
    host
}

/// Status, `WWW-Authenticate` and the `message` of a refusal.
fn refusal(decision: Decision) -> (u16, String, String) {
    auth_refusal(decision).expect("a refusal")
}

#[test]
fn reports_apisix_name_priority_phase_and_credential_field() {
    assert_eq!(KeyAuth::NAME, "key-auth");
    assert_eq!(KeyAuth::PRIORITY, 2500);
    assert_eq!(KeyAuth::CONSUMER_CREDENTIAL, Some("key"));
    assert_eq!(TestHost::new().phases::<KeyAuth>(), &[Phase::Rewrite]);
}

#[test]
fn missing_key_is_401_with_apisix_message_and_challenge() {
    let host = host();
    let cfg = host.configure::<KeyAuth>("{}").unwrap();
    let (status, challenge, message) = refusal(host.rewrite(&cfg));
    assert_eq!(status, 401);
    assert_eq!(challenge, r#"apikey realm="key""#);
    assert_eq!(message, "Missing API key in request");
    assert_eq!(host.consumer(), None);
}

#[test]
fn unknown_key_is_401_invalid() {
    let host = host();
    host.set_request_header("apikey", "nope");
    let cfg = host.configure::<KeyAuth>("{}").unwrap();
    let (status, _, message) = refusal(host.rewrite(&cfg));
    assert_eq!(status, 401);
    assert_eq!(message, "Invalid API key in request");
    assert_eq!(host.consumer(), None);
}

#[test]
fn valid_header_key_authenticates_and_keeps_the_header_by_default() {
    let host = host();
    host.set_request_header("apikey", "k1");
    let cfg = host.configure::<KeyAuth>("{}").unwrap();
    assert_eq!(host.rewrite(&cfg), Decision::Continue);
    assert_eq!(host.consumer().as_deref(), Some("jack"));
    assert_eq!(host.request_header("apikey").as_deref(), Some("k1"));
}

#[test]
fn query_key_is_read_when_the_header_is_absent_and_url_decoded() {
    let host = TestHost::new();
    host.add_consumer("key-auth", "a+b c", consumer("rose", r#"{"key":"a+b c"}"#));
    host.set_path("/x?page=2&apikey=a%2Bb+c");
    let cfg = host.configure::<KeyAuth>("{}").unwrap();
    assert_eq!(host.rewrite(&cfg), Decision::Continue);
    assert_eq!(host.consumer().as_deref(), Some("rose"));
    assert_eq!(
        host.request().query.as_deref(),
        Some("page=2&apikey=a%2Bb+c")
    );
}

#[test]
fn header_takes_priority_over_query() {
    let host = host();
    host.set_request_header("apikey", "wrong");
    host.set_path("/x?apikey=k1");
    let cfg = host.configure::<KeyAuth>("{}").unwrap();
    let (status, _, message) = refusal(host.rewrite(&cfg));
    assert_eq!(
        (status, message.as_str()),
        (401, "Invalid API key in request")
    );
}

#[test]
fn custom_header_and_query_names() {
    let host = host();
    let cfg = host
        .configure::<KeyAuth>(r#"{"header":"X-Api-Key","query":"token"}"#)
        .unwrap();
    host.set_request_header("apikey", "k1");
    let (_, _, message) = refusal(host.rewrite(&cfg));
    assert_eq!(
        message, "Missing API key in request",
        "default names are not read"
    );

    host.next_request();
    host.set_request_header("x-api-key", "k1");
    assert_eq!(host.rewrite(&cfg), Decision::Continue);

    host.next_request();
    host.set_path("/?token=k1");
    assert_eq!(host.rewrite(&cfg), Decision::Continue);
    assert_eq!(host.consumer().as_deref(), Some("jack"));
}

#[test]
fn hide_credentials_removes_the_header() {
    let host = host();
    host.set_request_header("apikey", "k1");
    host.set_request_header("x-other", "kept");
    let cfg = host
        .configure::<KeyAuth>(r#"{"hide_credentials":true}"#)
        .unwrap();
    assert_eq!(host.rewrite(&cfg), Decision::Continue);
    assert_eq!(host.request_header("apikey"), None);
    assert_eq!(host.request_header("x-other").as_deref(), Some("kept"));
}

#[test]
fn hide_credentials_removes_only_the_key_from_the_query() {
    let host = host();
    host.set_path("/x?a=1&apikey=k1&b=%20&apikey=k1");
    let cfg = host
        .configure::<KeyAuth>(r#"{"hide_credentials":true}"#)
        .unwrap();
    assert_eq!(host.rewrite(&cfg), Decision::Continue);
    assert_eq!(host.request().query.as_deref(), Some("a=1&b=%20"));

    host.next_request();
    host.set_path("/x?apikey=k1");
    assert_eq!(host.rewrite(&cfg), Decision::Continue);
    assert_eq!(host.request().query, None, "an emptied query is dropped");
}

#[test]
fn a_lookup_hit_whose_stored_key_differs_is_refused() {
    // The gateway's index is keyed by a hash; if it ever returned the wrong consumer, the plugin's own
    // comparison must still refuse.
    let host = TestHost::new();
    host.add_consumer("key-auth", "k1", consumer("jack", r#"{"key":"k2"}"#));
    host.set_request_header("apikey", "k1");
    let cfg = host.configure::<KeyAuth>("{}").unwrap();
    let (status, _, message) = refusal(host.rewrite(&cfg));
    assert_eq!(
        (status, message.as_str()),
        (401, "Invalid API key in request")
    );
    assert_eq!(host.consumer(), None);
}

#[test]
fn an_unusable_stored_consumer_config_is_401_and_logged_not_500() {
    let host = TestHost::new();
    host.add_consumer("key-auth", "k1", consumer("jack", r#"{"key":1}"#));
    host.set_request_header("apikey", "k1");
    let cfg = host.configure::<KeyAuth>("{}").unwrap();
    let (status, _, _) = refusal(host.rewrite(&cfg));
    assert_eq!(status, 401);
    assert!(host
        .logs()
        .iter()
        .any(|(l, m)| *l == Level::Error && m.contains("consumer jack")));
}

#[test]
fn bearer_token_reads_the_authorization_header() {
    let host = host();
    let cfg = host
        .configure::<KeyAuth>(r#"{"bearer_token":true,"hide_credentials":true,"realm":"api"}"#)
        .unwrap();
    host.set_request_header("authorization", "Bearer k1");
    assert_eq!(host.rewrite(&cfg), Decision::Continue);
    assert_eq!(host.consumer().as_deref(), Some("jack"));
    assert_eq!(host.request_header("authorization"), None);

    host.next_request();
    host.set_request_header("authorization", "k1");
    let (status, challenge, message) = refusal(host.rewrite(&cfg));
    assert_eq!(status, 401);
    assert_eq!(challenge, r#"Bearer realm="api""#);
    assert_eq!(message, "Invalid Bearer token format");
}

#[test]
fn route_config_is_validated() {
    let err = refused::<KeyAuth>(r#"{"heder":"x"}"#);
    assert!(err.contains("unknown field `heder`"), "{err}");
    let err = refused::<KeyAuth>(r#"{"header":""}"#);
    assert!(
        err.contains(r#"property "header" validation failed"#),
        "{err}"
    );
    let err = refused::<KeyAuth>(r#"{"query":""}"#);
    assert!(err.contains(r#"property "query""#), "{err}");
    let err = refused::<KeyAuth>(r#"{"hide_credentials":"yes"}"#);
    assert!(err.contains("invalid type"), "{err}");
}

#[test]
fn consumer_config_requires_a_non_empty_key() {
    assert_eq!(KeyAuth::validate_consumer(r#"{"key":"k1"}"#), Ok(()));
    assert_eq!(
        KeyAuth::validate_consumer("{}").unwrap_err(),
        r#"property "key" is required"#
    );
    assert!(KeyAuth::validate_consumer(r#"{"key":""}"#)
        .unwrap_err()
        .contains("string too short"));
    assert!(KeyAuth::validate_consumer(r#"{"key":5}"#)
        .unwrap_err()
        .contains("invalid type"));
    assert!(KeyAuth::validate_consumer(r#"{"key":"k","extra":1}"#)
        .unwrap_err()
        .contains("unknown field `extra`"));
}
