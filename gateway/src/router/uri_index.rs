//! URI → candidate route lists: a hash map for exact URIs and a prefix trie
//! for `...*` URIs, consulted in APISIX order (exact, then longest prefix).

use std::collections::HashMap;

use super::prefix_trie::{PrefixTrie, PrefixTrieBuilder};

/// A validated `uris[i]` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UriPattern<'a> {
    /// Matches only this exact path.
    Exact(&'a str),
    /// Matches any path starting with this string (the `*` removed).
    Prefix(&'a str),
}

impl<'a> UriPattern<'a> {
    /// Validates one configured URI. A `*` is only meaningful as the last
    /// character (prefix match); in the middle it would be a radixtree path
    /// parameter, which APISIX's default `radixtree_uri` router does not
    /// support either, so it is rejected rather than silently taken
    /// literally. `:` is an ordinary character, as in `radixtree_uri`.
    pub(crate) fn parse(uri: &'a str) -> Result<Self, String> {
        if !uri.starts_with('/') {
            return Err("must start with \"/\"".into());
        }
        if uri.contains(['?', '#']) {
            return Err("must not contain a query string or fragment (\"?\", \"#\")".into());
        }
        if uri.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err("must not contain spaces or control characters".into());
        }
        match uri.find('*') {
            None => Ok(Self::Exact(uri)),
            Some(pos) if pos == uri.len() - 1 => Ok(Self::Prefix(&uri[..pos])),
            Some(_) => Err(
                "\"*\" is only allowed as the last character (prefix match); path parameters are not supported"
                    .into(),
            ),
        }
    }
}

/// Collects URIs during [`super::Router::build`].
#[derive(Debug, Default)]
pub(crate) struct UriIndexBuilder {
    exact: HashMap<Box<str>, Vec<u32>>,
    prefix: PrefixTrieBuilder,
}

impl UriIndexBuilder {
    /// Routes must be inserted in precedence order.
    pub(crate) fn insert(&mut self, pattern: UriPattern<'_>, route: u32) {
        match pattern {
            UriPattern::Exact(p) => self.exact.entry(p.into()).or_default().push(route),
            UriPattern::Prefix(p) => self.prefix.insert(p.as_bytes(), route),
        }
    }

    pub(crate) fn finish(mut self) -> UriIndex {
        self.exact.shrink_to_fit();
        UriIndex {
            exact: self.exact,
            prefix: self.prefix.freeze(),
        }
    }
}

/// Route lists hold indices into the router's route table, each list in
/// precedence order (priority desc, then id).
#[derive(Debug, Clone, Default)]
pub(crate) struct UriIndex {
    exact: HashMap<Box<str>, Vec<u32>>,
    prefix: PrefixTrie,
}

impl UriIndex {
    /// Offers candidate lists to `visit` in match order (exact list, then
    /// prefix lists longest first) until it returns `Some`.
    pub(crate) fn find_map<R>(
        &self,
        path: &str,
        mut visit: impl FnMut(&[u32]) -> Option<R>,
    ) -> Option<R> {
        if let Some(found) = self.exact.get(path).and_then(|list| visit(list)) {
            return Some(found);
        }
        self.prefix.find_map(path.as_bytes(), &mut visit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_patterns() {
        assert_eq!(UriPattern::parse("/a/b"), Ok(UriPattern::Exact("/a/b")));
        assert_eq!(UriPattern::parse("/a/*"), Ok(UriPattern::Prefix("/a/")));
        assert_eq!(UriPattern::parse("/a*"), Ok(UriPattern::Prefix("/a")));
        assert_eq!(UriPattern::parse("/*"), Ok(UriPattern::Prefix("/")));
        assert_eq!(
            UriPattern::parse("/user/:id"),
            Ok(UriPattern::Exact("/user/:id"))
        );
        assert_eq!(UriPattern::parse("a"), Err("must start with \"/\"".into()));
        assert_eq!(UriPattern::parse(""), Err("must start with \"/\"".into()));
        assert!(UriPattern::parse("/a/*/b").is_err());
        assert!(UriPattern::parse("/a?x=1").is_err());
        assert!(UriPattern::parse("/a b").is_err());
    }

    #[test]
    fn exact_before_prefix_and_fallthrough() {
        let mut b = UriIndexBuilder::default();
        b.insert(UriPattern::Prefix("/a/"), 1);
        b.insert(UriPattern::Exact("/a/b"), 2);
        let idx = b.finish();
        let mut order = Vec::new();
        let _: Option<()> = idx.find_map("/a/b", |l| {
            order.extend_from_slice(l);
            None
        });
        assert_eq!(order, vec![2, 1]);
    }
}
