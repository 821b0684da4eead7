//! Token variants for the probe's attacks. With the issuer's private key (`--issuer-key`) a
//! variant is re-signed and so realistic: only the claim under test is wrong. Without it the
//! given token is mutated and keeps its old signature, so the case still shows a refusal but
//! cannot tell a gateway that checks the claim from one that only checks signatures. Attacker
//! keys (embedded `jwk`, `jku`, DPoP proofs) are generated here; the issuer's are never guessed.
//! Signing goes through `jsonwebtoken::crypto::sign`, as the development issuer's does.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Map, Value, json};

use super::ProbeError;

/// The valid token the run was given, taken apart.
#[derive(Debug, Clone)]
pub struct Token {
    /// The token as given.
    pub text: String,
    /// Its JOSE header.
    pub header: Map<String, Value>,
    /// Its claims.
    pub claims: Map<String, Value>,
    /// Its signature segment.
    pub signature: String,
}

/// How a variant was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provenance {
    /// Re-signed with the issuer's key: only the change under test is wrong.
    Signed,
    /// The given token's signature kept over changed contents.
    Mutated,
}

/// The issuer's private key and the algorithm it signs with.
pub struct IssuerKey {
    alg: Algorithm,
    key: EncodingKey,
}

/// An attacker's key pair: ES256 on P-256, generated for this run.
pub struct AttackerKey {
    key: EncodingKey,
    /// The public JWK.
    pub jwk: Value,
}

/// Makes token variants from the given token and, when held, the issuer's key.
pub struct Forger {
    /// The given token.
    pub token: Token,
    issuer_key: Option<IssuerKey>,
}

// === impl Token ===

impl Token {
    /// Takes a compact JWS apart; refuses anything that is not one.
    pub fn parse(text: &str) -> Result<Self, ProbeError> {
        let bad = || {
            ProbeError::Usage("--token is not a compact JWS (header.claims.signature)".to_owned())
        };
        let mut segments = text.split('.');
        let (Some(header), Some(claims), Some(signature), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return Err(bad());
        };
        let object = |segment: &str| -> Option<Map<String, Value>> {
            let bytes = URL_SAFE_NO_PAD.decode(segment).ok()?;
            serde_json::from_slice(&bytes).ok()
        };
        Ok(Self {
            text: text.to_owned(),
            header: object(header).ok_or_else(bad)?,
            claims: object(claims).ok_or_else(bad)?,
            signature: signature.to_owned(),
        })
    }

    /// A header member as a string.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header.get(name).and_then(Value::as_str)
    }

    /// A claim as a string.
    pub fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// The header and claims segments as sent.
    pub fn signing_input(&self) -> &str {
        let end = self.text.len() - self.signature.len() - 1;
        self.text.get(..end).unwrap_or_default()
    }
}

// === impl IssuerKey ===

impl IssuerKey {
    /// Reads a PEM private key (PKCS#8, or PKCS#1 for RSA) for `alg`.
    pub fn from_pem(pem: &[u8], alg: Algorithm) -> Result<Self, ProbeError> {
        use jsonwebtoken::Algorithm::{
            ES256, ES384, EdDSA, PS256, PS384, PS512, RS256, RS384, RS512,
        };
        let key = match alg {
            ES256 | ES384 => EncodingKey::from_ec_pem(pem),
            RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => EncodingKey::from_rsa_pem(pem),
            EdDSA => EncodingKey::from_ed_pem(pem),
            other => {
                return Err(ProbeError::Usage(format!(
                    "the token's algorithm {other:?} is not one the probe signs with"
                )));
            }
        }
        .map_err(|err| ProbeError::Usage(format!("--issuer-key: {err}")))?;
        Ok(Self { alg, key })
    }
}

// === impl AttackerKey ===

impl AttackerKey {
    /// A new P-256 key pair.
    pub fn generate() -> Result<Self, ProbeError> {
        let failed = |_| ProbeError::Crypto;
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(failed)?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .map_err(|_| ProbeError::Crypto)?;
        let point = pair.public_key().as_ref();
        let coordinates = point.get(1..).ok_or(ProbeError::Crypto)?;
        let (x, y) = coordinates.split_at(coordinates.len() / 2);
        Ok(Self {
            key: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk: json!({
                "kty": "EC",
                "crv": "P-256",
                "x": URL_SAFE_NO_PAD.encode(x),
                "y": URL_SAFE_NO_PAD.encode(y),
            }),
        })
    }

    /// `header` and `claims` signed with ES256 by this key.
    pub fn sign(&self, header: &Value, claims: &Value) -> Result<String, ProbeError> {
        sign(header, claims, &self.key, Algorithm::ES256)
    }

    /// The RFC 7638 thumbprint of the public key (DPoP `cnf.jkt`).
    pub fn thumbprint(&self) -> Option<String> {
        crate::jose::jwk::thumbprint(&self.jwk)
    }
}

// === impl Forger ===

impl Forger {
    /// A forger for `token`, re-signing when `issuer_key` (PEM) is given.
    pub fn new(token: Token, issuer_key: Option<&[u8]>) -> Result<Self, ProbeError> {
        let issuer_key = match issuer_key {
            Some(pem) => {
                let alg = token
                    .header_str("alg")
                    .and_then(crate::jose::algorithm)
                    .ok_or_else(|| {
                        ProbeError::Usage(
                            "the token's `alg` is not an asymmetric algorithm".to_owned(),
                        )
                    })?;
                Some(IssuerKey::from_pem(pem, alg)?)
            }
            None => None,
        };
        Ok(Self { token, issuer_key })
    }

