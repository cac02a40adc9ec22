//! Config changes are atomic: under concurrent traffic every response comes from one complete version of the
//! config, never an error and never a mix; changes show up at once; in-flight requests finish on the old one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use support::*;

type Load = tokio::task::JoinHandle<(usize, Vec<String>)>;

/// Starts four clients hammering `url` until `stop`. A response is good when it is a 200 whose origin and the
/// Host that origin saw belong to the same version (`a` sees `host-a`, `b` sees `host-b`).
fn hammer(url: String, stop: Arc<AtomicBool>) -> Load {
    tokio::spawn(async move {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let (c, url, stop) = (client(), url.clone(), stop.clone());
                tokio::spawn(async move {
                    let (mut n, mut bad) = (0, Vec::new());
                    while !stop.load(Ordering::SeqCst) {
                        n += 1;
                        let r = match try_send(c.get(&url)).await {
                            Ok(r) => r,
                            Err(e) => {
                                bad.push(format!("transport error: {e:#}"));
                                continue;
                            }
                        };
                        let host = r.json()["headers"]["host"]
                            .as_str()
                            .unwrap_or("")
                            .to_string();
                        match (r.status, r.origin(), host.as_str()) {
                            (200, Some("a"), "host-a") | (200, Some("b"), "host-b") => {}
                            (s, o, h) => bad
                                .push(format!("status {s} origin {o:?} host {h:?}: {}", r.text())),
                        }
                    }
                    (n, bad)
                })
            })
            .collect();
        let (mut total, mut problems) = (0, Vec::new());
        for w in workers {
            let (n, bad) = w.await.unwrap();
            total += n;
            problems.extend(bad);
        }
        (total, problems)
    })
}

async fn finish(load: Load, stop: &AtomicBool) -> usize {
    stop.store(true, Ordering::SeqCst);
    let (total, problems) = load.await.unwrap();
    assert!(
        problems.is_empty(),
        "{} bad responses of {total}, e.g.:\n{}",
        problems.len(),
        problems[..problems.len().min(10)].join("\n")
    );
    total
}

/// One version of the upstream: origin `o`, and the Host it is sent (`host-<name>`).
fn up(o: &Origin) -> Value {
    json!({"nodes": nodes(&[o]), "pass_host": "rewrite", "upstream_host": format!("host-{}", o.name())})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipping_a_route_under_load_never_shows_a_half_applied_change() {
    let (a, b) = (origin("a").start(), origin("b").start());
    let gw = gateway().start().await;
    gw.put_ok("routes", "1", json!({"uri": "/swap", "upstream": up(&a)}))
        .await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = hammer(gw.url("/swap"), stop.clone());
    for i in 0..50 {
        let o = if i % 2 == 0 { &b } else { &a };
        gw.put_ok("routes", "1", json!({"uri": "/swap", "upstream": up(o)}))
            .await;
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    let total = finish(load, &stop).await;
    assert!(total >= 100, "only {total} requests ran during the swaps");
    assert!(
        a.request_count() > 0 && b.request_count() > 0,
        "both versions served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipping_a_shared_upstream_under_load_is_atomic() {
    let (a, b) = (origin("a").start(), origin("b").start());
    let gw = gateway().start().await;
    gw.put_ok("upstreams", "u", up(&a)).await;
    gw.put_ok("services", "s", json!({"upstream_id": "u"}))
        .await;
    gw.put_ok("routes", "1", json!({"uri": "/swap", "service_id": "s"}))
        .await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = hammer(gw.url("/swap"), stop.clone());
    for i in 0..50 {
        let o = if i % 2 == 0 { &b } else { &a };
        gw.put_ok("upstreams", "u", up(o)).await;
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    finish(load, &stop).await;
    assert!(
        a.request_count() > 0 && b.request_count() > 0,
        "both versions served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_is_visible_to_the_next_request() {
    let (a, b) = (origin("a").start(), origin("b").start());
    let gw = gateway().start().await;
    for (i, o) in [&a, &b, &a, &b].into_iter().enumerate() {
        gw.put_ok(
            "routes",
            "1",
            json!({"uri": "/now", "upstream": upstream(&[o])}),
        )
        .await;
        let t = Instant::now();
        eventually(
            &format!("version {i} served"),
            Duration::from_secs(1),
            || async { gw.get("/now").await.origin() == Some(o.name()) },
        )
        .await;
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "took {:?}",
            t.elapsed()
        );
    }
    gw.admin().delete("routes", "1").await.ok();
    eventually("deleted route gone", Duration::from_secs(1), || async {
        gw.get("/now").await.status == 404
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_request_finishes_on_the_config_it_started_with() {
    let (a, b) = (origin("a").start(), origin("b").start());
    let gw = gateway().start().await;
    gw.put_ok(
        "routes",
        "1",
        json!({"uri": "/slow", "upstream": upstream(&[&a])}),
    )
    .await;
    let slow = tokio::spawn(send(
        gw.request(reqwest::Method::GET, "/slow")
            .header("x-delay-ms", "800"),
    ));
    a.wait_for_arrivals(1, Duration::from_secs(2)).await;

    gw.put_ok(
        "routes",
        "1",
        json!({"uri": "/slow", "upstream": upstream(&[&b])}),
    )
    .await;
    eventually("new requests go to b", Duration::from_secs(1), || async {
        gw.get("/slow").await.origin() == Some("b")
    })
    .await;
    gw.admin().delete("routes", "1").await.ok();
    let r = slow.await.unwrap();
    assert_eq!(
        r.hit(),
        (200, Some("a")),
        "in-flight request completes on the old config"
    );
}
