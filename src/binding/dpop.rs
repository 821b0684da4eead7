//! DPoP proof verification (RFC 9449 §4.2–4.3): a proof is accepted only as a compact JWS of
//! type `dpop+jwt`, parsed by `jose::compact` exactly as an access token is, signed with an
//! allowed asymmetric algorithm by the public key in its own `jwk` header, which `jose::jwk`
//! holds to the rules a JWKS entry meets (never private or symmetric, never below its family's
//! floor) and which must be of the family the algorithm names, made for this request's method and
//! URI (compared after RFC 3986 §6.2.2/§6.2.3 normalisation against the configured public base
//! URL, never the client's Host header), recent, carrying the server nonce when one is demanded,
//! and carrying the hash of the access token it accompanies. This module never looks at the
//! token itself and keeps no state: the caller checks that the proof's `jti` was not seen
//! before and that [`VerifiedProof::jkt`] equals the token's `cnf.jkt` (RFC 9449 §6.1, §11.1).

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};

use crate::jose::compact::{self, JoseHeader, JwsFault};
use crate::jose::jwk::{self, KeyRejection};
use crate::jose::{self, time};
use crate::token::TokenDigest;

/// Which proofs are accepted: algorithms and the `iat` window.
#[derive(Debug, Clone)]
pub struct ProofSettings {
    /// Algorithms a proof may use (FAPI 2.0: ES256, PS256, EdDSA); HMAC and `none` never pass.
    pub algorithms: Vec<Algorithm>,
    /// How old a proof's `iat` may be.
    pub max_age: Duration,
    /// How far in the future a proof's `iat` may be (clock skew).
    pub max_future: Duration,
}

impl Default for ProofSettings {
    fn default() -> Self {
        Self {
            algorithms: crate::config::AlgorithmSet::dpop_default().iter().collect(),
            // FAPI 2.0 clock rule: up to 10 s ahead, no more than 60 s old.
            max_age: Duration::from_secs(60),
            max_future: Duration::from_secs(10),
        }
    }
}

/// A proof that passed every check the proof alone allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProof {
    /// RFC 7638 SHA-256 thumbprint of the proof key, base64url without padding.
    pub jkt: String,
    /// The proof's unique id, for the caller's replay check.
    pub jti: String,
    /// When the client says it made the proof (seconds since the epoch).
    pub iat: i64,
    /// The `nonce` claim as sent, if any, for a caller whose nonces are not one fixed value.
    pub nonce: Option<String>,
}

/// Why a proof was refused; [`DpopFault::reason`] is the documented reason code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpopFault {
    /// Not a compact JWS with canonical base64url, JSON objects and well-typed members.
    Malformed,
    /// `alg` not allowed, symmetric, or not one the `jwk` may verify (key type, curve, label).
    AlgNotAllowed,
    /// The `jwk` is refused by the rules every key meets, a JWKS entry's too (`jose::jwk`).
    Key(KeyRejection),
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
    /// A required claim or header member is missing.
    MissingClaim,
    /// `ath` is not the hash of the access token.
    AthMismatch,
    /// A nonce was demanded and the proof does not carry it (RFC 9449 §8, §9).
    NonceRequired,
    /// The proof's `jti` was seen before; set by the caller's replay check, never by this module.
    Replayed,
}

impl DpopFault {
    /// The reason code for logs and metrics (as listed in the README).
    pub fn reason(self) -> &'static str {
        match self {
            Self::Malformed => "dpop_malformed",
            Self::AlgNotAllowed => "dpop_alg_not_allowed",
            // The fault keeps the key's exact reason; the documented codes group it.
            Self::Key(KeyRejection::PrivateMembers) => "dpop_private_key",
            Self::Key(
                KeyRejection::RsaModulusTooShort
                | KeyRejection::RsaModulusTooLong
                | KeyRejection::RsaModulusEven
                | KeyRejection::RsaExponent
                | KeyRejection::CurveUnsupported,
            ) => "dpop_alg_not_allowed",
            Self::Key(
                KeyRejection::NotAnObject
                | KeyRejection::KeyLength
                | KeyRejection::PointInvalid
                | KeyRejection::Malformed,
            ) => "dpop_malformed",
            Self::BadSignature => "dpop_signature_invalid",
            Self::TypMismatch => "dpop_typ_mismatch",
            Self::MethodMismatch => "dpop_htm_mismatch",
            Self::UriMismatch => "dpop_htu_mismatch",
            Self::Stale => "dpop_iat_out_of_window",
            Self::MissingClaim => "dpop_claim_missing",
            Self::AthMismatch => "dpop_ath_mismatch",
            Self::NonceRequired => "dpop_nonce_required",
            Self::Replayed => "dpop_replay",
        }
    }
}

