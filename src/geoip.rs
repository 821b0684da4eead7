//! Countries and coordinates from a MaxMind-format `.mmdb` database (`monitor.geoip`), for the
//! `new_country` and `impossible_travel` detectors and the audit record's `country`. The
//! address looked up is always the TCP peer's: `X-Forwarded-For` and its kin are written by the
//! client (P-01).

use std::net::IpAddr;
use std::path::Path;

use maxminddb::geoip2;

/// A loaded GeoIP database.
pub struct GeoIp(maxminddb::Reader<Vec<u8>>);

/// Where the database places an address, with its stated uncertainty.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Position {
    /// Degrees north.
    pub latitude: f64,
    /// Degrees east.
    pub longitude: f64,
    /// The radius in kilometres the database is confident the address lies within.
    pub accuracy_km: f64,
}

/// The mean Earth radius (IUGG), in kilometres.
const EARTH_RADIUS_KM: f64 = 6_371.0;

impl Position {
    /// Great-circle distance to `other` (haversine), ignoring either accuracy radius.
    pub fn distance_km(&self, other: &Self) -> f64 {
        let (lat1, lat2) = (self.latitude.to_radians(), other.latitude.to_radians());
        let dlat = lat2 - lat1;
        let dlon = (other.longitude - self.longitude).to_radians();
        let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
    }

    /// The least distance to `other` the two positions allow, once both accuracy radii are
    /// spent: a detector judging travel must not fire on the database's own vagueness.
    pub fn least_distance_km(&self, other: &Self) -> f64 {
        (self.distance_km(other) - self.accuracy_km - other.accuracy_km).max(0.0)
    }
}

impl GeoIp {
    /// Reads and checks the database at `path`.
    pub fn open(path: &Path) -> Result<Self, maxminddb::MaxMindDbError> {
        maxminddb::Reader::open_readfile(path).map(Self)
    }

    /// A database from its bytes.
    #[cfg(test)]
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, maxminddb::MaxMindDbError> {
        maxminddb::Reader::from_source(bytes).map(Self)
    }

    /// Whether the database claims to carry coordinates: MaxMind's country editions do not.
    pub fn has_positions(&self) -> bool {
        !self.0.metadata().database_type.ends_with("-Country")
    }

    /// The ISO country code of `address`, when the database knows it.
    pub fn country(&self, address: IpAddr) -> Option<String> {
        let found = self.0.lookup(address).ok()?;
        let record: geoip2::Country<'_> = found.decode().ok()??;
        record.country.iso_code.map(str::to_owned)
    }

    /// The coordinates of `address`, when the database has them.
    pub fn position(&self, address: IpAddr) -> Option<Position> {
        let found = self.0.lookup(address).ok()?;
        let record: geoip2::City<'_> = found.decode().ok()??;
        let location = record.location;
        let (latitude, longitude) = (location.latitude?, location.longitude?);
        let valid = (-90.0..=90.0).contains(&latitude) && (-180.0..=180.0).contains(&longitude);
        valid.then(|| Position {
            latitude,
            longitude,
            accuracy_km: location.accuracy_radius.map_or(0.0, f64::from),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(latitude: f64, longitude: f64, accuracy_km: f64) -> Position {
        Position {
            latitude,
            longitude,
            accuracy_km,
        }
    }

    #[test]
    fn positions_come_from_a_city_database_and_a_country_one_has_none() {
        #[derive(serde::Serialize)]
        struct Location {
            latitude: f64,
            longitude: f64,
            accuracy_radius: u16,
        }
        #[derive(serde::Serialize)]
        struct Record {
            location: Location,
        }
        let mut writer = mmdb_writer::Writer::new("GeoIP2-City");
        let record = Record {
            location: Location {
                latitude: 48.8566,
                longitude: 2.3522,
                accuracy_radius: 20,
            },
        };
        let net = "198.51.100.0/24".parse::<mmdb_writer::ipnet::IpNet>();
        writer.insert(net.unwrap(), &record).unwrap();
        let city = GeoIp::from_bytes(writer.to_bytes().unwrap()).unwrap();
        assert!(city.has_positions());
        assert_eq!(
            city.position(IpAddr::from([198, 51, 100, 9])),
            Some(at(48.8566, 2.3522, 20.0))
        );
        assert_eq!(city.position(IpAddr::from([203, 0, 113, 1])), None);
        assert_eq!(city.country(IpAddr::from([198, 51, 100, 9])), None);
        let country = mmdb_writer::Writer::new("GeoLite2-Country").to_bytes();
        assert!(!GeoIp::from_bytes(country.unwrap()).unwrap().has_positions());
    }

    #[test]
    fn distances_are_great_circle_kilometres_less_both_radii() {
        let new_york = at(40.7128, -74.0060, 0.0);
        let paris = at(48.8566, 2.3522, 0.0);
        // 5 837 km by the haversine formula on a 6 371 km sphere.
        assert!((new_york.distance_km(&paris) - 5_837.0).abs() < 5.0);
        assert!(new_york.distance_km(&new_york) < 1e-9);
        let vague_new_york = at(40.7128, -74.0060, 1_000.0);
        let vague_paris = at(48.8566, 2.3522, 500.0);
        assert!((vague_new_york.least_distance_km(&vague_paris) - 4_337.0).abs() < 5.0);
        // Overlapping radii leave no distance at all.
        assert!(vague_new_york.least_distance_km(&at(42.36, -71.06, 100.0)) < 1e-9);
        // Antipodes: half the circumference.
        let half = at(0.0, 0.0, 0.0).distance_km(&at(0.0, 180.0, 0.0));
        assert!((half - std::f64::consts::PI * EARTH_RADIUS_KM).abs() < 1.0);
    }
}
