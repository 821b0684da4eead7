//! Access-token verification: from the raw bearer string to a `VerifiedToken`. Only this module
//! sees raw tokens. Order of work is cheapest-first (R-M02): size and structure, issuer and key
//! selection, then one signature check, then claims. A verified token is cached by its SHA-256
//! (`cache`) for as long as the token lives and the key that verified it is still served, so a
//! key removed at the issuer is refused at its next refresh while a re-fetch for someone else's
//! unknown `kid` evicts nothing; `exp` is re-checked on every hit. Each issuer's clock offset is
//! estimated from the tokens verified (`clock`), for operators only.

pub mod bearer;
mod cache;
mod claims;
pub(crate) use self::claims::is_fhir_id;
mod clock;
mod digest;
mod fetch;
mod identity;
mod introspection;
pub mod jwks;
pub mod metadata;
mod revoke;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

pub use self::bearer::{BearerToken, CredentialFault, Scheme, bearer_from, credential_from};
use self::cache::{CachedToken, TokenCache};
pub use self::claims::{Confirmation, VerifiedToken, launch_patient};
use self::clock::ClockOffset;
pub use self::digest::TokenDigest;
pub use self::identity::{ClientId, Jti, Subject};
use self::introspection::Introspector;
use self::jwks::{IssuerKeys, KeySource};
use self::metadata::IssuerMetadata;
pub use self::revoke::{RevokeOutcome, TokenRevoker};
use crate::config::{IssuerConfig, TokenBounds};
use crate::jose::{self, compact::JwsFault};
use crate::telemetry::Metrics;
use crate::tls::{TlsError, https_client};

/// Why a token was refused. Each variant is a documented reason code; none carries token data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenFault {
    /// Not a compact JWS of three canonical base64url segments with JSON objects.
    Malformed,
    /// A JSON member name appears twice (RFC 7515 §4).
    DuplicateMember,
    /// `crit`, `enc`, `zip` or `cty`: features phigate never processes.
    UnsupportedHeader,
    /// `alg` is `none`, HMAC, or not allowed for this issuer or key.
    AlgNotAllowed,
    /// `iss` names no configured issuer.
    UnknownIssuer,
    /// No key with that `kid`, even after a refetch.
    UnknownKey,
    /// The signature does not verify.
    BadSignature,
    /// `exp` has passed (beyond the skew).
    Expired,
    /// No `exp` claim.
    ExpMissing,
    /// `nbf` is in the future.
    NotYetValid,
    /// `iat` is in the future.
    IssuedInFuture,
    /// `exp - iat` exceeds `tokens.max_lifetime`.
    LifetimeTooLong,
    /// `iss` is not exactly the issuer.
    IssuerMismatch,
    /// `aud` names none of our audiences.
    AudienceMismatch,
    /// `typ` is not an access-token type.
    TypMismatch,
    /// Both `scope` and `scp` are present.
    ScopeAmbiguous,
    /// A claim has the wrong type or unusable characters.
    MalformedClaims,
    /// The launch-patient claim is not one FHIR id (`[A-Za-z0-9\-.]{1,64}`).
    PatientClaimMalformed,
    /// `sub`, `client_id`, `azp` or `jti` is not 1–255 bytes of printable ASCII.
    IdentityClaimMalformed,
    /// The issuer's keys are missing or past their staleness bound: phigate cannot decide.
    KeysUnavailable,
    /// Introspection said the token is not active.
    Inactive,
    /// The introspection endpoint failed or answered nonsense: phigate cannot decide.
    IntrospectionUnavailable,
}

