//! `echo-client send`: one message, its echo printed, and an exit code that
//! says whether the echo was exact.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Failure, connect_tcp, connect_udp, hexdump::hexdump, judge_echo, within};
use crate::address::HostPort;

/// After the whole echo has arrived, how long to watch for stray extra
/// bytes before the connection is closed. A correct server closes at once
/// after the half-close, so this rarely costs anything.
const TRAILING_BYTES_WAIT: Duration = Duration::from_millis(100);

/// The largest datagram UDP can carry over IPv4.
pub const MAX_UDP_PAYLOAD: usize = 65_507;

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
    let exchange = async {
        if options.udp {
            exchange_udp(&options).await
        } else {
            exchange_tcp(&options).await
        }
    };
    let echo = match within(options.timeout, exchange).await {
        Ok(echo) => echo,
        Err(failure) => {
            eprintln!("echo-client: {}: {failure}", options.target);
            return failure.verdict.exit_code();
        }
    };
    // What came back is printed even when it is wrong: it is the evidence.
    print_echo(&echo, options.hex);
    match judge_echo(&options.message, &echo) {
        Ok(()) => super::exit_code::OK,
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

/// Writes the message and half-closes while reading the echo back.
async fn exchange_tcp(options: &SendOptions) -> Result<Vec<u8>, Failure> {
    let mut stream = connect_tcp(&options.target).await?;
    let (mut reader, mut writer) = stream.split();
    let write = async {
        writer.write_all(&options.message).await?;
        writer.shutdown().await
    };
    let read = async {
        let mut echo = Vec::with_capacity(options.message.len());
        let mut expected = (&mut reader).take(options.message.len() as u64);
        expected.read_to_end(&mut echo).await?;
        if echo.len() == options.message.len() {
            let mut extra = Vec::new();
            let _ = tokio::time::timeout(TRAILING_BYTES_WAIT, reader.read_to_end(&mut extra)).await;
            echo.extend_from_slice(&extra);
        }
        Ok(echo)
    };
    let ((), echo) = tokio::try_join!(write, read).map_err(|e| Failure::io(&e))?;
    Ok(echo)
}

async fn exchange_udp(options: &SendOptions) -> Result<Vec<u8>, Failure> {
    let socket = connect_udp(&options.target).await?;
    socket
        .send(&options.message)
        .await
        .map_err(|e| Failure::io(&e))?;
    let mut buf = vec![0u8; MAX_UDP_PAYLOAD + 1];
    let len = socket.recv(&mut buf).await.map_err(|e| Failure::io(&e))?;
    buf.truncate(len);
    Ok(buf)
}
