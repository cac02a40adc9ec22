//! A small tokio runtime of its own for host imports that do network I/O inside a synchronous guest call
//! (outbound HTTP, shared stores on Redis).
//!
//! The I/O runs there while the calling thread waits on a channel, bounded by the call's timeout, so it
//! works from any thread (a runtime worker inside `block_in_place`, a blocking-pool thread, a plain test
//! thread), and connections opened by one call live on for the next one, driven by this runtime rather
//! than by whichever worker happened to open them.

use std::future::Future;
use std::sync::mpsc::sync_channel;
use std::sync::OnceLock;
use std::time::Duration;

/// Added to a call's timeout for handing the result back across threads.
const HANDOFF: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IoError {
    #[error("cannot start the {0} runtime: {1}")]
    NoRuntime(&'static str, String),
    #[error("timed out")]
    Timeout,
}

/// Started on first use, with one worker thread named after what it serves.
pub struct IoRuntime {
    name: &'static str,
    runtime: OnceLock<Result<tokio::runtime::Runtime, String>>,
}

impl IoRuntime {
    pub const fn new(name: &'static str) -> Self {
        IoRuntime {
            name,
            runtime: OnceLock::new(),
        }
    }

    fn runtime(&self) -> Result<&tokio::runtime::Runtime, IoError> {
        self.runtime
            .get_or_init(|| {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name(format!("sluice-{}", self.name))
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| IoError::NoRuntime(self.name, e.clone()))
    }

    /// Runs `fut` on this runtime and waits for it, at most `timeout`: the future is dropped there when its
    /// time is up, and the caller never waits much longer than that.
    pub fn run<T: Send + 'static>(
        &self,
        timeout: Duration,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, IoError> {
        let runtime = self.runtime()?;
        let (tx, rx) = sync_channel(1);
        runtime.spawn(async move {
            if let Ok(value) = tokio::time::timeout(timeout, fut).await {
                let _ = tx.send(value);
            }
        });
        rx.recv_timeout(timeout + HANDOFF)
            .map_err(|_| IoError::Timeout)
    }
}

impl Drop for IoRuntime {
    fn drop(&mut self) {
        // Dropping a runtime blocks; the owner may be dropped inside an async context.
        if let Some(Ok(rt)) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn answers_or_gives_up_at_the_timeout() {
        let io = IoRuntime::new("io-test");
        assert_eq!(io.run(Duration::from_secs(1), async { 7 }), Ok(7));
        let started = Instant::now();
        let never = io.run(Duration::from_millis(100), std::future::pending::<()>());
        assert_eq!(never, Err(IoError::Timeout));
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
