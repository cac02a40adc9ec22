//! Service discovery through a real DNS server ([`dns_server`], hickory-server on 127.0.0.1): DNS names in
//! `nodes` and `discovery_type: dns` upstreams, with records changed while the gateway runs. Several
//! addresses of one name are distinct loopback IPs (127.0.0.1, .2, .3) sharing one port, since A records
//! carry no port.

use std::net::Ipv4Addr;
use support::*;

const LO1: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const LO2: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const LO3: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

/// A gateway resolving through `dns`.
async fn gateway_on(dns: &DnsServer) -> Gateway {
    gateway()
        .args(["--dns-resolver", &dns.addr().to_string()])
        .start()
        .await
}

/// Route `/s` to the name `svc.test` on `port` (a DNS name in `nodes`).
async fn route_to_svc(gw: &Gateway, port: u16) {
    gw.put_ok(
        "routes",
        "1",
        json!({"uri": "/s", "upstream": {"nodes": {format!("svc.test:{port}"): 1}}}),
    )
    .await;
}

/// Origins named `names` on 127.0.0.1, .2, .3 (in that order), all on one port.
fn origins_on_one_port(names: &[&str]) -> Vec<Origin> {
    let first = origin(names[0]).start();
    let port = first.addr().port();
    let mut all = vec![first];
    for (name, ip) in names[1..].iter().zip([LO2, LO3]) {
        all.push(origin(name).start_at((ip, port).into()));
    }
    all
}

