//! The tamper-evident audit trail: one JSON line per decision, allow and deny, sealed into a
//! chain keyed by the operator's audit key ([`chain`]) and written by one thread off the request
//! path ([`writer`]). Its queue is bounded, and the decision chain reserves room in it before it
//! decides anything ([`AuditGate`]): when there is none, the request is refused with
//! `audit_unavailable` unless the operator chose `when_full: serve_unaudited`. [`verify`] checks
//! a trail offline and [`export`] turns it into FHIR AuditEvents. Nothing here sees a token or a
//! query value, and nothing here prints.

pub mod chain;
mod entry;
pub mod export;
pub mod verify;
mod writer;

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};

use crate::config::{AuditConfig, WhenFull};
use crate::denial::Denial;
use crate::mac::MacKey;
use crate::record::{Capacity, DecisionRecord, Sink, Slot};
use crate::telemetry::Metrics;

use self::writer::{Queued, Writer};

/// Opens the trail (resuming its chain), starts its writer thread, and returns the gate the
/// decision chain consults and the sink that feeds the writer.
pub fn start(config: &AuditConfig, metrics: &Arc<Metrics>) -> io::Result<(AuditGate, AuditSink)> {
    let key = MacKey::new(&config.key);
    let writer = Writer::open(&config.destination, key, config.max_file_bytes)?;
    let (sender, queue) = mpsc::channel();
    let thread_metrics = Arc::clone(metrics);
    // A thread, not a task: a write that blocks (a slow disk, a pipe nobody reads) must hold up
    // only the trail, never the runtime's workers or its shutdown.
    std::thread::Builder::new()
        .name("phigate-audit".into())
        .spawn(move || writer.run(&queue, &thread_metrics))?;
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
    };
    Ok((gate, sink))
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

/// Queues each decision's record for the writer.
pub struct AuditSink {
    capacity: Capacity,
    queue: Sender<Queued>,
    writer_gone: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
}

impl Sink for AuditSink {
    fn record(&self, record: &DecisionRecord) {
        // A record without a reserved slot (refused, or served unaudited) is written when there
        // is room after all, and counted as dropped when there is not.
        let Some(slot) = record.slot.clone().or_else(|| self.capacity.reserve()) else {
            self.metrics.record_audit_dropped();
            return;
        };
        let queued = Queued {
            fields: entry::decision(record),
            slot,
        };
        if self.queue.send(queued).is_err() {
            self.writer_gone.store(true, Ordering::Relaxed);
            self.metrics.record_audit_dropped();
        }
    }
}
