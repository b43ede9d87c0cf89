//! echo-service: an RFC 862 echo daemon and the client that checks it.
//!
//! # Map of the crate
//!
//! | module | owns | used by |
//! |---|---|---|
//! | [`server`] | the daemon: configuration, binding, the TCP worker threads and their event loops, UDP, limits, signals, logging, its Prometheus metrics, systemd and `--daemon` | `echo-server` |
//! | [`client`] | `send`, `check`, `bench` and `pipe`, how an exchange is judged, their TLS (`client::tls`), and the hosts file (`client::inventory`) | `echo-client` |
//! | [`shared`] | the facts both sides agree on: the spelling of `HOST:PORT` (`address`) and of durations (`duration`), writing results (`output`), the man pages and completions the binaries print (`manual`), and the event-loop helpers of the server and `bench` (`readiness`, `socket_calls`) | both |
//!
//! The binaries in `src/bin/` are thin: they parse the command line with
//! clap and call [`server::launch`] or a `client` verb's `run`, then exit
//! with the code it returns. Everything below them is `pub(crate)` unless a
//! binary needs it.
//!
//! # How a byte flows through the daemon
//!
//! 1. `server::launch` loads the configuration (`server::config`), binds the
//!    sockets or takes the ones systemd passed (`server::listeners`,
//!    `server::activation`), and starts one worker thread per CPU
//!    (`server::workers`).
//! 2. Every worker thread runs a `server::event_loop::EventLoop` on its own
//!    epoll set, which holds every listening socket: the kernel wakes an idle
//!    worker, whose `accept` takes the connection, and `server::limits`
//!    grants it a permit (or refuses it past `max_connections`).
//! 3. When the connection is readable, the loop `recv`s into its scratch
//!    buffer (`shared::socket_calls`) and `send`s the same bytes straight
//!    back; only what the peer does not take at once is kept, and nothing
//!    more is read until it is sent. On a listener with `proxy_protocol`,
//!    the first bytes are the load balancer's header (`server::proxy_header`),
//!    which names the client and is not echoed.
//! 4. The control thread (signals, reloads, the watchdog) reaches a worker
//!    only through its `server::mailbox`.
//! 5. Each UDP socket has a thread of its own (`server::udp`), started with
//!    the workers, which waits for a datagram, reads every one waiting with
//!    the same call and answers those its guard lets through with another.

pub mod client;
pub mod server;
pub mod shared;
