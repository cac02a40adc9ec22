//! The built-in auth plugins (`key-auth`, `basic-auth`, `jwt-auth`) through the real binary: routes name
//! them without any upload, consumers carry the credentials, a refused request never reaches the upstream,
//! and an accepted one arrives with `X-Consumer-Username`. JWTs are minted by `jsonwebtoken`, an
//! implementation independent of the plugin's.

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use std::time::{SystemTime, UNIX_EPOCH};
use support::*;

/// A test key of the jwt-auth crate (see its `tests/keys/README.md`).
macro_rules! test_key {
    ($file:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../plugins/builtin/jwt-auth/tests/keys/",
            $file
        ))
    };
}
const RSA_PRIVATE: &str = test_key!("rsa_private.pem");
const RSA_PUBLIC: &str = test_key!("rsa_public.pem");
const EC_PRIVATE: &str = test_key!("ec_private.pem");
const EC_PUBLIC: &str = test_key!("ec_public.pem");

/// A gateway with route `/auth/*` to `a`, guarded by `plugins`, and these consumers.
async fn guarded(a: &Origin, plugins: Value, consumers: &[Value]) -> Gateway {
    let gw = gateway().start().await;
    for c in consumers {
        gw.put_ok("consumers", c["username"].as_str().unwrap(), c.clone())
            .await;
    }
    gw.put_ok(
        "routes",
        "auth",
        json!({"uri": "/auth/*", "upstream": upstream(&[a]), "plugins": plugins}),
    )
    .await;
    gw
}

/// GET `path` with these headers.
async fn get_with(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut rb = gw.request(reqwest::Method::GET, path);
    for (n, v) in headers {
        rb = rb.header(*n, *v);
    }
    send(rb).await
}

