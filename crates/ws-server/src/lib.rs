//! A multi-core WebSocket server engine with a handler API.
//!
//! An application gives an [`App`] (answers plain HTTP, accepts or refuses upgrades with a
//! [`Handler`] per connection) and gets a [`Server`] that accepts, runs the opening
//! handshake, and drives every accepted connection's session
//! ([`ws_proto::Session`]: limits, timers, close sequencing) and handler. On Linux the
//! connections run on engine threads with edge-triggered epoll ([`Engine::Epoll`]): one
//! `read` and one `write` per small message, no buffer held by an idle connection. Elsewhere,
//! or with [`Engine::Async`], each is a task on ws-transport and smol, with the same API.
//!
//! With [`Options::tls`] set, the server speaks TLS (rustls) on its port: `wss://` and
//! `https://`. The TLS handshake runs with the opening handshake, under its timeout; the
//! epoll engine then drives rustls's sans-IO connection in its own loop.
//!
//! Start with [`App`], [`Handler`] and [`Server`]; [`ConnHandle`] sends to a connection
//! from anywhere (broadcast, chat). `examples/broadcast.rs` is a small chat server.
//!
//! ```no_run
//! use std::net::SocketAddr;
//! use std::sync::Arc;
//! use ws_proto::{Event, Request, Response, Upgrade};
//! use ws_server::{Accept, App, Handler, Options, Reply, Server};
//!
//! /// Echoes every message.
//! struct Echo;
//!
//! impl Handler for Echo {
//!     fn on_event(&mut self, event: Event<'_>, reply: &mut Reply<'_>) {
//!         if let Event::Message(message) = event {
//!             let _ = reply.send_message(message.kind(), message.as_bytes());
//!         }
//!     }
//! }
//!
//! struct EchoApp;
//!
//! impl App for EchoApp {
//!     type Handler = Echo;
//!     fn upgrade(&self, _: &Request, _: &Upgrade, _: SocketAddr) -> Result<Accept<Echo>, Response> {
//!         Ok(Accept::new(Echo))
//!     }
//! }
//!
//! # fn main() -> std::io::Result<()> {
//! let server = Server::bind(([127, 0, 0, 1], 9001).into(), Options::default(), EchoApp)?;
//! let ex = Arc::new(smol::Executor::new());
//! smol::block_on(ex.run(server.run(ex.clone(), std::future::pending())));
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod budget;
#[cfg(target_os = "linux")]
mod epoll;
mod handle;
mod handler;
mod options;
mod portable;
#[cfg(feature = "prometheus")]
mod prometheus;
mod server;
mod stats;
mod tls;
#[cfg(target_os = "linux")]
mod wire;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use tls::fuzzing;

pub use budget::Budget;
pub use handle::{ConnHandle, HandleError};
pub use handler::{End, Handler, Reply};
pub use options::{Engine, Options};
pub use server::{Accept, App, Server, Summary, TLS_HANDSHAKE_MEMORY};
pub use stats::{
    CLOSE_LABELS, HANDSHAKE_BUCKETS, HistogramSnapshot, PING_RTT_BUCKETS, Refusal, Snapshot, Stats,
    WaySnapshot,
};

/// The examples in `README.md`, compiled (and the sans-IO one run) as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct Readme;
