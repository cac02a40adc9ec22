//! The watcher: keeps this node's live snapshot equal to what etcd holds.
//!
//! A session checks that etcd's history still contains ours, watches the prefix from the revision after the
//! last one applied, and applies each batch of events under the admin write lock, through the same candidate
//! build as an admin write. It ends in one of two ways: etcd says our revision is gone (compacted, or its
//! revision went backwards because it was restored or replaced), and a full read replaces the copy; or the
//! connection failed, and the next session starts after a backoff. The revision only ever advances with
//! events applied or a full read, never because a wait ended.

use super::backoff::Backoff;
use super::mirror::{Applied, Mirror, Watched};
use crate::admin::{build_candidate, AdminState};
use crate::snapshot::{ConfigSet, Snapshot};
use crate::store::etcd::{EtcdStore, PluginRecord};
use crate::store::StoreError;
use std::sync::Arc;
use tokio::sync::watch;

/// Why a session ended.
enum Ended {
    /// Our revision is no longer in etcd's history: read everything again.
    Resync(String),
    /// The connection failed.
    Lost(StoreError),
}

pub struct Watcher {
    etcd: Arc<EtcdStore>,
    admin: Arc<AdminState>,
    mirror: Mirror,
    backoff: Backoff,
    /// Failed attempts since the watch last worked; only some are logged as warnings.
    failures: u32,
}

impl Watcher {
    pub fn new(etcd: Arc<EtcdStore>, admin: Arc<AdminState>, mirror: Mirror) -> Self {
        etcd.set_synced(mirror.synced);
        Watcher {
            etcd,
            admin,
            mirror,
            backoff: Backoff::default(),
            failures: 0,
        }
    }

