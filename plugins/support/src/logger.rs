//! What the logger plugins (`http-logger`, `file-logger`) share: APISIX's `log_format` object, the
//! body switches Sluice refuses, and the [`Logger`] a parsed config holds (its sink opened on first use).
//!
//! Why the sink opens lazily, in `log`: a parsed config lives once per plugin instance, and the gateway
//! joins sinks with one destination and policy into one, so the first instance to log opens it and the
//! rest join it. `validate` runs the same destination check first (`log_sink::check`), so the gateway
//! never hands `log` a config whose sink it would refuse.

use crate::schema::invalid;
use crate::template::Template;
use serde::Deserialize;
use serde_json::{Map, Value};
use sluice_plugin_sdk::log_sink::{self, Sink};
use sluice_plugin_sdk::{log, request, BatchPolicy, Destination, SinkError};
use std::cell::OnceCell;

/// APISIX's `log_format`: entry fields whose values are `$var` templates, e.g.
/// `{"host": "$host", "client_ip": "$remote_addr"}`. Without one, entries are APISIX's full log format.
#[derive(Debug, Default)]
pub struct LogFormat(Vec<(String, Template)>);

impl<'de> Deserialize<'de> for LogFormat {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = Map::<String, Value>::deserialize(d)?;
        let mut fields = Vec::with_capacity(map.len());
        for (name, value) in map {
            let Value::String(src) = value else {
                return Err(serde::de::Error::custom(invalid(
                    "log_format",
                    format!("the value of {name:?} must be a string"),
                )));
            };
            fields.push((name, Template::parse(&src)));
        }
        Ok(LogFormat(fields))
    }
}

impl LogFormat {
    /// The entry: each field's template rendered with the request's variables.
    fn render(&self) -> String {
        let fields: Map<String, Value> = self
            .0
            .iter()
            .map(|(name, t)| (name.clone(), Value::String(t.render(request::var))))
            .collect();
        Value::Object(fields).to_string()
    }
}

/// `include_req_body` / `include_resp_body`: refused when on. The gateway streams bodies through without
/// keeping a copy, so there is no body to log; saying so beats logging entries without one.
pub fn refuse_bodies(include_req_body: bool, include_resp_body: bool) -> Result<(), String> {
    for (name, on) in [
        ("include_req_body", include_req_body),
        ("include_resp_body", include_resp_body),
    ] {
        if on {
            return Err(invalid(
                name,
                "not supported: Sluice streams bodies and keeps no copy to log",
            ));
        }
    }
    Ok(())
}

/// This request's entry (`log` only): `log_format` rendered, or APISIX's full log format.
fn entry(format: Option<&LogFormat>) -> Option<String> {
    match format {
        Some(f) if !f.0.is_empty() => Some(f.render()),
        _ => log_sink::apisix_entry(),
    }
}

/// What a logger plugin's parsed config holds: where entries go, how they are batched, what they say,
/// and the sink, opened on the first [`Logger::log`].
#[derive(Debug)]
pub struct Logger {
    destination: Destination,
    policy: BatchPolicy,
    log_format: Option<LogFormat>,
    sink: OnceCell<Option<Sink>>,
}

impl Logger {
    /// Checks the destination and policy with the gateway (`log_sink::check`); a refusal names `field`,
    /// the config property the destination comes from.
    pub fn new(
        field: &str,
        destination: Destination,
        policy: BatchPolicy,
        log_format: Option<LogFormat>,
    ) -> Result<Self, String> {
        log_sink::check(&destination, &policy).map_err(|e| invalid(field, e))?;
        Ok(Logger {
            destination,
            policy,
            log_format,
            sink: OnceCell::new(),
        })
    }

    /// The batch policy entries are delivered with.
    pub fn policy(&self) -> &BatchPolicy {
        &self.policy
    }

    /// `log`: queues this request's entry, opening the sink first if needed. Never waits and never fails
    /// the request: a full queue is counted by the gateway, anything else is logged.
    pub fn log(&self) {
        let Some(entry) = entry(self.log_format.as_ref()) else {
            return;
        };
        let sink = self
            .sink
            .get_or_init(|| match Sink::open(&self.destination, &self.policy) {
                Ok(s) => Some(s),
                Err(e) => {
                    log::error(&format!("cannot open the log sink: {e}"));
                    None
                }
            });
        match sink.as_ref().map(|s| s.push(&entry)) {
            Some(Ok(())) | Some(Err(SinkError::QueueFull)) | None => {}
            Some(Err(e)) => log::warn(&format!("log entry dropped: {e}")),
        }
    }
}
