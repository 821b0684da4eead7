//! The running gateway: binds the PHI listener and the admin listener, wires the decision chain
//! to the forwarder, starts the event loops and the JWKS refreshers, and shuts all of it down
//! gracefully. Tests and `cli` start a gateway only through [`Gateway::start`].

mod event_loops;
pub mod forward;
mod lingering;
mod links;
mod peers;
mod prepare;
pub mod proxy_header;
mod reload;
pub use self::prepare::{Prepared, prepare};
mod server;
pub use self::server::DRAIN_DEADLINE;
mod service;
mod tls_reload;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::{AdminServer, Readiness};
use crate::audit::{self, Trail, WriterFinished};
use crate::config::{AuditConfig, AuditDestination, Config, ConfigError, Transport};
use crate::discovery::Discovery;
use crate::monitor::{BlockList, Hooks, Monitor};
use crate::pipeline::Pipeline;
use crate::policy::PolicyStore;
use crate::record::{ActionSink, LogSink, MetricsSink, Sink, Sinks};

/// How long shutdown waits, once every request is answered, for the audit writer to write and
/// sync every queued record. Deployments allow `DRAIN_DEADLINE` plus this before a hard kill.
pub const AUDIT_FLUSH_DEADLINE: Duration = Duration::from_secs(10);

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Something the configuration names cannot be used (every problem, with key and line).
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// A listener could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The configured address.
        address: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A `per_core` event loop's runtime or thread could not be started.
    #[error("cannot start the event loops: {0}")]
    EventLoops(std::io::Error),
}

/// A gateway that is serving.
pub struct Gateway {
    local_addr: SocketAddr,
    admin_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    serving: event_loops::Serving,
    background: Vec<JoinHandle<()>>,
    readiness: Arc<Readiness>,
    shutdown_grace: Duration,
    audit_finished: Option<WriterFinished>,
}

