//! A development token issuer: a real JWKS endpoint over HTTP plus a token minter.
//!
//! `DevIssuer` generates signing keys in memory (ES256, ES384, RS256, PS256, EdDSA), publishes
//! their public halves at `/.well-known/jwks.json`, serves the metadata documents it is handed
//! (RFC 8414 / OIDC discovery, at any path, with the JWKS's validators), and signs access tokens
//! with them. Test hooks make the endpoints slow, failing or odd so the gateway's caches can be
//! exercised. It is for
//! `phigate demo` and tests only and must never issue tokens a production gateway trusts: it
//! signs any claims it is handed and keeps its private keys in plain memory.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
    EcdsaSigningAlgorithm, Ed25519KeyPair, KeyPair as _,
};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::header::{ALLOW, CACHE_CONTROL, ETAG, HeaderValue, IF_NONE_MATCH};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::token_endpoint::{
    GrantError, GrantSettings, MAX_REQUEST_BYTES, TOKEN_PATH, TokenRequest,
};
use super::{Background, Body, respond};

/// The path the JWKS is served at.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";
/// The kid of the ES256 key every issuer starts with.
pub const INITIAL_KID: &str = "dev-es256-1";
/// The `typ` header of minted access tokens (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

const DEFAULT_CACHE_MAX_AGE: u64 = 300;
const JWKS_CONTENT_TYPE: &str = "application/jwk-set+json";

/// Why the issuer could not add a key or sign a token.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    /// The algorithm is not one the issuer can generate keys for.
    #[error("the dev issuer cannot generate {0:?} keys")]
    UnsupportedAlgorithm(Algorithm),
    /// A signing key with this kid already exists.
    #[error("a signing key with kid {0:?} already exists")]
    DuplicateKid(String),
    /// No signing key has this kid.
    #[error("no signing key has kid {0:?}")]
    UnknownKid(String),
    /// The key is the current signing key; choose another one first.
    #[error("kid {0:?} is the current signing key")]
    SigningKeyInUse(String),
    /// The crypto library failed to generate or parse a key.
    #[error("key generation failed")]
    KeyGeneration,
    /// jsonwebtoken refused to sign (for example, a header algorithm from another key family).
    #[error("signing failed: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

impl From<aws_lc_rs::error::Unspecified> for IssuerError {
    fn from(_: aws_lc_rs::error::Unspecified) -> Self {
        Self::KeyGeneration
    }
}

impl From<aws_lc_rs::error::KeyRejected> for IssuerError {
    fn from(_: aws_lc_rs::error::KeyRejected) -> Self {
        Self::KeyGeneration
    }
}

/// A development issuer: serves a JWKS over HTTP and mints tokens. Clones share one server.
#[derive(Clone)]
pub struct DevIssuer {
    inner: Arc<Inner>,
}

struct Inner {
    server: Background,
    state: Arc<State>,
}

/// What the server task and the handles share.
struct State {
    issuer: String,
    keys: Mutex<KeySet>,
    cache_max_age: AtomicU64,
    jwks_status: AtomicU16,
    body_override: Mutex<Option<String>>,
    delay: Mutex<Duration>,
    fetches: AtomicU64,
    /// JWKS requests answered 304 Not Modified.
    not_modified: AtomicU64,
    /// Metadata documents by path.
    metadata: Mutex<HashMap<String, String>>,
    metadata_fetches: AtomicU64,
    metadata_not_modified: AtomicU64,
    /// What the token endpoint grants; `None` keeps it closed (404).
    token_grant: Mutex<Option<GrantSettings>>,
}

/// The published entries in publication order, and which one signs by default.
struct KeySet {
    entries: Vec<Entry>,
    signing_kid: String,
}

/// One published JWK, with its private key when the issuer generated it.
struct Entry {
    kid: Option<String>,
    jwk: Value,
    signer: Option<Signer>,
}

struct Signer {
    alg: Algorithm,
    key: EncodingKey,
    /// The public half as an X.509 SubjectPublicKeyInfo (DER), for tools that take a PEM key.
    public_der: Vec<u8>,
    /// The private key as PKCS#8 (DER), for `phigate probe --issuer-key` against the demo.
    private_der: Vec<u8>,
}

