//! Log sinks: batched, retried delivery of plugin log entries off the request path (the WIT `log-sink`
//! import, used by `http-logger` and `file-logger`).
//!
//! A plugin opens a sink for a destination and a batch policy and pushes one entry per request. Pushing
//! only queues (a channel send, bounded by bytes per sink), so the request never waits; each sink has a
//! task on this module's own small runtime that collects entries into batches ([`batch`]) and delivers
//! them ([`deliver`]): an HTTP POST, or an append to a file inside the operator's log directory.
//! Failures are retried with a doubling delay, then the batch is dropped. Every entry ends up counted
//! once in `sluice_log_sink_entries_total{plugin,result}`: `delivered`, `queue_full` (refused at push) or
//! `failed` (dropped after the last retry).
//!
//! Why a host service and not batching inside the plugin: a plugin's state lives per instance (several
//! per plugin, pooled) and per request, and it runs only when a request calls it; a batch must outlive
//! requests, be shared by all instances, and be flushed by a timer when no request comes. So the host
//! owns the queue, the timer and the I/O, and the plugin only decides what an entry says and where it
//! goes.
//!
//! Sinks of one plugin with the same destination and policy are one sink ([`LogSinks::open`] joins it),
//! so every instance's entries share one batch. A sink lives while a handle to it does (the plugin keeps
//! its handle in its parsed config); when the last one goes, its task delivers what is queued and ends.
//! At shutdown ([`LogSinks::shutdown`]) every task delivers what it holds, once, and ends.
//!
//! File destinations are the only file system access plugins get: a relative path of plain names
//! (`sluice_log::sink_rules::check_file_path`: no absolute path, no `.` or `..`) joined to `--plugin-log-dir`.
//! Without a log directory, file destinations are refused.

mod batch;
mod deliver;

use deliver::Delivery;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use sluice_log::sink_rules;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Bytes one sink may hold queued (entries plus a per-entry overhead); a push beyond it is refused.
const MAX_QUEUED_BYTES: usize = 8 << 20;
/// What an entry costs besides its text (the `String` and the channel slot).
const ENTRY_OVERHEAD: usize = 64;
/// The longest wait between two retries, however many there are.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(300);

/// How the entries of a batch become one HTTP body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Concat {
    /// `[e1,e2,...]`.
    JsonArray,
    /// `e1\ne2\n...`.
    NewLine,
}

/// An HTTP endpoint, checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpTarget {
    pub uri: http::Uri,
    pub authorization: Option<http::HeaderValue>,
    pub timeout: Duration,
    pub concat: Concat,
}

/// Where a sink delivers, checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Destination {
    Http(HttpTarget),
    /// The full path, inside the log directory.
    File(PathBuf),
}

/// A destination as a plugin names it, before checks.
#[derive(Debug, Clone)]
pub enum DestinationSpec {
    Http {
        uri: String,
        auth_header: Option<String>,
        timeout: Duration,
        concat: Concat,
    },
    /// Relative to the log directory.
    File(String),
}

/// APISIX's batch-processor settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Policy {
    pub max_size: u32,
    pub inactive_timeout: Duration,
    pub buffer_duration: Duration,
    pub max_retry_count: u32,
    pub retry_delay: Duration,
}

/// Why a sink refused something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// The destination, policy or entry is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// The sink's queue is full; the entry was dropped (and counted).
    #[error("log sink queue full")]
    QueueFull,
}

/// One plugin's delivery counts, kept for the process's life (sinks come and go).
#[derive(Default)]
struct Counts {
    delivered: AtomicU64,
    queue_full: AtomicU64,
    failed: AtomicU64,
}

/// An open sink. Dropping the last `Arc` closes its queue; its task then delivers the rest and ends.
pub struct Sink {
    tx: mpsc::UnboundedSender<String>,
    queued: Arc<AtomicUsize>,
    counts: Arc<Counts>,
}

impl Sink {
    /// Queues one entry; never waits.
    pub fn push(&self, entry: String) -> Result<(), SinkError> {
        sink_rules::check_entry(&entry).map_err(SinkError::Invalid)?;
        let cost = entry.len() + ENTRY_OVERHEAD;
        let before = self.queued.fetch_add(cost, Ordering::Relaxed);
        if before + cost > MAX_QUEUED_BYTES || self.tx.send(entry).is_err() {
            self.queued.fetch_sub(cost, Ordering::Relaxed);
            self.counts.queue_full.fetch_add(1, Ordering::Relaxed);
            return Err(SinkError::QueueFull);
        }
        Ok(())
    }
}

