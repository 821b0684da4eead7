//! DPoP proof verification (RFC 9449 §4.2–4.3): a compact JWS of type `dpop+jwt`, signed with an
//! allowed asymmetric algorithm by the public key in its own `jwk` header (never a private or
//! symmetric key), for this request's method and URI (compared after RFC 3986 §6.2.2/§6.2.3
//! normalisation against the configured public base URL — never the client's Host header),
//! recent, and carrying the hash of the access token it accompanies. The caller checks that the
//! proof's `jti` was not seen before and that its key thumbprint equals the token's `cnf.jkt`.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};

use crate::strict_json;
use crate::token::sha256;

/// Proof rules.
#[derive(Debug, Clone)]
pub struct ProofSettings {
    /// Algorithms a proof may use (FAPI 2.0: ES256, PS256, EdDSA).
    pub algorithms: Vec<Algorithm>,
    /// How old a proof's `iat` may be.
    pub max_age: Duration,
    /// How far in the future a proof's `iat` may be (clock skew).
    pub max_future: Duration,
}

impl Default for ProofSettings {
    fn default() -> Self {
        Self {
            algorithms: vec![Algorithm::ES256, Algorithm::PS256, Algorithm::EdDSA],
            max_age: Duration::from_secs(60),
            max_future: Duration::from_secs(10),
        }
    }
}

impl ProofSettings {
    /// The `algs` challenge parameter (RFC 9449 §7.1).
    pub fn algs(&self) -> String {
        self.algorithms
            .iter()
            .map(|a| format!("{a:?}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A proof that passed every check the proof itself allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProof {
    /// RFC 7638 SHA-256 thumbprint of the proof key.
    pub jkt: String,
    /// The proof's unique id, for replay detection.
    pub jti: String,
    /// When the proof was made.
    pub iat: i64,
    /// The server nonce the proof carries, if any (RFC 9449 §8).
    pub nonce: Option<String>,
}

/// Why a proof was refused; each is a documented reason code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpopFault {
    /// Not a well-formed compact JWS with JSON header and claims.
    Malformed,
    /// `alg` not allowed, or not matching the key.
    AlgNotAllowed,
    /// The `jwk` is private or symmetric.
    PrivateKey,
    /// The signature does not verify with the `jwk`.
    BadSignature,
    /// `typ` is not `dpop+jwt`.
    TypMismatch,
    /// `htm` is not the request method.
    MethodMismatch,
    /// `htu` is not this request's URI.
    UriMismatch,
    /// `iat` outside the accepted window.
    Stale,
    /// A required claim or header is missing.
    MissingClaim,
    /// `ath` is not the hash of the access token.
    AthMismatch,
    /// The proof's `jti` was seen before.
    Replayed,
}

impl DpopFault {
    /// The reason code for logs and metrics.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Malformed => "dpop_malformed",
            Self::AlgNotAllowed => "dpop_alg_not_allowed",
            Self::PrivateKey => "dpop_private_key",
            Self::BadSignature => "dpop_signature_invalid",
            Self::TypMismatch => "dpop_typ_mismatch",
            Self::MethodMismatch => "dpop_htm_mismatch",
            Self::UriMismatch => "dpop_htu_mismatch",
            Self::Stale => "dpop_iat_out_of_window",
            Self::MissingClaim => "dpop_claim_missing",
            Self::AthMismatch => "dpop_ath_mismatch",
            Self::Replayed => "dpop_replay",
        }
    }
}

/// JWK members only a private or symmetric key has.
const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "k"];

/// Verifies a proof for `method expected_htu` accompanying `access_token`.
pub fn verify_proof(
    proof: &str,
    method: &http::Method,
    expected_htu: &str,
    access_token: &str,
    now: i64,
    settings: &ProofSettings,
) -> Result<VerifiedProof, DpopFault> {
    let mut parts = proof.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(DpopFault::Malformed);
    };
    let header = decode_object(header_b64)?;
    let claims = decode_object(payload_b64)?;
    if URL_SAFE_NO_PAD.decode(signature).is_err() || signature.is_empty() {
        return Err(DpopFault::Malformed);
    }
    let text = |map: &Map<String, Value>, name: &str| {
        map.get(name).and_then(Value::as_str).map(str::to_owned)
    };
    let typ = text(&header, "typ").ok_or(DpopFault::MissingClaim)?;
    if !typ.eq_ignore_ascii_case("dpop+jwt") {
        return Err(DpopFault::TypMismatch);
    }
    let jwk = header
        .get("jwk")
        .and_then(Value::as_object)
        .ok_or(DpopFault::MissingClaim)?;
    if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m))
        || jwk.get("kty").and_then(Value::as_str) == Some("oct")
    {
        return Err(DpopFault::PrivateKey);
    }
    let alg = match text(&header, "alg")
        .ok_or(DpopFault::MissingClaim)?
        .as_str()
    {
        // openid-client labels Ed25519 proofs with the fully specified name (RFC 9864).
        "Ed25519" => Algorithm::EdDSA,
        other => other
            .parse::<Algorithm>()
            .map_err(|_| DpopFault::AlgNotAllowed)?,
    };
    if !settings.algorithms.contains(&alg) {
        return Err(DpopFault::AlgNotAllowed);
    }
    let key = decoding_key(jwk, alg)?;
    let message = format!("{header_b64}.{payload_b64}");
    let valid = jsonwebtoken::crypto::verify(signature, message.as_bytes(), &key, alg)
        .map_err(|_| DpopFault::BadSignature)?;
    if !valid {
        return Err(DpopFault::BadSignature);
    }
    let (jti, htm, htu, ath) = (
        text(&claims, "jti"),
        text(&claims, "htm"),
        text(&claims, "htu"),
        text(&claims, "ath"),
    );
    let iat = claims.get("iat").and_then(Value::as_i64);
    let (Some(jti), Some(htm), Some(htu), Some(ath), Some(iat)) = (jti, htm, htu, ath, iat) else {
        return Err(DpopFault::MissingClaim);
    };
    if jti.is_empty() || jti.len() > 256 {
        return Err(DpopFault::Malformed);
    }
    if htm != method.as_str() {
        return Err(DpopFault::MethodMismatch);
    }
    match (normalise_htu(&htu), normalise_htu(expected_htu)) {
        (Some(actual), Some(expected)) if actual == expected => {}
        _ => return Err(DpopFault::UriMismatch),
    }
    let max_age = i64::try_from(settings.max_age.as_secs()).unwrap_or(i64::MAX);
    let max_future = i64::try_from(settings.max_future.as_secs()).unwrap_or(i64::MAX);
    if iat < now.saturating_sub(max_age) || iat > now.saturating_add(max_future) {
        return Err(DpopFault::Stale);
    }
    // RFC 9449 §4.3 item 11: `ath` = base64url(SHA-256(ASCII access token)).
    if ath != URL_SAFE_NO_PAD.encode(sha256(access_token.as_bytes())) {
        return Err(DpopFault::AthMismatch);
    }
    let jkt = jwk_thumbprint(&Value::Object(jwk.clone())).ok_or(DpopFault::Malformed)?;
    let nonce = text(&claims, "nonce");
    Ok(VerifiedProof {
        jkt,
        jti,
        iat,
        nonce,
    })
}

