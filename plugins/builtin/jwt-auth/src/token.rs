//! Splitting a compact JWS (`header.payload.signature`) into what verification needs. Nothing here trusts
//! the token: the header's `alg` is only compared with the consumer's algorithm, never used to pick one.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use serde_json::{Map, Value};

/// base64url as RFC 7515 writes it (no padding); padded input is accepted too, as lua-resty-jwt does.
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A decoded, not yet verified token.
pub struct Token<'a> {
    /// The header's `alg`, as the token claims it.
    pub alg: String,
    pub payload: Map<String, Value>,
    /// `base64url(header) "." base64url(payload)`: the bytes the signature covers.
    pub signing_input: &'a str,
    pub signature: Vec<u8>,
}

/// Decodes a token; the error says why it is malformed (for the log; the client gets APISIX's message).
pub fn parse(token: &str) -> Result<Token<'_>, &'static str> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not three dot-separated parts");
    };
    let header = decode_object(header).ok_or("the header is not base64url-encoded JSON object")?;
    let alg = match header.get("alg") {
        Some(Value::String(alg)) => alg.clone(),
        _ => return Err("the header has no string \"alg\""),
    };
    let signing_input = &token[..token.len() - signature.len() - 1];
    Ok(Token {
        alg,
        payload: decode_object(payload)
            .ok_or("the payload is not base64url-encoded JSON object")?,
        signing_input,
        signature: B64URL
            .decode(signature)
            .map_err(|_| "the signature is not base64url")?,
    })
}

fn decode_object(part: &str) -> Option<Map<String, Value>> {
    let bytes = B64URL.decode(part).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}
