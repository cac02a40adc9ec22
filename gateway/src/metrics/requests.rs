//! Per-request metrics, recorded once per request where the access-log record completes.
//!
//! The label sets are bounded by configuration, never by traffic: `route` and `service` are configured ids
//! (empty when no route matched), `consumer` only a consumer that exists in the live config (a plugin may
//! set any name), `node` an upstream node's address (configured nodes, as resolved), `code` the status
//! class. Each route's handles are resolved once and cached, so a request
//! costs one map lookup under a read lock and a few atomic adds, with no label strings built.

use crate::config::ResourceKind;
use crate::snapshot::Live;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// Request and upstream latency buckets (seconds): from a cached answer to a slow upstream.
const LATENCY_BUCKETS: [f64; 14] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    service: String,
    consumer: String,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    route: String,
    node: String,
    code: &'static str,
}

/// `code` of an upstream exchange that got no answer (connect failure, timeout, broken connection).
const FAILED: &str = "failed";

type HistogramFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// What one finished request contributes.
pub struct Completed<'a> {
    pub route: Option<&'a str>,
    pub service: Option<&'a str>,
    /// The consumer a plugin named; counted under its name only if it is configured.
    pub consumer: Option<&'a str>,
    pub status: http::StatusCode,
    pub duration: Duration,
    /// Until the upstream's response head arrived (retries included); `None` when no upstream answered.
    pub upstream: Option<Duration>,
    pub request_bytes: u64,
    pub response_bytes: u64,
    /// The upstream node the request went to last.
    pub node: Option<SocketAddr>,
    /// That node's answer; `None` with a `node` when the exchange got none.
    pub upstream_status: Option<http::StatusCode>,
    /// How long opening a new upstream connection took (`None` when a pooled one was reused).
    pub connect: Option<Duration>,
}

