//! `http-logger`: sends each request's log entry to an HTTP endpoint, in batches — APISIX's fields and
//! defaults (priority 410, `log` phase).
//!
//! The plugin builds the entry (APISIX's full log format, or `log_format`) and pushes it to a host log
//! sink; the gateway batches (`batch_max_size`, `inactive_timeout`, `buffer_duration`), POSTs each batch
//! to `uri` from its own task, and retries a failed delivery `max_retry_count` times, waiting
//! `retry_delay` seconds before the first retry and twice as long before each next one. So the request is
//! never held by the endpoint, and an endpoint that is down costs dropped (and counted) entries, never
//! failed requests.
//!
//! Departures from APISIX, each refused with a message rather than silently ignored: `include_req_body`
//! and `include_resp_body` (the gateway streams bodies and keeps no copy) and `ssl_verify: false` (the
//! gateway always verifies the endpoint's certificate; trust a private CA through `SSL_CERT_FILE`).
//! `name` is accepted and unused (APISIX uses it to label its batch processor's own log lines).

use serde::Deserialize;
use sluice_builtin_support::compiled::{Compile, Compiled};
use sluice_builtin_support::logger::{self, LogFormat, Logger};
use sluice_builtin_support::schema::{field, invalid, one_of, within};
use sluice_plugin_sdk::sluice_log::sink_rules;
use sluice_plugin_sdk::{export_plugin, BatchPolicy, ConcatMethod, Destination, Plugin};
use std::time::Duration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    uri: String,
    #[serde(default)]
    auth_header: Option<String>,
    #[serde(default = "default_timeout")]
    timeout: i64,
    #[serde(default)]
    log_format: Option<LogFormat>,
    #[serde(default)]
    include_req_body: bool,
    #[serde(default)]
    include_resp_body: bool,
    #[serde(default = "default_concat_method")]
    concat_method: String,
    #[serde(default)]
    ssl_verify: Option<bool>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default = "default_batch_max_size")]
    batch_max_size: i64,
    #[serde(default = "default_inactive_timeout")]
    inactive_timeout: i64,
    #[serde(default = "default_buffer_duration")]
    buffer_duration: i64,
    #[serde(default)]
    max_retry_count: i64,
    #[serde(default = "default_retry_delay")]
    retry_delay: i64,
}

fn default_timeout() -> i64 {
    3
}
fn default_concat_method() -> String {
    "json".to_string()
}
fn default_batch_max_size() -> i64 {
    1000
}
fn default_inactive_timeout() -> i64 {
    5
}
fn default_buffer_duration() -> i64 {
    60
}
fn default_retry_delay() -> i64 {
    1
}

/// Seconds as APISIX's schema takes them (`minimum` given, at most a day), as a duration.
fn seconds(name: &str, value: i64, min: i64) -> Result<Duration, String> {
    field(name, within(value, Some(min), Some(86_400)))?;
    Ok(Duration::from_secs(value.unsigned_abs()))
}

/// The parsed config.
pub struct Rules(Logger);

impl Compile for Rules {
    type Raw = Raw;

    fn compile(raw: Raw) -> Result<Self, String> {
        logger::refuse_bodies(raw.include_req_body, raw.include_resp_body)?;
        if raw.ssl_verify == Some(false) {
            return Err(invalid(
                "ssl_verify",
                "false is not supported: the gateway always verifies the endpoint's certificate \
                 (trust a private CA through SSL_CERT_FILE)",
            ));
        }
        let _ = raw.name;
        field(
            "concat_method",
            one_of(&raw.concat_method, &["json", "new_line"]),
        )?;
        let timeout = seconds("timeout", raw.timeout, 1)?;
        field(
            "batch_max_size",
            within(
                raw.batch_max_size,
                Some(1),
                Some(i64::from(sink_rules::MAX_BATCH_SIZE)),
            ),
        )?;
        let timeout_ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
        field("uri", sink_rules::check_http(&raw.uri, None, timeout_ms))?;
        field(
            "auth_header",
            sink_rules::check_http(&raw.uri, raw.auth_header.as_deref(), timeout_ms),
        )?;
        let policy = BatchPolicy {
            max_size: u32::try_from(raw.batch_max_size).unwrap_or(1),
            inactive_timeout: seconds("inactive_timeout", raw.inactive_timeout, 1)?,
            buffer_duration: seconds("buffer_duration", raw.buffer_duration, 1)?,
            max_retry_count: {
                field(
                    "max_retry_count",
                    within(raw.max_retry_count, Some(0), Some(100)),
                )?;
                u32::try_from(raw.max_retry_count).unwrap_or(0)
            },
            retry_delay: seconds("retry_delay", raw.retry_delay, 0)?,
        };
        let destination = Destination::Http {
            uri: raw.uri,
            auth_header: raw.auth_header,
            timeout,
            concat: if raw.concat_method == "new_line" {
                ConcatMethod::NewLine
            } else {
                ConcatMethod::Json
            },
        };
        Logger::new("uri", destination, policy, raw.log_format).map(Rules)
    }
}

/// The plugin.
pub struct HttpLogger;

#[export_plugin]
impl Plugin for HttpLogger {
    type Config = Compiled<Rules>;
    const NAME: &'static str = "http-logger";
    const PRIORITY: i32 = 410;

