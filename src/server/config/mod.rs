//! The daemon's configuration: what it may contain (the schema, here), where
//! it comes from (`source`), its defaults (`defaults`: the shipped file) and
//! how a mistake in it is reported (`diagnostics`).
//!
//! Operators edit one TOML file, so every error has to point at the line that
//! is wrong and say what would be right. Values are checked while they are
//! deserialized wherever possible, because that is where `toml` knows the
//! position; the few checks that span several keys carry their own spans.
//!
//! The shipped, commented `config/echo-server.toml` is compiled in and *is*
//! the built-in default, so the documentation and the behaviour cannot drift.

mod defaults;
mod diagnostics;
mod source;

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};
use toml::Spanned;

pub use crate::shared::address::Host;
use crate::shared::address::HostPort;
use crate::shared::duration::HumanDuration;
pub use defaults::DEFAULT_CONFIG_TOML;
pub(crate) use diagnostics::ConfigError;
pub(crate) use source::{CONFIG_ENV_VAR, ConfigSource, SYSTEM_CONFIG_PATH};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    #[serde(default = "defaults::section")]
    pub(crate) server: ServerConfig,
    #[serde(default = "defaults::section")]
    pub(crate) log: LogConfig,
    #[serde(default = "defaults::section")]
    pub(crate) daemon: DaemonConfig,
    #[serde(default = "defaults::section")]
    pub(crate) metrics: MetricsConfig,
    /// TLS listeners; none unless the section is there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) tls: Option<TlsConfig>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServerConfig {
    /// The simple form: one host (address or name)...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) host: Option<Spanned<Host>>,
    /// ...and one port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) port: Option<u16>,
    /// The general form: any number of `HOST:PORT` entries, each of which
    /// may be a table that also turns on the PROXY protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) listen: Option<Spanned<Vec<ListenEntry>>>,
    #[serde(default = "defaults::udp")]
    pub(crate) udp: bool,
    #[serde(default = "defaults::udp_rate_limit")]
    pub(crate) udp_rate_limit: u32,
    #[serde(
        default = "defaults::max_connections",
        deserialize_with = "at_least_one"
    )]
    pub(crate) max_connections: usize,
    #[serde(default = "defaults::idle_timeout")]
    pub(crate) idle_timeout: HumanDuration,
    #[serde(default = "defaults::shutdown_grace")]
    pub(crate) shutdown_grace: HumanDuration,
    /// How long a connection to a `proxy_protocol` listener may take to
    /// send its header.
    #[serde(
        default = "defaults::proxy_protocol_timeout",
        deserialize_with = "non_zero_duration"
    )]
    pub(crate) proxy_protocol_timeout: HumanDuration,
    /// How long a connection to a `[tls]` listener may take to complete
    /// its handshake, whatever `idle_timeout` says.
    #[serde(
        default = "defaults::tls_handshake_timeout",
        deserialize_with = "non_zero_duration"
    )]
    pub(crate) tls_handshake_timeout: HumanDuration,
    /// Threads serving TCP; 0 means one per CPU the daemon may run on.
    #[serde(default = "defaults::workers", deserialize_with = "worker_count")]
    pub(crate) workers: usize,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogConfig {
    #[serde(default = "defaults::level")]
    pub(crate) level: LogLevel,
    #[serde(default = "defaults::format")]
    pub(crate) format: LogFormat,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "non_empty_directory"
    )]
    pub(crate) directory: Option<PathBuf>,
    #[serde(default = "defaults::rotation")]
    pub(crate) rotation: Rotation,
    #[serde(default = "defaults::max_files")]
    pub(crate) max_files: usize,
}

/// One address to listen on: `"HOST:PORT"`, or the table
/// `{ address = "HOST:PORT", proxy_protocol = true }` for a listener behind
/// a load balancer that sends the PROXY protocol header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListenEntry {
    pub(crate) address: HostPort,
    /// Every connection must start with a PROXY protocol header (v1 or v2),
    /// which names the client; it is consumed, not echoed.
    pub(crate) proxy_protocol: bool,
}

/// The table form of a `listen` entry, as written in the file.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct ListenTable {
    address: HostPort,
    #[serde(default)]
    proxy_protocol: bool,
}

