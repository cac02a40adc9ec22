//! `cors`: Cross-Origin Resource Sharing with APISIX's fields and defaults. Preflight requests are answered
//! at the gateway; the `Access-Control-*` headers are added to every response whose `Origin` is allowed.
//!
//! Phases as in APISIX (priority 4000): `rewrite` notes the client's `Origin` (a later plugin may change the
//! header) and answers any `OPTIONS` request with an empty 200 without contacting the upstream;
//! `header_filter` then adds the headers — to that 200 as well, since response phases run for plugin answers.
//!
//! Origin rules: `allow_origins` is `*` (any), `**` (echo the request's origin, even with credentials),
//! `null`, or a comma-separated list of `scheme://host[:port]` matched exactly. `allow_origins_by_regex`
//! matches the origin against regexes (Rust syntax, unanchored like APISIX's `ngx.re.find`). As APISIX
//! documents, when it is set and `allow_origins` is left at its default only the regexes decide; when both
//! are written out, either may allow the origin. `allow_origins_by_metadata` is refused: the gateway has no
//! plugin metadata.

use regex::Regex;
use serde::Deserialize;
use sluice_builtin_support::compiled::{Compile, Compiled};
use sluice_builtin_support::schema::{field, invalid, not_empty_array, regex_error};
use sluice_plugin_sdk::{
    context, export_plugin, log, request, response, Decision, Method, Plugin, Response,
};

/// What `allow_methods: "**"` expands to.
const ALL_METHODS: &str = "GET,POST,PUT,DELETE,PATCH,HEAD,OPTIONS,CONNECT,TRACE";
/// Where `rewrite` leaves the client's `Origin` for `header_filter`.
const ORIGIN_KEY: &str = "cors.origin";
const ORIGINS_PATTERN: &str = r"^(\*|\*\*|null|\w+://[^,]+(,\w+://[^,]+)*)$";

/// The config as written; [`Rules::compile`] checks it and compiles the regexes once.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    allow_origins: Option<String>,
    #[serde(default = "star")]
    allow_methods: String,
    #[serde(default = "star")]
    allow_headers: String,
    expose_headers: Option<String>,
    #[serde(default = "default_max_age")]
    max_age: i64,
    #[serde(default)]
    allow_credential: bool,
    allow_origins_by_regex: Option<Vec<String>>,
    allow_origins_by_metadata: Option<serde::de::IgnoredAny>,
}

fn star() -> String {
    "*".to_string()
}

fn default_max_age() -> i64 {
    5
}

/// A parsed config: the rules compiled once, or the APISIX-style message `validate` returns.
pub type Config = Compiled<Rules>;

enum Origins {
    /// `*`: any origin, answered with `*`.
    Any,
    /// `**`: the request's origin echoed back.
    Echo,
    /// Exact origins (`null` included).
    List(Vec<String>),
    /// Left at the default while regexes are set: only the regexes decide.
    Unset,
}

/// What the phases use, compiled from [`Raw`].
pub struct Rules {
    origins: Origins,
    regexes: Vec<Regex>,
    allow_methods: String,
    allow_headers: String,
    expose_headers: Option<String>,
    max_age: String,
    allow_credential: bool,
}

/// [`ORIGINS_PATTERN`] without a regex engine: `*`, `**`, `null`, or `\w+://[^,]+` items joined by commas.
fn valid_origins(value: &str) -> bool {
    matches!(value, "*" | "**" | "null")
        || value.split(',').all(|item| {
            item.split_once("://").is_some_and(|(scheme, rest)| {
                !scheme.is_empty()
                    && scheme
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    && !rest.is_empty()
            })
        })
}

