//! `gzip` and `brotli`: APISIX's response-compression plugins, with their field names and defaults.
//!
//! Served natively because compression is a transform of the whole response stream after every
//! `body_filter` (as nginx's gzip filter runs after Lua's body filters), on the proxy's own buffers; a Wasm
//! plugin would copy every chunk into and out of guest memory to do what a native encoder does in place.
//!
//! A response is compressed when the route configures an encoding the client accepts (`Accept-Encoding`,
//! q > 0; brotli preferred when both are configured and accepted), its `Content-Type` is in `types` (or
//! `types` is `"*"`), it is not already encoded, its known length is at least `min_length`, and neither the
//! status (1xx, 204, 304), the method (HEAD) nor `Cache-Control: no-transform` rule it out. The encoder
//! flushes after every upstream chunk, so streamed responses (server-sent events, long polls) still arrive
//! as they are produced.

use super::entry;
use crate::config::{ConfigError, Plugins};
use serde::Deserialize;

pub const GZIP: &str = "gzip";
pub const BROTLI: &str = "brotli";

/// Which content types a plugin compresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Types {
    Any,
    /// Lower-case media types without parameters.
    Listed(Vec<String>),
}

impl Types {
    fn from_conf(conf: Option<TypesConf>) -> Result<Self, ConfigError> {
        match conf {
            None => Ok(Types::Listed(vec!["text/html".into()])),
            Some(TypesConf::One(s)) if s == "*" => Ok(Types::Any),
            Some(TypesConf::One(s)) => Err(ConfigError::new(format!(
                "types: expected \"*\" or an array of media types, got {s:?}"
            ))),
            Some(TypesConf::List(list)) if list.is_empty() => {
                Err(ConfigError::new("types: expected at least 1 item"))
            }
            Some(TypesConf::List(list)) => Ok(Types::Listed(
                list.into_iter().map(|t| t.to_ascii_lowercase()).collect(),
            )),
        }
    }

    /// Whether a response with this `Content-Type` value qualifies.
    pub fn matches(&self, content_type: Option<&str>) -> bool {
        match self {
            Types::Any => true,
            Types::Listed(list) => content_type.is_some_and(|ct| {
                let media = ct.split(';').next().unwrap_or("").trim();
                list.iter().any(|t| t.eq_ignore_ascii_case(media))
            }),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum TypesConf {
    One(String),
    List(Vec<String>),
}

/// nginx's `gzip_buffers`: accepted for APISIX compatibility; the encoder sizes its own buffers.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(
    dead_code,
    reason = "accepted and checked for APISIX compatibility, not used"
)]
struct BuffersConf {
    number: Option<u32>,
    size: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GzipConf {
    types: Option<TypesConf>,
    min_length: Option<u64>,
    comp_level: Option<u32>,
    http_version: Option<f64>,
    #[allow(
        dead_code,
        reason = "accepted and checked for APISIX compatibility, not used"
    )]
    buffers: Option<BuffersConf>,
    vary: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BrotliConf {
    types: Option<TypesConf>,
    min_length: Option<u64>,
    comp_level: Option<u32>,
    mode: Option<u32>,
    lgwin: Option<u32>,
    lgblock: Option<u32>,
    http_version: Option<f64>,
    vary: Option<bool>,
}

/// One configured encoding.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoding {
    pub types: Types,
    pub min_length: u64,
    pub vary: bool,
    /// Only HTTP/1.0 clients are excluded with the default `http_version` 1.1.
    pub min_http_version: http::Version,
    pub params: Params,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Params {
    Gzip {
        level: u32,
    },
    Brotli {
        quality: u32,
        lgwin: u32,
        lgblock: u32,
        mode: u32,
    },
}

impl Params {
    /// The `Content-Encoding` token.
    pub fn token(&self) -> &'static str {
        match self {
            Params::Gzip { .. } => "gzip",
            Params::Brotli { .. } => "br",
        }
    }
}

/// A route's compression: what it may encode with, brotli first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Compression {
    pub encodings: Vec<Encoding>,
}

fn in_range(
    field: &str,
    v: Option<u32>,
    default: u32,
    lo: u32,
    hi: u32,
) -> Result<u32, ConfigError> {
    let v = v.unwrap_or(default);
    if (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(ConfigError::new(format!(
            "{field}: expected {v} to be between {lo} and {hi}"
        )))
    }
}

fn http_version(v: Option<f64>) -> Result<http::Version, ConfigError> {
    match v {
        None => Ok(http::Version::HTTP_11),
        Some(1.1) => Ok(http::Version::HTTP_11),
        Some(1.0) => Ok(http::Version::HTTP_10),
        Some(v) => Err(ConfigError::new(format!(
            "http_version: expected 1.1 or 1.0, got {v}"
        ))),
    }
}

fn min_length(v: Option<u64>) -> Result<u64, ConfigError> {
    match v.unwrap_or(20) {
        0 => Err(ConfigError::new("min_length: expected 0 to be at least 1")),
        n => Ok(n),
    }
}

fn gzip(plugins: &Plugins) -> Result<Option<Encoding>, ConfigError> {
    let Some(c) = entry::<GzipConf>(plugins, GZIP)? else {
        return Ok(None);
    };
    let at = |e: ConfigError| e.at(&format!("plugins.{GZIP}"));
    Ok(Some(Encoding {
        types: Types::from_conf(c.types).map_err(at)?,
        min_length: min_length(c.min_length).map_err(at)?,
        vary: c.vary.unwrap_or(false),
        min_http_version: http_version(c.http_version).map_err(at)?,
        params: Params::Gzip {
            level: in_range("comp_level", c.comp_level, 1, 1, 9).map_err(at)?,
        },
    }))
}

