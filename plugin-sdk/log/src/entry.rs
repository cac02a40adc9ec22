//! One request's log entry in APISIX's format (`log-util.get_full_log`, what `http-logger`, `file-logger`
//! and the other APISIX loggers send), as JSON.
//!
//! ```json
//! {"request": {"method": "GET", "uri": "/hello?a=1", "url": "http://example.com/hello?a=1",
//!              "querystring": {"a": "1"}, "headers": {"host": "example.com"}, "size": 0},
//!  "response": {"status": 200, "headers": {"content-length": "5"}, "size": 5},
//!  "upstream": "127.0.0.1:8080", "latency": 3.2, "upstream_latency": 2.9, "apisix_latency": 0.3,
//!  "client_ip": "127.0.0.1", "route_id": "1", "service_id": "", "consumer": {"username": "jack"},
//!  "start_time": 1700000000000, "complete": true}
//! ```
//!
//! Differences from APISIX, each because Sluice knows something else: `request.size` and `response.size`
//! count body bytes (the gateway does not keep header sizes); `consumer` is present only when a consumer
//! was matched; `complete` (Sluice's) says whether the whole response body reached the client.

use std::borrow::Cow;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Header fields, grouped by name: repeated names become one JSON array, as in APISIX.
pub trait HeaderPairs {
    /// Calls `f` once per distinct name (lower-case), in order of first appearance, with its values.
    fn for_each_name(&self, f: &mut dyn FnMut(&str, &[&str]));
}

impl HeaderPairs for Vec<(String, String)> {
    fn for_each_name(&self, f: &mut dyn FnMut(&str, &[&str])) {
        let mut values: Vec<&str> = Vec::new();
        for (i, (name, _)) in self.iter().enumerate() {
            if self[..i].iter().any(|(seen, _)| seen == name) {
                continue;
            }
            values.clear();
            values.extend(
                self[i..]
                    .iter()
                    .filter(|(n, _)| n == name)
                    .map(|(_, v)| v.as_str()),
            );
            f(name, &values);
        }
    }
}

/// No headers (a response that never had any, or a format that leaves them out).
pub struct NoHeaders;

impl HeaderPairs for NoHeaders {
    fn for_each_name(&self, _: &mut dyn FnMut(&str, &[&str])) {}
}

/// The request as the client sent it.
pub struct Request<'a> {
    pub method: &'a str,
    /// `http` or `https`.
    pub scheme: &'a str,
    /// The `Host` the client asked for (with its port, if it sent one).
    pub host: &'a str,
    /// The path without the query.
    pub path: &'a str,
    /// The raw query string without `?`.
    pub query: Option<&'a str>,
    pub headers: &'a dyn HeaderPairs,
    /// Body bytes.
    pub size: u64,
}

/// The response as the client got it.
pub struct Response<'a> {
    pub status: u16,
    pub headers: &'a dyn HeaderPairs,
    /// Body bytes sent.
    pub size: u64,
}

/// One finished request.
pub struct Entry<'a> {
    pub request: Request<'a>,
    pub response: Response<'a>,
    /// The upstream node the request went to last.
    pub upstream: Option<SocketAddr>,
    /// From the request head to the end of the response.
    pub latency: Duration,
    /// Until the upstream's response head arrived.
    pub upstream_latency: Option<Duration>,
    pub client_ip: IpAddr,
    /// Empty when no route matched.
    pub route_id: &'a str,
    /// Empty when the route has no service.
    pub service_id: &'a str,
    pub consumer: Option<&'a str>,
    /// When the request head arrived, milliseconds since the Unix epoch.
    pub start_time_ms: u64,
    /// Whether the whole response body reached the client.
    pub complete: bool,
}

