//! The daemon's configuration: where it comes from, what it may contain, and
//! how a mistake in it is reported.
//!
//! Operators edit one TOML file, so every error has to point at the line that
//! is wrong and say what would be right. Values are checked while they are
//! deserialized wherever possible, because that is where `toml` knows the
//! position; the few checks that span several keys carry their own spans.
//!
//! The shipped, commented `config/echo-server.toml` is compiled in and *is*
//! the built-in default, so the documentation and the behaviour cannot drift.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use toml::Spanned;

pub use crate::shared::address::{Host, HostPort};

/// The shipped configuration file, which doubles as the built-in default.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../../../config/echo-server.toml");

/// Where the daemon looks for its configuration when no path is given.
pub const SYSTEM_CONFIG_PATH: &str = "/etc/echo-server/config.toml";

/// The environment variable that names a config file.
pub const CONFIG_ENV_VAR: &str = "ECHO_SERVER_CONFIG";

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub daemon: DaemonConfig,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// The simple form: one host (address or name)...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<Spanned<Host>>,
    /// ...and one port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The general form: any number of `HOST:PORT` entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<Spanned<Vec<HostPort>>>,
    #[serde(default)]
    pub udp: bool,
    #[serde(default = "defaults::udp_rate_limit")]
    pub udp_rate_limit: u32,
    #[serde(
        default = "defaults::max_connections",
        deserialize_with = "at_least_one"
    )]
    pub max_connections: usize,
    #[serde(default = "defaults::idle_timeout")]
    pub idle_timeout: HumanDuration,
    #[serde(default = "defaults::shutdown_grace")]
    pub shutdown_grace: HumanDuration,
    /// Threads serving TCP; 0 means one per CPU the daemon may run on.
    #[serde(default, deserialize_with = "worker_count")]
    pub workers: usize,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    #[serde(default)]
    pub level: LogLevel,
    #[serde(default)]
    pub format: LogFormat,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "non_empty_directory"
    )]
    pub directory: Option<PathBuf>,
    #[serde(default)]
    pub rotation: Rotation,
    #[serde(default = "defaults::max_files")]
    pub max_files: usize,
}

/// Settings for `--daemon` (classic daemon mode); ignored otherwise.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    #[serde(default = "defaults::pid_file")]
    pub pid_file: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// Where a daemon (`--daemon`) logs when `[log] directory` is not set:
/// standard error is detached from any terminal there.
pub const DAEMON_LOG_DIRECTORY: &str = "/var/log/echo-server";

mod defaults {
    use super::HumanDuration;
    use std::time::Duration;

    pub const HOST: &str = "127.0.0.1";
    pub const PORT: u16 = 65432;

    pub fn udp_rate_limit() -> u32 {
        100
    }
    pub fn max_connections() -> usize {
        10_000
    }
    pub fn idle_timeout() -> HumanDuration {
        HumanDuration(Duration::from_secs(300))
    }
    pub fn shutdown_grace() -> HumanDuration {
        HumanDuration(Duration::from_secs(10))
    }
    pub fn max_files() -> usize {
        7
    }
    pub fn pid_file() -> std::path::PathBuf {
        "/run/echo-server/echo-server.pid".into()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: None,
            port: None,
            listen: None,
            udp: false,
            udp_rate_limit: defaults::udp_rate_limit(),
            max_connections: defaults::max_connections(),
            idle_timeout: defaults::idle_timeout(),
            shutdown_grace: defaults::shutdown_grace(),
            workers: 0,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: LogLevel::default(),
            format: LogFormat::default(),
            directory: None,
            rotation: Rotation::default(),
            max_files: defaults::max_files(),
        }
    }
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            pid_file: defaults::pid_file(),
            user: None,
            group: None,
        }
    }
}

impl Default for Config {
    /// The built-in default: the shipped config file.
    fn default() -> Self {
        Config::parse(DEFAULT_CONFIG_TOML, &ConfigSource::BuiltIn)
            .expect("the shipped config/echo-server.toml is valid")
    }
}

