//! Claim validation after the signature has been verified, and the `VerifiedToken` it produces.
//! The rules are RFC 9068 §4 and RFC 8725 §3: exact `iss`, an `aud` we serve, mandatory `exp`,
//! honoured `nbf` and `iat` within a bounded skew, a bounded lifetime, and an access-token `typ`.
//! Checked arithmetic throughout: claim numbers are attacker input (C-19). Claims phigate copies
//! somewhere — into an upstream header, a FHIR search, a log line — have shapes: the launch
//! patient is a FHIR id, `sub`, `client_id`/`azp` and `jti` are `identity` types. A claim
//! outside its shape refuses the token; it is never trimmed, split or passed on as it came. The
//! claims themselves are not kept: a `VerifiedToken` holds only what was checked.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::TokenFault;
use super::identity::{ClientId, Jti, Subject};
use crate::config::{IssuerConfig, TokenBounds};
use crate::jose::time;
use crate::policy::ScopeSet;
use crate::policy::seal::Holder;

/// The identity and grant of a token whose signature and claims were verified: what decisions,
/// the forwarder and the log line need, and nothing else of the token's claims.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    /// The configured issuer that signed it.
    pub issuer: Arc<str>,
    /// `sub`, when present.
    pub subject: Option<Subject>,
    /// `client_id`, or `azp` from servers that send that instead.
    pub client_id: Option<ClientId>,
    /// `jti`, when present; logs carry this instead of the token.
    pub jti: Option<Jti>,
    /// The SMART launch patient, from the issuer's `patient_claim`.
    pub patient: Option<String>,
    /// Scopes granted by `scope` or `scp`.
    pub scopes: ScopeSet,
    /// `exp`, seconds since the epoch.
    pub expires_at: i64,
    /// `iat`, when present.
    pub issued_at: Option<i64>,
    /// The confirmation (`cnf`) the token is bound to, if any.
    pub confirmation: Confirmation,
}

impl VerifiedToken {
    /// A client-credentials token: its `sub` is its client (RFC 9700 §4.15), not a person.
    pub fn subject_is_client(&self) -> bool {
        match (&self.subject, &self.client_id) {
            (Some(subject), Some(client)) => subject.as_str() == client.as_str(),
            _ => false,
        }
    }

    /// Bytes this token holds on the heap besides itself, for the verified-token cache's
    /// memory bound; the issuer name is the configuration's own, shared, and not counted.
    pub fn heap_bytes(&self) -> usize {
        let text = |text: Option<&str>| text.map_or(0, str::len);
        let bound_to = match &self.confirmation {
            Confirmation::None => 0,
            Confirmation::Certificate(thumbprint) | Confirmation::DpopKey(thumbprint) => {
                thumbprint.len()
            }
        };
        text(self.subject.as_ref().map(Subject::as_str))
            + text(self.client_id.as_ref().map(ClientId::as_str))
            + text(self.jti.as_ref().map(Jti::as_str))
            + text(self.patient.as_deref())
            + self.scopes.heap_bytes()
            + bound_to
    }

    /// The identity a link handed to this token is sealed to.
    pub fn holder(&self) -> Holder<'_> {
        Holder {
            issuer: &self.issuer,
            client: self.client_id.as_ref().map(ClientId::as_str),
            subject: self.subject.as_ref().map(Subject::as_str),
            patient: self.patient.as_deref(),
        }
    }
}

/// The FHIR R4 `id` datatype: `[A-Za-z0-9\-\.]{1,64}`.
const MAX_FHIR_ID_BYTES: usize = 64;

