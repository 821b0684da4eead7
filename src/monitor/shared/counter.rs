//! Detector counts shared by every replica through Redis, under their own prefix
//! (`<prefix>-counts`) so that reconciling blocks never reads a count. Every call is one
//! bounded round trip; an error goes back to the detector, which then counts in its process.
//! A windowed or distinct count answers whether this replica's event reached the threshold,
//! since only Redis's atomic step knows which replica did; request rates come back as counts,
//! for `rate.rs` to judge as it judges its own. Countries are a set per key and sightings one
//! value per key, each swapped atomically so exactly one replica learns what is new.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::timed;
use crate::monitor::BlockKey;
use crate::monitor::geo::Novelty;
use crate::monitor::travel::Sighting;

/// Counts shared by every replica.
pub struct SharedCounter {
    client: redis::Client,
    prefix: String,
    connection: tokio::sync::OnceCell<redis::aio::ConnectionManager>,
}

impl SharedCounter {
    /// Counts kept under `prefix` on `client`'s Redis (connected on first use).
    pub(super) fn new(client: redis::Client, prefix: String) -> Self {
        Self {
            client,
            prefix,
            connection: tokio::sync::OnceCell::new(),
        }
    }

    /// Counts one event for `key` under `detector`; true when it reaches `threshold`. One
    /// counter per detector and key, created with the window as its expiry and incremented by
    /// each replica (a fixed window, where the local count slides): the replica whose
    /// increment reaches the threshold fires, so a threshold crossed across replicas fires
    /// exactly once per window.
    pub async fn hit(
        &self,
        detector: &str,
        key: &BlockKey,
        window: Duration,
        threshold: u32,
    ) -> Result<bool, redis::RedisError> {
        let mut connection = self.connection().await?;
        let name = format!(
            "{}:count:{detector}:{}:{}",
            self.prefix,
            key.kind(),
            key.value()
        );
        let (count,): (u64,) = timed(
            redis::pipe()
                .cmd("SET")
                .arg(&name)
                .arg(0)
                .arg("PX")
                .arg(millis(window))
                .arg("NX")
                .ignore()
                .incr(&name, 1)
                .query_async(&mut connection),
        )
        .await?;
        Ok(count == u64::from(threshold))
    }

    /// Counts one request for `key` in the interval that `at` falls in, and returns that
    /// interval's count so far with the counts of the `history` intervals before it, oldest
    /// first (`None` where no replica counted a request). Intervals are numbered from the epoch,
    /// so every replica counts into the same bucket (`rate:<kind>:<value>:<number>`); a bucket
    /// expires `history + 2` intervals after its last request, once no baseline reads it.
    pub async fn rate(
        &self,
        key: &BlockKey,
        interval: Duration,
        at: SystemTime,
        history: u32,
    ) -> Result<(u64, Vec<Option<u64>>), redis::RedisError> {
        let mut connection = self.connection().await?;
        let length = millis(interval);
        let since_epoch = at.duration_since(UNIX_EPOCH).unwrap_or_default();
        let number = u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX) / length;
        let bucket = |number: u64| {
            format!(
                "{}:rate:{}:{}:{number}",
                self.prefix,
                key.kind(),
                key.value()
            )
        };
        let closed: Vec<String> = (number.saturating_sub(u64::from(history))..number)
            .map(bucket)
            .collect();
        let current = bucket(number);
        let expiry = length.saturating_mul(u64::from(history) + 2);
        let mut pipe = redis::pipe();
        pipe.incr(&current, 1)
            .cmd("PEXPIRE")
            .arg(&current)
            .arg(expiry)
            .ignore();
        // Only an interval longer than the time since the epoch has no interval before it.
        if closed.is_empty() {
            let (count,): (u64,) = timed(pipe.query_async(&mut connection)).await?;
            return Ok((count, Vec::new()));
        }
        timed(pipe.cmd("MGET").arg(&closed).query_async(&mut connection)).await
    }

    /// Notes that `key` touched `value`; true when that makes `threshold` distinct values in
    /// the key's window. One set per key (`distinct:<kind>:<value>`), updated by [`DISTINCT`]
    /// in one atomic step, so exactly one replica fires.
    pub async fn distinct(
        &self,
        key: &BlockKey,
        value: &str,
        window: Duration,
        threshold: u32,
    ) -> Result<bool, redis::RedisError> {
        let mut connection = self.connection().await?;
        let name = format!("{}:distinct:{}:{}", self.prefix, key.kind(), key.value());
        let fired: i64 = timed(
            redis::cmd("EVAL")
                .arg(DISTINCT)
                .arg(1)
                .arg(&name)
                .arg(value)
                .arg(millis(window))
                .arg(threshold)
                .query_async(&mut connection),
        )
        .await?;
        Ok(fired == 1)
    }

    /// Adds `country` to the countries `key` was seen from, kept for `memory` after the last.
    /// The replica whose addition is new learns so, so a country fires once across replicas.
    pub async fn country(
        &self,
        key: &BlockKey,
        country: &str,
        memory: Duration,
    ) -> Result<Novelty, redis::RedisError> {
        let mut connection = self.connection().await?;
        let name = format!("{}:countries:{}:{}", self.prefix, key.kind(), key.value());
        let (added, known): (u64, u64) = timed(
            redis::pipe()
                .sadd(&name, country)
                .scard(&name)
                .pexpire(&name, i64::try_from(millis(memory)).unwrap_or(i64::MAX))
                .ignore()
                .query_async(&mut connection),
        )
        .await?;
        Ok(Novelty {
            new: added == 1,
            first: known <= 1,
        })
    }

    /// Stores `sighting` as `key`'s last, kept for `memory`, and returns the one it replaces.
    pub async fn swap_sighting(
        &self,
        key: &BlockKey,
        sighting: Sighting,
        memory: Duration,
    ) -> Result<Option<Sighting>, redis::RedisError> {
        let mut connection = self.connection().await?;
        let name = format!("{}:sighting:{}:{}", self.prefix, key.kind(), key.value());
        let previous: Option<String> = timed(
            redis::cmd("SET")
                .arg(name)
                .arg(sighting.encode())
                .arg("GET")
                .arg("PX")
                .arg(millis(memory))
                .query_async(&mut connection),
        )
        .await?;
        Ok(previous.as_deref().and_then(Sighting::decode))
    }

    async fn connection(&self) -> Result<redis::aio::ConnectionManager, redis::RedisError> {
        let connection = timed(
            self.connection
                .get_or_try_init(|| redis::aio::ConnectionManager::new(self.client.clone())),
        )
        .await?;
        Ok(connection.clone())
    }
}

/// Adds `ARGV[1]` to the set `KEYS[1]`; at `ARGV[3]` members, empties it and answers 1. A new
/// set (a window opening) expires after `ARGV[2]` ms, so its window ends then whatever is added
/// later; firing empties it, so the next value opens the next window, as `DistinctWatch` does.
/// The set never holds `ARGV[3]` members at rest, and never one older than its window.
const DISTINCT: &str = "
redis.call('SADD', KEYS[1], ARGV[1])
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  redis.call('DEL', KEYS[1])
  return 1
end
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

/// A Redis expiry in milliseconds, at least one.
pub(super) fn millis(period: Duration) -> u64 {
    u64::try_from(period.as_millis()).unwrap_or(u64::MAX).max(1)
}
