//! PEM → rustls keys, shared by the admin validation of `ssls` / upstream `tls` and by the listener.
//!
//! One place parses, so a certificate the admin API accepted is exactly one the listener can load, and the
//! error names the field the user has to fix.

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls::InconsistentKeys;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::{Arc, OnceLock};

/// Why a certificate or key from the config cannot be used; `field` is the config field at fault.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct KeyError {
    pub field: String,
    pub reason: String,
}

impl KeyError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        KeyError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// The crypto provider every TLS config in the gateway uses (ring: no C toolchain beyond cc needed).
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    Arc::clone(PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())))
}

/// Every `CERTIFICATE` block in `pem`, in order (leaf first for a chain). At least one is required.
pub fn parse_certs(field: &str, pem: &str) -> Result<Vec<CertificateDer<'static>>, KeyError> {
    let mut out = Vec::new();
    for item in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert = item.map_err(|e| KeyError::new(field, format!("invalid PEM: {e}")))?;
        out.push(cert);
    }
    if out.is_empty() {
        return Err(KeyError::new(
            field,
            "expected at least one PEM \"CERTIFICATE\" block",
        ));
    }
    Ok(out)
}

/// The first private key (PKCS#8, PKCS#1 RSA or SEC1 EC) in `pem`.
pub fn parse_key(field: &str, pem: &str) -> Result<PrivateKeyDer<'static>, KeyError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| {
        KeyError::new(
            field,
            format!("expected a PEM private key (PKCS#8, RSA or EC): {e}"),
        )
    })
}

/// A certificate chain with its key, checked to belong together (same public key in the leaf).
pub fn certified_key(
    cert_field: &str,
    cert_pem: &str,
    key_field: &str,
    key_pem: &str,
) -> Result<CertifiedKey, KeyError> {
    let chain = parse_certs(cert_field, cert_pem)?;
    let key = parse_key(key_field, key_pem)?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| KeyError::new(key_field, format!("unsupported private key: {e}")))?;
    let ck = CertifiedKey::new(chain, signing);
    match ck.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(ck),
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => Err(KeyError::new(
            key_field,
            "does not match the certificate's public key",
        )),
        Err(e) => Err(KeyError::new(
            cert_field,
            format!("the certificate cannot be parsed: {e}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_named_by_field() {
        let e = parse_certs("cert", "hello").unwrap_err();
        assert_eq!(e.field, "cert");
        let e = parse_key("key", "not a key").unwrap_err();
        assert_eq!(e.field, "key");
        let bogus = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let e = certified_key("cert", cert, "key", bogus).unwrap_err();
        assert_eq!(e.field, "key");
    }
}