fn compile_regexes(list: &[String]) -> Result<Vec<Regex>, String> {
    let property = "allow_origins_by_regex";
    field(property, not_empty_array(list))?;
    list.iter()
        .enumerate()
        .map(|(i, pattern)| {
            let len = pattern.chars().count();
            if !(1..=4096).contains(&len) {
                return Err(invalid(
                    property,
                    format!(
                        "item {}: string length {len} is not within 1 to 4096",
                        i + 1
                    ),
                ));
            }
            if let Some(j) = list[..i].iter().position(|p| p == pattern) {
                return Err(invalid(
                    property,
                    format!(
                        "expected unique items but items {} and {} are equal",
                        j + 1,
                        i + 1
                    ),
                ));
            }
            Regex::new(pattern).map_err(|e| {
                invalid(
                    property,
                    format!("invalid regex {pattern:?}: {}", regex_error(&e)),
                )
            })
        })
        .collect()
}

impl Compile for Rules {
    type Raw = Raw;

    fn compile(raw: Raw) -> Result<Self, String> {
        if raw.allow_origins_by_metadata.is_some() {
            return Err(invalid(
                "allow_origins_by_metadata",
                "not supported: the gateway has no plugin metadata; list the origins in \"allow_origins\" or \"allow_origins_by_regex\"",
            ));
        }
        let explicit = raw.allow_origins.is_some();
        let allow_origins = raw.allow_origins.unwrap_or_else(star);
        if !valid_origins(&allow_origins) {
            return Err(invalid(
                "allow_origins",
                format!("failed to match pattern {ORIGINS_PATTERN:?} with {allow_origins:?}"),
            ));
        }
        if raw.allow_credential
            && [
                Some(allow_origins.as_str()),
                Some(raw.allow_methods.as_str()),
                Some(raw.allow_headers.as_str()),
                raw.expose_headers.as_deref(),
            ]
            .contains(&Some("*"))
        {
            return Err(
                "you can not set '*' for other option when 'allow_credential' is true".to_string(),
            );
        }
        let regexes = raw
            .allow_origins_by_regex
            .as_deref()
            .map(compile_regexes)
            .transpose()?
            .unwrap_or_default();
        let origins = match allow_origins.as_str() {
            _ if !explicit && !regexes.is_empty() => Origins::Unset,
            "*" => Origins::Any,
            "**" => Origins::Echo,
            list => Origins::List(list.split(',').map(str::to_string).collect()),
        };
        let allow_methods = if raw.allow_methods == "**" {
            ALL_METHODS.to_string()
        } else {
            raw.allow_methods
        };
        Ok(Rules {
            origins,
            regexes,
            allow_methods,
            allow_headers: raw.allow_headers,
            expose_headers: raw.expose_headers.filter(|h| !h.is_empty()),
            max_age: raw.max_age.to_string(),
            allow_credential: raw.allow_credential,
        })
    }
}

impl Rules {
    /// The `Access-Control-Allow-Origin` value for a request from `origin`, or `None` when it is not allowed
    /// (then no CORS header is sent and the browser blocks the response).
    fn allowed_origin(&self, origin: Option<&str>) -> Option<String> {
        let by_list = match &self.origins {
            Origins::Any => Some("*".to_string()),
            Origins::Echo => Some(origin.unwrap_or("*").to_string()),
            Origins::List(list) => origin
                .filter(|o| list.iter().any(|l| l == o))
                .map(str::to_string),
            Origins::Unset => None,
        };
        by_list.or_else(|| {
            origin
                .filter(|o| self.regexes.iter().any(|r| r.is_match(o)))
                .map(str::to_string)
        })
    }

    fn add_headers(&self, allow_origin: &str) {
        let results = [
            response::set_header("access-control-allow-origin", allow_origin),
            // A response that depends on the origin must not be served from a shared cache to another one.
            if allow_origin == "*" {
                Ok(())
            } else {
                response::append_header("vary", "Origin")
            },
            response::set_header("access-control-allow-methods", &self.allow_methods),
            response::set_header("access-control-max-age", &self.max_age),
            match &self.expose_headers {
                Some(expose) => response::set_header("access-control-expose-headers", expose),
                None => Ok(()),
            },
            if self.allow_headers == "**" {
                match request::header("access-control-request-headers") {
                    Some(asked) => response::set_header("access-control-allow-headers", &asked),
                    None => Ok(()),
                }
            } else {
                response::set_header("access-control-allow-headers", &self.allow_headers)
            },
            if self.allow_credential {
                response::set_header("access-control-allow-credentials", "true")
            } else {
                Ok(())
            },
        ];
        for e in results.into_iter().filter_map(Result::err) {
            log::warn(&format!("CORS header not set: {e}"));
        }
    }
}

