//! The configuration file as written: serde mirrors of the YAML, unknown keys rejected. Nothing
//! outside `config` sees these types; `Config::try_from` turns them into values that cannot be
//! wrong.

use serde::Deserialize;
use serde_saphyr::Spanned;

/// A value with the place it was written, so semantic errors can name the line.
pub type At<T> = Spanned<T>;

/// Top level of the configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: RawListen,
    #[serde(default)]
    pub admin: Option<RawAdmin>,
    pub upstream: RawUpstream,
    pub issuers: At<Vec<RawIssuer>>,
    #[serde(default)]
    pub tokens: Option<RawTokens>,
    pub policy_file: At<String>,
    #[serde(default)]
    pub revocation: Option<RawRevocation>,
    #[serde(default)]
    pub dpop: Option<At<RawDpop>>,
    #[serde(default)]
    pub audit: Option<RawAudit>,
    #[serde(default)]
    pub monitor: Option<RawMonitor>,
    #[serde(default)]
    pub discovery: Option<RawDiscovery>,
    #[serde(default)]
    pub redis_password_file: Option<At<String>>,
    #[serde(default)]
    pub redis_ca_file: Option<At<String>>,
}

/// `discovery:` — what phigate publishes at its well-known paths.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDiscovery {
    #[serde(default)]
    pub resource: Option<At<String>>,
    #[serde(default)]
    pub resource_name: Option<String>,
    #[serde(default)]
    pub resource_documentation: Option<At<String>>,
    #[serde(default)]
    pub authorization_server: Option<At<String>>,
    #[serde(default)]
    pub smart_configuration: Option<At<serde_json::Value>>,
}

/// `audit:` — the tamper-evident audit trail.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    pub file: At<String>,
    pub key_file: At<String>,
    #[serde(default)]
    pub max_file_bytes: Option<At<u64>>,
    #[serde(default)]
    pub queue: Option<At<u64>>,
    #[serde(default)]
    pub when_full: Option<At<String>>,
}

/// `monitor:` — detectors over decision records, and what each does when it fires.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMonitor {
    #[serde(default)]
    pub queue: Option<At<u64>>,
    #[serde(default)]
    pub max_keys: Option<At<u64>>,
    #[serde(default)]
    pub alert: Option<RawAlert>,
    #[serde(default)]
    pub revoke: Option<RawRevoke>,
    #[serde(default)]
    pub redis: Option<At<String>>,
    #[serde(default)]
    pub redis_prefix: Option<String>,
    #[serde(default)]
    pub repeated_failures: Option<RawWindowDetector>,
    #[serde(default)]
    pub refused_token_reuse: Option<RawWindowDetector>,
    #[serde(default)]
    pub traffic_spike: Option<RawSpike>,
    #[serde(default)]
    pub bulk_access: Option<RawBulk>,
    #[serde(default)]
    pub geoip: Option<At<String>>,
    #[serde(default)]
    pub new_country: Option<At<RawNewCountry>>,
    #[serde(default)]
    pub impossible_travel: Option<At<RawTravel>>,
}

/// `monitor.new_country:` — a token, client or subject seen from a country it never was, or
/// from one outside the allow-list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNewCountry {
    #[serde(default)]
    pub allowed: Option<Vec<At<String>>>,
    #[serde(default)]
    pub actions: Option<RawActions>,
}

/// `monitor.impossible_travel:` — two sightings further apart than anyone could travel.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTravel {
    #[serde(default)]
    pub max_speed_kmh: Option<At<u64>>,
    #[serde(default)]
    pub min_distance_km: Option<At<u64>>,
    #[serde(default)]
    pub actions: Option<RawActions>,
}

/// `monitor.traffic_spike:` — request rates against a ceiling and a baseline.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpike {
    #[serde(default)]
    pub interval: Option<At<String>>,
    #[serde(default)]
    pub ceiling: Option<At<u64>>,
    #[serde(default)]
    pub factor: Option<At<u64>>,
    #[serde(default)]
    pub actions: Option<RawActions>,
}

