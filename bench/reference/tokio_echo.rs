//! The second reference of `scripts/bench.sh`: the minimal tokio echo server
//! that tokio's own example shows (accept, spawn, read, write_all), with the
//! same 16 KiB buffer and TCP_NODELAY as echo-server, so the difference
//! between the two is what echo-server's features and design cost or save.
//!
//! Usage: tokio-echo HOST:PORT (port 0 picks a free one).
//! Prints "listening on HOST:PORT" once it accepts connections.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = TcpListener::bind(&address).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (mut socket, _) = listener.accept().await?;
        socket.set_nodelay(true)?;
        tokio::spawn(async move {
            let mut buf = vec![0; 16 * 1024];
            loop {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if socket.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
}
