//! DPoP proof replay detection (RFC 9449 §11.1): a proof's `jti` is accepted once per proof
//! key within the proof window. Always remembered locally; with Redis configured, also shared,
//! so a proof replayed to another replica is refused too. If the shared store cannot answer,
//! the proof is refused (503): a replay phigate cannot rule out is not accepted. A store that
//! keeps failing trips a circuit breaker, so requests are refused at once rather than each
//! waiting out the Redis timeout.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use redis::aio::ConnectionManager;
use tokio::sync::OnceCell;

use crate::breaker::Breaker;
use crate::config::RedisEndpoint;
use crate::jose::sha256;

/// Proofs remembered locally at once (RFC 9449 §11.1: bounded; eviction is logged by moka's
/// own policy, the window keeps entries short-lived).
const LOCAL_CAPACITY: u64 = 1_000_000;
/// Bound on one Redis round trip.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether a proof is new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofUse {
    /// First time this proof is seen.
    First,
    /// Seen before: a replay.
    Replay,
    /// The shared store did not answer.
    Unknown,
}

/// Remembers proofs for the window.
pub struct ReplayCache {
    local: moka::sync::Cache<[u8; 32], ()>,
    redis: Option<(redis::Client, OnceCell<ConnectionManager>)>,
    window: Duration,
    breaker: Breaker,
}

impl ReplayCache {
    /// A cache for proofs valid for `window`, shared through `redis` when given; `circuit` is
    /// the shared store's breaker gauge.
    pub fn new(
        window: Duration,
        redis: Option<&RedisEndpoint>,
        circuit: prometheus_client::metrics::gauge::Gauge,
    ) -> Result<Self, redis::RedisError> {
        Self::with_local_capacity(LOCAL_CAPACITY, window, redis, circuit)
    }

    /// [`Self::new`] with the local memory bounded at `capacity` proofs.
    fn with_local_capacity(
        capacity: u64,
        window: Duration,
        redis: Option<&RedisEndpoint>,
        circuit: prometheus_client::metrics::gauge::Gauge,
    ) -> Result<Self, redis::RedisError> {
        let redis = redis
            .map(RedisEndpoint::client)
            .transpose()?
            .map(|client| (client, OnceCell::new()));
        // LRU: every new proof is remembered even when the cache is full (moka's default
        // admission could turn it away, and the same proof would then pass a second time).
        let local = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .eviction_policy(moka::policy::EvictionPolicy::lru())
            .time_to_live(window)
            .build();
        Ok(Self {
            local,
            redis,
            window,
            breaker: Breaker::new("dpop_replay_store", circuit),
        })
    }

    /// Records the proof `(jkt, jti)` and says whether it was new.
    pub async fn record(&self, jkt: &str, jti: &str) -> ProofUse {
        let key = sha256(format!("{jkt}\n{jti}").as_bytes());
        let fresh_here = self.local.entry(key).or_insert(()).is_fresh();
        if !fresh_here {
            return ProofUse::Replay;
        }
        let Some((client, connection)) = &self.redis else {
            return ProofUse::First;
        };
        let Some(pass) = self.breaker.pass() else {
            return ProofUse::Unknown;
        };
        let shared = tokio::time::timeout(REDIS_TIMEOUT, async {
            let connection = connection
                .get_or_try_init(|| ConnectionManager::new(client.clone()))
                .await?;
            let mut connection = connection.clone();
            let set: Option<String> = redis::cmd("SET")
                .arg(format!("phigate:dpop:{}", URL_SAFE_NO_PAD.encode(key)))
                .arg(1)
                .arg("NX")
                .arg("EX")
                .arg(self.window.as_secs().max(1))
                .query_async(&mut connection)
                .await?;
            Ok::<_, redis::RedisError>(set.is_some())
        })
        .await;
        pass.settle(matches!(shared, Ok(Ok(_))));
        match shared {
            Ok(Ok(true)) => ProofUse::First,
            Ok(Ok(false)) => ProofUse::Replay,
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "DPoP replay store unavailable");
                ProofUse::Unknown
            }
            Err(_) => ProofUse::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(60);

    fn local_only(capacity: u64) -> ReplayCache {
        ReplayCache::with_local_capacity(capacity, WINDOW, None, Default::default()).unwrap()
    }

    #[tokio::test]
    async fn a_proof_is_first_once_then_a_replay_and_keys_do_not_share_jtis() {
        let cache = local_only(100);
        assert_eq!(cache.record("key-a", "jti-1").await, ProofUse::First);
        assert_eq!(cache.record("key-a", "jti-1").await, ProofUse::Replay);
        assert_eq!(cache.record("key-b", "jti-1").await, ProofUse::First);
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_eq!(cache.record("ab", "c").await, ProofUse::First);
        assert_eq!(cache.record("a", "bc").await, ProofUse::First);
    }

    /// A full cache still remembers every new proof, so the newest proof can never pass
    /// twice however many came before it (an admission policy that turned new entries away
    /// while full would let exactly the latest replay through).
    #[tokio::test]
    async fn a_full_cache_still_refuses_the_newest_proof_replayed() {
        let cache = local_only(50);
        for n in 0..2_000 {
            let jti = format!("jti-{n}");
            assert_eq!(cache.record("key", &jti).await, ProofUse::First, "{n}");
            cache.local.run_pending_tasks();
            assert_eq!(cache.record("key", &jti).await, ProofUse::Replay, "{n}");
        }
        cache.local.run_pending_tasks();
        assert!(
            cache.local.entry_count() <= 50,
            "{}",
            cache.local.entry_count()
        );
    }
}
