//! echo-service: an RFC 862 echo daemon and the client that checks it.
//!
//! The binaries are thin: `echo-server` parses its arguments and calls
//! [`server::launch`]; `echo-client` calls [`client`]. Each module owns one
//! concern, in the manner of tokio's mini-redis.

pub mod activation;
pub mod address;
pub mod client;
pub mod config;
#[cfg(unix)]
pub mod daemon;
pub mod error;
pub mod inventory;
pub mod limits;
pub mod listeners;
pub mod logging;
pub mod notify;
pub mod output;
pub mod readiness;
pub mod server;
pub mod shutdown;
pub mod signals;
pub mod socket_calls;
pub mod tcp;
pub mod throttle;
pub mod udp;
pub mod workers;
