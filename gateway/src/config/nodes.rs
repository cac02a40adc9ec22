//! Upstream `nodes`: APISIX accepts a map `{"host:port": weight}` or a list of node objects.
//!
//! Parsed by hand from the raw JSON rather than with an untagged serde enum, because serde's untagged
//! error ("data did not match any variant") would not tell the user which node is wrong.

use super::common::ConfigError;
use serde_json::Value;

/// One upstream node after parsing, whichever form it came in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEntry {
    pub host: String,
    pub port: u16,
    pub weight: u32,
    /// Lower-priority nodes are used only when every higher one failed for this request.
    pub priority: i32,
}

impl NodeEntry {
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Splits `host:port`, `[v6]:port` or a bare host (port defaults by scheme).
fn split_host_port(s: &str, default_port: u16) -> Option<(String, u16)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        return Some((host.to_string(), port));
    }
    match s.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Some((host.to_string(), port.parse().ok()?)),
        Some(_) => None,
        None => Some((s.to_string(), default_port)),
    }
}

fn check_node_host(field: &str, host: &str) -> Result<(), ConfigError> {
    let ok = !host.is_empty()
        && (host.parse::<std::net::IpAddr>().is_ok()
            || host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(format!("{field}: invalid host {host:?}")))
    }
}

fn weight_of(field: &str, v: &Value) -> Result<u32, ConfigError> {
    v.as_u64()
        .and_then(|w| u32::try_from(w).ok())
        .filter(|w| *w <= 100_000)
        .ok_or_else(|| {
            ConfigError::new(format!(
                "{field}: weight must be an integer from 0 to 100000, got {v}"
            ))
        })
}

/// Parses `nodes` in either form into a list, checking every host, port and weight.
pub fn parse_nodes(v: &Value, default_port: u16) -> Result<Vec<NodeEntry>, ConfigError> {
    let mut out = Vec::new();
    match v {
        Value::Object(map) => {
            for (addr, weight) in map {
                let field = format!("nodes[{addr:?}]");
                let (host, port) = split_host_port(addr, default_port)
                    .ok_or_else(|| ConfigError::new(format!("{field}: expected \"host:port\"")))?;
                check_node_host(&field, &host)?;
                out.push(NodeEntry {
                    host,
                    port,
                    weight: weight_of(&field, weight)?,
                    priority: 0,
                });
            }
        }
        Value::Array(list) => {
            for (i, item) in list.iter().enumerate() {
                let field = format!("nodes[{i}]");
                let obj = item
                    .as_object()
                    .ok_or_else(|| ConfigError::new(format!("{field}: expected an object")))?;
                for key in obj.keys() {
                    if !matches!(
                        key.as_str(),
                        "host" | "port" | "weight" | "priority" | "metadata"
                    ) {
                        return Err(ConfigError::new(format!("{field}: unknown field `{key}`")));
                    }
                }
                let host = obj
                    .get("host")
                    .and_then(Value::as_str)
                    .ok_or_else(|| ConfigError::new(format!("{field}.host: required string")))?;
                check_node_host(&format!("{field}.host"), host)?;
                let port = match obj.get("port") {
                    None => default_port,
                    Some(p) => p
                        .as_u64()
                        .and_then(|p| u16::try_from(p).ok())
                        .filter(|p| *p > 0)
                        .ok_or_else(|| {
                            ConfigError::new(format!("{field}.port: must be 1 to 65535, got {p}"))
                        })?,
                };
                let weight = match obj.get("weight") {
                    Some(w) => weight_of(&format!("{field}.weight"), w)?,
                    None => return Err(ConfigError::new(format!("{field}.weight: required"))),
                };
                let priority = match obj.get("priority") {
                    None => 0,
                    Some(p) => p
                        .as_i64()
                        .and_then(|p| i32::try_from(p).ok())
                        .ok_or_else(|| {
                            ConfigError::new(format!("{field}.priority: must be an integer"))
                        })?,
                };
                out.push(NodeEntry {
                    host: host
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .to_string(),
                    port,
                    weight,
                    priority,
                });
            }
        }
        other => {
            return Err(ConfigError::new(format!(
            "nodes: expected an object {{\"host:port\": weight}} or a list of nodes, got {other}"
        )))
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn map_and_list_forms_agree() {
        let a = parse_nodes(&json!({"127.0.0.1:80": 2}), 80).unwrap();
        let b = parse_nodes(&json!([{"host": "127.0.0.1", "port": 80, "weight": 2}]), 80).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn bad_weight_names_the_node() {
        let err = parse_nodes(&json!({"127.0.0.1:80": -1}), 80).unwrap_err();
        assert!(err.0.contains("nodes[\"127.0.0.1:80\"]"), "{err}");
        let err = parse_nodes(&json!([{"host": "a", "weight": "x"}]), 80).unwrap_err();
        assert!(err.0.starts_with("nodes[0].weight"), "{err}");
    }

    #[test]
    fn ipv6_and_default_port() {
        let n = parse_nodes(&json!({"[::1]:8080": 1, "example.com": 1}), 80).unwrap();
        assert!(n.iter().any(|n| n.host == "::1" && n.port == 8080));
        assert!(n.iter().any(|n| n.host == "example.com" && n.port == 80));
        assert_eq!(n[0].authority(), "[::1]:8080");
    }
}
