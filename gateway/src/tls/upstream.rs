//! TLS towards upstream nodes (`scheme: "https"`): the rustls client config of one upstream, built once with its
//! runtime.
//!
//! Server verification is on unless the upstream says `tls.verify: false` (APISIX's field; Sluice defaults it
//! to on because an unverified hop is an easy mistake to ship). Trust comes from the system roots, loaded once
//! per process through `rustls-native-certs`, which honours `SSL_CERT_FILE` / `SSL_CERT_DIR`: that is how a
//! deployment trusts a private CA for its upstreams, as APISIX's `ssl_trusted_certificate` does. A client
//! certificate (`tls.client_cert` + `tls.client_key`) turns on mTLS. ALPN offers only `http/1.1`, the protocol the
//! pool speaks.

use super::keys::{certified_key, provider, KeyError};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::sync::{Arc, OnceLock};

/// What an upstream's `tls` object asks for, already parsed.
#[derive(Debug, Clone, Default)]
pub struct UpstreamTlsSpec<'a> {
    pub verify: bool,
    pub client_cert: Option<&'a str>,
    pub client_key: Option<&'a str>,
}

/// The system trust store, loaded on first use (reading it costs milliseconds; do it once).
fn native_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    Arc::clone(ROOTS.get_or_init(|| {
        let loaded = rustls_native_certs::load_native_certs();
        for e in &loaded.errors {
            tracing::warn!(error = %e, "loading system CA certificates");
        }
        let mut roots = RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(loaded.certs);
        if roots.is_empty() {
            tracing::warn!(
                "no system CA certificates found: https upstreams with verification on will fail \
                 (set SSL_CERT_FILE, or tls.verify: false)"
            );
        }
        tracing::debug!(added, ignored, "system CA certificates loaded");
        Arc::new(roots)
    }))
}

/// Offers one fixed client certificate whatever the server asks for.
#[derive(Debug)]
struct FixedClientCert(Arc<CertifiedKey>);

impl ResolvesClientCert for FixedClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// `tls.verify: false`: any certificate is accepted, but the handshake signatures are still checked (so the
/// peer holds the key of the certificate it showed).
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Builds the client config for one upstream. Errors name the `tls.*` field at fault.
pub fn client_config(spec: &UpstreamTlsSpec<'_>) -> Result<Arc<ClientConfig>, KeyError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| KeyError::new("tls", e.to_string()))?;
    let builder = if spec.verify {
        builder.with_root_certificates(native_roots())
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider())))
    };
    let mut config = match (spec.client_cert, spec.client_key) {
        (Some(cert), Some(key)) => {
            let ck = certified_key("tls.client_cert", cert, "tls.client_key", key)?;
            builder.with_client_cert_resolver(Arc::new(FixedClientCert(Arc::new(ck))))
        }
        (None, None) => builder.with_no_client_auth(),
        (Some(_), None) => {
            return Err(KeyError::new(
                "tls.client_key",
                "required with tls.client_cert",
            ))
        }
        (None, Some(_)) => {
            return Err(KeyError::new(
                "tls.client_cert",
                "required with tls.client_key",
            ))
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
