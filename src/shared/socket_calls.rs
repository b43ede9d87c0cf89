//! `recv` and `send` on a TCP stream, for the event loops' hot paths: the
//! server's workers (`server::event_loop`) and the load threads of
//! `echo-client bench`.
//!
//! Why not std's calls: in a process with more than one thread, glibc makes
//! `recv` and `send` cancellation points, and switches the thread's
//! asynchronous cancellation on and off around every call (an atomic
//! operation and a function call on each side). Both binaries run several
//! threads and never cancel one. With two such calls per round trip, perf
//! put that switching at about 2% of `echo-client bench`'s CPU, which a
//! single-threaded C loop does not pay. On Linux, rustix makes the system
//! call itself (through mio's `try_io`, as mio's own reads and writes go,
//! so that a selector which must re-arm a socket after `WouldBlock` still
//! does); elsewhere mio's own calls serve.

use std::io;

use mio::net::TcpStream;

/// Reads what has arrived, at most `buf.len()` bytes, as `Read::read`.
pub(crate) fn recv(stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    #[cfg(target_os = "linux")]
    {
        stream.try_io(|| {
            let (read, _) = rustix::net::recv(stream, buf, rustix::net::RecvFlags::empty())?;
            Ok(read)
        })
    }
    #[cfg(not(target_os = "linux"))]
    {
        io::Read::read(&mut &*stream, buf)
    }
}

/// Writes what the socket takes of `buf`, as `Write::write`; a peer that has
/// gone is an error, never a SIGPIPE.
pub(crate) fn send(stream: &TcpStream, buf: &[u8]) -> io::Result<usize> {
    #[cfg(target_os = "linux")]
    {
        stream.try_io(|| {
            Ok(rustix::net::send(
                stream,
                buf,
                rustix::net::SendFlags::NOSIGNAL,
            )?)
        })
    }
    #[cfg(not(target_os = "linux"))]
    {
        io::Write::write(&mut &*stream, buf)
    }
}
