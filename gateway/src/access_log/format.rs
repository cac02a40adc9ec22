//! Access-log formats: `json` (APISIX's log format, the one `http-logger` sends; see `sluice_log::entry`)
//! or an nginx-style template of `$variables` (`combined` is nginx's combined format).
//!
//! A template is parsed once at startup, so an unknown variable is a startup error, not a `-` in every
//! line. Variables: `remote_addr`, `remote_port`, `remote_user` (the consumer), `time_local`,
//! `time_iso8601`, `msec`, `request`, `request_method`, `request_uri`, `uri`, `args`, `query_string`,
//! `scheme`, `host`, `server_protocol`, `status`, `body_bytes_sent`, `request_length` (declared request
//! body length), `request_time`, `upstream_addr`, `upstream_response_time`, `route_id`, `service_id`,
//! `consumer_name`, `request_completion` (`OK` when the whole body was sent), `http_<name>` (request
//! header) and `sent_http_<name>` (response header). An absent value prints `-`; quotes, backslashes and
//! control bytes in values print as `\xHH`, as nginx escapes them, so a line is always one line.

use super::Record;
use http::{HeaderMap, HeaderValue};
use sluice_log::HeaderPairs;
use std::io::Write as _;
use time::OffsetDateTime;

/// nginx's `combined` log format.
pub const COMBINED: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent""#;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("unknown variable ${0} in the access log format")]
    UnknownVariable(String),
    #[error(
        "access log format {0:?} is neither `json`, `combined` nor a template with $variables"
    )]
    NotAFormat(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Var {
    RemoteAddr,
    RemotePort,
    RemoteUser,
    TimeLocal,
    TimeIso8601,
    Msec,
    Request,
    RequestMethod,
    RequestUri,
    Uri,
    Args,
    Scheme,
    Host,
    ServerProtocol,
    Status,
    BodyBytesSent,
    RequestLength,
    RequestTime,
    UpstreamAddr,
    UpstreamResponseTime,
    RouteId,
    ServiceId,
    RequestCompletion,
    /// A request header, lower-case with `-`.
    Http(String),
    /// A response header.
    SentHttp(String),
}

fn var(name: &str) -> Result<Var, FormatError> {
    let header = |n: &str| n.replace('_', "-").to_ascii_lowercase();
    Ok(match name {
        "remote_addr" => Var::RemoteAddr,
        "remote_port" => Var::RemotePort,
        "remote_user" | "consumer_name" => Var::RemoteUser,
        "time_local" => Var::TimeLocal,
        "time_iso8601" => Var::TimeIso8601,
        "msec" => Var::Msec,
        "request" => Var::Request,
        "request_method" => Var::RequestMethod,
        "request_uri" => Var::RequestUri,
        "uri" => Var::Uri,
        "args" | "query_string" => Var::Args,
        "scheme" => Var::Scheme,
        "host" => Var::Host,
        "server_protocol" => Var::ServerProtocol,
        "status" => Var::Status,
        "body_bytes_sent" | "bytes_sent" => Var::BodyBytesSent,
        "request_length" => Var::RequestLength,
        "request_time" => Var::RequestTime,
        "upstream_addr" => Var::UpstreamAddr,
        "upstream_response_time" => Var::UpstreamResponseTime,
        "route_id" => Var::RouteId,
        "service_id" => Var::ServiceId,
        "request_completion" => Var::RequestCompletion,
        other => {
            if let Some(h) = other.strip_prefix("sent_http_").filter(|h| !h.is_empty()) {
                Var::SentHttp(header(h))
            } else if let Some(h) = other.strip_prefix("http_").filter(|h| !h.is_empty()) {
                Var::Http(header(h))
            } else {
                return Err(FormatError::UnknownVariable(other.to_string()));
            }
        }
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Var(Var),
}

/// How each line is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// APISIX's log format, one JSON object per line.
    Json,
    /// An nginx-style template.
    Template(Template),
}

/// A parsed template: literal text and variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(Vec<Part>);

impl std::str::FromStr for Format {
    type Err = FormatError;
    fn from_str(s: &str) -> Result<Self, FormatError> {
        match s {
            "json" => Ok(Format::Json),
            "combined" => Format::template(COMBINED),
            t if t.contains('$') => Format::template(t),
            other => Err(FormatError::NotAFormat(other.to_string())),
        }
    }
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

impl Format {
    fn template(src: &str) -> Result<Format, FormatError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = src;
        while let Some(i) = rest.find('$') {
            literal.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            let (name, next) = match after.strip_prefix('{') {
                Some(inner) => match inner.find('}') {
                    Some(end) if end > 0 && inner[..end].bytes().all(is_word) => {
                        (&inner[..end], &inner[end + 1..])
                    }
                    _ => ("", after),
                },
                None => {
                    let end = after.bytes().take_while(|b| is_word(*b)).count();
                    (&after[..end], &after[end..])
                }
            };
            if name.is_empty() {
                literal.push('$');
            } else {
                if !literal.is_empty() {
                    parts.push(Part::Literal(std::mem::take(&mut literal)));
                }
                parts.push(Part::Var(var(name)?));
            }
            rest = next;
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Format::Template(Template(parts)))
    }

    /// Whether lines show headers (then records must carry them).
    pub fn uses_headers(&self) -> bool {
        match self {
            Format::Json => true,
            Format::Template(Template(parts)) => parts
                .iter()
                .any(|p| matches!(p, Part::Var(Var::Http(_) | Var::SentHttp(_)))),
        }
    }

    /// Appends `r`'s line (without the newline) to `out`.
    pub fn write(&self, r: &Record, out: &mut Vec<u8>) {
        match self {
            Format::Json => json(r).write_json(out),
            Format::Template(Template(parts)) => {
                for part in parts {
                    match part {
                        Part::Literal(text) => out.extend_from_slice(text.as_bytes()),
                        Part::Var(v) => value(r, v, out),
                    }
                }
            }
        }
    }
}

/// A `HeaderMap` as the entry serializer reads headers (values that are not UTF-8 shown lossily).
struct Headers<'a>(&'a HeaderMap);

impl HeaderPairs for Headers<'_> {
    fn for_each_name(&self, f: &mut dyn FnMut(&str, &[&str])) {
        let text = |v: &HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
        // One pass: http 1.x's `HeaderMap::iter` yields a name's values one after another (no lookup per
        // name; `json_lines_group_a_repeated_header_name` holds it to that).
        let mut fields = self.0.iter().peekable();
        while let Some((name, first)) = fields.next() {
            if fields.peek().is_some_and(|(next, _)| *next == name) {
                let mut owned = vec![text(first)];
                while let Some((_, v)) = fields.next_if(|(next, _)| *next == name) {
                    owned.push(text(v));
                }
                let refs: Vec<&str> = owned.iter().map(String::as_str).collect();
                f(name.as_str(), &refs);
            } else {
                match first.to_str() {
                    Ok(v) => f(name.as_str(), &[v]),
                    Err(_) => f(name.as_str(), &[&text(first)]),
                }
            }
        }
    }
}

