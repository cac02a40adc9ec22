//! APISIX request variables (`arg_*`, `http_*`, `cookie_*`, `uri`, `host`, `remote_addr`, ...) read
//! lazily from the request head: nothing is parsed unless a route's `vars`, a `chash` key or a plugin's
//! `request.var` asks.
//!
//! One resolver for the router and the plugin host, so a variable means the same thing in a route's
//! `vars` and in a plugin's config; it works on borrowed pieces because the plugin host holds the head
//! taken apart ([`crate::plugin::RequestState`]) while the router holds it whole.

use crate::router::VarSource;
use http::request::Parts;
use http::{HeaderMap, Method, Version};
use std::borrow::Cow;
use std::net::SocketAddr;

pub struct RequestVars<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub version: Version,
    pub client: SocketAddr,
    pub local: SocketAddr,
    pub host: Option<&'a str>,
    pub scheme: &'static str,
}

impl<'a> RequestVars<'a> {
    pub fn new(parts: &'a Parts, conn: crate::proxy::Conn, host: Option<&'a str>) -> Self {
        RequestVars {
            method: &parts.method,
            path: parts.uri.path(),
            query: parts.uri.query(),
            headers: &parts.headers,
            version: parts.version,
            client: conn.client,
            local: conn.local,
            host,
            scheme: conn.scheme,
        }
    }
}

/// First value of `name` in a `k=v&k=v` list, percent-decoded.
fn query_arg<'q>(query: &'q str, name: &str) -> Option<Cow<'q, str>> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

fn cookie<'c>(header: &'c str, name: &str) -> Option<&'c str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

impl VarSource for RequestVars<'_> {
    fn var(&self, name: &str) -> Option<Cow<'_, str>> {
        if let Some(arg) = name.strip_prefix("arg_") {
            return query_arg(self.query?, arg);
        }
        if let Some(h) = name.strip_prefix("http_") {
            let header = h.replace('_', "-");
            let mut values = self.headers.get_all(header.as_str()).iter();
            let first = values.next()?.to_str().ok()?;
            // nginx joins repeated headers with ", "; so do we.
            return match values.next() {
                None => Some(Cow::Borrowed(first)),
                Some(second) => {
                    let mut s = format!("{first}, {}", second.to_str().ok()?);
                    for v in values {
                        s.push_str(", ");
                        s.push_str(v.to_str().ok()?);
                    }
                    Some(Cow::Owned(s))
                }
            };
        }
        if let Some(c) = name.strip_prefix("cookie_") {
            return self
                .headers
                .get_all(http::header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(|h| cookie(h, c))
                .map(Cow::Borrowed);
        }
        match name {
            "uri" => Some(Cow::Borrowed(self.path)),
            "request_uri" => Some(match self.query {
                Some(q) => Cow::Owned(format!("{}?{q}", self.path)),
                None => Cow::Borrowed(self.path),
            }),
            "args" | "query_string" => self.query.map(Cow::Borrowed),
            "host" => self.host.map(Cow::Borrowed),
            "request_method" => Some(Cow::Borrowed(self.method.as_str())),
            "remote_addr" => Some(Cow::Owned(self.client.ip().to_string())),
            "remote_port" => Some(Cow::Owned(self.client.port().to_string())),
            "server_addr" => Some(Cow::Owned(self.local.ip().to_string())),
            "server_port" => Some(Cow::Owned(self.local.port().to_string())),
            "scheme" => Some(Cow::Borrowed(self.scheme)),
            "server_protocol" => Some(Cow::Borrowed(match self.version {
                http::Version::HTTP_2 => "HTTP/2.0",
                http::Version::HTTP_10 => "HTTP/1.0",
                _ => "HTTP/1.1",
            })),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_args_headers_cookies() {
        let req = http::Request::builder()
            .uri("/p/q?name=a%20b&x=1")
            .header("x-user-id", "42")
            .header("cookie", "a=1; session=abc")
            .body(())
            .unwrap();
        let (parts, _) = req.into_parts();
        let conn = crate::proxy::Conn {
            client: "10.0.0.9:5555".parse().unwrap(),
            local: "127.0.0.1:9080".parse().unwrap(),
            scheme: "http",
        };
        let v = RequestVars::new(&parts, conn, Some("example.com"));
        assert_eq!(v.var("arg_name").as_deref(), Some("a b"));
        assert_eq!(v.var("arg_missing"), None);
        assert_eq!(v.var("http_x_user_id").as_deref(), Some("42"));
        assert_eq!(v.var("cookie_session").as_deref(), Some("abc"));
        assert_eq!(v.var("uri").as_deref(), Some("/p/q"));
        assert_eq!(v.var("remote_addr").as_deref(), Some("10.0.0.9"));
        assert_eq!(v.var("host").as_deref(), Some("example.com"));
        assert_eq!(v.var("request_uri").as_deref(), Some("/p/q?name=a%20b&x=1"));
    }
}
