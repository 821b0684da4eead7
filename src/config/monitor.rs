//! The `monitor:` section: which detectors run, their thresholds (each with a documented
//! default), and what each does when it fires. A detector is on only when its key is present,
//! so an upgrade never starts blocking clients nobody asked to watch.

use std::path::PathBuf;
use std::time::Duration;

use super::raw::{
    At, RawActions, RawAlert, RawBulk, RawMonitor, RawNewCountry, RawRevoke, RawSpike, RawTravel,
    RawWindowDetector,
};
use super::{Builder, ClientEndpoint, RedisEndpoint};

/// Detectors and their actions.
#[derive(Debug, Clone, Default)]
pub struct MonitorConfig {
    /// Decision records queued for the detectors before new ones are dropped (default 10 000).
    pub queue: usize,
    /// Keys (addresses, clients, tokens) each detector tracks at once (default 100 000).
    pub max_keys: u64,
    /// Where the alert action posts its events.
    pub alert: Option<AlertConfig>,
    /// The authorization server's RFC 7009 endpoint, for the revoke action.
    pub revoke: Option<ClientEndpoint>,
    /// Redis shared by every replica for blocks, cut-offs and detector counts.
    pub redis: Option<RedisEndpoint>,
    /// The prefix of the shared keys and channel (default `phigate:monitor`).
    pub redis_prefix: String,
    /// Authentication and authorisation denials per source address and per client.
    pub repeated_failures: Option<WindowDetector>,
    /// A revoked or blocked token presented again, per token and per client.
    pub refused_token_reuse: Option<WindowDetector>,
    /// A token's, client's or subject's request rate above a ceiling or far above its baseline.
    pub traffic_spike: Option<SpikeDetector>,
    /// Distinct resources one token, client or subject reads, and bulk operations it starts,
    /// within a window.
    pub bulk_access: Option<BulkDetector>,
    /// The MaxMind `.mmdb` country database.
    pub geoip: Option<PathBuf>,
    /// A token, client or subject seen from a new country (needs `geoip`).
    pub new_country: Option<CountryDetector>,
    /// A token, client or subject seen from two places too far apart for the time between
    /// them (needs `geoip` with coordinates).
    pub impossible_travel: Option<TravelDetector>,
}

/// Countries a key is seen from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountryDetector {
    /// ISO 3166-1 alpha-2 codes every request may come from; empty: any. A key seen from
    /// outside them fires, its first sighting included.
    pub allowed: Vec<String>,
    /// What firing does.
    pub actions: Actions,
}

/// Travel speed between two sightings of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TravelDetector {
    /// The fastest plausible journey, in km/h (default 1 000: an airliner).
    pub max_speed_kmh: u32,
    /// Journeys shorter than this never fire (default 500 km): GeoIP is coarse, and a mobile
    /// network or VPN exit near a border moves an address further than its holder.
    pub min_distance_km: u32,
    /// What firing does.
    pub actions: Actions,
}

/// Request rates per interval against a ceiling and an EWMA baseline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpikeDetector {
    /// The counting interval (default 10 s).
    pub interval: Duration,
    /// Requests per interval that always fire (default 1 000).
    pub ceiling: u64,
    /// Times its own baseline a key must exceed to fire (default 10).
    pub factor: u32,
    /// What firing does.
    pub actions: Actions,
}

/// Bulk exfiltration: distinct resources read, or bulk operations started, within one window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkDetector {
    /// Distinct resources read within the window that fire (default 50).
    pub threshold: u32,
    /// `$everything` and Bulk Data `$export` kick-offs within the window that fire (default 3).
    pub operations: u32,
    /// The window (default 5 min).
    pub window: Duration,
    /// What firing does, on either count.
    pub actions: Actions,
}

impl BulkDetector {
    /// The bulk operations count, as a windowed detector with the same window and actions.
    pub fn operations_detector(&self) -> WindowDetector {
        WindowDetector {
            threshold: self.operations,
            window: self.window,
            actions: self.actions.clone(),
        }
    }
}

