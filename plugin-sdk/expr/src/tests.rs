use serde_json::json;

use super::*;

/// Variables used throughout: `arg_name=json`, `arg_age=18`, ...
const VARS: [(&str, &str); 8] = [
    ("arg_name", "json"),
    ("arg_age", "18"),
    ("arg_hex", "0x10"),
    ("arg_empty", ""),
    ("http_x_a", "Abc-def"),
    ("http_accept", "text/html, application/json,  */*"),
    ("remote_addr", "192.168.1.20"),
    ("http_x_ip", "::1"),
];

fn eval(expr: serde_json::Value) -> bool {
    Expr::compile(&expr)
        .unwrap_or_else(|e| panic!("{expr} should compile: {e}"))
        .eval(&VARS)
}

fn compile_err(expr: serde_json::Value) -> String {
    match Expr::compile(&expr) {
        Ok(_) => panic!("{expr} should not compile"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn empty_and_default_are_always_true() {
    assert!(eval(json!([])));
    assert!(Expr::default().eval(&NoVarsLocal));
    assert!(Expr::compile(&json!([]))
        .map(|e| e.is_always_true())
        .unwrap_or(false));
}

struct NoVarsLocal;
impl VarSource for NoVarsLocal {
    fn var(&self, _: &str) -> Option<std::borrow::Cow<'_, str>> {
        None
    }
}

#[test]
fn eq_and_ne_strings() {
    assert!(eval(json!([["arg_name", "==", "json"]])));
    assert!(!eval(json!([["arg_name", "==", "JSON"]])));
    assert!(!eval(json!([["arg_name", "~=", "json"]])));
    assert!(eval(json!([["arg_name", "~=", "xml"]])));
    assert!(eval(json!([["arg_empty", "==", ""]])));
}

#[test]
fn eq_and_ne_numbers_use_tonumber() {
    assert!(eval(json!([["arg_age", "==", 18]])));
    assert!(eval(json!([["arg_age", "==", 18.0]])));
    assert!(eval(json!([["arg_hex", "==", 16]])));
    assert!(!eval(json!([["arg_age", "==", 19]])));
    assert!(!eval(json!([["arg_name", "==", 0]]))); // non-numeric var
    assert!(eval(json!([["arg_age", "~=", 19]])));
    assert!(eval(json!([["arg_name", "~=", 0]]))); // non-numeric var: ~= passes
    assert!(!eval(json!([["arg_age", "~=", 18]])));
    // A string literal compares as a string, not a number.
    assert!(!eval(json!([["arg_age", "==", "18.0"]])));
}

#[test]
fn missing_var_is_nil() {
    assert!(!eval(json!([["arg_missing", "==", "x"]])));
    assert!(eval(json!([["arg_missing", "~=", "x"]])));
    assert!(!eval(json!([["arg_missing", "==", 1]])));
    assert!(eval(json!([["arg_missing", "~=", 1]])));
    assert!(eval(json!([["arg_missing", "==", null]])));
    assert!(!eval(json!([["arg_name", "==", null]])));
    assert!(eval(json!([["arg_name", "~=", null]])));
    for op in [">", ">=", "<", "<="] {
        assert!(!eval(json!([["arg_missing", op, 1]])), "{op}");
    }
    assert!(!eval(json!([["arg_missing", "~~", ".*"]])));
    assert!(!eval(json!([["arg_missing", "~*", ".*"]])));
    assert!(!eval(json!([["arg_missing", "in", ["a"]]])));
    assert!(!eval(json!([["arg_missing", "has", "a"]])));
    assert!(!eval(json!([["arg_missing", "ipmatch", "0.0.0.0/0"]])));
    // ... and only negated forms pass.
    assert!(eval(json!([["arg_missing", "!", "~~", ".*"]])));
    assert!(eval(json!([["arg_missing", "!", "in", ["a"]]])));
}

#[test]
fn numeric_comparisons() {
    assert!(eval(json!([["arg_age", ">", 17]])));
    assert!(!eval(json!([["arg_age", ">", 18]])));
    assert!(eval(json!([["arg_age", ">=", 18]])));
    assert!(!eval(json!([["arg_age", ">=", 18.5]])));
    assert!(eval(json!([["arg_age", "<", 18.5]])));
    assert!(!eval(json!([["arg_age", "<", 18]])));
    assert!(eval(json!([["arg_age", "<=", 18]])));
    assert!(!eval(json!([["arg_age", "<=", 17]])));
    // Numeric strings on the right are accepted (Lua tonumber).
    assert!(eval(json!([["arg_age", ">", "9"]])));
    // Numeric, not lexical: "18" > "9" is false as strings.
    assert!(!eval(json!([["arg_age", "<", 9]])));
    // Non-numeric var never compares.
    assert!(!eval(json!([["arg_name", ">", -1000]])));
    assert!(!eval(json!([["arg_name", "<", 1000]])));
}

#[test]
fn regex_match_and_case_insensitive() {
    assert!(eval(json!([["http_x_a", "~~", "^Abc"]])));
    assert!(eval(json!([["http_x_a", "~~", "c-d"]]))); // unanchored search
    assert!(!eval(json!([["http_x_a", "~~", "^abc"]])));
    assert!(eval(json!([["http_x_a", "~*", "^abc"]])));
    assert!(!eval(json!([["http_x_a", "~*", "^xyz"]])));
    assert!(!eval(json!([["http_x_a", "!", "~*", "^ABC"]])));
}

#[test]
fn in_operator() {
    assert!(eval(json!([["arg_name", "in", ["xml", "json"]]])));
    assert!(!eval(json!([["arg_name", "in", ["xml", "yaml"]]])));
    assert!(!eval(json!([["arg_name", "in", []]])));
    assert!(eval(json!([["arg_age", "in", [17, 18]]])));
    assert!(!eval(json!([["arg_age", "in", [17, 19]]])));
    assert!(eval(json!([["arg_name", "!", "in", ["xml"]]])));
    assert!(!eval(json!([["arg_name", "!", "in", ["json"]]])));
}

#[test]
fn has_reads_comma_list() {
    assert!(eval(json!([["http_accept", "has", "application/json"]])));
    assert!(eval(json!([["http_accept", "has", "*/*"]])));
    assert!(eval(json!([["arg_name", "has", "json"]]))); // single item
    assert!(!eval(json!([["http_accept", "has", "application"]])));
    assert!(!eval(json!([["http_accept", "has", "text/plain"]])));
    assert!(eval(json!([["arg_age", "has", 18]])));
}

#[test]
fn ipmatch_operator() {
    assert!(eval(json!([["remote_addr", "ipmatch", "192.168.0.0/16"]])));
    assert!(eval(json!([[
        "remote_addr",
        "ipmatch",
        ["10.0.0.1", "192.168.1.20"]
    ]])));
    assert!(!eval(json!([[
        "remote_addr",
        "ipmatch",
        ["10.0.0.0/8", "::1"]
    ]])));
    assert!(eval(json!([["http_x_ip", "ipmatch", ["::1"]]])));
    assert!(!eval(json!([["arg_name", "ipmatch", "0.0.0.0/0"]]))); // not an IP
    assert!(eval(json!([["remote_addr", "!", "ipmatch", "10.0.0.0/8"]])));
}

#[test]
fn negation_form() {
    assert!(!eval(json!([["arg_name", "!", "==", "json"]])));
    assert!(eval(json!([["arg_name", "!", "==", "xml"]])));
    assert!(eval(json!([["arg_name", "!", "~=", "json"]]))); // double negation
    assert!(eval(json!([["arg_age", "!", ">", 18]])));
}

#[test]
fn list_is_anded() {
    assert!(eval(json!([
        ["arg_name", "==", "json"],
        ["arg_age", ">", 10]
    ])));
    assert!(!eval(json!([
        ["arg_name", "==", "json"],
        ["arg_age", ">", 20]
    ])));
    assert!(!eval(json!([
        ["arg_name", "==", "xml"],
        ["arg_age", ">", 10]
    ])));
}

#[test]
fn logical_combinators() {
    let t = json!(["arg_name", "==", "json"]);
    let f = json!(["arg_name", "==", "xml"]);
    assert!(eval(json!(["OR", f, t])));
    assert!(!eval(json!(["OR", f, f])));
    assert!(eval(json!(["AND", t, t])));
    assert!(!eval(json!(["AND", t, f])));
    assert!(eval(json!(["!AND", t, f])));
    assert!(!eval(json!(["!AND", t, t])));
    assert!(eval(json!(["!OR", f, f])));
    assert!(!eval(json!(["!OR", f, t])));
    // Case-insensitive combinator names, nesting, and nested AND-lists.
    assert!(eval(json!(["or", f, ["AND", t, ["!OR", f, f]]])));
    assert!(eval(json!([[t, t], ["OR", f, t]])));
    assert!(!eval(json!([[t, f]])));
}

#[test]
fn compat_two_element_and_case_insensitive_ops() {
    assert!(eval(json!([["arg_name", "json"]])));
    assert!(!eval(json!([["arg_name", "xml"]])));
    assert!(eval(json!([["arg_name", "IN", ["json"]]])));
    assert!(eval(json!([["remote_addr", "IPMATCH", "192.168.1.20"]])));
}

#[test]
fn error_messages_name_the_index() {
    assert_eq!(
        compile_err(json!([["arg_a", "==", "1"], ["arg_b", "=~", "x"]])),
        "vars[1]: unknown operator \"=~\""
    );
    let e = compile_err(json!([["arg_a", "==", "1"], ["arg_b", "~~", "(["]]));
    assert!(e.starts_with("vars[1]: invalid regex \"([\": "), "{e}");
    assert!(!e.contains('\n'), "single line: {e}");
    let e = compile_err(json!([
        "OR",
        ["arg_a", "==", "1"],
        ["AND", ["a", "==", "1"], ["b", "~*", "+"]]
    ]));
    assert!(e.starts_with("vars[2][2]: invalid regex \"+\""), "{e}");
    assert_eq!(
        compile_err(json!([["arg_a", "==", "1", "2", "3"]])),
        "vars[0]: expected [var, op, value] or [var, \"!\", op, value], got 5 elements"
    );
    assert_eq!(
        compile_err(json!([["arg_a", "x", "==", "1"]])),
        "vars[0]: a 4-element condition must be [var, \"!\", op, value], got \"x\" as the second element"
    );
    assert_eq!(
        compile_err(json!([["arg_a"]])),
        "vars[0]: expected [var, op, value] or [var, \"!\", op, value], got 1 elements"
    );
    assert_eq!(
        compile_err(json!([["arg_a", "in"]])),
        "vars[0]: operator \"in\" is missing its value"
    );
    assert_eq!(
        compile_err(json!([["arg_a", ">", "abc"]])),
        "vars[0]: operator \">\" expects a number, got \"abc\""
    );
    assert_eq!(
        compile_err(json!([["arg_a", "in", "abc"]])),
        "vars[0]: operator \"in\" expects an array of strings or numbers, got \"abc\""
    );
    assert_eq!(
        compile_err(json!([["arg_a", "==", ["a"]]])),
        "vars[0]: operator \"==\" expects a string, number or null, got [\"a\"]"
    );
    assert_eq!(
        compile_err(json!([[
            "remote_addr",
            "ipmatch",
            ["10.0.0.1", "10.0.0.0/99"]
        ]])),
        "vars[0]: ipmatch: invalid prefix length in \"10.0.0.0/99\" (0..=32)"
    );
    assert_eq!(
        compile_err(json!([[1, "==", "a"]])),
        "vars[0]: variable name must be a non-empty string, got 1"
    );
    assert_eq!(
        compile_err(json!([["a", 5, "a"]])),
        "vars[0]: operator must be a string, got 5"
    );
    assert_eq!(
        compile_err(json!(["OR", ["a", "==", "1"]])),
        "vars: logical operator \"OR\" needs at least two operands"
    );
    assert_eq!(
        compile_err(json!([["a", "==", "1"], "b"])),
        "vars[1]: expected an array (a condition or a nested rule)"
    );
    assert_eq!(compile_err(json!([[]])), "vars[0]: empty rule");
    assert!(compile_err(json!(["arg_a", "==", "1"]))
        .starts_with("vars: each condition must be wrapped"));
    assert!(compile_err(json!({"arg_a": 1})).starts_with("vars: must be an array"));
    let e = Expr::compile(&json!([["a", "=~", "1"]])).err();
    assert_eq!(e.as_ref().map(VarsError::path), Some("[0]"));
    assert_eq!(
        e.as_ref().map(VarsError::message),
        Some("unknown operator \"=~\"")
    );
}

#[test]
fn expr_is_send_sync_clone() {
    fn check<T: Send + Sync + Clone>() {}
    check::<Expr>();
}