/// Validates `claims` for `issuer` at `now` (seconds since the epoch).
pub fn validate(
    claims: &Map<String, Value>,
    typ: Option<&str>,
    issuer: &IssuerConfig,
    bounds: &TokenBounds,
    now: i64,
) -> Result<VerifiedToken, TokenFault> {
    check_typ(typ)?;
    // RFC 9068 §4: exact match; an array or any other JSON type is not an issuer.
    match claims.get("iss") {
        Some(Value::String(iss)) if iss.as_str() == &*issuer.issuer => {}
        _ => return Err(TokenFault::IssuerMismatch),
    }
    check_audience(claims.get("aud"), &issuer.audiences)?;
    let skew = i64::try_from(bounds.clock_skew.as_secs()).unwrap_or(i64::MAX);
    let max_lifetime = i64::try_from(bounds.max_lifetime.as_secs()).unwrap_or(i64::MAX);
    let exp = match claims.get("exp") {
        None => return Err(TokenFault::ExpMissing),
        Some(value) => numeric_date(value)?,
    };
    if now > exp.saturating_add(skew) {
        return Err(TokenFault::Expired);
    }
    if let Some(nbf) = claims.get("nbf")
        && numeric_date(nbf)? > now.saturating_add(skew)
    {
        return Err(TokenFault::NotYetValid);
    }
    let issued_at = claims.get("iat").map(numeric_date).transpose()?;
    let lifetime = match issued_at {
        Some(iat) => {
            if iat > now.saturating_add(skew) {
                return Err(TokenFault::IssuedInFuture);
            }
            exp.checked_sub(iat)
        }
        // Without `iat` the remaining lifetime is what we can bound.
        None => exp.checked_sub(now),
    };
    if lifetime.is_none_or(|lifetime| lifetime > max_lifetime) {
        return Err(TokenFault::LifetimeTooLong);
    }
    let scopes = ScopeSet::from_claims(claims.get("scope"), claims.get("scp")).map_err(
        |fault| match fault {
            crate::policy::ScopeClaimFault::Ambiguous => TokenFault::ScopeAmbiguous,
            crate::policy::ScopeClaimFault::Malformed => TokenFault::MalformedClaims,
        },
    )?;
    let client_id = match identity_claim(claims, "client_id", ClientId::parse)? {
        Some(client_id) => Some(client_id),
        None => identity_claim(claims, "azp", ClientId::parse)?,
    };
    Ok(VerifiedToken {
        issuer: Arc::clone(&issuer.issuer),
        subject: identity_claim(claims, "sub", Subject::parse)?,
        client_id,
        jti: identity_claim(claims, "jti", Jti::parse)?,
        patient: launch_patient(claims, &issuer.patient_claim)?,
        scopes,
        expires_at: exp,
        issued_at,
        confirmation: confirmation(claims.get("cnf"))?,
    })
}

/// Builds a `VerifiedToken` from an RFC 7662 introspection response that said `active: true`.
/// RFC 7662 §2.2 members are optional, but any that is present must fit: `exp` in the future,
/// `iss` exactly the issuer, `aud` naming one of ours, the usual identity claim rules.
pub fn from_introspection(
    claims: &Map<String, Value>,
    issuer: &IssuerConfig,
    bounds: &TokenBounds,
    now: i64,
) -> Result<VerifiedToken, TokenFault> {
    let skew = i64::try_from(bounds.clock_skew.as_secs()).unwrap_or(i64::MAX);
    if claims
        .get("iss")
        .is_some_and(|iss| iss.as_str() != Some(&*issuer.issuer))
    {
        return Err(TokenFault::IssuerMismatch);
    }
    if claims.contains_key("aud") {
        check_audience(claims.get("aud"), &issuer.audiences)?;
    }
    let expires_at = match claims.get("exp") {
        Some(exp) => numeric_date(exp)?,
        None => now.saturating_add(i64::try_from(bounds.max_lifetime.as_secs()).unwrap_or(0)),
    };
    if now > expires_at.saturating_add(skew) {
        return Err(TokenFault::Expired);
    }
    // RFC 9449 §6.2: a DPoP token is good only with a proof by the key in `cnf.jkt`. Without
    // that key no proof can be checked; with it, the binding step demands the proof (and a
    // `Bearer` request gets the `DPoP` challenge too), as for a DPoP-bound JWT.
    let confirmation = confirmation(claims.get("cnf"))?;
    let dpop_type = claims
        .get("token_type")
        .and_then(Value::as_str)
        .is_some_and(|t| t.eq_ignore_ascii_case("DPoP"));
    if dpop_type && !matches!(confirmation, Confirmation::DpopKey(_)) {
        return Err(TokenFault::TypMismatch);
    }
    let scopes = ScopeSet::from_claims(claims.get("scope"), claims.get("scp")).map_err(
        |fault| match fault {
            crate::policy::ScopeClaimFault::Ambiguous => TokenFault::ScopeAmbiguous,
            crate::policy::ScopeClaimFault::Malformed => TokenFault::MalformedClaims,
        },
    )?;
    Ok(VerifiedToken {
        issuer: Arc::clone(&issuer.issuer),
        subject: identity_claim(claims, "sub", Subject::parse)?,
        client_id: identity_claim(claims, "client_id", ClientId::parse)?,
        jti: identity_claim(claims, "jti", Jti::parse)?,
        patient: launch_patient(claims, &issuer.patient_claim)?,
        scopes,
        expires_at,
        issued_at: claims.get("iat").map(numeric_date).transpose()?,
        confirmation,
    })
}

