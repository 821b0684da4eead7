//! The tamper-evident audit trail: one JSON line per decision, allow and deny, sealed into a
//! chain keyed by the operator's audit key ([`chain`]) and written by one thread off the request
//! path ([`writer`]). Its queue is bounded, and the decision chain reserves room in it before it
//! decides anything ([`AuditGate`]): when there is none, the request is refused with
//! `audit_unavailable` unless the operator chose `when_full: serve_unaudited`. Beside the file,
//! the writer keeps the trail's [`head`], naming its newest record, so that records cut from the
//! end show too. [`verify`] checks a trail offline and [`export`] turns it into FHIR
//! AuditEvents. Nothing here sees a token or a query value, and nothing here prints.

pub mod chain;
mod entry;
pub mod export;
pub mod head;
mod resume;
pub mod verify;
mod writer;

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::config::{AuditConfig, WhenFull};
use crate::denial::Denial;
use crate::geoip::GeoIp;
use crate::mac::MacKey;
use crate::record::{ActionRecord, ActionSink, Capacity, DecisionRecord, Sink, Slot};
use crate::telemetry::Metrics;

pub use self::entry::{Restart, RestartReason};
use self::writer::{Queued, Writer};

/// A running trail: the gate the decision chain consults, the sink that feeds the writer, and
/// the signal that the writer has written everything it was sent.
pub struct Trail {
    /// For `Pipeline::with_audit`.
    pub gate: AuditGate,
    /// For the gateway's sinks.
    pub sink: AuditSink,
    /// Resolves once the writer has stopped (every sink gone and the queue written).
    pub finished: WriterFinished,
}

/// Resolves once the writer thread has stopped.
pub struct WriterFinished(oneshot::Receiver<()>);

impl WriterFinished {
    /// Waits up to `limit` for the writer to write what is queued and stop; false if it did
    /// not (a write that blocks), so the caller can say records may be lost.
    pub async fn wait(self, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.0).await.is_ok()
    }
}

/// Opens the trail (resuming its chain) and starts its writer thread.
pub fn start(
    config: &AuditConfig,
    metrics: &Arc<Metrics>,
    geoip: Option<Arc<GeoIp>>,
) -> io::Result<Trail> {
    let key = MacKey::new(&config.key);
    let writer = Writer::open(&config.destination, key, config.max_file_bytes)?;
    let (sender, queue) = mpsc::channel();
    let thread_metrics = Arc::clone(metrics);
    let (finished, finished_rx) = oneshot::channel();
    // A thread, not a task: a write that blocks (a slow disk, a pipe nobody reads) must hold up
    // only the trail, never the runtime's workers or its shutdown.
    std::thread::Builder::new()
        .name("phigate-audit".into())
        .spawn(move || {
            // Dropped when the thread ends, however it ends: that is the signal.
            let _finished = finished;
            writer.run(&queue, &thread_metrics);
        })?;
    let capacity = Capacity::new(config.queue, metrics.audit_queue_depth());
    let writer_gone = Arc::new(AtomicBool::new(false));
    let gate = AuditGate {
        capacity: capacity.clone(),
        when_full: config.when_full,
        writer_gone: Arc::clone(&writer_gone),
        metrics: Arc::clone(metrics),
    };
    let sink = AuditSink {
        capacity,
        queue: sender,
        writer_gone,
        metrics: Arc::clone(metrics),
        geoip,
    };
    Ok(Trail {
        gate,
        sink,
        finished: WriterFinished(finished_rx),
    })
}

/// The decision chain's view of the trail: room for one more record, or a refusal.
pub struct AuditGate {
    capacity: Capacity,
    when_full: WhenFull,
    writer_gone: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
}

impl AuditGate {
    /// A slot for this request's record; when the queue is full, `audit_unavailable`, or
    /// (`serve_unaudited`) no slot.
    pub fn admit(&self) -> Result<Option<Slot>, Denial> {
        // A writer that is gone frees every slot at once: room alone proves nothing then.
        let alive = !self.writer_gone.load(Ordering::Relaxed);
        if let Some(slot) = self.capacity.reserve().filter(|_| alive) {
            return Ok(Some(slot));
        }
        match self.when_full {
            WhenFull::Refuse => {
                self.metrics.record_audit_refused();
                Err(Denial::AuditUnavailable)
            }
            WhenFull::ServeUnaudited => Ok(None),
        }
    }
}

/// Queues each decision's record for the writer, and the monitor's actions.
#[derive(Clone)]
pub struct AuditSink {
    capacity: Capacity,
    queue: Sender<Queued>,
    writer_gone: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    geoip: Option<Arc<GeoIp>>,
}

impl Sink for AuditSink {
    fn record(&self, record: &DecisionRecord) {
        // A record without a reserved slot (refused, or served unaudited) is written when there
        // is room after all, and counted as dropped when there is not.
        let Some(slot) = record.slot.clone().or_else(|| self.capacity.reserve()) else {
            self.metrics.record_audit_dropped();
            return;
        };
        // P-01: the TCP peer's address, never a forwarded-for header.
        let country = self.geoip.as_ref().and_then(|g| g.country(record.peer));
        self.queue(entry::decision(record, country.as_deref()), slot);
    }
}

impl ActionSink for AuditSink {
    /// Dropped and counted when the queue has no room.
    fn action(&self, action: &ActionRecord<'_>) {
        let Some(slot) = self.capacity.reserve() else {
            self.metrics.record_audit_dropped();
            return;
        };
        self.queue(entry::action(action), slot);
    }
}

impl AuditSink {
    fn queue(&self, fields: String, slot: Slot) {
        if self.queue.send(Queued { fields, slot }).is_err() {
            self.writer_gone.store(true, Ordering::Relaxed);
            self.metrics.record_audit_dropped();
        }
    }
}