impl MonitorConfig {
    /// Whether the monitor task runs: for any detector, or for a webhook alone, which hears of
    /// every break-glass grant.
    pub fn is_enabled(&self) -> bool {
        self.repeated_failures.is_some()
            || self.refused_token_reuse.is_some()
            || self.traffic_spike.is_some()
            || self.bulk_access.is_some()
            || self.new_country.is_some()
            || self.impossible_travel.is_some()
            // A webhook alone still hears of every break-glass grant.
            || self.alert.is_some()
    }
}

/// The alert webhook.
#[derive(Debug, Clone)]
pub struct AlertConfig {
    /// The `http://` or `https://` URL events are POSTed to.
    pub webhook: http::Uri,
    /// A CA file for the webhook's certificate (else the web PKI roots).
    pub ca_file: Option<PathBuf>,
    /// Attempts after the first (default 3), with exponential backoff from 200 ms.
    pub retries: u32,
    /// Events waiting for delivery before new ones are dropped (default 1 000).
    pub queue: usize,
}

/// A detector that fires when a key reaches `threshold` events within `window`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowDetector {
    /// Events within the window that fire the detector.
    pub threshold: u32,
    /// The sliding window.
    pub window: Duration,
    /// What firing does.
    pub actions: Actions,
}

/// What a detector does when it fires, beyond the log line and the metric it always gets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actions {
    /// Block the offending key for this long.
    pub block: Option<Duration>,
    /// Refuse the offending client's or subject's tokens issued before the firing.
    pub reauthenticate: bool,
    /// POST an event to `monitor.alert.webhook`.
    pub alert: bool,
    /// Revoke the token that fired at the authorization server (RFC 7009), once per `jti`.
    pub revoke: bool,
}

/// Which endpoints the actions may use.
#[derive(Debug, Clone, Copy)]
struct Endpoints {
    webhook: bool,
    revoke: bool,
}

/// The keys every windowed detector has, whichever raw section they come from.
struct WindowKeys<'a> {
    threshold: Option<&'a At<u64>>,
    window: Option<&'a At<String>>,
    actions: Option<&'a RawActions>,
}

impl<'a> From<&'a RawWindowDetector> for WindowKeys<'a> {
    fn from(raw: &'a RawWindowDetector) -> Self {
        Self {
            threshold: raw.threshold.as_ref(),
            window: raw.window.as_ref(),
            actions: raw.actions.as_ref(),
        }
    }
}

impl<'a> From<&'a RawBulk> for WindowKeys<'a> {
    fn from(raw: &'a RawBulk) -> Self {
        Self {
            threshold: raw.threshold.as_ref(),
            window: raw.window.as_ref(),
            actions: raw.actions.as_ref(),
        }
    }
}

/// The default queue and key bounds.
const DEFAULT_QUEUE: u64 = 10_000;
const DEFAULT_MAX_KEYS: u64 = 100_000;
/// A window keeps one timestamp per event up to the threshold, for every key it tracks: this
/// caps that memory.
const MAX_THRESHOLD: u64 = 10_000;

