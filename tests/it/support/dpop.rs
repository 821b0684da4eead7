//! A DPoP client key for the tests: generates a P-256 key, computes its RFC 7638 thumbprint,
//! and signs proofs (RFC 9449 §4.2) for a method, URI and access token.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

pub struct DpopKey {
    pkcs8: Vec<u8>,
    pub jwk: Value,
}

impl DpopKey {
    pub fn generate() -> Self {
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let point = pair.public_key().as_ref();
        let jwk = json!({"kty": "EC", "crv": "P-256", "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65])});
        Self {
            pkcs8: pkcs8.as_ref().to_vec(),
            jwk,
        }
    }

    pub fn thumbprint(&self) -> String {
        phigate::jose::jwk::thumbprint(&self.jwk).unwrap()
    }

    /// A proof for `method htu` carrying the hash of `token`.
    pub fn proof(&self, method: &str, htu: &str, token: &str) -> String {
        self.proof_with_nonce(method, htu, token, None)
    }

    /// Like [`DpopKey::proof`], with a server nonce.
    pub fn proof_with_nonce(
        &self,
        method: &str,
        htu: &str,
        token: &str,
        nonce: Option<&str>,
    ) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let ath = URL_SAFE_NO_PAD.encode(phigate::jose::sha256(token.as_bytes()));
        let mut claims = json!({"jti": uuid::Uuid::new_v4().to_string(), "htm": method, "htu": htu, "iat": now, "ath": ath});
        if let Some(nonce) = nonce {
            claims["nonce"] = json!(nonce);
        }
        self.sign(
            &json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk}),
            &claims,
        )
    }

    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = jsonwebtoken::crypto::sign(
            input.as_bytes(),
            &EncodingKey::from_ec_der(&self.pkcs8),
            Algorithm::ES256,
        )
        .unwrap();
        format!("{input}.{signature}")
    }
}
