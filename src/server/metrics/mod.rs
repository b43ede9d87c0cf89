//! The daemon's Prometheus metrics: opt-in (`[metrics] listen`, or a socket
//! named `metrics` passed by systemd), served on an address of their own.
//!
//! Why in three parts: the counts are kept by the threads that do the work,
//! cheaply and always (`counters`); a scrape reads them all and writes them
//! with the `prometheus-client` crate (`exposition`); a small HTTP server on
//! a thread of its own answers scrapes (`http`), so neither a scraper nor the
//! encoding ever runs on a thread that echoes. With metrics off, nothing but
//! the counting happens, which costs a worker a few stores to its own cache
//! line per event.

pub(crate) mod counters;
mod exposition;
mod http;

use std::io;
use std::net::TcpListener;

pub(crate) use exposition::Sources;

/// Serves `/metrics` from `sources` on `listener`, on a thread of its own,
/// for the rest of the process's life.
pub(crate) fn start(listener: TcpListener, sources: Sources) -> io::Result<()> {
    // Activated sockets come non-blocking; this thread waits on it.
    listener.set_nonblocking(false)?;
    let registry = exposition::registry(sources);
    std::thread::Builder::new()
        .name("echo-metrics".into())
        .spawn(move || http::serve(listener, registry))?;
    Ok(())
}
