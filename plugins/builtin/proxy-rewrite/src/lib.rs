//! `proxy-rewrite`: changes what the upstream receives — uri (`uri` or `regex_uri`), `Host`, method and
//! headers — with APISIX's fields, defaults and messages, so an APISIX route config works unchanged.
//!
//! Runs in `rewrite` at APISIX's priority 1008, so auth plugins (access phase) see the rewritten request, as
//! in APISIX. Differences, all deliberate:
//! * `host` sets the `Host` request header; the gateway sends a plugin-set `Host` upstream instead of the one
//!   `pass_host` would choose (APISIX sets `upstream_host`, same effect).
//! * Regexes are Rust `regex` syntax (no look-around or back-references), compiled once with the config.
//! * The gateway normalises the path before routing, so `use_real_request_uri_unsafe: true` is refused
//!   rather than silently ignored.
//! * The new path is percent-encoded where a byte may not appear in a path; existing `%XX` escapes are
//!   kept (the gateway's `uri` is the raw path, where APISIX re-encodes a decoded one).

use regex::Regex;
use serde::Deserialize;
use serde_json::Value;
use sluice_builtin_support::compiled::{Compile, Compiled};
use sluice_builtin_support::header_ops::{self, HeaderOps, HeaderSink};
use sluice_builtin_support::reply::{json_object, json_response};
use sluice_builtin_support::schema::{field, invalid, length_within, regex_error};
use sluice_builtin_support::template::Template;
use sluice_plugin_sdk::{export_plugin, log, request, Decision, FieldError, Method, Plugin};

/// Methods APISIX's schema allows for `method`.
const METHODS: [&str; 14] = [
    "GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "MKCOL", "COPY", "MOVE", "PROPFIND", "LOCK",
    "UNLOCK", "PATCH", "TRACE",
];

/// The config as written; [`Rules::compile`] checks it and compiles regexes and templates once.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    uri: Option<String>,
    regex_uri: Option<Vec<String>>,
    host: Option<String>,
    method: Option<String>,
    headers: Option<Value>,
    use_real_request_uri_unsafe: Option<bool>,
}

/// A parsed config: the rules compiled once, or the APISIX-style message `validate` returns.
pub type Config = Compiled<Rules>;

/// What `rewrite` uses, compiled from [`Raw`].
pub struct Rules {
    uri: Option<Template>,
    regex_uri: Vec<(Regex, Replacement)>,
    host: Option<String>,
    method: Option<Method>,
    headers: Option<HeaderOps>,
}

impl Compile for Rules {
    type Raw = Raw;

    fn compile(raw: Raw) -> Result<Self, String> {
        let given = [
            raw.uri.is_some(),
            raw.regex_uri.is_some(),
            raw.host.is_some(),
            raw.method.is_some(),
            raw.headers.is_some(),
            raw.use_real_request_uri_unsafe.is_some(),
        ];
        if !given.contains(&true) {
            return Err("expect object to have at least 1 properties".to_string());
        }
        if raw.use_real_request_uri_unsafe == Some(true) {
            return Err(invalid(
                "use_real_request_uri_unsafe",
                "not supported: the gateway normalises the path before routing, so the raw request uri is not kept",
            ));
        }
        let uri = raw.uri.as_deref().map(check_uri).transpose()?;
        let regex_uri = raw
            .regex_uri
            .as_deref()
            .map(compile_regex_uri)
            .transpose()?
            .unwrap_or_default();
        if let Some(host) = &raw.host {
            if !valid_host(host) {
                return Err(invalid(
                    "host",
                    format!(
                        r#"failed to match pattern "^[0-9a-zA-Z-.]+(:\d{{1,5}})?$" with "{host}""#
                    ),
                ));
            }
        }
        let method = match raw.method.as_deref() {
            Some(m) if METHODS.contains(&m) => Some(Method::parse(m)),
            Some(_) => {
                return Err(invalid(
                    "method",
                    format!("matches none of the enum values ({})", METHODS.join(", ")),
                ))
            }
            None => None,
        };
        let headers = raw
            .headers
            .as_ref()
            .map(|h| HeaderOps::parse(h, header_ops::parse_object))
            .transpose()
            .map_err(|e| invalid("headers", e))?;
        Ok(Rules {
            uri,
            regex_uri,
            host: raw.host,
            method,
            headers,
        })
    }
}

