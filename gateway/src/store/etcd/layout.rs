//! Where things live in etcd, and the `etcd://` URL that says which etcd and which prefix.
//!
//! Config objects sit at APISIX's keys (`<prefix>/routes/1`) so tools that read an APISIX etcd read ours.
//! Plugin records and the write guard sit beside them under the watched prefix; plugin binaries sit under
//! `<prefix>.blobs/`, which sorts outside `<prefix>/`, so a watch never carries megabytes of wasm.

use crate::config::ResourceKind;

/// APISIX's default prefix.
pub const DEFAULT_PREFIX: &str = "/apisix";

/// A parsed `--config-store etcd://host:port[,host:port...][/prefix]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdUrl {
    /// `http://host:port` for each member.
    pub endpoints: Vec<String>,
    pub prefix: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("--config-store {url:?}: {reason} (expected etcd://host:port[,host:port...][/prefix])")]
pub struct UrlError {
    url: String,
    reason: String,
}

impl std::str::FromStr for EtcdUrl {
    type Err = UrlError;

    fn from_str(url: &str) -> Result<Self, UrlError> {
        let err = |reason: &str| UrlError {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let rest = url
            .strip_prefix("etcd://")
            .ok_or_else(|| err("the scheme must be etcd://"))?;
        let (hosts, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let mut endpoints = Vec::new();
        for host in hosts.split(',') {
            let port = host.rsplit_once(':').map(|(h, p)| (h, p.parse::<u16>()));
            match port {
                Some((h, Ok(p))) if !h.is_empty() && p > 0 => {
                    endpoints.push(format!("http://{host}"));
                }
                _ => return Err(err(&format!("{host:?} is not host:port"))),
            }
        }
        let prefix = path.trim_end_matches('/');
        let prefix = if prefix.is_empty() {
            DEFAULT_PREFIX
        } else {
            prefix
        };
        if prefix.contains("//") || prefix.chars().any(char::is_whitespace) {
            return Err(err(&format!("{prefix:?} is not a usable key prefix")));
        }
        Ok(EtcdUrl {
            endpoints,
            prefix: prefix.to_string(),
        })
    }
}

/// What a key under the watched prefix holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry<'a> {
    Config(ResourceKind, &'a str),
    Plugin(&'a str),
    Guard,
}

const PLUGINS: &str = "wasm_plugins";
const GUARD: &str = "sluice_guard";

/// The keys of one prefix.
#[derive(Debug, Clone)]
pub struct Layout {
    prefix: String,
}

impl Layout {
    pub fn new(prefix: &str) -> Self {
        Layout {
            prefix: prefix.to_string(),
        }
    }

    /// `<prefix>/`: everything a node watches.
    pub fn watched(&self) -> String {
        format!("{}/", self.prefix)
    }

    pub fn config(&self, kind: ResourceKind, id: &str) -> String {
        format!("{}/{}/{id}", self.prefix, kind.segment())
    }

    pub fn plugin(&self, name: &str) -> String {
        format!("{}/{PLUGINS}/{name}", self.prefix)
    }

    /// Bumped by every admin write; see the module docs of [`super`].
    pub fn guard(&self) -> String {
        format!("{}/{GUARD}", self.prefix)
    }

    /// Every stored version of one plugin's binary.
    pub fn blobs_of(&self, name: &str) -> String {
        format!("{}.blobs/{name}/", self.prefix)
    }

    /// The chunks of one version (`sha256` in hex).
    pub fn blob(&self, name: &str, sha256: &str) -> String {
        format!("{}{sha256}/", self.blobs_of(name))
    }

    pub fn chunk(&self, name: &str, sha256: &str, index: usize) -> String {
        format!("{}{index:04}", self.blob(name, sha256))
    }

    /// Reads a watched key; `None` for keys of nobody we know (left alone).
    pub fn classify<'k>(&self, key: &'k str) -> Option<Entry<'k>> {
        let rest = key.strip_prefix(&self.prefix)?.strip_prefix('/')?;
        if rest == GUARD {
            return Some(Entry::Guard);
        }
        let (segment, id) = rest.split_once('/')?;
        if id.is_empty() || id.contains('/') {
            return None;
        }
        if segment == PLUGINS {
            return Some(Entry::Plugin(id));
        }
        Some(Entry::Config(ResourceKind::from_segment(segment)?, id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_members_and_an_optional_prefix() {
        let u: EtcdUrl = "etcd://127.0.0.1:2379".parse().unwrap();
        assert_eq!(u.endpoints, vec!["http://127.0.0.1:2379"]);
        assert_eq!(u.prefix, "/apisix");
        let u: EtcdUrl = "etcd://a:1,b:2/gw/prod/".parse().unwrap();
        assert_eq!(u.endpoints, vec!["http://a:1", "http://b:2"]);
        assert_eq!(u.prefix, "/gw/prod");
        for bad in [
            "http://a:1",
            "etcd://",
            "etcd://a",
            "etcd://a:x",
            "etcd://a:1,/p",
            "etcd://a:0",
            "etcd://a:1/x//y",
        ] {
            let e = bad.parse::<EtcdUrl>().unwrap_err().to_string();
            assert!(e.contains("expected etcd://host:port"), "{bad}: {e}");
        }
    }

    #[test]
    fn keys_round_trip_and_blobs_stay_outside_the_watched_prefix() {
        let l = Layout::new("/apisix");
        let route = l.config(ResourceKind::Routes, "7");
        assert_eq!(route, "/apisix/routes/7");
        assert_eq!(
            l.classify(&route),
            Some(Entry::Config(ResourceKind::Routes, "7"))
        );
        assert_eq!(l.classify(&l.plugin("hello")), Some(Entry::Plugin("hello")));
        assert_eq!(l.classify(&l.guard()), Some(Entry::Guard));
        let chunk = l.chunk("hello", "ab12", 3);
        assert_eq!(chunk, "/apisix.blobs/hello/ab12/0003");
        assert!(!chunk.starts_with(&l.watched()));
        for other in [
            "/apisix/protos/1",
            "/apisix/routes/",
            "/apisix/routes/a/b",
            "/apisixx/routes/1",
            "/other/routes/1",
        ] {
            assert_eq!(l.classify(other), None, "{other}");
        }
    }
}
