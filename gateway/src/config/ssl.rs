//! `ssls`: certificates for the TLS listener, picked by SNI.
//!
//! Stored and shape-checked now; parsing the PEM into rustls keys (and refusing a cert that does not
//! match its key) belongs to the TLS listener, which owns rustls.

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

fn check_pem(field: &str, text: &str, label: &str) -> Result<(), ConfigError> {
    if text.contains("-----BEGIN") && text.contains(label) && text.contains("-----END") {
        Ok(())
    } else {
        Err(ConfigError::new(format!(
            "{field}: expected a PEM block containing {label:?}"
        )))
    }
}

impl Ssl {
    pub fn check(&self) -> Result<(), ConfigError> {
        check_pem("cert", &self.cert, "CERTIFICATE")?;
        check_pem("key", &self.key, "PRIVATE KEY")?;
        let certs = self.certs.as_deref().unwrap_or_default();
        let keys = self.keys.as_deref().unwrap_or_default();
        if certs.len() != keys.len() {
            return Err(ConfigError::new(
                "certs: `certs` and `keys` must have the same length",
            ));
        }
        for (i, (c, k)) in certs.iter().zip(keys).enumerate() {
            check_pem(&format!("certs[{i}]"), c, "CERTIFICATE")?;
            check_pem(&format!("keys[{i}]"), k, "PRIVATE KEY")?;
        }
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
        if let Some(client) = &self.client {
            check_pem("client.ca", &client.ca, "CERTIFICATE")?;
        }
        Ok(())
    }
}
