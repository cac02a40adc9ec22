//! `request-id`: gives every request an id in a header (`X-Request-Id` by default) that the upstream sees
//! and, with `include_in_response` (default), the client gets back — APISIX's fields and defaults.
//!
//! Phases as in APISIX (priority 12015, so the id exists before any other plugin runs): `rewrite` keeps a
//! non-empty id the client sent, or sets a new one; `header_filter` copies it to the response unless the
//! upstream already answered with that header. Ids use the host's secure random bytes (the guest has no
//! entropy source of its own). Algorithms: `uuid` (v4), `nanoid` (21 URL-safe characters), `range_id`
//! (`range_id.length` characters of `range_id.char_set`) and `ksuid` (27 base62 characters, time-ordered).

use serde::Deserialize;
use sluice_builtin_support::header_ops::valid_header_name;
use sluice_builtin_support::schema::{field, invalid, length_within, within};
use sluice_plugin_sdk::{
    clock, context, export_plugin, log, random, request, response, Decision, Plugin,
};

/// Prefix of the context key that carries the id from `rewrite` to `header_filter`.
const CONTEXT_PREFIX: &str = "request-id.";
const NANOID_ALPHABET: &[u8; 64] =
    b"_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// KSUID timestamps count seconds from 2014-05-13T16:53:20Z.
const KSUID_EPOCH: u64 = 1_400_000_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_header_name")]
    header_name: String,
    #[serde(default = "default_true")]
    include_in_response: bool,
    #[serde(default)]
    algorithm: Algorithm,
    #[serde(default)]
    range_id: RangeId,
}

fn default_header_name() -> String {
    "X-Request-Id".to_string()
}

fn default_true() -> bool {
    true
}

#[derive(Deserialize, Default, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Algorithm {
    #[default]
    Uuid,
    Nanoid,
    RangeId,
    Ksuid,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RangeId {
    #[serde(default = "default_range_length")]
    length: i64,
    #[serde(default = "default_char_set")]
    char_set: String,
}

impl Default for RangeId {
    fn default() -> Self {
        RangeId {
            length: default_range_length(),
            char_set: default_char_set(),
        }
    }
}

impl RangeId {
    /// Checks `length` and `char_set`; the caller names `range_id`.
    fn validate(&self) -> Result<(), String> {
        field("length", within(self.length, Some(6), None))?;
        // Generated ids go into a header: the symbols must be visible ASCII, and at most 256 distinct.
        field("char_set", length_within(&self.char_set, 6, Some(256)))?;
        if !self.char_set.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid(
                "char_set",
                "only visible ASCII characters may be used",
            ));
        }
        field("length", within(self.length, None, Some(1024)))
    }
}

fn default_range_length() -> i64 {
    16
}

fn default_char_set() -> String {
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789".to_string()
}

/// `len` symbols drawn uniformly from `alphabet` (1 to 256 symbols, which `validate` ensures). Bytes at or above the largest
/// multiple of the alphabet size are discarded, so no symbol is more likely than another.
fn random_symbols(alphabet: &[u8], len: usize) -> String {
    let size = alphabet.len().clamp(1, 256);
    let limit = 256 - 256 % size;
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for b in random::fill(len - out.len() + 8) {
            if usize::from(b) < limit && out.len() < len {
                out.push(char::from(alphabet[usize::from(b) % size]));
            }
        }
    }
    out
}

/// A 160-bit KSUID (4-byte big-endian timestamp, 16 random bytes) in 27 base62 digits.
fn ksuid() -> String {
    let seconds = (clock::now_unix_ms() / 1000).saturating_sub(KSUID_EPOCH);
    let mut value = [0u8; 20];
    value[..4].copy_from_slice(&u32::try_from(seconds).unwrap_or(u32::MAX).to_be_bytes());
    value[4..].copy_from_slice(&random::bytes::<16>());
    // Long division of the big-endian bytes by 62, least significant digit first.
    let mut digits = [b'0'; 27];
    for digit in digits.iter_mut().rev() {
        let mut remainder = 0u32;
        for byte in value.iter_mut() {
            let acc = (remainder << 8) | u32::from(*byte);
            *byte = (acc / 62) as u8;
            remainder = acc % 62;
        }
        *digit = BASE62[remainder as usize];
    }
    String::from_utf8_lossy(&digits).into_owned()
}

