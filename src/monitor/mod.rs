//! Real-time detection with automatic response. [`Monitor`] is a decision-record sink: it only
//! queues each record (bounded; a full queue drops the record and counts it) for one task that
//! runs the configured detectors and, when one fires, its actions. Detectors never deny a
//! request themselves: their actions write the [`BlockList`], which the decision chain reads as
//! one of its steps. Every firing and every action is logged and counted. Addresses are only
//! ever the TCP peer's, never a client-supplied header (P-01).

mod alert;
mod blocklist;
mod distinct;
mod geo;
mod rate;
mod shared;
mod travel;
mod window;

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures_util::future::OptionFuture;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use self::alert::{AlertQueue, Alerter};
pub use self::blocklist::{BlockFault, BlockKey, BlockList};
use self::distinct::DistinctWatch;
use self::geo::CountryWatch;
use self::rate::{Baseline, HISTORY, RateWatch, SpikeLimit};
pub use self::shared::{Publisher, SharedBlocks, SharedCounter, Update};
use self::travel::{Sighting, TravelWatch};
use self::window::SlidingWindow;
use crate::config::{
    Actions, BulkDetector, CountryDetector, MonitorConfig, TravelDetector, WindowDetector,
};
use crate::geoip::GeoIp;
use crate::peer::PeerNetwork;
use crate::record::{ActionRecord, ActionSink, DecisionRecord, Sink};
use crate::telemetry::Metrics;
use crate::token::{BearerToken, Jti, RevokeOutcome, TokenRevoker, VerifiedToken};

/// What the decision chain shares with the monitor: the block list it reads, and the revoker
/// it hands verified tokens to (only while a revoke action is configured).
#[derive(Clone)]
pub struct Hooks {
    /// Blocks and cut-offs the chain enforces.
    pub blocks: Arc<BlockList>,
    /// RFC 7009 revocation, when configured.
    pub revoker: Option<Arc<TokenRevoker>>,
}

impl Hooks {
    /// Remembers a verified token for a later revoke action.
    pub fn verified(&self, token: &VerifiedToken, bearer: &BearerToken) {
        if let Some(revoker) = &self.revoker {
            revoker.remember(token, bearer);
        }
    }
}

/// The sink half: queues records for the detectors' task.
pub struct Monitor {
    queue: mpsc::Sender<DecisionRecord>,
    metrics: Arc<Metrics>,
}

impl Monitor {
    /// The sink and the tasks that run the detectors of `config`, acting through `hooks`, and
    /// deliver their alerts through `alerter`; `shared` carries blocks to the other replicas;
    /// every action is written to `audit` when there is one.
    pub fn start(
        config: &MonitorConfig,
        hooks: &Hooks,
        alerter: Option<Alerter>,
        shared: Option<(Publisher, SharedCounter)>,
        geoip: Option<Arc<GeoIp>>,
        audit: Option<Arc<dyn ActionSink>>,
        metrics: Arc<Metrics>,
    ) -> (Self, Vec<JoinHandle<()>>) {
        let (shared, counter) = shared.unzip();
        let mut tasks = Vec::new();
        let alerts = alerter.map(|alerter| {
            let (alerts, task) = alerter.spawn(Arc::clone(&metrics));
            tasks.push(task);
            alerts
        });
        let (queue, records) = mpsc::channel(config.queue.max(1));
        let responder = Responder {
            blocks: Arc::clone(&hooks.blocks),
            revoker: hooks.revoker.clone(),
            shared,
            alerts,
            audit,
            metrics: Arc::clone(&metrics),
        };
        let mut detectors = Detectors::new(config, responder, counter);
        detectors.geo = geoip.and_then(|geoip| Geo::new(config, geoip));
        tasks.push(tokio::spawn(detectors.run(records)));
        (Self { queue, metrics }, tasks)
    }
}

impl Sink for Monitor {
    fn record(&self, record: &DecisionRecord) {
        // The request must never wait for detection: when the task lags, records are dropped.
        // The queued copy gives back the audit room: a lagging monitor must not fill the trail.
        let queued = DecisionRecord {
            slot: None,
            ..record.clone()
        };
        if self.queue.try_send(queued).is_err() {
            self.metrics.record_monitor_dropped();
        }
    }
}

