//! Config checks worded like APISIX's JSON-schema errors (`property "count" validation failed: expected 0 to
//! be greater than 0`), so an operator moving from APISIX sees the messages their tooling already matches.
//!
//! The checks return only the reason; [`field`] and [`each_item`] add where it failed, the way the schema
//! validator nests them (`field("range_id", field("length", ...))` for a nested object). A plugin with a
//! rule of its own words it with [`invalid`], so every message has the same frame.

use std::fmt::Display;

/// `property "<name>" validation failed: <why>`.
pub fn invalid(name: &str, why: impl Display) -> String {
    format!("property \"{name}\" validation failed: {why}")
}

/// Frames a check's reason with [`invalid`].
pub fn field(name: &str, check: Result<(), String>) -> Result<(), String> {
    check.map_err(|why| invalid(name, why))
}

/// Applies `check` to every item: `property "<name>" validation failed: failed to validate item <n>: <why>`.
pub fn each_item<T>(
    name: &str,
    items: &[T],
    check: impl Fn(&T) -> Result<(), String>,
) -> Result<(), String> {
    for (i, item) in items.iter().enumerate() {
        field(
            name,
            check(item).map_err(|why| format!("failed to validate item {}: {why}", i + 1)),
        )?;
    }
    Ok(())
}

/// A field the schema lists as required.
pub fn required<T>(name: &str, value: Option<T>) -> Result<T, String> {
    value.ok_or_else(|| format!("property \"{name}\" is required"))
}

/// A required string with `minLength: 1`.
pub fn required_string(name: &str, value: Option<String>) -> Result<String, String> {
    let value = required(name, value)?;
    non_empty_string(name, &value)?;
    Ok(value)
}

/// A string property with `minLength: 1` (e.g. the name of a header to read: an empty one never matches).
pub fn non_empty_string(name: &str, value: &str) -> Result<(), String> {
    field(name, not_empty(Some(value)))
}

/// `exclusiveMinimum`.
pub fn greater_than<T: PartialOrd + Display>(value: T, min: T) -> Result<(), String> {
    if value > min {
        Ok(())
    } else {
        Err(format!("expected {value} to be greater than {min}"))
    }
}

/// `minimum` and `maximum` (either may be absent).
pub fn within<T: PartialOrd + Display>(
    value: T,
    min: Option<T>,
    max: Option<T>,
) -> Result<(), String> {
    if let Some(min) = min.filter(|min| value < *min) {
        return Err(format!("expected {value} to be at least {min}"));
    }
    if let Some(max) = max.filter(|max| value > *max) {
        return Err(format!("expected {value} to be at most {max}"));
    }
    Ok(())
}

/// `minLength` and `maxLength` (no maximum when absent), in characters as the validator counts them.
pub fn length_within(value: &str, min: usize, max: Option<usize>) -> Result<(), String> {
    let len = value.chars().count();
    if len < min {
        return Err(format!(
            "string too short, expected at least {min}, got {len}"
        ));
    }
    if let Some(max) = max.filter(|max| len > *max) {
        return Err(format!(
            "string too long, expected at most {max}, got {len}"
        ));
    }
    Ok(())
}

/// `minLength: 1` on an optional string (absent passes; [`required`] is its own rule).
pub fn not_empty(value: Option<&str>) -> Result<(), String> {
    match value {
        Some("") => Err("string too short, expected at least 1, got 0".to_string()),
        _ => Ok(()),
    }
}

/// `enum` of strings.
pub fn one_of(value: &str, allowed: &[&str]) -> Result<(), String> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err("matches none of the enum values".to_string())
    }
}

/// `minItems: 1`.
pub fn not_empty_array<T>(items: &[T]) -> Result<(), String> {
    if items.is_empty() {
        Err("expect array to have at least 1 items".to_string())
    } else {
        Ok(())
    }
}

/// `minItems: 1` and `uniqueItems: true` (1-based positions, as APISIX reports them).
pub fn unique_non_empty<T: PartialEq>(items: &[T]) -> Result<(), String> {
    not_empty_array(items)?;
    for (i, a) in items.iter().enumerate() {
        if let Some(j) = items[i + 1..].iter().position(|b| b == a) {
            return Err(format!(
                "expected unique items but items {} and {} are equal",
                i + 1,
                i + j + 2
            ));
        }
    }
    Ok(())
}

/// What is wrong with a pattern the `regex` crate refused: the one line of its error that says so (the
/// rest is a caret diagram, which does not fit a one-line admin message).
pub fn regex_error(e: &impl Display) -> String {
    let text = e.to_string();
    text.lines()
        .find_map(|l| l.strip_prefix("error: "))
        .unwrap_or(&text)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_match_apisix_wording() {
        assert_eq!(
            field("count", greater_than(0, 0)).unwrap_err(),
            r#"property "count" validation failed: expected 0 to be greater than 0"#
        );
        assert_eq!(
            field("rate", greater_than(-0.5, 0.0)).unwrap_err(),
            r#"property "rate" validation failed: expected -0.5 to be greater than 0"#
        );
        assert_eq!(
            field("rejected_code", within(600, Some(200), Some(599))).unwrap_err(),
            r#"property "rejected_code" validation failed: expected 600 to be at most 599"#
        );
        assert_eq!(
            field("burst", within(-1, Some(0), None)).unwrap_err(),
            r#"property "burst" validation failed: expected -1 to be at least 0"#
        );
        assert!(within(0, Some(0), None).is_ok());
        assert_eq!(
            required::<i64>("count", None).unwrap_err(),
            r#"property "count" is required"#
        );
        assert_eq!(
            field("policy", one_of("x", &["local"])).unwrap_err(),
            r#"property "policy" validation failed: matches none of the enum values"#
        );
        assert_eq!(
            field("rejected_msg", not_empty(Some(""))).unwrap_err(),
            r#"property "rejected_msg" validation failed: string too short, expected at least 1, got 0"#
        );
        assert!(not_empty(None).is_ok());
        assert_eq!(
            length_within("abc", 6, Some(256)).unwrap_err(),
            "string too short, expected at least 6, got 3"
        );
        assert_eq!(
            length_within("ééé", 1, Some(2)).unwrap_err(),
            "string too long, expected at most 2, got 3"
        );
        assert!(length_within("éé", 1, Some(2)).is_ok());
        assert_eq!(
            unique_non_empty::<u16>(&[]).unwrap_err(),
            "expect array to have at least 1 items"
        );
        assert_eq!(
            unique_non_empty(&["GET", "HEAD", "GET"]).unwrap_err(),
            "expected unique items but items 1 and 3 are equal"
        );
        assert_eq!(
            each_item("cache_http_status", &[200, 99], |s| within(
                *s,
                Some(200),
                None
            ))
            .unwrap_err(),
            r#"property "cache_http_status" validation failed: failed to validate item 2: expected 99 to be at least 200"#
        );
    }

    #[test]
    fn required_strings_use_apisix_wording() {
        assert_eq!(
            required_string("key", None).unwrap_err(),
            "property \"key\" is required"
        );
        assert_eq!(
            required_string("key", Some(String::new())).unwrap_err(),
            r#"property "key" validation failed: string too short, expected at least 1, got 0"#
        );
        assert_eq!(required_string("key", Some("k".into())).unwrap(), "k");
    }

    #[test]
    fn regex_errors_keep_the_line_that_says_what_is_wrong() {
        let diagram = "regex parse error:\n    (\n    ^\nerror: unclosed group";
        assert_eq!(regex_error(&diagram), "unclosed group");
        assert_eq!(regex_error(&"plain"), "plain");
    }
}