impl From<JwsFault> for DpopFault {
    fn from(fault: JwsFault) -> Self {
        match fault {
            // RFC 9449 §4.3 item 4: `alg` is required like every other proof member.
            JwsFault::AlgMissing => Self::MissingClaim,
            JwsFault::Malformed | JwsFault::DuplicateMember | JwsFault::UnsupportedHeader => {
                Self::Malformed
            }
        }
    }
}

/// Longest `jti` kept for the replay store; a client needs no more to be unique.
const MAX_JTI_LEN: usize = 256;

/// Verifies `proof` for `method expected_htu` accompanying the access token whose digest is
/// `access_token`, at time `now`; when `nonce` is `Some`, the proof must carry exactly that nonce.
pub fn verify_proof(
    proof: &str,
    method: &http::Method,
    expected_htu: &str,
    access_token: &TokenDigest,
    nonce: Option<&str>,
    now: i64,
    settings: &ProofSettings,
) -> Result<VerifiedProof, DpopFault> {
    let jws = compact::parse(proof)?;
    let (alg, jwk, key) = check_header(&jws.header, settings)?;
    // Nothing in the claims is believed before the signature holds.
    if !jws.signature_holds(&key, alg) {
        return Err(DpopFault::BadSignature);
    }
    let checked = check_claims(
        &jws.claims,
        method,
        expected_htu,
        access_token,
        nonce,
        now,
        settings,
    )?;
    let jkt = jwk::thumbprint(jwk).ok_or(DpopFault::Malformed)?;
    Ok(VerifiedProof {
        jkt,
        jti: checked.jti,
        iat: checked.iat,
        nonce: checked.nonce,
    })
}

/// RFC 9449 §4.3 items 4, 5 and 7: `typ`, an allowed asymmetric `alg`, and a public `jwk` that
/// may verify it; returns the `jwk` (for its thumbprint) and its key.
fn check_header<'h>(
    header: &'h JoseHeader,
    settings: &ProofSettings,
) -> Result<(Algorithm, &'h Value, DecodingKey), DpopFault> {
    let typ = header.typ.as_deref().ok_or(DpopFault::MissingClaim)?;
    // RFC 9449 §4.2 and RFC 6838 §4.2: media type names compare case-insensitively.
    if !typ.eq_ignore_ascii_case("dpop+jwt") {
        return Err(DpopFault::TypMismatch);
    }
    let alg = jose::algorithm(&header.alg).ok_or(DpopFault::AlgNotAllowed)?;
    if !settings.algorithms.contains(&alg) {
        return Err(DpopFault::AlgNotAllowed);
    }
    let jwk = header.member("jwk").ok_or(DpopFault::MissingClaim)?;
    let key = jwk::public_key(jwk)
        .map_err(DpopFault::Key)?
        .filter(|key| key.algorithms().contains(&alg))
        .ok_or(DpopFault::AlgNotAllowed)?;
    Ok((alg, jwk, key.into_decoding_key()))
}

/// The claims that survive the checks.
struct CheckedClaims {
    jti: String,
    iat: i64,
    nonce: Option<String>,
}

