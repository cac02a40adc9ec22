//! The writer thread: takes whatever is queued, formats it into one buffer, writes it with one call.

use super::{Format, Msg, Target};
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes formatted before a write, at most (a burst is written in chunks of about this size).
const CHUNK: usize = 256 << 10;
/// How often a file target checks whether its path still names the open file.
const REOPEN_CHECK: Duration = Duration::from_secs(1);
/// Write errors are logged at most this often (a full disk would otherwise log once per batch).
const ERROR_LOG_EVERY: Duration = Duration::from_secs(60);

pub(super) enum Output {
    Stdout(std::io::Stdout),
    File {
        path: PathBuf,
        file: File,
        checked: Instant,
    },
}

fn open_append(path: &PathBuf) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// Whether two metadata describe the same file (device and inode).
#[cfg(unix)]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(_: &std::fs::Metadata, _: &std::fs::Metadata) -> bool {
    true
}

impl Output {
    pub fn open(target: Target) -> std::io::Result<Self> {
        Ok(match target {
            Target::Stdout => Output::Stdout(std::io::stdout()),
            Target::File(path) => Output::File {
                file: open_append(&path).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
                })?,
                path,
                checked: Instant::now(),
            },
        })
    }

    /// Reopens a file target whose path now names another file, or nothing (rotated away).
    fn follow_rotation(&mut self) {
        let Output::File {
            path,
            file,
            checked,
        } = self
        else {
            return;
        };
        if checked.elapsed() < REOPEN_CHECK {
            return;
        }
        *checked = Instant::now();
        let moved = match (std::fs::metadata(&*path), file.metadata()) {
            (Ok(now), Ok(open)) => !same_file(&now, &open),
            _ => true,
        };
        if moved {
            if let Ok(reopened) = open_append(path) {
                *file = reopened;
            }
        }
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.follow_rotation();
        match self {
            Output::Stdout(out) => {
                let mut lock = out.lock();
                lock.write_all(bytes)?;
                lock.flush()
            }
            Output::File { file, .. } => file.write_all(bytes),
        }
    }
}

/// The writer wakes this often and takes what queued up meanwhile. It never waits *in* the queue: a
/// receiver blocked in `recv` is woken by every send, which costs the request path a futex wake and the
/// machine a context switch per line (measured: the proxy's CPU per request +65 % on one core).
pub(super) const TICK: Duration = Duration::from_millis(20);

pub(super) fn run(rx: Receiver<Msg>, mut out: Output, format: Format, dropped: Arc<AtomicU64>) {
    let mut buf = Vec::with_capacity(CHUNK + 4096);
    let mut last_error: Option<Instant> = None;
    loop {
        let first = match rx.try_recv() {
            Ok(msg) => msg,
            Err(TryRecvError::Empty) => {
                std::thread::sleep(TICK);
                continue;
            }
            Err(TryRecvError::Disconnected) => return,
        };
        let mut lines = 0u64;
        let mut closing = false;
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Line(record) => {
                    format.write(&record, &mut buf);
                    buf.push(b'\n');
                    lines += 1;
                }
                Msg::Close => closing = true,
            }
            // On close, everything queued before it is written; otherwise a burst goes out in chunks.
            if closing || buf.len() < CHUNK {
                next = rx.try_recv().ok();
            }
        }
        if !buf.is_empty() {
            if let Err(e) = out.write(&buf) {
                dropped.fetch_add(lines, Ordering::Relaxed);
                if last_error.is_none_or(|t| t.elapsed() >= ERROR_LOG_EVERY) {
                    tracing::error!(error = %e, lines, "writing the access log failed; lines dropped");
                    last_error = Some(Instant::now());
                }
            }
            buf.clear();
        }
        if closing {
            return;
        }
    }
}
