//! APISIX `headers` rules (`add` / `remove` / `set`, or the older flat object), as proxy-rewrite applies
//! them to the upstream request and response-rewrite to the client response: one implementation of APISIX's
//! semantics (order, "a `set` that renders empty removes", the checks on names and values) for both.

use crate::schema::not_empty_array;
use crate::template::Template;
use serde_json::{Map, Value};
use sluice_plugin_sdk::{log, request, response, FieldError};

/// Where [`HeaderOps::apply`] writes: the host calls that edit one header map.
pub struct HeaderSink {
    /// Adds a value, keeping the existing ones.
    append: fn(&str, &str) -> Result<(), FieldError>,
    /// Replaces every value.
    set: fn(&str, &str) -> Result<(), FieldError>,
    /// Drops the header.
    remove: fn(&str) -> Result<bool, FieldError>,
}

impl HeaderSink {
    /// The request the upstream receives (proxy-rewrite).
    pub const UPSTREAM_REQUEST: HeaderSink = HeaderSink {
        append: request::append_header,
        set: request::set_header,
        remove: request::remove_header,
    };
    /// The response the client receives (response-rewrite).
    pub const CLIENT_RESPONSE: HeaderSink = HeaderSink {
        append: response::append_header,
        set: response::set_header,
        remove: response::remove_header,
    };
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
        let map = non_empty_object(headers)?;
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
    pub fn apply(&self, sink: &HeaderSink, mut lookup: impl FnMut(&str) -> Option<String>) {
        for (name, values) in &self.add {
            for value in values {
                report(name, (sink.append)(name, &value.render(&mut lookup)));
            }
        }
        for name in &self.remove {
            report(name, (sink.remove)(name).map(|_| ()));
        }
        for (name, values) in &self.set {
            let mut rendered = values.iter().map(|v| v.render(&mut lookup));
            match rendered.next() {
                Some(first) if !first.is_empty() => {
                    report(name, (sink.set)(name, &first));
                    for more in rendered {
                        report(name, (sink.append)(name, &more));
                    }
                }
                _ => report(name, (sink.remove)(name).map(|_| ())),
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

/// `v` as a JSON object with at least one property (`type: object`, `minProperties: 1`).
fn non_empty_object(v: &Value) -> Result<&Map<String, Value>, String> {
    let Value::Object(map) = v else {
        return Err("wrong type: expected object".to_string());
    };
    if map.is_empty() {
        return Err("expect object to have at least 1 properties".to_string());
    }
    Ok(map)
}

/// `v` as a JSON array with at least one item (`type: array`, `minItems: 1`).
pub fn non_empty_array(v: &Value) -> Result<&[Value], String> {
    let Value::Array(items) = v else {
        return Err("wrong type: expected array".to_string());
    };
    not_empty_array(items)?;
    Ok(items)
}

/// `{"Name": value}` where a value is a string, a number, or (APISIX 3.18+) an array of those, one header
/// line each.
pub fn parse_object(v: &Value) -> Result<Entries, String> {
    non_empty_object(v)?
        .iter()
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
    non_empty_array(v)?
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
