//! The running gateway: binds the PHI listener and the admin listener, wires the decision chain
//! to the forwarder, starts the JWKS refreshers, and shuts all of it down gracefully. Tests and
//! `cli` start a gateway only through [`Gateway::start`].

pub mod forward;
mod links;
mod reload;
pub(crate) use self::reload::watch_folder;
mod server;
mod service;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::{AdminServer, Readiness};
use crate::binding::DpopChecker;
use crate::binding::dpop::ProofSettings;
use crate::binding::nonce::NonceIssuer;
use crate::binding::replay::ReplayCache;
use crate::config::{Config, Transport};
use crate::pipeline::Pipeline;
use crate::policy::PolicyStore;
use crate::policy::seal::LinkSealer;
use crate::revocation::Revocation;
use crate::telemetry::Metrics;
use crate::tls::{self, TlsError};
use crate::token::Verifier;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Certificates, keys or CA bundles.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The DPoP replay store's Redis URL is unusable.
    #[error("dpop.replay_redis: {0}")]
    ReplayStore(#[from] redis::RedisError),
    /// A listener could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The configured address.
        address: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A gateway that is serving.
pub struct Gateway {
    local_addr: SocketAddr,
    admin_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    listener: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
    readiness: Arc<Readiness>,
}

/// The longest a request can wait on configured timers, one after another: its body, a key
/// fetch, an introspection call, and two upstream exchanges (a write's read-before-write).
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
        config.upstream.timeout,
    ]
    .into_iter()
    .fold(
        std::time::Duration::ZERO,
        std::time::Duration::saturating_add,
    )
}

impl Gateway {
    /// Binds both listeners and starts serving `config`.
    pub async fn start(config: Config) -> Result<Self, StartError> {
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        let metrics = Arc::new(Metrics::with_longest_wait(longest_wait(&config)));
        let tls_acceptor = match &config.listen.transport {
            Transport::Tls(files) => {
                Some(tokio_rustls::TlsAcceptor::from(tls::server_config(files)?))
            }
            Transport::InsecurePlaintext => {
                tracing::warn!(
                    listen.address = %config.listen.address,
                    "INSECURE: the PHI listener speaks plaintext HTTP (listen.insecure_plaintext); never use this in production"
                );
                None
            }
        };
        let verifier = Arc::new(Verifier::new(
            &config.issuers,
            &config.tokens,
            Arc::clone(&metrics),
        )?);
        let sealer = Arc::new(match &config.listen.link_seal_secret {
            Some(secret) => LinkSealer::new(secret),
            None => LinkSealer::random().map_err(|_| {
                StartError::Tls(TlsError::Rustls("no randomness for link seals".into()))
            })?,
        });
        let forwarder = forward::Forwarder::new(
            config.upstream.clone(),
            config.listen.public_base_url.clone(),
            Arc::clone(&sealer),
        )?;
        let bind = |address: SocketAddr| async move {
            TcpListener::bind(address)
                .await
                .map_err(|source| StartError::Bind { address, source })
        };
        let tcp = bind(config.listen.address).await?;
        let admin_tcp = bind(config.admin.address).await?;
        let local_addr = tcp.local_addr().map_err(|source| StartError::Bind {
            address: config.listen.address,
            source,
        })?;
        let admin_addr = admin_tcp.local_addr().map_err(|source| StartError::Bind {
            address: config.admin.address,
            source,
        })?;

        let revocation = Arc::new(Revocation::new(
            &config.revocation,
            config.tokens.max_lifetime,
            Arc::clone(&metrics),
        ));
        let readiness = Arc::new(Readiness {
            serving: AtomicBool::new(true),
            verifier: Arc::clone(&verifier),
            revocation: Arc::clone(&revocation),
        });
        let mut background = verifier.spawn_refreshers();
        background.extend(revocation.spawn());
        let admin = AdminServer {
            metrics: Arc::clone(&metrics),
            readiness: Arc::clone(&readiness),
        };
        background.push(tokio::spawn(admin.serve(admin_tcp)));

        for warning in &config.warnings {
            tracing::warn!(
                config.file = %warning.file.display(),
                config.line = warning.line,
                problem = %warning.message,
                "configuration warning"
            );
        }
        reload::log_warnings(&config.policy);
        if config.policy.has_report_only_rules() {
            tracing::warn!(
                policy.version = config.policy.version(),
                "REPORT-ONLY rules active: requests they would deny are forwarded and logged as would_deny"
            );
        }
        let proof_settings = ProofSettings {
            max_age: config.dpop.max_age,
            max_future: config.dpop.max_future,
            ..ProofSettings::default()
        };
        let replay = ReplayCache::new(
            config.dpop.max_age + config.dpop.max_future,
            config.dpop.replay_redis.as_deref(),
        )?;
        let mut dpop = DpopChecker::new(
            proof_settings,
            config.listen.public_base_url.clone(),
            replay,
        );
        if config.dpop.nonce {
            let issuer = match &config.dpop.nonce_secret {
                Some(secret) => NonceIssuer::new(secret),
                None => NonceIssuer::random().map_err(|_| {
                    StartError::Tls(TlsError::Rustls("no randomness for DPoP nonces".into()))
                })?,
            };
            dpop = dpop.with_nonces(issuer);
        }
        let dpop = Arc::new(dpop);
        let policy = Arc::new(PolicyStore::new(config.policy));
        let reloader = reload::PolicyReloader {
            store: Arc::clone(&policy),
            path: config.policy_file.clone(),
            metrics: Arc::clone(&metrics),
        };
        background.push(tokio::spawn(reloader.run()));
        let shared = Arc::new(service::Shared {
            pipeline: Pipeline::new(
                policy,
                verifier,
                revocation,
                dpop,
                config.listen.limits,
                sealer,
            ),
            forwarder,
            metrics,
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let listener = server::Listener {
            tcp,
            tls: tls_acceptor,
            settings: config.listen,
        };
        let listener = tokio::spawn(listener.serve(shared, shutdown_rx));
        tracing::info!(listen.address = %local_addr, admin.address = %admin_addr, "phigate serving");
        Ok(Self {
            local_addr,
            admin_addr,
            shutdown,
            listener,
            background,
            readiness,
        })
    }

    /// The PHI listener's bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The admin listener's bound address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Turns readiness off, stops accepting, drains in-flight requests, then stops.
    pub async fn shutdown(self) {
        self.readiness.serving.store(false, Ordering::SeqCst);
        let _ = self.shutdown.send(true);
        let _ = self.listener.await;
        for task in self.background {
            task.abort();
        }
    }
}
