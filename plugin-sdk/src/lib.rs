//! # sluice-plugin-sdk: write Sluice gateway plugins in Rust
//!
//! 1. Define a config type (`serde::Deserialize`); the gateway hands your plugin the JSON stored with the
//!    route, service or global rule, and the SDK parses it **once per config version**, not per request.
//! 2. Implement [`Plugin`] for a unit struct: override only the phases you need. Each phase gets the parsed
//!    config and reaches the request through the host modules ([`request`], [`response`], [`context`], ...).
//! 3. Put `#[sluice_plugin_sdk::export_plugin]` on the impl. It records which phases you overrode (the
//!    gateway never calls the others) and, on `wasm32`, emits the component exports.
//! 4. Build with `scripts/build-plugins.sh` (wasm32-unknown-unknown, then componentized) and upload the
//!    `.wasm` to `PUT /apisix/admin/wasm_plugins/<name>`.
//! 5. Unit-test on the native target with plain `cargo test`: [`testing::TestHost`] is an in-memory gateway.
//!
//! ```
//! use sluice_plugin_sdk::{export_plugin, request, Decision, Plugin};
//!
//! #[derive(serde::Deserialize)]
//! struct Config { name: String, value: String }
//!
//! struct AddHeader;
//!
//! #[export_plugin]
//! impl Plugin for AddHeader {
//!     type Config = Config;
//!     fn access(cfg: &Config) -> Decision {
//!         let _ = request::set_header(&cfg.name, &cfg.value);
//!         Decision::Continue
//!     }
//! }
//! # fn main() {
//! # use sluice_plugin_sdk::testing::TestHost;
//! # let host = TestHost::new();
//! # let cfg = host.configure::<AddHeader>(r#"{"name":"x-a","value":"1"}"#).unwrap();
//! # assert_eq!(host.access::<AddHeader>(&cfg), Decision::Continue);
//! # assert_eq!(host.request_header("x-a").as_deref(), Some("1"));
//! # }
//! ```
//!
//! Logger plugins push one entry per request to a host-side [`log_sink::Sink`] (batched, retried delivery
//! to an HTTP endpoint or a file in the operator's log directory, never on the request path);
//! [`log_sink::apisix_entry`] builds APISIX's log entry from [`response::completion`] and the request.
//!
//! Why one trait with default phases and typed config: it mirrors the WIT world one-to-one (a phase is a
//! method, `configure` is serde), so a plugin is as short as its logic, and the phase return types encode
//! what each phase may do (`body_filter` and `log` cannot answer the request).
#![warn(missing_docs)]

pub use sluice_plugin_sdk_macros::export_plugin;

mod host;
mod types;

pub use host::{
    cache, clock, consumers, context, counters, http, kv, log, metrics, random, request, response,
    shared,
};
pub use types::*;

pub mod log_sink;
pub mod vars;

/// APISIX's log entry format and the log-sink rules, shared with the gateway's access log.
pub use sluice_log;

#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

#[cfg(target_arch = "wasm32")]
mod guest;

/// A Sluice plugin. Override the phases you need; the defaults do nothing and are never called by the gateway.
///
/// Phase order per request: `rewrite` → `access` → (upstream) → `header_filter` → `body_filter` (per chunk)
/// → `log`. `Decision::Respond` from `rewrite`/`access` skips the upstream; response phases and `log` still run.
pub trait Plugin: Sized + 'static {
    /// The plugin's configuration, deserialized from the JSON stored with the route/service/global rule.
    /// Unknown fields: add `#[serde(deny_unknown_fields)]` to refuse them.
    type Config: serde::de::DeserializeOwned + 'static;

    /// Plugin name reported to the gateway; empty means the crate name.
    const NAME: &'static str = "";
    /// Priority: higher runs first within a phase (APISIX convention).
    const PRIORITY: i32 = 0;
    /// Auth plugins: the field of a consumer's config for this plugin that identifies the credential
    /// (`Some("key")` for key-auth, `Some("username")` for basic-auth). The gateway indexes consumers by it,
    /// which makes [`consumers::lookup`] one hash lookup and lets it refuse two consumers with one credential.
    const CONSUMER_CREDENTIAL: Option<&'static str> = None;

    /// Checks a parsed config beyond what serde checks. The error goes to the admin as is.
    fn validate(_config: &Self::Config) -> Result<(), String> {
        Ok(())
    }

    /// Checks this plugin's config inside a consumer object (`consumers[].plugins.<name>`) on consumer
    /// writes; the error goes to the admin as is. The default validates it like a route config, which is
    /// right for a non-auth plugin on a consumer; auth plugins override it with their credential schema
    /// (e.g. key-auth requires `key`).
    fn validate_consumer(json: &str) -> Result<(), String> {
        parse_config::<Self>(json).map(|_| ())
    }

    /// Runs before access checks; may rewrite path, query and headers, or answer the request.
    fn rewrite(_config: &Self::Config) -> Decision {
        Decision::Continue
    }

    /// Authentication, authorization, rate limiting; may answer the request (the upstream is never contacted).
    fn access(_config: &Self::Config) -> Decision {
        Decision::Continue
    }

    /// The upstream's status and headers are known (see [`response`]); may change them or replace the response.
    fn header_filter(_config: &Self::Config) -> Decision {
        Decision::Continue
    }

    /// Called for each response body chunk ([`response::body_chunk`], [`response::set_body_chunk`]).
    fn body_filter(_config: &Self::Config) {}

    /// After the response was sent; everything is read-only.
    fn log(_config: &Self::Config) {}
}

/// Parses and validates a config the way the gateway's `validate`/`configure` calls do.
pub fn parse_config<P: Plugin>(json: &str) -> Result<P::Config, String> {
    let config: P::Config =
        serde_json::from_str(json).map_err(|e| format!("invalid config: {e}"))?;
    P::validate(&config)?;
    Ok(config)
}

#[doc(hidden)]
pub mod __private {
    use super::Phase;

    /// Filled in by `#[export_plugin]`.
    pub trait Exported {
        const CRATE_NAME: &'static str;
        const CRATE_VERSION: &'static str;
        const PHASES: &'static [Phase];
    }

    #[cfg(target_arch = "wasm32")]
    pub use crate::guest::bindings::export_world;
    #[cfg(target_arch = "wasm32")]
    pub use crate::guest::{bindings, Adapter};

    /// The name reported in `info`.
    pub fn plugin_name<P: super::Plugin + Exported>() -> &'static str {
        if P::NAME.is_empty() {
            P::CRATE_NAME
        } else {
            P::NAME
        }
    }
}
