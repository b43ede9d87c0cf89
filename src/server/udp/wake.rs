//! How a UDP thread blocked in a receive or a send learns that it should
//! stop.
//!
//! On Unix its socket has no timeout, and a stop interrupts the blocked call
//! with `SIGURG`, whose handler does nothing: installed without `SA_RESTART`,
//! it makes the call return `EINTR`, and the thread looks at its stop flag.
//! Why not a timeout: a socket with `SO_RCVTIMEO` arms a timer for every
//! wait, and an echo at one flow waits before every datagram. That cost 6 to
//! 10% more CPU per datagram than the plain C loop in `bench.sh udp`, and
//! woke an idle socket ten times a second. Why `SIGURG`: it is ignored by
//! default, nothing in the daemon uses it (no socket is given an owner for
//! out-of-band data), and Go's runtime took it for the same reasons. One
//! sent to the process from outside only interrupts a system call, which
//! every loop of the daemon retries. A signal that comes just before the
//! thread blocks is lost, so `UdpThread::join` sends it again until the
//! thread has ended.
//!
//! Why not `shutdown(SHUT_RD)`, which wakes a blocked receive on Linux: it
//! marks the socket itself, for good, and every later receive that finds no
//! datagram returns at once, empty. A socket passed by the service manager
//! outlives the daemon, and the next one would inherit that and spin.
//!
//! Elsewhere (Windows, where the daemon builds but is not a product), a
//! receive or a send waits at most `STOP_CHECK`, and then the thread looks
//! at its flag.

use std::time::Duration;

/// How often a stop that has not yet been seen is signalled again.
pub(super) const INTERRUPT_AGAIN: Duration = Duration::from_millis(10);

#[cfg(not(unix))]
pub(super) use timeout::{WAIT_BOUND, interrupt, prepare};
#[cfg(unix)]
pub(super) use unix::{WAIT_BOUND, interrupt, prepare};

#[cfg(unix)]
mod unix {
    use std::io;
    use std::os::unix::thread::JoinHandleExt;
    use std::thread::JoinHandle;
    use std::time::Duration;

    use nix::sys::pthread::pthread_kill;
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

    /// How long a receive or a send may wait: as long as it takes.
    pub(in crate::server::udp) const WAIT_BOUND: Option<Duration> = None;

    const SIGNAL: Signal = Signal::SIGURG;

    extern "C" fn interrupt_only(_: nix::libc::c_int) {}

    /// Makes `SIGNAL` interrupt a blocked system call. Called before any
    /// UDP thread starts.
    pub(in crate::server::udp) fn prepare() -> io::Result<()> {
        let action = SigAction::new(
            SigHandler::Handler(interrupt_only),
            SaFlags::empty(),
            SigSet::empty(),
        );
        // SAFETY: the handler does nothing, which is async-signal-safe.
        unsafe { sigaction(SIGNAL, &action) }
            .map(drop)
            .map_err(io::Error::from)
    }

    /// Interrupts the call `thread` is blocked in, if it is in one.
    pub(in crate::server::udp) fn interrupt(thread: &JoinHandle<()>) {
        // Not joined yet, so the thread's id is still its own, ended or not.
        let _ = pthread_kill(thread.as_pthread_t(), SIGNAL);
    }
}

#[cfg(not(unix))]
mod timeout {
    use std::io;
    use std::thread::JoinHandle;
    use std::time::Duration;

    /// How long a receive or a send may wait before the thread looks
    /// whether it should stop: the most a graceful stop waits for a UDP
    /// socket to close.
    const STOP_CHECK: Duration = Duration::from_millis(100);

    pub(in crate::server::udp) const WAIT_BOUND: Option<Duration> = Some(STOP_CHECK);

    pub(in crate::server::udp) fn prepare() -> io::Result<()> {
        Ok(())
    }

    pub(in crate::server::udp) fn interrupt(_thread: &JoinHandle<()>) {}
}
