//! The `monitor:` section: which detectors run, their thresholds (each with a documented
//! default), and what each does when it fires. A detector is on only when its key is present,
//! so an upgrade never starts blocking clients nobody asked to watch.

use std::time::Duration;

use super::Builder;
use super::raw::{At, RawActions, RawMonitor, RawWindowDetector};

/// Detectors and their actions.
#[derive(Debug, Clone, Default)]
pub struct MonitorConfig {
    /// Decision records queued for the detectors before new ones are dropped (default 10 000).
    pub queue: usize,
    /// Keys (addresses, clients, tokens) each detector tracks at once (default 100 000).
    pub max_keys: u64,
    /// Authentication and authorisation denials per source address and per client.
    pub repeated_failures: Option<WindowDetector>,
    /// A revoked or blocked token presented again, per token and per client.
    pub refused_token_reuse: Option<WindowDetector>,
}

impl MonitorConfig {
    /// Whether any detector runs.
    pub fn is_enabled(&self) -> bool {
        self.repeated_failures.is_some() || self.refused_token_reuse.is_some()
    }
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
        let repeated_failures = raw.repeated_failures.as_ref().map(|raw| {
            self.window_detector(
                raw,
                "monitor.repeated_failures",
                20,
                Duration::from_secs(60),
            )
        });
        let refused_token_reuse = raw.refused_token_reuse.as_ref().map(|raw| {
            self.window_detector(
                raw,
                "monitor.refused_token_reuse",
                5,
                Duration::from_secs(600),
            )
        });
        self.section.clear();
        MonitorConfig {
            queue: usize::try_from(queue).unwrap_or(usize::MAX),
            max_keys,
            repeated_failures,
            refused_token_reuse,
        }
    }

    fn window_detector(
        &mut self,
        raw: &RawWindowDetector,
        key: &str,
        threshold: u64,
        window: Duration,
    ) -> WindowDetector {
        let threshold = self.count(
            raw.threshold.as_ref(),
            &format!("{key}.threshold"),
            threshold,
            MAX_THRESHOLD,
        );
        WindowDetector {
            threshold: u32::try_from(threshold).unwrap_or(u32::MAX),
            window: self.duration(raw.window.as_ref(), &format!("{key}.window"), window),
            actions: self.actions(raw.actions.as_ref(), key),
        }
    }

    fn actions(&mut self, raw: Option<&RawActions>, key: &str) -> Actions {
        let Some(raw) = raw else {
            return Actions::default();
        };
        Actions {
            block: raw
                .block
                .as_ref()
                .map(|at| self.duration(Some(at), &format!("{key}.actions.block"), Duration::ZERO)),
            reauthenticate: raw.reauthenticate.unwrap_or(false),
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
