//! Tokio streams work through a compat layer: `tokio_util::compat` turns a tokio
//! `AsyncRead + AsyncWrite` into a `futures-io` one, which is all `ws-transport` needs.

use tokio::net::{TcpListener, TcpStream};
use tokio_util::compat::TokioAsyncReadCompatExt;
use ws_proto::CloseCode;
use ws_transport::{Config, Message, accept, connect};

#[tokio::test(flavor = "current_thread")]
async fn echo_over_tokio_streams() -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await?;
        let mut ws = accept(stream.compat(), Config::default()).await?;
        while let Some(message) = ws.recv().await? {
            ws.send(message).await?;
        }
        Ok::<_, ws_transport::Error>(())
    });

    let stream = TcpStream::connect(addr).await?;
    let (mut ws, _) = connect(stream.compat(), &format!("ws://{addr}/"), Config::default()).await?;
    for message in [Message::from("over tokio"), Message::Binary(vec![1; 100_000])] {
        ws.send(message.clone()).await?;
        assert_eq!(ws.recv().await?, Some(message));
    }
    ws.close(CloseCode::NORMAL, "").await?;
    server.await??;
    Ok(())
}