    /// Runs until `stop` turns true.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        loop {
            let ended = tokio::select! {
                ended = self.session() => ended,
                _ = stop.wait_for(|s| *s) => return,
            };
            let lost = match ended {
                Ended::Resync(reason) => match self.resync(&reason).await {
                    Ok(()) => continue,
                    Err(e) => e,
                },
                Ended::Lost(e) => e,
            };
            let wait = self.backoff.next_wait();
            // The first failure and then about one a minute: an outage must not flood the log.
            if self.failures % 30 == 0 {
                tracing::warn!(error = %lost, retry_in = ?wait, "lost etcd; serving the last configuration");
            } else {
                tracing::debug!(error = %lost, retry_in = ?wait, "etcd still unreachable");
            }
            self.failures += 1;
            self.etcd.set_outage(Some(lost.to_string()));
            tokio::select! {
                () = tokio::time::sleep(wait) => {},
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    async fn session(&mut self) -> Ended {
        let ours = self.mirror.synced.revision;
        let head = match self.etcd.head_revision().await {
            Ok(h) => h,
            Err(e) => return Ended::Lost(e),
        };
        if head < ours {
            return Ended::Resync(format!(
                "etcd's revision went back from {ours} to {head} (restored or replaced)"
            ));
        }
        let mut stream = match self.etcd.watch_from(ours + 1).await {
            Ok(s) => s,
            Err(e) => return Ended::Lost(e),
        };
        loop {
            let reply = match stream.message().await {
                Ok(Some(r)) => r,
                Ok(None) => {
                    return Ended::Lost(StoreError::Unavailable(format!(
                        "etcd ({}) closed the watch stream",
                        self.etcd.endpoints()
                    )))
                }
                Err(e) => return Ended::Lost(self.etcd.classify(&e)),
            };
            if reply.compact_revision() > 0 {
                return Ended::Resync(format!(
                    "etcd compacted its history up to revision {} while this node was at {}",
                    reply.compact_revision(),
                    self.mirror.synced.revision
                ));
            }
            if reply.canceled() {
                return Ended::Lost(StoreError::Backend(format!(
                    "etcd cancelled the watch: {}",
                    reply.cancel_reason()
                )));
            }
            if reply.created() {
                self.etcd.set_outage(None);
                self.backoff.reset();
                self.failures = 0;
                tracing::info!(
                    from_revision = ours + 1,
                    "watching etcd for configuration changes"
                );
            }
            let head = reply.header().map_or(0, |h| h.revision());
            if head < self.mirror.synced.revision {
                return Ended::Resync(format!(
                    "etcd's revision went back from {} to {head} (restored or replaced)",
                    self.mirror.synced.revision
                ));
            }
            let changes: Vec<Watched> = reply.events().iter().map(Watched::from).collect();
            if !changes.is_empty() {
                self.apply(&changes).await;
            }
        }
    }

    /// Applies one batch (etcd sends the events of a transaction together) and rebuilds once.
    async fn apply(&mut self, changes: &[Watched]) {
        let admin = Arc::clone(&self.admin);
        let _guard = admin.write_lock.lock().await;
        let live = self.admin.live.load();
        let mut rebuild = self.mirror.pending;
        for change in changes {
            match self.mirror.apply(self.etcd.layout(), change) {
                Applied::Config(kind, id) => {
                    let now = live.config.get(kind, &id).map(|v| &**v);
                    rebuild |= now != self.mirror.config.get(kind, &id).map(|v| &**v);
                }
                Applied::Plugin { name, record } => {
                    rebuild |= self
                        .install(&name, record.as_ref(), change.mod_revision)
                        .await;
                }
                Applied::Nothing => {}
                Applied::Corrupt(e) => {
                    tracing::error!(error = %e, "ignoring a value in etcd that is not what its key says")
                }
            }
        }
        if rebuild {
            self.rebuild(&live).await;
        }
        self.etcd.set_synced(self.mirror.synced);
    }

    /// Replaces the copy with a full read of etcd, then makes the live snapshot match it.
    async fn resync(&mut self, reason: &str) -> Result<(), StoreError> {
        tracing::warn!(reason, "full resync of the configuration from etcd");
        let listing = self.etcd.read_all().await?;
        for e in &listing.corrupt {
            tracing::error!(error = %e, "ignoring a value in etcd that is not what its key says");
        }
        let admin = Arc::clone(&self.admin);
        let _guard = admin.write_lock.lock().await;
        let live = self.admin.live.load();
        let mut changed = false;
        for (name, record, _) in &listing.plugins {
            changed |= self.install(name, Some(record), listing.revision).await;
        }
        let registry = self.admin.catalog.registry();
        for plugin in registry.list() {
            let name = plugin.name();
            if !listing.plugins.iter().any(|(n, _, _)| n == name) {
                changed |= self.install(name, None, listing.revision).await;
            }
        }
        self.mirror = Mirror::from_listing(&listing);
        if changed || !live.config.same_as(&self.mirror.config) {
            self.rebuild(&live).await;
        }
        self.etcd.set_synced(self.mirror.synced);
        tracing::info!(
            revision = listing.revision,
            objects = listing.objects.len(),
            plugins = listing.plugins.len(),
            "configuration resynchronised from etcd"
        );
        Ok(())
    }

    /// Makes the registry hold `record`'s version of `name` (or nothing). True when it changed.
    async fn install(&self, name: &str, record: Option<&PluginRecord>, revision: i64) -> bool {
        let registry = self.admin.catalog.registry();
        let current = registry.get(name);
        let Some(record) = record else {
            if current.is_some() {
                registry.remove(name);
                tracing::info!(plugin = %name, "wasm plugin removed through etcd");
            }
            return current.is_some();
        };
        if current
            .as_ref()
            .is_some_and(|p| p.sha256() == record.sha256)
        {
            return false; // This node wrote it, or already has it.
        }
        if self.admin.catalog.is_builtin(name) {
            tracing::error!(plugin = %name, "etcd holds a wasm plugin named like a built-in one; ignored");
            return false;
        }
        let bytes = match self.etcd.fetch_plugin(name, record, revision).await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(plugin = %name, error = %e, "fetching a wasm plugin from etcd failed; keeping the version this node has");
                return false;
            }
        };
        let catalog = Arc::clone(&self.admin.catalog);
        let n = name.to_string();
        let prepared =
            tokio::task::spawn_blocking(move || catalog.registry().prepare(&n, &bytes)).await;
        match prepared {
            Ok(Ok(p)) => {
                tracing::info!(plugin = %name, sha256 = %p.sha256(), from_cache = p.loaded_from_cache(), "wasm plugin installed from etcd");
                registry.install(p);
                true
            }
            Ok(Err(e)) => {
                tracing::error!(plugin = %name, error = %e, "a wasm plugin in etcd does not load; keeping the version this node has");
                false
            }
            Err(e) => {
                tracing::error!(plugin = %name, error = %e, "loading a wasm plugin from etcd failed");
                false
            }
        }
    }

    /// Builds the copy into a snapshot and swaps it in; a copy that does not build is logged and the live
    /// snapshot kept (with `pending` set, so the next change retries the whole).
    async fn rebuild(&mut self, live: &Arc<Snapshot>) {
        let config: ConfigSet = self.mirror.config.clone();
        match build_candidate(&self.admin, config, live).await {
            Ok(next) => {
                self.admin.live.store(next);
                self.mirror.pending = false;
                tracing::info!(
                    revision = self.mirror.synced.revision,
                    "configuration change from etcd applied"
                );
            }
            Err(e) => {
                self.mirror.pending = true;
                tracing::error!(
                    revision = self.mirror.synced.revision,
                    error = %e,
                    "the configuration in etcd does not build; keeping the last good one"
                );
            }
        }
    }
}