impl<'de> Deserialize<'de> for ListenEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntryVisitor;

        impl<'de> serde::de::Visitor<'de> for EntryVisitor {
            type Value = ListenEntry;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"HOST:PORT\" or { address = \"HOST:PORT\", proxy_protocol = true }")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<ListenEntry, E> {
                Ok(ListenEntry {
                    address: text.parse().map_err(E::custom)?,
                    proxy_protocol: false,
                })
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<ListenEntry, A::Error> {
                let table =
                    ListenTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(ListenEntry {
                    address: table.address,
                    proxy_protocol: table.proxy_protocol,
                })
            }
        }

        deserializer.deserialize_any(EntryVisitor)
    }
}

impl Serialize for ListenEntry {
    /// The plain form unless the entry needs the table.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.proxy_protocol {
            ListenTable {
                address: self.address.clone(),
                proxy_protocol: true,
            }
            .serialize(serializer)
        } else {
            self.address.serialize(serializer)
        }
    }
}

/// Settings for `--daemon` (classic daemon mode); ignored otherwise.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DaemonConfig {
    #[serde(default = "defaults::pid_file")]
    pub(crate) pid_file: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) group: Option<String>,
}

/// The Prometheus endpoint; off unless `listen` is set.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MetricsConfig {
    /// Where to serve `/metrics`: an address of its own, never an echo one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) listen: Option<Spanned<HostPort>>,
}

impl MetricsConfig {
    pub(crate) fn address(&self) -> Option<&HostPort> {
        self.listen.as_ref().map(Spanned::get_ref)
    }

    /// The metrics address must not be one the echo listens on: a scraper
    /// would get an echo of its request, or the daemon would not start.
    fn validate(&self, server: &ServerConfig) -> Result<(), (Option<Range<usize>>, String)> {
        let Some(listen) = &self.listen else {
            return Ok(());
        };
        let metrics = listen.get_ref();
        let clash = server
            .listen_entries()
            .into_iter()
            .find(|entry| overlap(&entry.address, metrics));
        match clash {
            Some(entry) => Err((
                Some(listen.span()),
                format!(
                    "the metrics address {metrics} overlaps the echo address {}: give [metrics] a port of its own (e.g. 9862)",
                    entry.address
                ),
            )),
            None => Ok(()),
        }
    }
}

/// The TLS echo: listeners of its own beside the plain ones, and the
/// certificate they present. The files are read by `server::tls`, at start
/// and on every reload; a relative path is taken from the config file's
/// directory, so that it means the same after `--daemon` leaves the working
/// directory.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsConfig {
    /// `HOST:PORT` entries, never one of `[server] listen`'s.
    pub(crate) listen: Spanned<Vec<HostPort>>,
    /// The certificate chain in PEM: the server's certificate first.
    pub(crate) certificate: PathBuf,
    /// The certificate's private key in PEM (PKCS#8, PKCS#1 or SEC1).
    pub(crate) key: PathBuf,
    /// When set, clients must present a certificate issued by one of these
    /// CAs (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) client_ca: Option<PathBuf>,
    /// Application protocols offered by ALPN, most preferred first; a
    /// client that offers ALPN but none of these is refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) alpn: Vec<String>,
}

impl TlsConfig {
    fn validate(&self, server: &ServerConfig) -> Result<(), (Option<Range<usize>>, String)> {
        let listen = &self.listen;
        if listen.get_ref().is_empty() {
            return Err((
                Some(listen.span()),
                "[tls] listen is empty: give at least one \"ADDRESS:PORT\" (e.g. \"0.0.0.0:65443\")"
                    .to_string(),
            ));
        }
        for tls in listen.get_ref() {
            if let Some(plain) = server
                .listen_entries()
                .into_iter()
                .find(|entry| overlap(&entry.address, tls))
            {
                return Err((
                    Some(listen.span()),
                    format!(
                        "the TLS address {tls} overlaps the plain echo address {}: give [tls] a port of its own (e.g. 65443)",
                        plain.address
                    ),
                ));
            }
        }
        if let Some(bad) = self
            .alpn
            .iter()
            .find(|protocol| protocol.is_empty() || protocol.len() > 255)
        {
            return Err((
                None,
                format!(
                    "[tls] alpn: \"{bad}\" is not a protocol name (1 to 255 bytes, e.g. \"echo\")"
                ),
            ));
        }
        Ok(())
    }

    /// Takes relative paths from `directory`.
    fn anchor(&mut self, directory: &Path) {
        for path in [&mut self.certificate, &mut self.key]
            .into_iter()
            .chain(self.client_ca.as_mut())
        {
            if path.is_relative() {
                *path = directory.join(&*path);
            }
        }
    }
}

