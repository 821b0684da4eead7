//! Configuration: parse, don't validate. `RawConfig` mirrors the YAML; `Config::load` turns it
//! into types that cannot hold a bad value (a clock skew over five minutes, an HMAC algorithm, a
//! listener without TLS unless the insecure knob says so), so nothing re-checks configuration
//! after start. This module reads files but never opens sockets.

mod discovery;
mod error;
mod monitor;
mod raw;
mod redis;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::uri::{Authority, Scheme};
use jsonwebtoken::Algorithm;

pub use self::discovery::{DiscoveryConfig, PROTECTED_RESOURCE_PATH, ResourceId};
pub use self::error::{ConfigError, ConfigProblem};
pub use self::monitor::{
    Actions, AlertConfig, BulkDetector, CountryDetector, MonitorConfig, SpikeDetector,
    TravelDetector, WindowDetector,
};
use self::raw::{
    At, RawAudit, RawConfig, RawCrl, RawDpop, RawIntrospection, RawIssuer, RawLimits, RawListen,
    RawRevocation, RawRevocationSource, RawTls, RawTokens, RawUpstream,
};
pub use self::redis::RedisEndpoint;
use crate::policy::PolicyTable;
pub use crate::tls::{ClientAuth, ClientCa, CrlLocation, CrlSource, TlsFiles};

/// The largest clock skew phigate accepts (RFC 9068 §4: "usually no more than a few minutes").
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);

/// A fully validated configuration.
#[derive(Debug)]
pub struct Config {
    /// The PHI-facing listener.
    pub listen: Listen,
    /// The metrics and health listener.
    pub admin: Admin,
    /// Where allowed requests go.
    pub upstream: Upstream,
    /// Trusted token issuers, at least one.
    pub issuers: Vec<IssuerConfig>,
    /// Token validation bounds.
    pub tokens: TokenBounds,
    /// Where the policy came from (for reload and messages).
    pub policy_file: PathBuf,
    /// The compiled policy.
    pub policy: PolicyTable,
    /// Revocation sources, checked for every token.
    pub revocation: Vec<RevocationSource>,
    /// DPoP proof checking.
    pub dpop: DpopConfig,
    /// The tamper-evident audit trail, when configured.
    pub audit: Option<AuditConfig>,
    /// Detectors and their automatic responses (none when `monitor:` is absent).
    pub monitor: MonitorConfig,
    /// What the well-known paths publish.
    pub discovery: DiscoveryConfig,
    /// What loading found questionable but not wrong; the policy's own are
    /// [`PolicyTable::warnings`].
    pub warnings: Vec<ConfigProblem>,
    /// Where each file path and URL was written, so start-up problems can name key and line.
    pub origins: Origins,
}

/// Where the configuration's files and URLs came from.
#[derive(Debug, Clone, Default)]
pub struct Origins {
    file: PathBuf,
    entries: Vec<Origin>,
}

#[derive(Debug, Clone)]
struct Origin {
    key: String,
    value: String,
    line: u64,
    column: u64,
}

impl Origins {
    /// A problem with `value` (a resolved file path or a URL from the configuration) under the
    /// keys starting with `section`, placed at the key and line that named it:
    /// `file:line:column: key: message`. The same file may serve several keys; the section
    /// (`listen.tls.cert_file`, `issuers`, `revocation`) says which one is meant.
    pub fn problem(&self, section: &str, value: &str, message: impl Into<String>) -> ConfigProblem {
        let message = message.into();
        let origin = self
            .entries
            .iter()
            .find(|o| o.key.starts_with(section) && (value.is_empty() || o.value == value));
        match origin {
            Some(origin) => ConfigProblem {
                file: self.file.clone(),
                line: origin.line,
                column: origin.column,
                message: format!("{}: {message}", origin.key),
            },
            None => ConfigProblem {
                file: self.file.clone(),
                line: 0,
                column: 0,
                message,
            },
        }
    }

    /// A problem of the configuration as a whole, tied to no key.
    pub fn unplaced(&self, message: impl Into<String>) -> ConfigProblem {
        ConfigProblem {
            file: self.file.clone(),
            line: 0,
            column: 0,
            message: message.into(),
        }
    }

    /// Records a URL (upstream, JWKS, Redis) with the key and line that named it.
    fn remember(&mut self, key: String, value: String, line: u64, column: u64) {
        self.entries.push(Origin {
            key,
            value,
            line,
            column,
        });
    }
}

/// `audit:` — where decisions are written as a keyed chain, and what happens when they cannot be.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// Where records go.
    pub destination: AuditDestination,
    /// The chain's HMAC key (at least 32 bytes).
    pub key: Vec<u8>,
    /// A file past this size is rotated (at least 4 KiB).
    pub max_file_bytes: u64,
    /// Records reserved or waiting to be written, at most (at least 1).
    pub queue: usize,
    /// What a request gets when the queue is full.
    pub when_full: WhenFull,
}

/// Where audit records are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditDestination {
    /// Standard output (`file: "-"`), a stream: no resume, no rotation.
    Stdout,
    /// A path: a regular file is resumed and rotated; a pipe is written as a stream.
    File(PathBuf),
}

/// `audit.when_full`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Refuse the request with 503 `audit_unavailable` (the default).
    Refuse,
    /// Serve it anyway, with no audit record: a weakening knob, warned about at every start.
    ServeUnaudited,
}

/// RFC 9449 proof settings.
#[derive(Debug, Clone)]
pub struct DpopConfig {
    /// How old a proof may be.
    pub max_age: Duration,
    /// How far ahead of our clock a proof may be.
    pub max_future: Duration,
    /// Redis shared by replicas for replay detection.
    pub replay_redis: Option<RedisEndpoint>,
    /// Whether proofs must carry a server nonce (RFC 9449 §8).
    pub nonce: bool,
    /// The nonce secret shared by replicas; random per process when absent.
    pub nonce_secret: Option<Vec<u8>>,
    /// The algorithms a proof may be signed with (default ES256, PS256, EdDSA: FAPI 2.0).
    pub algorithms: AlgorithmSet,
}

/// One revocation source.
#[derive(Debug, Clone)]
pub struct RevocationSource {
    /// Where the list comes from.
    pub location: RevocationLocation,
    /// How often it is re-read (and, for Redis, reconciled).
    pub interval: Duration,
    /// How old the list may get before requests needing it are refused with 503.
    pub max_stale: Duration,
}

/// Where a revocation list comes from.
#[derive(Debug, Clone)]
pub enum RevocationLocation {
    /// A JSON document polled over HTTP(S) with ETag.
    Http {
        /// The document URL.
        url: http::Uri,
        /// CA bundle for an `https` URL.
        ca_file: Option<PathBuf>,
    },
    /// A JSON document in a local file.
    File(PathBuf),
    /// A Redis set plus a pub/sub channel.
    Redis {
        /// `redis://host:port/db`, and the password it is used with.
        endpoint: RedisEndpoint,
        /// The set holding one JSON entry per member.
        key: String,
        /// The channel new entries are published on.
        channel: String,
    },
}

impl RevocationLocation {
    /// A short name for metrics and logs (no credentials).
    pub fn label(&self) -> String {
        match self {
            Self::Http { url, .. } => crate::fetch::url_label(url),
            Self::File(path) => crate::fetch::file_label(path),
            Self::Redis { key, .. } => format!("redis:{key}"),
        }
    }
}

