//! A chat room on axum: every message a client sends goes to every client connected to
//! `/chat`. `/` echoes (what `cargo xtask conformance --server ws-transport-axum` runs the
//! suite against). The extractor is ws-transport's (`axum` feature): permessage-deflate is
//! negotiated when offered, and the WebSocket is a `Stream` and a `Sink` on tokio's timers.
//!
//! ```sh
//! cargo run --example axum_chat -- 127.0.0.1:9001
//! ```

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use futures_util::StreamExt;
use tokio::sync::broadcast;
use ws_transport::Message;
use ws_transport::axum::WebSocketUpgrade;

/// Messages waiting for the slowest member of the room, at most; one further behind misses
/// the oldest (and is told how many).
const BACKLOG: usize = 64;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let addr: SocketAddr = match std::env::args().nth(1) {
        Some(addr) => addr.parse()?,
        None => ([127, 0, 0, 1], 9001).into(),
    };
    let (room, _) = broadcast::channel::<Message>(BACKLOG);
    let app = Router::new().route("/", get(echo)).route("/chat", get(chat)).with_state(room);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on ws://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

async fn echo(upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(|mut ws| async move {
        while let Some(Ok(message)) = ws.next().await {
            if ws.send(message).await.is_err() {
                break;
            }
        }
    })
}

async fn chat(
    State(room): State<broadcast::Sender<Message>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade.on_upgrade(move |mut ws| async move {
        let mut heard = room.subscribe();
        loop {
            tokio::select! {
                // Both are cancel-safe: a branch not taken loses nothing.
                received = ws.next() => match received {
                    Some(Ok(message)) => {
                        // Nobody listening is not an error: the room is just empty.
                        let _ = room.send(message);
                    }
                    // The client closed, or broke the protocol (it was told why).
                    _ => break,
                },
                said = heard.recv() => {
                    let message = match said {
                        Ok(message) => message,
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            Message::Text(format!("({missed} messages missed)"))
                        }
                        Err(broadcast::error::RecvError::Closed) => break,
                    };
                    if ws.send(message).await.is_err() {
                        break;
                    }
                }
            }
        }
    })
}
