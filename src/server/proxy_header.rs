//! The PROXY protocol header (versions 1 and 2), as HAProxy, AWS NLB and
//! Kubernetes ingresses put it in front of a connection they relay, so that
//! the echo can log the real client instead of the load balancer.
//!
//! Why a parser of its own rather than a crate (`ppp`, `proxy-header`):
//! the event loop reads the header incrementally into a bounded buffer that
//! exists only while the header is pending, and must learn as early as
//! possible that bytes are *not* a header (to close the connection without
//! waiting for the deadline). What it needs from a header is one address.
//! That is about two hundred lines here, with no allocation in the parser
//! and every malformed case tested below; the crates parse whole headers
//! into owned TLV lists, which this daemon would throw away.
//!
//! The format is HAProxy's `doc/proxy-protocol.txt`:
//! - v1 is one text line, `PROXY TCP4|TCP6 SRC DST SRCPORT DSTPORT\r\n` or
//!   `PROXY UNKNOWN ...\r\n`, at most 107 bytes with the CRLF;
//! - v2 is a 12-byte signature, a version/command byte (0x20 LOCAL, 0x21
//!   PROXY), a family/transport byte, a big-endian length, then that many
//!   bytes: the addresses, then TLVs, which are skipped here.
//!
//! LOCAL (v2, what HAProxy's health checks send), `UNKNOWN` (v1), the
//! families without an IP address (AF_UNSPEC, AF_UNIX) and transports other
//! than STREAM carry no client: the connection's own peer is the one to log.
//! For LOCAL the spec has the receiver ignore the family and discard the
//! address block, so only its length is checked.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The longest header accepted. A v1 header is at most 107 bytes; a v2
/// header is 16 bytes plus its length, which could be 64 KiB. The spec
/// asks senders to keep the header within 536 bytes (the smallest IPv4
/// MSS, so that it arrives in one segment), which leaves room for the
/// addresses of every family and a few hundred bytes of TLVs; a longer one
/// is refused rather than buffered.
pub(crate) const MAX_HEADER_LEN: usize = 536;

/// The longest v1 header, CRLF included (the spec's figure).
const MAX_V1_LEN: usize = 107;
const V1_PREFIX: &[u8] = b"PROXY ";
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Signature, version/command, family/transport and the 2-byte length.
const V2_FIXED_LEN: usize = 16;
/// The v2 transport of a TCP connection.
const V2_STREAM: u8 = 1;

/// What the bytes received so far amount to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// A valid beginning: more bytes are needed. Never returned for
    /// `MAX_HEADER_LEN` bytes or more.
    Incomplete,
    /// A whole header of `length` bytes; what follows it is data.
    Complete {
        length: usize,
        /// The client, or `None` when the header names none (LOCAL,
        /// UNKNOWN, no IP family, not a stream): then the connection's peer
        /// is the client.
        source: Option<SocketAddr>,
    },
}

/// Why bytes are not a PROXY protocol header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeaderError(&'static str);

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Parses the start of a connection's bytes.
pub(crate) fn parse(bytes: &[u8]) -> Result<Parsed, HeaderError> {
    match bytes.first() {
        None => Ok(Parsed::Incomplete),
        Some(b'P') => parse_v1(bytes),
        Some(b'\r') => parse_v2(bytes),
        Some(_) => Err(HeaderError(
            "not a PROXY protocol header (it starts with neither \"PROXY \" nor the v2 signature)",
        )),
    }
}

/// Whether `bytes` begins like `prefix` as far as both go.
fn agrees_with(bytes: &[u8], prefix: &[u8]) -> bool {
    let common = bytes.len().min(prefix.len());
    bytes[..common] == prefix[..common]
}

