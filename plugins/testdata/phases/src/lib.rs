//! Test fixture: every phase reads and changes what it may, so the host tests can check the contract.
//!
//! - rewrite: copies request header `x-in` into context `in`; sets `x-rewrite: <route id>`; tries to change
//!   the response status and records the error in context `rewrite-status-err`.
//! - access: sets request header `<config.header>: <config.value>`; `x-deny` present → respond 403;
//!   counts per-client requests in a window (`x-count` request header) when `config.limit` is set.
//! - header-filter: sets response header `x-resp` to context `in`, `x-status-seen` to the status;
//!   tries a request-header write and records the error in context `hf-req-err`. Status 599 → respond 502.
//! - body-filter: upper-cases each chunk when `config.upper`.
//! - log: writes a log line and a counter metric.
use sluice_plugin_sdk::{
    consumers, context, counters, export_plugin, http, kv, log, metrics, request, response,
    Decision, OutboundRequest, Plugin, Response,
};
use std::time::Duration;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    header: String,
    value: String,
    #[serde(default)]
    upper: bool,
    #[serde(default)]
    limit: Option<u64>,
    /// Named upstream asked `GET /check` with the `x-in` header; non-200 answers are passed back.
    #[serde(default)]
    auth_upstream: Option<String>,
    /// Look the `x-key` header up as a credential of plugin "phases" and set the consumer.
    #[serde(default)]
    key_auth: bool,
}

pub struct Phases;

#[export_plugin]
impl Plugin for Phases {
    type Config = Config;
    const NAME: &'static str = "phases";
    const PRIORITY: i32 = 1000;

    fn validate(cfg: &Config) -> Result<(), String> {
        if cfg.header.is_empty() {
            return Err("header: must not be empty".to_string());
        }
        if cfg.limit == Some(0) {
            return Err("limit: must be at least 1".to_string());
        }
        Ok(())
    }

    fn rewrite(_cfg: &Config) -> Decision {
        if let Some(v) = request::header("x-in") {
            context::set("in", &v);
        }
        let _ = request::set_header("x-rewrite", &request::route_id());
        if let Err(e) = response::set_status(201) {
            context::set("rewrite-status-err", &e.to_string());
        }
        Decision::Continue
    }

    fn access(cfg: &Config) -> Decision {
        if request::set_header(&cfg.header, &cfg.value).is_err() {
            return Decision::respond(500, "bad header in config");
        }
        if request::header("x-deny").is_some() {
            return Decision::Respond(
                Response::new(403)
                    .header("x-denied-by", "phases")
                    .body(format!("denied {}", request::path())),
            );
        }
        if cfg.key_auth {
            let key = request::header("x-key").unwrap_or_default();
            match consumers::lookup("phases", &key) {
                Some(c) => {
                    let _ = request::set_consumer(&c.username);
                }
                None => return Decision::respond(401, "unknown key"),
            }
        }
        if let Some(upstream) = &cfg.auth_upstream {
            let mut req = OutboundRequest::get("/check");
            req.headers
                .push(("x-in".into(), request::header("x-in").unwrap_or_default()));
            match http::call(upstream, &req) {
                Ok(r) if r.status == 200 => {
                    let user = r
                        .headers
                        .iter()
                        .find(|(n, _)| n == "x-user")
                        .map(|(_, v)| v.clone());
                    let _ = request::set_header("x-user", user.as_deref().unwrap_or("?"));
                }
                Ok(r) => return Decision::Respond(Response::new(r.status).body(r.body)),
                Err(e) => return Decision::respond(502, format!("auth call failed: {e}")),
            }
        }
        // kv: remember the last path per route, hand the previous one on.
        let key = format!("last:{}", request::route_id());
        if let Some(prev) = kv::get(&key) {
            let _ = request::set_header("x-prev-path", &String::from_utf8_lossy(&prev));
        }
        let _ = kv::set(
            &key,
            request::path().as_bytes(),
            Some(Duration::from_secs(60)),
        );
        if let Some(limit) = cfg.limit {
            let key = request::client_addr().ip().to_string();
            match counters::incr(&key, 1, Duration::from_secs(60)) {
                Ok(c) if c.count > limit => return Decision::respond(429, "too many"),
                Ok(c) => {
                    let _ = request::set_header("x-count", &c.count.to_string());
                }
                Err(e) => return Decision::respond(503, e.to_string()),
            }
        }
        Decision::Continue
    }

