//! W8's HTTP server (`bench/run W8`): answers every request after `DELAY_MS`
//! milliseconds (default 50), as a remote API or an LLM endpoint would, any number at
//! once. A Rust program, not Ruby, so that on the bench's two cores the server costs
//! next to nothing and the numbers are the job system's and its HTTP client's — in
//! production the API runs elsewhere. Prints its port on the first line of stdout,
//! then serves until killed.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BODY: &str = "ok\n";

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let delay = Duration::from_millis(
        std::env::var("DELAY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(50),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?.port());
    loop {
        let (socket, _) = listener.accept().await?;
        tokio::spawn(async move {
            let _ = answer(socket, delay).await;
        });
    }
}

/// Reads one request (up to the blank line), waits, answers, closes.
async fn answer(mut socket: TcpStream, delay: Duration) -> std::io::Result<()> {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = socket.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        request.extend_from_slice(&buf[..n]);
    }
    tokio::time::sleep(delay).await;
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    socket.write_all(response.as_bytes()).await?;
    socket.shutdown().await
}
