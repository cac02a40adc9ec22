//! The access log: one line per request, in APISIX's log format (JSON, the default) or an nginx-style
//! template, to stdout or a file (`--access-log`, `--access-log-format`).
//!
//! Formatted where the request ends, written elsewhere: the worker that finishes a request formats its
//! line (nothing about the request crosses threads; template lines allocate nothing, JSON lines only
//! their `url` and decoded query) and appends it to one of a few buffers, picked per worker thread so workers rarely share one; a writer thread takes each buffer
//! every 20 ms by swapping it for an empty one, and writes it with one call. The worker never waits on
//! the disk: when the writer is behind (a slow disk, a blocked stdout pipe) and a buffer holds
//! [`SHARD_BYTES`], further lines are dropped and counted in `sluice_access_log_dropped_total` (nginx's
//! buffered access log makes the same trade). A file is reopened when it is moved or deleted (logrotate
//! without `copytruncate`). Each buffer is written in order, one after another, so lines of different
//! worker threads are grouped per 20 ms tick rather than interleaved by completion time (each line carries
//! its start time).
//!
//! Why not a queue of records to a writer thread that formats them (the first design): under load on one
//! CPU the hand-off cost more than the formatting (an allocation per record, header maps freed on another
//! thread, a writer competing for the same core), ~0.5 µs per line before any formatting
//! (`cargo bench -p sluice --bench access_log`).
//!
//! [`format`] turns a record into a line; [`writer`] owns the thread and the file.

pub mod format;
mod writer;

pub use format::{Format, FormatError};

use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, Version};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Bytes one buffer holds before lines are dropped (and counted). The writer empties every buffer each
/// [`writer::TICK`], so this holds a worker's lines for that long at over 50,000 lines/s each of 1 KiB.
pub const SHARD_BYTES: usize = 1 << 20;

/// Where lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Stdout,
    File(PathBuf),
}

/// Everything a line may say about one finished request.
pub struct Record {
    pub started_unix_ms: u64,
    pub latency: Duration,
    pub upstream_latency: Option<Duration>,
    pub upstream: Option<SocketAddr>,
    pub client: SocketAddr,
    pub method: Method,
    pub scheme: &'static str,
    pub host: Option<HeaderValue>,
    /// As the client sent it (path and query).
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

/// The running access log: the format, the buffers the writer drains, and its thread.
pub struct AccessLog {
    format: Format,
    wants_headers: bool,
    shared: Arc<writer::Shared>,
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
        Self::start_with(writer::Output::open(target)?, format)
    }