impl TokenFault {
    /// The reason code used in logs and metrics.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Malformed => "token_malformed",
            Self::DuplicateMember => "duplicate_member",
            Self::UnsupportedHeader => "header_unsupported",
            Self::AlgNotAllowed => "alg_not_allowed",
            Self::UnknownIssuer => "issuer_unknown",
            Self::UnknownKey => "key_unknown",
            Self::BadSignature => "signature_invalid",
            Self::Expired => "expired",
            Self::ExpMissing => "exp_missing",
            Self::NotYetValid => "not_yet_valid",
            Self::IssuedInFuture => "iat_in_future",
            Self::LifetimeTooLong => "lifetime_too_long",
            Self::IssuerMismatch => "issuer_mismatch",
            Self::AudienceMismatch => "audience_mismatch",
            Self::TypMismatch => "typ_mismatch",
            Self::ScopeAmbiguous => "scope_ambiguous",
            Self::MalformedClaims => "claims_malformed",
            Self::PatientClaimMalformed => "patient_claim_malformed",
            Self::IdentityClaimMalformed => "identity_claim_malformed",
            Self::KeysUnavailable => "keys_unavailable",
            Self::Inactive => "token_inactive",
            Self::IntrospectionUnavailable => "introspection_unavailable",
        }
    }
}

impl From<JwsFault> for TokenFault {
    fn from(fault: JwsFault) -> Self {
        match fault {
            JwsFault::Malformed | JwsFault::AlgMissing => Self::Malformed,
            JwsFault::DuplicateMember => Self::DuplicateMember,
            JwsFault::UnsupportedHeader => Self::UnsupportedHeader,
        }
    }
}

/// Verifies bearer tokens against every configured issuer.
pub struct Verifier {
    issuers: HashMap<Arc<str>, Arc<IssuerKeys>>,
    /// Every issuer's metadata cache; only those in use (keys discovered, or the SMART
    /// configuration's issuer) ever fetch.
    metadata: HashMap<Arc<str>, Arc<IssuerMetadata>>,
    introspectors: HashMap<Arc<str>, Arc<Introspector>>,
    clocks: HashMap<Arc<str>, ClockOffset>,
    bounds: TokenBounds,
    cache: TokenCache,
    metrics: Arc<Metrics>,
}

impl Verifier {
    /// Builds key caches for `issuers`; nothing is fetched until [`Verifier::spawn_refreshers`].
    pub fn new(
        issuers: &[IssuerConfig],
        bounds: &TokenBounds,
        metrics: Arc<Metrics>,
    ) -> Result<Self, TlsError> {
        let mut by_name = HashMap::new();
        let mut metadata = HashMap::new();
        for issuer in issuers {
            // The issuer's metadata is trusted as its JWKS is: the same client and CA file.
            let client = https_client(issuer.jwks_ca_file.as_deref())?;
            let described = Arc::new(IssuerMetadata::new(
                Arc::clone(&issuer.issuer),
                client.clone(),
                bounds.clone(),
                Arc::clone(&metrics),
            ));
            let source = match &issuer.jwks_uri {
                Some(uri) => KeySource::Configured(uri.clone()),
                None => KeySource::Discovered(Arc::clone(&described)),
            };
            let keys = IssuerKeys::new(
                issuer.clone(),
                source,
                bounds.clone(),
                client,
                Arc::clone(&metrics),
            );
            by_name.insert(Arc::clone(&issuer.issuer), Arc::new(keys));
            metadata.insert(Arc::clone(&issuer.issuer), described);
        }
        let mut introspectors = HashMap::new();
        for issuer in issuers {
            if let Some(config) = &issuer.introspection {
                introspectors.insert(
                    Arc::clone(&issuer.issuer),
                    Arc::new(Introspector::new(
                        (issuer, config),
                        Arc::clone(&metadata[&issuer.issuer]),
                        bounds,
                        metrics.circuit_gauge("introspection", &issuer.issuer),
                    )?),
                );
            }
        }
        let clocks = issuers
            .iter()
            .map(|issuer| (Arc::clone(&issuer.issuer), ClockOffset::new()))
            .collect();
        Ok(Self {
            issuers: by_name,
            metadata,
            introspectors,
            clocks,
            bounds: bounds.clone(),
            cache: TokenCache::new(bounds),
            metrics,
        })
    }

