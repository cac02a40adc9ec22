//! `sluice serve` settings from flags, `SLUICE_*` environment variables and a TOML file.
//!
//! Precedence: flag > environment > config file > built-in default. clap resolves the first two;
//! the file only fills what neither gave, so one file can hold a deployment's settings while a single
//! flag or variable still overrides it.

use crate::access_log::{Format as AccessLogFormat, Target as AccessLogTarget};
use crate::limits::ClientLimits;
use bytesize::ByteSize;
use clap::{Args, ValueEnum};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// TOML file with any of the settings below, in snake_case (`listen = "0.0.0.0:9080"`).
    #[arg(long, env = "SLUICE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Embedded store (config, plugin binaries, compiled-artifact cache) [default: ./sluice-data]
    #[arg(long, env = "SLUICE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// HTTP proxy listener, HTTP/1.1 and h2c [default: 0.0.0.0:9080]
    #[arg(long, env = "SLUICE_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// HTTPS proxy listener; certificates come from `ssls` objects [default: 0.0.0.0:9443]
    #[arg(long, env = "SLUICE_TLS_LISTEN", value_name = "ADDR")]
    pub tls_listen: Option<SocketAddr>,
    /// Admin API listener; keep it on loopback unless it is firewalled [default: 127.0.0.1:9180]
    #[arg(long, env = "SLUICE_ADMIN_LISTEN", value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,
    /// Admin API key. There is no default: without one, a random key is generated on first start
    /// into <data-dir>/admin.key (mode 0600) and its path is logged.
    #[arg(
        long,
        env = "SLUICE_ADMIN_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    pub admin_key: Option<String>,
    /// Metrics listener: Prometheus `/metrics`, `/status`, `/status/ready`; `off` for none (and no
    /// per-request counting) [default: 127.0.0.1:9091]
    #[arg(long, env = "SLUICE_METRICS_LISTEN", value_name = "ADDR|off")]
    pub metrics_listen: Option<String>,
    /// Where config lives: `sled` (embedded) or `etcd://host:port[,host:port]/prefix` [default: sled]
    #[arg(long, env = "SLUICE_CONFIG_STORE", value_name = "URL")]
    pub config_store: Option<String>,
    /// Log format [default: text]
    #[arg(long, env = "SLUICE_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log filter in tracing's EnvFilter syntax, e.g. `info` or `sluice=debug` [default: info]
    #[arg(long, env = "SLUICE_LOG_LEVEL", value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT [default: 30]
    #[arg(long, env = "SLUICE_SHUTDOWN_TIMEOUT", value_name = "SECS")]
    pub shutdown_timeout: Option<f64>,
    /// Worker threads serving requests [default: one per CPU the process may run on]
    #[arg(long, env = "SLUICE_WORKERS", value_name = "N")]
    pub workers: Option<usize>,
    /// Memory for the response cache (proxy-cache), in MiB; least recently used entries are evicted
    /// beyond it [default: 256]
    #[arg(long, env = "SLUICE_CACHE_SIZE", value_name = "MIB")]
    pub cache_size: Option<usize>,
    /// Largest request head (request line and headers) a client may send; beyond it, 431. Sizes take
    /// units: `60KiB`, `1MiB`, or plain bytes [default: 60KiB]
    #[arg(long, env = "SLUICE_MAX_HEADER_SIZE", value_name = "SIZE")]
    pub max_header_size: Option<ByteSize>,
    /// Most header fields in one request; beyond it, 431 [default: 100]
    #[arg(long, env = "SLUICE_MAX_HEADERS", value_name = "N")]
    pub max_headers: Option<usize>,
    /// Longest request URI (path and query); beyond it, 414 [default: 8KiB]
    #[arg(long, env = "SLUICE_MAX_URI_SIZE", value_name = "SIZE")]
    pub max_uri_size: Option<ByteSize>,
    /// Largest request body; beyond it, 413 (a route may set its own with the `client-control` plugin)
    /// [default: 1GiB]
    #[arg(long, env = "SLUICE_MAX_BODY_SIZE", value_name = "SIZE")]
    pub max_body_size: Option<ByteSize>,
    /// Seconds a client has to send a whole request head (slowloris guard); also how long an HTTP/1.1
    /// keep-alive connection waits for its next request [default: 30]
    #[arg(long, env = "SLUICE_HEADER_READ_TIMEOUT", value_name = "SECS")]
    pub header_read_timeout: Option<f64>,
    /// Seconds a connection may stay open with no request in flight [default: 60]
    #[arg(long, env = "SLUICE_IDLE_TIMEOUT", value_name = "SECS")]
    pub idle_timeout: Option<f64>,
    /// Open client connections per proxy listener; past it new ones are closed at once [default: 16384]
    #[arg(long, env = "SLUICE_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Concurrent streams per HTTP/2 client connection [default: 128]
    #[arg(long, env = "SLUICE_H2_MAX_CONCURRENT_STREAMS", value_name = "N")]
    pub h2_max_concurrent_streams: Option<u32>,
    /// Access log: one line per request to `stdout`, to a file (PATH), or `off` [default: stdout]
    #[arg(long, env = "SLUICE_ACCESS_LOG", value_name = "PATH|stdout|off")]
    pub access_log: Option<String>,
    /// Access log format: `json` (APISIX's log format), `combined` (nginx's) or a template of
    /// $variables such as '$remote_addr "$request" $status $request_time' [default: json]
    #[arg(long, env = "SLUICE_ACCESS_LOG_FORMAT", value_name = "FORMAT")]
    pub access_log_format: Option<String>,
    /// Directory logger plugins (file-logger) may write in; their paths are relative to it
    /// [default: <data-dir>/plugin-logs]
    #[arg(long, env = "SLUICE_PLUGIN_LOG_DIR", value_name = "DIR")]
    pub plugin_log_dir: Option<PathBuf>,
    /// Export request spans (with phase and plugin child spans) over OTLP/HTTP (protobuf) to this
    /// collector URL, e.g. http://127.0.0.1:4318/v1/traces; no spans are made when unset [default: off]
    #[arg(long, env = "SLUICE_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// DNS servers (`ip:port`, comma-separated) for DNS names in upstream nodes and `discovery_type:
    /// dns` (APISIX: `discovery.dns.servers`) [default: the system's, from /etc/resolv.conf]
    #[arg(
        long,
        env = "SLUICE_DNS_RESOLVER",
        value_name = "ADDR",
        value_delimiter = ','
    )]
    pub dns_resolver: Vec<SocketAddr>,
}

