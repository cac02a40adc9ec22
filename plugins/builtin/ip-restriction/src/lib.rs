//! `ip-restriction`: lets only the clients of a `whitelist`, or all but those of a `blacklist`, reach the
//! upstream, with APISIX's fields, status and body (`403 {"message":"Your IP address is not allowed"}`).
//!
//! Runs in `access` at APISIX's priority 3000. Addresses and CIDRs (IPv4 and IPv6) are parsed by the same
//! matcher as a route's `remote_addrs` and the `ipmatch` vars operator, so one notation means one thing
//! everywhere; an IPv4 client seen on a dual-stack listener as `::ffff:a.b.c.d` matches IPv4 entries.

use serde::Deserialize;
use sluice_builtin_support::compiled::{Compile, Compiled};
use sluice_builtin_support::reply::{json_object, json_response};
use sluice_builtin_support::schema::{field, invalid, length_within, not_empty_array, within};
use sluice_expr::IpMatcher;
use sluice_plugin_sdk::{export_plugin, request, Decision, Plugin, Response};

/// The config as written; [`Rules::compile`] checks it and parses the address list once.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    whitelist: Option<Vec<String>>,
    blacklist: Option<Vec<String>>,
    #[serde(default = "default_message")]
    message: String,
    #[serde(default = "default_response_code")]
    response_code: i64,
}

fn default_message() -> String {
    "Your IP address is not allowed".to_string()
}

fn default_response_code() -> i64 {
    403
}

/// A parsed config: the rules compiled once, or the APISIX-style message `validate` returns.
pub type Config = Compiled<Rules>;

/// What `access` uses, compiled from [`Raw`].
pub struct Rules {
    list: List,
    /// Built once: every refused request gets the same answer.
    refusal: Response,
}

enum List {
    Allow(IpMatcher),
    Deny(IpMatcher),
}

fn parse_list(property: &str, entries: &[String]) -> Result<IpMatcher, String> {
    field(property, not_empty_array(entries))?;
    IpMatcher::parse(entries.iter().map(String::as_str)).map_err(|(index, _)| {
        let entry = entries.get(index).map_or("", String::as_str);
        invalid(property, format!("invalid ip address: {entry}"))
    })
}

impl Compile for Rules {
    type Raw = Raw;

    fn compile(raw: Raw) -> Result<Self, String> {
        let list = match (&raw.whitelist, &raw.blacklist) {
            (Some(allow), None) => List::Allow(parse_list("whitelist", allow)?),
            (None, Some(deny)) => List::Deny(parse_list("blacklist", deny)?),
            (Some(_), Some(_)) => {
                return Err(
                    "value should match only one schema, but matches both: \"whitelist\" and \"blacklist\" cannot be used together"
                        .to_string(),
                )
            }
            (None, None) => {
                return Err(
                    "value should match only one schema, but matches none: \"whitelist\" or \"blacklist\" is required"
                        .to_string(),
                )
            }
        };
        field("message", length_within(&raw.message, 1, Some(1024)))?;
        field(
            "response_code",
            within(raw.response_code, Some(403), Some(404)),
        )?;
        // Checked above: 403 or 404.
        let status = u16::try_from(raw.response_code).unwrap_or(403);
        // APISIX answers `core.response.exit(code, {message = ...})`: the JSON and a newline.
        let body = json_object("message", &raw.message) + "\n";
        Ok(Rules {
            list,
            refusal: json_response(status, body),
        })
    }
}

impl Rules {
    fn allows(&self, client: &str) -> bool {
        match &self.list {
            List::Allow(m) => m.matches_str(client),
            List::Deny(m) => !m.matches_str(client),
        }
    }
}

/// The plugin.
pub struct IpRestriction;

#[export_plugin]
impl Plugin for IpRestriction {
    type Config = Config;
    const NAME: &'static str = "ip-restriction";
    const PRIORITY: i32 = 3000;

    fn validate(config: &Config) -> Result<(), String> {
        config.validate()
    }

