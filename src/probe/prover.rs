//! `--dpop-key`: possession proven for a DPoP-bound `--token` (RFC 9449), so that a gateway
//! which takes only DPoP-bound tokens — phigate with `require_binding: dpop`, as in
//! `examples/patient-app-dpop` — can be probed at all. Every request that carries one `Bearer`
//! credential shaped like a compact JWS (the token, or a variant of it) is sent as `DPoP` with a
//! fresh proof for its method and URL signed by the key; the DPoP cases run with the token and
//! key given instead of forging a bound token. A server nonce (§8) is learnt from any answer,
//! and a request refused for want of one is sent once more with it.

use std::sync::{Mutex, PoisonError};

use super::ProbeError;
use super::forge::Token;
use super::target::{Answer, Outgoing};
use crate::demo::DpopKey;

/// The client's DPoP key, the URL its proofs name, and the latest server nonce.
pub struct Prover {
    key: DpopKey,
    htu_base: String,
    nonce: Mutex<Option<String>>,
}

impl Prover {
    /// A prover for `token` with the key in `pem`; the token must be bound to it (`cnf.jkt`).
    pub fn new(pem: &[u8], token: &Token, htu_base: &str) -> Result<Self, ProbeError> {
        let key = DpopKey::from_pem(pem).map_err(|_| {
            ProbeError::Usage("--dpop-key is not a P-256 PKCS#8 private key".to_owned())
        })?;
        let bound = token
            .claims
            .get("cnf")
            .and_then(|cnf| cnf.get("jkt"))
            .and_then(|jkt| jkt.as_str());
        if bound != Some(key.thumbprint().as_str()) {
            return Err(ProbeError::Usage(
                "--token is not bound to --dpop-key (its cnf.jkt is not the key's thumbprint)"
                    .to_owned(),
            ));
        }
        Ok(Self {
            key,
            htu_base: htu_base.trim_end_matches('/').to_owned(),
            nonce: Mutex::new(None),
        })
    }

    /// The URL a proof for `path` names: the public URL and the path without its query.
    pub fn htu(&self, path: &str) -> String {
        format!(
            "{}{}",
            self.htu_base,
            path.split('?').next().unwrap_or(path)
        )
    }

    /// A proof for `method path` accompanying `token`, with the latest nonce.
    pub fn proof(&self, method: &str, path: &str, token: &str) -> Result<String, ProbeError> {
        let nonce = self.nonce();
        self.key
            .proof_with_nonce(method, &self.htu(path), token, nonce.as_deref())
            .map_err(|_| ProbeError::Crypto)
    }

    /// The latest nonce the server handed out.
    pub fn nonce(&self) -> Option<String> {
        self.nonce
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// `outgoing` with its one `Bearer` credential sent as `DPoP` beside a fresh proof; `None`
    /// when it carries no such credential (none, several, another scheme, a malformed one, or a
    /// proof already).
    pub fn prove(&self, outgoing: &Outgoing) -> Option<Outgoing> {
        let mut credentials = outgoing
            .headers
            .iter()
            .enumerate()
            .filter(|(_, (name, _))| name.eq_ignore_ascii_case("authorization"));
        let (index, (_, value)) = credentials.next()?;
        if credentials.next().is_some()
            || outgoing
                .headers
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case("dpop"))
        {
            return None;
        }
        let (scheme, token) = value.split_once(' ')?;
        let compact = token.matches('.').count() == 2
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'='));
        if !scheme.eq_ignore_ascii_case("bearer") || !compact {
            return None;
        }
        let proof = self
            .proof(outgoing.method.as_str(), &outgoing.path, token)
            .ok()?;
        let mut proven = outgoing.clone();
        proven.headers[index].1 = format!("DPoP {token}");
        proven.headers.push(("dpop".to_owned(), proof));
        Some(proven)
    }

    /// Keeps the nonce `answer` hands out; true when the answer refused the request for want of
    /// it (`use_dpop_nonce`), so that sending it again with the nonce is worth it.
    pub fn learn(&self, answer: &Answer) -> bool {
        let Some(nonce) = answer.header("dpop-nonce") else {
            return false;
        };
        *self.nonce.lock().unwrap_or_else(PoisonError::into_inner) = Some(nonce.to_owned());
        answer.status == 401
            && answer
                .header("www-authenticate")
                .is_some_and(|challenge| challenge.contains("use_dpop_nonce"))
    }
}