impl ServerConfig {
    /// Every address to serve, whichever form the file used.
    pub fn listen_addrs(&self) -> Vec<HostPort> {
        match &self.listen {
            Some(list) => list.get_ref().clone(),
            None => vec![HostPort {
                host: self
                    .host
                    .as_ref()
                    .map(|h| h.get_ref().clone())
                    .unwrap_or_else(|| defaults::HOST.parse().expect("the default host is valid")),
                port: self.port.unwrap_or(defaults::PORT),
            }],
        }
    }

    /// Rewrites the simple form as a `listen` list, so the effective
    /// configuration always reads the same way and overrides have one place
    /// to act on.
    fn normalize(&mut self) {
        let addrs = self.listen_addrs();
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
    pub fn parse(text: &str, source: &ConfigSource) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text)
            .map_err(|e| ConfigError::at(source, text, e.span(), e.message()))?;
        config
            .server
            .validate()
            .map_err(|(span, message)| ConfigError::at(source, text, span, &message))?;
        config.server.normalize();
        Ok(config)
    }

    /// Loads the configuration from `source` and applies the overrides.
    pub fn load(source: &ConfigSource, overrides: &Overrides) -> Result<Config, ConfigError> {
        let text = match source.path() {
            Some(path) => {
                let bytes = std::fs::read(path).map_err(|e| ConfigError::unreadable(source, e))?;
                String::from_utf8(bytes).map_err(|e| ConfigError::not_utf8(source, &e))?
            }
            None => DEFAULT_CONFIG_TOML.to_string(),
        };
        let mut config = Config::parse(&text, source)?;
        config.apply(overrides);
        Ok(config)
    }

    /// `--host` replaces the host of every listen address and `--port` the
    /// port, so `--port 7007` moves a multi-address server as a whole.
    pub fn apply(&mut self, overrides: &Overrides) {
        if overrides.host.is_some() || overrides.port.is_some() {
            let mut addrs: Vec<HostPort> = Vec::new();
            for addr in self.server.listen_addrs() {
                let addr = HostPort {
                    host: overrides.host.clone().unwrap_or(addr.host),
                    port: overrides.port.unwrap_or(addr.port),
                };
                if !addrs.contains(&addr) {
                    addrs.push(addr);
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
    }

    /// The effective configuration as TOML, as `--check-config` prints it.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a Config always serializes")
    }

    /// The names of settings that differ from `other` and only take effect
    /// after a restart.
    pub fn restart_only_changes(&self, other: &Config) -> Vec<&'static str> {
        let mut changed = Vec::new();
        if self.server.listen_addrs() != other.server.listen_addrs() {
            changed.push("server.listen");
        }
        if self.server.udp != other.server.udp {
            changed.push("server.udp");
        }
        if self.server.workers != other.server.workers {
            changed.push("server.workers");
        }
        if self.log.format != other.log.format {
            changed.push("log.format");
        }
        if self.log.directory != other.log.directory {
            changed.push("log.directory");
        }
        if self.log.rotation != other.log.rotation {
            changed.push("log.rotation");
        }
        if self.log.max_files != other.log.max_files {
            changed.push("log.max_files");
        }
        if self.daemon != other.daemon {
            changed.push("daemon");
        }
        changed
    }
}

/// Where the configuration was found, in order of precedence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// `--config PATH`
    CommandLine(PathBuf),
    /// `$ECHO_SERVER_CONFIG`
    Environment(PathBuf),
    /// `/etc/echo-server/config.toml`, because it exists.
    System(PathBuf),
    /// Nothing found: the compiled-in default.
    BuiltIn,
}

impl ConfigSource {
    /// Picks the source: `--config`, then `$ECHO_SERVER_CONFIG`, then the
    /// system file if it exists, then the built-in default. An explicitly
    /// named file must exist; only the system path is optional.
    pub fn locate(
        command_line: Option<PathBuf>,
        environment: Option<PathBuf>,
        system: &Path,
    ) -> ConfigSource {
        // Absolute, so that a reload finds the file after the daemon has
        // changed directory.
        let absolute = |path: PathBuf| std::path::absolute(&path).unwrap_or(path);
        if let Some(path) = command_line {
            ConfigSource::CommandLine(absolute(path))
        } else if let Some(path) = environment.filter(|p| !p.as_os_str().is_empty()) {
            ConfigSource::Environment(absolute(path))
        } else if system.exists() {
            ConfigSource::System(system.to_path_buf())
        } else {
            ConfigSource::BuiltIn
        }
    }

