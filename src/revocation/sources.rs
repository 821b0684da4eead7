//! The loops that keep each revocation source current. HTTP: poll on the interval with
//! `If-None-Match` (a 304 confirms the list). File: re-read on the interval and whenever it
//! changes (write-then-rename and symlink swaps included). Redis: subscribe to the channel
//! first, then read the whole set (so nothing published in between is lost), apply messages as
//! they arrive, and re-read the set on the interval to repair any gap; a lost connection is
//! retried with backoff while the staleness clock runs. A failed read never replaces a list.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::Empty;

use super::{Entry, RevocationSet, SourceState, describe, unix_now};
use crate::backoff::Backoff;
use crate::config::{RevocationLocation, RevocationSource};
use crate::fetch::{self, Fetched};
use crate::telemetry::Metrics;
use crate::tls::{HttpsClient, https_client};

/// A list document larger than this is refused.
const MAX_DOCUMENT_BYTES: usize = 64 * 1024 * 1024;
/// Bound on one Redis or HTTP round trip.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A source ready to run: its client built and its URL parsed, so everything that can be wrong
/// with its configuration is found before the gateway serves, not as 503s afterwards.
pub enum Connector {
    /// An HTTP(S) list.
    Http(HttpsClient<Empty<Bytes>>),
    /// A file on disk.
    File,
    /// A Redis set and channel.
    Redis(redis::Client),
}

/// What is wrong with a source's configuration: the path or URL at fault, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceProblem {
    /// The resolved path or the URL, as the configuration names it.
    pub value: String,
    /// What is wrong.
    pub message: String,
}

/// Builds what a source needs to run.
pub fn connect(location: &RevocationLocation) -> Result<Connector, SourceProblem> {
    match location {
        RevocationLocation::Http { url, ca_file } => https_client(ca_file.as_deref())
            .map(Connector::Http)
            .map_err(|err| SourceProblem {
                value: err
                    .file()
                    .map_or_else(|| url.to_string(), |path| path.display().to_string()),
                message: err.problem(),
            }),
        RevocationLocation::File(path) if path.is_file() => Ok(Connector::File),
        RevocationLocation::File(path) => Err(SourceProblem {
            value: path.display().to_string(),
            message:
                "the revocation list file does not exist (an empty list is `{\"entries\": []}`)"
                    .to_owned(),
        }),
        RevocationLocation::Redis { endpoint, .. } => endpoint
            .client()
            .map(Connector::Redis)
            .map_err(|err| SourceProblem {
                value: endpoint.url().to_owned(),
                message: format!("not a usable Redis URL: {err}"),
            }),
    }
}

/// Runs the source's loop until the task is aborted.
pub async fn run(
    config: RevocationSource,
    connector: Arc<Connector>,
    state: Arc<SourceState>,
    metrics: Arc<Metrics>,
    max_lifetime: i64,
) {
    let source = describe(&config.location);
    match (&config.location, connector.as_ref()) {
        (RevocationLocation::Http { url, .. }, Connector::Http(client)) => {
            http_loop(
                url.clone(),
                client,
                config.interval,
                &state,
                &metrics,
                &source,
            )
            .await;
        }
        (RevocationLocation::File(path), _) => {
            file_loop(path, config.interval, &state, &metrics, &source).await
        }
        (RevocationLocation::Redis { key, channel, .. }, Connector::Redis(client)) => {
            redis_loop(
                client,
                key,
                channel,
                config.interval,
                &state,
                &metrics,
                &source,
                max_lifetime,
            )
            .await;
        }
        // `connect` built the connector from this very location.
        _ => tracing::error!(
            revocation.source = source,
            "revocation source and connector differ"
        ),
    }
}

fn record(metrics: &Metrics, source: &str, result: Result<(), String>) {
    if let Err(err) = &result {
        tracing::warn!(revocation.source = source, error = %err, "revocation list not refreshed; keeping the last good list");
    }
    metrics.record_revocation_refresh(source, result.is_ok());
}

async fn http_loop(
    url: http::Uri,
    client: &HttpsClient<Empty<Bytes>>,
    interval: Duration,
    state: &SourceState,
    metrics: &Metrics,
    source: &str,
) {
    let mut etag: Option<http::HeaderValue> = None;
    loop {
        let fetched = fetch::get(
            client,
            &url,
            (etag.as_ref(), None),
            MAX_DOCUMENT_BYTES,
            CALL_TIMEOUT,
        )
        .await;
        let result = match fetched {
            Ok(Fetched::NotModified { .. }) => {
                state.mark_fresh();
                Ok(())
            }
            Ok(Fetched::Document {
                etag: tag, body, ..
            }) => RevocationSet::parse_document(&body, unix_now())
                .map(|set| {
                    state.replace(set);
                    etag = tag;
                })
                .map_err(|e| e.to_string()),
            Err(err) => Err(err.to_string()),
        };
        record(metrics, source, result);
        tokio::time::sleep(interval).await;
    }
}