/// Whether two listen addresses would be the same socket: the same port
/// (not 0, which is a port of its own each time) on the same host or a
/// wildcard.
fn overlap(a: &HostPort, b: &HostPort) -> bool {
    let wildcard = |host: &Host| {
        host.as_str()
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_unspecified())
    };
    a.port != 0 && a.port == b.port && (a.host == b.host || wildcard(&a.host) || wildcard(&b.host))
}

/// Where a daemon (`--daemon`) logs when `[log] directory` is not set:
/// standard error is detached from any terminal there.
pub(crate) const DAEMON_LOG_DIRECTORY: &str = "/var/log/echo-server";

impl Default for Config {
    /// The built-in default: the shipped config file.
    fn default() -> Self {
        Config::parse(DEFAULT_CONFIG_TOML, &ConfigSource::BuiltIn)
            .expect("the shipped config/echo-server.toml is valid")
    }
}

impl ServerConfig {
    /// Every address to serve, whichever form the file used.
    pub(crate) fn listen_entries(&self) -> Vec<ListenEntry> {
        match &self.listen {
            Some(list) => list.get_ref().clone(),
            None => vec![ListenEntry {
                address: HostPort {
                    host: self
                        .host
                        .as_ref()
                        .map(|h| h.get_ref().clone())
                        .unwrap_or_else(defaults::host),
                    port: self.port.unwrap_or_else(defaults::port),
                },
                proxy_protocol: false,
            }],
        }
    }

    /// Rewrites the simple form as a `listen` list, so the effective
    /// configuration always reads the same way and overrides have one place
    /// to act on.
    fn normalize(&mut self) {
        let addrs = self.listen_entries();
        self.host = None;
        self.port = None;
        self.listen = Some(Spanned::new(0..0, addrs));
    }

    fn validate(&self) -> Result<(), (Option<Range<usize>>, String)> {
        if let Some(listen) = &self.listen {
            if let Some(host) = &self.host {
                return Err((
                    Some(host.span()),
                    "`host` cannot be combined with `listen`: use either host/port or a listen list"
                        .to_string(),
                ));
            }
            if self.port.is_some() {
                return Err((
                    Some(listen.span()),
                    "`port` cannot be combined with `listen`: give the port in each listen entry"
                        .to_string(),
                ));
            }
            if listen.get_ref().is_empty() {
                return Err((
                    Some(listen.span()),
                    "`listen` is empty: give at least one \"ADDRESS:PORT\"".to_string(),
                ));
            }
        }
        Ok(())
    }
}

/// Settings given on the command line, which win over the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub host: Option<Host>,
    pub port: Option<u16>,
    pub log_level: Option<LogLevel>,
    pub pid_file: Option<PathBuf>,
    pub user: Option<String>,
    pub group: Option<String>,
}