    fn access(config: &Config) -> Decision {
        // Unreachable with an invalid config (`configure` refuses what `validate` refuses); a restriction
        // that cannot be evaluated must not let traffic through.
        let Some(rules) = config.rules() else {
            return Decision::respond(500, "ip-restriction: invalid config");
        };
        if rules.allows(&request::client_addr().ip().to_string()) {
            Decision::Continue
        } else {
            Decision::Respond(rules.refusal.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use sluice_builtin_support::testing::{answer, configure, header, json_body, refused};
    use sluice_plugin_sdk::testing::TestHost;
    use sluice_plugin_sdk::Phase;
    use std::net::SocketAddr;

    /// The decision `config` gives a request from `client`.
    fn from(client: &str, config: &str) -> Decision {
        let host = TestHost::new();
        host.set_client_addr(SocketAddr::new(client.parse().expect("an IP"), 5555));
        host.access(&configure::<IpRestriction>(&host, config))
    }

    fn denial(decision: Decision) -> (u16, Value, Option<String>) {
        let resp = answer(decision);
        (resp.status, json_body(&resp), header(&resp, "content-type"))
    }

    #[test]
    fn runs_in_access_only_at_apisix_priority() {
        assert_eq!(TestHost::new().phases::<IpRestriction>(), &[Phase::Access]);
        assert_eq!(IpRestriction::PRIORITY, 3000);
    }

    #[test]
    fn whitelist_lets_listed_ipv4_addresses_and_cidrs_through() {
        let config = r#"{"whitelist": ["127.0.0.1", "10.1.0.0/16"]}"#;
        assert_eq!(from("127.0.0.1", config), Decision::Continue);
        assert_eq!(from("10.1.200.3", config), Decision::Continue);
        let (status, body, content_type) = denial(from("10.2.0.1", config));
        assert_eq!(status, 403);
        assert_eq!(
            body,
            serde_json::json!({"message": "Your IP address is not allowed"})
        );
        assert_eq!(content_type.as_deref(), Some("application/json"));
    }

    #[test]
    fn blacklist_refuses_listed_ipv6_addresses_and_cidrs() {
        let config = r#"{"blacklist": ["2001:db8::/32", "::1"]}"#;
        assert_eq!(denial(from("2001:db8:1::5", config)).0, 403);
        assert_eq!(denial(from("::1", config)).0, 403);
        assert_eq!(from("2001:db9::1", config), Decision::Continue);
        assert_eq!(from("192.0.2.1", config), Decision::Continue);
    }

    #[test]
    fn ipv4_mapped_clients_match_ipv4_entries() {
        let config = r#"{"blacklist": ["192.0.2.0/24"]}"#;
        assert_eq!(denial(from("::ffff:192.0.2.9", config)).0, 403);
    }

    #[test]
    fn message_and_response_code_override_the_answer() {
        let decision = from(
            "10.0.0.1",
            r#"{"blacklist": ["10.0.0.0/8"], "message": "Go \"away\"", "response_code": 404}"#,
        );
        let (status, body, _) = denial(decision);
        assert_eq!(status, 404);
        assert_eq!(body["message"], "Go \"away\"");
    }

    #[test]
    fn bad_configs_are_refused_with_apisix_messages() {
        for (config, message) in [
            ("{}", "\"whitelist\" or \"blacklist\" is required"),
            (
                r#"{"whitelist": ["1.1.1.1"], "blacklist": ["2.2.2.2"]}"#,
                "cannot be used together",
            ),
            (
                r#"{"whitelist": []}"#,
                r#"property "whitelist" validation failed: expect array to have at least 1 items"#,
            ),
            (
                r#"{"whitelist": ["10.0.0.1", "10.0.0.0/33"]}"#,
                r#"property "whitelist" validation failed: invalid ip address: 10.0.0.0/33"#,
            ),
            (
                r#"{"blacklist": ["fe80::/129"]}"#,
                r#"property "blacklist" validation failed: invalid ip address: fe80::/129"#,
            ),
            (
                r#"{"blacklist": ["not-an-ip"]}"#,
                "invalid ip address: not-an-ip",
            ),
            (
                r#"{"blacklist": ["::1"], "message": ""}"#,
                r#"property "message" validation failed: string too short, expected at least 1, got 0"#,
            ),
            (
                r#"{"blacklist": ["::1"], "response_code": 500}"#,
                r#"property "response_code" validation failed: expected 500 to be at most 404"#,
            ),
            (
                r#"{"blacklist": ["::1"], "response_code": 200}"#,
                "expected 200 to be at least 403",
            ),
            (r#"{"blacklist": "::1"}"#, "invalid type"),
            (
                r#"{"blacklist": ["::1"], "white_list": []}"#,
                "unknown field `white_list`",
            ),
        ] {
            let err = refused::<IpRestriction>(config);
            assert!(err.contains(message), "{config}: {err}");
        }
        let long = format!(
            r#"{{"blacklist": ["::1"], "message": "{}"}}"#,
            "m".repeat(1025)
        );
        assert!(refused::<IpRestriction>(&long)
            .contains("string too long, expected at most 1024, got 1025"));
    }
}
