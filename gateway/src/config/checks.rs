//! `upstream.checks`: APISIX's health-check object (`active` probes and `passive` observation of real
//! traffic), with APISIX's defaults filled in here so the runtime never guesses.
//!
//! Field names and defaults follow APISIX (lua-resty-healthcheck). Two deliberate differences:
//! `interval` and `timeout` accept fractions of a second (APISIX: whole seconds for `interval`), and
//! `https_verify_certificate` defaults to `true` like the rest of Sluice's upstream TLS.

use super::common::ConfigError;
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Checks {
    pub active: Option<Active>,
    pub passive: Option<Passive>,
}

/// How probes reach a node.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProbeKind {
    #[default]
    Http,
    Https,
    Tcp,
}

impl ProbeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Http => "http",
            ProbeKind::Https => "https",
            ProbeKind::Tcp => "tcp",
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Active {
    #[serde(rename = "type")]
    pub kind: ProbeKind,
    /// Seconds a probe may take (connect plus response head).
    pub timeout: f64,
    /// Nodes probed at the same time.
    pub concurrency: usize,
    pub http_path: String,
    /// `Host` of the probe; the node's host when absent.
    pub host: Option<String>,
    /// Probe this port instead of the node's.
    pub port: Option<u16>,
    pub https_verify_certificate: bool,
    /// Extra request headers, each `"Name: value"`.
    pub req_headers: Vec<String>,
    pub healthy: ActiveHealthy,
    pub unhealthy: ActiveUnhealthy,
}

