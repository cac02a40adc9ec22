//! Body types on both sides of the proxy.
//!
//! Bodies are streamed frame by frame, never collected, so memory per request stays bounded whatever the
//! body size. [`IdleTimeout`] turns APISIX's `send`/`read` timeouts into "longest pause between two
//! chunks", the same meaning nginx gives `proxy_send_timeout`/`proxy_read_timeout`.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The request body as sent upstream. Boxed so that later stages (plugins that buffer or replace the
/// body) can hand over any body type without changing the connection pool's type.
pub type UpstreamRequestBody = UnsyncBoxBody<Bytes, BoxError>;

#[derive(Debug, thiserror::Error)]
#[error("no body data for {0:?}")]
pub struct BodyTimeout(pub Duration);

/// When a body last moved, shared with the proxy: while hyper is blocked writing to an upstream that
/// stopped reading, it does not poll the body at all, so only an outside watcher can notice the stall.
#[derive(Clone)]
pub struct Progress(std::sync::Arc<ProgressInner>);

struct ProgressInner {
    base: Instant,
    /// Nanoseconds after `base` of the last progress.
    last: std::sync::atomic::AtomicU64,
}

impl Progress {
    pub(super) fn new() -> Self {
        Progress(std::sync::Arc::new(ProgressInner {
            base: Instant::now(),
            last: std::sync::atomic::AtomicU64::new(0),
        }))
    }

    pub(super) fn touch(&self) {
        let ns = u64::try_from(self.0.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.0.last.store(ns, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn last(&self) -> Instant {
        self.0.base + Duration::from_nanos(self.0.last.load(std::sync::atomic::Ordering::Relaxed))
    }
}

/// Fails a body stream that makes no progress for `timeout`; optionally tells a waiter when the stream
/// has ended (the proxy starts the response `read` timer only once the request is fully sent).
pub struct IdleTimeout<B> {
    inner: B,
    timeout: Duration,
    progress: Progress,
    sleep: Pin<Box<Sleep>>,
    finished: Option<oneshot::Sender<()>>,
    /// The clock starts at the first poll, not at construction: time spent resolving, connecting and
    /// retrying before the body is first wanted is not a stalled body.
    polled: bool,
}

impl<B: Body + Unpin> IdleTimeout<B> {
    pub fn new(inner: B, timeout: Duration) -> Self {
        let now = Instant::now();
        IdleTimeout {
            inner,
            timeout,
            progress: Progress::new(),
            sleep: Box::pin(tokio::time::sleep_until(now + timeout)),
            finished: None,
            polled: false,
        }
    }

    /// A handle on when the body last moved.
    pub fn progress(&self) -> Progress {
        self.progress.clone()
    }

    /// Returns a receiver that completes when the stream has been read to its end (or is dropped).
    pub fn notify_end(&mut self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        if self.inner.is_end_stream() {
            let _ = tx.send(());
        } else {
            self.finished = Some(tx);
        }
        rx
    }
}

impl<B> Body for IdleTimeout<B>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if !this.polled {
            this.polled = true;
            this.progress.touch();
            let deadline = this.progress.last() + this.timeout;
            this.sleep.as_mut().reset(deadline);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                // Only remember the time; the timer is re-armed lazily when it fires, which keeps the
                // per-chunk cost to one clock read.
                this.progress.touch();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => {
                if let Some(tx) = this.finished.take() {
                    let _ = tx.send(());
                }
                Poll::Ready(None)
            }
            Poll::Pending => loop {
                if this.sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                let deadline = this.progress.last() + this.timeout;
                if Instant::now() >= deadline {
                    return Poll::Ready(Some(Err(Box::new(BodyTimeout(this.timeout)))));
                }
                this.sleep.as_mut().reset(deadline);
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What the gateway sends to a client: a proxied stream or a small local answer (errors, 404).
pub enum ResponseBody {
    Local(Full<Bytes>),
    Proxied(IdleTimeout<hyper::body::Incoming>),
    /// Either of the above passing through `body_filter` / `log` plugins.
    Phased(Box<super::phases::PhasedBody>),
    /// A proxied body teed into the response cache.
    Filling(Box<super::cache_fill::CacheFillBody>),
}

impl ResponseBody {
    pub fn local(bytes: impl Into<Bytes>) -> Self {
        ResponseBody::Local(Full::new(bytes.into()))
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ResponseBody::Local(b) => Pin::new(b).poll_frame(cx).map_err(|never| match never {}),
            ResponseBody::Proxied(b) => Pin::new(b).poll_frame(cx),
            ResponseBody::Phased(b) => Pin::new(b.as_mut()).poll_frame(cx),
            ResponseBody::Filling(b) => Pin::new(b.as_mut()).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Local(b) => b.is_end_stream(),
            ResponseBody::Proxied(b) => b.is_end_stream(),
            ResponseBody::Phased(b) => b.is_end_stream(),
            ResponseBody::Filling(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Local(b) => b.size_hint(),
            ResponseBody::Proxied(b) => b.size_hint(),
            ResponseBody::Phased(b) => b.size_hint(),
            ResponseBody::Filling(b) => b.size_hint(),
        }
    }
}

/// Boxes the client's request body for the upstream connection, keeping its idle timeout.
pub fn upstream_body(body: IdleTimeout<super::client_body::ClientBody>) -> UpstreamRequestBody {
    body.boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;
    use http_body_util::StreamBody;

    #[tokio::test(start_paused = true)]
    async fn stalled_stream_times_out_and_progress_resets_the_clock() {
        let chunks = stream::unfold(0u8, |n| async move {
            match n {
                0 | 1 => {
                    tokio::time::sleep(Duration::from_millis(80)).await;
                    Some((
                        Ok::<_, std::io::Error>(Frame::data(Bytes::from_static(b"x"))),
                        n + 1,
                    ))
                }
                _ => {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    None
                }
            }
        });
        let body = IdleTimeout::new(
            StreamBody::new(Box::pin(chunks)),
            Duration::from_millis(100),
        );
        let mut body = std::pin::pin!(body);
        // Two chunks 80 ms apart pass a 100 ms idle limit even though together they take 160 ms.
        for _ in 0..2 {
            let f = body.frame().await.unwrap().unwrap();
            assert_eq!(f.into_data().unwrap(), Bytes::from_static(b"x"));
        }
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(err.downcast_ref::<BodyTimeout>().is_some());
    }
}
