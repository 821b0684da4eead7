//! One issuer's own metadata: RFC 8414 (`/.well-known/oauth-authorization-server`, inserted
//! before the issuer's path), then OpenID Connect discovery (`/.well-known/openid-configuration`
//! appended) when the first is not served. Fetched through `fetch` like the JWKS (ETag
//! revalidation, Cache-Control lifetime, backoff) and refreshed in the background. A document
//! is believed only when its `issuer` is the configured identifier byte for byte and every
//! endpoint it names is https (http only for an http issuer, the development allowance): else
//! it is refused whole, logged and counted, and an issuer whose keys it would locate gets none
//! (503, as when its JWKS is unreachable). A failed fetch keeps the last good document.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use http::HeaderValue;
use serde_json::{Map, Value};

use super::fetch::{self, Answer, Conditional, DocumentClient, FetchError};
use crate::config::TokenBounds;
use crate::telemetry::Metrics;

/// A metadata document larger than this is refused.
const MAX_METADATA_BYTES: usize = 256 * 1024;

/// RFC 8414 §2 and OIDC Discovery §3 members naming an endpoint: each must be https.
const ENDPOINTS: [&str; 8] = [
    "authorization_endpoint",
    "token_endpoint",
    "revocation_endpoint",
    "introspection_endpoint",
    "jwks_uri",
    "registration_endpoint",
    "userinfo_endpoint",
    "management_endpoint",
];

/// Members listing what the server supports, passed on to clients when they are string lists.
const LISTS: [&str; 5] = [
    "grant_types_supported",
    "code_challenge_methods_supported",
    "response_types_supported",
    "token_endpoint_auth_methods_supported",
    "token_endpoint_auth_signing_alg_values_supported",
];

/// Why a document was refused; only operators see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not a JSON object.
    NotAnObject,
    /// `issuer` is absent or not exactly the configured identifier (RFC 8414 §3.3).
    IssuerMismatch,
    /// An endpoint is not an absolute https URL.
    InsecureEndpoint,
}

impl Refusal {
    fn as_str(self) -> &'static str {
        match self {
            Self::NotAnObject => "not a JSON object",
            Self::IssuerMismatch => "issuer is not the configured identifier",
            Self::InsecureEndpoint => "an endpoint is not an https URL",
        }
    }
}

/// What a believed document says: the members phigate passes on, and the JWKS URL.
#[derive(Debug, Clone, PartialEq)]
pub struct Metadata {
    members: Map<String, Value>,
    jwks_uri: Option<http::Uri>,
    introspection_endpoint: Option<http::Uri>,
}

impl Metadata {
    /// Checks `body` against `issuer` and keeps the members phigate passes on.
    pub fn parse(body: &[u8], issuer: &str) -> Result<Self, Refusal> {
        let Ok(Value::Object(document)) = serde_json::from_slice::<Value>(body) else {
            return Err(Refusal::NotAnObject);
        };
        if document.get("issuer").and_then(Value::as_str) != Some(issuer) {
            return Err(Refusal::IssuerMismatch);
        }
        let insecure_allowed = issuer.starts_with("http://");
        let mut members = Map::new();
        members.insert("issuer".into(), Value::from(issuer));
        let mut jwks_uri = None;
        let mut introspection_endpoint = None;
        for name in ENDPOINTS {
            let Some(value) = document.get(name) else {
                continue;
            };
            let uri = value
                .as_str()
                .and_then(|text| endpoint(text, insecure_allowed))
                .ok_or(Refusal::InsecureEndpoint)?;
            match name {
                "jwks_uri" => jwks_uri = Some(uri),
                "introspection_endpoint" => introspection_endpoint = Some(uri),
                _ => {}
            }
            members.insert(name.into(), value.clone());
        }
        for name in LISTS {
            if let Some(Value::Array(items)) = document.get(name)
                && items.iter().all(Value::is_string)
            {
                members.insert(name.into(), Value::Array(items.clone()));
            }
        }
        Ok(Self {
            members,
            jwks_uri,
            introspection_endpoint,
        })
    }

    /// The members phigate passes on: `issuer`, the endpoints, and the supported-value lists.
    pub fn members(&self) -> &Map<String, Value> {
        &self.members
    }
}

/// An absolute https URL (or http when the issuer itself is http) without user info.
fn endpoint(text: &str, insecure_allowed: bool) -> Option<http::Uri> {
    let uri = text.parse::<http::Uri>().ok()?;
    let scheme_ok = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => insecure_allowed,
        _ => false,
    };
    let authority = uri.authority()?;
    (scheme_ok && !authority.as_str().contains('@')).then_some(uri)
}

