//! `vars` expressions: a Rust port of lua-resty-expr (v1) as used by APISIX
//! routes, traffic-split rules and several plugins.
//!
//! # Why a separate crate
//!
//! The gateway's router matches route `vars` and `remote_addrs` with it, and
//! built-in plugins compiled to wasm32 (response-rewrite `vars`, proxy-cache
//! `no_cache`/`cache_bypass`, traffic rules) evaluate the very same dialect
//! inside the guest. One implementation means an expression that the admin
//! API accepts on a route means exactly the same thing in a plugin config,
//! with the same error messages. Hence the constraints: no I/O, no async
//! runtime, no dependency that needs an operating system, so it builds for
//! `wasm32-unknown-unknown`. Variables come in through the [`VarSource`]
//! trait: the gateway resolves them lazily from the live request, the plugin
//! SDK through the host's `request::var` import.
//!
//! An expression is JSON. The top level is a list of rules that must *all*
//! hold, or a logical form:
//!
//! ```json
//! [["arg_name", "==", "json"], ["http_x_a", "~~", "^a.*"]]
//! ["OR", ["arg_a", "==", "1"], ["AND", ["arg_b", ">", 2], ["arg_c", "!", "in", ["x", "y"]]]]
//! ```
//!
//! A rule is `[var, op, value]`, `[var, "!", op, value]` (negated) or, for
//! lua-resty-expr compatibility, `[var, value]` (meaning `==`). A rule whose
//! first element is itself a list is a nested AND-list. Logical forms are
//! `["AND"|"OR"|"!AND"|"!OR", rule, rule, ...]` with at least two operands;
//! `!AND` is "not all", `!OR` is "none". Operator and combinator names are
//! case-insensitive, as in lua-resty-expr.
//!
//! Operators (`v` = the variable's value, absent = lua `nil`):
//!
//! | op | value | true when |
//! |----|-------|-----------|
//! | `==` | string / number / null | string: `v` equals it; number: `tonumber(v)` equals it; null: `v` is absent |
//! | `~=` | same | exactly the negation of `==` (so an absent `v` passes unless the value is null) |
//! | `>` `>=` `<` `<=` | number (or numeric string) | `tonumber(v)` compares true; absent/non-numeric `v` is false |
//! | `~~` | regex | `v` present and the regex matches anywhere in it |
//! | `~*` | regex | same, case-insensitive |
//! | `in` | array of strings/numbers | `v` equals a string element, or `tonumber(v)` equals a number element |
//! | `has` | string | `v`, read as a comma-separated list (items trimmed), contains the value |
//! | `ipmatch` | IP/CIDR string or array | `v` parses as an IP inside one of the networks |
//!
//! Deliberate differences from lua-resty-expr, all of which turn configs
//! that could never match into build errors or into the evidently intended
//! meaning:
//! * Values of the wrong type (`">"` with `"abc"`, `"in"` with a string,
//!   `"=="` with an array, a bad regex or CIDR) are rejected at compile time
//!   instead of silently evaluating to false.
//! * `in` compares number elements numerically (Lua compared a string to a
//!   number with `==`, which is never true).
//! * `has`: nginx variables are strings, so a list-valued variable is read as
//!   a comma-separated list (`"a, b,c"` has `"b"`), the way multi-valued
//!   headers are joined.
//! * Regexes use Rust `regex` syntax (no look-around or back-references);
//!   they are compiled once, here, never per request.
//!
//! # Example
//!
//! Compile once when the config is loaded, evaluate per request:
//!
//! ```
//! use sluice_expr::Expr;
//! use serde_json::json;
//!
//! let expr = Expr::compile(&json!([["arg_v", ">=", 2], ["remote_addr", "ipmatch", "10.0.0.0/8"]]))
//!     .expect("valid expression");
//! assert!(expr.eval(&[("arg_v", "3"), ("remote_addr", "10.1.2.3")]));
//! assert!(!expr.eval(&[("arg_v", "1"), ("remote_addr", "10.1.2.3")]));
//!
//! let err = Expr::compile(&json!([["arg_v", "=~", "x"]])).unwrap_err();
//! assert_eq!(err.to_string(), r#"vars[0]: unknown operator "=~""#);
//! ```