/// The host's handle to a sink, as the plugin's `sink` resource holds it.
pub struct SinkHandle(pub Arc<Sink>);

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    plugin: String,
    destination: Destination,
    policy: Policy,
}

/// Every open sink, by plugin, destination and policy; plus the runtime their tasks run on.
pub struct LogSinks {
    log_dir: Option<PathBuf>,
    runtime: OnceLock<Result<tokio::runtime::Runtime, String>>,
    open: Mutex<HashMap<Key, Weak<Sink>>>,
    counts: Mutex<BTreeMap<String, Arc<Counts>>>,
    /// Turns true when the gateway stops: every task then delivers what it holds and ends.
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for LogSinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogSinks")
            .field("log_dir", &self.log_dir)
            .finish_non_exhaustive()
    }
}

impl LogSinks {
    /// Sinks whose file destinations live under `log_dir` (none: file destinations are refused).
    pub fn new(log_dir: Option<PathBuf>) -> Self {
        LogSinks {
            log_dir,
            runtime: OnceLock::new(),
            open: Mutex::new(HashMap::new()),
            counts: Mutex::new(BTreeMap::new()),
            stop: watch::channel(false).0,
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// At shutdown: every sink delivers what it holds (one attempt per batch, no retries); waits at most
    /// `timeout` for them.
    pub async fn shutdown(&self, timeout: Duration) {
        self.stop.send_replace(true);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        let all = futures_util::future::join_all(tasks);
        if tokio::time::timeout(timeout, all).await.is_err() {
            tracing::warn!(
                ?timeout,
                "log sinks still delivering at shutdown; the rest is dropped"
            );
        }
    }

    /// Checks a destination and policy as [`LogSinks::open`] would.
    pub fn check(
        &self,
        destination: &DestinationSpec,
        policy: &Policy,
    ) -> Result<Destination, SinkError> {
        sink_rules::check_batch_size(policy.max_size).map_err(SinkError::Invalid)?;
        match destination {
            DestinationSpec::Http {
                uri,
                auth_header,
                timeout,
                concat,
            } => {
                let ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
                sink_rules::check_http(uri, auth_header.as_deref(), ms)
                    .map_err(SinkError::Invalid)?;
                let parsed: http::Uri = uri
                    .parse()
                    .map_err(|e| SinkError::Invalid(format!("uri {uri:?}: {e}")))?;
                let authorization = auth_header
                    .as_deref()
                    .map(http::HeaderValue::from_str)
                    .transpose()
                    .map_err(|_| {
                        SinkError::Invalid("auth_header is not a valid header value".into())
                    })?;
                Ok(Destination::Http(HttpTarget {
                    uri: parsed,
                    authorization,
                    timeout: *timeout,
                    concat: *concat,
                }))
            }
            DestinationSpec::File(path) => {
                sink_rules::check_file_path(path).map_err(SinkError::Invalid)?;
                let dir = self.log_dir.as_ref().ok_or_else(|| {
                    SinkError::Invalid(
                        "file destinations need the gateway's --plugin-log-dir; none is configured"
                            .to_string(),
                    )
                })?;
                Ok(Destination::File(dir.join(path)))
            }
        }
    }

    fn counts(&self, plugin: &str) -> Arc<Counts> {
        let mut all = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(all.entry(plugin.to_string()).or_default())
    }

    fn runtime(&self) -> Result<&tokio::runtime::Runtime, SinkError> {
        self.runtime
            .get_or_init(|| {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("sluice-log-sink")
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| SinkError::Invalid(format!("log sink runtime: {e}")))
    }

    /// The sink of `plugin` for this destination and policy: the open one, or a new one with its task.
    pub fn open(
        &self,
        plugin: &str,
        destination: &DestinationSpec,
        policy: &Policy,
    ) -> Result<Arc<Sink>, SinkError> {
        let key = Key {
            plugin: plugin.to_string(),
            destination: self.check(destination, policy)?,
            policy: *policy,
        };
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sink) = open.get(&key).and_then(Weak::upgrade) {
            return Ok(sink);
        }
        open.retain(|_, s| s.strong_count() > 0);
        let runtime = self.runtime()?;
        let (tx, rx) = mpsc::unbounded_channel();
        let sink = Arc::new(Sink {
            tx,
            queued: Arc::new(AtomicUsize::new(0)),
            counts: self.counts(plugin),
        });
        let worker = batch::Worker {
            plugin: plugin.to_string(),
            policy: *policy,
            delivery: Delivery::new(&key.destination),
            queued: Arc::clone(&sink.queued),
            counts: Arc::clone(&sink.counts),
        };
        let task = runtime.spawn(worker.run(rx, self.stop.subscribe()));
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
        open.insert(key, Arc::downgrade(&sink));
        Ok(sink)
    }
}

impl Drop for LogSinks {
    fn drop(&mut self) {
        // Dropping a runtime blocks; the owner may be dropped inside an async context.
        if let Some(Ok(rt)) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Collector for LogSinks {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let all = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let mut family = encoder.encode_descriptor(
            "log_sink_entries",
            "Plugin log entries by plugin and result: delivered, queue_full (refused when pushed), \
             failed (dropped after the last retry).",
            None,
            MetricType::Counter,
        )?;
        for (plugin, c) in all.iter() {
            for (result, n) in [
                ("delivered", &c.delivered),
                ("queue_full", &c.queue_full),
                ("failed", &c.failed),
            ] {
                family
                    .encode_family(&[("plugin", plugin.as_str()), ("result", result)])?
                    .encode_counter::<NoLabelSet, _, u64>(&n.load(Ordering::Relaxed), None)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            max_size: 10,
            inactive_timeout: Duration::from_secs(1),
            buffer_duration: Duration::from_secs(5),
            max_retry_count: 0,
            retry_delay: Duration::ZERO,
        }
    }

    fn http(uri: &str) -> DestinationSpec {
        DestinationSpec::Http {
            uri: uri.to_string(),
            auth_header: None,
            timeout: Duration::from_secs(1),
            concat: Concat::JsonArray,
        }
    }

    #[test]
    fn file_destinations_resolve_inside_the_log_directory_or_not_at_all() {
        let sinks = LogSinks::new(Some(PathBuf::from("/var/log/sluice")));
        assert_eq!(
            sinks.check(&DestinationSpec::File("a/b.log".into()), &policy()),
            Ok(Destination::File(PathBuf::from("/var/log/sluice/a/b.log")))
        );
        for bad in ["../b.log", "/etc/passwd", "a/../../b"] {
            let refused = sinks.check(&DestinationSpec::File(bad.into()), &policy());
            assert!(matches!(refused, Err(SinkError::Invalid(_))), "{bad}");
        }
        let without_dir = LogSinks::new(None);
        let Err(SinkError::Invalid(why)) =
            without_dir.check(&DestinationSpec::File("a.log".into()), &policy())
        else {
            panic!("a file destination without a log directory");
        };
        assert!(why.contains("--plugin-log-dir"), "{why}");
    }

    #[test]
    fn http_destinations_and_policies_are_checked() {
        let sinks = LogSinks::new(None);
        assert!(sinks
            .check(&http("http://127.0.0.1:9/x"), &policy())
            .is_ok());
        assert!(sinks.check(&http("gopher://x/"), &policy()).is_err());
        let zero = Policy {
            max_size: 0,
            ..policy()
        };
        assert!(sinks.check(&http("http://127.0.0.1:9/x"), &zero).is_err());
    }

    #[test]
    fn one_plugin_destination_and_policy_is_one_sink() {
        let sinks = LogSinks::new(None);
        let a = sinks
            .open("p", &http("http://127.0.0.1:9/a"), &policy())
            .unwrap();
        let again = sinks
            .open("p", &http("http://127.0.0.1:9/a"), &policy())
            .unwrap();
        let other = sinks
            .open("q", &http("http://127.0.0.1:9/a"), &policy())
            .unwrap();
        assert!(Arc::ptr_eq(&a, &again));
        assert!(!Arc::ptr_eq(&a, &other));
        let too_big = "x".repeat(sink_rules::MAX_ENTRY_BYTES + 1);
        assert!(matches!(a.push(too_big), Err(SinkError::Invalid(_))));
        assert_eq!(a.push("{}".into()), Ok(()));
    }

    #[test]
    fn a_full_queue_refuses_and_counts() {
        let sinks = LogSinks::new(None);
        let sink = sinks
            .open("p", &http("http://127.0.0.1:9/a"), &policy())
            .unwrap();
        // Pretend the queue is nearly full (its task is slowed by the unreachable endpoint anyway).
        sink.queued.store(MAX_QUEUED_BYTES, Ordering::Relaxed);
        assert_eq!(sink.push("{}".into()), Err(SinkError::QueueFull));
        assert_eq!(sink.counts.queue_full.load(Ordering::Relaxed), 1);
    }
}
