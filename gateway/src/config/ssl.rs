//! `ssls`: certificates for the TLS listener, picked by SNI.
//!
//! A write is checked by compiling the object exactly as the HTTPS listener will ([`crate::tls::compile_ssl`]):
//! every certificate and key must parse and each key must match its certificate, so nothing stored can fail
//! later at handshake time.

use super::common::{check_host, opt_id, ConfigError, Labels};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SslClient {
    pub ca: String,
    pub depth: Option<u32>,
    pub skip_mtls_uri_regex: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ssl {
    #[serde(default, deserialize_with = "opt_id")]
    pub id: Option<String>,
    pub cert: String,
    pub key: String,
    pub certs: Option<Vec<String>>,
    pub keys: Option<Vec<String>>,
    pub sni: Option<String>,
    pub snis: Option<Vec<String>>,
    pub client: Option<SslClient>,
    pub labels: Option<Labels>,
    pub status: Option<u8>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub ssl_protocols: Option<Vec<String>>,
    pub create_time: Option<u64>,
    pub update_time: Option<u64>,
}

impl Ssl {
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.sni.is_some() && self.snis.is_some() {
            return Err(ConfigError::new(
                "sni: set either `sni` or `snis`, not both",
            ));
        }
        let snis: Vec<&String> = self.sni.iter().chain(self.snis.iter().flatten()).collect();
        if snis.is_empty() && self.kind.as_deref() != Some("client") {
            return Err(ConfigError::new(
                "snis: a server certificate needs `sni` or `snis`",
            ));
        }
        for (i, s) in snis.iter().enumerate() {
            check_host(&format!("snis[{i}]"), s)?;
        }
        if let Some(kind) = &self.kind {
            if kind != "server" && kind != "client" {
                return Err(ConfigError::new("type: must be \"server\" or \"client\""));
            }
        }
        // Certificates, keys, `client.ca` and `ssl_protocols`, checked by building the listener's config.
        crate::tls::compile_ssl(self).map_err(|e| ConfigError::new(e.to_string()))?;
        Ok(())
    }
}
