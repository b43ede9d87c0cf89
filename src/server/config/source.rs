//! Where the daemon's configuration comes from: `--config`, else
//! `$ECHO_SERVER_CONFIG`, else the system file if it exists, else the
//! built-in default.
//!
//! Why a module of its own: the precedence is a promise to operators (and to
//! the systemd units and deploy tools that rely on it), and a reload must
//! find the same file again after the daemon has changed directory; both are
//! easier to keep when finding the file is apart from reading what is in it.

use std::fmt;
use std::path::{Path, PathBuf};

use super::defaults::DEFAULT_CONFIG_TOML;
use super::diagnostics::ConfigError;

/// Where the daemon looks for its configuration when no path is given.
pub(crate) const SYSTEM_CONFIG_PATH: &str = "/etc/echo-server/config.toml";

/// The environment variable that names a config file.
pub(crate) const CONFIG_ENV_VAR: &str = "ECHO_SERVER_CONFIG";

/// Where the configuration was found, in order of precedence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConfigSource {
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
    pub(crate) fn locate(
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

    pub(crate) fn path(&self) -> Option<&Path> {
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

impl ConfigSource {
    /// How error messages name it: the file, or "built-in default".
    pub(crate) fn origin(&self) -> String {
        match self.path() {
            Some(path) => path.display().to_string(),
            None => self.to_string(),
        }
    }

    /// The configuration's text: the file's, or the built-in default's.
    pub(crate) fn text(&self) -> Result<String, ConfigError> {
        match self.path() {
            Some(path) => {
                let bytes =
                    std::fs::read(path).map_err(|e| ConfigError::unreadable(self.origin(), e))?;
                String::from_utf8(bytes).map_err(|e| ConfigError::not_utf8(self.origin(), &e))
            }
            None => Ok(DEFAULT_CONFIG_TOML.to_string()),
        }
    }
}
