//! `echo-client pipe`: standard input to the server, the echo to standard
//! output, like `nc`. When input ends the sending side is shut down (a TCP
//! half-close), and the command ends once the server has sent everything
//! back and closed, so `echo-client pipe < file | cmp - file` compares a
//! whole file with its echo.

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::{Failure, connect_tcp, exit_code, within};
use crate::address::HostPort;

#[derive(Debug, Clone)]
pub struct PipeOptions {
    pub target: HostPort,
    /// Bound on connecting; the transfer itself may take as long as it needs.
    pub connect_timeout: Duration,
}

pub async fn run(options: PipeOptions) -> i32 {
    match pipe(&options).await {
        Ok(()) => exit_code::OK,
        Err(failure) => {
            eprintln!("echo-client: {}: {failure}", options.target);
            failure.verdict.exit_code()
        }
    }
}

async fn pipe(options: &PipeOptions) -> Result<(), Failure> {
    let stream = within(options.connect_timeout, connect_tcp(&options.target)).await?;
    let (mut from_server, mut to_server) = stream.into_split();
    let upload = async {
        tokio::io::copy(&mut tokio::io::stdin(), &mut to_server).await?;
        to_server.shutdown().await
    };
    let download = async {
        let mut stdout = tokio::io::stdout();
        tokio::io::copy(&mut from_server, &mut stdout).await?;
        stdout.flush().await
    };
    tokio::try_join!(upload, download).map_err(|e| Failure::io(&e))?;
    Ok(())
}
