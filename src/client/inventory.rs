//! The hosts file (inventory) shared by `echo-client check --hosts` and the
//! deploy tooling, so one file describes a fleet for every tool.
//!
//! One host per line, as `[USER@]HOST[:SSH_PORT]` (the same form as
//! `echo-deploy --host`), optionally followed by `key=value` settings:
//! `echo_port=PORT` (where the echo service listens), `hostkey=SHA256:...`
//! (the SSH host key, pinned for PuTTY) and `config=FILE` (the config a
//! first install gives that host). `#` starts a comment. A mistake is
//! reported with its line number, and an unknown key is a mistake.
//!
//! `deploy/echo-deploy` reads the same files in bash and hands their names
//! to ssh, so the grammar is strict where a shell could be fooled: names of
//! letters, digits, '.', '_' and '-' that cannot pass for an option, ports
//! in plain digits, no control characters. Both parsers are held to the
//! lines of `tests/data/inventory-lines.json`; a line ending in CR LF (a
//! file written on Windows) reads as if it ended in LF.

use std::fmt;
use std::path::Path;

use std::net::Ipv6Addr;

use crate::shared::address::{Host, HostPort};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryHost {
    /// 1-based line number in the file.
    pub line: usize,
    pub user: Option<String>,
    pub host: Host,
    pub ssh_port: Option<u16>,
    pub echo_port: Option<u16>,
    pub hostkey: Option<String>,
    /// The config file for a first install on this host (echo-deploy).
    pub config: Option<String>,
}

impl InventoryHost {
    /// The echo service's address on this host.
    pub fn echo_target(&self, default_port: u16) -> HostPort {
        HostPort {
            host: self.host.clone(),
            port: self.echo_port.unwrap_or(default_port),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryError {
    pub origin: String,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for InventoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}, line {line}: {}", self.origin, self.message),
            None => write!(f, "{}: {}", self.origin, self.message),
        }
    }
}

impl std::error::Error for InventoryError {}

/// Reads and parses an inventory file.
pub fn load(path: &Path) -> Result<Vec<InventoryHost>, InventoryError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| InventoryError {
        origin: origin.clone(),
        line: None,
        message: format!("cannot read the hosts file: {e}"),
    })?;
    parse(&text, &origin)
}

pub fn parse(text: &str, origin: &str) -> Result<Vec<InventoryHost>, InventoryError> {
    let mut hosts = Vec::new();
    for (index, raw) in text.split('\n').enumerate() {
        let fail = |message: String| InventoryError {
            origin: origin.to_string(),
            line: Some(index + 1),
            message,
        };
        // A file written on Windows ends its lines with CR LF.
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let line = raw.split('#').next().unwrap_or("");
        if line.chars().any(|c| c.is_control() && c != '\t') {
            return Err(fail("a control character in the line".to_string()));
        }
        let mut fields = line.split([' ', '\t']).filter(|field| !field.is_empty());
        let Some(destination) = fields.next() else {
            continue;
        };
        hosts.push(parse_line(destination, fields, index + 1).map_err(fail)?);
    }
    Ok(hosts)
}

/// A user or host name: letters, digits, '.', '_' and '-', not starting
/// with '-' (which ssh would read as an option) or '.'.
fn is_name(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// A port from 1 to 65535, in plain digits (no sign, no leading zero,
/// which a shell would read as octal).
fn parse_port(text: &str) -> Option<u16> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    if !digits || text.starts_with('0') {
        return None;
    }
    text.parse().ok()
}

/// Splits `HOST[:PORT]`: a name or IPv4 address with an optional port, an
/// IPv6 address bare, or in brackets with an optional port.
fn parse_address(address: &str, destination: &str) -> Result<(Host, Option<u16>), String> {
    let bad_port = || format!("`{destination}`: the port must be a number from 1 to 65535");
    let ipv6 = |text: &str| text.parse::<Ipv6Addr>().is_ok();
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        let (inside, after) = rest
            .split_once(']')
            .filter(|(inside, _)| ipv6(inside))
            .ok_or_else(|| format!("`{destination}`: brackets hold an IPv6 address"))?;
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .and_then(parse_port)
                    .ok_or_else(bad_port)?,
            ),
        };
        (inside, port)
    } else if ipv6(address) {
        (address, None)
    } else {
        let (host, port) = match address.rsplit_once(':') {
            Some((host, port)) => (
                host,
                Some(parse_port(port).ok_or_else(|| {
                    format!(
                        "{} (an IPv6 address with a port takes brackets)",
                        bad_port()
                    )
                })?),
            ),
            None => (address, None),
        };
        if !is_name(host) {
            return Err(format!(
                "`{destination}`: the host must be an IP address or a name of letters, digits, '.', '_' and '-'"
            ));
        }
        (host, port)
    };
    Ok((host.parse()?, port))
}

