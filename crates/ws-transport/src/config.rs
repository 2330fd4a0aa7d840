//! Limits and timeouts of a WebSocket over a stream.

use std::sync::Arc;
use std::time::Duration;

use ws_proto::HandshakeLimits;

use crate::runtime::{Runtime, default_runtime};

/// Every limit and timeout of a [`WebSocket`](crate::WebSocket), each with a finite default
/// (see `docs/limits.md`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Protocol limits: frame and message sizes, automatic pongs.
    pub protocol: ws_proto::ProtocolConfig,
    /// Limits on the opening handshake's HTTP head.
    pub handshake: HandshakeLimits,
    /// How long the opening handshake may take, from the first byte awaited to the last
    /// written. Default 10 s.
    pub handshake_timeout: Duration,
    /// How long to wait for the peer's close frame, and then for the TCP connection to end,
    /// after the close handshake starts. Default 5 s.
    pub close_timeout: Duration,
    /// How long one flush of outgoing data may take; a peer that stops reading is dropped
    /// after this. Default 30 s.
    pub write_timeout: Duration,
    /// Send a ping after this long without hearing from the peer. Default off.
    pub ping_interval: Option<Duration>,
    /// Fail the connection (1011) when a keepalive ping gets no answer in this time.
    /// Default 20 s.
    pub pong_timeout: Duration,
    /// Close the connection (1001) after this long without receiving anything. Default off.
    pub idle_timeout: Option<Duration>,
    /// The most bytes requested from the stream in one read. Reads start at 2 KiB and double
    /// while they fill the buffer, up to this; while the connection waits for data its empty
    /// buffers go to a small pool of its thread (docs/limits.md), so an idle connection holds
    /// none. Default 64 KiB.
    pub read_buffer_size: usize,
    /// Outgoing bytes queued before a send waits for the stream to take them (backpressure).
    /// Default 64 KiB.
    pub write_buffer_size: usize,
    /// permessage-deflate (RFC 7692): offered by a client, accepted by a server when the
    /// client offers it. Default off.
    #[cfg(feature = "deflate")]
    pub compression: Option<ws_proto::DeflateConfig>,
    /// The runtime whose timers and clock the WebSocket and its handshake use. Default `None`:
    /// [`default_runtime`], chosen as the handshake starts (tokio's inside a tokio runtime,
    /// with the `tokio` feature; smol's otherwise).
    pub runtime: Option<Arc<dyn Runtime>>,
}

impl Config {
    /// What the opening handshake sets up on the connection (limits, permessage-deflate),
    /// for [`Upgrade::accept_connection`](ws_proto::Upgrade::accept_connection) and
    /// [`ClientHandshake::into_connection`](ws_proto::ClientHandshake::into_connection).
    pub fn setup(&self) -> ws_proto::Setup {
        let mut setup = ws_proto::Setup::default();
        setup.config = self.protocol.clone();
        #[cfg(feature = "deflate")]
        {
            setup.compression = self.compression;
        }
        setup
    }

    /// The runtime to use: [`runtime`](Self::runtime), or the default.
    pub(crate) fn runtime_or_default(&self) -> Arc<dyn Runtime> {
        self.runtime.clone().unwrap_or_else(default_runtime)
    }

    /// The session timers' part of this configuration (close, keepalive, idle, write), for
    /// [`ws_proto::Session`].
    pub fn timers(&self) -> ws_proto::TimerSettings {
        let mut settings = ws_proto::TimerSettings::default();
        settings.close_timeout = self.close_timeout;
        settings.ping_interval = self.ping_interval;
        settings.pong_timeout = self.pong_timeout;
        settings.idle_timeout = self.idle_timeout;
        settings.write_timeout = self.write_timeout;
        settings
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            protocol: ws_proto::ProtocolConfig::default(),
            handshake: HandshakeLimits::default(),
            handshake_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(30),
            ping_interval: None,
            pong_timeout: Duration::from_secs(20),
            idle_timeout: None,
            read_buffer_size: 64 << 10,
            write_buffer_size: 64 << 10,
            #[cfg(feature = "deflate")]
            compression: None,
            runtime: None,
        }
    }
}
