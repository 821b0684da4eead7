//! Listener TLS hot reload (issue #13): one task keeps the listener's certificate, key, client
//! CAs and client CRLs current. Files are read again on SIGHUP and when anything changes in
//! their folders (rename-into-place and Kubernetes `..data` swaps included), after a short
//! debounce that coalesces triggers; CRL files and URLs are also read on their `refresh` timer,
//! each URL by a fetcher of its own so a slow server never holds a certificate reload up. A
//! changed part is judged whole: a good one goes live for new handshakes, a bad one is refused
//! with a log line and `phigate_tls_reload_failures_total{name}` while the previous one keeps
//! serving. Every second it publishes each CRL source's age and staleness and logs a source
//! turning stale or fresh; the handshake itself enforces the bound (`tls::Freshness`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::reload::DEBOUNCE;
use crate::fetch::{self, Fetched};
use crate::telemetry::Metrics;
use crate::tls::{
    Attempt, Change, CrlLocation, Freshness, HttpsClient, LiveConfig, Material, Outcome,
    ServerFile, TlsError, TlsFiles, https_client, read_attempt, unix_now,
};
use crate::watch::{Hangups, watch_folder};

/// A CRL document larger than this is refused.
const MAX_CRL_BYTES: usize = 16 * 1024 * 1024;
/// Bound on one CRL fetch.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// How often CRL ages and staleness are published.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);

/// Keeps the listener's TLS material current.
pub struct TlsReloader {
    material: Material,
    live: Arc<LiveConfig>,
    metrics: Arc<Metrics>,
    fetchers: Vec<CrlFetcher>,
    /// Each CRL source's staleness as last published, to log only the turns.
    stale: Vec<Option<bool>>,
}

/// One CRL source's timed reader, built before serving so a bad `ca_file` is a start problem.
struct CrlFetcher {
    index: usize,
    location: CrlLocation,
    refresh: Duration,
    client: Option<HttpsClient<Empty<Bytes>>>,
}

