//! The issuer's public keys, for the HMAC-confusion cases: fetched from `--jwks`, or found
//! through the issuer's discovery document (`iss` + `/.well-known/openid-configuration`, then
//! `/.well-known/oauth-authorization-server`). From the JWK matching the token's `kid` it
//! derives the byte strings a confused verifier might use as an HMAC secret: the JWK's JSON
//! text and the PEM SubjectPublicKeyInfo. It never trusts these keys for anything.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use serde_json::Value;

/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of a JWKS or discovery document read.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// The issuer's key that signed the token, as published.
#[derive(Debug, Clone)]
pub struct PublishedKey {
    /// The JWK as published.
    pub jwk: Value,
}

// === impl PublishedKey ===

impl PublishedKey {
    /// The JWK's JSON text, as a confused verifier might take it for a secret.
    pub fn jwk_text(&self) -> String {
        self.jwk.to_string()
    }

    /// The public key as a PEM SubjectPublicKeyInfo, when its type is one the probe encodes.
    pub fn spki_pem(&self) -> Option<String> {
        let der = spki_der(&self.jwk)?;
        let encoded = STANDARD.encode(der);
        let mut pem = "-----BEGIN PUBLIC KEY-----\n".to_owned();
        for line in encoded.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).ok()?);
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        Some(pem)
    }
}

/// Finds the key with `kid` (or the only key) at `jwks_url`, or through `issuer`'s discovery.
pub async fn find(
    jwks_url: Option<&str>,
    issuer: Option<&str>,
    kid: Option<&str>,
    ca: Option<&Path>,
) -> Result<PublishedKey, String> {
    let url = match (jwks_url, issuer) {
        (Some(url), _) => url.to_owned(),
        (None, Some(issuer)) => discover(issuer, ca).await?,
        (None, None) => return Err("no --jwks and no `iss` in the token".to_owned()),
    };
    let jwks = fetch_json(&url, ca).await?;
    let keys = jwks["keys"]
        .as_array()
        .ok_or_else(|| format!("{url} is not a JWK Set"))?;
    let chosen = match kid {
        Some(kid) => keys.iter().find(|k| k["kid"] == kid),
        None if keys.len() == 1 => keys.first(),
        None => None,
    };
    chosen
        .map(|jwk| PublishedKey { jwk: jwk.clone() })
        .ok_or_else(|| format!("no key at {url} matches the token's kid"))
}

/// The `jwks_uri` of `issuer`'s discovery document.
async fn discover(issuer: &str, ca: Option<&Path>) -> Result<String, String> {
    let base = issuer.trim_end_matches('/');
    let mut causes = Vec::new();
    for well_known in ["openid-configuration", "oauth-authorization-server"] {
        let url = format!("{base}/.well-known/{well_known}");
        match fetch_json(&url, ca).await {
            Ok(document) => match document["jwks_uri"].as_str() {
                Some(jwks) => return Ok(jwks.to_owned()),
                None => causes.push(format!("{url} names no jwks_uri")),
            },
            Err(cause) => causes.push(cause),
        }
    }
    Err(format!("no JWKS: give --jwks URL ({})", causes.join("; ")))
}

async fn fetch_json(url: &str, ca: Option<&Path>) -> Result<Value, String> {
    let client = crate::tls::https_client::<Full<Bytes>>(ca).map_err(|err| err.to_string())?;
    let uri: http::Uri = url.parse().map_err(|_| format!("{url} is not a URL"))?;
    let fetch = async {
        let response = client
            .get(uri)
            .await
            .map_err(|_| format!("{url} cannot be reached"))?;
        if !response.status().is_success() {
            return Err(format!("{url} answered {}", response.status().as_u16()));
        }
        let body = Limited::new(response.into_body(), MAX_DOCUMENT_BYTES)
            .collect()
            .await
            .map_err(|_| format!("{url}: the body broke off or is too large"))?
            .to_bytes();
        serde_json::from_slice(&body).map_err(|_| format!("{url} is not JSON"))
    };
    tokio::time::timeout(FETCH_TIMEOUT, fetch)
        .await
        .unwrap_or_else(|_| Err(format!("{url} did not answer within 10 s")))
}

/// The DER SubjectPublicKeyInfo of an EC (P-256, P-384), OKP (Ed25519) or RSA JWK.
fn spki_der(jwk: &Value) -> Option<Vec<u8>> {
    let field = |name: &str| URL_SAFE_NO_PAD.decode(jwk[name].as_str()?).ok();
    // The fixed DER prefixes: SEQUENCE { AlgorithmIdentifier, BIT STRING header }.
    const P256: &str = "3059301306072a8648ce3d020106082a8648ce3d030107034200";
    const P384: &str = "3076301006072a8648ce3d020106052b81040022036200";
    const ED25519: &str = "302a300506032b6570032100";
    match (jwk["kty"].as_str()?, jwk["crv"].as_str()) {
        ("EC", Some(crv)) => {
            let prefix = match crv {
                "P-256" => P256,
                "P-384" => P384,
                _ => return None,
            };
            let mut der = hex(prefix);
            der.push(0x04);
            der.extend(field("x")?);
            der.extend(field("y")?);
            Some(der)
        }
        ("OKP", Some("Ed25519")) => {
            let mut der = hex(ED25519);
            der.extend(field("x")?);
            Some(der)
        }
        ("RSA", _) => {
            let public = der_sequence(&[der_integer(&field("n")?), der_integer(&field("e")?)]);
            let mut bits = vec![0];
            bits.extend(public);
            // rsaEncryption OID with NULL parameters.
            let algorithm = hex("300d06092a864886f70d0101010500");
            let mut bit_string = vec![0x03];
            bit_string.extend(der_length(bits.len()));
            bit_string.extend(bits);
            Some(der_sequence(&[algorithm, bit_string]))
        }
        _ => None,
    }
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .filter_map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn der_length(len: usize) -> Vec<u8> {
    match u8::try_from(len) {
        Ok(short) if short < 0x80 => vec![short],
        _ => {
            let bytes: Vec<u8> = len
                .to_be_bytes()
                .into_iter()
                .skip_while(|b| *b == 0)
                .collect();
            let mut out = vec![0x80 | u8::try_from(bytes.len()).unwrap_or(0)];
            out.extend(bytes);
            out
        }
    }
}

fn der_integer(magnitude: &[u8]) -> Vec<u8> {
    let trimmed: Vec<u8> = magnitude.iter().copied().skip_while(|b| *b == 0).collect();
    let mut content = Vec::new();
    // A leading 1 bit would read as negative.
    if trimmed.first().is_none_or(|b| *b >= 0x80) {
        content.push(0);
    }
    content.extend(trimmed);
    let mut out = vec![0x02];
    out.extend(der_length(content.len()));
    out.extend(content);
    out
}

fn der_sequence(parts: &[Vec<u8>]) -> Vec<u8> {
    let content: Vec<u8> = parts.concat();
    let mut out = vec![0x30];
    out.extend(der_length(content.len()));
    out.extend(content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spki_of_each_key_type_parses_as_a_public_key() {
        let issuer_jwks = [
            serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode([7u8; 32])}),
        ];
        for jwk in issuer_jwks {
            let der = spki_der(&jwk).unwrap();
            assert_eq!(der.len(), 44);
        }
        assert_eq!(der_length(5), vec![5]);
        assert_eq!(der_length(300), vec![0x82, 1, 44]);
        assert_eq!(der_integer(&[0x80]), vec![2, 2, 0, 0x80]);
        assert_eq!(der_integer(&[0, 1]), vec![2, 1, 1]);
    }
}
