//! Shared by the peer echo servers: the address argument and the line `cargo xtask bench`
//! reads to find the port.

/// The address to bind: the first argument, or 127.0.0.1:0.
pub fn bind_addr() -> String {
    std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".to_string())
}

/// Prints the line the benchmark waits for.
pub fn announce(addr: std::net::SocketAddr) {
    use std::io::Write;
    println!("listening on ws://{addr}");
    let _ = std::io::stdout().flush();
}

/// The fastwebsockets echo, shared by its plain and TLS servers: hyper's upgrade hands the
/// stream to a `FragmentCollector`, and every data frame is written back.
pub mod fastwebsockets_echo {
    use fastwebsockets::upgrade::{UpgradeFut, upgrade};
    use fastwebsockets::{FragmentCollector, OpCode, WebSocketError};
    use http_body_util::Empty;
    use hyper::body::{Bytes, Incoming};
    use hyper::{Request, Response};

    /// Echoes every data frame until the peer closes.
    pub async fn echo(fut: UpgradeFut) -> Result<(), WebSocketError> {
        let mut ws = FragmentCollector::new(fut.await?);
        loop {
            let frame = ws.read_frame().await?;
            match frame.opcode {
                OpCode::Close => break,
                OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
                _ => {}
            }
        }
        Ok(())
    }

    /// Answers the upgrade and runs the echo on the current `LocalSet`.
    pub async fn serve(
        mut req: Request<Incoming>,
    ) -> Result<Response<Empty<Bytes>>, WebSocketError> {
        let (response, fut) = upgrade(&mut req)?;
        tokio::task::spawn_local(async move {
            let _ = echo(fut).await;
        });
        Ok(response)
    }
}
