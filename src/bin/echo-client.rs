//! `echo-client`: parses the command line and hands over to the library.

use std::io::Write;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Talks to an RFC 862 echo server.
#[derive(Debug, Parser)]
#[command(name = "echo-client", version, term_width = 100)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send a message and print the echo; exit 0 only if it came back unchanged.
    Send {
        /// The server, as HOST:PORT or [IPV6]:PORT.
        #[arg(short, long, default_value = "127.0.0.1:65432")]
        target: String,
        /// The words to send, joined by spaces.
        #[arg(required = true)]
        message: Vec<String>,
    },
}

fn main() {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() { 64 } else { 0 });
        }
    };
    let Command::Send { target, message } = args.command;
    let message = message.join(" ");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    match runtime.block_on(echo_service::client::send(
        &target,
        message.as_bytes(),
        Duration::from_secs(5),
    )) {
        Ok(echo) => {
            let _ = std::io::stdout().write_all(&echo);
            println!();
            std::process::exit(if echo == message.as_bytes() { 0 } else { 1 });
        }
        Err(e) => {
            eprintln!("echo-client: {target}: {e}");
            std::process::exit(2);
        }
    }
}
