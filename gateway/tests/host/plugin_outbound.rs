//! Outbound HTTP from a plugin: a real local upstream, called from a tokio multi-thread worker.

use crate::support::{component, fixture_with, request};
use http::{HeaderValue, StatusCode};
use sluice::plugin::{Decision, HostConfig, Phase};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Answers `200 x-user: alice` when the request has `x-in: ok`, else `403 nope`.
async fn auth_server() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
                let resp: &[u8] = if text.contains("x-in: ok") {
                    b"HTTP/1.1 200 OK\r\nx-user: alice\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                } else {
                    b"HTTP/1.1 403 Forbidden\r\ncontent-length: 4\r\nconnection: close\r\n\r\nnope"
                };
                let _ = sock.write_all(resp).await;
            });
        }
    });
    (addr, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_call_from_a_tokio_worker() {
    let (addr, hits) = auth_server().await;
    let f = fixture_with(HostConfig::default());
    f.outbound.set_upstream("auth", addr);
    let plugin = f.registry.load("phases", &component("phases")).unwrap();
    let cfg = plugin
        .configure(r#"{"header":"x-a","value":"1","auth_upstream":"auth"}"#)
        .unwrap();

    let mut req = request("/");
    req.headers.insert("x-in", HeaderValue::from_static("ok"));
    assert_eq!(
        cfg.call(Phase::Access, &mut req).unwrap(),
        Decision::Continue
    );
    assert_eq!(req.headers.get("x-user").unwrap(), "alice");

    let mut req = request("/");
    req.headers.insert("x-in", HeaderValue::from_static("bad"));
    match cfg.call(Phase::Access, &mut req).unwrap() {
        Decision::Respond(r) => {
            assert_eq!(r.status, StatusCode::FORBIDDEN);
            assert_eq!(&r.body[..], b"nope");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(hits.load(Ordering::SeqCst), 2);

    // Unknown upstream: the plugin sees the error and answers 502 itself.
    let cfg = plugin
        .configure(r#"{"header":"x-a","value":"1","auth_upstream":"nowhere"}"#)
        .unwrap();
    match cfg.call(Phase::Access, &mut request("/")).unwrap() {
        Decision::Respond(r) => {
            assert_eq!(r.status, StatusCode::BAD_GATEWAY);
            assert!(String::from_utf8_lossy(&r.body).contains("unknown upstream"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn outbound_call_without_a_runtime() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (addr, _) = rt.block_on(auth_server());
    let f = fixture_with(HostConfig::default());
    f.outbound.set_upstream("auth", addr);
    let plugin = f.registry.load("phases", &component("phases")).unwrap();
    let cfg = plugin
        .configure(r#"{"header":"x-a","value":"1","auth_upstream":"auth"}"#)
        .unwrap();
    let mut req = request("/");
    req.headers.insert("x-in", HeaderValue::from_static("ok"));
    assert_eq!(
        cfg.call(Phase::Access, &mut req).unwrap(),
        Decision::Continue
    );
    assert_eq!(req.headers.get("x-user").unwrap(), "alice");
}
