//! APISIX's `$var` templates (`core.utils.resolve_var`): header values and uris in `proxy-rewrite` and
//! `response-rewrite`, and the `var_combination` keys of the limiting plugins. One parser, so a template
//! means the same thing in every plugin that takes one.

/// A string with APISIX variables (a header value, a uri, a limit key): `$name` or `${name}` (`name` = `[A-Za-z0-9_]+`), not
/// preceded by a backslash, is replaced by the variable's value, or by nothing when the variable is absent.
/// This is `core.utils.resolve_var`: its regex `(?<!\\)\$(\{(\w+)\}|(\w+))` leaves an escaped `\$name` as
/// typed (backslash included), and so does this.
///
/// Parse it once with the config where the config holds the template, so a request only concatenates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Var(String),
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

impl Template {
    /// Splits `src` into literal text and variable references. Never fails: text that is not a
    /// reference (a lone `$`, `${}`, `${a`) stays literal, as in APISIX.
    pub fn parse(src: &str) -> Self {
        let bytes = src.as_bytes();
        let word_run = |from: usize| {
            from + bytes
                .get(from..)
                .unwrap_or_default()
                .iter()
                .take_while(|b| is_word(**b))
                .count()
        };
        let mut parts = Vec::new();
        let mut literal_from = 0;
        let mut i = 0;
        while i < bytes.len() {
            let escaped = i > 0 && bytes[i - 1] == b'\\';
            if bytes[i] != b'$' || escaped {
                i += 1;
                continue;
            }
            // (name start, name end, index after the reference)
            let reference = if bytes.get(i + 1) == Some(&b'{') {
                let end = word_run(i + 2);
                (end > i + 2 && bytes.get(end) == Some(&b'}')).then_some((i + 2, end, end + 1))
            } else {
                let end = word_run(i + 1);
                (end > i + 1).then_some((i + 1, end, end))
            };
            let Some((start, end, next)) = reference else {
                i += 1;
                continue;
            };
            // Every index here sits next to an ASCII byte (`$`, `{`, `}`, a word byte), so slicing is safe.
            if literal_from < i {
                parts.push(Part::Literal(src[literal_from..i].to_string()));
            }
            parts.push(Part::Var(src[start..end].to_string()));
            literal_from = next;
            i = next;
        }
        if literal_from < bytes.len() {
            parts.push(Part::Literal(src[literal_from..].to_string()));
        }
        Template { parts }
    }

    /// The text with every variable replaced by `lookup(name)` (nothing when it answers `None`).
    pub fn render(&self, mut lookup: impl FnMut(&str) -> Option<String>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Var(name) => {
                    if let Some(value) = lookup(name) {
                        out.push_str(&value);
                    }
                }
            }
        }
        out
    }

    /// The literal text, for checks that must hold whatever the variables resolve to.
    pub fn literals(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Literal(text) => Some(text.as_str()),
            Part::Var(_) => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(src: &str) -> String {
        Template::parse(src).render(|name| match name {
            "a" => Some("A".to_string()),
            "b_c" => Some("BC".to_string()),
            "host" => Some("example.com".to_string()),
            _ => None,
        })
    }

    #[test]
    fn templates_resolve_plain_and_braced_variables() {
        assert_eq!(render("x-$a-${a}-$host"), "x-A-A-example.com");
        assert_eq!(render("${a}b"), "Ab");
        assert_eq!(render("$a-${b_c}"), "A-BC");
        assert_eq!(render("$$a"), "$A", "the first `$` names nothing");
        assert_eq!(render("no vars"), "no vars");
    }

    #[test]
    fn absent_variables_render_empty_and_non_references_stay_literal() {
        assert_eq!(render("[$missing]"), "[]");
        assert_eq!(render("x$missing.y"), "x.y");
        assert_eq!(render("cost: 5$ ${} ${a"), "cost: 5$ ${} ${a");
        assert_eq!(render(r"\$a stays $"), r"\$a stays $");
        assert_eq!(render("€$a€"), "€A€");
    }
}
