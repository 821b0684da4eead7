//! Countries from a MaxMind-format `.mmdb` database (`monitor.geoip`), for the `new_country`
//! detector and the audit record's `country`. The address looked up is always the TCP peer's:
//! `X-Forwarded-For` and its kin are written by the client (P-01).

use std::net::IpAddr;
use std::path::Path;

use maxminddb::geoip2;

/// A loaded GeoIP database.
pub struct GeoIp(maxminddb::Reader<Vec<u8>>);

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

    /// The ISO country code of `address`, when the database knows it.
    pub fn country(&self, address: IpAddr) -> Option<String> {
        let found = self.0.lookup(address).ok()?;
        let record: geoip2::Country<'_> = found.decode().ok()??;
        record.country.iso_code.map(str::to_owned)
    }
}
