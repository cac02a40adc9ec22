//! The HTTPS listener's handshake: certificates from the `ssls` objects of the **current** snapshot, picked by
//! SNI.
//!
//! Why a per-object `ServerConfig` chosen from the ClientHello (rustls' `LazyConfigAcceptor`) rather than one
//! `ServerConfig` with a single resolver: client-certificate verification (`client.ca`) and `ssl_protocols` are
//! per `ssls` object, and rustls fixes both per `ServerConfig`. So the handshake reads the ClientHello first,
//! finds the object by SNI (exact name, then the most specific `*.` wildcard), and continues with that object's
//! config, whose [`KeyTypeResolver`] then picks among the object's certificates (`cert` + `certs`) the first one
//! whose key type (ECDSA/Ed25519 before RSA) the client's signature schemes allow.
//!
//! Hot swap: each handshake loads the live snapshot. The compiled [`CertStore`] is cached against the snapshot it
//! was built from; when the admin API installs a new snapshot, the next handshake rebuilds the store, reusing
//! every compiled object whose JSON did not change (PEM is parsed once per object version, never per
//! handshake). Connections already established keep the config they were built with, so a change never drops
//! them.

use super::keys::{certified_key, parse_certs, provider, KeyError};
use crate::config::{parse_resource, ResourceKind, Ssl};
use crate::snapshot::{Live, Snapshot};
use arc_swap::ArcSwapOption;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureAlgorithm,
    SignatureScheme,
};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;

/// APISIX's default `client.depth`.
const DEFAULT_CLIENT_DEPTH: u32 = 1;

/// Why a TLS connection never became an HTTP connection; logged at debug level (clients do this all the time).
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error("TLS handshake timed out")]
    Timeout,
    #[error("no SNI in the ClientHello")]
    NoSni,
    #[error("no certificate for SNI {0:?}")]
    UnknownSni(String),
    #[error("TLS handshake: {0}")]
    Handshake(#[source] std::io::Error),
}

/// Picks, among one object's certificates, the first whose key type the client can verify.
#[derive(Debug)]
pub struct KeyTypeResolver {
    /// ECDSA and Ed25519 before RSA: smaller, faster handshakes when the client allows them.
    keys: Vec<Arc<CertifiedKey>>,
}

impl KeyTypeResolver {
    fn new(mut keys: Vec<Arc<CertifiedKey>>) -> Self {
        keys.sort_by_key(|k| matches!(k.key.algorithm(), SignatureAlgorithm::RSA));
        KeyTypeResolver { keys }
    }

    fn pick(&self, schemes: &[SignatureScheme]) -> Option<&Arc<CertifiedKey>> {
        self.keys
            .iter()
            .find(|k| k.key.choose_scheme(schemes).is_some())
    }
}

impl ResolvesServerCert for KeyTypeResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.pick(hello.signature_schemes()).cloned()
    }
}

/// Answers every handshake with "no certificate": the config for an unknown or missing SNI, so the client
/// gets a proper TLS alert instead of a bare close.
#[derive(Debug)]
struct NoCert;

impl ResolvesServerCert for NoCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        None
    }
}

/// One `ssls` object, compiled.
struct Compiled {
    /// The JSON it came from without bookkeeping fields; an equal object on the next build reuses this.
    comparable: Value,
    resolver: Arc<KeyTypeResolver>,
    config: Arc<ServerConfig>,
}

fn comparable(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("create_time");
        o.remove("update_time");
    }
    v
}

