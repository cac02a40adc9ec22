//! A consumer's `jwt-auth` config: its algorithm and the key that verifies its tokens.
//!
//! The algorithm is the consumer's, fixed when the consumer is written; a token only ever gets checked
//! against it. That is what defeats `alg: none` and algorithm confusion (an HS256 token "signed" with an RSA
//! consumer's public key as the HMAC secret): the key type and the algorithm come from the same trusted
//! place, and a token naming another algorithm is refused before any cryptography runs.

use base64::Engine;
use hmac::{Hmac, Mac};
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::spki::SubjectPublicKeyInfoRef;
use rsa::pkcs8::DecodePublicKey;
use rsa::{Pkcs1v15Sign, Pss, RsaPublicKey};
use serde::Deserialize;
use sha2::{Digest, Sha256, Sha384, Sha512};

use sluice_builtin_support::ngx::BASE64;
use sluice_builtin_support::schema::{field, invalid, required_string, within};

/// Signing algorithms this plugin verifies (JWA names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
}

const SUPPORTED: [Algorithm; 10] = [
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
];

/// APISIX accepts these too; naming them gets a clear "not supported" instead of "not an algorithm".
const APISIX_ONLY: [&str; 3] = ["ES384", "ES512", "EdDSA"];

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
        }
    }

    fn parse(name: &str) -> Result<Self, String> {
        if let Some(alg) = SUPPORTED.into_iter().find(|a| a.name() == name) {
            return Ok(alg);
        }
        let supported: Vec<&str> = SUPPORTED.iter().map(|a| a.name()).collect();
        let supported = supported.join(", ");
        if APISIX_ONLY.contains(&name) {
            return Err(invalid(
                "algorithm",
                format!("\"{name}\" is not supported by this gateway; use one of {supported}"),
            ));
        }
        Err(invalid(
            "algorithm",
            format!("matches none of the enum values ({supported})"),
        ))
    }
}

/// What verifies a consumer's signatures; the variant always matches [`ConsumerKey::algorithm`].
enum Verifier {
    Hmac(Vec<u8>),
    Rsa(RsaPublicKey),
    Ec(Box<p256::ecdsa::VerifyingKey>),
}

/// A consumer's validated `jwt-auth` config.
pub struct ConsumerKey {
    pub algorithm: Algorithm,
    /// Seconds of clock skew tolerated on `exp` and `nbf`.
    pub lifetime_grace_period: u64,
    verifier: Verifier,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConsumer {
    key: Option<String>,
    secret: Option<String>,
    public_key: Option<String>,
    /// APISIX (2.x) required it to sign tokens; this gateway only verifies, so it is accepted and unused.
    #[allow(dead_code)]
    private_key: Option<String>,
    algorithm: Option<String>,
    /// APISIX's lifetime of the tokens it signs; accepted for compatibility, unused when verifying.
    exp: Option<u64>,
    #[serde(default)]
    base64_secret: bool,
    #[serde(default)]
    lifetime_grace_period: u64,
}

impl ConsumerKey {
    /// Validates a consumer config (on consumer writes, and again when a token names this consumer).
    pub fn parse(json: &str) -> Result<Self, String> {
        let raw: RawConsumer = serde_json::from_str(json).map_err(|e| e.to_string())?;
        required_string("key", raw.key)?;
        if let Some(exp) = raw.exp {
            field("exp", within(exp, Some(1), None))?;
        }
        let algorithm = Algorithm::parse(raw.algorithm.as_deref().unwrap_or("HS256"))?;
        let name = algorithm.name();
        let verifier = match algorithm {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                let secret = raw.secret.ok_or_else(|| {
                    format!("property \"secret\" is required when \"algorithm\" is \"{name}\"")
                })?;
                let secret = required_string("secret", Some(secret))?;
                if raw.base64_secret {
                    Verifier::Hmac(BASE64.decode(secret.trim()).map_err(|_| {
                        "base64_secret required but the secret is not in base64 format".to_string()
                    })?)
                } else {
                    Verifier::Hmac(secret.into_bytes())
                }
            }
            _ => {
                let pem = raw.public_key.ok_or_else(|| {
                    format!("property \"public_key\" is required when \"algorithm\" is \"{name}\"")
                })?;
                public_key(algorithm, &pem)
                    .map_err(|e| format!("invalid \"public_key\" for \"{name}\": {e}"))?
            }
        };
        Ok(Self {
            algorithm,
            lifetime_grace_period: raw.lifetime_grace_period,
            verifier,
        })
    }

    /// Whether `signature` is this consumer's signature of `input` under its algorithm.
    pub fn verify(&self, input: &[u8], signature: &[u8]) -> bool {
        match (&self.verifier, self.algorithm) {
            (Verifier::Hmac(k), Algorithm::HS256) => mac_ok::<Hmac<Sha256>>(k, input, signature),
            (Verifier::Hmac(k), Algorithm::HS384) => mac_ok::<Hmac<Sha384>>(k, input, signature),
            (Verifier::Hmac(k), Algorithm::HS512) => mac_ok::<Hmac<Sha512>>(k, input, signature),
            (Verifier::Rsa(k), Algorithm::RS256) => {
                rsa_ok::<Sha256>(k, Pkcs1v15Sign::new::<Sha256>(), input, signature)
            }
            (Verifier::Rsa(k), Algorithm::RS384) => {
                rsa_ok::<Sha384>(k, Pkcs1v15Sign::new::<Sha384>(), input, signature)
            }
            (Verifier::Rsa(k), Algorithm::RS512) => {
                rsa_ok::<Sha512>(k, Pkcs1v15Sign::new::<Sha512>(), input, signature)
            }
            (Verifier::Rsa(k), Algorithm::PS256) => {
                rsa_ok::<Sha256>(k, Pss::new::<Sha256>(), input, signature)
            }
            (Verifier::Rsa(k), Algorithm::PS384) => {
                rsa_ok::<Sha384>(k, Pss::new::<Sha384>(), input, signature)
            }
            (Verifier::Rsa(k), Algorithm::PS512) => {
                rsa_ok::<Sha512>(k, Pss::new::<Sha512>(), input, signature)
            }
            (Verifier::Ec(k), Algorithm::ES256) => {
                use p256::ecdsa::signature::Verifier as _;
                // JWS carries the raw 64-byte r||s form, not DER.
                p256::ecdsa::Signature::from_slice(signature)
                    .is_ok_and(|sig| k.verify(input, &sig).is_ok())
            }
            // `parse` pairs each algorithm with its key type; any other pairing verifies nothing.
            _ => false,
        }
    }
}