impl Entry<'_> {
    /// The entry as one line of JSON (no trailing newline).
    pub fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(512);
        self.write_json(&mut out);
        // Everything written is UTF-8: JSON syntax, escaped `&str`s and formatted numbers.
        String::from_utf8(out).unwrap_or_default()
    }

    /// Appends the entry as JSON to `out`.
    ///
    /// Written field by field rather than through a `Serialize` impl of the whole entry: the access log
    /// writes one of these per request, and the generic map serializer plus the intermediate strings it
    /// needed (uri, url, addresses) cost ~2.5x this (`cargo bench -p sluice --bench access_log`). Strings
    /// and integers still go through `serde_json` (its escaping and formats); latencies and addresses are
    /// written by hand, tested to print what the float and `Display` printed.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let r = &self.request;
        out.extend_from_slice(b"{\"request\":{\"method\":");
        string(out, r.method);
        // `uri` is the tail of `url`: one string built, not two.
        let mut url = String::with_capacity(
            r.scheme.len() + 3 + r.host.len() + r.path.len() + r.query.map_or(0, |q| q.len() + 1),
        );
        url.push_str(r.scheme);
        url.push_str("://");
        url.push_str(r.host);
        let uri_at = url.len();
        url.push_str(r.path);
        if let Some(q) = r.query {
            url.push('?');
            url.push_str(q);
        }
        out.extend_from_slice(b",\"uri\":");
        string(out, &url[uri_at..]);
        out.extend_from_slice(b",\"url\":");
        string(out, &url);
        out.extend_from_slice(b",\"querystring\":");
        query_args(out, r.query);
        out.extend_from_slice(b",\"headers\":");
        headers(out, r.headers);
        out.extend_from_slice(b",\"size\":");
        number(out, r.size);
        out.extend_from_slice(b"},\"response\":{\"status\":");
        number(out, self.response.status);
        out.extend_from_slice(b",\"headers\":");
        headers(out, self.response.headers);
        out.extend_from_slice(b",\"size\":");
        number(out, self.response.size);
        out.push(b'}');
        if let Some(up) = self.upstream {
            out.extend_from_slice(b",\"upstream\":\"");
            socket_addr(out, up);
            out.push(b'"');
        }
        out.extend_from_slice(b",\"latency\":");
        ms(out, self.latency);
        if let Some(up) = self.upstream_latency {
            out.extend_from_slice(b",\"upstream_latency\":");
            ms(out, up);
        }
        // The gateway's own share (APISIX's name for it).
        let own = self
            .latency
            .saturating_sub(self.upstream_latency.unwrap_or_default());
        out.extend_from_slice(b",\"apisix_latency\":");
        ms(out, own);
        out.extend_from_slice(b",\"client_ip\":\"");
        ip(out, self.client_ip);
        out.push(b'"');
        out.extend_from_slice(b",\"route_id\":");
        string(out, self.route_id);
        out.extend_from_slice(b",\"service_id\":");
        string(out, self.service_id);
        if let Some(username) = self.consumer {
            out.extend_from_slice(b",\"consumer\":{\"username\":");
            string(out, username);
            out.push(b'}');
        }
        out.extend_from_slice(b",\"start_time\":");
        number(out, self.start_time_ms);
        out.extend_from_slice(if self.complete {
            b",\"complete\":true}"
        } else {
            b",\"complete\":false}"
        });
    }
}

/// Milliseconds with microsecond precision, as APISIX reports latencies: the JSON number a float
/// `micros / 1000` prints as (`0.812`, `3.2`, `1.0`), written from the integer without float formatting
/// (with addresses, the costliest part of a line through `core::fmt`).
fn ms(out: &mut Vec<u8>, d: Duration) {
    let micros = d.as_micros();
    number(out, micros / 1000);
    let frac = (micros % 1000) as u16;
    let digits = [
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ];
    let keep = digits.iter().rposition(|d| *d != b'0').map_or(1, |i| i + 1);
    out.push(b'.');
    out.extend_from_slice(&digits[..keep]);
}

