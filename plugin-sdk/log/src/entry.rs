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

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use std::collections::BTreeMap;
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
        // Serializing strings, numbers and maps with string keys cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Appends the entry as JSON to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        // As above: writing into a Vec cannot fail either.
        let _ = serde_json::to_writer(out, self);
    }
}

/// Milliseconds with microsecond precision, as APISIX reports latencies.
fn ms(d: Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

/// One name's values: a string, or an array when the name repeats.
enum Values<'a> {
    One(&'a str),
    Many(Vec<&'a str>),
}

impl Serialize for Values<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Values::One(v) => s.serialize_str(v),
            Values::Many(v) => v.serialize(s),
        }
    }
}

fn push<'a>(map: &mut BTreeMap<&'a str, Values<'a>>, name: &'a str, value: &'a str) {
    match map.get_mut(name) {
        None => {
            map.insert(name, Values::One(value));
        }
        Some(Values::One(first)) => {
            let first = *first;
            map.insert(name, Values::Many(vec![first, value]));
        }
        Some(Values::Many(all)) => all.push(value),
    }
}

struct Headers<'a>(&'a dyn HeaderPairs);

/// A name's values: one string, or an array when the name repeats.
struct HeaderValues<'v, 'a>(&'v [&'a str]);

impl Serialize for HeaderValues<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            [one] => s.serialize_str(one),
            many => many.serialize(s),
        }
    }
}

impl Serialize for Headers<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        let mut failed = None;
        self.0.for_each_name(&mut |name, values| {
            if failed.is_none() {
                failed = map.serialize_entry(name, &HeaderValues(values)).err();
            }
        });
        match failed {
            Some(e) => Err(e),
            None => map.end(),
        }
    }
}

/// The query string's arguments, decoded like nginx's `ngx.req.get_uri_args`.
struct QueryArgs<'a>(Option<&'a str>);

impl Serialize for QueryArgs<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let pairs: Vec<(String, String)> = self
            .0
            .map(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let mut map = BTreeMap::new();
        for (k, v) in &pairs {
            push(&mut map, k, v);
        }
        map.serialize(s)
    }
}

struct RequestJson<'e, 'a>(&'e Request<'a>);

impl Serialize for RequestJson<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let uri = match r.query {
            Some(q) => format!("{}?{q}", r.path),
            None => r.path.to_string(),
        };
        let mut m = s.serialize_map(Some(6))?;
        m.serialize_entry("method", r.method)?;
        m.serialize_entry("uri", &uri)?;
        m.serialize_entry("url", &format!("{}://{}{uri}", r.scheme, r.host))?;
        m.serialize_entry("querystring", &QueryArgs(r.query))?;
        m.serialize_entry("headers", &Headers(r.headers))?;
        m.serialize_entry("size", &r.size)?;
        m.end()
    }
}

struct ResponseJson<'e, 'a>(&'e Response<'a>);

impl Serialize for ResponseJson<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("status", &r.status)?;
        m.serialize_entry("headers", &Headers(r.headers))?;
        m.serialize_entry("size", &r.size)?;
        m.end()
    }
}

#[derive(Serialize)]
struct Consumer<'a> {
    username: &'a str,
}

impl Serialize for Entry<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("request", &RequestJson(&self.request))?;
        m.serialize_entry("response", &ResponseJson(&self.response))?;
        if let Some(up) = self.upstream {
            m.serialize_entry("upstream", &up.to_string())?;
        }
        m.serialize_entry("latency", &ms(self.latency))?;
        if let Some(up) = self.upstream_latency {
            m.serialize_entry("upstream_latency", &ms(up))?;
        }
        // The gateway's own share (APISIX's name for it).
        let own = self
            .latency
            .saturating_sub(self.upstream_latency.unwrap_or_default());
        m.serialize_entry("apisix_latency", &ms(own))?;
        m.serialize_entry("client_ip", &self.client_ip.to_string())?;
        m.serialize_entry("route_id", self.route_id)?;
        m.serialize_entry("service_id", self.service_id)?;
        if let Some(username) = self.consumer {
            m.serialize_entry("consumer", &Consumer { username })?;
        }
        m.serialize_entry("start_time", &self.start_time_ms)?;
        m.serialize_entry("complete", &self.complete)?;
        m.end()
    }
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
}
