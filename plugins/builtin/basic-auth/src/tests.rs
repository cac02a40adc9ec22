use super::*;
use sluice_builtin_support::testing::{auth_refusal, consumer, refused};
use sluice_plugin_sdk::testing::TestHost;
use sluice_plugin_sdk::{Level, Phase};

fn basic(user_and_password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_and_password)
    )
}

/// A host with consumer `username` holding this `basic-auth` config, as the gateway indexes it.
fn host_with(username: &str, config: &str) -> TestHost {
    let host = TestHost::new();
    host.add_consumer("basic-auth", username, consumer(username, config));
    host
}

/// A host with consumer `foo` holding `foo:bar`.
fn host() -> TestHost {
    host_with("foo", r#"{"username":"foo","password":"bar"}"#)
}

/// Runs `rewrite` with `Authorization` set (when given) and returns the refusal's status, challenge and
/// message, or `None` when the request was let through.
fn run(
    host: &TestHost,
    config: &str,
    authorization: Option<&str>,
) -> Option<(u16, String, String)> {
    if let Some(value) = authorization {
        host.set_request_header("authorization", value);
    }
    let cfg = host.configure::<BasicAuth>(config).unwrap();
    auth_refusal(host.rewrite(&cfg))
}

fn refused_with(host: &TestHost, authorization: Option<&str>) -> String {
    let (status, challenge, message) = run(host, "{}", authorization).expect("refused");
    assert_eq!(status, 401);
    assert_eq!(challenge, r#"Basic realm="basic""#);
    assert_eq!(host.consumer(), None);
    message
}

#[test]
fn reports_apisix_name_priority_phase_and_credential_field() {
    assert_eq!(BasicAuth::NAME, "basic-auth");
    assert_eq!(BasicAuth::PRIORITY, 2520);
    assert_eq!(BasicAuth::CONSUMER_CREDENTIAL, Some("username"));
    assert_eq!(TestHost::new().phases::<BasicAuth>(), &[Phase::Rewrite]);
}

#[test]
fn good_credentials_authenticate_and_are_forwarded_by_default() {
    let host = host();
    let header = basic("foo:bar");
    assert_eq!(run(&host, "{}", Some(&header)), None);
    assert_eq!(host.consumer().as_deref(), Some("foo"));
    assert_eq!(host.request_header("authorization"), Some(header));
}

#[test]
fn scheme_is_case_insensitive_and_padding_optional() {
    let host = host();
    // base64("foo:bar") is "Zm9vOmJhcg==".
    assert_eq!(run(&host, "{}", Some("basic Zm9vOmJhcg")), None);
    assert_eq!(host.consumer().as_deref(), Some("foo"));
}

#[test]
fn hide_credentials_strips_authorization() {
    let host = host();
    assert_eq!(
        run(
            &host,
            r#"{"hide_credentials":true}"#,
            Some(&basic("foo:bar"))
        ),
        None
    );
    assert_eq!(host.request_header("authorization"), None);
}

#[test]
fn missing_header() {
    assert_eq!(
        refused_with(&host(), None),
        "Missing authorization in request"
    );
}

#[test]
fn malformed_headers_are_invalid_authorization() {
    for bad in [
        "Bearer Zm9vOmJhcg==".to_string(),
        "Basic".to_string(),
        "Basic !!!not-base64!!!".to_string(),
        basic("no-colon"),
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode([0xff, 0xfe, b':', b'x'])
        ),
    ] {
        let host = host();
        assert_eq!(
            refused_with(&host, Some(&bad)),
            "Invalid authorization in request",
            "{bad}"
        );
    }
}

#[test]
fn wrong_password_or_unknown_user_is_invalid_user_authorization() {
    for bad in ["foo:baz", "foo:", "foo:bar ", "nobody:bar", ":bar"] {
        let host = host();
        assert_eq!(
            refused_with(&host, Some(&basic(bad))),
            "Invalid user authorization",
            "{bad}"
        );
    }
}

#[test]
fn password_may_contain_colons() {
    let host = host_with("ann", r#"{"username":"ann","password":"a:b:c"}"#);
    assert_eq!(run(&host, "{}", Some(&basic("ann:a:b:c"))), None);
    assert_eq!(host.consumer().as_deref(), Some("ann"));
}

#[test]
fn an_unusable_stored_consumer_config_is_401_and_logged() {
    let host = host_with("foo", r#"{"username":"foo"}"#);
    assert_eq!(
        refused_with(&host, Some(&basic("foo:bar"))),
        "Invalid user authorization"
    );
    assert!(host
        .logs()
        .iter()
        .any(|(l, m)| *l == Level::Error && m.contains("consumer foo")));
}

#[test]
fn realm_is_configurable() {
    let (_, challenge, _) = run(&host(), r#"{"realm":"staff"}"#, None).unwrap();
    assert_eq!(challenge, r#"Basic realm="staff""#);
}

#[test]
fn route_config_is_validated() {
    let err = refused::<BasicAuth>(r#"{"hide_credential":true}"#);
    assert!(err.contains("unknown field `hide_credential`"), "{err}");
}

#[test]
fn consumer_config_requires_username_and_password() {
    assert_eq!(
        BasicAuth::validate_consumer(r#"{"username":"foo","password":"bar"}"#),
        Ok(())
    );
    assert_eq!(
        BasicAuth::validate_consumer(r#"{"password":"bar"}"#).unwrap_err(),
        r#"property "username" is required"#
    );
    assert_eq!(
        BasicAuth::validate_consumer(r#"{"username":"foo"}"#).unwrap_err(),
        r#"property "password" is required"#
    );
    assert!(
        BasicAuth::validate_consumer(r#"{"username":"foo","password":""}"#)
            .unwrap_err()
            .contains(r#"property "password" validation failed"#)
    );
    assert!(
        BasicAuth::validate_consumer(r#"{"username":"a:b","password":"x"}"#)
            .unwrap_err()
            .contains(r#"must not contain ":""#)
    );
}
