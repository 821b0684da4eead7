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

use ipnet::IpNet;

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

/// The proxies whose `X-Forwarded-For` phigate believes (`listen.trusted_proxies`): none by
/// default, so a client cannot choose the address its limits and blocks are counted by (SECURITY.md
/// K-03, P-01).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

/// The address a request is held to: the TCP peer, or behind trusted proxies the right-most
/// address of `X-Forwarded-For` that no trusted proxy wrote; and the chain to pass upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAddress {
    /// The client's address: detectors, blocks, GeoIP, logs and the audit trail use it.
    pub address: IpAddr,
    /// `X-Forwarded-For` for the upstream behind trusted proxies: the believed part of the
    /// chain, then the TCP peer. `None` when the peer is the client: then it is `address` alone,
    /// and nothing is built for it per request.
    pub forwarded_for: Option<String>,
}

impl TrustedProxies {
    /// Trusts `nets`; the caller refuses nets that would trust every address.
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self { nets }
    }

    /// Whether any proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether `address` is a trusted proxy.
    pub fn trusts(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        self.nets.iter().any(|net| net.contains(&address))
    }

    /// The client behind `peer` for a request with `headers`. A peer that is not a trusted
    /// proxy is the client, whatever it claims. Behind a trusted one, `X-Forwarded-For` (every
    /// field line, in order) is read from the right: trusted proxies are skipped, and the first
    /// address that is not one is the client; where an entry is not an address, the hop to its
    /// right is taken, so nothing left of it counts. What the upstream is told is exactly the
    /// part of the chain that was believed, then the peer.
    pub fn client_of(&self, peer: IpAddr, headers: &http::HeaderMap) -> ClientAddress {
        let peer = peer.to_canonical();
        let direct = ClientAddress {
            address: peer,
            forwarded_for: None,
        };
        if !self.trusts(peer) {
            return direct;
        }
        // Split as bytes: a client's unreadable entry is one malformed entry, which stops the
        // walk where it stands, and cannot make the whole line (with the proxy's own entry
        // appended to it) vanish.
        let entries: Vec<&[u8]> = headers
            .get_all("x-forwarded-for")
            .iter()
            .flat_map(|value| value.as_bytes().split(|b| *b == b','))
            .map(<[u8]>::trim_ascii)
            .collect();
        let mut believed: Vec<IpAddr> = Vec::new();
        for entry in entries.iter().rev() {
            let Some(address) = parse_entry(entry) else {
                break;
            };
            believed.push(address);
            if !self.trusts(address) {
                break;
            }
        }
        let Some(&client) = believed.last() else {
            return direct;
        };
        let chain: Vec<String> = believed
            .iter()
            .rev()
            .chain(std::iter::once(&peer))
            .map(ToString::to_string)
            .collect();
        ClientAddress {
            address: client,
            forwarded_for: Some(chain.join(", ")),
        }
    }
}

/// One `X-Forwarded-For` entry: an address, maybe with a port (`192.0.2.1:4711`,
/// `[2001:db8::1]:4711`), as some proxies write it.
fn parse_entry(entry: &[u8]) -> Option<IpAddr> {
    let entry = std::str::from_utf8(entry).ok()?;
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<std::net::SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|address| address.to_canonical())
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

    fn trusting(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(nets.iter().map(|n| n.parse().unwrap()).collect())
    }

    fn forwarded(values: &[&str]) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        for value in values {
            headers.append(
                "x-forwarded-for",
                http::HeaderValue::from_bytes(value.as_bytes()).unwrap(),
            );
        }
        headers
    }

    #[test]
    fn only_a_trusted_peer_is_believed_and_only_up_to_the_first_untrusted_hop() {
        let proxies = trusting(&["10.0.0.0/8", "2001:db8:ffff::/48"]);
        let cases: [(&str, &[&str], &str, &str); 11] = [
            // No trusted proxy in front: the peer, whatever it claims.
            ("192.0.2.9", &["203.0.113.7"], "192.0.2.9", "192.0.2.9"),
            // One trusted proxy: the address it saw.
            (
                "10.0.0.2",
                &["203.0.113.7"],
                "203.0.113.7",
                "203.0.113.7, 10.0.0.2",
            ),
            // A client's own spoofed entries left of it count for nothing.
            (
                "10.0.0.2",
                &["198.51.100.1, 203.0.113.7"],
                "203.0.113.7",
                "203.0.113.7, 10.0.0.2",
            ),
            // Trusted hops are skipped, over several field lines.
            (
                "10.0.0.2",
                &["198.51.100.1, 203.0.113.7", "10.1.2.3"],
                "203.0.113.7",
                "203.0.113.7, 10.1.2.3, 10.0.0.2",
            ),
            // Ports and IPv6, mapped IPv4 as IPv4.
            (
                "10.0.0.2",
                &["[2001:db8::5]:4711"],
                "2001:db8::5",
                "2001:db8::5, 10.0.0.2",
            ),
            (
                "::ffff:10.0.0.2",
                &["203.0.113.7:80"],
                "203.0.113.7",
                "203.0.113.7, 10.0.0.2",
            ),
            (
                "2001:db8:ffff::1",
                &["203.0.113.7"],
                "203.0.113.7",
                "203.0.113.7, 2001:db8:ffff::1",
            ),
            // Garbage stops the walk at the hop to its right.
            (
                "10.0.0.2",
                &["203.0.113.7, unknown"],
                "10.0.0.2",
                "10.0.0.2",
            ),
            (
                "10.0.0.2",
                &["10.9.9.9, nonsense, 10.1.1.1"],
                "10.1.1.1",
                "10.1.1.1, 10.0.0.2",
            ),
            // No header: the proxy itself.
            ("10.0.0.2", &[], "10.0.0.2", "10.0.0.2"),
            // A client's unreadable entry does not hide the one the proxy appended.
            (
                "10.0.0.2",
                &["\u{e9}t\u{e9}, 203.0.113.7"],
                "203.0.113.7",
                "203.0.113.7, 10.0.0.2",
            ),
        ];
        for (peer, values, client, chain) in cases {
            let got = proxies.client_of(peer.parse().unwrap(), &forwarded(values));
            assert_eq!(got.address.to_string(), client, "{peer} {values:?}");
            let forwarded_for = got
                .forwarded_for
                .clone()
                .unwrap_or_else(|| got.address.to_string());
            assert_eq!(forwarded_for, chain, "{peer} {values:?}");
        }
        let nobody = TrustedProxies::default();
        let got = nobody.client_of("10.0.0.2".parse().unwrap(), &forwarded(&["203.0.113.7"]));
        assert_eq!(got.address.to_string(), "10.0.0.2");
    }
}