/// The PHI-facing listener.
#[derive(Debug, Clone)]
pub struct Listen {
    /// Bind address; port 0 picks a free port.
    pub address: SocketAddr,
    /// TLS, or plaintext only behind the insecure knob.
    pub transport: Transport,
    /// How long a client may take to send a request head (slowloris bound); on HTTP/1.1 also
    /// how long a kept-alive connection may sit idle before its next request.
    pub header_read_timeout: Duration,
    /// How long a TLS handshake may take from the accepted TCP connection (R-T01, R-T02).
    pub handshake_timeout: Duration,
    /// How long a new connection may take, once accepted (and its handshake done), to deliver
    /// its first complete request head; a connection that stays silent is closed (R-S03).
    pub first_request_timeout: Duration,
    /// Most client connections open at once; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// Most connections open at once from one client address, within `max_connections`.
    pub max_connections_per_address: usize,
    /// How long a connection may go without a new request before it is closed (its requests
    /// in flight finish first); HTTP/2 has no idle bound of its own.
    pub idle_timeout: Duration,
    /// How long a connection may live before it is closed the same way, so long-lived
    /// HTTP/2 connections rebalance across replicas and cannot be held forever.
    pub max_connection_age: Duration,
    /// How long the listener keeps serving after shutdown begins and `/readyz` turns 503, so
    /// load balancers stop sending traffic before the port closes; zero closes it at once.
    pub shutdown_grace: Duration,
    /// Cap on the request head (HTTP/1 buffer and HTTP/2 header list).
    pub max_header_bytes: usize,
    /// The URL clients use to reach phigate (`https://gw.example.org`), against which DPoP
    /// proofs' `htu` is compared; never derived from a client's Host header.
    pub public_base_url: Option<String>,
    /// Bounds on a request's shape and body.
    pub limits: RequestLimits,
    /// The secret that seals links to the token they were handed to (share it between
    /// replicas); a random one per process when absent.
    pub link_seal_secret: Option<Vec<u8>>,
    /// Which event loops accept and serve the listener's connections.
    pub event_loops: EventLoops,
    /// The proxies whose `X-Forwarded-For` names the client (none by default).
    pub trusted_proxies: crate::peer::TrustedProxies,
    /// Whether a connection from a trusted proxy starts with a PROXY protocol header naming
    /// the client (a layer-4 load balancer passing TLS through).
    pub proxy_protocol: bool,
}

/// `listen.event_loops`: where connections are served. Background work (key and revocation
/// refreshes, the monitor, the admin listener, the audit writer) runs on the shared runtime
/// either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventLoops {
    /// The default: one current-thread runtime per core, each with its own `SO_REUSEPORT`
    /// socket on the listen address and its own upstream pool; the kernel spreads connections
    /// over them (README, Benchmarks: more requests per second than `Shared`).
    PerCore,
    /// One multi-thread runtime, one listening socket, one upstream pool: connections are
    /// served on whichever worker thread is free.
    Shared,
}

impl EventLoops {
    /// The configuration's spelling, for the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PerCore => "per_core",
            Self::Shared => "shared",
        }
    }
}

/// Bounds on what one request may carry. Each is enforced before the part it bounds is used:
/// URI limits before routing, body limits while reading, before anything is forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// Most path segments (414 beyond).
    pub max_path_segments: usize,
    /// Most query parameters (414 beyond).
    pub max_query_params: usize,
    /// Most bytes of a request body once the token is verified (413 beyond).
    pub max_body_bytes: usize,
    /// Most bytes of a body read before any token is verified (public routes; 413 beyond).
    pub max_unauthenticated_body_bytes: usize,
    /// How long a client may take to send its whole body (408 beyond).
    pub body_timeout: Duration,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            max_path_segments: 256,
            max_query_params: 512,
            max_body_bytes: 10 * 1024 * 1024,
            max_unauthenticated_body_bytes: 64 * 1024,
            body_timeout: Duration::from_secs(30),
        }
    }
}

/// How the listener speaks to clients.
#[derive(Debug, Clone)]
pub enum Transport {
    /// TLS 1.2/1.3, optionally mutual.
    Tls(TlsFiles),
    /// Plaintext HTTP; only from `insecure_plaintext: true`, announced at every start.
    InsecurePlaintext,
}

/// The admin listener.
#[derive(Debug, Clone)]
pub struct Admin {
    /// Bind address, loopback by default.
    pub address: SocketAddr,
}

/// The protected upstream.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// Host and port.
    pub authority: Authority,
    /// Path prefix every forwarded path is appended to, without a trailing slash.
    pub base_path: String,
    /// Extra CA bundle for an `https` upstream (otherwise the public web PKI roots).
    pub ca_file: Option<PathBuf>,
    /// Bound on waiting for the upstream's response head.
    pub timeout: Duration,
    /// Bound on the upstream's whole response body, from its head to its last byte.
    pub body_timeout: Duration,
    /// Bound on waiting for the next piece of the upstream's response body.
    pub body_idle_timeout: Duration,
    /// Whether the verified bearer token is passed on in `Authorization`.
    pub forward_token: bool,
    /// Speak HTTP/2 to the upstream (ALPN `h2` over TLS, prior knowledge over `http://`),
    /// multiplexing requests over few connections instead of one connection per request.
    pub http2: bool,
}

/// One trusted issuer.
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    /// Exact `iss` value.
    pub issuer: Arc<str>,
    /// Where its keys are published; `None`: wherever its metadata (RFC 8414, then OIDC
    /// discovery) says, fetched from its identifier.
    pub jwks_uri: Option<http::Uri>,
    /// Extra CA bundle for an `https` JWKS endpoint.
    pub jwks_ca_file: Option<PathBuf>,
    /// Accepted `aud` values; a token must name at least one.
    pub audiences: Vec<String>,
    /// Signature algorithms this issuer may use.
    pub algorithms: AlgorithmSet,
    /// The claim carrying the SMART launch patient (`patient` unless the issuer says otherwise).
    pub patient_claim: String,
    /// RFC 7662 introspection, for opaque tokens and `introspect: always` rules.
    pub introspection: Option<IntrospectionConfig>,
}

impl IssuerConfig {
    /// The issuer of decisions made without a configuration (`phigate test`): claims are taken
    /// as verified, so only the launch-patient claim matters.
    pub fn offline(patient_claim: &str) -> Self {
        Self {
            issuer: Arc::from("urn:phigate:offline"),
            jwks_uri: Some(http::Uri::from_static("https://offline.invalid/jwks")),
            jwks_ca_file: None,
            audiences: vec!["urn:phigate:offline".to_owned()],
            algorithms: AlgorithmSet(vec![Algorithm::ES256]),
            patient_claim: patient_claim.to_owned(),
            introspection: None,
        }
    }
}

/// An endpoint at the authorization server that phigate calls as a confidential client
/// (RFC 7009 revocation): where, and the credentials it presents there.
#[derive(Debug, Clone)]
pub struct ClientEndpoint {
    /// The endpoint.
    pub endpoint: http::Uri,
    /// phigate's credentials there.
    pub credentials: ClientCredentials,
}