/// One route's metric handles, resolved once.
struct RouteHandles {
    service: String,
    duration: Histogram,
    upstream: Histogram,
    request_bytes: Counter,
    response_bytes: Counter,
    /// `requests_total` without a consumer, by status class.
    anonymous: [Counter; 5],
    /// `requests_total` label sets with a consumer, remembered so [`HttpMetrics::prune`] can remove them.
    named: Mutex<Vec<RequestLabels>>,
    connect: Histogram,
    /// `upstream_responses_total` by node and code, created on a node's first answer.
    nodes: Mutex<HashMap<(SocketAddr, &'static str), Counter>>,
}

/// The per-request families and the connection gauge.
pub struct HttpMetrics {
    live: Arc<Live>,
    requests: Family<RequestLabels, Counter>,
    duration: HistogramFamily,
    upstream: HistogramFamily,
    request_bytes: Family<RouteLabels, Counter>,
    response_bytes: Family<RouteLabels, Counter>,
    connect: HistogramFamily,
    upstream_responses: Family<NodeLabels, Counter>,
    connections: Gauge,
    routes: RwLock<HashMap<String, Arc<RouteHandles>>>,
}

fn class(status: http::StatusCode) -> usize {
    usize::from(status.as_u16() / 100).clamp(1, 5) - 1
}

impl HttpMetrics {
    /// `live` tells which consumers exist, so a plugin-chosen name cannot grow the label set.
    pub fn new(live: Arc<Live>) -> Self {
        HttpMetrics {
            live,
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
            upstream: Family::new_with_constructor(latency_histogram),
            request_bytes: Family::default(),
            response_bytes: Family::default(),
            connect: Family::new_with_constructor(latency_histogram),
            upstream_responses: Family::default(),
            connections: Gauge::default(),
            routes: RwLock::new(HashMap::new()),
        }
    }

    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "http_requests",
            "Requests answered, by route, service, consumer and status class",
            self.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from request head to the end of the response body, by route",
            self.duration.clone(),
        );
        registry.register(
            "upstream_response_seconds",
            "Time until the upstream's response head arrived (retries included), by route",
            self.upstream.clone(),
        );
        registry.register(
            "upstream_connect_seconds",
            "Time to open a new upstream connection (TCP, and TLS for https), by route; reused \
             pooled connections are not counted",
            self.connect.clone(),
        );
        registry.register(
            "upstream_responses",
            "Upstream exchanges by route, node and the node's status class (`failed`: no answer)",
            self.upstream_responses.clone(),
        );
        registry.register(
            "http_request_bytes",
            "Request body bytes received (declared Content-Length), by route",
            self.request_bytes.clone(),
        );
        registry.register(
            "http_response_bytes",
            "Response body bytes sent, by route",
            self.response_bytes.clone(),
        );
        registry.register(
            "connections_active",
            "Client connections open on the proxy listeners",
            self.connections.clone(),
        );
    }

    fn handles(&self, route: &str, service: &str) -> Arc<RouteHandles> {
        let cached = self
            .routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(route)
            .filter(|h| h.service == service)
            .cloned();
        if let Some(h) = cached {
            return h;
        }
        let mut routes = self.routes.write().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = routes.get(route) {
            if h.service == service {
                return Arc::clone(h);
            }
            // The route moved to another service: its old series would never move again.
            self.forget(route, h);
        }
        let labels = RouteLabels {
            route: route.to_string(),
        };
        let handles = Arc::new(RouteHandles {
            service: service.to_string(),
            duration: self.duration.get_or_create_owned(&labels),
            upstream: self.upstream.get_or_create_owned(&labels),
            request_bytes: self.request_bytes.get_or_create_owned(&labels),
            response_bytes: self.response_bytes.get_or_create_owned(&labels),
            anonymous: CLASSES.map(|code| {
                self.requests.get_or_create_owned(&RequestLabels {
                    route: route.to_string(),
                    service: service.to_string(),
                    consumer: String::new(),
                    code,
                })
            }),
            named: Mutex::new(Vec::new()),
            connect: self.connect.get_or_create_owned(&labels),
            nodes: Mutex::new(HashMap::new()),
        });
        routes.insert(route.to_string(), Arc::clone(&handles));
        handles
    }

    /// Removes one route's series from every family.
    fn forget(&self, route: &str, h: &RouteHandles) {
        let labels = RouteLabels {
            route: route.to_string(),
        };
        self.duration.remove(&labels);
        self.upstream.remove(&labels);
        self.request_bytes.remove(&labels);
        self.response_bytes.remove(&labels);
        self.connect.remove(&labels);
        for (node, code) in h.nodes.lock().unwrap_or_else(|p| p.into_inner()).keys() {
            self.upstream_responses.remove(&NodeLabels {
                route: route.to_string(),
                node: node.to_string(),
                code,
            });
        }
        for code in CLASSES {
            self.requests.remove(&RequestLabels {
                route: route.to_string(),
                service: h.service.clone(),
                consumer: String::new(),
                code,
            });
        }
        for named in h.named.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            self.requests.remove(&named);
        }
    }

    /// Drops the series of routes no longer configured, so a deleted route leaves the exposition instead
    /// of staying in every scrape. Called at scrape time; a request still in flight on a deleted route
    /// recreates its series, which the next scrape removes again.
    pub fn prune(&self) {
        let snapshot = self.live.load();
        let mut routes = self.routes.write().unwrap_or_else(|p| p.into_inner());
        routes.retain(|id, h| {
            let live = id.is_empty() || snapshot.config.get(ResourceKind::Routes, id).is_some();
            if !live {
                self.forget(id, h);
            }
            live
        });
    }

    /// Counts one finished request.
    pub fn record(&self, r: &Completed<'_>) {
        let route = r.route.unwrap_or("");
        let service = r.service.unwrap_or("");
        let h = self.handles(route, service);
        let class = class(r.status);
        let consumer = r.consumer.filter(|name| {
            self.live
                .load()
                .config
                .get(ResourceKind::Consumers, name)
                .is_some()
        });
        match consumer {
            None => {
                h.anonymous[class].inc();
            }
            Some(consumer) => {
                let labels = RequestLabels {
                    route: route.to_string(),
                    service: service.to_string(),
                    consumer: consumer.to_string(),
                    code: CLASSES[class],
                };
                if self.requests.get(&labels).is_none() {
                    let mut named = h.named.lock().unwrap_or_else(|p| p.into_inner());
                    named.push(labels.clone());
                }
                self.requests.get_or_create(&labels).inc();
            }
        }
        h.duration.observe(r.duration.as_secs_f64());
        if let Some(up) = r.upstream {
            h.upstream.observe(up.as_secs_f64());
        }
        h.request_bytes.inc_by(r.request_bytes);
        h.response_bytes.inc_by(r.response_bytes);
        if let Some(took) = r.connect {
            h.connect.observe(took.as_secs_f64());
        }
        if let Some(node) = r.node {
            let code = r
                .upstream_status
                .map_or(FAILED, |s| CLASSES[self::class(s)]);
            let mut nodes = h.nodes.lock().unwrap_or_else(|p| p.into_inner());
            nodes
                .entry((node, code))
                .or_insert_with(|| {
                    self.upstream_responses.get_or_create_owned(&NodeLabels {
                        route: route.to_string(),
                        node: node.to_string(),
                        code,
                    })
                })
                .inc();
        }
    }

    /// Counts a client connection until the guard is dropped.
    pub fn connection(&self) -> ConnectionGuard {
        self.connections.inc();
        ConnectionGuard(self.connections.clone())
    }
}

