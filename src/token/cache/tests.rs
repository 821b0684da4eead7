use std::sync::Arc;

use super::*;
use crate::policy::ScopeSet;
use crate::token::jwks::tests::key;
use crate::token::{ClientId, Confirmation, Jti, Subject};

const NOW: i64 = 1_800_000_000;
const FIFTEEN_MINUTES: Duration = Duration::from_secs(15 * 60 + 30);

#[track_caller]
fn check_lifetime(expires_at: i64, now: i64, expected_secs: u64) {
    assert_eq!(
        lifetime(expires_at, now, 30, FIFTEEN_MINUTES),
        Duration::from_secs(expected_secs),
        "exp {expires_at}, now {now}"
    );
}

#[test]
fn an_entry_lives_until_exp_plus_skew_and_no_longer_than_any_token() {
    check_lifetime(NOW + 300, NOW, 330);
    // Past `exp` but within the skew: what a fresh verification would still accept.
    check_lifetime(NOW - 10, NOW, 20);
    check_lifetime(NOW - 30, NOW, 0);
    check_lifetime(NOW - 3600, NOW, 0);
    // An `exp` no configured lifetime allows is capped (and was refused before caching).
    check_lifetime(NOW + 86_400, NOW, 930);
    check_lifetime(i64::MAX, NOW, 930);
    check_lifetime(i64::MIN, NOW, 0);
}

/// The SECURITY.md `GOOD` token: `sub` u-1, `client_id` app-1, a UUID `jti`, patient 123, three
/// SMART scopes, no confirmation.
fn good() -> VerifiedToken {
    VerifiedToken {
        issuer: Arc::from("https://as-a.test"),
        subject: Subject::parse("u-1"),
        client_id: ClientId::parse("app-1"),
        jti: Jti::parse("0b6c9e3e-6d1c-4a5e-9f55-2a4c7a1d9b10"),
        patient: Some("123".to_owned()),
        scopes: ScopeSet::from_claims(
            Some(&serde_json::json!(
                "launch/patient patient/Patient.r patient/Observation.rs"
            )),
            None,
        )
        .unwrap(),
        expires_at: NOW + 300,
        issued_at: Some(NOW),
        confirmation: Confirmation::None,
    }
}

fn entry(token: VerifiedToken) -> CachedToken {
    CachedToken {
        token: Arc::new(token),
        key: key("k1"),
    }
}

#[test]
fn an_entry_for_the_reference_token_is_under_400_bytes() {
    let good = entry(good());
    // 32 (digest) + 16 (entry) + 16 (Arc counts) + the token's own size, then its strings.
    assert_eq!(
        good.bytes(),
        64 + size_of::<VerifiedToken>() + good.token.heap_bytes()
    );
    assert!(good.bytes() < 400, "{} bytes", good.bytes());
    // A UUID subject, a longer client id and a DPoP key thumbprint stay near it.
    let mut bound = good.token.as_ref().clone();
    bound.subject = Subject::parse("f47ac10b-58cc-4372-a567-0e02b2c3d479");
    bound.client_id = ClientId::parse("growth-chart-app");
    bound.confirmation =
        Confirmation::DpopKey("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I".to_owned());
    let bound = entry(bound);
    assert!(bound.bytes() < 512, "{} bytes", bound.bytes());
}

fn digest(n: usize) -> TokenDigest {
    TokenDigest::of(&format!("token-{n}"))
}

fn bounds(max_entries: usize, max_bytes: usize) -> TokenBounds {
    TokenBounds {
        cache_max_entries: max_entries,
        cache_max_bytes: max_bytes,
        ..TokenBounds::default()
    }
}

#[test]
fn the_cache_is_bounded_in_entries_and_in_bytes() {
    let one = entry(good()).bytes();
    // Entries bind: small entries each count as max_bytes / max_entries.
    let cache = TokenCache::new(&bounds(10, 65_536));
    for n in 0..200 {
        cache.insert(digest(n), entry(good()));
    }
    let (entries, bytes) = cache.settled_size();
    assert!((1..=10).contains(&entries), "{entries} entries");
    assert!(bytes <= 65_536, "{bytes} bytes");
    // Bytes bind: 65 536 bytes hold only so many entries of their measured size.
    let cache = TokenCache::new(&bounds(1_000_000, 65_536));
    for n in 0..2_000 {
        cache.insert(digest(n), entry(good()));
    }
    let (entries, bytes) = cache.settled_size();
    assert!(bytes <= 65_536, "{bytes} bytes");
    assert!(
        entries <= (65_536 / one) as u64,
        "{entries} entries of {one} bytes"
    );
}

#[test]
fn an_expired_token_is_never_served_from_the_cache() {
    let cache = TokenCache::new(&TokenBounds::default());
    let mut expired = good();
    expired.expires_at = super::super::unix_now() - 3600;
    cache.insert(digest(1), entry(expired));
    cache.insert(digest(2), entry(good_now()));
    assert!(cache.get(&digest(1)).is_none());
    assert!(cache.get(&digest(2)).is_some());
    cache.invalidate(&digest(2));
    assert!(cache.get(&digest(2)).is_none());
}

fn good_now() -> VerifiedToken {
    let mut token = good();
    token.expires_at = super::super::unix_now() + 300;
    token
}

#[test]
fn weights() {
    assert_eq!(least_weight(4 * 1024 * 1024, 10_000), 420);
    assert_eq!(least_weight(65_536, 1_000_000), 1);
    assert_eq!(least_weight(65_536, 0), 65_536);
    assert_eq!(weight(380, 420), 420);
    assert_eq!(weight(1_000, 420), 1_000);
    assert_eq!(weight(usize::MAX, 1), u32::MAX);
}
