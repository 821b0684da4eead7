//! The network a client connects from, as limits, detectors and blocks count it: an IPv4 address
//! itself, an IPv6 address by its /64. A subscriber, host or cloud instance is handed at least a
//! whole /64 (RFC 6177 §2; RIPE-690 §4) and may take a fresh address in it at will (RFC 8981
//! temporary addresses), so counting IPv6 clients by full address would give each of them 2^64
//! fresh identities: no per-address connection cap, failure count or address block would ever
//! hold. An IPv4-mapped IPv6 address (a dual-stack listener's view of an IPv4 client) is that
//! IPv4 address.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

/// The prefix length an IPv6 client is held to.
pub const IPV6_PREFIX_LEN: u32 = 64;

/// A client's network: an IPv4 address, or the /64 an IPv6 address lies in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerNetwork(IpAddr);

impl PeerNetwork {
    /// The network `address` counts under.
    pub fn of(address: IpAddr) -> Self {
        match address {
            IpAddr::V4(_) => Self(address),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => {
                    let mask = u128::MAX << (128 - IPV6_PREFIX_LEN);
                    Self(IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask)))
                }
            },
        }
    }
}

/// `192.0.2.1`, or `2001:db8:1:2::/64`: how logs, events and shared blocks name it.
impl fmt::Display for PeerNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/{IPV6_PREFIX_LEN}"),
        }
    }
}

/// Reads what [`Display`](fmt::Display) writes (its own prefix length is the only one it takes), or a plain
/// address, masked as [`PeerNetwork::of`] masks it.
impl FromStr for PeerNetwork {
    type Err = std::net::AddrParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let suffix = format!("/{IPV6_PREFIX_LEN}");
        let address = text
            .strip_suffix(&suffix)
            .unwrap_or(text)
            .parse::<IpAddr>()?;
        Ok(Self::of(address))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_counts_by_address_and_ipv6_by_its_64() {
        let cases = [
            ("192.0.2.1", "192.0.2.1"),
            ("::ffff:192.0.2.1", "192.0.2.1"),
            ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
            ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
            ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
            ("::1", "::/64"),
        ];
        for (address, network) in cases {
            let peer = PeerNetwork::of(address.parse().unwrap());
            assert_eq!(peer.to_string(), network, "{address}");
            assert_eq!(network.parse::<PeerNetwork>().unwrap(), peer, "{network}");
            assert_eq!(address.parse::<PeerNetwork>().unwrap(), peer, "{address}");
        }
        let a = PeerNetwork::of("2001:db8:1:2::1".parse().unwrap());
        let b = PeerNetwork::of("2001:db8:1:2:ffff::9".parse().unwrap());
        let c = PeerNetwork::of("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!("2001:db8::/48".parse::<PeerNetwork>().is_err());
        assert!("not an address".parse::<PeerNetwork>().is_err());
    }
}
