//! Blocks and cut-offs shared by every replica through Redis. Each one the monitor makes is
//! written as its own key (`<prefix>:<block|cutoff>:<kind>:<value>`, expiring with it) and
//! published on `<prefix>:blocks`; every replica subscribes first, then reads every key
//! (reconcile), applies messages as they arrive, and reconciles again on an interval to repair
//! anything a lost connection missed. A replica that cannot reach Redis keeps enforcing what it
//! has; its own blocks still apply locally at once.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::AsyncCommands;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::blocklist::{BlockKey, BlockList};
use super::geo::Novelty;
use super::travel::Sighting;
use crate::backoff::Backoff;
use crate::token::{ClientId, Jti, Subject};

/// Bound on one Redis round trip.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How often every replica re-reads all shared entries.
const RECONCILE_INTERVAL: Duration = Duration::from_secs(10);
/// Updates waiting to be written before new ones are dropped (they still apply locally).
const QUEUE: usize = 1_000;

/// One block or cut-off, as it travels between replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// Block `key` for the period.
    Block(BlockKey, Duration),
    /// Refuse `key`'s tokens issued before the cut-off (seconds since the epoch).
    Cutoff(BlockKey, i64),
}

impl Update {
    fn encode(&self) -> String {
        match self {
            Self::Block(key, period) => json!({
                "type": "block", "kind": key.kind(), "value": key.value(),
                "ms": u64::try_from(period.as_millis()).unwrap_or(u64::MAX),
            }),
            Self::Cutoff(key, cutoff) => json!({
                "type": "cutoff", "kind": key.kind(), "value": key.value(), "cutoff": cutoff,
            }),
        }
        .to_string()
    }

    fn decode(text: &[u8]) -> Option<Self> {
        let value: Value = crate::strict_json::parse(text).ok()?;
        let text = |name: &str| value.get(name).and_then(Value::as_str);
        let key = decode_key(text("kind")?, text("value")?)?;
        match text("type")? {
            "block" => Some(Self::Block(
                key,
                Duration::from_millis(value.get("ms")?.as_u64()?),
            )),
            "cutoff" => Some(Self::Cutoff(key, value.get("cutoff")?.as_i64()?)),
            _ => None,
        }
    }

    fn redis_key(&self, prefix: &str) -> String {
        let (kind, key) = match self {
            Self::Block(key, _) => ("block", key),
            Self::Cutoff(key, _) => ("cutoff", key),
        };
        format!("{prefix}:{kind}:{}:{}", key.kind(), key.value())
    }

    /// Writes the update into this replica's block list.
    pub fn apply(self, blocks: &BlockList) {
        match self {
            Self::Block(key, period) => blocks.block(key, period),
            Self::Cutoff(key, cutoff) => blocks.reauthenticate(key, cutoff),
        }
    }
}

fn decode_key(kind: &str, value: &str) -> Option<BlockKey> {
    match kind {
        "address" => value.parse::<IpAddr>().ok().map(BlockKey::Address),
        "client" => ClientId::parse(value).map(BlockKey::Client),
        "subject" => Subject::parse(value).map(BlockKey::Subject),
        "token" => Jti::parse(value).map(BlockKey::Token),
        _ => None,
    }
}

/// Where the monitor's actions hand updates for the other replicas.
#[derive(Clone)]
pub struct Publisher(mpsc::Sender<Update>);

impl Publisher {
    /// Queues `update` for Redis; when the queue is full it stays local to this replica.
    pub fn publish(&self, update: Update) {
        if self.0.try_send(update).is_err() {
            tracing::warn!("shared block queue full; the block applies to this replica only");
        }
    }
}

/// Detector state shared by every replica, so abuse spread over replicas is judged as if it hit
/// one. Failure counts are one Redis counter per detector and key, created with the window as
/// its expiry and incremented by each replica (a fixed window, where the local count slides):
/// the replica whose increment reaches the threshold fires, so a threshold crossed across
/// replicas fires exactly once per window. Countries are a set per key and sightings one value
/// per key, each swapped atomically so exactly one replica learns what is new.
pub struct SharedCounter {
    client: redis::Client,
    prefix: String,
    connection: tokio::sync::OnceCell<redis::aio::ConnectionManager>,
}

