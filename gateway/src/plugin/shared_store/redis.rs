//! [`SharedStores`] on Redis and Redis Cluster.
//!
//! One connection per distinct [`Backend`]: a `ConnectionManager` (multiplexed, reconnects by itself) for
//! a server, an async cluster connection (slot routing, redirects) for a cluster; both pipeline concurrent
//! calls over their connections, which is the pooling a multiplexed protocol needs. A connection is made on
//! first use and its failure is not remembered: the next call tries again, within its own timeout.
//!
//! Every operation is one Lua script, so it is one round trip and atomic on the server (and routes by its
//! one key in a cluster): `incr` is INCRBY plus a PEXPIRE on the first increment of a window, `get` is GET,
//! and `compare-and-swap` is GET, compare, SET ... PX.

use super::{Backend, RedisAccess, SharedStores};
use crate::plugin::io_runtime::{IoError, IoRuntime};
use crate::plugin::services::{StoreError, WindowCount};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::OnceCell;

/// Distinct stores kept connected at once; a config naming more gets `unavailable` for the extra ones
/// (entries no call is using are dropped first).
pub const MAX_BACKENDS: usize = 64;

/// Adds ARGV[1] to KEYS[1]; the first increment of a window sets its expiry to ARGV[2] ms. Returns the
/// count and the milliseconds left in the window.
const INCR: &str = r"
local count = redis.call('INCRBY', KEYS[1], ARGV[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  ttl = tonumber(ARGV[2])
end
return {count, ttl}
";

/// Sets KEYS[1] to ARGV[3] (expiring after ARGV[4] ms unless it is empty) if it currently holds ARGV[2]
/// (ARGV[1] = '1') or nothing (ARGV[1] = '0'). Returns 1 if it did.
const CAS: &str = r"
local current = redis.call('GET', KEYS[1])
local matches
if ARGV[1] == '1' then matches = (current == ARGV[2]) else matches = (current == false) end
if not matches then return 0 end
if ARGV[4] == '' then
  redis.call('SET', KEYS[1], ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
end
return 1
";

#[derive(Clone)]
enum Link {
    Server(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Link {
    async fn query<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> redis::RedisResult<T> {
        match self {
            Link::Server(c) => cmd.query_async(c).await,
            Link::Cluster(c) => cmd.query_async(c).await,
        }
    }
}

/// A backend's connection, made on first use.
struct Conn {
    backend: Backend,
    link: OnceCell<Link>,
}

fn connection_info(
    node: &super::RedisNode,
    database: u32,
    access: &RedisAccess,
) -> redis::RedisResult<ConnectionInfo> {
    let mut settings = RedisConnectionInfo::default().set_db(i64::from(database));
    if let Some(user) = &access.username {
        settings = settings.set_username(user);
    }
    if let Some(password) = &access.password {
        settings = settings.set_password(&password.0);
    }
    Ok(ConnectionAddr::Tcp(node.host.clone(), node.port)
        .into_connection_info()?
        .set_redis_settings(settings))
}

async fn connect(backend: &Backend) -> redis::RedisResult<Link> {
    let timeout = backend.timeout();
    match backend {
        Backend::Redis {
            node,
            database,
            access,
        } => {
            let client = redis::Client::open(connection_info(node, *database, access)?)?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                // Reconnect once per failure; callers are bounded by the timeout anyway.
                .set_number_of_retries(1);
            Ok(Link::Server(
                ConnectionManager::new_with_config(client, config).await?,
            ))
        }
        Backend::RedisCluster { nodes, access } => {
            let seeds = nodes
                .iter()
                .map(|n| connection_info(n, 0, access))
                .collect::<redis::RedisResult<Vec<_>>>()?;
            let mut builder = ClusterClientBuilder::new(seeds)
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .retries(1);
            if let Some(user) = &access.username {
                builder = builder.username(user);
            }
            if let Some(password) = &access.password {
                builder = builder.password(&password.0);
            }
            Ok(Link::Cluster(
                builder.build()?.get_async_connection().await?,
            ))
        }
    }
}

pub struct RedisShared {
    io: IoRuntime,
    conns: Mutex<HashMap<Backend, Arc<Conn>>>,
}

impl Default for RedisShared {
    fn default() -> Self {
        RedisShared {
            io: IoRuntime::new("plugin-redis"),
            conns: Mutex::new(HashMap::new()),
        }
    }
}

impl RedisShared {
    fn conn(&self, backend: &Backend) -> Result<Arc<Conn>, StoreError> {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = conns.get(backend) {
            return Ok(Arc::clone(c));
        }
        if conns.len() >= MAX_BACKENDS {
            // Idle ones go first; one that a call holds right now stays.
            conns.retain(|_, c| Arc::strong_count(c) > 1);
            if conns.len() >= MAX_BACKENDS {
                return Err(StoreError::Unavailable(format!(
                    "{backend}: more than {MAX_BACKENDS} distinct shared stores are in use"
                )));
            }
        }
        let conn = Arc::new(Conn {
            backend: backend.clone(),
            link: OnceCell::new(),
        });
        conns.insert(backend.clone(), Arc::clone(&conn));
        Ok(conn)
    }

    /// Runs one script on `backend` (connecting first if needed), bounded by the backend's timeout.
    fn call<T, F, Fut>(&self, backend: &Backend, script: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Link) -> Fut + Send + 'static,
        Fut: Future<Output = redis::RedisResult<T>> + Send,
    {
        let conn = self.conn(backend)?;
        let timeout = backend.timeout();
        let run = async move {
            let link = conn.link.get_or_try_init(|| connect(&conn.backend)).await?;
            script(link.clone()).await
        };
        match self.io.run(timeout, run) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(StoreError::Unavailable(format!("{backend}: {e}"))),
            Err(IoError::Timeout) => Err(StoreError::Unavailable(format!(
                "{backend} did not answer within {} ms",
                timeout.as_millis()
            ))),
            Err(e @ IoError::NoRuntime(..)) => Err(StoreError::Unavailable(e.to_string())),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl SharedStores for RedisShared {
    fn incr(
        &self,
        backend: &Backend,
        key: &str,
        delta: u64,
        window: Duration,
    ) -> Result<WindowCount, StoreError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(INCR).arg(1).arg(key).arg(delta).arg(millis(window));
        let (count, left_ms): (u64, u64) =
            self.call(
                backend,
                move |mut link| async move { link.query(&cmd).await },
            )?;
        Ok(WindowCount {
            count,
            reset_after: Duration::from_millis(left_ms),
        })
    }

    fn get(&self, backend: &Backend, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(key);
        self.call(
            backend,
            move |mut link| async move { link.query(&cmd).await },
        )
    }

    fn compare_and_swap(
        &self,
        backend: &Backend,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(CAS)
            .arg(1)
            .arg(key)
            .arg(if expected.is_some() { "1" } else { "0" })
            .arg(expected.unwrap_or_default())
            .arg(new)
            .arg(ttl.map_or_else(String::new, |t| millis(t).to_string()));
        let swapped: i64 = self.call(
            backend,
            move |mut link| async move { link.query(&cmd).await },
        )?;
        Ok(swapped == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::shared_store::{RedisNode, Secret};
    use std::time::Instant;

    fn unreachable(port: u16, timeout: Duration) -> Backend {
        Backend::Redis {
            node: RedisNode {
                host: "127.0.0.1".into(),
                port,
            },
            database: 0,
            access: RedisAccess {
                username: None,
                password: Some(Secret("pw".into())),
                timeout,
            },
        }
    }

    #[test]
    fn a_store_nobody_answers_is_unavailable_within_its_timeout() {
        // Bound, never listening: connections are refused at once.
        let refused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = refused.local_addr().unwrap().port();
        drop(refused);
        let shared = RedisShared::default();
        let backend = unreachable(port, Duration::from_millis(300));
        let started = Instant::now();
        let err = shared
            .incr(&backend, "k", 1, Duration::from_secs(1))
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2), "{err}");
        let StoreError::Unavailable(msg) = err else {
            panic!("{err:?}")
        };
        assert!(
            msg.starts_with(&format!("redis 127.0.0.1:{port} (db 0)")),
            "{msg}"
        );
        assert!(
            !format!("{backend:?}").contains("pw"),
            "secrets never print"
        );
    }

    #[test]
    fn distinct_stores_are_bounded() {
        let shared = RedisShared::default();
        let held: Vec<_> = (0..MAX_BACKENDS as u16)
            .map(|i| {
                shared
                    .conn(&unreachable(1000 + i, Duration::from_secs(1)))
                    .unwrap()
            })
            .collect();
        let one_more = unreachable(2000, Duration::from_secs(1));
        assert!(shared.conn(&one_more).is_err(), "all in use");
        drop(held);
        assert!(shared.conn(&one_more).is_ok(), "idle ones make room");
    }
}
