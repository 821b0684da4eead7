//! Strict structural parsing of a compact JWS (RFC 7515 §7.1) before any key or signature work,
//! for access tokens and DPoP proofs alike: exactly three canonical base64url segments (RFC 7515
//! §2), JSON objects without duplicate member names (RFC 7515 §4, RFC 8725 §2.6), a string `alg`,
//! and no header feature phigate does not implement (`crit`, nested or encrypted tokens). It
//! never chooses a key and never verifies a signature; it only hands both back as received.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};

use crate::strict_json::{self, StrictJsonError};

/// Why a text is not a compact JWS phigate reads; each caller maps it to its own fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwsFault {
    /// Not three canonical base64url segments holding JSON objects and a signature, or a header
    /// member of the wrong type.
    Malformed,
    /// A JSON member name appears twice, at any depth.
    DuplicateMember,
    /// `crit`, `enc`, `zip` or `cty`: features phigate never processes.
    UnsupportedHeader,
    /// The header has no `alg` (RFC 7515 §4.1.1: required).
    AlgMissing,
}

/// A compact JWS split into its parts, header and payload decoded strictly.
#[derive(Debug)]
pub struct CompactJws<'a> {
    /// The protected header.
    pub header: JoseHeader,
    /// The payload, a JSON object.
    pub claims: Map<String, Value>,
    /// `header.payload` exactly as received: what the signature covers (RFC 7515 §5.2).
    pub signing_input: &'a str,
    /// The signature segment as received (canonical base64url, never empty).
    pub signature: &'a str,
}

impl CompactJws<'_> {
    /// Whether the signature verifies over the signing input with `key` under `alg`. A key
    /// that does not fit the algorithm is a signature that does not hold, not a distinct fault:
    /// the caller chose the key, and the sender learns nothing either way.
    pub fn signature_holds(&self, key: &DecodingKey, alg: Algorithm) -> bool {
        jsonwebtoken::crypto::verify(self.signature, self.signing_input.as_bytes(), key, alg)
            .unwrap_or(false)
    }
}

/// The protected header: the members every caller reads, and the rest for the one that needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct JoseHeader {
    /// `alg`, as written.
    pub alg: String,
    /// `kid`, if present.
    pub kid: Option<String>,
    /// `typ`, if present.
    pub typ: Option<String>,
    members: Map<String, Value>,
}

impl JoseHeader {
    /// Any header member by name (DPoP reads `jwk`; an access token's keys never come from it).
    pub fn member(&self, name: &str) -> Option<&Value> {
        self.members.get(name)
    }
}

/// Parses `text` strictly; any deviation is a [`JwsFault`].
pub fn parse(text: &str) -> Result<CompactJws<'_>, JwsFault> {
    let mut segments = text.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        // Two segments is a stripped signature, five a JWE (RFC 7516): neither is accepted.
        return Err(JwsFault::Malformed);
    };
    if signature.is_empty() {
        return Err(JwsFault::Malformed);
    }
    let members = decode_object(header)?;
    let claims = decode_object(payload)?;
    decode_segment(signature)?;
    Ok(CompactJws {
        header: read_header(members)?,
        claims,
        signing_input: &text[..header.len() + 1 + payload.len()],
        signature,
    })
}

fn read_header(members: Map<String, Value>) -> Result<JoseHeader, JwsFault> {
    let optional_string = |name: &str| match members.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(JwsFault::Malformed),
    };
    let alg = optional_string("alg")?.ok_or(JwsFault::AlgMissing)?;
    // RFC 7515 §4.1.11: a `crit` extension we do not understand makes the JWS invalid, and we
    // understand none. `enc`/`zip` mark a JWE; `cty: JWT` a nested token (RFC 7519 §5.2): both
    // would need decryption or recursion, which phigate never does.
    if ["crit", "enc", "zip", "cty"]
        .iter()
        .any(|name| members.contains_key(*name))
    {
        return Err(JwsFault::UnsupportedHeader);
    }
    Ok(JoseHeader {
        alg,
        kid: optional_string("kid")?,
        typ: optional_string("typ")?,
        members,
    })
}

fn decode_segment(segment: &str) -> Result<Vec<u8>, JwsFault> {
    // The engine refuses padding and non-zero trailing bits (RFC 4648 §3.5), so one token has
    // exactly one spelling: a revocation by token hash cannot be dodged by re-encoding.
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| JwsFault::Malformed)
}

fn decode_object(segment: &str) -> Result<Map<String, Value>, JwsFault> {
    if segment.is_empty() {
        return Err(JwsFault::Malformed);
    }
    let bytes = decode_segment(segment)?;
    match strict_json::parse(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) | Err(StrictJsonError::Invalid) => Err(JwsFault::Malformed),
        Err(StrictJsonError::DuplicateMember) => Err(JwsFault::DuplicateMember),
    }
}

#[cfg(test)]
mod tests;