fn brotli(plugins: &Plugins) -> Result<Option<Encoding>, ConfigError> {
    let Some(c) = entry::<BrotliConf>(plugins, BROTLI)? else {
        return Ok(None);
    };
    let at = |e: ConfigError| e.at(&format!("plugins.{BROTLI}"));
    let lgblock = c.lgblock.unwrap_or(0);
    if lgblock != 0 && !(16..=24).contains(&lgblock) {
        return Err(at(ConfigError::new(format!(
            "lgblock: expected 0 or a value between 16 and 24, got {lgblock}"
        ))));
    }
    Ok(Some(Encoding {
        types: Types::from_conf(c.types).map_err(at)?,
        min_length: min_length(c.min_length).map_err(at)?,
        vary: c.vary.unwrap_or(false),
        min_http_version: http_version(c.http_version).map_err(at)?,
        params: Params::Brotli {
            quality: in_range("comp_level", c.comp_level, 6, 0, 11).map_err(at)?,
            lgwin: in_range("lgwin", c.lgwin, 19, 10, 24).map_err(at)?,
            lgblock,
            mode: in_range("mode", c.mode, 0, 0, 2).map_err(at)?,
        },
    }))
}

/// The route's compression from its merged `plugins` map; `None` when it configures none.
pub fn compile(plugins: &Plugins) -> Result<Option<Compression>, ConfigError> {
    let encodings: Vec<Encoding> = [brotli(plugins)?, gzip(plugins)?]
        .into_iter()
        .flatten()
        .collect();
    Ok((!encodings.is_empty()).then_some(Compression { encodings }))
}

/// What the request allows: the `Accept-Encoding` q-value of each token, 0 where absent.
#[derive(Debug, Clone, Copy, Default)]
pub struct Accepted {
    gzip: bool,
    br: bool,
}

impl Accepted {
    pub fn parse(headers: &http::HeaderMap) -> Self {
        let mut out = Accepted::default();
        let mut star = None;
        let mut seen_gzip = false;
        let mut seen_br = false;
        for item in headers
            .get_all(http::header::ACCEPT_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
        {
            let mut parts = item.split(';');
            let token = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .filter_map(|q| q.trim().parse::<f32>().ok())
                .next()
                .unwrap_or(1.0);
            match token.as_str() {
                "gzip" | "x-gzip" => {
                    seen_gzip = true;
                    out.gzip = q > 0.0;
                }
                "br" => {
                    seen_br = true;
                    out.br = q > 0.0;
                }
                "*" => star = Some(q > 0.0),
                _ => {}
            }
        }
        if let Some(any) = star {
            out.gzip |= !seen_gzip && any;
            out.br |= !seen_br && any;
        }
        out
    }
}

impl Compression {
    /// The encoding to use for a request that accepts `accepted` over HTTP `version`, if any.
    pub fn choose(&self, accepted: Accepted, version: http::Version) -> Option<&Encoding> {
        self.encodings.iter().find(|e| {
            version >= e.min_http_version
                && match e.params {
                    Params::Gzip { .. } => accepted.gzip,
                    Params::Brotli { .. } => accepted.br,
                }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plugins(v: serde_json::Value) -> Plugins {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn defaults_follow_apisix() {
        let c = compile(&plugins(json!({"gzip": {}}))).unwrap().unwrap();
        let e = &c.encodings[0];
        assert_eq!(e.types, Types::Listed(vec!["text/html".into()]));
        assert_eq!((e.min_length, e.vary), (20, false));
        assert_eq!(e.params, Params::Gzip { level: 1 });
        assert!(compile(&plugins(json!({}))).unwrap().is_none());
    }

    #[test]
    fn bad_fields_are_named() {
        for (conf, needle) in [
            (
                json!({"gzip": {"comp_level": 10}}),
                "plugins.gzip: comp_level",
            ),
            (
                json!({"gzip": {"types": "text/html"}}),
                "plugins.gzip: types",
            ),
            (
                json!({"gzip": {"min_length": 0}}),
                "plugins.gzip: min_length",
            ),
            (json!({"brotli": {"lgwin": 30}}), "plugins.brotli: lgwin"),
            (
                json!({"gzip": {"level": 3}}),
                "plugins.gzip: level: unknown field `level`",
            ),
        ] {
            let err = compile(&plugins(conf.clone())).unwrap_err().0;
            assert!(err.contains(needle), "{conf} -> {err}");
        }
    }

    #[test]
    fn accept_encoding_q_values_and_star() {
        let h = |v: &str| {
            let mut m = http::HeaderMap::new();
            m.insert(http::header::ACCEPT_ENCODING, v.parse().unwrap());
            Accepted::parse(&m)
        };
        let a = h("gzip, deflate, br;q=0.5");
        assert!(a.gzip && a.br);
        let a = h("gzip;q=0, br");
        assert!(!a.gzip && a.br);
        let a = h("*;q=0.1, gzip;q=0");
        assert!(!a.gzip && a.br);
        let a = h("identity");
        assert!(!a.gzip && !a.br);
    }

    #[test]
    fn brotli_is_preferred_when_both_fit() {
        let c = compile(&plugins(json!({"gzip": {}, "brotli": {}})))
            .unwrap()
            .unwrap();
        let both = Accepted {
            gzip: true,
            br: true,
        };
        let gzip_only = Accepted {
            gzip: true,
            br: false,
        };
        let v = http::Version::HTTP_11;
        assert_eq!(c.choose(both, v).unwrap().params.token(), "br");
        assert_eq!(c.choose(gzip_only, v).unwrap().params.token(), "gzip");
        assert!(c.choose(both, http::Version::HTTP_10).is_none());
    }
}
