//! Turning the configured addresses into bound sockets, or taking the ones
//! a service manager passed in (socket activation).
//!
//! Binding is where most start-up failures happen (a port in use, a port
//! below 1024 without the capability, a name that does not resolve), so this
//! module is also where those failures get their specific errors. Binding is
//! synchronous and makes plain `std` sockets: it happens before the daemon
//! forks (`--daemon`) and before any runtime exists, so errors still reach
//! the terminal and privileges can be dropped afterwards. Sockets are made
//! with `socket2` because an IPv6 wildcard must be IPv6-only for
//! `listen = ["0.0.0.0:7", "[::]:7"]` to work on Linux, which std's own
//! constructors cannot express.

use std::fmt;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs, UdpSocket};

use socket2::{Domain, Socket, Type};

use crate::server::activation::{self, Inherited};
use crate::server::config::{ListenEntry, ServerConfig, TlsConfig};
use crate::server::error::{Protocol, StartupError};
use crate::shared::address::HostPort;

/// How many connections the kernel may queue before `accept`.
const BACKLOG: i32 = 1024;

/// How often to try for a port that is free for UDP too, with port 0.
const PORT_PAIR_ATTEMPTS: usize = 10;

/// Every socket the daemon serves.
#[derive(Debug)]
pub(crate) struct Listeners {
    pub(crate) tcp: Vec<TcpEndpoint>,
    pub(crate) udp: Vec<UdpSocket>,
    /// The Prometheus endpoint's socket, when the service manager passed
    /// one (bound from `[metrics] listen` otherwise, by `bind_metrics`).
    pub(crate) metrics: Option<TcpListener>,
    /// Where they came from, for the start-up line.
    pub(crate) origin: Origin,
}

/// A listening TCP socket, whether its connections begin with a PROXY
/// protocol header, and whether they speak TLS.
#[derive(Debug)]
pub(crate) struct TcpEndpoint {
    pub(crate) listener: TcpListener,
    pub(crate) proxy_protocol: bool,
    pub(crate) tls: bool,
}