/// A cache of at most `max_keys` keys for detector state and the block list, evicting the least
/// recently used key when full. moka's default admission (TinyLFU) would instead turn a new key
/// away while the cache is full of busier ones: a flood of distinct keys would then keep every
/// later block out, and the failures of every later attacker uncounted.
fn keyed_cache<K, V>(max_keys: u64) -> moka::sync::CacheBuilder<K, V, moka::sync::Cache<K, V>>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    moka::sync::Cache::builder()
        .max_capacity(max_keys)
        .eviction_policy(moka::policy::EvictionPolicy::lru())
}

/// What a windowed detector counts, and against which keys.
#[derive(Debug, Clone, Copy)]
enum Counted {
    /// Authentication and authorisation denials, per address and per client.
    RepeatedFailures,
    /// A revoked or blocked token presented again, per token and per client.
    RefusedTokenReuse,
    /// `$everything` and Bulk Data `$export` kick-offs allowed, per token, client and subject:
    /// `bulk_access`'s second count, in its window and with its actions.
    BulkOperations,
}

impl Counted {
    /// The detector's name in configuration, logs and metrics.
    fn name(self) -> &'static str {
        match self {
            Self::RepeatedFailures => "repeated_failures",
            Self::RefusedTokenReuse => "refused_token_reuse",
            Self::BulkOperations => "bulk_access",
        }
    }

    /// The keys `record` counts against (none when it does not count).
    fn keys(self, record: &DecisionRecord) -> Vec<BlockKey> {
        let identity = record.identity.as_ref();
        let client = identity
            .and_then(|i| i.client_id.clone())
            .map(BlockKey::Client);
        match self {
            // Refusals by the block list itself are left out, so a block is not extended by the
            // very requests it refuses; `refused_token_reuse` watches those.
            Self::RepeatedFailures
                if record.decision == "deny"
                    && matches!(record.status, 401 | 403)
                    && !is_block_refusal(record.reason) =>
            {
                std::iter::once(BlockKey::Address(PeerNetwork::of(record.peer)))
                    .chain(client)
                    .collect()
            }
            Self::RefusedTokenReuse
                if record.reason == "revoked" || is_block_refusal(record.reason) =>
            {
                let token = identity.and_then(|i| i.jti.clone()).map(BlockKey::Token);
                token.into_iter().chain(client).collect()
            }
            Self::BulkOperations if record.decision == "allow" && is_bulk_operation(record) => {
                identity_keys(record)
            }
            Self::RepeatedFailures | Self::RefusedTokenReuse | Self::BulkOperations => Vec::new(),
        }
    }
}

/// The token, client and subject a record names.
fn identity_keys(record: &DecisionRecord) -> Vec<BlockKey> {
    let Some(identity) = &record.identity else {
        return Vec::new();
    };
    let token = identity.jti.clone().map(BlockKey::Token);
    let client = identity.client_id.clone().map(BlockKey::Client);
    let subject = identity.subject.clone().map(BlockKey::Subject);
    token.into_iter().chain(client).chain(subject).collect()
}

/// The resource an allowed FHIR request named (`Patient/123`), if it named one.
fn resource_read(record: &DecisionRecord) -> Option<String> {
    let fhir = record
        .fhir
        .as_ref()
        .filter(|_| record.decision == "allow")?;
    let id = fhir.resource_id.as_deref()?;
    Some(format!(
        "{}/{id}",
        fhir.resource_type.as_deref().unwrap_or("")
    ))
}

/// Whether a request started a bulk operation: `$everything` (a patient's whole record) or a
/// Bulk Data `$export` kick-off (its status and files are followed links, not operations).
fn is_bulk_operation(record: &DecisionRecord) -> bool {
    record.fhir.as_ref().is_some_and(|fhir| {
        // As `policy::fhir::Interaction` names them.
        matches!(
            fhir.interaction.as_str(),
            "operation $everything" | "operation $export"
        )
    })
}

