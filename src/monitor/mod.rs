//! Real-time detection with automatic response. [`Monitor`] is a decision-record sink: it only
//! queues each record (bounded; a full queue drops the record and counts it) for one task that
//! runs the configured detectors and, when one fires, its actions. Detectors never deny a
//! request themselves: their actions write the [`BlockList`], which the decision chain reads as
//! one of its steps. Every firing and every action is logged and counted. Addresses are only
//! ever the TCP peer's, never a client-supplied header (P-01).

mod blocklist;
mod window;

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use self::blocklist::{BlockFault, BlockKey, BlockList};
use self::window::SlidingWindow;
use crate::config::{Actions, MonitorConfig, WindowDetector};
use crate::record::{DecisionRecord, Sink};
use crate::telemetry::Metrics;

/// The sink half: queues records for the detectors' task.
pub struct Monitor {
    queue: mpsc::Sender<DecisionRecord>,
    metrics: Arc<Metrics>,
}

impl Monitor {
    /// The sink and the task that runs the detectors of `config`, writing `blocks`.
    pub fn start(
        config: &MonitorConfig,
        blocks: Arc<BlockList>,
        metrics: Arc<Metrics>,
    ) -> (Self, JoinHandle<()>) {
        let (queue, records) = mpsc::channel(config.queue.max(1));
        let detectors = Detectors::new(config, blocks, Arc::clone(&metrics));
        let task = tokio::spawn(detectors.run(records));
        (Self { queue, metrics }, task)
    }
}

impl Sink for Monitor {
    fn record(&self, record: &DecisionRecord) {
        // The request must never wait for detection: when the task lags, records are dropped.
        if self.queue.try_send(record.clone()).is_err() {
            self.metrics.record_monitor_dropped();
        }
    }
}

/// One detector's state and settings.
struct Windowed {
    name: &'static str,
    counts: SlidingWindow<BlockKey>,
    actions: Actions,
}

impl Windowed {
    fn new(name: &'static str, config: &WindowDetector, max_keys: u64) -> Self {
        Self {
            name,
            counts: SlidingWindow::new(config.threshold, config.window, max_keys),
            actions: config.actions.clone(),
        }
    }
}

/// Every configured detector, and what their actions write to.
struct Detectors {
    repeated_failures: Option<Windowed>,
    responder: Responder,
}

impl Detectors {
    fn new(config: &MonitorConfig, blocks: Arc<BlockList>, metrics: Arc<Metrics>) -> Self {
        Self {
            repeated_failures: config
                .repeated_failures
                .as_ref()
                .map(|c| Windowed::new("repeated_failures", c, config.max_keys)),
            responder: Responder { blocks, metrics },
        }
    }

    async fn run(self, mut records: mpsc::Receiver<DecisionRecord>) {
        while let Some(record) = records.recv().await {
            self.observe(&record, Instant::now());
        }
    }

    fn observe(&self, record: &DecisionRecord, now: Instant) {
        if let Some(detector) = &self.repeated_failures
            && is_access_failure(record)
        {
            for key in failure_keys(record) {
                if detector.counts.hit(key.clone(), now) {
                    self.responder.fire(detector, &key);
                }
            }
        }
    }
}

/// An authentication or authorisation denial. Refusals the block list itself made are left
/// out, so a block is not extended by the very requests it refuses.
fn is_access_failure(record: &DecisionRecord) -> bool {
    record.decision == "deny"
        && matches!(record.status, 401 | 403)
        && !matches!(record.reason, "blocked" | "reauthentication_required")
}

/// A failure counts against the TCP peer and, when a token named one, its client.
fn failure_keys(record: &DecisionRecord) -> Vec<BlockKey> {
    let client = record
        .identity
        .as_ref()
        .and_then(|identity| identity.client_id.clone());
    std::iter::once(BlockKey::Address(record.peer))
        .chain(client.map(BlockKey::Client))
        .collect()
}

/// Carries out a detector's actions.
struct Responder {
    blocks: Arc<BlockList>,
    metrics: Arc<Metrics>,
}

impl Responder {
    fn fire(&self, detector: &Windowed, key: &BlockKey) {
        self.metrics.record_detector_firing(detector.name);
        tracing::warn!(
            monitor.detector = detector.name,
            monitor.key.kind = key.kind(),
            monitor.key = %key.value(),
            "detector fired"
        );
        self.metrics.record_action("log", true);
        if let Some(period) = detector.actions.block {
            self.blocks.block(key.clone(), period);
            self.metrics.record_action("block", true);
            tracing::warn!(
                monitor.detector = detector.name,
                monitor.action = "block",
                monitor.key.kind = key.kind(),
                monitor.key = %key.value(),
                monitor.block.seconds = period.as_secs(),
                "blocked"
            );
        }
        // A cut-off refuses tokens by client or subject; an address has no tokens to refuse.
        if detector.actions.reauthenticate
            && matches!(key, BlockKey::Client(_) | BlockKey::Subject(_))
        {
            self.blocks.reauthenticate(key.clone(), unix_now());
            self.metrics.record_action("reauthenticate", true);
            tracing::warn!(
                monitor.detector = detector.name,
                monitor.action = "reauthenticate",
                monitor.key.kind = key.kind(),
                monitor.key = %key.value(),
                "tokens issued before now must be replaced"
            );
        }
    }
}

/// Seconds since the epoch (wall clock, compared with tokens' `iat`).
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests;