    /// True when variants are re-signed.
    pub fn signs(&self) -> bool {
        self.issuer_key.is_some()
    }

    /// The given token with claims changed by `edit`: re-signed, or with its old signature.
    pub fn with_claims(&self, edit: impl FnOnce(&mut Map<String, Value>)) -> (String, Provenance) {
        let mut claims = self.token.claims.clone();
        edit(&mut claims);
        self.variant(
            &Value::Object(self.token.header.clone()),
            &Value::Object(claims),
        )
    }

    /// The given token with its header changed by `edit`: re-signed, or with its old signature.
    pub fn with_header(&self, edit: impl FnOnce(&mut Map<String, Value>)) -> (String, Provenance) {
        let mut header = self.token.header.clone();
        edit(&mut header);
        self.variant(
            &Value::Object(header),
            &Value::Object(self.token.claims.clone()),
        )
    }

    /// `header` and `claims`, signed by the issuer's key when held.
    pub fn variant(&self, header: &Value, claims: &Value) -> (String, Provenance) {
        if let Some(issuer) = &self.issuer_key
            && let Ok(token) = sign(header, claims, &issuer.key, issuer.alg)
        {
            return (token, Provenance::Signed);
        }
        (
            format!(
                "{}.{}.{}",
                encode(header),
                encode(claims),
                self.token.signature
            ),
            Provenance::Mutated,
        )
    }

    /// A token whose header is exactly `header_text` (duplicate members and all) over the
    /// given claims: re-signed, or with the old signature.
    pub fn with_header_text(&self, header_text: &str) -> (String, Provenance) {
        let claims = encode(&Value::Object(self.token.claims.clone()));
        let input = format!("{}.{claims}", URL_SAFE_NO_PAD.encode(header_text));
        if let Some(issuer) = &self.issuer_key
            && let Ok(signature) =
                jsonwebtoken::crypto::sign(input.as_bytes(), &issuer.key, issuer.alg)
        {
            return (format!("{input}.{signature}"), Provenance::Signed);
        }
        (
            format!("{input}.{}", self.token.signature),
            Provenance::Mutated,
        )
    }

    /// The token with `alg` set to `alg` and an empty signature (RFC 7519 §6 unsecured JWT).
    pub fn unsecured(&self, alg: &str) -> String {
        let mut header = self.token.header.clone();
        header.insert("alg".to_owned(), json!(alg));
        format!(
            "{}.{}.",
            encode(&Value::Object(header)),
            encode(&Value::Object(self.token.claims.clone()))
        )
    }

    /// The token with `alg: HS256`, HMAC-signed with `secret` (the issuer's public key material).
    pub fn hmac(&self, secret: &[u8]) -> String {
        let mut header = self.token.header.clone();
        header.insert("alg".to_owned(), json!("HS256"));
        let input = format!(
            "{}.{}",
            encode(&Value::Object(header)),
            encode(&Value::Object(self.token.claims.clone()))
        );
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
        let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// The token's header and claims signed by `attacker`, with `header_extra` merged into the
    /// header (an embedded `jwk`, a `jku`).
    pub fn by_attacker(
        &self,
        attacker: &AttackerKey,
        header_extra: Value,
    ) -> Result<String, ProbeError> {
        let mut header = self.token.header.clone();
        header.insert("alg".to_owned(), json!("ES256"));
        if let Value::Object(extra) = header_extra {
            header.extend(extra);
        }
        attacker.sign(
            &Value::Object(header),
            &Value::Object(self.token.claims.clone()),
        )
    }
}

/// base64url (no padding) of `value`'s JSON text.
pub fn encode(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

fn sign(
    header: &Value,
    claims: &Value,
    key: &EncodingKey,
    alg: Algorithm,
) -> Result<String, ProbeError> {
    let input = format!("{}.{}", encode(header), encode(claims));
    let signature =
        jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).map_err(|_| ProbeError::Crypto)?;
    Ok(format!("{input}.{signature}"))
}

/// The current time in seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> Token {
        let header = encode(&json!({"alg": "ES256", "kid": "k1", "typ": "at+jwt"}));
        let claims = encode(&json!({"sub": "alice", "exp": 2_000_000_000}));
        Token::parse(&format!("{header}.{claims}.c2ln")).unwrap()
    }

    #[test]
    fn a_token_is_taken_apart_and_rebuilt_with_its_signature_when_no_key_is_held() {
        let forger = Forger::new(token(), None).unwrap();
        assert_eq!(forger.token.header_str("kid"), Some("k1"));
        let (mutated, provenance) = forger.with_claims(|c| {
            c.insert("sub".to_owned(), json!("mallory"));
        });
        assert_eq!(provenance, Provenance::Mutated);
        assert!(mutated.ends_with(".c2ln"));
        assert_eq!(
            Token::parse(&mutated).unwrap().claim_str("sub"),
            Some("mallory")
        );
        assert!(forger.unsecured("none").ends_with('.'));
        assert!(Token::parse("a.b").is_err());
    }

    #[test]
    fn attacker_tokens_carry_the_attackers_key() {
        let forger = Forger::new(token(), None).unwrap();
        let attacker = AttackerKey::generate().unwrap();
        let forged = forger
            .by_attacker(&attacker, json!({"jwk": attacker.jwk.clone()}))
            .unwrap();
        let parsed = Token::parse(&forged).unwrap();
        assert_eq!(parsed.header["jwk"], attacker.jwk);
        assert_eq!(parsed.header_str("kid"), Some("k1"));
        assert!(attacker.thumbprint().is_some());
    }
}
