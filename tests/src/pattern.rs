//! A deterministic byte pattern for large bodies: generated as a stream of shared chunks (no allocation per
//! chunk, nothing proportional to the body size) and checked incrementally on the receiving side, whatever the
//! chunk boundaries the network produces.

use bytes::Bytes;
use futures_util::stream::{self, Stream};
use std::sync::OnceLock;

/// The pattern repeats every this many bytes; streams emit chunks of at most this size aligned to it.
pub const PATTERN_PERIOD: usize = 64 * 1024;

fn pattern() -> &'static Bytes {
    static P: OnceLock<Bytes> = OnceLock::new();
    P.get_or_init(|| {
        let v: Vec<u8> = (0..PATTERN_PERIOD)
            .map(|i| ((i.wrapping_mul(31)) ^ (i >> 8) ^ (i >> 13)) as u8)
            .collect();
        Bytes::from(v)
    })
}

/// `len` bytes of the pattern as a stream of chunks (each a cheap slice of one shared buffer).
pub fn pattern_stream<E>(len: u64) -> impl Stream<Item = Result<Bytes, E>> + Send + 'static {
    stream::unfold(len, |left| async move {
        if left == 0 {
            return None;
        }
        let n = left.min(PATTERN_PERIOD as u64);
        Some((Ok(pattern().slice(..n as usize)), left - n))
    })
}

/// Checks that the bytes fed to it, in order, are the pattern from offset 0.
#[derive(Debug, Default, Clone)]
pub struct PatternCheck {
    /// Bytes seen so far.
    pub len: u64,
    /// Offset of the first byte that did not match, if any.
    pub first_mismatch: Option<u64>,
}

impl PatternCheck {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, mut chunk: &[u8]) {
        let p = pattern();
        while !chunk.is_empty() {
            let off = (self.len % PATTERN_PERIOD as u64) as usize;
            let take = chunk.len().min(PATTERN_PERIOD - off);
            if self.first_mismatch.is_none() && chunk[..take] != p[off..off + take] {
                let i = chunk[..take]
                    .iter()
                    .zip(&p[off..off + take])
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                self.first_mismatch = Some(self.len + i as u64);
            }
            self.len += take as u64;
            chunk = &chunk[take..];
        }
    }

    /// True when every byte matched (whatever the length).
    pub fn intact(&self) -> bool {
        self.first_mismatch.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    #[tokio::test]
    async fn stream_round_trips_through_check_with_odd_chunking() {
        let len = 3 * PATTERN_PERIOD as u64 + 123;
        let chunks: Vec<Bytes> = pattern_stream::<()>(len)
            .map(|c| c.unwrap())
            .collect()
            .await;
        let all: Vec<u8> = chunks.concat();
        assert_eq!(all.len() as u64, len);
        let mut check = PatternCheck::new();
        for piece in all.chunks(7777) {
            check.update(piece);
        }
        assert_eq!(check.len, len);
        assert!(check.intact());

        let mut bad = all.clone();
        bad[100_000] ^= 1;
        let mut check = PatternCheck::new();
        check.update(&bad);
        assert_eq!(check.first_mismatch, Some(100_000));
    }
}
