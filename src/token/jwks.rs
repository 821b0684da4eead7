//! One issuer's verification keys: fetched from its JWKS endpoint at start, refreshed in the
//! background on the response's cache lifetime, refetched on an unknown `kid` — one fetch at a
//! time, which every request that meets an unknown `kid` meanwhile waits for (single flight),
//! and at most one such forced fetch per cooldown (a storm of unknown kids causes no storm of
//! fetches) — and served for a bounded time after the endpoint stops answering, then refused
//! (fail closed). A `kid` still unknown after a failed fetch is phigate's problem, not the
//! token's: 503, never `invalid_token`. Keys come only from the configured endpoint: never from
//! the token (`jwk`, `jku`, `x5u`, `x5c` are ignored), and no redirect is followed. An entry
//! `jose::jwk` refuses (private or symmetric material, malformed, or below its algorithm's
//! strength floor: the same rules a DPoP proof key meets) is dropped from the set at load,
//! logged once and counted once, and never verifies anything; the set's other keys are kept.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use http::HeaderValue;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use super::TokenFault;
pub use super::fetch::FetchError;
use super::fetch::{self, Answer, Conditional, DocumentClient};
use super::metadata::IssuerMetadata;
use crate::config::{IssuerConfig, TokenBounds};
use crate::jose::jwk::{self, KeyRejection};
use crate::telemetry::Metrics;

/// A JWKS document larger than this is refused (SECURITY.md §5).
const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// Rejected entries remembered per issuer so each is logged and counted once; past this the
/// memory starts afresh (at worst a repeated log line), so a JWKS cannot grow it unboundedly.
const MAX_REMEMBERED_REJECTIONS: usize = 1024;

/// A public key and the algorithms it may verify.
pub struct VerificationKey {
    kid: Option<String>,
    /// RFC 8725 §3.1: issuer allow-list ∩ the key's family ∩ the JWK's own `alg`.
    algorithms: Vec<Algorithm>,
    key: DecodingKey,
    /// SHA-256 over the `kid`, the RFC 7638 thumbprint and `algorithms`: the same key in a
    /// later fetch has the same fingerprint, so what it verified stays verified.
    fingerprint: [u8; 32],
}

impl VerificationKey {
    /// The key material for jsonwebtoken.
    pub fn decoding_key(&self) -> &DecodingKey {
        &self.key
    }
}

/// The keys of one successful fetch.
pub struct KeySet {
    keys: Vec<Arc<VerificationKey>>,
}

impl KeySet {
    /// Whether this set still holds `key`: the same `kid`, key material and algorithms.
    fn holds(&self, key: &VerificationKey) -> bool {
        self.keys
            .iter()
            .any(|held| held.fingerprint == key.fingerprint)
    }

    /// The key a token header names, if this set has one that may verify `alg`.
    fn select(&self, kid: Option<&str>, alg: Algorithm) -> KeySelection<'_> {
        let mut candidates = self.keys.iter().filter(|key| match kid {
            Some(kid) => key.kid.as_deref() == Some(kid),
            None => true,
        });
        let Some(first) = candidates.next() else {
            return KeySelection::Unknown;
        };
        // Duplicate kids are told apart by algorithm (FAPI 2.0 "JSON Web Key Sets").
        let usable = std::iter::once(first)
            .chain(candidates)
            .filter(|key| key.algorithms.contains(&alg))
            .collect::<Vec<_>>();
        match usable.as_slice() {
            [key] => KeySelection::Found(key),
            // A kid-less token matching several keys is ambiguous; trying each would multiply
            // the signature work an attacker can cause.
            [] if kid.is_some() => KeySelection::AlgNotAllowed,
            [] => KeySelection::Unknown,
            _ => KeySelection::Unknown,
        }
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set has no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

enum KeySelection<'a> {
    Found(&'a Arc<VerificationKey>),
    Unknown,
    AlgNotAllowed,
}

/// What a fetch brought.
enum Fetched {
    /// A new key set, with its cache lifetime and validator.
    Keys {
        keys: KeySet,
        lifetime: Duration,
        etag: Option<HeaderValue>,
    },
    /// 304 Not Modified: the keys held are current for `lifetime` more.
    Unchanged { lifetime: Duration },
}

/// Where an issuer's keys are fetched from.
pub enum KeySource {
    /// The configured `jwks_uri`.
    Configured(http::Uri),
    /// The `jwks_uri` the issuer's believed metadata names, read at every fetch.
    Discovered(Arc<IssuerMetadata>),
}

impl KeySource {
    async fn uri(&self) -> Result<http::Uri, FetchError> {
        match self {
            Self::Configured(uri) => Ok(uri.clone()),
            Self::Discovered(metadata) => metadata.jwks_uri().await,
        }
    }

