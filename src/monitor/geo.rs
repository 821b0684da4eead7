//! The `new_country` detector's memory, over countries from [`crate::geoip`]. The address looked
//! up is always the TCP peer's: `X-Forwarded-For` and its kin are written by the client, and a
//! detector that trusted them would let anyone trigger (or dodge) a geo action (P-01). Each key
//! remembers the few countries it was seen from (bounded per key and in keys); a request from
//! one not yet seen, after the first, fires.

use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use moka::sync::Cache;

/// Countries remembered per key; past this the oldest is forgotten.
const MAX_COUNTRIES: usize = 16;
/// A key unseen this long starts over.
const MEMORY: Duration = Duration::from_secs(30 * 24 * 3600);

/// Countries seen per key.
pub struct CountryWatch<K> {
    keys: Cache<K, Arc<Mutex<Vec<String>>>>,
}

impl<K: Hash + Eq + Send + Sync + 'static> CountryWatch<K> {
    /// Remembers countries for at most `max_keys` keys.
    pub fn new(max_keys: u64) -> Self {
        Self {
            keys: Cache::builder()
                .max_capacity(max_keys)
                .time_to_idle(MEMORY)
                .build(),
        }
    }

    /// Notes `key` seen from `country`; true when it is new for a key already seen elsewhere.
    pub fn hit(&self, key: K, country: &str) -> bool {
        let seen = self.keys.get_with(key, Arc::default);
        let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.iter().any(|known| known == country) {
            return false;
        }
        let first = seen.is_empty();
        if seen.len() == MAX_COUNTRIES {
            seen.remove(0);
        }
        seen.push(country.to_owned());
        !first
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

    #[test]
    fn a_new_country_fires_after_the_first_and_only_once() {
        let watch = CountryWatch::new(10);
        let fired: Vec<bool> = ["US", "US", "FR", "FR", "US", "DE"]
            .iter()
            .map(|c| watch.hit("u-1", c))
            .collect();
        assert_eq!(fired, [false, false, true, false, false, true]);
        // Another key starts with its own first country.
        assert!(!watch.hit("u-2", "FR"));
    }
}