    pub fn path(&self) -> Option<&Path> {
        match self {
            ConfigSource::CommandLine(p)
            | ConfigSource::Environment(p)
            | ConfigSource::System(p) => Some(p),
            ConfigSource::BuiltIn => None,
        }
    }
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::CommandLine(p) => write!(f, "{} (--config)", p.display()),
            ConfigSource::Environment(p) => write!(f, "{} (${CONFIG_ENV_VAR})", p.display()),
            ConfigSource::System(p) => write!(f, "{}", p.display()),
            ConfigSource::BuiltIn => write!(f, "built-in default"),
        }
    }
}

/// A configuration that cannot be used, with the position of the mistake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, or "built-in default".
    pub origin: String,
    /// 1-based line and column, when the mistake has a position.
    pub position: Option<(usize, usize)>,
    pub message: String,
    /// The offending line with a caret under the mistake.
    excerpt: Option<String>,
    /// True when the file could not be read at all (as opposed to being wrong).
    pub unreadable: bool,
}

impl ConfigError {
    fn at(
        source: &ConfigSource,
        text: &str,
        span: Option<Range<usize>>,
        message: &str,
    ) -> ConfigError {
        let origin = origin_of(source);
        let message = message.trim().to_string();
        let Some(span) = span.filter(|s| s.end > 0 || s.start > 0 || !text.is_empty()) else {
            return ConfigError {
                origin,
                position: None,
                message,
                excerpt: None,
                unreadable: false,
            };
        };
        // Spans are byte offsets; keep them on character boundaries.
        let mut start = span.start.min(text.len());
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        let line_no = text[..start].matches('\n').count() + 1;
        let column = text[line_start..start].chars().count() + 1;
        let line = &text[line_start..line_end];
        let mut end = span.end.clamp(start, line_end);
        while !text.is_char_boundary(end) {
            end += 1;
        }
        let width = text[start..end].chars().count().max(1);
        let gutter = " ".repeat(line_no.to_string().len());
        let excerpt = format!(
            "{gutter} |\n{line_no} | {line}\n{gutter} | {}{}",
            " ".repeat(column - 1),
            "^".repeat(width)
        );
        ConfigError {
            origin,
            position: Some((line_no, column)),
            message,
            excerpt: Some(excerpt),
            unreadable: false,
        }
    }

    /// Points at the first byte that is not UTF-8, as TOML requires.
    fn not_utf8(source: &ConfigSource, error: &std::string::FromUtf8Error) -> ConfigError {
        // Everything before the bad byte is unchanged in the lossy copy.
        let valid = error.utf8_error().valid_up_to();
        let text = String::from_utf8_lossy(error.as_bytes());
        ConfigError::at(
            source,
            &text,
            Some(valid..valid + 1),
            "the file is not valid UTF-8 here (save it as UTF-8)",
        )
    }

    fn unreadable(source: &ConfigSource, error: std::io::Error) -> ConfigError {
        let hint = match error.kind() {
            std::io::ErrorKind::NotFound => {
                " (check the path, or run without --config and $ECHO_SERVER_CONFIG to use the built-in default)"
            }
            std::io::ErrorKind::PermissionDenied => " (the daemon's user must be able to read it)",
            _ => "",
        };
        ConfigError {
            origin: origin_of(source),
            position: None,
            message: format!("cannot read the config file: {error}{hint}"),
            excerpt: None,
            unreadable: true,
        }
    }
}

fn origin_of(source: &ConfigSource) -> String {
    match source.path() {
        Some(path) => path.display().to_string(),
        None => source.to_string(),
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, column)) => write!(
                f,
                "{}, line {line}, column {column}: {}",
                self.origin, self.message
            )?,
            None => write!(f, "{}: {}", self.origin, self.message)?,
        }
        if let Some(excerpt) = &self.excerpt {
            write!(f, "\n{excerpt}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Deserializes any `FromStr` type from a TOML string, keeping its message.
macro_rules! serde_via_str {
    ($type:ty) => {
        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }

        impl Serialize for $type {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }
    };
}

serde_via_str!(Host);
serde_via_str!(HostPort);
serde_via_str!(HumanDuration);

/// A duration written for people: "30s", "5m", "1h 30m", "250ms", or "0".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// `None` for zero, which means "never" wherever a timeout is configured.
    pub fn as_timeout(self) -> Option<Duration> {
        (!self.0.is_zero()).then_some(self.0)
    }
}

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<HumanDuration, String> {
        if s.trim() == "0" {
            return Ok(HumanDuration(Duration::ZERO));
        }
        humantime::parse_duration(s)
            .map(HumanDuration)
            .map_err(|e| format!("`{s}` is not a duration ({e}): write it like \"30s\", \"5m\", \"1h 30m\" or \"0\""))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_zero() {
            f.write_str("0")
        } else {
            write!(f, "{}", humantime::format_duration(self.0))
        }
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

fn at_least_one<'de, D: Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    let value = usize::deserialize(deserializer)?;
    if value == 0 {
        return Err(serde::de::Error::custom("must be at least 1"));
    }
    Ok(value)
}

