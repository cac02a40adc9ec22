//! tracing set-up: human-readable or JSON lines on stderr, filtered by `--log-level`.
//!
//! Lines go through a non-blocking writer: the request path only queues its access-log line and a
//! background thread does the write, so a slow terminal or pipe never stalls a worker (nginx buffers
//! its access log for the same reason). If the queue overflows, lines are dropped rather than
//! blocking traffic.

use crate::settings::LogFormat;
use std::io::IsTerminal;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

/// Keep the returned guard alive until exit: dropping it flushes the queued lines.
pub fn init(format: LogFormat, filter: &str) -> anyhow::Result<WorkerGuard> {
    let filter = EnvFilter::try_new(filter)
        .map_err(|e| anyhow::anyhow!("invalid --log-level {filter:?}: {e}"))?;
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::stderr().is_terminal());
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("logging already initialised: {e}"))?;
    Ok(guard)
}
