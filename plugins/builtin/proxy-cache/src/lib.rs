//! `proxy-cache`: APISIX's response cache, memory strategy. Responses are cached under a key built from
//! request variables (`cache_key`, default host + URI) and served from the gateway without contacting the
//! upstream until `cache_ttl` runs out; `PURGE` removes an entry. Every response says what happened in
//! `Apisix-Cache-Status` (`HIT`, `MISS`, `EXPIRED`, `STALE`, `BYPASS`).
//!
//! The host does the heavy lifting: `cache::lookup` coalesces concurrent misses (one request fills, the others
//! wait for its response), and `cache::store_response` captures the response as it streams to the client,
//! so the plugin never buffers a body. What stays here is APISIX's policy: which requests may be answered
//! from the cache, which responses may be stored and for how long.

use serde::Deserialize;
use sluice_builtin_support::schema::{
    each_item, field, length_within, not_empty_array, one_of, unique_non_empty, within,
};
use sluice_plugin_sdk::cache::{self, Lookup};
use sluice_plugin_sdk::{
    clock, context, export_plugin, log, request, response, Decision, Method, Plugin, Response,
};
use std::time::{Duration, UNIX_EPOCH};

/// The plugin's config, with APISIX's names; unknown fields are ignored.
#[derive(Debug, Deserialize)]
pub struct Config {
    /// APISIX defaults to `disk`; this gateway's cache lives in memory, so an absent strategy means memory
    /// (an explicit `disk` is refused rather than silently served from memory).
    #[serde(default = "default_strategy")]
    cache_strategy: String,
    /// Entries of different zones never serve each other (zones are namespaces of the one memory store).
    #[serde(default = "default_zone")]
    cache_zone: String,
    #[serde(default = "default_cache_key")]
    cache_key: Vec<String>,
    /// Variables that, when any is non-empty and not `"0"`, make the request skip the cache.
    cache_bypass: Option<Vec<String>>,
    /// Variables that, when any is non-empty and not `"0"`, keep the response out of the cache.
    no_cache: Option<Vec<String>>,
    #[serde(default = "default_methods")]
    cache_method: Vec<String>,
    #[serde(default = "default_statuses")]
    cache_http_status: Vec<i64>,
    #[serde(default)]
    hide_cache_headers: bool,
    /// Follow `Cache-Control`/`Expires` for the TTL and the request's `Cache-Control` for freshness.
    #[serde(default)]
    cache_control: bool,
    /// Seconds.
    #[serde(default = "default_ttl")]
    cache_ttl: i64,
}

fn default_strategy() -> String {
    "memory".to_string()
}
fn default_zone() -> String {
    "memory_cache".to_string()
}
fn default_cache_key() -> Vec<String> {
    vec!["$host".to_string(), "$request_uri".to_string()]
}
fn default_methods() -> Vec<String> {
    vec!["GET".to_string(), "HEAD".to_string()]
}
fn default_statuses() -> Vec<i64> {
    vec![200, 301, 404]
}
fn default_ttl() -> i64 {
    300
}

/// APISIX's pattern for `cache_key`, `cache_bypass` and `no_cache` items: a literal of two or more
/// characters not starting with `$`, or `$` and a variable name.
const ITEM_PATTERN: &str = r"(^[^\$].+$|^\$[0-9a-zA-Z_]+$)";

fn check_item(item: &String) -> Result<(), String> {
    let ok = match item.strip_prefix('$') {
        Some(name) => {
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        }
        None => item.chars().count() >= 2 && !item.contains('\n'),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "failed to match pattern {ITEM_PATTERN:?} with {item:?}"
        ))
    }
}

/// A `cache_key`-style item's value: `$name` is the variable (absent: empty), anything else is literal.
fn item_value(item: &str) -> Option<String> {
    match item.strip_prefix('$') {
        Some(name) => request::var(name),
        None => Some(item.to_string()),
    }
}

/// nginx's `proxy_cache_bypass`/`proxy_no_cache` rule: true when any value is non-empty and not `"0"`.
fn any_set(items: Option<&[String]>) -> bool {
    items
        .unwrap_or_default()
        .iter()
        .any(|item| item_value(item).is_some_and(|v| !v.is_empty() && v != "0"))
}

impl Config {
    /// The store key: the zone, then the concatenated `cache_key` values.
    fn key(&self) -> String {
        let mut key = format!("{}:", self.cache_zone);
        for item in &self.cache_key {
            key.push_str(&item_value(item).unwrap_or_default());
        }
        key
    }
    fn ttl(&self) -> Duration {
        Duration::from_secs(u64::try_from(self.cache_ttl).unwrap_or(1))
    }
}