/// Where the metadata of `issuer` is published, in the order tried: RFC 8414 §3.1 (the
/// well-known path inserted before the issuer's path, its terminating slash removed), then
/// OIDC Discovery §4 (appended to the issuer).
pub fn metadata_urls(issuer: &str) -> Option<[http::Uri; 2]> {
    let uri = issuer.parse::<http::Uri>().ok()?;
    let scheme = uri.scheme_str()?;
    let authority = uri.authority()?;
    let path = uri.path().trim_end_matches('/');
    let rfc8414 = format!("{scheme}://{authority}/.well-known/oauth-authorization-server{path}");
    let oidc = format!("{scheme}://{authority}{path}/.well-known/openid-configuration");
    Some([rfc8414.parse().ok()?, oidc.parse().ok()?])
}

/// The outcome of one refresh.
enum Outcome {
    Believed(Box<Metadata>, usize, Option<HeaderValue>, Duration),
    Unchanged(Duration),
    Refused(Refusal),
    Failed(FetchError),
}

#[derive(Default)]
struct State {
    document: Option<Arc<Metadata>>,
    /// The validator and which of the two URLs it came from.
    etag: Option<(usize, HeaderValue)>,
    fetched_at: Option<Instant>,
    fresh_until: Option<Instant>,
    /// The latest document was refused: nothing it said is used, not even what came before.
    refused: bool,
}

/// The metadata cache of one issuer.
pub struct IssuerMetadata {
    issuer: Arc<str>,
    urls: Option<[http::Uri; 2]>,
    client: DocumentClient,
    bounds: TokenBounds,
    metrics: Arc<Metrics>,
    state: RwLock<State>,
    /// One fetch at a time; a JWKS fetch waiting for a first document waits for it.
    fetching: tokio::sync::Mutex<()>,
    refresher_started: AtomicBool,
}

