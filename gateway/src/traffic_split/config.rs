//! Reading `plugins.traffic-split` with APISIX's field names and turning it into a [`TrafficSplit`],
//! refusing what could not route (an unknown `upstream_id`, no positive weight, `vars` that do not
//! compile) with a message naming the field, so the admin write gets a 400 instead of traffic going astray.

use super::{Rule, Schedule, Target, TrafficSplit, NAME};
use crate::config::{parse_resource, ConfigError, Plugins, Timeout, Upstream};
use crate::router::Expr;
use crate::upstream::{Timeouts, UpstreamRuntime};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;

/// How the compiler gets upstream runtimes: the snapshot builder's, so named upstreams are shared and
/// inline ones are reused across config versions like every other upstream.
pub trait UpstreamSource {
    /// The runtime of upstream object `id`, `None` when there is no such upstream.
    fn by_id(&self, id: &str) -> Option<Arc<UpstreamRuntime>>;
    /// Builds (or reuses, when `source` is unchanged) the runtime of an inline upstream called `name`.
    fn inline(
        &mut self,
        name: String,
        upstream: &Upstream,
        source: &Value,
    ) -> Result<Arc<UpstreamRuntime>, ConfigError>;
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Conf {
    #[serde(default)]
    rules: Vec<RuleConf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleConf {
    #[serde(default, rename = "match")]
    matches: Vec<MatchConf>,
    #[serde(default)]
    weighted_upstreams: Vec<WeightedConf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MatchConf {
    vars: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WeightedConf {
    /// A string or an integer, as APISIX ids are.
    upstream_id: Option<Value>,
    upstream: Option<Value>,
    /// APISIX's default is 1.
    weight: Option<i64>,
}

/// Compiles the `traffic-split` entry of `plugins`, if any, for the object `owner` (`routes/7`: names the
/// inline upstreams' runtimes). `route_timeout` is the route's `timeout`, laid over each upstream's.
/// `Ok(None)` when the entry is absent or `_meta.disable`d.
pub fn compile(
    plugins: &Plugins,
    owner: &str,
    route_timeout: Option<&Timeout>,
    upstreams: &mut dyn UpstreamSource,
) -> Result<Option<TrafficSplit>, ConfigError> {
    let Some(conf) = crate::native::entry::<Conf>(plugins, NAME)? else {
        return Ok(None);
    };
    let path = format!("plugins.{NAME}");
    let mut rules = Vec::with_capacity(conf.rules.len());
    for (r, rule) in conf.rules.iter().enumerate() {
        let at = format!("{path}.rules[{r}]");
        let name = format!("{owner}/{NAME}/{r}");
        rules.push(compile_rule(rule, &at, &name, route_timeout, upstreams)?);
    }
    Ok(Some(TrafficSplit { rules }))
}

/// One rule; `at` is its field path for errors, `name` the prefix of its inline upstreams' names.
fn compile_rule(
    rule: &RuleConf,
    at: &str,
    name: &str,
    route_timeout: Option<&Timeout>,
    upstreams: &mut dyn UpstreamSource,
) -> Result<Rule, ConfigError> {
    let mut matches = Vec::with_capacity(rule.matches.len());
    for (i, m) in rule.matches.iter().enumerate() {
        let vars = m.vars.clone().unwrap_or_else(|| Value::Array(Vec::new()));
        let expr = Expr::compile(&vars)
            .map_err(|e| ConfigError::new(format!("{at}.match[{i}].vars: {e}")))?;
        matches.push(expr);
    }
    if rule.weighted_upstreams.is_empty() {
        return Err(ConfigError::new(format!(
            "{at}.weighted_upstreams: needs at least one entry \
             (an entry without upstream stands for the route's own)"
        )));
    }
    let mut targets = Vec::with_capacity(rule.weighted_upstreams.len());
    let mut weights = Vec::with_capacity(rule.weighted_upstreams.len());
    for (i, w) in rule.weighted_upstreams.iter().enumerate() {
        let at = format!("{at}.weighted_upstreams[{i}]");
        let weight = w.weight.unwrap_or(1);
        let weight = u32::try_from(weight).map_err(|_| {
            ConfigError::new(format!(
                "{at}.weight: must be an integer from 0 to {}, got {weight}",
                u32::MAX
            ))
        })?;
        let upstream = target_upstream(w, &at, &format!("{name}/{i}"), upstreams)?;
        let timeouts = upstream
            .as_ref()
            .map_or_else(Timeouts::default, |u| u.timeouts)
            .overridden_by(route_timeout);
        targets.push(Target { upstream, timeouts });
        weights.push(weight);
    }
    let schedule = Schedule::new(&weights).ok_or_else(|| {
        ConfigError::new(format!(
            "{at}.weighted_upstreams: at least one weight must be above 0"
        ))
    })?;
    Ok(Rule {
        matches,
        targets,
        schedule,
    })
}

/// The upstream one `weighted_upstreams` entry (at field path `at`) names; `None` for the route's own.
fn target_upstream(
    w: &WeightedConf,
    at: &str,
    name: &str,
    upstreams: &mut dyn UpstreamSource,
) -> Result<Option<Arc<UpstreamRuntime>>, ConfigError> {
    match (&w.upstream_id, &w.upstream) {
        (Some(_), Some(_)) => Err(ConfigError::new(format!(
            "{at}: give either `upstream_id` or `upstream`, not both"
        ))),
        (Some(id), None) => {
            let id = match id {
                Value::String(s) => s.clone(),
                Value::Number(n) if n.is_u64() => n.to_string(),
                _ => {
                    return Err(ConfigError::new(format!(
                        "{at}.upstream_id: must be a string or a non-negative integer"
                    )))
                }
            };
            upstreams.by_id(&id).map(Some).ok_or_else(|| {
                ConfigError::new(format!("{at}.upstream_id: upstream {id:?} not found"))
            })
        }
        (None, Some(source)) => {
            let in_upstream = |e: ConfigError| e.at(&format!("{at}.upstream"));
            let up: Upstream = parse_resource(source).map_err(in_upstream)?;
            upstreams
                .inline(name.to_string(), &up, source)
                .map(Some)
                .map_err(in_upstream)
        }
        (None, None) => Ok(None),
    }
}

/// Whether `object`'s `plugins.traffic-split` sends traffic to upstream `id` (by `upstream_id`), so that
/// deleting that upstream is refused with the name of its user, like a route's own `upstream_id`.
pub fn names_upstream(object: &Value, id: &str) -> bool {
    let rules = object
        .pointer(&format!("/plugins/{NAME}/rules"))
        .and_then(Value::as_array);
    rules
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("weighted_upstreams").and_then(Value::as_array))
        .flatten()
        .filter_map(|w| w.get("upstream_id"))
        .any(|u| match u {
            Value::String(s) => s == id,
            Value::Number(n) => n.to_string() == id,
            _ => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn upstream_references_are_found_by_string_or_numeric_id() {
        let route = json!({"plugins": {"traffic-split": {"rules": [
            {"weighted_upstreams": [{"weight": 1}]},
            {"weighted_upstreams": [{"upstream_id": 7}, {"upstream_id": "b"}]}
        ]}}});
        assert!(names_upstream(&route, "7") && names_upstream(&route, "b"));
        assert!(!names_upstream(&route, "c"));
        assert!(!names_upstream(&json!({"upstream_id": "b"}), "b"));
    }
}
