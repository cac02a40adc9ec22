//! `limit-count`: APISIX's fixed-window quota. At most `count` requests per `time_window` seconds per key;
//! the rest get `rejected_code` (503) until the window resets.
//!
//! Exact under concurrency because the whole decision is one atomic increment (`counters::incr`, or
//! `shared::incr` on Redis with `policy: "redis"`/`"redis-cluster"`, which makes the limit hold across every
//! gateway node): the count a request sees already includes itself, so no two requests can both take the
//! last slot. Clients
//! learn their quota from `X-RateLimit-Limit` / `-Remaining` / `-Reset`, on accepted responses (set in
//! `header_filter`, which sees the upstream's response) and on rejections.

use serde::Deserialize;
use sluice_builtin_support::limit::{ceil_secs, route_scoped, Common, KeyType};
use sluice_builtin_support::schema::{field, greater_than, not_empty, required};
use sluice_plugin_sdk::{context, export_plugin, response, Decision, Plugin, Response};
use std::time::Duration;

/// The plugin's config, with APISIX's names and defaults (the `policy`/`redis_*` ones are in [`Common`]).
/// Unknown fields are ignored, as APISIX does.
#[derive(Debug, Deserialize)]
pub struct Config {
    /// Required; `Option` so that a missing one gets APISIX's message from `validate`.
    count: Option<i64>,
    /// Seconds; required like `count`.
    time_window: Option<i64>,
    #[serde(default)]
    key_type: KeyType,
    #[serde(default = "default_key")]
    key: String,
    /// Routes naming the same group share one counter per key.
    group: Option<String>,
    #[serde(default = "yes")]
    show_limit_quota_header: bool,
    #[serde(flatten)]
    common: Common,
}

fn default_key() -> String {
    "remote_addr".to_string()
}

fn yes() -> bool {
    true
}

impl Config {
    /// `count` as validated (> 0); the fallback is unreachable after `validate`.
    fn limit(&self) -> u64 {
        self.count.and_then(|c| u64::try_from(c).ok()).unwrap_or(0)
    }
    /// `time_window` as validated (> 0).
    fn window(&self) -> u64 {
        self.time_window
            .and_then(|w| u64::try_from(w).ok())
            .unwrap_or(1)
    }
}

/// Per-request context: `"<limit> <remaining> <reset>"` for `header_filter`.
const QUOTA: &str = "limit-count.quota";

/// The quota headers, in the order APISIX sends them.
fn quota_headers<'a>(
    limit: &'a str,
    remaining: &'a str,
    reset: &'a str,
) -> [(&'static str, &'a str); 3] {
    [
        ("X-RateLimit-Limit", limit),
        ("X-RateLimit-Remaining", remaining),
        ("X-RateLimit-Reset", reset),
    ]
}

pub struct LimitCount;

#[export_plugin]
impl Plugin for LimitCount {
    type Config = Config;
    const NAME: &'static str = "limit-count";
    const PRIORITY: i32 = 1002;

    fn validate(cfg: &Config) -> Result<(), String> {
        field("count", greater_than(required("count", cfg.count)?, 0))?;
        field(
            "time_window",
            greater_than(required("time_window", cfg.time_window)?, 0),
        )?;
        cfg.key_type
            .validate(&["var", "var_combination", "constant"])?;
        field("group", not_empty(cfg.group.as_deref()))?;
        cfg.common.validate()
    }

    fn access(cfg: &Config) -> Decision {
        let window = cfg.window();
        let key = cfg.key_type.resolve(&cfg.key);
        let key = match &cfg.group {
            Some(group) => format!("group:{group}:{key}"),
            // The window is part of the key so that editing it starts a fresh counter instead of
            // inheriting one whose window has another length.
            None => route_scoped(&format!("{window}:{key}")),
        };
        let window = Duration::from_secs(window);
        let counted = match cfg.common.on_store(|store| store.incr(&key, 1, window)) {
            Ok(counted) => counted,
            Err(e) => return cfg.common.store_failed("count", e),
        };
        let limit = cfg.limit();
        let reset = ceil_secs(counted.reset_after).to_string();
        if counted.count > limit {
            let mut rejection: Response = cfg.common.rejection();
            if cfg.show_limit_quota_header {
                for (name, value) in quota_headers(&limit.to_string(), "0", &reset) {
                    rejection = rejection.header(name, value);
                }
            }
            return Decision::Respond(rejection);
        }
        if cfg.show_limit_quota_header {
            context::set(QUOTA, &format!("{limit} {} {reset}", limit - counted.count));
        }
        Decision::Continue
    }

    fn header_filter(_cfg: &Config) -> Decision {
        let Some(quota) = context::get(QUOTA) else {
            return Decision::Continue; // Not counted here (rejected, or answered by an earlier plugin).
        };
        let mut parts = quota.split(' ');
        if let (Some(limit), Some(remaining), Some(reset)) =
            (parts.next(), parts.next(), parts.next())
        {
            for (name, value) in quota_headers(limit, remaining, reset) {
                let _ = response::set_header(name, value);
            }
        }
        Decision::Continue
    }
}

#[cfg(test)]
mod tests;
