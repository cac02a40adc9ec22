//! Client limits at their boundaries and one past them (431, 414, 413 without contacting the upstream), and
//! clients that abuse time or connections: slowloris heads, idle connections, a full listener, HTTP/2 rapid
//! reset. Each abuse test also checks that a well-behaved client keeps being served meanwhile.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const IDLE: Duration = Duration::from_millis(1500);

async fn fixture(args: &[&str]) -> (Gateway, Origin) {
    let o = origin("o").start();
    let gw = gateway().args(args.iter().copied()).start().await;
    gw.put_ok(
        "routes",
        "all",
        json!({"uri": "/*", "upstream": upstream(&[&o])}),
    )
    .await;
    (gw, o)
}

/// A GET whose head (request line through the blank line) is exactly `size` bytes, padded in one header.
fn head_of_size(size: usize) -> String {
    let base = "GET /h HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Fill: \r\n\r\n";
    assert!(size > base.len());
    let head = base.replace(
        "X-Fill: ",
        &format!("X-Fill: {}", "a".repeat(size - base.len())),
    );
    assert_eq!(head.len(), size);
    head
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_size_limit_is_exact() {
    let (gw, o) = fixture(&[]).await;
    let at = raw(gw.http_addr(), head_of_size(60 * 1024).as_bytes(), IDLE).await;
    assert_eq!(at.statuses(), [200], "a 60 KiB head is served");
    assert_eq!(at.responses[0].header("x-origin"), Some("o"));
    let before = o.arrivals();
    let over = raw(gw.http_addr(), head_of_size(60 * 1024 + 1).as_bytes(), IDLE).await;
    assert_eq!(over.statuses(), [431], "one byte more is not");
    assert_eq!(o.arrivals(), before, "and never reaches the upstream");

    // A configured limit moves the boundary.
    let (gw, _o) = fixture(&["--max-header-size", "16KiB"]).await;
    let at = raw(gw.http_addr(), head_of_size(16 * 1024).as_bytes(), IDLE).await;
    let over = raw(gw.http_addr(), head_of_size(16 * 1024 + 1).as_bytes(), IDLE).await;
    assert_eq!((at.statuses(), over.statuses()), (vec![200], vec![431]));
}

fn with_headers(total: usize) -> String {
    // Host and Connection count too.
    let mut head = String::from("GET /n HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for i in 0..total - 2 {
        head.push_str(&format!("X-H{i}: v\r\n"));
    }
    head.push_str("\r\n");
    head
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_count_limit_is_exact_on_http1_and_http2() {
    let (gw, o) = fixture(&[]).await;
    let at = raw(gw.http_addr(), with_headers(100).as_bytes(), IDLE).await;
    assert_eq!(at.statuses(), [200], "100 header fields are served");
    let before = o.arrivals();
    let over = raw(gw.http_addr(), with_headers(101).as_bytes(), IDLE).await;
    assert_eq!(over.statuses(), [431], "101 are not");
    assert_eq!(o.arrivals(), before);

    // HTTP/2 gets the same rule (`accept` set here so the client adds no field of its own).
    let h2 = h2c_client();
    let send_n = |n: usize| {
        let mut rb = h2.get(gw.url("/n")).header("accept", "*/*");
        for i in 0..n - 1 {
            rb = rb.header(format!("x-h{i}"), "v");
        }
        send(rb)
    };
    assert_eq!(send_n(100).await.status, 200);
    assert_eq!(send_n(101).await.status, 431);
    assert_eq!(o.arrivals(), before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uri_limit_is_exact() {
    let (gw, o) = fixture(&["--max-uri-size", "2048"]).await;
    let uri = |len: usize| format!("/u?{}", "q".repeat(len - 3));
    let req = |len: usize| {
        format!(
            "GET {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            uri(len)
        )
    };
    assert_eq!(
        raw(gw.http_addr(), req(2048).as_bytes(), IDLE)
            .await
            .statuses(),
        [200]
    );
    let before = o.arrivals();
    let over = raw(gw.http_addr(), req(2049).as_bytes(), IDLE).await;
    assert_eq!(over.statuses(), [414]);
    assert_eq!(o.arrivals(), before, "the upstream is not contacted");
    // The default is 8 KiB.
    let (gw, _o) = fixture(&[]).await;
    let at = raw(gw.http_addr(), req(8192).as_bytes(), IDLE).await;
    let over = raw(gw.http_addr(), req(8193).as_bytes(), IDLE).await;
    assert_eq!((at.statuses(), over.statuses()), (vec![200], vec![414]));
}

fn post_with_length(path: &str, len: usize) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n{}",
        "b".repeat(len)
    )
}

fn post_chunked(path: &str, len: usize) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{len:x}\r\n{}\r\n0\r\n\r\n",
        "b".repeat(len)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_limit_is_exact_and_routes_may_set_their_own() {
    let (gw, o) = fixture(&["--max-body-size", "1000"]).await;
    let at = raw(
        gw.http_addr(),
        post_with_length("/b", 1000).as_bytes(),
        IDLE,
    )
    .await;
    assert_eq!(at.statuses(), [200]);
    assert_eq!(o.last().unwrap().body_len, 1000);
    let before = o.arrivals();
    let over = raw(
        gw.http_addr(),
        post_with_length("/b", 1001).as_bytes(),
        IDLE,
    )
    .await;
    assert_eq!(over.statuses(), [413]);
    assert!(over.closed, "the unread body is never parsed as a request");
    assert_eq!(
        o.arrivals(),
        before,
        "an announced length over the limit never reaches the upstream"
    );

    // Without a length the limit holds as the body streams: the upstream never gets a complete request.
    let at = raw(gw.http_addr(), post_chunked("/c", 1000).as_bytes(), IDLE).await;
    assert_eq!(at.statuses(), [200]);
    let over = raw(gw.http_addr(), post_chunked("/c", 1001).as_bytes(), IDLE).await;
    assert_eq!(over.statuses(), [413]);
    assert!(o
        .requests()
        .iter()
        .filter(|r| r.path == "/c")
        .all(|r| r.body_complete && r.body_len == 1000));

    // client-control: a tighter limit, and 0 lifting the listener's.
    gw.put_ok(
        "routes",
        "small",
        json!({"uri": "/small", "plugins": {"client-control": {"max_body_size": 10}}, "upstream": upstream(&[&o])}),
    )
    .await;
    gw.put_ok(
        "routes",
        "open",
        json!({"uri": "/open", "plugins": {"client-control": {"max_body_size": 0}}, "upstream": upstream(&[&o])}),
    )
    .await;
    let small = |n| {
        raw(
            gw.http_addr(),
            post_with_length("/small", n).as_bytes().to_vec().leak(),
            IDLE,
        )
    };
    assert_eq!(small(10).await.statuses(), [200]);
    assert_eq!(small(11).await.statuses(), [413]);
    let open = raw(
        gw.http_addr(),
        post_with_length("/open", 5000).as_bytes(),
        IDLE,
    )
    .await;
    assert_eq!(open.statuses(), [200]);
    let bad = gw
        .admin()
        .put("routes", "bad", json!({"uri": "/x", "plugins": {"client-control": {"max_body_size": -1}}, "upstream": upstream(&[&o])}))
        .await;
    assert_eq!(bad.status, 400);
    let msg = bad.error_msg().unwrap();
    assert!(
        msg.contains("plugins.client-control") && msg.contains("max_body_size"),
        "{msg}"
    );
}

/// Keeps sending `GET /ok` on fresh connections until `stop`; counts answers that were 200.
async fn steady_client(
    gw_addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
) -> usize {
    let mut failures = 0;
    while !stop.load(Ordering::SeqCst) {
        let ex = raw(
            gw_addr,
            b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            Duration::from_secs(3),
        )
        .await;
        if ex.statuses() == [200] {
            ok.fetch_add(1, Ordering::SeqCst);
        } else {
            failures += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_cut_off_at_the_header_timeout_while_others_are_served() {
    let (gw, _o) = fixture(&["--header-read-timeout", "1"]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let steady = tokio::spawn(steady_client(gw.http_addr(), stop.clone(), ok.clone()));

    let mut slow = TcpStream::connect(gw.http_addr()).await.unwrap();
    let started = Instant::now();
    let head =
        b"GET /ok HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut cut_off = None;
    for b in head.iter() {
        if slow.write_all(&[*b]).await.is_err() {
            cut_off = Some(started.elapsed());
            break;
        }
        // Has the gateway closed it?
        let mut buf = [0u8; 512];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(100), slow.read(&mut buf)).await
        {
            assert!(
                n == 0 || buf.starts_with(b"HTTP/1.1 408"),
                "only a close (or 408) comes back"
            );
            cut_off = Some(started.elapsed());
            break;
        }
    }
    let cut_off = cut_off.expect("the slow client was disconnected before finishing its head");
    assert!(
        cut_off >= Duration::from_millis(900),
        "not before the timeout: {cut_off:?}"
    );
    assert!(
        cut_off < Duration::from_secs(3),
        "soon after it: {cut_off:?}"
    );
    // The same on the HTTPS listener: a client that never sends its ClientHello is closed in time.
    let mut mute = TcpStream::connect(gw.https_addr()).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(3), mute.read(&mut buf))
        .await
        .expect("the silent TLS client is disconnected within the header timeout")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(started.elapsed() >= Duration::from_millis(900));
    stop.store(true, Ordering::SeqCst);
    assert_eq!(steady.await.unwrap(), 0, "the steady client saw no failure");
    assert!(ok.load(Ordering::SeqCst) >= 5, "and was served throughout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_but_busy_ones_are_not() {
    let (gw, _o) = fixture(&["--idle-timeout", "1", "--header-read-timeout", "10"]).await;
    // HTTP/2: the connection is told to go away once nothing is in flight for a second.
    let tcp = TcpStream::connect(gw.http_addr()).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    // A request that takes longer than the idle timeout keeps the connection open until it ends.
    let req = http::Request::get(gw.url("/slow"))
        .header("x-delay-ms", "1500")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let started = Instant::now();
    let resp = sender
        .send_request(req)
        .await
        .expect("a busy connection is not closed");
    assert_eq!(resp.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(1500));
    let closed = tokio::time::timeout(Duration::from_secs(4), conn).await;
    assert!(
        closed.is_ok(),
        "an idle HTTP/2 connection is closed within the idle timeout"
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // HTTP/1.1: an idle keep-alive connection is closed too.
    let mut tcp = TcpStream::connect(gw.http_addr()).await.unwrap();
    tcp.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let ex = read_exchange(&mut tcp, Duration::from_secs(4)).await;
    assert_eq!(ex.statuses(), [200]);
    assert!(ex.closed, "closed after the idle timeout, not kept forever");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_listener_closes_new_connections_and_recovers() {
    let (gw, _o) = fixture(&["--max-connections", "2"]).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = TcpStream::connect(gw.http_addr()).await.unwrap();
        c.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = c.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        held.push(c);
    }
    let third = raw(gw.http_addr(), b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n", IDLE).await;
    assert!(
        third.responses.is_empty() && third.closed,
        "the third connection is closed unanswered: {third:?}"
    );
    drop(held.pop());
    eventually(
        "a freed slot is usable again",
        Duration::from_secs(5),
        || async {
            raw(
                gw.http_addr(),
                b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                IDLE,
            )
            .await
            .statuses()
                == [200]
        },
    )
    .await;
}

/// One HTTP/2 frame header + payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

async fn read_frame(tcp: &mut TcpStream) -> Option<(u8, u8, Vec<u8>)> {
    let mut head = [0u8; 9];
    tcp.read_exact(&mut head).await.ok()?;
    let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
    let mut payload = vec![0u8; len];
    tcp.read_exact(&mut payload).await.ok()?;
    Some((head[3], head[4], payload))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_rapid_reset_is_cut_off_while_others_are_served() {
    let (gw, o) = fixture(&[]).await;
    let mut tcp = TcpStream::connect(gw.http_addr()).await.unwrap();
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    tcp.write_all(&frame(0x4, 0, 0, &[])).await.unwrap();
    // Acknowledge the server's SETTINGS.
    loop {
        let (kind, flags, _) = read_frame(&mut tcp).await.expect("server settings");
        if kind == 0x4 && flags & 0x1 == 0 {
            tcp.write_all(&frame(0x4, 0x1, 0, &[])).await.unwrap();
            break;
        }
    }
    // GET / with :authority x, HPACK static-table indices and one literal; then reset it at once.
    let block = [0x82, 0x86, 0x84, 0x01, 0x01, b'x'];
    let mut burst = Vec::new();
    for i in 0..2000u32 {
        let id = 2 * i + 1;
        burst.extend(frame(0x1, 0x5, id, &block));
        burst.extend(frame(0x3, 0, id, &8u32.to_be_bytes()));
    }
    let _ = tcp.write_all(&burst).await;
    let goaway = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some((kind, _, payload)) = read_frame(&mut tcp).await {
            if kind == 0x7 {
                return Some(u32::from_be_bytes([
                    payload[4], payload[5], payload[6], payload[7],
                ]));
            }
        }
        None
    })
    .await
    .expect("the server answers the flood promptly");
    assert_eq!(goaway, Some(0xb), "GOAWAY ENHANCE_YOUR_CALM");
    assert!(
        o.arrivals() < 2000,
        "the flood was cut short: {} streams reached the upstream",
        o.arrivals()
    );
    // A well-behaved HTTP/2 client is served.
    let r = send(h2c_client().get(gw.url("/fine"))).await;
    assert_eq!(r.hit(), (200, Some("o")));
}
