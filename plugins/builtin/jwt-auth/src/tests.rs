//! Tokens here are minted by `jsonwebtoken` (an independent implementation) or, for the attacks it refuses
//! to produce (`alg: none`, HMAC keyed with an RSA public key), assembled by hand as an attacker would.

use super::*;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jsonwebtoken::{encode, Algorithm as Alg, EncodingKey, Header};
use serde_json::json;
use sluice_builtin_support::testing::{auth_refusal, consumer, refused};
use sluice_plugin_sdk::testing::TestHost;
use sluice_plugin_sdk::{Level, Phase};

const RSA_PRIVATE: &str = include_str!("../tests/keys/rsa_private.pem");
const RSA_PUBLIC: &str = include_str!("../tests/keys/rsa_public.pem");
const RSA_PUBLIC_PKCS1: &str = include_str!("../tests/keys/rsa_public_pkcs1.pem");
const RSA_OTHER_PRIVATE: &str = include_str!("../tests/keys/rsa_other_private.pem");
const EC_PRIVATE: &str = include_str!("../tests/keys/ec_private.pem");
const EC_PUBLIC: &str = include_str!("../tests/keys/ec_public.pem");
const EC384_PUBLIC: &str = include_str!("../tests/keys/ec384_public.pem");

/// The test host's clock (`TestHost::new`), in seconds.
const NOW: u64 = 1_700_000_000;

/// A host whose consumer `jack` has `jwt-auth` config `config` and key `user-key`.
fn host_with(config: serde_json::Value) -> TestHost {
    let host = TestHost::new();
    let key = config["key"].as_str().unwrap_or("user-key").to_string();
    host.add_consumer("jwt-auth", &key, consumer("jack", &config.to_string()));
    host
}

fn hs256_host() -> TestHost {
    host_with(json!({"key": "user-key", "secret": "my-secret"}))
}

fn claims() -> serde_json::Value {
    json!({"key": "user-key", "exp": NOW + 60})
}

fn mint(alg: Alg, key: &EncodingKey, claims: &serde_json::Value) -> String {
    encode(&Header::new(alg), claims, key).expect("jsonwebtoken encodes")
}

fn hs256(claims: &serde_json::Value) -> String {
    mint(Alg::HS256, &EncodingKey::from_secret(b"my-secret"), claims)
}