/// Asserts a 401 with APISIX's JSON `message`.
#[track_caller]
fn assert_refused(r: &Resp, message: &str) {
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json(), json!({ "message": message }), "{}", r.text());
    assert!(
        r.header("www-authenticate").is_some(),
        "401 carries a challenge"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_auth_refuses_without_contacting_the_upstream_and_names_the_consumer() {
    let a = origin("a").start();
    let jack = json!({"username": "jack", "plugins": {"key-auth": {"key": "k1"}}});
    let gw = guarded(&a, json!({"key-auth": {}}), &[jack]).await;

    assert_refused(&gw.get("/auth/x").await, "Missing API key in request");
    assert_refused(
        &get_with(&gw, "/auth/x", &[("apikey", "nope")]).await,
        "Invalid API key in request",
    );
    assert_refused(
        &gw.get("/auth/x?apikey=nope").await,
        "Invalid API key in request",
    );
    assert_eq!(
        a.request_count(),
        0,
        "refused requests never reach the upstream"
    );

    // A client cannot pose as another consumer by sending the header itself.
    let ok = get_with(
        &gw,
        "/auth/x",
        &[("apikey", "k1"), ("x-consumer-username", "admin")],
    )
    .await;
    assert_eq!(ok.hit(), (200, Some("a")));
    let seen = a.last().unwrap();
    assert_eq!(seen.header_all("x-consumer-username"), ["jack"]);
    assert_eq!(seen.header("apikey"), Some("k1"), "forwarded unless hidden");

    assert_eq!(gw.get("/auth/x?apikey=k1").await.status, 200);
    assert_eq!(a.last().unwrap().query.as_deref(), Some("apikey=k1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_auth_hide_credentials_strips_the_key_before_proxying() {
    let a = origin("a").start();
    let jack = json!({"username": "jack", "plugins": {"key-auth": {"key": "k1"}}});
    let gw = guarded(
        &a,
        json!({"key-auth": {"header": "x-api-key", "query": "token", "hide_credentials": true}}),
        &[jack],
    )
    .await;

    assert_eq!(
        get_with(&gw, "/auth/x", &[("x-api-key", "k1")])
            .await
            .status,
        200
    );
    let seen = a.last().unwrap();
    assert_eq!(seen.header("x-api-key"), None);
    assert_eq!(seen.header("x-consumer-username"), Some("jack"));

    assert_eq!(gw.get("/auth/x?a=1&token=k1&b=2").await.status, 200);
    assert_eq!(a.last().unwrap().query.as_deref(), Some("a=1&b=2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_credentials_are_validated_on_write() {
    let gw = gateway().start().await;
    let admin = gw.admin();
    let cases = [
        (json!({"key-auth": {}}), "key"),
        (json!({"basic-auth": {"username": "jack"}}), "password"),
        (json!({"jwt-auth": {"secret": "s"}}), "key"),
        (
            json!({"jwt-auth": {"key": "k", "algorithm": "RS256"}}),
            "public_key",
        ),
        (
            json!({"jwt-auth": {"key": "k", "algorithm": "RS256", "public_key": "not a key"}}),
            "public_key",
        ),
        (
            json!({"jwt-auth": {"key": "k", "algorithm": "ES256", "public_key": RSA_PUBLIC}}),
            "P-256",
        ),
    ];
    for (plugins, named) in cases {
        let r = admin
            .put(
                "consumers",
                "jack",
                json!({"username": "jack", "plugins": plugins}),
            )
            .await;
        assert_eq!(r.status, 400, "{plugins}: {}", r.text);
        let msg = r.error_msg().unwrap_or_default();
        assert!(
            msg.contains(named),
            "{plugins}: {msg:?} should name {named}"
        );
    }
    assert_eq!(
        admin.get("consumers/jack").await.status,
        404,
        "nothing was stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_accepts_the_right_password_only() {
    let a = origin("a").start();
    let foo = json!({"username": "foo", "plugins": {"basic-auth": {"username": "foo", "password": "bar"}}});
    let gw = guarded(&a, json!({"basic-auth": {}}), &[foo]).await;
    let basic = |creds: &str| {
        use base64::Engine as _;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(creds)
        )
    };

    let missing = gw.get("/auth/x").await;
    assert_refused(&missing, "Missing authorization in request");
    assert_eq!(
        missing.header("www-authenticate"),
        Some(r#"Basic realm="basic""#)
    );
    assert_refused(
        &get_with(&gw, "/auth/x", &[("authorization", &basic("foo:baz"))]).await,
        "Invalid user authorization",
    );
    assert_refused(
        &get_with(&gw, "/auth/x", &[("authorization", &basic("bob:bar"))]).await,
        "Invalid user authorization",
    );
    assert_refused(
        &get_with(&gw, "/auth/x", &[("authorization", "Basic %%%")]).await,
        "Invalid authorization in request",
    );
    assert_eq!(a.request_count(), 0);

    let good = basic("foo:bar");
    assert_eq!(
        get_with(&gw, "/auth/x", &[("authorization", &good)])
            .await
            .status,
        200
    );
    let seen = a.last().unwrap();
    assert_eq!(seen.header("x-consumer-username"), Some("foo"));
    assert_eq!(seen.header("authorization"), Some(good.as_str()));
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn mint(alg: Algorithm, key: &EncodingKey, claims: Value) -> String {
    encode(&Header::new(alg), &claims, key).expect("jsonwebtoken encodes")
}

/// Consumers `hs` (HS256), `rs` (RS256) and `es` (ES256), and route `/auth/*` guarded by `jwt-auth`.
async fn jwt_gateway(a: &Origin, route_config: Value) -> Gateway {
    let consumers = [
        json!({"username": "hs", "plugins": {"jwt-auth": {"key": "hs-key", "secret": "hs-secret"}}}),
        json!({"username": "rs", "plugins": {"jwt-auth":
            {"key": "rs-key", "algorithm": "RS256", "public_key": RSA_PUBLIC}}}),
        json!({"username": "es", "plugins": {"jwt-auth":
            {"key": "es-key", "algorithm": "ES256", "public_key": EC_PUBLIC}}}),
    ];
    guarded(a, json!({"jwt-auth": route_config}), &consumers).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_auth_verifies_tokens_from_an_independent_library() {
    let a = origin("a").start();
    let gw = jwt_gateway(&a, json!({})).await;
    let exp = now() + 600;
    let tokens = [
        (
            "hs",
            mint(
                Algorithm::HS256,
                &EncodingKey::from_secret(b"hs-secret"),
                json!({"key": "hs-key", "exp": exp}),
            ),
        ),
        (
            "rs",
            mint(
                Algorithm::RS256,
                &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
                json!({"key": "rs-key", "exp": exp}),
            ),
        ),
        (
            "es",
            mint(
                Algorithm::ES256,
                &EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap(),
                json!({"key": "es-key", "exp": exp}),
            ),
        ),
    ];
    for (consumer, token) in &tokens {
        let r = get_with(
            &gw,
            "/auth/x",
            &[("authorization", &format!("Bearer {token}"))],
        )
        .await;
        assert_eq!(r.status, 200, "{consumer}: {}", r.text());
        assert_eq!(
            a.last().unwrap().header("x-consumer-username"),
            Some(*consumer)
        );
    }
    // Query and cookie carry tokens too.
    let (_, hs) = &tokens[0];
    assert_eq!(gw.get(&format!("/auth/x?jwt={hs}")).await.status, 200);
    let cookie = format!("jwt={hs}");
    assert_eq!(
        get_with(&gw, "/auth/x", &[("cookie", &cookie)])
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_auth_refuses_forgeries_and_stale_tokens_without_contacting_the_upstream() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let a = origin("a").start();
    let gw = jwt_gateway(&a, json!({})).await;
    let now = now();
    let hs = EncodingKey::from_secret(b"hs-secret");
    let b64 = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());

    let alg_none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"})),
        b64(json!({"key": "hs-key", "exp": now + 600}))
    );
    // HMAC keyed with the RS256 consumer's public key: computable by anyone who has that key.
    let confused = mint(
        Algorithm::HS256,
        &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
        json!({"key": "rs-key", "exp": now + 600}),
    );
    let expired = mint(
        Algorithm::HS256,
        &hs,
        json!({"key": "hs-key", "exp": now - 10}),
    );
    let not_yet = mint(
        Algorithm::HS256,
        &hs,
        json!({"key": "hs-key", "exp": now + 600, "nbf": now + 300}),
    );
    let no_exp = mint(Algorithm::HS256, &hs, json!({"key": "hs-key"}));
    let unknown = mint(
        Algorithm::HS256,
        &hs,
        json!({"key": "nobody", "exp": now + 600}),
    );
    let wrong_secret = mint(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"guess"),
        json!({"key": "hs-key", "exp": now + 600}),
    );

    let cases = [
        (None, "Missing JWT token in request"),
        (Some("not.a.jwt".to_string()), "JWT token invalid"),
        (Some(alg_none), "failed to verify jwt"),
        (Some(confused), "failed to verify jwt"),
        (Some(expired), "failed to verify jwt"),
        (Some(not_yet), "failed to verify jwt"),
        (Some(no_exp), "failed to verify jwt"),
        (Some(wrong_secret), "failed to verify jwt"),
        (Some(unknown), "Invalid user key in JWT token"),
    ];
    for (token, message) in cases {
        let headers = token
            .as_ref()
            .map(|t| vec![("authorization", t.as_str())])
            .unwrap_or_default();
        let r = get_with(&gw, "/auth/x", &headers).await;
        assert_refused(&r, message);
        assert_eq!(r.header("www-authenticate"), Some(r#"Bearer realm="jwt""#));
    }
    assert_eq!(
        a.request_count(),
        0,
        "no refused request reached the upstream"
    );
    // The reason goes to the log (written off the request path, so wait for it), not to the client.
    gw.wait_for_log(
        "is not consumer rs's algorithm RS256",
        Duration::from_secs(10),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_auth_hide_credentials_and_custom_key_claim() {
    let a = origin("a").start();
    let gw = jwt_gateway(
        &a,
        json!({"hide_credentials": true, "key_claim_name": "iss"}),
    )
    .await;
    let token = mint(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"hs-secret"),
        json!({"iss": "hs-key", "exp": now() + 600}),
    );
    let cookie = format!("theme=dark; jwt={token}");
    assert_eq!(
        get_with(&gw, "/auth/x", &[("cookie", &cookie)])
            .await
            .status,
        200
    );
    let seen = a.last().unwrap();
    assert_eq!(seen.header("cookie"), Some("theme=dark"));
    assert_eq!(seen.header("x-consumer-username"), Some("hs"));

    assert_eq!(
        get_with(&gw, "/auth/x", &[("authorization", &token)])
            .await
            .status,
        200
    );
    assert_eq!(a.last().unwrap().header("authorization"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_auth_plugins_are_listed_as_built_in() {
    let gw = gateway().start().await;
    let list = gw.admin().get("plugins/list").await.ok();
    for name in ["key-auth", "basic-auth", "jwt-auth"] {
        assert!(
            list.json.as_array().unwrap().iter().any(|n| n == name),
            "{name} in {}",
            list.text
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn later_plugins_see_the_consumer_and_credentials_are_unique_per_plugin() {
    let a = origin("a").start();
    let gw = guarded(
        &a,
        json!({
            "key-auth": {},
            // response-rewrite evaluates `vars` after auth: `consumer_name` is the matched consumer.
            "response-rewrite": {
                "vars": [["consumer_name", "==", "jack"]],
                "headers": {"set": {"x-seen-consumer": "$consumer_name"}}
            },
            "limit-count": {"count": 1, "time_window": 60, "key_type": "var", "key": "consumer_name"}
        }),
        &[
            json!({"username": "jack", "plugins": {"key-auth": {"key": "jack-key"}}}),
            json!({"username": "rose", "plugins": {"key-auth": {"key": "rose-key"}}}),
        ],
    )
    .await;
    let r = get_with(&gw, "/auth/x", &[("apikey", "jack-key")]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-seen-consumer"), Some("jack"));
    let r = get_with(&gw, "/auth/x", &[("apikey", "rose-key")]).await;
    assert_eq!(r.status, 200, "rose has her own counter: {}", r.text());
    assert_eq!(r.header("x-seen-consumer"), None, "vars did not match rose");
    let r = get_with(&gw, "/auth/x", &[("apikey", "jack-key")]).await;
    assert_eq!(r.status, 503, "jack's counter is spent: {}", r.text());

    // A second consumer presenting jack's key would make authentication ambiguous: refused, and
    // the existing consumers keep working.
    let dup = gw
        .admin()
        .put(
            "consumers",
            "mallory",
            json!({"username": "mallory", "plugins": {"key-auth": {"key": "jack-key"}}}),
        )
        .await;
    assert_eq!(dup.status, 400, "{}", dup.text);
    let msg = dup.error_msg().unwrap_or_default();
    assert!(
        msg.contains("already used") && msg.contains("jack"),
        "{msg}"
    );
    let r = get_with(&gw, "/auth/x", &[("apikey", "rose-key")]).await;
    assert_eq!(
        r.status,
        503,
        "still rose (count spent), not mallory: {}",
        r.text()
    );
}