impl Gateway {
    /// Builds everything that can fail ([`prepare`]), binds both listeners and starts serving.
    pub async fn start(config: Config) -> Result<Self, StartError> {
        let parts = prepare(&config)?;
        // Before any task starts, so a trail that cannot be opened leaves nothing running.
        let audit = match &config.audit {
            Some(audit) => Some(start_audit(&config, audit, &parts)?),
            None => None,
        };
        if matches!(config.listen.transport, Transport::InsecurePlaintext) {
            tracing::warn!(
                listen.address = %config.listen.address,
                "INSECURE: the PHI listener speaks plaintext HTTP (listen.insecure_plaintext); never use this in production"
            );
        }
        let bind = |address: SocketAddr| async move {
            let tcp = TcpListener::bind(address)
                .await
                .map_err(|source| StartError::Bind { address, source })?;
            let local = tcp
                .local_addr()
                .map_err(|source| StartError::Bind { address, source })?;
            Ok::<_, StartError>((tcp, local))
        };
        // One socket per event loop, as many as upstream pools.
        let (sockets, local_addr) =
            event_loops::bind(config.listen.address, parts.forwarders.len()).map_err(|source| {
                StartError::Bind {
                    address: config.listen.address,
                    source,
                }
            })?;
        let (admin_tcp, admin_addr) = bind(config.admin.address).await?;
        let Prepared {
            metrics,
            tls,
            verifier,
            forwarders,
            revocation,
            dpop,
            sealer,
            alerter,
            shared_blocks,
            revoker,
            geoip,
        } = parts;
        let readiness = Arc::new(Readiness {
            serving: AtomicBool::new(true),
            verifier: Arc::clone(&verifier),
            revocation: Arc::clone(&revocation),
            client_crls: tls.as_ref().map(tls_reload::TlsReloader::crl_freshness),
        });
        let mut background = verifier.spawn_refreshers();
        let live_tls = tls.as_ref().map(tls_reload::TlsReloader::live);
        background.extend(
            tls.map(tls_reload::TlsReloader::spawn)
                .into_iter()
                .flatten(),
        );
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
        reload::init_break_glass(&metrics, &config.policy);
        if config.policy.has_report_only_rules() {
            tracing::warn!(
                policy.version = config.policy.version(),
                "REPORT-ONLY rules active: requests they would deny are forwarded and logged as would_deny"
            );
        }
        let policy = Arc::new(PolicyStore::new(config.policy));
        let discovery = Discovery::new(
            (
                &config.discovery,
                &config.issuers,
                &config.listen.transport,
                &config.dpop.algorithms,
            ),
            Arc::clone(&policy),
            config
                .discovery
                .authorization_server
                .as_deref()
                .and_then(|issuer| verifier.metadata(issuer)),
        );
        background.extend(discovery.spawn_refresher());
        let reloader = reload::PolicyReloader {
            store: Arc::clone(&policy),
            path: config.policy_file.clone(),
            metrics: Arc::clone(&metrics),
        };
        background.push(tokio::spawn(reloader.run()));
        let hooks = Hooks {
            blocks: Arc::new(BlockList::new(
                config.monitor.max_keys.max(1),
                config.tokens.max_lifetime,
            )),
            revoker,
        };
        let mut sinks: Vec<Arc<dyn Sink>> = vec![
            Arc::new(LogSink),
            Arc::new(MetricsSink(Arc::clone(&metrics))),
        ];
        // A replica with no detector of its own still enforces what the others share.
        let shared = shared_blocks.map(|shared| {
            let counter = shared.counter();
            let (publisher, tasks) = shared.spawn(Arc::clone(&hooks.blocks));
            background.extend(tasks);
            (publisher, counter)
        });
        if config.monitor.is_enabled() {
            let (monitor, tasks) = Monitor::start(
                &config.monitor,
                &hooks,
                alerter,
                shared,
                geoip,
                audit
                    .as_ref()
                    .map(|trail| Arc::new(trail.sink.clone()) as Arc<dyn ActionSink>),
                Arc::clone(&metrics),
            );
            sinks.push(Arc::new(monitor));
            background.extend(tasks);
        }
        let mut pipeline = Pipeline::new(
            policy,
            verifier,
            revocation,
            dpop,
            config.listen.limits,
            sealer,
            hooks,
        );
        let mut audit_finished = None;
        if let Some(trail) = audit {
            pipeline = pipeline.with_audit(trail.gate);
            sinks.push(Arc::new(trail.sink));
            audit_finished = Some(trail.finished);
        }
        let shared = Arc::new(service::Shared {
            pipeline,
            sinks: Sinks::new(sinks),
            metrics,
            discovery,
            trusted_proxies: config.listen.trusted_proxies.clone(),
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let shutdown_grace = config.listen.shutdown_grace;
        let event_loops = config.listen.event_loops;
        let common = event_loops::Common {
            shared,
            tls: live_tls,
            settings: config.listen,
            shutdown: shutdown_rx,
        };
        let serving = match event_loops::Serving::start(sockets, forwarders, common) {
            Ok(serving) => serving,
            Err(source) => {
                // Loops already started stop as `shutdown` is dropped; the tasks must too.
                for task in &background {
                    task.abort();
                }
                return Err(StartError::EventLoops(source));
            }
        };
        tracing::info!(
            listen.address = %local_addr,
            admin.address = %admin_addr,
            listen.event_loops = event_loops.as_str(),
            "phigate serving"
        );
        Ok(Self {
            local_addr,
            admin_addr,
            shutdown,
            serving,
            background,
            readiness,
            shutdown_grace,
            audit_finished,
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

    /// Turns readiness off, keeps serving for `listen.shutdown_grace`, then stops accepting,
    /// drains in-flight requests, and stops.
    pub async fn shutdown(self) {
        self.readiness.serving.store(false, Ordering::SeqCst);
        // A load balancer notices the 503 only at its next health checks: until then it still
        // sends requests, which an open listener serves rather than refuses.
        if !self.shutdown_grace.is_zero() {
            tracing::info!(
                listen.shutdown_grace = %humantime::format_duration(self.shutdown_grace),
                "not ready; serving on for the shutdown grace period"
            );
            tokio::time::sleep(self.shutdown_grace).await;
        }
        tracing::info!("closing the listener; draining in-flight requests");
        let _ = self.shutdown.send(true);
        self.serving.drained().await;
        // Every request is answered, so every sink is gone: the writer empties its queue and
        // stops. Records still queued when the process exits would be lost.
        if let Some(finished) = self.audit_finished
            && !finished.wait(AUDIT_FLUSH_DEADLINE).await
        {
            tracing::error!(
                "the audit writer did not finish within 10 s; queued records may be lost"
            );
        }
        for task in &self.background {
            task.abort();
        }
        // Waiting for each aborted task to be dropped ends its folder watches and connections
        // before `shutdown` returns, so a caller may delete the files they watched.
        for task in self.background {
            let _ = task.await;
        }
    }
}

/// Opens the audit trail and starts its writer; a trail that cannot be opened is a problem at
/// `audit.file`.
fn start_audit(
    config: &Config,
    audit: &AuditConfig,
    parts: &Prepared,
) -> Result<Trail, StartError> {
    audit::start(audit, &parts.metrics, parts.geoip.clone()).map_err(|err| {
        let problem = match &audit.destination {
            AuditDestination::File(path) => config.origins.problem(
                "audit.file",
                &path.display().to_string(),
                format!("cannot open the audit trail: {err}"),
            ),
            AuditDestination::Stdout => config
                .origins
                .unplaced(format!("cannot start the audit writer: {err}")),
        };
        StartError::Config(ConfigError {
            problems: vec![problem],
        })
    })
}
