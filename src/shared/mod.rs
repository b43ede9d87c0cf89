//! What both binaries need, and nothing else.
//!
//! Why a module of its own: a fact that the server and the client must agree
//! on (an address's spelling, a duration's, an exit code, the default port)
//! is written once, here, so the two cannot drift apart. The rest of the
//! crate is either the daemon's (`server`) or the client's (`client`); code
//! moves here only when both use it.

pub mod address;
pub mod output;
pub(crate) mod readiness;
pub(crate) mod socket_calls;
