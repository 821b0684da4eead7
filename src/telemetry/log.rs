//! Logging setup: JSON lines on stderr through `tracing`. The per-request line is written by the
//! proxy service with fields named with dots (`route.name`, `denial.reason`); nothing here ever
//! receives a token. Lines go through a bounded in-memory queue to one writer thread, so a
//! request never waits on a slow stderr reader (journald, a full pipe): when the queue is full a
//! line is dropped and counted (`phigate_log_lines_dropped_total`), never silently. The audit
//! trail, which must not lose a record, has its own writer.

use std::sync::OnceLock;

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

/// Lines waiting for the writer thread before new ones are dropped.
const QUEUED_LINES: usize = 65_536;

/// Lines dropped because the queue was full, once logging is installed.
static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Keeps the writer thread; dropping it writes out every queued line.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard(#[expect(dead_code, reason = "held for its Drop")] WorkerGuard);

/// Installs the JSON-lines subscriber; `RUST_LOG` overrides the default `info` level. `None` when
/// a subscriber was already installed (tests start several gateways in one process).
pub fn init() -> Option<LogGuard> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(QUEUED_LINES)
        .thread_name("phigate-log")
        .finish(std::io::stderr());
    let counter = writer.error_counter();
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(writer)
        .try_init()
        .ok()?;
    let _ = DROPPED.set(counter);
    Some(LogGuard(guard))
}

/// Log lines dropped so far because the writer could not keep up.
pub fn dropped_lines() -> u64 {
    DROPPED.get().map_or(0, |counter| {
        u64::try_from(counter.dropped_lines()).unwrap_or(u64::MAX)
    })
}
