//! Byte-level compressed radix trie over URI prefixes.
//!
//! Why bytes rather than path segments: APISIX prefixes are raw string
//! prefixes (`/blog/bar*` also matches `/blog/barfoo`), so a segment trie
//! would get that case wrong. A lookup walks the request path once, so its
//! cost is bounded by the path length: the route count only matters through
//! the trie depth (the number of branch points along the path, which grows
//! roughly logarithmically), never through a scan of the routes.

/// Sentinel for "no node" in [`Node::routed_ancestor`].
const NONE: u32 = u32::MAX;

/// Mutable node used only while inserting.
#[derive(Debug, Default, Clone)]
struct BuildNode {
    /// Edge label from the parent (the root's is empty).
    label: Box<[u8]>,
    /// Children sorted by the first byte of their label.
    children: Vec<(u8, u32)>,
    /// Routes whose prefix ends exactly here, in precedence order.
    routes: Vec<u32>,
}

/// Collects prefixes; [`PrefixTrieBuilder::freeze`] turns it into the
/// compact, read-only [`PrefixTrie`].
#[derive(Debug, Clone)]
pub(crate) struct PrefixTrieBuilder {
    nodes: Vec<BuildNode>,
}

impl Default for PrefixTrieBuilder {
    fn default() -> Self {
        Self {
            nodes: vec![BuildNode::default()],
        }
    }
}

impl PrefixTrieBuilder {
    /// Appends `route` to the list for `prefix`. Callers insert routes in
    /// precedence order, so lists stay sorted without a later sort.
    pub(crate) fn insert(&mut self, prefix: &[u8], route: u32) {
        let mut node = 0usize;
        let mut rest = prefix;
        loop {
            let Some(&b) = rest.first() else {
                self.nodes[node].routes.push(route);
                return;
            };
            let children = &self.nodes[node].children;
            match children.binary_search_by_key(&b, |&(first, _)| first) {
                Err(pos) => {
                    let leaf = self.push(BuildNode {
                        label: rest.into(),
                        children: Vec::new(),
                        routes: vec![route],
                    });
                    self.nodes[node].children.insert(pos, (b, leaf));
                    return;
                }
                Ok(pos) => {
                    let child = children[pos].1 as usize;
                    let label = &self.nodes[child].label;
                    let common = label.iter().zip(rest).take_while(|(a, b)| a == b).count();
                    if common < label.len() {
                        // Split the edge: node -> mid(label[..common]) -> child(label[common..]).
                        let head: Box<[u8]> = label[..common].into();
                        let tail: Box<[u8]> = label[common..].into();
                        let mid = self.push(BuildNode {
                            label: head,
                            children: vec![(tail[0], child as u32)],
                            routes: Vec::new(),
                        });
                        self.nodes[child].label = tail;
                        self.nodes[node].children[pos].1 = mid;
                        node = mid as usize;
                    } else {
                        node = child;
                    }
                    rest = &rest[common..];
                }
            }
        }
    }

    fn push(&mut self, node: BuildNode) -> u32 {
        self.nodes.push(node);
        // Node count is bounded by total prefix bytes (< 4 GiB of config).
        (self.nodes.len() - 1) as u32
    }

    /// Lays the trie out breadth-first in flat arrays: a node's children get
    /// consecutive ids, so finding a child needs no pointer chasing (the
    /// child id is `first_child + position`), which shortens the chain of
    /// dependent loads per trie level.
    pub(crate) fn freeze(self) -> PrefixTrie {
        let count = self.nodes.len();
        let mut t = PrefixTrie {
            nodes: Vec::with_capacity(count),
            first_bytes: Vec::with_capacity(count),
            labels: Vec::new(),
            routes: Vec::new(),
        };
        // order[new_id] = (old_id, parent's new id)
        let mut order: Vec<(usize, u32)> = Vec::with_capacity(count);
        order.push((0, NONE));
        t.first_bytes.push(0);
        let mut i = 0;
        while let Some(&(old, parent)) = order.get(i) {
            let n = &self.nodes[old];
            let first_child = order.len() as u32;
            for &(b, child) in &n.children {
                order.push((child as usize, i as u32));
                t.first_bytes.push(b);
            }
            let routed_ancestor = match t.nodes.get(parent as usize) {
                None => NONE,
                Some(p) if p.routes_len > 0 => parent,
                Some(p) => p.routed_ancestor,
            };
            t.nodes.push(Node {
                label_start: t.labels.len() as u32,
                label_len: n.label.len() as u32,
                first_child,
                child_count: n.children.len() as u32,
                routes_start: t.routes.len() as u32,
                routes_len: n.routes.len() as u32,
                routed_ancestor,
            });
            t.labels.extend_from_slice(&n.label);
            t.routes.extend_from_slice(&n.routes);
            i += 1;
        }
        t
    }
}

