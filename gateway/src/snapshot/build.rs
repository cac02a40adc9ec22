//! Compiling a [`ConfigSet`] into what the request path reads: the router and resolved routes.

use super::config_set::ConfigSet;
use crate::catalog::Catalog;
use crate::chain::PluginChain;
use crate::config::{
    parse_resource, ConfigError, Consumer, GlobalRule, PluginConfig, Plugins, ResourceKind, Route,
    Service, Timeout, Upstream,
};
use crate::consumers::ConsumerIndex;
use crate::native::{self, RouteNative};
use crate::router::{RouteSpec, Router, VarSource};
use crate::traffic_split::{self, TrafficSplit, UpstreamSource};
use crate::upstream::{Timeouts, UpstreamRuntime};
use std::collections::HashMap;
use std::sync::Arc;

/// A route with everything it refers to resolved, ready for the request path.
pub struct RouteEntry {
    pub id: String,
    pub service_id: Option<String>,
    /// `None` only for routes whose plugins answer by themselves.
    pub upstream: Option<Arc<UpstreamRuntime>>,
    pub timeouts: Timeouts,
    /// Route plugins merged over plugin_config and service plugins (route wins per plugin name),
    /// configured and in priority order.
    pub chain: Arc<PluginChain>,
    /// `plugins.traffic-split`, which picks among other upstreams (see [`crate::traffic_split`]).
    pub traffic_split: Option<TrafficSplit>,
    /// The other natively served plugins' settings (`client-control`, ...).
    pub native: RouteNative,
    /// `enable_websocket` (the route's, else its service's): upgrade requests are tunnelled.
    pub websocket: bool,
}

impl RouteEntry {
    /// The upstream this request goes to, with its timeouts: traffic-split's pick when one of its rules
    /// matches and names another upstream, else the route's own.
    pub fn upstream_for(&self, vars: &dyn VarSource) -> Option<(&Arc<UpstreamRuntime>, Timeouts)> {
        let picked = self.traffic_split.as_ref().and_then(|s| s.choose(vars));
        match picked.and_then(|t| t.upstream.as_ref().map(|u| (u, t.timeouts))) {
            Some(split) => Some(split),
            None => self.upstream.as_ref().map(|u| (u, self.timeouts)),
        }
    }
}

pub struct Snapshot {
    pub config: ConfigSet,
    pub router: Router<Arc<RouteEntry>>,
    /// Runtimes by name (`upstreams/1`, `routes/7`, `services/3`), kept for reuse by the next build.
    upstreams: HashMap<String, Arc<UpstreamRuntime>>,
    /// Plugins of every global rule; they run before the route's own in each phase.
    pub global_chain: Arc<PluginChain>,
    /// Consumer credentials for auth plugins.
    pub consumers: ConsumerIndex,
}

fn in_resource(kind: ResourceKind, id: &str) -> impl Fn(ConfigError) -> ConfigError + '_ {
    move |e| ConfigError::new(format!("{} {id}: {}", kind.noun(), e.0))
}

struct Builder<'a> {
    previous: Option<&'a Snapshot>,
    /// For references between objects resolved at build time (`tls.client_cert_id` → `ssls`).
    config: &'a ConfigSet,
    catalog: &'a Catalog,
    upstreams: HashMap<String, Arc<UpstreamRuntime>>,
    /// Chains built only to validate (services, plugin configs), kept until the
    /// build ends so that routes using the same configs reuse them instead of configuring again.
    validated: Vec<PluginChain>,
}

