//! Request spans over OTLP/HTTP through the real binary: the spans a collector receives belong to the
//! client's trace, nest as request → phase → plugin and request → upstream, and the upstream's
//! `traceparent` names the gateway's upstream span as its parent.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode, Span};
use prost::Message;
use support::*;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every span the collector received, decoded from the OTLP protobuf bodies.
fn spans(c: &Collector) -> Vec<Span> {
    c.posts()
        .iter()
        .filter(|p| p.path == "/v1/traces")
        .flat_map(|p| {
            ExportTraceServiceRequest::decode(p.body.as_ref())
                .unwrap_or_else(|e| panic!("not an OTLP trace export: {e}"))
                .resource_spans
        })
        .flat_map(|r| r.scope_spans)
        .flat_map(|s| s.spans)
        .collect()
}

fn named<'a>(all: &'a [Span], name: &str) -> &'a Span {
    let found: Vec<&Span> = all.iter().filter(|s| s.name == name).collect();
    assert_eq!(
        found.len(),
        1,
        "one span named {name:?} in {:#?}",
        names(all)
    );
    found[0]
}

fn names(all: &[Span]) -> Vec<&str> {
    all.iter().map(|s| s.name.as_str()).collect()
}

fn is_child(child: &Span, parent: &Span) -> bool {
    child.parent_span_id == parent.span_id && child.trace_id == parent.trace_id
}

async fn traced_gateway(collector: &Collector) -> Gateway {
    gateway()
        .args(["--otlp-endpoint", &collector.url("/v1/traces")])
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traced_request_exports_its_span_tree_in_the_clients_trace() {
    let a = origin("a").start();
    let otlp = collector();
    let gw = traced_gateway(&otlp).await;
    gw.route_to("t", "/t", &a, json!({"request-id": {}})).await;
    let r = send(
        gw.request(reqwest::Method::GET, "/t")
            .header("traceparent", format!("00-{TRACE_ID}-{CLIENT_SPAN}-01"))
            .header("tracestate", "congo=t61rcWkgMzE"),
    )
    .await;
    assert_eq!(r.status, 200);

    // The request, its two plugin phases with one plugin call each, and the upstream exchange.
    eventually("6 spans exported", Duration::from_secs(15), || async {
        spans(&otlp).len() >= 6
    })
    .await;
    let all = spans(&otlp);
    assert_eq!(all.len(), 6, "{:#?}", names(&all));
    assert!(
        all.iter().all(|s| hex(&s.trace_id) == TRACE_ID),
        "the client's trace"
    );

    let request = named(&all, "GET t");
    assert_eq!(request.kind, SpanKind::Server as i32);
    assert_eq!(hex(&request.parent_span_id), CLIENT_SPAN);
    let rewrite = named(&all, "rewrite");
    let header_filter = named(&all, "header-filter");
    for phase in [rewrite, header_filter] {
        assert!(is_child(phase, request), "{} under the request", phase.name);
    }
    let plugin_calls: Vec<&Span> = all
        .iter()
        .filter(|s| s.name == "plugin request-id")
        .collect();
    assert_eq!(plugin_calls.len(), 2);
    assert!(plugin_calls.iter().any(|s| is_child(s, rewrite)));
    assert!(plugin_calls.iter().any(|s| is_child(s, header_filter)));
    let upstream = named(&all, "upstream");
    assert_eq!(upstream.kind, SpanKind::Client as i32);
    assert!(is_child(upstream, request));

    // The upstream got a child of the client's trace whose parent is the exported upstream span.
    let sent = a.last().unwrap();
    let traceparent = sent.header("traceparent").expect("traceparent upstream");
    assert_eq!(
        traceparent,
        format!("00-{TRACE_ID}-{}-01", hex(&upstream.span_id))
    );
    assert_eq!(sent.header("tracestate"), Some("congo=t61rcWkgMzE"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faulting_plugin_call_is_an_error_span_and_a_request_without_parent_starts_a_trace() {
    let a = origin("a").start();
    let otlp = collector();
    let gw = traced_gateway(&otlp).await;
    gw.upload_plugin("faults", plugin_wasm("faults")).await.ok();
    let trap = json!({"faults": {"phase": "access", "fault": "trap"}});
    gw.route_to("trap", "/trap", &a, trap).await;
    assert_eq!(gw.get("/trap").await.status, 500);

    eventually(
        "the request span exported",
        Duration::from_secs(15),
        || async { spans(&otlp).iter().any(|s| s.name == "GET trap") },
    )
    .await;
    let all = spans(&otlp);
    let request = named(&all, "GET trap");
    assert!(
        request.parent_span_id.is_empty(),
        "a root span: the client sent no traceparent"
    );
    assert_ne!(request.trace_id, vec![0; 16]);
    let error = StatusCode::Error as i32;
    assert_eq!(request.status.as_ref().map(|s| s.code), Some(error));
    let access = named(&all, "access");
    assert_eq!(access.status.as_ref().map(|s| s.code), Some(error));
    let call = all
        .iter()
        .find(|s| s.name == "plugin faults" && is_child(s, access))
        .expect("the access call's span");
    assert_eq!(call.status.as_ref().map(|s| s.code), Some(error));
    assert!(
        !names(&all).contains(&"upstream"),
        "the upstream was never asked"
    );
    assert_eq!(a.request_count(), 0);
}
