//! The response cache behind the `cache` import: bounded by bytes with LRU eviction, TTL per entry, and
//! **fill locks** that coalesce concurrent misses.
//!
//! Why coalescing lives in the store rather than in the plugin: the plugin cannot wait without holding an
//! instance and a thread, and it cannot see other requests. The first request to miss a key gets a
//! [`FillLock`]; later requests for that key wait on the host (bounded) until the filler stores the
//! response or gives up, so a burst of misses for one hot key costs one upstream fetch (nginx's
//! `proxy_cache_lock`). The lock is released when it is dropped, whatever path the request took.
use super::bounded_map::{BoundedTtlMap, Eviction, Lookup};
use super::services::StoreError;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A cached response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedResponse {
    /// Status.
    pub status: u16,
    /// Headers in order.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Bytes,
}

/// The answer of [`ResponseCache::lookup`].
#[derive(Debug)]
pub enum CacheLookup {
    /// Cached and fresh.
    Hit {
        /// The response.
        response: CachedResponse,
        /// Time since it was stored.
        age: Duration,
    },
    /// Not cached; the lock is `Some` when the caller is now the filler.
    Miss(Option<FillLock>),
    /// Was cached, TTL ran out; the lock as for `Miss`.
    Expired(Option<FillLock>),
}

/// Held by the one request that fetches a missed key; dropping it wakes the waiters.
pub struct FillLock {
    /// Held only for its `Drop`, which releases the lock in the store that made it.
    _guard: Box<dyn Send + Sync>,
}

impl FillLock {
    /// Wraps a store-specific guard whose `Drop` releases the lock.
    pub fn new(guard: impl Send + Sync + 'static) -> Self {
        FillLock {
            _guard: Box::new(guard),
        }
    }
}

impl std::fmt::Debug for FillLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FillLock")
    }
}

/// Response cache store.
pub trait ResponseCache: Send + Sync {
    /// A fresh cached response, or the fill lock for it (see the module docs). Blocks up to `wait` when
    /// another request is filling `key`; the caller runs it where blocking is allowed.
    fn lookup(&self, key: &str, wait: Duration) -> CacheLookup;
    /// A live cached response (no locking).
    fn get(&self, key: &str) -> Option<CachedResponse>;
    /// Stores a response for `ttl`.
    fn put(&self, key: &str, value: CachedResponse, ttl: Duration) -> Result<(), StoreError>;
    /// Removes; true if present.
    fn purge(&self, key: &str) -> bool;
}

/// A fill in progress: waiters sleep on `cv` until `done`.
#[derive(Default)]
struct Fill {
    done: Mutex<bool>,
    cv: Condvar,
}

type Fills = Arc<Mutex<HashMap<String, Arc<Fill>>>>;

struct LocalFillGuard {
    fills: Fills,
    key: String,
    fill: Arc<Fill>,
}

impl Drop for LocalFillGuard {
    fn drop(&mut self) {
        if let Ok(mut fills) = self.fills.lock() {
            if fills
                .get(&self.key)
                .is_some_and(|f| Arc::ptr_eq(f, &self.fill))
            {
                fills.remove(&self.key);
            }
        }
        if let Ok(mut done) = self.fill.done.lock() {
            *done = true;
        }
        self.fill.cv.notify_all();
    }
}

/// In-process response cache: at most `max_bytes` in all and `max_entry` per response, LRU eviction.
pub struct LocalCache {
    map: Mutex<BoundedTtlMap<CachedResponse>>,
    fills: Fills,
}