impl IssuerMetadata {
    /// An empty cache for `issuer`; nothing is fetched until asked or the refresher runs.
    pub fn new(
        issuer: Arc<str>,
        client: DocumentClient,
        bounds: TokenBounds,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            urls: metadata_urls(&issuer),
            issuer,
            client,
            bounds,
            metrics,
            state: RwLock::new(State::default()),
            fetching: tokio::sync::Mutex::new(()),
            refresher_started: AtomicBool::new(false),
        }
    }

    fn state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The last believed document, unless the latest one was refused.
    pub fn current(&self) -> Option<Arc<Metadata>> {
        let state = self.state();
        state.document.clone().filter(|_| !state.refused)
    }

    /// Whether the latest document was refused (its keys must not be used).
    pub fn is_refused(&self) -> bool {
        self.state().refused
    }

    /// The JWKS URL the metadata names, fetching the metadata first if none is held yet.
    pub async fn jwks_uri(&self) -> Result<http::Uri, FetchError> {
        self.endpoint(|m| m.jwks_uri.as_ref(), "it names no jwks_uri")
            .await
    }

    /// The RFC 7662 endpoint the metadata names, fetching the metadata first if none is held.
    pub async fn introspection_endpoint(&self) -> Result<http::Uri, FetchError> {
        self.endpoint(
            |m| m.introspection_endpoint.as_ref(),
            "it names no introspection_endpoint",
        )
        .await
    }

    async fn endpoint(
        &self,
        pick: impl Fn(&Metadata) -> Option<&http::Uri>,
        missing: &'static str,
    ) -> Result<http::Uri, FetchError> {
        if self.current().is_none() && !self.is_refused() {
            let _flight = self.fetching.lock().await;
            // The fetch this waited for may have brought a document: then there is no need
            // for another. Failures are logged and counted inside, and named to the caller.
            if self.current().is_none() && !self.is_refused() {
                self.refresh_locked()
                    .await
                    .map_err(|err| FetchError::Metadata(err.to_string()))?;
            }
        }
        if self.is_refused() {
            return Err(FetchError::Metadata(
                "the latest document was refused".into(),
            ));
        }
        let document = self
            .current()
            .ok_or_else(|| FetchError::Metadata("none fetched yet".into()))?;
        pick(&document)
            .cloned()
            .ok_or_else(|| FetchError::Metadata(missing.into()))
    }

    /// Seconds since the last believed document was fetched or revalidated.
    pub fn age(&self) -> Option<Duration> {
        self.state().fetched_at.map(|at| at.elapsed())
    }

    /// Fetches the metadata now; a failure keeps the last good document, a refusal drops it.
    pub async fn refresh(&self) -> Result<(), FetchError> {
        let _flight = self.fetching.lock().await;
        self.refresh_locked().await
    }

    async fn refresh_locked(&self) -> Result<(), FetchError> {
        let outcome = self.fetch().await;
        let issuer = &*self.issuer;
        let now = Instant::now();
        let mut state = self
            .state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let result = match outcome {
            Outcome::Believed(document, from, etag, lifetime) => {
                state.document = Some(Arc::from(document));
                state.etag = etag.map(|etag| (from, etag));
                state.refused = false;
                state.fetched_at = Some(now);
                state.fresh_until = Some(now + lifetime);
                tracing::info!(issuer, "issuer metadata refreshed");
                Ok(())
            }
            Outcome::Unchanged(lifetime) => {
                state.fetched_at = Some(now);
                state.fresh_until = Some(now + lifetime);
                tracing::debug!(issuer, "issuer metadata unchanged (304)");
                Ok(())
            }
            Outcome::Refused(refusal) => {
                state.document = None;
                state.etag = None;
                state.refused = true;
                tracing::error!(
                    issuer,
                    problem = refusal.as_str(),
                    "issuer metadata refused; its keys are not used"
                );
                Err(FetchError::Document(refusal.as_str()))
            }
            Outcome::Failed(err) => {
                let held = state.document.is_some();
                tracing::warn!(issuer, error = %err, metadata.held = held, "issuer metadata fetch failed");
                Err(err)
            }
        };
        drop(state);
        if result.is_err() {
            self.metrics.record_issuer_metadata_failure(issuer);
        }
        result
    }

    /// Tries the RFC 8414 URL, then the OIDC one. A document refused at the first is final: a
    /// server answering wrongly there is not asked again elsewhere.
    async fn fetch(&self) -> Outcome {
        let Some(urls) = &self.urls else {
            return Outcome::Failed(FetchError::Document("the issuer is not a URL"));
        };
        let held = {
            let state = self.state();
            state.etag.clone().filter(|_| state.document.is_some())
        };
        let mut failure = FetchError::Document("not fetched yet");
        for (index, uri) in urls.iter().enumerate() {
            let etag = held
                .as_ref()
                .filter(|(from, _)| *from == index)
                .map(|(_, etag)| etag.clone());
            let answer = fetch::get(
                &self.client,
                Conditional {
                    uri,
                    accept: "application/json",
                    also_json: "application/json",
                    etag,
                    default_lifetime: self.bounds.jwks_cache_ttl,
                    max_bytes: MAX_METADATA_BYTES,
                    timeout: self.bounds.jwks_fetch_timeout,
                },
            )
            .await;
            match answer {
                Ok(Answer::Unchanged { lifetime }) => return Outcome::Unchanged(lifetime),
                Ok(Answer::Document {
                    body,
                    lifetime,
                    etag,
                }) => {
                    return match Metadata::parse(&body, &self.issuer) {
                        Ok(document) => {
                            Outcome::Believed(Box::new(document), index, etag, lifetime)
                        }
                        Err(refusal) => Outcome::Refused(refusal),
                    };
                }
                Err(err) => failure = err,
            }
        }
        Outcome::Failed(failure)
    }

    /// Starts the background refresher once; later calls start nothing, and neither does an
    /// issuer that is not a URL (with a `jwks_uri`, it may be any string), which publishes none.
    pub fn spawn_refresher(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        if self.urls.is_none() || self.refresher_started.swap(true, Ordering::SeqCst) {
            return None;
        }
        // Present at zero from the start, so an alert on an increase sees the first failure.
        self.metrics.init_issuer_metadata(&self.issuer);
        Some(tokio::spawn(Arc::clone(self).run_refresher()))
    }

    async fn run_refresher(self: Arc<Self>) {
        let mut failures = 0u32;
        loop {
            match self.refresh().await {
                Ok(()) => failures = 0,
                Err(_) => failures = failures.saturating_add(1),
            }
            let delay = fetch::retry_delay(failures).unwrap_or_else(|| {
                self.state().fresh_until.map_or(Duration::ZERO, |until| {
                    until.saturating_duration_since(Instant::now())
                })
            });
            tokio::time::sleep(delay).await;
        }
    }

    /// Publishes the age gauge (called at scrape time), once a refresher runs.
    pub fn publish_age(&self) {
        if let (true, Some(age)) = (self.refresher_started.load(Ordering::SeqCst), self.age()) {
            self.metrics
                .set_issuer_metadata_age(&self.issuer, age.as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests;
