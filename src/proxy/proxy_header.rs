//! The PROXY protocol header (HAProxy's PROXY protocol, versions 1 and 2) a layer-4 load balancer
//! puts before the client's bytes (`listen.proxy_protocol`), so that phigate, terminating TLS
//! and mutual TLS itself, still learns the client's address. Only a connection from a
//! `listen.trusted_proxies` address is read this way, and it must start with a header: the
//! address a header announces is then the one every limit, detector, block, log line and audit
//! record holds the connection to. ppp parses; this module only frames the header on the wire,
//! reading exactly its bytes so the first byte after it is the TLS handshake's.

use std::net::{IpAddr, SocketAddr};

use ppp::{HeaderResult, v1, v2};
use tokio::io::{AsyncRead, AsyncReadExt as _};

/// Version 2's signature (the spec's §2.2).
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Version 1's prefix.
const V1_PREFIX: &[u8; 6] = b"PROXY ";
/// Version 1's longest header, CRLF included (the spec's §2.1).
const V1_MAX_LEN: usize = 107;
/// Version 2's fixed part: signature, version and command, family and protocol, length.
const V2_FIXED_LEN: usize = 16;
/// The most address and TLV bytes a version 2 header may carry here. Load balancers send a few
/// dozen (AWS adds a VPC endpoint id, Google a connection id); the format allows 64 KiB, which
/// a connection that has proven nothing yet does not get to make phigate hold.
const V2_MAX_PAYLOAD: usize = 1024;

/// Who a PROXY header says the connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announced {
    /// A client's connection, relayed from this address.
    Client(SocketAddr),
    /// The load balancer's own connection (v2 `LOCAL`, v1 `UNKNOWN`, or an address family that
    /// is not IP), such as a health check: it counts as the TCP peer itself.
    Proxy,
}

/// Why a connection that had to start with a PROXY header is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderFault {
    /// It starts with something else (a TLS ClientHello from a proxy not sending headers).
    Missing,
    /// It starts like one but is not a well-formed header, or carries too much.
    Malformed,
    /// The connection ended or failed before the header did (a balancer's TCP health check
    /// connects and hangs up without a byte).
    Closed,
}

/// Reads the PROXY header at the start of `stream`, and nothing after it.
pub async fn read<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Announced, HeaderFault> {
    let mut header = vec![0; V1_PREFIX.len()];
    read_exact(stream, &mut header).await?;
    if header == V1_PREFIX {
        // Byte by byte: whatever follows the CRLF is the client's, not ours to consume.
        while !header.ends_with(b"\r\n") {
            if header.len() == V1_MAX_LEN {
                return Err(HeaderFault::Malformed);
            }
            header.push(stream.read_u8().await.map_err(|_| HeaderFault::Closed)?);
        }
    } else if V2_SIGNATURE.starts_with(&header) {
        header.resize(V2_FIXED_LEN, 0);
        read_exact(stream, &mut header[V1_PREFIX.len()..]).await?;
        if !header.starts_with(V2_SIGNATURE) {
            return Err(HeaderFault::Missing);
        }
        let payload = usize::from(u16::from_be_bytes([header[14], header[15]]));
        if payload > V2_MAX_PAYLOAD {
            return Err(HeaderFault::Malformed);
        }
        header.resize(V2_FIXED_LEN + payload, 0);
        read_exact(stream, &mut header[V2_FIXED_LEN..]).await?;
    } else {
        return Err(HeaderFault::Missing);
    }
    announced(&header)
}

async fn read_exact<S: AsyncRead + Unpin>(
    stream: &mut S,
    into: &mut [u8],
) -> Result<(), HeaderFault> {
    stream
        .read_exact(into)
        .await
        .map(|_| ())
        .map_err(|_| HeaderFault::Closed)
}

