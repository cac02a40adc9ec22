//! The request-variable lookup that [`crate::Expr`] and the router read.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::BuildHasher;

/// Where expressions (and the router) read request variables from, using APISIX/nginx
/// variable names: `arg_*`, `http_*` (header, lower-case, `-` → `_`),
/// `cookie_*`, `uri`, `host`, `remote_addr`, `request_method`,
/// `server_port`, ...
///
/// A trait (rather than a map) so the gateway can resolve variables lazily
/// from the live request: most routes never look at most variables, and
/// parsing the query string or cookies up-front would be wasted work.
/// Returning `Cow` lets borrowed header values through without copying.
pub trait VarSource {
    /// `None` means the variable is absent (lua `nil`), which is different
    /// from present-but-empty.
    fn var(&self, name: &str) -> Option<Cow<'_, str>>;
}

impl<V: VarSource + ?Sized> VarSource for &V {
    fn var(&self, name: &str) -> Option<Cow<'_, str>> {
        (**self).var(name)
    }
}

impl<S: BuildHasher> VarSource for HashMap<String, String, S> {
    fn var(&self, name: &str) -> Option<Cow<'_, str>> {
        self.get(name).map(|v| Cow::Borrowed(v.as_str()))
    }
}

/// Convenient fixed lists, mainly for tests and tools:
/// `&[("arg_a", "1"), ("remote_addr", "10.0.0.1")]`.
impl<const N: usize> VarSource for [(&str, &str); N] {
    fn var(&self, name: &str) -> Option<Cow<'_, str>> {
        self.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| Cow::Borrowed(*v))
    }
}

/// A source with no variables at all (every lookup is `nil`).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoVars;

impl VarSource for NoVars {
    fn var(&self, _name: &str) -> Option<Cow<'_, str>> {
        None
    }
}
