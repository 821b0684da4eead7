//! Logging setup: JSON lines on stderr through `tracing`. The per-request line is written by the
//! proxy service with fields named with dots (`route.name`, `denial.reason`); nothing here ever
//! receives a token. The audit trail, which must not lose a record, has its own writer.
//!
//! Lines are appended to a bounded in-memory batch that one writer thread empties with a single
//! `write` every [`FLUSH_INTERVAL`], or sooner once the batch passes [`WAKE_BYTES`]. A request
//! therefore never waits on a slow stderr reader (journald, a full pipe), and — unlike a queue
//! that hands each line to the writer — it does not wake another thread per line: on the load
//! run that wake-up cost more than a tenth of the throughput. When the batch is full a line is
//! dropped and counted (`phigate_log_lines_dropped_total`), never silently.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// How long a line may wait in the batch: short enough that `journalctl -f` reads as live.
const FLUSH_INTERVAL: Duration = Duration::from_millis(20);
/// A batch this large wakes the writer at once instead of at the next interval.
const WAKE_BYTES: usize = 256 * 1024;
/// Bytes waiting for the writer before new lines are dropped (some 60 000 request lines).
const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;

/// The installed subscriber's batch, whose drop count the metrics read.
static INSTALLED: OnceLock<Arc<Batch>> = OnceLock::new();

/// Keeps the writer thread; dropping it writes out every batched line.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard(#[expect(dead_code, reason = "held for its Drop")] BatchWriter);

/// Installs the JSON-lines subscriber; `RUST_LOG` overrides the default `info` level. `None` when
/// a subscriber was already installed (tests start several gateways in one process).
pub fn init() -> Option<LogGuard> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let writer = BatchWriter::start(std::io::stderr(), MAX_BATCH_BYTES);
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(writer.sink())
        .try_init()
        .ok()?;
    let _ = INSTALLED.set(Arc::clone(&writer.batch));
    Some(LogGuard(writer))
}

/// Log lines dropped so far because the writer could not keep up.
pub fn dropped_lines() -> u64 {
    INSTALLED
        .get()
        .map_or(0, |batch| batch.dropped.load(Ordering::Relaxed))
}

/// Lines waiting for the writer thread, shared with every [`LineSink`].
struct Batch {
    bytes: Mutex<Vec<u8>>,
    /// Signalled when the batch passes [`WAKE_BYTES`] or the writer should stop.
    ready: Condvar,
    capacity: usize,
    dropped: AtomicU64,
    stopping: AtomicBool,
}

impl Batch {
    fn new(capacity: usize) -> Self {
        Self {
            bytes: Mutex::new(Vec::new()),
            ready: Condvar::new(),
            capacity,
            dropped: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
        }
    }

    /// Appends one whole line, or drops it when it does not fit.
    fn push(&self, line: &[u8]) {
        let mut bytes = self.bytes.lock().unwrap_or_else(PoisonError::into_inner);
        if bytes.len() + line.len() > self.capacity {
            drop(bytes);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let before = bytes.len();
        bytes.extend_from_slice(line);
        let crossed = before < WAKE_BYTES && bytes.len() >= WAKE_BYTES;
        drop(bytes);
        if crossed {
            self.ready.notify_one();
        }
    }
}

/// The writer thread and its batch.
struct BatchWriter {
    batch: Arc<Batch>,
    thread: Option<JoinHandle<()>>,
}

impl BatchWriter {
    fn start<W: Write + Send + 'static>(mut out: W, capacity: usize) -> Self {
        let batch = Arc::new(Batch::new(capacity));
        let shared = Arc::clone(&batch);
        let thread = std::thread::Builder::new()
            .name("phigate-log".into())
            .spawn(move || {
                // Swapped with the batch, so neither buffer is reallocated once warm.
                let mut spare = Vec::new();
                loop {
                    let stopping = {
                        let bytes = shared.bytes.lock().unwrap_or_else(PoisonError::into_inner);
                        let (mut bytes, _) = shared
                            .ready
                            .wait_timeout(bytes, FLUSH_INTERVAL)
                            .unwrap_or_else(PoisonError::into_inner);
                        std::mem::swap(&mut *bytes, &mut spare);
                        shared.stopping.load(Ordering::Acquire)
                    };
                    if !spare.is_empty() {
                        // Nowhere to report a failed stderr write; the lines are lost either way.
                        let _ = out.write_all(&spare).and_then(|()| out.flush());
                        spare.clear();
                    }
                    if stopping {
                        return;
                    }
                }
            })
            .ok();
        if thread.is_none() {
            // Without a writer thread nothing would ever empty the batch: refuse every line.
            batch.stopping.store(true, Ordering::Release);
        }
        Self { batch, thread }
    }

    fn sink(&self) -> LineSinks {
        LineSinks(Arc::clone(&self.batch))
    }
}

impl Drop for BatchWriter {
    fn drop(&mut self) {
        self.batch.stopping.store(true, Ordering::Release);
        self.batch.ready.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Hands `tracing` a [`LineSink`] per event.
#[derive(Clone)]
struct LineSinks(Arc<Batch>);

impl<'a> MakeWriter<'a> for LineSinks {
    type Writer = LineSink<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineSink(&self.0)
    }
}

/// `tracing_subscriber::fmt` formats a whole event first and writes it with one `write_all`, so
/// each `write` here is one complete line and is kept or dropped whole.
struct LineSink<'a>(&'a Batch);

impl Write for LineSink<'_> {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        if self.0.stopping.load(Ordering::Acquire) {
            self.0.dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            self.0.push(line);
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output the test can read back while the writer holds its other handle.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn write_line(sinks: &LineSinks, line: &str) {
        sinks.make_writer().write_all(line.as_bytes()).unwrap();
    }

    #[test]
    fn lines_reach_the_output_in_order_within_the_flush_interval() {
        let out = Captured::default();
        let writer = BatchWriter::start(out.clone(), 1024);
        let sinks = writer.sink();
        write_line(&sinks, "one\n");
        write_line(&sinks, "two\n");
        for _ in 0..100 {
            if out.text() == "one\ntwo\n" {
                break;
            }
            std::thread::sleep(FLUSH_INTERVAL);
        }
        assert_eq!(out.text(), "one\ntwo\n");
        assert_eq!(writer.batch.dropped.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_full_batch_drops_whole_lines_and_counts_them() {
        let batch = Batch::new(10);
        batch.push(b"12345\n");
        batch.push(b"67890\n");
        batch.push(b"x\n");
        assert_eq!(&*batch.bytes.lock().unwrap(), b"12345\nx\n");
        assert_eq!(batch.dropped.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn lines_written_after_the_writer_stopped_are_counted_as_dropped() {
        let writer = BatchWriter::start(Captured::default(), 1024);
        let batch = Arc::clone(&writer.batch);
        let sinks = writer.sink();
        drop(writer);
        write_line(&sinks, "late\n");
        assert_eq!(batch.dropped.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn stopping_writes_out_every_batched_line() {
        let out = Captured::default();
        let writer = BatchWriter::start(out.clone(), 1 << 20);
        let sinks = writer.sink();
        for n in 0..1000 {
            write_line(&sinks, &format!("{n}\n"));
        }
        drop(sinks);
        drop(writer);
        assert_eq!(out.text().lines().count(), 1000);
    }
}
