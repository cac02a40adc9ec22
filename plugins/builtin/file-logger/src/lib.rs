//! `file-logger`: appends each request's log entry as one line to a file — APISIX's fields (priority 399,
//! `log` phase).
//!
//! The plugin has no file system: it pushes the entry to a host log sink whose destination is `path`,
//! which the gateway resolves inside the log directory its operator configured (`--plugin-log-dir`) and
//! refuses when it is absolute or climbs out (`..`). The gateway writes from its own task, as soon as the
//! queue is drained (entries that arrive together are written together), so a slow disk holds no request;
//! what cannot be queued is dropped and counted.
//!
//! Departures from APISIX: `path` is relative to the gateway's plugin log directory (APISIX resolves a
//! relative path against its prefix and accepts absolute ones); `include_req_body` and `include_resp_body`
//! are refused (the gateway streams bodies and keeps no copy); `match` is not supported yet.

use serde::Deserialize;
use sluice_builtin_support::compiled::{Compile, Compiled};
use sluice_builtin_support::logger::{self, LogFormat, Logger};
use sluice_builtin_support::schema::field;
use sluice_plugin_sdk::sluice_log::sink_rules;
use sluice_plugin_sdk::{export_plugin, BatchPolicy, Destination, Plugin};
use std::time::Duration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    path: String,
    #[serde(default)]
    log_format: Option<LogFormat>,
    #[serde(default)]
    include_req_body: bool,
    #[serde(default)]
    include_resp_body: bool,
}

/// Write as soon as the queue is drained, in batches of what arrived meanwhile; one retry after a second
/// (a full disk or a permission problem rarely heals faster).
const POLICY: BatchPolicy = BatchPolicy {
    max_size: 1000,
    inactive_timeout: Duration::ZERO,
    buffer_duration: Duration::from_secs(1),
    max_retry_count: 1,
    retry_delay: Duration::from_secs(1),
};

/// The parsed config.
pub struct Rules(Logger);

impl Compile for Rules {
    type Raw = Raw;

    fn compile(raw: Raw) -> Result<Self, String> {
        logger::refuse_bodies(raw.include_req_body, raw.include_resp_body)?;
        field("path", sink_rules::check_file_path(&raw.path))?;
        Logger::new("path", Destination::File(raw.path), POLICY, raw.log_format).map(Rules)
    }
}

/// The plugin.
pub struct FileLogger;

#[export_plugin]
impl Plugin for FileLogger {
    type Config = Compiled<Rules>;
    const NAME: &'static str = "file-logger";
    const PRIORITY: i32 = 399;

    fn validate(config: &Self::Config) -> Result<(), String> {
        config.validate()
    }

    fn log(config: &Self::Config) {
        if let Some(Rules(logger)) = config.rules() {
            logger.log();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use sluice_builtin_support::testing::{configure, refused};
    use sluice_plugin_sdk::testing::TestHost;
    use sluice_plugin_sdk::{Completion, Phase};

    #[test]
    fn phases_and_priority_are_apisix_ones() {
        assert_eq!(TestHost::new().phases::<FileLogger>(), &[Phase::Log]);
        assert_eq!(FileLogger::PRIORITY, 399);
    }

    #[test]
    fn each_request_appends_one_entry_to_the_file_sink() {
        let host = TestHost::new();
        let cfg = configure::<FileLogger>(&host, r#"{"path": "logs/access.log"}"#);
        host.set_response(204, &[]).set_completion(Completion {
            latency: Duration::from_millis(2),
            complete: true,
            ..Completion::default()
        });
        host.log(&cfg);
        let entries = host.sink_entries(&Destination::File("logs/access.log".to_string()));
        assert_eq!(entries.len(), 1);
        let e: Value = serde_json::from_str(&entries[0]).unwrap();
        assert_eq!(e["response"]["status"], json!(204));
        assert_eq!(e["complete"], json!(true));
        assert!(e.get("upstream").is_none());
    }

    #[test]
    fn paths_outside_the_log_directory_are_refused() {
        for path in ["/etc/passwd", "../x.log", "logs/../../x", ""] {
            let err = refused::<FileLogger>(&json!({ "path": path }).to_string());
            assert!(
                err.contains("property \"path\" validation failed"),
                "{path}: {err}"
            );
        }
        let err = refused::<FileLogger>(r#"{"path": "a.log", "include_resp_body": true}"#);
        assert!(err.contains("include_resp_body"), "{err}");
    }
}
