//! Ids for `POST`ed objects: zero-padded and increasing, so they sort by creation like APISIX's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Default)]
pub struct IdGenerator {
    last: AtomicU64,
}

impl IdGenerator {
    /// Microseconds since the epoch, bumped past the previous id so two POSTs never collide.
    pub fn next(&self) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let mut prev = self.last.load(Ordering::Relaxed);
        loop {
            let candidate = now.max(prev + 1);
            match self
                .last
                .compare_exchange(prev, candidate, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return format!("{candidate:020}"),
                Err(seen) => prev = seen,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_increase() {
        let g = super::IdGenerator::default();
        let a = g.next();
        let b = g.next();
        assert!(b > a && a.len() == 20);
    }
}