    /// Keys located by a refused document are not used, whatever was fetched before it.
    fn is_refused(&self) -> bool {
        match self {
            Self::Configured(_) => false,
            Self::Discovered(metadata) => metadata.is_refused(),
        }
    }
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Configured(uri) => uri.fmt(f),
            Self::Discovered(_) => f.write_str("(discovered from the issuer's metadata)"),
        }
    }
}

struct KeyState {
    keys: Option<Arc<KeySet>>,
    /// The validator the issuer sent with `keys`, for the next fetch's `If-None-Match`, and
    /// the URL that sent it: a discovered URL may change, and a validator means nothing
    /// elsewhere.
    etag: Option<(http::Uri, HeaderValue)>,
    fetched_at: Option<Instant>,
    fresh_until: Option<Instant>,
    /// Fetch attempts finished so far, scheduled or forced: a request that saw this number
    /// change while it waited was answered by that fetch.
    attempts: u64,
    /// Whether the latest attempt failed (R-J04: then an unknown `kid` proves nothing).
    last_failed: bool,
}

/// The key cache of one issuer.
pub struct IssuerKeys {
    issuer: IssuerConfig,
    source: KeySource,
    bounds: TokenBounds,
    client: DocumentClient,
    metrics: Arc<Metrics>,
    state: RwLock<KeyState>,
    /// When an unknown `kid` last caused a fetch; scheduled refreshes do not count, so a key
    /// published just after one is still picked up at once.
    last_miss_fetch: Mutex<Option<Instant>>,
    /// Single flight: one fetch at a time; requests meeting an unknown `kid` wait for it.
    fetching: tokio::sync::Mutex<()>,
    /// Fingerprints of rejected entries already logged and counted.
    rejections_seen: Mutex<HashSet<[u8; 32]>>,
}

impl IssuerKeys {
    /// An empty cache; nothing is fetched until [`IssuerKeys::refresh`] or the refresher runs.
    pub fn new(
        issuer: IssuerConfig,
        source: KeySource,
        bounds: TokenBounds,
        client: DocumentClient,
        metrics: Arc<Metrics>,
    ) -> Self {
        // Present at zero from the start, so an alert on an increase sees the first rejection
        // or failed fetch.
        metrics.init_issuer(&issuer.issuer);
        Self {
            issuer,
            source,
            bounds,
            client,
            metrics,
            state: RwLock::new(KeyState {
                keys: None,
                etag: None,
                fetched_at: None,
                fresh_until: None,
                attempts: 0,
                last_failed: false,
            }),
            last_miss_fetch: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
            rejections_seen: Mutex::new(HashSet::new()),
        }
    }

    /// The issuer these keys belong to.
    pub fn issuer(&self) -> &IssuerConfig {
        &self.issuer
    }

    /// Where the keys come from.
    pub fn source(&self) -> &KeySource {
        &self.source
    }

    fn state(&self) -> std::sync::RwLockReadGuard<'_, KeyState> {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The keys, if loaded and not past the staleness bound.
    fn usable(&self) -> Option<Arc<KeySet>> {
        if self.source.is_refused() {
            return None;
        }
        let state = self.state();
        let fetched_at = state.fetched_at?;
        if fetched_at.elapsed() > self.bounds.jwks_max_stale {
            return None;
        }
        state.keys.clone()
    }

    /// Whether keys are loaded and within the staleness bound (readiness).
    pub fn is_ready(&self) -> bool {
        self.usable().is_some()
    }

    /// Seconds since the last successful fetch, for the key-age gauge.
    pub fn age(&self) -> Option<Duration> {
        self.state().fetched_at.map(|at| at.elapsed())
    }

