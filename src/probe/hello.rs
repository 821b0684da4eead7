//! Hand-built TLS ClientHellos for protocol versions rustls cannot speak (SSL 3.0, TLS 1.0,
//! TLS 1.1), and the reading of what a server answers to one. A safe server answers with an
//! alert or closes; a ServerHello means it was willing to negotiate. This module only builds
//! and reads bytes: `target` sends them.

/// TLS record content types and the handshake message type this module reads.
const HANDSHAKE: u8 = 0x16;
const ALERT: u8 = 0x15;
const SERVER_HELLO: u8 = 0x02;
const CLIENT_HELLO: u8 = 0x01;

/// CBC suites every pre-1.2 server supports, RSA and ECDHE (RFC 5246 Appendix A.5, RFC 4492).
const SUITES: &[u16] = &[0xc013, 0xc014, 0xc009, 0xc00a, 0x002f, 0x0035, 0x000a];

/// What a server sent back to an old ClientHello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelloAnswer {
    /// A TLS alert (level, description).
    Alert(u8, u8),
    /// The connection closed (or reset, or timed out) with nothing sent.
    Closed,
    /// A ServerHello choosing this protocol version.
    ServerHello(u16),
    /// Bytes that are neither (their first byte).
    Other(u8),
}

/// A ClientHello offering only `version` (0x0300 SSL 3.0, 0x0301 TLS 1.0, 0x0302 TLS 1.1), with
/// SNI when `server_name` is a DNS name, and no `supported_versions` extension, so the server
/// cannot pick TLS 1.2 or 1.3 from it.
pub fn client_hello(version: u16, server_name: Option<&str>) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&version.to_be_bytes());
    // The random need not be random: nothing will be derived from it.
    body.extend_from_slice(&[0x5a; 32]);
    body.push(0); // no session id
    push_u16(&mut body, u16::try_from(SUITES.len() * 2).unwrap_or(0));
    for suite in SUITES {
        body.extend_from_slice(&suite.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // compression: null only
    let mut extensions = Vec::new();
    if let Some(name) = server_name {
        // RFC 6066 §3: a list holding one host_name entry.
        let name = name.as_bytes();
        let entry_len = u16::try_from(name.len()).unwrap_or(0);
        extension(&mut extensions, 0x0000, &{
            let mut data = Vec::new();
            push_u16(&mut data, entry_len + 3);
            data.push(0);
            push_u16(&mut data, entry_len);
            data.extend_from_slice(name);
            data
        });
    }
    // supported_groups: x25519, secp256r1, secp384r1; ec_point_formats: uncompressed.
    extension(&mut extensions, 0x000a, &[0, 6, 0, 0x1d, 0, 0x17, 0, 0x18]);
    extension(&mut extensions, 0x000b, &[1, 0]);
    push_u16(&mut body, u16::try_from(extensions.len()).unwrap_or(0));
    body.extend_from_slice(&extensions);

    let mut handshake = vec![CLIENT_HELLO];
    let len = u32::try_from(body.len()).unwrap_or(0).to_be_bytes();
    handshake.extend_from_slice(&len[1..]);
    handshake.extend_from_slice(&body);

    // The record layer says TLS 1.0 as old clients did, whatever the hello offers.
    let mut record = vec![HANDSHAKE, 0x03, 0x01];
    push_u16(&mut record, u16::try_from(handshake.len()).unwrap_or(0));
    record.extend_from_slice(&handshake);
    record
}

/// Reads the first bytes a server sent back.
pub fn classify(bytes: &[u8]) -> HelloAnswer {
    match bytes {
        [] => HelloAnswer::Closed,
        [ALERT, _, _, _, _, level, description, ..] => HelloAnswer::Alert(*level, *description),
        [
            HANDSHAKE,
            _,
            _,
            _,
            _,
            SERVER_HELLO,
            _,
            _,
            _,
            major,
            minor,
            ..,
        ] => HelloAnswer::ServerHello(u16::from_be_bytes([*major, *minor])),
        [first, ..] => HelloAnswer::Other(*first),
    }
}

/// The name of a protocol version, for reports.
pub fn version_name(version: u16) -> &'static str {
    match version {
        0x0300 => "SSL 3.0",
        0x0301 => "TLS 1.0",
        0x0302 => "TLS 1.1",
        0x0303 => "TLS 1.2",
        0x0304 => "TLS 1.3",
        _ => "an unknown version",
    }
}

fn push_u16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_be_bytes());
}

fn extension(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
    push_u16(out, kind);
    push_u16(out, u16::try_from(data.len()).unwrap_or(0));
    out.extend_from_slice(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hello_is_one_well_framed_record() {
        let hello = client_hello(0x0301, Some("gw.test"));
        assert_eq!(hello[0], HANDSHAKE);
        let record_len = usize::from(u16::from_be_bytes([hello[3], hello[4]]));
        assert_eq!(record_len, hello.len() - 5);
        assert_eq!(hello[5], CLIENT_HELLO);
        let body_len = usize::from(u16::from_be_bytes([hello[7], hello[8]]));
        assert_eq!(body_len, hello.len() - 9);
        assert_eq!(&hello[9..11], &[0x03, 0x01]);
        assert!(hello.windows(7).any(|w| w == b"gw.test"));
        assert!(
            !client_hello(0x0302, None)
                .windows(7)
                .any(|w| w == b"gw.test")
        );
    }

    #[test]
    fn answers_are_told_apart() {
        assert_eq!(classify(&[]), HelloAnswer::Closed);
        assert_eq!(
            classify(&[0x15, 3, 3, 0, 2, 2, 70]),
            HelloAnswer::Alert(2, 70)
        );
        assert_eq!(
            classify(&[0x16, 3, 1, 0, 50, 2, 0, 0, 46, 3, 1, 0]),
            HelloAnswer::ServerHello(0x0301)
        );
        assert_eq!(classify(b"HTTP/1.1 400"), HelloAnswer::Other(b'H'));
    }
}
