//! APISIX `vars` expressions (lua-resty-expr) over the current request's variables.
//!
//! This is the gateway router's own implementation (the `sluice-expr` crate), not a look-alike: a condition
//! such as `[["arg_debug", "==", "1"], ["remote_addr", "ipmatch", "10.0.0.0/8"]]` means exactly the same in
//! a plugin config (response-rewrite `vars`, proxy-cache `no_cache`, ...) as in a route's `vars`, and is
//! refused with the same message. Compile it when the config is parsed — regexes and CIDRs are compiled
//! then, never per request — most simply by typing the config field as [`ExprConfig`]:
//!
//! ```
//! use sluice_plugin_sdk::vars::{ExprConfig, RequestVars};
//! use sluice_plugin_sdk::{request, Decision, Plugin};
//!
//! #[derive(serde::Deserialize)]
//! struct Config { vars: Option<ExprConfig> }
//!
//! struct Tag;
//!
//! impl Plugin for Tag {
//!     type Config = Config;
//!     fn access(cfg: &Config) -> Decision {
//!         if cfg.vars.as_ref().is_none_or(|e| e.eval(&RequestVars)) {
//!             let _ = request::set_header("x-tagged", "1");
//!         }
//!         Decision::Continue
//!     }
//! }
//! # let host = sluice_plugin_sdk::testing::TestHost::new();
//! # let err = host.configure::<Tag>(r#"{"vars": [["arg_a", "=~", "1"]]}"#).err().unwrap();
//! # assert!(err.contains(r#"vars[0]: unknown operator "=~""#), "{err}");
//! ```

use std::borrow::Cow;
use std::ops::Deref;

pub use sluice_expr::{Expr, VarSource, VarsError};

/// The variables of the request being processed, fetched from the gateway one by one as the expression
/// asks for them (an `AND` that fails early never fetches the rest). A unit struct because the request is
/// implicit in a plugin call: pass `&RequestVars` to [`Expr::eval`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestVars;

impl VarSource for RequestVars {
    fn var(&self, name: &str) -> Option<Cow<'_, str>> {
        resolve(name).map(Cow::Owned)
    }
}

/// One variable by its APISIX name; the same as [`crate::request::var`], here so code that works with
/// expressions needs only this module.
pub fn resolve(name: &str) -> Option<String> {
    crate::request::var(name)
}

/// A compiled expression as a config field: deserializes from the JSON expression and fails the config parse
/// (so the admin API refuses the config) with [`VarsError`]'s message if it does not compile. Wrap it in
/// `Option` to make it optional; `null` then means "no condition". Derefs to [`Expr`].
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(try_from = "serde_json::Value")]
pub struct ExprConfig(Expr);

impl TryFrom<serde_json::Value> for ExprConfig {
    type Error = VarsError;

    fn try_from(value: serde_json::Value) -> Result<Self, VarsError> {
        Expr::compile(&value).map(Self)
    }
}

impl Deref for ExprConfig {
    type Target = Expr;

    fn deref(&self) -> &Expr {
        &self.0
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::testing::TestHost;
    use crate::{request, Decision, Plugin};

    /// Sets `x-matched` to whether `when` holds for the request, so tests see the evaluation the plugin saw.
    struct Probe;

    #[derive(serde::Deserialize)]
    struct Config {
        when: Option<ExprConfig>,
    }

    impl Plugin for Probe {
        type Config = Config;
        fn access(cfg: &Config) -> Decision {
            let hit = cfg.when.as_ref().is_none_or(|e| e.eval(&RequestVars));
            request::set_header("x-matched", if hit { "yes" } else { "no" })
                .expect("access may set headers");
            Decision::Continue
        }
    }

    fn matched(host: &TestHost, config: &str) -> String {
        let cfg = host.configure::<Probe>(config).expect("config compiles");
        assert_eq!(host.access::<Probe>(&cfg), Decision::Continue);
        host.request_header("x-matched")
            .expect("probe always sets it")
    }

    #[test]
    fn evaluates_against_the_current_request() {
        let config =
            r#"{"when": [["http_x_a", "==", "1"], ["uri", "~~", "^/api/"], ["arg_n", ">", 2]]}"#;
        let host = TestHost::new();
        host.set_request_header("x-a", "1")
            .set_path("/api/users?n=3");
        assert_eq!(matched(&host, config), "yes");

        let host = TestHost::new();
        host.set_request_header("x-a", "1")
            .set_path("/api/users?n=2");
        assert_eq!(matched(&host, config), "no");

        let host = TestHost::new();
        host.set_request_header("x-a", "1").set_path("/web?n=3");
        assert_eq!(matched(&host, config), "no");
    }

    #[test]
    fn reads_variables_the_test_host_defines() {
        let host = TestHost::new();
        host.set_var("upstream_status", "502");
        assert_eq!(
            matched(
                &host,
                r#"{"when": [["upstream_status", "in", [502, 503]]]}"#
            ),
            "yes"
        );
        assert_eq!(
            matched(
                &host,
                r#"{"when": [["remote_addr", "ipmatch", "127.0.0.0/8"]]}"#
            ),
            "yes"
        );
        assert_eq!(
            matched(&host, r#"{"when": [["arg_missing", "==", null]]}"#),
            "yes"
        );
    }

    #[test]
    fn absent_or_null_expression_means_no_condition() {
        let host = TestHost::new();
        assert_eq!(matched(&host, "{}"), "yes");
        assert_eq!(matched(&host, r#"{"when": null}"#), "yes");
        assert_eq!(matched(&host, r#"{"when": []}"#), "yes");
    }

    #[test]
    fn bad_expressions_fail_the_config_with_the_router_message() {
        let host = TestHost::new();
        for (config, message) in [
            (
                r#"{"when": [["arg_a", "=~", "1"]]}"#,
                r#"vars[0]: unknown operator "=~""#,
            ),
            (
                r#"{"when": [["arg_a", "~~", "("]]}"#,
                "vars[0]: invalid regex \"(\"",
            ),
            (
                r#"{"when": ["arg_a", "==", "1"]}"#,
                "vars: each condition must be wrapped",
            ),
        ] {
            let err = host
                .configure::<Probe>(config)
                .err()
                .expect("must not compile");
            assert!(err.contains(message), "{config}: {err}");
        }
    }

    #[test]
    fn resolve_is_request_var() {
        let host = TestHost::new();
        host.set_request_header("x-a", "v");
        // resolve() needs a running phase, like every host call.
        struct Resolve;
        impl Plugin for Resolve {
            type Config = Config;
            fn access(_: &Config) -> Decision {
                assert_eq!(resolve("http_x_a"), request::var("http_x_a"));
                assert_eq!(resolve("http_x_a").as_deref(), Some("v"));
                assert_eq!(resolve("http_x_missing"), None);
                Decision::Continue
            }
        }
        let cfg = host.configure::<Resolve>("{}").expect("empty config");
        assert_eq!(host.access::<Resolve>(&cfg), Decision::Continue);
    }
}