    /// Starts one background refresher per issuer, and one for the metadata of each issuer
    /// whose keys or introspection endpoint it locates; the first fetch happens at once.
    pub fn spawn_refreshers(&self) -> Vec<tokio::task::JoinHandle<()>> {
        let discovered = self.issuers.values().filter_map(|keys| {
            let issuer = keys.issuer();
            let locates_keys = matches!(keys.source(), KeySource::Discovered(_));
            let locates_introspection = issuer
                .introspection
                .as_ref()
                .is_some_and(|introspection| introspection.endpoint.is_none());
            (locates_keys || locates_introspection)
                .then(|| self.metadata.get(&issuer.issuer))
                .flatten()
                .and_then(IssuerMetadata::spawn_refresher)
        });
        let keys = self
            .issuers
            .values()
            .map(|keys| tokio::spawn(Arc::clone(keys).run_refresher()));
        discovered
            .collect::<Vec<_>>()
            .into_iter()
            .chain(keys)
            .collect()
    }

    /// The metadata cache of `issuer`, if it is configured.
    pub fn metadata(&self, issuer: &str) -> Option<Arc<IssuerMetadata>> {
        self.metadata.get(issuer).map(Arc::clone)
    }

    /// Ready once every issuer has keys within the staleness bound.
    pub fn is_ready(&self) -> bool {
        self.issuers.values().all(|keys| keys.is_ready())
    }

    /// Fetches every issuer's keys now and names, for each fetch that failed, the JWKS URL and
    /// why (`explain` telling an operator why keys are unavailable).
    pub async fn fetch_keys(&self) -> Vec<(String, jwks::FetchError)> {
        let mut failures = Vec::new();
        for keys in self.issuers.values() {
            if let Err(err) = keys.refresh().await {
                failures.push((keys.source().to_string(), err));
            }
        }
        failures
    }

    /// Updates the key-age and metadata-age gauges (called at scrape time).
    pub fn publish_key_ages(&self) {
        self.issuers.values().for_each(|keys| keys.publish_age());
        self.metadata.values().for_each(|m| m.publish_age());
    }

    /// Verifies `bearer` completely, or says why not.
    pub async fn verify(&self, bearer: &BearerToken) -> Result<Arc<VerifiedToken>, TokenFault> {
        let token = bearer.expose();
        let digest = *bearer.digest();
        let now = unix_now();
        if let Some(cached) = self.cache.get(&digest) {
            if let Some(token) = self.still_valid(&cached, now) {
                self.metrics.record_token_cache(true);
                return Ok(token);
            }
            self.cache.invalidate(&digest);
        }
        self.metrics.record_token_cache(false);
        // An opaque token (not a three-part JWS) can only be introspected, and only when one
        // issuer offers introspection: phigate never guesses which server a token came from.
        if token.matches('.').count() != 2 {
            let mut introspectors = self.introspectors.values();
            return match (introspectors.next(), introspectors.next()) {
                (Some(introspector), None) => introspector.introspect(bearer, now).await,
                _ => Err(TokenFault::Malformed),
            };
        }
        let jws = jose::compact::parse(token)?;
        let Some(Value::String(iss)) = jws.claims.get("iss") else {
            return Err(TokenFault::IssuerMismatch);
        };
        let keys = self
            .issuers
            .get(iss.as_str())
            .ok_or(TokenFault::UnknownIssuer)?;
        let issuer = keys.issuer();
        // `none`, HMAC and unknown names are no algorithm at all.
        let alg = jose::algorithm(&jws.header.alg).ok_or(TokenFault::AlgNotAllowed)?;
        if !issuer.algorithms.contains(alg) {
            return Err(TokenFault::AlgNotAllowed);
        }
        // The token was parsed once, above; the signature is checked over exactly the bytes
        // that parse read, and no claim is believed before it holds.
        let (key, ()) = keys
            .with_key(jws.header.kid.as_deref(), alg, |key| {
                jws.signature_holds(key, alg)
                    .then_some(())
                    .ok_or(TokenFault::BadSignature)
            })
            .await?;
        let verified = Arc::new(claims::validate(
            &jws.claims,
            jws.header.typ.as_deref(),
            issuer,
            &self.bounds,
            now,
        )?);
        // Read afresh: the key lookup may have waited for a fetch.
        self.observe_clock(&verified, unix_now());
        self.cache.insert(
            digest,
            CachedToken {
                token: Arc::clone(&verified),
                key,
            },
        );
        Ok(verified)
    }

