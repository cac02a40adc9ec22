//! Request → route matching with Apache APISIX (`radixtree_uri`) semantics.
//!
//! # Matching order
//!
//! 1. **URI.** Exact URIs (`/api/users`) are looked up in a hash map first.
//!    If none of those routes accepts the request, prefix URIs (`/api/*`,
//!    any URI ending in `*`) are tried, **longest prefix first**, via a byte
//!    radix trie walked once along the path.
//! 2. **Priority.** Routes sharing the same URI are tried by `priority`
//!    (higher first), then by id (numeric ids numerically, others
//!    lexically) so the result never depends on configuration order.
//! 3. **Conditions.** A candidate wins if its `methods`, `hosts`,
//!    `remote_addrs` and `vars` all accept the request. Otherwise matching
//!    *falls through* to the next candidate: the next route with the same
//!    URI, then the next shorter prefix.
//!
//! Example, with routes
//!
//! | id | uri | priority | conditions |
//! |----|-----|----------|------------|
//! | 1 | `/blog/*` | 0 | |
//! | 2 | `/blog/foo/*` | 0 | `methods: [GET]` |
//! | 3 | `/blog/foo/*` | 10 | `vars: [["arg_v","==","2"]]` |
//! | 4 | `/blog/foo/bar` | 0 | |
//!
//! * `GET /blog/foo/bar` → 4 (exact beats any prefix).
//! * `GET /blog/foo/x?v=2` → 3 (longest prefix; priority 10 before 0).
//! * `GET /blog/foo/x` → 2 (3's vars fail, fall through to 2).
//! * `POST /blog/foo/x` → 1 (both `/blog/foo/*` routes fail, shorter prefix).
//! * `GET /blog` → no match: `/blog/*` is the prefix `/blog/`.
//!
//! # Decisions
//!
//! * `/foo/*` is the byte prefix `/foo/`: it matches `/foo/` and
//!   `/foo/a/b` but **not** `/foo` (lua-resty-radixtree strips only the `*`;
//!   list `/foo` as well to match it). `/foo*` matches `/foo`, `/foo/x` and
//!   `/foobar`. `/*` matches every path.
//! * `*` elsewhere than at the end (radixtree path parameters) is rejected;
//!   `:` is literal, as in APISIX's default `radixtree_uri` router.
//! * The path is matched as given (the caller normalises/decodes it, like
//!   nginx's `$uri`); anything from `?` on is ignored.
//! * Hosts: case-insensitive; a leading `*` makes the rest a suffix, so
//!   `*.example.com` matches `a.example.com` and `a.b.example.com` but not
//!   `example.com`. The request host's `:port` is ignored. A route with
//!   hosts never matches a request without a host.
//! * `remote_addrs` (IPs/CIDRs, v4 and v6) are checked against the
//!   `remote_addr` variable from the [`VarSource`], with the same
//!   [`IpMatcher`](sluice_expr::IpMatcher) as the `ipmatch` vars operator.
//! * `vars`: see [`vars`]; `null` or `[]` means no condition.
//!
//! The `vars` dialect, [`VarSource`] and the IP matcher live in the
//! [`sluice_expr`] crate (`plugin-sdk/expr/`), not here, because built-in
//! wasm plugins must evaluate exactly the same expressions; this module
//! re-exports them so `router::VarSource`, `router::vars::Expr`, ... keep
//! working.
//!
//! The router is immutable after [`Router::build`]; configuration changes
//! build a new one (cheap enough to do per change) and swap it in.

mod error;
mod host;
mod prefix_trie;
mod route;
mod uri_index;
/// The lua-resty-expr dialect of route `vars`, shared with plugins.
pub use sluice_expr as vars;

#[cfg(test)]
mod tests;

use std::cmp::Ordering;
use std::collections::HashSet;

use http::Method;

pub use error::RouteBuildError;
pub use sluice_expr::{Expr, NoVars, VarSource, VarsError};

use route::CompiledRoute;
use uri_index::{UriIndex, UriIndexBuilder, UriPattern};

/// A route as configured (APISIX Route object fields relevant to matching).
#[derive(Debug, Clone)]
pub struct RouteSpec<T> {
    pub id: String,
    /// `/exact` or `/prefix*` (usually `/prefix/*`); at least one.
    pub uris: Vec<String>,
    /// Empty = any method.
    pub methods: Vec<Method>,
    /// Empty = any host; `*.example.com` wildcards; case-insensitive.
    pub hosts: Vec<String>,
    /// IPs or CIDRs; empty = any client.
    pub remote_addrs: Vec<String>,
    /// lua-resty-expr expression, raw JSON.
    pub vars: Option<serde_json::Value>,
    /// Higher wins among routes with the same uri.
    pub priority: i64,
    /// What [`Router::find`] hands back.
    pub target: T,
}

impl<T> RouteSpec<T> {
    /// A route on one URI with no other conditions; refine it with the
    /// builder methods or by setting the public fields.
    pub fn new(id: impl Into<String>, uri: impl Into<String>, target: T) -> Self {
        Self {
            id: id.into(),
            uris: vec![uri.into()],
            methods: Vec::new(),
            hosts: Vec::new(),
            remote_addrs: Vec::new(),
            vars: None,
            priority: 0,
            target,
        }
    }