impl<'a> Builder<'a> {
    /// Builds (or reuses, when its JSON did not change) the runtime of one upstream definition.
    fn upstream(
        &mut self,
        name: String,
        up: &Upstream,
        source: &serde_json::Value,
    ) -> Result<Arc<UpstreamRuntime>, ConfigError> {
        let mut comparable = UpstreamRuntime::comparable(source);
        let resolved;
        let up = match up.tls.as_ref().and_then(|t| t.client_cert_id.as_deref()) {
            None => up,
            Some(ssl_id) => {
                let (cert, key) = self.client_cert(ssl_id)?;
                // The certificate joins the compared JSON, so editing the `ssls` object rebuilds the upstream.
                if let Some(tls) = comparable.get_mut("tls").and_then(|t| t.as_object_mut()) {
                    tls.insert("client_cert".into(), cert.into());
                    tls.insert("client_key".into(), key.into());
                }
                let mut with_cert = up.clone();
                let tls = with_cert.tls.get_or_insert_with(Default::default);
                tls.client_cert = Some(cert.to_string());
                tls.client_key = Some(key.to_string());
                tls.client_cert_id = None;
                resolved = with_cert;
                &resolved
            }
        };
        if let Some(old) = self.previous.and_then(|p| p.upstreams.get(&name)) {
            if old.source == comparable {
                self.upstreams.insert(name, Arc::clone(old));
                return Ok(Arc::clone(old));
            }
        }
        let rt = Arc::new(UpstreamRuntime::build(name.clone(), up, comparable)?);
        self.upstreams.insert(name, Arc::clone(&rt));
        Ok(rt)
    }

    /// The certificate and key of `ssls/<id>`, which must be a client certificate (APISIX's `type: "client"`).
    fn client_cert(&self, id: &str) -> Result<(&'a str, &'a str), ConfigError> {
        let field = "tls.client_cert_id";
        let ssl = self
            .config
            .get(ResourceKind::Ssls, id)
            .ok_or_else(|| ConfigError::new(format!("{field}: ssl {id:?} not found")))?;
        if ssl.get("type").and_then(|t| t.as_str()) != Some("client") {
            return Err(ConfigError::new(format!(
                "{field}: ssl {id:?} is not a client certificate (its `type` must be \"client\")"
            )));
        }
        let text = |k: &str| ssl.get(k).and_then(|v| v.as_str()).unwrap_or_default();
        Ok((text("cert"), text("key")))
    }

    /// Validates and configures a `plugins` map into a chain (natively served plugins are not in it).
    fn chain(&self, plugins: &Plugins) -> Result<PluginChain, ConfigError> {
        let mut entries = Vec::with_capacity(plugins.len());
        for (name, conf) in plugins {
            if native::is_native(name) {
                continue;
            }
            let entry = self
                .catalog
                .configure(name, conf)
                .map_err(|e| ConfigError::new(format!("plugins.{name}: {e}")))?;
            entries.extend(entry);
        }
        Ok(PluginChain::new(entries))
    }

    /// Compiles `plugins.traffic-split`, if any, of object `owner` (`routes/7`) with this builder's
    /// upstreams; `named` are the upstream objects by id.
    fn traffic_split(
        &mut self,
        named: &HashMap<String, Arc<UpstreamRuntime>>,
        plugins: &Plugins,
        owner: &str,
        route_timeout: Option<&Timeout>,
    ) -> Result<Option<TrafficSplit>, ConfigError> {
        let mut lent = SplitUpstreams {
            builder: self,
            named,
        };
        traffic_split::compile(plugins, owner, route_timeout, &mut lent)
    }
}

/// Lends traffic-split the builder's upstreams: named ones, and inline ones built or reused.
struct SplitUpstreams<'b, 'a> {
    builder: &'b mut Builder<'a>,
    named: &'b HashMap<String, Arc<UpstreamRuntime>>,
}

impl UpstreamSource for SplitUpstreams<'_, '_> {
    fn by_id(&self, id: &str) -> Option<Arc<UpstreamRuntime>> {
        self.named.get(id).cloned()
    }
    fn inline(
        &mut self,
        name: String,
        upstream: &Upstream,
        source: &serde_json::Value,
    ) -> Result<Arc<UpstreamRuntime>, ConfigError> {
        self.builder.upstream(name, upstream, source)
    }
}

