//! Where a limiting plugin counts: this gateway's memory (`policy: "local"`, the default), or a Redis
//! server or cluster every gateway shares (`"redis"`, `"redis-cluster"`), named with APISIX's `redis_*`
//! fields, so an APISIX config moves over unchanged and a limit holds across all nodes.
//!
//! The fields compile once into a [`Policy`] (an SDK [`Backend`] the host connects to), with APISIX's
//! defaults (port 6379, database 0, `redis_timeout` 1000 ms) and its schema messages. A [`Store`] then runs
//! the counter and compare-and-swap operations on whichever store the policy names.

use crate::compiled::Compile;
use crate::schema::{each_item, field, invalid, not_empty_array, one_of, required, within};
use serde::Deserialize;
use sluice_plugin_sdk::shared::{self, Backend, Redis, RedisCluster, RedisNode};
use sluice_plugin_sdk::{counters, kv, StoreError, WindowCount};
use std::time::Duration;

/// The fields as written (APISIX's names; ones it has for its connection pool are ignored here, the host
/// pools connections itself).
#[derive(Debug, Deserialize)]
pub struct RawPolicy {
    #[serde(default = "local")]
    policy: String,
    redis_host: Option<String>,
    redis_port: Option<i64>,
    redis_username: Option<String>,
    redis_password: Option<String>,
    redis_database: Option<i64>,
    /// Milliseconds.
    redis_timeout: Option<i64>,
    #[serde(default)]
    redis_ssl: bool,
    redis_cluster_nodes: Option<Vec<String>>,
    #[serde(default)]
    redis_cluster_ssl: bool,
}

fn local() -> String {
    "local".to_string()
}

/// The store a config names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    Local,
    Shared(Backend),
}

/// `host:port`, or `[v6]:port`.
fn node(item: &str) -> Result<RedisNode, String> {
    let bad = || format!("{item:?} is not host:port");
    let (host, port) = item.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match port.parse::<u16>() {
        Ok(port) if port > 0 && !host.is_empty() => Ok(RedisNode {
            host: host.to_string(),
            port,
        }),
        _ => Err(bad()),
    }
}

impl RawPolicy {
    fn timeout(&self) -> Result<Duration, String> {
        let ms = self.redis_timeout.unwrap_or(1000);
        // The host waits at most 60 s for one call, whatever is asked.
        field("redis_timeout", within(ms, Some(1), Some(60_000)))?;
        Ok(Duration::from_millis(ms.unsigned_abs()))
    }
}

impl Compile for Policy {
    type Raw = RawPolicy;

    fn compile(raw: RawPolicy) -> Result<Policy, String> {
        field(
            "policy",
            one_of(&raw.policy, &["local", "redis", "redis-cluster"]),
        )?;
        match raw.policy.as_str() {
            "redis" => {
                if raw.redis_ssl {
                    return Err(invalid("redis_ssl", "TLS to Redis is not supported yet"));
                }
                let host = required("redis_host", raw.redis_host.clone())?;
                let port = raw.redis_port.unwrap_or(6379);
                field("redis_port", within(port, Some(1), Some(65535)))?;
                let database = raw.redis_database.unwrap_or(0);
                field(
                    "redis_database",
                    within(database, Some(0), Some(i64::from(u32::MAX))),
                )?;
                Ok(Policy::Shared(Backend::Redis(Redis {
                    node: RedisNode {
                        host,
                        port: u16::try_from(port).unwrap_or(6379),
                    },
                    username: raw.redis_username.clone(),
                    password: raw.redis_password.clone(),
                    database: u32::try_from(database).unwrap_or(0),
                    timeout: raw.timeout()?,
                })))
            }
            "redis-cluster" => {
                if raw.redis_cluster_ssl {
                    return Err(invalid(
                        "redis_cluster_ssl",
                        "TLS to Redis is not supported yet",
                    ));
                }
                let items = required("redis_cluster_nodes", raw.redis_cluster_nodes.as_ref())?;
                field("redis_cluster_nodes", not_empty_array(items))?;
                each_item("redis_cluster_nodes", items, |i| node(i).map(drop))?;
                Ok(Policy::Shared(Backend::RedisCluster(RedisCluster {
                    nodes: items.iter().filter_map(|i| node(i).ok()).collect(),
                    username: raw.redis_username.clone(),
                    password: raw.redis_password.clone(),
                    timeout: raw.timeout()?,
                })))
            }
            _ => Ok(Policy::Local),
        }
    }
}