fn parse_v1(bytes: &[u8]) -> Result<Parsed, HeaderError> {
    if !agrees_with(bytes, V1_PREFIX) {
        return Err(HeaderError(
            "not a PROXY protocol header (v1 starts with \"PROXY \")",
        ));
    }
    let window = &bytes[..bytes.len().min(MAX_V1_LEN)];
    let Some(newline) = window.iter().position(|&b| b == b'\n') else {
        if window.len() == MAX_V1_LEN {
            return Err(HeaderError("v1 header without CRLF within 107 bytes"));
        }
        return Ok(Parsed::Incomplete);
    };
    let Some(line) = window[..newline].strip_suffix(b"\r") else {
        return Err(HeaderError("v1 header ends in LF without CR"));
    };
    let line = std::str::from_utf8(&line[V1_PREFIX.len()..])
        .map_err(|_| HeaderError("v1 header is not ASCII text"))?;
    let mut fields = line.split(' ');
    let source = match fields.next() {
        Some("UNKNOWN") => None,
        Some(family @ ("TCP4" | "TCP6")) => {
            let [source, destination, source_port, destination_port] =
                [(); 4].map(|()| fields.next());
            let (Some(source), Some(destination), Some(source_port), Some(destination_port), None) = (
                source,
                destination,
                source_port,
                destination_port,
                fields.next(),
            ) else {
                return Err(HeaderError(
                    "v1 header needs exactly four fields after TCP4/TCP6, separated by single spaces",
                ));
            };
            let source_ip = v1_address(family, source)?;
            v1_address(family, destination)?;
            let source_port = v1_port(source_port)?;
            v1_port(destination_port)?;
            Some(SocketAddr::new(source_ip, source_port))
        }
        _ => {
            return Err(HeaderError(
                "v1 header's protocol is not TCP4, TCP6 or UNKNOWN",
            ));
        }
    };
    Ok(Parsed::Complete {
        length: newline + 1,
        source,
    })
}

fn v1_address(family: &str, text: &str) -> Result<IpAddr, HeaderError> {
    if family == "TCP4" {
        text.parse::<Ipv4Addr>()
            .map(IpAddr::V4)
            .map_err(|_| HeaderError("v1 header has an address that is not IPv4 after TCP4"))
    } else {
        text.parse::<Ipv6Addr>()
            .map(IpAddr::V6)
            .map_err(|_| HeaderError("v1 header has an address that is not IPv6 after TCP6"))
    }
}

fn v1_port(text: &str) -> Result<u16, HeaderError> {
    let bad = HeaderError("v1 header has a port that is not a number from 0 to 65535");
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad);
    }
    text.parse().map_err(|_| bad)
}

fn parse_v2(bytes: &[u8]) -> Result<Parsed, HeaderError> {
    if !agrees_with(bytes, V2_SIGNATURE) {
        return Err(HeaderError(
            "not a PROXY protocol header (wrong v2 signature)",
        ));
    }
    let Some(fixed) = bytes.get(..V2_FIXED_LEN) else {
        return Ok(Parsed::Incomplete);
    };
    let (version, command) = (fixed[12] >> 4, fixed[12] & 0x0f);
    let (family, transport) = (fixed[13] >> 4, fixed[13] & 0x0f);
    if version != 2 {
        return Err(HeaderError("v2 header with a version other than 2"));
    }
    let local = match command {
        0 => true,
        1 => false,
        _ => {
            return Err(HeaderError(
                "v2 header with a command other than LOCAL or PROXY",
            ));
        }
    };
    if !local && (family > 3 || transport > 2) {
        return Err(HeaderError(
            "v2 header with an unknown address family or transport",
        ));
    }
    let length = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    let total = V2_FIXED_LEN + length;
    if total > MAX_HEADER_LEN {
        return Err(HeaderError("v2 header longer than 536 bytes"));
    }
    let Some(addresses) = bytes.get(V2_FIXED_LEN..total) else {
        return Ok(Parsed::Incomplete);
    };
    if local {
        return Ok(Parsed::Complete {
            length: total,
            source: None,
        });
    }
    // Each family's addresses: source, destination, then the two ports.
    let needed = match family {
        1 => 12,
        2 => 36,
        3 => 216,
        _ => 0,
    };
    if addresses.len() < needed {
        return Err(HeaderError("v2 header too short for its address family"));
    }
    let port = |at: usize| u16::from_be_bytes([addresses[at], addresses[at + 1]]);
    let source = match family {
        // HAProxy's receiver, too, takes addresses only from a stream: a
        // datagram's source is not this connection's client.
        _ if transport != V2_STREAM => None,
        1 => {
            let ip: [u8; 4] = addresses[..4].try_into().expect("4 bytes");
            Some(SocketAddr::new(Ipv4Addr::from(ip).into(), port(8)))
        }
        2 => {
            let ip: [u8; 16] = addresses[..16].try_into().expect("16 bytes");
            Some(SocketAddr::new(Ipv6Addr::from(ip).into(), port(32)))
        }
        _ => None,
    };
    Ok(Parsed::Complete {
        length: total,
        source,
    })
}