impl Config {
    /// Parses and validates a config file's text.
    pub(crate) fn parse(text: &str, source: &ConfigSource) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| {
            ConfigError::at(source.origin(), text, e.span(), &with_hint(e.message()))
        })?;
        config
            .server
            .validate()
            .map_err(|(span, message)| ConfigError::at(source.origin(), text, span, &message))?;
        config
            .metrics
            .validate(&config.server)
            .map_err(|(span, message)| ConfigError::at(source.origin(), text, span, &message))?;
        if let Some(tls) = &mut config.tls {
            tls.validate(&config.server).map_err(|(span, message)| {
                ConfigError::at(source.origin(), text, span, &message)
            })?;
            if let Some(directory) = source.path().and_then(Path::parent) {
                tls.anchor(directory);
            }
        }
        config.server.normalize();
        Ok(config)
    }

    /// Loads the configuration from `source` and applies the overrides.
    pub(crate) fn load(
        source: &ConfigSource,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let text = source.text()?;
        let mut config = Config::parse(&text, source)?;
        config
            .apply(overrides)
            .map_err(|message| ConfigError::at(source.origin(), &text, None, &message))?;
        Ok(config)
    }

    /// `--host` replaces the host of every listen address and `--port` the
    /// port, so `--port 7007` moves a multi-address server as a whole.
    /// Entries that become one address must agree on `proxy_protocol`:
    /// whichever won, one kind of client would be broken without a word.
    pub(crate) fn apply(&mut self, overrides: &Overrides) -> Result<(), String> {
        if overrides.host.is_some() || overrides.port.is_some() {
            let mut addrs: Vec<ListenEntry> = Vec::new();
            for entry in self.server.listen_entries() {
                let address = HostPort {
                    host: overrides.host.clone().unwrap_or(entry.address.host),
                    port: overrides.port.unwrap_or(entry.address.port),
                };
                match addrs.iter().find(|known| known.address == address) {
                    None => addrs.push(ListenEntry { address, ..entry }),
                    Some(known) if known.proxy_protocol == entry.proxy_protocol => {}
                    // Port 0 is a port of its own for each entry.
                    Some(_) if address.port == 0 => addrs.push(ListenEntry { address, ..entry }),
                    Some(_) => {
                        return Err(format!(
                            "--host/--port make {address} both a PROXY protocol listener and a plain one (their [server] listen entries differ in proxy_protocol): give them different addresses"
                        ));
                    }
                }
            }
            self.server.listen = Some(Spanned::new(0..0, addrs));
        }
        if let Some(level) = overrides.log_level {
            self.log.level = level;
        }
        if let Some(pid_file) = &overrides.pid_file {
            self.daemon.pid_file = pid_file.clone();
        }
        if let Some(user) = &overrides.user {
            self.daemon.user = Some(user.clone());
        }
        if let Some(group) = &overrides.group {
            self.daemon.group = Some(group.clone());
        }
        Ok(())
    }

    /// The effective configuration as TOML, as `--check-config` prints it.
    pub(crate) fn to_toml(&self) -> String {
        toml::to_string(self).expect("a Config always serializes")
    }

    /// The names of settings that differ from `other` and only take effect
    /// after a restart.
    pub(crate) fn restart_only_changes(&self, other: &Config) -> Vec<&'static str> {
        let (new, old) = (self, other);
        [
            (
                "server.listen",
                new.server.listen_entries() != old.server.listen_entries(),
            ),
            ("server.udp", new.server.udp != old.server.udp),
            ("server.workers", new.server.workers != old.server.workers),
            ("log.format", new.log.format != old.log.format),
            ("log.directory", new.log.directory != old.log.directory),
            ("log.rotation", new.log.rotation != old.log.rotation),
            ("log.max_files", new.log.max_files != old.log.max_files),
            ("daemon", new.daemon != old.daemon),
            ("metrics.listen", new.metrics != old.metrics),
            (
                "tls.listen",
                new.tls.as_ref().map(|tls| tls.listen.get_ref())
                    != old.tls.as_ref().map(|tls| tls.listen.get_ref()),
            ),
        ]
        .into_iter()
        .filter_map(|(name, changed)| changed.then_some(name))
        .collect()
    }
}

/// A parse error's message, with a pointer to the right form for a likely
/// mistake that the generic message leaves a puzzle.
fn with_hint(message: &str) -> String {
    if message.starts_with("unknown field `proxy_protocol`") {
        format!(
            "{message} (proxy_protocol is set for each listener: listen = [{{ address = \"HOST:PORT\", proxy_protocol = true }}])"
        )
    } else {
        message.to_string()
    }
}

fn non_empty_directory<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<PathBuf>, D::Error> {
    let path = PathBuf::deserialize(deserializer)?;
    if path.as_os_str().is_empty() {
        return Err(serde::de::Error::custom(
            "the log directory is empty: name one, or remove the key to log to standard error",
        ));
    }
    Ok(Some(path))
}

fn non_zero_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<HumanDuration, D::Error> {
    let value = HumanDuration::deserialize(deserializer)?;
    if value.0.is_zero() {
        return Err(serde::de::Error::custom(
            "must be longer than 0: \"0\" would let a connection that never gets that far hold its slot for ever",
        ));
    }
    Ok(value)
}

fn at_least_one<'de, D: Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    let value = usize::deserialize(deserializer)?;
    if value == 0 {
        return Err(serde::de::Error::custom("must be at least 1"));
    }
    Ok(value)
}

/// More threads than this is a typo, not a machine.
pub(crate) const MAX_WORKERS: usize = 1024;

