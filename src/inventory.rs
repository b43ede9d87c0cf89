//! The hosts file (inventory) shared by `echo-client check --hosts` and the
//! deploy tooling, so one file describes a fleet for every tool.
//!
//! One host per line, as `[USER@]HOST[:SSH_PORT]` (the same form as
//! `echo-deploy --host`), optionally followed by `key=value` settings:
//! `echo_port=PORT` (where the echo service listens), `hostkey=SHA256:...`
//! (the SSH host key, pinned for PuTTY) and `config=FILE` (the config a
//! first install gives that host). `#` starts a comment. A mistake is
//! reported with its line number, and an unknown key is a mistake.

use std::fmt;
use std::path::Path;

use crate::address::{Host, HostPort};

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
    for (index, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let fail = |message: String| InventoryError {
            origin: origin.to_string(),
            line: Some(index + 1),
            message,
        };
        hosts.push(parse_line(line, index + 1).map_err(fail)?);
    }
    Ok(hosts)
}

fn parse_line(line: &str, line_no: usize) -> Result<InventoryHost, String> {
    let mut fields = line.split_whitespace();
    let destination = fields.next().unwrap_or_default();
    let (user, address) = match destination.rsplit_once('@') {
        Some((user, address)) if !user.is_empty() => (Some(user.to_string()), address),
        Some(_) => return Err(format!("`{destination}`: the user before `@` is empty")),
        None => (None, destination),
    };
    let (host, ssh_port) = HostPort::parse_optional_port(address)?;
    let mut host = InventoryHost {
        line: line_no,
        user,
        host,
        ssh_port,
        echo_port: None,
        hostkey: None,
        config: None,
    };
    for setting in fields {
        let (key, value) = setting
            .split_once('=')
            .ok_or_else(|| format!("`{setting}`: settings are written key=value"))?;
        match key {
            "echo_port" => {
                let port = value
                    .parse()
                    .map_err(|_| format!("echo_port `{value}`: expected a port number"))?;
                set_once(&mut host.echo_port, port, key)?;
            }
            "config" => set_once(&mut host.config, value.to_string(), key)?,
            "hostkey" => {
                if !value.starts_with("SHA256:") {
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
        let text = "# fleet\n\nweb1\nadmin@web2:2222 echo_port=7   # the old one\n[2001:db8::1]:22 hostkey=SHA256:abc\n::1\n";
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
            (Some(22), Some("SHA256:abc"))
        );
        assert_eq!((hosts[3].host.as_str(), hosts[3].ssh_port), ("::1", None));
    }

    #[test]
    fn mistakes_name_the_line() {
        for (text, needle) in [
            ("web1 port=7", "unknown setting `port`"),
            ("web1 echo_port=x", "expected a port number"),
            ("web1 echo_port", "key=value"),
            ("web1 hostkey=abc", "SHA256:"),
            ("@web1", "user before `@` is empty"),
            ("web1:99999", "0 to 65535"),
            ("web1 echo_port=1 echo_port=2", "given twice"),
        ] {
            let err = parse(&format!("# first\n{text}\n"), "hosts").unwrap_err();
            assert_eq!(err.line, Some(2), "{text}");
            assert!(err.to_string().contains(needle), "{text}: {err}");
        }
    }
}
