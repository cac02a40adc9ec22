//! The writer thread and the buffers it drains: workers append formatted lines, the writer swaps each
//! buffer out and writes it with one call.

use super::{Target, SHARD_BYTES};
use std::cell::Cell;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
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
    /// Any writer (tests: one that blocks like a stuck disk).
    #[cfg(test)]
    Sink(Box<dyn Write + Send>),
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
            #[cfg(test)]
            Output::Sink(w) => w.write_all(bytes),
        }
    }
}

/// The writer wakes this often and takes what the workers buffered meanwhile. Workers never wake it: a
/// wake per line costs the request path a futex call and the machine a context switch (measured with the
/// first, queue-based design: the proxy's CPU per request +65 % on one core).
pub(super) const TICK: Duration = Duration::from_millis(20);

/// One buffer of formatted lines. Aligned so two buffers' locks never share a cache line.
#[repr(align(128))]
struct Shard(Mutex<Vec<u8>>);

/// What the workers and the writer share.
pub(super) struct Shared {
    shards: Box<[Shard]>,
    next_shard: AtomicUsize,
    pub(super) dropped: AtomicU64,
    pub(super) closing: AtomicBool,
}

impl Shared {
    pub(super) fn new(shards: usize) -> Self {
        Shared {
            shards: (0..shards.max(1))
                .map(|_| Shard(Mutex::new(Vec::new())))
                .collect(),
            next_shard: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            closing: AtomicBool::new(false),
        }
    }

    /// This thread's buffer: assigned round-robin on a thread's first line, then fixed.
    fn shard(&self) -> &Shard {
        thread_local! {
            static SHARD: Cell<Option<usize>> = const { Cell::new(None) };
        }
        let i = SHARD.with(|s| {
            s.get().unwrap_or_else(|| {
                let i = self.next_shard.fetch_add(1, Ordering::Relaxed);
                s.set(Some(i));
                i
            })
        });
        &self.shards[i % self.shards.len()]
    }

    /// Buffers complete lines; drops them (counted) when the buffer is full or the log is closed.
    pub(super) fn append(&self, lines: &[u8]) {
        {
            let mut buf = self.shard().0.lock().unwrap_or_else(|p| p.into_inner());
            // Read under the lock: the writer's last pass drains each buffer under its lock after seeing
            // `closing`, so a line either lands before that pass or sees `closing` and is counted.
            if !self.closing.load(Ordering::Acquire) && buf.len() + lines.len() <= SHARD_BYTES {
                buf.extend_from_slice(lines);
                return;
            }
        }
        self.dropped
            .fetch_add(count_lines(lines), Ordering::Relaxed);
    }
}

#[cfg(test)]
impl Shared {
    /// Bytes waiting in all buffers.
    pub(super) fn buffered(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.0.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }
}

fn count_lines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|b| **b == b'\n').count() as u64
}

pub(super) fn run(shared: &Shared, mut out: Output) {
    // Swapped with a shard's buffer each tick, so both keep their capacity: no allocation in steady state.
    let mut spare = Vec::new();
    let mut last_error: Option<Instant> = None;
    loop {
        // Read before draining: lines appended before `close` are in the buffers this pass takes.
        let closing = shared.closing.load(Ordering::Acquire);
        for shard in shared.shards.iter() {
            {
                let mut buf = shard.0.lock().unwrap_or_else(|p| p.into_inner());
                if buf.is_empty() {
                    continue;
                }
                std::mem::swap(&mut *buf, &mut spare);
            }
            if let Err(e) = out.write(&spare) {
                let lines = count_lines(&spare);
                shared.dropped.fetch_add(lines, Ordering::Relaxed);
                if last_error.is_none_or(|t| t.elapsed() >= ERROR_LOG_EVERY) {
                    tracing::error!(error = %e, lines, "writing the access log failed; lines dropped");
                    last_error = Some(Instant::now());
                }
            }
            spare.clear();
        }
        if closing {
            return;
        }
        // `close` unparks the thread, so stopping does not wait out a tick.
        std::thread::park_timeout(TICK);
    }
}
