//! The engine's settings ([`Options`], [`Engine`]) and the live-connection count.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// What runs accepted connections (`--engine` in ws-echo).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[non_exhaustive]
pub enum Engine {
    /// Each connection is a task on the executor, driven through
    /// [`ws_transport::WebSocket`] (smol's reactor). Portable.
    #[cfg_attr(
        feature = "clap",
        value(help = "each connection a task on the executor, through ws-transport (portable)")
    )]
    Async,
    /// Connections are dealt to [`Options::threads`] engine threads, each with an
    /// edge-triggered epoll set driving its sessions directly: fewer system calls per
    /// message. Linux only; the default there.
    #[cfg(target_os = "linux")]
    #[cfg_attr(feature = "clap", value(help = "engine threads with edge-triggered epoll (Linux)"))]
    Epoll,
    /// The [`Epoll`](Self::Epoll) engine's threads with their I/O on io_uring: a multishot
    /// receive per connection into buffers lent from one pool (an idle connection holds
    /// none), sends queued during a pass and submitted together, one system call per pass
    /// of the loop for every connection. Where the kernel has no io_uring (or it is
    /// disabled), the threads use epoll, and say so in the log. Linux only.
    #[cfg(target_os = "linux")]
    #[cfg_attr(
        feature = "clap",
        value(help = "engine threads with io_uring I/O; epoll where the kernel lacks it (Linux)")
    )]
    Uring,
}

impl Default for Engine {
    fn default() -> Self {
        #[cfg(target_os = "linux")]
        return Self::Epoll;
        #[cfg(not(target_os = "linux"))]
        return Self::Async;
    }
}

/// Server settings; every limit finite by default (see `docs/limits.md`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// Connections served at once, handshakes included; more get HTTP 503. Default 10,000.
    pub max_connections: usize,
    /// Limits and timeouts of each connection.
    pub transport: ws_transport::Config,
    /// What runs accepted connections. Default [`Engine::Epoll`] on Linux, else
    /// [`Engine::Async`].
    pub engine: Engine,
    /// Engine threads for [`Engine::Epoll`]. Default 1.
    pub threads: usize,
    /// Bytes one connection may hold from [`ConnHandle`](crate::ConnHandle) commands: its
    /// output not yet written plus the commands waiting for its handler's own message (each
    /// counted with 64 bytes for itself); over it the connection is closed with 1013 (a
    /// reader too slow for what is sent to it). On [`Engine::Async`] it also bounds the
    /// commands on their way to the connection's task (`send` returns
    /// [`HandleError::Full`](crate::HandleError::Full) past it). Default 1 MiB.
    pub max_backlog: usize,
    /// Bytes of [`ConnHandle`](crate::ConnHandle) commands on their way to one epoll engine
    /// thread (each counted with 64 bytes for itself); over it `send` returns
    /// [`HandleError::Full`](crate::HandleError::Full). Default 64 MiB.
    pub mailbox_bytes: usize,
    /// Bytes all connections may hold together: their buffers, zlib state, replies owed and
    /// what their handlers report ([`Handler::memory`](crate::Handler::memory)), and the
    /// engines' read buffers. At the limit, upgrades get HTTP 503 and connections stop
    /// reading until what they hold falls below it (see [`Budget`](crate::Budget)). Default
    /// 512 MiB.
    pub max_memory: usize,
    /// How long a connection may wait for the memory budget while it holds at least its
    /// share of it (`max_memory` over the connections open); then it is closed with 1013.
    /// Default 10 s.
    pub budget_timeout: std::time::Duration,
    /// TLS: when set, every connection speaks TLS with these settings (certificate, ALPN;
    /// see [`ws_transport::server_config_builder`]), within
    /// [`handshake_timeout`](ws_transport::Config::handshake_timeout) like the rest of the
    /// opening handshake. Plain HTTP sent to the port gets a 400 in plain text; any other
    /// bad TLS input is answered with a TLS alert and the connection closed. Default none.
    pub tls: Option<Arc<ws_transport::rustls::ServerConfig>>,
    /// Bind the listening socket with `SO_REUSEPORT` (Linux), so that several processes can
    /// listen on one port and the kernel spreads new connections among them. Default off:
    /// a second server on a port in use fails to bind.
    pub reuse_port: bool,
    /// Where the server counts what it does (connections, refusals, handshake times,
    /// messages and bytes by opcode, close codes, keepalive round trips, memory held), read
    /// with [`Stats::snapshot`](crate::Stats::snapshot). Default none: nothing is counted.
    pub stats: Option<Arc<crate::Stats>>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            transport: ws_transport::Config::default(),
            engine: Engine::default(),
            threads: 1,
            max_backlog: 1 << 20,
            mailbox_bytes: 64 << 20,
            max_memory: 512 << 20,
            budget_timeout: std::time::Duration::from_secs(10),
            tls: None,
            reuse_port: false,
            stats: None,
        }
    }
}

/// Decrements the live-connection count when a connection ends, however it ends.
#[derive(Debug)]
pub(crate) struct LiveGuard(pub(crate) Arc<AtomicUsize>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
