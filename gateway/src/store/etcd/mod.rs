//! The etcd backend (`--config-store etcd://host:port[,host:port...][/prefix]`): one configuration shared by
//! every node of a cluster, as in APISIX.
//!
//! Writes go through the admin API of any node, which validates them exactly as with sled (a candidate
//! snapshot is built first) and then commits one etcd transaction. Every node, the writer included, watches
//! the prefix and applies what it sees to its own live snapshot ([`crate::cluster`]), so etcd is the only
//! source of truth and the nodes converge on it.
//!
//! **Concurrent writers.** A write is validated against the writing node's copy of the configuration, which
//! may be a few milliseconds behind etcd. So that two nodes cannot each accept a write that is only valid
//! without the other's (one deletes an upstream while another adds a route to it), every admin transaction
//! bumps `<prefix>/sluice_guard` and requires it unchanged since the copy it validated against. A node that
//! loses that race waits until its watcher has caught up and validates again ([`crate::admin`] retries).
//! Changes written to etcd by other tools skip this check; one that does not build is logged and skipped,
//! and the node keeps its last good snapshot.
//!
//! **Plugin binaries** are content-addressed and chunked ([`blobs`]): the record
//! `<prefix>/wasm_plugins/<name>` = `{sha256, size, chunks}` is what nodes watch; the bytes sit under
//! `<prefix>.blobs/<name>/<sha256>/`, outside the watched prefix, written before the record and deleted (all
//! other versions of that name) in the transaction that replaces or removes it. A node seeing a record
//! reads its chunks at the record's revision, so a version replaced meanwhile still reads until compaction.
//!
//! **The compiled-artifact cache stays local** (`<data-dir>/artifacts.sled`): artifacts are native code that
//! wasmtime loads without verification, so each node only trusts what it compiled itself; they are also
//! specific to the node's CPU features and wasmtime build. A node compiles an uploaded plugin once, on first
//! sight, and restarts load it from its cache.
//!
//! **etcd unreachable.** Unary calls are bounded by [`OP_TIMEOUT`]. The watcher records the outage, and admin
//! writes fail at once with 503 and the reason ([`StoreError::Unavailable`]) while the data plane keeps the
//! last configuration; the watcher reconnects with backoff and resynchronises.

mod blobs;
pub mod layout;

pub use blobs::PluginRecord;
pub use layout::{Entry, EtcdUrl, Layout};

use super::{ConfigStore, StoreError, StoreOp, StoredObject};
use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, KvClient, Txn, TxnOp,
    WatchOptions, WatchStream,
};
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Longest wait for one unary etcd call (a get or a transaction).
pub const OP_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest wait in [`ConfigStore::catch_up`] for the watcher to apply what etcd already has.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(5);
/// Replies to a full read can hold the whole configuration; tonic's default limit is 4 MiB.
const MAX_REPLY: usize = 256 << 20;

/// A connected client and how to name it in messages.
#[derive(Clone)]
pub struct Etcd {
    client: Client,
    endpoints: String,
}

impl Etcd {
    fn kv(&self) -> KvClient {
        self.client.kv_client().max_decoding_message_size(MAX_REPLY)
    }

    /// Runs one unary call under [`OP_TIMEOUT`], classifying its failure.
    async fn call<T>(
        &self,
        fut: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(OP_TIMEOUT, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(failed(self, &e)),
            Err(_) => Err(StoreError::Unavailable(format!(
                "etcd ({}) did not answer within {OP_TIMEOUT:?}",
                self.endpoints
            ))),
        }
    }
}

/// Transport failures and gRPC statuses that mean "not reachable now" become [`StoreError::Unavailable`].
fn failed(etcd: &Etcd, e: &etcd_client::Error) -> StoreError {
    use etcd_client::Error as E;
    let unreachable = match e {
        E::TransportError(_) | E::IoError(_) => true,
        // Cancelled, Unknown (a broken connection), DeadlineExceeded, Unavailable.
        E::GRpcStatus(s) => matches!(i32::from(s.code()), 1 | 2 | 4 | 14),
        _ => false,
    };
    let why = match e {
        E::GRpcStatus(s) => match root_cause(s) {
            Some(cause) => format!("{} ({cause})", s.message()),
            None => s.message().to_string(),
        },
        other => other.to_string(),
    };
    if unreachable {
        StoreError::Unavailable(format!("etcd ({}) is unreachable: {why}", etcd.endpoints))
    } else {
        StoreError::Backend(format!("etcd ({}): {why}", etcd.endpoints))
    }
}

/// The innermost error under a gRPC status (`Connection refused` under `tcp connect error`).
fn root_cause(e: &dyn std::error::Error) -> Option<String> {
    let mut cause = e.source()?;
    while let Some(next) = cause.source() {
        cause = next;
    }
    Some(cause.to_string())
}

/// What this node's live configuration reflects; the watcher advances it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Synced {
    /// The newest etcd revision applied (events seen, or the revision of the last full read).
    pub revision: i64,
    /// `mod_revision` of the guard key as of that revision (0: absent).
    pub guard: i64,
}

