//! Every stored object, grouped by kind: the input from which a snapshot is built.
//!
//! Values are `Arc`ed so that copying the set for a candidate write costs pointer copies, not JSON.

use crate::config::ResourceKind;
use crate::store::StoredObject;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

pub type Objects = BTreeMap<String, Arc<Value>>;

#[derive(Debug, Clone, Default)]
pub struct ConfigSet {
    by_kind: BTreeMap<ResourceKind, Objects>,
}

/// Reads an id-valued field that APISIX allows as string or number.
fn id_field(v: &Value, field: &str) -> Option<String> {
    match v.get(field)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl ConfigSet {
    pub fn from_objects(objects: Vec<StoredObject>) -> Self {
        let mut set = ConfigSet::default();
        for o in objects {
            set.put(o.kind, o.id, o.value);
        }
        set
    }

    pub fn get(&self, kind: ResourceKind, id: &str) -> Option<&Arc<Value>> {
        self.by_kind.get(&kind)?.get(id)
    }

    pub fn objects(&self, kind: ResourceKind) -> impl Iterator<Item = (&String, &Arc<Value>)> {
        self.by_kind.get(&kind).into_iter().flatten()
    }

    pub fn count(&self, kind: ResourceKind) -> usize {
        self.by_kind.get(&kind).map_or(0, BTreeMap::len)
    }

    pub fn put(&mut self, kind: ResourceKind, id: String, value: Value) {
        self.by_kind
            .entry(kind)
            .or_default()
            .insert(id, Arc::new(value));
    }

    pub fn remove(&mut self, kind: ResourceKind, id: &str) -> Option<Arc<Value>> {
        self.by_kind.get_mut(&kind)?.remove(id)
    }

    /// The same objects with the same values (kinds left empty by deletes count as absent).
    pub fn same_as(&self, other: &ConfigSet) -> bool {
        ResourceKind::ALL
            .into_iter()
            .all(|kind| self.objects(kind).eq(other.objects(kind)))
    }

    /// SHA-256 (hex) over one line per object, `<segment>/<id> <compact JSON>\n`, in byte order of
    /// `<segment>/<id>`: equal on two nodes exactly when they hold the same configuration, and computable
    /// from an etcd listing by anyone (object keys sorted, as `serde_json` writes them).
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut lines: Vec<(String, String)> = ResourceKind::ALL
            .into_iter()
            .flat_map(|kind| {
                self.objects(kind)
                    .map(move |(id, v)| (format!("{}/{id}", kind.segment()), v.to_string()))
            })
            .collect();
        lines.sort();
        let mut hash = Sha256::new();
        for (key, json) in lines {
            hash.update(key.as_bytes());
            hash.update(b" ");
            hash.update(json.as_bytes());
            hash.update(b"\n");
        }
        hex::encode(hash.finalize())
    }

    /// Objects that point at (`kind`, `id`) and would dangle if it were deleted.
    pub fn referrers(&self, kind: ResourceKind, id: &str) -> Vec<(ResourceKind, String)> {
        let fields: &[(ResourceKind, &str)] = match kind {
            ResourceKind::Upstreams => &[
                (ResourceKind::Routes, "upstream_id"),
                (ResourceKind::Services, "upstream_id"),
            ],
            ResourceKind::Services => &[(ResourceKind::Routes, "service_id")],
            ResourceKind::PluginConfigs => &[(ResourceKind::Routes, "plugin_config_id")],
            _ => &[],
        };
        let mut out = Vec::new();
        for (referrer, field) in fields {
            for (rid, v) in self.objects(*referrer) {
                if id_field(v, field).as_deref() == Some(id) {
                    out.push((*referrer, rid.clone()));
                }
            }
        }
        if kind == ResourceKind::Ssls {
            // `tls.client_cert_id` of upstream objects and of inline upstreams.
            let names_ssl = |up: Option<&Value>| {
                up.and_then(|u| u.get("tls"))
                    .and_then(|t| id_field(t, "client_cert_id"))
                    .as_deref()
                    == Some(id)
            };
            for referrer in [
                ResourceKind::Upstreams,
                ResourceKind::Routes,
                ResourceKind::Services,
            ] {
                for (rid, v) in self.objects(referrer) {
                    let up = if referrer == ResourceKind::Upstreams {
                        Some(v.as_ref())
                    } else {
                        v.get("upstream")
                    };
                    if names_ssl(up) {
                        out.push((referrer, rid.clone()));
                    }
                }
            }
        }
        if kind == ResourceKind::Upstreams {
            for referrer in [
                ResourceKind::Routes,
                ResourceKind::Services,
                ResourceKind::PluginConfigs,
            ] {
                for (rid, v) in self.objects(referrer) {
                    let entry = (referrer, rid.clone());
                    if crate::traffic_split::names_upstream(v, id) && !out.contains(&entry) {
                        out.push(entry);
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn referrers_find_numeric_and_string_ids() {
        let mut set = ConfigSet::default();
        set.put(ResourceKind::Upstreams, "1".into(), json!({}));
        set.put(ResourceKind::Routes, "a".into(), json!({"upstream_id": 1}));
        set.put(
            ResourceKind::Services,
            "s".into(),
            json!({"upstream_id": "1"}),
        );
        set.put(
            ResourceKind::Routes,
            "b".into(),
            json!({"upstream_id": "2"}),
        );
        let refs = set.referrers(ResourceKind::Upstreams, "1");
        assert_eq!(
            refs,
            vec![
                (ResourceKind::Routes, "a".to_string()),
                (ResourceKind::Services, "s".to_string())
            ]
        );
    }

    #[test]
    fn digest_and_sameness_follow_content_not_history() {
        let mut a = ConfigSet::default();
        a.put(
            ResourceKind::Routes,
            "1".into(),
            json!({"uri": "/a", "id": "1"}),
        );
        let mut b = ConfigSet::default();
        b.put(ResourceKind::Upstreams, "u".into(), json!({}));
        b.remove(ResourceKind::Upstreams, "u");
        b.put(
            ResourceKind::Routes,
            "1".into(),
            json!({"id": "1", "uri": "/a"}),
        );
        assert!(a.same_as(&b));
        assert_eq!(a.digest(), b.digest());
        // One line: `routes/1 {"id":"1","uri":"/a"}\n`.
        use sha2::{Digest, Sha256};
        let line = "routes/1 {\"id\":\"1\",\"uri\":\"/a\"}\n";
        assert_eq!(a.digest(), hex::encode(Sha256::digest(line)));
        b.put(
            ResourceKind::Routes,
            "1".into(),
            json!({"id": "1", "uri": "/b"}),
        );
        assert!(!a.same_as(&b));
        assert_ne!(a.digest(), b.digest());
    }
}
