//! The `impossible_travel` detector: the same token, client or subject seen from two places
//! further apart than anyone could travel in the time between the two requests. Positions come
//! from [`crate::geoip`] for the TCP peer only (P-01); the distance judged is the least the two
//! positions allow once both accuracy radii are spent, so the database's vagueness never fires
//! it. Each key remembers only its last sighting, here or (with Redis) shared by every replica.

use std::hash::Hash;
use std::time::Duration;

use moka::sync::Cache;

use crate::config::TravelDetector;
use crate::geoip::Position;

/// A key unseen this long starts over: in a day an airliner reaches anywhere on Earth.
pub const MEMORY: Duration = Duration::from_secs(24 * 3600);

/// Where and when a key was seen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sighting {
    /// Where the database placed the peer.
    pub position: Position,
    /// When the request arrived, in milliseconds since the epoch.
    pub at_ms: i64,
}

impl Sighting {
    /// The form a sighting is shared in: `latitude,longitude,accuracy,at_ms`.
    pub fn encode(&self) -> String {
        let p = self.position;
        format!(
            "{},{},{},{}",
            p.latitude, p.longitude, p.accuracy_km, self.at_ms
        )
    }

    /// A sighting from [`Self::encode`]'s form; anything else is none.
    pub fn decode(text: &str) -> Option<Self> {
        let mut parts = text.split(',');
        let mut number = || parts.next()?.parse::<f64>().ok().filter(|n| n.is_finite());
        let position = Position {
            latitude: number()?,
            longitude: number()?,
            accuracy_km: number()?,
        };
        let at_ms = parts.next()?.parse().ok()?;
        parts.next().is_none().then_some(Self { position, at_ms })
    }
}

impl TravelDetector {
    /// Whether going from `before` to `after` is beyond `max_speed_kmh`, over at least
    /// `min_distance_km`. Sightings from several replicas can arrive out of order, so the time
    /// between them counts whichever came first.
    pub fn impossible(&self, before: &Sighting, after: &Sighting) -> bool {
        let distance = before.position.least_distance_km(&after.position);
        if distance < f64::from(self.min_distance_km) {
            return false;
        }
        #[expect(
            clippy::cast_precision_loss,
            reason = "milliseconds between two requests stay far below 2^52"
        )]
        let hours = after.at_ms.abs_diff(before.at_ms) as f64 / 3_600_000.0;
        distance > f64::from(self.max_speed_kmh) * hours
    }
}

/// The last sighting of each key, in this process.
pub struct TravelWatch<K> {
    last: Cache<K, Sighting>,
}

impl<K: Hash + Eq + Send + Sync + 'static> TravelWatch<K> {
    /// Remembers at most `max_keys` keys.
    pub fn new(max_keys: u64) -> Self {
        Self {
            last: super::keyed_cache(max_keys).time_to_idle(MEMORY).build(),
        }
    }

    /// Notes `key` at `sighting` and returns the sighting it replaces.
    pub fn swap(&self, key: K, sighting: Sighting) -> Option<Sighting> {
        let mut previous = None;
        self.last.entry(key).and_upsert_with(|entry| {
            previous = entry.map(moka::Entry::into_value);
            sighting
        });
        previous
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Actions;

    fn seen(latitude: f64, longitude: f64, accuracy_km: f64, minutes: i64) -> Sighting {
        Sighting {
            position: Position {
                latitude,
                longitude,
                accuracy_km,
            },
            at_ms: minutes * 60_000,
        }
    }

    const DETECTOR: TravelDetector = TravelDetector {
        max_speed_kmh: 1_000,
        min_distance_km: 500,
        actions: Actions {
            block: None,
            reauthenticate: false,
            alert: false,
            revoke: false,
        },
    };

    #[test]
    fn only_journeys_faster_than_the_limit_over_the_minimum_distance_fire() {
        let new_york = seen(40.7128, -74.0060, 10.0, 0);
        // Paris is at least 5 817 km away: 5 hours is too fast at 1 000 km/h, 6 hours is not.
        assert!(DETECTOR.impossible(&new_york, &seen(48.8566, 2.3522, 10.0, 300)));
        assert!(!DETECTOR.impossible(&new_york, &seen(48.8566, 2.3522, 10.0, 360)));
        // Out of order: the earlier sighting arriving second is judged the same.
        assert!(DETECTOR.impossible(&seen(48.8566, 2.3522, 10.0, 300), &new_york));
        // Boston is ~300 km away: under the minimum distance, even within the same minute.
        assert!(!DETECTOR.impossible(&new_york, &seen(42.3601, -71.0589, 10.0, 0)));
        // Radii wide enough to overlap are no evidence of travel.
        let vague = seen(48.8566, 2.3522, 3_000.0, 1);
        assert!(!DETECTOR.impossible(&seen(40.7128, -74.0060, 3_000.0, 0), &vague));
    }

    #[test]
    fn sightings_survive_the_trip_and_garbage_is_refused() {
        let sighting = seen(-33.8688, 151.2093, 20.0, 29_000_000);
        assert_eq!(Sighting::decode(&sighting.encode()), Some(sighting));
        for text in [
            "",
            "1,2,3",
            "1,2,3,4,5",
            "a,2,3,4",
            "NaN,2,3,4",
            "1,2,3,4.5",
        ] {
            assert_eq!(Sighting::decode(text), None, "{text}");
        }
    }

    #[test]
    fn each_key_hands_back_its_previous_sighting() {
        let watch = TravelWatch::new(10);
        let first = seen(0.0, 0.0, 0.0, 0);
        let second = seen(1.0, 1.0, 0.0, 1);
        assert_eq!(watch.swap("u-1", first), None);
        assert_eq!(watch.swap("u-2", second), None);
        assert_eq!(watch.swap("u-1", second), Some(first));
    }
}
