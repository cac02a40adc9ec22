//! One compiled route: everything except the URI, which lives in the index.

use http::Method;
use sluice_expr::{Expr, IpMatcher, VarSource};

use super::error::RouteBuildError;
use super::host::HostPattern;
use super::RouteSpec;

/// The per-request checks of a route, pre-parsed so matching never parses
/// or allocates.
#[derive(Debug)]
pub(crate) struct CompiledRoute<T> {
    pub(crate) id: String,
    pub(crate) priority: i64,
    methods: Vec<Method>,
    hosts: Vec<HostPattern>,
    remote_addrs: Option<IpMatcher>,
    vars: Option<Expr>,
    pub(crate) target: T,
}

impl<T> CompiledRoute<T> {
    /// Compiles everything but `uris` (validated separately because they go
    /// into the shared index); consumes the spec's target.
    pub(crate) fn compile(spec: RouteSpec<T>) -> Result<Self, RouteBuildError> {
        let RouteSpec {
            id,
            uris: _,
            methods,
            hosts,
            remote_addrs,
            vars,
            priority,
            target,
        } = spec;
        let hosts = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| {
                HostPattern::parse(h)
                    .map_err(|e| RouteBuildError::field(&id, format!("hosts[{i}]"), e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let remote_addrs = if remote_addrs.is_empty() {
            None
        } else {
            Some(
                IpMatcher::parse(remote_addrs.iter().map(String::as_str)).map_err(|(i, e)| {
                    RouteBuildError::field(&id, format!("remote_addrs[{i}]"), e)
                })?,
            )
        };
        let vars = match vars {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => {
                let expr = Expr::compile(&v).map_err(|error| RouteBuildError::InvalidVars {
                    id: id.clone(),
                    error,
                })?;
                (!expr.is_always_true()).then_some(expr)
            }
        };
        let mut methods = methods;
        methods.dedup();
        Ok(Self {
            id,
            priority,
            methods,
            hosts,
            remote_addrs,
            vars,
            target,
        })
    }

    /// All non-URI conditions, cheapest first. `host` has its port removed.
    /// The client address comes from the `remote_addr` variable; if it is
    /// missing or unparsable, a route with `remote_addrs` does not match.
    pub(crate) fn matches(
        &self,
        method: &Method,
        host: Option<&str>,
        vars: &dyn VarSource,
    ) -> bool {
        if !self.methods.is_empty() && !self.methods.contains(method) {
            return false;
        }
        if !self.hosts.is_empty() {
            match host {
                Some(h) if self.hosts.iter().any(|p| p.matches(h)) => {}
                _ => return false,
            }
        }
        if let Some(m) = &self.remote_addrs {
            if !vars.var("remote_addr").is_some_and(|a| m.matches_str(&a)) {
                return false;
            }
        }
        self.vars.as_ref().is_none_or(|e| e.eval(vars))
    }
}