/// A parsed `Cache-Control` (request or response): lower-case directive names with optional values.
struct Directives(Vec<(String, Option<String>)>);

impl Directives {
    fn parse(values: &[String]) -> Self {
        let list = values
            .iter()
            .flat_map(|v| v.split(','))
            .filter_map(|d| {
                let (name, value) = match d.split_once('=') {
                    Some((n, v)) => (n, Some(v.trim().trim_matches('"').to_string())),
                    None => (d, None),
                };
                let name = name.trim().to_ascii_lowercase();
                (!name.is_empty()).then_some((name, value))
            })
            .collect();
        Directives(list)
    }
    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _)| n == name)
    }
    /// A directive's value in seconds (`max-age=60`); `None` when absent or not a number.
    fn seconds(&self, name: &str) -> Option<f64> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref()?.parse::<f64>().ok())
    }
}

/// How long the upstream says its response stays fresh (`s-maxage`, `max-age`, else `Expires` minus now);
/// zero when it says nothing, as APISIX (so with `cache_control` such a response is not cached).
fn upstream_ttl(cc: &Directives) -> Duration {
    let seconds = cc.seconds("s-maxage").or_else(|| cc.seconds("max-age"));
    let seconds = seconds.or_else(|| {
        // With several Expires headers the last one wins.
        let expires = response::header_values("expires").pop()?;
        let at = httpdate::parse_http_date(expires.trim()).ok()?;
        let at_ms = at.duration_since(UNIX_EPOCH).ok()?.as_millis() as f64;
        Some((at_ms - clock::now_unix_ms() as f64) / 1000.0)
    });
    Duration::from_secs_f64(seconds.unwrap_or(0.0).clamp(0.0, 1e12))
}

/// How long to store the response being sent, or `None` when it must not be stored (APISIX's
/// `cacheable_response`).
fn storable_for(cfg: &Config) -> Option<Duration> {
    let status = response::status().map_or(0, i64::from);
    if !cfg.cache_http_status.contains(&status) || any_set(cfg.no_cache.as_deref()) {
        return None;
    }
    // Personalised or explicitly uncacheable content is never shared, whatever `cache_control` says.
    let cc = Directives::parse(&response::header_values("cache-control"));
    if cc.has("private") || cc.has("no-store") || cc.has("no-cache") {
        return None;
    }
    // A response that sets a cookie belongs to one client.
    if response::header_values("set-cookie")
        .iter()
        .any(|c| !c.is_empty())
    {
        return None;
    }
    // `Vary: *`: no later request can be known to match.
    let vary = response::header_values("vary");
    if vary
        .iter()
        .flat_map(|v| v.split(','))
        .any(|h| h.trim() == "*")
    {
        return None;
    }
    if !cfg.cache_control {
        return Some(cfg.ttl());
    }
    let ttl = upstream_ttl(&cc);
    (!ttl.is_zero()).then_some(ttl)
}

/// Headers of a stored response that must not be replayed: hop-by-hop ones, the length (the gateway sets
/// it), the previous cache status, and a rate-limit count that was only true for the request that filled.
fn replayable(name: &str, hide_cache_headers: bool) -> bool {
    const HOP_BY_HOP: [&str; 10] = [
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "apisix-cache-status",
    ];
    let name = name.to_ascii_lowercase();
    let dropped = HOP_BY_HOP.contains(&name.as_str())
        || name.contains("ratelimit-remaining")
        || (hide_cache_headers && is_cache_header(&name));
    !dropped
}

fn is_cache_header(lower_name: &str) -> bool {
    lower_name == "cache-control" || lower_name == "expires"
}

/// Per-request context: the `Apisix-Cache-Status` to send.
const STATUS: &str = "proxy-cache.status";
/// Per-request context: the key to store the response under (only when this request may fill).
const FILL: &str = "proxy-cache.fill";

/// How long a miss waits for a concurrent request that is already fetching the same key before fetching
/// itself (nginx's `proxy_cache_lock_timeout` default).
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// Records the outcome for `header_filter`; `fill` is the key when this request's response may be stored.
fn go_upstream(status: &str, fill: Option<&str>) -> Decision {
    context::set(STATUS, status);
    if let Some(key) = fill {
        context::set(FILL, key);
    }
    Decision::Continue
}

