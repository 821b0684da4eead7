//! RFC 7662 token introspection: for opaque tokens, for rules that demand it
//! (`introspect: always`), and to learn a launch patient a token lacks. phigate authenticates
//! to the endpoint with HTTP Basic (RFC 7662 §2.1). Results are cached by the token's SHA-256 —
//! an active result no longer than the token lives and the configured bound, an inactive one
//! briefly — and only the result is cached, never a decision: scopes are evaluated per request
//! (Ory Oathkeeper CVE-2021-32701), and the revocation list still applies to a cached result.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::Value;

use super::claims::{self, VerifiedToken};
use super::metadata::IssuerMetadata;
use super::{BearerToken, TokenDigest, TokenFault};
use crate::breaker::Breaker;
use crate::config::{IntrospectionConfig, IssuerConfig, TokenBounds};
use crate::strict_json;
use crate::tls::{HttpsClient, TlsError, https_client};

/// The largest introspection response phigate reads.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Entries kept in the result cache.
const CACHE_CAPACITY: u64 = 10_000;

#[derive(Clone)]
enum Cached {
    Active(Arc<VerifiedToken>, Instant),
    Inactive(Instant),
}

/// Introspects one issuer's tokens.
pub struct Introspector {
    issuer: IssuerConfig,
    /// Where the endpoint is found when the configuration names none.
    metadata: Arc<IssuerMetadata>,
    config: IntrospectionConfig,
    bounds: TokenBounds,
    authorization: http::HeaderValue,
    client: HttpsClient<Full<Bytes>>,
    cache: moka::sync::Cache<TokenDigest, Cached>,
    /// An endpoint that keeps failing is not waited on by every request.
    breaker: Breaker,
}

impl Introspector {
    /// An introspector for `issuer`, which must have introspection configured; `metadata`
    /// names the endpoint when the configuration does not; `circuit` is its breaker's gauge.
    pub fn new(
        (issuer, config): (&IssuerConfig, &IntrospectionConfig),
        metadata: Arc<IssuerMetadata>,
        bounds: &TokenBounds,
        circuit: prometheus_client::metrics::gauge::Gauge,
    ) -> Result<Self, TlsError> {
        let client = https_client(config.credentials.ca_file.as_deref())?;
        let authorization = client_basic(
            &config.credentials.client_id,
            &config.credentials.client_secret,
            "introspection",
        )?;
        let cache = moka::sync::Cache::builder()
            .max_capacity(CACHE_CAPACITY)
            .time_to_live(config.cache_ttl.max(config.negative_cache_ttl))
            .build();
        Ok(Self {
            issuer: issuer.clone(),
            metadata,
            config: config.clone(),
            bounds: bounds.clone(),
            authorization,
            client,
            cache,
            breaker: Breaker::new("introspection", circuit),
        })
    }

    /// Whether a launch patient missing from a token should be looked up here.
    pub fn resolves_patient(&self) -> bool {
        self.config.resolve_patient
    }

    /// The token's introspection result: active (as a verified token) or a fault.
    pub async fn introspect(
        &self,
        bearer: &BearerToken,
        now: i64,
    ) -> Result<Arc<VerifiedToken>, TokenFault> {
        let digest = *bearer.digest();
        match self.cache.get(&digest) {
            Some(Cached::Active(verified, until))
                if Instant::now() < until && now <= verified.expires_at =>
            {
                return Ok(verified);
            }
            Some(Cached::Inactive(until)) if Instant::now() < until => {
                return Err(TokenFault::Inactive);
            }
            _ => {}
        }
        let pass = self
            .breaker
            .pass()
            .ok_or(TokenFault::IntrospectionUnavailable)?;
        let response = tokio::time::timeout(self.config.timeout, self.call(bearer.expose()))
            .await
            .unwrap_or(Err(TokenFault::IntrospectionUnavailable));
        pass.settle(response.is_ok());
        let response = response?;
        let active = response.get("active");
        if active != Some(&Value::Bool(true)) {
            // RFC 7662 §2.2: `active` is a boolean; `"true"` or absent is not active.
            self.cache.insert(
                digest,
                Cached::Inactive(Instant::now() + self.config.negative_cache_ttl),
            );
            return Err(TokenFault::Inactive);
        }
        let Value::Object(claims) = response else {
            return Err(TokenFault::IntrospectionUnavailable);
        };
        let verified = Arc::new(claims::from_introspection(
            &claims,
            &self.issuer,
            &self.bounds,
            now,
        )?);
        let remaining = u64::try_from(verified.expires_at.saturating_sub(now)).unwrap_or(0);
        let ttl = self.config.cache_ttl.min(Duration::from_secs(remaining));
        self.cache.insert(
            digest,
            Cached::Active(Arc::clone(&verified), Instant::now() + ttl),
        );
        Ok(verified)
    }

    async fn call(&self, token: &str) -> Result<Value, TokenFault> {
        let body = format!("token={}&token_type_hint=access_token", form_encode(token));
        let endpoint = match &self.config.endpoint {
            Some(endpoint) => endpoint.clone(),
            // No endpoint without believed metadata: the token cannot be decided (503).
            None => self.metadata.introspection_endpoint().await.map_err(|err| {
                tracing::warn!(issuer = &*self.issuer.issuer, error = %err, "introspection endpoint unknown");
                TokenFault::IntrospectionUnavailable
            })?,
        };
        let request = http::Request::post(endpoint)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .header(AUTHORIZATION, self.authorization.clone())
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| TokenFault::IntrospectionUnavailable)?;
        let response = self.client.request(request).await.map_err(|err| {
            tracing::warn!(issuer = &*self.issuer.issuer, error = %err, "introspection request failed");
            TokenFault::IntrospectionUnavailable
        })?;
        let is_json = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .eq_ignore_ascii_case("application/json")
            });
        if response.status() != http::StatusCode::OK || !is_json {
            tracing::warn!(
                issuer = &*self.issuer.issuer,
                status = response.status().as_u16(),
                "introspection refused"
            );
            return Err(TokenFault::IntrospectionUnavailable);
        }
        let bytes = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|_| TokenFault::IntrospectionUnavailable)?
            .to_bytes();
        strict_json::parse(&bytes).map_err(|_| TokenFault::IntrospectionUnavailable)
    }
}

/// `application/x-www-form-urlencoded` byte encoding: `*-._` stay as they are.
const FORM: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'*')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_');

/// The `Authorization: Basic` value for a confidential client calling the authorization server
/// (`purpose` names the call in the error).
pub(super) fn client_basic(
    client_id: &str,
    client_secret: &str,
    purpose: &str,
) -> Result<http::HeaderValue, TlsError> {
    // RFC 6749 §2.3.1: client id and secret are form-encoded before Basic encoding.
    let credentials = format!("{}:{}", form_encode(client_id), form_encode(client_secret));
    http::HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(credentials))).map_err(|_| {
        TlsError::Rustls(format!(
            "the {purpose} client credentials are not header-safe"
        ))
    })
}

pub(super) fn form_encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, FORM).to_string()
}
