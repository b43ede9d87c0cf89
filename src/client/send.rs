//! `echo-client send`: one message, its echo printed, and an exit code that
//! says whether the echo was exact.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use super::{exit_code, hexdump::hexdump, judge_echo, tcp_echo, udp_echo};
use crate::address::HostPort;

#[derive(Debug, Clone)]
pub struct SendOptions {
    pub target: HostPort,
    pub udp: bool,
    pub hex: bool,
    pub timeout: Duration,
    pub message: Vec<u8>,
}

/// Sends the message, prints the echo, and returns the exit code.
pub async fn run(options: SendOptions) -> i32 {
    let exchange = if options.udp {
        udp_echo(&options.target, &options.message, options.timeout).await
    } else {
        tcp_echo(&options.target, &options.message, options.timeout).await
    };
    let echo = match exchange {
        Ok(echo) => echo.bytes,
        Err(failure) => {
            eprintln!("echo-client: {}: {failure}", options.target);
            return failure.verdict.exit_code();
        }
    };
    // What came back is printed even when it is wrong: it is the evidence.
    print_echo(&echo, options.hex);
    match judge_echo(&options.message, &echo) {
        Ok(()) => exit_code::OK,
        Err(failure) => {
            eprintln!("echo-client: {}: {failure}", options.target);
            failure.verdict.exit_code()
        }
    }
}

fn print_echo(echo: &[u8], hex: bool) {
    let mut stdout = std::io::stdout().lock();
    let _ = if hex {
        stdout.write_all(hexdump(echo).as_bytes())
    } else {
        // Raw bytes for pipes; on a terminal, end the line for the prompt.
        let newline = stdout.is_terminal() && !echo.is_empty() && !echo.ends_with(b"\n");
        stdout.write_all(echo).and_then(|()| {
            if newline {
                stdout.write_all(b"\n")
            } else {
                Ok(())
            }
        })
    };
    let _ = stdout.flush();
}