/// The header bytes of a connection whose header came in pieces: kept by
/// the event loop only until the header is complete, and never more than
/// `MAX_HEADER_LEN` bytes.
#[derive(Debug, Default)]
pub(crate) struct PartialHeader {
    buffered: Vec<u8>,
}

/// A complete header, found in the bytes fed last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// The client, if the header names one.
    pub(crate) source: Option<SocketAddr>,
    /// Where the data after the header begins in the bytes fed last.
    pub(crate) data_from: usize,
}

impl PartialHeader {
    /// Takes bytes just read: the header if they complete it (what follows
    /// it is data), `None` if more are needed.
    pub(crate) fn feed(&mut self, input: &[u8]) -> Result<Option<Header>, HeaderError> {
        let already = self.buffered.len();
        let parsed = if already == 0 {
            parse(input)?
        } else {
            let wanted = input.len().min(MAX_HEADER_LEN - already);
            self.buffered.extend_from_slice(&input[..wanted]);
            parse(&self.buffered)?
        };
        match parsed {
            Parsed::Complete { length, source } => Ok(Some(Header {
                source,
                // `already` bytes were incomplete, so the header is longer.
                data_from: length - already,
            })),
            Parsed::Incomplete => {
                if already == 0 {
                    // Fewer than MAX_HEADER_LEN bytes, or it would be complete
                    // or wrong. Room for the longest header at once: grown
                    // by doubling, the buffer would end up twice that.
                    self.buffered = Vec::with_capacity(MAX_HEADER_LEN);
                    self.buffered.extend_from_slice(input);
                }
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut header = V2_SIGNATURE.to_vec();
        header.push(command);
        header.push(family);
        header.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
        header.extend_from_slice(body);
        header
    }

    fn v2_ipv4_body() -> Vec<u8> {
        let mut body = vec![192, 0, 2, 7, 198, 51, 100, 1];
        body.extend_from_slice(&40000u16.to_be_bytes());
        body.extend_from_slice(&7u16.to_be_bytes());
        body
    }

    fn complete(bytes: &[u8]) -> (usize, Option<SocketAddr>) {
        match parse(bytes) {
            Ok(Parsed::Complete { length, source }) => (length, source),
            other => panic!("{bytes:?}: {other:?}"),
        }
    }

    fn error(bytes: &[u8]) -> String {
        match parse(bytes) {
            Err(e) => e.to_string(),
            other => panic!("{bytes:?} parsed as {other:?}"),
        }
    }

    /// Every proper prefix of a valid header is incomplete, not an error.
    fn assert_prefixes_incomplete(header: &[u8]) {
        for end in 0..header.len() {
            assert_eq!(parse(&header[..end]), Ok(Parsed::Incomplete), "{end}");
        }
    }

    #[test]
    fn v1_tcp4_and_tcp6_name_the_source() {
        let header = b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 7\r\n";
        assert_prefixes_incomplete(header);
        let mut with_data = header.to_vec();
        with_data.extend_from_slice(b"hello");
        assert_eq!(
            complete(&with_data),
            (header.len(), Some("192.0.2.7:40000".parse().unwrap()))
        );
        let header = b"PROXY TCP6 2001:db8::7 2001:db8::1 65535 7\r\n";
        assert_eq!(
            complete(header),
            (header.len(), Some("[2001:db8::7]:65535".parse().unwrap()))
        );
    }

    #[test]
    fn v1_unknown_names_no_source() {
        assert_eq!(complete(b"PROXY UNKNOWN\r\n"), (15, None));
        let header = b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n";
        assert_eq!(complete(header), (header.len(), None));
    }

    #[test]
    fn v1_longest_header_fits() {
        let header = b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        assert_eq!(header.len(), MAX_V1_LEN - 3);
        assert_eq!(complete(header).0, header.len());
    }

    #[test]
    fn v1_malformed() {
        for (bytes, needle) in [
            (&b"GET / HTTP/1.1\r\n"[..], "neither"),
            (b"PROXX TCP4", "starts with \"PROXY \""),
            (
                b"PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n",
                "not TCP4, TCP6 or UNKNOWN",
            ),
            (b"PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n", "exactly four"),
            (b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2 3\r\n", "exactly four"),
            (b"PROXY TCP4 1.2.3.400 1.2.3.4 1 2\r\n", "not IPv4"),
            (b"PROXY TCP4 ::1 1.2.3.4 1 2\r\n", "not IPv4"),
            (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "not IPv6"),
            (b"PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n", "port"),
            (b"PROXY TCP4 1.2.3.4 1.2.3.4 -1 2\r\n", "port"),
            (b"PROXY TCP4 1.2.3.4 1.2.3.4 +1 2\r\n", "port"),
            (b"PROXY TCP4  1.2.3.4 1.2.3.4 1 2\r\n", "single spaces"),
            (b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n", "LF without CR"),
            (b"PROXY \xff\r\n", "not ASCII"),
        ] {
            let message = error(bytes);
            assert!(message.contains(needle), "{bytes:?}: {message}");
        }
    }

    #[test]
    fn v1_without_crlf_within_107_bytes_is_refused() {
        let mut line = b"PROXY UNKNOWN ".to_vec();
        line.resize(MAX_V1_LEN - 1, b'x');
        assert_eq!(parse(&line), Ok(Parsed::Incomplete));
        line.push(b'x');
        assert!(error(&line).contains("107"));
        // A CRLF just past the limit comes too late.
        line.extend_from_slice(b"\r\n");
        assert!(error(&line).contains("107"));
    }

    #[test]
    fn v2_proxy_ipv4_and_ipv6_name_the_source() {
        let header = v2(0x21, 0x11, &v2_ipv4_body());
        assert_prefixes_incomplete(&header);
        assert_eq!(
            complete(&header),
            (28, Some("192.0.2.7:40000".parse().unwrap()))
        );
        let mut body = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7)
            .octets()
            .to_vec();
        body.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        body.extend_from_slice(&[0x9c, 0x40, 0, 7]);
        assert_eq!(
            complete(&v2(0x21, 0x21, &body)),
            (52, Some("[2001:db8::7]:40000".parse().unwrap()))
        );
    }

    #[test]
    fn v2_tlvs_are_skipped_and_data_follows() {
        let mut body = v2_ipv4_body();
        // PP2_TYPE_ALPN and PP2_TYPE_AUTHORITY, which this daemon ignores.
        body.extend_from_slice(&[0x01, 0, 2, b'h', b'2', 0x02, 0, 3, b'a', b'.', b'b']);
        let mut bytes = v2(0x21, 0x11, &body);
        let length = bytes.len();
        bytes.extend_from_slice(b"data");
        assert_eq!(
            complete(&bytes),
            (length, Some("192.0.2.7:40000".parse().unwrap()))
        );
    }

    #[test]
    fn v2_local_and_addressless_families_name_no_source() {
        // LOCAL, as HAProxy's health checks send it, with and without addresses.
        assert_eq!(complete(&v2(0x20, 0x00, &[])), (16, None));
        assert_eq!(complete(&v2(0x20, 0x11, &v2_ipv4_body())), (28, None));
        // PROXY with AF_UNSPEC, and with AF_UNIX.
        assert_eq!(complete(&v2(0x21, 0x00, &[])), (16, None));
        assert_eq!(complete(&v2(0x21, 0x31, &[0; 216])), (232, None));
    }

    #[test]
    fn v2_local_ignores_family_transport_and_addresses() {
        // The spec: for LOCAL the receiver ignores the family and discards
        // the address block, whatever it holds.
        for family in [0x00, 0x11, 0x13, 0x22, 0x41, 0xff] {
            assert_eq!(complete(&v2(0x20, family, &[])), (16, None), "{family:#x}");
            assert_eq!(
                complete(&v2(0x20, family, &[7; 20])),
                (36, None),
                "{family:#x}"
            );
        }
        // Only the length is still bounded.
        assert!(error(&v2(0x20, 0x11, &vec![0; MAX_HEADER_LEN - 15])).contains("longer than 536"));
    }

    #[test]
    fn v2_proxy_over_udp_names_no_source() {
        // Only STREAM carries the client of a TCP connection (as HAProxy's
        // receiver has it): DGRAM and UNSPEC transports name none.
        let body = v2_ipv4_body();
        assert_eq!(complete(&v2(0x21, 0x12, &body)), (28, None));
        assert_eq!(complete(&v2(0x21, 0x10, &body)), (28, None));
        let ipv6 = [0; 36];
        assert_eq!(complete(&v2(0x21, 0x22, &ipv6)), (52, None));
    }

    #[test]
    fn v2_malformed() {
        let mut wrong_signature = v2(0x21, 0x11, &v2_ipv4_body());
        wrong_signature[6] = b'X';
        let body = v2_ipv4_body();
        for (bytes, needle) in [
            (wrong_signature, "signature"),
            (b"\r\n\r\nGET".to_vec(), "signature"),
            (v2(0x11, 0x11, &body), "version"),
            (v2(0x22, 0x11, &body), "command"),
            (v2(0x21, 0x41, &body), "family"),
            (v2(0x21, 0x13, &body), "transport"),
            (v2(0x21, 0x11, &body[..11]), "too short"),
            (v2(0x21, 0x21, &body), "too short"),
            (v2(0x21, 0x31, &[0; 100]), "too short"),
            (
                v2(0x21, 0x11, &vec![0; MAX_HEADER_LEN - 15]),
                "longer than 536",
            ),
        ] {
            let message = error(&bytes);
            assert!(message.contains(needle), "{bytes:?}: {message}");
        }
        // The length alone is enough to refuse a header that would not fit.
        let mut oversized = v2(0x21, 0x11, &[]);
        oversized[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
        assert!(error(&oversized).contains("longer than 536"));
        // The longest accepted header.
        assert_eq!(
            complete(&v2(0x21, 0x11, &vec![0; MAX_HEADER_LEN - 16])).0,
            MAX_HEADER_LEN
        );
    }

    /// Feeds `bytes` in pieces of `step`, as reads might deliver them.
    fn feed_in_steps(bytes: &[u8], step: usize) -> (Header, usize) {
        let mut partial = PartialHeader::default();
        let mut offset = 0;
        for piece in bytes.chunks(step) {
            if let Some(header) = partial.feed(piece).unwrap() {
                return (header, offset + header.data_from);
            }
            assert!(partial.buffered.len() < MAX_HEADER_LEN);
            offset += piece.len();
        }
        panic!("no header in {bytes:?}");
    }

    #[test]
    fn a_header_fed_in_pieces_ends_where_the_data_begins() {
        let mut v1 = b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 7\r\n".to_vec();
        let v1_length = v1.len();
        v1.extend_from_slice(b"echo me");
        // A v2 header near the limit: the addresses and a PP2_TYPE_NOOP TLV.
        let mut body = v2_ipv4_body();
        body.extend_from_slice(&[0x04, 0x01, 0xe0]);
        body.resize(body.len() + 0x1e0, 0);
        let mut v2 = v2(0x21, 0x11, &body);
        let v2_length = v2.len();
        assert!(v2_length > 500 && v2_length <= MAX_HEADER_LEN);
        v2.extend_from_slice(b"echo me");
        for (bytes, length) in [(v1, v1_length), (v2, v2_length)] {
            for step in [1, 2, 5, 16, 1000] {
                let (header, data_from) = feed_in_steps(&bytes, step);
                assert_eq!(data_from, length, "step {step}");
                assert_eq!(header.source, Some("192.0.2.7:40000".parse().unwrap()));
            }
        }
    }

    #[test]
    fn a_header_fed_byte_by_byte_allocates_the_limit_once() {
        // A v2 header of 535 bytes, fed as slowly as it can come: the
        // buffer must not double past the limit on the way.
        let header = v2(0x21, 0x11, &vec![0; MAX_HEADER_LEN - 17]);
        let mut partial = PartialHeader::default();
        for byte in &header[..header.len() - 1] {
            assert_eq!(partial.feed(&[*byte]), Ok(None));
            assert!(partial.buffered.capacity() <= MAX_HEADER_LEN);
        }
        assert!(partial.feed(&header[header.len() - 1..]).unwrap().is_some());
    }

    #[test]
    fn a_partial_header_never_holds_more_than_the_limit() {
        let mut partial = PartialHeader::default();
        let mut bytes = b"PROXY UNKNOWN ".to_vec();
        bytes.resize(100, b'x');
        assert_eq!(partial.feed(&bytes), Ok(None));
        assert!(partial.feed(&[b'x'; 10_000]).is_err());
        assert!(partial.buffered.len() <= MAX_HEADER_LEN);
    }
}
