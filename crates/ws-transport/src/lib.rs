//! WebSocket over async streams: drives a [`ws_proto::Session`] (a connection with its
//! timers and transport policy) over any `futures-io` `AsyncRead + AsyncWrite` stream whose
//! close ends the write side (smol's `smol::net::TcpStream`, async-std; see "Ending the
//! stream" on [`WebSocket`]), or, with the `tokio` feature, over tokio's streams
//! (`ws_transport::tokio`). Its timers are the runtime's ([`Runtime`]): under tokio no
//! async-io thread starts.
//!
//! Start with:
//! - [`accept`] / [`accept_with`] (server) or [`connect_tcp`] / [`connect`] (client), which
//!   return a [`WebSocket`];
//! - [`WebSocket::recv`], [`WebSocket::send`], [`WebSocket::close`], or the WebSocket as a
//!   `futures` `Stream` of messages and `Sink` of [`Message`]s;
//! - [`Config`] for limits and timeouts, all finite by default.
//!
//! [`ServerHandshake`] routes plain HTTP and WebSocket requests on one port;
//! [`WebSocket::split`] gives a reader and a writer half.
//!
//! Features: `deflate` (permessage-deflate) and `smol` (smol's timers, and [`connect_tcp`]
//! on smol's sockets) are on by default; `tokio` adds `ws_transport::tokio` (tokio's
//! streams, timers and `connect_tcp`); `http`, `hyper` and `axum` the glue for those crates.
//! A tokio program may turn `smol` off (`default-features = false, features = ["tokio",
//! "deflate"]`): then no part of smol is compiled. One of `smol` and `tokio` is needed.
//!
//! ```no_run
//! # smol::block_on(async {
//! let listener = smol::net::TcpListener::bind("127.0.0.1:8080").await?;
//! loop {
//!     let (stream, _) = listener.accept().await?;
//!     smol::spawn(async move {
//!         let mut ws = ws_transport::accept(stream, Default::default()).await?;
//!         // `feed` queues the echo; `recv` writes what is queued before it waits for input.
//!         while let Some(message) = ws.recv().await? {
//!             ws.feed(message).await?;
//!         }
//!         Ok::<(), ws_transport::Error>(())
//!     })
//!     .detach();
//! }
//! # Ok::<(), std::io::Error>(()) });
//! ```

#![forbid(unsafe_code)]

#[cfg(not(any(feature = "smol", feature = "tokio")))]
compile_error!("ws-transport needs a runtime: its `smol` feature (a default one) or `tokio`");

mod accept;
#[cfg(feature = "axum")]
pub mod axum;
mod config;
mod connect;
mod error;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "hyper")]
pub mod hyper;
mod message;
mod pool;
mod proxy;
mod runtime;
mod socket;
mod split;
mod stream_sink;
mod tls;
#[cfg(feature = "tokio")]
pub mod tokio;
mod util;

pub use accept::{ServerHandshake, accept, accept_with};
pub use config::Config;
#[cfg(feature = "smol")]
pub use connect::{ClientStream, connect_tcp, connect_tcp_with};
pub use connect::{Connector, WsUrl, connect, connect_with};
pub use error::{Error, Timeout};
pub use message::{IN_PLACE_MIN, Message, Outgoing};
pub use proxy::Proxy;
#[cfg(feature = "smol")]
pub use runtime::Smol;
#[cfg(feature = "tokio")]
pub use runtime::Tokio;
pub use runtime::{AsyncTimer, Runtime, default_runtime};
/// rustls, re-exported for its configuration types ([`rustls::ClientConfig`],
/// [`rustls::ServerConfig`]) and certificate types ([`rustls::pki_types`]).
pub use rustls;
pub use socket::WebSocket;
pub use split::{WsReader, WsWriter};
pub use tls::{
    MaybeTls, TLS_BUFFERS, TlsStream, client_config, client_config_builder, default_client_config,
    server_config_builder,
};
/// The protocol crate this one drives, re-exported so that users need not pin a matching
/// version of it.
pub use ws_proto;
