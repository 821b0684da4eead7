//! Connections open per client address, so one address cannot take the whole of
//! `listen.max_connections` (SECURITY.md R-S04: global and per-address caps). An IPv6 client
//! counts by its /64 ([`PeerNetwork`]), which it could otherwise fill with fresh addresses. An
//! address is held only while it has a connection open, so the map is bounded by the global
//! cap.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use crate::peer::PeerNetwork;

/// Open connections by address, and the most one address may have.
pub struct PeerConnections {
    open: Mutex<HashMap<PeerNetwork, usize>>,
    max_per_address: usize,
}

impl PeerConnections {
    pub fn new(max_per_address: usize) -> Arc<Self> {
        Arc::new(Self {
            open: Mutex::new(HashMap::new()),
            max_per_address,
        })
    }

    /// Counts one more connection from `address`, or `None` when it already has the most
    /// allowed. The count drops when the returned slot does.
    pub fn admit(self: &Arc<Self>, address: IpAddr) -> Option<PeerSlot> {
        let address = PeerNetwork::of(address);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(address).or_default();
        if *count >= self.max_per_address {
            return None;
        }
        *count += 1;
        Some(PeerSlot {
            peers: Arc::clone(self),
            address,
        })
    }

    fn release(&self, address: PeerNetwork) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&address) {
            *count -= 1;
            if *count == 0 {
                open.remove(&address);
            }
        }
    }
}

/// One admitted connection; dropping it frees the address's place.
pub struct PeerSlot {
    peers: Arc<PeerConnections>,
    address: PeerNetwork,
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        self.peers.release(self.address);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_at_most_its_share_and_gets_it_back_as_connections_close() {
        let peers = PeerConnections::new(2);
        let a = IpAddr::from([192, 0, 2, 1]);
        let b = IpAddr::from([192, 0, 2, 2]);
        let first = peers.admit(a).unwrap();
        let _second = peers.admit(a).unwrap();
        assert!(peers.admit(a).is_none(), "a third from the same address");
        let _other = peers.admit(b).expect("another address is not affected");
        drop(first);
        let _again = peers.admit(a).expect("a closed connection frees its place");
        assert!(peers.admit(a).is_none());
    }

    #[test]
    fn ipv6_addresses_count_by_their_64() {
        let peers = PeerConnections::new(2);
        let address = |text: &str| text.parse::<IpAddr>().unwrap();
        let _first = peers.admit(address("2001:db8:1:2::1")).unwrap();
        let _second = peers.admit(address("2001:db8:1:2::2")).unwrap();
        assert!(
            peers.admit(address("2001:db8:1:2:ffff::3")).is_none(),
            "a fresh address in the same /64 is the same client"
        );
        let _other = peers
            .admit(address("2001:db8:1:3::1"))
            .expect("another /64 is another client");
    }

    #[test]
    fn addresses_without_connections_are_forgotten() {
        let peers = PeerConnections::new(1);
        for n in 0..=255u8 {
            drop(peers.admit(IpAddr::from([198, 51, 100, n])).unwrap());
        }
        assert!(peers.open.lock().unwrap().is_empty());
    }
}
