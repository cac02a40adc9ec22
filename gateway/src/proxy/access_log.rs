//! One access-log line and one metrics record per request, written when the response body is finished
//! (or abandoned), so both carry the real byte count and total latency, and the request path records in
//! one place only.

use crate::metrics::{Completed, HttpMetrics};
use http::{Method, StatusCode};
use http_body::{Body, Frame, SizeHint};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;

/// What is known about a request by the time its response starts.
pub struct AccessRecord {
    pub started: Instant,
    pub client: SocketAddr,
    pub method: Method,
    pub path: String,
    pub route_id: Option<String>,
    pub service_id: Option<String>,
    /// The consumer a plugin named (the metrics keep it only if it is configured).
    pub consumer: Option<String>,
    pub upstream: Option<SocketAddr>,
    /// Until the upstream's response head arrived.
    pub upstream_latency: Option<Duration>,
    /// The request body's declared length (a chunked body counts 0).
    pub request_bytes: u64,
    pub status: StatusCode,
    pub metrics: Arc<HttpMetrics>,
}

/// Wraps a response body and logs the request when the body is dropped.
pub struct Logged<B> {
    inner: B,
    record: AccessRecord,
    bytes: u64,
    complete: bool,
}

impl<B: Body> Logged<B> {
    pub fn new(inner: B, record: AccessRecord) -> Self {
        let complete = inner.is_end_stream();
        Logged {
            inner,
            record,
            bytes: 0,
            complete,
        }
    }
}

impl<B> Body for Logged<B>
where
    B: Body + Unpin,
    B::Data: bytes::Buf,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes += bytes::Buf::remaining(data) as u64;
                }
                // hyper stops polling a body once its Content-Length is reached, so "done" must be
                // read from the body, not from a final `None`.
                if this.inner.is_end_stream() {
                    this.complete = true;
                }
            }
            Poll::Ready(None) => this.complete = true,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for Logged<B> {
    fn drop(&mut self) {
        let r = &self.record;
        let elapsed = r.started.elapsed();
        r.metrics.record(&Completed {
            route: r.route_id.as_deref(),
            service: r.service_id.as_deref(),
            consumer: r.consumer.as_deref(),
            status: r.status,
            duration: elapsed,
            upstream: r.upstream_latency,
            request_bytes: r.request_bytes,
            response_bytes: self.bytes,
        });
        let latency_ms = elapsed.as_secs_f64() * 1000.0;
        tracing::info!(
            target: "sluice::access",
            client = %r.client.ip(),
            method = %r.method,
            path = %r.path,
            route = %r.route_id.as_deref().unwrap_or("-"),
            upstream = %r.upstream.map_or_else(|| "-".to_string(), |a| a.to_string()),
            status = r.status.as_u16(),
            bytes = self.bytes,
            latency_ms = format_args!("{latency_ms:.3}"),
            complete = self.complete,
        );
    }
}