impl Default for Active {
    fn default() -> Self {
        Active {
            kind: ProbeKind::Http,
            timeout: 1.0,
            concurrency: 10,
            http_path: "/".into(),
            host: None,
            port: None,
            https_verify_certificate: true,
            req_headers: Vec::new(),
            healthy: ActiveHealthy::default(),
            unhealthy: ActiveUnhealthy::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ActiveHealthy {
    /// Seconds between probes of a healthy node; 0 stops probing healthy nodes.
    pub interval: f64,
    pub http_statuses: Vec<u16>,
    pub successes: u32,
}

impl Default for ActiveHealthy {
    fn default() -> Self {
        ActiveHealthy {
            interval: 1.0,
            http_statuses: vec![200, 302],
            successes: 2,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ActiveUnhealthy {
    /// Seconds between probes of an unhealthy node; 0 stops probing unhealthy nodes.
    pub interval: f64,
    pub http_statuses: Vec<u16>,
    pub http_failures: u32,
    pub tcp_failures: u32,
    pub timeouts: u32,
}

impl Default for ActiveUnhealthy {
    fn default() -> Self {
        ActiveUnhealthy {
            interval: 1.0,
            http_statuses: vec![429, 404, 500, 501, 502, 503, 504, 505],
            http_failures: 5,
            tcp_failures: 2,
            timeouts: 3,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Passive {
    /// Only `http` is meaningful for an HTTP proxy; accepted for APISIX compatibility.
    #[serde(rename = "type")]
    pub kind: ProbeKind,
    pub healthy: PassiveHealthy,
    pub unhealthy: PassiveUnhealthy,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PassiveHealthy {
    pub http_statuses: Vec<u16>,
    pub successes: u32,
}

impl Default for PassiveHealthy {
    fn default() -> Self {
        PassiveHealthy {
            http_statuses: (200..=226).chain(300..=308).collect(),
            successes: 5,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PassiveUnhealthy {
    pub http_statuses: Vec<u16>,
    pub http_failures: u32,
    pub tcp_failures: u32,
    pub timeouts: u32,
}

impl Default for PassiveUnhealthy {
    fn default() -> Self {
        PassiveUnhealthy {
            http_statuses: vec![429, 500, 503],
            http_failures: 5,
            tcp_failures: 2,
            timeouts: 7,
        }
    }
}

impl Checks {
    /// Rejects what APISIX's schema rejects and what would make the checker misbehave (a zero
    /// concurrency would never probe; a non-finite interval would never wake).
    pub fn check(&self) -> Result<(), ConfigError> {
        if let Some(a) = &self.active {
            seconds("checks.active.timeout", a.timeout, false)?;
            seconds("checks.active.healthy.interval", a.healthy.interval, true)?;
            seconds(
                "checks.active.unhealthy.interval",
                a.unhealthy.interval,
                true,
            )?;
            if a.concurrency == 0 {
                return Err(ConfigError::new(
                    "checks.active.concurrency: must be at least 1",
                ));
            }
            if !a.http_path.starts_with('/') {
                return Err(ConfigError::new(
                    "checks.active.http_path: must start with \"/\"",
                ));
            }
            for h in &a.req_headers {
                let valid = h.split_once(':').is_some_and(|(name, value)| {
                    http::HeaderName::from_bytes(name.trim().as_bytes()).is_ok()
                        && http::HeaderValue::from_str(value.trim()).is_ok()
                });
                if !valid {
                    return Err(ConfigError::new(format!(
                        "checks.active.req_headers: {h:?} is not \"Name: value\""
                    )));
                }
            }
            if let Some(host) = &a.host {
                if http::HeaderValue::from_str(host).is_err() || host.is_empty() {
                    return Err(ConfigError::new(format!(
                        "checks.active.host: {host:?} is not a valid Host"
                    )));
                }
            }
            statuses(
                "checks.active.healthy.http_statuses",
                &a.healthy.http_statuses,
            )?;
            statuses(
                "checks.active.unhealthy.http_statuses",
                &a.unhealthy.http_statuses,
            )?;
        }
        if let Some(p) = &self.passive {
            statuses(
                "checks.passive.healthy.http_statuses",
                &p.healthy.http_statuses,
            )?;
            statuses(
                "checks.passive.unhealthy.http_statuses",
                &p.unhealthy.http_statuses,
            )?;
        }
        Ok(())
    }

    /// Parses and checks the raw `checks` value stored with an upstream.
    pub fn parse(value: &serde_json::Value) -> Result<Checks, ConfigError> {
        if !value.is_object() {
            return Err(ConfigError::new("checks: must be an object"));
        }
        let checks: Checks = super::parse_resource(value).map_err(|e| {
            // serde names the path inside `checks` ("active.timeout: ..."); make it the full field path.
            let has_path = e.0.split_once(": ").is_some_and(|(p, _)| !p.contains(' '));
            if has_path {
                ConfigError::new(format!("checks.{}", e.0))
            } else {
                e.at("checks")
            }
        })?;
        checks.check()?;
        Ok(checks)
    }
}

fn seconds(field: &str, v: f64, zero_ok: bool) -> Result<(), ConfigError> {
    let ok = v.is_finite() && (v > 0.0 || (zero_ok && v == 0.0)) && v <= 86_400.0;
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(format!(
            "{field}: must be a number of seconds {} 0 and at most 86400",
            if zero_ok { ">=" } else { ">" }
        )))
    }
}

fn statuses(field: &str, list: &[u16]) -> Result<(), ConfigError> {
    match list.iter().find(|s| !(200..=599).contains(*s)) {
        Some(s) => Err(ConfigError::new(format!(
            "{field}: {s} is not an HTTP status between 200 and 599"
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn apisix_defaults_fill_missing_fields() {
        let c = Checks::parse(&json!({"active": {"type": "tcp"}, "passive": {}})).expect("valid");
        let a = c.active.expect("active");
        assert_eq!(a.kind, ProbeKind::Tcp);
        assert_eq!((a.healthy.successes, a.unhealthy.tcp_failures), (2, 2));
        let p = c.passive.expect("passive");
        assert_eq!(p.unhealthy.http_statuses, [429, 500, 503]);
        assert_eq!(p.unhealthy.timeouts, 7);
    }

    #[test]
    fn bad_fields_are_named() {
        let e = Checks::parse(&json!({"active": {"intervall": 1}})).expect_err("unknown field");
        assert!(e.0.starts_with("checks.active"), "{e}");
        assert!(e.0.contains("intervall"), "{e}");
        let e =
            Checks::parse(&json!({"active": {"healthy": {"successes": 1.5}}})).expect_err("int");
        assert!(e.0.starts_with("checks.active.healthy.successes: "), "{e}");
        let e = Checks::parse(&json!([])).expect_err("array");
        assert_eq!(e.0, "checks: must be an object");
        let e = Checks::parse(&json!({"active": {"healthy": {"interval": -1}}})).expect_err("neg");
        assert!(e.0.contains("checks.active.healthy.interval"), "{e}");
        let e = Checks::parse(&json!({"active": {"req_headers": ["nocolon"]}})).expect_err("hdr");
        assert!(e.0.contains("req_headers"), "{e}");
        let e = Checks::parse(&json!({"passive": {"unhealthy": {"http_statuses": [99]}}}))
            .expect_err("status");
        assert!(e.0.contains("99"), "{e}");
    }
}