/// The plugin.
pub struct Cors;

#[export_plugin]
impl Plugin for Cors {
    type Config = Config;
    const NAME: &'static str = "cors";
    const PRIORITY: i32 = 4000;

    fn validate(config: &Config) -> Result<(), String> {
        config.validate()
    }

    fn rewrite(_config: &Config) -> Decision {
        if let Some(origin) = request::header("origin") {
            context::set(ORIGIN_KEY, &origin);
        }
        if request::method() == Method::Options {
            return Decision::Respond(Response::new(200));
        }
        Decision::Continue
    }

    fn header_filter(config: &Config) -> Decision {
        // Unreachable with an invalid config: `configure` refuses what `validate` refuses.
        let Some(rules) = config.rules() else {
            return Decision::Continue;
        };
        let origin = context::get(ORIGIN_KEY);
        if let Some(allow) = rules.allowed_origin(origin.as_deref()) {
            rules.add_headers(&allow);
        }
        Decision::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_builtin_support::testing::{configure, refused};
    use sluice_plugin_sdk::testing::TestHost;
    use sluice_plugin_sdk::Phase;

    /// Runs a request (`origin`, `method`) through both phases like the gateway does; returns the rewrite
    /// decision and the host to read the response headers from.
    fn exchange(config: &str, method: Method, origin: Option<&str>) -> (Decision, TestHost) {
        let host = TestHost::new();
        host.set_method(method);
        if let Some(o) = origin {
            host.set_request_header("origin", o);
        }
        let cfg = configure::<Cors>(&host, config);
        let decision = host.rewrite(&cfg);
        host.set_response(200, &[("content-type", "text/plain")]);
        assert_eq!(host.header_filter::<Cors>(&cfg), Decision::Continue);
        (decision, host)
    }

    fn get(config: &str, origin: Option<&str>) -> TestHost {
        exchange(config, Method::Get, origin).1
    }

    fn allow_origin(config: &str, origin: Option<&str>) -> Option<String> {
        get(config, origin).response_header("access-control-allow-origin")
    }

    #[test]
    fn phases_and_priority_are_apisix_ones() {
        let phases = TestHost::new().phases::<Cors>();
        assert_eq!(phases, &[Phase::Rewrite, Phase::HeaderFilter]);
        assert_eq!(Cors::PRIORITY, 4000);
    }

    #[test]
    fn defaults_allow_any_origin_with_apisix_headers() {
        let host = get("{}", Some("https://a.example"));
        let h = |n| host.response_header(n);
        assert_eq!(h("access-control-allow-origin").as_deref(), Some("*"));
        assert_eq!(h("access-control-allow-methods").as_deref(), Some("*"));
        assert_eq!(h("access-control-allow-headers").as_deref(), Some("*"));
        assert_eq!(h("access-control-max-age").as_deref(), Some("5"));
        assert_eq!(h("access-control-expose-headers"), None);
        assert_eq!(h("access-control-allow-credentials"), None);
        assert_eq!(
            h("vary"),
            None,
            "a `*` answer does not depend on the origin"
        );
    }

    #[test]
    fn preflight_is_answered_with_200_and_the_cors_headers() {
        let (decision, host) = exchange(
            r#"{"allow_origins": "https://app.example", "allow_methods": "GET,POST", "max_age": 600}"#,
            Method::Options,
            Some("https://app.example"),
        );
        let Decision::Respond(resp) = decision else {
            panic!("a preflight must be answered at the gateway");
        };
        assert_eq!((resp.status, resp.body.len()), (200, 0));
        assert_eq!(
            host.response_header("access-control-allow-origin")
                .as_deref(),
            Some("https://app.example")
        );
        assert_eq!(
            host.response_header("access-control-allow-methods")
                .as_deref(),
            Some("GET,POST")
        );
        assert_eq!(
            host.response_header("access-control-max-age").as_deref(),
            Some("600")
        );
    }

    #[test]
    fn other_methods_reach_the_upstream() {
        let (decision, _) = exchange("{}", Method::Post, Some("https://a.example"));
        assert_eq!(decision, Decision::Continue);
    }

    #[test]
    fn a_listed_origin_is_echoed_with_vary_and_others_get_no_headers() {
        let config = r#"{"allow_origins": "https://a.example,https://b.example:8443"}"#;
        let host = get(config, Some("https://b.example:8443"));
        assert_eq!(
            host.response_header("access-control-allow-origin")
                .as_deref(),
            Some("https://b.example:8443")
        );
        assert_eq!(host.response_header("vary").as_deref(), Some("Origin"));

        let host = get(config, Some("https://evil.example"));
        assert_eq!(host.response_header("access-control-allow-origin"), None);
        assert_eq!(host.response_header("access-control-allow-methods"), None);
        assert_eq!(allow_origin(config, None), None);
    }

    #[test]
    fn a_single_origin_must_match_exactly() {
        let config = r#"{"allow_origins": "https://a.example"}"#;
        assert_eq!(
            allow_origin(config, Some("https://a.example")).as_deref(),
            Some("https://a.example")
        );
        assert_eq!(allow_origin(config, Some("https://a.example.evil")), None);
        assert_eq!(
            allow_origin(r#"{"allow_origins": "null"}"#, Some("null")).as_deref(),
            Some("null")
        );
    }

    #[test]
    fn double_star_echoes_any_origin_and_the_asked_headers_with_credentials() {
        let config = r#"{"allow_origins": "**", "allow_methods": "**", "allow_headers": "**",
                         "expose_headers": "x-trace", "allow_credential": true}"#;
        let host = TestHost::new();
        host.set_method(Method::Options)
            .set_request_header("origin", "https://any.example")
            .set_request_header("access-control-request-headers", "x-token,content-type");
        let cfg = host.configure::<Cors>(config).expect("valid");
        assert!(matches!(host.rewrite::<Cors>(&cfg), Decision::Respond(_)));
        host.header_filter::<Cors>(&cfg);
        let h = |n| host.response_header(n);
        assert_eq!(
            h("access-control-allow-origin").as_deref(),
            Some("https://any.example")
        );
        assert_eq!(
            h("access-control-allow-methods").as_deref(),
            Some(ALL_METHODS)
        );
        assert_eq!(
            h("access-control-allow-headers").as_deref(),
            Some("x-token,content-type")
        );
        assert_eq!(
            h("access-control-expose-headers").as_deref(),
            Some("x-trace")
        );
        assert_eq!(
            h("access-control-allow-credentials").as_deref(),
            Some("true")
        );
        assert_eq!(
            allow_origin(r#"{"allow_origins": "**"}"#, None).as_deref(),
            Some("*")
        );
    }

    #[test]
    fn regexes_alone_decide_when_allow_origins_is_left_default() {
        let config = r#"{"allow_origins_by_regex": ["^https://[a-z]+\\.test\\.com$"]}"#;
        assert_eq!(
            allow_origin(config, Some("https://app.test.com")).as_deref(),
            Some("https://app.test.com")
        );
        assert_eq!(
            allow_origin(config, Some("https://app.test.com.evil")),
            None
        );
        assert_eq!(allow_origin(config, None), None);
    }

    #[test]
    fn written_allow_origins_and_regexes_both_allow() {
        let config = r#"{"allow_origins": "https://fixed.example",
                         "allow_origins_by_regex": [".*\\.dev\\.example$"]}"#;
        assert!(allow_origin(config, Some("https://fixed.example")).is_some());
        assert!(allow_origin(config, Some("https://x.dev.example")).is_some());
        assert_eq!(allow_origin(config, Some("https://other.example")), None);
    }

    /// A later plugin (proxy-rewrite, say) that changes the request's `Origin` header.
    struct ChangesOrigin;

    impl Plugin for ChangesOrigin {
        type Config = serde::de::IgnoredAny;
        fn rewrite(_: &Self::Config) -> Decision {
            request::set_header("origin", "https://changed.example")
                .expect("rewrite may set headers");
            Decision::Continue
        }
    }

    #[test]
    fn the_origin_the_client_sent_counts_even_if_a_later_plugin_changes_it() {
        let host = TestHost::new();
        host.set_request_header("origin", "https://a.example");
        let cfg = host
            .configure::<Cors>(r#"{"allow_origins": "https://a.example"}"#)
            .expect("valid");
        let other = host.configure::<ChangesOrigin>("{}").expect("valid");
        host.rewrite::<Cors>(&cfg);
        host.rewrite::<ChangesOrigin>(&other);
        assert_eq!(
            host.request_header("origin").as_deref(),
            Some("https://changed.example")
        );
        host.header_filter::<Cors>(&cfg);
        assert_eq!(
            host.response_header("access-control-allow-origin")
                .as_deref(),
            Some("https://a.example")
        );
    }

    #[test]
    fn bad_configs_are_refused_with_apisix_messages() {
        for (config, message) in [
            (
                r#"{"allow_origins": "example.com"}"#,
                r#"property "allow_origins" validation failed: failed to match pattern"#,
            ),
            (
                r#"{"allow_origins": "https://a.example,"}"#,
                r#"property "allow_origins" validation failed"#,
            ),
            (
                r#"{"allow_credential": true}"#,
                "you can not set '*' for other option when 'allow_credential' is true",
            ),
            (
                r#"{"allow_credential": true, "allow_origins": "https://a.example", "allow_methods": "GET",
                    "allow_headers": "x", "expose_headers": "*"}"#,
                "you can not set '*'",
            ),
            (
                r#"{"allow_origins_by_regex": []}"#,
                r#"property "allow_origins_by_regex" validation failed: expect array to have at least 1 items"#,
            ),
            (
                r#"{"allow_origins_by_regex": ["("]}"#,
                r#"property "allow_origins_by_regex" validation failed: invalid regex "(": unclosed group"#,
            ),
            (
                r#"{"allow_origins_by_regex": ["a", "a"]}"#,
                "expected unique items but items 1 and 2 are equal",
            ),
            (
                r#"{"allow_origins_by_regex": [""]}"#,
                "item 1: string length 0 is not within 1 to 4096",
            ),
            (
                r#"{"allow_origins_by_metadata": ["EXAMPLE"]}"#,
                r#"property "allow_origins_by_metadata" validation failed: not supported"#,
            ),
            (r#"{"max_age": "5"}"#, "invalid type"),
            (r#"{"allow_origin": "*"}"#, "unknown field `allow_origin`"),
        ] {
            let err = refused::<Cors>(config);
            assert!(err.contains(message), "{config}: {err}");
        }
        assert!(TestHost::new()
            .configure::<Cors>(
                r#"{"allow_credential": true, "allow_origins": "**", "allow_methods": "**",
                    "allow_headers": "**", "expose_headers": "x-a"}"#
            )
            .is_ok());
    }

    #[test]
    fn origins_pattern_matches_apisix() {
        for ok in [
            "*",
            "**",
            "null",
            "http://a",
            "https://a.b:1,http://c",
            "a_1://x",
        ] {
            assert!(valid_origins(ok), "{ok}");
        }
        for bad in [
            "",
            "a.com",
            "http://",
            "://a",
            "http://a,,http://b",
            "*,http://a",
        ] {
            assert!(!valid_origins(bad), "{bad}");
        }
    }
}
