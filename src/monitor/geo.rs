//! The `new_country` detector's memory, over countries from [`crate::geoip`]. The address looked
//! up is always the TCP peer's: `X-Forwarded-For` and its kin are written by the client, and a
//! detector that trusted them would let anyone trigger (or dodge) a geo action (P-01). Each key
//! remembers the few countries it was seen from (bounded per key and in keys); a request from
//! one not yet seen fires when it is not the key's first, or when it is outside the allow-list.

use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use moka::sync::Cache;

use crate::config::CountryDetector;

/// Countries remembered per key; past this the oldest is forgotten.
const MAX_COUNTRIES: usize = 16;
/// A key unseen this long starts over.
pub const MEMORY: Duration = Duration::from_secs(30 * 24 * 3600);

/// What one sighting taught about a key's countries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Novelty {
    /// The country was not yet among the key's.
    pub new: bool,
    /// The key had no country before.
    pub first: bool,
}

impl CountryDetector {
    /// Whether a sighting from `country` with `novelty` fires: a country the key was never
    /// seen from after its first, or one outside the allow-list (once per key and country).
    pub fn fires(&self, country: &str, novelty: Novelty) -> bool {
        let outside = !self.allowed.is_empty() && !self.allowed.iter().any(|c| c == country);
        novelty.new && (!novelty.first || outside)
    }
}

/// Countries seen per key.
pub struct CountryWatch<K> {
    keys: Cache<K, Arc<Mutex<Vec<String>>>>,
}

impl<K: Hash + Eq + Send + Sync + 'static> CountryWatch<K> {
    /// Remembers countries for at most `max_keys` keys.
    pub fn new(max_keys: u64) -> Self {
        Self {
            keys: super::keyed_cache(max_keys).time_to_idle(MEMORY).build(),
        }
    }

    /// Notes `key` seen from `country`.
    pub fn hit(&self, key: K, country: &str) -> Novelty {
        let seen = self.keys.get_with(key, Arc::default);
        let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
        let first = seen.is_empty();
        if seen.iter().any(|known| known == country) {
            return Novelty { new: false, first };
        }
        if seen.len() == MAX_COUNTRIES {
            seen.remove(0);
        }
        seen.push(country.to_owned());
        Novelty { new: true, first }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::IpAddr;

    use super::*;
    use crate::geoip::GeoIp;

    /// A database placing 192.0.2.0/24 in the US and 198.51.100.0/24 in France.
    fn database() -> GeoIp {
        #[derive(serde::Serialize)]
        struct Record {
            country: BTreeMap<&'static str, &'static str>,
        }
        let mut writer = mmdb_writer::Writer::new("GeoIP2-Country");
        for (net, code) in [("192.0.2.0/24", "US"), ("198.51.100.0/24", "FR")] {
            let record = Record {
                country: [("iso_code", code)].into(),
            };
            writer
                .insert(net.parse::<mmdb_writer::ipnet::IpNet>().unwrap(), &record)
                .unwrap();
        }
        GeoIp::from_bytes(writer.to_bytes().unwrap()).unwrap()
    }

    #[test]
    fn countries_come_from_the_database() {
        let geo = database();
        for (address, expected) in [
            ([192, 0, 2, 7], Some("US")),
            ([198, 51, 100, 1], Some("FR")),
            ([203, 0, 113, 1], None),
        ] {
            assert_eq!(geo.country(IpAddr::from(address)).as_deref(), expected);
        }
    }

    /// The countries of `sightings` (key, country) that fire under `allowed`.
    #[track_caller]
    fn check(allowed: &[&str], sightings: &[(&'static str, &str)], expected: &[bool]) {
        let detector = CountryDetector {
            allowed: allowed.iter().map(|c| (*c).to_owned()).collect(),
            actions: crate::config::Actions::default(),
        };
        let watch = CountryWatch::new(10);
        let fired: Vec<bool> = sightings
            .iter()
            .map(|(key, country)| detector.fires(country, watch.hit(*key, country)))
            .collect();
        assert_eq!(fired, expected, "{allowed:?} {sightings:?}");
    }

    #[test]
    fn a_new_country_fires_after_the_first_and_only_once() {
        let u1 = ["US", "US", "FR", "FR", "US", "DE"].map(|c| ("u-1", c));
        check(&[], &u1, &[false, false, true, false, false, true]);
        // Another key starts with its own first country.
        check(&[], &[("u-1", "US"), ("u-2", "FR")], &[false, false]);
    }

    #[test]
    fn outside_the_allow_list_even_the_first_country_fires_once_per_key() {
        let sightings = [
            ("u-1", "RU"),
            ("u-1", "RU"),
            ("u-2", "US"),
            ("u-2", "CA"),
            ("u-2", "RU"),
            ("u-3", "CA"),
        ];
        check(
            &["US", "CA"],
            &sightings,
            &[true, false, false, true, true, false],
        );
    }
}
