//! `wsclient URL MESSAGE...`: connects with `ws_transport::connect_tcp` as a user's program
//! would (trust store and proxy from the environment), sends each message as text, prints
//! each echo on its own line, and closes with 1000. For tests that need a client in a process
//! of its own, with its own environment (`SSL_CERT_FILE`, `HTTPS_PROXY`, `NO_PROXY`).

use anyhow::{Context, Result, bail};
use ws_transport::ws_proto::CloseCode;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args.next().context("usage: wsclient URL MESSAGE...")?;
    smol::block_on(async {
        let (mut ws, _) = ws_transport::connect_tcp(&url, Default::default())
            .await
            .with_context(|| format!("connecting to {url}"))?;
        for message in args {
            ws.send(message.as_str()).await?;
            match ws.recv().await? {
                Some(echo) => println!("{}", String::from_utf8_lossy(echo.as_bytes())),
                None => bail!("closed before the echo"),
            }
        }
        ws.close(CloseCode::NORMAL, "").await?;
        println!("closed");
        Ok(())
    })
}