    fn start_with(out: writer::Output, format: Format) -> std::io::Result<Self> {
        // Twice the CPUs: workers are assigned round-robin, so each usually has a buffer to itself.
        let shards = std::thread::available_parallelism()
            .map_or(2, |n| n.get() * 2)
            .clamp(2, 64);
        let shared = Arc::new(writer::Shared::new(shards));
        let drained = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("sluice-access-log".into())
            .spawn(move || writer::run(&drained, out))?;
        Ok(AccessLog {
            wants_headers: format.uses_headers(),
            format,
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Whether records need the request and response headers (cloning them costs; skip it otherwise).
    pub fn wants_headers(&self) -> bool {
        self.wants_headers
    }

    /// Formats `record`'s line and buffers it for the writer; drops it (counted) when the writer is behind
    /// or the log is closed. Never waits for I/O.
    pub fn log(&self, record: Record) {
        thread_local! {
            /// Where this thread formats a line before it takes a buffer's lock (a short hold).
            static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(2048));
        }
        let write = |line: &mut Vec<u8>| {
            line.clear();
            self.format.write(&record, line);
            line.push(b'\n');
            self.shared.append(line);
        };
        // `try_with`: a body dropped while this thread's locals are being torn down still gets its line.
        if LINE.try_with(|line| write(&mut line.borrow_mut())).is_err() {
            write(&mut Vec::new());
        }
    }

    /// Lines dropped so far.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Stops taking lines and waits (up to `timeout`) for the writer to write what is buffered. Lines
    /// still buffered when the timeout passes (a stuck target) are lost with the process.
    pub fn close(&self, timeout: Duration) {
        let Some(thread) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        self.shared.closing.store(true, Ordering::Release);
        thread.thread().unpark();
        let deadline = std::time::Instant::now() + timeout;
        while !thread.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if thread.is_finished() {
            let _ = thread.join();
        }
    }
}

impl Drop for AccessLog {
    /// Without `close` (an error path at shutdown), the writer still stops: it writes what is buffered
    /// and exits instead of waking every tick for the rest of the process.
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::Release);
        if let Some(thread) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            thread.thread().unpark();
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::mpsc;

    /// A target that blocks every write until the test lets it go: a stuck disk or stdout pipe.
    struct Stuck {
        gate: mpsc::Receiver<()>,
        written: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Stuck {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _ = self.gate.recv(); // returns at once when the sender is gone
            self.written
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn record(n: usize) -> Record {
        Record {
            started_unix_ms: 1_796_313_951_635,
            latency: Duration::from_micros(812),
            upstream_latency: None,
            upstream: None,
            client: "127.0.0.1:51234".parse().unwrap(),
            method: Method::GET,
            scheme: "http",
            host: None,
            uri: format!("/line/{n}").parse().unwrap(),
            version: Version::HTTP_11,
            request_headers: HeaderMap::new(),
            request_bytes: 0,
            status: StatusCode::OK,
            response_headers: HeaderMap::new(),
            response_bytes: 0,
            route_id: None,
            service_id: None,
            consumer: None,
            complete: true,
        }
    }

    fn buffered(log: &AccessLog) -> usize {
        log.shared.buffered()
    }

    #[test]
    fn a_stuck_target_never_blocks_logging_and_what_does_not_fit_is_counted() {
        let (open, gate) = mpsc::channel();
        let written = Arc::new(Mutex::new(Vec::new()));
        let out = writer::Output::Sink(Box::new(Stuck {
            gate,
            written: Arc::clone(&written),
        }));
        let log = AccessLog::start_with(out, Format::Json).unwrap();
        // The writer takes the first line and then hangs in its write.
        log.log(record(0));
        while buffered(&log) > 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
        // Twice what the buffers hold, while the target is stuck: every call returns, the rest is dropped.
        let line_len = {
            let mut one = Vec::new();
            Format::Json.write(&record(1), &mut one);
            one.len() + 1
        };
        let more = 2 * SHARD_BYTES / line_len;
        for n in 1..=more {
            log.log(record(n));
        }
        let dropped = log.dropped();
        assert!(dropped > 0, "lines beyond the buffer are dropped");
        assert!(buffered(&log) <= SHARD_BYTES, "the buffer stays bounded");

        drop(open); // the disk recovers
        log.close(Duration::from_secs(10));
        let text = String::from_utf8(written.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines.len() as u64 + dropped,
            1 + more as u64,
            "each line written or counted"
        );
        assert!(lines
            .iter()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()));
        assert!(
            lines[0].contains("\"/line/0\""),
            "first line first: {}",
            lines[0]
        );
    }

    #[test]
    fn lines_from_many_threads_arrive_whole_and_close_writes_what_is_buffered() {
        let written = Arc::new(Mutex::new(Vec::new()));
        let (open, gate) = mpsc::channel::<()>();
        drop(open);
        let out = writer::Output::Sink(Box::new(Stuck {
            gate,
            written: Arc::clone(&written),
        }));
        let log = Arc::new(AccessLog::start_with(out, Format::Json).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let log = Arc::clone(&log);
                std::thread::spawn(move || {
                    for n in 0..500 {
                        log.log(record(t * 1000 + n));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        log.close(Duration::from_secs(10));
        assert_eq!(log.dropped(), 0);
        let text = String::from_utf8(written.lock().unwrap().clone()).unwrap();
        let mut seen: Vec<usize> = text
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["request"]["uri"].as_str().unwrap()["/line/".len()..]
                    .parse()
                    .unwrap()
            })
            .collect();
        seen.sort_unstable();
        let want: Vec<usize> = (0..8)
            .flat_map(|t| (0..500).map(move |n| t * 1000 + n))
            .collect();
        assert_eq!(seen, want);
    }
}