/// `monitor.alert:` — the webhook alerts are posted to.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlert {
    pub webhook: At<String>,
    #[serde(default)]
    pub ca_file: Option<At<String>>,
    #[serde(default)]
    pub retries: Option<At<u64>>,
    #[serde(default)]
    pub queue: Option<At<u64>>,
}

/// `monitor.revoke:` — the authorization server's RFC 7009 endpoint and our credentials.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRevoke {
    pub endpoint: At<String>,
    pub client_id: String,
    pub client_secret_file: At<String>,
    #[serde(default)]
    pub ca_file: Option<At<String>>,
}

/// A detector counting events per key over a sliding window.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWindowDetector {
    #[serde(default)]
    pub threshold: Option<At<u64>>,
    #[serde(default)]
    pub window: Option<At<String>>,
    #[serde(default)]
    pub actions: Option<RawActions>,
}

/// `monitor.bulk_access:` — a windowed detector of distinct resources that also counts bulk
/// operations (`$everything`, `$export`) in the same window.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBulk {
    #[serde(default)]
    pub threshold: Option<At<u64>>,
    #[serde(default)]
    pub operations: Option<At<u64>>,
    #[serde(default)]
    pub window: Option<At<String>>,
    #[serde(default)]
    pub actions: Option<RawActions>,
}

/// What a detector does when it fires; it always logs and counts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawActions {
    #[serde(default)]
    pub block: Option<At<String>>,
    #[serde(default)]
    pub reauthenticate: Option<bool>,
    #[serde(default)]
    pub alert: Option<At<bool>>,
    #[serde(default)]
    pub revoke: Option<At<bool>>,
}

/// `dpop:` — RFC 9449 proof checking.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDpop {
    #[serde(default)]
    pub max_age: Option<At<String>>,
    #[serde(default)]
    pub max_future: Option<At<String>>,
    #[serde(default)]
    pub replay_redis: Option<At<String>>,
    #[serde(default)]
    pub nonce: Option<bool>,
    #[serde(default)]
    pub nonce_secret_file: Option<At<String>>,
    #[serde(default)]
    pub algorithms: Option<At<Vec<String>>>,
}

/// `revocation:` — where revoked tokens are listed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRevocation {
    pub sources: At<Vec<RawRevocationSource>>,
}

/// One revocation source: exactly one of `http`, `file`, `redis`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRevocationSource {
    #[serde(default)]
    pub http: Option<At<String>>,
    #[serde(default)]
    pub file: Option<At<String>>,
    #[serde(default)]
    pub redis: Option<At<String>>,
    #[serde(default)]
    pub ca_file: Option<At<String>>,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub interval: Option<At<String>>,
    #[serde(default)]
    pub max_stale: Option<At<String>>,
}

/// `listen:` — the PHI-facing listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListen {
    pub address: At<String>,
    #[serde(default)]
    pub tls: Option<RawTls>,
    #[serde(default)]
    pub insecure_plaintext: Option<At<bool>>,
    #[serde(default)]
    pub header_read_timeout: Option<At<String>>,
    #[serde(default)]
    pub handshake_timeout: Option<At<String>>,
    #[serde(default)]
    pub first_request_timeout: Option<At<String>>,
    #[serde(default)]
    pub max_connections: Option<At<u64>>,
    #[serde(default)]
    pub max_connections_per_address: Option<At<u64>>,
    #[serde(default)]
    pub idle_timeout: Option<At<String>>,
    #[serde(default)]
    pub max_connection_age: Option<At<String>>,
    #[serde(default)]
    pub shutdown_grace: Option<At<String>>,
    #[serde(default)]
    pub max_header_bytes: Option<At<u64>>,
    #[serde(default)]
    pub public_base_url: Option<At<String>>,
    #[serde(default)]
    pub limits: Option<RawLimits>,
    #[serde(default)]
    pub link_seal_secret_file: Option<At<String>>,
    #[serde(default)]
    pub event_loops: Option<At<String>>,
    #[serde(default)]
    pub trusted_proxies: Option<At<Vec<String>>>,
    #[serde(default)]
    pub proxy_protocol: Option<At<bool>>,
}