/// More threads than this is a typo, not a machine.
pub const MAX_WORKERS: usize = 1024;

fn worker_count<'de, D: Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    let value = usize::deserialize(deserializer)?;
    if value > MAX_WORKERS {
        return Err(serde::de::Error::custom(format!(
            "must be at most {MAX_WORKERS} (0 = one per CPU)"
        )));
    }
    Ok(value)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Rotation {
    #[default]
    Daily,
    Hourly,
    Never,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, &ConfigSource::CommandLine(PathBuf::from("test.toml")))
    }

    #[test]
    fn shipped_file_is_the_documented_default() {
        let config = Config::default();
        assert_eq!(
            config.server.listen_addrs(),
            vec!["127.0.0.1:65432".parse().unwrap()]
        );
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
        let addrs: Vec<String> = config
            .server
            .listen_addrs()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(addrs, ["0.0.0.0:7", "[::]:7", "localhost:8"]);
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
        config.apply(&Overrides {
            port: Some(7007),
            ..Overrides::default()
        });
        let addrs: Vec<String> = config
            .server
            .listen_addrs()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(addrs, ["0.0.0.0:7007", "[::]:7007"]);
        config.apply(&Overrides {
            host: Some("::1".parse().unwrap()),
            ..Overrides::default()
        });
        let addrs: Vec<String> = config
            .server
            .listen_addrs()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(addrs, ["[::1]:7007"]);
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
    }

    /// The Ansible role restarts the service when one of the config lines
    /// it lists changes, and only reloads it otherwise: its list must name
    /// exactly the settings that a reload does not apply.
    #[test]
    fn the_ansible_role_restarts_for_exactly_the_restart_only_settings() {
        let vars = include_str!("../../../deploy/ansible/roles/echo_server/vars/main.yml");
        let alternatives = vars
            .split("^(?:")
            .nth(1)
            .and_then(|rest| rest.split(") = ").next())
            .expect("vars/main.yml lists the restart-only keys as ^(?:a|b|...) = ");
        let listed: Vec<&str> = alternatives.split('|').collect();
        // Every key the role's template writes, with a value other than the default.
        let every_key = [
            ("server", "host", "\"127.0.0.2\""),
            ("server", "port", "7"),
            ("server", "listen", "[\"127.0.0.1:7\"]"),
            ("server", "udp", "true"),
            ("server", "udp_rate_limit", "5"),
            ("server", "max_connections", "5"),
            ("server", "idle_timeout", "\"1m\""),
            ("server", "shutdown_grace", "\"1s\""),
            ("server", "workers", "3"),
            ("log", "level", "\"debug\""),
            ("log", "format", "\"json\""),
            ("log", "directory", "\"/var/log/elsewhere\""),
            ("log", "rotation", "\"hourly\""),
            ("log", "max_files", "3"),
            ("daemon", "pid_file", "\"/run/elsewhere.pid\""),
            ("daemon", "user", "\"nobody\""),
            ("daemon", "group", "\"nogroup\""),
        ];
        for (section, key, value) in every_key {
            let changed = parse(&format!("[{section}]\n{key} = {value}\n")).unwrap();
            let restarts = !Config::default().restart_only_changes(&changed).is_empty();
            assert_eq!(listed.contains(&key), restarts, "{section}.{key}");
        }
        for key in listed {
            assert!(
                every_key.iter().any(|&(_, k, _)| k == key),
                "{key} is not a config key"
            );
        }
    }
}