// === impl DevIssuer ===

impl DevIssuer {
    /// Starts serving on `bind` with one ES256 signing key, kid `dev-es256-1`.
    pub async fn start(bind: SocketAddr, issuer: &str) -> std::io::Result<Self> {
        // jsonwebtoken 12 panics on the first signature unless a provider is installed; a second
        // install fails harmlessly when someone else already did it.
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        let (jwk, signer) = generate(Algorithm::ES256).map_err(std::io::Error::other)?;
        let state = Arc::new(State {
            issuer: issuer.to_owned(),
            keys: Mutex::new(KeySet {
                entries: vec![Entry::generated(INITIAL_KID, jwk, signer)],
                signing_kid: INITIAL_KID.to_owned(),
            }),
            cache_max_age: AtomicU64::new(DEFAULT_CACHE_MAX_AGE),
            jwks_status: AtomicU16::new(StatusCode::OK.as_u16()),
            body_override: Mutex::new(None),
            delay: Mutex::new(Duration::ZERO),
            fetches: AtomicU64::new(0),
            not_modified: AtomicU64::new(0),
            metadata: Mutex::new(HashMap::new()),
            metadata_fetches: AtomicU64::new(0),
            metadata_not_modified: AtomicU64::new(0),
            token_grant: Mutex::new(None),
        });
        let served = Arc::clone(&state);
        let server = Background::spawn(bind, move |req| {
            let state = Arc::clone(&served);
            async move { state.serve(req).await }
        })
        .await?;
        Ok(Self {
            inner: Arc::new(Inner { server, state }),
        })
    }

    /// The `iss` value this issuer puts in tokens.
    pub fn issuer(&self) -> &str {
        &self.inner.state.issuer
    }

