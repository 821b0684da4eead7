//! JSON Web Keys (RFC 7517) turned into public signature-verification keys, one way for a JWKS
//! entry and a DPoP proof's `jwk` header alike: private or symmetric material is refused
//! outright, a key is checked against its algorithm family's floor (RFC 7518 §6, RFC 8037 §2,
//! FAPI 2.0 "Cryptography and secrets") before it can verify anything, and a key's own `alg`
//! narrows what it may verify (RFC 7517 §4.4). Also the RFC 7638 thumbprint. Which key is
//! trusted, and for which algorithms, is the caller's decision, never this module's.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};

/// JWK members only a private or symmetric key has (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];
/// FAPI 2.0 "Cryptography and secrets": RSA keys of at least 2048 bits.
const MIN_RSA_BITS: usize = 2048;
/// The largest modulus the verifier accepts (aws-lc-rs `RSA_*_2048_8192_*`); a bigger one could
/// never verify and only costs CPU per token (R-M03).
const MAX_RSA_BITS: usize = 8192;
/// An RSA exponent longer than this is not a real key (65537 is three bytes).
const MAX_RSA_EXPONENT_BYTES: usize = 8;

const RSA_FAMILY: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// Why a JWK was refused. A JWKS logs the reason; a DPoP proof carries it in its fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRejection {
    /// The key is not a JSON object.
    NotAnObject,
    /// `d`, `p`, `q`, `dp`, `dq`, `qi`, `oth`, `k` or `kty: oct`: private or symmetric key
    /// material was made public (RFC 7518 §6).
    PrivateMembers,
    /// RSA modulus under 2048 significant bits.
    RsaModulusTooShort,
    /// RSA modulus over 8192 bits.
    RsaModulusTooLong,
    /// An even RSA modulus: not a product of two odd primes.
    RsaModulusEven,
    /// RSA exponent even, 1, empty or longer than 8 bytes.
    RsaExponent,
    /// `EC` on a curve other than P-256/P-384, or `OKP` other than Ed25519.
    CurveUnsupported,
    /// Coordinates or key of the wrong length for the curve.
    KeyLength,
    /// The EC point is not on its curve.
    PointInvalid,
    /// Missing members, non-canonical base64url, or an integer with leading zero octets.
    Malformed,
}

impl KeyRejection {
    /// The reason code in the JWKS log line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotAnObject => "not_an_object",
            Self::PrivateMembers => "private_members",
            Self::RsaModulusTooShort => "rsa_modulus_too_short",
            Self::RsaModulusTooLong => "rsa_modulus_too_long",
            Self::RsaModulusEven => "rsa_modulus_even",
            Self::RsaExponent => "rsa_exponent_invalid",
            Self::CurveUnsupported => "curve_unsupported",
            Self::KeyLength => "key_length_invalid",
            Self::PointInvalid => "point_invalid",
            Self::Malformed => "malformed",
        }
    }
}

/// A public key that cleared its family's floor, and the algorithms it may verify.
pub struct PublicKey {
    /// The family's algorithms, narrowed by the JWK's own `alg` when it has one.
    algorithms: Vec<Algorithm>,
    key: DecodingKey,
}

impl PublicKey {
    /// The algorithms this key may verify, before any caller's allow-list.
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    /// The key material for jsonwebtoken.
    pub fn into_decoding_key(self) -> DecodingKey {
        self.key
    }
}

/// The public key in `jwk`. `Ok(None)` is a key that is not for verifying signatures (another
/// `use` or `key_ops`, an unknown `kty`): a JWKS skips it (RFC 7517 §5), a proof cannot use it.
pub fn public_key(jwk: &Value) -> Result<Option<PublicKey>, KeyRejection> {
    let object = jwk.as_object().ok_or(KeyRejection::NotAnObject)?;
    let text = |name: &str| object.get(name).and_then(Value::as_str);
    // Checked first: published private or symmetric material is an alarm whatever else the
    // entry holds (RFC 8725 §3.1), and a proof carrying it is refused (RFC 9449 §4.3 item 7).
    if PRIVATE_MEMBERS
        .iter()
        .any(|name| object.contains_key(*name))
        || text("kty") == Some("oct")
    {
        return Err(KeyRejection::PrivateMembers);
    }
    // RFC 7517 §4.2–4.3: only signature-verification keys are ours.
    if text("use").is_some_and(|intended| intended != "sig") {
        return Ok(None);
    }
    if let Some(ops) = object.get("key_ops") {
        let verifies = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op == "verify"));
        if !verifies {
            return Ok(None);
        }
    }
    // Strength comes before any allow-list: a weak key is an alarm even where no caller would
    // have used it.
    let (family, key) = match text("kty") {
        Some("RSA") => rsa(object)?,
        Some("EC") => ec(object)?,
        Some("OKP") => okp(object)?,
        _ => return Ok(None),
    };
    // RFC 7517 §4.4: a key labelled for one algorithm verifies that one only; a label that
    // names no algorithm phigate verifies leaves it none.
    let algorithms = match object.get("alg") {
        None => family.to_vec(),
        Some(label) => {
            let label = label.as_str().and_then(super::algorithm);
            family
                .iter()
                .copied()
                .filter(|alg| label == Some(*alg))
                .collect()
        }
    };
    Ok(Some(PublicKey { algorithms, key }))
}

