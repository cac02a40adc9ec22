//! `response-rewrite`: changes the response the client gets — `status_code`, `body` (or `body_base64`),
//! `headers` — optionally only when the `vars` condition holds, with APISIX's fields and messages.
//!
//! Phases as in APISIX (priority 899): `header_filter` evaluates `vars` (response variables such as
//! `status` and `upstream_http_*` included), sets the status and headers, and when `body` is set drops the
//! headers that described the old body (`Content-Length`, `Content-Encoding`, `ETag`, `Last-Modified`).
//! `body_filter` then sends the configured body in place of the first chunk and empties every later one,
//! as APISIX's `ngx.arg[1] = body; ngx.arg[2] = true` does. Replacing the body there rather than answering
//! from `header_filter` keeps lower-priority plugins' `header_filter` running, as in APISIX.
//!
//! Differences: `headers.add` accepts values that contain `:` (APISIX's pattern refuses them, so every
//! config it accepts works here); `filters` (regex edits of the upstream body) is refused as unsupported.

use base64::Engine as _;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::Value;
use sluice_builtin_support::compiled::{Compile, Compiled};
use sluice_builtin_support::header_ops::{
    header_entry, non_empty_array, Entries, HeaderOps, HeaderSink,
};
use sluice_builtin_support::ngx::BASE64;
use sluice_builtin_support::schema::{field, invalid, within};
use sluice_plugin_sdk::vars::{self, Expr, RequestVars};
use sluice_plugin_sdk::{context, export_plugin, log, response, Decision, FieldError, Plugin};

/// Per-request state of the body replacement, kept in the request context between `header_filter` and
/// the `body_filter` calls: absent (vars did not match: pass the body through), pending, or sent.
const BODY_KEY: &str = "response-rewrite.body";
const BODY_PENDING: &str = "pending";
const BODY_SENT: &str = "sent";

/// The headers that describe the upstream's body, wrong once it is replaced (APISIX's
/// `clear_header_as_body_modified`).
const BODY_HEADERS: [&str; 4] = [
    "content-length",
    "content-encoding",
    "etag",
    "last-modified",
];

/// The config as written; [`Rules::compile`] checks it and compiles `vars`, templates and the body once.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    status_code: Option<i64>,
    body: Option<String>,
    #[serde(default)]
    body_base64: bool,
    headers: Option<Value>,
    vars: Option<Value>,
    filters: Option<IgnoredAny>,
}

/// A parsed config: the rules compiled once, or the APISIX-style message `validate` returns.
pub type Config = Compiled<Rules>;

/// What the phases use, compiled from [`Raw`].
pub struct Rules {
    status: Option<u16>,
    body: Option<Vec<u8>>,
    headers: Option<HeaderOps>,
    vars: Option<Expr>,
}

/// `headers.add` here is APISIX's array of `"Name: value"` lines.
fn parse_add_lines(v: &Value) -> Result<Entries, String> {
    non_empty_array(v)?
        .iter()
        .map(|line| {
            let text = line.as_str().ok_or("wrong type: expected string")?;
            let (name, value) = text
                .split_once(':')
                .ok_or_else(|| format!("{text:?} is not of the form \"Name: value\""))?;
            let (name, template) = header_entry(name.trim(), value.trim_start())?;
            Ok((name, vec![template]))
        })
        .collect()
}

impl Compile for Rules {
    type Raw = Raw;

    fn compile(raw: Raw) -> Result<Self, String> {
        if raw.filters.is_some() {
            return Err(invalid(
                "filters",
                "not supported: rewrite the whole body with \"body\" instead",
            ));
        }
        if let Some(code) = raw.status_code {
            field("status_code", within(code, Some(200), Some(598)))?;
        }
        let status = raw.status_code.and_then(|c| u16::try_from(c).ok());
        let body = match (raw.body, raw.body_base64) {
            (Some(text), false) => Some(text.into_bytes()),
            (Some(text), true) if !text.is_empty() => Some(
                BASE64
                    .decode(text.as_bytes())
                    .map_err(|_| "invalid base64 content".to_string())?,
            ),
            (_, true) => return Err("invalid base64 content".to_string()),
            (None, false) => None,
        };
        let headers = raw
            .headers
            .as_ref()
            .map(|h| HeaderOps::parse(h, parse_add_lines))
            .transpose()
            .map_err(|e| invalid("headers", e))?;
        let vars = raw
            .vars
            .as_ref()
            .map(Expr::compile)
            .transpose()
            .map_err(|e| format!("failed to validate the 'vars' expression: {e}"))?;
        Ok(Rules {
            status,
            body,
            headers,
            vars,
        })
    }
}

fn report<T>(what: &str, result: Result<T, FieldError>) {
    if let Err(e) = result {
        log::warn(&format!("{what} not rewritten: {e}"));
    }
}