fn check_uri(uri: &str) -> Result<Template, String> {
    field("uri", length_within(uri, 1, Some(4096)))?;
    if !uri.starts_with('/') {
        return Err(invalid(
            "uri",
            format!(r#"failed to match pattern "^\/.*" with "{uri}""#),
        ));
    }
    Ok(Template::parse(uri))
}

/// `^[0-9a-zA-Z-.]+(:\d{1,5})?$`, APISIX's pattern for `host`.
fn valid_host(host: &str) -> bool {
    let (name, port) = match host.split_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && port.is_none_or(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
}

fn compile_regex_uri(list: &[String]) -> Result<Vec<(Regex, Replacement)>, String> {
    if list.len() < 2 {
        return Err(invalid(
            "regex_uri",
            format!("expect array to have at least 2 items, got {}", list.len()),
        ));
    }
    if !list.len().is_multiple_of(2) {
        return Err("The length of regex_uri should be an even number".to_string());
    }
    list.chunks_exact(2)
        .map(|pair| {
            let (pattern, template) = (&pair[0], &pair[1]);
            let fail = |e: String| format!("invalid regex_uri({pattern}, {template}): {e}");
            let regex = Regex::new(pattern).map_err(|e| fail(regex_error(&e)))?;
            let replacement = Replacement::parse(template, regex.captures_len()).map_err(fail)?;
            Ok((regex, replacement))
        })
        .collect()
}

/// A `regex_uri` replacement in `ngx.re.sub` syntax: `$N` or `${N}` is capture group N (`$0` the whole
/// match), `$$` a literal `$`. Nothing else may follow a `$`, as in ngx, so a typo fails at admin time.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Replacement(Vec<Piece>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Group(usize),
}

impl Replacement {
    fn parse(src: &str, groups: usize) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut chars = src.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '$' {
                text.push(c);
                continue;
            }
            let braced = chars.next_if_eq(&'{').is_some();
            if !braced && chars.next_if_eq(&'$').is_some() {
                text.push('$');
                continue;
            }
            let mut digits = String::new();
            while let Some(d) = chars.next_if(char::is_ascii_digit) {
                digits.push(d);
            }
            if digits.is_empty() || (braced && chars.next_if_eq(&'}').is_none()) {
                return Err(format!("invalid capturing variable name in {src:?}"));
            }
            let group = digits
                .parse::<usize>()
                .ok()
                .filter(|g| *g < groups)
                .ok_or_else(|| format!("capture group ${digits} does not exist"))?;
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(Piece::Group(group));
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Replacement(pieces))
    }

    fn expand(&self, captures: &[Option<String>]) -> String {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Group(g) => {
                    if let Some(Some(v)) = captures.get(*g) {
                        out.push_str(v);
                    }
                }
            }
        }
        out
    }
}

/// The first `regex_uri` pair whose pattern matches `path`: the path with the match replaced (like
/// `ngx.re.sub`, first match only) and the capture groups, which header values may use as `$1`...
fn regex_rewrite(
    rules: &[(Regex, Replacement)],
    path: &str,
) -> Option<(String, Vec<Option<String>>)> {
    rules.iter().find_map(|(regex, replacement)| {
        let caps = regex.captures(path)?;
        let whole = caps.get(0)?;
        let groups: Vec<Option<String>> = caps
            .iter()
            .map(|m| m.map(|m| m.as_str().to_string()))
            .collect();
        let rewritten = format!(
            "{}{}{}",
            &path[..whole.start()],
            replacement.expand(&groups),
            &path[whole.end()..]
        );
        Some((rewritten, groups))
    })
}

/// Percent-encodes the bytes that may not appear in a path (or, with `query`, in a query). `%` is kept:
/// the path the gateway hands plugins is already encoded, so existing escapes must not be doubled.
fn encode(s: &str, query: bool) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let allowed = |b: u8| {
        b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/%".contains(&b) || (query && b == b'?')
    };
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if allowed(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    out
}