fn parse_line<'a>(
    destination: &str,
    settings: impl Iterator<Item = &'a str>,
    line_no: usize,
) -> Result<InventoryHost, String> {
    let (user, address) = match destination.rsplit_once('@') {
        Some((user, address)) if is_name(user) => (Some(user.to_string()), address),
        Some(_) => {
            return Err(format!(
                "`{destination}`: the user before `@` must be letters, digits, '.', '_' and '-'"
            ));
        }
        None => (None, destination),
    };
    let (host, ssh_port) = parse_address(address, destination)?;
    let mut host = InventoryHost {
        line: line_no,
        user,
        host,
        ssh_port,
        echo_port: None,
        hostkey: None,
        config: None,
    };
    for setting in settings {
        let (key, value) = setting
            .split_once('=')
            .ok_or_else(|| format!("`{setting}`: settings are written key=value"))?;
        match key {
            "echo_port" => {
                let port = parse_port(value).ok_or_else(|| {
                    format!("echo_port `{value}`: expected a port number from 1 to 65535")
                })?;
                set_once(&mut host.echo_port, port, key)?;
            }
            "config" if value.is_empty() => {
                return Err("config: the file name is empty".to_string());
            }
            "config" => set_once(&mut host.config, value.to_string(), key)?,
            "hostkey" => {
                if !is_sha256_fingerprint(value) {
                    return Err(format!(
                        "hostkey `{value}`: expected SHA256:... as printed by `ssh-keygen -l -E sha256 -f KEY.pub`"
                    ));
                }
                set_once(&mut host.hostkey, value.to_string(), key)?;
            }
            _ => {
                return Err(format!(
                    "unknown setting `{key}` (known: echo_port, hostkey, config)"
                ));
            }
        }
    }
    Ok(host)
}

/// `SHA256:` and 43 characters of unpadded base64, as OpenSSH prints it
/// and PuTTY's -hostkey takes it.
fn is_sha256_fingerprint(value: &str) -> bool {
    value.strip_prefix("SHA256:").is_some_and(|hash| {
        hash.len() == 43
            && hash
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    })
}

fn set_once<T>(slot: &mut Option<T>, value: T, key: &str) -> Result<(), String> {
    if slot.replace(value).is_some() {
        return Err(format!("`{key}` is given twice"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_hosts_with_users_ports_and_settings() {
        let text = "# fleet\n\nweb1\nadmin@web2:2222 echo_port=7   # the old one\n[2001:db8::1]:22 hostkey=SHA256:Vb1iOXwPkUR3SU3o8yP/SaLO1YxPQjq+7zXt9sEz2Rk\n::1\n";
        let hosts = parse(text, "hosts").unwrap();
        assert_eq!(hosts.len(), 4);
        assert_eq!(hosts[0].echo_target(65432).to_string(), "web1:65432");
        assert_eq!(
            (hosts[1].user.as_deref(), hosts[1].ssh_port, hosts[1].line),
            (Some("admin"), Some(2222), 4)
        );
        assert_eq!(hosts[1].echo_target(65432).to_string(), "web2:7");
        assert_eq!(hosts[2].host.as_str(), "2001:db8::1");
        assert_eq!(
            (hosts[2].ssh_port, hosts[2].hostkey.as_deref()),
            (
                Some(22),
                Some("SHA256:Vb1iOXwPkUR3SU3o8yP/SaLO1YxPQjq+7zXt9sEz2Rk")
            )
        );
        assert_eq!((hosts[3].host.as_str(), hosts[3].ssh_port), ("::1", None));
    }

    /// The lines that echo-deploy is held to as well (tests/inventory.rs).
    #[test]
    fn the_shared_grammar_table() {
        let table: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/data/inventory-lines.json")).unwrap();
        for row in table["accepted"].as_array().unwrap() {
            let line = row[0].as_str().unwrap();
            let hosts = parse(line, "hosts").unwrap_or_else(|e| panic!("{line:?}: {e}"));
            let host = &hosts[0];
            assert_eq!(host.user.as_deref(), row[1].as_str(), "{line:?}");
            assert_eq!(host.host.as_str(), row[2].as_str().unwrap(), "{line:?}");
            assert_eq!(host.ssh_port.map(u64::from), row[3].as_u64(), "{line:?}");
        }
        for row in table["rejected"].as_array().unwrap() {
            let line = row.as_str().unwrap();
            assert!(parse(line, "hosts").is_err(), "accepted {line:?}");
        }
    }

    #[test]
    fn mistakes_name_the_line() {
        for (text, needle) in [
            ("web1 port=7", "unknown setting `port`"),
            ("web1 echo_port=x", "expected a port number"),
            ("web1 echo_port", "key=value"),
            ("web1 hostkey=abc", "SHA256:"),
            ("@web1", "the user before `@`"),
            ("web1:99999", "1 to 65535"),
            ("web1 echo_port=1 echo_port=2", "given twice"),
        ] {
            let err = parse(&format!("# first\n{text}\n"), "hosts").unwrap_err();
            assert_eq!(err.line, Some(2), "{text}");
            assert!(err.to_string().contains(needle), "{text}: {err}");
        }
    }
}