fn mac_ok<M: Mac + hmac::digest::KeyInit>(key: &[u8], input: &[u8], signature: &[u8]) -> bool {
    // `verify_slice` compares in constant time.
    <M as hmac::digest::KeyInit>::new_from_slice(key)
        .is_ok_and(|mac| mac.chain_update(input).verify_slice(signature).is_ok())
}

fn rsa_ok<D: Digest>(
    key: &RsaPublicKey,
    scheme: impl rsa::traits::SignatureScheme,
    input: &[u8],
    signature: &[u8],
) -> bool {
    key.verify(scheme, &D::digest(input), signature).is_ok()
}

const RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const PRIME256V1: &str = "1.2.840.10045.3.1.7";

/// Parses a PEM public key for `algorithm`: `PUBLIC KEY` (SPKI) for RSA or P-256, or `RSA PUBLIC KEY`
/// (PKCS#1). The PEM is read leniently (any line length, CRLF) because admins paste keys into JSON by hand;
/// a key of the wrong type is named, so the admin sees what they pasted rather than a DER error.
fn public_key(algorithm: Algorithm, pem: &str) -> Result<Verifier, String> {
    let wants_ec = algorithm == Algorithm::ES256;
    let mismatch = |found: &str| {
        let needed = if wants_ec {
            "a P-256 EC key"
        } else {
            "an RSA key"
        };
        format!("{found}, but \"{}\" needs {needed}", algorithm.name())
    };
    let (label, der) = pem_der(pem)?;
    match label.as_str() {
        "PUBLIC KEY" => {}
        "RSA PUBLIC KEY" if wants_ec => return Err(mismatch("an RSA key")),
        "RSA PUBLIC KEY" => {
            return RsaPublicKey::from_pkcs1_der(&der)
                .map(Verifier::Rsa)
                .map_err(|e| format!("malformed RSA public key ({e})"))
        }
        "CERTIFICATE" => {
            return Err(
                "a certificate, not a public key; extract it with `openssl x509 -pubkey -noout`"
                    .into(),
            )
        }
        other => return Err(format!("a PEM \"{other}\" block, expected \"PUBLIC KEY\"")),
    }
    let spki = SubjectPublicKeyInfoRef::try_from(der.as_slice())
        .map_err(|e| format!("malformed public key ({e})"))?;
    let kind = spki.algorithm.oid.to_string();
    let curve = spki.algorithm.parameters_oid().ok().map(|c| c.to_string());
    match (kind.as_str(), wants_ec) {
        (RSA_ENCRYPTION, false) => RsaPublicKey::from_public_key_der(&der)
            .map(Verifier::Rsa)
            .map_err(|e| format!("malformed RSA public key ({e})")),
        (EC_PUBLIC_KEY, true) if curve.as_deref() == Some(PRIME256V1) => {
            p256::ecdsa::VerifyingKey::from_public_key_der(&der)
                .map(|k| Verifier::Ec(Box::new(k)))
                .map_err(|e| format!("malformed P-256 public key ({e})"))
        }
        (RSA_ENCRYPTION, true) => Err(mismatch("an RSA key")),
        (EC_PUBLIC_KEY, false) => Err(mismatch("an EC key")),
        (EC_PUBLIC_KEY, true) => Err(mismatch(&format!(
            "an EC key on curve {}",
            curve_name(curve.as_deref())
        ))),
        (other, _) => Err(mismatch(&format!("a key of algorithm {other}"))),
    }
}

fn curve_name(oid: Option<&str>) -> &str {
    match oid {
        Some("1.3.132.0.34") => "P-384",
        Some("1.3.132.0.35") => "P-521",
        Some("1.3.132.0.10") => "secp256k1",
        Some(other) => other,
        None => "(unnamed)",
    }
}

/// The label and DER bytes of the first PEM block in `pem`.
fn pem_der(pem: &str) -> Result<(String, Vec<u8>), String> {
    const BEGIN: &str = "-----BEGIN ";
    let not_pem = || "not a PEM block (-----BEGIN PUBLIC KEY----- ...)".to_string();
    let start = pem.find(BEGIN).ok_or_else(not_pem)? + BEGIN.len();
    let (label, rest) = pem[start..].split_once("-----").ok_or_else(not_pem)?;
    let end_marker = format!("-----END {label}-----");
    let body = rest
        .split_once(&end_marker)
        .map(|(body, _)| body)
        .ok_or_else(|| format!("no \"{end_marker}\" line"))?;
    let body: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = BASE64
        .decode(body)
        .map_err(|_| "the PEM body is not base64".to_string())?;
    Ok((label.to_string(), der))
}
