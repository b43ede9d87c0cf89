//! The signals the daemon acts on, as one stream of requests.
//!
//! SIGTERM (systemd's stop) and SIGINT (Ctrl-C) ask it to stop; SIGHUP (the
//! unit's `ExecReload`) asks it to re-read its configuration. Handlers are
//! installed before the daemon reports that it has started, so a SIGHUP sent
//! as soon as the start-up line appears can never kill it.

use std::io;

/// What a signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Request {
    Stop(&'static str),
    Reload,
}

#[cfg(unix)]
pub(crate) struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    pub(crate) fn install() -> io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    pub(crate) async fn recv(&mut self) -> Request {
        tokio::select! {
            _ = self.terminate.recv() => Request::Stop("SIGTERM"),
            _ = self.interrupt.recv() => Request::Stop("SIGINT"),
            _ = self.hangup.recv() => Request::Reload,
        }
    }
}

/// Elsewhere only Ctrl-C exists.
#[cfg(not(unix))]
pub(crate) struct Signals;

#[cfg(not(unix))]
impl Signals {
    pub(crate) fn install() -> io::Result<Signals> {
        Ok(Signals)
    }

    pub(crate) async fn recv(&mut self) -> Request {
        match tokio::signal::ctrl_c().await {
            Ok(()) => Request::Stop("Ctrl-C"),
            Err(_) => std::future::pending().await,
        }
    }
}