/// What a complete header (exactly its bytes) announces.
fn announced(header: &[u8]) -> Result<Announced, HeaderFault> {
    let client = |address: IpAddr, port: u16| Ok(Announced::Client(SocketAddr::new(address, port)));
    match HeaderResult::parse(header) {
        HeaderResult::V1(Ok(parsed)) if parsed.header.len() == header.len() => {
            match parsed.addresses {
                v1::Addresses::Tcp4(ip) => client(ip.source_address.into(), ip.source_port),
                v1::Addresses::Tcp6(ip) => client(ip.source_address.into(), ip.source_port),
                v1::Addresses::Unknown => Ok(Announced::Proxy),
            }
        }
        HeaderResult::V2(Ok(parsed)) if parsed.len() == header.len() => {
            match (parsed.command, parsed.addresses) {
                (v2::Command::Proxy, v2::Addresses::IPv4(ip)) => {
                    client(ip.source_address.into(), ip.source_port)
                }
                (v2::Command::Proxy, v2::Addresses::IPv6(ip)) => {
                    client(ip.source_address.into(), ip.source_port)
                }
                (v2::Command::Local, _)
                | (v2::Command::Proxy, v2::Addresses::Unspecified | v2::Addresses::Unix(_)) => {
                    Ok(Announced::Proxy)
                }
            }
        }
        _ => Err(HeaderFault::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AFTER: &[u8] = b"\x16\x03\x01 the ClientHello";

    /// Reads a header from `bytes` followed by [`AFTER`], and checks `AFTER` is left unread.
    async fn read_before_handshake(header: &[u8]) -> Result<Announced, HeaderFault> {
        let wire = [header, AFTER].concat();
        let mut stream = wire.as_slice();
        let result = read(&mut stream).await;
        if result.is_ok() {
            assert_eq!(stream, AFTER, "the bytes after the header are the client's");
        }
        result
    }

    fn v2(command: v2::Command, addresses: impl Into<v2::Addresses>) -> Vec<u8> {
        v2::Builder::with_addresses(v2::Version::Two | command, v2::Protocol::Stream, addresses)
            .write_tlv(v2::Type::UniqueId, b"lb-connection-1")
            .unwrap()
            .build()
            .unwrap()
    }

    fn at(address: &str) -> Result<Announced, HeaderFault> {
        Ok(Announced::Client(address.parse().unwrap()))
    }

    #[tokio::test]
    async fn version_1_names_the_client_or_the_proxy_itself() {
        for (header, expected) in [
            (
                &b"PROXY TCP4 203.0.113.7 198.51.100.1 51234 443\r\n"[..],
                at("203.0.113.7:51234"),
            ),
            (
                b"PROXY TCP6 2001:db8::7 2001:db8::1 51234 443\r\n",
                at("[2001:db8::7]:51234"),
            ),
            (b"PROXY UNKNOWN\r\n", Ok(Announced::Proxy)),
        ] {
            assert_eq!(read_before_handshake(header).await, expected);
        }
    }

    #[tokio::test]
    async fn version_2_names_the_client_or_the_proxy_itself() {
        let v4 = (
            "203.0.113.7:51234".parse::<SocketAddr>().unwrap(),
            "198.51.100.1:443".parse::<SocketAddr>().unwrap(),
        );
        let v6 = (
            "[2001:db8::7]:51234".parse::<SocketAddr>().unwrap(),
            "[2001:db8::1]:443".parse::<SocketAddr>().unwrap(),
        );
        assert_eq!(
            read_before_handshake(&v2(v2::Command::Proxy, v4)).await,
            at("203.0.113.7:51234")
        );
        assert_eq!(
            read_before_handshake(&v2(v2::Command::Proxy, v6)).await,
            at("[2001:db8::7]:51234")
        );
        assert_eq!(
            read_before_handshake(&v2(v2::Command::Local, v4)).await,
            Ok(Announced::Proxy)
        );
        assert_eq!(
            read_before_handshake(&v2(v2::Command::Proxy, v2::Addresses::Unspecified)).await,
            Ok(Announced::Proxy)
        );
    }

    #[tokio::test]
    async fn anything_else_closes_the_connection() {
        let v4 = (
            "203.0.113.7:51234".parse::<SocketAddr>().unwrap(),
            "198.51.100.1:443".parse::<SocketAddr>().unwrap(),
        );
        let mut oversized = v2(v2::Command::Proxy, v4);
        let payload = V2_MAX_PAYLOAD + 1;
        oversized[14..16].copy_from_slice(&u16::try_from(payload).unwrap().to_be_bytes());
        oversized.resize(V2_FIXED_LEN + payload, 0);
        let mut bad_version = v2(v2::Command::Proxy, v4);
        bad_version[12] = 0x11;
        let long_v1 = format!("PROXY TCP4 {} 198.51.100.1 1 443\r\n", "1".repeat(100));
        for (header, expected) in [
            // A client (or a proxy not sending headers) starting its TLS handshake.
            (AFTER, HeaderFault::Missing),
            (b"GET / HTTP/1.1\r\n", HeaderFault::Missing),
            (b"\r\n\r\n\0\r\nQUIZ\n\x21\x11\0\0", HeaderFault::Missing),
            (b"PROXY TCP4 203.0.113.7\r\n", HeaderFault::Malformed),
            (
                b"PROXY TCP4 999.0.113.7 198.51.100.1 1 443\r\n",
                HeaderFault::Malformed,
            ),
            (long_v1.as_bytes(), HeaderFault::Malformed),
            (&oversized, HeaderFault::Malformed),
            (&bad_version, HeaderFault::Malformed),
        ] {
            assert_eq!(
                read_before_handshake(header).await,
                Err(expected),
                "{:?}",
                String::from_utf8_lossy(header)
            );
        }
        for cut in [
            &b"PROX"[..],
            b"PROXY TCP4 203.0.113.7 198.51.100.1",
            b"\r\n\r\n\0\r\nQU",
        ] {
            let mut stream = cut;
            assert_eq!(read(&mut stream).await, Err(HeaderFault::Closed));
        }
    }

    /// Reads `wire` to the end of what `read` takes; the bytes it left unread.
    fn left_after(wire: &[u8]) -> (Result<Announced, HeaderFault>, Vec<u8>) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut stream = wire;
        let result = runtime.block_on(read(&mut stream));
        (result, stream.to_vec())
    }

    proptest::proptest! {
        /// Whatever a connection starts with, reading never panics, and a header that is
        /// taken is all that was consumed: the next byte is the client's.
        #[test]
        fn a_taken_header_is_all_that_is_read(wire in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let (result, left) = left_after(&wire);
            if result.is_ok() {
                let header = &wire[..wire.len() - left.len()];
                proptest::prop_assert!(header.ends_with(b"\r\n") || header.starts_with(V2_SIGNATURE));
            }
        }

        /// A version 1 header from any IPv4 or IPv6 client, followed by anything, names that
        /// client and leaves everything after it unread.
        #[test]
        fn any_client_is_announced_and_what_follows_is_left(
            source in proptest::prelude::any::<std::net::IpAddr>(),
            port in proptest::prelude::any::<u16>(),
            after in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
        ) {
            let (family, destination) = match source {
                IpAddr::V4(_) => ("TCP4", "198.51.100.1"),
                IpAddr::V6(_) => ("TCP6", "2001:db8::1"),
            };
            let header = format!("PROXY {family} {source} {destination} {port} 443\r\n");
            let wire = [header.as_bytes(), &after].concat();
            let (result, left) = left_after(&wire);
            proptest::prop_assert_eq!(result, Ok(Announced::Client(SocketAddr::new(source, port))));
            proptest::prop_assert_eq!(left, after);
        }
    }
}
