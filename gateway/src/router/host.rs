//! Host matching with lua-resty-radixtree semantics: exact names compare
//! case-insensitively, and a leading `*` turns the rest into a suffix match.

/// A compiled `hosts[i]` entry. Stored lower-cased so matching never
/// allocates; request hosts are compared with ASCII case folding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostPattern {
    /// `*` prefix present: `name` is a suffix, not the whole host.
    wildcard: bool,
    name: Box<str>,
}

impl HostPattern {
    /// Accepts APISIX's host syntax (`^\*?[0-9a-zA-Z-._\[\]:]+$`), minus a
    /// `:port` suffix: the request host is matched with its port removed, so
    /// a pattern carrying a port could never match and is rejected instead.
    pub(crate) fn parse(raw: &str) -> Result<Self, String> {
        let (wildcard, name) = match raw.strip_prefix('*') {
            Some(rest) => (true, rest),
            None => (false, raw),
        };
        if name.is_empty() {
            return Err(if wildcard {
                "\"*\" alone is not a host pattern; leave hosts empty to match any host".into()
            } else {
                "must not be empty".into()
            });
        }
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "-._[]:".contains(*c)))
        {
            return Err(format!("invalid character {c:?} in host {raw:?}"));
        }
        if name.contains(':') && !name.starts_with('[') {
            return Err(format!(
                "host {raw:?} must not include a port (ports are ignored when matching)"
            ));
        }
        Ok(Self {
            wildcard,
            name: name.to_ascii_lowercase().into_boxed_str(),
        })
    }

    /// `host` must already have its port stripped (see [`strip_port`]).
    /// `*.example.com` matches `a.example.com` and `a.b.example.com` but not
    /// `example.com`; `*example.com` also matches `example.com` itself, which
    /// is exactly what radixtree's reversed-suffix comparison does.
    pub(crate) fn matches(&self, host: &str) -> bool {
        let (host, name) = (host.as_bytes(), self.name.as_bytes());
        if self.wildcard {
            host.len() >= name.len() && host[host.len() - name.len()..].eq_ignore_ascii_case(name)
        } else {
            host.eq_ignore_ascii_case(name)
        }
    }
}

/// Removes a `:port` suffix from a `Host` header value. Bracketed IPv6
/// (`[::1]:8080`) keeps its brackets; a bare IPv6 address (several colons)
/// is returned unchanged because its last group is not a port.
pub(crate) fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> HostPattern {
        HostPattern::parse(s).expect("valid pattern")
    }

    #[test]
    fn exact_is_case_insensitive() {
        assert!(p("Example.COM").matches("example.com"));
        assert!(p("example.com").matches("EXAMPLE.com"));
        assert!(!p("example.com").matches("a.example.com"));
        assert!(!p("example.com").matches("example.co"));
    }

    #[test]
    fn wildcard_matches_any_depth_but_not_apex() {
        let w = p("*.example.com");
        assert!(w.matches("a.example.com"));
        assert!(w.matches("a.b.example.com"));
        assert!(w.matches("A.Example.Com"));
        assert!(!w.matches("example.com"));
        assert!(!w.matches("badexample.com"));
        assert!(!w.matches("a.example.org"));
        let bare = p("*example.com");
        assert!(bare.matches("example.com"));
        assert!(bare.matches("myexample.com"));
    }

    #[test]
    fn strip_port_variants() {
        assert_eq!(strip_port("example.com:8080"), "example.com");
        assert_eq!(strip_port("example.com:"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:443"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
        assert_eq!(strip_port("::1"), "::1");
        assert_eq!(strip_port("host:abc"), "host:abc");
    }

    #[test]
    fn invalid_patterns() {
        assert!(HostPattern::parse("").is_err());
        assert!(HostPattern::parse("*").is_err());
        assert!(HostPattern::parse("a b.com").is_err());
        assert!(HostPattern::parse("a.*.com").is_err());
        let err = HostPattern::parse("example.com:8080").expect_err("port");
        assert!(err.contains("port"), "{err}");
        assert!(HostPattern::parse("[::1]").is_ok());
    }
}
