//! `limit-conn`: APISIX's concurrency limit. At most `conn` requests per key are in flight; up to `burst`
//! more are admitted after a delay, and the rest are rejected with `rejected_code` (503).
//!
//! A request takes a slot with an atomic `counters::add(key, +1)` in `access` and gives it back with `-1` in
//! `log`, which the gateway runs for every request that got past `access`, however it ended. Whether this
//! request holds a slot is remembered in its context, so a request that was rejected, or never reached this
//! plugin because an earlier one answered, never gives back a slot it did not take.

use serde::Deserialize;
use sluice_builtin_support::limit::{route_scoped, Common, KeyType};
use sluice_builtin_support::schema::{field, greater_than, required, within};
use sluice_plugin_sdk::{context, counters, export_plugin, log, request, Decision, Plugin};

/// The plugin's config, with APISIX's names and defaults; unknown fields are ignored.
#[derive(Debug, Deserialize)]
pub struct Config {
    /// Concurrent requests admitted at once; required (`Option` for APISIX's message when missing).
    conn: Option<i64>,
    /// Concurrent requests above `conn` admitted after a delay; required.
    burst: Option<i64>,
    /// Seconds of delay per request above `conn`; required.
    default_conn_delay: Option<f64>,
    /// `true`: every request above `conn` waits `default_conn_delay`; `false`: it waits that times how far
    /// above `conn` it is, so the wait grows with congestion.
    #[serde(default)]
    only_use_default_delay: bool,
    #[serde(default)]
    key_type: KeyType,
    #[serde(default = "default_key")]
    key: String,
    #[serde(flatten)]
    common: Common,
}

fn default_key() -> String {
    "remote_addr".to_string()
}

impl Config {
    /// `conn` as validated (> 0).
    fn max(&self) -> i64 {
        self.conn.unwrap_or(1)
    }
    /// `burst` as validated (>= 0).
    fn burst(&self) -> i64 {
        self.burst.unwrap_or(0)
    }

    /// The delay for the request that made the key's count `in_flight` (`0` within `conn`).
    fn delay_ms(&self, in_flight: i64) -> u64 {
        let excess = in_flight - self.max();
        if excess <= 0 {
            return 0;
        }
        let units = if self.only_use_default_delay {
            1.0
        } else {
            excess as f64
        };
        let seconds = self.default_conn_delay.unwrap_or(0.0) * units;
        (seconds * 1000.0).round() as u64
    }
}

/// Per-request context: the gauge key this request holds a slot of.
const HELD: &str = "limit-conn.key";

/// Gives back a slot. A failure is only logged: the request is over either way, and the gauge errs on the
/// strict side until the store recovers.
fn release(key: &str) {
    if let Err(e) = counters::add(key, -1) {
        log::error(&format!(
            "failed to release the limit-conn slot of {key}: {e}"
        ));
    }
}

pub struct LimitConn;

#[export_plugin]
impl Plugin for LimitConn {
    type Config = Config;
    const NAME: &'static str = "limit-conn";
    const PRIORITY: i32 = 1003;

    fn validate(cfg: &Config) -> Result<(), String> {
        field("conn", greater_than(required("conn", cfg.conn)?, 0))?;
        field(
            "burst",
            within(required("burst", cfg.burst)?, Some(0), None),
        )?;
        field(
            "default_conn_delay",
            greater_than(required("default_conn_delay", cfg.default_conn_delay)?, 0.0),
        )?;
        cfg.key_type.validate(&["var", "var_combination"])?;
        cfg.common.validate()?;
        cfg.common.local_only("limit-conn")
    }

    fn access(cfg: &Config) -> Decision {
        let key = route_scoped(&cfg.key_type.resolve(&cfg.key));
        let in_flight = match counters::add(&key, 1) {
            Ok(n) => n,
            Err(e) => return cfg.common.store_failed("conn", e),
        };
        if in_flight > cfg.max() + cfg.burst() {
            release(&key);
            return Decision::Respond(cfg.common.rejection());
        }
        context::set(HELD, &key);
        let delay_ms = cfg.delay_ms(in_flight);
        if delay_ms > 0 {
            let _ = request::delay(u32::try_from(delay_ms).unwrap_or(u32::MAX));
        }
        Decision::Continue
    }

    fn log(_cfg: &Config) {
        if let Some(key) = context::get(HELD) {
            release(&key);
        }
    }
}

#[cfg(test)]
mod tests;
