//! Config lives in the data dir (sled): it survives a graceful restart and a crash right after the write was
//! acknowledged, and deletes persist too.

use support::*;

async fn configure(gw: &Gateway, o: &Origin) {
    gw.put_ok("upstreams", "u", upstream(&[o])).await;
    gw.put_ok("services", "s", json!({"upstream_id": "u"}))
        .await;
    gw.put_ok(
        "routes",
        "by-service",
        json!({"uri": "/svc", "service_id": "s"}),
    )
    .await;
    gw.put_ok(
        "routes",
        "by-upstream",
        json!({"uri": "/up", "upstream_id": "u", "methods": ["GET"]}),
    )
    .await;
    gw.put_ok("consumers", "jack", json!({"username": "jack"}))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_survives_graceful_restart() {
    let o = origin("a").start();
    let mut gw = gateway().start().await;
    configure(&gw, &o).await;
    let before = gw.admin().get("routes/by-upstream").await.ok().json;

    gw.restart().await;

    assert_eq!(gw.get("/svc").await.hit(), (200, Some("a")));
    assert_eq!(gw.get("/up").await.hit(), (200, Some("a")));
    let admin = gw.admin();
    assert_eq!(
        admin.get("routes/by-upstream").await.ok().json,
        before,
        "stored object unchanged"
    );
    assert_eq!(admin.get("routes").await.json["total"], 2);
    assert_eq!(admin.get("upstreams").await.json["total"], 1);
    assert_eq!(admin.get("services").await.json["total"], 1);
    assert_eq!(admin.get("consumers").await.json["total"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_write_survives_a_crash() {
    let o = origin("a").start();
    let mut gw = gateway().start().await;
    gw.put_ok(
        "routes",
        "1",
        json!({"uri": "/crash", "upstream": upstream(&[&o])}),
    )
    .await;
    gw.crash_and_restart().await; // SIGKILL right after the ack: the write must already be durable
    assert_eq!(gw.get("/crash").await.hit(), (200, Some("a")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_and_updates_survive_restart() {
    let (a, b) = (origin("a").start(), origin("b").start());
    let mut gw = gateway().start().await;
    gw.put_ok(
        "routes",
        "keep",
        json!({"uri": "/keep", "upstream": upstream(&[&a])}),
    )
    .await;
    gw.put_ok(
        "routes",
        "drop",
        json!({"uri": "/drop", "upstream": upstream(&[&a])}),
    )
    .await;
    gw.admin().delete("routes", "drop").await.ok();
    gw.put_ok(
        "routes",
        "keep",
        json!({"uri": "/keep", "upstream": upstream(&[&b])}),
    )
    .await;

    gw.crash_and_restart().await;

    assert_eq!(
        gw.get("/keep").await.hit(),
        (200, Some("b")),
        "the latest version is served"
    );
    assert_eq!(
        gw.get("/drop").await.status,
        404,
        "a deleted route stays deleted"
    );
    assert_eq!(gw.admin().get("routes/drop").await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_generated_ids_survive_and_do_not_collide_after_restart() {
    let mut gw = gateway().start().await;
    let body = json!({"uri": "/g", "upstream": {"nodes": {"127.0.0.1:1980": 1}}});
    let first = gw.admin().post("routes", body.clone()).await.ok().value()["id"].clone();
    gw.restart().await;
    let second = gw.admin().post("routes", body).await.ok().value()["id"].clone();
    assert_ne!(first, second);
    assert_eq!(gw.admin().get("routes").await.json["total"], 2);
}