#![warn(missing_docs)]

mod ip;
mod number;
#[cfg(test)]
mod tests;
mod var_source;

use regex::{Regex, RegexBuilder};
use serde_json::Value;

pub use ip::IpMatcher;
pub use var_source::{NoVars, VarSource};

use number::lua_tonumber;

/// A compile error, located by its JSON index path within the expression
/// (`vars[1]`, `vars[2][1]`) so the admin API can point at the culprit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("vars{path}: {message}")]
pub struct VarsError {
    path: String,
    message: String,
}

impl VarsError {
    fn new(path: &str, message: impl Into<String>) -> Self {
        Self {
            path: path.to_owned(),
            message: message.into(),
        }
    }

    /// Index path inside the expression, e.g. `[1]` or `[2][1]`; empty for
    /// the expression as a whole.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What is wrong, without the location.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// A compiled expression; immutable, cheap to evaluate, `Send + Sync`.
/// The default (and the compiled form of `[]`) is always true.
#[derive(Debug, Clone, Default)]
pub struct Expr {
    root: Option<Node>,
}

#[derive(Debug, Clone)]
enum Node {
    Logic { op: LogicOp, children: Vec<Node> },
    Cond(Cond),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LogicOp {
    And,
    Or,
    NotAnd,
    NotOr,
}

#[derive(Debug, Clone)]
struct Cond {
    var: Box<str>,
    /// Applied after `test`; `~=` and the `"!"` form both toggle it.
    negate: bool,
    test: Test,
}

#[derive(Debug, Clone)]
enum Test {
    Eq(Literal),
    Num(NumCmp, f64),
    Regex(Regex),
    In(Vec<Literal>),
    Has(Box<str>),
    IpMatch(IpMatcher),
}

#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Str(Box<str>),
    Num(f64),
    Nil,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NumCmp {
    Gt,
    Ge,
    Lt,
    Le,
}

const WRAP_HINT: &str =
    "each condition must be wrapped in its own array, e.g. [[\"arg_name\", \"==\", \"json\"]]";

impl Expr {
    /// Compiles an expression, validating every operator and value and
    /// compiling regexes and CIDRs, so evaluation can never fail.
    pub fn compile(v: &Value) -> Result<Expr, VarsError> {
        let Value::Array(items) = v else {
            return Err(VarsError::new("", format!("must be an array; {WRAP_HINT}")));
        };
        let Some(first) = items.first() else {
            return Ok(Expr::default());
        };
        // Same rule as lua-resty-expr: a bare top-level condition is an error.
        let wrapped = match first {
            Value::Array(_) => true,
            Value::String(s) => logic_op(s).is_some(),
            _ => false,
        };
        if !wrapped {
            return Err(VarsError::new("", WRAP_HINT));
        }
        Ok(Expr {
            root: Some(compile_rule(items, "")?),
        })
    }

    /// Evaluates against the request's variables.
    pub fn eval(&self, vars: &dyn VarSource) -> bool {
        self.root.as_ref().is_none_or(|n| n.eval(vars))
    }

