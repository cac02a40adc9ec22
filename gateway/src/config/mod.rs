//! The typed shape of every admin resource, and the checks a write must pass before it is stored.
//!
//! The admin API stores the JSON a user sent (plus `id`, `create_time`, `update_time`), exactly as APISIX
//! does, so a `GET` returns what was `PUT`. Parsing that JSON into the types here is the first half of
//! validation (unknown fields, wrong types, each error naming the field path); the second half happens when
//! the [`crate::snapshot`] is built from the whole set (references exist, regexes compile, plugins accept
//! their config). A write is stored only when both halves pass.

mod checks;
mod common;
mod consumer;
mod nodes;
mod route;
mod service;
mod ssl;
mod upstream;

pub use checks::{
    Active, ActiveHealthy, ActiveUnhealthy, Checks, Passive, PassiveHealthy, PassiveUnhealthy,
    ProbeKind,
};
pub use common::{check_id as common_check_id, parse_resource, ConfigError, Plugins, Timeout};
pub use consumer::Consumer;
pub use nodes::NodeEntry;
pub use route::Route;
pub use service::Service;
pub use ssl::Ssl;
pub use upstream::{KeepalivePool, PassHost, Upstream, UpstreamTls};

use serde::Deserialize;

/// The resource collections of the admin API, in APISIX's naming.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceKind {
    Routes,
    Services,
    Upstreams,
    Consumers,
    Ssls,
    GlobalRules,
    PluginConfigs,
}

impl ResourceKind {
    pub const ALL: [ResourceKind; 7] = [
        ResourceKind::Routes,
        ResourceKind::Services,
        ResourceKind::Upstreams,
        ResourceKind::Consumers,
        ResourceKind::Ssls,
        ResourceKind::GlobalRules,
        ResourceKind::PluginConfigs,
    ];

    /// The path segment used by the admin API and in store keys (`/apisix/<segment>/<id>`).
    pub fn segment(self) -> &'static str {
        match self {
            ResourceKind::Routes => "routes",
            ResourceKind::Services => "services",
            ResourceKind::Upstreams => "upstreams",
            ResourceKind::Consumers => "consumers",
            ResourceKind::Ssls => "ssls",
            ResourceKind::GlobalRules => "global_rules",
            ResourceKind::PluginConfigs => "plugin_configs",
        }
    }

    /// Singular noun for error messages ("route 7 ...").
    pub fn noun(self) -> &'static str {
        match self {
            ResourceKind::Routes => "route",
            ResourceKind::Services => "service",
            ResourceKind::Upstreams => "upstream",
            ResourceKind::Consumers => "consumer",
            ResourceKind::Ssls => "ssl",
            ResourceKind::GlobalRules => "global rule",
            ResourceKind::PluginConfigs => "plugin config",
        }
    }

    pub fn from_segment(segment: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.segment() == segment)
    }

    /// The store key of one object, identical to APISIX's etcd key so replies match.
    pub fn key(self, id: &str) -> String {
        format!("/apisix/{}/{}", self.segment(), id)
    }

    /// Checks a JSON document against this kind's schema without keeping the typed value.
    pub fn check_shape(self, value: &serde_json::Value) -> Result<(), ConfigError> {
        match self {
            ResourceKind::Routes => parse_resource::<Route>(value).and_then(|r| r.check()),
            ResourceKind::Services => parse_resource::<Service>(value).and_then(|s| s.check()),
            ResourceKind::Upstreams => parse_resource::<Upstream>(value).and_then(|u| u.check()),
            ResourceKind::Consumers => parse_resource::<Consumer>(value).and_then(|c| c.check()),
            ResourceKind::Ssls => parse_resource::<Ssl>(value).and_then(|s| s.check()),
            ResourceKind::GlobalRules => parse_resource::<GlobalRule>(value).map(|_| ()),
            ResourceKind::PluginConfigs => parse_resource::<PluginConfig>(value).map(|_| ()),
        }
    }
}

/// Plugins that run for every request (APISIX `global_rules`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalRule {
    #[serde(default, deserialize_with = "common::opt_id")]
    pub id: Option<String>,
    pub plugins: Plugins,
    pub create_time: Option<u64>,
    pub update_time: Option<u64>,
}

/// A reusable set of plugins a route can point at with `plugin_config_id`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    #[serde(default, deserialize_with = "common::opt_id")]
    pub id: Option<String>,
    pub desc: Option<String>,
    pub labels: Option<common::Labels>,
    pub plugins: Plugins,
    pub create_time: Option<u64>,
    pub update_time: Option<u64>,
}