/// The config file: the same names as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    tls_listen: Option<SocketAddr>,
    admin_listen: Option<SocketAddr>,
    admin_key: Option<String>,
    metrics_listen: Option<String>,
    config_store: Option<String>,
    log_format: Option<LogFormat>,
    log_level: Option<String>,
    shutdown_timeout: Option<f64>,
    workers: Option<usize>,
    cache_size: Option<usize>,
    max_header_size: Option<ByteSize>,
    max_headers: Option<usize>,
    max_uri_size: Option<ByteSize>,
    max_body_size: Option<ByteSize>,
    header_read_timeout: Option<f64>,
    idle_timeout: Option<f64>,
    max_connections: Option<usize>,
    h2_max_concurrent_streams: Option<u32>,
    access_log: Option<String>,
    access_log_format: Option<String>,
    plugin_log_dir: Option<PathBuf>,
    otlp_endpoint: Option<String>,
    dns_resolver: Option<Vec<SocketAddr>>,
}

/// Fully resolved settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub tls_listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub admin_key: Option<String>,
    /// `None`: metrics off.
    pub metrics_listen: Option<SocketAddr>,
    pub config_store: String,
    pub log_format: LogFormat,
    pub log_level: String,
    pub shutdown_timeout: Duration,
    pub workers: Option<usize>,
    /// Response cache bound in bytes.
    pub cache_bytes: usize,
    /// `None`: access log off.
    pub access_log: Option<AccessLogTarget>,
    pub access_log_format: AccessLogFormat,
    pub plugin_log_dir: PathBuf,
    /// OTLP/HTTP traces endpoint; `None`: no spans.
    pub otlp_endpoint: Option<String>,
    pub limits: ClientLimits,
    /// DNS servers for service discovery; empty: the system configuration.
    pub dns_resolvers: Vec<SocketAddr>,
}

/// A number of seconds that must be finite and positive.
fn seconds(name: &str, value: Option<f64>, default: Duration) -> anyhow::Result<Duration> {
    let Some(v) = value else {
        return Ok(default);
    };
    anyhow::ensure!(
        v.is_finite() && v > 0.0,
        "{name} must be a number of seconds > 0, got {v}"
    );
    Ok(Duration::from_secs_f64(v))
}

