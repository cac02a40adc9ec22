//! The admin key: never a built-in default, generated on first start when none is configured, and
//! compared in constant time.

use super::{AdminError, AdminState};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use subtle::ConstantTimeEq;

#[derive(Clone)]
pub struct AdminKey(String);

/// Where a key came from, for the start-up log.
pub enum KeySource {
    Configured,
    File(PathBuf),
    Generated(PathBuf),
}

impl AdminKey {
    pub fn new(key: String) -> Self {
        AdminKey(key)
    }

    /// The configured key, else the one in `<data-dir>/admin.key`, else a new random 256-bit key
    /// written there with mode 0600.
    pub fn resolve(
        configured: Option<String>,
        data_dir: &Path,
    ) -> anyhow::Result<(Self, KeySource)> {
        if let Some(k) = configured {
            anyhow::ensure!(!k.trim().is_empty(), "the admin key must not be empty");
            return Ok((AdminKey(k), KeySource::Configured));
        }
        let path = data_dir.join("admin.key");
        match std::fs::read_to_string(&path) {
            Ok(k) if !k.trim().is_empty() => {
                return Ok((AdminKey(k.trim().to_string()), KeySource::File(path)))
            }
            Ok(_) => anyhow::bail!(
                "{} is empty; delete it to generate a new key",
                path.display()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(anyhow::anyhow!("reading {}: {e}", path.display())),
        }
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|e| anyhow::anyhow!("no randomness for the admin key: {e}"))?;
        let key = hex::encode(bytes);
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts
            .open(&path)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
        f.write_all(key.as_bytes())?;
        f.sync_all()?;
        Ok((AdminKey(key), KeySource::Generated(path)))
    }

    /// Constant-time in the key's content (the length of a wrong guess may still show).
    pub fn matches(&self, given: &[u8]) -> bool {
        self.0.as_bytes().ct_eq(given).into()
    }
}

pub async fn require_key(
    State(state): State<Arc<AdminState>>,
    req: Request,
    next: Next,
) -> Response {
    let ok = req
        .headers()
        .get("x-api-key")
        .is_some_and(|v| state.key.matches(v.as_bytes()));
    if !ok {
        return AdminError::unauthorized().into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_is_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (k1, src) = AdminKey::resolve(None, dir.path()).unwrap();
        assert!(matches!(src, KeySource::Generated(_)));
        assert_eq!(k1.0.len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("admin.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (k2, src) = AdminKey::resolve(None, dir.path()).unwrap();
        assert!(matches!(src, KeySource::File(_)));
        assert!(k2.matches(k1.0.as_bytes()));
        assert!(!k2.matches(b"wrong"));
    }
}
