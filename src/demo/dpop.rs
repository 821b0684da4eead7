//! A DPoP client key (RFC 9449) for `phigate demo` and tests: a generated P-256 key, its
//! RFC 7638 thumbprint for a token's `cnf.jkt`, and proofs for a method, URI and access token.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject as _;
use serde_json::{Value, json};

use super::issuer::IssuerError;

/// A client's proof-of-possession key.
pub struct DpopKey {
    pkcs8: Vec<u8>,
    /// The public key as a JWK, as every proof carries it.
    pub jwk: Value,
}

impl DpopKey {
    /// A fresh P-256 key.
    pub fn generate() -> Result<Self, IssuerError> {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| IssuerError::KeyGeneration)?;
        Self::from_pkcs8(pkcs8.as_ref())
    }

    /// A P-256 key from a PKCS#8 `PRIVATE KEY` PEM, as [`DpopKey::to_pem`] writes it.
    pub fn from_pem(pem: &[u8]) -> Result<Self, IssuerError> {
        let der =
            PrivatePkcs8KeyDer::from_pem_slice(pem).map_err(|_| IssuerError::KeyGeneration)?;
        Self::from_pkcs8(der.secret_pkcs8_der())
    }

    /// The private key as a PKCS#8 `PRIVATE KEY` PEM (RFC 7468), for a client to keep.
    pub fn to_pem(&self) -> String {
        super::issuer::pem("PRIVATE KEY", &self.pkcs8)
    }

    fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, IssuerError> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
            .map_err(|_| IssuerError::KeyGeneration)?;
        // An uncompressed point: 0x04, then x and y, 32 bytes each.
        let point = pair.public_key().as_ref();
        let (x, y) = point
            .get(1..65)
            .ok_or(IssuerError::KeyGeneration)?
            .split_at(32);
        let jwk = json!({
            "kty": "EC",
            "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(x),
            "y": URL_SAFE_NO_PAD.encode(y),
        });
        Ok(Self {
            pkcs8: pkcs8.to_vec(),
            jwk,
        })
    }

    /// The RFC 7638 thumbprint a bound token carries as `cnf.jkt`.
    pub fn thumbprint(&self) -> String {
        crate::jose::jwk::thumbprint(&self.jwk).unwrap_or_default()
    }

    /// A proof for `method htu` carrying the hash of `token`, issued now.
    pub fn proof(&self, method: &str, htu: &str, token: &str) -> Result<String, IssuerError> {
        self.proof_with_nonce(method, htu, token, None)
    }

    /// Like [`DpopKey::proof`], with a server nonce.
    pub fn proof_with_nonce(
        &self,
        method: &str,
        htu: &str,
        token: &str,
        nonce: Option<&str>,
    ) -> Result<String, IssuerError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let ath = URL_SAFE_NO_PAD.encode(crate::jose::sha256(token.as_bytes()));
        let mut claims = json!({
            "jti": uuid::Uuid::new_v4().to_string(),
            "htm": method,
            "htu": htu,
            "iat": now,
            "ath": ath,
        });
        if let Some(nonce) = nonce {
            claims["nonce"] = json!(nonce);
        }
        self.sign(
            &json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk}),
            &claims,
        )
    }

    /// Signs `header` and `claims` exactly as given, for crafted proofs.
    pub fn sign(&self, header: &Value, claims: &Value) -> Result<String, IssuerError> {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = jsonwebtoken::crypto::sign(
            input.as_bytes(),
            &EncodingKey::from_ec_der(&self.pkcs8),
            Algorithm::ES256,
        )?;
        Ok(format!("{input}.{signature}"))
    }
}
