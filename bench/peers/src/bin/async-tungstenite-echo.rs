//! Echo server on async-tungstenite over smol, as its documentation shows: `accept_async` on
//! a futures-io stream, then send back every text and binary message.

use futures_util::StreamExt;
use smol::Async;
use std::net::{TcpListener, TcpStream};

async fn echo(stream: Async<TcpStream>) -> Result<(), async_tungstenite::tungstenite::Error> {
    let mut ws = async_tungstenite::accept_async(stream).await?;
    while let Some(message) = ws.next().await {
        let message = message?;
        if message.is_text() || message.is_binary() {
            ws.send(message).await?;
        }
    }
    Ok(())
}

fn main() -> std::io::Result<()> {
    smol::block_on(async {
        let listener = Async::<TcpListener>::bind(
            ws_bench_peers::bind_addr().parse::<std::net::SocketAddr>().expect("address"),
        )?;
        ws_bench_peers::announce(listener.get_ref().local_addr()?);
        loop {
            let (stream, _) = listener.accept().await?;
            stream.get_ref().set_nodelay(true)?;
            smol::spawn(async move {
                let _ = echo(stream).await;
            })
            .detach();
        }
    })
}
