//! The embedded default store: sled under `<data-dir>/config.sled`.
//!
//! Trees: the default one holds config objects under their APISIX keys, `wasm_plugins` holds uploaded
//! component binaries by name, and `artifacts` caches compiled plugin code (see [`SledArtifacts`]).

use super::{parse_key, ConfigStore, StoreError, StoreOp, StoredObject};
use async_trait::async_trait;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use std::path::Path;

pub struct SledStore {
    db: sled::Db,
    plugins: sled::Tree,
    artifacts: sled::Tree,
}

/// The compiled-artifact cache over sled, so a restart loads plugins without compiling them.
/// Only the gateway writes this tree: artifacts are native code that wasmtime trusts.
pub struct SledArtifacts {
    tree: sled::Tree,
    /// Held when the cache has a database of its own ([`SledArtifacts::open`]).
    _db: Option<sled::Db>,
}

impl crate::plugin::ArtifactCache for SledArtifacts {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.tree.get(key).ok().flatten().map(|v| v.to_vec())
    }

    fn put(&self, key: &str, artifact: &[u8]) -> Result<(), String> {
        self.tree
            .insert(key, artifact)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

impl SledArtifacts {
    /// A cache in its own database, `<data-dir>/artifacts.sled`, for nodes whose configuration lives
    /// elsewhere (etcd): compiled code stays per node even when the configuration is shared.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let db = open_db(&data_dir.join("artifacts.sled"), 8 << 20)?;
        let tree = db.open_tree("artifacts").map_err(backend)?;
        Ok(SledArtifacts {
            tree,
            _db: Some(db),
        })
    }
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// sled's default page cache is 1 GiB; config and plugin binaries are small and the live config is served
/// from the in-memory snapshot anyway, so each database gets a small one.
fn open_db(path: &Path, cache_bytes: u64) -> Result<sled::Db, StoreError> {
    sled::Config::new()
        .path(path)
        .cache_capacity(cache_bytes)
        .open()
        .map_err(backend)
}

impl SledStore {
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let db = open_db(&data_dir.join("config.sled"), 32 << 20)?;
        let plugins = db.open_tree("wasm_plugins").map_err(backend)?;
        let artifacts = db.open_tree("artifacts").map_err(backend)?;
        Ok(SledStore {
            db,
            plugins,
            artifacts,
        })
    }

    pub fn artifact_cache(&self) -> SledArtifacts {
        SledArtifacts {
            tree: self.artifacts.clone(),
            _db: None,
        }
    }
}

#[async_trait]
impl ConfigStore for SledStore {
    async fn load_all(&self) -> Result<Vec<StoredObject>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.scan_prefix(b"/apisix/") {
            let (k, v) = item.map_err(backend)?;
            let key = String::from_utf8_lossy(&k).into_owned();
            let Some((kind, id)) = parse_key(&key) else {
                continue;
            };
            let value = serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt {
                key: key.clone(),
                reason: e.to_string(),
            })?;
            out.push(StoredObject {
                kind,
                id: id.to_string(),
                value,
            });
        }
        Ok(out)
    }

    async fn apply(&self, ops: Vec<StoreOp>) -> Result<(), StoreError> {
        let mut encoded = Vec::with_capacity(ops.len());
        for op in &ops {
            match op {
                StoreOp::Put { kind, id, value } => {
                    let bytes = serde_json::to_vec(value).map_err(backend)?;
                    encoded.push((kind.key(id), Some(bytes)));
                }
                StoreOp::Delete { kind, id } => encoded.push((kind.key(id), None)),
            }
        }
        self.db
            .transaction(|tx| {
                for (key, value) in &encoded {
                    match value {
                        Some(bytes) => {
                            tx.insert(key.as_bytes(), bytes.as_slice())?;
                        }
                        None => {
                            tx.remove(key.as_bytes())?;
                        }
                    }
                }
                Ok::<(), ConflictableTransactionError<()>>(())
            })
            .map_err(|e: TransactionError<()>| backend(format!("{e:?}")))?;
        self.flush().await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_async().await.map_err(backend)?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.db.get(b"/apisix/").map_err(backend)?;
        Ok(())
    }

    async fn load_plugins(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for item in self.plugins.iter() {
            let (k, v) = item.map_err(backend)?;
            out.push((String::from_utf8_lossy(&k).into_owned(), v.to_vec()));
        }
        Ok(out)
    }

    async fn put_plugin(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.plugins.insert(name, bytes).map_err(backend)?;
        self.flush().await
    }

    async fn delete_plugin(&self, name: &str) -> Result<(), StoreError> {
        self.plugins.remove(name).map_err(backend)?;
        self.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ResourceKind;
    use serde_json::json;

    #[tokio::test]
    async fn writes_survive_reopen_and_batches_are_atomic_units() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(dir.path()).unwrap();
            store
                .apply(vec![
                    StoreOp::Put {
                        kind: ResourceKind::Upstreams,
                        id: "u1".into(),
                        value: json!({"nodes": {"127.0.0.1:1": 1}}),
                    },
                    StoreOp::Put {
                        kind: ResourceKind::Routes,
                        id: "r1".into(),
                        value: json!({"uri": "/", "upstream_id": "u1"}),
                    },
                ])
                .await
                .unwrap();
            store
                .apply(vec![StoreOp::Delete {
                    kind: ResourceKind::Routes,
                    id: "r1".into(),
                }])
                .await
                .unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        let all = store.load_all().await.unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].kind, ResourceKind::Upstreams);
        assert_eq!(all[0].id, "u1");
    }
}
