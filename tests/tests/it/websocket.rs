//! WebSocket through the gateway: a real tungstenite client and echo server, a tunnel only on routes with
//! `enable_websocket` and only once the upstream has answered 101.

use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use support::*;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};

/// The echo server's handshake check: it refuses the upgrade (403) for paths under `/refuse`.
#[allow(
    clippy::result_large_err,
    reason = "the signature is tungstenite's callback type"
)]
fn refuse_some(req: &Request, resp: Response) -> Result<Response, ErrorResponse> {
    if req.uri().path().starts_with("/refuse") {
        let mut no = ErrorResponse::new(Some("no".into()));
        *no.status_mut() = http::StatusCode::FORBIDDEN;
        return Err(no);
    }
    Ok(resp)
}

/// A WebSocket echo server (see [`refuse_some`] for the paths it will not upgrade).
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, refuse_some).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

async fn fixture(websocket: bool) -> Gateway {
    let echo = echo_server().await;
    let gw = gateway().start().await;
    gw.put_ok(
        "routes",
        "ws",
        json!({"uri": "/*", "enable_websocket": websocket,
               "upstream": {"type": "roundrobin", "nodes": {echo.to_string(): 1}}}),
    )
    .await;
    gw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_through_the_gateway() {
    let gw = fixture(true).await;
    let url = format!("ws://{}/chat", gw.http_addr());
    let (mut ws, resp) = tokio_tungstenite::connect_async(url)
        .await
        .expect("upgrade through the gateway");
    assert_eq!(resp.status(), 101);
    for i in 0..20 {
        let text = format!("hello {i}");
        ws.send(Message::text(text.clone())).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text(text));
    }
    let blob: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    ws.send(Message::binary(blob.clone())).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::binary(blob),
        "a 200 KB frame intact"
    );
    ws.close(None).await.unwrap();
    // The gateway keeps serving plain HTTP to the same route's neighbours.
    let plain = gw.get("/plain").await;
    assert_ne!(plain.status, 101);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_tunnel_without_enable_websocket_or_without_the_upstreams_101() {
    let gw = fixture(false).await;
    let err = tokio_tungstenite::connect_async(format!("ws://{}/chat", gw.http_addr()))
        .await
        .expect_err("the route does not allow WebSocket");
    assert!(
        matches!(err, tokio_tungstenite::tungstenite::Error::Http(ref r) if r.status() != 101),
        "{err:?}"
    );

    let gw = fixture(true).await;
    let err = tokio_tungstenite::connect_async(format!("ws://{}/refuse", gw.http_addr()))
        .await
        .expect_err("the upstream refused the upgrade");
    match err {
        tokio_tungstenite::tungstenite::Error::Http(r) => {
            assert_eq!(r.status(), 403, "its answer is passed on")
        }
        other => panic!("expected the upstream's 403, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_tunnel_closes_after_the_read_timeout() {
    let echo = echo_server().await;
    let gw = gateway().start().await;
    gw.put_ok(
        "routes",
        "ws",
        json!({"uri": "/*", "enable_websocket": true, "timeout": {"connect": 1, "send": 1, "read": 1},
               "upstream": {"type": "roundrobin", "nodes": {echo.to_string(): 1}}}),
    )
    .await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/chat", gw.http_addr()))
        .await
        .unwrap();
    // Traffic keeps it open past the timeout...
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        ws.send(Message::text("ping")).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("ping"));
    }
    // ...silence closes it.
    let ended = tokio::time::timeout(Duration::from_secs(4), ws.next()).await;
    assert!(
        matches!(ended, Ok(None) | Ok(Some(Err(_)))),
        "the gateway closed the idle tunnel: {ended:?}"
    );
}