/// The keys whose count fired. The keys are counted together, so a record costs one Redis
/// round trip per detector rather than one per key.
async fn fired<'k, F>(keys: &'k [BlockKey], count: impl Fn(&'k BlockKey) -> F) -> Vec<&'k BlockKey>
where
    F: Future<Output = bool>,
{
    let counted = futures_util::future::join_all(keys.iter().map(count)).await;
    keys.iter()
        .zip(counted)
        .filter_map(|(key, fired)| fired.then_some(key))
        .collect()
}

/// What a shared count said or — without Redis, or when Redis failed, so that detection
/// never stops — what the count in this process says.
fn or_local<T>(
    detector: &'static str,
    shared: Option<Result<T, redis::RedisError>>,
    local: impl FnOnce() -> T,
) -> T {
    match shared {
        Some(Ok(fired)) => fired,
        Some(Err(err)) => {
            tracing::warn!(
                monitor.detector = detector,
                error = %err,
                "shared monitor count unavailable; counting locally"
            );
            local()
        }
        None => local(),
    }
}

/// A refusal the block list made.
fn is_block_refusal(reason: &str) -> bool {
    matches!(reason, "blocked" | "reauthentication_required")
}

/// One windowed detector's state and settings.
struct Windowed {
    counted: Counted,
    counts: SlidingWindow<BlockKey>,
    actions: Actions,
}

impl Windowed {
    fn new(counted: Counted, config: Option<&WindowDetector>, max_keys: u64) -> Option<Self> {
        config.map(|config| Self {
            counted,
            counts: SlidingWindow::new(config.threshold, config.window, max_keys),
            actions: config.actions.clone(),
        })
    }
}

/// Every configured detector, and what their actions write to.
struct Detectors {
    windowed: Vec<Windowed>,
    counter: Option<SharedCounter>,
    spike: Option<(RateWatch<BlockKey>, Actions)>,
    bulk: Option<(DistinctWatch<BlockKey>, Actions)>,
    geo: Option<Geo>,
    responder: Responder,
}

/// The detectors judging where a request came from.
struct Geo {
    geoip: Arc<GeoIp>,
    countries: Option<(CountryWatch<BlockKey>, CountryDetector)>,
    travel: Option<(TravelWatch<BlockKey>, TravelDetector)>,
}

impl Geo {
    /// The geographic detectors `config` names, if any.
    fn new(config: &MonitorConfig, geoip: Arc<GeoIp>) -> Option<Self> {
        let countries = config
            .new_country
            .clone()
            .map(|detector| (CountryWatch::new(config.max_keys), detector));
        let travel = config
            .impossible_travel
            .clone()
            .map(|detector| (TravelWatch::new(config.max_keys), detector));
        if travel.is_some() && !geoip.has_positions() {
            tracing::warn!(
                "monitor.impossible_travel: monitor.geoip is a country database without \
                 coordinates, so the detector can never fire; use a city database"
            );
        }
        (countries.is_some() || travel.is_some()).then_some(Self {
            geoip,
            countries,
            travel,
        })
    }
}

impl Detectors {
    fn new(config: &MonitorConfig, responder: Responder, counter: Option<SharedCounter>) -> Self {
        let operations = config
            .bulk_access
            .as_ref()
            .map(BulkDetector::operations_detector);
        let windowed = [
            (Counted::RepeatedFailures, config.repeated_failures.as_ref()),
            (
                Counted::RefusedTokenReuse,
                config.refused_token_reuse.as_ref(),
            ),
            (Counted::BulkOperations, operations.as_ref()),
        ]
        .into_iter()
        .filter_map(|(counted, c)| Windowed::new(counted, c, config.max_keys))
        .collect();
        let spike = config.traffic_spike.as_ref().map(|c| {
            let limit = SpikeLimit::new(c.ceiling, c.factor);
            let watch = RateWatch::new(c.interval, limit, config.max_keys);
            (watch, c.actions.clone())
        });
        let bulk = config.bulk_access.as_ref().map(|c| {
            let watch = DistinctWatch::new(c.threshold, c.window, config.max_keys);
            (watch, c.actions.clone())
        });
        Self {
            windowed,
            counter,
            spike,
            bulk,
            geo: None,
            responder,
        }
    }

    async fn run(self, mut records: mpsc::Receiver<DecisionRecord>) {
        while let Some(record) = records.recv().await {
            self.observe(&record, Instant::now()).await;
        }
    }

    /// Counts `key` for a windowed detector.
    async fn count(&self, detector: &Windowed, key: &BlockKey, now: Instant) -> bool {
        let (window, threshold) = (detector.counts.window(), detector.counts.threshold());
        let name = detector.counted.name();
        let shared = self
            .counter
            .as_ref()
            .map(|counter| counter.hit(name, key, window, threshold));
        or_local(name, OptionFuture::from(shared).await, || {
            detector.counts.hit(key.clone(), now)
        })
    }

    /// Counts one request of `key` for `traffic_spike`, in the interval buckets every replica
    /// shares when Redis is, else in this process; either way through the same [`SpikeLimit`].
    async fn spike(&self, watch: &RateWatch<BlockKey>, key: &BlockKey, now: Instant) -> bool {
        let shared = self.counter.as_ref().map(|counter| async move {
            let at = SystemTime::now();
            let (count, buckets) = counter.rate(key, watch.interval(), at, HISTORY).await?;
            Ok(watch
                .limit()
                .crossed(Baseline::from_buckets(&buckets), count))
        });
        or_local("traffic_spike", OptionFuture::from(shared).await, || {
            watch.hit(key.clone(), now)
        })
    }

    /// Notes that `key` read `resource` for `bulk_access`, in a set every replica shares when
    /// Redis is, else in this process.
    async fn distinct(
        &self,
        watch: &DistinctWatch<BlockKey>,
        key: &BlockKey,
        resource: &str,
        now: Instant,
    ) -> bool {
        let shared = self
            .counter
            .as_ref()
            .map(|counter| counter.distinct(key, resource, watch.window(), watch.threshold()));
        or_local("bulk_access", OptionFuture::from(shared).await, || {
            watch.hit(key.clone(), resource, now)
        })
    }

    /// Notes `key` seen from `country` for `new_country`, in a set every replica shares when
    /// Redis is, else in this process; true when the detector fires.
    async fn new_country(
        &self,
        watch: &CountryWatch<BlockKey>,
        detector: &CountryDetector,
        key: &BlockKey,
        country: &str,
    ) -> bool {
        let shared = (self.counter.as_ref()).map(|c| c.country(key, country, geo::MEMORY));
        let novelty = or_local("new_country", OptionFuture::from(shared).await, || {
            watch.hit(key.clone(), country)
        });
        detector.fires(country, novelty)
    }

    /// Swaps `key`'s last sighting for `sighting` for `impossible_travel`, shared by every
    /// replica when Redis is, else in this process; true when the journey was impossible.
    async fn travelled(
        &self,
        watch: &TravelWatch<BlockKey>,
        detector: &TravelDetector,
        key: &BlockKey,
        sighting: Sighting,
    ) -> bool {
        let shared =
            (self.counter.as_ref()).map(|c| c.swap_sighting(key, sighting, travel::MEMORY));
        let previous = or_local(
            "impossible_travel",
            OptionFuture::from(shared).await,
            || watch.swap(key.clone(), sighting),
        );
        previous.is_some_and(|previous| detector.impossible(&previous, &sighting))
    }

    /// Runs the geographic detectors on the TCP peer's address (P-01: never a forwarded-for
    /// header) for the token, client and subject `record` names (`keys`).
    async fn observe_place(&self, geo: &Geo, record: &DecisionRecord, keys: &[BlockKey]) {
        if keys.is_empty() {
            return;
        }
        if let Some((watch, detector)) = &geo.countries
            && let Some(country) = geo.geoip.country(record.peer)
        {
            let novel = |key| self.new_country(watch, detector, key, &country);
            for key in fired(keys, novel).await {
                self.responder.fire("new_country", &detector.actions, key);
            }
        }
        if let Some((watch, detector)) = &geo.travel
            && let Some(position) = geo.geoip.position(record.peer)
        {
            let at_ms = record
                .time
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            let sighting = Sighting { position, at_ms };
            let travelled = |key| self.travelled(watch, detector, key, sighting);
            for key in fired(keys, travelled).await {
                self.responder
                    .fire("impossible_travel", &detector.actions, key);
            }
        }
    }

    async fn observe(&self, record: &DecisionRecord, now: Instant) {
        let identities = identity_keys(record);
        for detector in &self.windowed {
            let keys = detector.counted.keys(record);
            for key in fired(&keys, |key| self.count(detector, key, now)).await {
                self.responder
                    .fire(detector.counted.name(), &detector.actions, key);
            }
        }
        if let Some((watch, actions)) = &self.spike {
            for key in fired(&identities, |key| self.spike(watch, key, now)).await {
                self.responder.fire("traffic_spike", actions, key);
            }
        }
        if let Some(((watch, actions), resource)) = self.bulk.as_ref().zip(resource_read(record)) {
            let distinct = |key| self.distinct(watch, key, &resource, now);
            for key in fired(&identities, distinct).await {
                self.responder.fire("bulk_access", actions, key);
            }
        }
        // HIPAA emergency access raises an immediate alert wherever a webhook is configured:
        // on the subject who broke the glass (else the client, else the token).
        if record.break_glass.is_some()
            && let Some(key) = identities.last()
        {
            let alert = Actions {
                alert: true,
                ..Actions::default()
            };
            self.responder.fire("break_glass", &alert, key);
        }
        if let Some(geo) = &self.geo {
            self.observe_place(geo, record, &identities).await;
        }
    }
}

/// Carries out a detector's actions.
struct Responder {
    blocks: Arc<BlockList>,
    revoker: Option<Arc<TokenRevoker>>,
    shared: Option<Publisher>,
    alerts: Option<AlertQueue>,
    audit: Option<Arc<dyn ActionSink>>,
    metrics: Arc<Metrics>,
}

impl Responder {
    /// Applies `update` here at once, then shares it with the other replicas.
    fn apply(&self, update: Update) {
        if let Some(shared) = &self.shared {
            shared.publish(update.clone());
        }
        update.apply(&self.blocks);
    }

    /// Logs and counts a firing, then takes the detector's actions, in order.
    fn fire(&self, detector: &'static str, actions: &Actions, key: &BlockKey) {
        self.metrics.record_detector_firing(detector);
        tracing::warn!(
            monitor.detector = detector,
            monitor.key.kind = key.kind(),
            monitor.key = %key.value(),
            "detector fired"
        );
        self.metrics.record_action("log", true);
        let mut taken = vec!["log"];
        if let Some(period) = actions.block {
            taken.push("block");
            self.enforce(detector, "block", Update::Block(key.clone(), period));
            self.audit(detector, "block", key, true);
        }
        // A cut-off refuses tokens by client or subject; an address has no tokens to refuse.
        if actions.reauthenticate && matches!(key, BlockKey::Client(_) | BlockKey::Subject(_)) {
            taken.push("reauthenticate");
            self.enforce(
                detector,
                "reauthenticate",
                Update::Cutoff(key.clone(), unix_now()),
            );
            self.audit(detector, "reauthenticate", key, true);
        }
        // RFC 7009 takes a token, so only a firing on a token can revoke. The token is refused
        // here (and on every replica) at once, whatever the authorization server answers: a
        // JWT stays valid to phigate's own checks until it expires.
        if let (BlockKey::Token(jti), true) = (key, actions.revoke) {
            taken.push("revoke");
            self.apply(Update::Revoke(jti.clone()));
            self.revoke(detector, jti);
        }
        // Counted when delivered or given up on, by the alert task.
        if let Some(alerts) = self.alerts.as_ref().filter(|_| actions.alert) {
            alerts.send(serde_json::json!({
                "source": "phigate",
                "detector": detector,
                "key": {"kind": key.kind(), "value": key.value()},
                "actions": taken,
                "time": unix_now(),
            }));
            self.audit(detector, "alert", key, true);
        }
    }

    /// Writes one action on `key` to the audit trail, when there is one.
    fn audit(&self, detector: &'static str, action: &'static str, key: &BlockKey, ok: bool) {
        if let Some(audit) = &self.audit {
            audit_action(audit, detector, action, key, ok);
        }
    }

    /// Applies a block or cut-off (here and, when shared, everywhere), logged and counted.
    fn enforce(&self, detector: &'static str, action: &'static str, update: Update) {
        tracing::warn!(
            monitor.detector = detector,
            monitor.action = action,
            monitor.update = ?update,
            "block list updated"
        );
        self.apply(update);
        self.metrics.record_action(action, true);
    }

    /// Revokes `jti` at the authorization server off this task; at most once per `jti`, so a
    /// repeat is neither sent nor counted (P-03).
    fn revoke(&self, detector: &'static str, jti: &Jti) {
        let Some(revoker) = &self.revoker else { return };
        let (revoker, jti, metrics) = (Arc::clone(revoker), jti.clone(), Arc::clone(&self.metrics));
        let audit = self.audit.clone();
        tokio::spawn(async move {
            let outcome = revoker.revoke(&jti).await;
            if outcome == RevokeOutcome::AlreadyDone {
                return;
            }
            let revoked = outcome == RevokeOutcome::Revoked;
            metrics.record_action("revoke", revoked);
            if let Some(audit) = &audit {
                let key = BlockKey::Token(jti.clone());
                audit_action(audit, detector, "revoke", &key, revoked);
            }
            tracing::warn!(
                monitor.detector = detector,
                monitor.action = "revoke",
                token.jti = jti.as_str(),
                monitor.outcome = ?outcome,
                "token revocation at the authorization server"
            );
        });
    }
}

fn audit_action(
    audit: &Arc<dyn ActionSink>,
    detector: &'static str,
    action: &'static str,
    key: &BlockKey,
    ok: bool,
) {
    audit.action(&ActionRecord {
        detector,
        action,
        key_kind: key.kind(),
        key: &key.value(),
        ok,
    });
}

/// Seconds since the epoch (wall clock, compared with tokens' `iat`).
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests;