/// `listen.limits:` — bounds on what a request may carry, enforced before routing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    #[serde(default)]
    pub max_path_segments: Option<At<u64>>,
    #[serde(default)]
    pub max_query_params: Option<At<u64>>,
    #[serde(default)]
    pub max_body_bytes: Option<At<u64>>,
    #[serde(default)]
    pub max_unauthenticated_body_bytes: Option<At<u64>>,
    #[serde(default)]
    pub body_timeout: Option<At<String>>,
}

/// `listen.tls:` — certificate files.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert_file: At<String>,
    pub key_file: At<String>,
    #[serde(default)]
    pub client_ca_file: Option<At<String>>,
    #[serde(default)]
    pub client_auth: Option<At<String>>,
    #[serde(default)]
    pub client_crls: Option<At<Vec<RawCrl>>>,
    #[serde(default)]
    pub client_crl_max_stale: Option<At<String>>,
}

/// One entry of `listen.tls.client_crls`: exactly one of `file`, `url`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCrl {
    #[serde(default)]
    pub file: Option<At<String>>,
    #[serde(default)]
    pub url: Option<At<String>>,
    #[serde(default)]
    pub ca_file: Option<At<String>>,
    #[serde(default)]
    pub refresh: Option<At<String>>,
}

/// `admin:` — metrics and health listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub address: At<String>,
}

/// `upstream:` — where allowed traffic goes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub url: At<String>,
    #[serde(default)]
    pub ca_file: Option<At<String>>,
    #[serde(default)]
    pub timeout: Option<At<String>>,
    #[serde(default)]
    pub body_timeout: Option<At<String>>,
    #[serde(default)]
    pub body_idle_timeout: Option<At<String>>,
    #[serde(default)]
    pub forward_token: Option<bool>,
    #[serde(default)]
    pub http2: Option<bool>,
}

/// One entry of `issuers:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIssuer {
    pub issuer: At<String>,
    #[serde(default)]
    pub jwks_uri: Option<At<String>>,
    #[serde(default)]
    pub jwks_ca_file: Option<At<String>>,
    pub audiences: At<Vec<String>>,
    pub algorithms: At<Vec<String>>,
    #[serde(default)]
    pub patient_claim: Option<At<String>>,
    #[serde(default)]
    pub introspection: Option<RawIntrospection>,
}

/// `issuers[].introspection:` — RFC 7662 token introspection.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIntrospection {
    #[serde(default)]
    pub endpoint: Option<At<String>>,
    pub client_id: String,
    pub client_secret_file: At<String>,
    #[serde(default)]
    pub ca_file: Option<At<String>>,
    #[serde(default)]
    pub cache_ttl: Option<At<String>>,
    #[serde(default)]
    pub negative_cache_ttl: Option<At<String>>,
    #[serde(default)]
    pub timeout: Option<At<String>>,
    #[serde(default)]
    pub resolve_patient: Option<bool>,
}

/// `tokens:` — validation bounds shared by all issuers.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTokens {
    #[serde(default)]
    pub clock_skew: Option<At<String>>,
    #[serde(default)]
    pub max_lifetime: Option<At<String>>,
    #[serde(default)]
    pub jwks_cache_ttl: Option<At<String>>,
    #[serde(default)]
    pub jwks_max_stale: Option<At<String>>,
    #[serde(default)]
    pub jwks_refetch_cooldown: Option<At<String>>,
    #[serde(default)]
    pub jwks_fetch_timeout: Option<At<String>>,
    #[serde(default)]
    pub cache_max_entries: Option<At<u64>>,
    #[serde(default)]
    pub cache_max_bytes: Option<At<u64>>,
}
