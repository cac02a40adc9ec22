//! The read / compute / compare-and-swap loop over the host's `kv` that the plugins keeping shared state
//! (`limit-req`'s bucket, `api-breaker`'s circuit) build their atomic updates from, bounded so that one
//! request never spins on a hot key.

use sluice_plugin_sdk::StoreError;

/// Compare-and-swap attempts before giving up. Each failed attempt means another request on the same key
/// committed in between, so this bounds the work one request does under heavy contention on one key.
pub const CAS_ATTEMPTS: usize = 64;

/// Runs `attempt` until it returns `Some` (its swap went through or it needs no swap), at most `attempts`
/// times; `Ok(None)` when every attempt lost a race.
pub fn retry<T>(
    attempts: usize,
    mut attempt: impl FnMut() -> Result<Option<T>, StoreError>,
) -> Result<Option<T>, StoreError> {
    for _ in 0..attempts {
        if let Some(done) = attempt()? {
            return Ok(Some(done));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_gives_up_after_the_bounded_attempts() {
        let mut calls = 0;
        let out: Result<Option<()>, StoreError> = retry(CAS_ATTEMPTS, || {
            calls += 1;
            Ok(None)
        });
        assert_eq!((out, calls), (Ok(None), CAS_ATTEMPTS));
        let mut calls = 0;
        let out = retry(CAS_ATTEMPTS, || {
            calls += 1;
            Ok((calls == 3).then_some(7))
        });
        assert_eq!((out, calls), (Ok(Some(7)), 3));
        let out: Result<Option<()>, _> = retry(CAS_ATTEMPTS, || Err(StoreError::TooLarge));
        assert_eq!(out, Err(StoreError::TooLarge));
    }
}
