//! JWKS caching, rotation, the unknown-kid single flight and limiter, fail-closed staleness, a
//! `kid` unknown while the JWKS fails, and keys below their strength floor or malformed, against
//! a real JWKS endpoint.

use std::time::Duration;

use jsonwebtoken::Algorithm;
use phigate::demo::DevIssuer;
use serde_json::json;

use crate::support::{
    Harness, INVALID_TOKEN, ISSUER, Options, assert_denied, assert_no_leak, eventually,
    eventually_status,
};

#[tokio::test]
async fn key_rotation_refetches_once_and_fails_no_request() {
    let harness = Harness::start().await;
    let client = harness.client();
    assert_eq!(
        client
            .get_with_token("/Patient/123", &harness.token("patient/Patient.r"))
            .await
            .status,
        200
    );
    let fetches = harness.issuer.fetch_count();
    harness.issuer.add_key(Algorithm::ES256, "es2").unwrap();
    harness.issuer.set_signing_key("es2").unwrap();
    let response = client
        .get_with_token("/Patient/123", &harness.token("patient/Patient.r"))
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(harness.issuer.fetch_count(), fetches + 1);
}

#[tokio::test]
async fn first_requests_with_a_new_kid_all_wait_for_one_fetch_and_succeed() {
    let harness = Harness::start().await;
    harness.issuer.add_key(Algorithm::ES256, "es2").unwrap();
    harness.issuer.set_signing_key("es2").unwrap();
    // A slow answer keeps the one fetch in flight while the other requests arrive.
    harness.issuer.set_jwks_delay(Duration::from_millis(500));
    let fetches = harness.issuer.fetch_count();
    let mut requests = Vec::new();
    for _ in 0..12 {
        let token = harness.token("patient/Patient.r");
        let client = harness.client();
        requests.push(tokio::spawn(async move {
            client
                .get_with_token("/Patient/123", &token)
                .await
                .status
                .as_u16()
        }));
    }
    for request in requests {
        assert_eq!(request.await.unwrap(), 200);
    }
    assert_eq!(
        harness.issuer.fetch_count(),
        fetches + 1,
        "one shared fetch"
    );
}

#[tokio::test]
async fn unknown_kid_refetches_are_at_most_one_per_cooldown() {
    let options = Options {
        tokens: "  jwks_refetch_cooldown: 1h
",
        ..Options::default()
    };
    let harness = Harness::with(options).await;
    let fetches = harness.issuer.fetch_count();
    let claims = harness.claims("patient/Patient.r");
    for i in 0..5 {
        let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": format!("junk-{i}")});
        let token = harness
            .issuer
            .sign_raw("dev-es256-1", &header, &claims)
            .unwrap();
        let response = harness
            .client()
            .get_with_token("/Patient/123", &token)
            .await;
        assert_denied(&harness, &response, 401, Some(INVALID_TOKEN));
    }
    assert_eq!(harness.issuer.fetch_count(), fetches + 1);
}

#[tokio::test]
async fn unknown_kid_storm_causes_at_most_one_fetch() {
    let harness = Harness::start().await;
    let fetches = harness.issuer.fetch_count();
    let claims = harness.claims("patient/Patient.r");
    let mut requests = Vec::new();
    for i in 0..40 {
        let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": format!("random-{i}")});
        let token = harness
            .issuer
            .sign_raw("dev-es256-1", &header, &claims)
            .unwrap();
        let client = harness.client();
        requests.push(tokio::spawn(async move {
            client
                .get_with_token("/Patient/123", &token)
                .await
                .status
                .as_u16()
        }));
    }
    for request in requests {
        assert_eq!(request.await.unwrap(), 401);
    }
    assert!(
        harness.issuer.fetch_count() <= fetches + 1,
        "fetches: {}",
        harness.issuer.fetch_count() - fetches
    );
    // Good traffic is unaffected by the storm.
    let response = harness
        .client()
        .get_with_token("/Patient/123", &harness.token("patient/Patient.r"))
        .await;
    assert_eq!(response.status, 200);
}