/// The plugin.
pub struct ResponseRewrite;

#[export_plugin]
impl Plugin for ResponseRewrite {
    type Config = Config;
    const NAME: &'static str = "response-rewrite";
    const PRIORITY: i32 = 899;

    fn validate(config: &Config) -> Result<(), String> {
        config.validate()
    }

    fn header_filter(config: &Config) -> Decision {
        // Unreachable with an invalid config: `configure` refuses what `validate` refuses.
        let Some(rules) = config.rules() else {
            return Decision::Continue;
        };
        if rules.vars.as_ref().is_some_and(|e| !e.eval(&RequestVars)) {
            return Decision::Continue;
        }
        if let Some(status) = rules.status {
            report("status", response::set_status(status));
        }
        if rules.body.is_some() {
            for name in BODY_HEADERS {
                report(name, response::remove_header(name));
            }
            context::set(BODY_KEY, BODY_PENDING);
        }
        if let Some(headers) = &rules.headers {
            headers.apply(&HeaderSink::CLIENT_RESPONSE, vars::resolve);
        }
        Decision::Continue
    }

    fn body_filter(config: &Config) {
        let Some(Rules {
            body: Some(body), ..
        }) = config.rules()
        else {
            return;
        };
        let replacement: &[u8] = match context::get(BODY_KEY).as_deref() {
            Some(BODY_PENDING) => {
                context::set(BODY_KEY, BODY_SENT);
                body
            }
            Some(BODY_SENT) => &[],
            _ => return,
        };
        report("body", response::set_body_chunk(replacement));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_builtin_support::testing::{configure, header_values, refused};
    use sluice_plugin_sdk::testing::{TestConfig, TestHost};
    use sluice_plugin_sdk::Phase;

    /// A host holding an upstream response (status, headers) and the parsed config.
    fn upstream(
        config: &str,
        status: u16,
        headers: &[(&str, &str)],
    ) -> (TestHost, TestConfig<ResponseRewrite>) {
        let host = TestHost::new();
        host.set_response(status, headers);
        let cfg = configure(&host, config);
        (host, cfg)
    }

    /// Runs `header_filter`, then `body_filter` over `chunks` (the last marked end of stream); returns
    /// what the client receives of the body.
    fn respond(host: &TestHost, cfg: &TestConfig<ResponseRewrite>, chunks: &[&str]) -> String {
        assert_eq!(
            host.header_filter::<ResponseRewrite>(cfg),
            Decision::Continue
        );
        let mut body = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            let last = i + 1 == chunks.len();
            body.extend(host.body_filter::<ResponseRewrite>(cfg, chunk.as_bytes(), last));
        }
        String::from_utf8(body).expect("utf-8")
    }

    /// A plugin running after response-rewrite that copies every response header into the context:
    /// `TestHost` reads response headers one value at a time, and `add` is about repeated ones.
    struct Probe;

    impl Plugin for Probe {
        type Config = IgnoredAny;
        fn header_filter(_: &IgnoredAny) -> Decision {
            let lines: Vec<String> = response::headers()
                .iter()
                .map(|(n, v)| format!("{n}: {v}"))
                .collect();
            context::set("probe", &lines.join("\n"));
            Decision::Continue
        }
    }

    fn response_headers(host: &TestHost) -> Vec<(String, String)> {
        let probe = host.configure::<Probe>("{}").expect("valid");
        host.header_filter::<Probe>(&probe);
        host.context("probe")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once(": "))
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn phases_and_priority_are_apisix_ones() {
        let phases = TestHost::new().phases::<ResponseRewrite>();
        assert_eq!(phases, &[Phase::HeaderFilter, Phase::BodyFilter]);
        assert_eq!(ResponseRewrite::PRIORITY, 899);
    }