/// What phigate presents as a confidential client of the authorization server.
#[derive(Clone)]
pub struct ClientCredentials {
    /// phigate's client id at the authorization server.
    pub client_id: String,
    /// phigate's client secret there (from a file).
    pub client_secret: String,
    /// CA bundle for an `https` endpoint (else the web PKI roots).
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret never reaches a log or `phigate check` output.
        f.debug_struct("ClientCredentials")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// How to introspect an issuer's tokens (RFC 7662).
#[derive(Debug, Clone)]
pub struct IntrospectionConfig {
    /// The introspection endpoint; `None`: the `introspection_endpoint` the issuer's believed
    /// metadata names.
    pub endpoint: Option<http::Uri>,
    /// phigate's credentials there (RFC 7662 §2.1: the resource server authenticates).
    pub credentials: ClientCredentials,
    /// Longest time an active result is reused (never past the token's `exp`).
    pub cache_ttl: Duration,
    /// How long an inactive result is reused.
    pub negative_cache_ttl: Duration,
    /// Bound on one introspection call.
    pub timeout: Duration,
    /// Take the launch patient from introspection when a token lacks it.
    pub resolve_patient: bool,
}

/// A non-empty set of asymmetric JWS algorithms: `none` and HMAC cannot be represented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlgorithmSet(Vec<Algorithm>);

impl AlgorithmSet {
    /// Parses algorithm names, refusing `none`, HMAC and anything unsupported.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Self, String> {
        if names.is_empty() {
            return Err("algorithms must list at least one algorithm".into());
        }
        let mut algorithms = Vec::with_capacity(names.len());
        for name in names {
            let algorithm = match name.as_ref() {
                "RS256" => Algorithm::RS256,
                "RS384" => Algorithm::RS384,
                "RS512" => Algorithm::RS512,
                "PS256" => Algorithm::PS256,
                "PS384" => Algorithm::PS384,
                "PS512" => Algorithm::PS512,
                "ES256" => Algorithm::ES256,
                "ES384" => Algorithm::ES384,
                "EdDSA" => Algorithm::EdDSA,
                // RFC 8725 §3.1: a resource server holding public keys never accepts HMAC.
                other @ ("HS256" | "HS384" | "HS512") => {
                    return Err(format!("algorithm {other} is symmetric and never allowed"));
                }
                other if other.eq_ignore_ascii_case("none") => {
                    return Err("algorithm none is never allowed".into());
                }
                other => return Err(format!("algorithm {other} is not supported")),
            };
            if !algorithms.contains(&algorithm) {
                algorithms.push(algorithm);
            }
        }
        Ok(Self(algorithms))
    }

    /// The algorithms a DPoP proof may use unless `dpop.algorithms` says otherwise: FAPI 2.0's
    /// ES256, PS256 and EdDSA.
    pub fn dpop_default() -> Self {
        Self(vec![Algorithm::ES256, Algorithm::PS256, Algorithm::EdDSA])
    }

    /// The names, space-separated, as a challenge's `algs` and the metadata list them.
    pub fn names(&self) -> Vec<String> {
        self.0.iter().map(|alg| format!("{alg:?}")).collect()
    }

    /// Whether the set contains `algorithm`.
    pub fn contains(&self, algorithm: Algorithm) -> bool {
        self.0.contains(&algorithm)
    }

    /// The algorithms, in configured order.
    pub fn iter(&self) -> impl Iterator<Item = Algorithm> + '_ {
        self.0.iter().copied()
    }
}

/// Allowed clock difference between phigate and an issuer, at most [`MAX_CLOCK_SKEW`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockSkew(Duration);

impl ClockSkew {
    /// Accepts a skew up to five minutes.
    pub fn new(skew: Duration) -> Result<Self, String> {
        if skew > MAX_CLOCK_SKEW {
            return Err(format!(
                "clock_skew is {}, the maximum is 5m",
                humantime::format_duration(skew)
            ));
        }
        Ok(Self(skew))
    }

    /// The skew in whole seconds.
    pub fn as_secs(self) -> u64 {
        self.0.as_secs()
    }
}

/// Token validation bounds.
#[derive(Debug, Clone)]
pub struct TokenBounds {
    /// Allowed clock difference.
    pub clock_skew: ClockSkew,
    /// Longest accepted `exp - iat` (or `exp - now` without `iat`).
    pub max_lifetime: Duration,
    /// How long fetched keys are fresh when the JWKS response says nothing.
    pub jwks_cache_ttl: Duration,
    /// How long keys keep serving after the JWKS endpoint stops answering.
    pub jwks_max_stale: Duration,
    /// Minimum time between refetches caused by unknown `kid`s.
    pub jwks_refetch_cooldown: Duration,
    /// Bound on one JWKS fetch.
    pub jwks_fetch_timeout: Duration,
    /// Most verified tokens cached at once.
    pub cache_max_entries: usize,
    /// Most bytes the verified-token cache's entries may hold, each counted at its measured
    /// size or at `cache_max_bytes / cache_max_entries`, whichever is more.
    pub cache_max_bytes: usize,
}

/// `tokens.cache_max_entries`: at least one entry (a cache of none would only cost lookups).
const TOKEN_CACHE_ENTRIES: std::ops::RangeInclusive<usize> = 1..=10_000_000;
/// `tokens.cache_max_bytes`: 64 KiB to 1 GiB.
const TOKEN_CACHE_BYTES: std::ops::RangeInclusive<usize> = 65_536..=1024 * 1024 * 1024;

impl Default for TokenBounds {
    fn default() -> Self {
        Self {
            clock_skew: ClockSkew(Duration::from_secs(30)),
            max_lifetime: Duration::from_secs(15 * 60),
            jwks_cache_ttl: Duration::from_secs(10 * 60),
            jwks_max_stale: Duration::from_secs(60 * 60),
            jwks_refetch_cooldown: Duration::from_secs(5),
            jwks_fetch_timeout: Duration::from_secs(5),
            cache_max_entries: 10_000,
            cache_max_bytes: 4 * 1024 * 1024,
        }
    }
}

impl Config {
    /// Reads, parses and validates a configuration file and the policy it names.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|err| {
            ConfigError::single(path, 0, 0, format!("cannot read the file: {err}"))
        })?;
        Self::from_yaml(&text, path)
    }

    /// Parses configuration text; `path` names it in errors and anchors relative paths.
    pub fn from_yaml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = serde_saphyr::from_str(text).map_err(|err| {
            let fault = crate::yaml::diagnose(text, &err);
            ConfigError::single(path, fault.line, fault.column, fault.message)
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut builder = Builder {
            file: path,
            base,
            problems: Vec::new(),
            warnings: Vec::new(),
            section: String::new(),
            redis_password: None,
            redis_ca: None,
            origins: Origins {
                file: path.to_path_buf(),
                entries: Vec::new(),
            },
        };
        let config = builder.build(raw);
        match config {
            Some(config) if builder.problems.is_empty() => Ok(config),
            _ => Err(ConfigError {
                problems: builder.problems,
            }),
        }
    }
}

/// Collects every semantic problem instead of stopping at the first.
struct Builder<'a> {
    file: &'a Path,
    base: PathBuf,
    problems: Vec<ConfigProblem>,
    warnings: Vec<ConfigProblem>,
    /// The section being built (`listen`, `issuers[1]`), prefixing remembered keys.
    section: String,
    /// `redis_password_file`'s password, for every Redis URL without one of its own.
    redis_password: Option<Arc<str>>,
    /// `redis_ca_file`'s PEM certificates, for every `rediss://` URL.
    redis_ca: Option<Arc<[u8]>>,
    origins: Origins,
}