fn worker_count<'de, D: Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    let value = usize::deserialize(deserializer)?;
    if value > MAX_WORKERS {
        return Err(serde::de::Error::custom(format!(
            "must be at most {MAX_WORKERS} (0 = one per CPU)"
        )));
    }
    Ok(value)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl FromStr for LogLevel {
    type Err = String;

    fn from_str(s: &str) -> Result<LogLevel, String> {
        LogLevel::deserialize(
            serde::de::value::StrDeserializer::<serde::de::value::Error>::new(
                &s.to_ascii_lowercase(),
            ),
        )
        .map_err(|_| format!("`{s}` is not a log level: use error, warn, info, debug or trace"))
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.serialize(f)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Rotation {
    Daily,
    Hourly,
    Never,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, &ConfigSource::CommandLine(PathBuf::from("test.toml")))
    }

    /// The listen addresses, as written, with ` (proxy)` after those that
    /// take the PROXY protocol.
    fn addresses(config: &Config) -> Vec<String> {
        config
            .server
            .listen_entries()
            .iter()
            .map(|entry| {
                let proxy = if entry.proxy_protocol { " (proxy)" } else { "" };
                format!("{}{proxy}", entry.address)
            })
            .collect()
    }

    #[test]
    fn shipped_file_sets_every_key() {
        defaults::check_all();
    }

    /// The client's default target is the daemon's default address.
    #[test]
    fn shipped_address_is_the_shared_default() {
        use crate::shared::protocol::{DEFAULT_HOST, DEFAULT_PORT};
        assert_eq!(defaults::host().as_str(), DEFAULT_HOST);
        assert_eq!(defaults::port(), DEFAULT_PORT);
    }

    #[test]
    fn shipped_file_is_the_documented_default() {
        let config = Config::default();
        assert_eq!(addresses(&config), ["127.0.0.1:65432"]);
        assert!(!config.server.udp);
        assert_eq!(config.log.level, LogLevel::Info);
        assert_eq!(config.log.directory, None);
        // An empty file means the same as the shipped one.
        assert_eq!(parse("").unwrap(), config);
    }

    #[test]
    fn listen_list_accepts_ipv4_ipv6_and_names() {
        let config =
            parse("[server]\nlisten = [\"0.0.0.0:7\", \"[::]:7\", \"localhost:8\"]\n").unwrap();
        assert_eq!(addresses(&config), ["0.0.0.0:7", "[::]:7", "localhost:8"]);
    }

    #[test]
    fn listen_tables_turn_on_the_proxy_protocol_per_address() {
        let config = parse(
            "[server]\nlisten = [\"127.0.0.1:7\", { address = \"[::]:7007\", proxy_protocol = true }, { address = \"0.0.0.0:8\" }]\n",
        )
        .unwrap();
        assert_eq!(
            addresses(&config),
            ["127.0.0.1:7", "[::]:7007 (proxy)", "0.0.0.0:8"]
        );
        // Printed back in the plain form where it can be, and read back the same.
        let printed = config.to_toml();
        assert!(
            printed.contains(
                "\"127.0.0.1:7\", { address = \"[::]:7007\", proxy_protocol = true }, \"0.0.0.0:8\""
            ),
            "{printed}"
        );
        assert_eq!(parse(&printed).unwrap(), config);
        // The same with [[server.listen]] tables.
        let config =
            parse("[[server.listen]]\naddress = \"[::1]:9\"\nproxy_protocol = true\n").unwrap();
        assert_eq!(addresses(&config), ["[::1]:9 (proxy)"]);
    }

    #[test]
    fn bad_listen_tables_say_what_is_wrong_where() {
        for (input, needle, position) in [
            (
                "listen = [{ adress = \"1.2.3.4:7\" }]",
                "unknown field `adress`",
                (2, 13),
            ),
            (
                "listen = [{ proxy_protocol = true }]",
                "missing field `address`",
                (2, 11),
            ),
            ("listen = [{ address = \"1.2.3.4\" }]", "HOST:PORT", (2, 23)),
            (
                "listen = [{ address = \"1.2.3.4:7\", proxy_protocol = \"yes\" }]",
                "boolean",
                (2, 53),
            ),
            ("listen = [7]", "\"HOST:PORT\" or { address", (2, 11)),
        ] {
            let err = parse(&format!("[server]\n{input}\n")).unwrap_err();
            assert!(err.message.contains(needle), "{input}: {err}");
            assert_eq!(err.position, Some(position), "{input}: {err}");
        }
        for key in ["proxy_protocol_timeout", "tls_handshake_timeout"] {
            let err = parse(&format!("[server]\n{key} = \"0\"\n")).unwrap_err();
            assert!(err.message.contains("longer than 0"), "{key}: {err}");
            assert_eq!(err.position, Some((2, key.len() + 4)), "{key}: {err}");
        }
    }

    #[test]
    fn errors_name_line_and_column() {
        let err = parse("[server]\nport = 70000\n").unwrap_err();
        assert_eq!(err.position, Some((2, 8)));
        assert!(
            err.to_string().starts_with("test.toml, line 2, column 8:"),
            "{err}"
        );

        let err = parse("[server]\nprot = 7\n").unwrap_err();
        assert_eq!(err.position, Some((2, 1)));
        assert!(err.message.contains("unknown field `prot`"), "{err}");

        let err = parse("[server]\nidle_timeout = \"5 parsecs\"\n").unwrap_err();
        assert!(err.message.contains("is not a duration"), "{err}");

        let err = parse("[server]\nmax_connections = 0\n").unwrap_err();
        assert!(err.message.contains("at least 1"), "{err}");

        let err = parse("[server]\nworkers = 5000\n").unwrap_err();
        assert!(err.message.contains("at most 1024"), "{err}");

        let err = parse("[log]\ndirectory = \"\"\n").unwrap_err();
        assert!(err.message.contains("log directory is empty"), "{err}");

        let err = parse("[log]\nlevel = \"loud\"\n").unwrap_err();
        assert_eq!(err.position, Some((2, 9)));
    }

    #[test]
    fn host_and_listen_together_are_rejected_at_the_host() {
        let err = parse("[server]\nlisten = [\"127.0.0.1:7\"]\nhost = \"::1\"\n").unwrap_err();
        assert_eq!(err.position, Some((3, 8)));
        assert!(err.message.contains("cannot be combined"), "{err}");
    }

    #[test]
    fn bad_addresses_say_what_to_write() {
        for (input, needle) in [
            ("host = \"127.0.0.1:80\"", "without a port"),
            ("host = \"\"", "host is empty"),
            ("listen = [\"127.0.0.1\"]", "HOST:PORT"),
            ("listen = [\"::1:7\"]", "brackets"),
            ("listen = [\"a:99999\"]", "0 to 65535"),
            ("listen = []", "is empty"),
        ] {
            let err = parse(&format!("[server]\n{input}\n")).unwrap_err();
            assert!(err.message.contains(needle), "{input}: {err}");
            assert!(err.position.is_some(), "{input}: {err}");
        }
    }

    #[test]
    fn overrides_move_every_listen_address() {
        let mut config = parse("[server]\nlisten = [\"0.0.0.0:7\", \"[::]:7\"]\n").unwrap();
        config
            .apply(&Overrides {
                port: Some(7007),
                ..Overrides::default()
            })
            .unwrap();
        assert_eq!(addresses(&config), ["0.0.0.0:7007", "[::]:7007"]);
        config
            .apply(&Overrides {
                host: Some("::1".parse().unwrap()),
                ..Overrides::default()
            })
            .unwrap();
        assert_eq!(addresses(&config), ["[::1]:7007"]);
        // An override keeps each entry's proxy_protocol.
        let mut config = parse(
            "[server]\nlisten = [\"0.0.0.0:7\", { address = \"0.0.0.0:8\", proxy_protocol = true }]\n",
        )
        .unwrap();
        config
            .apply(&Overrides {
                host: Some("127.0.0.2".parse().unwrap()),
                ..Overrides::default()
            })
            .unwrap();
        assert_eq!(addresses(&config), ["127.0.0.2:7", "127.0.0.2:8 (proxy)"]);
    }

    #[test]
    fn an_override_that_merges_a_proxied_and_a_plain_entry_is_refused() {
        for listen in [
            "[\"0.0.0.0:7\", { address = \"0.0.0.0:8\", proxy_protocol = true }]",
            "[{ address = \"0.0.0.0:8\", proxy_protocol = true }, \"0.0.0.0:7\"]",
        ] {
            let mut config = parse(&format!("[server]\nlisten = {listen}\n")).unwrap();
            let message = config
                .apply(&Overrides {
                    port: Some(7007),
                    ..Overrides::default()
                })
                .unwrap_err();
            assert!(
                message
                    .contains("make 0.0.0.0:7007 both a PROXY protocol listener and a plain one"),
                "{listen}: {message}"
            );
        }
        // Entries that agree still become one.
        let mut config = parse(
            "[server]\nlisten = [{ address = \"0.0.0.0:7\", proxy_protocol = true }, { address = \"0.0.0.0:8\", proxy_protocol = true }]\n",
        )
        .unwrap();
        config
            .apply(&Overrides {
                port: Some(7007),
                ..Overrides::default()
            })
            .unwrap();
        assert_eq!(addresses(&config), ["0.0.0.0:7007 (proxy)"]);
        // With port 0 each entry gets a port of its own, so both stay.
        let mut config = parse(
            "[server]\nlisten = [\"127.0.0.1:7\", { address = \"127.0.0.1:8\", proxy_protocol = true }]\n",
        )
        .unwrap();
        config
            .apply(&Overrides {
                port: Some(0),
                ..Overrides::default()
            })
            .unwrap();
        assert_eq!(addresses(&config), ["127.0.0.1:0", "127.0.0.1:0 (proxy)"]);
    }

    #[test]
    fn proxy_protocol_in_server_points_to_the_listen_entry() {
        let err = parse("[server]\nproxy_protocol = true\n").unwrap_err();
        assert_eq!(err.position, Some((2, 1)), "{err}");
        assert!(
            err.message
                .contains("listen = [{ address = \"HOST:PORT\", proxy_protocol = true }]"),
            "{err}"
        );
    }

    #[test]
    fn effective_config_round_trips() {
        let config = parse("[server]\nhost = \"::1\"\nport = 7\nidle_timeout = \"90s\"\n[log]\nformat = \"json\"\n").unwrap();
        let printed = config.to_toml();
        assert!(printed.contains("listen = [\"[::1]:7\"]"), "{printed}");
        assert!(printed.contains("idle_timeout = \"1m 30s\""), "{printed}");
        assert_eq!(parse(&printed).unwrap(), config);
    }

    #[test]
    fn durations_accept_zero_as_never() {
        let config = parse("[server]\nidle_timeout = \"0\"\n").unwrap();
        assert_eq!(config.server.idle_timeout.as_timeout(), None);
    }

    #[test]
    fn source_precedence() {
        let missing = Path::new("/nonexistent/echo-server.toml");
        let cli = Some(PathBuf::from("/etc/a.toml"));
        let env = Some(PathBuf::from("/etc/b.toml"));
        assert_eq!(
            ConfigSource::locate(cli.clone(), env.clone(), missing),
            ConfigSource::CommandLine("/etc/a.toml".into())
        );
        assert_eq!(
            ConfigSource::locate(None, env, missing),
            ConfigSource::Environment("/etc/b.toml".into())
        );
        // Relative paths are made absolute, for reloads after a chdir.
        let relative = ConfigSource::locate(Some("a.toml".into()), None, missing);
        assert_eq!(
            relative.path(),
            Some(std::env::current_dir().unwrap().join("a.toml").as_path())
        );
        assert_eq!(
            ConfigSource::locate(None, Some(PathBuf::new()), missing),
            ConfigSource::BuiltIn
        );
        let existing = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/echo-server.toml");
        assert_eq!(
            ConfigSource::locate(None, None, &existing),
            ConfigSource::System(existing.clone())
        );
    }

    #[test]
    fn metrics_are_off_unless_given_an_address_of_their_own() {
        assert_eq!(Config::default().metrics.address(), None);
        let config = parse("[metrics]\nlisten = \"127.0.0.1:9862\"\n").unwrap();
        assert_eq!(
            config.metrics.address().map(ToString::to_string).as_deref(),
            Some("127.0.0.1:9862")
        );
        assert_eq!(parse(&config.to_toml()).unwrap(), config);
        for clash in [
            "[server]\nport = 9862\n[metrics]\nlisten = \"127.0.0.1:9862\"\n",
            "[server]\nlisten = [\"0.0.0.0:9862\"]\n[metrics]\nlisten = \"127.0.0.1:9862\"\n",
            "[server]\nlisten = [\"127.0.0.1:9862\"]\n[metrics]\nlisten = \"[::]:9862\"\n",
        ] {
            let err = parse(clash).unwrap_err();
            assert!(err.message.contains("a port of its own"), "{clash}: {err}");
            assert_eq!(
                err.position.map(|(line, _)| line),
                Some(clash.lines().count()),
                "{clash}: {err}"
            );
        }
        // The same port on another address is another socket.
        parse("[server]\nlisten = [\"127.0.0.2:9862\"]\n[metrics]\nlisten = \"127.0.0.1:9862\"\n")
            .unwrap();
        let err = parse("[metrics]\nlisten = \"127.0.0.1\"\n").unwrap_err();
        assert!(err.message.contains("HOST:PORT"), "{err}");
        let err = parse("[metrics]\nlisen = \"127.0.0.1:9862\"\n").unwrap_err();
        assert!(err.message.contains("unknown field `lisen`"), "{err}");
    }

    #[test]
    fn tls_is_off_unless_its_section_is_there() {
        assert_eq!(Config::default().tls, None);
        let config = Config::parse(
            "[tls]\nlisten = [\"0.0.0.0:65443\"]\ncertificate = \"tls/server.pem\"\nkey = \"/keys/server.key\"\nalpn = [\"echo\"]\n",
            &ConfigSource::CommandLine(PathBuf::from("/etc/echo-server/config.toml")),
        )
        .unwrap();
        let tls = config.tls.as_ref().unwrap();
        // Relative paths are the config file's directory's.
        assert_eq!(
            tls.certificate,
            Path::new("/etc/echo-server/tls/server.pem")
        );
        assert_eq!(tls.key, Path::new("/keys/server.key"));
        assert_eq!(tls.client_ca, None);
        assert_eq!(tls.alpn, ["echo"]);
        let printed = config.to_toml();
        assert!(printed.contains("[tls]"), "{printed}");
    }

    #[test]
    fn bad_tls_sections_say_what_is_wrong() {
        for (input, needle) in [
            (
                "[tls]\nlisten = []\ncertificate = \"c\"\nkey = \"k\"\n",
                "[tls] listen is empty",
            ),
            (
                "[tls]\nlisten = [\"127.0.0.1:65443\"]\ncertificate = \"c\"\n",
                "missing field `key`",
            ),
            (
                "[tls]\nlisten = [\"127.0.0.1:65443\"]\ncertificate = \"c\"\nkey = \"k\"\nalpn = [\"\"]\n",
                "is not a protocol name",
            ),
            (
                "[tls]\nlisten = [\"127.0.0.1:65443\"]\ncertificate = \"c\"\nkey = \"k\"\nciphers = \"all\"\n",
                "unknown field `ciphers`",
            ),
            (
                "[server]\nlisten = [\"0.0.0.0:65443\"]\n[tls]\nlisten = [\"127.0.0.1:65443\"]\ncertificate = \"c\"\nkey = \"k\"\n",
                "give [tls] a port of its own",
            ),
        ] {
            let err = parse(input).unwrap_err();
            assert!(err.message.contains(needle), "{input}: {err}");
        }
    }

    #[test]
    fn restart_only_changes_are_named() {
        let old = Config::default();
        let new = parse(
            "[server]\nport = 7\nmax_connections = 5\nworkers = 3\n[log]\nlevel = \"debug\"\n",
        )
        .unwrap();
        assert_eq!(
            old.restart_only_changes(&new),
            ["server.listen", "server.workers"]
        );
        // Turning on the PROXY protocol changes the listener; its timeout
        // is live.
        let plain = parse("[server]\nlisten = [\"127.0.0.1:7\"]\n").unwrap();
        let proxied = parse(
            "[server]\nlisten = [{ address = \"127.0.0.1:7\", proxy_protocol = true }]\nproxy_protocol_timeout = \"1s\"\n",
        )
        .unwrap();
        assert_eq!(plain.restart_only_changes(&proxied), ["server.listen"]);
        let metrics = parse("[metrics]\nlisten = \"127.0.0.1:9862\"\n").unwrap();
        assert_eq!(old.restart_only_changes(&metrics), ["metrics.listen"]);
        // A TLS listener needs a restart; its certificate does not.
        let tls = |listen: &str, certificate: &str| {
            parse(&format!(
                "[tls]\nlisten = [\"{listen}\"]\ncertificate = \"{certificate}\"\nkey = \"k\"\n"
            ))
            .unwrap()
        };
        let running = tls("127.0.0.1:65443", "a.pem");
        assert_eq!(old.restart_only_changes(&running), ["tls.listen"]);
        assert!(
            running
                .restart_only_changes(&tls("127.0.0.1:65443", "b.pem"))
                .is_empty()
        );
        assert_eq!(
            running.restart_only_changes(&tls("127.0.0.1:65444", "a.pem")),
            ["tls.listen"]
        );
    }
}
