//! The compiled-artifact cache: `Component::serialize` output keyed by sha256(component) + engine
//! fingerprint, so a restart (or a second upload of the same bytes) deserializes in ~100 µs instead of
//! compiling for tens of milliseconds. The gateway implements [`ArtifactCache`] over its store (sled);
//! [`MemoryArtifactCache`] and [`DirArtifactCache`] serve tests and tools.
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::RwLock;

/// Storage for compiled artifacts. Keys are `<sha256 hex>-<engine fingerprint hex>`.
///
/// Artifacts are native code that wasmtime loads without validation: only the gateway may write them.
pub trait ArtifactCache: Send + Sync {
    /// The artifact stored under `key`.
    fn get(&self, key: &str) -> Option<Vec<u8>>;
    /// Stores an artifact (errors are logged by the caller and otherwise ignored: the cache is an
    /// optimisation).
    fn put(&self, key: &str, artifact: &[u8]) -> Result<(), String>;
}

/// Artifacts in memory.
#[derive(Default)]
pub struct MemoryArtifactCache {
    map: RwLock<HashMap<String, Vec<u8>>>,
}

impl MemoryArtifactCache {
    /// Number of artifacts.
    pub fn len(&self) -> usize {
        self.map.read().map(|m| m.len()).unwrap_or(0)
    }
    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ArtifactCache for MemoryArtifactCache {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.map.read().ok()?.get(key).cloned()
    }
    fn put(&self, key: &str, artifact: &[u8]) -> Result<(), String> {
        self.map
            .write()
            .map_err(|_| "artifact cache lock poisoned".to_string())?
            .insert(key.to_string(), artifact.to_vec());
        Ok(())
    }
}

/// Artifacts as files `<dir>/<key>.cwasm` (written to a temp name and renamed, so readers never see a
/// partial file).
pub struct DirArtifactCache {
    dir: PathBuf,
}

impl DirArtifactCache {
    /// Uses (and creates) `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }
    fn path(&self, key: &str) -> Option<PathBuf> {
        key.bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b'-')
            .then(|| self.dir.join(format!("{key}.cwasm")))
    }
}

impl ArtifactCache for DirArtifactCache {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.path(key)?).ok()
    }
    fn put(&self, key: &str, artifact: &[u8]) -> Result<(), String> {
        let path = self
            .path(key)
            .ok_or_else(|| format!("bad artifact key {key:?}"))?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, artifact).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))
    }
}