    /// True for the empty expression, which matches every request.
    pub fn is_always_true(&self) -> bool {
        self.root.is_none()
    }
}

fn logic_op(s: &str) -> Option<LogicOp> {
    match s.to_ascii_uppercase().as_str() {
        "AND" => Some(LogicOp::And),
        "OR" => Some(LogicOp::Or),
        "!AND" => Some(LogicOp::NotAnd),
        "!OR" => Some(LogicOp::NotOr),
        _ => None,
    }
}

fn compile_rule(items: &[Value], path: &str) -> Result<Node, VarsError> {
    match items.first() {
        None => Err(VarsError::new(path, "empty rule")),
        Some(Value::Array(_)) => Ok(Node::Logic {
            op: LogicOp::And,
            children: compile_children(items.iter().enumerate(), path)?,
        }),
        Some(Value::String(s)) => match logic_op(s) {
            Some(op) => {
                if items.len() < 3 {
                    return Err(VarsError::new(
                        path,
                        format!("logical operator {s:?} needs at least two operands"),
                    ));
                }
                Ok(Node::Logic {
                    op,
                    children: compile_children(items.iter().enumerate().skip(1), path)?,
                })
            }
            None => compile_cond(items, path).map(Node::Cond),
        },
        Some(_) => compile_cond(items, path).map(Node::Cond),
    }
}

fn compile_children<'v>(
    items: impl Iterator<Item = (usize, &'v Value)>,
    path: &str,
) -> Result<Vec<Node>, VarsError> {
    items
        .map(|(i, v)| {
            let child = format!("{path}[{i}]");
            match v {
                Value::Array(inner) => compile_rule(inner, &child),
                _ => Err(VarsError::new(
                    &child,
                    "expected an array (a condition or a nested rule)",
                )),
            }
        })
        .collect()
}

fn compile_cond(items: &[Value], path: &str) -> Result<Cond, VarsError> {
    let err = |msg: String| VarsError::new(path, msg);
    let var = match &items[0] {
        Value::String(s) if !s.is_empty() => s.as_str(),
        other => {
            return Err(err(format!(
                "variable name must be a non-empty string, got {other}"
            )))
        }
    };
    let (negate, op, value) = match items {
        // lua-resty-expr compatibility: `[var, value]` means `==`.
        [_, value] => {
            if let Value::String(s) = value {
                if is_operator(s) {
                    return Err(err(format!("operator {s:?} is missing its value")));
                }
            }
            (false, "==".to_owned(), value)
        }
        [_, op, value] => (false, op_name(op, path)?, value),
        [_, not, op, value] => {
            if not.as_str() != Some("!") {
                return Err(err(format!(
                    "a 4-element condition must be [var, \"!\", op, value], got {not} as the second element"
                )));
            }
            (true, op_name(op, path)?, value)
        }
        _ => {
            return Err(err(format!(
                "expected [var, op, value] or [var, \"!\", op, value], got {} elements",
                items.len()
            )))
        }
    };
    let (flip, test) = compile_test(&op, value).map_err(err)?;
    Ok(Cond {
        var: var.into(),
        negate: negate != flip,
        test,
    })
}

const OPERATORS: [&str; 12] = [
    "==", "~=", ">", ">=", "<", "<=", "~~", "~*", "in", "has", "ipmatch", "!",
];

fn is_operator(s: &str) -> bool {
    OPERATORS.contains(&s.to_ascii_lowercase().as_str())
}

fn op_name(op: &Value, path: &str) -> Result<String, VarsError> {
    match op {
        Value::String(s) => Ok(s.to_ascii_lowercase()),
        other => Err(VarsError::new(
            path,
            format!("operator must be a string, got {other}"),
        )),
    }
}

/// Returns `(negate, test)`: `~=` is compiled as a negated `==`, which is
/// exactly lua-resty-expr's behaviour for every value type.
fn compile_test(op: &str, value: &Value) -> Result<(bool, Test), String> {
    let test = match op {
        "==" | "~=" => {
            let lit = literal(value, true).ok_or_else(|| {
                format!("operator {op:?} expects a string, number or null, got {value}")
            })?;
            return Ok((op == "~=", Test::Eq(lit)));
        }
        ">" | ">=" | "<" | "<=" => {
            let n = match value {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => lua_tonumber(s),
                _ => None,
            }
            .ok_or_else(|| format!("operator {op:?} expects a number, got {value}"))?;
            let cmp = match op {
                ">" => NumCmp::Gt,
                ">=" => NumCmp::Ge,
                "<" => NumCmp::Lt,
                _ => NumCmp::Le,
            };
            Test::Num(cmp, n)
        }
        "~~" | "~*" => {
            let Value::String(pattern) = value else {
                return Err(format!(
                    "operator {op:?} expects a regex string, got {value}"
                ));
            };
            let re = RegexBuilder::new(pattern)
                .case_insensitive(op == "~*")
                .build()
                .map_err(|e| format!("invalid regex {pattern:?}: {}", regex_error(&e)))?;
            Test::Regex(re)
        }
        "in" => {
            let bad =
                || format!("operator \"in\" expects an array of strings or numbers, got {value}");
            let Value::Array(list) = value else {
                return Err(bad());
            };
            let lits = list
                .iter()
                .map(|v| literal(v, false))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(bad)?;
            Test::In(lits)
        }
        "has" => match value {
            Value::String(s) => Test::Has(s.as_str().into()),
            Value::Number(n) => Test::Has(n.to_string().into()),
            _ => return Err(format!("operator \"has\" expects a string, got {value}")),
        },
        "ipmatch" => {
            let entries: Vec<&str> = match value {
                Value::String(s) => vec![s.as_str()],
                Value::Array(list) => list
                    .iter()
                    .map(Value::as_str)
                    .collect::<Option<_>>()
                    .ok_or_else(|| {
                        format!("operator \"ipmatch\" expects IP/CIDR strings, got {value}")
                    })?,
                _ => {
                    return Err(format!(
                        "operator \"ipmatch\" expects an IP/CIDR string or an array of them, got {value}"
                    ))
                }
            };
            Test::IpMatch(IpMatcher::parse(entries).map_err(|(_, e)| format!("ipmatch: {e}"))?)
        }
        other => return Err(format!("unknown operator {other:?}")),
    };
    Ok((false, test))
}

fn literal(v: &Value, allow_null: bool) -> Option<Literal> {
    match v {
        Value::String(s) => Some(Literal::Str(s.as_str().into())),
        Value::Number(n) => n.as_f64().map(Literal::Num),
        Value::Null if allow_null => Some(Literal::Nil),
        _ => None,
    }
}

/// `regex::Error` renders as a multi-line caret diagram; admin API errors
/// are single-line, so keep only the `error: ...` summary.
fn regex_error(e: &regex::Error) -> String {
    let full = e.to_string();
    full.lines()
        .rev()
        .find_map(|l| l.strip_prefix("error: "))
        .map_or_else(
            || full.split_whitespace().collect::<Vec<_>>().join(" "),
            str::to_owned,
        )
}

impl Node {
    fn eval(&self, vars: &dyn VarSource) -> bool {
        match self {
            Node::Cond(c) => c.eval(vars),
            Node::Logic { op, children } => {
                let mut each = children.iter();
                match op {
                    LogicOp::And => each.all(|c| c.eval(vars)),
                    LogicOp::Or => each.any(|c| c.eval(vars)),
                    LogicOp::NotAnd => !each.all(|c| c.eval(vars)),
                    LogicOp::NotOr => !each.any(|c| c.eval(vars)),
                }
            }
        }
    }
}

impl Cond {
    fn eval(&self, vars: &dyn VarSource) -> bool {
        let v = vars.var(&self.var);
        let v = v.as_deref();
        let hit = match &self.test {
            Test::Eq(lit) => lit.matches(v),
            Test::Num(cmp, r) => v.and_then(lua_tonumber).is_some_and(|l| match cmp {
                NumCmp::Gt => l > *r,
                NumCmp::Ge => l >= *r,
                NumCmp::Lt => l < *r,
                NumCmp::Le => l <= *r,
            }),
            Test::Regex(re) => v.is_some_and(|v| re.is_match(v)),
            Test::In(list) => v.is_some() && list.iter().any(|lit| lit.matches(v)),
            Test::Has(item) => v.is_some_and(|v| v.split(',').any(|p| p.trim() == &**item)),
            Test::IpMatch(m) => v.is_some_and(|v| m.matches_str(v)),
        };
        hit != self.negate
    }
}

impl Literal {
    fn matches(&self, v: Option<&str>) -> bool {
        match (self, v) {
            (Literal::Nil, v) => v.is_none(),
            (Literal::Str(s), Some(v)) => **s == *v,
            (Literal::Num(n), Some(v)) => lua_tonumber(v) == Some(*n),
            (_, None) => false,
        }
    }
}