fn protocol_versions(
    ssl: &Ssl,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, KeyError> {
    let Some(list) = &ssl.ssl_protocols else {
        return Ok(vec![&rustls::version::TLS13, &rustls::version::TLS12]);
    };
    let mut out = Vec::new();
    for (i, p) in list.iter().enumerate() {
        match p.as_str() {
            "TLSv1.3" => out.push(&rustls::version::TLS13),
            "TLSv1.2" => out.push(&rustls::version::TLS12),
            other => {
                return Err(KeyError::new(
                    format!("ssl_protocols[{i}]"),
                    format!("{other:?} is not supported; use \"TLSv1.2\" and/or \"TLSv1.3\""),
                ))
            }
        }
    }
    if out.is_empty() {
        return Err(KeyError::new("ssl_protocols", "must not be empty"));
    }
    Ok(out)
}

/// Enforces `client.depth` (certificates above the client's own, as nginx's `ssl_verify_depth` counts) on
/// top of webpki's chain verification, which has no depth setting.
#[derive(Debug)]
struct DepthLimited {
    inner: Arc<dyn ClientCertVerifier>,
    depth: u32,
}

impl ClientCertVerifier for DepthLimited {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Depth 1: the client certificate signed directly by a trusted CA; each further level allows one
        // intermediate.
        if intermediates.len() as u64 + 1 > u64::from(self.depth) {
            return Err(rustls::Error::General(format!(
                "client certificate chain longer than client.depth {}",
                self.depth
            )));
        }
        self.inner
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Parses and checks one `ssls` object into its handshake config. The admin API calls this (through
/// [`crate::config::Ssl::check`]) before storing, so what is stored always compiles.
pub fn compile_ssl(ssl: &Ssl) -> Result<(Arc<KeyTypeResolver>, Arc<ServerConfig>), KeyError> {
    let mut keys = vec![Arc::new(certified_key("cert", &ssl.cert, "key", &ssl.key)?)];
    let certs = ssl.certs.as_deref().unwrap_or_default();
    let more_keys = ssl.keys.as_deref().unwrap_or_default();
    if certs.len() != more_keys.len() {
        return Err(KeyError::new(
            "certs",
            "`certs` and `keys` must have the same length",
        ));
    }
    for (i, (c, k)) in certs.iter().zip(more_keys).enumerate() {
        keys.push(Arc::new(certified_key(
            &format!("certs[{i}]"),
            c,
            &format!("keys[{i}]"),
            k,
        )?));
    }
    let resolver = Arc::new(KeyTypeResolver::new(keys));
    let versions = protocol_versions(ssl)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&versions)
        .map_err(|e| KeyError::new("ssl_protocols", e.to_string()))?;
    let builder = match &ssl.client {
        None => builder.with_no_client_auth(),
        Some(client) => {
            let mut roots = RootCertStore::empty();
            for ca in parse_certs("client.ca", &client.ca)? {
                roots
                    .add(ca)
                    .map_err(|e| KeyError::new("client.ca", format!("unusable CA: {e}")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| KeyError::new("client.ca", e.to_string()))?;
            let depth = client.depth.unwrap_or(DEFAULT_CLIENT_DEPTH);
            if depth == 0 {
                return Err(KeyError::new("client.depth", "must be at least 1"));
            }
            builder.with_client_cert_verifier(Arc::new(DepthLimited {
                inner: verifier,
                depth,
            }))
        }
    };
    let mut config = builder.with_cert_resolver(resolver.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((resolver, Arc::new(config)))
}

/// The SNI → certificate map of one snapshot.
#[derive(Default)]
struct CertStore {
    /// The snapshot this was built from (held weakly: its address stays unique while we hold it).
    built_from: Weak<Snapshot>,
    by_id: HashMap<String, Arc<Compiled>>,
    exact: HashMap<String, Vec<Arc<Compiled>>>,
    /// `*.example.com` is stored under `example.com`.
    wildcard: HashMap<String, Vec<Arc<Compiled>>>,
}

impl CertStore {
    fn build(snapshot: &Arc<Snapshot>, previous: Option<&CertStore>) -> CertStore {
        let mut store = CertStore {
            built_from: Arc::downgrade(snapshot),
            ..CertStore::default()
        };
        for (id, value) in snapshot.config.objects(ResourceKind::Ssls) {
            let cmp = comparable(value);
            let reused = previous
                .and_then(|p| p.by_id.get(id))
                .filter(|c| c.comparable == cmp)
                .cloned();
            let compiled = match reused {
                Some(c) => c,
                None => {
                    let ssl: Ssl = match parse_resource(value) {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::warn!(ssl = %id, error = %e.0, "ssl object skipped");
                            continue;
                        }
                    };
                    match compile_ssl(&ssl) {
                        Ok((resolver, config)) => Arc::new(Compiled {
                            comparable: cmp,
                            resolver,
                            config,
                        }),
                        Err(e) => {
                            tracing::warn!(ssl = %id, error = %e, "ssl object skipped");
                            continue;
                        }
                    }
                }
            };
            store.by_id.insert(id.clone(), Arc::clone(&compiled));
            let ssl = value;
            let enabled = ssl.get("status").and_then(Value::as_u64) != Some(0);
            let server = ssl.get("type").and_then(Value::as_str) != Some("client");
            if !(enabled && server) {
                continue;
            }
            let snis = ssl
                .get("snis")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .chain(ssl.get("sni"))
                .filter_map(Value::as_str);
            for sni in snis {
                let sni = sni.to_ascii_lowercase();
                match sni.strip_prefix("*.") {
                    Some(suffix) => store
                        .wildcard
                        .entry(suffix.to_string())
                        .or_default()
                        .push(Arc::clone(&compiled)),
                    None => store
                        .exact
                        .entry(sni)
                        .or_default()
                        .push(Arc::clone(&compiled)),
                }
            }
        }
        store
    }

    /// Candidates for `name`: exact match, else the most specific wildcard (`*.b.example.com` before
    /// `*.example.com`, a wildcard matching one or more labels as in APISIX).
    fn candidates(&self, name: &str) -> Option<&[Arc<Compiled>]> {
        if let Some(c) = self.exact.get(name) {
            return Some(c);
        }
        let mut rest = name;
        while let Some((_, parent)) = rest.split_once('.') {
            if let Some(c) = self.wildcard.get(parent) {
                return Some(c);
            }
            rest = parent;
        }
        None
    }
}

/// Accepts TLS connections for the HTTPS listener.
pub struct TlsAcceptor {
    live: Arc<Live>,
    cache: ArcSwapOption<CertStore>,
    /// Serialises rebuilds so a burst of handshakes after a change compiles each object once.
    rebuild: Mutex<()>,
    reject: Arc<ServerConfig>,
}

impl TlsAcceptor {
    pub fn new(live: Arc<Live>) -> anyhow::Result<Self> {
        let reject = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(NoCert));
        Ok(TlsAcceptor {
            live,
            cache: ArcSwapOption::empty(),
            rebuild: Mutex::new(()),
            reject: Arc::new(reject),
        })
    }

    /// The cert store for the current snapshot, built (incrementally) if the snapshot changed.
    fn store(&self) -> Arc<CertStore> {
        let snapshot = self.live.load();
        let current = |c: &Option<Arc<CertStore>>| {
            c.as_ref()
                .filter(|s| std::ptr::eq(s.built_from.as_ptr(), Arc::as_ptr(&snapshot)))
                .cloned()
        };
        if let Some(s) = current(&self.cache.load_full()) {
            return s;
        }
        let _guard = self.rebuild.lock().unwrap_or_else(|p| p.into_inner());
        let cached = self.cache.load_full();
        if let Some(s) = current(&cached) {
            return s;
        }
        let store = Arc::new(CertStore::build(&snapshot, cached.as_deref()));
        self.cache.store(Some(Arc::clone(&store)));
        store
    }

    /// The config for this ClientHello: the `ssls` object matching its SNI whose keys the client can use.
    fn choose(&self, hello: &ClientHello<'_>) -> Result<Arc<ServerConfig>, AcceptError> {
        let Some(name) = hello.server_name() else {
            return Err(AcceptError::NoSni);
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let store = self.store();
        let Some(candidates) = store.candidates(&name) else {
            return Err(AcceptError::UnknownSni(name));
        };
        let schemes = hello.signature_schemes();
        candidates
            .iter()
            .find(|c| c.resolver.pick(schemes).is_some())
            .or(candidates.first())
            .map(|c| Arc::clone(&c.config))
            .ok_or(AcceptError::UnknownSni(name))
    }

    /// Runs the handshake (bounded by a timeout). On an unknown SNI the client gets a TLS alert.
    /// The handshake, which must complete within `timeout` (the listener's head-read time: a client that
    /// never finishes its ClientHello is a slowloris too).
    pub async fn accept(
        &self,
        tcp: TcpStream,
        timeout: Duration,
    ) -> Result<TlsStream<TcpStream>, AcceptError> {
        let handshake = async {
            let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp)
                .await
                .map_err(AcceptError::Handshake)?;
            let hello = start.client_hello();
            match self.choose(&hello) {
                Ok(config) => start
                    .into_stream(config)
                    .await
                    .map_err(AcceptError::Handshake),
                Err(e) => {
                    // Finish with "no certificate" so the client sees an alert, then report why.
                    let _ = start.into_stream(Arc::clone(&self.reject)).await;
                    Err(e)
                }
            }
        };
        tokio::time::timeout(timeout, handshake)
            .await
            .map_err(|_| AcceptError::Timeout)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with(exact: &[&str], wild: &[&str]) -> CertStore {
        let resolver = Arc::new(KeyTypeResolver { keys: Vec::new() });
        let config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        let c = Arc::new(Compiled {
            comparable: Value::Null,
            resolver,
            config: Arc::new(config),
        });
        let mut s = CertStore::default();
        for e in exact {
            s.exact.insert(e.to_string(), vec![c.clone()]);
        }
        for w in wild {
            s.wildcard.insert(w.to_string(), vec![c.clone()]);
        }
        s
    }

    #[test]
    fn exact_then_most_specific_wildcard() {
        let s = store_with(&["a.example.com"], &["example.com", "b.example.com"]);
        assert!(s.candidates("a.example.com").is_some());
        assert!(s.candidates("x.example.com").is_some());
        assert!(s.candidates("x.b.example.com").is_some());
        assert!(s.candidates("example.com").is_none());
        assert!(s.candidates("other.org").is_none());
    }
}