/// Everything under the watched prefix as of one revision.
#[derive(Debug, Default)]
pub struct Listing {
    pub revision: i64,
    pub objects: Vec<StoredObject>,
    /// Name, record, and the record's `mod_revision`.
    pub plugins: Vec<(String, PluginRecord, i64)>,
    pub guard: i64,
    /// Keys whose value is not what their place says (bad JSON); skipped and reported.
    pub corrupt: Vec<StoreError>,
}

pub struct EtcdStore {
    etcd: Etcd,
    layout: Layout,
    synced: watch::Sender<Synced>,
    /// Why etcd is unreachable, and since when, while the watcher says it is.
    outage: Mutex<Option<(Instant, String)>>,
}

impl EtcdStore {
    /// Prepares a client; nothing is sent yet (tonic connects lazily), so this fails only on a bad URL.
    pub async fn connect(url: &EtcdUrl) -> Result<Self, StoreError> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            // HTTP/2 pings find a dead peer behind a silent network, where no RST ever arrives.
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3))
            .with_keep_alive_while_idle(true);
        let endpoints = url.endpoints.join(",");
        let client = Client::connect(&url.endpoints, Some(options))
            .await
            .map_err(|e| StoreError::Backend(format!("etcd ({endpoints}): {e}")))?;
        Ok(EtcdStore {
            etcd: Etcd { client, endpoints },
            layout: Layout::new(&url.prefix),
            synced: watch::Sender::new(Synced::default()),
            outage: Mutex::new(None),
        })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn endpoints(&self) -> &str {
        &self.etcd.endpoints
    }

    /// A failed call or watch stream as a [`StoreError`].
    pub fn classify(&self, e: &etcd_client::Error) -> StoreError {
        failed(&self.etcd, e)
    }

    pub fn synced(&self) -> Synced {
        *self.synced.borrow()
    }

    /// Called by the watcher once the live snapshot reflects `synced`.
    pub fn set_synced(&self, synced: Synced) {
        self.synced.send_replace(synced);
    }

    /// Called by the watcher: `Some(reason)` when it lost etcd, `None` once it is watching again.
    pub fn set_outage(&self, reason: Option<String>) {
        let mut outage = self.outage.lock().unwrap_or_else(|p| p.into_inner());
        match reason {
            Some(r) => {
                let since = outage.as_ref().map_or_else(Instant::now, |(t, _)| *t);
                *outage = Some((since, r));
            }
            None => *outage = None,
        }
    }

    /// Refuses at once while the watcher knows etcd is gone, rather than timing out on every write.
    fn check_reachable(&self) -> Result<(), StoreError> {
        let outage = self.outage.lock().unwrap_or_else(|p| p.into_inner());
        match outage.as_ref() {
            None => Ok(()),
            Some((since, reason)) => Err(StoreError::Unavailable(format!(
                "{reason} (for {}s now)",
                since.elapsed().as_secs()
            ))),
        }
    }

    /// etcd's current revision (the head of its history).
    pub async fn head_revision(&self) -> Result<i64, StoreError> {
        let reply = self
            .etcd
            .call(self.etcd.kv().get(
                self.layout.guard(),
                Some(GetOptions::new().with_count_only()),
            ))
            .await?;
        Ok(reply.header().map_or(0, |h| h.revision()))
    }

    /// One consistent read of everything under the watched prefix.
    pub async fn read_all(&self) -> Result<Listing, StoreError> {
        let reply = self
            .etcd
            .call(
                self.etcd
                    .kv()
                    .get(self.layout.watched(), Some(GetOptions::new().with_prefix())),
            )
            .await?;
        let mut listing = Listing {
            revision: reply.header().map_or(0, |h| h.revision()),
            ..Listing::default()
        };
        for kv in reply.kvs() {
            let key = String::from_utf8_lossy(kv.key());
            let corrupt = |reason: String| StoreError::Corrupt {
                key: key.to_string(),
                reason,
            };
            match self.layout.classify(&key) {
                Some(Entry::Config(kind, id)) => match serde_json::from_slice(kv.value()) {
                    Ok(value) => listing.objects.push(StoredObject {
                        kind,
                        id: id.to_string(),
                        value,
                    }),
                    Err(e) => listing.corrupt.push(corrupt(e.to_string())),
                },
                Some(Entry::Plugin(name)) => match serde_json::from_slice(kv.value()) {
                    Ok(record) => {
                        listing
                            .plugins
                            .push((name.to_string(), record, kv.mod_revision()))
                    }
                    Err(e) => listing.corrupt.push(corrupt(e.to_string())),
                },
                Some(Entry::Guard) => listing.guard = kv.mod_revision(),
                None => {}
            }
        }
        Ok(listing)
    }

    /// A plugin's binary, read at `revision` (0: the latest) and checked against its record.
    pub async fn fetch_plugin(
        &self,
        name: &str,
        record: &PluginRecord,
        revision: i64,
    ) -> Result<Vec<u8>, StoreError> {
        blobs::read(&self.etcd, &self.layout, name, record, revision).await
    }

    /// Opens a watch of the prefix from `revision` (inclusive).
    pub async fn watch_from(&self, revision: i64) -> Result<WatchStream, StoreError> {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision);
        self.etcd
            .call(
                self.etcd
                    .client
                    .watch_client()
                    .watch(self.layout.watched(), Some(options)),
            )
            .await
    }

    /// Commits `ops` if no other admin write happened since the configuration this node validated against
    /// (see the module docs), bumping the guard. Returns the revision of the commit.
    async fn commit_guarded(&self, mut ops: Vec<TxnOp>) -> Result<i64, StoreError> {
        self.check_reachable()?;
        let guard = self.layout.guard();
        let seen = self.synced().guard;
        // The value only helps a human reading etcd: when the last admin write happened.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        ops.push(TxnOp::put(guard.as_str(), now.to_string(), None));
        let txn = Txn::new()
            .when([Compare::mod_revision(
                guard.as_str(),
                CompareOp::Equal,
                seen,
            )])
            .and_then(ops);
        let reply = self.etcd.call(self.etcd.kv().txn(txn)).await?;
        if !reply.succeeded() {
            return Err(StoreError::Conflict);
        }
        let revision = reply.header().map_or(0, |h| h.revision());
        // This node validated against `seen` and nobody wrote in between: its copy now matches the guard.
        self.synced.send_modify(|s| s.guard = revision);
        Ok(revision)
    }
}

