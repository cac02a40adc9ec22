//! Request spans exported over OTLP/HTTP (protobuf) when `--otlp-endpoint` is set.
//!
//! Each request gets a `SERVER` span, a child of the client's `traceparent` when it sent a valid one (a new
//! trace otherwise). Under it: one span per plugin phase that runs (`rewrite`, `access`, `header-filter`,
//! `log`; named as in the WIT), each with one span per plugin call (`plugin <name>`, marked as an error when the plugin
//! faulted), and a `CLIENT` span for the upstream exchange, whose id is the parent id in the `traceparent`
//! the upstream receives. So a trace shows where a request spent its time, and the upstream's own spans
//! hang under the gateway's. `body-filter` runs once per body chunk and gets no spans: a streamed response
//! would bury the trace in them.
//!
//! Off (no endpoint) costs nothing: the proxy holds no tracer, so not one span is made, and the
//! `traceparent` towards the upstream is the cheap random child of `proxy::trace_context`.
//!
//! Export runs off the request path: ending a span hands it to the OpenTelemetry SDK's batch processor
//! (its own thread, a bounded queue that drops when full), which sends batches through the OTLP exporter
//! with [`exporter_client::Client`], the gateway's own HTTP client on a small runtime (no reqwest, no
//! gRPC stack).

mod exporter_client;

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
    Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider,
};
use opentelemetry_sdk::Resource;
use std::borrow::Cow;
use std::time::Duration;

/// How long one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often queued spans are exported (the SDK's default is 5 s; a second keeps traces prompt).
const EXPORT_EVERY: Duration = Duration::from_secs(1);

/// Why tracing could not start.
#[derive(Debug, thiserror::Error)]
pub enum OtelError {
    #[error("OTLP exporter for {endpoint}: {reason}")]
    Exporter { endpoint: String, reason: String },
}

/// The tracer: where spans are made and from where they are exported.
pub struct Tracer {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer").finish_non_exhaustive()
    }
}

/// A client's `traceparent` (and `tracestate`), already checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteParent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub flags: u8,
    pub tracestate: Option<String>,
}

impl Tracer {
    /// Starts exporting to `endpoint` (the full OTLP/HTTP traces URL, e.g.
    /// `http://collector:4318/v1/traces`), with `service.name` = `sluice`.
    pub fn start(endpoint: &str) -> Result<Self, OtelError> {
        let exporter =
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(endpoint)
                .with_timeout(EXPORT_TIMEOUT)
                .with_http_client(exporter_client::Client::new(EXPORT_TIMEOUT).map_err(
                    |reason| OtelError::Exporter {
                        endpoint: endpoint.to_string(),
                        reason,
                    },
                )?)
                .build()
                .map_err(|e| OtelError::Exporter {
                    endpoint: endpoint.to_string(),
                    reason: e.to_string(),
                })?;
        let batch = BatchSpanProcessor::builder(exporter)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_scheduled_delay(EXPORT_EVERY)
                    .build(),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(batch)
            .with_resource(
                Resource::builder()
                    .with_service_name("sluice")
                    .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
                    .build(),
            )
            .build();
        let tracer = provider.tracer("sluice");
        Ok(Tracer { provider, tracer })
    }

    /// Starts a request's `SERVER` span, under the client's span when it sent one.
    pub fn request(
        &self,
        parent: Option<RemoteParent>,
        name: impl Into<Cow<'static, str>>,
    ) -> SpanScope {
        let parent_cx = match parent {
            Some(p) => Context::new().with_remote_span_context(SpanContext::new(
                TraceId::from_bytes(p.trace_id),
                SpanId::from_bytes(p.span_id),
                TraceFlags::new(p.flags),
                true,
                p.tracestate
                    .and_then(|s| s.parse::<TraceState>().ok())
                    .unwrap_or_default(),
            )),
            None => Context::new(),
        };
        let span = self
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .start_with_context(&self.tracer, &parent_cx);
        SpanScope {
            tracer: self.tracer.clone(),
            cx: Context::new().with_span(span),
        }
    }

    /// Exports what is queued and stops (at shutdown), waiting at most `timeout`.
    pub fn shutdown(&self, timeout: Duration) {
        if let Err(e) = self.provider.shutdown_with_timeout(timeout) {
            tracing::warn!(error = %e, "flushing spans at shutdown");
        }
    }
}

/// A live span that children hang under. Ends when [`SpanScope::end`] is called (or when the last clone
/// is dropped).
#[derive(Clone)]
pub struct SpanScope {
    tracer: SdkTracer,
    cx: Context,
}

/// What the upstream's `traceparent` carries: this span's ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ids {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub flags: u8,
}

impl SpanScope {
    /// A child span of `kind`.
    pub fn child(&self, name: impl Into<Cow<'static, str>>, kind: SpanKind) -> SpanScope {
        let span = self
            .tracer
            .span_builder(name)
            .with_kind(kind)
            .start_with_context(&self.tracer, &self.cx);
        SpanScope {
            tracer: self.tracer.clone(),
            cx: Context::new().with_span(span),
        }
    }

    /// A phase's span (`INTERNAL`).
    pub fn phase(&self, phase: crate::plugin::Phase) -> SpanScope {
        self.child(phase.as_str(), SpanKind::Internal)
    }

    /// One plugin call's span (`INTERNAL`, `plugin <name>`).
    pub fn plugin(&self, name: &str) -> SpanScope {
        let span = self.child(format!("plugin {name}"), SpanKind::Internal);
        span.set("sluice.plugin", name.to_string());
        span
    }

    /// The upstream exchange's span (`CLIENT`).
    pub fn upstream(&self) -> SpanScope {
        self.child("upstream", SpanKind::Client)
    }

    /// The span's ids, for the `traceparent` towards the upstream.
    pub fn ids(&self) -> Ids {
        let sc = self.cx.span().span_context().clone();
        Ids {
            trace_id: sc.trace_id().to_bytes(),
            span_id: sc.span_id().to_bytes(),
            flags: sc.trace_flags().to_u8(),
        }
    }

    /// The `tracestate` the span carries (the client's, passed on).
    pub fn tracestate(&self) -> String {
        self.cx.span().span_context().trace_state().header()
    }

    pub fn set(&self, key: &'static str, value: impl Into<opentelemetry::Value>) {
        self.cx
            .span()
            .set_attribute(KeyValue::new(key, value.into()));
    }

    pub fn rename(&self, name: String) {
        self.cx.span().update_name(name);
    }

    /// Marks the span as failed.
    pub fn fail(&self, message: impl Into<Cow<'static, str>>) {
        self.cx.span().set_status(Status::error(message));
    }

    pub fn end(&self) {
        self.cx.span().end();
    }
}