fn json(r: &Record) -> JsonLine<'_> {
    JsonLine {
        record: r,
        request_headers: Headers(&r.request_headers),
        response_headers: Headers(&r.response_headers),
        host: r
            .host
            .as_ref()
            .map(|h| String::from_utf8_lossy(h.as_bytes()))
            .unwrap_or_default(),
    }
}

/// What a JSON line borrows while it is written.
struct JsonLine<'a> {
    record: &'a Record,
    request_headers: Headers<'a>,
    response_headers: Headers<'a>,
    host: std::borrow::Cow<'a, str>,
}

impl JsonLine<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        let r = self.record;
        sluice_log::Entry {
            request: sluice_log::Request {
                method: r.method.as_str(),
                scheme: r.scheme,
                host: &self.host,
                path: r.uri.path(),
                query: r.uri.query(),
                headers: &self.request_headers,
                size: r.request_bytes,
            },
            response: sluice_log::Response {
                status: r.status.as_u16(),
                headers: &self.response_headers,
                size: r.response_bytes,
            },
            upstream: r.upstream,
            latency: r.latency,
            upstream_latency: r.upstream_latency,
            client_ip: r.client.ip(),
            route_id: r.route_id.as_deref().unwrap_or(""),
            service_id: r.service_id.as_deref().unwrap_or(""),
            consumer: r.consumer.as_deref(),
            start_time_ms: r.started_unix_ms,
            complete: r.complete,
        }
        .write_json(out);
    }
}