impl SharedCounter {
    /// Counts one event for `key` under `detector`; true when it reaches `threshold`.
    pub async fn hit(
        &self,
        detector: &str,
        key: &BlockKey,
        window: Duration,
        threshold: u32,
    ) -> Result<bool, redis::RedisError> {
        let mut connection = self.connection().await?;
        let name = self.name(&format!("count:{detector}"), key);
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

    /// Adds `country` to the countries `key` was seen from, kept for `memory` after the last.
    /// The replica whose addition is new learns so, so a country fires once across replicas.
    pub async fn country(
        &self,
        key: &BlockKey,
        country: &str,
        memory: Duration,
    ) -> Result<Novelty, redis::RedisError> {
        let mut connection = self.connection().await?;
        let name = self.name("countries", key);
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
        let previous: Option<String> = timed(
            redis::cmd("SET")
                .arg(self.name("sighting", key))
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

    fn name(&self, what: &str, key: &BlockKey) -> String {
        format!("{}:{what}:{}:{}", self.prefix, key.kind(), key.value())
    }
}

/// A period in whole milliseconds, at least one (Redis refuses a zero expiry).
fn millis(period: Duration) -> u64 {
    u64::try_from(period.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// The Redis side of the block list, checked before the gateway serves.
pub struct SharedBlocks {
    client: redis::Client,
    prefix: String,
    /// How long a cut-off is kept (the longest token lifetime).
    cutoff_ttl: Duration,
}

impl SharedBlocks {
    /// A client for `url` (not yet connected).
    pub fn new(url: &str, prefix: &str, cutoff_ttl: Duration) -> Result<Self, redis::RedisError> {
        Ok(Self {
            client: redis::Client::open(url)?,
            prefix: prefix.to_owned(),
            cutoff_ttl,
        })
    }

    /// Failure counts on the same Redis.
    pub fn counter(&self) -> SharedCounter {
        SharedCounter {
            client: self.client.clone(),
            // Under its own prefix, so reconcile never reads a count as a block.
            prefix: format!("{}-counts", self.prefix),
            connection: tokio::sync::OnceCell::new(),
        }
    }

    /// Starts the writer and the subscriber, which apply what other replicas share to `blocks`.
    pub fn spawn(self, blocks: Arc<BlockList>) -> (Publisher, Vec<JoinHandle<()>>) {
        let (sender, updates) = mpsc::channel(QUEUE);
        let shared = Arc::new(self);
        let writer = tokio::spawn(Arc::clone(&shared).write_all(updates));
        let reader = tokio::spawn(shared.follow(blocks));
        (Publisher(sender), vec![writer, reader])
    }

    fn channel(&self) -> String {
        format!("{}:blocks", self.prefix)
    }

    async fn write_all(self: Arc<Self>, mut updates: mpsc::Receiver<Update>) {
        let mut connection = None;
        while let Some(update) = updates.recv().await {
            if connection.is_none() {
                connection = timed(redis::aio::ConnectionManager::new(self.client.clone()))
                    .await
                    .map_err(|err| tracing::warn!(error = %err, "monitor Redis unreachable"))
                    .ok();
            }
            let Some(redis) = connection.as_mut() else {
                continue;
            };
            let ttl = match &update {
                Update::Block(_, period) => *period,
                Update::Cutoff(..) => self.cutoff_ttl,
            };
            let payload = update.encode();
            let written = timed(
                redis::pipe()
                    .set(update.redis_key(&self.prefix), &payload)
                    .arg("PX")
                    .arg(millis(ttl))
                    .ignore()
                    .publish(self.channel(), &payload)
                    .ignore()
                    .query_async::<()>(redis),
            )
            .await;
            if let Err(err) = written {
                tracing::warn!(error = %err, "block not shared through Redis");
            }
        }
    }

    async fn follow(self: Arc<Self>, blocks: Arc<BlockList>) {
        let mut backoff = Backoff::default();
        loop {
            if let Err(err) = self.session(&blocks, &mut backoff).await {
                tracing::warn!(error = %err, "monitor Redis subscription lost; retrying");
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    /// Subscribes, then reconciles, then applies messages until the connection fails.
    async fn session(
        &self,
        blocks: &BlockList,
        backoff: &mut Backoff,
    ) -> Result<(), redis::RedisError> {
        let mut pubsub = timed(self.client.get_async_pubsub()).await?;
        timed(pubsub.subscribe(self.channel())).await?;
        let mut connection = timed(self.client.get_multiplexed_async_connection()).await?;
        self.reconcile(&mut connection, blocks).await?;
        backoff.connected();
        let mut messages = pubsub.on_message();
        let mut ticker = tokio::time::interval(RECONCILE_INTERVAL);
        ticker.tick().await;
        loop {
            tokio::select! {
                message = messages.next() => {
                    let Some(message) = message else {
                        return Ok(());
                    };
                    match Update::decode(message.get_payload_bytes()) {
                        Some(update) => update.apply(blocks),
                        None => tracing::warn!("shared block message ignored"),
                    }
                }
                _ = ticker.tick() => self.reconcile(&mut connection, blocks).await?,
            }
        }
    }

    /// Applies every shared entry, each for the time it has left.
    async fn reconcile(
        &self,
        connection: &mut redis::aio::MultiplexedConnection,
        blocks: &BlockList,
    ) -> Result<(), redis::RedisError> {
        let pattern = format!("{}:*", self.prefix);
        let keys: Vec<String> = timed(async {
            let mut iter = connection.scan_match::<_, String>(&pattern).await?;
            let mut keys = Vec::new();
            while let Some(key) = iter.next_item().await {
                keys.push(key?);
            }
            Ok(keys)
        })
        .await?;
        for key in keys {
            let (payload, left): (Option<Vec<u8>>, i64) =
                timed(redis::pipe().get(&key).pttl(&key).query_async(connection)).await?;
            let Some(update) = payload.as_deref().and_then(Update::decode) else {
                continue;
            };
            match update {
                Update::Block(key, _) if left > 0 => {
                    let left = Duration::from_millis(u64::try_from(left).unwrap_or(0));
                    Update::Block(key, left).apply(blocks);
                }
                Update::Block(..) => {}
                cutoff @ Update::Cutoff(..) => cutoff.apply(blocks),
            }
        }
        Ok(())
    }
}

async fn timed<T>(
    future: impl std::future::Future<Output = Result<T, redis::RedisError>>,
) -> Result<T, redis::RedisError> {
    tokio::time::timeout(CALL_TIMEOUT, future)
        .await
        .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "timed out")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(update: Update) {
        assert_eq!(Update::decode(update.encode().as_bytes()), Some(update));
    }

    #[test]
    fn updates_survive_the_trip_and_foreign_messages_are_ignored() {
        check(Update::Block(
            BlockKey::Address(IpAddr::from([192, 0, 2, 1])),
            Duration::from_secs(60),
        ));
        check(Update::Block(
            BlockKey::Token(Jti::parse("t-1").unwrap()),
            Duration::from_millis(1),
        ));
        check(Update::Cutoff(
            BlockKey::Subject(Subject::parse("u-1").unwrap()),
            1_800_000_000,
        ));
        check(Update::Cutoff(
            BlockKey::Client(ClientId::parse("app-1").unwrap()),
            0,
        ));
        for text in [
            "",
            "{}",
            r#"{"type":"block","kind":"address","value":"not-an-ip","ms":1}"#,
            r#"{"type":"ban","kind":"client","value":"a","ms":1}"#,
            r#"{"type":"block","kind":"client","value":"a"}"#,
        ] {
            assert_eq!(Update::decode(text.as_bytes()), None, "{text}");
        }
    }
}