/// What a token is bound to (RFC 7800 `cnf`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmation {
    /// A plain bearer token.
    None,
    /// RFC 8705 §3.1: the SHA-256 thumbprint of the client certificate.
    Certificate(String),
    /// RFC 9449 §6: the RFC 7638 thumbprint of the DPoP key.
    DpopKey(String),
}

/// Reads `cnf`; a confirmation we cannot honour, or both kinds at once, refuses the token
/// rather than letting it pass as a bearer token.
fn confirmation(cnf: Option<&Value>) -> Result<Confirmation, TokenFault> {
    let Some(cnf) = cnf else {
        return Ok(Confirmation::None);
    };
    let object = cnf.as_object().ok_or(TokenFault::MalformedClaims)?;
    let member = |name: &str| match object.get(name) {
        None => Ok(None),
        Some(Value::String(value)) if !value.is_empty() => Ok(Some(value.clone())),
        Some(_) => Err(TokenFault::MalformedClaims),
    };
    match (member("x5t#S256")?, member("jkt")?) {
        (Some(thumbprint), None) => Ok(Confirmation::Certificate(thumbprint)),
        (None, Some(thumbprint)) => Ok(Confirmation::DpopKey(thumbprint)),
        (None, None) if object.is_empty() => Ok(Confirmation::None),
        _ => Err(TokenFault::MalformedClaims),
    }
}

/// RFC 9068 §2.1 and RFC 8725 §3.11: access tokens are `at+jwt`; plain `JWT` and no `typ` are
/// accepted for interoperability. Anything else (a `dpop+jwt` proof, a logout token) is another
/// kind of JWT and must not pass as an access token.
fn check_typ(typ: Option<&str>) -> Result<(), TokenFault> {
    match typ {
        None => Ok(()),
        Some(typ)
            if ["at+jwt", "application/at+jwt", "JWT"]
                .iter()
                .any(|accepted| typ.eq_ignore_ascii_case(accepted)) =>
        {
            Ok(())
        }
        Some(_) => Err(TokenFault::TypMismatch),
    }
}

fn check_audience(aud: Option<&Value>, accepted: &[String]) -> Result<(), TokenFault> {
    let served = |candidate: &str| accepted.iter().any(|a| a == candidate);
    let ok = match aud {
        Some(Value::String(aud)) => served(aud),
        Some(Value::Array(items)) => {
            // Every member must be a string (jwt-go CVE-2020-26160), and one must be ours.
            let strings: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
            strings.is_some_and(|strings| strings.into_iter().any(served))
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(TokenFault::AudienceMismatch)
    }
}

/// `jose::time::numeric_date`, refusing the token's claims when a date is not one.
fn numeric_date(value: &Value) -> Result<i64, TokenFault> {
    time::numeric_date(value).ok_or(TokenFault::MalformedClaims)
}

/// A string claim that travels in an identity header, a log line, the revocation lookup and a
/// link seal, parsed into its type ([`Subject`], [`ClientId`], [`Jti`]); outside that type's
/// shape it refuses the token.
fn identity_claim<T>(
    claims: &Map<String, Value>,
    name: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<Option<T>, TokenFault> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(value)) => parse(value)
            .map(Some)
            .ok_or(TokenFault::IdentityClaimMalformed),
        Some(_) => Err(TokenFault::IdentityClaimMalformed),
    }
}

/// The SMART launch patient from claim `name`: absent, or exactly one FHIR id. The policy
/// compares it with resource ids, search parameters and references, so `123,456` (two patients
/// in one search), `Patient/123`, `123/../456`, `123 ` or a number must refuse the token rather
/// than widen or shift what it may reach.
pub fn launch_patient(
    claims: &Map<String, Value>,
    name: &str,
) -> Result<Option<String>, TokenFault> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(value)) if is_fhir_id(value) => Ok(Some(value.clone())),
        Some(_) => Err(TokenFault::PatientClaimMalformed),
    }
}

/// `[A-Za-z0-9\-\.]{1,64}`, minus the dot-segments `.` and `..` (RFC 3986 §5.2.4), which the
/// FHIR grammar admits but no server assigns and a path would resolve.
pub(crate) fn is_fhir_id(value: &str) -> bool {
    (1..=MAX_FHIR_ID_BYTES).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && value != "."
        && value != ".."
}

#[cfg(test)]
mod tests;
