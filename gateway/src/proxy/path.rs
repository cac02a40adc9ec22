//! Request path normalisation before routing (RFC 3986 §5.2.4 dot segments, merged slashes).
//!
//! Without it, `/public/../admin` matches a `/public/*` route and an upstream that normalises paths
//! itself then serves `/admin`: the route's plugins (auth, ip-restriction) would guard the wrong
//! thing. nginx, and so APISIX, route on the normalised path; so do we, and we forward that same path,
//! so the upstream sees exactly what was matched. Percent-encoded dots (`%2e`) count as dots, because
//! many upstreams decode before resolving. A path that climbs above `/` is refused.

use std::borrow::Cow;

#[derive(Debug, PartialEq, Eq)]
pub struct EscapesRoot;

fn is_dot(seg: &str) -> bool {
    seg == "." || seg.eq_ignore_ascii_case("%2e")
}

fn is_dot_dot(seg: &str) -> bool {
    let lower = seg.to_ascii_lowercase();
    matches!(lower.as_str(), ".." | ".%2e" | "%2e." | "%2e%2e")
}

/// The normalised form of `path`, borrowed when it was already normal (the common case).
pub fn normalize(path: &str) -> Result<Cow<'_, str>, EscapesRoot> {
    let needs_work = path.contains("//")
        || path.contains("/.")
        || path.contains("/%2e")
        || path.contains("/%2E")
        || !path.starts_with('/');
    if !needs_work {
        return Ok(Cow::Borrowed(path));
    }
    let mut out: Vec<&str> = Vec::new();
    let mut trailing_slash = path.ends_with('/');
    for seg in path.split('/') {
        if seg.is_empty() {
            continue;
        }
        if is_dot(seg) {
            trailing_slash = true;
        } else if is_dot_dot(seg) {
            if out.pop().is_none() {
                return Err(EscapesRoot);
            }
            trailing_slash = true;
        } else {
            out.push(seg);
            trailing_slash = false;
        }
    }
    if path.ends_with('/') {
        trailing_slash = true;
    }
    let mut s = String::with_capacity(path.len());
    for seg in &out {
        s.push('/');
        s.push_str(seg);
    }
    if out.is_empty() || trailing_slash {
        s.push('/');
    }
    Ok(Cow::Owned(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_paths_are_borrowed() {
        assert!(matches!(
            normalize("/a/b.c/d"),
            Ok(Cow::Borrowed("/a/b.c/d"))
        ));
        assert!(matches!(normalize("/"), Ok(Cow::Borrowed("/"))));
    }

    #[test]
    fn dot_segments_resolve() {
        assert_eq!(normalize("/public/../secret").unwrap(), "/secret");
        assert_eq!(normalize("/public/%2e%2e/secret").unwrap(), "/secret");
        assert_eq!(normalize("/public/./../secret").unwrap(), "/secret");
        assert_eq!(normalize("/a//b///c").unwrap(), "/a/b/c");
        assert_eq!(normalize("/a/b/..").unwrap(), "/a/");
        assert_eq!(normalize("/a/./").unwrap(), "/a/");
        assert_eq!(normalize("/a/.hidden").unwrap(), "/a/.hidden");
    }

    #[test]
    fn climbing_above_root_is_refused() {
        assert_eq!(normalize("/../etc/passwd"), Err(EscapesRoot));
        assert_eq!(normalize("/a/../../b"), Err(EscapesRoot));
    }
}
