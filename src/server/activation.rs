//! Socket activation: serving sockets that a service manager bound and
//! passed in (`LISTEN_FDS`/`LISTEN_PID`, as systemd's `.socket` units and
//! `systemd-socket-activate` do).
//!
//! A daemon that binds nothing itself needs no capability to serve port 7
//! and can run in a private network namespace, which is why the activated
//! service unit is locked down further than the self-binding one. Stream
//! sockets are served as TCP and datagram sockets as UDP; the configured
//! `listen` addresses and `udp` setting do not apply then.
//!
//! The PROXY protocol is a property of the socket, so the unit that makes
//! the socket says it: a stream socket named `proxy-protocol`
//! (`FileDescriptorName=proxy-protocol` in the `.socket` unit, `--fdname`
//! for `systemd-socket-activate`) takes the header; any other name does not.
//! A stream socket named `metrics` is not an echo socket at all: the daemon
//! serves its Prometheus endpoint there (`metrics`), which is how a daemon
//! without a network of its own can be scraped.

use std::net::UdpSocket;

use crate::server::error::StartupError;
use crate::server::listeners::TcpEndpoint;

/// The descriptor name that turns on the PROXY protocol for a socket.
pub(crate) const PROXY_PROTOCOL_FD_NAME: &str = "proxy-protocol";
/// The descriptor name that makes a socket a TLS listener (`[tls]`).
pub(crate) const TLS_FD_NAME: &str = "tls";
/// The descriptor name of the socket that serves `/metrics`.
pub(crate) const METRICS_FD_NAME: &str = "metrics";

/// The sockets a service manager passed in, by kind. (`listeners` makes
/// them the daemon's `Listeners`; this module knows nothing of binding.)
#[derive(Debug, Default)]
pub(crate) struct Inherited {
    pub(crate) tcp: Vec<TcpEndpoint>,
    pub(crate) udp: Vec<UdpSocket>,
    /// The socket named `metrics`, if one was passed.
    pub(crate) metrics: Option<std::net::TcpListener>,
}

/// The sockets passed by the service manager, or `None` if there are none
/// (or they were meant for another process).
#[cfg(unix)]
pub(crate) fn inherited_sockets() -> Result<Option<Inherited>, StartupError> {
    use std::os::fd::FromRawFd;

    let invalid = |message: String| StartupError::Activation(message);
    let fds = sd_notify::listen_fds_with_names()
        .map_err(|e| invalid(format!("LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES: {e}")))?;
    if fds.len() == 0 {
        return Ok(None);
    }
    let mut listeners = Inherited::default();
    for (fd, name) in fds {
        // SAFETY: the service manager passes these descriptors to this
        // process (LISTEN_PID was checked) for it to own; nothing else in
        // the process uses them, and each is taken exactly once.
        let socket = unsafe { socket2::Socket::from_raw_fd(fd) };
        let kind = socket
            .r#type()
            .map_err(|e| invalid(format!("descriptor {fd} is not a socket: {e}")))?;
        let domain = socket
            .domain()
            .map_err(|e| invalid(format!("descriptor {fd}: {e}")))?;
        if domain != socket2::Domain::IPV4 && domain != socket2::Domain::IPV6 {
            return Err(invalid(format!(
                "descriptor {fd} is not an IPv4 or IPv6 socket (ListenStream= wants a port or an IP address)"
            )));
        }
        socket
            .set_nonblocking(true)
            .map_err(|e| invalid(format!("descriptor {fd}: {e}")))?;
        if kind == socket2::Type::STREAM {
            if !socket.is_listener().unwrap_or(false) {
                return Err(invalid(format!(
                    "descriptor {fd} is a connection, not a listening socket (the .socket unit needs Accept=no)"
                )));
            }
            if name == METRICS_FD_NAME {
                if listeners.metrics.is_some() {
                    return Err(invalid(format!(
                        "descriptor {fd} is a second socket named `{METRICS_FD_NAME}`: the metrics endpoint has one address"
                    )));
                }
                listeners.metrics = Some(socket.into());
                continue;
            }
            listeners.tcp.push(TcpEndpoint {
                listener: socket.into(),
                proxy_protocol: name == PROXY_PROTOCOL_FD_NAME,
                tls: name == TLS_FD_NAME,
            });
        } else if kind == socket2::Type::DGRAM {
            listeners.udp.push(socket.into());
        } else {
            return Err(invalid(format!(
                "descriptor {fd} is neither a stream nor a datagram socket (use ListenStream= or ListenDatagram=)"
            )));
        }
    }
    Ok(Some(listeners))
}

#[cfg(not(unix))]
pub(crate) fn inherited_sockets() -> Result<Option<Inherited>, StartupError> {
    Ok(None)
}
