//! What the built-in plugins (`plugins/builtin/*`) share, so that one behaviour of APISIX's has one
//! implementation here instead of a copy per plugin.
//!
//! Why a crate of its own: a plugin crate cannot depend on another plugin crate (both would carry
//! `#[export_plugin]`, and one component cannot export two plugins), and a plugin's behaviour must not depend
//! on which other plugin a helper happens to live in. This crate exports nothing to the gateway; each plugin
//! links the parts it uses into its own component (the rest is dropped at link time), and
//! `scripts/build-plugins.sh` skips it because it is not a `cdylib`.
//!
//! What belongs here: code that at least two built-in plugins need and that has one right behaviour for all
//! of them (an APISIX message format, an nginx decoding rule). What does not: a plugin's own policy, even
//! when two plugins look alike today.
//!
//! - [`schema`]: config checks worded like APISIX's JSON-schema errors.
//! - [`compiled`]: a config checked and compiled once at parse time, its error kept for `validate`.
//! - [`reply`]: JSON answers (`{"message": ...}`, `{"error_msg": ...}`).
//! - [`ngx`]: nginx/OpenResty reading rules the plugins mirror (`ngx.decode_base64`, query arguments).
//! - [`auth`]: `key-auth`, `basic-auth`, `jwt-auth`: the 401, secret comparison, consumer handling.
//! - [`limit`]: `limit-count`, `limit-req`, `limit-conn`: keys and rejection fields.
//! - [`store`]: where they count: `policy` and APISIX's `redis_*` fields, and the operations on either store.
//! - [`cas`]: the bounded compare-and-swap loop over `kv` (`limit-req`, `api-breaker`).
//! - [`logger`]: `http-logger`, `file-logger`: `log_format`, refused body switches, the lazily opened sink.
//! - [`template`], [`header_ops`]: `$var` templates and `headers` rules (`proxy-rewrite`,
//!   `response-rewrite`; templates also build `var_combination` limit keys).
//! - `testing` (feature `testing`, native only): helpers for the plugins' unit tests.

pub mod auth;
pub mod cas;
pub mod compiled;
pub mod header_ops;
pub mod limit;
pub mod logger;
pub mod ngx;
pub mod reply;
pub mod schema;
pub mod store;
pub mod template;

#[cfg(all(feature = "testing", not(target_arch = "wasm32")))]
pub mod testing;