/// The key right after every key that starts with `prefix`, for range deletes.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[async_trait]
impl ConfigStore for EtcdStore {
    async fn load_all(&self) -> Result<Vec<StoredObject>, StoreError> {
        Ok(self.read_all().await?.objects)
    }

    async fn apply(&self, ops: Vec<StoreOp>) -> Result<(), StoreError> {
        let mut txn = Vec::with_capacity(ops.len() + 1);
        for op in ops {
            match op {
                StoreOp::Put { kind, id, value } => {
                    let bytes = serde_json::to_vec(&value)
                        .map_err(|e| StoreError::Backend(e.to_string()))?;
                    txn.push(TxnOp::put(self.layout.config(kind, &id), bytes, None));
                }
                StoreOp::Delete { kind, id } => {
                    txn.push(TxnOp::delete(self.layout.config(kind, &id), None));
                }
            }
        }
        self.commit_guarded(txn).await.map(drop)
    }

    /// etcd acknowledges a transaction once a quorum has it in its log: nothing to flush.
    async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.check_reachable()?;
        self.head_revision().await.map(drop)
    }

    async fn load_plugins(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let listing = self.read_all().await?;
        let mut out = Vec::with_capacity(listing.plugins.len());
        for (name, record, _) in listing.plugins {
            let bytes = self.fetch_plugin(&name, &record, listing.revision).await?;
            out.push((name, bytes));
        }
        Ok(out)
    }

    async fn put_plugin(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.check_reachable()?;
        let record = PluginRecord::of(bytes);
        blobs::write(&self.etcd, &self.layout, name, &record, bytes).await?;
        let json = serde_json::to_vec(&record).map_err(|e| StoreError::Backend(e.to_string()))?;
        // Every other version of this name goes in the same transaction: [all, this) and [after this, end).
        let (all, this) = (
            self.layout.blobs_of(name),
            self.layout.blob(name, &record.sha256),
        );
        let before = DeleteOptions::new().with_range(this.as_str());
        let after = DeleteOptions::new().with_range(prefix_end(&all));
        self.commit_guarded(vec![
            TxnOp::put(self.layout.plugin(name), json, None),
            TxnOp::delete(all.as_str(), Some(before)),
            TxnOp::delete(prefix_end(&this), Some(after)),
        ])
        .await
        .map(drop)
    }

    async fn delete_plugin(&self, name: &str) -> Result<(), StoreError> {
        let blobs = DeleteOptions::new().with_prefix();
        self.commit_guarded(vec![
            TxnOp::delete(self.layout.plugin(name), None),
            TxnOp::delete(self.layout.blobs_of(name), Some(blobs)),
        ])
        .await
        .map(drop)
    }

    async fn catch_up(&self) -> Result<(), StoreError> {
        let reply = self
            .etcd
            .call(self.etcd.kv().get(self.layout.guard(), None))
            .await?;
        let guard = reply.kvs().first().map_or(0, |kv| kv.mod_revision());
        let mut synced = self.synced.subscribe();
        let caught_up =
            tokio::time::timeout(CATCH_UP_TIMEOUT, synced.wait_for(|s| s.guard == guard))
                .await
                .is_ok_and(|r| r.is_ok());
        if caught_up {
            Ok(())
        } else {
            Err(StoreError::Unavailable(format!(
                "this node has not caught up with etcd's configuration (guard revision {guard}) within {CATCH_UP_TIMEOUT:?}"
            )))
        }
    }

    fn revision(&self) -> Option<i64> {
        Some(self.synced().revision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_first_key_past_the_prefix() {
        assert_eq!(prefix_end("/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end("ab"), b"ac".to_vec());
    }
}
