//! The README's server, a `recv`/`send` loop per connection on smol, with permessage-deflate
//! accepted when offered. `cargo xtask conformance --server ws-transport` runs the suite
//! against it.
//!
//! ```sh
//! cargo run -p ws-transport --example echo_server -- 127.0.0.1:9001
//! ```

use std::net::SocketAddr;

fn main() -> std::io::Result<()> {
    let addr: SocketAddr = match std::env::args().nth(1) {
        Some(addr) => addr.parse().map_err(std::io::Error::other)?,
        None => ([127, 0, 0, 1], 9001).into(),
    };
    let mut config = ws_transport::Config::default();
    config.compression = Some(ws_proto::DeflateConfig::default());
    smol::block_on(async {
        // smol::net's streams end their write side on close, as the close handshake needs.
        let listener = smol::net::TcpListener::bind(addr).await?;
        println!("listening on ws://{}", listener.local_addr()?);
        loop {
            let (stream, _) = listener.accept().await?;
            let config = config.clone();
            smol::spawn(async move {
                let mut ws = ws_transport::accept(stream, config).await?;
                while let Some(message) = ws.recv().await? {
                    ws.send(message).await?;
                }
                Ok::<(), ws_transport::Error>(())
            })
            .detach();
        }
    })
}