fn decode_object(segment: &str) -> Result<Map<String, Value>, DpopFault> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| DpopFault::Malformed)?;
    match strict_json::parse(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(DpopFault::Malformed),
    }
}

/// The public key of a `jwk`, if its type and curve fit `alg`.
fn decoding_key(jwk: &Map<String, Value>, alg: Algorithm) -> Result<DecodingKey, DpopFault> {
    let text = |name: &str| jwk.get(name).and_then(Value::as_str);
    let key = match (alg, text("kty"), text("crv")) {
        (Algorithm::ES256, Some("EC"), Some("P-256"))
        | (Algorithm::ES384, Some("EC"), Some("P-384")) => DecodingKey::from_ec_components(
            text("x").ok_or(DpopFault::Malformed)?,
            text("y").ok_or(DpopFault::Malformed)?,
        ),
        (Algorithm::EdDSA, Some("OKP"), Some("Ed25519")) => {
            DecodingKey::from_ed_components(text("x").ok_or(DpopFault::Malformed)?)
        }
        (Algorithm::PS256 | Algorithm::RS256, Some("RSA"), _) => {
            let n = text("n").ok_or(DpopFault::Malformed)?;
            // FAPI 2.0: RSA keys of at least 2048 bits.
            if URL_SAFE_NO_PAD.decode(n).map_or(true, |n| n.len() < 256) {
                return Err(DpopFault::AlgNotAllowed);
            }
            DecodingKey::from_rsa_components(n, text("e").ok_or(DpopFault::Malformed)?)
        }
        _ => return Err(DpopFault::AlgNotAllowed),
    };
    key.map_err(|_| DpopFault::Malformed)
}

/// RFC 7638 §3.2: SHA-256 over the required members in lexicographic order, no whitespace.
pub fn jwk_thumbprint(jwk: &Value) -> Option<String> {
    let text = |name: &str| jwk.get(name).and_then(Value::as_str);
    let members: Vec<(&str, &str)> = match text("kty")? {
        "EC" => vec![
            ("crv", text("crv")?),
            ("kty", "EC"),
            ("x", text("x")?),
            ("y", text("y")?),
        ],
        "RSA" => vec![("e", text("e")?), ("kty", "RSA"), ("n", text("n")?)],
        "OKP" => vec![("crv", text("crv")?), ("kty", "OKP"), ("x", text("x")?)],
        _ => return None,
    };
    let canonical: Vec<String> = members
        .iter()
        .map(|(name, value)| format!("{}:{}", Value::from(*name), Value::from(*value)))
        .collect();
    Some(URL_SAFE_NO_PAD.encode(sha256(format!("{{{}}}", canonical.join(",")).as_bytes())))
}

/// RFC 9449 §4.3: the URI without query and fragment, scheme and host lower-cased (RFC 3986
/// §6.2.2.1), the default port dropped and an empty path made `/` (§6.2.3).
pub fn normalise_htu(uri: &str) -> Option<String> {
    let without_fragment = uri.split('#').next()?;
    let without_query = without_fragment.split('?').next()?;
    let parsed: http::Uri = without_query.parse().ok()?;
    let scheme = parsed.scheme_str()?.to_ascii_lowercase();
    let authority = parsed.authority()?;
    let host = authority.host().to_ascii_lowercase();
    let port = match (scheme.as_str(), authority.port_u16()) {
        ("https", Some(443)) | ("http", Some(80)) | (_, None) => String::new(),
        (_, Some(port)) => format!(":{port}"),
    };
    let path = if parsed.path().is_empty() {
        "/"
    } else {
        parsed.path()
    };
    Some(format!("{scheme}://{host}{port}{path}"))
}

#[cfg(test)]
mod tests;
