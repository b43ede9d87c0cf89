//! `echo-client send`: one message, its echo printed, and an exit code that
//! says whether the echo was exact.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use super::tls::Tls;
use super::{hexdump::hexdump, judge_echo, print_result, tcp_echo, udp_echo};
use crate::shared::address::HostPort;
use crate::shared::exit_code;

#[derive(Debug, Clone)]
pub struct SendOptions {
    pub target: HostPort,
    pub udp: bool,
    /// Over TLS, with this configuration.
    pub tls: Option<Arc<Tls>>,
    pub hex: bool,
    pub timeout: Duration,
    pub message: Vec<u8>,
}

/// Sends the message, prints the echo, and returns the exit code.
pub async fn run(options: SendOptions) -> i32 {
    let exchange = if options.udp {
        udp_echo(&options.target, &options.message, options.timeout).await
    } else {
        tcp_echo(
            &options.target,
            options.tls.as_deref(),
            &options.message,
            options.timeout,
        )
        .await
    };
    let echo = match exchange {
        Ok(echo) => echo.bytes,
        Err(failure) => {
            eprintln!("echo-client: {}: {failure}", options.target);
            return failure.verdict.exit_code();
        }
    };
    let code = match judge_echo(&options.message, &echo) {
        Ok(()) => exit_code::OK,
        Err(failure) => {
            eprintln!("echo-client: {}: {failure}", options.target);
            failure.verdict.exit_code()
        }
    };
    // What came back is printed even when it is wrong: it is the evidence.
    print_result(&shown(echo, options.hex), code)
}

/// The echo as printed: raw bytes for pipes, with a newline added on a
/// terminal so the prompt starts on a line of its own; or a hex dump.
fn shown(mut echo: Vec<u8>, hex: bool) -> Vec<u8> {
    if hex {
        return hexdump(&echo).into_bytes();
    }
    if std::io::stdout().is_terminal() && !echo.is_empty() && !echo.ends_with(b"\n") {
        echo.push(b'\n');
    }
    echo
}
