//! One sink's task: collects entries into batches by APISIX's rules and hands each batch to delivery,
//! retrying with a doubling delay.
//!
//! A batch goes out when it reaches `max_size`, when no entry arrived for `inactive_timeout`, or when
//! its oldest entry has waited `buffer_duration`. With `inactive_timeout` zero a batch goes out as soon
//! as the queue is momentarily empty (`file-logger`: write promptly, together what arrived together).
//! Deliveries of one sink are sequential: while one is retried, new entries wait in the (bounded) queue.
//! When the gateway stops, what is queued goes out in one attempt per batch, without retries.

use super::deliver::Delivery;
use super::{Counts, Policy, ENTRY_OVERHEAD, MAX_RETRY_WAIT};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

pub(super) struct Worker {
    pub plugin: String,
    pub policy: Policy,
    pub delivery: Delivery,
    pub queued: Arc<AtomicUsize>,
    pub counts: Arc<Counts>,
}

/// What woke the task.
enum Step {
    Entry(String),
    /// The batch's time is up.
    Flush,
    /// Every handle is gone.
    Closed,
    /// The gateway is stopping.
    Stop,
}

impl Worker {
    pub async fn run(
        self,
        mut rx: mpsc::UnboundedReceiver<String>,
        mut stop: watch::Receiver<bool>,
    ) {
        let max = self.policy.max_size.max(1) as usize;
        let mut batch: Vec<String> = Vec::new();
        let mut oldest = Instant::now();
        loop {
            let deadline = (!batch.is_empty()).then(|| {
                let idle = Instant::now() + self.policy.inactive_timeout;
                idle.min(oldest + self.policy.buffer_duration)
            });
            let step = tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => Step::Stop,
                next = rx.recv() => next.map_or(Step::Closed, Step::Entry),
                () = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => Step::Flush,
            };
            match step {
                Step::Entry(entry) => {
                    self.took(&entry);
                    if batch.is_empty() {
                        oldest = Instant::now();
                    }
                    batch.push(entry);
                    if batch.len() >= max {
                        self.deliver(std::mem::take(&mut batch), self.policy.max_retry_count)
                            .await;
                    }
                }
                Step::Flush => {
                    self.deliver(std::mem::take(&mut batch), self.policy.max_retry_count)
                        .await
                }
                Step::Closed => {
                    if !batch.is_empty() {
                        self.deliver(batch, self.policy.max_retry_count).await;
                    }
                    return;
                }
                Step::Stop => {
                    while let Ok(entry) = rx.try_recv() {
                        self.took(&entry);
                        batch.push(entry);
                    }
                    for chunk in batch.chunks(max) {
                        self.deliver(chunk.to_vec(), 0).await;
                    }
                    return;
                }
            }
        }
    }

    /// An entry left the queue: its bytes no longer count against the bound.
    fn took(&self, entry: &str) {
        self.queued
            .fetch_sub(entry.len() + ENTRY_OVERHEAD, Ordering::Relaxed);
    }

    async fn deliver(&self, batch: Vec<String>, retries: u32) {
        let n = batch.len() as u64;
        let mut wait = self.policy.retry_delay;
        for attempt in 0..=retries {
            match self.delivery.send(&batch).await {
                Ok(()) => {
                    self.counts.delivered.fetch_add(n, Ordering::Relaxed);
                    return;
                }
                Err(e) if attempt < retries => {
                    tracing::warn!(plugin = %self.plugin, destination = %self.delivery, entries = n, attempt = attempt + 1, retry_in = ?wait, error = %e, "log batch delivery failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(MAX_RETRY_WAIT);
                }
                Err(e) => {
                    tracing::error!(plugin = %self.plugin, destination = %self.delivery, entries = n, attempts = attempt + 1, error = %e, "log batch dropped: delivery failed");
                }
            }
        }
        self.counts.failed.fetch_add(n, Ordering::Relaxed);
    }
}
