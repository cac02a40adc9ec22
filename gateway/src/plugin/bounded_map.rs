//! The size-bounded, TTL-aware map behind the in-process kv and response cache.
//!
//! One structure for both because both need the same three things: a byte budget that evicts instead of
//! growing, a per-entry TTL, and O(log n) eviction order. The kv evicts the oldest *written* entry (the
//! WIT contract says so); the cache evicts the least recently *used* one (a hit refreshes it), so hot
//! responses survive a scan of cold ones.
use super::services::StoreError;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// Which entry goes first when the byte budget is exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Eviction {
    OldestWritten,
    LeastRecentlyUsed,
}

pub(crate) struct BoundedTtlMap<V> {
    entries: HashMap<String, Entry<V>>,
    order: BTreeMap<u64, String>,
    seq: u64,
    bytes: usize,
    max_bytes: usize,
    max_entry: usize,
    eviction: Eviction,
}

struct Entry<V> {
    value: V,
    size: usize,
    stored: Instant,
    expires: Option<Instant>,
    seq: u64,
}

/// What a key holds right now.
pub(crate) enum Lookup<V> {
    Live {
        value: V,
        age: Duration,
    },
    /// There was an entry but its TTL ran out (it is removed by this lookup).
    Expired,
    Absent,
}

impl<V: Clone> BoundedTtlMap<V> {
    pub(crate) fn new(max_bytes: usize, max_entry: usize, eviction: Eviction) -> Self {
        Self {
            entries: HashMap::new(),
            order: BTreeMap::new(),
            seq: 0,
            bytes: 0,
            max_bytes,
            max_entry,
            eviction,
        }
    }

    pub(crate) fn lookup(&mut self, key: &str) -> Lookup<V> {
        let now = Instant::now();
        let expired = match self.entries.get(key) {
            None => return Lookup::Absent,
            Some(e) => e.expires.is_some_and(|t| t <= now),
        };
        if expired {
            self.remove(key);
            return Lookup::Expired;
        }
        if self.eviction == Eviction::LeastRecentlyUsed {
            self.seq += 1;
            let seq = self.seq;
            if let Some(e) = self.entries.get_mut(key) {
                self.order.remove(&e.seq);
                e.seq = seq;
                self.order.insert(seq, key.to_string());
            }
        }
        match self.entries.get(key) {
            Some(e) => Lookup::Live {
                value: e.value.clone(),
                age: now.saturating_duration_since(e.stored),
            },
            None => Lookup::Absent,
        }
    }

    pub(crate) fn get(&mut self, key: &str) -> Option<V> {
        match self.lookup(key) {
            Lookup::Live { value, .. } => Some(value),
            Lookup::Expired | Lookup::Absent => None,
        }
    }

    pub(crate) fn insert(
        &mut self,
        key: &str,
        value: V,
        size: usize,
        ttl: Option<Duration>,
    ) -> Result<(), StoreError> {
        let size = size + key.len();
        if size > self.max_entry || size > self.max_bytes {
            return Err(StoreError::TooLarge);
        }
        self.remove(key);
        while self.bytes + size > self.max_bytes {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some(e) = self.entries.remove(&oldest) {
                self.bytes -= e.size;
            }
        }
        self.seq += 1;
        self.order.insert(self.seq, key.to_string());
        let now = Instant::now();
        self.entries.insert(
            key.to_string(),
            Entry {
                value,
                size,
                stored: now,
                expires: ttl.map(|t| now + t),
                seq: self.seq,
            },
        );
        self.bytes += size;
        Ok(())
    }

    /// Removes `key`; true if a live (unexpired) entry was there.
    pub(crate) fn remove(&mut self, key: &str) -> bool {
        match self.entries.remove(key) {
            Some(e) => {
                self.order.remove(&e.seq);
                self.bytes -= e.size;
                e.expires.is_none_or(|t| t > Instant::now())
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_keeps_the_entry_that_was_read() {
        let mut m = BoundedTtlMap::new(30, 30, Eviction::LeastRecentlyUsed);
        m.insert("a", 1, 9, None).unwrap(); // 10 bytes with the key
        m.insert("b", 2, 9, None).unwrap();
        m.insert("c", 3, 9, None).unwrap();
        assert_eq!(m.get("a"), Some(1)); // a is now the most recent
        m.insert("d", 4, 9, None).unwrap(); // evicts b, the least recently used
        assert_eq!(m.get("b"), None);
        assert_eq!(m.get("a"), Some(1));
        assert_eq!(m.get("c"), Some(3));
    }

    #[test]
    fn oldest_written_ignores_reads() {
        let mut m = BoundedTtlMap::new(30, 30, Eviction::OldestWritten);
        m.insert("a", 1, 9, None).unwrap();
        m.insert("b", 2, 9, None).unwrap();
        m.insert("c", 3, 9, None).unwrap();
        assert_eq!(m.get("a"), Some(1));
        m.insert("d", 4, 9, None).unwrap();
        assert_eq!(m.get("a"), None);
    }

    #[test]
    fn expiry_is_reported_once_then_absent() {
        let mut m = BoundedTtlMap::new(100, 100, Eviction::LeastRecentlyUsed);
        m.insert("a", 1, 1, Some(Duration::ZERO)).unwrap();
        assert!(matches!(m.lookup("a"), Lookup::Expired));
        assert!(matches!(m.lookup("a"), Lookup::Absent));
        assert_eq!(m.insert("big", 1, 200, None), Err(StoreError::TooLarge));
    }
}
