//! Small helpers: JSON for upstreams, addresses that fail in known ways, polling.

use crate::origin::Origin;
use serde_json::{json, Value};
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// `{"127.0.0.1:P1": 1, "127.0.0.1:P2": 1, ...}` for these origins.
pub fn nodes(origins: &[&Origin]) -> Value {
    let map: serde_json::Map<String, Value> =
        origins.iter().map(|o| (o.node(), json!(1))).collect();
    Value::Object(map)
}

/// A roundrobin upstream over these origins, weight 1 each.
pub fn upstream(origins: &[&Origin]) -> Value {
    json!({"type": "roundrobin", "nodes": nodes(origins)})
}

/// An address on 127.0.0.1 where nothing listens: connections to it are refused. The port stays bound (never
/// listening) for the rest of the test process, so no origin started later can be handed the same port.
pub fn closed_port() -> SocketAddr {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().unwrap())
        .expect("bind closed port");
    let addr = socket.local_addr().expect("addr");
    // Deliberately leaked: the reservation must outlive every use of the address.
    let _ = std::os::fd::IntoRawFd::into_raw_fd(socket);
    addr
}

/// A listener whose accept queue is full and that never accepts: a new connection attempt hangs (the kernel
/// drops its SYN), which is how a connect timeout looks from the gateway. Checked on creation.
pub struct Blackhole {
    addr: SocketAddr,
    _socket: tokio::net::TcpListener,
    _fill: Vec<tokio::net::TcpStream>,
}

impl Blackhole {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    pub fn node(&self) -> String {
        self.addr.to_string()
    }
}

/// Makes a [`Blackhole`]; panics if the kernel still completes connections to it.
pub async fn blackhole() -> Blackhole {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().unwrap())
        .expect("bind blackhole");
    let listener = socket.listen(0).expect("listen(0)");
    let addr = listener.local_addr().expect("addr");
    let mut fill = Vec::new();
    for _ in 0..8 {
        match tokio::time::timeout(
            Duration::from_millis(300),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(Ok(s)) => fill.push(s),
            Ok(Err(e)) => panic!("blackhole: connect failed instead of hanging: {e}"),
            Err(_) => {
                return Blackhole {
                    addr,
                    _socket: listener,
                    _fill: fill,
                }
            }
        }
    }
    panic!("blackhole: the kernel kept accepting connections into a full backlog");
}

/// Polls `check` every 10 ms until it returns true; panics with `what` after `timeout`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "not true within {timeout:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
