//! Bodies stream through the gateway in both directions with bounded memory, and without buffering.

use futures_util::StreamExt;
use support::*;

/// Body size for the memory tests: far above the memory bound we assert.
const BIG: u64 = 1024 * 1024 * 1024;
/// The gateway's peak RSS must stay below this while moving `BIG` bytes.
const MAX_RSS_KIB: u64 = 200 * 1024;

async fn setup() -> (Gateway, Origin) {
    let o = origin("big").start();
    let gw = gateway().start().await;
    let up = json!({"nodes": nodes(&[&o]), "timeout": {"connect": 5, "send": 60, "read": 60}});
    gw.put_ok("routes", "1", json!({"uri": "/big", "upstream": up}))
        .await;
    (gw, o)
}

fn long_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(240))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_upload_streams_with_bounded_memory() {
    let (gw, o) = setup().await;
    let body = reqwest::Body::wrap_stream(pattern_stream::<std::io::Error>(BIG));
    let r = send(long_client().post(gw.url("/big")).body(body)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let rec = o.last().unwrap();
    assert_eq!(rec.body_len, BIG, "the whole body arrived");
    assert!(rec.body_intact, "and unaltered");
    let hwm = gw.vm_hwm_kib();
    eprintln!("gateway VmHWM after a {BIG}-byte upload: {hwm} KiB");
    assert!(
        hwm < MAX_RSS_KIB,
        "gateway peak RSS {hwm} KiB for a {BIG}-byte upload"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_download_streams_with_bounded_memory() {
    let (gw, _o) = setup().await;
    let r = long_client()
        .get(gw.url("/big"))
        .header("x-stream-bytes", BIG.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.content_length(),
        Some(BIG),
        "Content-Length is passed through"
    );
    let mut check = PatternCheck::new();
    let mut body = r.bytes_stream();
    while let Some(chunk) = body.next().await {
        check.update(&chunk.expect("body chunk"));
    }
    assert_eq!(check.len, BIG);
    assert!(
        check.intact(),
        "corrupted at byte {:?}",
        check.first_mismatch
    );
    let hwm = gw.vm_hwm_kib();
    eprintln!("gateway VmHWM after a {BIG}-byte download: {hwm} KiB");
    assert!(
        hwm < MAX_RSS_KIB,
        "gateway peak RSS {hwm} KiB for a {BIG}-byte download"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_chunks_are_forwarded_as_they_arrive() {
    let (gw, _o) = setup().await;
    let t = Instant::now();
    let r = gw
        .request(reqwest::Method::GET, "/big")
        .header("x-drip", "5:300")
        .send()
        .await
        .unwrap();
    let mut body = r.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    let first_at = t.elapsed();
    assert!(first.starts_with(b"chunk-0"), "{first:?}");
    assert!(
        first_at < Duration::from_millis(900),
        "first chunk after {first_at:?}: the body was buffered"
    );
    let mut rest = first.len();
    while let Some(c) = body.next().await {
        rest += c.unwrap().len();
    }
    assert_eq!(rest, 5 * "chunk-0\n".len());
    assert!(t.elapsed() >= Duration::from_millis(1200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_body_reaches_origin_before_upload_ends() {
    // The origin sees the request (headers) while the client is still sending: nothing waits for the full body.
    let (gw, o) = setup().await;
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(4);
    let chunks = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
    });
    let upload = tokio::spawn(send(
        gw.request(reqwest::Method::PUT, "/big")
            .body(reqwest::Body::wrap_stream(chunks)),
    ));
    tx.send(bytes::Bytes::from_static(b"first part"))
        .await
        .unwrap();
    o.wait_for_arrivals(1, Duration::from_secs(3)).await;
    assert_eq!(o.request_count(), 0, "the body is not complete yet");
    tx.send(bytes::Bytes::from_static(b" second part"))
        .await
        .unwrap();
    drop(tx);
    assert_eq!(upload.await.unwrap().status, 200);
    assert_eq!(o.last().unwrap().body_len, 22);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_upload_and_download_are_intact() {
    let (gw, o) = setup().await;
    let n: u64 = 16 * 1024 * 1024 + 7;
    let c = h2c_client();
    let body = reqwest::Body::wrap_stream(pattern_stream::<std::io::Error>(n));
    let r = send(c.post(gw.url("/big")).body(body)).await;
    assert_eq!((r.status, r.version), (200, http::Version::HTTP_2));
    let rec = o.last().unwrap();
    assert_eq!((rec.body_len, rec.body_intact), (n, true));

    let r = send(
        c.get(gw.url("/big"))
            .header("x-stream-bytes", n.to_string()),
    )
    .await;
    let mut check = PatternCheck::new();
    check.update(&r.body);
    assert_eq!((check.len, check.intact()), (n, true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_is_answered_promptly() {
    // curl sends `Expect: 100-continue` for large uploads and waits (1 s) for the go-ahead.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (gw, o) = setup().await;
    let mut tcp = tokio::net::TcpStream::connect(gw.http_addr())
        .await
        .unwrap();
    let head = "PUT /big HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n";
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_millis(800), tcp.read(&mut buf))
        .await
        .expect("no interim response within 800 ms")
        .unwrap();
    let got = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(got.starts_with("HTTP/1.1 100"), "{got:?}");
    tcp.write_all(b"hello").await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while !String::from_utf8_lossy(&rest).contains("body_len") {
            let n = tcp.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            rest.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(
        String::from_utf8_lossy(&rest).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&rest)
    );
    assert_eq!(o.last().unwrap().body_len, 5);
}
