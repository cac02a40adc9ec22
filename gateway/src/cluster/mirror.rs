//! This node's copy of what etcd holds under the prefix, kept apart from the live snapshot: a watched change
//! that does not build leaves the live snapshot as it was, but the copy keeps the change, so a later change
//! that completes it (the missing upstream arrives) builds the whole, and nothing is lost until then.

use crate::config::ResourceKind;
use crate::snapshot::ConfigSet;
use crate::store::etcd::{Entry, Layout, Listing, PluginRecord, Synced};
use crate::store::StoreError;
use std::collections::BTreeMap;

/// One watched key change, decoupled from the client's types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    pub key: String,
    /// `None` for a delete.
    pub value: Option<Vec<u8>>,
    pub mod_revision: i64,
}

impl From<&etcd_client::Event> for Watched {
    fn from(e: &etcd_client::Event) -> Self {
        let kv = e.kv();
        Watched {
            key: kv.map_or_else(String::new, |kv| {
                String::from_utf8_lossy(kv.key()).into_owned()
            }),
            value: match e.event_type() {
                etcd_client::EventType::Put => kv.map(|kv| kv.value().to_vec()),
                etcd_client::EventType::Delete => None,
            },
            mod_revision: kv.map_or(0, etcd_client::KeyValue::mod_revision),
        }
    }
}

/// What one watched change did to the copy.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// A config object changed; the snapshot needs a rebuild if the live one differs there.
    Config(ResourceKind, String),
    /// A plugin record was put (`Some`) or deleted (`None`).
    Plugin {
        name: String,
        record: Option<PluginRecord>,
    },
    /// Bookkeeping only (the guard, keys of nobody we know).
    Nothing,
    /// The value does not parse; the copy is unchanged.
    Corrupt(StoreError),
}

#[derive(Debug, Default)]
pub struct Mirror {
    pub config: ConfigSet,
    pub plugins: BTreeMap<String, PluginRecord>,
    pub synced: Synced,
    /// The copy holds changes the live snapshot lacks because they did not build.
    pub pending: bool,
}

impl Mirror {
    pub fn from_listing(listing: &Listing) -> Self {
        Mirror {
            config: ConfigSet::from_objects(listing.objects.clone()),
            plugins: listing
                .plugins
                .iter()
                .map(|(name, record, _)| (name.clone(), record.clone()))
                .collect(),
            synced: Synced {
                revision: listing.revision,
                guard: listing.guard,
            },
            pending: false,
        }
    }

    pub fn apply(&mut self, layout: &Layout, change: &Watched) -> Applied {
        self.synced.revision = self.synced.revision.max(change.mod_revision);
        let corrupt = |e: serde_json::Error| {
            Applied::Corrupt(StoreError::Corrupt {
                key: change.key.clone(),
                reason: e.to_string(),
            })
        };
        match layout.classify(&change.key) {
            Some(Entry::Config(kind, id)) => match &change.value {
                None => {
                    self.config.remove(kind, id);
                    Applied::Config(kind, id.to_string())
                }
                Some(bytes) => match serde_json::from_slice(bytes) {
                    Ok(value) => {
                        self.config.put(kind, id.to_string(), value);
                        Applied::Config(kind, id.to_string())
                    }
                    Err(e) => corrupt(e),
                },
            },
            Some(Entry::Plugin(name)) => {
                let record = match &change.value {
                    None => None,
                    Some(bytes) => match serde_json::from_slice::<PluginRecord>(bytes) {
                        Ok(r) => Some(r),
                        Err(e) => return corrupt(e),
                    },
                };
                match &record {
                    Some(r) => self.plugins.insert(name.to_string(), r.clone()),
                    None => self.plugins.remove(name),
                };
                Applied::Plugin {
                    name: name.to_string(),
                    record,
                }
            }
            Some(Entry::Guard) => {
                self.synced.guard = if change.value.is_some() {
                    change.mod_revision
                } else {
                    0
                };
                Applied::Nothing
            }
            None => Applied::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn put(key: &str, value: &str, rev: i64) -> Watched {
        Watched {
            key: key.into(),
            value: Some(value.as_bytes().to_vec()),
            mod_revision: rev,
        }
    }

    #[test]
    fn changes_land_in_the_copy_and_advance_its_revision() {
        let layout = Layout::new("/apisix");
        let mut m = Mirror::default();
        assert_eq!(
            m.apply(&layout, &put("/apisix/routes/1", r#"{"uri":"/a"}"#, 5)),
            Applied::Config(ResourceKind::Routes, "1".into())
        );
        assert_eq!(
            m.config
                .get(ResourceKind::Routes, "1")
                .map(|v| (**v).clone()),
            Some(json!({"uri": "/a"}))
        );
        assert_eq!(
            m.apply(&layout, &put("/apisix/sluice_guard", "1", 6)),
            Applied::Nothing
        );
        assert_eq!(
            m.synced,
            Synced {
                revision: 6,
                guard: 6
            }
        );
        let delete = Watched {
            key: "/apisix/routes/1".into(),
            value: None,
            mod_revision: 7,
        };
        assert_eq!(
            m.apply(&layout, &delete),
            Applied::Config(ResourceKind::Routes, "1".into())
        );
        assert_eq!(m.config.count(ResourceKind::Routes), 0);
        assert_eq!(m.synced.revision, 7);
    }

    #[test]
    fn plugin_records_are_reported_and_bad_values_leave_the_copy_alone() {
        let layout = Layout::new("/apisix");
        let mut m = Mirror::default();
        let record = PluginRecord::of(b"wasm");
        let json = serde_json::to_string(&record).unwrap();
        assert_eq!(
            m.apply(&layout, &put("/apisix/wasm_plugins/hello", &json, 3)),
            Applied::Plugin {
                name: "hello".into(),
                record: Some(record.clone())
            }
        );
        assert_eq!(m.plugins.get("hello"), Some(&record));
        m.apply(&layout, &put("/apisix/routes/1", r#"{"uri":"/a"}"#, 4));
        let bad = m.apply(&layout, &put("/apisix/routes/1", "{not json", 5));
        assert!(matches!(bad, Applied::Corrupt(_)), "{bad:?}");
        assert!(m.config.get(ResourceKind::Routes, "1").is_some());
        assert_eq!(
            m.apply(&layout, &put("/apisix/protos/1", "{}", 6)),
            Applied::Nothing
        );
    }
}