impl Builder<'_> {
    pub(super) fn monitor(&mut self, raw: Option<&RawMonitor>) -> MonitorConfig {
        let Some(raw) = raw else {
            return MonitorConfig::default();
        };
        self.section = "monitor".into();
        let queue = self.count(raw.queue.as_ref(), "monitor.queue", DEFAULT_QUEUE, u64::MAX);
        let max_keys = self.count(
            raw.max_keys.as_ref(),
            "monitor.max_keys",
            DEFAULT_MAX_KEYS,
            u64::MAX,
        );
        let alert = raw.alert.as_ref().and_then(|raw| self.alert(raw));
        let revoke = raw.revoke.as_ref().and_then(|raw| self.revoke(raw));
        let endpoints = Endpoints {
            webhook: alert.is_some(),
            revoke: revoke.is_some(),
        };
        let redis = raw
            .redis
            .as_ref()
            .and_then(|at| self.redis_endpoint(at, "redis"));
        let repeated_failures = raw.repeated_failures.as_ref().map(|raw| {
            let defaults = (20, Duration::from_secs(60));
            self.window_detector(raw.into(), "monitor.repeated_failures", defaults, endpoints)
        });
        let refused_token_reuse = raw.refused_token_reuse.as_ref().map(|raw| {
            let defaults = (5, Duration::from_secs(600));
            self.window_detector(
                raw.into(),
                "monitor.refused_token_reuse",
                defaults,
                endpoints,
            )
        });
        let traffic_spike = raw
            .traffic_spike
            .as_ref()
            .map(|raw| self.spike(raw, endpoints));
        let bulk_access = raw
            .bulk_access
            .as_ref()
            .map(|raw| self.bulk(raw, endpoints));
        let geoip = raw.geoip.as_ref().map(|at| self.path(at, "geoip"));
        let new_country = raw.new_country.as_ref().map(|at| {
            if geoip.is_none() {
                self.problem(at, "monitor.new_country needs monitor.geoip (a .mmdb file)");
            }
            self.new_country(&at.value, endpoints)
        });
        let impossible_travel = raw.impossible_travel.as_ref().map(|at| {
            if geoip.is_none() {
                self.problem(
                    at,
                    "monitor.impossible_travel needs monitor.geoip (a .mmdb file with coordinates)",
                );
            }
            self.travel(&at.value, endpoints)
        });
        self.section.clear();
        MonitorConfig {
            queue: usize::try_from(queue).unwrap_or(usize::MAX),
            max_keys,
            alert,
            revoke,
            redis,
            redis_prefix: raw
                .redis_prefix
                .clone()
                .unwrap_or_else(|| "phigate:monitor".to_owned()),
            repeated_failures,
            refused_token_reuse,
            traffic_spike,
            bulk_access,
            geoip,
            new_country,
            impossible_travel,
        }
    }

    fn new_country(&mut self, raw: &RawNewCountry, endpoints: Endpoints) -> CountryDetector {
        let allowed: Vec<String> = raw
            .allowed
            .iter()
            .flatten()
            .filter_map(|at| {
                let code = &at.value;
                let iso = code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase());
                let parsed = iso.then(|| code.clone()).ok_or_else(|| {
                "monitor.new_country.allowed takes ISO 3166-1 alpha-2 codes in capitals (US, DE)"
                    .to_owned()
            });
                self.check(at, parsed)
            })
            .collect();
        CountryDetector {
            allowed,
            actions: self.actions(raw.actions.as_ref(), "monitor.new_country", endpoints),
        }
    }

    fn travel(&mut self, raw: &RawTravel, endpoints: Endpoints) -> TravelDetector {
        let key = "monitor.impossible_travel";
        // Half the Earth's circumference bounds any distance, and sound bounds any sane speed
        // well below the fastest aircraft's.
        let max_speed_kmh = self.count(
            raw.max_speed_kmh.as_ref(),
            &format!("{key}.max_speed_kmh"),
            1_000,
            40_000,
        );
        let min_distance_km = self.count(
            raw.min_distance_km.as_ref(),
            &format!("{key}.min_distance_km"),
            500,
            20_000,
        );
        TravelDetector {
            max_speed_kmh: u32::try_from(max_speed_kmh).unwrap_or(1_000),
            min_distance_km: u32::try_from(min_distance_km).unwrap_or(500),
            actions: self.actions(raw.actions.as_ref(), key, endpoints),
        }
    }

    fn spike(&mut self, raw: &RawSpike, endpoints: Endpoints) -> SpikeDetector {
        let key = "monitor.traffic_spike";
        let ceiling = self.count(
            raw.ceiling.as_ref(),
            &format!("{key}.ceiling"),
            1_000,
            u64::MAX,
        );
        let factor = self.count(raw.factor.as_ref(), &format!("{key}.factor"), 10, 1_000);
        SpikeDetector {
            interval: self.duration(
                raw.interval.as_ref(),
                &format!("{key}.interval"),
                Duration::from_secs(10),
            ),
            ceiling,
            factor: u32::try_from(factor).unwrap_or(10),
            actions: self.actions(raw.actions.as_ref(), key, endpoints),
        }
    }

    fn bulk(&mut self, raw: &RawBulk, endpoints: Endpoints) -> BulkDetector {
        let key = "monitor.bulk_access";
        let defaults = (50, Duration::from_secs(300));
        let resources = self.window_detector(raw.into(), key, defaults, endpoints);
        let operations = self.count(
            raw.operations.as_ref(),
            &format!("{key}.operations"),
            3,
            MAX_THRESHOLD,
        );
        BulkDetector {
            threshold: resources.threshold,
            operations: u32::try_from(operations).unwrap_or(u32::MAX),
            window: resources.window,
            actions: resources.actions,
        }
    }

    fn revoke(&mut self, raw: &RawRevoke) -> Option<ClientEndpoint> {
        self.client_endpoint(
            (&raw.endpoint, &raw.client_id, &raw.client_secret_file),
            raw.ca_file.as_ref(),
            [
                "monitor.revoke.endpoint",
                "revoke.client_secret_file",
                "revoke.ca_file",
            ],
        )
    }

    fn alert(&mut self, raw: &RawAlert) -> Option<AlertConfig> {
        let webhook = self.http_url(&raw.webhook, "monitor.alert.webhook")?;
        let retries = match &raw.retries {
            Some(at) => {
                let parsed = (at.value <= 10)
                    .then_some(at.value)
                    .ok_or_else(|| "monitor.alert.retries must be at most 10".to_owned());
                self.check(at, parsed).unwrap_or(3)
            }
            None => 3,
        };
        let queue = self.count(raw.queue.as_ref(), "monitor.alert.queue", 1_000, u64::MAX);
        Some(AlertConfig {
            webhook,
            ca_file: raw
                .ca_file
                .as_ref()
                .map(|ca| self.path(ca, "alert.ca_file")),
            retries: u32::try_from(retries).unwrap_or(3),
            queue: usize::try_from(queue).unwrap_or(usize::MAX),
        })
    }

    fn window_detector(
        &mut self,
        raw: WindowKeys<'_>,
        key: &str,
        (threshold, window): (u64, Duration),
        endpoints: Endpoints,
    ) -> WindowDetector {
        let threshold = self.count(
            raw.threshold,
            &format!("{key}.threshold"),
            threshold,
            MAX_THRESHOLD,
        );
        WindowDetector {
            threshold: u32::try_from(threshold).unwrap_or(u32::MAX),
            window: self.duration(raw.window, &format!("{key}.window"), window),
            actions: self.actions(raw.actions, key, endpoints),
        }
    }

    fn actions(&mut self, raw: Option<&RawActions>, key: &str, endpoints: Endpoints) -> Actions {
        let Some(raw) = raw else {
            return Actions::default();
        };
        if let Some(at) = raw
            .alert
            .as_ref()
            .filter(|at| at.value && !endpoints.webhook)
        {
            self.problem(
                at,
                format!("{key}.actions.alert needs monitor.alert.webhook to post to"),
            );
        }
        if let Some(at) = raw
            .revoke
            .as_ref()
            .filter(|at| at.value && !endpoints.revoke)
        {
            self.problem(
                at,
                format!("{key}.actions.revoke needs monitor.revoke.endpoint to call"),
            );
        }
        Actions {
            block: raw
                .block
                .as_ref()
                .map(|at| self.duration(Some(at), &format!("{key}.actions.block"), Duration::ZERO)),
            reauthenticate: raw.reauthenticate.unwrap_or(false),
            alert: raw.alert.as_ref().is_some_and(|at| at.value),
            revoke: raw.revoke.as_ref().is_some_and(|at| at.value),
        }
    }

    /// A count from 1 to `max`.
    fn count(&mut self, at: Option<&At<u64>>, key: &str, default: u64, max: u64) -> u64 {
        let Some(at) = at else { return default };
        let parsed = (1..=max)
            .contains(&at.value)
            .then_some(at.value)
            .ok_or_else(|| format!("{key} must be from 1 to {max}"));
        self.check(at, parsed).unwrap_or(default)
    }
}
