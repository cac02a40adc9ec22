//! HTTPS: the gateway's TLS listener (certificates from `ssls`, picked by SNI, swapped live) and TLS to
//! `scheme: "https"` upstreams. Every certificate is made here with rcgen.

use support::tls::{client_config, self_signed, KeyKind, TestCa, TlsClient};
use support::*;

/// A gateway with one route `/hi` to `o`.
async fn gateway_to(o: &Origin) -> Gateway {
    let gw = gateway().start().await;
    gw.put_ok(
        "routes",
        "1",
        json!({"uri": "/hi", "upstream": upstream(&[o])}),
    )
    .await;
    gw
}

/// Connects with SNI `sni` (trusting `ca`) and GETs `/hi`.
async fn https_get(
    gw: &Gateway,
    sni: &str,
    cfg: std::sync::Arc<rustls::ClientConfig>,
) -> anyhow::Result<(TlsClient, Resp)> {
    let mut c = TlsClient::connect(gw.https_addr(), sni, cfg).await?;
    let r = c.get("/hi", sni).await?;
    Ok((c, r))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_picks_the_certificate_exact_and_wildcard() {
    let o = origin("o").start();
    let gw = gateway_to(&o).await;
    let ca = TestCa::new("sni CA");
    let a = ca.issue(&["a.example.com"], KeyKind::Ecdsa);
    let b = ca.issue(&["b.example.com"], KeyKind::Rsa);
    let w = ca.issue(&["*.wild.example.com"], KeyKind::Ecdsa);
    gw.put_ok("ssls", "a", a.ssl_json(&["a.example.com"])).await;
    gw.put_ok("ssls", "b", b.ssl_json(&["b.example.com"])).await;
    gw.put_ok("ssls", "w", w.ssl_json(&["*.wild.example.com"]))
        .await;
    let cfg = client_config(ca.roots(), &["http/1.1"], None, None);

    for (sni, want) in [
        ("a.example.com", &a),
        ("b.example.com", &b),
        ("x.wild.example.com", &w),
    ] {
        let (c, r) = https_get(&gw, sni, cfg.clone())
            .await
            .unwrap_or_else(|e| panic!("{sni}: {e:#}"));
        assert_eq!(
            c.peer_cert(),
            want.der,
            "{sni}: served the wrong certificate"
        );
        assert_eq!(r.hit(), (200, Some("o")), "{sni}: {}", r.text());
    }
    let rec = o.last().unwrap();
    assert_eq!(rec.header("x-forwarded-proto"), Some("https"));

    // No certificate for this name: the handshake fails, and nothing reaches the origin.
    let before = o.request_count();
    let err = https_get(&gw, "unknown.example.org", cfg.clone()).await;
    assert!(err.is_err(), "unknown SNI must fail the handshake");
    // The wildcard does not cover its own base name.
    assert!(https_get(&gw, "wild.example.com", cfg.clone())
        .await
        .is_err());
    assert_eq!(o.request_count(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_type_follows_the_client_signature_schemes() {
    let o = origin("o").start();
    let gw = gateway_to(&o).await;
    let ca = TestCa::new("key type CA");
    let rsa = ca.issue(&["multi.example.com"], KeyKind::Rsa);
    let ecdsa = ca.issue(&["multi.example.com"], KeyKind::Ecdsa);
    gw.put_ok(
        "ssls",
        "multi",
        json!({
            "cert": rsa.cert_pem, "key": rsa.key_pem,
            "certs": [ecdsa.cert_pem], "keys": [ecdsa.key_pem],
            "snis": ["multi.example.com"],
        }),
    )
    .await;
    for (only, want) in [
        (None, &ecdsa),
        (Some(KeyKind::Rsa), &rsa),
        (Some(KeyKind::Ecdsa), &ecdsa),
    ] {
        let cfg = client_config(ca.roots(), &["http/1.1"], None, only);
        let (c, r) = https_get(&gw, "multi.example.com", cfg)
            .await
            .unwrap_or_else(|e| panic!("{only:?}: {e:#}"));
        assert_eq!(c.peer_cert(), want.der, "client accepting {only:?}");
        assert_eq!(r.status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_changes_apply_to_new_handshakes_and_keep_open_connections() {
    let o = origin("o").start();
    let gw = gateway_to(&o).await;
    let ca = TestCa::new("hot CA");
    let cfg = client_config(ca.roots(), &["http/1.1"], None, None);
    let v1 = ca.issue(&["hot.example.com"], KeyKind::Ecdsa);
    let v2 = ca.issue(&["hot.example.com"], KeyKind::Ecdsa);

    // Before any ssls object: no certificate at all.
    assert!(https_get(&gw, "hot.example.com", cfg.clone())
        .await
        .is_err());

    gw.put_ok("ssls", "hot", v1.ssl_json(&["hot.example.com"]))
        .await;
    let (mut open, r) = https_get(&gw, "hot.example.com", cfg.clone())
        .await
        .unwrap();
    assert_eq!((open.peer_cert(), r.status), (v1.der.clone(), 200));

    // Replace: new handshakes get v2 at once; the open connection keeps working.
    gw.put_ok("ssls", "hot", v2.ssl_json(&["hot.example.com"]))
        .await;
    let (c, _) = https_get(&gw, "hot.example.com", cfg.clone())
        .await
        .unwrap();
    assert_eq!(c.peer_cert(), v2.der);
    let r = open.get("/hi", "hot.example.com").await.unwrap();
    assert_eq!(r.hit(), (200, Some("o")));

    // Add another name without restarting.
    let n = ca.issue(&["new.example.com"], KeyKind::Rsa);
    gw.put_ok("ssls", "new", n.ssl_json(&["new.example.com"]))
        .await;
    let (c, r) = https_get(&gw, "new.example.com", cfg.clone())
        .await
        .unwrap();
    assert_eq!((c.peer_cert(), r.status), (n.der.clone(), 200));

    // Delete: the name stops working for new handshakes; the open connection still works.
    assert!(gw.admin().delete("ssls", "hot").await.is_success());
    assert!(https_get(&gw, "hot.example.com", cfg.clone())
        .await
        .is_err());
    let r = open.get("/hi", "hot.example.com").await.unwrap();
    assert_eq!(r.status, 200);

    // A disabled object serves nothing.
    let mut off = n.ssl_json(&["new.example.com"]);
    off["status"] = json!(0);
    gw.put_ok("ssls", "new", off).await;
    assert!(https_get(&gw, "new.example.com", cfg.clone())
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_certificates_are_refused_naming_the_field() {
    let gw = gateway().start().await;
    let admin = gw.admin();
    let good = self_signed(&["ok.example.com"], KeyKind::Ecdsa);
    let other = self_signed(&["ok.example.com"], KeyKind::Ecdsa);
    let rsa = self_signed(&["ok.example.com"], KeyKind::Rsa);
    let broken_cert = good.cert_pem.replace('M', "A");
    let cases = [
        (
            json!({"cert": "not a certificate", "key": good.key_pem, "snis": ["ok.example.com"]}),
            "cert",
        ),
        (
            json!({"cert": broken_cert, "key": good.key_pem, "snis": ["ok.example.com"]}),
            "cert",
        ),
        (
            json!({"cert": good.cert_pem, "key": "not a key", "snis": ["ok.example.com"]}),
            "key",
        ),
        (
            json!({"cert": good.cert_pem, "key": other.key_pem, "snis": ["ok.example.com"]}),
            "key: does not match",
        ),
        (
            json!({"cert": good.cert_pem, "key": rsa.key_pem, "snis": ["ok.example.com"]}),
            "key: does not match",
        ),
        (
            json!({"cert": good.cert_pem, "key": good.key_pem, "snis": ["ok.example.com"],
                   "certs": [rsa.cert_pem], "keys": [other.key_pem]}),
            "keys[0]: does not match",
        ),
        (
            json!({"cert": good.cert_pem, "key": good.key_pem, "snis": ["ok.example.com"],
                   "ssl_protocols": ["TLSv1.1"]}),
            "ssl_protocols[0]",
        ),
        (
            json!({"cert": good.cert_pem, "key": good.key_pem, "snis": ["ok.example.com"],
                   "client": {"ca": "nope"}}),
            "client.ca",
        ),
    ];
    for (body, field) in cases {
        let r = admin.put("ssls", "bad", body).await;
        assert_eq!(r.status, 400, "{field}: {}", r.text);
        let msg = r.error_msg().unwrap_or_default();
        assert!(msg.contains(field), "error names {field:?}: {msg}");
        assert_eq!(admin.get("ssls/bad").await.status, 404, "nothing stored");
    }
    // The valid one is accepted.
    gw.put_ok("ssls", "bad", good.ssl_json(&["ok.example.com"]))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_is_negotiated_by_alpn() {
    let o = origin("o").start();
    let gw = gateway_to(&o).await;
    let ca = TestCa::new("alpn CA");
    let c = ca.issue(&["h2.example.com"], KeyKind::Ecdsa);
    gw.put_ok("ssls", "h2", c.ssl_json(&["h2.example.com"]))
        .await;

    let cfg = client_config(ca.roots(), &["h2", "http/1.1"], None, None);
    let (mut conn, r) = https_get(&gw, "h2.example.com", cfg).await.unwrap();
    assert_eq!(conn.alpn(), Some("h2"));
    assert_eq!(r.version, http::Version::HTTP_2);
    assert_eq!(r.hit(), (200, Some("o")));
    // Several requests on the one h2 connection.
    for _ in 0..3 {
        assert_eq!(conn.get("/hi", "h2.example.com").await.unwrap().status, 200);
    }
    assert_eq!(o.last().unwrap().header("x-forwarded-proto"), Some("https"));

    let cfg = client_config(ca.roots(), &["http/1.1"], None, None);
    let (conn, r) = https_get(&gw, "h2.example.com", cfg).await.unwrap();
    assert_eq!(conn.alpn(), Some("http/1.1"));
    assert_eq!(r.version, http::Version::HTTP_11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_verified_when_configured() {
    let o = origin("o").start();
    let gw = gateway_to(&o).await;
    let ca = TestCa::new("server CA");
    let client_ca = TestCa::new("client CA");
    let stranger_ca = TestCa::new("stranger CA");
    let server = ca.issue(&["mtls.example.com"], KeyKind::Ecdsa);
    let mut ssl = server.ssl_json(&["mtls.example.com"]);
    ssl["client"] = json!({"ca": client_ca.cert_pem(), "depth": 1});
    gw.put_ok("ssls", "m", ssl).await;

    let good = client_ca.issue(&["client-1"], KeyKind::Ecdsa);
    let cfg = client_config(ca.roots(), &["http/1.1"], Some(&good), None);
    let (_, r) = https_get(&gw, "mtls.example.com", cfg).await.unwrap();
    assert_eq!(r.hit(), (200, Some("o")));

    let before = o.request_count();
    let cfg = client_config(ca.roots(), &["http/1.1"], None, None);
    assert!(
        https_get(&gw, "mtls.example.com", cfg).await.is_err(),
        "no client cert"
    );
    let bad = stranger_ca.issue(&["client-2"], KeyKind::Ecdsa);
    let cfg = client_config(ca.roots(), &["http/1.1"], Some(&bad), None);
    assert!(
        https_get(&gw, "mtls.example.com", cfg).await.is_err(),
        "unknown CA"
    );
    assert_eq!(o.request_count(), before, "rejected clients reach nothing");
}

/// A gateway trusting `ca` as its system roots (`SSL_CERT_FILE`), with route `/hi` → `up`.
async fn gateway_trusting(ca: &TestCa, up: Value) -> Gateway {
    let root = tempfile::tempdir().unwrap().keep();
    let path = root.join("ca.pem");
    std::fs::write(&path, ca.cert_pem()).unwrap();
    let gw = gateway()
        .env("SSL_CERT_FILE", path.to_str().unwrap())
        .start()
        .await;
    gw.put_ok("routes", "1", json!({"uri": "/hi", "upstream": up}))
        .await;
    gw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstream_with_verification_off() {
    let cert = self_signed(&["origin.test"], KeyKind::Ecdsa);
    let o = origin("tls-origin").tls(&cert).start();
    let gw = gateway().start().await;
    let up = json!({"scheme": "https", "nodes": nodes(&[&o]), "tls": {"verify": false}});
    gw.put_ok("routes", "1", json!({"uri": "/hi", "upstream": up}))
        .await;
    for _ in 0..3 {
        let r = gw.get("/hi").await;
        assert_eq!(r.hit(), (200, Some("tls-origin")), "{}", r.text());
    }
    assert_eq!(
        o.connections(),
        1,
        "the TLS connection is pooled and reused"
    );

    // Verification on (the default) against a self-signed certificate nobody trusts: 502.
    let up = json!({"scheme": "https", "nodes": nodes(&[&o])});
    gw.put_ok("routes", "1", json!({"uri": "/hi", "upstream": up}))
        .await;
    let r = gw.get("/hi").await;
    assert_eq!(r.status, 502, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstream_verified_against_a_private_ca() {
    let ca = TestCa::new("upstream CA");
    // The node is addressed by IP: the certificate must carry that IP.
    let by_ip = origin("by-ip")
        .tls(&ca.issue(&["127.0.0.1"], KeyKind::Ecdsa))
        .start();
    let gw = gateway_trusting(&ca, json!({"scheme": "https", "nodes": nodes(&[&by_ip])})).await;
    let r = gw.get("/hi").await;
    assert_eq!(r.hit(), (200, Some("by-ip")), "{}", r.text());
    assert_eq!(by_ip.sni(), vec![None], "no SNI is sent for an IP address");

    // pass_host rewrite: SNI and the verified name come from upstream_host.
    let named = origin("named")
        .tls(&ca.issue(&["api.internal"], KeyKind::Rsa))
        .start();
    let up = json!({"scheme": "https", "nodes": nodes(&[&named]),
                    "pass_host": "rewrite", "upstream_host": "api.internal"});
    gw.put_ok("routes", "1", json!({"uri": "/hi", "upstream": up}))
        .await;
    let r = gw.get("/hi").await;
    assert_eq!(r.hit(), (200, Some("named")), "{}", r.text());
    assert_eq!(named.sni(), vec![Some("api.internal".to_string())]);
    assert_eq!(named.last().unwrap().header("host"), Some("api.internal"));

    // A certificate for another name (trusted CA, wrong identity): 502, nothing delivered.
    let wrong = origin("wrong")
        .tls(&ca.issue(&["someone-else.internal"], KeyKind::Ecdsa))
        .start();
    let up = json!({"scheme": "https", "nodes": nodes(&[&wrong])});
    gw.put_ok("routes", "1", json!({"uri": "/hi", "upstream": up}))
        .await;
    let r = gw.get("/hi").await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(wrong.request_count(), 0);

    // A plain-HTTP node behind `scheme: https` fails the handshake: 502.
    let plain = origin("plain").start();
    let up = json!({"scheme": "https", "nodes": nodes(&[&plain])});
    gw.put_ok("routes", "1", json!({"uri": "/hi", "upstream": up}))
        .await;
    assert_eq!(gw.get("/hi").await.status, 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstream_with_a_client_certificate() {
    let ca = TestCa::new("upstream CA");
    let client_ca = TestCa::new("gateway client CA");
    let o = origin("mtls")
        .mtls(&ca.issue(&["127.0.0.1"], KeyKind::Ecdsa), &client_ca)
        .start();
    let gw = gateway_trusting(&ca, json!({"scheme": "https", "nodes": nodes(&[&o])})).await;
    // Without a client certificate the origin refuses the handshake.
    assert_eq!(gw.get("/hi").await.status, 502);
    let id = client_ca.issue(&["gateway"], KeyKind::Ecdsa);
    let up = json!({"scheme": "https", "nodes": nodes(&[&o]),
                    "tls": {"client_cert": id.cert_pem, "client_key": id.key_pem}});
    gw.put_ok("routes", "1", json!({"uri": "/hi", "upstream": up}))
        .await;
    let r = gw.get("/hi").await;
    assert_eq!(r.hit(), (200, Some("mtls")), "{}", r.text());

    // The same certificate kept as an `ssls` object of type client, named by `tls.client_cert_id`.
    let other = client_ca.issue(&["gateway-2"], KeyKind::Rsa);
    let ssl = |cert: &str, key: &str| json!({"type": "client", "cert": cert, "key": key});
    gw.put_ok("ssls", "client", ssl(&other.cert_pem, &other.key_pem))
        .await;
    let up = json!({"scheme": "https", "nodes": nodes(&[&o]), "tls": {"client_cert_id": "client"}});
    gw.put_ok("routes", "1", json!({"uri": "/hi", "upstream": up}))
        .await;
    let r = gw.get("/hi").await;
    assert_eq!(r.hit(), (200, Some("mtls")), "{}", r.text());
    // Replacing the ssl object with a certificate the origin does not trust takes effect: 502.
    let stranger = TestCa::new("nobody").issue(&["gateway-3"], KeyKind::Ecdsa);
    gw.put_ok("ssls", "client", ssl(&stranger.cert_pem, &stranger.key_pem))
        .await;
    assert_eq!(gw.get("/hi").await.status, 502);
    // In use: it cannot be deleted; a missing or server-type ssl is refused by name.
    let admin = gw.admin();
    let del = admin.delete("ssls", "client").await;
    assert_eq!(del.status, 400, "{}", del.text);
    let missing =
        json!({"scheme": "https", "nodes": nodes(&[&o]), "tls": {"client_cert_id": "nope"}});
    let r = admin.put("upstreams", "m", missing).await;
    assert!(
        r.error_msg()
            .unwrap_or_default()
            .contains("tls.client_cert_id"),
        "{}",
        r.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_config_is_validated() {
    let gw = gateway().start().await;
    let admin = gw.admin();
    let c = self_signed(&["client"], KeyKind::Ecdsa);
    let other = self_signed(&["client"], KeyKind::Ecdsa);
    let cases = [
        (json!({"client_cert": c.cert_pem}), "tls.client_key"),
        (
            json!({"client_cert": c.cert_pem, "client_key": other.key_pem}),
            "tls.client_key: does not match",
        ),
        (
            json!({"client_cert": "junk", "client_key": c.key_pem}),
            "tls.client_cert",
        ),
        (json!({"verify": "yes"}), "verify"),
    ];
    for (tls, field) in cases {
        let up = json!({"scheme": "https", "nodes": {"127.0.0.1:1": 1}, "tls": tls});
        let r = admin.put("upstreams", "u", up).await;
        assert_eq!(r.status, 400, "{field}: {}", r.text);
        let msg = r.error_msg().unwrap_or_default();
        assert!(msg.contains(field), "names {field:?}: {msg}");
    }
    let up = json!({"scheme": "https", "nodes": {"127.0.0.1:1": 1},
                    "tls": {"client_cert": c.cert_pem, "client_key": c.key_pem, "verify": true}});
    gw.put_ok("upstreams", "u", up).await;
    for scheme in ["grpc", "grpcs"] {
        gw.put_ok(
            "upstreams",
            "g",
            json!({"scheme": scheme, "nodes": {"127.0.0.1:1": 1}}),
        )
        .await;
    }
    let r = admin
        .put(
            "upstreams",
            "g",
            json!({"scheme": "ftp", "nodes": {"127.0.0.1:1": 1}}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.error_msg().unwrap_or_default().contains("scheme"));
}
