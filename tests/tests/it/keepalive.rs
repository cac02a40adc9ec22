//! Upstream connection pool: connections are reused; `keepalive_pool.requests` caps reuse per connection and
//! `keepalive_pool.idle_timeout` closes idle ones.

use futures_util::{stream, StreamExt};
use support::*;

async fn hammer(gw: &Gateway, n: usize, concurrency: usize) {
    let statuses: Vec<u16> = stream::iter(0..n)
        .map(|_| async { gw.get("/k").await.status })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_requests_reuse_one_upstream_connection() {
    let o = origin("a").start();
    let gw = gateway().start().await;
    gw.put_ok(
        "routes",
        "1",
        json!({"uri": "/k", "upstream": upstream(&[&o])}),
    )
    .await;
    hammer(&gw, 200, 1).await;
    assert_eq!(o.request_count(), 200);
    assert!(
        o.connections() <= 2,
        "{} connections for 200 sequential requests",
        o.connections()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_use_far_fewer_connections_than_requests() {
    let o = origin("a").start();
    let gw = gateway().start().await;
    gw.put_ok(
        "routes",
        "1",
        json!({"uri": "/k", "upstream": upstream(&[&o])}),
    )
    .await;
    hammer(&gw, 400, 8).await;
    assert!(
        o.connections() <= 24,
        "{} connections for 400 requests, 8 at a time",
        o.connections()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_client_connections_still_share_upstream_connections() {
    // Each request on its own client connection: the upstream pool is the gateway's, not per client.
    let o = origin("a").start();
    let gw = gateway().start().await;
    gw.put_ok(
        "routes",
        "1",
        json!({"uri": "/k", "upstream": upstream(&[&o])}),
    )
    .await;
    for _ in 0..30 {
        assert_eq!(send(client().get(gw.url("/k"))).await.status, 200);
    }
    assert!(
        o.connections() <= 3,
        "{} upstream connections for 30 client connections",
        o.connections()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_pool_requests_caps_reuse() {
    let o = origin("a").start();
    let gw = gateway().start().await;
    let up = json!({"nodes": nodes(&[&o]), "keepalive_pool": {"size": 8, "idle_timeout": 60, "requests": 10}});
    gw.put_ok("routes", "1", json!({"uri": "/k", "upstream": up}))
        .await;
    hammer(&gw, 100, 1).await;
    let per_conn = o
        .requests()
        .iter()
        .fold(std::collections::HashMap::new(), |mut m, r| {
            *m.entry(r.conn).or_insert(0) += 1;
            m
        });
    assert!(
        per_conn.values().all(|n| *n <= 10),
        "a connection carried more than 10 requests: {per_conn:?}"
    );
    assert!(
        (10..=14).contains(&o.connections()),
        "{} connections for 100 requests at 10 each",
        o.connections()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_pool_idle_timeout_drops_idle_connections() {
    let o = origin("a").start();
    let gw = gateway().start().await;
    let up = json!({"nodes": nodes(&[&o]), "keepalive_pool": {"size": 8, "idle_timeout": 0.3, "requests": 1000}});
    gw.put_ok("routes", "1", json!({"uri": "/k", "upstream": up}))
        .await;
    hammer(&gw, 3, 1).await;
    assert_eq!(o.connections(), 1);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    hammer(&gw, 1, 1).await;
    assert_eq!(
        o.connections(),
        2,
        "an idle connection older than idle_timeout is not reused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_clients_multiplex_onto_pooled_upstream_connections() {
    let o = origin("a").start();
    let gw = gateway().start().await;
    gw.put_ok(
        "routes",
        "1",
        json!({"uri": "/k", "upstream": upstream(&[&o])}),
    )
    .await;
    let c = h2c_client();
    let statuses: Vec<u16> = stream::iter(0..200)
        .map(|_| {
            let c = c.clone();
            let url = gw.url("/k");
            async move { send(c.get(url)).await.status }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 200));
    assert!(
        o.connections() <= 40,
        "{} upstream connections for 200 requests",
        o.connections()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_connection_close_does_not_close_the_upstream_connection() {
    // `Connection` is hop-by-hop: a client that closes its own connection says nothing about the upstream one.
    let o = origin("a").start();
    let gw = gateway().start().await;
    gw.put_ok(
        "routes",
        "1",
        json!({"uri": "/k", "upstream": upstream(&[&o])}),
    )
    .await;
    for _ in 0..20 {
        let r = send(
            gw.request(reqwest::Method::GET, "/k")
                .header("connection", "close"),
        )
        .await;
        assert_eq!(r.status, 200);
    }
    assert!(
        o.connections() <= 2,
        "{} upstream connections for 20 requests",
        o.connections()
    );
}