impl Config {
    fn new_id(&self) -> String {
        match self.algorithm {
            Algorithm::Uuid => uuid::Builder::from_random_bytes(random::bytes::<16>())
                .into_uuid()
                .hyphenated()
                .to_string(),
            Algorithm::Nanoid => random_symbols(NANOID_ALPHABET, 21),
            Algorithm::RangeId => random_symbols(
                self.range_id.char_set.as_bytes(),
                usize::try_from(self.range_id.length).unwrap_or(0),
            ),
            Algorithm::Ksuid => ksuid(),
        }
    }

    fn context_key(&self) -> String {
        format!("{CONTEXT_PREFIX}{}", self.header_name.to_ascii_lowercase())
    }
}

/// The plugin.
pub struct RequestId;

#[export_plugin]
impl Plugin for RequestId {
    type Config = Config;
    const NAME: &'static str = "request-id";
    const PRIORITY: i32 = 12015;

    fn validate(config: &Config) -> Result<(), String> {
        if !valid_header_name(&config.header_name) {
            return Err(invalid(
                "header_name",
                format!("{:?} is not a valid header name", config.header_name),
            ));
        }
        field("range_id", config.range_id.validate())
    }

    fn rewrite(config: &Config) -> Decision {
        let id = match request::header(&config.header_name) {
            Some(sent) if !sent.is_empty() => sent,
            _ => {
                let id = config.new_id();
                if let Err(e) = request::set_header(&config.header_name, &id) {
                    log::warn(&format!("request id not set: {e}"));
                }
                id
            }
        };
        if config.include_in_response {
            context::set(&config.context_key(), &id);
        }
        Decision::Continue
    }

