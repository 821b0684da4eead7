//! Everything the gateway builds before it serves that can fail: the listener's TLS
//! configuration (certificate, key, client CAs, CRL files, CRL URL clients), the HTTPS clients (upstream, one per event loop; JWKS, introspection,
//! revocation), the Redis clients (DPoP replay store, revocation, shared blocks), the
//! revocation sources, the link sealer, the monitor's alert webhook, RFC 7009 client and GeoIP
//! database, and the audit trail's folder. It is built once, and every problem is reported at
//! once as `file:line:column: key: problem`, so
//! `phigate check` finds a bad CA file, Redis URL or revocation source that the gateway would
//! otherwise answer with 503 forever. `run` and `check` both go through [`prepare`]; nothing here
//! binds a socket or starts a task.

use std::sync::Arc;

use super::forward::Forwarder;
use super::tls_reload::TlsReloader;
use crate::binding::DpopChecker;
use crate::binding::dpop::ProofSettings;
use crate::binding::nonce::NonceIssuer;
use crate::binding::replay::ReplayCache;
use crate::config::{
    AuditConfig, AuditDestination, Config, ConfigError, ConfigProblem, RedisEndpoint, Transport,
};
use crate::geoip::GeoIp;
use crate::monitor::{Alerter, SharedBlocks};
use crate::policy::seal::LinkSealer;
use crate::revocation::Revocation;
use crate::telemetry::Metrics;
use crate::tls::TlsError;
use crate::token::TokenRevoker;
use crate::token::Verifier;

/// The gateway's parts, built and ready to serve.
pub struct Prepared {
    pub(super) metrics: Arc<Metrics>,
    /// The listener's TLS material and its reloader, absent only for `insecure_plaintext`.
    pub(super) tls: Option<TlsReloader>,
    pub(super) verifier: Arc<Verifier>,
    /// One upstream client and pool per event loop.
    pub(super) forwarders: Vec<Forwarder>,
    pub(super) revocation: Arc<Revocation>,
    pub(super) dpop: Arc<DpopChecker>,
    pub(super) sealer: Arc<LinkSealer>,
    pub(super) alerter: Option<Alerter>,
    pub(super) shared_blocks: Option<SharedBlocks>,
    pub(super) revoker: Option<Arc<TokenRevoker>>,
    pub(super) geoip: Option<Arc<GeoIp>>,
}