type Material = (&'static [Algorithm], DecodingKey);

/// RFC 7518 §6.3.1: `n` of 2048 to 8192 real bits and odd, `e` odd, above 1, at most 8 bytes.
fn rsa(object: &Map<String, Value>) -> Result<Material, KeyRejection> {
    let n = unsigned(object.get("n"))?;
    let bits = significant_bits(&n);
    if bits < MIN_RSA_BITS {
        return Err(KeyRejection::RsaModulusTooShort);
    }
    if bits > MAX_RSA_BITS {
        return Err(KeyRejection::RsaModulusTooLong);
    }
    if n.last().is_none_or(|low| low % 2 == 0) {
        return Err(KeyRejection::RsaModulusEven);
    }
    let e = unsigned(object.get("e"))?;
    // e = 1 makes every signature its own message; an even e is no RSA key at all.
    let odd = e.last().is_some_and(|low| low % 2 == 1);
    if e.len() > MAX_RSA_EXPONENT_BYTES || !odd || e == [1] {
        return Err(KeyRejection::RsaExponent);
    }
    Ok((RSA_FAMILY, DecodingKey::from_rsa_raw_components(&n, &e)))
}

/// RFC 7518 §6.2.1: P-256 or P-384, `x` and `y` exactly the curve's size, a point on the curve.
fn ec(object: &Map<String, Value>) -> Result<Material, KeyRejection> {
    let (family, length, algorithm): (&'static [Algorithm], usize, _) =
        match object.get("crv").and_then(Value::as_str) {
            Some("P-256") => (
                &[Algorithm::ES256],
                32,
                &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
            ),
            Some("P-384") => (
                &[Algorithm::ES384],
                48,
                &aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED,
            ),
            // P-521 (no ES512 here), secp256k1, brainpool, unknown or missing.
            _ => return Err(KeyRejection::CurveUnsupported),
        };
    let (x, x_bytes) = exact(object.get("x"), length)?;
    let (y, y_bytes) = exact(object.get("y"), length)?;
    // SEC 1 §2.3.3 uncompressed point; aws-lc checks that it lies on the curve.
    let point = [&[0x04][..], &x_bytes, &y_bytes].concat();
    aws_lc_rs::signature::ParsedPublicKey::new(algorithm, &point)
        .map_err(|_| KeyRejection::PointInvalid)?;
    let key = DecodingKey::from_ec_components(x, y).map_err(|_| KeyRejection::Malformed)?;
    Ok((family, key))
}

/// RFC 8037 §2: Ed25519 only (Ed448 has no verifier here; X25519/X448 are key-agreement keys),
/// `x` exactly 32 bytes.
fn okp(object: &Map<String, Value>) -> Result<Material, KeyRejection> {
    if object.get("crv").and_then(Value::as_str) != Some("Ed25519") {
        return Err(KeyRejection::CurveUnsupported);
    }
    let (x, _) = exact(object.get("x"), 32)?;
    let key = DecodingKey::from_ed_components(x).map_err(|_| KeyRejection::Malformed)?;
    Ok((&[Algorithm::EdDSA], key))
}

fn decode(member: Option<&Value>) -> Result<(&str, Vec<u8>), KeyRejection> {
    // Strict: no padding, no spare trailing bits, nothing outside the URL-safe alphabet.
    let text = member
        .and_then(Value::as_str)
        .ok_or(KeyRejection::Malformed)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| KeyRejection::Malformed)?;
    Ok((text, bytes))
}

/// A fixed-size octet string, such as a curve coordinate (RFC 7518 §6.2.1.2).
fn exact(member: Option<&Value>, length: usize) -> Result<(&str, Vec<u8>), KeyRejection> {
    let (text, bytes) = decode(member)?;
    if bytes.len() == length {
        Ok((text, bytes))
    } else {
        Err(KeyRejection::KeyLength)
    }
}

/// RFC 7518 §2 Base64urlUInt: big-endian in the fewest octets, so a leading zero octet is
/// malformed rather than a longer key; one key then has exactly one spelling and thumbprint.
fn unsigned(member: Option<&Value>) -> Result<Vec<u8>, KeyRejection> {
    let (_, bytes) = decode(member)?;
    match bytes.as_slice() {
        [0, _, ..] => Err(KeyRejection::Malformed),
        _ => Ok(bytes),
    }
}

/// Bit length of a big-endian unsigned integer: bits are counted on the value, not the
/// encoding, so a 256-byte modulus with a clear top bit is 2047 bits.
fn significant_bits(bytes: &[u8]) -> usize {
    match bytes.first() {
        None => 0,
        Some(top) => (bytes.len() - 1) * 8 + (8 - top.leading_zeros() as usize),
    }
}

/// RFC 7638 §3.2 thumbprint of a public EC, RSA or OKP `jwk`: SHA-256 over its required members
/// in lexicographic order without whitespace, base64url without padding.
pub fn thumbprint(jwk: &Value) -> Option<String> {
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
    Some(URL_SAFE_NO_PAD.encode(super::sha256(format!("{{{canonical}}}").as_bytes())))
}

// The fixtures serve the JWKS tests too.
#[cfg(test)]
pub(crate) mod tests;
