//! The built-in defaults: the shipped, commented `config/echo-server.toml`,
//! compiled in.
//!
//! Why: the file that operators read and copy *is* the default, so the
//! documentation and the behaviour cannot drift. A key missing from an
//! operator's file takes its value from the shipped file, through the
//! functions below; no default is written a second time in Rust. (The
//! `shipped_file_sets_every_key` test keeps the shipped file complete.)

use std::path::PathBuf;
use std::sync::OnceLock;

use serde::de::DeserializeOwned;

use crate::shared::address::Host;
use crate::shared::duration::HumanDuration;

use super::{LogFormat, LogLevel, Rotation};

/// The shipped configuration file, which doubles as the built-in default.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../../../config/echo-server.toml");

/// The shipped file's value of `[section] key`.
pub(super) fn shipped<T: DeserializeOwned>(section: &str, key: &str) -> T {
    static SHIPPED: OnceLock<toml::Table> = OnceLock::new();
    let table = SHIPPED.get_or_init(|| {
        toml::from_str(DEFAULT_CONFIG_TOML).expect("the shipped config/echo-server.toml is TOML")
    });
    let value = table
        .get(section)
        .and_then(|section| section.get(key))
        .unwrap_or_else(|| panic!("the shipped config/echo-server.toml sets [{section}] {key}"));
    value.clone().try_into().unwrap_or_else(|e| {
        panic!("the shipped config/echo-server.toml has a valid [{section}] {key}: {e}")
    })
}

/// A section as an operator's file without it means: every key the
/// shipped file's.
pub(super) fn section<T: DeserializeOwned>() -> T {
    toml::from_str("").expect("every key has a default")
}

/// One function per key that has a default, named after the key, as serde's
/// `default = "..."` wants them.
macro_rules! shipped_defaults {
    ($($section:ident . $key:ident : $type:ty),* $(,)?) => {
        $(
            pub(super) fn $key() -> $type {
                shipped(stringify!($section), stringify!($key))
            }
        )*

        /// Every key with a default, for the test that the shipped file
        /// sets them all.
        #[cfg(test)]
        pub(super) fn check_all() {
            $( let _: $type = $key(); )*
        }
    };
}

shipped_defaults! {
    server.host: Host,
    server.port: u16,
    server.udp: bool,
    server.udp_rate_limit: u32,
    server.max_connections: usize,
    server.idle_timeout: HumanDuration,
    server.shutdown_grace: HumanDuration,
    server.proxy_protocol_timeout: HumanDuration,
    server.tls_handshake_timeout: HumanDuration,
    server.workers: usize,
    log.level: LogLevel,
    log.format: LogFormat,
    log.rotation: Rotation,
    log.max_files: usize,
    daemon.pid_file: PathBuf,
}