impl LocalCache {
    /// A cache of `max_bytes` in all, `max_entry` per response.
    pub fn new(max_bytes: usize, max_entry: usize) -> Self {
        Self {
            map: Mutex::new(BoundedTtlMap::new(
                max_bytes,
                max_entry,
                Eviction::LeastRecentlyUsed,
            )),
            fills: Arc::default(),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, BoundedTtlMap<CachedResponse>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the fill lock for `key`, or returns the fill to wait for.
    fn claim(&self, key: &str) -> Result<FillLock, Arc<Fill>> {
        let mut fills = self.fills.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = fills.get(key) {
            return Err(Arc::clone(f));
        }
        let fill = Arc::new(Fill::default());
        fills.insert(key.to_string(), Arc::clone(&fill));
        Ok(FillLock::new(LocalFillGuard {
            fills: Arc::clone(&self.fills),
            key: key.to_string(),
            fill,
        }))
    }
}

impl ResponseCache for LocalCache {
    fn lookup(&self, key: &str, wait: Duration) -> CacheLookup {
        let until = Instant::now() + wait;
        let mut expired = false;
        loop {
            match self.map().lookup(key) {
                Lookup::Live { value, age } => {
                    return CacheLookup::Hit {
                        response: value,
                        age,
                    }
                }
                Lookup::Expired => expired = true,
                Lookup::Absent => {}
            }
            let fill = match self.claim(key) {
                Ok(lock) if expired => return CacheLookup::Expired(Some(lock)),
                Ok(lock) => return CacheLookup::Miss(Some(lock)),
                Err(fill) => fill,
            };
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return if expired {
                    CacheLookup::Expired(None)
                } else {
                    CacheLookup::Miss(None)
                };
            }
            let done = fill.done.lock().unwrap_or_else(|p| p.into_inner());
            if !*done {
                let _ = fill.cv.wait_timeout(done, left);
            }
        }
    }
    fn get(&self, key: &str) -> Option<CachedResponse> {
        self.map().get(key)
    }
    fn put(&self, key: &str, value: CachedResponse, ttl: Duration) -> Result<(), StoreError> {
        let size = value.body.len()
            + value
                .headers
                .iter()
                .map(|(n, v)| n.len() + v.len())
                .sum::<usize>();
        self.map().insert(key, value, size, Some(ttl))
    }
    fn purge(&self, key: &str) -> bool {
        self.map().remove(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(body: &'static str) -> CachedResponse {
        CachedResponse {
            status: 200,
            headers: vec![],
            body: Bytes::from_static(body.as_bytes()),
        }
    }

    #[test]
    fn first_miss_fills_and_waiters_get_the_hit() {
        let cache = Arc::new(LocalCache::new(1 << 20, 1 << 16));
        let CacheLookup::Miss(Some(lock)) = cache.lookup("k", Duration::ZERO) else {
            panic!("first lookup must get the fill lock");
        };
        // A second request waits for the filler instead of missing too.
        let waiter = {
            let cache = Arc::clone(&cache);
            std::thread::spawn(move || cache.lookup("k", Duration::from_secs(5)))
        };
        std::thread::sleep(Duration::from_millis(50));
        cache.put("k", resp("v"), Duration::from_secs(60)).unwrap();
        drop(lock);
        match waiter.join().unwrap() {
            CacheLookup::Hit { response, .. } => assert_eq!(response.body, "v"),
            other => panic!("waiter should hit, got {other:?}"),
        }
    }

    #[test]
    fn a_waiter_gives_up_after_its_wait_without_the_lock() {
        let cache = LocalCache::new(1 << 20, 1 << 16);
        let _lock = match cache.lookup("k", Duration::ZERO) {
            CacheLookup::Miss(Some(l)) => l,
            other => panic!("{other:?}"),
        };
        assert!(matches!(
            cache.lookup("k", Duration::from_millis(20)),
            CacheLookup::Miss(None)
        ));
    }

    #[test]
    fn a_filler_that_gives_up_hands_the_lock_to_the_next() {
        let cache = LocalCache::new(1 << 20, 1 << 16);
        let lock = match cache.lookup("k", Duration::ZERO) {
            CacheLookup::Miss(Some(l)) => l,
            other => panic!("{other:?}"),
        };
        drop(lock);
        assert!(matches!(
            cache.lookup("k", Duration::ZERO),
            CacheLookup::Miss(Some(_))
        ));
    }

    #[test]
    fn expired_entries_say_so() {
        let cache = LocalCache::new(1 << 20, 1 << 16);
        cache.put("k", resp("v"), Duration::ZERO).unwrap();
        assert!(matches!(
            cache.lookup("k", Duration::ZERO),
            CacheLookup::Expired(Some(_))
        ));
    }
}
