//! Host names and `HOST:PORT` pairs, as operators write them.
//!
//! The server's `listen` entries and the client's targets are the same
//! thing to a user, so they are parsed by the same code and fail with the
//! same advice. IPv6 addresses take brackets when a port follows, as in URLs.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

/// An IP address (IPv6 with or without brackets) or a name to resolve.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Host(String);

impl Host {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Host {
    type Err = String;

    fn from_str(s: &str) -> Result<Host, String> {
        let unbracketed = s
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .unwrap_or(s);
        if unbracketed.is_empty() {
            return Err(
                "the host is empty: give an address such as 127.0.0.1, ::1 or 0.0.0.0".to_string(),
            );
        }
        if unbracketed.contains(':') && unbracketed.parse::<Ipv6Addr>().is_err() {
            return Err(format!(
                "`{s}` is not a host: give the address without a port (use `port`, or `listen = [\"HOST:PORT\"]`)"
            ));
        }
        let name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
        if !unbracketed.contains(':') && !unbracketed.chars().all(name_char) {
            return Err(format!(
                "`{s}` is not a host: use an IP address or a name of letters, digits, '-', '.' and '_'"
            ));
        }
        Ok(Host(unbracketed.to_string()))
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One `HOST:PORT` (or `[IPV6]:PORT`) entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub host: Host,
    pub port: u16,
}

impl FromStr for HostPort {
    type Err = String;

    fn from_str(s: &str) -> Result<HostPort, String> {
        let bad =
            || format!("`{s}` is not an address: write \"HOST:PORT\", or \"[IPV6]:PORT\" for IPv6");
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (host, port) = rest.split_once("]:").ok_or_else(bad)?;
            (format!("[{host}]"), port)
        } else {
            let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
            if host.contains(':') {
                return Err(format!(
                    "`{s}`: put an IPv6 address in brackets, as in \"[::1]:7\""
                ));
            }
            (host.to_string(), port)
        };
        let port = port
            .parse::<u16>()
            .map_err(|_| format!("`{s}`: the port must be a number from 0 to 65535"))?;
        Ok(HostPort {
            host: host.parse()?,
            port,
        })
    }
}

impl HostPort {
    /// Like `parse`, but a bare host (`example.com`, `::1`, `[::1]`) gets
    /// `default_port`.
    pub fn parse_with_default_port(s: &str, default_port: u16) -> Result<HostPort, String> {
        let (host, port) = HostPort::parse_optional_port(s)?;
        Ok(HostPort {
            host,
            port: port.unwrap_or(default_port),
        })
    }

    /// Splits `HOST[:PORT]`, where a bare IPv6 address has no port.
    pub fn parse_optional_port(s: &str) -> Result<(Host, Option<u16>), String> {
        let bare_ipv6 = s.parse::<Ipv6Addr>().is_ok();
        let bracketed_only = s.starts_with('[') && s.ends_with(']');
        if bare_ipv6 || bracketed_only || !s.contains(':') {
            return Ok((s.parse()?, None));
        }
        let HostPort { host, port } = s.parse()?;
        Ok((host, Some(port)))
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.0.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

super::serde_via_str!(Host);
super::serde_via_str!(HostPort);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_host_gets_the_default_port() {
        for (input, expected) in [
            ("example.com", "example.com:65432"),
            ("example.com:7", "example.com:7"),
            ("::1", "[::1]:65432"),
            ("[::1]", "[::1]:65432"),
            ("[::1]:7", "[::1]:7"),
            ("10.0.0.1", "10.0.0.1:65432"),
        ] {
            let parsed = HostPort::parse_with_default_port(input, 65432).unwrap();
            assert_eq!(parsed.to_string(), expected, "{input}");
        }
        assert!(HostPort::parse_with_default_port("a:b", 1).is_err());
        for bad in ["[", "[::1", "a b", "host/path", "[]"] {
            assert!(bad.parse::<Host>().is_err(), "{bad}");
        }
    }
}
