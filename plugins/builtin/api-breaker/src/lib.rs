//! `api-breaker`: APISIX's circuit breaker. After `unhealthy.failures` answers with an
//! `unhealthy.http_statuses` status the route answers `break_response_code` itself for 2 seconds, and for
//! twice as long each time the upstream fails again after reopening (4, 8, ... up to `max_breaker_sec`);
//! `healthy.successes` answers with a `healthy.http_statuses` status close it and forget the failures.
//!
//! The circuit is one record per route in the host's `kv` ([`circuit`]): `access` only reads it, `log`
//! (which sees the status) updates it with a read / compute / compare-and-swap loop, so concurrent
//! requests on a route never lose a count and no lock is held across a request. The circuit is per route,
//! not per upstream node: `access` runs before the upstream is chosen, and APISIX keys it the same way.
//! `log` counts the status the client got; a request this plugin refused is not counted (the breaker's own
//! answer says nothing about the upstream, even when `break_response_code` is an unhealthy status).

pub mod circuit;

use circuit::{Answer, Circuit, Thresholds};
use serde::Deserialize;
use sluice_builtin_support::cas::{retry, CAS_ATTEMPTS};
use sluice_builtin_support::compiled::{Compile, Compiled};
use sluice_builtin_support::header_ops::header_entry;
use sluice_builtin_support::limit::route_scoped;
use sluice_builtin_support::schema::{
    each_item, field, invalid, required, unique_non_empty, within,
};
use sluice_builtin_support::template::Template;
use sluice_plugin_sdk::{
    clock, context, export_plugin, kv, log, request, response, Decision, Plugin, Response,
};

/// The config as written, with APISIX's names and defaults; unknown fields are ignored, as APISIX does.
#[derive(Deserialize)]
pub struct Raw {
    /// Required; `Option` so a missing one gets APISIX's message.
    break_response_code: Option<i64>,
    break_response_body: Option<String>,
    #[serde(default)]
    break_response_headers: Vec<HeaderRaw>,
    #[serde(default = "default_max_breaker_sec")]
    max_breaker_sec: i64,
    #[serde(default)]
    unhealthy: UnhealthyRaw,
    #[serde(default)]
    healthy: HealthyRaw,
}

#[derive(Deserialize)]
struct HeaderRaw {
    key: String,
    value: String,
}

#[derive(Deserialize)]
struct UnhealthyRaw {
    #[serde(default = "default_unhealthy_statuses")]
    http_statuses: Vec<i64>,
    #[serde(default = "three")]
    failures: i64,
}

#[derive(Deserialize)]
struct HealthyRaw {
    #[serde(default = "default_healthy_statuses")]
    http_statuses: Vec<i64>,
    #[serde(default = "three")]
    successes: i64,
}

impl Default for UnhealthyRaw {
    fn default() -> Self {
        UnhealthyRaw {
            http_statuses: default_unhealthy_statuses(),
            failures: three(),
        }
    }
}

impl Default for HealthyRaw {
    fn default() -> Self {
        HealthyRaw {
            http_statuses: default_healthy_statuses(),
            successes: three(),
        }
    }
}

fn default_max_breaker_sec() -> i64 {
    300
}
fn default_unhealthy_statuses() -> Vec<i64> {
    vec![500]
}
fn default_healthy_statuses() -> Vec<i64> {
    vec![200]
}
fn three() -> i64 {
    3
}

/// A checked config, as the phases use it.
pub struct Breaker {
    status: u16,
    body: Option<String>,
    headers: Vec<(String, Template)>,
    unhealthy: Vec<u16>,
    healthy: Vec<u16>,
    thresholds: Thresholds,
}

/// `object.http_statuses`: within `min..=max`, at least one, no repeats (APISIX's schema).
fn statuses(object: &str, list: &[i64], min: i64, max: i64) -> Result<Vec<u16>, String> {
    field(object, field("http_statuses", unique_non_empty(list)))?;
    field(
        object,
        each_item("http_statuses", list, |s| within(*s, Some(min), Some(max))),
    )?;
    Ok(list.iter().filter_map(|s| u16::try_from(*s).ok()).collect())
}

