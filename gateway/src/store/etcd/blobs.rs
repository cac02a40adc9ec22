//! Plugin binaries in etcd: content-addressed and chunked.
//!
//! etcd refuses a request over 1.5 MiB by default (`--max-request-bytes`) and uploads may be 8 MiB, so a
//! binary is stored as 1 MiB chunks under `<prefix>.blobs/<name>/<sha256>/`, written before the small
//! record that points at them. Chunks of one sha256 never change, so a node that sees a record can read
//! its chunks at that record's revision and check the sha256 of what it assembled.

use super::layout::Layout;
use super::Etcd;
use crate::store::StoreError;
use etcd_client::GetOptions;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Below etcd's default request limit with room for the key and framing.
pub const CHUNK: usize = 1 << 20;

/// The value of `<prefix>/wasm_plugins/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginRecord {
    pub sha256: String,
    pub size: usize,
    pub chunks: usize,
}

impl PluginRecord {
    pub fn of(bytes: &[u8]) -> Self {
        PluginRecord {
            sha256: hex::encode(Sha256::digest(bytes)),
            size: bytes.len(),
            chunks: bytes.len().div_ceil(CHUNK).max(1),
        }
    }
}

/// Writes the chunks of `bytes` (idempotent: the same content always lands on the same keys).
pub async fn write(
    etcd: &Etcd,
    layout: &Layout,
    name: &str,
    record: &PluginRecord,
    bytes: &[u8],
) -> Result<(), StoreError> {
    let mut chunks: Vec<&[u8]> = bytes.chunks(CHUNK).collect();
    if chunks.is_empty() {
        chunks.push(&[]);
    }
    for (i, chunk) in chunks.into_iter().enumerate() {
        let key = layout.chunk(name, &record.sha256, i);
        etcd.call(etcd.kv().put(key, chunk, None)).await?;
    }
    Ok(())
}

/// Reads and checks one version, as of `revision` (0: the latest).
pub async fn read(
    etcd: &Etcd,
    layout: &Layout,
    name: &str,
    record: &PluginRecord,
    revision: i64,
) -> Result<Vec<u8>, StoreError> {
    let mut bytes = Vec::with_capacity(record.size);
    for i in 0..record.chunks {
        let key = layout.chunk(name, &record.sha256, i);
        let at = GetOptions::new().with_revision(revision);
        let reply = etcd.call(etcd.kv().get(key.as_str(), Some(at))).await?;
        let kv = reply
            .kvs()
            .first()
            .ok_or_else(|| StoreError::Backend(format!("plugin {name}: chunk {key} is missing")))?;
        bytes.extend_from_slice(kv.value());
    }
    let got = PluginRecord::of(&bytes);
    if got.sha256 != record.sha256 || got.size != record.size {
        return Err(StoreError::Corrupt {
            key: layout.blob(name, &record.sha256),
            reason: format!(
                "assembled {} bytes with sha256 {}, the record says {} bytes",
                got.size, got.sha256, record.size
            ),
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_count_whole_chunks() {
        assert_eq!(PluginRecord::of(&[]).chunks, 1);
        assert_eq!(PluginRecord::of(&vec![0; CHUNK]).chunks, 1);
        assert_eq!(PluginRecord::of(&vec![0; CHUNK + 1]).chunks, 2);
        let r = PluginRecord::of(b"abc");
        assert_eq!(
            r.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(r.size, 3);
    }
}
