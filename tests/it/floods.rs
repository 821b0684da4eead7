//! Floods against the gateway binary: thousands of distinct tokens — valid ones that fill the
//! verified-token cache, forged ones that fail their signature — leave its memory bounded and
//! legitimate traffic served. Memory is the process's own resident set (`VmRSS`), read from
//! `/proc`, so nothing else in the test binary counts against it.

use futures_util::StreamExt;

use crate::support::{Harness, Options, TestClient, spawn_binary_gateway, stop_binary_gateway};

/// Requests of one flood in flight at once.
const CONCURRENCY: usize = 32;
/// Tokens per flood.
const FLOOD: usize = 3_000;
/// Resident-set growth the floods may cause: 2 KiB per request. A bounded cache and the
/// allocator's slack stay far under it (about 1.7 MiB measured); anything kept per request or per
/// connection — a leak, an unbounded map — crosses it.
const MAX_GROWTH_KIB: u64 = 12 * 1024;

/// The process's resident set in KiB.
fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Sends every token in `tokens` to `GET /Patient/123`, `CONCURRENCY` at a time, and returns
/// how many got `expected`.
async fn flood(client: &TestClient, tokens: Vec<String>, expected: u16) -> usize {
    futures_util::stream::iter(tokens)
        .map(|token| async move { client.get_with_token("/Patient/123", &token).await.status })
        .buffer_unordered(CONCURRENCY)
        .filter(|status| std::future::ready(status.as_u16() == expected))
        .count()
        .await
}

/// A token with a distinct `jti` whose signature no longer matches (its last byte changed).
fn forged(token: &str) -> String {
    let mut forged = token.to_owned();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    forged
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distinct_token_floods_leave_memory_bounded_and_real_traffic_served() {
    let harness = Harness::with(Options {
        tokens: "  clock_skew: 30s\n  max_lifetime: 15m\n  cache_max_entries: 500\n",
        ..Options::default()
    })
    .await;
    let (child, addr) = spawn_binary_gateway(&harness.config_file).await;
    let client = TestClient::new(addr, &harness.ca, None, false);
    let real = harness.token("user/Patient.r");
    let warm_up = vec![real.clone(); 200];
    assert_eq!(flood(&client, warm_up, 200).await, 200);
    let before = resident_kib(child.id());

    let mint = |n: usize| {
        let mut claims = harness.claims("user/Patient.r");
        claims["jti"] = format!("flood-{n}").into();
        harness.mint(&claims)
    };
    let valid: Vec<String> = (0..FLOOD).map(mint).collect();
    let forgeries: Vec<String> = (FLOOD..2 * FLOOD).map(|n| forged(&mint(n))).collect();
    assert_eq!(flood(&client, valid, 200).await, FLOOD);
    assert_eq!(flood(&client, forgeries, 401).await, FLOOD);

    let after = resident_kib(child.id());
    assert!(
        after.saturating_sub(before) < MAX_GROWTH_KIB,
        "resident set grew from {before} KiB to {after} KiB over {} tokens",
        2 * FLOOD
    );
    // The cache holds at most its bound: the first flood's tokens were evicted, and the real
    // token is still served (verified again if it was evicted too).
    let response = client.get_with_token("/Patient/123", &real).await;
    assert_eq!(response.status, 200);
    stop_binary_gateway(child).await;
}