/// Writes a value as nginx does: `\xHH` for `"`, `\`, control and non-ASCII bytes (spaces stay).
fn escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            let _ = write!(out, "\\x{b:02X}");
        } else {
            out.push(b);
        }
    }
}

fn or_dash(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        Some(v) if !v.is_empty() => escaped(out, v),
        _ => out.push(b'-'),
    }
}

fn secs(out: &mut Vec<u8>, d: std::time::Duration) {
    let _ = write!(out, "{:.3}", d.as_secs_f64());
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn utc(ms: u64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// `$time_local` (`03/Dec/2026:19:40:34 +0000`), formatted once per second per thread: a busy log
/// writes the same second thousands of times.
fn time_local(out: &mut Vec<u8>, unix_secs: u64) {
    thread_local! {
        static LAST: std::cell::RefCell<(u64, Vec<u8>)> = const { std::cell::RefCell::new((u64::MAX, Vec::new())) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != unix_secs {
            let t = utc(unix_secs.saturating_mul(1000));
            let month = MONTHS[usize::from(u8::from(t.month()) - 1)];
            last.1.clear();
            let _ = write!(
                last.1,
                "{:02}/{month}/{}:{:02}:{:02}:{:02} +0000",
                t.day(),
                t.year(),
                t.hour(),
                t.minute(),
                t.second()
            );
            last.0 = unix_secs;
        }
        out.extend_from_slice(&last.1);
    });
}

fn value(r: &Record, v: &Var, out: &mut Vec<u8>) {
    match v {
        Var::RemoteAddr => sluice_log::entry::ip(out, r.client.ip()),
        Var::RemotePort => {
            let _ = write!(out, "{}", r.client.port());
        }
        Var::RemoteUser => or_dash(out, r.consumer.as_deref().map(str::as_bytes)),
        Var::TimeLocal => time_local(out, r.started_unix_ms / 1000),
        Var::TimeIso8601 => {
            let t = utc(r.started_unix_ms);
            let _ = write!(
                out,
                "{}-{:02}-{:02}T{:02}:{:02}:{:02}+00:00",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            );
        }
        Var::Msec => {
            let _ = write!(
                out,
                "{}.{:03}",
                r.started_unix_ms / 1000,
                r.started_unix_ms % 1000
            );
        }
        Var::Request => {
            let _ = write!(out, "{} ", r.method);
            escaped(out, r.uri.path().as_bytes());
            if let Some(q) = r.uri.query() {
                out.push(b'?');
                escaped(out, q.as_bytes());
            }
            let _ = write!(out, " {:?}", r.version);
        }
        Var::RequestMethod => out.extend_from_slice(r.method.as_str().as_bytes()),
        Var::RequestUri => {
            escaped(out, r.uri.path().as_bytes());
            if let Some(q) = r.uri.query() {
                out.push(b'?');
                escaped(out, q.as_bytes());
            }
        }
        Var::Uri => escaped(out, r.uri.path().as_bytes()),
        Var::Args => or_dash(out, r.uri.query().map(str::as_bytes)),
        Var::Scheme => out.extend_from_slice(r.scheme.as_bytes()),
        Var::Host => or_dash(out, r.host.as_ref().map(|h| h.as_bytes())),
        Var::ServerProtocol => {
            let _ = write!(out, "{:?}", r.version);
        }
        Var::Status => {
            let _ = write!(out, "{}", r.status.as_u16());
        }
        Var::BodyBytesSent => {
            let _ = write!(out, "{}", r.response_bytes);
        }
        Var::RequestLength => {
            let _ = write!(out, "{}", r.request_bytes);
        }
        Var::RequestTime => secs(out, r.latency),
        Var::UpstreamAddr => match r.upstream {
            Some(a) => sluice_log::entry::socket_addr(out, a),
            None => out.push(b'-'),
        },
        Var::UpstreamResponseTime => match r.upstream_latency {
            Some(d) => secs(out, d),
            None => out.push(b'-'),
        },
        Var::RouteId => or_dash(out, r.route_id.as_deref().map(str::as_bytes)),
        Var::ServiceId => or_dash(out, r.service_id.as_deref().map(str::as_bytes)),
        Var::RequestCompletion => {
            if r.complete {
                out.extend_from_slice(b"OK");
            }
        }
        Var::Http(name) => or_dash(out, r.request_headers.get(name).map(|v| v.as_bytes())),
        Var::SentHttp(name) => or_dash(out, r.response_headers.get(name).map(|v| v.as_bytes())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderValue, Method, StatusCode, Uri, Version};
    use std::time::Duration;

    fn record() -> Record {
        let mut request_headers = HeaderMap::new();
        request_headers.insert("user-agent", HeaderValue::from_static("curl/8 \"x\""));
        request_headers.insert("host", HeaderValue::from_static("example.com"));
        let mut response_headers = HeaderMap::new();
        response_headers.insert("content-type", HeaderValue::from_static("text/plain"));
        Record {
            started_unix_ms: 971_186_136_250, // 2000-10-10T13:55:36.250Z
            latency: Duration::from_micros(12_345),
            upstream_latency: Some(Duration::from_millis(10)),
            upstream: Some("10.0.0.2:8080".parse().unwrap()),
            client: "192.0.2.7:51000".parse().unwrap(),
            method: Method::GET,
            scheme: "http",
            host: Some(HeaderValue::from_static("example.com")),
            uri: Uri::from_static("/a%20b?x=1"),
            version: Version::HTTP_11,
            request_headers,
            request_bytes: 0,
            status: StatusCode::OK,
            response_headers,
            response_bytes: 42,
            route_id: Some("r1".to_string()),
            service_id: None,
            consumer: None,
            complete: true,
        }
    }

    fn line(format: &str) -> String {
        let f: Format = format.parse().unwrap();
        let mut out = Vec::new();
        f.write(&record(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn combined_is_nginx_combined_with_escaped_values() {
        assert_eq!(
            line("combined"),
            r#"192.0.2.7 - - [10/Oct/2000:13:55:36 +0000] "GET /a%20b?x=1 HTTP/1.1" 200 42 "-" "curl/8 \x22x\x22""#
        );
    }

    #[test]
    fn templates_read_every_kind_of_variable() {
        assert_eq!(
            line("$route_id ${service_id} $upstream_addr $request_time $upstream_response_time $sent_http_content_type $request_completion $time_iso8601 $msec"),
            "r1 - 10.0.0.2:8080 0.012 0.010 text/plain OK 2000-10-10T13:55:36+00:00 971186136.250"
        );
        assert_eq!(line("cost $ and $$ and ${"), "cost $ and $$ and ${");
    }

    #[test]
    fn json_lines_are_apisix_entries() {
        let v: serde_json::Value = serde_json::from_str(&line("json")).unwrap();
        assert_eq!(v["request"]["url"], "http://example.com/a%20b?x=1");
        assert_eq!(v["request"]["headers"]["user-agent"], "curl/8 \"x\"");
        assert_eq!(v["response"]["headers"]["content-type"], "text/plain");
        assert_eq!(v["upstream"], "10.0.0.2:8080");
        assert_eq!(v["route_id"], "r1");
        assert_eq!(v["latency"], 12.345);
    }

    #[test]
    fn json_lines_group_a_repeated_header_name() {
        let mut r = record();
        r.request_headers = HeaderMap::new();
        r.request_headers
            .append("x-a", HeaderValue::from_static("1"));
        r.request_headers
            .append("x-b", HeaderValue::from_static("b"));
        r.request_headers
            .append("x-a", HeaderValue::from_static("2"));
        r.request_headers
            .append("x-c", HeaderValue::from_bytes(b"caf\xe9").unwrap());
        r.request_headers
            .append("x-a", HeaderValue::from_static("3"));
        let mut out = Vec::new();
        Format::Json.write(&r, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches("\"x-a\"").count(), 1, "one key: {text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v["request"]["headers"],
            serde_json::json!({"x-a": ["1", "2", "3"], "x-b": "b", "x-c": "caf\u{fffd}"})
        );
    }

    #[test]
    fn bad_formats_are_refused_at_startup() {
        assert_eq!(
            "$remote_addr $nope".parse::<Format>(),
            Err(FormatError::UnknownVariable("nope".into()))
        );
        assert!(matches!(
            "xml".parse::<Format>(),
            Err(FormatError::NotAFormat(_))
        ));
        assert!(!"$status".parse::<Format>().unwrap().uses_headers());
        assert!("$http_x_id".parse::<Format>().unwrap().uses_headers());
    }
}