    /// Runs `verify` with the key the header names, refetching on an unknown `kid`. Returns
    /// the key used too, so a cached verification lasts exactly as long as that key is served.
    pub async fn with_key<T>(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
        verify: impl Fn(&DecodingKey) -> Result<T, TokenFault>,
    ) -> Result<(Arc<VerificationKey>, T), TokenFault> {
        // Read before looking, so a fetch that finishes between the look and the wait counts.
        let attempts = self.state().attempts;
        if let Some(keys) = self.usable() {
            match keys.select(kid, alg) {
                KeySelection::Found(key) => {
                    let verified = verify(key.decoding_key())?;
                    return Ok((Arc::clone(key), verified));
                }
                KeySelection::AlgNotAllowed => return Err(TokenFault::AlgNotAllowed),
                KeySelection::Unknown => {}
            }
        }
        // OIDC Core §10.1.1: an unfamiliar kid is the signal to re-read the JWKS (rotation).
        self.refetch_for_unknown_kid(attempts).await;
        // No usable keys means our dependency failed, not the client's token: 503, never
        // `invalid_token`, so a client does not throw a good token away.
        let keys = self.usable().ok_or(TokenFault::KeysUnavailable)?;
        match keys.select(kid, alg) {
            KeySelection::Found(key) => {
                let verified = verify(key.decoding_key())?;
                Ok((Arc::clone(key), verified))
            }
            KeySelection::AlgNotAllowed => Err(TokenFault::AlgNotAllowed),
            // R-J04: after a failed fetch the key may exist at the issuer unseen by us.
            KeySelection::Unknown if self.state().last_failed => Err(TokenFault::KeysUnavailable),
            KeySelection::Unknown => Err(TokenFault::UnknownKey),
        }
    }

    /// Whether `key` is still served (same `kid`, key material and algorithms, within the
    /// staleness bound): a cached verification by it holds while this does.
    pub fn still_holds(&self, key: &VerificationKey) -> bool {
        self.usable().is_some_and(|keys| keys.holds(key))
    }

    /// Single flight for unknown kids. A request waits for the fetch in progress (scheduled or
    /// forced) and takes its result; if none finished since it looked (`attempts`), it fetches
    /// itself, unless a forced fetch happened within the cooldown.
    async fn refetch_for_unknown_kid(&self, attempts: u64) {
        let _flight = self.fetching.lock().await;
        if self.state().attempts != attempts || !self.cooldown_elapsed() {
            return;
        }
        *self
            .last_miss_fetch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
        // Failures are logged and counted inside refresh; the caller re-reads the state.
        let _ = self.refresh_locked().await;
    }

    fn cooldown_elapsed(&self) -> bool {
        let last = self
            .last_miss_fetch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        last.is_none_or(|at| at.elapsed() >= self.bounds.jwks_refetch_cooldown)
    }

    /// Fetches the JWKS now and installs it if it is good; a failure keeps the old keys.
    pub async fn refresh(&self) -> Result<(), FetchError> {
        let _flight = self.fetching.lock().await;
        self.refresh_locked().await
    }

    async fn refresh_locked(&self) -> Result<(), FetchError> {
        let issuer = &*self.issuer.issuer;
        // Revalidate only what is held: without keys a 304 would confirm nothing.
        let held = {
            let state = self.state();
            state.keys.as_ref().and(state.etag.clone())
        };
        let result = match self.source.uri().await {
            Ok(uri) => {
                let etag = held.filter(|(from, _)| *from == uri).map(|(_, etag)| etag);
                self.fetch(&uri, etag).await.map(|fetched| (uri, fetched))
            }
            Err(err) => Err(err),
        };
        self.metrics.record_jwks_fetch(issuer, result.is_ok());
        let mut state = self
            .state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.attempts = state.attempts.wrapping_add(1);
        state.last_failed = result.is_err();
        let now = Instant::now();
        match result {
            Ok((_, Fetched::Unchanged { lifetime })) => {
                // RFC 9110 §15.4.5: the held keys are current; their age starts again.
                state.fetched_at = Some(now);
                state.fresh_until = Some(now + lifetime);
                drop(state);
                tracing::debug!(issuer, "jwks unchanged (304); keys revalidated");
                Ok(())
            }
            Ok((
                uri,
                Fetched::Keys {
                    keys,
                    lifetime,
                    etag,
                },
            )) => {
                self.metrics.set_jwks_keys_loaded(issuer, keys.len());
                let loaded = keys.len();
                state.keys = Some(Arc::new(keys));
                state.etag = etag.map(|etag| (uri, etag));
                state.fetched_at = Some(now);
                state.fresh_until = Some(now + lifetime);
                drop(state);
                tracing::info!(issuer, keys.loaded = loaded, "jwks refreshed");
                Ok(())
            }
            Err(err) => {
                let jwks_uri = &self.source;
                let held = state.keys.is_some();
                drop(state);
                // Before the first good fetch there is nothing to keep: saying so, with the
                // URL, points an operator at the endpoint rather than at the tokens.
                if held {
                    tracing::warn!(issuer, jwks.uri = %jwks_uri, error = %err, "jwks fetch failed; keeping the last good keys");
                } else {
                    tracing::warn!(issuer, jwks.uri = %jwks_uri, error = %err, "jwks fetch failed; no keys yet, so tokens of this issuer get 503");
                }
                Err(err)
            }
        }
    }

