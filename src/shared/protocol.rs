//! The facts of the echo service that the server and the client must agree
//! on: where it listens by default, and how large a datagram can be.
//!
//! Why a module of its own: a client's default target is the server's
//! default address, and a test ties the shipped configuration file (the
//! daemon's one source of defaults) to [`DEFAULT_HOST`] and
//! [`DEFAULT_PORT`], so neither side can move alone.

/// The address the daemon listens on without configuration, and so the
/// client's default target.
pub const DEFAULT_HOST: &str = "127.0.0.1";

/// The port the daemon listens on without configuration, and the port of a
/// client target given without one.
pub const DEFAULT_PORT: u16 = 65432;

/// The largest datagram there is: the buffer that receives any datagram
/// whole, in the server's UDP echo and in the client.
pub const MAX_DATAGRAM: usize = 65_535;
