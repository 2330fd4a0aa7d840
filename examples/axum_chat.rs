//! A chat room on axum: every message a client sends goes to every client connected to
//! `/chat`. `/` serves the room's page to a browser (open <http://127.0.0.1:9001/> in two
//! tabs) and echoes to a WebSocket (what `cargo xtask conformance --server
//! ws-transport-axum` runs the suite against): `Option<WebSocketUpgrade>` tells the two
//! apart. The extractor is ws-transport's (`axum` feature): permessage-deflate is negotiated
//! when offered, and the WebSocket is a `Stream` and a `Sink` on tokio's timers.
//!
//! ```sh
//! cargo run --example axum_chat -- 127.0.0.1:9001
//! ```

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use futures_util::StreamExt;
use tokio::sync::broadcast;
use ws_transport::Message;
use ws_transport::axum::WebSocketUpgrade;

/// Messages waiting for the slowest member of the room, at most; one further behind misses
/// the oldest (and is told how many).
const BACKLOG: usize = 64;

/// The room's page: no script or font from elsewhere.
const PAGE: &str = include_str!("axum_chat.html");

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let addr: SocketAddr = match std::env::args().nth(1) {
        Some(addr) => addr.parse()?,
        None => ([127, 0, 0, 1], 9001).into(),
    };
    let (room, _) = broadcast::channel::<Message>(BACKLOG);
    let app =
        Router::new().route("/", get(page_or_echo)).route("/chat", get(chat)).with_state(room);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on ws://{}", listener.local_addr()?);
    // Each message goes out at once: with Nagle's algorithm a second small write waits for
    // the peer's acknowledgement of the first (up to 40 ms with delayed ACKs).
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await?;
    Ok(())
}

/// The page for a plain GET; an echo for a WebSocket.
async fn page_or_echo(upgrade: Option<WebSocketUpgrade>) -> Response {
    let Some(upgrade) = upgrade else {
        return Html(PAGE).into_response();
    };
    upgrade.on_upgrade(|mut ws| async move {
        // Echoes are queued (`feed`) and written together when `next` waits for input.
        while let Some(Ok(message)) = ws.next().await {
            if ws.feed(message).await.is_err() {
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
