//! WebSocket (and any HTTP/1.1 `Upgrade`) tunnels, for routes with `enable_websocket`.
//!
//! The upgrade request is forwarded like any other, with its `Connection: upgrade` / `Upgrade` kept. Only
//! when the upstream answers `101 Switching Protocols` does the gateway pass the 101 on and, once both
//! sides have switched, copy bytes both ways; any other answer is an ordinary response and no tunnel is
//! opened. A tunnel closes when either side closes, or when no byte moves for the route's `read` timeout
//! (nginx's `proxy_read_timeout` plays the same role for WebSockets).

use super::body::Progress;
use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Whether the request asks to switch protocols (`Connection: upgrade` plus an `Upgrade` protocol).
pub fn wants_upgrade(parts: &Parts) -> bool {
    let h = &parts.headers;
    let connection_upgrade = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    connection_upgrade && h.contains_key(header::UPGRADE)
}

/// Puts back the headers that ask the upstream to switch to `protocol` (hop-by-hop stripping removed them).
pub fn ask_upgrade(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, protocol);
}

/// Once the client and the upstream have both switched protocols, copies bytes both ways until one side
/// closes or nothing moves for `idle`. Runs on its own task.
pub fn spawn(client: OnUpgrade, upstream: OnUpgrade, idle: Duration) {
    tokio::spawn(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(both) => both,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade did not complete");
                return;
            }
        };
        let progress = Progress::new();
        let mut client = Watched::new(TokioIo::new(client), &progress);
        let mut upstream = Watched::new(TokioIo::new(upstream), &progress);
        let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
        tokio::pin!(copy);
        loop {
            let deadline = progress.last() + idle;
            tokio::select! {
                done = &mut copy => {
                    if let Err(e) = done {
                        tracing::debug!(error = %e, "tunnel ended with error");
                    }
                    return;
                }
                () = tokio::time::sleep_until(deadline) => {
                    if progress.last() + idle <= Instant::now() {
                        tracing::debug!(?idle, "closing an idle tunnel");
                        return;
                    }
                }
            }
        }
    });
}

/// An I/O stream that records when bytes last moved through it.
struct Watched<T> {
    io: T,
    progress: Progress,
}

impl<T> Watched<T> {
    fn new(io: T, progress: &Progress) -> Self {
        Watched {
            io,
            progress: progress.clone(),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.progress.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.progress.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