    /// The address the server is listening on.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.server.local_addr
    }

    /// The JWKS URL, e.g. `http://127.0.0.1:PORT/.well-known/jwks.json`.
    pub fn jwks_uri(&self) -> String {
        format!("http://{}{JWKS_PATH}", self.inner.server.dial_addr())
    }

    /// The server's own base URL, e.g. `http://127.0.0.1:PORT`, for an issuer named after it.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.inner.server.dial_addr())
    }

    /// Opens the token endpoint ([`token_endpoint`](Self::token_endpoint)): client credentials
    /// requests get tokens for `settings.audience` (or the `resource` they name) that live
    /// `settings.lifetime`, signed with the signing key.
    pub fn serve_tokens(&self, settings: GrantSettings) {
        *lock(&self.inner.state.token_grant) = Some(settings);
    }

    /// The token endpoint's URL, e.g. `http://127.0.0.1:PORT/token`.
    pub fn token_endpoint(&self) -> String {
        format!("http://{}{TOKEN_PATH}", self.inner.server.dial_addr())
    }

    /// Serves `document` at `path` (a metadata document: `/.well-known/oauth-authorization-server`
    /// or `/.well-known/openid-configuration`, maybe with a path after it); `None` removes it.
    pub fn set_metadata(&self, path: &str, document: Option<&Value>) {
        let mut metadata = lock(&self.inner.state.metadata);
        match document {
            Some(document) => metadata.insert(path.to_owned(), document.to_string()),
            None => metadata.remove(path),
        };
    }

    /// How many metadata requests have arrived, at any path, served or not.
    pub fn metadata_fetch_count(&self) -> u64 {
        self.inner.state.metadata_fetches.load(Ordering::SeqCst)
    }

    /// How many metadata requests were answered 304 Not Modified.
    pub fn metadata_not_modified_count(&self) -> u64 {
        self.inner
            .state
            .metadata_not_modified
            .load(Ordering::SeqCst)
    }

    /// Generates and publishes a key for `alg` (ES256, ES384, RS256, PS256 or EdDSA).
    pub fn add_key(&self, alg: Algorithm, kid: &str) -> Result<(), IssuerError> {
        let (jwk, signer) = generate(alg)?;
        let mut keys = self.inner.state.keys();
        if keys.signer(kid).is_some() {
            return Err(IssuerError::DuplicateKid(kid.to_owned()));
        }
        keys.entries.push(Entry::generated(kid, jwk, signer));
        Ok(())
    }

    /// Removes every published entry with `kid`; the current signing key cannot be removed.
    pub fn remove_key(&self, kid: &str) -> Result<(), IssuerError> {
        let mut keys = self.inner.state.keys();
        if keys.signing_kid == kid {
            return Err(IssuerError::SigningKeyInUse(kid.to_owned()));
        }
        let before = keys.entries.len();
        keys.entries
            .retain(|entry| entry.kid.as_deref() != Some(kid));
        if keys.entries.len() == before {
            return Err(IssuerError::UnknownKid(kid.to_owned()));
        }
        Ok(())
    }

    /// Makes the generated key `kid` the one [`mint`](Self::mint) signs with.
    pub fn set_signing_key(&self, kid: &str) -> Result<(), IssuerError> {
        let mut keys = self.inner.state.keys();
        if keys.signer(kid).is_none() {
            return Err(IssuerError::UnknownKid(kid.to_owned()));
        }
        kid.clone_into(&mut keys.signing_kid);
        Ok(())
    }

    /// Publishes `jwk` exactly as given (odd `use`, `kty: oct`, private members, no kid...).
    pub fn publish_raw_jwk(&self, jwk: Value) {
        let kid = jwk.get("kid").and_then(Value::as_str).map(str::to_owned);
        self.inner.state.keys().entries.push(Entry {
            kid,
            jwk,
            signer: None,
        });
    }

    /// The JWK Set currently published, as served when no override is set.
    pub fn jwks(&self) -> Value {
        self.inner.state.keys().document()
    }

    /// Sets the `Cache-Control: max-age` the JWKS is served with (default 300 seconds).
    pub fn set_cache_max_age(&self, secs: u64) {
        self.inner
            .state
            .cache_max_age
            .store(secs, Ordering::Relaxed);
    }

    /// Makes the JWKS endpoint answer with `status` (200 restores normal service).
    pub fn set_jwks_status(&self, status: u16) {
        self.inner
            .state
            .jwks_status
            .store(status, Ordering::Relaxed);
    }

    /// Replaces the JWKS body with `body` (garbage, truncated JSON...); `None` restores it.
    pub fn set_jwks_body_override(&self, body: Option<String>) {
        *lock(&self.inner.state.body_override) = body;
    }

    /// Delays every JWKS response by `delay`, to make the endpoint slow.
    pub fn set_jwks_delay(&self, delay: Duration) {
        *lock(&self.inner.state.delay) = delay;
    }

    /// How many JWKS requests have arrived, counted on arrival (before any delay).
    pub fn fetch_count(&self) -> u64 {
        self.inner.state.fetches.load(Ordering::SeqCst)
    }

    /// How many JWKS requests were answered 304 Not Modified (their `If-None-Match` named the
    /// document being served).
    pub fn not_modified_count(&self) -> u64 {
        self.inner.state.not_modified.load(Ordering::SeqCst)
    }

    /// Signs `claims` with the signing key; header `{"alg", "typ": "at+jwt", "kid"}`.
    pub fn mint(&self, claims: &Value) -> String {
        self.inner.state.keys().mint(claims)
    }

    /// The public key of the generated key `kid` as a `PUBLIC KEY` PEM (RFC 7468 SPKI), for
    /// tools that verify tokens from a key file rather than a JWKS.
    pub fn public_key_pem(&self, kid: &str) -> Result<String, IssuerError> {
        let keys = self.inner.state.keys();
        let signer = keys
            .signer(kid)
            .ok_or_else(|| IssuerError::UnknownKid(kid.to_owned()))?;
        Ok(pem("PUBLIC KEY", &signer.public_der))
    }

    /// Key `kid`'s private half as a PKCS#8 PEM (`PRIVATE KEY`), so `phigate probe` can forge
    /// realistic token variants against the demo. Development keys only: never hand out a real
    /// issuer's key this way.
    pub fn private_key_pem(&self, kid: &str) -> Result<String, IssuerError> {
        let keys = self.inner.state.keys();
        let signer = keys
            .signer(kid)
            .ok_or_else(|| IssuerError::UnknownKid(kid.to_owned()))?;
        Ok(pem("PRIVATE KEY", &signer.private_der))
    }

    /// Signs `claims` with key `kid` under `header` exactly as given, for crafted tokens.
    pub fn sign_with(
        &self,
        kid: &str,
        header: Header,
        claims: &Value,
    ) -> Result<String, IssuerError> {
        let keys = self.inner.state.keys();
        let signer = keys
            .signer(kid)
            .ok_or_else(|| IssuerError::UnknownKid(kid.to_owned()))?;
        Ok(jsonwebtoken::encode(&header, claims, &signer.key)?)
    }

    /// Signs `header` and `claims` JSON exactly as given with key `kid`'s own algorithm.
    ///
    /// Unlike [`sign_with`](Self::sign_with) the header may say anything (a foreign `alg`, an
    /// unknown `crit`, no `typ`), so tests can build tokens jsonwebtoken's `Header` cannot express.
    pub fn sign_raw(
        &self,
        kid: &str,
        header: &Value,
        claims: &Value,
    ) -> Result<String, IssuerError> {
        let keys = self.inner.state.keys();
        let signer = keys
            .signer(kid)
            .ok_or_else(|| IssuerError::UnknownKid(kid.to_owned()))?;
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature =
            jsonwebtoken::crypto::sign(signing_input.as_bytes(), &signer.key, signer.alg)?;
        Ok(format!("{signing_input}.{signature}"))
    }

    /// Claims for an access token: `iss, sub, client_id, aud, scope, iat, exp, jti`.
    pub fn standard_claims(
        &self,
        sub: &str,
        client_id: &str,
        scope: &str,
        audience: &str,
        lifetime: Duration,
    ) -> Value {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        json!({
            "iss": self.issuer(),
            "sub": sub,
            "client_id": client_id,
            "aud": audience,
            "scope": scope,
            "iat": now,
            "exp": now.saturating_add(lifetime.as_secs()),
            "jti": uuid::Uuid::new_v4().to_string(),
        })
    }

    /// Stops the server; minting keeps working.
    pub fn shutdown(&self) {
        self.inner.server.shutdown();
    }

    /// Waits until the server has closed its port after [`shutdown`](Self::shutdown).
    pub async fn stopped(&self) {
        self.inner.server.stopped().await;
    }
}

