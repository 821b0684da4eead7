//! The verified-token cache: a token that verified once is answered from here until it expires,
//! keyed by its SHA-256 (`TokenDigest`), never by its text. An entry holds the `VerifiedToken`
//! and the key that verified it, nothing else of the token; it lives no longer than the token
//! (`exp` plus the clock skew, as a fresh verification would accept it), counts at its measured
//! size against a bound in entries and in bytes, and holds only while the issuer still serves
//! that key (the caller asks `jwks`). Only verified tokens enter (R-M02), so an invalid token
//! never evicts a valid one. This cache never decides: what may change between requests —
//! time, revocation, introspection, blocks — the caller and the decision chain check after
//! every hit.

use std::mem::size_of;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;

use super::VerifiedToken;
use super::digest::TokenDigest;
use super::jwks::VerificationKey;
use crate::config::TokenBounds;

/// The reference counts an `Arc` allocation carries before its value.
const ARC_COUNTS: usize = 2 * size_of::<usize>();

/// One verified token and the key that verified it.
#[derive(Clone)]
pub struct CachedToken {
    /// What the verification established.
    pub token: Arc<VerifiedToken>,
    /// The key that verified the signature; shared with the key set, not copied.
    pub key: Arc<VerificationKey>,
}

impl CachedToken {
    /// The bytes this entry holds: its digest key, itself, the verified token's allocation and
    /// every string that token owns. The key and the issuer name are shared, and moka's own
    /// bookkeeping per entry is not counted.
    pub fn bytes(&self) -> usize {
        size_of::<TokenDigest>()
            + size_of::<Self>()
            + ARC_COUNTS
            + size_of::<VerifiedToken>()
            + self.token.heap_bytes()
    }
}

/// Verified tokens by digest, bounded in entries and bytes, each until its token expires.
pub struct TokenCache {
    entries: moka::sync::Cache<TokenDigest, CachedToken>,
}

impl TokenCache {
    /// A cache within `bounds.cache_max_entries` and `bounds.cache_max_bytes`.
    pub fn new(bounds: &TokenBounds) -> Self {
        let max_bytes = u64::try_from(bounds.cache_max_bytes).unwrap_or(u64::MAX);
        let floor = least_weight(bounds.cache_max_bytes, bounds.cache_max_entries);
        let entries = moka::sync::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(move |_: &TokenDigest, entry: &CachedToken| weight(entry.bytes(), floor))
            .expire_after(UntilExpiry {
                skew: seconds(bounds.clock_skew.as_secs()),
                longest: bounds.max_lifetime + Duration::from_secs(bounds.clock_skew.as_secs()),
            })
            .build();
        Self { entries }
    }

    /// The entry for `digest`, if one is held and has not expired.
    pub fn get(&self, digest: &TokenDigest) -> Option<CachedToken> {
        self.entries.get(digest)
    }

    /// Keeps `entry` until its token expires (or it is evicted or invalidated).
    pub fn insert(&self, digest: TokenDigest, entry: CachedToken) {
        self.entries.insert(digest, entry);
    }

    /// Drops the entry for `digest`.
    pub fn invalidate(&self, digest: &TokenDigest) {
        self.entries.invalidate(digest);
    }

    /// Entries and weighed bytes held, once pending evictions have run (tests).
    #[cfg(test)]
    fn settled_size(&self) -> (u64, u64) {
        self.entries.run_pending_tasks();
        (self.entries.entry_count(), self.entries.weighted_size())
    }
}

/// The weight every entry counts at least, `max_bytes / max_entries` rounded up, so that a
/// cache full of small entries holds no more than `max_entries` of them.
fn least_weight(max_bytes: usize, max_entries: usize) -> u32 {
    let floor = max_bytes.div_ceil(max_entries.max(1));
    u32::try_from(floor).unwrap_or(u32::MAX)
}

/// An entry's weight: its bytes, and at least `floor`.
fn weight(bytes: usize, floor: u32) -> u32 {
    u32::try_from(bytes).unwrap_or(u32::MAX).max(floor)
}

fn seconds(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// How long an entry may live: until its token's `exp` plus the skew, measured now on the wall
/// clock, and never longer than a token may live at all (`longest`).
fn lifetime(expires_at: i64, now: i64, skew: i64, longest: Duration) -> Duration {
    let remaining = expires_at.saturating_add(skew).saturating_sub(now);
    Duration::from_secs(u64::try_from(remaining).unwrap_or(0)).min(longest)
}

/// moka's per-entry expiry: each entry's own token lifetime, not one TTL for all.
struct UntilExpiry {
    skew: i64,
    longest: Duration,
}

impl UntilExpiry {
    fn of(&self, entry: &CachedToken) -> Duration {
        lifetime(
            entry.token.expires_at,
            super::unix_now(),
            self.skew,
            self.longest,
        )
    }
}

impl Expiry<TokenDigest, CachedToken> for UntilExpiry {
    fn expire_after_create(
        &self,
        _: &TokenDigest,
        entry: &CachedToken,
        _: Instant,
    ) -> Option<Duration> {
        Some(self.of(entry))
    }

    // A token verified again replaces its entry: the clock restarts from the token's own `exp`.
    fn expire_after_update(
        &self,
        _: &TokenDigest,
        entry: &CachedToken,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(self.of(entry))
    }
}

#[cfg(test)]
mod tests;
