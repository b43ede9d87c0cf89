//! Why the daemon could not start, and the exit code each reason maps to.
//!
//! Service managers and deploy scripts act on exit codes, and people act on
//! messages, so every failure gets both: a code from `sysexits.h` that tells
//! a script what kind of problem it is, and a message that tells a person
//! what to do about it.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::server::config::ConfigError;
use crate::server::tls::TlsError;
use crate::shared::exit_code;

/// Which socket kind an address failure concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Tcp,
    Udp,
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum StartupError {
    #[error("{0}")]
    Config(#[from] ConfigError),

    #[error("{0}")]
    Tls(#[from] TlsError),

    #[error("cannot resolve host `{host}`: {source} (check the name, or use an IP address)")]
    Resolve { host: String, source: io::Error },

    #[error("cannot listen on {protocol} {addr}: the address is already in use (another echo-server, or another program, holds it; find it with `ss -ltnup 'sport = :{port}'`)", port = addr.port())]
    AddressInUse {
        protocol: Protocol,
        addr: SocketAddr,
    },

    #[error(
        "cannot listen on {protocol} {addr}: that address does not belong to this machine (check `ip addr`, or listen on 0.0.0.0 / [::])"
    )]
    AddressNotAvailable {
        protocol: Protocol,
        addr: SocketAddr,
    },

    #[error("cannot listen on {protocol} {addr}: permission denied{hint}", hint = privileged_port_hint(addr))]
    PermissionDenied {
        protocol: Protocol,
        addr: SocketAddr,
    },

    #[error("cannot listen on {protocol} {addr}: {source}")]
    Bind {
        protocol: Protocol,
        addr: SocketAddr,
        source: io::Error,
    },

    #[error(
        "{addr} is listed both with and without proxy_protocol in [server] listen: a listener either takes the PROXY protocol header or not"
    )]
    ConflictingProxyProtocol { addr: SocketAddr },

    #[error("cannot open the log directory {}: {message} (create it, or make it writable by the daemon's user)", directory.display())]
    LogDirectory { directory: PathBuf, message: String },

    #[error("the daemon's user `{user}` may not write {purpose} {} or a file in it: give them to that user, e.g. `chown -R {user}:{group} {}`, or configure a directory of its own", directory.display(), directory.display())]
    NotWritable {
        user: String,
        /// Empty for the user's own group.
        group: String,
        purpose: &'static str,
        directory: PathBuf,
    },

    #[error("already running as pid {pid} (the pid file {} is locked); stop it first, e.g. `kill $(cat {})`", pid_file.display(), pid_file.display())]
    AlreadyRunning { pid_file: PathBuf, pid: String },

    #[error("cannot use the pid file {}: {source}", pid_file.display())]
    PidFile {
        pid_file: PathBuf,
        source: io::Error,
    },

    #[error("cannot become a daemon: {0}")]
    Daemonize(String),

    #[error("[daemon] names a {0} that does not exist on this machine")]
    NoSuchUser(String),

    #[error("cannot use the sockets passed by the service manager: {0}")]
    Activation(String),

    #[error("cannot start the runtime: {0}")]
    Runtime(io::Error),
}

fn privileged_port_hint(addr: &SocketAddr) -> &'static str {
    if addr.port() < 1024 {
        " (ports below 1024 need CAP_NET_BIND_SERVICE: grant it, e.g. with systemd's AmbientCapabilities=CAP_NET_BIND_SERVICE, or use a port of 1024 or more)"
    } else {
        ""
    }
}

impl StartupError {
    pub(crate) fn exit_code(&self) -> i32 {
        match self {
            StartupError::Config(e) if e.unreadable => exit_code::NO_INPUT,
            StartupError::Tls(e) if e.unreadable() => exit_code::NO_INPUT,
            StartupError::Tls(_) => exit_code::CONFIG,
            StartupError::Config(_) | StartupError::ConflictingProxyProtocol { .. } => {
                exit_code::CONFIG
            }
            StartupError::Resolve { .. } => exit_code::NO_HOST,
            StartupError::AddressInUse { .. } | StartupError::AddressNotAvailable { .. } => {
                exit_code::UNAVAILABLE
            }
            StartupError::PermissionDenied { .. } => exit_code::NO_PERMISSION,
            StartupError::Bind { .. } | StartupError::Runtime(_) | StartupError::Activation(_) => {
                exit_code::OS_ERROR
            }
            StartupError::LogDirectory { .. }
            | StartupError::PidFile { .. }
            | StartupError::NotWritable { .. } => exit_code::CANT_CREATE,
            StartupError::AlreadyRunning { .. } => exit_code::UNAVAILABLE,
            StartupError::Daemonize(_) => exit_code::OS_ERROR,
            StartupError::NoSuchUser(_) => exit_code::NO_USER,
        }
    }

    /// Classifies a failed bind so that each common cause gets its own advice.
    pub(crate) fn bind(protocol: Protocol, addr: SocketAddr, source: io::Error) -> StartupError {
        match source.kind() {
            io::ErrorKind::AddrInUse => StartupError::AddressInUse { protocol, addr },
            io::ErrorKind::AddrNotAvailable => StartupError::AddressNotAvailable { protocol, addr },
            io::ErrorKind::PermissionDenied => StartupError::PermissionDenied { protocol, addr },
            _ => StartupError::Bind {
                protocol,
                addr,
                source,
            },
        }
    }
}
