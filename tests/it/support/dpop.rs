//! The demo's DPoP client key (`phigate::demo::DpopKey`) for tests, whose failures are panics.

use serde_json::Value;

pub struct DpopKey {
    key: phigate::demo::DpopKey,
    pub jwk: Value,
}

impl DpopKey {
    pub fn generate() -> Self {
        let key = phigate::demo::DpopKey::generate().unwrap();
        let jwk = key.jwk.clone();
        Self { key, jwk }
    }

    pub fn thumbprint(&self) -> String {
        self.key.thumbprint()
    }

    /// A proof for `method htu` carrying the hash of `token`.
    pub fn proof(&self, method: &str, htu: &str, token: &str) -> String {
        self.key.proof(method, htu, token).unwrap()
    }

    /// Like [`DpopKey::proof`], with a server nonce.
    pub fn proof_with_nonce(
        &self,
        method: &str,
        htu: &str,
        token: &str,
        nonce: Option<&str>,
    ) -> String {
        self.key
            .proof_with_nonce(method, htu, token, nonce)
            .unwrap()
    }

    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        self.key.sign(header, claims).unwrap()
    }
}