impl Builder<'_> {
    fn problem<T>(&mut self, at: &At<T>, message: impl Into<String>) {
        let problem = self.placed(at, message.into());
        self.problems.push(problem);
    }

    fn warning<T>(&mut self, at: &At<T>, message: impl Into<String>) {
        let warning = self.placed(at, message.into());
        self.warnings.push(warning);
    }

    fn placed<T>(&self, at: &At<T>, message: String) -> ConfigProblem {
        ConfigProblem {
            file: self.file.to_path_buf(),
            line: at.referenced.line(),
            column: at.referenced.column(),
            message,
        }
    }

    fn check<T, V>(&mut self, at: &At<T>, parsed: Result<V, String>) -> Option<V> {
        parsed.map_err(|message| self.problem(at, message)).ok()
    }

    /// An absolute `http://` or `https://` URL, or a problem naming `key`.
    fn http_url(&mut self, at: &At<String>, key: &str) -> Option<http::Uri> {
        let parsed = at
            .value
            .parse::<http::Uri>()
            .ok()
            .filter(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some())
            .ok_or_else(|| format!("{key} must be an absolute http:// or https:// URL"));
        self.check(at, parsed)
    }

    /// A client secret read from the file `at` names (trimmed, never empty), or a problem
    /// naming `key` (under the current section).
    /// An endpoint phigate calls with client credentials: its URL, client id and secret file,
    /// and CA file, named in problems by `keys` (endpoint, secret file, CA file).
    fn client_endpoint(
        &mut self,
        (endpoint, client_id, secret_file): (&At<String>, &String, &At<String>),
        ca_file: Option<&At<String>>,
        [endpoint_key, secret_key, ca_key]: [&str; 3],
    ) -> Option<ClientEndpoint> {
        let endpoint = self.http_url(endpoint, endpoint_key);
        let credentials =
            self.client_credentials((client_id, secret_file), ca_file, [secret_key, ca_key]);
        Some(ClientEndpoint {
            endpoint: endpoint?,
            credentials: credentials?,
        })
    }

    /// A client id, the secret its file holds, and a CA file, named in problems by `keys`
    /// (secret file, CA file).
    fn client_credentials(
        &mut self,
        (client_id, secret_file): (&String, &At<String>),
        ca_file: Option<&At<String>>,
        [secret_key, ca_key]: [&str; 2],
    ) -> Option<ClientCredentials> {
        let client_secret = self.client_secret(secret_file, secret_key);
        let ca_file = ca_file.map(|ca| self.path(ca, ca_key));
        Some(ClientCredentials {
            client_id: client_id.clone(),
            client_secret: client_secret?,
            ca_file,
        })
    }

    fn client_secret(&mut self, at: &At<String>, key: &str) -> Option<String> {
        let path = self.path(at, key);
        let secret = std::fs::read_to_string(&path)
            .map(|s| s.trim().to_owned())
            .ok()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("{} cannot be read or is empty", self.qualified(key)));
        self.check(at, secret)
    }

    /// Resolves a file path against the configuration's folder, remembering which key (under
    /// the current section) and line named it, so later problems with the file can say so.
    fn path(&mut self, at: &At<String>, key: &str) -> PathBuf {
        let path = Path::new(&at.value);
        let resolved = if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base.join(path)
        };
        self.remember(at, key, resolved.display().to_string());
        resolved
    }

    /// Records where a value (a resolved path, a URL) came from.
    fn remember(&mut self, at: &At<String>, key: &str, value: String) {
        let key = self.qualified(key);
        self.origins
            .remember(key, value, at.referenced.line(), at.referenced.column());
    }

    /// `key` under the current section, as problems and origins name it.
    fn qualified(&self, key: &str) -> String {
        match self.section.as_str() {
            "" => key.to_owned(),
            section => format!("{section}.{key}"),
        }
    }

    /// A duration where zero would mean nothing useful (a timeout, an interval, a lifetime):
    /// `0s` is refused rather than read as "never" or "always".
    fn duration(&mut self, at: Option<&At<String>>, key: &str, default: Duration) -> Duration {
        let Some(at) = at else { return default };
        let parsed = crate::duration::parse(&at.value)
            .map_err(|why| format!("{key}: {why}"))
            .and_then(|d| {
                (!d.is_zero())
                    .then_some(d)
                    .ok_or_else(|| format!("{key} must be longer than 0s"))
            });
        self.check(at, parsed).unwrap_or(default)
    }

    /// A duration that must be longer than zero and at most `max` (a timeout whose larger
    /// values would undo what it bounds).
    fn duration_at_most(
        &mut self,
        at: Option<&At<String>>,
        key: &str,
        default: Duration,
        max: Duration,
    ) -> Duration {
        let value = self.duration(at, key, default);
        if value <= max {
            return value;
        }
        if let Some(at) = at {
            self.problem(
                at,
                format!("{key} must be at most {}", humantime::format_duration(max)),
            );
        }
        default
    }

    /// A duration for which zero has a meaning the key documents (no skew, no future proofs,
    /// no cache).
    fn duration_or_zero(
        &mut self,
        at: Option<&At<String>>,
        key: &str,
        default: Duration,
    ) -> Duration {
        let Some(at) = at else { return default };
        let parsed = crate::duration::parse(&at.value).map_err(|why| format!("{key}: {why}"));
        self.check(at, parsed).unwrap_or(default)
    }

    fn socket_addr(&mut self, at: &At<String>, key: &str) -> Option<SocketAddr> {
        let parsed = at
            .value
            .parse::<SocketAddr>()
            .map_err(|_| format!("{key} must be an IP address and port, like 127.0.0.1:8443"));
        self.check(at, parsed)
    }

    fn build(&mut self, raw: RawConfig) -> Option<Config> {
        self.section = "listen".into();
        let listen = self.listen(&raw.listen);
        let admin_address = match &raw.admin {
            Some(admin) => self.socket_addr(&admin.address, "admin.address"),
            None => Some(SocketAddr::from(([127, 0, 0, 1], 9090))),
        };
        self.section = "upstream".into();
        let upstream = self.upstream(&raw.upstream);
        if raw.issuers.value.is_empty() {
            self.problem(&raw.issuers, "issuers must list at least one issuer");
        }
        let mut issuers = Vec::new();
        for (index, raw) in raw.issuers.value.iter().enumerate() {
            self.section = format!("issuers[{index}]");
            issuers.extend(self.issuer(raw));
        }
        self.section.clear();
        let tokens = self.tokens(raw.tokens.as_ref());
        self.redis_password = raw
            .redis_password_file
            .as_ref()
            .and_then(|at| self.client_secret(at, "redis_password_file"))
            .map(Arc::from);
        self.redis_ca = raw
            .redis_ca_file
            .as_ref()
            .and_then(|at| self.redis_ca(at))
            .map(Arc::from);
        let revocation = raw
            .revocation
            .as_ref()
            .map(|r| self.revocation(r))
            .unwrap_or_default();
        self.section.clear();
        let dpop = self.dpop(raw.dpop.as_ref().map(|at| &at.value));
        self.check_dpop_reachable(&raw);
        let audit = raw.audit.as_ref().and_then(|raw| self.audit(raw));
        let monitor = self.monitor(raw.monitor.as_ref());
        let discovery = self.discovery(raw.discovery.as_ref(), &raw.issuers, &issuers);
        let policy_file = self.path(&raw.policy_file, "policy_file");
        let policy = match PolicyTable::load(&policy_file) {
            Ok(policy) => Some(policy),
            Err(err) => {
                self.problems
                    .extend(err.problems.into_iter().map(|p| ConfigProblem {
                        file: p.file,
                        line: p.line as u64,
                        column: p.column as u64,
                        message: p.message,
                    }));
                None
            }
        };
        Some(Config {
            listen: listen?,
            admin: Admin {
                address: admin_address?,
            },
            upstream: upstream?,
            issuers,
            tokens,
            policy_file,
            policy: policy?,
            revocation,
            dpop,
            audit,
            monitor,
            discovery,
            warnings: std::mem::take(&mut self.warnings),
            origins: std::mem::take(&mut self.origins),
        })
    }

    /// A DPoP proof names the URL it was made for (`htu`), and phigate compares it with
    /// `listen.public_base_url`, never with the client's `Host`. Without that URL every DPoP
    /// request is refused as `dpop_htu_mismatch`, which the operator should hear about now.
    fn check_dpop_reachable(&mut self, raw: &RawConfig) {
        if raw.listen.public_base_url.is_some() {
            return;
        }
        match &raw.dpop {
            // Configuring DPoP that can never succeed is a mistake, not a choice.
            Some(at) => self.problem(
                at,
                "dpop: is configured but listen.public_base_url is not set: no DPoP proof's htu \
                 can be checked, so every DPoP request would be refused (dpop_htu_mismatch); set \
                 it to the https:// URL clients use to reach phigate",
            ),
            // Any issuer may bind its tokens with cnf.jkt, and phigate honours that binding.
            None => self.warning(
                &raw.listen.address,
                "listen.public_base_url is not set: DPoP proofs cannot be checked, so every \
                 DPoP-bound token (cnf.jkt) is refused (dpop_htu_mismatch), as is every request \
                 under a rule or client that demands dpop binding; set it to the https:// URL \
                 clients use to reach phigate",
            ),
        }
    }

    fn dpop(&mut self, raw: Option<&RawDpop>) -> DpopConfig {
        let max_age = self.duration(
            raw.and_then(|r| r.max_age.as_ref()),
            "dpop.max_age",
            Duration::from_secs(60),
        );
        let max_future = self.duration_or_zero(
            raw.and_then(|r| r.max_future.as_ref()),
            "dpop.max_future",
            Duration::from_secs(10),
        );
        // FAPI 2.0: future proofs beyond 60 s are always refused.
        if max_future > Duration::from_secs(60)
            && let Some(at) = raw.and_then(|r| r.max_future.as_ref())
        {
            self.problem(at, "dpop.max_future must be at most 60s");
        }
        let replay_redis = raw
            .and_then(|r| r.replay_redis.as_ref())
            .and_then(|at| self.redis_endpoint(at, "dpop.replay_redis"));
        let nonce_secret = raw
            .and_then(|r| r.nonce_secret_file.as_ref())
            .and_then(|at| self.secret_file(at, "dpop.nonce_secret_file"));
        let nonce = raw.and_then(|r| r.nonce).unwrap_or(false);
        let algorithms = match raw.and_then(|r| r.algorithms.as_ref()) {
            Some(at) => {
                let parsed = AlgorithmSet::parse(&at.value).map_err(|err| format!("dpop.{err}"));
                self.check(at, parsed)
                    .unwrap_or_else(AlgorithmSet::dpop_default)
            }
            None => AlgorithmSet::dpop_default(),
        };
        DpopConfig {
            max_age,
            max_future,
            replay_redis,
            nonce,
            nonce_secret,
            algorithms,
        }
    }

    fn audit(&mut self, raw: &RawAudit) -> Option<AuditConfig> {
        let destination = if raw.file.value == "-" {
            AuditDestination::Stdout
        } else {
            AuditDestination::File(self.path(&raw.file, "audit.file"))
        };
        let key = self.secret_file(&raw.key_file, "audit.key_file");
        let max_file_bytes =
            self.at_least(raw.max_file_bytes.as_ref(), "audit.max_file_bytes", 4096);
        let queue = self.at_least(raw.queue.as_ref(), "audit.queue", 1);
        let when_full = match raw.when_full.as_ref() {
            None => Some(WhenFull::Refuse),
            Some(at) => match at.value.as_str() {
                "refuse" => Some(WhenFull::Refuse),
                "serve_unaudited" => {
                    // A weakening knob: `check` prints this and every start logs it.
                    self.warning(
                        at,
                        "audit.when_full is serve_unaudited: while the audit queue is full, \
                         requests are served with no audit record",
                    );
                    Some(WhenFull::ServeUnaudited)
                }
                _ => {
                    self.problem(at, "audit.when_full must be refuse or serve_unaudited");
                    None
                }
            },
        };
        Some(AuditConfig {
            destination,
            key: key?,
            max_file_bytes: max_file_bytes.unwrap_or(64 << 20),
            queue: usize::try_from(queue.unwrap_or(10_000)).ok()?,
            when_full: when_full?,
        })
    }

    /// An optional count that must be at least `floor`; `None` when absent or refused (a
    /// refused one is a problem, so the configuration fails anyway).
    fn at_least(&mut self, at: Option<&At<u64>>, key: &str, floor: u64) -> Option<u64> {
        let at = at?;
        let parsed = (at.value >= floor)
            .then_some(at.value)
            .ok_or_else(|| format!("{key} must be at least {floor}"));
        self.check(at, parsed)
    }

    /// A shared secret read from a file: at least 32 bytes, or a problem naming `key`.
    /// A `redis://` (or `rediss://`) URL named by `key`, with `redis_password_file`'s password.
    fn redis_endpoint(&mut self, at: &At<String>, key: &str) -> Option<RedisEndpoint> {
        if !(at.value.starts_with("redis://") || at.value.starts_with("rediss://")) {
            let key = self.qualified(key);
            self.problem(at, format!("{key} must be a redis:// or rediss:// URL"));
            return None;
        }
        self.remember(at, key, at.value.clone());
        let endpoint = RedisEndpoint::new(at.value.clone(), self.redis_password.clone())
            .with_ca(self.redis_ca.clone());
        if endpoint.skips_verification() {
            let key = self.qualified(key);
            self.problem(
                at,
                format!(
                    "{key}: #insecure is refused; the Redis server's certificate is always verified"
                ),
            );
            return None;
        }
        if endpoint.has_inline_password() {
            let key = self.qualified(key);
            self.warning(
                at,
                format!(
                    "{key} carries a password in its URL, which anyone who reads this file sees; \
                     put it in redis_password_file instead"
                ),
            );
        }
        Some(endpoint)
    }

    /// `redis_ca_file`: PEM certificates, every one of them parseable.
    fn redis_ca(&mut self, at: &At<String>) -> Option<Vec<u8>> {
        let path = self.path(at, "redis_ca_file");
        let read =
            crate::tls::read_pem_certificates(&path).map_err(|err| format!("redis_ca_file: {err}"));
        self.check(at, read)
    }

    fn secret_file(&mut self, at: &At<String>, key: &str) -> Option<Vec<u8>> {
        let read = std::fs::read(self.path(at, key))
            .ok()
            .filter(|secret| secret.len() >= 32)
            .ok_or_else(|| format!("{key} must hold at least 32 bytes"));
        self.check(at, read)
    }

    fn revocation(&mut self, raw: &RawRevocation) -> Vec<RevocationSource> {
        let mut sources = Vec::new();
        for (index, source) in raw.sources.value.iter().enumerate() {
            self.section = format!("revocation.sources[{index}]");
            sources.extend(self.revocation_source(source, &raw.sources));
        }
        sources
    }

    fn revocation_source(
        &mut self,
        raw: &RawRevocationSource,
        at: &At<Vec<RawRevocationSource>>,
    ) -> Option<RevocationSource> {
        let location = match (&raw.http, &raw.file, &raw.redis) {
            (Some(url), None, None) => {
                let url = self.http_url(url, "revocation http")?;
                RevocationLocation::Http {
                    url,
                    ca_file: raw.ca_file.as_ref().map(|ca| self.path(ca, "ca_file")),
                }
            }
            (None, Some(file), None) => RevocationLocation::File(self.path(file, "file")),
            (None, None, Some(url)) => {
                let endpoint = self.redis_endpoint(url, "redis")?;
                RevocationLocation::Redis {
                    endpoint,
                    key: raw
                        .key
                        .clone()
                        .unwrap_or_else(|| "phigate:revoked".to_owned()),
                    channel: raw
                        .channel
                        .clone()
                        .unwrap_or_else(|| "phigate:revocations".to_owned()),
                }
            }
            _ => {
                self.problem(
                    at,
                    "each revocation source needs exactly one of http, file, redis",
                );
                return None;
            }
        };
        let interval = self.duration(
            raw.interval.as_ref(),
            "revocation interval",
            Duration::from_secs(10),
        );
        let max_stale = self.duration(
            raw.max_stale.as_ref(),
            "revocation max_stale",
            Duration::from_secs(60),
        );
        if max_stale <= interval
            && let Some(at) = &raw.max_stale
        {
            self.problem(at, "revocation max_stale must be longer than its interval");
        }
        Some(RevocationSource {
            location,
            interval,
            max_stale,
        })
    }

    /// `listen.tls.client_ca_file`, `client_auth` and the client CRLs.
    fn client_ca(&mut self, tls: &RawTls) -> Option<ClientCa> {
        let Some(ca) = &tls.client_ca_file else {
            let needs = |key: &str| format!("listen.tls.{key} needs client_ca_file");
            if let Some(at) = &tls.client_auth {
                self.problem(at, needs("client_auth"));
            }
            if let Some(at) = &tls.client_crls {
                self.problem(at, needs("client_crls"));
            }
            if let Some(at) = &tls.client_crl_max_stale {
                self.problem(at, needs("client_crl_max_stale"));
            }
            return None;
        };
        let auth = match tls.client_auth.as_ref().map(|a| (a, a.value.as_str())) {
            None | Some((_, "required")) => ClientAuth::Required,
            Some((_, "optional")) => ClientAuth::Optional,
            Some((at, _)) => {
                self.problem(at, "client_auth must be required or optional");
                ClientAuth::Required
            }
        };
        let crl_max_stale = self.duration(
            tls.client_crl_max_stale.as_ref(),
            "listen.tls.client_crl_max_stale",
            Duration::from_secs(24 * 3600),
        );
        let crls = tls.client_crls.as_ref().map_or_else(Vec::new, |crls| {
            crls.value
                .iter()
                .enumerate()
                .filter_map(|(index, crl)| self.crl_source(crls, index, crl, crl_max_stale))
                .collect()
        });
        Some(ClientCa {
            ca_file: self.path(ca, "tls.client_ca_file"),
            auth,
            crls,
            crl_max_stale,
        })
    }

    /// One entry of `listen.tls.client_crls`.
    fn crl_source(
        &mut self,
        at: &At<Vec<RawCrl>>,
        index: usize,
        raw: &RawCrl,
        max_stale: Duration,
    ) -> Option<CrlSource> {
        let key = format!("tls.client_crls[{index}]");
        let location = match (&raw.file, &raw.url) {
            (Some(file), None) => {
                if let Some(ca_file) = &raw.ca_file {
                    self.problem(ca_file, format!("listen.{key}.ca_file is for a url only"));
                }
                CrlLocation::File(self.path(file, &format!("{key}.file")))
            }
            (None, Some(url)) => {
                let parsed = self.http_url(url, &format!("listen.{key}.url"))?;
                self.remember(url, &format!("{key}.url"), url.value.clone());
                CrlLocation::Url {
                    url: parsed,
                    ca_file: raw
                        .ca_file
                        .as_ref()
                        .map(|ca| self.path(ca, &format!("{key}.ca_file"))),
                }
            }
            _ => {
                self.problem(at, format!("listen.{key} needs exactly one of file, url"));
                return None;
            }
        };
        let refresh = self.duration(
            raw.refresh.as_ref(),
            &format!("listen.{key}.refresh"),
            Duration::from_secs(300),
        );
        if refresh >= max_stale
            && let Some(at) = &raw.refresh
        {
            self.problem(
                at,
                format!("listen.{key}.refresh must be shorter than client_crl_max_stale"),
            );
        }
        Some(CrlSource { location, refresh })
    }

    fn listen(&mut self, raw: &RawListen) -> Option<Listen> {
        let address = self.socket_addr(&raw.address, "listen.address");
        let insecure = raw
            .insecure_plaintext
            .as_ref()
            .is_some_and(|flag| flag.value);
        let transport = match (&raw.tls, insecure) {
            (Some(_), true) => {
                self.problem(
                    &raw.address,
                    "listen has both tls and insecure_plaintext: choose one",
                );
                None
            }
            (None, false) => {
                self.problem(
                    &raw.address,
                    "listen.tls is required (plaintext needs listen.insecure_plaintext: true)",
                );
                None
            }
            (None, true) => Some(Transport::InsecurePlaintext),
            (Some(tls), false) => {
                let client_ca = self.client_ca(tls);
                Some(Transport::Tls(TlsFiles {
                    cert_file: self.path(&tls.cert_file, "tls.cert_file"),
                    key_file: self.path(&tls.key_file, "tls.key_file"),
                    client_ca,
                }))
            }
        };
        let header_read_timeout = self.duration(
            raw.header_read_timeout.as_ref(),
            "listen.header_read_timeout",
            Duration::from_secs(10),
        );
        let handshake_timeout = self.duration_at_most(
            raw.handshake_timeout.as_ref(),
            "listen.handshake_timeout",
            Duration::from_secs(10),
            Duration::from_secs(60),
        );
        let first_request_timeout = self.duration_at_most(
            raw.first_request_timeout.as_ref(),
            "listen.first_request_timeout",
            Duration::from_secs(10),
            Duration::from_secs(300),
        );
        let max_connections = self.bounded(
            raw.max_connections.as_ref(),
            "listen.max_connections",
            1..=1_000_000,
            10_000,
        );
        let max_connections_per_address = self.bounded(
            raw.max_connections_per_address.as_ref(),
            "listen.max_connections_per_address",
            1..=1_000_000,
            1_000,
        );
        let idle_timeout = self.duration_at_most(
            raw.idle_timeout.as_ref(),
            "listen.idle_timeout",
            Duration::from_secs(300),
            Duration::from_secs(24 * 3600),
        );
        let max_connection_age = self.duration_at_most(
            raw.max_connection_age.as_ref(),
            "listen.max_connection_age",
            Duration::from_secs(3600),
            Duration::from_secs(7 * 24 * 3600),
        );
        // Zero is allowed: a gateway with no load balancer in front has nobody to wait for.
        let shutdown_grace = self.duration_or_zero(
            raw.shutdown_grace.as_ref(),
            "listen.shutdown_grace",
            Duration::from_secs(5),
        );
        if shutdown_grace > Duration::from_secs(300)
            && let Some(at) = &raw.shutdown_grace
        {
            self.problem(at, "listen.shutdown_grace must be at most 5m");
        }
        let max_header_bytes = match &raw.max_header_bytes {
            None => 32 * 1024,
            Some(at) => {
                let parsed = usize::try_from(at.value)
                    .ok()
                    .filter(|bytes| (8 * 1024..=1024 * 1024).contains(bytes))
                    .ok_or_else(|| {
                        "listen.max_header_bytes must be between 8192 and 1048576".into()
                    });
                self.check(at, parsed).unwrap_or(32 * 1024)
            }
        };
        let public_base_url = raw.public_base_url.as_ref().and_then(|at| {
            let parsed = at
                .value
                .parse::<http::Uri>()
                .ok()
                .filter(|u| {
                    u.scheme_str() == Some("https")
                        && u.authority().is_some()
                        && u.query().is_none()
                })
                .map(|_| at.value.trim_end_matches('/').to_owned())
                .ok_or_else(|| {
                    "listen.public_base_url must be an https:// URL without a query".to_owned()
                });
            self.check(at, parsed)
        });
        let limits = raw
            .limits
            .as_ref()
            .map(|raw| self.limits(raw))
            .unwrap_or_default();
        let link_seal_secret = raw
            .link_seal_secret_file
            .as_ref()
            .and_then(|at| self.secret_file(at, "listen.link_seal_secret_file"));
        let trusted_proxies = self.trusted_proxies(raw.trusted_proxies.as_ref());
        let proxy_protocol = raw.proxy_protocol.as_ref().filter(|at| at.value);
        if let Some(at) = proxy_protocol
            && trusted_proxies.is_empty()
        {
            self.problem(
                at,
                "listen.proxy_protocol needs listen.trusted_proxies: the load balancers whose headers are believed",
            );
        }
        let event_loops = match raw.event_loops.as_ref().map(|at| (at, at.value.as_str())) {
            None | Some((_, "per_core")) => EventLoops::PerCore,
            Some((_, "shared")) => EventLoops::Shared,
            Some((at, _)) => {
                self.problem(at, "listen.event_loops must be per_core or shared");
                EventLoops::PerCore
            }
        };
        Some(Listen {
            address: address?,
            transport: transport?,
            header_read_timeout,
            handshake_timeout,
            first_request_timeout,
            max_connections,
            max_connections_per_address,
            idle_timeout,
            max_connection_age,
            shutdown_grace,
            max_header_bytes,
            public_base_url,
            limits,
            link_seal_secret,
            event_loops,
            trusted_proxies,
            proxy_protocol: proxy_protocol.is_some(),
        })
    }

    /// `listen.trusted_proxies`: addresses and CIDR ranges; a range that holds every address
    /// is refused, since it would let any client name its own address (oauth2-proxy #3506).
    fn trusted_proxies(&mut self, at: Option<&At<Vec<String>>>) -> crate::peer::TrustedProxies {
        let Some(at) = at else {
            return crate::peer::TrustedProxies::default();
        };
        let mut nets = Vec::new();
        for entry in &at.value {
            let net = entry
                .parse::<ipnet::IpNet>()
                .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            match net {
                Ok(net) if net.prefix_len() == 0 => self.problem(
                    at,
                    format!(
                        "listen.trusted_proxies: {entry} trusts every address, so any client could name its own"
                    ),
                ),
                Ok(net) => nets.push(net.trunc()),
                Err(_) => self.problem(
                    at,
                    format!(
                        "listen.trusted_proxies: {entry} is not an IP address or CIDR range"
                    ),
                ),
            }
        }
        crate::peer::TrustedProxies::new(nets)
    }

    fn limits(&mut self, raw: &RawLimits) -> RequestLimits {
        let defaults = RequestLimits::default();
        let max_body_bytes = self.bounded(
            raw.max_body_bytes.as_ref(),
            "listen.limits.max_body_bytes",
            1024..=1024 * 1024 * 1024,
            defaults.max_body_bytes,
        );
        RequestLimits {
            max_path_segments: self.bounded(
                raw.max_path_segments.as_ref(),
                "listen.limits.max_path_segments",
                8..=4096,
                defaults.max_path_segments,
            ),
            max_query_params: self.bounded(
                raw.max_query_params.as_ref(),
                "listen.limits.max_query_params",
                8..=8192,
                defaults.max_query_params,
            ),
            max_body_bytes,
            // Unauthenticated clients never get a larger buffer than authenticated ones.
            max_unauthenticated_body_bytes: self.bounded(
                raw.max_unauthenticated_body_bytes.as_ref(),
                "listen.limits.max_unauthenticated_body_bytes",
                0..=max_body_bytes.min(1024 * 1024),
                defaults.max_unauthenticated_body_bytes.min(max_body_bytes),
            ),
            body_timeout: self.duration(
                raw.body_timeout.as_ref(),
                "listen.limits.body_timeout",
                defaults.body_timeout,
            ),
        }
    }

    fn bounded(
        &mut self,
        at: Option<&At<u64>>,
        key: &str,
        range: std::ops::RangeInclusive<usize>,
        default: usize,
    ) -> usize {
        let Some(at) = at else { return default };
        let parsed = usize::try_from(at.value)
            .ok()
            .filter(|value| range.contains(value))
            .ok_or_else(|| {
                format!(
                    "{key} must be between {} and {}",
                    range.start(),
                    range.end()
                )
            });
        self.check(at, parsed).unwrap_or(default)
    }

    fn upstream(&mut self, raw: &RawUpstream) -> Option<Upstream> {
        let parsed = parse_upstream_url(&raw.url.value);
        let (scheme, authority, base_path) = self.check(&raw.url, parsed)?;
        if scheme != Scheme::HTTPS
            && let Some(ca) = &raw.ca_file
        {
            self.problem(ca, "upstream.ca_file needs an https:// upstream url");
        }
        let timeout = self.duration(
            raw.timeout.as_ref(),
            "upstream.timeout",
            Duration::from_secs(30),
        );
        let body_timeout = self.duration(
            raw.body_timeout.as_ref(),
            "upstream.body_timeout",
            Duration::from_secs(300),
        );
        let body_idle_timeout = self.duration(
            raw.body_idle_timeout.as_ref(),
            "upstream.body_idle_timeout",
            Duration::from_secs(30).min(body_timeout),
        );
        if body_idle_timeout > body_timeout
            && let Some(at) = &raw.body_idle_timeout
        {
            self.problem(
                at,
                "upstream.body_idle_timeout must not be longer than upstream.body_timeout",
            );
        }
        Some(Upstream {
            scheme,
            authority,
            base_path,
            ca_file: raw.ca_file.as_ref().map(|ca| self.path(ca, "ca_file")),
            timeout,
            body_timeout,
            body_idle_timeout,
            forward_token: raw.forward_token.unwrap_or(false),
            http2: raw.http2.unwrap_or(false),
        })
    }

    fn issuer(&mut self, raw: &RawIssuer) -> Option<IssuerConfig> {
        if raw.issuer.value.is_empty() {
            self.problem(&raw.issuer, "issuer must not be empty");
        }
        let discovers = raw.jwks_uri.is_none()
            || raw
                .introspection
                .as_ref()
                .is_some_and(|introspection| introspection.endpoint.is_none());
        let discoverable = discovers && self.discoverable(&raw.issuer);
        let jwks_uri = match &raw.jwks_uri {
            Some(at) => self.http_url(at, "jwks_uri").map(Some),
            None => discoverable.then_some(None),
        };
        if raw.audiences.value.is_empty() || raw.audiences.value.iter().any(String::is_empty) {
            self.problem(
                &raw.audiences,
                "audiences must list at least one non-empty audience",
            );
        }
        let introspection = raw
            .introspection
            .as_ref()
            .and_then(|raw| self.introspection(raw, discoverable));
        let patient_claim = match &raw.patient_claim {
            None => "patient".to_owned(),
            Some(at) => {
                let valid = !at.value.is_empty()
                    && at
                        .value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_');
                if !valid {
                    self.problem(
                        at,
                        "patient_claim must be a claim name (letters, digits, _)",
                    );
                }
                at.value.clone()
            }
        };
        let algorithms = self.check(&raw.algorithms, AlgorithmSet::parse(&raw.algorithms.value));
        Some(IssuerConfig {
            issuer: Arc::from(raw.issuer.value.as_str()),
            jwks_uri: jwks_uri?,
            jwks_ca_file: raw
                .jwks_ca_file
                .as_ref()
                .map(|ca| self.path(ca, "jwks_ca_file")),
            audiences: raw.audiences.value.clone(),
            algorithms: algorithms?,
            patient_claim,
            introspection,
        })
    }

    /// An issuer named by its identifier alone must be a URL its metadata can be fetched from
    /// (RFC 8414 §2: https, no query or fragment). Plain http is the JWKS's development
    /// allowance, taken here too and said aloud.
    fn discoverable(&mut self, issuer: &At<String>) -> bool {
        let uri = issuer.value.parse::<http::Uri>().ok();
        let scheme = uri.as_ref().and_then(http::Uri::scheme_str);
        let plain = uri.as_ref().is_some_and(|u| {
            u.authority().is_some() && u.query().is_none() && !issuer.value.contains('#')
        });
        match (scheme, plain) {
            (Some("https"), true) => true,
            (Some("http"), true) => {
                self.warning(
                    issuer,
                    "issuer is http://: its metadata and keys are fetched unprotected; \
                     development only",
                );
                true
            }
            _ => {
                self.problem(
                    issuer,
                    "an issuer without jwks_uri or introspection endpoint must be an https:// \
                     URL without query or fragment, so its metadata can be discovered",
                );
                false
            }
        }
    }

    /// `discoverable`: whether the issuer's metadata may name the endpoint when none is set.
    fn introspection(
        &mut self,
        raw: &RawIntrospection,
        discoverable: bool,
    ) -> Option<IntrospectionConfig> {
        let endpoint = match &raw.endpoint {
            Some(at) => Some(self.http_url(at, "introspection endpoint")?),
            None if discoverable => None,
            None => return None,
        };
        let credentials = self.client_credentials(
            (&raw.client_id, &raw.client_secret_file),
            raw.ca_file.as_ref(),
            ["introspection.client_secret_file", "introspection.ca_file"],
        );
        Some(IntrospectionConfig {
            endpoint,
            credentials: credentials?,
            cache_ttl: self.duration_or_zero(
                raw.cache_ttl.as_ref(),
                "introspection cache_ttl",
                Duration::from_secs(60),
            ),
            negative_cache_ttl: self.duration_or_zero(
                raw.negative_cache_ttl.as_ref(),
                "introspection negative_cache_ttl",
                Duration::from_secs(5),
            ),
            timeout: self.duration(
                raw.timeout.as_ref(),
                "introspection timeout",
                Duration::from_secs(3),
            ),
            resolve_patient: raw.resolve_patient.unwrap_or(false),
        })
    }

    fn tokens(&mut self, raw: Option<&RawTokens>) -> TokenBounds {
        let defaults = TokenBounds::default();
        let Some(raw) = raw else { return defaults };
        let skew = self.duration_or_zero(
            raw.clock_skew.as_ref(),
            "tokens.clock_skew",
            defaults.clock_skew.0,
        );
        let clock_skew = match &raw.clock_skew {
            Some(at) => self
                .check(at, ClockSkew::new(skew))
                .unwrap_or(defaults.clock_skew),
            None => defaults.clock_skew,
        };
        let max_lifetime = self.duration(
            raw.max_lifetime.as_ref(),
            "tokens.max_lifetime",
            defaults.max_lifetime,
        );
        TokenBounds {
            clock_skew,
            max_lifetime,
            jwks_cache_ttl: self.duration(
                raw.jwks_cache_ttl.as_ref(),
                "tokens.jwks_cache_ttl",
                defaults.jwks_cache_ttl,
            ),
            jwks_max_stale: self.duration(
                raw.jwks_max_stale.as_ref(),
                "tokens.jwks_max_stale",
                defaults.jwks_max_stale,
            ),
            jwks_refetch_cooldown: self.duration(
                raw.jwks_refetch_cooldown.as_ref(),
                "tokens.jwks_refetch_cooldown",
                defaults.jwks_refetch_cooldown,
            ),
            jwks_fetch_timeout: self.duration(
                raw.jwks_fetch_timeout.as_ref(),
                "tokens.jwks_fetch_timeout",
                defaults.jwks_fetch_timeout,
            ),
            cache_max_entries: self.bounded(
                raw.cache_max_entries.as_ref(),
                "tokens.cache_max_entries",
                TOKEN_CACHE_ENTRIES,
                defaults.cache_max_entries,
            ),
            cache_max_bytes: self.bounded(
                raw.cache_max_bytes.as_ref(),
                "tokens.cache_max_bytes",
                TOKEN_CACHE_BYTES,
                defaults.cache_max_bytes,
            ),
        }
    }
}

/// Splits `http(s)://host:port/base` into its parts; queries and fragments are refused because
/// every forwarded path is appended to the base.
fn parse_upstream_url(url: &str) -> Result<(Scheme, Authority, String), String> {
    let message =
        || "upstream.url must look like http://host:port/base or https://host/base".to_owned();
    let uri: http::Uri = url.parse().map_err(|_| message())?;
    let scheme = match uri.scheme_str() {
        Some("http") => Scheme::HTTP,
        Some("https") => Scheme::HTTPS,
        _ => return Err(message()),
    };
    let authority = uri.authority().cloned().ok_or_else(message)?;
    if uri.query().is_some() || url.contains('#') || authority.as_str().contains('@') {
        return Err(message());
    }
    let base_path = uri.path().trim_end_matches('/').to_owned();
    Ok((scheme, authority, base_path))
}

#[cfg(test)]
mod tests;
