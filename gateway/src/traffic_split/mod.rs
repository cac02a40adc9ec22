//! `traffic-split`: APISIX's canary / A-B / blue-green plugin. `rules` are tried in order; the first whose
//! `match` holds (any one of its `vars` lists; no `match` always holds) sends the request to one of its
//! `weighted_upstreams` in proportion to `weight`. An entry without `upstream`/`upstream_id` stands for
//! the route's own upstream; a request no rule matches also goes there.
//!
//! Why it is native rather than one of the built-in Wasm plugins: it chooses the upstream, and the plugin
//! WIT world deliberately gives plugins no way to do that (a plugin sees and edits the request; which
//! pooled, balanced, health-checked upstream serves it stays the gateway's). APISIX users configure it as
//! a route plugin, so it is accepted under `plugins.traffic-split` on routes, services and plugin configs
//! exactly as APISIX spells it, compiled with the snapshot ([`compile`]) and taken out of
//! the Wasm chain. Inline upstreams become ordinary [`UpstreamRuntime`]s (pools, balancers, TLS) built by
//! the snapshot builder, so they are reused across config versions like any other. Global rules may not
//! carry it: they run for requests of every route, and the upstream is a route's choice.
//!
//! On the request path a pick is an expression evaluation and one atomic increment (see `schedule.rs`).

mod config;
mod schedule;

use crate::router::{Expr, VarSource};
use crate::upstream::{Timeouts, UpstreamRuntime};
use schedule::Schedule;
use std::sync::Arc;

pub use config::{compile, names_upstream, UpstreamSource};

/// The name it is configured under in a `plugins` map.
pub const NAME: &str = "traffic-split";

/// A compiled `traffic-split` config.
pub struct TrafficSplit {
    rules: Vec<Rule>,
}

struct Rule {
    /// Any one of these must hold; empty means the rule always applies.
    matches: Vec<Expr>,
    targets: Vec<Target>,
    schedule: Schedule,
}

/// Where a picked share of the traffic goes.
pub struct Target {
    /// `None`: the route's own upstream.
    pub upstream: Option<Arc<UpstreamRuntime>>,
    /// The upstream's timeouts with the route's `timeout` over them, as for the route's own upstream.
    pub timeouts: Timeouts,
}

impl TrafficSplit {
    /// The target of the first rule this request matches, `None` when it matches none.
    pub fn choose(&self, vars: &dyn VarSource) -> Option<&Target> {
        let rule = self
            .rules
            .iter()
            .find(|r| r.matches.is_empty() || r.matches.iter().any(|e| e.eval(vars)))?;
        rule.targets.get(rule.schedule.pick())
    }
}