    fn header_filter(config: &Config) -> Decision {
        if !config.include_in_response {
            return Decision::Continue;
        }
        let answered = response::header(&config.header_name).is_some_and(|v| !v.is_empty());
        if !answered {
            if let Some(id) = context::get(&config.context_key()) {
                if let Err(e) = response::set_header(&config.header_name, &id) {
                    log::warn(&format!("request id not returned: {e}"));
                }
            }
        }
        Decision::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_builtin_support::testing::{configure, refused};
    use sluice_plugin_sdk::testing::TestHost;
    use sluice_plugin_sdk::Phase;
    use std::collections::HashSet;

    /// Runs a request through both phases; returns the id the upstream saw and the one the client got.
    fn exchange(host: &TestHost, config: &str, header: &str) -> (Option<String>, Option<String>) {
        let cfg = configure::<RequestId>(host, config);
        assert_eq!(host.rewrite(&cfg), Decision::Continue);
        let upstream = host.request_header(header);
        assert_eq!(host.header_filter(&cfg), Decision::Continue);
        (upstream, host.response_header(header))
    }

    fn ids(config: &str, n: usize) -> Vec<String> {
        let host = TestHost::new();
        (0..n)
            .map(|_| {
                host.next_request();
                exchange(&host, config, "x-request-id").0.expect("an id")
            })
            .collect()
    }

    #[test]
    fn phases_and_priority_are_apisix_ones() {
        let phases = TestHost::new().phases::<RequestId>();
        assert_eq!(phases, &[Phase::Rewrite, Phase::HeaderFilter]);
        assert_eq!(RequestId::PRIORITY, 12015);
    }

    #[test]
    fn a_new_uuid_goes_upstream_and_back_to_the_client() {
        let (upstream, client) = exchange(&TestHost::new(), "{}", "x-request-id");
        let id = upstream.expect("upstream sees an id");
        assert_eq!(client.as_deref(), Some(id.as_str()));
        let parsed = uuid::Uuid::parse_str(&id).expect("a uuid");
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(id.len(), 36);
    }

    #[test]
    fn every_request_gets_a_different_id() {
        let all = ids("{}", 50);
        assert_eq!(all.iter().collect::<HashSet<_>>().len(), 50);
    }

    #[test]
    fn a_client_id_is_kept_but_an_empty_one_is_replaced() {
        let host = TestHost::new();
        host.set_request_header("x-request-id", "client-chosen");
        let (upstream, client) = exchange(&host, "{}", "x-request-id");
        assert_eq!(upstream.as_deref(), Some("client-chosen"));
        assert_eq!(client.as_deref(), Some("client-chosen"));

        let host = TestHost::new();
        host.set_request_header("x-request-id", "");
        let (upstream, _) = exchange(&host, "{}", "x-request-id");
        assert_eq!(upstream.map(|id| id.len()), Some(36));
    }

    #[test]
    fn custom_header_name_and_no_response_copy() {
        let host = TestHost::new();
        let (upstream, client) = exchange(
            &host,
            r#"{"header_name": "X-Trace", "include_in_response": false}"#,
            "x-trace",
        );
        assert!(upstream.is_some());
        assert_eq!(client, None);
    }

    #[test]
    fn an_id_the_upstream_answered_with_is_not_overwritten() {
        let host = TestHost::new();
        host.set_response(200, &[("x-request-id", "from-upstream")]);
        let (_, client) = exchange(&host, "{}", "x-request-id");
        assert_eq!(client.as_deref(), Some("from-upstream"));
    }

    #[test]
    fn nanoid_range_id_and_ksuid_have_their_shapes() {
        for id in ids(r#"{"algorithm": "nanoid"}"#, 5) {
            assert_eq!(id.len(), 21);
            assert!(id.bytes().all(|b| NANOID_ALPHABET.contains(&b)), "{id}");
        }
        let range = ids(
            r#"{"algorithm": "range_id", "range_id": {"length": 10, "char_set": "abcdef"}}"#,
            5,
        );
        for id in &range {
            assert_eq!(id.len(), 10);
            assert!(id.bytes().all(|b| b"abcdef".contains(&b)), "{id}");
        }
        assert_eq!(range.iter().collect::<HashSet<_>>().len(), 5);
        for id in ids(r#"{"algorithm": "ksuid"}"#, 5) {
            assert_eq!(id.len(), 27);
            assert!(id.bytes().all(|b| BASE62.contains(&b)), "{id}");
        }
        assert_eq!(ids(r#"{"algorithm": "range_id"}"#, 1)[0].len(), 16);
    }

    #[test]
    fn ksuids_sort_by_time() {
        let host = TestHost::new();
        let config = r#"{"algorithm": "ksuid"}"#;
        let first = exchange(&host, config, "x-request-id").0.expect("id");
        host.next_request()
            .advance(std::time::Duration::from_secs(2));
        let second = exchange(&host, config, "x-request-id").0.expect("id");
        assert!(first < second, "{first} < {second}");
    }

    #[test]
    fn bad_configs_are_refused_with_apisix_messages() {
        for (config, message) in [
            (
                r#"{"algorithm": "snowflake"}"#,
                "unknown variant `snowflake`",
            ),
            (
                r#"{"header_name": ""}"#,
                r#"property "header_name" validation failed"#,
            ),
            (
                r#"{"header_name": "x id"}"#,
                r#""x id" is not a valid header name"#,
            ),
            (
                r#"{"range_id": {"length": 5}}"#,
                r#"property "range_id" validation failed: property "length" validation failed: expected 5 to be at least 6"#,
            ),
            (
                r#"{"range_id": {"char_set": "abc"}}"#,
                "string too short, expected at least 6, got 3",
            ),
            (
                r#"{"range_id": {"char_set": "abc déf"}}"#,
                "only visible ASCII",
            ),
            (
                r#"{"range_id": {"length": 5000}}"#,
                "expected 5000 to be at most 1024",
            ),
            (
                &format!(r#"{{"range_id": {{"char_set": "{}"}}}}"#, "a".repeat(257)),
                "expected at most 256, got 257",
            ),
            (r#"{"include_in_response": "yes"}"#, "invalid type"),
            (r#"{"header": "x"}"#, "unknown field `header`"),
        ] {
            let err = refused::<RequestId>(config);
            assert!(err.contains(message), "{config}: {err}");
        }
    }
}