impl Snapshot {
    /// Every upstream runtime in use, by name (`upstreams/1`, `routes/7`): the health-check report.
    pub fn upstream_runtimes(&self) -> impl Iterator<Item = (&str, &Arc<UpstreamRuntime>)> {
        self.upstreams.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// An empty configuration: every request gets 404.
    pub fn empty() -> Self {
        Snapshot {
            config: ConfigSet::default(),
            router: Router::build(Vec::new()).unwrap_or_else(|_| unreachable!()),
            upstreams: HashMap::new(),
            global_chain: Arc::default(),
            consumers: ConsumerIndex::default(),
        }
    }

    /// Validates the whole set and compiles it. `previous` lets unchanged upstreams keep their balancer
    /// state and pooled connections.
    pub fn build(
        config: ConfigSet,
        previous: Option<&Snapshot>,
        catalog: &Catalog,
    ) -> Result<Snapshot, ConfigError> {
        let mut b = Builder {
            previous,
            config: &config,
            catalog,
            upstreams: HashMap::new(),
            validated: Vec::new(),
        };

        let mut named = HashMap::new();
        for (id, v) in config.objects(ResourceKind::Upstreams) {
            let ctx = in_resource(ResourceKind::Upstreams, id);
            let up: Upstream = parse_resource(v).map_err(&ctx)?;
            let rt = b
                .upstream(format!("upstreams/{id}"), &up, v)
                .map_err(&ctx)?;
            named.insert(id.clone(), rt);
        }
        let find_upstream = |field_owner: &str, id: &str| {
            named.get(id).cloned().ok_or_else(|| {
                ConfigError::new(format!(
                    "{field_owner}upstream_id: upstream {id:?} not found"
                ))
            })
        };

        struct ServiceParts {
            upstream: Option<Arc<UpstreamRuntime>>,
            plugins: Plugins,
            websocket: Option<bool>,
        }
        let mut services = HashMap::new();
        for (id, v) in config.objects(ResourceKind::Services) {
            let ctx = in_resource(ResourceKind::Services, id);
            let svc: Service = parse_resource(v).map_err(&ctx)?;
            svc.check().map_err(&ctx)?;
            let upstream = match (&svc.upstream, &svc.upstream_id) {
                (Some(up), _) => {
                    let src = v.get("upstream").cloned().unwrap_or_default();
                    Some(
                        b.upstream(format!("services/{id}"), up, &src)
                            .map_err(&ctx)?,
                    )
                }
                (None, Some(uid)) => Some(find_upstream("", uid).map_err(&ctx)?),
                (None, None) => None,
            };
            let plugins = svc.plugins.unwrap_or_default();
            let chain = b.chain(&plugins).map_err(&ctx)?;
            b.validated.push(chain);
            b.traffic_split(&named, &plugins, &format!("services/{id}"), None)
                .map_err(&ctx)?;
            RouteNative::compile(&plugins).map_err(&ctx)?;
            services.insert(
                id.clone(),
                ServiceParts {
                    upstream,
                    plugins,
                    websocket: svc.enable_websocket,
                },
            );
        }

        let mut plugin_configs = HashMap::new();
        for (id, v) in config.objects(ResourceKind::PluginConfigs) {
            let ctx = in_resource(ResourceKind::PluginConfigs, id);
            let pc: PluginConfig = parse_resource(v).map_err(&ctx)?;
            let chain = b.chain(&pc.plugins).map_err(&ctx)?;
            b.validated.push(chain);
            b.traffic_split(&named, &pc.plugins, &format!("plugin_configs/{id}"), None)
                .map_err(&ctx)?;
            RouteNative::compile(&pc.plugins).map_err(&ctx)?;
            plugin_configs.insert(id.clone(), pc.plugins);
        }

        let mut global_chains = Vec::new();
        for (id, v) in config.objects(ResourceKind::GlobalRules) {
            let ctx = in_resource(ResourceKind::GlobalRules, id);
            let rule: GlobalRule = parse_resource(v).map_err(&ctx)?;
            if let Some(name) = rule.plugins.keys().find(|n| native::is_native(n)) {
                return Err(ctx(ConfigError::new(format!(
                    "plugins.{name}: served natively per route, so it belongs on routes, services or plugin configs"
                ))));
            }
            global_chains.push(b.chain(&rule.plugins).map_err(&ctx)?);
        }

        let mut consumers = ConsumerIndex::default();
        for (id, v) in config.objects(ResourceKind::Consumers) {
            let ctx = in_resource(ResourceKind::Consumers, id);
            let c: Consumer = parse_resource(v).map_err(&ctx)?;
            c.check().map_err(&ctx)?;
            // A consumer's plugin entries are credentials read by the auth plugins, checked by each
            // plugin's `validate-consumer`, not route configs.
            consumers.add(&c, b.catalog).map_err(&ctx)?;
        }

        let mut specs = Vec::new();
        for (id, v) in config.objects(ResourceKind::Routes) {
            let ctx = in_resource(ResourceKind::Routes, id);
            let route: Route = parse_resource(v).map_err(&ctx)?;
            route.check().map_err(&ctx)?;
            let service = match &route.service_id {
                Some(sid) => Some(services.get(sid).ok_or_else(|| {
                    ctx(ConfigError::new(format!(
                        "service_id: service {sid:?} not found"
                    )))
                })?),
                None => None,
            };
            let upstream = match (&route.upstream, &route.upstream_id) {
                (Some(up), _) => {
                    let src = v.get("upstream").cloned().unwrap_or_default();
                    Some(b.upstream(format!("routes/{id}"), up, &src).map_err(&ctx)?)
                }
                (None, Some(uid)) => Some(find_upstream("", uid).map_err(&ctx)?),
                (None, None) => service.and_then(|s| s.upstream.clone()),
            };
            let mut plugins = service.map(|s| s.plugins.clone()).unwrap_or_default();
            if let Some(pcid) = &route.plugin_config_id {
                let pc = plugin_configs.get(pcid).ok_or_else(|| {
                    ctx(ConfigError::new(format!(
                        "plugin_config_id: plugin config {pcid:?} not found"
                    )))
                })?;
                plugins.extend(pc.clone());
            }
            let own = route.plugins.clone().unwrap_or_default();
            plugins.extend(own);
            let chain = Arc::new(b.chain(&plugins).map_err(&ctx)?);
            let traffic_split = b
                .traffic_split(
                    &named,
                    &plugins,
                    &format!("routes/{id}"),
                    route.timeout.as_ref(),
                )
                .map_err(&ctx)?;
            let native = RouteNative::compile(&plugins).map_err(&ctx)?;
            if upstream.is_none() && plugins.is_empty() {
                return Err(ctx(ConfigError::new(
                    "upstream: a route needs `upstream`, `upstream_id` or a `service_id` whose service has an upstream",
                )));
            }
            let base = upstream.as_ref().map(|u| u.timeouts).unwrap_or_default();
            let entry = Arc::new(RouteEntry {
                id: id.clone(),
                service_id: route.service_id.clone(),
                timeouts: base.overridden_by(route.timeout.as_ref()),
                upstream,
                chain,
                traffic_split,
                native,
                websocket: route
                    .enable_websocket
                    .or(service.and_then(|s| s.websocket))
                    .unwrap_or(false),
            });
            if !route.enabled() {
                continue;
            }
            let mut hosts = route.all_hosts();
            if hosts.is_empty() {
                if let Some(svc_hosts) = route
                    .service_id
                    .as_ref()
                    .and_then(|sid| config.get(ResourceKind::Services, sid))
                    .and_then(|s| s.get("hosts"))
                    .and_then(|h| h.as_array())
                {
                    hosts = svc_hosts
                        .iter()
                        .filter_map(|h| h.as_str().map(str::to_string))
                        .collect();
                }
            }
            let methods = route
                .methods
                .iter()
                .flatten()
                .filter_map(|m| http::Method::from_bytes(m.as_bytes()).ok())
                .collect();
            specs.push(RouteSpec {
                id: id.clone(),
                uris: route.all_uris(),
                methods,
                hosts,
                remote_addrs: route.all_remote_addrs(),
                vars: route.vars.clone(),
                priority: route.priority.unwrap_or(0),
                target: entry,
            });
        }
        let router = Router::build(specs).map_err(|e| ConfigError::new(e.to_string()))?;
        let global_chain = Arc::new(PluginChain::merge(global_chains));
        let Builder { upstreams, .. } = b;
        Ok(Snapshot {
            config,
            router,
            upstreams,
            global_chain,
            consumers,
        })
    }
}