/// An address as `Display` writes it (never needs JSON escaping); IPv4, the common case, without
/// `core::fmt`.
pub fn ip(out: &mut Vec<u8>, addr: IpAddr) {
    match addr {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                number(out, octet);
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// An `ip:port` (`[ip]:port` for IPv6) as `Display` writes it.
pub fn socket_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(a) => {
            ip(out, IpAddr::V4(*a.ip()));
            out.push(b':');
            number(out, a.port());
        }
        // Rare; `Display` knows the brackets and the scope id (`[fe80::1%3]:80`).
        SocketAddr::V6(a) => {
            let _ = write!(out, "{a}");
        }
    }
}

/// A JSON string, escaped by `serde_json` (writing into a `Vec` cannot fail).
fn string(out: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(&mut *out, s);
}

/// A JSON number (`serde_json`'s integer and shortest-float formats).
fn number(out: &mut Vec<u8>, n: impl serde::Serialize) {
    let _ = serde_json::to_writer(&mut *out, &n);
}

/// An object of header names; a repeated name's values become an array, as in APISIX.
fn headers(out: &mut Vec<u8>, h: &dyn HeaderPairs) {
    out.push(b'{');
    let mut first = true;
    h.for_each_name(&mut |name, values| {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        string(out, name);
        out.push(b':');
        values_json(out, values);
    });
    out.push(b'}');
}

/// One string, or an array of them when a name repeats.
fn values_json(out: &mut Vec<u8>, values: &[&str]) {
    match values {
        [one] => string(out, one),
        many => {
            out.push(b'[');
            for (i, v) in many.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(out, v);
            }
            out.push(b']');
        }
    }
}