/// A count that must be at least 1 (`failures`, `successes`).
fn at_least_one(object: &str, name: &str, value: i64) -> Result<u64, String> {
    field(object, field(name, within(value, Some(1), None)))?;
    u64::try_from(value).map_err(|_| invalid(object, "out of range"))
}

impl Compile for Breaker {
    type Raw = Raw;
    fn compile(raw: Raw) -> Result<Self, String> {
        let code = required("break_response_code", raw.break_response_code)?;
        field("break_response_code", within(code, Some(200), Some(599)))?;
        field(
            "max_breaker_sec",
            within(raw.max_breaker_sec, Some(3), None),
        )?;
        let headers = raw
            .break_response_headers
            .iter()
            .map(|h| header_entry(&h.key, &h.value))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid("break_response_headers", e))?;
        Ok(Breaker {
            status: u16::try_from(code).map_err(|_| invalid("break_response_code", code))?,
            body: raw.break_response_body,
            headers,
            unhealthy: statuses("unhealthy", &raw.unhealthy.http_statuses, 500, 599)?,
            healthy: statuses("healthy", &raw.healthy.http_statuses, 200, 499)?,
            thresholds: Thresholds {
                failures: at_least_one("unhealthy", "failures", raw.unhealthy.failures)?,
                successes: at_least_one("healthy", "successes", raw.healthy.successes)?,
                max_open_secs: u64::try_from(raw.max_breaker_sec).unwrap_or(300),
            },
        })
    }
}

impl Breaker {
    /// The answer while open. As APISIX, `break_response_headers` go out only with a
    /// `break_response_body`.
    fn answer(&self) -> Response {
        let Some(body) = &self.body else {
            return Response::new(self.status);
        };
        let mut r = Response::new(self.status).body(body.as_bytes());
        for (name, value) in &self.headers {
            r = r.header(name, value.render(request::var));
        }
        r
    }

    fn classify(&self, status: u16) -> Option<Answer> {
        if self.unhealthy.contains(&status) {
            Some(Answer::Unhealthy)
        } else if self.healthy.contains(&status) {
            Some(Answer::Healthy)
        } else {
            None
        }
    }
}

/// Per-request context: set when this plugin answered, so `log` does not count its own answer.
const REFUSED: &str = "api-breaker.refused";

/// The kv key of this route's circuit.
fn circuit_key() -> String {
    route_scoped("api-breaker")
}

pub struct ApiBreaker;

#[export_plugin]
impl Plugin for ApiBreaker {
    type Config = Compiled<Breaker>;
    const NAME: &'static str = "api-breaker";
    const PRIORITY: i32 = 1005;

    fn validate(cfg: &Self::Config) -> Result<(), String> {
        cfg.validate()
    }

    fn access(cfg: &Self::Config) -> Decision {
        // Unreachable with a refused config: the gateway never runs one.
        let Some(b) = cfg.rules() else {
            return Decision::Continue;
        };
        let circuit = kv::get(&circuit_key())
            .as_deref()
            .and_then(Circuit::decode)
            .unwrap_or_default();
        if !circuit.is_open(clock::now_unix_ms(), b.thresholds) {
            return Decision::Continue;
        }
        context::set(REFUSED, "1");
        Decision::Respond(b.answer())
    }

    fn log(cfg: &Self::Config) {
        let Some(b) = cfg.rules() else {
            return;
        };
        if context::get(REFUSED).is_some() {
            return;
        }
        let Some(answer) = response::status().and_then(|s| b.classify(s)) else {
            return;
        };
        let key = circuit_key();
        let now = clock::now_unix_ms();
        let updated = retry(CAS_ATTEMPTS, || {
            let current = kv::get(&key);
            let before = current
                .as_deref()
                .and_then(Circuit::decode)
                .unwrap_or_default();
            match before.after(answer, now, b.thresholds) {
                None => Ok(Some(())),
                Some(next) => kv::compare_and_swap(&key, current.as_deref(), &next.encode(), None)
                    .map(|swapped| swapped.then_some(())),
            }
        });
        match updated {
            Ok(Some(())) => {}
            Ok(None) => log::warn(&format!(
                "circuit {key} not updated: {CAS_ATTEMPTS} concurrent updates collided"
            )),
            Err(e) => log::warn(&format!("circuit {key} not updated: {e}")),
        }
    }
}

#[cfg(test)]
mod tests;
