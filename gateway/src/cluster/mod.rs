//! Several gateway nodes on one configuration: the node side of the etcd store ([`crate::store::etcd`]).
//!
//! [`join`] reads everything under the prefix at one revision (retrying while etcd is not up yet, so nodes
//! and etcd may start in any order), the node builds its first snapshot from that, and the [`Watcher`] then
//! applies every later change, by any node or tool, from the next revision on. Each node therefore serves
//! exactly what etcd holds, a few milliseconds after it was written (`BENCHMARKS.md` has the figure), and
//! keeps serving its last good configuration whenever etcd is unreachable or holds something that does
//! not build.

mod backoff;
mod mirror;
mod sync;

pub use mirror::Mirror;
pub use sync::Watcher;

use crate::store::etcd::{EtcdStore, EtcdUrl, Listing};
use crate::store::StoreError;
use backoff::Backoff;
use std::time::{Duration, Instant};

/// How long a starting node waits for etcd before giving up.
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

/// A node's first view of the cluster: the store, the listing at one revision, and the plugin binaries
/// that listing names (read at the same revision).
pub struct Joined {
    pub store: EtcdStore,
    pub listing: Listing,
    pub plugins: Vec<(String, Vec<u8>)>,
}

/// Connects and reads the whole configuration, retrying with backoff for up to [`JOIN_TIMEOUT`].
pub async fn join(url: &EtcdUrl) -> Result<Joined, StoreError> {
    let store = EtcdStore::connect(url).await?;
    let started = Instant::now();
    let mut backoff = Backoff::default();
    loop {
        match read(&store).await {
            Ok((listing, plugins)) => {
                for e in &listing.corrupt {
                    tracing::error!(error = %e, "ignoring a value in etcd that is not what its key says");
                }
                tracing::info!(
                    endpoints = store.endpoints(),
                    prefix = url.prefix,
                    revision = listing.revision,
                    "configuration read from etcd"
                );
                return Ok(Joined {
                    store,
                    listing,
                    plugins,
                });
            }
            Err(e @ StoreError::Unavailable(_)) if started.elapsed() < JOIN_TIMEOUT => {
                let wait = backoff.next_wait();
                tracing::warn!(error = %e, retry_in = ?wait, "waiting for etcd");
                tokio::time::sleep(wait).await;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn read(store: &EtcdStore) -> Result<(Listing, Vec<(String, Vec<u8>)>), StoreError> {
    let listing = store.read_all().await?;
    let mut plugins = Vec::with_capacity(listing.plugins.len());
    for (name, record, _) in &listing.plugins {
        let bytes = store.fetch_plugin(name, record, listing.revision).await?;
        plugins.push((name.clone(), bytes));
    }
    Ok((listing, plugins))
}
