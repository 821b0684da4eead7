//! The verified-token cache and what must end a cached verification: a key removed from the
//! JWKS ends it, a re-fetch for someone else's unknown `kid` does not; revocation and the monitor's
//! block list are checked after the cache on every request, so a token served from the cache
//! (a hit, counted on `/metrics`) is refused once revoked or blocked.

use jsonwebtoken::Algorithm;
use serde_json::json;

use crate::monitor::wait_metric;
use crate::support::{
    Harness, INVALID_TOKEN, Options, assert_denied, assert_no_leak, eventually_status,
};

/// `phigate_token_cache_hits_total` as `/metrics` shows it now (counted before the answer is
/// sent, so it is current once a response has arrived).
pub async fn cache_hits(harness: &Harness) -> u64 {
    let (_, metrics) = harness.admin_get("/metrics").await;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("phigate_token_cache_hits_total "))
        .map_or(0, |value| value.trim().parse().unwrap())
}

/// `GET /Patient/123` with `token`; returns the status and whether the cache answered.
async fn get(harness: &Harness, token: &str) -> (u16, bool) {
    let before = cache_hits(harness).await;
    let status = harness
        .client()
        .get_with_token("/Patient/123", token)
        .await
        .status
        .as_u16();
    (status, cache_hits(harness).await == before + 1)
}

/// A token of the dev issuer's first key naming a `kid` it has never published.
fn junk_kid_token(harness: &Harness, kid: &str) -> String {
    let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": kid});
    let claims = harness.claims("patient/Patient.r");
    harness
        .issuer
        .sign_raw("dev-es256-1", &header, &claims)
        .unwrap()
}

fn refetch_at_once() -> Options {
    Options {
        tokens: "  jwks_refetch_cooldown: 1ms\n",
        ..Options::default()
    }
}

#[tokio::test]
async fn a_junk_kid_refetch_evicts_no_cached_token() {
    let harness = Harness::with(refetch_at_once()).await;
    let token = harness.token("patient/Patient.r");
    assert_eq!(get(&harness, &token).await, (200, false));
    assert_eq!(get(&harness, &token).await, (200, true));
    for i in 0..3 {
        let fetches = harness.issuer.fetch_count();
        let junk = junk_kid_token(&harness, &format!("junk-{i}"));
        assert_eq!(get(&harness, &junk).await.0, 401);
        assert_eq!(harness.issuer.fetch_count(), fetches + 1, "refetched");
        // The key set was replaced by an equal one: the cached verification still holds.
        assert_eq!(get(&harness, &token).await, (200, true));
    }
}

#[tokio::test]
async fn removing_a_key_ends_its_tokens_and_keeps_the_other_keys_tokens_cached() {
    let harness = Harness::with(refetch_at_once()).await;
    let old = harness.token("patient/Patient.r");
    harness.issuer.add_key(Algorithm::ES256, "es2").unwrap();
    harness.issuer.set_signing_key("es2").unwrap();
    let new = harness.token("patient/Patient.r");
    for token in [&old, &new] {
        assert_eq!(get(&harness, token).await, (200, false));
        assert_eq!(get(&harness, token).await, (200, true));
    }
    // The issuer withdraws its first key; the next fetch (forced here by a junk kid) sees it.
    let junk = junk_kid_token(&harness, "junk");
    harness.issuer.remove_key("dev-es256-1").unwrap();
    assert_eq!(get(&harness, &junk).await.0, 401);
    harness.upstream.clear_received();
    let response = harness.client().get_with_token("/Patient/123", &old).await;
    assert_denied(&harness, &response, 401, Some(INVALID_TOKEN));
    assert_no_leak(&response, &[&old, "dev-es256-1"]);
    assert_eq!(get(&harness, &new).await, (200, true));
}

#[tokio::test]
async fn a_cached_token_is_refused_once_revoked() {
    let harness = Harness::with(Options {
        revocation: "revocation:\n  sources:\n    - file: revoked.json\n      interval: 500ms\n      max_stale: 10s\n".into(),
        files: vec![("revoked.json", r#"{"version": 1, "entries": []}"#.into())],
        ..Options::default()
    })
    .await;
    let claims = harness.claims("patient/Patient.r");
    let token = harness.mint(&claims);
    assert_eq!(get(&harness, &token).await, (200, false));
    assert_eq!(get(&harness, &token).await, (200, true));
    let list = json!({"version": 1, "entries": [{"jti": claims["jti"], "exp": claims["exp"]}]});
    let aside = harness.dir.path().join("revoked.json.tmp");
    std::fs::write(&aside, list.to_string()).unwrap();
    std::fs::rename(&aside, harness.dir.path().join("revoked.json")).unwrap();
    eventually_status(&harness.client(), "/Patient/123", &token, 401).await;
    // Still a cache hit, and still refused: revocation runs after the cache, every time.
    harness.upstream.clear_received();
    assert_eq!(get(&harness, &token).await, (401, true));
    let response = harness
        .client()
        .get_with_token("/Patient/123", &token)
        .await;
    assert_denied(&harness, &response, 401, Some(INVALID_TOKEN));
    assert_no_leak(&response, &[&token]);
}

#[tokio::test]
async fn a_cached_token_is_refused_once_blocked() {
    let harness = Harness::with(Options {
        extra: "monitor:\n  traffic_spike:\n    interval: 1h\n    ceiling: 2\n    actions:\n      block: 10m\n".into(),
        ..Options::default()
    })
    .await;
    let token = harness.token("patient/Patient.r");
    assert_eq!(get(&harness, &token).await, (200, false));
    assert_eq!(get(&harness, &token).await, (200, true));
    assert_eq!(get(&harness, &token).await, (200, true));
    wait_metric(
        &harness,
        "phigate_detector_firings_total{detector=\"traffic_spike\"} 3",
    )
    .await;
    // Still a cache hit, and refused: the block list runs after the cache, every time.
    harness.upstream.clear_received();
    assert_eq!(get(&harness, &token).await, (403, true));
    let response = harness
        .client()
        .get_with_token("/Patient/123", &token)
        .await;
    assert_denied(&harness, &response, 403, None);
    assert_no_leak(&response, &[&token]);
}