/// Frozen node; all ranges index the shared arrays of [`PrefixTrie`].
#[derive(Debug, Clone, Copy)]
struct Node {
    label_start: u32,
    label_len: u32,
    /// Children are nodes `first_child .. first_child + child_count`, their
    /// label first bytes at the same indices of `first_bytes` (sorted).
    first_child: u32,
    child_count: u32,
    routes_start: u32,
    routes_len: u32,
    /// Nearest proper ancestor that has routes, or [`NONE`]: lets a lookup
    /// walk down once and then visit shorter prefixes without a stack.
    routed_ancestor: u32,
}

/// Read-only prefix index; finds all stored prefixes of a path, longest
/// first.
#[derive(Debug, Clone)]
pub(crate) struct PrefixTrie {
    nodes: Vec<Node>,
    /// First byte of each node's label, indexed by node id.
    first_bytes: Vec<u8>,
    labels: Vec<u8>,
    routes: Vec<u32>,
}

impl Default for PrefixTrie {
    fn default() -> Self {
        PrefixTrieBuilder::default().freeze()
    }
}

impl PrefixTrie {
    /// Calls `visit` with the route list of every stored prefix of `path`,
    /// longest prefix first, and stops at the first `Some`.
    pub(crate) fn find_map<R>(
        &self,
        path: &[u8],
        visit: &mut dyn FnMut(&[u32]) -> Option<R>,
    ) -> Option<R> {
        let mut deepest = NONE;
        let mut node = 0usize;
        let mut rest = path;
        while let Some(n) = self.nodes.get(node) {
            if n.routes_len > 0 {
                deepest = node as u32;
            }
            let Some(&b) = rest.first() else { break };
            let lo = n.first_child as usize;
            let firsts = &self.first_bytes[lo..lo + n.child_count as usize];
            let Ok(pos) = firsts.binary_search(&b) else {
                break;
            };
            let child = lo + pos;
            let c = &self.nodes[child];
            let len = c.label_len as usize;
            // The first byte matched in the binary search; labels at
            // high-fan-out levels are often a single byte, so skip the compare.
            if len > 1 {
                let start = c.label_start as usize;
                if rest.len() < len || rest[1..len] != self.labels[start + 1..start + len] {
                    break;
                }
            }
            rest = &rest[len..];
            node = child;
        }
        let mut cur = deepest;
        while let Some(n) = self.nodes.get(cur as usize) {
            let start = n.routes_start as usize;
            if let Some(found) = visit(&self.routes[start..start + n.routes_len as usize]) {
                return Some(found);
            }
            cur = n.routed_ancestor;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every (route list) visited for `path`, in visit order.
    fn visits(t: &PrefixTrie, path: &str) -> Vec<Vec<u32>> {
        let mut seen = Vec::new();
        let _: Option<()> = t.find_map(path.as_bytes(), &mut |r| {
            seen.push(r.to_vec());
            None
        });
        seen
    }

    fn trie(prefixes: &[(&str, u32)]) -> PrefixTrie {
        let mut t = PrefixTrieBuilder::default();
        for (p, r) in prefixes {
            t.insert(p.as_bytes(), *r);
        }
        t.freeze()
    }

    #[test]
    fn longest_prefix_first_with_splits() {
        let t = trie(&[
            ("/blog/foo/", 1),
            ("/blog/foo/a/", 2),
            ("/", 0),
            ("/blog/fox", 3),
        ]);
        assert_eq!(visits(&t, "/blog/foo/a/b"), vec![vec![2], vec![1], vec![0]]);
        assert_eq!(visits(&t, "/blog/foo/c"), vec![vec![1], vec![0]]);
        assert_eq!(visits(&t, "/blog/foxes"), vec![vec![3], vec![0]]);
        assert_eq!(visits(&t, "/blog/fo"), vec![vec![0]]);
        assert_eq!(visits(&t, "x"), Vec::<Vec<u32>>::new());
    }

    #[test]
    fn same_prefix_accumulates_in_insert_order() {
        let t = trie(&[("/a/", 5), ("/a/", 2), ("/ab", 7)]);
        assert_eq!(visits(&t, "/a/x"), vec![vec![5, 2]]);
        assert_eq!(visits(&t, "/abc"), vec![vec![7]]);
        assert_eq!(visits(&t, "/a"), Vec::<Vec<u32>>::new());
    }

    #[test]
    fn stops_at_first_hit() {
        let t = trie(&[("/a", 1), ("/a/b", 2)]);
        let hit = t.find_map(b"/a/b/c", &mut |r| r.first().copied());
        assert_eq!(hit, Some(2));
    }

    #[test]
    fn many_siblings_stay_sorted() {
        let mut b = PrefixTrieBuilder::default();
        for i in (0..300u32).rev() {
            b.insert(format!("/svc{i}/").as_bytes(), i);
        }
        let t = b.freeze();
        for i in 0..300u32 {
            assert_eq!(visits(&t, &format!("/svc{i}/x")), vec![vec![i]], "svc{i}");
        }
        assert!(visits(&t, "/svc300/x").is_empty());
    }
}
