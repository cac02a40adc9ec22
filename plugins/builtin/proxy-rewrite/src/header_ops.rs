//! APISIX `$var` templates and `headers` rules (`add` / `remove` / `set`, or the older flat object), as
//! proxy-rewrite applies them to the upstream request and response-rewrite to the client response.
//!
//! Why one source file compiled into both crates (response-rewrite includes it with `#[path]`) rather than a
//! library crate: every crate under `plugins/` is built into a plugin component by `scripts/build-plugins.sh`,
//! and two crates carrying `#[export_plugin]` cannot be linked into one component; a shared source file keeps
//! one implementation of APISIX's semantics without either.

use serde_json::Value;
use sluice_plugin_sdk::{log, FieldError};

/// A header value or uri with APISIX variables: `$name` or `${name}` (`name` = `[A-Za-z0-9_]+`), not
/// preceded by a backslash, is replaced by the variable's value, or by nothing when the variable is absent.
/// This is `core.utils.resolve_var`: its regex `(?<!\\)\$(\{(\w+)\}|(\w+))` leaves an escaped `\$name` as
/// typed (backslash included), and so does this.
///
/// Parsed once with the config, so a request only concatenates.
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
    fn literals(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Literal(text) => Some(text.as_str()),
            Part::Var(_) => None,
        })
    }
}

/// Where [`HeaderOps::apply`] writes: the upstream request (proxy-rewrite) or the response (response-rewrite).
pub trait HeaderSink {
    /// Adds a value, keeping the existing ones.
    fn append(name: &str, value: &str) -> Result<(), FieldError>;
    /// Replaces every value.
    fn set(name: &str, value: &str) -> Result<(), FieldError>;
    /// Drops the header.
    fn remove(name: &str) -> Result<bool, FieldError>;
}

/// Header name and the values to write, in config order.
pub type Entries = Vec<(String, Vec<Template>)>;

/// How a plugin reads its `headers.add` (proxy-rewrite: an object like `set`; response-rewrite: an array of
/// `"Name: value"` strings).
pub type AddParser = fn(&Value) -> Result<Entries, String>;

/// A parsed `headers` config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderOps {
    add: Entries,
    remove: Vec<String>,
    set: Entries,
}

impl HeaderOps {
    /// Reads `headers`: `{"add": ..., "remove": [...], "set": {...}}`, or the older flat object of headers to
    /// set. Like APISIX, it is the new form as soon as `add`, `set` or `remove` holds an object or array; the
    /// new form refuses other keys (APISIX ignores them, which hides typos such as `"sett"`). The error says
    /// what is wrong inside `headers`; the caller names the property.
    pub fn parse(headers: &Value, parse_add: AddParser) -> Result<Self, String> {
        let Value::Object(map) = headers else {
            return Err("wrong type: expected object".to_string());
        };
        if map.is_empty() {
            return Err("expect object to have at least 1 properties".to_string());
        }
        let new_form = ["add", "set", "remove"]
            .iter()
            .any(|k| map.get(*k).is_some_and(|v| v.is_object() || v.is_array()));
        if !new_form {
            return Ok(HeaderOps {
                set: parse_object(headers)?,
                ..HeaderOps::default()
            });
        }
        if let Some(other) = map
            .keys()
            .find(|k| !matches!(k.as_str(), "add" | "set" | "remove"))
        {
            return Err(format!(
                "unknown field \"{other}\": expected \"add\", \"remove\" or \"set\""
            ));
        }
        let in_field = |field: &'static str| move |e: String| format!("{field}: {e}");
        Ok(HeaderOps {
            add: map
                .get("add")
                .map(parse_add)
                .transpose()
                .map_err(in_field("add"))?
                .unwrap_or_default(),
            set: map
                .get("set")
                .map(parse_object)
                .transpose()
                .map_err(in_field("set"))?
                .unwrap_or_default(),
            remove: map
                .get("remove")
                .map(parse_names)
                .transpose()
                .map_err(in_field("remove"))?
                .unwrap_or_default(),
        })
    }

    /// Runs the rules in APISIX's documented order: `add`, then `remove`, then `set`. A `set` whose value
    /// renders empty removes the header (APISIX documents this for the flat form; one rule for both forms
    /// keeps them interchangeable). A value that a variable made unsendable (e.g. a CR) is skipped with a
    /// warning rather than failing the request.
    pub fn apply<S: HeaderSink>(&self, mut lookup: impl FnMut(&str) -> Option<String>) {
        for (name, values) in &self.add {
            for value in values {
                report(name, S::append(name, &value.render(&mut lookup)));
            }
        }
        for name in &self.remove {
            report(name, S::remove(name).map(|_| ()));
        }
        for (name, values) in &self.set {
            let mut rendered = values.iter().map(|v| v.render(&mut lookup));
            match rendered.next() {
                Some(first) if !first.is_empty() => {
                    report(name, S::set(name, &first));
                    for more in rendered {
                        report(name, S::append(name, &more));
                    }
                }
                _ => report(name, S::remove(name).map(|_| ())),
            }
        }
    }
}