impl TlsReloader {
    /// Loads every file and builds the first configuration; every problem is reported.
    pub fn prepare(
        files: &TlsFiles,
        metrics: Arc<Metrics>,
    ) -> Result<Self, Vec<(ServerFile, TlsError)>> {
        let material = Material::load(files, unix_now())?;
        let fetchers = material
            .crl_sources()
            .iter()
            .enumerate()
            .map(|(index, source)| {
                let client = match &source.location {
                    CrlLocation::Url { ca_file, .. } => Some(
                        https_client(ca_file.as_deref()).map_err(|err| (ServerFile::Crl, err))?,
                    ),
                    CrlLocation::File(_) => None,
                };
                Ok(CrlFetcher {
                    index,
                    location: source.location.clone(),
                    refresh: source.refresh,
                    client,
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|problem| vec![problem])?;
        let config = material
            .config()
            .map_err(|err| vec![(ServerFile::Key, err)])?;
        let mut reloader = Self {
            live: Arc::new(LiveConfig::new(config)),
            stale: vec![None; fetchers.len()],
            material,
            metrics,
            fetchers,
        };
        reloader.metrics.init_tls_reloads(&reloader.part_names());
        reloader.publish(unix_now());
        Ok(reloader)
    }

    /// The configuration every event loop takes new handshakes from.
    pub fn live(&self) -> Arc<LiveConfig> {
        Arc::clone(&self.live)
    }

    /// The client CRLs' staleness bound the handshake enforces, for readiness.
    pub fn crl_freshness(&self) -> Arc<Freshness> {
        self.material.freshness()
    }

    /// Starts the reloader and one fetcher per CRL source; they run until aborted.
    pub fn spawn(mut self) -> Vec<JoinHandle<()>> {
        // Installed before `Gateway::start` returns: a SIGHUP from then on is a reload, never
        // the default action (exit).
        let hangups = Hangups::listen("tls");
        let (reads, read_rx) = mpsc::channel(self.fetchers.len().max(1));
        let mut tasks: Vec<JoinHandle<()>> = std::mem::take(&mut self.fetchers)
            .into_iter()
            .map(|fetcher| tokio::spawn(fetcher.run(reads.clone(), Hangups::listen("client_crl"))))
            .collect();
        tasks.push(tokio::spawn(self.run(read_rx, hangups)));
        tasks
    }

    async fn run(mut self, mut reads: mpsc::Receiver<(usize, Attempt)>, mut hangups: Hangups) {
        let (trigger, mut triggers) = mpsc::channel::<()>(1);
        // Kept for as long as this task runs.
        let _watches: Vec<_> = self
            .material
            .files()
            .into_iter()
            .filter_map(|path| watch_folder(path, trigger.clone()))
            .collect();
        // A change made between the first load and the watches taking hold raised no event.
        self.reload_files();
        let mut status = tokio::time::interval(STATUS_INTERVAL);
        loop {
            tokio::select! {
                Some(()) = triggers.recv() => self.debounced(&mut triggers).await,
                Some(()) = hangups.recv() => self.debounced(&mut triggers).await,
                Some((index, read)) = reads.recv() => {
                    let change = self.material.offer_crl(index, read, unix_now());
                    self.apply(change.into_iter().collect());
                }
                _ = status.tick() => self.publish(unix_now()),
            }
        }
    }

    /// Waits out the debounce, folds the triggers that arrived meanwhile into this one, and
    /// reloads: a half-written file is never read alone.
    async fn debounced(&mut self, triggers: &mut mpsc::Receiver<()>) {
        tokio::time::sleep(DEBOUNCE).await;
        while triggers.try_recv().is_ok() {}
        self.reload_files();
    }

    fn reload_files(&mut self) {
        let changes = self.material.reload_files(unix_now());
        self.apply(changes);
    }

    /// Counts and logs each change and, when a part was taken, puts the new configuration live
    /// before the staleness bound moves (a fresher bound must never cover older lists).
    fn apply(&mut self, changes: Vec<Change>) {
        let mut taken = false;
        for change in &changes {
            match &change.outcome {
                Outcome::Accepted => {
                    taken = true;
                    self.metrics.record_tls_reload(change.part.name(), true);
                    tracing::info!(
                        tls.part = change.part_label(),
                        "TLS material reloaded; new handshakes use it"
                    );
                }
                Outcome::Refused(problem) => {
                    self.metrics.record_tls_reload(change.part.name(), false);
                    tracing::error!(
                        tls.part = change.part_label(),
                        problem = %problem,
                        "TLS reload refused; the previous one keeps serving"
                    );
                }
                Outcome::Confirmed => {}
            }
        }
        if taken {
            match self.material.config() {
                Ok(config) => self.live.replace(config),
                Err(err) => {
                    self.metrics.record_tls_reload("listener", false);
                    tracing::error!(problem = %err, "TLS configuration refused; the previous one keeps serving");
                }
            }
        }
        self.material.publish_freshness();
        self.publish(unix_now());
    }

    /// Publishes expiry dates and each CRL source's age and staleness, and logs a source that
    /// turned stale or fresh since the last look.
    fn publish(&mut self, now: i64) {
        self.metrics
            .set_certificate_expiry("listener", self.material.listener_not_after());
        if let Some(not_after) = self.material.client_ca_not_after() {
            self.metrics.set_certificate_expiry("client_ca", not_after);
        }
        for (status, was_stale) in self
            .material
            .crl_status(now)
            .into_iter()
            .zip(&mut self.stale)
        {
            if *was_stale != Some(status.stale) {
                if status.stale {
                    tracing::error!(
                        crl.source = status.label,
                        crl.age_seconds = status.age,
                        "client CRL stale: handshakes presenting a client certificate fail until a fresh CRL arrives"
                    );
                } else if was_stale.is_some() {
                    tracing::info!(
                        crl.source = status.label,
                        "client CRL fresh again: client certificates are accepted"
                    );
                }
            }
            self.metrics
                .set_crl_status(&status.label, status.age, status.stale);
            *was_stale = Some(status.stale);
        }
    }

    /// The parts this configuration has, as reload metrics name them.
    fn part_names(&self) -> Vec<&'static str> {
        let mut names = vec!["listener"];
        if self.material.client_ca_not_after().is_some() {
            names.push("client_ca");
        }
        if !self.material.crl_sources().is_empty() {
            names.push("client_crl");
        }
        names
    }
}

impl CrlFetcher {
    /// Reads the source now and then every `refresh` — a URL also at once on SIGHUP, as the
    /// reloader reads every file then — sending each read to the reloader. A URL answering 304
    /// sends the list it sent last, which the reloader takes as confirmation.
    async fn run(self, reads: mpsc::Sender<(usize, Attempt)>, mut hangups: Hangups) {
        let mut etag = None;
        let mut last: Option<Vec<u8>> = None;
        let mut first = true;
        loop {
            let read = match (&self.location, &self.client) {
                // Files were read at start; the timer only re-confirms them.
                (CrlLocation::File(_), _) if first => None,
                // Read as every other reload reads it, so the same failure compares equal.
                (CrlLocation::File(path), _) => Some(read_attempt(path)),
                (CrlLocation::Url { url, .. }, Some(client)) => Some(
                    match fetch::get(
                        client,
                        url,
                        (etag.as_ref(), None),
                        MAX_CRL_BYTES,
                        FETCH_TIMEOUT,
                    )
                    .await
                    {
                        Ok(Fetched::Document {
                            etag: tag, body, ..
                        }) => {
                            etag = tag;
                            last = Some(body.to_vec());
                            Ok(body.to_vec())
                        }
                        Ok(Fetched::NotModified { .. }) => {
                            last.clone().ok_or_else(|| "304 before any list".to_owned())
                        }
                        Err(err) => Err(err.to_string()),
                    },
                ),
                (CrlLocation::Url { .. }, None) => None,
            };
            first = false;
            if let Some(read) = read
                && reads.send((self.index, read)).await.is_err()
            {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(self.refresh) => {}
                Some(()) = hangups.recv(), if matches!(self.location, CrlLocation::Url { .. }) => {}
            }
        }
    }
}