    fn header_filter(_cfg: &Config) -> Decision {
        if response::status() == Some(599) {
            return Decision::respond(502, "upstream said 599");
        }
        let seen = response::status()
            .map(|s| s.to_string())
            .unwrap_or_default();
        let _ = response::set_header("x-status-seen", &seen);
        if let Some(v) = context::get("in") {
            let _ = response::set_header("x-resp", &v);
        }
        if let Err(e) = request::set_header("x-late", "1") {
            context::set("hf-req-err", &e.to_string());
        }
        Decision::Continue
    }

    fn body_filter(cfg: &Config) {
        if cfg.upper {
            if let Some(chunk) = response::body_chunk() {
                let _ = response::set_body_chunk(&chunk.to_ascii_uppercase());
            }
        }
    }

    fn log(_cfg: &Config) {
        log::info(&format!("served {}", request::path()));
        metrics::counter("phases_served", &[("route", &request::route_id())], 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_plugin_sdk::testing::TestHost;
    use sluice_plugin_sdk::{FieldError, Phase};

    const CFG: &str = r#"{"header":"x-added","value":"yes","upper":true,"limit":2}"#;

    #[test]
    fn phases_are_recorded() {
        let host = TestHost::new();
        assert_eq!(host.phases::<Phases>().len(), 5);
        assert_eq!(host.phases::<Phases>()[1], Phase::Access);
    }

    #[test]
    fn request_phases() {
        let host = TestHost::new();
        host.set_request_header("x-in", "hello").set_route_id("r7");
        let cfg = host.configure::<Phases>(CFG).unwrap();
        assert_eq!(host.rewrite(&cfg), Decision::Continue);
        assert_eq!(host.request_header("x-rewrite").as_deref(), Some("r7"));
        assert_eq!(
            host.context("rewrite-status-err"),
            Some(FieldError::NotInThisPhase.to_string())
        );
        assert_eq!(host.access(&cfg), Decision::Continue);
        assert_eq!(host.request_header("x-added").as_deref(), Some("yes"));
        assert_eq!(host.request_header("x-count").as_deref(), Some("1"));
    }

    #[test]
    fn deny_and_limit() {
        let host = TestHost::new();
        let cfg = host.configure::<Phases>(CFG).unwrap();
        host.set_request_header("x-deny", "1").set_path("/p");
        match host.access(&cfg) {
            Decision::Respond(r) => {
                assert_eq!(r.status, 403);
                assert_eq!(r.body, b"denied /p");
            }
            other => panic!("{other:?}"),
        }
        for _ in 0..2 {
            host.next_request();
            assert_eq!(host.access(&cfg), Decision::Continue);
        }
        host.next_request();
        assert!(matches!(host.access(&cfg), Decision::Respond(r) if r.status == 429));
        host.advance(Duration::from_secs(61)).next_request();
        assert_eq!(host.access(&cfg), Decision::Continue);
    }

    #[test]
    fn response_phases() {
        let host = TestHost::new();
        let cfg = host.configure::<Phases>(CFG).unwrap();
        host.set_context("in", "ctx-value").set_response(204, &[]);
        assert_eq!(host.header_filter(&cfg), Decision::Continue);
        assert_eq!(host.response_header("x-resp").as_deref(), Some("ctx-value"));
        assert_eq!(
            host.response_header("x-status-seen").as_deref(),
            Some("204")
        );
        assert_eq!(
            host.context("hf-req-err"),
            Some(FieldError::NotInThisPhase.to_string())
        );
        assert_eq!(host.body_filter(&cfg, b"abc", true), b"ABC");
        host.log(&cfg);
        assert_eq!(host.metric_counter("phases_served,route=1"), 1);
        assert_eq!(host.logs().len(), 1);
    }

    #[test]
    fn validation_messages() {
        let host = TestHost::new();
        let err = host
            .configure::<Phases>(r#"{"header":"","value":"v"}"#)
            .err();
        assert_eq!(err.as_deref(), Some("header: must not be empty"));
        let err = host.configure::<Phases>(r#"{"value":"v"}"#).err().unwrap();
        assert!(err.contains("missing field `header`"), "{err}");
        let err = host
            .configure::<Phases>(r#"{"header":"a","value":"v","x":1}"#)
            .err()
            .unwrap();
        assert!(err.contains("unknown field `x`"), "{err}");
    }
}
