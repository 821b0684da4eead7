//! The alert action: a JSON event POSTed to the configured webhook. Events wait in a bounded
//! queue for one task that delivers them in order, retrying with exponential backoff; a full
//! queue drops the event and counts it as a failed alert, so a slow webhook never holds up the
//! detectors. An event names the detector, the key (an address, a client, a subject or a
//! `jti`) and the actions taken — never a token.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http_body_util::Full;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::AlertConfig;
use crate::telemetry::Metrics;
use crate::tls::{HttpsClient, TlsError, https_client};

/// The first retry waits this long; each next one twice as long.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Bound on one delivery attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// A webhook client, built before the gateway serves (its CA file can be wrong).
pub struct Alerter {
    client: HttpsClient<Full<Bytes>>,
    config: AlertConfig,
}

/// Where the detectors put events for the webhook.
#[derive(Clone)]
pub struct AlertQueue {
    events: mpsc::Sender<serde_json::Value>,
    metrics: Arc<Metrics>,
}

impl Alerter {
    /// A client for `config`'s webhook.
    pub fn new(config: &AlertConfig) -> Result<Self, TlsError> {
        Ok(Self {
            client: https_client(config.ca_file.as_deref())?,
            config: config.clone(),
        })
    }

    /// Starts the delivery task.
    pub fn spawn(self, metrics: Arc<Metrics>) -> (AlertQueue, JoinHandle<()>) {
        let (events, queued) = mpsc::channel(self.config.queue.max(1));
        let task = tokio::spawn(self.deliver_all(queued, Arc::clone(&metrics)));
        (AlertQueue { events, metrics }, task)
    }

    async fn deliver_all(
        self,
        mut queued: mpsc::Receiver<serde_json::Value>,
        metrics: Arc<Metrics>,
    ) {
        while let Some(event) = queued.recv().await {
            let delivered = self.deliver(&event).await;
            metrics.record_action("alert", delivered);
            if !delivered {
                tracing::warn!(
                    monitor.alert.attempts = self.config.retries + 1,
                    "alert not delivered to the webhook"
                );
            }
        }
    }

    /// Posts `event` until the webhook answers 2xx or the retries run out.
    async fn deliver(&self, event: &serde_json::Value) -> bool {
        let body = Bytes::from(event.to_string());
        let mut backoff = FIRST_BACKOFF;
        for attempt in 0..=self.config.retries {
            if attempt > 0 {
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2);
            }
            let Ok(request) = http::Request::post(self.config.webhook.clone())
                .header(CONTENT_TYPE, "application/json")
                .body(Full::new(body.clone()))
            else {
                return false;
            };
            match tokio::time::timeout(ATTEMPT_TIMEOUT, self.client.request(request)).await {
                Ok(Ok(response)) if response.status().is_success() => return true,
                Ok(Ok(response)) => tracing::debug!(
                    http.status = response.status().as_u16(),
                    "webhook refused an alert"
                ),
                Ok(Err(err)) => tracing::debug!(error = %err, "webhook unreachable"),
                Err(_) => tracing::debug!("webhook timed out"),
            }
        }
        false
    }
}

impl AlertQueue {
    /// Queues `event`; a full queue drops it, counted as a failed alert.
    pub fn send(&self, event: serde_json::Value) {
        if self.events.try_send(event).is_err() {
            self.metrics.record_action("alert", false);
            tracing::warn!("alert queue full; alert dropped");
        }
    }
}