fn report(name: &str, result: Result<(), FieldError>) {
    if let Err(e) = result {
        log::warn(&format!("header {name:?} not written: {e}"));
    }
}

/// An HTTP token (RFC 9110), which is what the gateway accepts as a header name.
pub fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Checks a header name and parses a value template whose literal text may not hold CR, LF or NUL.
pub fn header_entry(name: &str, value: &str) -> Result<(String, Template), String> {
    if !valid_header_name(name) {
        return Err(format!("invalid field character in header {name:?}"));
    }
    let template = Template::parse(value);
    if template.literals().any(|t| t.contains(['\r', '\n', '\0'])) {
        return Err(format!("invalid value character in header {name:?}"));
    }
    Ok((name.to_string(), template))
}

/// `{"Name": value}` where a value is a string, a number, or (APISIX 3.18+) an array of those, one header
/// line each.
pub fn parse_object(v: &Value) -> Result<Entries, String> {
    let Value::Object(map) = v else {
        return Err("wrong type: expected object".to_string());
    };
    if map.is_empty() {
        return Err("expect object to have at least 1 properties".to_string());
    }
    map.iter()
        .map(|(name, value)| {
            let scalars = match value {
                Value::Array(items) => items.iter().collect(),
                single => vec![single],
            };
            let values = scalars
                .into_iter()
                .map(|s| match s {
                    Value::String(text) => header_entry(name, text).map(|(_, t)| t),
                    Value::Number(n) => header_entry(name, &n.to_string()).map(|(_, t)| t),
                    _ => Err(format!("invalid type as header value of {name:?}")),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((name.clone(), values))
        })
        .collect()
}

/// `["Name", ...]`: the headers to remove.
fn parse_names(v: &Value) -> Result<Vec<String>, String> {
    let Value::Array(items) = v else {
        return Err("wrong type: expected array".to_string());
    };
    if items.is_empty() {
        return Err("expect array to have at least 1 items".to_string());
    }
    items
        .iter()
        .map(|item| match item {
            Value::String(name) if valid_header_name(name) => Ok(name.clone()),
            Value::String(name) => Err(format!("invalid field character in header {name:?}")),
            _ => Err("wrong type: expected string".to_string()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(src: &str) -> String {
        Template::parse(src).render(|name| match name {
            "a" => Some("A".to_string()),
            "host" => Some("example.com".to_string()),
            _ => None,
        })
    }

    #[test]
    fn templates_resolve_plain_and_braced_variables() {
        assert_eq!(render("x-$a-${a}-$host"), "x-A-A-example.com");
        assert_eq!(render("${a}b"), "Ab");
        assert_eq!(render("no vars"), "no vars");
    }

    #[test]
    fn absent_variables_render_empty_and_non_references_stay_literal() {
        assert_eq!(render("[$missing]"), "[]");
        assert_eq!(render("cost: 5$ ${} ${a"), "cost: 5$ ${} ${a");
        assert_eq!(render(r"\$a stays"), r"\$a stays");
        assert_eq!(render("€$a€"), "€A€");
    }

    #[test]
    fn flat_form_sets_and_new_form_keeps_its_three_lists() {
        let flat = HeaderOps::parse(&json!({"X-A": "1", "X-N": 2}), parse_object).unwrap();
        assert_eq!(flat.set.len(), 2);
        assert!(flat.add.is_empty() && flat.remove.is_empty());

        let new = HeaderOps::parse(
            &json!({"add": {"X-A": ["1", "2"]}, "set": {"X-B": "$a"}, "remove": ["X-C"]}),
            parse_object,
        )
        .unwrap();
        assert_eq!(new.add[0].1.len(), 2);
        assert_eq!(new.remove, vec!["X-C".to_string()]);
    }

    #[test]
    fn bad_headers_are_refused_with_the_place() {
        let err = |v: Value| HeaderOps::parse(&v, parse_object).unwrap_err();
        assert_eq!(
            err(json!({})),
            "expect object to have at least 1 properties"
        );
        assert_eq!(err(json!([])), "wrong type: expected object");
        assert_eq!(
            err(json!({"set": {"X": "1"}, "sett": {}})),
            "unknown field \"sett\": expected \"add\", \"remove\" or \"set\""
        );
        assert_eq!(
            err(json!({"set": {"bad name": "1"}})),
            "set: invalid field character in header \"bad name\""
        );
        assert_eq!(
            err(json!({"X-A": "a\r\nb"})),
            "invalid value character in header \"X-A\""
        );
        assert_eq!(
            err(json!({"X-A": true})),
            "invalid type as header value of \"X-A\""
        );
        assert_eq!(
            err(json!({"remove": []})),
            "remove: expect array to have at least 1 items"
        );
        assert_eq!(
            err(json!({"remove": [1]})),
            "remove: wrong type: expected string"
        );
    }
}
