//! Blocks and cut-offs shared by every replica through Redis. Each one the monitor makes is
//! written as its own key (`<prefix>:<block|cutoff>:<kind>:<value>`, expiring with it) and
//! published on `<prefix>:blocks`; every replica subscribes first, then reads every key
//! (reconcile), applies messages as they arrive, and reconciles again on an interval to repair
//! anything a lost connection missed. A replica that cannot reach Redis keeps enforcing what it
//! has; its own blocks still apply locally at once.

mod counter;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::AsyncCommands;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use self::counter::SharedCounter;
use self::counter::millis;
use super::blocklist::{BlockKey, BlockList};
use crate::backoff::Backoff;
use crate::config::RedisEndpoint;
use crate::peer::PeerNetwork;
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
    /// Refuse the token a revoke action revoked.
    Revoke(Jti),
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
            Self::Revoke(jti) => json!({"type": "revoke", "kind": "token", "value": jti.as_str()}),
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
            "revoke" => match key {
                BlockKey::Token(jti) => Some(Self::Revoke(jti)),
                _ => None,
            },
            _ => None,
        }
    }

    fn redis_key(&self, prefix: &str) -> String {
        let (kind, key, value) = match self {
            Self::Block(key, _) => ("block", key.kind(), key.value()),
            Self::Cutoff(key, _) => ("cutoff", key.kind(), key.value()),
            Self::Revoke(jti) => ("revoke", "token", jti.as_str().to_owned()),
        };
        format!("{prefix}:{kind}:{key}:{value}")
    }

    /// Writes the update into this replica's block list.
    pub fn apply(self, blocks: &BlockList) {
        match self {
            Self::Block(key, period) => blocks.block(key, period),
            Self::Cutoff(key, cutoff) => blocks.reauthenticate(key, cutoff),
            Self::Revoke(jti) => blocks.revoke(jti),
        }
    }
}

fn decode_key(kind: &str, value: &str) -> Option<BlockKey> {
    match kind {
        "address" => value.parse::<PeerNetwork>().ok().map(BlockKey::Address),
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

/// The Redis side of the block list, checked before the gateway serves.
pub struct SharedBlocks {
    client: redis::Client,
    prefix: String,
    /// How long a cut-off is kept (the longest token lifetime).
    cutoff_ttl: Duration,
}

impl SharedBlocks {
    /// A client for `url` (not yet connected).
    pub fn new(
        redis: &RedisEndpoint,
        prefix: &str,
        cutoff_ttl: Duration,
    ) -> Result<Self, redis::RedisError> {
        Ok(Self {
            client: redis.client()?,
            prefix: prefix.to_owned(),
            cutoff_ttl,
        })
    }

    /// Detector counts on the same Redis.
    pub fn counter(&self) -> SharedCounter {
        // Under its own prefix, so reconcile never reads a count as a block.
        SharedCounter::new(self.client.clone(), format!("{}-counts", self.prefix))
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
                Update::Cutoff(..) | Update::Revoke(_) => self.cutoff_ttl,
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
                kept @ (Update::Cutoff(..) | Update::Revoke(_)) => kept.apply(blocks),
            }
        }
        Ok(())
    }
}

/// Bounds one Redis call by [`CALL_TIMEOUT`].
async fn timed<T>(
    future: impl std::future::Future<Output = Result<T, redis::RedisError>>,
) -> Result<T, redis::RedisError> {
    tokio::time::timeout(CALL_TIMEOUT, future)
        .await
        .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "timed out")))?
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    #[track_caller]
    fn check(update: Update) {
        assert_eq!(Update::decode(update.encode().as_bytes()), Some(update));
    }

    #[test]
    fn updates_survive_the_trip_and_foreign_messages_are_ignored() {
        check(Update::Block(
            BlockKey::Address(PeerNetwork::of(IpAddr::from([192, 0, 2, 1]))),
            Duration::from_secs(60),
        ));
        check(Update::Block(
            BlockKey::Address(PeerNetwork::of("2001:db8::7".parse().unwrap())),
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
        check(Update::Revoke(Jti::parse("t-2").unwrap()));
        for text in [
            "",
            "{}",
            r#"{"type":"block","kind":"address","value":"not-an-ip","ms":1}"#,
            r#"{"type":"ban","kind":"client","value":"a","ms":1}"#,
            r#"{"type":"block","kind":"client","value":"a"}"#,
            r#"{"type":"revoke","kind":"client","value":"a"}"#,
        ] {
            assert_eq!(Update::decode(text.as_bytes()), None, "{text}");
        }
    }
}
