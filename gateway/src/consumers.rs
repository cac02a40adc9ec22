//! Consumers as auth plugins see them: an index from (plugin, credential) to the consumer, rebuilt with
//! every config snapshot, and the [`ConsumerStore`] the plugin host's `consumers.lookup` reads.
//!
//! Why an index keyed by the credential's SHA-256: a lookup is one hash-map probe whatever the number of
//! consumers (APISIX's key-auth scans a cached list), and the map compares digests, not the secrets
//! themselves, so how long a lookup takes says nothing about how close a guessed key was. Which field
//! of a consumer's plugin config is the credential is the plugin's own declaration
//! (`plugin-info.consumer-credential`), so third-party auth plugins get the same index.
//!
//! Consumer writes are validated here too: each plugin entry goes through that plugin's
//! `validate-consumer`, and two consumers presenting the same credential to one plugin are refused
//! (otherwise which of them a request authenticates as would be arbitrary).

use crate::catalog::{split_meta, Catalog};
use crate::config::{ConfigError, Consumer};
use crate::plugin::services::{ConsumerRecord, ConsumerStore};
use crate::snapshot::Live;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, Weak};

#[derive(Hash, PartialEq, Eq)]
struct CredentialKey {
    plugin: String,
    digest: [u8; 32],
}

impl CredentialKey {
    fn new(plugin: &str, credential: &str) -> Self {
        CredentialKey {
            plugin: plugin.to_string(),
            digest: Sha256::digest(credential.as_bytes()).into(),
        }
    }
}

/// Every consumer credential of one snapshot.
#[derive(Default)]
pub struct ConsumerIndex {
    by_credential: HashMap<CredentialKey, (Arc<ConsumerRecord>, String)>,
}

impl ConsumerIndex {
    /// Validates one consumer's plugin entries and indexes its credentials.
    pub fn add(&mut self, consumer: &Consumer, catalog: &Catalog) -> Result<(), ConfigError> {
        let labels: Vec<(String, String)> = consumer
            .labels
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (name, conf) in consumer.plugins.iter().flatten() {
            let err = |msg: String| ConfigError::new(format!("plugins.{name}: {msg}"));
            let plugin = catalog.plugin(name).map_err(err)?;
            let (_, json) = split_meta(conf).map_err(err)?;
            plugin
                .validate_consumer(&json)
                .map_err(|e| err(crate::catalog::plugin_error(e)))?;
            let Some(field) = plugin.info().consumer_credential.as_deref() else {
                continue;
            };
            let credential = match conf.get(field) {
                Some(serde_json::Value::String(s)) if !s.is_empty() => s,
                _ => {
                    return Err(err(format!(
                        "property \"{field}\" is required and must be a non-empty string"
                    )))
                }
            };
            let record = Arc::new(ConsumerRecord {
                username: consumer.username.clone(),
                plugin_config: json,
                labels: labels.clone(),
            });
            let key = CredentialKey::new(name, credential);
            if let Some((other, _)) = self.by_credential.get(&key) {
                return Err(err(format!(
                    "{field} is already used by consumer {:?}; credentials must be unique",
                    other.username
                )));
            }
            self.by_credential
                .insert(key, (record, consumer.username.clone()));
        }
        Ok(())
    }

    /// The consumer whose `plugin` config carries `credential`.
    pub fn lookup(&self, plugin: &str, credential: &str) -> Option<ConsumerRecord> {
        self.by_credential
            .get(&CredentialKey::new(plugin, credential))
            .map(|(r, _)| ConsumerRecord::clone(r))
    }

    pub fn len(&self) -> usize {
        self.by_credential.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_credential.is_empty()
    }
}

/// `consumers.lookup` for the plugin host, answered from the live snapshot. The engine (and with it this
/// store) exists before the first snapshot does, hence the late [`LiveConsumers::bind`].
#[derive(Default)]
pub struct LiveConsumers {
    live: OnceLock<Weak<Live>>,
}

impl LiveConsumers {
    pub fn bind(&self, live: &Arc<Live>) {
        let _ = self.live.set(Arc::downgrade(live));
    }
}

impl ConsumerStore for LiveConsumers {
    fn lookup(&self, plugin: &str, credential: &str) -> Option<ConsumerRecord> {
        let live = self.live.get()?.upgrade()?;
        live.load().consumers.lookup(plugin, credential)
    }
}