async fn file_loop(
    path: &std::path::Path,
    interval: Duration,
    state: &SourceState,
    metrics: &Metrics,
    source: &str,
) {
    let (trigger, mut triggers) = tokio::sync::mpsc::channel::<()>(1);
    let _watcher = crate::watch::watch_folder(path, trigger);
    loop {
        let result = match fetch::read_bounded(path, MAX_DOCUMENT_BYTES).await {
            Ok(bytes) => RevocationSet::parse_document(&bytes, unix_now())
                .map(|set| state.replace(set))
                .map_err(|e| e.to_string()),
            Err(err) => Err(format!("cannot read the file: {err}")),
        };
        record(metrics, source, result);
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            Some(()) = triggers.recv() => {
                // Let a writer finish before reading (partial writes are refused anyway).
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "one call site; the loop needs each of these"
)]
async fn redis_loop(
    client: &redis::Client,
    key: &str,
    channel: &str,
    interval: Duration,
    state: &SourceState,
    metrics: &Metrics,
    source: &str,
    max_lifetime: i64,
) {
    let mut backoff = Backoff::default();
    loop {
        let result = redis_session(
            client,
            key,
            channel,
            interval,
            state,
            metrics,
            source,
            max_lifetime,
            &mut backoff,
        )
        .await;
        record(metrics, source, result);
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// One connected session; returns when the connection fails.
#[expect(
    clippy::too_many_arguments,
    reason = "one call site; the session needs each of these"
)]
async fn redis_session(
    client: &redis::Client,
    key: &str,
    channel: &str,
    interval: Duration,
    state: &SourceState,
    metrics: &Metrics,
    source: &str,
    max_lifetime: i64,
    backoff: &mut Backoff,
) -> Result<(), String> {
    let mut pubsub =
        timed(async { client.get_async_pubsub().await.map_err(|e| e.to_string()) }).await?;
    timed(async { pubsub.subscribe(channel).await.map_err(|e| e.to_string()) }).await?;
    let mut connection = timed(async {
        client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| e.to_string())
    })
    .await?;
    // Subscribed before reading the set: an entry published meanwhile arrives as a message.
    reconcile(&mut connection, key, state, max_lifetime).await?;
    record(metrics, source, Ok(()));
    backoff.connected();
    let mut messages = pubsub.on_message();
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else {
                    return Err("pub/sub connection closed".to_owned());
                };
                match Entry::parse_text(message.get_payload_bytes()) {
                    Ok(entry) => state.insert(entry),
                    Err(err) => tracing::warn!(revocation.source = source, error = %err, "revocation message ignored"),
                }
            }
            _ = ticker.tick() => {
                reconcile(&mut connection, key, state, max_lifetime).await?;
                record(metrics, source, Ok(()));
            }
        }
    }
}

async fn timed<T>(
    future: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    tokio::time::timeout(CALL_TIMEOUT, future)
        .await
        .map_err(|_| "timed out".to_owned())?
}

/// Re-reads the whole set (SMEMBERS) and replaces the list with it.
async fn reconcile(
    connection: &mut redis::aio::MultiplexedConnection,
    key: &str,
    state: &SourceState,
    max_lifetime: i64,
) -> Result<(), String> {
    // Counted before it is read: a set past the cap is refused without fetching it.
    let count: usize = tokio::time::timeout(
        CALL_TIMEOUT,
        redis::cmd("SCARD").arg(key).query_async(connection),
    )
    .await
    .map_err(|_| "timed out".to_owned())?
    .map_err(|e| e.to_string())?;
    if count > super::MAX_ENTRIES {
        return Err("the set has too many entries".to_owned());
    }
    let members: Vec<Vec<u8>> = tokio::time::timeout(
        CALL_TIMEOUT,
        redis::cmd("SMEMBERS").arg(key).query_async(connection),
    )
    .await
    .map_err(|_| "timed out".to_owned())?
    .map_err(|e| e.to_string())?;
    if members.len() > super::MAX_ENTRIES {
        return Err("the set has too many entries".to_owned());
    }
    let now = unix_now();
    let mut set = RevocationSet::default();
    for member in &members {
        match Entry::parse_text(member) {
            Ok(entry) => set.insert(entry, now),
            Err(err) => tracing::warn!(error = %err, "revocation set member ignored"),
        }
    }
    set.prune(now, max_lifetime);
    state.replace(set);
    Ok(())
}