/// Sends GETs to `path` until one is answered by `origin` (every answer must be a 200); returns how long
/// that took.
async fn time_until_served_by(
    gw: &Gateway,
    path: &str,
    origin: &str,
    within: Duration,
) -> Duration {
    let start = Instant::now();
    loop {
        let r = gw.get(path).await;
        assert_eq!(r.status, 200, "{}", r.text());
        if r.origin() == Some(origin) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{origin} not reached within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_address_of_a_name_gets_traffic_and_a_dead_one_is_skipped() {
    let dns = dns_server().await;
    let mut nodes = origins_on_one_port(&["a", "b", "c"]);
    let port = nodes[0].addr().port();
    dns.set_a("svc.test", &[LO1, LO2, LO3], 300).await;
    let gw = gateway_on(&dns).await;
    gw.put_ok(
        "routes",
        "1",
        json!({"uri": "/s", "upstream": {"nodes": {format!("svc.test:{port}"): 1},
            "checks": {"passive": {"unhealthy": {"tcp_failures": 1}}}}}),
    )
    .await;
    let counts = spread(&gw, "/s", 300, |_, rb| rb).await;
    for name in ["a", "b", "c"] {
        assert_eq!(counts.get(name), Some(&100), "{counts:?}");
    }

    // b's address dies: its requests move on to the next address, so no client sees a failure, and the
    // health report shows that address (not the name) unhealthy.
    let b = nodes.remove(1);
    let b_addr = b.addr().to_string();
    drop(b);
    let counts = spread(&gw, "/s", 100, |_, rb| rb).await;
    assert_eq!(counts.get("b"), None, "{counts:?}");
    let report = gw.admin().get("healthcheck/routes/1").await;
    let listed = report.json["nodes"].as_array().expect("nodes").clone();
    assert_eq!(listed.len(), 3, "{}", report.text);
    for n in &listed {
        assert_eq!(n["node"], format!("svc.test:{port}"), "{n}");
        let want = if n["addr"] == b_addr.as_str() {
            "unhealthy"
        } else {
            "healthy"
        };
        assert_eq!(n["status"], want, "{n}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_record_is_picked_up_after_its_ttl() {
    let dns = dns_server().await;
    let nodes = origins_on_one_port(&["a", "b"]);
    let port = nodes[0].addr().port();
    let ttl = 1;
    dns.set_a("svc.test", &[LO1], ttl).await;
    let gw = gateway_on(&dns).await;
    route_to_svc(&gw, port).await;
    assert_eq!(gw.get("/s").await.hit(), (200, Some("a")));
    dns.set_a("svc.test", &[LO2], ttl).await;
    let switch = time_until_served_by(&gw, "/s", "b", Duration::from_secs(15)).await;
    println!("dns: a changed A record (TTL {ttl} s) served after {switch:?}");
    // TTL plus the one-second floor between lookups, and slack for a loaded machine.
    assert!(
        switch <= Duration::from_secs(u64::from(ttl) + 1 + 3),
        "took {switch:?}"
    );
    gw.wait_for_log("upstream nodes changed", Duration::from_secs(5))
        .await;
    for _ in 0..5 {
        assert_eq!(gw.get("/s").await.hit(), (200, Some("b")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_address_makes_the_name_resolve_again_before_its_ttl() {
    let dns = dns_server().await;
    let mut nodes = origins_on_one_port(&["a", "b", "c"]);
    let port = nodes[0].addr().port();
    dns.set_a("svc.test", &[LO2], 3600).await;
    let gw = gateway_on(&dns).await;
    route_to_svc(&gw, port).await;
    assert_eq!(gw.get("/s").await.hit(), (200, Some("b")));
    // The record moves, but its TTL holds the old answer while b works.
    dns.set_a("svc.test", &[LO3], 3600).await;
    for _ in 0..5 {
        assert_eq!(gw.get("/s").await.hit(), (200, Some("b")));
    }
    drop(nodes.remove(1));
    let start = Instant::now();
    let mut failed = 0;
    loop {
        let r = gw.get("/s").await;
        if r.origin() == Some("c") {
            break;
        }
        failed += 1;
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "never re-resolved"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "dns: dead address replaced by re-resolution after {:?} ({failed} client-visible failures, one address, retries had nowhere to go)",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_records_give_ports_weights_and_priorities() {
    let dns = dns_server().await;
    let (a, b, c) = (
        origin("a").start(),
        origin("b").start(),
        origin("c").start(),
    );
    for n in ["a.test", "b.test", "c.test"] {
        dns.set_a(n, &[LO1], 300).await;
    }
    let srv = |o: &Origin, priority, weight, target| Srv {
        priority,
        weight,
        port: o.addr().port(),
        target,
    };
    dns.set_srv(
        "_http._tcp.svc.test",
        &[
            srv(&a, 10, 3, "a.test"),
            srv(&b, 10, 1, "b.test"),
            srv(&c, 20, 5, "c.test"),
        ],
        300,
    )
    .await;
    let gw = gateway_on(&dns).await;
    gw.put_ok(
        "upstreams",
        "svc",
        json!({"discovery_type": "dns", "service_name": "_http._tcp.svc.test"}),
    )
    .await;
    gw.put_ok("routes", "1", json!({"uri": "/s", "upstream_id": "svc"}))
        .await;
    // The same record named as a node.
    gw.put_ok(
        "routes",
        "2",
        json!({"uri": "/n", "upstream": {"nodes": {"_http._tcp.svc.test": 1}}}),
    )
    .await;
    for path in ["/s", "/n"] {
        let counts = spread(&gw, path, 400, |_, rb| rb).await;
        // SRV weight 3:1 within the preferred priority (lower SRV priority); c only as a fallback.
        assert_eq!(
            (counts.get("a"), counts.get("b"), counts.get("c")),
            (Some(&300), Some(&100), None),
            "{path}: {counts:?}"
        );
    }
    // Once a and b are gone (their origins close asynchronously), the lower priority serves.
    drop((a, b));
    time_until_served_by(&gw, "/s", "c", Duration::from_secs(5)).await;
    for _ in 0..10 {
        assert_eq!(gw.get("/s").await.hit(), (200, Some("c")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_lookup_keeps_the_last_nodes() {
    let dns = dns_server().await;
    let nodes = origins_on_one_port(&["a", "b"]);
    let port = nodes[0].addr().port();
    dns.set_a("svc.test", &[LO1], 1).await;
    let gw = gateway_on(&dns).await;
    route_to_svc(&gw, port).await;
    assert_eq!(gw.get("/s").await.hit(), (200, Some("a")));
    dns.remove("svc.test", DnsRecordType::A).await;
    gw.wait_for_log(
        "service discovery failed; keeping the nodes found before",
        Duration::from_secs(10),
    )
    .await;
    for _ in 0..5 {
        assert_eq!(gw.get("/s").await.hit(), (200, Some("a")));
    }
    dns.set_a("svc.test", &[LO2], 1).await;
    // Lookups after a failure back off (1, 2, 4 s...), so allow for one backoff step.
    time_until_served_by(&gw, "/s", "b", Duration::from_secs(15)).await;
    gw.wait_for_log("service discovery answers again", Duration::from_secs(5))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_discovery_config_is_rejected_naming_the_field() {
    let dns = dns_server().await;
    let gw = gateway_on(&dns).await;
    let cases = [
        (
            json!({"discovery_type": "consul", "service_name": "web"}),
            "discovery_type: \"consul\" is not available (available: dns)",
        ),
        (
            json!({"service_name": "web"}),
            "discovery_type: required with service_name",
        ),
        (
            json!({"discovery_type": "dns"}),
            "service_name: required with discovery_type",
        ),
        (
            json!({"discovery_type": "dns", "service_name": "svc.test", "nodes": {"127.0.0.1:80": 1}}),
            "nodes: not allowed with discovery_type",
        ),
        (
            json!({"discovery_type": "dns", "service_name": "svc.test:x"}),
            "service_name: \"svc.test:x\" is not host[:port]",
        ),
    ];
    for (body, want) in cases {
        let r = gw.admin().put("upstreams", "bad", body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        let msg = r.error_msg().unwrap_or_default();
        assert!(msg.contains(want), "{body}: {msg}");
    }
    assert_eq!(gw.admin().get("upstreams/bad").await.status, 404);

    // A name that does not resolve is accepted (it may appear later) and answered with a 502 meanwhile.
    gw.put_ok(
        "routes",
        "1",
        json!({"uri": "/s", "upstream": {"nodes": {"nowhere.test:80": 1}}}),
    )
    .await;
    assert_eq!(gw.get("/s").await.status, 502);
}