impl std::fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Private keys stay out of debug output.
        f.debug_struct("DevIssuer")
            .field("issuer", &self.issuer())
            .field("local_addr", &self.local_addr())
            .finish_non_exhaustive()
    }
}

// === impl State ===

impl State {
    fn keys(&self) -> MutexGuard<'_, KeySet> {
        lock(&self.keys)
    }

    async fn serve(&self, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path();
        if path == TOKEN_PATH {
            return self.token(req).await;
        }
        let req = &req;
        if req.method() == Method::GET && path.contains("/.well-known/") && path != JWKS_PATH {
            self.metadata_fetches.fetch_add(1, Ordering::SeqCst);
            let Some(body) = lock(&self.metadata).get(path).cloned() else {
                return respond(StatusCode::NOT_FOUND, "text/plain", "not found\n");
            };
            return self.tagged(
                req,
                StatusCode::OK,
                "application/json",
                body,
                &self.metadata_not_modified,
            );
        }
        if req.method() != Method::GET || path != JWKS_PATH {
            return respond(StatusCode::NOT_FOUND, "text/plain", "not found\n");
        }
        self.fetches.fetch_add(1, Ordering::SeqCst);
        let delay = *lock(&self.delay);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        // Read after the delay so a test can change the answer while a fetch is in flight.
        let status = StatusCode::from_u16(self.jwks_status.load(Ordering::Relaxed))
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = match lock(&self.body_override).clone() {
            Some(body) => body,
            None => self.keys().document().to_string(),
        };
        self.tagged(req, status, JWKS_CONTENT_TYPE, body, &self.not_modified)
    }

    /// The token endpoint: a client credentials request (a form `POST`) answered with a token or
    /// an RFC 6749 §5.2 error; 404 while closed.
    async fn token(&self, req: Request<Incoming>) -> Response<Body> {
        let Some(settings) = lock(&self.token_grant).clone() else {
            return respond(StatusCode::NOT_FOUND, "text/plain", "not found\n");
        };
        if req.method() != Method::POST {
            let mut response = respond(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "POST a form\n",
            );
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("POST"));
            return response;
        }
        let answer = match read_form(req).await {
            Ok(form) => TokenRequest::parse(&form).map(|request| {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                let token = self
                    .keys()
                    .mint(&request.claims(&self.issuer, &settings, now));
                request.response(&token, &settings)
            }),
            Err(err) => Err(err),
        };
        let (status, body) = match answer {
            Ok(body) => (StatusCode::OK, body),
            Err(err) => (StatusCode::BAD_REQUEST, err.body()),
        };
        let mut response = respond(status, "application/json", body.to_string());
        // RFC 6749 §5.1: a token response is never cached.
        response
            .headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }

    /// `body` with a strong validator and the configured lifetime; a 304 (counted in
    /// `not_modified`) when the request's `If-None-Match` names it.
    fn tagged(
        &self,
        req: &Request<Incoming>,
        status: StatusCode,
        content_type: &'static str,
        body: String,
        not_modified: &AtomicU64,
    ) -> Response<Body> {
        // A strong validator of the document's bytes (RFC 9110 §8.8.3).
        let tag = format!(
            "\"{}\"",
            URL_SAFE_NO_PAD.encode(&crate::jose::sha256(body.as_bytes())[..12])
        );
        let unchanged = status == StatusCode::OK
            && req
                .headers()
                .get(IF_NONE_MATCH)
                .is_some_and(|asked| asked.as_bytes() == tag.as_bytes());
        let mut response = if unchanged {
            not_modified.fetch_add(1, Ordering::SeqCst);
            respond(StatusCode::NOT_MODIFIED, content_type, "")
        } else {
            respond(status, content_type, body)
        };
        if let Ok(value) = HeaderValue::from_str(&tag) {
            response.headers_mut().insert(ETAG, value);
        }
        let max_age = self.cache_max_age.load(Ordering::Relaxed);
        if let Ok(value) = HeaderValue::from_str(&format!("max-age={max_age}")) {
            response.headers_mut().insert(CACHE_CONTROL, value);
        }
        response
    }
}