    #[test]
    fn status_and_body_replace_the_upstream_ones() {
        let (host, cfg) = upstream(
            r#"{"status_code": 203, "body": "{\"replaced\":true}"}"#,
            200,
            &[
                ("content-length", "11"),
                ("etag", "\"v1\""),
                ("last-modified", "Mon, 01 Jan 2024 00:00:00 GMT"),
                ("content-encoding", "gzip"),
                ("content-type", "application/json"),
            ],
        );
        let body = respond(&host, &cfg, &["first chunk", "second", ""]);
        assert_eq!(body, r#"{"replaced":true}"#);
        assert_eq!(host.response_status(), 203);
        for gone in BODY_HEADERS {
            assert_eq!(host.response_header(gone), None, "{gone}");
        }
        assert_eq!(
            host.response_header("content-type").as_deref(),
            Some("application/json")
        );
    }

    #[test]
    fn body_base64_is_decoded_once_at_config_time() {
        let (host, cfg) = upstream(
            r#"{"body": "aGVsbG8gd29ybGQ=", "body_base64": true}"#,
            200,
            &[],
        );
        assert_eq!(respond(&host, &cfg, &["x"]), "hello world");
        let (host, cfg) = upstream(r#"{"body": "aGk", "body_base64": true}"#, 200, &[]);
        assert_eq!(respond(&host, &cfg, &["x"]), "hi", "padding is optional");
    }

    #[test]
    fn without_body_the_upstream_body_passes_untouched() {
        let (host, cfg) = upstream(r#"{"status_code": 202}"#, 200, &[("content-length", "5")]);
        assert_eq!(respond(&host, &cfg, &["he", "llo"]), "hello");
        assert_eq!(host.response_header("content-length").as_deref(), Some("5"));
    }

    #[test]
    fn vars_gate_every_rewrite_on_response_variables() {
        let config = r#"{"vars": [["status", "==", 500]], "status_code": 503, "body": "down",
                         "headers": {"set": {"x-rewritten": "yes"}}}"#;
        let (host, cfg) = upstream(config, 500, &[]);
        assert_eq!(respond(&host, &cfg, &["boom"]), "down");
        assert_eq!(host.response_status(), 503);
        assert_eq!(host.response_header("x-rewritten").as_deref(), Some("yes"));

        let (host, cfg) = upstream(config, 200, &[]);
        assert_eq!(respond(&host, &cfg, &["fine"]), "fine");
        assert_eq!(host.response_status(), 200);
        assert_eq!(host.response_header("x-rewritten"), None);
    }

    #[test]
    fn headers_add_remove_set_with_variables() {
        let (host, cfg) = upstream(
            r#"{"headers": {
                "add": ["Set-Cookie: a=1; Path=/", "x-client: $remote_addr"],
                "remove": ["server"],
                "set": {"x-upstream-said": "$upstream_http_x_from", "x-code": 7, "cache-control": ""}
            }}"#,
            200,
            &[
                ("set-cookie", "s=0"),
                ("server", "upstream/1.0"),
                ("x-from", "origin-a"),
                ("cache-control", "max-age=60"),
            ],
        );
        respond(&host, &cfg, &[""]);
        let headers = response_headers(&host);
        let values = |name| header_values(&headers, name);
        assert_eq!(values("set-cookie"), ["s=0", "a=1; Path=/"]);
        assert_eq!(values("x-client"), ["127.0.0.1"]);
        assert!(values("server").is_empty());
        assert_eq!(values("x-upstream-said"), ["origin-a"]);
        assert_eq!(values("x-code"), ["7"]);
        assert!(
            values("cache-control").is_empty(),
            "a set that renders empty removes"
        );
    }

    #[test]
    fn flat_headers_overwrite_and_an_empty_value_removes() {
        let (host, cfg) = upstream(
            r#"{"headers": {"X-Server": "gateway", "x-powered-by": ""}}"#,
            200,
            &[("x-server", "origin"), ("x-powered-by", "php")],
        );
        respond(&host, &cfg, &[""]);
        assert_eq!(host.response_header("x-server").as_deref(), Some("gateway"));
        assert_eq!(host.response_header("x-powered-by"), None);
    }

    #[test]
    fn bad_configs_are_refused_with_apisix_messages() {
        for (config, message) in [
            (
                r#"{"status_code": 100}"#,
                r#"property "status_code" validation failed: expected 100 to be at least 200"#,
            ),
            (
                r#"{"status_code": 600}"#,
                r#"property "status_code" validation failed: expected 600 to be at most 598"#,
            ),
            (r#"{"body_base64": true}"#, "invalid base64 content"),
            (
                r#"{"body": "", "body_base64": true}"#,
                "invalid base64 content",
            ),
            (
                r#"{"body": "not base64!", "body_base64": true}"#,
                "invalid base64 content",
            ),
            (
                r#"{"vars": [["status", "=~", 200]]}"#,
                r#"failed to validate the 'vars' expression: vars[0]: unknown operator "=~""#,
            ),
            (
                r#"{"headers": {"add": ["no-colon"]}}"#,
                r#"property "headers" validation failed: add: "no-colon" is not of the form "Name: value""#,
            ),
            (
                r#"{"headers": {"add": ["bad name: 1"]}}"#,
                r#"add: invalid field character in header "bad name""#,
            ),
            (
                r#"{"headers": {"set": {"x": ["a", {}]}}}"#,
                r#"set: invalid type as header value of "x""#,
            ),
            (
                r#"{"filters": [{"regex": "a", "replace": "b"}]}"#,
                r#"property "filters" validation failed: not supported"#,
            ),
            (r#"{"status_code": "200"}"#, "invalid type"),
            (r#"{"status": 200}"#, "unknown field `status`"),
        ] {
            let err = refused::<ResponseRewrite>(config);
            assert!(err.contains(message), "{config}: {err}");
        }
    }
}