    /// Updates the issuer's clock-offset estimate from a token verified from its signature.
    fn observe_clock(&self, token: &VerifiedToken, now: i64) {
        let (Some(issued_at), Some(clock)) = (token.issued_at, self.clocks.get(&token.issuer))
        else {
            return;
        };
        let offset = clock.observe(issued_at, now);
        self.metrics.set_issuer_clock_offset(&token.issuer, offset);
    }

    /// Completes a verified JWT with introspection where configuration asks for it: `always`
    /// (an `introspect: always` rule: the token must still be active at the server), or to
    /// learn a launch patient the token lacks (`resolve_patient`).
    pub async fn complete(
        &self,
        verified: Arc<VerifiedToken>,
        bearer: &BearerToken,
        always: bool,
        wants_patient: bool,
    ) -> Result<Arc<VerifiedToken>, TokenFault> {
        let introspector = self.introspectors.get(&verified.issuer);
        let resolve = wants_patient
            && verified.patient.is_none()
            && introspector.is_some_and(|i| i.resolves_patient());
        if !always && !resolve {
            return Ok(verified);
        }
        // A rule that demands introspection cannot be met without an endpoint: fail closed.
        let introspector = introspector.ok_or(TokenFault::IntrospectionUnavailable)?;
        let introspected = introspector.introspect(bearer, unix_now()).await?;
        match (&verified.patient, &introspected.patient) {
            (None, Some(patient)) => {
                let mut completed = (*verified).clone();
                completed.patient = Some(patient.clone());
                Ok(Arc::new(completed))
            }
            _ => Ok(verified),
        }
    }

    /// A cached verification holds while the token has not expired and its issuer still
    /// serves the very key that verified it; any other change to the key set leaves it alone.
    fn still_valid(&self, cached: &CachedToken, now: i64) -> Option<Arc<VerifiedToken>> {
        let keys = self.issuers.get(&cached.token.issuer)?;
        let skew = i64::try_from(self.bounds.clock_skew.as_secs()).unwrap_or(0);
        (keys.still_holds(&cached.key) && now <= cached.token.expires_at.saturating_add(skew))
            .then(|| Arc::clone(&cached.token))
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

/// Claims taken as already verified (`phigate explain --claims`, `phigate test`): what only a
/// real token proves — issuer, audience, lifetime — is filled in for `issuer` where absent, and
/// the rest goes through the very claim rules a verified JWT goes through (launch patient and
/// identity shapes, scopes, confirmation), so an explanation refuses what the gateway refuses.
pub fn trusted_claims(
    mut claims: serde_json::Map<String, serde_json::Value>,
    issuer: &IssuerConfig,
    bounds: &TokenBounds,
) -> Result<VerifiedToken, TokenFault> {
    use serde_json::Value;
    let now = unix_now();
    claims
        .entry("iss")
        .or_insert_with(|| Value::from(issuer.issuer.as_ref()));
    if let Some(audience) = issuer.audiences.first() {
        claims
            .entry("aud")
            .or_insert_with(|| Value::from(audience.as_str()));
    }
    claims.entry("iat").or_insert_with(|| Value::from(now));
    claims.entry("exp").or_insert_with(|| Value::from(now + 60));
    claims::validate(&claims, None, issuer, bounds, now)
}
