//! Header rewriting between client and upstream: hop-by-hop removal (RFC 9110 §7.6.1), the
//! `X-Forwarded-*` / `X-Real-IP` set, and the `Host` sent upstream per `pass_host`.

use crate::config::{NodeEntry, PassHost};
use crate::upstream::UpstreamRuntime;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::net::{IpAddr, SocketAddr};

static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
];

/// Removes headers meant for one connection only, including any the `Connection` header names.
/// `Transfer-Encoding` goes too: hyper frames each side's body itself.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    headers.remove(header::TRANSFER_ENCODING);
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Adds the client to `X-Forwarded-For` (appending to what earlier proxies wrote) and sets
/// `X-Forwarded-Proto`, `X-Forwarded-Host` and `X-Real-IP` as APISIX does.
pub fn add_forwarded(
    headers: &mut HeaderMap,
    client: IpAddr,
    scheme: &'static str,
    host: Option<&HeaderValue>,
) {
    let ip = client.to_string();
    let xff = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.is_empty() => format!("{prev}, {ip}"),
        _ => ip.clone(),
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert(X_FORWARDED_FOR.clone(), v);
    }
    if let Ok(v) = HeaderValue::from_str(&ip) {
        headers.insert(X_REAL_IP.clone(), v);
    }
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(scheme));
    if let Some(h) = host {
        headers.insert(X_FORWARDED_HOST.clone(), h.clone());
    }
}

/// Turns an origin-form HTTP/1.1 request into what an HTTP/2 upstream expects: `:scheme` and `:authority`
/// (from the `Host` chosen for the node, which HTTP/2 carries as the authority), and `te: trailers`, which
/// gRPC servers require and hop-by-hop stripping removed.
pub fn for_http2(req: &mut http::Request<impl Sized>, tls: bool, node: SocketAddr) {
    let authority = req
        .headers_mut()
        .remove(header::HOST)
        .and_then(|h| http::uri::Authority::try_from(h.as_bytes()).ok())
        .or_else(|| http::uri::Authority::try_from(node.to_string()).ok());
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(if tls {
        http::uri::Scheme::HTTPS
    } else {
        http::uri::Scheme::HTTP
    });
    parts.authority = authority;
    parts.path_and_query = req.uri().path_and_query().cloned();
    if let Ok(uri) = http::Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
    *req.version_mut() = http::Version::HTTP_2;
    req.headers_mut()
        .insert(header::TE, HeaderValue::from_static("trailers"));
}

/// The `Host` to send upstream for `node`: the client's, the node's, or the configured rewrite.
pub fn upstream_host(
    up: &UpstreamRuntime,
    node: &NodeEntry,
    client_host: Option<&HeaderValue>,
) -> Option<HeaderValue> {
    match up.pass_host {
        // HTTP/1.1 requires a Host; an HTTP/1.0 client may have sent none, so fall back to the node.
        PassHost::Pass => client_host
            .cloned()
            .or_else(|| HeaderValue::from_str(&node.authority()).ok()),
        PassHost::Rewrite => up.upstream_host.clone(),
        PassHost::Node => {
            let tls = matches!(
                up.source.get("scheme").and_then(|s| s.as_str()),
                Some("https" | "grpcs")
            );
            let default_port = if tls { 443 } else { 80 };
            let text = if node.port == default_port {
                node.host.clone()
            } else {
                node.authority()
            };
            HeaderValue::from_str(&text).ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
    }

    #[test]
    fn pass_host_falls_back_to_the_node_when_the_client_sent_none() {
        let json = serde_json::json!({"nodes": {"127.0.0.1:8080": 1}});
        let up: crate::config::Upstream = crate::config::parse_resource(&json).unwrap();
        let rt = UpstreamRuntime::build("t".into(), &up, json).unwrap();
        let members = rt.current_members();
        let node = &members.list[0].node;
        let client = HeaderValue::from_static("example.com");
        assert_eq!(
            upstream_host(&rt, node, Some(&client)).unwrap(),
            "example.com"
        );
        assert_eq!(upstream_host(&rt, node, None).unwrap(), "127.0.0.1:8080");
    }

    #[test]
    fn forwarded_for_appends() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("1.1.1.1"));
        add_forwarded(
            &mut h,
            "10.0.0.2".parse().unwrap(),
            "http",
            Some(&HeaderValue::from_static("a.com")),
        );
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 10.0.0.2");
        assert_eq!(h["x-real-ip"], "10.0.0.2");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "a.com");
    }
}
