//! What a `log-sink` destination, batch policy and entry may be (the WIT `log-sink` interface). Each
//! check returns the message the plugin (and so the admin, from the plugin's `validate`) gets.

/// Largest batch a policy may ask for: a batch is held in memory while it is delivered and retried.
pub const MAX_BATCH_SIZE: u32 = 10_000;
/// Largest single entry the host queues.
pub const MAX_ENTRY_BYTES: usize = 256 << 10;
/// Longest file path (relative to the log directory) a destination may name.
pub const MAX_PATH_BYTES: usize = 1024;

/// A batch policy's numbers: `max_size` in `1..=MAX_BATCH_SIZE`.
pub fn check_batch_size(max_size: u32) -> Result<(), String> {
    if (1..=MAX_BATCH_SIZE).contains(&max_size) {
        Ok(())
    } else {
        Err(format!(
            "batch_max_size must be between 1 and {MAX_BATCH_SIZE}, got {max_size}"
        ))
    }
}

/// An HTTP destination: an absolute `http://` or `https://` URL with a host, a header-safe `Authorization`
/// value, and a timeout of at least a millisecond.
pub fn check_http(uri: &str, auth_header: Option<&str>, timeout_ms: u32) -> Result<(), String> {
    let rest = uri
        .strip_prefix("http://")
        .or_else(|| uri.strip_prefix("https://"))
        .ok_or_else(|| format!("uri {uri:?} must start with http:// or https://"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("uri {uri:?} must name a host (and no user info)"));
    }
    if uri.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(format!("uri {uri:?} contains spaces or control characters"));
    }
    if auth_header.is_some_and(|h| h.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)) {
        return Err("auth_header must not contain CR, LF or NUL".to_string());
    }
    if timeout_ms == 0 {
        return Err("timeout must be at least 1".to_string());
    }
    Ok(())
}

/// A file destination: a relative path of plain names (no absolute path, no `.` or `..`, no empty
/// segment, no trailing `/`), so that it can only name a file inside the gateway's log directory.
pub fn check_file_path(path: &str) -> Result<(), String> {
    let refuse = |why: &str| Err(format!("path {path:?} {why}"));
    if path.is_empty() {
        return refuse("is empty");
    }
    if path.len() > MAX_PATH_BYTES {
        return refuse(&format!("is longer than {MAX_PATH_BYTES} bytes"));
    }
    if path.starts_with('/') {
        return refuse("must be relative to the gateway's plugin log directory");
    }
    if path
        .bytes()
        .any(|b| b == 0 || b == b'\\' || b.is_ascii_control())
    {
        return refuse("contains a control character or a backslash");
    }
    for segment in path.split('/') {
        match segment {
            "" => return refuse("has an empty segment or ends with '/'"),
            "." | ".." => return refuse("must not contain '.' or '..' segments"),
            _ => {}
        }
    }
    Ok(())
}

/// An entry the host queues: at most [`MAX_ENTRY_BYTES`].
pub fn check_entry(entry: &str) -> Result<(), String> {
    if entry.len() > MAX_ENTRY_BYTES {
        Err(format!(
            "entry of {} bytes is over the {MAX_ENTRY_BYTES}-byte limit",
            entry.len()
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_paths_stay_inside_the_log_directory() {
        for ok in ["access.log", "logs/file.log", "a/b/c.json"] {
            assert_eq!(check_file_path(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "/var/log/x.log",
            "../x.log",
            "logs/../../x",
            "./x.log",
            "logs/",
            "a//b",
            "a\\..\\b",
            "a\0b",
        ] {
            assert!(check_file_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn http_destinations_need_a_scheme_a_host_and_a_timeout() {
        assert_eq!(check_http("http://127.0.0.1:1980/log", None, 3000), Ok(()));
        assert_eq!(
            check_http("https://logs.example.com", Some("Bearer x"), 1),
            Ok(())
        );
        let err = check_http("ftp://x/", None, 1).unwrap_err();
        assert!(err.contains("http://"), "{err}");
        assert!(check_http("http:///path", None, 1).is_err());
        assert!(check_http("http://user:pw@host/", None, 1).is_err());
        assert!(check_http("http://host/a b", None, 1).is_err());
        assert!(check_http("http://host/", Some("a\r\nb: c"), 1).is_err());
        assert!(check_http("http://host/", None, 0).is_err());
    }

    #[test]
    fn batch_sizes_and_entries_are_bounded() {
        assert!(check_batch_size(0).is_err());
        assert_eq!(check_batch_size(1), Ok(()));
        assert!(check_batch_size(MAX_BATCH_SIZE + 1).is_err());
        assert_eq!(check_entry("{}"), Ok(()));
        assert!(check_entry(&"x".repeat(MAX_ENTRY_BYTES + 1)).is_err());
    }
}
