//! `listen.event_loops`, in both modes: `per_core` (the default: one current-thread runtime per
//! core, each accepting on its own `SO_REUSEPORT` socket) and `shared` (one multi-thread
//! runtime). Requests are served on every loop, the connection cap holds for the loops
//! together, and shutdown drains requests in flight before every socket closes.

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::support::process::{run_binary, terminate};
use crate::support::{Harness, Options, eventually, within};

const GUARD: Duration = Duration::from_secs(60);

const MODES: [&str; 2] = ["per_core", "shared"];

async fn serving(loops: &str, listen_extra: &str) -> Harness {
    Harness::with(Options {
        listen_extra: format!("  event_loops: {loops}\n{listen_extra}"),
        ..Options::default()
    })
    .await
}

/// The threads of this process whose name starts with `prefix`.
fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with(prefix))
        .count()
}

#[tokio::test]
async fn every_mode_serves_public_and_token_requests_over_both_protocols() {
    let cores = std::thread::available_parallelism().unwrap().get();
    for loops in MODES {
        let harness = serving(loops, "").await;
        if loops == "per_core" {
            // Other tests may run gateways of their own: this one's loops are at least these.
            assert!(threads_named("phigate-loop-") >= cores);
        }
        let token = harness.token("user/Patient.r");
        // A connection each: with `per_core` the kernel spreads them over the loops' sockets.
        for _ in 0..4 * cores {
            assert_eq!(harness.client().get("/metadata").await.status, 200);
            let response = harness
                .h2_client()
                .get_with_token("/Patient/123", &token)
                .await;
            assert_eq!(response.status, 200);
        }
        assert_eq!(harness.upstream.received().len(), 8 * cores, "{loops}");
        // The metrics are the gateway's, whichever loop served.
        harness
            .eventually_metric("phigate_decisions_total", (8 * cores) as f64)
            .await;
        let denied = harness.client().get("/Patient/123").await;
        assert_eq!(denied.status, 401);
    }
}

// R-S04 across loops: the cap counts every loop's connections, so a third connection is
// closed at once whichever socket the kernel hands it to.
#[tokio::test]
async fn the_connection_cap_holds_for_all_loops_together() {
    for loops in MODES {
        let harness = serving(loops, "  max_connections: 2\n  handshake_timeout: 1m\n").await;
        let held = [
            TcpStream::connect(harness.addr()).await.unwrap(),
            TcpStream::connect(harness.addr()).await.unwrap(),
        ];
        // Both accepted (perhaps by different loops) before the third arrives.
        harness
            .eventually_metric("phigate_connections_open ", 2.0)
            .await;
        let mut third = TcpStream::connect(harness.addr()).await.unwrap();
        let mut read = Vec::new();
        within(GUARD, third.read_to_end(&mut read)).await.unwrap();
        assert!(read.is_empty(), "{loops}");
        let over = "phigate_connections_closed_total{reason=\"over_capacity\"}";
        harness.eventually_metric(over, 1.0).await;
        assert_eq!(harness.metric("phigate_connections_open ").await, 2.0);
        drop(held);
        harness.eventually_serves_a_new_client().await;
    }
}

#[tokio::test]
async fn shutdown_drains_a_request_in_flight_then_closes_every_socket() {
    for loops in MODES {
        let mut harness = serving(loops, "").await;
        let token = harness.token("user/Patient.r");
        harness.upstream.set_response_delay(Duration::from_secs(2));
        let addr = harness.addr();
        let client = harness.client();
        let in_flight =
            tokio::spawn(async move { client.get_with_token("/Patient/123", &token).await });
        eventually(GUARD, || async { !harness.upstream.received().is_empty() }).await;
        let shutdown = tokio::spawn(harness.gateway.take().unwrap().shutdown());
        let response = within(GUARD, in_flight).await.unwrap();
        assert_eq!(response.status, 200, "{loops}");
        // hyper's graceful close: the answer to a request in flight when draining began says so.
        assert_eq!(response.headers["connection"], "close");
        within(GUARD, shutdown).await.unwrap();
        // One socket left open would take every connection the kernel now routes to the port.
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "{loops}: a loop's socket still accepting"
        );
    }
}

// The binary, with no `event_loops` key: `run` keeps its multi-thread runtime for background
// work beside one loop per core, and SIGTERM stops them all.
#[tokio::test]
async fn the_binary_serves_per_core_by_default_and_exits_cleanly_on_sigterm() {
    let harness = Harness::start().await;
    let text = std::fs::read_to_string(&harness.config_file).unwrap();
    assert!(!text.contains("event_loops"));
    let (child, mut log, addr) = run_binary(&harness.config_file).await;
    let serving = log.line("phigate serving").await;
    assert_eq!(serving["listen.event_loops"], "per_core");
    let client = crate::support::TestClient::new(addr, &harness.ca, None, false);
    let token = harness.token("user/Patient.r");
    assert_eq!(
        client.get_with_token("/Patient/123", &token).await.status,
        200
    );
    drop(client);
    let exit = within(GUARD, terminate(child)).await;
    assert!(exit.success(), "{exit:?}");
}