/// A count or size that must lie in `range`.
fn bounded<T: PartialOrd + std::fmt::Display + Copy>(
    name: &str,
    value: Option<T>,
    default: T,
    range: std::ops::RangeInclusive<T>,
) -> anyhow::Result<T> {
    let v = value.unwrap_or(default);
    anyhow::ensure!(
        range.contains(&v),
        "{name} must be between {} and {}, got {v}",
        range.start(),
        range.end()
    );
    Ok(v)
}

impl ServeArgs {
    /// The client limits, each from flag, environment, file or default, checked for sense.
    fn limits(&self, file: &FileSettings) -> anyhow::Result<ClientLimits> {
        let d = ClientLimits::default();
        let size =
            |flag: Option<ByteSize>, file: Option<ByteSize>| flag.or(file).map(|b| b.as_u64());
        let head = size(self.max_header_size, file.max_header_size);
        let uri = size(self.max_uri_size, file.max_uri_size);
        let body = size(self.max_body_size, file.max_body_size);
        let head = bounded(
            "max_header_size",
            head,
            d.max_head_bytes as u64,
            1024..=(1 << 20),
        )?;
        Ok(ClientLimits {
            // hyper's read buffer cannot be smaller than 8 KiB, and a head limit below 1 KiB refuses real clients.
            max_head_bytes: usize::try_from(head)?,
            max_headers: bounded(
                "max_headers",
                self.max_headers.or(file.max_headers),
                d.max_headers,
                1..=10_000,
            )?,
            max_uri_bytes: usize::try_from(bounded(
                "max_uri_size",
                uri,
                d.max_uri_bytes as u64,
                64..=head,
            )?)?,
            max_body_bytes: bounded("max_body_size", body, d.max_body_bytes, 1..=u64::MAX)?,
            header_read_timeout: seconds(
                "header_read_timeout",
                self.header_read_timeout.or(file.header_read_timeout),
                d.header_read_timeout,
            )?,
            idle_timeout: seconds(
                "idle_timeout",
                self.idle_timeout.or(file.idle_timeout),
                d.idle_timeout,
            )?,
            max_connections: bounded(
                "max_connections",
                self.max_connections.or(file.max_connections),
                d.max_connections,
                1..=1 << 24,
            )?,
            h2_max_concurrent_streams: bounded(
                "h2_max_concurrent_streams",
                self.h2_max_concurrent_streams
                    .or(file.h2_max_concurrent_streams),
                d.h2_max_concurrent_streams,
                1..=10_000,
            )?,
        })
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse()
        .unwrap_or_else(|_| unreachable!("built-in address {s} parses"))
}

impl ServeArgs {
    pub fn resolve(self) -> anyhow::Result<Settings> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("reading config file {}: {e}", path.display()))?;
                toml::from_str::<FileSettings>(&text)
                    .map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display()))?
            }
            None => FileSettings::default(),
        };
        let shutdown = self
            .shutdown_timeout
            .or(file.shutdown_timeout)
            .unwrap_or(30.0);
        anyhow::ensure!(
            shutdown.is_finite() && shutdown >= 0.0,
            "shutdown_timeout must be a number of seconds >= 0"
        );
        let cache_mib = self.cache_size.or(file.cache_size).unwrap_or(256);
        anyhow::ensure!(
            (1..=1 << 20).contains(&cache_mib),
            "cache_size must be between 1 and 1048576 MiB, got {cache_mib}"
        );
        let limits = self.limits(&file)?;
        let access_log = match self.access_log.or(file.access_log).as_deref() {
            None | Some("stdout") => Some(AccessLogTarget::Stdout),
            Some("off") => None,
            Some("") => anyhow::bail!("access_log must be a path, `stdout` or `off`"),
            Some(path) => Some(AccessLogTarget::File(PathBuf::from(path))),
        };
        let access_log_format = self
            .access_log_format
            .or(file.access_log_format)
            .as_deref()
            .unwrap_or("json")
            .parse::<AccessLogFormat>()?;
        let metrics_listen = match self.metrics_listen.or(file.metrics_listen).as_deref() {
            None => Some(addr("127.0.0.1:9091")),
            Some("off") => None,
            Some(a) => Some(a.parse::<SocketAddr>().map_err(|e| {
                anyhow::anyhow!(
                    "metrics_listen {a:?}: {e} (an address such as 127.0.0.1:9091, or off)"
                )
            })?),
        };
        let otlp_endpoint = self.otlp_endpoint.or(file.otlp_endpoint);
        if let Some(url) = &otlp_endpoint {
            anyhow::ensure!(
                url.starts_with("http://") || url.starts_with("https://"),
                "otlp_endpoint {url:?} must be an http:// or https:// URL (OTLP/HTTP)"
            );
        }
        let data_dir = self
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("./sluice-data"));
        Ok(Settings {
            plugin_log_dir: self
                .plugin_log_dir
                .or(file.plugin_log_dir)
                .unwrap_or_else(|| data_dir.join("plugin-logs")),
            data_dir,
            listen: self
                .listen
                .or(file.listen)
                .unwrap_or_else(|| addr("0.0.0.0:9080")),
            tls_listen: self
                .tls_listen
                .or(file.tls_listen)
                .unwrap_or_else(|| addr("0.0.0.0:9443")),
            admin_listen: self
                .admin_listen
                .or(file.admin_listen)
                .unwrap_or_else(|| addr("127.0.0.1:9180")),
            admin_key: self.admin_key.or(file.admin_key),
            metrics_listen,
            config_store: self
                .config_store
                .or(file.config_store)
                .unwrap_or_else(|| "sled".to_string()),
            log_format: self
                .log_format
                .or(file.log_format)
                .unwrap_or(LogFormat::Text),
            log_level: self
                .log_level
                .or(file.log_level)
                .unwrap_or_else(|| "info".to_string()),
            shutdown_timeout: Duration::from_secs_f64(shutdown),
            workers: self.workers.or(file.workers).filter(|n| *n > 0),
            cache_bytes: cache_mib << 20,
            limits,
            access_log,
            access_log_format,
            otlp_endpoint,
            dns_resolvers: if self.dns_resolver.is_empty() {
                file.dns_resolver.unwrap_or_default()
            } else {
                self.dns_resolver
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_file_and_file_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:1111\"\nadmin_listen = \"127.0.0.1:2222\"\ncache_size = 64\ndns_resolver = [\"127.0.0.1:5353\"]\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path),
            listen: Some(addr("127.0.0.1:3333")),
            ..Default::default()
        };
        let s = args.resolve().unwrap();
        assert_eq!(s.listen, addr("127.0.0.1:3333"));
        assert_eq!(s.admin_listen, addr("127.0.0.1:2222"));
        assert_eq!(s.metrics_listen, Some(addr("127.0.0.1:9091")));
        assert_eq!(s.admin_key, None);
        assert_eq!(s.cache_bytes, 64 << 20);
        assert_eq!(s.dns_resolvers, [addr("127.0.0.1:5353")]);
        let zero = ServeArgs {
            cache_size: Some(0),
            ..Default::default()
        };
        assert!(zero
            .resolve()
            .unwrap_err()
            .to_string()
            .contains("cache_size"));
    }

    #[test]
    fn access_log_and_plugin_log_dir_have_defaults_and_checked_values() {
        let s = ServeArgs {
            data_dir: Some(PathBuf::from("/srv/sluice")),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(s.access_log, Some(AccessLogTarget::Stdout));
        assert_eq!(s.access_log_format, AccessLogFormat::Json);
        assert_eq!(s.plugin_log_dir, PathBuf::from("/srv/sluice/plugin-logs"));
        assert_eq!(s.otlp_endpoint, None);
        let off = ServeArgs {
            access_log: Some("off".into()),
            metrics_listen: Some("off".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!((off.access_log, off.metrics_listen), (None, None));
        let bad = |args: ServeArgs, field: &str| {
            let err = args.resolve().unwrap_err().to_string();
            assert!(err.contains(field), "{err}");
        };
        bad(
            ServeArgs {
                access_log_format: Some("$remote_addr $bogus".into()),
                ..Default::default()
            },
            "$bogus",
        );
        bad(
            ServeArgs {
                otlp_endpoint: Some("127.0.0.1:4318".into()),
                ..Default::default()
            },
            "otlp_endpoint",
        );
    }

    #[test]
    fn unknown_file_keys_are_rejected_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.toml");
        std::fs::write(&path, "lisen = \"127.0.0.1:1\"\n").unwrap();
        let err = ServeArgs {
            config: Some(path),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");
    }
}
