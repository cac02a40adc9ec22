//! The access log: one line per request, in APISIX's log format (JSON, the default) or an nginx-style
//! template, to stdout or a file (`--access-log`, `--access-log-format`).
//!
//! Written off the request path: a finished request hands its [`Record`] to a bounded queue (a
//! `try_send`, never a wait) and one writer thread, waking every 20 ms, formats and writes whatever is
//! queued in one go.
//! So a slow disk or a blocked stdout pipe never stalls a request: when the queue is full the line is
//! dropped and counted in `sluice_access_log_dropped_total` (nginx's buffered access log makes the same
//! trade). A file is reopened when it is moved or deleted (logrotate without `copytruncate`).
//!
//! [`format`] turns a record into a line; [`writer`] owns the thread and the file.

pub mod format;
mod writer;

pub use format::{Format, FormatError};

use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, Version};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Lines queued for the writer at most; beyond it lines are dropped (and counted). The writer drains the
/// queue every [`writer::TICK`], so this holds that long at over 1.6 M requests/s.
const QUEUE_LINES: usize = 32 * 1024;

/// Where lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Stdout,
    File(PathBuf),
}

/// Everything a line may say about one finished request. Owned, so it can cross to the writer thread.
pub struct Record {
    pub started_unix_ms: u64,
    pub latency: Duration,
    pub upstream_latency: Option<Duration>,
    pub upstream: Option<SocketAddr>,
    pub client: SocketAddr,
    pub method: Method,
    pub scheme: &'static str,
    pub host: Option<HeaderValue>,
    /// As the client sent it (path and query); read on the writer thread, so the request path copies
    /// nothing out of it.
    pub uri: Uri,
    pub version: Version,
    /// Empty unless the format logs headers ([`AccessLog::wants_headers`]).
    pub request_headers: HeaderMap,
    pub request_bytes: u64,
    pub status: StatusCode,
    /// Empty unless the format logs headers.
    pub response_headers: HeaderMap,
    pub response_bytes: u64,
    pub route_id: Option<String>,
    pub service_id: Option<String>,
    pub consumer: Option<String>,
    /// Whether the whole response body reached the client.
    pub complete: bool,
}

/// What the writer thread receives.
enum Msg {
    Line(Box<Record>),
    /// Write what is queued and stop.
    Close,
}

/// The running access log: the queue's sending end and the drop counter.
pub struct AccessLog {
    tx: SyncSender<Msg>,
    wants_headers: bool,
    dropped: Arc<AtomicU64>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog").finish_non_exhaustive()
    }
}

impl AccessLog {
    /// Opens the target (a file is created if needed) and starts the writer thread.
    pub fn start(target: Target, format: Format) -> std::io::Result<Self> {
        let wants_headers = format.uses_headers();
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE_LINES);
        let out = writer::Output::open(target)?;
        let dropped = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&dropped);
        let thread = std::thread::Builder::new()
            .name("sluice-access-log".into())
            .spawn(move || writer::run(rx, out, format, counted))?;
        Ok(AccessLog {
            tx,
            wants_headers,
            dropped,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Whether records need the request and response headers (cloning them costs; skip it otherwise).
    pub fn wants_headers(&self) -> bool {
        self.wants_headers
    }

    /// Queues a line; drops it (counted) when the writer is behind.
    pub fn log(&self, record: Record) {
        if self.tx.try_send(Msg::Line(Box::new(record))).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Lines dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Stops taking lines and waits (up to `timeout`) for the writer to write what is queued.
    pub fn close(&self, timeout: Duration) {
        let Some(thread) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        let deadline = std::time::Instant::now() + timeout;
        let mut closing = Msg::Close;
        loop {
            match self.tx.try_send(closing) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if std::time::Instant::now() < deadline => {
                    closing = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return,
            }
        }
        while !thread.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if thread.is_finished() {
            let _ = thread.join();
        }
    }
}

/// `sluice_access_log_dropped_total`.
#[derive(Debug)]
pub struct DroppedCollector(pub Arc<AccessLog>);

impl Collector for DroppedCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let c = ConstCounter::new(self.0.dropped());
        c.encode(encoder.encode_descriptor(
            "access_log_dropped",
            "Access-log lines dropped: the writer was behind (slow disk, blocked stdout) or a write failed.",
            None,
            c.metric_type(),
        )?)
    }
}