/// Sends `uri` upstream: the part before the first `?` becomes the path; a query part there replaces the
/// query, with the client's own arguments appended after `&` (APISIX keeps them); without `?` the client's
/// query stays as it was.
fn set_upstream_uri(uri: &str) -> Result<(), FieldError> {
    let (path, query) = match uri.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (uri, None),
    };
    request::set_path(&encode(path, false))?;
    if let Some(new) = query {
        let joined = match request::query() {
            Some(args) if !args.is_empty() && !new.is_empty() => format!("{new}&{args}"),
            Some(args) if new.is_empty() => args,
            _ => new.to_string(),
        };
        let joined = encode(&joined, true);
        request::set_query((!joined.is_empty()).then_some(joined.as_str()))?;
    }
    Ok(())
}

/// Template variables: `$1`... are `regex_uri` capture groups when a pattern matched; anything else is an
/// APISIX variable.
fn resolve(name: &str, groups: &[Option<String>]) -> Option<String> {
    if !groups.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
        return name
            .parse::<usize>()
            .ok()
            .and_then(|g| groups.get(g).cloned().flatten());
    }
    request::var(name)
}

/// The 500 APISIX answers when the rewritten uri cannot be used.
fn uri_failure(uri: &str, e: FieldError) -> Decision {
    let message = format!("failed to rewrite the uri to {uri:?}: {e}");
    log::error(&message);
    Decision::Respond(json_response(
        500,
        json_object("error_msg", &message) + "\n",
    ))
}

/// The plugin.
pub struct ProxyRewrite;

#[export_plugin]
impl Plugin for ProxyRewrite {
    type Config = Config;
    const NAME: &'static str = "proxy-rewrite";
    const PRIORITY: i32 = 1008;

    fn validate(config: &Config) -> Result<(), String> {
        config.validate()
    }