    fn validate(config: &Self::Config) -> Result<(), String> {
        config.validate()
    }

    fn log(config: &Self::Config) {
        if let Some(Rules(logger)) = config.rules() {
            logger.log();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use sluice_builtin_support::testing::{configure, refused};
    use sluice_plugin_sdk::testing::TestHost;
    use sluice_plugin_sdk::{Completion, Phase};

    fn destination(uri: &str, concat: ConcatMethod) -> Destination {
        Destination::Http {
            uri: uri.to_string(),
            auth_header: None,
            timeout: Duration::from_secs(3),
            concat,
        }
    }

    fn finished(host: &TestHost) {
        host.set_response(200, &[("content-type", "text/plain")])
            .set_completion(Completion {
                started_unix_ms: 1_700_000_000_000,
                latency: Duration::from_millis(4),
                upstream_latency: Some(Duration::from_millis(3)),
                upstream_addr: Some("127.0.0.1:1980".parse().unwrap()),
                response_body_bytes: 11,
                complete: true,
                ..Completion::default()
            });
    }

    #[test]
    fn phases_and_priority_are_apisix_ones() {
        assert_eq!(TestHost::new().phases::<HttpLogger>(), &[Phase::Log]);
        assert_eq!(HttpLogger::PRIORITY, 410);
    }

    #[test]
    fn each_request_pushes_its_full_log_entry_to_one_sink() {
        let host = TestHost::new();
        let cfg = configure::<HttpLogger>(&host, r#"{"uri": "http://127.0.0.1:1980/log"}"#);
        host.set_path("/hello?a=1")
            .set_request_header("host", "example.com");
        finished(&host);
        host.log(&cfg);
        host.log(&cfg);
        assert_eq!(host.open_sinks(), 1);
        let entries = host.sink_entries(&destination(
            "http://127.0.0.1:1980/log",
            ConcatMethod::Json,
        ));
        assert_eq!(entries.len(), 2);
        let e: Value = serde_json::from_str(&entries[0]).unwrap();
        assert_eq!(e["request"]["url"], json!("http://example.com/hello?a=1"));
        assert_eq!(e["request"]["querystring"], json!({"a": "1"}));
        assert_eq!(e["response"]["status"], json!(200));
        assert_eq!(e["response"]["size"], json!(11));
        assert_eq!(e["upstream"], json!("127.0.0.1:1980"));
        assert_eq!(e["latency"], json!(4.0));
        assert_eq!(e["apisix_latency"], json!(1.0));
        assert_eq!(e["route_id"], json!("1"));
    }

    #[test]
    fn log_format_and_batch_fields_shape_the_sink() {
        let host = TestHost::new();
        let cfg = configure::<HttpLogger>(
            &host,
            r#"{"uri": "https://logs.example.com/in", "concat_method": "new_line",
                "batch_max_size": 2, "inactive_timeout": 1, "max_retry_count": 3, "retry_delay": 2,
                "log_format": {"path": "$uri", "who": "client $remote_addr"}}"#,
        );
        host.set_path("/p");
        finished(&host);
        host.log(&cfg);
        let entries = host.sink_entries(&destination(
            "https://logs.example.com/in",
            ConcatMethod::NewLine,
        ));
        let e: Value = serde_json::from_str(&entries[0]).unwrap();
        assert_eq!(e, json!({"path": "/p", "who": "client 127.0.0.1"}));
        let policy = cfg.get().rules().unwrap().0.policy();
        assert_eq!(policy.max_size, 2);
        assert_eq!(policy.inactive_timeout, Duration::from_secs(1));
        assert_eq!(policy.max_retry_count, 3);
        assert_eq!(policy.retry_delay, Duration::from_secs(2));
    }

    #[test]
    fn bad_configs_are_refused_with_the_field_named() {
        let cases = [
            (r#"{}"#, "uri"),
            (
                r#"{"uri": "ftp://x/"}"#,
                "property \"uri\" validation failed",
            ),
            (
                r#"{"uri": "http://x/", "batch_max_size": 0}"#,
                "batch_max_size",
            ),
            (r#"{"uri": "http://x/", "timeout": 0}"#, "timeout"),
            (
                r#"{"uri": "http://x/", "concat_method": "csv"}"#,
                "concat_method",
            ),
            (
                r#"{"uri": "http://x/", "include_req_body": true}"#,
                "include_req_body",
            ),
            (r#"{"uri": "http://x/", "ssl_verify": false}"#, "ssl_verify"),
            (
                r#"{"uri": "http://x/", "log_format": {"a": 1}}"#,
                "log_format",
            ),
            (
                r#"{"uri": "http://x/", "auth_header": "a\r\nb"}"#,
                "auth_header",
            ),
            (r#"{"uri": "http://x/", "colour": "red"}"#, "colour"),
        ];
        for (config, expected) in cases {
            let err = refused::<HttpLogger>(config);
            assert!(err.contains(expected), "{config}: {err}");
        }
    }

    #[test]
    fn nothing_is_logged_outside_the_log_phase_facts() {
        // Without the gateway's completion (not the log phase), there is no entry to send.
        let host = TestHost::new();
        let cfg = configure::<HttpLogger>(&host, r#"{"uri": "http://x/"}"#);
        host.log(&cfg);
        assert_eq!(host.open_sinks(), 0);
    }
}
