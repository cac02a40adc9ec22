//! Self-tests of the support library (no gateway): the origin, the failure addresses, the pattern.
//! If these fail, every other result is suspect.

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_echoes_records_and_reuses_connections() {
    let o = origin("alpha").start();
    let c = client();
    for i in 0..5 {
        let r = send(
            c.post(format!("http://{}/p/{i}?q=1", o.addr()))
                .header("x-test", "yes")
                .body("abc"),
        )
        .await;
        assert_eq!(r.hit(), (200, Some("alpha")));
        let echo = r.json();
        assert_eq!(echo["path"], format!("/p/{i}"));
        assert_eq!(echo["query"], "q=1");
        assert_eq!(echo["headers"]["x-test"], "yes");
        assert_eq!(echo["body_len"], 3);
    }
    assert_eq!(o.request_count(), 5);
    // hyper's client may open a second connection if the first is not back in its pool yet.
    assert!(
        o.connections() <= 2,
        "keep-alive reuses connections: {}",
        o.connections()
    );
    let last = o.last().unwrap();
    assert_eq!(
        (last.method.as_str(), last.header("x-test")),
        ("POST", Some("yes"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_streams_drips_delays_and_checks_pattern() {
    let o = origin("s").body("fixed").start();
    let c = client();
    let url = format!("http://{}/", o.addr());

    let r = send(c.get(&url).header("x-stream-bytes", "200000")).await;
    let mut check = PatternCheck::new();
    check.update(&r.body);
    assert_eq!((check.len, check.intact()), (200_000, true));

    let r = send(c.get(&url).header("x-drip", "3:10")).await;
    assert_eq!(r.text(), "chunk-0\nchunk-1\nchunk-2\n");

    let t = Instant::now();
    let r = send(
        c.get(&url)
            .header("x-delay-ms", "300")
            .header("x-status", "418"),
    )
    .await;
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert_eq!((r.status, r.text().as_str()), (418, "fixed"));

    let body = reqwest::Body::wrap_stream(pattern_stream::<std::io::Error>(1_000_003));
    send(c.put(&url).body(body)).await;
    let rec = o.last().unwrap();
    assert_eq!((rec.body_len, rec.body_intact), (1_000_003, true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_port_refuses_and_blackhole_hangs() {
    let closed = closed_port();
    for _ in 0..3 {
        assert!(tokio::net::TcpStream::connect(closed).await.is_err());
    }
    assert!(
        std::net::TcpListener::bind(closed).is_err(),
        "the closed port stays reserved"
    );
    let hole = blackhole().await;
    let attempt = tokio::time::timeout(
        Duration::from_millis(500),
        tokio::net::TcpStream::connect(hole.addr()),
    )
    .await;
    assert!(attempt.is_err(), "connect to a blackhole must hang");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_stops_on_drop() {
    let o = origin("gone").start();
    let addr = o.addr();
    send(client().get(format!("http://{addr}/"))).await;
    drop(o);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_closes_idle_or_every_connection_when_asked() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    for (o, idle) in [
        (
            origin("idle")
                .body("x")
                .idle_close(Duration::from_millis(200))
                .start(),
            true,
        ),
        (origin("once").body("x").no_keepalive().start(), false),
    ] {
        let mut tcp = tokio::net::TcpStream::connect(o.addr()).await.unwrap();
        tcp.write_all(req).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", o.name());
        if idle {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let rest = tokio::time::timeout(Duration::from_secs(2), tcp.read(&mut buf)).await;
        assert!(
            matches!(rest, Ok(Ok(0)) | Ok(Err(_))),
            "{}: connection closed by the origin",
            o.name()
        );
    }
}