/// A token with an arbitrary header and signature bytes, as an attacker would build it.
fn forge(header: &serde_json::Value, claims: &serde_json::Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

/// Runs `rewrite` with route config `route`; `Ok` when let through, else the 401's message (and checks
/// the status and challenge every refusal shares).
fn run(host: &TestHost, route: &str) -> Result<(), String> {
    let cfg = host.configure::<JwtAuth>(route).expect("route config");
    match auth_refusal(host.rewrite(&cfg)) {
        None => Ok(()),
        Some((status, challenge, message)) => {
            assert_eq!(status, 401);
            assert!(challenge.starts_with("Bearer realm="), "{challenge}");
            assert_eq!(host.consumer(), None, "a refused request has no consumer");
            Err(message)
        }
    }
}

/// Presents `token` as `Authorization: Bearer <token>` with the default route config.
fn present(host: &TestHost, token: &str) -> Result<(), String> {
    host.set_request_header("authorization", &format!("Bearer {token}"));
    run(host, "{}")
}

fn assert_not_verified(host: &TestHost, token: &str, logged: &str) {
    assert_eq!(
        present(host, token),
        Err("failed to verify jwt".to_string()),
        "{token}"
    );
    assert!(
        host.logs()
            .iter()
            .any(|(l, m)| *l == Level::Warn && m.contains(logged)),
        "log should mention {logged:?}: {:?}",
        host.logs()
    );
}

#[test]
fn reports_apisix_name_priority_phase_and_credential_field() {
    assert_eq!(JwtAuth::NAME, "jwt-auth");
    assert_eq!(JwtAuth::PRIORITY, 2510);
    assert_eq!(JwtAuth::CONSUMER_CREDENTIAL, Some("key"));
    assert_eq!(TestHost::new().phases::<JwtAuth>(), &[Phase::Rewrite]);
}

#[test]
fn tokens_from_an_independent_library_verify_for_every_algorithm() {
    let rsa = || EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    let cases = [
        (
            Alg::HS256,
            EncodingKey::from_secret(b"s3"),
            json!({"secret": "s3"}),
        ),
        (
            Alg::HS384,
            EncodingKey::from_secret(b"s3"),
            json!({"secret": "s3"}),
        ),
        (
            Alg::HS512,
            EncodingKey::from_secret(b"s3"),
            json!({"secret": "s3"}),
        ),
        (Alg::RS256, rsa(), json!({"public_key": RSA_PUBLIC})),
        (Alg::RS384, rsa(), json!({"public_key": RSA_PUBLIC})),
        (Alg::RS512, rsa(), json!({"public_key": RSA_PUBLIC})),
        (Alg::PS256, rsa(), json!({"public_key": RSA_PUBLIC})),
        (Alg::PS384, rsa(), json!({"public_key": RSA_PUBLIC})),
        (Alg::PS512, rsa(), json!({"public_key": RSA_PUBLIC})),
        (
            Alg::ES256,
            EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap(),
            json!({"public_key": EC_PUBLIC}),
        ),
    ];
    for (alg, signing_key, mut consumer) in cases {
        consumer["key"] = json!("user-key");
        consumer["algorithm"] = json!(format!("{alg:?}"));
        let host = host_with(consumer);
        assert_eq!(
            present(&host, &mint(alg, &signing_key, &claims())),
            Ok(()),
            "{alg:?}"
        );
        assert_eq!(host.consumer().as_deref(), Some("jack"), "{alg:?}");
    }
}

#[test]
fn rsa_public_key_in_pkcs1_pem_and_loose_formatting_is_accepted() {
    // One long base64 line and CRLFs, as keys pasted into JSON by hand often are.
    let (_, der) = keys_pem_body(RSA_PUBLIC);
    let loose = format!("-----BEGIN PUBLIC KEY-----\r\n{der}\r\n-----END PUBLIC KEY-----\r\n");
    for pem in [RSA_PUBLIC_PKCS1.to_string(), loose] {
        let host = host_with(json!({"key": "user-key", "algorithm": "RS256", "public_key": pem}));
        let key = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
        assert_eq!(present(&host, &mint(Alg::RS256, &key, &claims())), Ok(()));
    }
}

/// The label and the base64 body of a PEM on one line.
fn keys_pem_body(pem: &str) -> (String, String) {
    let mut lines = pem.lines();
    let label = lines.next().unwrap_or_default().to_string();
    let body: String = lines.filter(|l| !l.starts_with("-----")).collect();
    (label, body)
}

#[test]
fn base64_secret_is_decoded_before_use() {
    let host = host_with(json!({
        "key": "user-key",
        "secret": STANDARD.encode(b"\x00binary\xffsecret"),
        "base64_secret": true
    }));
    let key = EncodingKey::from_secret(b"\x00binary\xffsecret");
    assert_eq!(present(&host, &mint(Alg::HS256, &key, &claims())), Ok(()));
}

#[test]
fn missing_token_is_401_with_apisix_message_and_challenge() {
    let host = hs256_host();
    let cfg = host.configure::<JwtAuth>("{}").unwrap();
    let Decision::Respond(resp) = host.rewrite(&cfg) else {
        panic!("expected a refusal");
    };
    assert_eq!(resp.status, 401);
    assert_eq!(resp.body, br#"{"message":"Missing JWT token in request"}"#);
    assert!(resp.headers.contains(&(
        "www-authenticate".to_string(),
        r#"Bearer realm="jwt""#.to_string()
    )));
}

#[test]
fn token_is_read_from_header_query_or_cookie() {
    let token = hs256(&claims());

    let host = hs256_host();
    host.set_request_header("authorization", &token);
    assert_eq!(run(&host, "{}"), Ok(()), "header without Bearer prefix");

    let host = hs256_host();
    host.set_request_header("authorization", &format!("bearer {token}"));
    assert_eq!(run(&host, "{}"), Ok(()), "lower-case bearer");

    let host = hs256_host();
    host.set_path(&format!("/x?a=1&jwt={token}"));
    assert_eq!(run(&host, "{}"), Ok(()), "query");

    let host = hs256_host();
    host.set_request_header("cookie", &format!("a=1; jwt={token}; b=2"));
    assert_eq!(run(&host, "{}"), Ok(()), "cookie");
    assert_eq!(host.consumer().as_deref(), Some("jack"));
}

#[test]
fn header_wins_over_query_and_query_over_cookie() {
    let good = hs256(&claims());
    let host = hs256_host();
    host.set_request_header("authorization", "Bearer garbage");
    host.set_path(&format!("/?jwt={good}"));
    assert_eq!(run(&host, "{}"), Err("JWT token invalid".into()));

    let host = hs256_host();
    host.set_path("/?jwt=garbage");
    host.set_request_header("cookie", &format!("jwt={good}"));
    assert_eq!(run(&host, "{}"), Err("JWT token invalid".into()));
}

#[test]
fn custom_header_query_and_cookie_names() {
    let token = hs256(&claims());
    let route = r#"{"header":"x-token","query":"t","cookie":"session"}"#;

    let host = hs256_host();
    host.set_request_header("authorization", &format!("Bearer {token}"));
    host.set_path(&format!("/?jwt={token}"));
    host.set_request_header("cookie", &format!("jwt={token}"));
    assert_eq!(
        run(&host, route),
        Err("Missing JWT token in request".into())
    );

    for setup in [
        |h: &TestHost, t: &str| {
            h.set_request_header("x-token", t);
        },
        |h: &TestHost, t: &str| {
            h.set_path(&format!("/?t={t}"));
        },
        |h: &TestHost, t: &str| {
            h.set_request_header("cookie", &format!("session={t}"));
        },
    ] {
        let host = hs256_host();
        setup(&host, &token);
        assert_eq!(run(&host, route), Ok(()));
    }
}

#[test]
fn malformed_tokens_are_jwt_token_invalid() {
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims().to_string());
    for bad in [
        String::new(),
        "abc".to_string(),
        format!("{header}.{payload}"),
        format!("{header}.{payload}.sig.extra"),
        format!("{header}.{payload}.!!"),
        format!("%%%.{payload}.sig"),
        format!("{}.{payload}.sig", URL_SAFE_NO_PAD.encode("not json")),
        format!(
            "{}.{payload}.sig",
            URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT"}"#)
        ),
        format!("{header}.{}.sig", URL_SAFE_NO_PAD.encode("[1,2]")),
    ] {
        let host = hs256_host();
        host.set_request_header("authorization", &bad);
        assert_eq!(run(&host, "{}"), Err("JWT token invalid".into()), "{bad:?}");
    }
}

#[test]
fn key_claim_must_name_a_known_consumer() {
    let host = hs256_host();
    let token = hs256(&json!({"exp": NOW + 60}));
    assert_eq!(
        present(&host, &token),
        Err("missing user key in JWT token".into())
    );

    let host = hs256_host();
    let token = hs256(&json!({"key": "someone-else", "exp": NOW + 60}));
    assert_eq!(
        present(&host, &token),
        Err("Invalid user key in JWT token".into())
    );

    let host = hs256_host();
    let token = hs256(&json!({"key": 42, "exp": NOW + 60}));
    assert_eq!(
        present(&host, &token),
        Err("Invalid user key in JWT token".into())
    );
}

#[test]
fn key_claim_name_is_configurable() {
    let host = hs256_host();
    host.set_request_header(
        "authorization",
        &hs256(&json!({"iss": "user-key", "exp": NOW + 60})),
    );
    assert_eq!(run(&host, r#"{"key_claim_name":"iss"}"#), Ok(()));
}

#[test]
fn alg_none_is_refused() {
    let host = hs256_host();
    let token = forge(&json!({"alg": "none", "typ": "JWT"}), &claims(), b"");
    assert_not_verified(&host, &token, "\"none\"");
}

#[test]
fn hs256_keyed_with_the_rsa_public_key_is_refused() {
    // The classic algorithm-confusion forgery: anyone holding the (public) key can compute this MAC.
    let host =
        host_with(json!({"key": "user-key", "algorithm": "RS256", "public_key": RSA_PUBLIC}));
    let token = mint(
        Alg::HS256,
        &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
        &claims(),
    );
    assert_not_verified(
        &host,
        &token,
        "\"HS256\" is not consumer jack's algorithm RS256",
    );
}

#[test]
fn a_token_naming_another_algorithm_than_the_consumers_is_refused() {
    let host = hs256_host();
    let token = mint(
        Alg::HS512,
        &EncodingKey::from_secret(b"my-secret"),
        &claims(),
    );
    assert_not_verified(&host, &token, "\"HS512\"");

    let host =
        host_with(json!({"key": "user-key", "algorithm": "RS256", "public_key": RSA_PUBLIC}));
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    assert_not_verified(&host, &mint(Alg::PS256, &key, &claims()), "\"PS256\"");
}

#[test]
fn wrong_keys_and_tampering_are_refused() {
    let host = hs256_host();
    let token = mint(Alg::HS256, &EncodingKey::from_secret(b"not-it"), &claims());
    assert_not_verified(&host, &token, "signature mismatch");

    let host =
        host_with(json!({"key": "user-key", "algorithm": "RS256", "public_key": RSA_PUBLIC}));
    let other = EncodingKey::from_rsa_pem(RSA_OTHER_PRIVATE.as_bytes()).unwrap();
    assert_not_verified(
        &host,
        &mint(Alg::RS256, &other, &claims()),
        "signature mismatch",
    );

    // A valid token whose payload was swapped for one naming another expiry.
    let host = hs256_host();
    let good = hs256(&claims());
    let parts: Vec<&str> = good.split('.').collect();
    let longer = URL_SAFE_NO_PAD.encode(json!({"key": "user-key", "exp": NOW + 9999}).to_string());
    let tampered = format!("{}.{longer}.{}", parts[0], parts[2]);
    assert_not_verified(&host, &tampered, "signature mismatch");

    // An ES256 signature cut short.
    let host = host_with(json!({"key": "user-key", "algorithm": "ES256", "public_key": EC_PUBLIC}));
    let key = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
    let good = mint(Alg::ES256, &key, &claims());
    let (signed, signature) = good.rsplit_once('.').unwrap();
    let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
    let short = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(&signature[..60]));
    assert_not_verified(&host, &short, "signature mismatch");
}

#[test]
fn exp_is_required_and_enforced_with_grace() {
    let host = hs256_host();
    assert_not_verified(&host, &hs256(&json!({"key": "user-key"})), "no 'exp' claim");

    let host = hs256_host();
    assert_not_verified(
        &host,
        &hs256(&json!({"key": "user-key", "exp": NOW - 1})),
        "'exp' claim expired",
    );

    let host = hs256_host();
    assert_not_verified(
        &host,
        &hs256(&json!({"key": "user-key", "exp": NOW})),
        "'exp' claim expired",
    );

    let host = hs256_host();
    assert_not_verified(
        &host,
        &hs256(&json!({"key": "user-key", "exp": "tomorrow"})),
        "not a number",
    );

    let graceful = || {
        host_with(json!({"key": "user-key", "secret": "my-secret", "lifetime_grace_period": 30}))
    };
    let host = graceful();
    assert_eq!(
        present(&host, &hs256(&json!({"key": "user-key", "exp": NOW - 29}))),
        Ok(())
    );
    let host = graceful();
    assert_not_verified(
        &host,
        &hs256(&json!({"key": "user-key", "exp": NOW - 30})),
        "'exp' claim expired",
    );
}

#[test]
fn nbf_is_enforced_with_grace() {
    let host = hs256_host();
    assert_not_verified(
        &host,
        &hs256(&json!({"key": "user-key", "exp": NOW + 60, "nbf": NOW + 1})),
        "'nbf' claim not valid until",
    );

    let host = hs256_host();
    assert_eq!(
        present(
            &host,
            &hs256(&json!({"key": "user-key", "exp": NOW + 60, "nbf": NOW}))
        ),
        Ok(()),
        "valid from nbf on"
    );

    let host =
        host_with(json!({"key": "user-key", "secret": "my-secret", "lifetime_grace_period": 5}));
    assert_eq!(
        present(
            &host,
            &hs256(&json!({"key": "user-key", "exp": NOW + 60, "nbf": NOW + 5}))
        ),
        Ok(())
    );
}

#[test]
fn claims_to_verify_selects_the_checked_claims() {
    // Without "exp" in the list, a token without expiry is accepted (the admin opted out).
    let host = hs256_host();
    host.set_request_header("authorization", &hs256(&json!({"key": "user-key"})));
    assert_eq!(run(&host, r#"{"claims_to_verify":["nbf"]}"#), Ok(()));

    let host = hs256_host();
    let early = hs256(&json!({"key": "user-key", "exp": NOW + 60, "nbf": NOW + 600}));
    host.set_request_header("authorization", &early);
    assert_eq!(run(&host, r#"{"claims_to_verify":["exp"]}"#), Ok(()));
}

#[test]
fn hide_credentials_removes_the_token_where_it_was_found() {
    let token = hs256(&claims());
    let route = r#"{"hide_credentials":true}"#;

    let host = hs256_host();
    host.set_request_header("authorization", &format!("Bearer {token}"));
    assert_eq!(run(&host, route), Ok(()));
    assert_eq!(host.request_header("authorization"), None);

    let host = hs256_host();
    host.set_path(&format!("/x?a=1&jwt={token}&b=2"));
    assert_eq!(run(&host, route), Ok(()));
    assert_eq!(host.request().query.as_deref(), Some("a=1&b=2"));

    let host = hs256_host();
    host.set_request_header("cookie", &format!("a=1; jwt={token}; b=2"));
    assert_eq!(run(&host, route), Ok(()));
    assert_eq!(host.request_header("cookie").as_deref(), Some("a=1; b=2"));

    let host = hs256_host();
    host.set_request_header("cookie", &format!("jwt={token}"));
    assert_eq!(run(&host, route), Ok(()));
    assert_eq!(host.request_header("cookie"), None);
}

#[test]
fn credentials_are_forwarded_by_default() {
    let token = hs256(&claims());
    let host = hs256_host();
    host.set_request_header("cookie", &format!("jwt={token}"));
    assert_eq!(run(&host, "{}"), Ok(()));
    assert_eq!(host.request_header("cookie"), Some(format!("jwt={token}")));
}

#[test]
fn store_in_ctx_shares_the_verified_payload() {
    let claims = json!({"key": "user-key", "exp": NOW + 60, "role": "admin"});
    let host = hs256_host();
    host.set_request_header("authorization", &hs256(&claims));
    assert_eq!(run(&host, r#"{"store_in_ctx":true}"#), Ok(()));
    let stored: serde_json::Value =
        serde_json::from_str(&host.context("jwt_auth_payload").unwrap()).unwrap();
    assert_eq!(stored, claims);

    let host = hs256_host();
    host.set_request_header("authorization", &hs256(&claims));
    assert_eq!(run(&host, "{}"), Ok(()));
    assert_eq!(host.context("jwt_auth_payload"), None);
}

#[test]
fn an_unusable_stored_consumer_config_is_401_and_logged() {
    let host = host_with(json!({"key": "user-key", "algorithm": "RS256"}));
    assert_eq!(
        present(&host, &hs256(&claims())),
        Err("failed to verify jwt".into())
    );
    assert!(host
        .logs()
        .iter()
        .any(|(l, m)| *l == Level::Error && m.contains("consumer jack")));
}

#[test]
fn route_config_is_validated() {
    let error = refused::<JwtAuth>;
    assert!(error(r#"{"anonymous_consumer":"x"}"#).contains("unknown field"));
    assert!(error(r#"{"key_claim_name":""}"#).contains(r#"property "key_claim_name""#));
    assert!(error(r#"{"cookie":""}"#).contains(r#"property "cookie""#));
    assert!(error(r#"{"claims_to_verify":["iat"]}"#).contains("unknown variant"));
    assert!(error(r#"{"claims_to_verify":["exp","exp"]}"#).contains("unique"));
}

#[test]
fn consumer_config_is_validated_at_write_time() {
    let error = |config: serde_json::Value| {
        JwtAuth::validate_consumer(&config.to_string()).expect_err(&config.to_string())
    };
    let ok = |config: serde_json::Value| {
        assert_eq!(
            JwtAuth::validate_consumer(&config.to_string()),
            Ok(()),
            "{config}"
        )
    };

    ok(json!({"key": "k", "secret": "s"}));
    ok(json!({"key": "k", "secret": "s", "exp": 3600, "lifetime_grace_period": 10}));
    ok(
        json!({"key": "k", "algorithm": "RS256", "public_key": RSA_PUBLIC, "private_key": RSA_PRIVATE}),
    );
    ok(json!({"key": "k", "algorithm": "ES256", "public_key": EC_PUBLIC}));

    assert_eq!(
        error(json!({"secret": "s"})),
        r#"property "key" is required"#
    );
    assert_eq!(
        error(json!({"key": "k"})),
        r#"property "secret" is required when "algorithm" is "HS256""#
    );
    assert_eq!(
        error(json!({"key": "k", "algorithm": "HS512"})),
        r#"property "secret" is required when "algorithm" is "HS512""#
    );
    assert_eq!(
        error(json!({"key": "k", "secret": "***", "base64_secret": true})),
        "base64_secret required but the secret is not in base64 format"
    );
    assert_eq!(
        error(json!({"key": "k", "algorithm": "RS256", "secret": "s"})),
        r#"property "public_key" is required when "algorithm" is "RS256""#
    );
    assert!(
        error(json!({"key": "k", "algorithm": "RS256", "public_key": "hello"}))
            .starts_with(r#"invalid "public_key" for "RS256": not a PEM block"#)
    );
    assert!(
        error(json!({"key": "k", "algorithm": "RS256", "public_key": EC_PUBLIC}))
            .ends_with(r#"an EC key, but "RS256" needs an RSA key"#)
    );
    assert!(
        error(json!({"key": "k", "algorithm": "ES256", "public_key": RSA_PUBLIC}))
            .ends_with(r#"an RSA key, but "ES256" needs a P-256 EC key"#)
    );
    assert!(
        error(json!({"key": "k", "algorithm": "ES256", "public_key": EC384_PUBLIC}))
            .ends_with("an EC key on curve P-384, but \"ES256\" needs a P-256 EC key")
    );
    assert!(
        error(json!({"key": "k", "algorithm": "ES256", "public_key": RSA_PUBLIC_PKCS1}))
            .ends_with(r#"an RSA key, but "ES256" needs a P-256 EC key"#)
    );
    assert!(error(json!({"key": "k", "algorithm": "RS256",
        "public_key": "-----BEGIN PUBLIC KEY-----\nMIIBIjAN\n-----END PUBLIC KEY-----"}))
    .contains("malformed public key"));
    assert!(error(json!({
        "key": "k", "algorithm": "RS256",
        "public_key": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
    }))
    .contains("a certificate, not a public key"));
    assert!(error(json!({"key": "k", "algorithm": "RS256",
        "public_key": RSA_PUBLIC.replace("-----END PUBLIC KEY-----", "")}))
    .contains("no \"-----END PUBLIC KEY-----\" line"));
    assert!(
        error(json!({"key": "k", "algorithm": "ES384", "public_key": EC384_PUBLIC}))
            .contains("\"ES384\" is not supported")
    );
    assert!(
        error(json!({"key": "k", "algorithm": "none", "secret": "s"}))
            .contains("matches none of the enum values")
    );
    assert!(error(json!({"key": "k", "secret": "s", "exp": 0})).contains(r#"property "exp""#));
    assert!(
        error(json!({"key": "k", "secret": "s", "lifetime_grace_period": -1}))
            .contains("invalid value")
    );
    assert!(error(json!({"key": "k", "secret": "s", "scret": "typo"})).contains("unknown field"));
}
