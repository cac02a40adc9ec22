//! One sink's task: collects entries into batches by APISIX's rules and hands each batch to delivery,
//! retrying with a doubling delay.
//!
//! A batch goes out when it reaches `max_size`, when no entry arrived for `inactive_timeout`, or when
//! its oldest entry has waited `buffer_duration`. With `inactive_timeout` zero a batch goes out as soon
//! as the queue is momentarily empty (`file-logger`: write promptly, together what arrived together).
//! Deliveries of one sink are sequential: while one is retried, new entries wait in the (bounded) queue.

use super::deliver::Delivery;
use super::{Counts, Policy, ENTRY_OVERHEAD, MAX_RETRY_WAIT};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::time::Instant;

pub(super) struct Worker {
    pub plugin: String,
    pub policy: Policy,
    pub delivery: Delivery,
    pub queued: Arc<AtomicUsize>,
    pub counts: Arc<Counts>,
}

impl Worker {
    pub async fn run(self, mut rx: mpsc::UnboundedReceiver<String>) {
        let max = self.policy.max_size.max(1) as usize;
        let mut batch: Vec<String> = Vec::new();
        let mut oldest = Instant::now();
        loop {
            let next = if batch.is_empty() {
                rx.recv().await
            } else {
                let idle = Instant::now() + self.policy.inactive_timeout;
                let deadline = idle.min(oldest + self.policy.buffer_duration);
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(next) => next,
                    Err(_elapsed) => {
                        self.deliver(std::mem::take(&mut batch)).await;
                        continue;
                    }
                }
            };
            let Some(entry) = next else {
                // Every handle is gone: deliver what is left and end.
                if !batch.is_empty() {
                    self.deliver(batch).await;
                }
                return;
            };
            self.queued
                .fetch_sub(entry.len() + ENTRY_OVERHEAD, Ordering::Relaxed);
            if batch.is_empty() {
                oldest = Instant::now();
            }
            batch.push(entry);
            if batch.len() >= max {
                self.deliver(std::mem::take(&mut batch)).await;
            }
        }
    }

    async fn deliver(&self, batch: Vec<String>) {
        let n = batch.len() as u64;
        let mut wait = self.policy.retry_delay;
        for attempt in 0..=self.policy.max_retry_count {
            match self.delivery.send(&batch).await {
                Ok(()) => {
                    self.counts.delivered.fetch_add(n, Ordering::Relaxed);
                    return;
                }
                Err(e) if attempt < self.policy.max_retry_count => {
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
