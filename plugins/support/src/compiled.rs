//! A config that is checked and compiled once, when the gateway parses it (regexes, templates, address
//! lists, a prebuilt answer), so that a request only uses the result.
//!
//! Why the compile error is kept rather than returned from deserialization: serde would append its JSON
//! position (`at line 1 column 42`) to the message, and these messages are APISIX's, word for word. So
//! deserializing [`Compiled`] succeeds whenever the raw config has the right shape, and
//! [`Compiled::validate`] (called from `Plugin::validate`) hands the gateway the message as is. The
//! gateway never runs a config that `validate` refused, so phases read [`Compiled::rules`] and treat
//! `None` as unreachable.
//!
//! ```
//! use serde::Deserialize;
//! use sluice_builtin_support::compiled::{Compile, Compiled};
//! use sluice_plugin_sdk::{request, Decision, Plugin};
//!
//! #[derive(Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Raw {
//!     prefix: String,
//! }
//!
//! struct Rules {
//!     prefix: String,
//! }
//!
//! impl Compile for Rules {
//!     type Raw = Raw;
//!     fn compile(raw: Raw) -> Result<Self, String> {
//!         if !raw.prefix.starts_with('/') {
//!             return Err(r#"property "prefix" validation failed: must start with "/""#.to_string());
//!         }
//!         Ok(Rules { prefix: raw.prefix })
//!     }
//! }
//!
//! struct OnlyUnder;
//!
//! impl Plugin for OnlyUnder {
//!     type Config = Compiled<Rules>;
//!     fn validate(config: &Self::Config) -> Result<(), String> {
//!         config.validate()
//!     }
//!     fn access(config: &Self::Config) -> Decision {
//!         // Unreachable with an invalid config: the gateway refuses what `validate` refuses.
//!         let Some(rules) = config.rules() else {
//!             return Decision::Continue;
//!         };
//!         if request::path().starts_with(&rules.prefix) {
//!             Decision::Continue
//!         } else {
//!             Decision::respond(404, "")
//!         }
//!     }
//! }
//! # let host = sluice_plugin_sdk::testing::TestHost::new();
//! # let err = host.configure::<OnlyUnder>(r#"{"prefix": "api"}"#).err().unwrap();
//! # assert_eq!(err, r#"property "prefix" validation failed: must start with "/""#);
//! ```

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

/// What a config compiles to, from the config as written.
pub trait Compile: Sized {
    /// The config as written: serde checks its shape (field names, types).
    type Raw: DeserializeOwned;
    /// Checks the rest and builds what the phases use; the error goes to the admin as is.
    fn compile(raw: Self::Raw) -> Result<Self, String>;
}

/// A plugin config: the compiled rules, or the reason the config is refused.
#[derive(Debug)]
pub struct Compiled<R>(Result<R, String>);

impl<'de, R: Compile> Deserialize<'de> for Compiled<R> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        R::Raw::deserialize(deserializer).map(|raw| Compiled(R::compile(raw)))
    }
}

impl<R> Compiled<R> {
    /// For `Plugin::validate`: the compile error, unchanged.
    pub fn validate(&self) -> Result<(), String> {
        self.0.as_ref().map(|_| ()).map_err(Clone::clone)
    }

    /// The compiled rules; `None` only for a refused config, which the gateway never runs.
    pub fn rules(&self) -> Option<&R> {
        self.0.as_ref().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Raw {
        n: i64,
    }

    struct Positive(i64);

    impl Compile for Positive {
        type Raw = Raw;
        fn compile(raw: Raw) -> Result<Self, String> {
            if raw.n > 0 {
                Ok(Positive(raw.n))
            } else {
                Err(format!("{} is not positive", raw.n))
            }
        }
    }

    fn parse(json: &str) -> Result<Compiled<Positive>, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn compile_errors_are_kept_word_for_word_and_shape_errors_stay_serde_ones() {
        let ok = parse(r#"{"n": 3}"#).expect("shape is right");
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(ok.rules().map(|p| p.0), Some(3));

        let refused = parse(r#"{"n": -1}"#).expect("shape is right");
        assert_eq!(refused.validate(), Err("-1 is not positive".to_string()));
        assert!(refused.rules().is_none());

        let err = parse(r#"{"m": 1}"#).err().expect("unknown field");
        assert!(err.to_string().contains("unknown field `m`"), "{err}");
    }
}