/// RFC 9449 §4.3 items 3 and 8–12, in the RFC's order.
fn check_claims(
    claims: &Map<String, Value>,
    method: &http::Method,
    expected_htu: &str,
    access_token: &TokenDigest,
    nonce: Option<&str>,
    now: i64,
    settings: &ProofSettings,
) -> Result<CheckedClaims, DpopFault> {
    let jti = required_str(claims, "jti")?;
    let htm = required_str(claims, "htm")?;
    let htu = required_str(claims, "htu")?;
    let ath = required_str(claims, "ath")?;
    let iat = claims.get("iat").ok_or(DpopFault::MissingClaim)?;
    let iat = time::numeric_date(iat).ok_or(DpopFault::Malformed)?;
    if jti.is_empty() || jti.len() > MAX_JTI_LEN {
        return Err(DpopFault::Malformed);
    }
    // RFC 9110 §9.1: methods are case-sensitive.
    if htm != method.as_str() {
        return Err(DpopFault::MethodMismatch);
    }
    match (normalise_htu(htu), normalise_htu(expected_htu)) {
        (Some(actual), Some(expected)) if actual == expected => {}
        _ => return Err(DpopFault::UriMismatch),
    }
    let sent_nonce = claims.get("nonce").and_then(Value::as_str);
    if let Some(expected) = nonce
        && sent_nonce != Some(expected)
    {
        return Err(DpopFault::NonceRequired);
    }
    let max_age = i64::try_from(settings.max_age.as_secs()).unwrap_or(i64::MAX);
    let max_future = i64::try_from(settings.max_future.as_secs()).unwrap_or(i64::MAX);
    if iat < now.saturating_sub(max_age) || iat > now.saturating_add(max_future) {
        return Err(DpopFault::Stale);
    }
    // RFC 9449 §4.2: `ath` is base64url(SHA-256(ASCII access token)); both values are public.
    if TokenDigest::from_base64url(ath).as_ref() != Some(access_token) {
        return Err(DpopFault::AthMismatch);
    }
    Ok(CheckedClaims {
        jti: jti.to_owned(),
        iat,
        nonce: sent_nonce.map(str::to_owned),
    })
}

/// A string member: absent is [`DpopFault::MissingClaim`], another type is malformed.
fn required_str<'m>(map: &'m Map<String, Value>, name: &str) -> Result<&'m str, DpopFault> {
    match map.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(DpopFault::Malformed),
        None => Err(DpopFault::MissingClaim),
    }
}

/// RFC 9449 §4.3 item 9: the `http`/`https` URI without query and fragment, scheme and host
/// lower-cased and percent-encoding hex upper-cased (RFC 3986 §6.2.2.1), the default port
/// dropped and an empty path made `/` (§6.2.3). Userinfo, other schemes and relative references
/// give `None`. Percent-encoded octets are not decoded: a differently spelled path is refused.
pub fn normalise_htu(uri: &str) -> Option<String> {
    let without_fragment = uri.split('#').next()?;
    let without_query = without_fragment.split('?').next()?;
    let parsed: http::Uri = without_query.parse().ok()?;
    let scheme = parsed.scheme_str()?.to_ascii_lowercase();
    let default_port: u16 = match scheme.as_str() {
        "https" => 443,
        "http" => 80,
        _ => return None,
    };
    let authority = parsed.authority()?;
    // A userinfo part would let `https://gw.test@evil.test/` pass for another host's proof.
    if authority.as_str().contains('@') || authority.host().is_empty() {
        return None;
    }
    let host = authority.host().to_ascii_lowercase();
    // RFC 3986 §3.2.3: the port is digits, and an empty one is the default (§6.2.3). `http`
    // reads anything else after the last colon (`gw.test:evil`, `:+443`, `:99999`) as no port
    // at all, which would make such a URI the default port's.
    let port = match authority.as_str()[authority.host().len()..].strip_prefix(':') {
        None | Some("") => default_port,
        Some(digits) if digits.bytes().all(|b| b.is_ascii_digit()) => digits.parse().ok()?,
        Some(_) => return None,
    };
    let port = if port == default_port {
        String::new()
    } else {
        format!(":{port}")
    };
    let path = match parsed.path() {
        "" => "/".to_owned(),
        path => upper_case_percent_hex(path)?,
    };
    Some(format!("{scheme}://{host}{port}{path}"))
}

/// `%2f` and `%2F` are the same octet (RFC 3986 §6.2.2.1); a `%` without two hex digits is
/// not a URI.
fn upper_case_percent_hex(path: &str) -> Option<String> {
    let mut out = String::with_capacity(path.len());
    let mut chars = path.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '%' {
            for _ in 0..2 {
                let hex = chars.next().filter(char::is_ascii_hexdigit)?;
                out.push(hex.to_ascii_uppercase());
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests;