impl TcpEndpoint {
    /// The same listening socket, for another worker.
    pub(crate) fn try_clone(&self) -> std::io::Result<TcpEndpoint> {
        Ok(TcpEndpoint {
            listener: self.listener.try_clone()?,
            ..*self
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Bound by the daemon from the configuration.
    Configured,
    /// Passed in by the service manager (`LISTEN_FDS`).
    Activated,
}

impl Listeners {
    /// The sockets to serve: those passed by a service manager if any, else
    /// every configured address, resolved and bound.
    pub(crate) fn open(
        config: &ServerConfig,
        tls: Option<&TlsConfig>,
    ) -> Result<Listeners, StartupError> {
        match activation::inherited_sockets()? {
            Some(Inherited { tcp, udp, metrics }) => Ok(Listeners {
                tcp,
                udp,
                metrics,
                origin: Origin::Activated,
            }),
            None => Listeners::bind(config, tls),
        }
    }

    /// Resolves and binds every configured address: TCP always, UDP too when
    /// enabled, on the same port as TCP (which matters when the port is 0),
    /// and the TLS addresses (TCP only).
    pub(crate) fn bind(
        config: &ServerConfig,
        tls: Option<&TlsConfig>,
    ) -> Result<Listeners, StartupError> {
        let mut listeners = Listeners {
            tcp: Vec::new(),
            udp: Vec::new(),
            metrics: None,
            origin: Origin::Configured,
        };
        for (addr, proxy_protocol) in resolve_all(&config.listen_entries())? {
            let listener = if config.udp {
                let (tcp, udp) = bind_pair(addr)?;
                listeners.udp.push(udp);
                tcp
            } else {
                bind_tcp(addr)?
            };
            listeners.tcp.push(TcpEndpoint {
                listener,
                proxy_protocol,
                tls: false,
            });
        }
        // Resolved apart from the plain ones: an address that is both is
        // refused by the second bind, not merged into one listener.
        let tls_entries: Vec<ListenEntry> = tls
            .map(|tls| tls.listen.get_ref().clone())
            .unwrap_or_default()
            .into_iter()
            .map(|address| ListenEntry {
                address,
                proxy_protocol: false,
            })
            .collect();
        for (addr, _) in resolve_all(&tls_entries)? {
            listeners.tcp.push(TcpEndpoint {
                listener: bind_tcp(addr)?,
                proxy_protocol: false,
                tls: true,
            });
        }
        Ok(listeners)
    }

    /// The bound addresses, as the start-up line reports them.
    pub(crate) fn describe(&self) -> BoundAddresses {
        let tcp = self.tcp.iter().filter_map(|t| {
            let scheme = if t.tls { "tls" } else { "tcp" };
            t.listener.local_addr().ok().map(|a| (scheme, a))
        });
        let udp = self.udp.iter().filter_map(|s| s.local_addr().ok());
        BoundAddresses(tcp.chain(udp.map(|a| ("udp", a))).collect())
    }

    /// Whether any listener speaks TLS.
    pub(crate) fn any_tls(&self) -> bool {
        self.tcp.iter().any(|t| t.tls)
    }

    /// The addresses whose connections begin with a PROXY protocol
    /// header, for the start-up line (empty if none).
    pub(crate) fn describe_proxied(&self) -> String {
        let proxied: Vec<String> = self
            .tcp
            .iter()
            .filter(|t| t.proxy_protocol)
            .filter_map(|t| t.listener.local_addr().ok())
            .map(|addr| addr.to_string())
            .collect();
        proxied.join(" ")
    }

    /// The `proxy_protocol` entries of `config` that socket activation
    /// leaves without the header (empty if none): the passed sockets decide
    /// by their name, and none of them carries `proxy-protocol`. Moving to
    /// socket units without that name would otherwise echo every load
    /// balancer's header back without a word.
    pub(crate) fn unheeded_proxy_entries(&self, config: &ServerConfig) -> String {
        if self.origin != Origin::Activated || self.tcp.iter().any(|t| t.proxy_protocol) {
            return String::new();
        }
        let unheeded: Vec<String> = config
            .listen_entries()
            .into_iter()
            .filter(|entry| entry.proxy_protocol)
            .map(|entry| entry.address.to_string())
            .collect();
        unheeded.join(" ")
    }
}

/// A list like `tcp://127.0.0.1:7 udp://127.0.0.1:7 tls://127.0.0.1:65443`.
pub(crate) struct BoundAddresses(Vec<(&'static str, SocketAddr)>);

impl fmt::Display for BoundAddresses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (scheme, addr)) in self.0.iter().enumerate() {
            write!(f, "{}{scheme}://{addr}", if i == 0 { "" } else { " " })?;
        }
        Ok(())
    }
}

/// Binds `[metrics] listen` (its first address, if a name yields several)
/// for the metrics thread, which blocks on it.
pub(crate) fn bind_metrics(address: &HostPort) -> Result<TcpListener, StartupError> {
    let HostPort { host, port } = address;
    let addr = (host.as_str(), *port)
        .to_socket_addrs()
        .and_then(|mut resolved| {
            resolved
                .next()
                .ok_or_else(|| std::io::Error::other("the name has no address"))
        })
        .map_err(|source| StartupError::Resolve {
            host: host.to_string(),
            source,
        })?;
    let listener = bind_tcp(addr)?;
    listener
        .set_nonblocking(false)
        .map_err(|e| StartupError::bind(Protocol::Tcp, addr, e))?;
    Ok(listener)
}

/// Resolves every entry, with its `proxy_protocol`; a name may yield
/// several addresses (`localhost` gives 127.0.0.1 and ::1), and each is
/// served once. One address cannot both take the PROXY protocol and not;
/// port 0 is a port of its own for each entry.
fn resolve_all(entries: &[ListenEntry]) -> Result<Vec<(SocketAddr, bool)>, StartupError> {
    let mut addrs: Vec<(SocketAddr, bool)> = Vec::new();
    for entry in entries {
        let HostPort { host, port } = &entry.address;
        let resolved =
            (host.as_str(), *port)
                .to_socket_addrs()
                .map_err(|source| StartupError::Resolve {
                    host: host.to_string(),
                    source,
                })?;
        for addr in resolved {
            let same = |(known, _): &&(SocketAddr, bool)| *known == addr && addr.port() != 0;
            match addrs.iter().find(same) {
                None => addrs.push((addr, entry.proxy_protocol)),
                Some((_, proxied)) if *proxied == entry.proxy_protocol => {}
                Some(_) => return Err(StartupError::ConflictingProxyProtocol { addr }),
            }
        }
    }
    Ok(addrs)
}

/// TCP and UDP on the same address. With port 0 the kernel picks the TCP
/// port, which may be taken for UDP; then another pick is tried.
fn bind_pair(addr: SocketAddr) -> Result<(TcpListener, UdpSocket), StartupError> {
    let mut attempts = 0;
    loop {
        let tcp = bind_tcp(addr)?;
        let bound = tcp
            .local_addr()
            .map_err(|e| StartupError::bind(Protocol::Tcp, addr, e))?;
        match bind_udp(bound) {
            Ok(udp) => return Ok((tcp, udp)),
            Err(StartupError::AddressInUse { .. })
                if addr.port() == 0 && attempts < PORT_PAIR_ATTEMPTS =>
            {
                attempts += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

fn new_socket(addr: SocketAddr, kind: Type, protocol: Protocol) -> Result<Socket, StartupError> {
    let fail = |e| StartupError::bind(protocol, addr, e);
    let socket = Socket::new(Domain::for_address(addr), kind, None).map_err(fail)?;
    // SO_REUSEADDR lets a restarted daemon bind while old connections are in
    // TIME_WAIT. Only for TCP on Unix: for UDP it would let two programs
    // share a port silently, and on Windows it lets another process steal it.
    #[cfg(unix)]
    if kind == Type::STREAM {
        socket.set_reuse_address(true).map_err(fail)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(true).map_err(fail)?;
    }
    socket.set_nonblocking(true).map_err(fail)?;
    socket.bind(&addr.into()).map_err(fail)?;
    Ok(socket)
}

fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, StartupError> {
    let socket = new_socket(addr, Type::STREAM, Protocol::Tcp)?;
    socket
        .listen(BACKLOG)
        .map_err(|e| StartupError::bind(Protocol::Tcp, addr, e))?;
    Ok(socket.into())
}

fn bind_udp(addr: SocketAddr) -> Result<UdpSocket, StartupError> {
    Ok(new_socket(addr, Type::DGRAM, Protocol::Udp)?.into())
}