/// The query string's arguments, decoded like nginx's `ngx.req.get_uri_args`, sorted by name.
fn query_args(out: &mut Vec<u8>, query: Option<&str>) {
    let Some(q) = query.filter(|q| !q.is_empty()) else {
        out.extend_from_slice(b"{}");
        return;
    };
    let mut pairs: Vec<(Cow<'_, str>, Cow<'_, str>)> =
        form_urlencoded::parse(q.as_bytes()).collect();
    // Stable: a repeated name keeps its values in query order.
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    out.push(b'{');
    let mut values: Vec<&str> = Vec::new();
    let mut i = 0;
    while i < pairs.len() {
        let name = &pairs[i].0;
        values.clear();
        while i < pairs.len() && pairs[i].0 == *name {
            values.push(&pairs[i].1);
            i += 1;
        }
        if out.last() != Some(&b'{') {
            out.push(b',');
        }
        string(out, name);
        out.push(b':');
        values_json(out, &values);
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn an_entry_has_apisix_fields_and_repeated_names_become_arrays() {
        let req_headers = pairs(&[("host", "example.com:9080"), ("x-a", "1"), ("x-a", "2")]);
        let resp_headers = pairs(&[("content-length", "5")]);
        let entry = Entry {
            request: Request {
                method: "GET",
                scheme: "http",
                host: "example.com:9080",
                path: "/hello",
                query: Some("a=1&b=x+y&a=%32"),
                headers: &req_headers,
                size: 0,
            },
            response: Response {
                status: 200,
                headers: &resp_headers,
                size: 5,
            },
            upstream: Some("127.0.0.1:8080".parse().unwrap()),
            latency: Duration::from_micros(3200),
            upstream_latency: Some(Duration::from_micros(2900)),
            client_ip: "10.0.0.7".parse().unwrap(),
            route_id: "r1",
            service_id: "",
            consumer: Some("jack"),
            start_time_ms: 1_700_000_000_000,
            complete: true,
        };
        let v: Value = serde_json::from_str(&entry.to_json()).unwrap();
        assert_eq!(
            v,
            json!({
                "request": {
                    "method": "GET",
                    "uri": "/hello?a=1&b=x+y&a=%32",
                    "url": "http://example.com:9080/hello?a=1&b=x+y&a=%32",
                    "querystring": {"a": ["1", "2"], "b": "x y"},
                    "headers": {"host": "example.com:9080", "x-a": ["1", "2"]},
                    "size": 0
                },
                "response": {"status": 200, "headers": {"content-length": "5"}, "size": 5},
                "upstream": "127.0.0.1:8080",
                "latency": 3.2,
                "upstream_latency": 2.9,
                "apisix_latency": 0.3,
                "client_ip": "10.0.0.7",
                "route_id": "r1",
                "service_id": "",
                "consumer": {"username": "jack"},
                "start_time": 1_700_000_000_000u64,
                "complete": true
            })
        );
    }

    #[test]
    fn a_request_no_upstream_answered_has_no_upstream_fields() {
        let entry = Entry {
            request: Request {
                method: "POST",
                scheme: "https",
                host: "h",
                path: "/",
                query: None,
                headers: &NoHeaders,
                size: 10,
            },
            response: Response {
                status: 404,
                headers: &NoHeaders,
                size: 0,
            },
            upstream: None,
            latency: Duration::from_millis(1),
            upstream_latency: None,
            client_ip: "::1".parse().unwrap(),
            route_id: "",
            service_id: "",
            consumer: None,
            start_time_ms: 1,
            complete: false,
        };
        let v: Value = serde_json::from_str(&entry.to_json()).unwrap();
        assert!(v.get("upstream").is_none() && v.get("upstream_latency").is_none());
        assert!(v.get("consumer").is_none());
        assert_eq!(v["apisix_latency"], json!(1.0));
        assert_eq!(v["request"]["querystring"], json!({}));
        assert_eq!(v["request"]["url"], json!("https://h/"));
        assert_eq!(v["client_ip"], json!("::1"));
    }

    #[test]
    fn strings_that_need_escaping_survive_a_round_trip() {
        let odd = "say \"hi\"\\ \n\t\u{1} caf\u{e9}";
        let req_headers = pairs(&[("x-odd", odd)]);
        let entry = Entry {
            request: Request {
                method: "GET",
                scheme: "http",
                host: "h\"",
                path: "/a\\b",
                query: Some("q=%22x%0A"),
                headers: &req_headers,
                size: 0,
            },
            response: Response {
                status: 200,
                headers: &NoHeaders,
                size: 0,
            },
            upstream: None,
            latency: Duration::from_micros(1234),
            upstream_latency: None,
            client_ip: "10.0.0.7".parse().unwrap(),
            route_id: "r\"1",
            service_id: "",
            consumer: Some("j\u{0}"),
            start_time_ms: 1,
            complete: true,
        };
        let line = entry.to_json();
        assert!(!line.contains('\n'), "one line: {line}");
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["request"]["headers"]["x-odd"], json!(odd));
        assert_eq!(v["request"]["uri"], json!("/a\\b?q=%22x%0A"));
        assert_eq!(v["request"]["url"], json!("http://h\"/a\\b?q=%22x%0A"));
        assert_eq!(v["request"]["querystring"], json!({"q": "\"x\n"}));
        assert_eq!(v["route_id"], json!("r\"1"));
        assert_eq!(v["consumer"]["username"], json!("j\u{0}"));
        assert_eq!(v["latency"], json!(1.234));
    }

    #[test]
    fn latencies_and_addresses_print_as_floats_and_display_would() {
        for (micros, want) in [
            (0u64, "0.0"),
            (1, "0.001"),
            (10, "0.01"),
            (812, "0.812"),
            (1000, "1.0"),
            (3200, "3.2"),
            (12_345_678, "12345.678"),
        ] {
            let mut out = Vec::new();
            ms(&mut out, Duration::from_micros(micros));
            let text = String::from_utf8(out).unwrap();
            assert_eq!(text, want);
            let float: f64 = text.parse().unwrap();
            assert_eq!(
                float,
                micros as f64 / 1000.0,
                "{text} is the float serde_json printed"
            );
        }
        for addr in [
            "10.0.0.7:80",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "[::1]:8080",
            "[2001:db8::7]:1",
            "[fe80::1%3]:80",
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            let mut out = Vec::new();
            socket_addr(&mut out, addr);
            assert_eq!(String::from_utf8(out).unwrap(), addr.to_string());
        }
    }
}
