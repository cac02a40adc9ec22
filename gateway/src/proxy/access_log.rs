//! The end of a request, in one place: when the response body is finished (or abandoned), the request is
//! counted in the metrics, the `log` plugin phase runs with the exchange's figures
//! ([`crate::plugin::Completion`]), and the access-log line is buffered. Everything waits for that moment
//! so that byte counts and total latency are real.

use super::body::ResponseBody;
use crate::access_log::{AccessLog, Record};
use crate::metrics::{Completed, HttpMetrics};
use crate::plugin::Completion;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// What is known about a request by the time its response starts.
pub struct AccessRecord {
    pub started: Instant,
    pub client: SocketAddr,
    pub scheme: &'static str,
    pub method: Method,
    /// As the client sent it (before normalisation and plugin rewrites).
    pub uri: Uri,
    pub host: Option<HeaderValue>,
    pub version: Version,
    /// The client's headers, kept only when the access log shows headers.
    pub request_headers: HeaderMap,
    pub route_id: Option<String>,
    pub service_id: Option<String>,
    /// The consumer a plugin named (the metrics keep it only if it is configured).
    pub consumer: Option<String>,
    pub upstream: Option<SocketAddr>,
    /// The upstream's own answer (before `header_filter`); `None` when it gave none.
    pub upstream_status: Option<StatusCode>,
    /// Until the upstream's response head arrived.
    pub upstream_latency: Option<Duration>,
    /// Opening a new upstream connection; `None` when a pooled one was reused.
    pub upstream_connect: Option<Duration>,
    /// The request body's declared length (a chunked body counts 0).
    pub request_bytes: u64,
    pub status: StatusCode,
    /// The headers sent to the client, kept only when the access log shows headers.
    pub response_headers: HeaderMap,
    pub metrics: Option<Arc<HttpMetrics>>,
    pub access_log: Option<Arc<AccessLog>>,
    /// The request's span, when spans are exported; ended here.
    pub span: Option<crate::otel::SpanScope>,
}

impl AccessRecord {
    /// Whether the access log wants the request and response headers.
    pub fn keeps_headers(&self) -> bool {
        self.access_log.as_ref().is_some_and(|l| l.wants_headers())
    }
}

/// Wraps a response body and finishes the request when the body is dropped.
pub struct Logged {
    inner: ResponseBody,
    record: AccessRecord,
    bytes: u64,
    complete: bool,
}

impl Logged {
    pub fn new(inner: ResponseBody, record: AccessRecord) -> Self {
        let complete = inner.is_end_stream();
        Logged {
            inner,
            record,
            bytes: 0,
            complete,
        }
    }
}

impl Body for Logged {
    type Data = bytes::Bytes;
    type Error = super::body::BoxError;

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

/// The wall-clock start of a request that began `elapsed` ago, in Unix milliseconds. Derived at the end
/// rather than read at the start, so requests nobody logs pay no second clock read.
fn started_unix_ms(elapsed: Duration) -> u64 {
    SystemTime::now()
        .checked_sub(elapsed)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Drop for Logged {
    fn drop(&mut self) {
        let r = &mut self.record;
        let latency = r.started.elapsed();
        if let Some(metrics) = &r.metrics {
            metrics.record(&Completed {
                route: r.route_id.as_deref(),
                service: r.service_id.as_deref(),
                consumer: r.consumer.as_deref(),
                status: r.status,
                duration: latency,
                upstream: r.upstream_latency,
                request_bytes: r.request_bytes,
                response_bytes: self.bytes,
                node: r.upstream,
                upstream_status: r.upstream_status,
                connect: r.upstream_connect,
            });
        }
        if let ResponseBody::Phased(phased) = &mut self.inner {
            phased.finish(Completion {
                started_unix_ms: started_unix_ms(latency),
                latency,
                upstream_latency: r.upstream_latency,
                upstream: r.upstream,
                request_body_bytes: r.request_bytes,
                response_body_bytes: self.bytes,
                complete: self.complete,
                service_id: r.service_id.clone(),
            });
        }
        if let Some(span) = r.span.take() {
            let status = r.status.as_u16();
            span.set("http.response.status_code", i64::from(status));
            span.set("sluice.complete", self.complete);
            if status >= 500 {
                span.fail(format!("answered {status}"));
            }
            span.end();
        }
        let Some(log) = r.access_log.take() else {
            return;
        };
        log.log(Record {
            started_unix_ms: started_unix_ms(latency),
            latency,
            upstream_latency: r.upstream_latency,
            upstream: r.upstream,
            client: r.client,
            method: std::mem::take(&mut r.method),
            scheme: r.scheme,
            host: r.host.take(),
            uri: std::mem::take(&mut r.uri),
            version: r.version,
            request_headers: std::mem::take(&mut r.request_headers),
            request_bytes: r.request_bytes,
            status: r.status,
            response_headers: std::mem::take(&mut r.response_headers),
            response_bytes: self.bytes,
            route_id: r.route_id.take(),
            service_id: r.service_id.take(),
            consumer: r.consumer.take(),
            complete: self.complete,
        });
    }
}
