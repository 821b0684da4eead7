//! DPoP proof verification (RFC 9449 §4.2–4.3): a proof is accepted only as a compact JWS of
//! type `dpop+jwt` with canonical base64url segments and duplicate-free JSON, signed with an
//! allowed asymmetric algorithm by the public key in its own `jwk` header (never a private or
//! symmetric key, and of the family the algorithm names), made for this request's method and
//! URI (compared after RFC 3986 §6.2.2/§6.2.3 normalisation against the configured public base
//! URL, never the client's Host header), recent, carrying the server nonce when one is demanded,
//! and carrying the hash of the access token it accompanies. This module never looks at the
//! token itself and keeps no state: the caller checks that the proof's `jti` was not seen
//! before and that [`VerifiedProof::jkt`] equals the token's `cnf.jkt` (RFC 9449 §6.1, §11.1).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};

use crate::jose::{
    self,
    compact::{self, JoseHeader, JwsFault},
    sha256,
};

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
            algorithms: vec![Algorithm::ES256, Algorithm::PS256, Algorithm::EdDSA],
            // FAPI 2.0 clock rule: up to 10 s ahead, no more than 60 s old.
            max_age: Duration::from_secs(60),
            max_future: Duration::from_secs(10),
        }
    }
}

impl ProofSettings {
    /// The `algs` challenge parameter value, e.g. `ES256 PS256 EdDSA` (RFC 9449 §7.1).
    pub fn algs(&self) -> String {
        self.algorithms
            .iter()
            .map(|a| format!("{a:?}"))
            .collect::<Vec<_>>()
            .join(" ")
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
    /// `alg` not allowed, symmetric, or not matching the `jwk`'s key type, curve or size.
    AlgNotAllowed,
    /// The `jwk` holds private or symmetric key material.
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
            Self::PrivateKey => "dpop_private_key",
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

/// JWK members only a private or symmetric key has (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Longest `jti` kept for the replay store; a client needs no more to be unique.
const MAX_JTI_LEN: usize = 256;

/// Verifies `proof` for `method expected_htu` accompanying `access_token` at time `now`; when
/// `nonce` is `Some`, the proof must carry exactly that nonce.
pub fn verify_proof(
    proof: &str,
    method: &http::Method,
    expected_htu: &str,
    access_token: &str,
    nonce: Option<&str>,
    now: i64,
    settings: &ProofSettings,
) -> Result<VerifiedProof, DpopFault> {
    let jws = compact::parse(proof)?;
    let (alg, jwk) = check_header(&jws.header, settings)?;
    let key = decoding_key(jwk, alg)?;
    // Nothing in the claims is believed before the signature holds.
    if !jsonwebtoken::crypto::verify(jws.signature, jws.signing_input.as_bytes(), &key, alg)
        .map_err(|_| DpopFault::BadSignature)?
    {
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
    let jkt = jwk_thumbprint(&Value::Object(jwk.clone())).ok_or(DpopFault::Malformed)?;
    Ok(VerifiedProof {
        jkt,
        jti: checked.jti,
        iat: checked.iat,
        nonce: checked.nonce,
    })
}

/// RFC 9449 §4.3 items 4, 5 and 7: `typ`, an allowed asymmetric `alg`, a public `jwk`.
fn check_header<'h>(
    header: &'h JoseHeader,
    settings: &ProofSettings,
) -> Result<(Algorithm, &'h Map<String, Value>), DpopFault> {
    let typ = header.typ.as_deref().ok_or(DpopFault::MissingClaim)?;
    // RFC 9449 §4.2 and RFC 6838 §4.2: media type names compare case-insensitively.
    if !typ.eq_ignore_ascii_case("dpop+jwt") {
        return Err(DpopFault::TypMismatch);
    }
    let alg = jose::algorithm(&header.alg).ok_or(DpopFault::AlgNotAllowed)?;
    if !settings.algorithms.contains(&alg) {
        return Err(DpopFault::AlgNotAllowed);
    }
    let jwk = match header.member("jwk") {
        None => return Err(DpopFault::MissingClaim),
        Some(Value::Object(jwk)) => jwk,
        Some(_) => return Err(DpopFault::Malformed),
    };
    // RFC 9449 §4.3 item 7: a proof carrying private or symmetric key material is refused
    // outright, whatever else it holds.
    if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m))
        || jwk.get("kty").and_then(Value::as_str) == Some("oct")
    {
        return Err(DpopFault::PrivateKey);
    }
    // RFC 7517 §4.4: a key labelled for another algorithm is not used with this one.
    if let Some(label) = jwk.get("alg")
        && label.as_str().and_then(jose::algorithm) != Some(alg)
    {
        return Err(DpopFault::AlgNotAllowed);
    }
    Ok((alg, jwk))
}

