//! Admin API: APISIX v3 paths, envelopes, CRUD verbs, referential integrity, and the admin key.

use support::*;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[track_caller]
fn assert_recent(v: &Value, field: &str) -> i64 {
    let t = v[field]
        .as_i64()
        .unwrap_or_else(|| panic!("{field} should be unix seconds, got {v}"));
    assert!((t - now()).abs() < 120, "{field}={t} is not about now");
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_crud_uses_apisix_envelopes() {
    let gw = gateway().start().await;
    let admin = gw.admin();
    let body = json!({"uri": "/hello", "upstream": {"type": "roundrobin", "nodes": {"127.0.0.1:1980": 1}}});

    let put = admin.put("routes", "1", body).await.ok();
    assert!(
        put.content_type.contains("application/json"),
        "{:?}",
        put.content_type
    );
    assert_eq!(put.key(), Some("/apisix/routes/1"));
    assert_eq!(put.value()["id"], "1");
    assert_eq!(put.value()["uri"], "/hello");
    assert_recent(put.value(), "create_time");
    assert_recent(put.value(), "update_time");

    let got = admin.get("routes/1").await.ok();
    assert_eq!(got.key(), Some("/apisix/routes/1"));
    assert_eq!(got.value(), put.value());

    let list = admin.get("routes").await.ok();
    assert_eq!(list.json["total"], 1);
    assert_eq!(list.json["list"][0]["key"], "/apisix/routes/1");
    assert_eq!(list.json["list"][0]["value"]["uri"], "/hello");

    admin.delete("routes", "1").await.ok();
    let gone = admin.get("routes/1").await;
    assert_eq!(gone.status, 404, "{}", gone.text);
    assert!(
        gone.error_msg().is_some(),
        "404 carries error_msg: {}",
        gone.text
    );
    let again = admin.delete("routes", "1").await;
    assert_eq!(again.status, 404, "deleting a missing id: {}", again.text);
    let list = admin.get("routes").await.ok();
    assert_eq!(
        (list.json["total"].clone(), list.json["list"].clone()),
        (json!(0), json!([]))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_generates_distinct_ids() {
    let gw = gateway().start().await;
    let admin = gw.admin();
    let body = json!({"uri": "/gen", "upstream": {"nodes": {"127.0.0.1:1980": 1}}});
    let a = admin.post("routes", body.clone()).await.ok();
    let b = admin.post("routes", body).await.ok();
    let id_a = a.value()["id"]
        .as_str()
        .expect("value.id is a string")
        .to_string();
    let id_b = b.value()["id"]
        .as_str()
        .expect("value.id is a string")
        .to_string();
    assert!(!id_a.is_empty() && id_a != id_b, "ids {id_a:?} {id_b:?}");
    assert_eq!(a.key(), Some(format!("/apisix/routes/{id_a}").as_str()));
    assert_eq!(
        admin.get(&format!("routes/{id_a}")).await.ok().value()["uri"],
        "/gen"
    );
    assert_eq!(admin.get("routes").await.json["total"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_merges_and_put_replaces() {
    let gw = gateway().start().await;
    let admin = gw.admin();
    let up = json!({"nodes": {"127.0.0.1:1980": 1}});
    let created = gw
        .put_ok(
            "routes",
            "r",
            json!({"uri": "/a", "desc": "first", "methods": ["GET"], "upstream": up}),
        )
        .await;

    let patched = admin
        .patch("routes", "r", json!({"desc": "second"}))
        .await
        .ok();
    let v = patched.value();
    assert_eq!(
        (v["desc"].as_str(), v["uri"].as_str()),
        (Some("second"), Some("/a"))
    );
    assert_eq!(v["methods"], json!(["GET"]), "untouched fields are kept");
    assert_eq!(v["create_time"], created["create_time"]);
    assert!(v["update_time"].as_i64() >= created["update_time"].as_i64());

    let v = admin
        .patch("routes", "r", json!({"desc": null}))
        .await
        .ok()
        .value()
        .clone();
    assert!(
        v.get("desc").is_none(),
        "null removes a field (JSON merge patch): {v}"
    );

    let v = gw
        .put_ok("routes", "r", json!({"uri": "/b", "upstream": up}))
        .await;
    assert_eq!(v["uri"], "/b");
    assert!(
        v.get("methods").is_none(),
        "PUT replaces the whole object: {v}"
    );
    assert_eq!(
        v["create_time"], created["create_time"],
        "PUT over an existing id keeps create_time"
    );

    let missing = admin.patch("routes", "nope", json!({"desc": "x"})).await;
    assert_eq!(missing.status, 404, "{}", missing.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_resource_supports_crud() {
    let gw = gateway().start().await;
    let admin = gw.admin();
    let cases = [
        (
            "upstreams",
            "u1",
            json!({"type": "roundrobin", "nodes": {"127.0.0.1:1980": 1}}),
        ),
        (
            "services",
            "s1",
            json!({"upstream": {"nodes": {"127.0.0.1:1980": 1}}}),
        ),
        ("routes", "r1", json!({"uri": "/x", "upstream_id": "u1"})),
        ("consumers", "jack", json!({"username": "jack"})),
        ("global_rules", "g1", json!({"plugins": {}})),
        ("plugin_configs", "pc1", json!({"plugins": {}})),
        (
            "ssls",
            "c1",
            json!({"cert": CERT, "key": KEY, "snis": ["test.local"]}),
        ),
    ];
    for (res, id, body) in &cases {
        let put = admin.put(res, id, body.clone()).await;
        assert!(
            put.is_success(),
            "PUT {res}/{id}: {} {}",
            put.status,
            put.text
        );
        assert_eq!(
            put.key(),
            Some(format!("/apisix/{res}/{id}").as_str()),
            "{res}"
        );
        let list = admin.get(res).await.ok();
        assert_eq!(list.json["total"], 1, "{res}: {}", list.text);
        assert_eq!(list.json["list"].as_array().map(Vec::len), Some(1), "{res}");
        let got = admin.get(&format!("{res}/{id}")).await;
        assert_eq!(got.status, 200, "GET {res}/{id}: {}", got.text);
    }
    for (res, id, _) in cases.iter().rev() {
        let del = admin.delete(res, id).await;
        assert!(
            del.is_success(),
            "DELETE {res}/{id}: {} {}",
            del.status,
            del.text
        );
        assert_eq!(admin.get(&format!("{res}/{id}")).await.status, 404, "{res}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referenced_upstream_and_service_cannot_be_deleted() {
    let gw = gateway().start().await;
    let admin = gw.admin();
    gw.put_ok("upstreams", "u1", json!({"nodes": {"127.0.0.1:1980": 1}}))
        .await;
    gw.put_ok("services", "s1", json!({"upstream_id": "u1"}))
        .await;
    gw.put_ok("routes", "r1", json!({"uri": "/x", "service_id": "s1"}))
        .await;

    let r = admin.delete("services", "s1").await;
    assert_eq!(r.status, 400, "service used by route r1: {}", r.text);
    assert!(
        r.error_msg().is_some_and(|m| m.contains("r1")),
        "names the user: {}",
        r.text
    );
    let r = admin.delete("upstreams", "u1").await;
    assert_eq!(r.status, 400, "upstream used by service s1: {}", r.text);
    assert!(
        r.error_msg().is_some_and(|m| m.contains("s1")),
        "names the user: {}",
        r.text
    );
    assert_eq!(
        admin.get("services/s1").await.status,
        200,
        "refused delete changed nothing"
    );

    admin.delete("routes", "r1").await.ok();
    admin.delete("services", "s1").await.ok();
    admin.delete("upstreams", "u1").await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_used_by_route_cannot_be_deleted() {
    let gw = gateway().start().await;
    let admin = gw.admin();
    gw.put_ok("upstreams", "u1", json!({"nodes": {"127.0.0.1:1980": 1}}))
        .await;
    gw.put_ok("routes", "7", json!({"uri": "/x", "upstream_id": "u1"}))
        .await;
    let r = admin.delete("upstreams", "u1").await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.error_msg().is_some(), "{}", r.text);
    assert_eq!(admin.get("upstreams/u1").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_wrong_key_is_401() {
    let gw = gateway()
        .admin_key("right-key-0123456789abcdef")
        .start()
        .await;
    let admin = gw.admin();
    for (label, a) in [
        ("no key", admin.with_key(None)),
        (
            "wrong key",
            admin.with_key(Some("wrong-key-0123456789abcdef")),
        ),
        ("prefix of key", admin.with_key(Some("right-key"))),
        ("empty key", admin.with_key(Some(""))),
    ] {
        let r = a.get("routes").await;
        assert_eq!(r.status, 401, "{label}: {}", r.text);
        assert!(
            r.error_msg().is_some(),
            "{label}: 401 has error_msg: {}",
            r.text
        );
        let w = a
            .put(
                "routes",
                "1",
                json!({"uri": "/x", "upstream": {"nodes": {"127.0.0.1:1": 1}}}),
            )
            .await;
        assert_eq!(w.status, 401, "{label} write: {}", w.text);
    }
    assert_eq!(
        admin.get("routes").await.json["total"],
        0,
        "nothing written without the key"
    );
    assert_eq!(admin.get("routes").await.status, 200, "right key works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_resource_and_missing_id_are_404() {
    let gw = gateway().start().await;
    let admin = gw.admin();
    let r = admin.get("nonsense").await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = admin.get("upstreams/none").await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert!(r.error_msg().is_some(), "{}", r.text);
}

/// A self-signed certificate for `test.local`, valid 2026-2126 (fixture only).
const CERT: &str = include_str!("../fixtures/test.local.crt");
const KEY: &str = include_str!("../fixtures/test.local.key");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_are_all_stored() {
    let gw = gateway().start().await;
    let admin = gw.admin();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let admin = admin.clone();
        tasks.push(tokio::spawn(async move {
            let body =
                json!({"uri": format!("/c{i}"), "upstream": {"nodes": {"127.0.0.1:1980": 1}}});
            admin.put("routes", &format!("c{i}"), body).await.status
        }));
    }
    for t in tasks {
        let s = t.await.unwrap();
        assert!((200..300).contains(&s), "{s}");
    }
    let list = admin.get("routes").await.ok();
    assert_eq!(list.json["total"], 40, "{}", list.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_without_content_type_and_with_matching_body_id_are_accepted() {
    let gw = gateway().start().await;
    let r = reqwest::Client::new()
        .put(format!(
            "http://{}/apisix/admin/upstreams/u9",
            gw.admin_addr()
        ))
        .header("X-API-KEY", gw.key())
        .body(r#"{"id": "u9", "nodes": {"127.0.0.1:1980": 1}}"#)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    assert_eq!(gw.admin().get("upstreams/u9").await.value()["id"], "u9");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_merges_node_maps() {
    let gw = gateway().start().await;
    let admin = gw.admin();
    gw.put_ok(
        "upstreams",
        "u",
        json!({"nodes": {"127.0.0.1:1001": 1, "127.0.0.1:1002": 1}}),
    )
    .await;
    let v = admin
        .patch(
            "upstreams",
            "u",
            json!({"nodes": {"127.0.0.1:1003": 5, "127.0.0.1:1001": null}}),
        )
        .await
        .ok()
        .value()
        .clone();
    assert_eq!(
        v["nodes"],
        json!({"127.0.0.1:1002": 1, "127.0.0.1:1003": 5}),
        "{v}"
    );
}