#[tokio::test]
async fn unreachable_jwks_at_start_is_503_then_recovers() {
    let issuer = DevIssuer::start("127.0.0.1:0".parse().unwrap(), ISSUER)
        .await
        .unwrap();
    issuer.set_jwks_status(503);
    let harness = Harness::with_issuer(
        Options {
            wait_ready: false,
            ..Options::default()
        },
        issuer,
    )
    .await;
    assert_eq!(harness.admin_get("/readyz").await.0, 503);
    let token = harness.token("patient/Patient.r");
    let response = harness
        .client()
        .get_with_token("/Patient/123", &token)
        .await;
    assert_denied(&harness, &response, 503, None);
    assert_eq!(response.headers["retry-after"], "5");
    assert_no_leak(&response, &[&token]);
    // Public rules do not need keys.
    assert_eq!(harness.client().get("/metadata").await.status, 200);
    harness.upstream.clear_received();
    harness.issuer.set_jwks_status(200);
    harness.wait_ready().await;
    assert_eq!(
        harness
            .client()
            .get_with_token("/Patient/123", &token)
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn keys_past_max_stale_fail_closed_and_recover() {
    let options = Options {
        tokens: "  jwks_cache_ttl: 1s\n  jwks_max_stale: 3s\n  jwks_refetch_cooldown: 1s\n",
        ..Options::default()
    };
    let harness = Harness::with(options).await;
    let token = harness.token("patient/Patient.r");
    let client = harness.client();
    assert_eq!(
        client.get_with_token("/Patient/123", &token).await.status,
        200
    );
    harness.issuer.set_jwks_status(500);
    // Within the bound the last good keys keep serving.
    assert_eq!(
        client.get_with_token("/Patient/123", &token).await.status,
        200
    );
    eventually(Duration::from_secs(15), || async {
        client.get_with_token("/Patient/123", &token).await.status == 503
    })
    .await;
    assert_eq!(harness.admin_get("/readyz").await.0, 503);
    harness.issuer.set_jwks_status(200);
    eventually(Duration::from_secs(20), || async {
        client.get_with_token("/Patient/123", &token).await.status == 200
    })
    .await;
    let (_, metrics) = harness.admin_get("/metrics").await;
    assert!(
        metrics
            .contains("phigate_jwks_fetches_total{issuer=\"https://as-a.test\",result=\"error\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("phigate_jwks_key_age_seconds"),
        "{metrics}"
    );
}

#[tokio::test]
async fn garbage_jwks_never_replaces_good_keys() {
    let options = Options {
        tokens: "  jwks_refetch_cooldown: 1ms\n",
        ..Options::default()
    };
    let harness = Harness::with(options).await;
    let token = harness.token("patient/Patient.r");
    let claims = harness.claims("patient/Patient.r");
    for body in [
        "<html>oops</html>",
        "{\"keys\":[]}",
        "{\"keys\":[{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}]}",
        "{\"keys\":",
    ] {
        harness.issuer.set_jwks_body_override(Some(body.to_owned()));
        // An unknown kid forces a refetch of the garbage.
        let header = json!({"alg": "ES256", "kid": "unknown"});
        let probe = harness
            .issuer
            .sign_raw("dev-es256-1", &header, &claims)
            .unwrap();
        let response = harness
            .client()
            .get_with_token("/Patient/123", &probe)
            .await;
        // The fetch failed, so the kid may well exist: phigate's problem, not the token's.
        assert_eq!(response.status, 503, "after {body}");
        assert!(response.headers.get("www-authenticate").is_none());
        assert_eq!(
            harness
                .client()
                .get_with_token("/Patient/123", &token)
                .await
                .status,
            200,
            "after {body}"
        );
    }
}

#[tokio::test]
async fn symmetric_and_private_jwks_entries_are_never_used() {
    let harness = Harness::start().await;
    harness
        .issuer
        .publish_raw_jwk(json!({"kty": "oct", "k": "c2VjcmV0", "kid": "sym", "alg": "HS256"}));
    let claims = harness.claims("patient/Patient.r");
    let header = base64_url(&serde_json::to_vec(&json!({"alg": "HS256", "kid": "sym"})).unwrap());
    let input = format!(
        "{header}.{}",
        base64_url(&serde_json::to_vec(&claims).unwrap())
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, b"secret");
    let token = format!(
        "{input}.{}",
        base64_url(aws_lc_rs::hmac::sign(&key, input.as_bytes()).as_ref())
    );
    let response = harness
        .client()
        .get_with_token("/Patient/123", &token)
        .await;
    assert_denied(&harness, &response, 401, Some(INVALID_TOKEN));
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

const REJECTED_METRIC: &str = "phigate_jwks_keys_rejected_total{issuer=\"https://as-a.test\"}";

/// The value of the rejected-keys counter for the test issuer, as `/metrics` shows it.
async fn rejected_count(harness: &Harness) -> Option<u64> {
    let (_, metrics) = harness.admin_get("/metrics").await;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(REJECTED_METRIC))
        .and_then(|value| value.trim().parse().ok())
}

#[tokio::test]
async fn the_rejected_keys_counter_is_zero_from_the_start() {
    let harness = Harness::start().await;
    assert_eq!(rejected_count(&harness).await, Some(0));
}

#[tokio::test]
async fn weak_keys_are_rejected_and_counted_once_while_the_good_key_keeps_working() {
    let options = Options {
        tokens: "  jwks_refetch_cooldown: 1ms\n",
        ..Options::default()
    };
    let harness = Harness::with(options).await;
    let good_x = harness.issuer.jwks()["keys"][0]["x"]
        .as_str()
        .unwrap()
        .to_owned();
    let good_y = harness.issuer.jwks()["keys"][0]["y"]
        .as_str()
        .unwrap()
        .to_owned();
    let modulus = |bytes: usize, top: u8| {
        let mut n = vec![0xc3u8; bytes];
        n[0] = top;
        n[bytes - 1] |= 1;
        base64_url(&n)
    };
    let weak = [
        json!({"kty": "RSA", "kid": "rsa-1024", "n": modulus(128, 0xc3), "e": "AQAB"}),
        // 256 bytes, top bit clear: 2047 bits.
        json!({"kty": "RSA", "kid": "rsa-2047", "n": modulus(256, 0x7f), "e": "AQAB"}),
        json!({"kty": "RSA", "kid": "rsa-e1", "n": modulus(256, 0xc3), "e": "AQ"}),
        json!({"kty": "RSA", "kid": "rsa-e-even", "n": modulus(256, 0xc3), "e": "AQAA"}),
        json!({"kty": "EC", "kid": "p521", "crv": "P-521", "x": base64_url(&[7; 66]), "y": base64_url(&[7; 66])}),
        json!({"kty": "EC", "kid": "k1", "crv": "secp256k1", "x": good_x, "y": good_y}),
        json!({"kty": "EC", "kid": "short-x", "crv": "P-256", "x": base64_url(&[7; 31]), "y": good_y}),
        json!({"kty": "EC", "kid": "p384-short", "crv": "P-384", "x": good_x, "y": good_y}),
        json!({"kty": "OKP", "kid": "ed448", "crv": "Ed448", "x": base64_url(&[7; 57])}),
        json!({"kty": "OKP", "kid": "ed-short", "crv": "Ed25519", "x": base64_url(&[7; 31])}),
    ];
    let weak_kids: Vec<String> = weak
        .iter()
        .map(|jwk| jwk["kid"].as_str().unwrap().to_owned())
        .collect();
    for jwk in weak {
        harness.issuer.publish_raw_jwk(jwk);
    }
    let claims = harness.claims("patient/Patient.r");
    let client = harness.client();
    // Each token names a rejected key (or none we know), which forces a refetch of the JWKS.
    let fetches = harness.issuer.fetch_count();
    for kid in weak_kids.iter().map(String::as_str).chain(["unknown"]) {
        let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": kid});
        let token = harness
            .issuer
            .sign_raw("dev-es256-1", &header, &claims)
            .unwrap();
        let response = client.get_with_token("/Patient/123", &token).await;
        assert_denied(&harness, &response, 401, Some(INVALID_TOKEN));
        assert_no_leak(&response, &[&token, &good_x]);
    }
    assert!(harness.issuer.fetch_count() > fetches + 1, "refetched");
    // Refetched several times, each weak entry is counted once.
    assert_eq!(rejected_count(&harness).await, Some(10));
    let response = client
        .get_with_token("/Patient/123", &harness.token("patient/Patient.r"))
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let (_, metrics) = harness.admin_get("/metrics").await;
    assert!(
        metrics.contains("phigate_jwks_keys_loaded{issuer=\"https://as-a.test\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_unknown_kid_while_the_jwks_fails_is_503_keys_unavailable_then_recovers() {
    let options = Options {
        tokens: "  jwks_refetch_cooldown: 1ms\n",
        ..Options::default()
    };
    let harness = Harness::with(options).await;
    harness.issuer.add_key(Algorithm::ES256, "es2").unwrap();
    harness.issuer.set_signing_key("es2").unwrap();
    harness.issuer.set_jwks_status(500);
    let token = harness.token("patient/Patient.r");
    let fetches = harness.issuer.fetch_count();
    let response = harness
        .client()
        .get_with_token("/Patient/123", &token)
        .await;
    // SECURITY.md 503-stale: a transient answer, never `invalid_token` for a good token.
    assert_denied(&harness, &response, 503, None);
    assert_eq!(response.headers["retry-after"], "5");
    assert_eq!(response.json()["issue"][0]["code"], "transient");
    assert_no_leak(&response, &[&token, "es2"]);
    assert!(harness.issuer.fetch_count() > fetches, "it tried");
    let (_, metrics) = harness.admin_get("/metrics").await;
    assert!(
        metrics.contains("decision=\"deny\",reason=\"keys_unavailable\"} 1"),
        "{metrics}"
    );
    harness.issuer.set_jwks_status(200);
    eventually_status(&harness.client(), "/Patient/123", &token, 200).await;
}

#[tokio::test]
async fn a_malformed_key_is_dropped_and_the_rest_of_its_set_kept() {
    let harness = Harness::start().await;
    let old = harness.token("patient/Patient.r");
    assert_eq!(
        harness
            .client()
            .get_with_token("/Patient/123", &old)
            .await
            .status,
        200
    );
    harness.issuer.add_key(Algorithm::ES256, "es2").unwrap();
    harness.issuer.set_signing_key("es2").unwrap();
    // One entry cut short under its own kid, one broken copy of the new key beside the good one,
    // and the good one listed twice.
    harness
        .issuer
        .publish_raw_jwk(json!({"kty": "EC", "crv": "P-256", "kid": "broken", "x": "not base64!"}));
    let good = harness.issuer.jwks()["keys"][1].clone();
    let mut broken = good.clone();
    broken["y"] = json!("AAAA");
    harness.issuer.publish_raw_jwk(broken);
    harness.issuer.publish_raw_jwk(good);
    let new = harness.token("patient/Patient.r");
    let client = harness.client();
    for token in [&new, &old] {
        let response = client.get_with_token("/Patient/123", token).await;
        assert_eq!(response.status, 200, "{}", response.text());
    }
    assert_eq!(rejected_count(&harness).await, Some(2));
    let (_, metrics) = harness.admin_get("/metrics").await;
    assert!(
        metrics.contains("phigate_jwks_keys_loaded{issuer=\"https://as-a.test\"} 2"),
        "{metrics}"
    );
}

// Issue #13 point 6: each refresh revalidates with `If-None-Match`; a 304 keeps the keys and
// starts their age again, so keys revalidated within `jwks_max_stale` never go stale, and a
// changed set (a new validator) is fetched whole and used.
#[tokio::test]
async fn a_304_revalidates_the_keys_and_a_changed_set_replaces_them() {
    let issuer = DevIssuer::start(([127, 0, 0, 1], 0).into(), ISSUER)
        .await
        .unwrap();
    issuer.set_cache_max_age(1);
    let harness = Harness::with_issuer(
        Options {
            tokens: "  jwks_cache_ttl: 1s\n  jwks_max_stale: 3s\n",
            ..Options::default()
        },
        issuer,
    )
    .await;
    let client = harness.client();
    let token = harness.token("patient/Patient.r");
    assert_eq!(
        client.get_with_token("/Patient/123", &token).await.status,
        200
    );
    // Five revalidations take past the staleness bound; the keys stay usable throughout.
    eventually(Duration::from_secs(20), || async {
        harness.issuer.not_modified_count() >= 5
    })
    .await;
    assert_eq!(
        client.get_with_token("/Patient/123", &token).await.status,
        200
    );
    assert_eq!(harness.admin_get("/readyz").await.0, 200);
    harness.issuer.add_key(Algorithm::ES256, "es2").unwrap();
    harness.issuer.set_signing_key("es2").unwrap();
    let rotated = harness.token("patient/Patient.r");
    eventually_status(&client, "/Patient/123", &rotated, 200).await;
    assert_eq!(
        client.get_with_token("/Patient/123", &token).await.status,
        200
    );
}