/// The cached response as the client gets it.
fn replay(cfg: &Config, stored: Response, age: Duration) -> Response {
    let mut out = Response::new(stored.status).body(stored.body);
    for (name, value) in stored.headers {
        if replayable(&name, cfg.hide_cache_headers) {
            out = out.header(name, value);
        }
    }
    out.header("Age", age.as_secs().to_string())
}

pub struct ProxyCache;

#[export_plugin]
impl Plugin for ProxyCache {
    type Config = Config;
    const NAME: &'static str = "proxy-cache";
    const PRIORITY: i32 = 1085;

    fn validate(cfg: &Config) -> Result<(), String> {
        field(
            "cache_strategy",
            one_of(&cfg.cache_strategy, &["disk", "memory"]),
        )?;
        if cfg.cache_strategy == "disk" {
            return Err(
                "cache_strategy \"disk\" is not available yet: this gateway caches responses in \
                        memory only (use \"memory\")"
                    .to_string(),
            );
        }
        field("cache_zone", length_within(&cfg.cache_zone, 1, Some(100)))?;
        // APISIX's own rule: the disk default zone cannot hold a memory cache.
        if cfg.cache_zone == "disk_cache_one" {
            return Err("invalid or empty cache_zone for cache_strategy: memory".to_string());
        }
        for (name, items) in [
            ("cache_key", Some(&cfg.cache_key)),
            ("cache_bypass", cfg.cache_bypass.as_ref()),
            ("no_cache", cfg.no_cache.as_ref()),
        ] {
            if let Some(items) = items {
                field(name, not_empty_array(items))?;
                each_item(name, items, check_item)?;
            }
        }
        if let Some(key) = cfg.cache_key.iter().find(|k| *k == "$request_method") {
            return Err(format!("cache_key variable {key} unsupported"));
        }
        field("cache_method", unique_non_empty(&cfg.cache_method))?;
        each_item("cache_method", &cfg.cache_method, |m| {
            one_of(m, &["GET", "POST", "HEAD"])
        })?;
        field(
            "cache_http_status",
            unique_non_empty(&cfg.cache_http_status),
        )?;
        each_item("cache_http_status", &cfg.cache_http_status, |s| {
            within(*s, Some(200), Some(599))
        })?;
        field("cache_ttl", within(cfg.cache_ttl, Some(1), None))
    }

    fn access(cfg: &Config) -> Decision {
        let key = cfg.key();
        let method = request::method();
        if method.as_str() == "PURGE" {
            let status = if cache::purge(&key) { 200 } else { 404 };
            return Decision::Respond(Response::new(status));
        }
        if !cfg.cache_method.iter().any(|m| m == method.as_str()) {
            return go_upstream("MISS", None);
        }
        let cc = Directives::parse(&request::header_values("cache-control"));
        if any_set(cfg.cache_bypass.as_deref())
            || (cfg.cache_control && (cc.has("no-store") || cc.has("no-cache")))
        {
            return go_upstream("BYPASS", None);
        }
        match cache::lookup(&key, LOCK_WAIT) {
            Lookup::Hit { response, age } => {
                let too_old = cfg.cache_control
                    && cc
                        .seconds("max-age")
                        .is_some_and(|max| age.as_secs_f64() > max);
                if too_old {
                    return go_upstream("STALE", Some(&key));
                }
                context::set(STATUS, "HIT");
                Decision::Respond(replay(cfg, response, age))
            }
            Lookup::Miss if cfg.cache_control && cc.has("only-if-cached") => {
                context::set(STATUS, "MISS");
                Decision::Respond(Response::new(504))
            }
            Lookup::Miss => go_upstream("MISS", Some(&key)),
            Lookup::Expired => go_upstream("EXPIRED", Some(&key)),
        }
    }

    fn header_filter(cfg: &Config) -> Decision {
        let Some(status) = context::get(STATUS) else {
            return Decision::Continue; // PURGE, or the request never reached this plugin's access.
        };
        // A HEAD response has no body to store; a later GET must not be answered with an empty one.
        let fill = context::get(FILL).filter(|_| request::method() != Method::Head);
        if let Some(key) = fill {
            if let Some(ttl) = storable_for(cfg) {
                if let Err(e) = cache::store_response(&key, ttl) {
                    log::warn(&format!("proxy-cache: not storing {key}: {e}"));
                }
            }
        }
        if cfg.hide_cache_headers {
            let _ = response::remove_header("cache-control");
            let _ = response::remove_header("expires");
        }
        let _ = response::set_header("Apisix-Cache-Status", &status);
        Decision::Continue
    }
}

#[cfg(test)]
mod tests;