    /// GETs the JWKS, conditionally on `etag` when one is held.
    async fn fetch(
        &self,
        uri: &http::Uri,
        etag: Option<HeaderValue>,
    ) -> Result<Fetched, FetchError> {
        let answer = fetch::get(
            &self.client,
            Conditional {
                uri,
                accept: "application/jwk-set+json, application/json",
                also_json: "application/jwk-set+json",
                etag,
                default_lifetime: self.bounds.jwks_cache_ttl,
                max_bytes: MAX_JWKS_BYTES,
                timeout: self.bounds.jwks_fetch_timeout,
            },
        )
        .await?;
        let (body, lifetime, etag) = match answer {
            Answer::Unchanged { lifetime } => return Ok(Fetched::Unchanged { lifetime }),
            Answer::Document {
                body,
                lifetime,
                etag,
            } => (body, lifetime, etag),
        };
        let entries = parse_key_set(&body, &self.issuer)?;
        // Counted even when the document is refused for having no usable key: a JWKS of only
        // weak keys is exactly what an operator must hear about.
        self.note_rejections(&entries.rejected);
        Ok(Fetched::Keys {
            keys: entries.into_key_set()?,
            lifetime,
            etag,
        })
    }

    /// Logs and counts each rejected entry the first time this issuer serves it, not at every
    /// refresh: the counter then says how many bad entries appeared, and the log stays readable.
    fn note_rejections(&self, rejected: &[RejectedKey]) {
        let issuer = &*self.issuer.issuer;
        let mut seen = self
            .rejections_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut new = 0u64;
        for key in rejected {
            if seen.contains(&key.fingerprint) {
                continue;
            }
            if seen.len() >= MAX_REMEMBERED_REJECTIONS {
                seen.clear();
            }
            seen.insert(key.fingerprint);
            new += 1;
            tracing::warn!(
                issuer,
                key.kid = key.kid.as_deref().unwrap_or("-"),
                key.fingerprint = %key.short_fingerprint(),
                key.rejected = key.reason.as_str(),
                "jwks entry refused"
            );
        }
        if new > 0 {
            self.metrics.record_jwks_keys_rejected(issuer, new);
        }
    }

    /// When the next scheduled refresh is due.
    fn next_refresh(&self, failures: u32) -> Duration {
        if let Some(delay) = fetch::retry_delay(failures) {
            return delay;
        }
        self.state().fresh_until.map_or(Duration::ZERO, |until| {
            until.saturating_duration_since(Instant::now())
        })
    }

    /// Keeps the keys fresh until the task is aborted.
    pub async fn run_refresher(self: Arc<Self>) {
        let mut failures = 0u32;
        loop {
            match self.refresh().await {
                Ok(()) => failures = 0,
                Err(_) => failures = failures.saturating_add(1),
            }
            tokio::time::sleep(self.next_refresh(failures)).await;
        }
    }

    /// Publishes the key-age gauge (called at scrape time).
    pub fn publish_age(&self) {
        if let Some(age) = self.age() {
            self.metrics
                .set_jwks_key_age(&self.issuer.issuer, age.as_secs_f64());
        }
    }
}

/// The entries of one JWKS document: keys usable for the issuer, and those refused.
pub struct Entries {
    keys: Vec<VerificationKey>,
    rejected: Vec<RejectedKey>,
}

