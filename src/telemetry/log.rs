//! Logging setup: JSON lines on stderr through `tracing`. The per-request line is written by the
//! proxy service with fields named with dots (`route.name`, `denial.reason`); nothing here ever
//! receives a token.

use tracing_subscriber::EnvFilter;

/// Installs the JSON-lines subscriber; `RUST_LOG` overrides the default `info` level.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // A second init (tests start several gateways in one process) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