/// Holds one `connections_active`; moved into the connection's task.
pub struct ConnectionGuard(Gauge);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Snapshot;

    fn encoded(m: &HttpMetrics) -> String {
        let mut reg = Registry::with_prefix("sluice");
        m.register(&mut reg);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &reg).unwrap();
        out
    }

    #[test]
    fn unknown_consumers_are_counted_without_a_name() {
        let m = HttpMetrics::new(Arc::new(Live::new(Snapshot::empty())));
        let done = |consumer, status| Completed {
            route: Some("r1"),
            service: None,
            consumer,
            status,
            duration: Duration::from_millis(3),
            upstream: Some(Duration::from_millis(1)),
            request_bytes: 5,
            response_bytes: 7,
            node: None,
            upstream_status: None,
            connect: None,
        };
        m.record(&done(Some("made-up"), http::StatusCode::OK));
        m.record(&done(None, http::StatusCode::NOT_FOUND));
        let text = encoded(&m);
        assert!(!text.contains("made-up"), "{text}");
        assert!(text.contains(
            r#"sluice_http_requests_total{route="r1",service="",consumer="",code="2xx"} 1"#
        ));
        assert!(text.contains(
            r#"sluice_http_requests_total{route="r1",service="",consumer="",code="4xx"} 1"#
        ));
        assert!(text.contains(r#"sluice_http_response_bytes_total{route="r1"} 14"#));
        assert!(text.contains(r#"sluice_upstream_response_seconds_count{route="r1"} 2"#));
    }

    #[test]
    fn routes_no_longer_configured_leave_the_exposition() {
        // The empty snapshot configures no route: every named route is stale; unrouted requests stay.
        let m = HttpMetrics::new(Arc::new(Live::new(Snapshot::empty())));
        for route in [Some("gone"), None] {
            m.record(&Completed {
                route,
                service: None,
                consumer: None,
                status: http::StatusCode::OK,
                duration: Duration::from_millis(1),
                upstream: None,
                request_bytes: 0,
                response_bytes: 1,
                node: None,
                upstream_status: None,
                connect: None,
            });
        }
        assert!(encoded(&m).contains(r#"route="gone""#));
        m.prune();
        let text = encoded(&m);
        assert!(!text.contains(r#"route="gone""#), "{text}");
        assert!(
            text.contains(r#"sluice_http_response_bytes_total{route=""} 1"#),
            "{text}"
        );
    }

    #[test]
    fn upstream_answers_are_counted_by_node_and_connects_timed() {
        let m = HttpMetrics::new(Arc::new(Live::new(Snapshot::empty())));
        let node: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let done = |status, connect| Completed {
            route: Some("r"),
            service: None,
            consumer: None,
            status: http::StatusCode::BAD_GATEWAY,
            duration: Duration::from_millis(2),
            upstream: None,
            request_bytes: 0,
            response_bytes: 0,
            node: Some(node),
            upstream_status: status,
            connect,
        };
        m.record(&done(
            Some(http::StatusCode::OK),
            Some(Duration::from_millis(1)),
        ));
        m.record(&done(Some(http::StatusCode::OK), None));
        m.record(&done(None, None));
        let text = encoded(&m);
        for line in [
            r#"sluice_upstream_responses_total{route="r",node="10.0.0.1:80",code="2xx"} 2"#,
            r#"sluice_upstream_responses_total{route="r",node="10.0.0.1:80",code="failed"} 1"#,
            r#"sluice_upstream_connect_seconds_count{route="r"} 1"#,
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }

    #[test]
    fn connections_are_counted_while_their_guard_lives() {
        let m = HttpMetrics::new(Arc::new(Live::new(Snapshot::empty())));
        let a = m.connection();
        let b = m.connection();
        drop(a);
        assert!(encoded(&m).contains("sluice_connections_active 1"));
        drop(b);
        assert!(encoded(&m).contains("sluice_connections_active 0"));
    }
}
