//! A tiny lock-free PRNG for the power-of-two-choices sampling in ewma.
//!
//! Quality needs are modest (pick 2 of n), but it must be shareable across
//! threads without a lock and without pulling in a `rand` dependency:
//! SplitMix64 over an atomic counter gives exactly that.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

#[derive(Debug)]
pub(crate) struct SplitMix {
    state: AtomicU64,
}

impl SplitMix {
    /// Seeded from std's per-process random hasher keys so that gateway
    /// instances do not all sample the same node sequence.
    pub fn from_entropy() -> Self {
        Self::with_seed(RandomState::new().hash_one(0x5EED_u64))
    }

    pub fn with_seed(seed: u64) -> Self {
        Self {
            state: AtomicU64::new(seed),
        }
    }

    pub fn next_u64(&self) -> u64 {
        // Each caller claims a distinct counter value, so concurrent callers
        // never see the same output and no CAS loop is needed.
        let mut z = self
            .state
            .fetch_add(GOLDEN_GAMMA, Ordering::Relaxed)
            .wrapping_add(GOLDEN_GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (multiply-shift; bias is negligible for node counts).
    pub fn below(&self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let rng = SplitMix::with_seed(7);
        let mut seen = [0u32; 5];
        for _ in 0..5_000 {
            let v = rng.below(5);
            assert!(v < 5);
            seen[v] += 1;
        }
        for count in seen {
            assert!((900..1100).contains(&count), "skewed: {seen:?}");
        }
    }
}