/// The counters and values of one store.
#[derive(Debug, Clone, Copy)]
pub enum Store<'a> {
    /// This gateway's memory (`counters`, `kv`).
    Local,
    /// A store every gateway shares (`shared`).
    Shared(&'a Backend),
}

impl Store<'_> {
    pub fn incr(self, key: &str, delta: u64, window: Duration) -> Result<WindowCount, StoreError> {
        match self {
            Store::Local => counters::incr(key, delta, window),
            Store::Shared(b) => shared::incr(b, key, delta, window),
        }
    }

    pub fn get(self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            Store::Local => Ok(kv::get(key)),
            Store::Shared(b) => shared::get(b, key),
        }
    }

    pub fn compare_and_swap(
        self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        match self {
            Store::Local => kv::compare_and_swap(key, expected, new, ttl),
            Store::Shared(b) => shared::compare_and_swap(b, key, expected, new, ttl),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compiled::Compiled;

    fn compile(json: &str) -> Result<Policy, String> {
        let c: Compiled<Policy> = serde_json::from_str(json).expect("shape");
        c.validate()?;
        Ok(c.rules().cloned().expect("validated"))
    }

    #[test]
    fn apisix_fields_compile_to_a_backend_with_apisix_defaults() {
        assert_eq!(compile("{}"), Ok(Policy::Local));
        assert_eq!(
            compile(r#"{"policy": "local", "redis_host": "x"}"#),
            Ok(Policy::Local)
        );
        let Ok(Policy::Shared(Backend::Redis(r))) =
            compile(r#"{"policy": "redis", "redis_host": "10.0.0.1", "redis_password": "pw"}"#)
        else {
            panic!("a redis backend")
        };
        assert_eq!(r.node.to_string(), "10.0.0.1:6379");
        assert_eq!(
            (r.database, r.timeout, r.password.as_deref()),
            (0, Duration::from_secs(1), Some("pw"))
        );
        let Ok(Policy::Shared(Backend::RedisCluster(c))) = compile(
            r#"{"policy": "redis-cluster", "redis_cluster_nodes": ["a:7000", "[::1]:7001"], "redis_timeout": 250}"#,
        ) else {
            panic!("a cluster backend")
        };
        assert_eq!(
            c.nodes.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["a:7000", "::1:7001"]
        );
        assert_eq!(c.timeout, Duration::from_millis(250));
    }

    #[test]
    fn bad_fields_get_apisix_worded_errors() {
        let cases = [
            (
                r#"{"policy": "memcached"}"#,
                r#"property "policy" validation failed: matches none of the enum values"#,
            ),
            (
                r#"{"policy": "redis"}"#,
                r#"property "redis_host" is required"#,
            ),
            (
                r#"{"policy": "redis", "redis_host": "h", "redis_port": 0}"#,
                r#"property "redis_port" validation failed: expected 0 to be at least 1"#,
            ),
            (
                r#"{"policy": "redis", "redis_host": "h", "redis_timeout": 0}"#,
                r#"property "redis_timeout" validation failed: expected 0 to be at least 1"#,
            ),
            (
                r#"{"policy": "redis", "redis_host": "h", "redis_database": -1}"#,
                r#"property "redis_database" validation failed: expected -1 to be at least 0"#,
            ),
            (
                r#"{"policy": "redis", "redis_host": "h", "redis_ssl": true}"#,
                r#"property "redis_ssl" validation failed: TLS to Redis is not supported yet"#,
            ),
            (
                r#"{"policy": "redis-cluster"}"#,
                r#"property "redis_cluster_nodes" is required"#,
            ),
            (
                r#"{"policy": "redis-cluster", "redis_cluster_nodes": []}"#,
                r#"property "redis_cluster_nodes" validation failed: expect array to have at least 1 items"#,
            ),
            (
                r#"{"policy": "redis-cluster", "redis_cluster_nodes": ["a:1", "nope"]}"#,
                r#"property "redis_cluster_nodes" validation failed: failed to validate item 2: "nope" is not host:port"#,
            ),
        ];
        for (json, want) in cases {
            assert_eq!(compile(json), Err(want.to_string()), "{json}");
        }
    }
}
