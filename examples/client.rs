//! A command-line client: connects to a `ws://` or `wss://` URL (the system's trust store, or
//! `SSL_CERT_FILE`; `HTTPS_PROXY` and `NO_PROXY` honoured), sends each line of standard input
//! as a text message and prints each message it receives. The end of input closes with 1000.
//!
//! ```sh
//! cargo run --example client -- wss://echo.example/
//! ```

use anyhow::{Context, Result};
use futures_util::StreamExt;
use smol::io::{AsyncBufReadExt, BufReader};
use ws_transport::Message;
use ws_transport::ws_proto::CloseCode;

fn main() -> Result<()> {
    let url = std::env::args().nth(1).context("usage: client ws://host[:port]/path")?;
    smol::block_on(async {
        let (ws, accepted) = ws_transport::connect_tcp(&url, Default::default()).await?;
        eprintln!(
            "connected to {url}{}",
            match &accepted.protocol {
                Some(protocol) => format!(" ({protocol})"),
                None => String::new(),
            }
        );
        let (mut incoming, outgoing) = ws.split();
        // Lines from standard input go out as they come; what arrives is printed meanwhile.
        let sending = async {
            let mut lines = BufReader::new(smol::Unblock::new(std::io::stdin())).lines();
            while let Some(line) = lines.next().await {
                outgoing.send(Message::Text(line?)).await?;
            }
            outgoing.close(CloseCode::NORMAL, "").await?;
            anyhow::Ok(())
        };
        let printing = async {
            while let Some(message) = incoming.next().await {
                match message? {
                    Message::Text(text) => println!("{text}"),
                    Message::Binary(bytes) => println!("<{} bytes>", bytes.len()),
                }
            }
            if let Some((code, reason)) = incoming.peer_close() {
                eprintln!("closed: {code} {reason}");
            }
            anyhow::Ok(())
        };
        let (sent, printed) = futures_util::future::join(sending, printing).await;
        sent.and(printed)
    })
}