/// The public key of `jwk` when its type, curve and size fit `alg` (RFC 7518 §6, RFC 8037 §2).
fn decoding_key(jwk: &Map<String, Value>, alg: Algorithm) -> Result<DecodingKey, DpopFault> {
    let member = |name: &str| match jwk.get(name) {
        Some(Value::String(s)) => Ok(s.as_str()),
        Some(_) => Err(DpopFault::Malformed),
        None => Err(DpopFault::MissingClaim),
    };
    let kty = member("kty")?;
    let key = match alg {
        Algorithm::ES256 | Algorithm::ES384 => {
            let (crv, size) = if alg == Algorithm::ES256 {
                ("P-256", 32)
            } else {
                ("P-384", 48)
            };
            if kty != "EC" || member("crv")? != crv {
                return Err(DpopFault::AlgNotAllowed);
            }
            let (x, y) = (member("x")?, member("y")?);
            exact_len(x, size)?;
            exact_len(y, size)?;
            DecodingKey::from_ec_components(x, y)
        }
        Algorithm::EdDSA => {
            if kty != "OKP" || member("crv")? != "Ed25519" {
                return Err(DpopFault::AlgNotAllowed);
            }
            let x = member("x")?;
            exact_len(x, 32)?;
            DecodingKey::from_ed_components(x)
        }
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => {
            if kty != "RSA" {
                return Err(DpopFault::AlgNotAllowed);
            }
            let (n, e) = (member("n")?, member("e")?);
            // FAPI 2.0: RSA keys of at least 2048 bits.
            if unsigned_bits(n)? < 2048 || unsigned_bits(e)? < 2 {
                return Err(DpopFault::AlgNotAllowed);
            }
            DecodingKey::from_rsa_components(n, e)
        }
        _ => return Err(DpopFault::AlgNotAllowed),
    };
    key.map_err(|_| DpopFault::Malformed)
}

/// Refuses a base64url coordinate that is not exactly `len` bytes.
fn exact_len(b64: &str, len: usize) -> Result<(), DpopFault> {
    match URL_SAFE_NO_PAD.decode(b64) {
        Ok(bytes) if bytes.len() == len => Ok(()),
        _ => Err(DpopFault::Malformed),
    }
}

/// Bit length of a base64url big-endian unsigned integer; RFC 7518 §6.3.1.1 forbids leading
/// zero octets, so one is malformed rather than silently shortening the key.
fn unsigned_bits(b64: &str) -> Result<usize, DpopFault> {
    let bytes = URL_SAFE_NO_PAD
        .decode(b64)
        .map_err(|_| DpopFault::Malformed)?;
    match bytes.first() {
        Some(&first) if first != 0 => {
            Ok((bytes.len() - 1) * 8 + (8 - first.leading_zeros() as usize))
        }
        _ => Err(DpopFault::Malformed),
    }
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
    access_token: &str,
    nonce: Option<&str>,
    now: i64,
    settings: &ProofSettings,
) -> Result<CheckedClaims, DpopFault> {
    let jti = required_str(claims, "jti")?;
    let htm = required_str(claims, "htm")?;
    let htu = required_str(claims, "htu")?;
    let ath = required_str(claims, "ath")?;
    let iat = numeric_date(claims.get("iat").ok_or(DpopFault::MissingClaim)?)?;
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
    if ath != URL_SAFE_NO_PAD.encode(sha256(access_token.as_bytes())) {
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

/// RFC 7519 §2: a NumericDate may carry a fraction; whole seconds are enough for the window.
fn numeric_date(value: &Value) -> Result<i64, DpopFault> {
    if let Some(seconds) = value.as_i64() {
        return Ok(seconds);
    }
    match value.as_f64() {
        // `as` saturates, and a saturated value falls outside any window.
        Some(seconds) if seconds.is_finite() => Ok(seconds.floor() as i64),
        _ => Err(DpopFault::Malformed),
    }
}

/// RFC 7638 §3.2 thumbprint of a public EC, RSA or OKP `jwk`: SHA-256 over its required members
/// in lexicographic order without whitespace, base64url without padding.
pub fn jwk_thumbprint(jwk: &Value) -> Option<String> {
    let text = |name: &str| jwk.get(name).and_then(Value::as_str);
    // §3.2: only the required members, already in lexicographic order; extra members such as
    // `kid` or `alg` never change the thumbprint (§3.3).
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
    let canonical = members
        .iter()
        .map(|(name, value)| format!("{}:{}", Value::from(*name), Value::from(*value)))
        .collect::<Vec<_>>()
        .join(",");
    Some(URL_SAFE_NO_PAD.encode(sha256(format!("{{{canonical}}}").as_bytes())))
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
    let default_port = match scheme.as_str() {
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
    let port = match authority.port_u16() {
        Some(port) if port != default_port => format!(":{port}"),
        _ => String::new(),
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
