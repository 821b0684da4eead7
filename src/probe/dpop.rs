//! DPoP cases (RFC 9449, SECURITY.md G-13, G-15, and §7.1): with the issuer's key the probe
//! forges a token bound (`cnf.jkt`) to a key of its own and first checks that the gateway
//! answers to it with a fresh proof. Only then does it replay that proof, present a proof
//! signed by another key, and send the bound token as a plain `Bearer`. When the gateway does
//! not take the bound token, or no key is held to forge one, the cases are skipped with the
//! reason, never passed.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::Method;
use serde_json::json;

use super::cases::{Expect, REQUEST_REFUSED, TOKEN_REFUSED};
use super::forge::{AttackerKey, Forger, now};
use super::target::{Outgoing, Reply, Target};

/// The DPoP case ids, in order.
pub const IDS: [&str; 3] = ["dpop-replayed", "dpop-other-key", "dpop-bound-as-bearer"];

/// What was sent and got back for one DPoP case, ready to judge; `Err` is a skip reason.
pub type Planned = Result<(Reply, Vec<String>), String>;

/// Runs the DPoP cases: for each id, the reply to judge and the tokens and proofs sent.
pub async fn run(
    target: &Target,
    forger: &Forger,
    path: &str,
    htu_base: &str,
) -> Vec<(&'static str, Planned)> {
    let skip_all = |reason: String| IDS.iter().map(|id| (*id, Err(reason.clone()))).collect();
    let Ok(stranger) = AttackerKey::generate() else {
        return skip_all("cannot generate a proof key".to_owned());
    };
    let htu = format!(
        "{}{}",
        htu_base.trim_end_matches('/'),
        path.split('?').next().unwrap_or(path)
    );
    // The bound token and the key it is bound to: with `--dpop-key`, the token and key given;
    // otherwise a token forged bound to a key of the probe's own.
    let (bound, holder) = match target.prover() {
        Some(_) => (forger.token.text.clone(), Holder::Given),
        None => {
            if !forger.signs() {
                let reason = match forger.token.claims.get("cnf") {
                    Some(_) => {
                        "the token is bound: give its key with --dpop-key (or --issuer-key to forge a bound token)"
                    }
                    None => {
                        "needs --issuer-key to forge a DPoP-bound token, or a bound --token with --dpop-key"
                    }
                };
                return skip_all(reason.to_owned());
            }
            let Ok(key) = AttackerKey::generate() else {
                return skip_all("cannot generate a proof key".to_owned());
            };
            let Some(jkt) = key.thumbprint() else {
                return skip_all("cannot compute the proof key's thumbprint".to_owned());
            };
            let (bound, _) = forger.with_claims(|c| {
                c.insert("cnf".to_owned(), json!({ "jkt": jkt }));
                c.insert("jti".to_owned(), json!(uuid::Uuid::new_v4().to_string()));
            });
            (bound, Holder::Forged(key))
        }
    };
    let holder_proof = |nonce: &str| holder.proof(target, path, &htu, &bound, nonce);
    let nonce = || target.prover().and_then(|p| p.nonce()).unwrap_or_default();
    let send = |scheme: &str, proof: Option<&str>| {
        let mut headers = vec![("authorization".to_owned(), format!("{scheme} {bound}"))];
        if let Some(proof) = proof {
            headers.push(("dpop".to_owned(), proof.to_owned()));
        }
        Outgoing {
            method: Method::GET,
            path: path.to_owned(),
            headers,
            body: Vec::new(),
        }
    };
    let Some(mut fresh) = holder_proof(&nonce()) else {
        return skip_all("cannot sign a proof".to_owned());
    };
    let mut control = target.send_as_is(&send("DPoP", Some(&fresh))).await;
    // A server that demands nonces hands one out with its refusal: one more try with it.
    if let Reply::Answered(answer) = &control
        && answer.status == 401
        && let Some(nonce) = answer.header("dpop-nonce").map(str::to_owned)
        && let Some(again) = holder_proof(&nonce)
    {
        fresh = again;
        control = target.send_as_is(&send("DPoP", Some(&fresh))).await;
    }
    match control {
        Reply::Answered(answer) if (200..300).contains(&answer.status) => {}
        Reply::Answered(answer) => {
            return skip_all(format!(
                "the gateway did not take a DPoP-bound token with a fresh proof ({}; set --public-url if proofs must name another URL)",
                answer.status
            ));
        }
        Reply::Closed(reason) => {
            return skip_all(format!("the DPoP control got no answer ({reason})"));
        }
    }
    let Ok(foreign) = proof(&stranger, &htu, &bound, &nonce()) else {
        return skip_all("cannot sign a proof".to_owned());
    };
    let replayed = target.send_as_is(&send("DPoP", Some(&fresh))).await;
    let other_key = target.send_as_is(&send("DPoP", Some(&foreign))).await;
    let as_bearer = target.send_as_is(&send("Bearer", None)).await;
    let sent = vec![bound.clone(), fresh.clone(), foreign.clone()];
    vec![
        (IDS[0], Ok((replayed, sent.clone()))),
        (IDS[1], Ok((other_key, sent.clone()))),
        (IDS[2], Ok((as_bearer, sent))),
    ]
}

/// What each DPoP case expects.
pub fn expectation(id: &str) -> Expect {
    match id {
        "dpop-bound-as-bearer" => Expect::Refused(TOKEN_REFUSED),
        _ => Expect::Refused(REQUEST_REFUSED),
    }
}

/// The SECURITY.md entry of each DPoP case (the last is a baseline rule, RFC 9449 §7.1).
pub fn reference(id: &str) -> &'static str {
    match id {
        "dpop-replayed" => "G-13",
        "dpop-other-key" => "G-15",
        _ => "§1",
    }
}

/// Who holds the key the bound token names.
enum Holder {
    /// The client, through `--dpop-key`: the target's prover signs, with the nonce it learnt.
    Given,
    /// A key of the probe's own, for the token it forged.
    Forged(AttackerKey),
}

impl Holder {
    /// A fresh proof for `GET path` with `token`.
    fn proof(
        &self,
        target: &Target,
        path: &str,
        htu: &str,
        token: &str,
        nonce: &str,
    ) -> Option<String> {
        match self {
            Self::Given => target
                .prover()
                .and_then(|prover| prover.proof("GET", path, token).ok()),
            Self::Forged(key) => proof(key, htu, token, nonce).ok(),
        }
    }
}

/// A proof for `GET htu` with `token`, signed by `key` (RFC 9449 §4.2), carrying `nonce` unless
/// it is empty.
fn proof(
    key: &AttackerKey,
    htu: &str,
    token: &str,
    nonce: &str,
) -> Result<String, super::ProbeError> {
    let header = json!({ "typ": "dpop+jwt", "alg": "ES256", "jwk": key.jwk });
    let mut claims = json!({
        "jti": uuid::Uuid::new_v4().to_string(),
        "htm": "GET",
        "htu": htu,
        "iat": now(),
        "ath": URL_SAFE_NO_PAD.encode(crate::jose::sha256(token.as_bytes())),
    });
    if !nonce.is_empty() {
        claims["nonce"] = json!(nonce);
    }
    key.sign(&header, &claims)
}