// === impl KeySet ===

impl KeySet {
    #[expect(
        clippy::expect_used,
        reason = "the signing kid always names a generated key (remove_key refuses to remove it), \
                  and header.alg comes from that key, so encoding cannot fail"
    )]
    fn mint(&self, claims: &Value) -> String {
        let signer = self
            .signer(&self.signing_kid)
            .expect("signing key is published");
        let header = Header {
            typ: Some(ACCESS_TOKEN_TYP.to_owned()),
            kid: Some(self.signing_kid.clone()),
            ..Header::new(signer.alg)
        };
        jsonwebtoken::encode(&header, claims, &signer.key).expect("dev key signs")
    }

    fn signer(&self, kid: &str) -> Option<&Signer> {
        self.entries
            .iter()
            .filter(|entry| entry.kid.as_deref() == Some(kid))
            .find_map(|entry| entry.signer.as_ref())
    }

    fn document(&self) -> Value {
        let keys: Vec<&Value> = self.entries.iter().map(|entry| &entry.jwk).collect();
        json!({ "keys": keys })
    }
}

impl Entry {
    fn generated(kid: &str, mut jwk: Value, signer: Signer) -> Self {
        jwk["kid"] = json!(kid);
        Self {
            kid: Some(kid.to_owned()),
            jwk,
            signer: Some(signer),
        }
    }
}