impl Entries {
    /// The usable keys as a set; none at all is an error, so such a document never replaces a
    /// good set.
    fn into_key_set(self) -> Result<KeySet, FetchError> {
        if self.keys.is_empty() {
            return Err(FetchError::Document("no usable key"));
        }
        // The same key listed twice is one key: kept twice, it would make its `kid` ambiguous
        // and refuse every token it signed.
        let mut seen = HashSet::new();
        let keys = self
            .keys
            .into_iter()
            .filter(|key| seen.insert(key.fingerprint))
            .map(Arc::new)
            .collect();
        Ok(KeySet { keys })
    }
}

/// A JWKS entry refused at load, remembered by the SHA-256 of its JSON text.
pub struct RejectedKey {
    kid: Option<String>,
    fingerprint: [u8; 32],
    reason: KeyRejection,
}

impl RejectedKey {
    /// The first eight bytes of the fingerprint, in hex, for the log line.
    fn short_fingerprint(&self) -> String {
        self.fingerprint
            .iter()
            .take(8)
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }
}

/// Parses a JWKS document into the keys usable for `issuer` and the entries refused.
/// Only a document that is not JSON or has no `keys` array is an error here.
pub fn parse_key_set(body: &[u8], issuer: &IssuerConfig) -> Result<Entries, FetchError> {
    let document: Value =
        serde_json::from_slice(body).map_err(|_| FetchError::Document("not JSON"))?;
    let Some(entries) = document.get("keys").and_then(Value::as_array) else {
        return Err(FetchError::Document("no keys array"));
    };
    let mut keys = Vec::new();
    let mut rejected = Vec::new();
    for entry in entries {
        match parse_key(entry, issuer) {
            KeyVerdict::Usable(key) => keys.push(key),
            KeyVerdict::Ignored => {}
            KeyVerdict::Rejected(reason) => rejected.push(RejectedKey {
                kid: entry.get("kid").and_then(Value::as_str).and_then(loggable),
                fingerprint: crate::jose::sha256(entry.to_string().as_bytes()),
                reason,
            }),
        }
    }
    Ok(Entries { keys, rejected })
}

/// A `kid` fit for a log line: short printable ASCII, or nothing (the fingerprint remains).
fn loggable(kid: &str) -> Option<String> {
    let printable = kid.bytes().all(|b| (0x20..0x7f).contains(&b));
    (printable && kid.len() <= 128).then(|| kid.to_owned())
}

enum KeyVerdict {
    Usable(VerificationKey),
    /// Not for us (encryption keys, unknown key types, algorithms this issuer may not use):
    /// RFC 7517 §5 says to ignore them.
    Ignored,
    /// Malformed, weak or dangerous: logged once and counted.
    Rejected(KeyRejection),
}

fn parse_key(entry: &Value, issuer: &IssuerConfig) -> KeyVerdict {
    let key = match jwk::public_key(entry) {
        Ok(Some(key)) => key,
        Ok(None) => return KeyVerdict::Ignored,
        Err(reason) => return KeyVerdict::Rejected(reason),
    };
    // RFC 8725 §3.1: the issuer's allow-list ∩ what the key may verify.
    let algorithms: Vec<Algorithm> = issuer
        .algorithms
        .iter()
        .filter(|alg| key.algorithms().contains(alg))
        .collect();
    if algorithms.is_empty() {
        return KeyVerdict::Ignored;
    }
    let kid = entry.get("kid").and_then(Value::as_str).map(str::to_owned);
    KeyVerdict::Usable(VerificationKey {
        fingerprint: fingerprint(kid.as_deref(), entry, &algorithms),
        kid,
        algorithms,
        key: key.into_decoding_key(),
    })
}

/// What makes a key the same key in a later fetch: its `kid`, its material (the RFC 7638
/// thumbprint, blind to member order and extra members) and what it may verify.
fn fingerprint(kid: Option<&str>, entry: &Value, algorithms: &[Algorithm]) -> [u8; 32] {
    // Every key `jose::jwk` accepts has a thumbprint; the entry's text is a stricter stand-in.
    let material = jwk::thumbprint(entry).unwrap_or_else(|| entry.to_string());
    let algorithms: Vec<String> = algorithms.iter().map(|alg| format!("{alg:?}")).collect();
    crate::jose::sha256(
        serde_json::json!([kid, material, algorithms])
            .to_string()
            .as_bytes(),
    )
}

// The cache's tests build keys with these fixtures.
#[cfg(test)]
pub(super) mod tests;
