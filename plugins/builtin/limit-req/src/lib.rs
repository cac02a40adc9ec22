//! `limit-req`: APISIX's (nginx's) leaky bucket. Requests drain at `rate` per second per key; up to `burst`
//! requests above that rate are delayed until they fit the rate (or passed at once with `nodelay`), and the
//! rest are rejected with `rejected_code` (503).
//!
//! The bucket is the nginx `limit_req` record (excess in milli-requests, time of the last accepted request)
//! kept in the kv store, or on Redis with `policy: "redis"`/`"redis-cluster"` so that every gateway node
//! drains one bucket. Concurrent requests update it with a read / compute / compare-and-swap loop, so two
//! requests never both fill the same room in the bucket. The delay is `request::delay`: the gateway
//! holds the request on a timer, no worker blocks.

use serde::Deserialize;
use sluice_builtin_support::cas::{retry, CAS_ATTEMPTS};
use sluice_builtin_support::limit::{route_scoped, Common, KeyType};
use sluice_builtin_support::schema::{field, greater_than, required, within};
use sluice_plugin_sdk::{clock, export_plugin, request, Decision, Plugin};
use std::time::Duration;

/// The plugin's config, with APISIX's names and defaults; unknown fields are ignored.
#[derive(Debug, Deserialize)]
pub struct Config {
    /// Requests per second; required (`Option` so a missing one gets APISIX's message).
    rate: Option<f64>,
    /// Requests above `rate` that are delayed rather than rejected; required.
    burst: Option<f64>,
    #[serde(default)]
    key_type: KeyType,
    /// Required in APISIX's limit-req (unlike limit-count).
    key: Option<String>,
    #[serde(default)]
    nodelay: bool,
    #[serde(flatten)]
    common: Common,
}

impl Config {
    /// `rate` in milli-requests per second, as nginx counts (validated > 0).
    fn rate_milli(&self) -> f64 {
        self.rate.unwrap_or(1.0) * 1000.0
    }
    /// `burst` in milli-requests (validated >= 0).
    fn burst_milli(&self) -> f64 {
        self.burst.unwrap_or(0.0) * 1000.0
    }
}

/// The bucket of one key: nginx's `excess` (milli-requests waiting above the rate) and `last` (when the
/// last request was accepted, ms since the epoch).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Bucket {
    excess: f64,
    last_ms: u64,
}

impl Bucket {
    fn encode(self) -> [u8; 16] {
        let mut out = [0; 16];
        out[..8].copy_from_slice(&self.excess.to_le_bytes());
        out[8..].copy_from_slice(&self.last_ms.to_le_bytes());
        out
    }
    fn decode(bytes: &[u8]) -> Option<Bucket> {
        let excess = f64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
        let last_ms = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
        Some(Bucket { excess, last_ms })
    }
}

/// What the bucket says about one more request now.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Verdict {
    /// Accepted; the bucket becomes `Bucket`, and the request waits `delay_ms` to fit the rate.
    Accept(Bucket, u64),
    /// Over `burst`: rejected, the bucket is left as it was.
    Reject,
}

/// nginx's `ngx_http_limit_req_lookup` (resty.limit.req `incoming`): the excess leaks at `rate`, each
/// request adds 1000, and a request that would leave more than `burst` waiting is rejected.
fn leak(previous: Option<Bucket>, now_ms: u64, rate_milli: f64, burst_milli: f64) -> Verdict {
    let excess = match previous {
        None => 0.0,
        Some(b) => {
            let elapsed_ms = now_ms.abs_diff(b.last_ms) as f64;
            (b.excess - rate_milli * elapsed_ms / 1000.0 + 1000.0).max(0.0)
        }
    };
    if excess > burst_milli {
        return Verdict::Reject;
    }
    // excess / rate seconds, in whole milliseconds.
    let delay_ms = (excess * 1000.0 / rate_milli).round() as u64;
    Verdict::Accept(
        Bucket {
            excess,
            last_ms: now_ms,
        },
        delay_ms,
    )
}

/// How long a bucket must be kept: until it has leaked empty *and* a new request would start from zero, i.e.
/// `(excess + 1000) / rate`. Dropping it earlier would forget part of the excess.
fn keep_for(bucket: Bucket, rate_milli: f64) -> Duration {
    let ms = ((bucket.excess + 1000.0) * 1000.0 / rate_milli).ceil() + 1.0;
    Duration::from_millis(ms.min(u64::MAX as f64) as u64)
}

pub struct LimitReq;

#[export_plugin]
impl Plugin for LimitReq {
    type Config = Config;
    const NAME: &'static str = "limit-req";
    const PRIORITY: i32 = 1001;

    fn validate(cfg: &Config) -> Result<(), String> {
        field("rate", greater_than(required("rate", cfg.rate)?, 0.0))?;
        field(
            "burst",
            within(required("burst", cfg.burst)?, Some(0.0), None),
        )?;
        required("key", cfg.key.as_ref())?;
        cfg.key_type.validate(&["var", "var_combination"])?;
        cfg.common.validate()
    }

    fn access(cfg: &Config) -> Decision {
        let key = route_scoped(
            &cfg.key_type
                .resolve(cfg.key.as_deref().unwrap_or("remote_addr")),
        );
        let (rate, burst) = (cfg.rate_milli(), cfg.burst_milli());
        let outcome = cfg.common.on_store(|store| {
            retry(CAS_ATTEMPTS, || {
                let current = store.get(&key)?;
                let previous = current.as_deref().and_then(Bucket::decode);
                match leak(previous, clock::now_unix_ms(), rate, burst) {
                    Verdict::Reject => Ok(Some(Verdict::Reject)),
                    Verdict::Accept(bucket, delay) => {
                        let swapped = store.compare_and_swap(
                            &key,
                            current.as_deref(),
                            &bucket.encode(),
                            Some(keep_for(bucket, rate)),
                        )?;
                        Ok(swapped.then_some(Verdict::Accept(bucket, delay)))
                    }
                }
            })
        });
        match outcome {
            Ok(Some(Verdict::Reject)) => Decision::Respond(cfg.common.rejection()),
            Ok(Some(Verdict::Accept(_, delay_ms))) => {
                // nginx does not sleep below a millisecond either.
                if delay_ms >= 1 && !cfg.nodelay {
                    let _ = request::delay(u32::try_from(delay_ms).unwrap_or(u32::MAX));
                }
                Decision::Continue
            }
            Ok(None) => cfg.common.store_failed(
                "req",
                format!("{CAS_ATTEMPTS} concurrent updates of {key} collided"),
            ),
            Err(e) => cfg.common.store_failed("req", e),
        }
    }
}

#[cfg(test)]
mod tests;
