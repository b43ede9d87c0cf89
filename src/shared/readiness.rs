//! What the event loops of the server (`server::event_loop`) and of
//! `echo-client bench` may conclude from mio's readiness events, on every
//! platform.
//!
//! mio reports readiness once per change (edge-triggered), so a loop must
//! remember it until a read or write shows it is used up. Where the
//! selector reports every arrival (epoll, kqueue), a read that returns less
//! than it asked for has emptied the socket, which saves the read that
//! would otherwise fail with WouldBlock after every message. Elsewhere
//! (Windows), a socket is read until it would block.

/// Whether a short read shows that the socket is empty.
pub(crate) const SHORT_READ_DRAINS: bool = cfg!(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly",
    target_os = "illumos",
));

/// What one event said about a socket.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Readiness {
    pub(crate) readable: bool,
    pub(crate) writable: bool,
    /// The peer has closed its end, or the socket has an error to report:
    /// read on until a read says so, whatever a short read suggests.
    pub(crate) closing: bool,
}

impl Readiness {
    /// No event: a turn taken again for what was reported before.
    pub(crate) const NOTHING_NEW: Readiness = Readiness {
        readable: false,
        writable: false,
        closing: false,
    };

    pub(crate) fn of(event: &mio::event::Event) -> Readiness {
        Readiness {
            readable: event.is_readable(),
            writable: event.is_writable(),
            closing: event.is_read_closed() || event.is_error(),
        }
    }
}