/// Builds every part of the gateway that can fail, or says everything that is wrong.
pub fn prepare(config: &Config) -> Result<Prepared, ConfigError> {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let metrics = Arc::new(Metrics::with_longest_wait(longest_wait(config)));
    let mut problems = Vec::new();
    let tls = match &config.listen.transport {
        Transport::Tls(files) => match TlsReloader::prepare(files, Arc::clone(&metrics)) {
            Ok(reloader) => Some(reloader),
            Err(errors) => {
                problems.extend(
                    errors
                        .into_iter()
                        .map(|(file, err)| tls_problem(config, file.key(), &err)),
                );
                None
            }
        },
        Transport::InsecurePlaintext => None,
    };
    let verifier = Verifier::new(&config.issuers, &config.tokens, Arc::clone(&metrics))
        .map_err(|err| problems.push(tls_problem(config, "issuers", &err)))
        .ok();
    let sealer = match &config.listen.link_seal_secret {
        Some(secret) => Some(LinkSealer::new(secret)),
        None => LinkSealer::random()
            .map_err(|_| problems.push(plain(config, "no randomness for link seals")))
            .ok(),
    };
    let sealer = sealer.map(Arc::new);
    let loops = super::event_loops::count(config.listen.event_loops);
    let forwarders = sealer.as_ref().and_then(|sealer| {
        (0..loops)
            .map(|_| {
                Forwarder::new(
                    config.upstream.clone(),
                    config.listen.public_base_url.clone(),
                    Arc::clone(sealer),
                    metrics.on_certificate_expiry("upstream"),
                )
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| problems.push(tls_problem(config, "upstream.ca_file", &err)))
            .ok()
    });
    let revocation = Revocation::new(
        &config.revocation,
        config.tokens.max_lifetime,
        Arc::clone(&metrics),
    )
    .map_err(|errors| {
        problems.extend(
            errors
                .into_iter()
                .map(|p| config.origins.problem("revocation", &p.value, p.message)),
        );
    })
    .ok();
    let dpop = dpop_checker(config, &metrics)
        .map_err(|p| problems.push(p))
        .ok();
    if let Some(problem) = audit_file_problem(config) {
        problems.push(problem);
    }
    let alerter = config.monitor.alert.as_ref().and_then(|alert| {
        Alerter::new(alert)
            .map_err(|err| problems.push(tls_problem(config, "monitor.alert", &err)))
            .ok()
    });
    let revoker = config.monitor.revoke.as_ref().and_then(|revoke| {
        TokenRevoker::new(revoke, config.tokens.max_lifetime)
            .map(Arc::new)
            .map_err(|err| problems.push(tls_problem(config, "monitor.revoke", &err)))
            .ok()
    });
    let geoip = config.monitor.geoip.as_ref().and_then(|path| {
        GeoIp::open(path)
            .map(Arc::new)
            .map_err(|err| {
                let file = path.display().to_string();
                let message = format!("not a usable .mmdb database: {err}");
                problems.push(config.origins.problem("monitor.geoip", &file, message));
            })
            .ok()
    });
    let shared_blocks = config.monitor.redis.as_ref().and_then(|endpoint| {
        SharedBlocks::new(
            endpoint,
            &config.monitor.redis_prefix,
            config.tokens.max_lifetime,
        )
        .map_err(|err| {
            problems.push(config.origins.problem(
                "monitor.redis",
                endpoint.url(),
                format!("not a usable Redis URL: {err}"),
            ));
        })
        .ok()
    });
    match (verifier, forwarders, revocation, dpop, sealer) {
        (Some(verifier), Some(forwarders), Some(revocation), Some(dpop), Some(sealer))
            if problems.is_empty() =>
        {
            Ok(Prepared {
                metrics,
                tls,
                verifier: Arc::new(verifier),
                forwarders,
                revocation: Arc::new(revocation),
                dpop: Arc::new(dpop),
                sealer,
                alerter,
                shared_blocks,
                revoker,
                geoip,
            })
        }
        _ => Err(ConfigError { problems }),
    }
}

fn dpop_checker(config: &Config, metrics: &Metrics) -> Result<DpopChecker, ConfigProblem> {
    let settings = ProofSettings {
        algorithms: config.dpop.algorithms.iter().collect(),
        max_age: config.dpop.max_age,
        max_future: config.dpop.max_future,
    };
    let replay = ReplayCache::new(
        config.dpop.max_age + config.dpop.max_future,
        config.dpop.replay_redis.as_ref(),
        metrics.circuit_gauge("dpop_replay_store", ""),
    )
    .map_err(|err| {
        let url = config
            .dpop
            .replay_redis
            .as_ref()
            .map_or("", RedisEndpoint::url);
        config.origins.problem(
            "dpop.replay_redis",
            url,
            format!("not a usable Redis URL: {err}"),
        )
    })?;
    let checker = DpopChecker::new(settings, config.listen.public_base_url.clone(), replay);
    if !config.dpop.nonce {
        return Ok(checker);
    }
    let nonces = match &config.dpop.nonce_secret {
        Some(secret) => NonceIssuer::new(secret),
        None => {
            NonceIssuer::random().map_err(|_| plain(config, "no randomness for DPoP nonces"))?
        }
    };
    Ok(checker.with_nonces(nonces))
}

/// The audit file is opened (and its chain resumed) only by `Gateway::start`, which writes;
/// `check` learns here that its folder does not exist or that it names a folder.
fn audit_file_problem(config: &Config) -> Option<ConfigProblem> {
    let Some(AuditConfig {
        destination: AuditDestination::File(path),
        ..
    }) = &config.audit
    else {
        return None;
    };
    let folder = path.parent().filter(|p| !p.as_os_str().is_empty())?;
    let problem = if !folder.is_dir() {
        format!("the folder {} does not exist", folder.display())
    } else if path.is_dir() {
        "names a folder, not a file".to_owned()
    } else {
        return None;
    };
    Some(
        config
            .origins
            .problem("audit.file", &path.display().to_string(), problem),
    )
}

/// A TLS problem, placed at the configuration key (under `section`) that names the file.
fn tls_problem(config: &Config, section: &str, err: &TlsError) -> ConfigProblem {
    let file = err
        .file()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    config.origins.problem(section, &file, err.problem())
}

/// A problem tied to no key.
fn plain(config: &Config, message: impl Into<String>) -> ConfigProblem {
    config.origins.unplaced(message)
}

/// The longest a request can wait on configured timers, one after another: its body, a key
/// fetch, an introspection call, and two upstream exchanges (a write's read-before-write), each
/// a head and a body read whole before the answer is checked.
/// Latency histograms reach past it, so a request that times out still lands in a finite bucket.
fn longest_wait(config: &Config) -> std::time::Duration {
    let introspection = config
        .issuers
        .iter()
        .filter_map(|issuer| issuer.introspection.as_ref().map(|i| i.timeout))
        .max()
        .unwrap_or_default();
    [
        config.listen.limits.body_timeout,
        config.tokens.jwks_fetch_timeout,
        introspection,
        config.upstream.timeout,
        config.upstream.body_timeout,
        config.upstream.timeout,
        config.upstream.body_timeout,
    ]
    .into_iter()
    .fold(
        std::time::Duration::ZERO,
        std::time::Duration::saturating_add,
    )
}