/// A token request's form body: `application/x-www-form-urlencoded`, UTF-8, at most
/// [`MAX_REQUEST_BYTES`].
async fn read_form(req: Request<Incoming>) -> Result<String, GrantError> {
    if !crate::request_body::is_form(req.headers()) {
        return Err(GrantError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let body = Limited::new(req.into_body(), MAX_REQUEST_BYTES)
        .collect()
        .await
        .map_err(|_| GrantError::invalid_request("the body is unreadable or too large"))?
        .to_bytes();
    String::from_utf8(body.to_vec())
        .map_err(|_| GrantError::invalid_request("the body is not UTF-8"))
}

/// Locks a mutex, ignoring poison: the data are plain settings a panicking test cannot corrupt.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

// === key generation ===

/// Generates a key for `alg` and returns its public JWK (without kid) and its signer.
fn generate(alg: Algorithm) -> Result<(Value, Signer), IssuerError> {
    let (mut jwk, key, public_der, private_der) = match alg {
        Algorithm::ES256 => generate_ec(&ECDSA_P256_SHA256_FIXED_SIGNING, "P-256")?,
        Algorithm::ES384 => generate_ec(&ECDSA_P384_SHA384_FIXED_SIGNING, "P-384")?,
        Algorithm::RS256 | Algorithm::PS256 => generate_rsa()?,
        Algorithm::EdDSA => generate_ed25519()?,
        other => return Err(IssuerError::UnsupportedAlgorithm(other)),
    };
    jwk["alg"] = serde_json::to_value(alg).map_err(|_| IssuerError::UnsupportedAlgorithm(alg))?;
    jwk["use"] = json!("sig");
    Ok((
        jwk,
        Signer {
            alg,
            key,
            public_der,
            private_der,
        },
    ))
}

/// A generated key: its public JWK (without kid), its signing key, its public SPKI DER and its
/// private PKCS#8 DER.
type Generated = (Value, EncodingKey, Vec<u8>, Vec<u8>);

fn generate_ec(
    signing: &'static EcdsaSigningAlgorithm,
    crv: &str,
) -> Result<Generated, IssuerError> {
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(signing, &SystemRandom::new())?;
    let pair = EcdsaKeyPair::from_pkcs8(signing, pkcs8.as_ref())?;
    // SEC 1 uncompressed point: 0x04 || x || y, with x and y the same length.
    let point = pair.public_key().as_ref();
    let coordinates = point.get(1..).ok_or(IssuerError::KeyGeneration)?;
    let (x, y) = coordinates.split_at(coordinates.len() / 2);
    let jwk = json!({
        "kty": "EC",
        "crv": crv,
        "x": URL_SAFE_NO_PAD.encode(x),
        "y": URL_SAFE_NO_PAD.encode(y),
    });
    let public_der = pair.public_key().as_der()?.as_ref().to_vec();
    Ok((
        jwk,
        EncodingKey::from_ec_der(pkcs8.as_ref()),
        public_der,
        pkcs8.as_ref().to_vec(),
    ))
}

fn generate_rsa() -> Result<Generated, IssuerError> {
    let pair = aws_lc_rs::rsa::KeyPair::generate(KeySize::Rsa2048)?;
    let pkcs8 = pair.as_der()?;
    // EncodingKey::from_rsa_der wants a PKCS#1 RSAPrivateKey, which aws-lc-rs does not export;
    // jsonwebtoken's PEM loader unwraps PKCS#8 to exactly that, so the key goes through PEM.
    let key = EncodingKey::from_rsa_pem(pem("PRIVATE KEY", pkcs8.as_ref()).as_bytes())?;
    let public_der = pair.public_key().as_der()?.as_ref().to_vec();
    let public = PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
    let jwk = json!({
        "kty": "RSA",
        "n": URL_SAFE_NO_PAD.encode(&public.n),
        "e": URL_SAFE_NO_PAD.encode(&public.e),
    });
    Ok((jwk, key, public_der, pkcs8.as_ref().to_vec()))
}

fn generate_ed25519() -> Result<Generated, IssuerError> {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())?;
    // RFC 8037 §2: an Ed25519 public key is an OKP JWK whose x is the raw 32-byte key.
    let jwk = json!({
        "kty": "OKP",
        "crv": "Ed25519",
        "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
    });
    let public_der = pair.public_key().as_der()?.as_ref().to_vec();
    Ok((
        jwk,
        EncodingKey::from_ed_der(pkcs8.as_ref()),
        public_der,
        pkcs8.as_ref().to_vec(),
    ))
}

/// PEM-encodes `der` under `label` (RFC 7468), 64 characters a line.
pub(super) fn pem(label: &str, der: &[u8]) -> String {
    let encoded = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in encoded.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests;
