//! The client side: sending bytes to an echo server and checking what comes
//! back.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `message` over one TCP connection, half-closes, and returns every
/// byte the server sent back before closing its side.
pub async fn send(target: &str, message: &[u8], timeout: Duration) -> io::Result<Vec<u8>> {
    let exchange = async {
        let mut stream = TcpStream::connect(target).await?;
        stream.set_nodelay(true)?;
        let (mut reader, mut writer) = stream.split();
        let write = async {
            writer.write_all(message).await?;
            writer.shutdown().await
        };
        let mut echo = Vec::with_capacity(message.len());
        let read = reader.read_to_end(&mut echo);
        tokio::try_join!(write, read)?;
        Ok(echo)
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no complete echo within {timeout:?}"),
        )
    })?
}