    fn rewrite(config: &Config) -> Decision {
        // Unreachable with an invalid config: `configure` refuses what `validate` refuses.
        let Some(rules) = config.rules() else {
            return Decision::Continue;
        };
        if let Some(host) = &rules.host {
            if let Err(e) = request::set_header("host", host) {
                log::warn(&format!("host {host:?} not set: {e}"));
            }
        }
        let mut groups = Vec::new();
        let new_uri = match &rules.uri {
            // A `?` inside a variable's value is data, not the start of the query.
            Some(template) => {
                Some(template.render(|name| request::var(name).map(|v| v.replace('?', "%3F"))))
            }
            None => regex_rewrite(&rules.regex_uri, &request::path()).map(|(uri, caps)| {
                groups = caps;
                uri
            }),
        };
        if let Some(uri) = new_uri {
            if let Err(e) = set_upstream_uri(&uri) {
                return uri_failure(&uri, e);
            }
        }
        if let Some(headers) = &rules.headers {
            headers.apply(&HeaderSink::UPSTREAM_REQUEST, |name| resolve(name, &groups));
        }
        if let Some(method) = &rules.method {
            if let Err(e) = request::set_method(method.clone()) {
                log::warn(&format!("method {method} not set: {e}"));
            }
        }
        Decision::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_builtin_support::testing::{answer, configure, header_values, json_body, refused};
    use sluice_plugin_sdk::testing::TestHost;
    use sluice_plugin_sdk::Phase;

    fn rewrite(host: &TestHost, config: &str) -> Decision {
        host.rewrite(&configure::<ProxyRewrite>(host, config))
    }

    #[test]
    fn runs_in_rewrite_only_at_apisix_priority() {
        let host = TestHost::new();
        assert_eq!(host.phases::<ProxyRewrite>(), &[Phase::Rewrite]);
        assert_eq!(ProxyRewrite::PRIORITY, 1008);
    }

    #[test]
    fn uri_replaces_the_path_and_keeps_the_client_query() {
        let host = TestHost::new();
        host.set_path("/old/path?a=1");
        assert_eq!(rewrite(&host, r#"{"uri": "/new"}"#), Decision::Continue);
        let req = host.request();
        assert_eq!(
            (req.path.as_str(), req.query.as_deref()),
            ("/new", Some("a=1"))
        );
    }

    #[test]
    fn uri_interpolates_variables_and_its_own_query_goes_first() {
        let host = TestHost::new();
        host.set_path("/p?name=bob&x=1");
        rewrite(
            &host,
            r#"{"uri": "/users/$arg_name?via=${request_method}"}"#,
        );
        let req = host.request();
        assert_eq!(req.path, "/users/bob");
        assert_eq!(req.query.as_deref(), Some("via=GET&name=bob&x=1"));
    }

    #[test]
    fn a_question_mark_inside_a_variable_stays_in_the_path() {
        let host = TestHost::new();
        host.set_path("/p").set_request_header("x-target", "a?b");
        rewrite(&host, r#"{"uri": "/t/$http_x_target"}"#);
        let req = host.request();
        assert_eq!((req.path.as_str(), req.query), ("/t/a%3Fb", None));
    }

    #[test]
    fn unsafe_path_bytes_are_percent_encoded_but_escapes_are_kept() {
        let host = TestHost::new();
        host.set_path("/p").set_request_header("x-name", "a b\"c");
        rewrite(&host, r#"{"uri": "/n/$http_x_name/%41"}"#);
        assert_eq!(host.request().path, "/n/a%20b%22c/%41");
    }

    #[test]
    fn regex_uri_uses_the_first_matching_pair_and_its_groups() {
        let config =
            r#"{"regex_uri": ["^/api/(\\w+)/(\\d+)$", "/v2/$1/${2}", "^/other/(.*)", "/o/$1"]}"#;
        let host = TestHost::new();
        host.set_path("/api/users/42?q=1");
        rewrite(&host, config);
        let req = host.request();
        assert_eq!(
            (req.path.as_str(), req.query.as_deref()),
            ("/v2/users/42", Some("q=1"))
        );

        let host = TestHost::new();
        host.set_path("/other/x/y");
        rewrite(&host, config);
        assert_eq!(host.request().path, "/o/x/y");
    }

    #[test]
    fn regex_uri_without_a_match_leaves_the_path_alone() {
        let host = TestHost::new();
        host.set_path("/nothing/here");
        rewrite(&host, r#"{"regex_uri": ["^/api/(.*)", "/$1"]}"#);
        assert_eq!(host.request().path, "/nothing/here");
    }

    #[test]
    fn regex_uri_replaces_only_the_matched_part_and_keeps_dollar_escapes() {
        let host = TestHost::new();
        host.set_path("/a/b/a");
        rewrite(&host, r#"{"regex_uri": ["a", "$$x"]}"#);
        assert_eq!(host.request().path, "/$x/b/a");
    }

    #[test]
    fn uri_wins_over_regex_uri() {
        let host = TestHost::new();
        host.set_path("/api/x");
        rewrite(
            &host,
            r#"{"uri": "/fixed", "regex_uri": ["^/api/(.*)", "/r/$1"]}"#,
        );
        assert_eq!(host.request().path, "/fixed");
    }

    #[test]
    fn a_rewrite_to_an_unusable_path_answers_500_with_the_reason() {
        let host = TestHost::new();
        host.set_path("/api/x");
        let resp = answer(rewrite(&host, r#"{"regex_uri": ["^/api/(.*)", "$1"]}"#));
        assert_eq!(resp.status, 500);
        assert_eq!(
            json_body(&resp)["error_msg"],
            "failed to rewrite the uri to \"x\": invalid value"
        );
        assert_eq!(host.request().path, "/api/x");
    }

    #[test]
    fn host_sets_the_host_header_and_method_the_method() {
        let host = TestHost::new();
        host.set_request_header("host", "client.example");
        rewrite(
            &host,
            r#"{"host": "backend.internal:8080", "method": "POST"}"#,
        );
        assert_eq!(
            host.request_header("host").as_deref(),
            Some("backend.internal:8080")
        );
        assert_eq!(host.request().method, Method::Post);
    }

    #[test]
    fn headers_add_then_remove_then_set_with_variables_and_groups() {
        let host = TestHost::new();
        host.set_path("/u/7?k=v")
            .set_request_header("x-keep", "old")
            .set_request_header("x-drop", "1")
            .set_request_header("x-over", "old");
        rewrite(
            &host,
            r#"{"regex_uri": ["^/u/(\\d+)", "/users/$1"],
                "headers": {
                    "add": {"x-keep": "new", "x-multi": ["a", 1]},
                    "remove": ["x-drop"],
                    "set": {"x-over": "id=$1 k=$arg_k", "x-empty": "$missing"}
                }}"#,
        );
        let headers = host.request().headers;
        let values = |name| header_values(&headers, name);
        assert_eq!(values("x-keep"), ["old", "new"]);
        assert_eq!(values("x-multi"), ["a", "1"]);
        assert!(values("x-drop").is_empty());
        assert_eq!(values("x-over"), ["id=7 k=v"]);
        assert!(
            values("x-empty").is_empty(),
            "a set that renders empty removes"
        );
    }

    #[test]
    fn flat_headers_set_and_an_empty_value_removes() {
        let host = TestHost::new();
        host.set_request_header("x-gone", "1");
        rewrite(
            &host,
            r#"{"headers": {"X-Api-Version": "v2", "x-gone": "", "x-n": 5}}"#,
        );
        assert_eq!(host.request_header("x-api-version").as_deref(), Some("v2"));
        assert_eq!(host.request_header("x-n").as_deref(), Some("5"));
        assert_eq!(host.request_header("x-gone"), None);
    }

    #[test]
    fn a_variable_that_would_break_a_header_is_skipped_not_fatal() {
        let host = TestHost::new();
        host.set_var("evil", "a\r\nx-injected: 1");
        let decision = rewrite(&host, r#"{"headers": {"set": {"x-v": "$evil"}}}"#);
        assert_eq!(decision, Decision::Continue);
        assert_eq!(host.request_header("x-v"), None);
        assert!(host.logs().iter().any(|(_, m)| m.contains("x-v")));
    }

    #[test]
    fn bad_configs_are_refused_with_apisix_messages() {
        for (config, message) in [
            ("{}", "expect object to have at least 1 properties"),
            (
                r#"{"uri": "relative"}"#,
                r#"property "uri" validation failed: failed to match pattern "^\/.*" with "relative""#,
            ),
            (
                r#"{"uri": ""}"#,
                r#"property "uri" validation failed: string too short, expected at least 1, got 0"#,
            ),
            (
                r#"{"regex_uri": ["^/a"]}"#,
                r#"property "regex_uri" validation failed: expect array to have at least 2 items, got 1"#,
            ),
            (
                r#"{"regex_uri": ["^/a", "/b", "^/c"]}"#,
                "The length of regex_uri should be an even number",
            ),
            (
                r#"{"regex_uri": ["^/(a", "/b"]}"#,
                "invalid regex_uri(^/(a, /b): unclosed group",
            ),
            (
                r#"{"regex_uri": ["^/(a)", "/$2"]}"#,
                "invalid regex_uri(^/(a), /$2): capture group $2 does not exist",
            ),
            (
                r#"{"regex_uri": ["^/(a)", "/$arg_x"]}"#,
                r#"invalid regex_uri(^/(a), /$arg_x): invalid capturing variable name in "/$arg_x""#,
            ),
            (
                r#"{"regex_uri": ["^/(a)", "/${1"]}"#,
                r#"invalid capturing variable name in "/${1""#,
            ),
            (
                r#"{"host": "bad host"}"#,
                r#"property "host" validation failed: failed to match pattern"#,
            ),
            (r#"{"host": "a.com:123456"}"#, r#"property "host""#),
            (
                r#"{"method": "FETCH"}"#,
                r#"property "method" validation failed: matches none of the enum values"#,
            ),
            (
                r#"{"headers": {"set": {"bad name": "1"}}}"#,
                r#"property "headers" validation failed: set: invalid field character in header "bad name""#,
            ),
            (
                r#"{"use_real_request_uri_unsafe": true}"#,
                r#"property "use_real_request_uri_unsafe" validation failed: not supported"#,
            ),
            (r#"{"scheme": "https"}"#, "unknown field `scheme`"),
            (r#"{"uri": 5}"#, "invalid type"),
        ] {
            let err = refused::<ProxyRewrite>(config);
            assert!(err.contains(message), "{config}: {err}");
        }
    }

    #[test]
    fn replacement_templates_parse_like_ngx_re_sub() {
        assert_eq!(
            Replacement::parse("/x$1-${0}$$", 2),
            Ok(Replacement(vec![
                Piece::Text("/x".into()),
                Piece::Group(1),
                Piece::Text("-".into()),
                Piece::Group(0),
                Piece::Text("$".into()),
            ]))
        );
        assert!(Replacement::parse("/$", 1).is_err());
    }

    #[test]
    fn hosts_follow_apisix_pattern() {
        assert!(valid_host("a-b.example.com"));
        assert!(valid_host("10.0.0.1:80"));
        assert!(!valid_host(""));
        assert!(!valid_host("a:"));
        assert!(!valid_host("a_b"));
    }
}