    pub fn uris<S: Into<String>>(mut self, uris: impl IntoIterator<Item = S>) -> Self {
        self.uris = uris.into_iter().map(Into::into).collect();
        self
    }

    pub fn methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.methods = methods.into_iter().collect();
        self
    }

    pub fn hosts<S: Into<String>>(mut self, hosts: impl IntoIterator<Item = S>) -> Self {
        self.hosts = hosts.into_iter().map(Into::into).collect();
        self
    }

    pub fn remote_addrs<S: Into<String>>(mut self, addrs: impl IntoIterator<Item = S>) -> Self {
        self.remote_addrs = addrs.into_iter().map(Into::into).collect();
        self
    }

    pub fn vars(mut self, vars: serde_json::Value) -> Self {
        self.vars = Some(vars);
        self
    }

    pub fn priority(mut self, priority: i64) -> Self {
        self.priority = priority;
        self
    }
}

/// A successful match: the route id (for logs/metrics) and its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteMatch<'a, T> {
    pub id: &'a str,
    pub target: &'a T,
}

/// Immutable route table; `Send + Sync` when `T` is.
#[derive(Debug)]
pub struct Router<T> {
    /// Sorted by precedence (priority desc, id), so candidate lists in the
    /// index — built in this order — are already in try-order.
    routes: Vec<CompiledRoute<T>>,
    index: UriIndex,
}

impl<T> Default for Router<T> {
    fn default() -> Self {
        Self {
            routes: Vec::new(),
            index: UriIndex::default(),
        }
    }
}

impl<T> Router<T> {
    /// Validates and compiles every route; the first invalid one fails the
    /// whole build (the admin API rejects the write with its message).
    pub fn build(specs: Vec<RouteSpec<T>>) -> Result<Self, RouteBuildError> {
        let mut seen = HashSet::with_capacity(specs.len());
        let mut compiled = Vec::with_capacity(specs.len());
        for spec in specs {
            if spec.id.is_empty() {
                return Err(RouteBuildError::field("", "id", "must not be empty"));
            }
            if !seen.insert(spec.id.clone()) {
                return Err(RouteBuildError::DuplicateId { id: spec.id });
            }
            let uris = validate_uris(&spec.id, &spec.uris)?;
            compiled.push((CompiledRoute::compile(spec)?, uris));
        }
        compiled.sort_by(|(a, _), (b, _)| {
            b.priority
                .cmp(&a.priority)
                .then_with(|| cmp_ids(&a.id, &b.id))
        });

        let mut index = UriIndexBuilder::default();
        let mut routes = Vec::with_capacity(compiled.len());
        for (i, (route, uris)) in compiled.into_iter().enumerate() {
            let Ok(idx) = u32::try_from(i) else {
                return Err(RouteBuildError::field(&route.id, "id", "too many routes"));
            };
            for uri in &uris {
                // Validated above; re-parsing borrows from the owned string.
                if let Ok(pattern) = UriPattern::parse(uri) {
                    index.insert(pattern, idx);
                }
            }
            routes.push(route);
        }
        Ok(Self {
            routes,
            index: index.finish(),
        })
    }

    /// Finds the target of the first matching route (see the module doc for
    /// the order). `host` may carry a `:port`; `path` may carry a query.
    pub fn find<'a>(
        &'a self,
        method: &Method,
        host: Option<&str>,
        path: &str,
        vars: &dyn VarSource,
    ) -> Option<&'a T> {
        self.find_match(method, host, path, vars).map(|m| m.target)
    }

    /// Like [`Router::find`], also returning the matched route's id.
    pub fn find_match<'a>(
        &'a self,
        method: &Method,
        host: Option<&str>,
        path: &str,
        vars: &dyn VarSource,
    ) -> Option<RouteMatch<'a, T>> {
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        let host = host.map(host::strip_port);
        let routes = &self.routes;
        self.index
            .find_map(path, |candidates| {
                candidates
                    .iter()
                    .map(|&i| &routes[i as usize])
                    .find(|r| r.matches(method, host, vars))
            })
            .map(|r| RouteMatch {
                id: &r.id,
                target: &r.target,
            })
    }

    /// Number of routes (not URIs).
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

/// Checks every URI up-front so errors name `uris[i]`, and drops duplicates
/// within one route so a route is never tried twice for the same list.
fn validate_uris(id: &str, uris: &[String]) -> Result<Vec<String>, RouteBuildError> {
    if uris.is_empty() {
        return Err(RouteBuildError::field(
            id,
            "uris",
            "at least one uri is required",
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(uris.len());
    for (i, uri) in uris.iter().enumerate() {
        UriPattern::parse(uri).map_err(|e| RouteBuildError::field(id, format!("uris[{i}]"), e))?;
        if !out.contains(uri) {
            out.push(uri.clone());
        }
    }
    Ok(out)
}

/// Deterministic tie-break: numeric ids (APISIX's usual form) by value, so
/// `"9"` comes before `"10"`; numeric before non-numeric; then lexical.
fn cmp_ids(a: &str, b: &str) -> Ordering {
    let num = |s: &str| {
        if s.bytes().all(|c| c.is_ascii_digit()) {
            s.parse::<u128>().ok()
        } else {
            None
        }
    };
    match (num(a), num(b)) {
        (Some(x), Some(y)) => x.cmp(&y).then_with(|| a.cmp(b)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}
