//! `echo-client mtu`: the largest datagram a path carries to the echo
//! server and back, and over TCP the MSS a connection ends up with.
//!
//! Why a command of its own: an MTU black hole (a tunnel or VPN that passes
//! small packets and silently drops large ones, with the ICMP that would say
//! so filtered on the way) is the classic "ping works, the application
//! hangs" failure, and `check` with one size cannot find it. The search
//! needs control over the Don't-Fragment bit and the kernel's path MTU
//! cache, which only Linux's socket options give here (`discovery`); on
//! other platforms the command says that it is not supported, with its own
//! exit code, rather than report a figure it cannot vouch for.

#[cfg(target_os = "linux")]
mod discovery;

use std::time::Duration;

use crate::shared::address::HostPort;

/// What `echo-client mtu` is asked to do.
#[derive(Debug, Clone)]
pub struct MtuOptions {
    pub target: HostPort,
    /// Report the MSS of a TCP connection instead of searching over UDP.
    pub tcp: bool,
    /// How long to wait for each probe's echo.
    pub timeout: Duration,
    /// Probes of one size, each after the last one's timeout, before the
    /// size counts as too big for the path.
    pub attempts: u32,
    pub json: bool,
}

/// Runs the search or the TCP report, prints it, and returns the exit code.
#[cfg(target_os = "linux")]
pub async fn run(options: MtuOptions) -> i32 {
    discovery::run(options).await
}

/// Says that MTU discovery is not supported here, and returns the code for
/// it.
#[cfg(not(target_os = "linux"))]
pub async fn run(options: MtuOptions) -> i32 {
    eprintln!(
        "echo-client: mtu {}: not supported on this platform: the search needs Linux's \
         path MTU socket options (IP_MTU_DISCOVER, IP_MTU)",
        options.target
    );
    crate::shared::exit_code::UNAVAILABLE
}
