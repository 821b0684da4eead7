//! The block list the decision chain reads: addresses, clients, subjects and tokens refused for
//! a while, and re-authentication cut-offs (a client's or subject's tokens issued before a time
//! are refused). Only the monitor's actions write it. It is bounded: each entry expires on its
//! own (a block when its period ends, a cut-off once every token it can refuse has expired), and
//! past `max_keys` the least used entries go first, so a flood of distinct keys cannot grow it.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::sync::Cache;

use crate::peer::PeerNetwork;
use crate::token::{ClientId, Jti, Subject, VerifiedToken};

/// Why the block list refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockFault {
    /// The address, client, subject or token is blocked.
    Blocked,
    /// The token was issued before its client's or subject's re-authentication cut-off (or
    /// carries no `iat`, so it cannot show it was not).
    ReauthenticationRequired,
    /// A revoke action revoked the token: refused here too, not only at the authorization
    /// server, which only introspection would ask.
    Revoked,
}

/// What a block or a cut-off applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BlockKey {
    /// The TCP peer's network: its address, or an IPv6 address's /64 (never a client-supplied
    /// header).
    Address(PeerNetwork),
    /// Every token of an OAuth client.
    Client(ClientId),
    /// Every token of a subject.
    Subject(Subject),
    /// One token, by `jti`.
    Token(Jti),
}

impl BlockKey {
    /// The key's kind, for logs and events (`address`, `client`, `subject`, `token`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Address(_) => "address",
            Self::Client(_) => "client",
            Self::Subject(_) => "subject",
            Self::Token(_) => "token",
        }
    }

    /// The key's value, as logs carry it (a `jti`, never a token).
    pub fn value(&self) -> String {
        match self {
            Self::Address(network) => network.to_string(),
            Self::Client(client) => client.as_str().to_owned(),
            Self::Subject(subject) => subject.as_str().to_owned(),
            Self::Token(jti) => jti.as_str().to_owned(),
        }
    }
}

/// Each block lives exactly as long as it was given.
struct BlockPeriod;

impl Expiry<BlockKey, Duration> for BlockPeriod {
    fn expire_after_create(&self, _: &BlockKey, period: &Duration, _: Instant) -> Option<Duration> {
        Some(*period)
    }

    fn expire_after_update(
        &self,
        _: &BlockKey,
        period: &Duration,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(*period)
    }
}

/// Blocks and cut-offs in force in this process.
pub struct BlockList {
    blocks: Cache<BlockKey, Duration>,
    /// Cut-offs, seconds since the epoch.
    cutoffs: Cache<BlockKey, i64>,
    /// Tokens a revoke action revoked, by `jti`.
    revoked: Cache<Jti, ()>,
}

impl BlockList {
    /// An empty list holding at most `max_keys` blocks and as many cut-offs; a cut-off is kept
    /// for `max_lifetime`, after which every token it could refuse has expired anyway.
    pub fn new(max_keys: u64, max_lifetime: Duration) -> Self {
        Self {
            blocks: super::keyed_cache(max_keys)
                .expire_after(BlockPeriod)
                .build(),
            cutoffs: super::keyed_cache(max_keys)
                .time_to_live(max_lifetime)
                .build(),
            // Kept as long as a cut-off: no token outlives `max_lifetime`.
            revoked: super::keyed_cache(max_keys)
                .time_to_live(max_lifetime)
                .build(),
        }
    }

    /// Blocks `key` for `period` from now (a later block replaces an earlier one).
    pub fn block(&self, key: BlockKey, period: Duration) {
        self.blocks.insert(key, period);
    }

    /// Refuses tokens of `key` (a client or subject) issued before `cutoff` (seconds since the
    /// epoch); an earlier cut-off never replaces a later one.
    pub fn reauthenticate(&self, key: BlockKey, cutoff: i64) {
        self.cutoffs
            .entry(key)
            .and_upsert_with(|kept| kept.map_or(cutoff, |kept| (*kept.value()).max(cutoff)));
    }

    /// Refuses the token `jti` from now until it could no longer be valid anyway.
    pub fn revoke(&self, jti: Jti) {
        self.revoked.insert(jti, ());
    }

    /// Refuses a blocked address. Checked before the token is even looked at, so a blocked
    /// address cannot keep the verifier busy.
    pub fn check_address(&self, peer: IpAddr) -> Result<(), BlockFault> {
        if self
            .blocks
            .contains_key(&BlockKey::Address(PeerNetwork::of(peer)))
        {
            return Err(BlockFault::Blocked);
        }
        Ok(())
    }

    /// Refuses a verified token that is blocked, or whose client or subject is, that a revoke
    /// action revoked, or that was issued before its client's or subject's cut-off.
    pub fn check_token(&self, token: &VerifiedToken) -> Result<(), BlockFault> {
        let keys = token_keys(token);
        if keys.iter().any(|key| self.blocks.contains_key(key)) {
            return Err(BlockFault::Blocked);
        }
        if token
            .jti
            .as_ref()
            .is_some_and(|jti| self.revoked.contains_key(jti))
        {
            return Err(BlockFault::Revoked);
        }
        // Like revocation's `before` entries: a token without `iat` cannot show it is newer.
        let issued_before = |cutoff: i64| token.issued_at.is_none_or(|iat| iat < cutoff);
        if keys
            .iter()
            .filter_map(|key| self.cutoffs.get(key))
            .any(issued_before)
        {
            return Err(BlockFault::ReauthenticationRequired);
        }
        Ok(())
    }

    /// Entries held (approximate until moka's pending work runs), for tests.
    #[cfg(test)]
    fn len(&self) -> u64 {
        self.blocks.run_pending_tasks();
        self.cutoffs.run_pending_tasks();
        self.revoked.run_pending_tasks();
        self.blocks.entry_count() + self.cutoffs.entry_count() + self.revoked.entry_count()
    }
}

/// The keys a token can be blocked under.
fn token_keys(token: &VerifiedToken) -> Vec<BlockKey> {
    let mut keys = Vec::with_capacity(3);
    keys.extend(token.jti.clone().map(BlockKey::Token));
    keys.extend(token.client_id.clone().map(BlockKey::Client));
    keys.extend(token.subject.clone().map(BlockKey::Subject));
    keys
}

#[cfg(test)]
mod tests;
