//! An echo server on tokio: ws-transport on tokio's streams and timers (its `tokio` feature),
//! futures' `StreamExt` and `SinkExt`, permessage-deflate accepted when offered.
//! `cargo xtask conformance --server ws-transport-tokio` runs the suite against it.
//!
//! ```sh
//! cargo run --example tokio_echo -- 127.0.0.1:9001
//! ```

use std::net::SocketAddr;

use futures_util::StreamExt;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let addr: SocketAddr = match std::env::args().nth(1) {
        Some(addr) => addr.parse()?,
        None => ([127, 0, 0, 1], 9001).into(),
    };
    let mut config = ws_transport::Config::default();
    config.compression = Some(ws_proto::DeflateConfig::default());
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on ws://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let config = config.clone();
        tokio::spawn(async move {
            let mut ws = ws_transport::tokio::accept(stream, config).await?;
            // `feed` queues the echo; `next` writes what is queued before it waits for more
            // input, so the echoes of messages that came in one read go out in one write.
            while let Some(message) = ws.next().await {
                ws.feed(message?).await?;
            }
            Ok::<(), ws_transport::Error>(())
        });
    }
}
