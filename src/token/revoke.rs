//! RFC 7009 token revocation at the authorization server, for the monitor's `revoke` action.
//! RFC 7009 takes the token itself, so while a revoke action is configured the decision chain
//! hands each verified token's text here, kept by `jti` in a bounded cache only until the token
//! expires — and only here, inside `token/`. Each `jti` is revoked at most once (P-03): a
//! detector that keeps firing for one token sends one request, never a stream.

use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http_body_util::Full;
use moka::sync::Cache;

use super::introspection::{client_basic, form_encode};
use super::{BearerToken, Jti, VerifiedToken};
use crate::config::ClientEndpoint;
use crate::tls::{HttpsClient, TlsError, https_client};

/// Tokens remembered for revocation at most (each until its `exp`, or the lifetime bound).
const MAX_REMEMBERED: u64 = 100_000;
/// Bound on one revocation call.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a revocation did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeOutcome {
    /// The server accepted it (RFC 7009 §2.2: 200).
    Revoked,
    /// This `jti` was already revoked, or is being revoked: nothing sent.
    AlreadyDone,
    /// The token is no longer remembered (expired or evicted): nothing sent.
    Unknown,
    /// The server could not be reached or refused.
    Failed,
}

/// The RFC 7009 client and the tokens it may revoke.
pub struct TokenRevoker {
    client: HttpsClient<Full<Bytes>>,
    endpoint: http::Uri,
    authorization: http::HeaderValue,
    recent: Cache<Jti, BearerToken>,
    done: Cache<Jti, ()>,
}

impl TokenRevoker {
    /// A client for `config`; tokens are remembered for at most `max_lifetime`.
    pub fn new(config: &ClientEndpoint, max_lifetime: Duration) -> Result<Self, TlsError> {
        let credentials = &config.credentials;
        let authorization =
            client_basic(&credentials.client_id, &credentials.client_secret, "revoke")?;
        Ok(Self {
            client: https_client(credentials.ca_file.as_deref())?,
            endpoint: config.endpoint.clone(),
            authorization,
            recent: bounded(max_lifetime),
            done: bounded(max_lifetime),
        })
    }

    /// Keeps `bearer` so the token named by its `jti` can be revoked later.
    pub fn remember(&self, token: &VerifiedToken, bearer: &BearerToken) {
        if let Some(jti) = &token.jti {
            self.recent.insert(jti.clone(), bearer.clone());
        }
    }

    /// Revokes the token named `jti` at the server, at most once per `jti`.
    pub async fn revoke(&self, jti: &Jti) -> RevokeOutcome {
        if !self.done.entry(jti.clone()).or_insert(()).is_fresh() {
            return RevokeOutcome::AlreadyDone;
        }
        let Some(bearer) = self.recent.get(jti) else {
            return RevokeOutcome::Unknown;
        };
        let body = format!(
            "token={}&token_type_hint=access_token",
            form_encode(bearer.expose())
        );
        let Ok(request) = http::Request::post(self.endpoint.clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(AUTHORIZATION, self.authorization.clone())
            .body(Full::new(Bytes::from(body)))
        else {
            return RevokeOutcome::Failed;
        };
        match tokio::time::timeout(CALL_TIMEOUT, self.client.request(request)).await {
            Ok(Ok(response)) if response.status() == http::StatusCode::OK => {
                self.recent.invalidate(jti);
                RevokeOutcome::Revoked
            }
            _ => RevokeOutcome::Failed,
        }
    }
}

/// A cache of at most [`MAX_REMEMBERED`] entries, each kept as long as a token can live.
fn bounded<V: Clone + Send + Sync + 'static>(max_lifetime: Duration) -> Cache<Jti, V> {
    Cache::builder()
        .max_capacity(MAX_REMEMBERED)
        .time_to_live(max_lifetime)
        .build()
}
