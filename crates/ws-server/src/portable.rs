//! The portable engine ([`Engine::Async`](crate::Engine::Async)): each connection is a task
//! that drives its handler over [`ws_transport::WebSocket`] on smol's reactor. The same
//! handler API and the same session as the epoll engine; only the I/O differs.

use std::net::{SocketAddr, TcpStream};

use async_io::Async;
use futures_lite::FutureExt;
use tracing::debug;
use ws_proto::CloseCode;
use ws_transport::{Error, WebSocket};

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use crate::handle::{Backlog, ConnHandle, HandleInner, Outbound, TaskMailbox};
use crate::handler::{End, Handler, log_end, pump};
use crate::options::Options;

type Ws = WebSocket<smol::net::TcpStream>;

/// Runs one connection until it ends, then tells the handler how.
pub(crate) async fn run<H: Handler>(
    ws: WebSocket<Async<TcpStream>>,
    mut handler: H,
    peer: SocketAddr,
    options: &Options,
    stop: async_channel::Receiver<()>,
) {
    debug!(%peer, "open");
    // async-net's stream ends its write side on `poll_close` (async-io's only flushes), so
    // the session can end TCP as §7.1.1 asks: FIN first, then drain until the peer's.
    let config = ws.config().clone();
    let (stream, conn) = ws.into_parts();
    let mut ws = WebSocket::from_parts(smol::net::TcpStream::from(stream), conn, config, &[]);
    let (tx, rx) = async_channel::unbounded();
    let mailbox =
        Arc::new(TaskMailbox { tx, bytes: AtomicUsize::new(0), limit: options.max_backlog });
    handler.on_open(&ConnHandle::new(HandleInner::Task(Arc::clone(&mailbox))));
    let end = match drive(&mut ws, &mut handler, options, &stop, &rx, &mailbox).await {
        Ok(end) => end,
        Err(Error::Io(err)) => End::Error(err),
        Err(err) => End::Error(std::io::Error::other(err.to_string())),
    };
    let (read, written) = ws.byte_counts();
    log_end(peer, &end, read, written);
    handler.on_close(&end);
}

async fn drive<H: Handler>(
    ws: &mut Ws,
    handler: &mut H,
    options: &Options,
    stop: &async_channel::Receiver<()>,
    commands: &async_channel::Receiver<Outbound>,
    mailbox: &TaskMailbox,
) -> Result<End, Error> {
    let high_water = ws.config().write_buffer_size;
    let mut task = Task { backlog: Backlog::default(), closing: None, stop_seen: false };
    // One wait for shutdown for the connection's life, not a new one per read; once it has
    // fired it is not polled again.
    let mut stopping = std::pin::pin!(stop.recv());
    loop {
        task.backlog.apply(ws.connection_mut());
        let pass = pump(ws.connection_mut(), handler, high_water, None);
        // Backpressure: nothing more is read until what we owe the peer is written; the
        // shutdown signal and commands from handles are still taken meanwhile.
        loop {
            let stopped = stopped(stopping.as_mut(), task.stop_seen);
            let command = async { Ok(Woken::Command(next_command(commands).await)) };
            let flushed = async { ws.flush().await.map(|()| Woken::Io) };
            match stopped.or(command).or(flushed).await? {
                Woken::Io => break,
                woken => task.take(ws, woken, mailbox, options.max_backlog),
            }
        }
        if let Some(end) = pass.end {
            if !matches!(end, End::Disconnected) {
                // Writes what is queued and ends the stream (the server closes first).
                Box::pin(ws.close(CloseCode::NORMAL, "")).await.or_else(ignore_after_close)?;
            }
            // Our own close, answered, ends as ours.
            return Ok(match (task.closing, end) {
                (Some(code), End::Closed(_)) => End::Closed(code),
                (_, end) => end,
            });
        }
        if pass.more {
            continue;
        }
        let stopped = stopped(stopping.as_mut(), task.stop_seen);
        let command = async { Ok(Woken::Command(next_command(commands).await)) };
        let read = async { ws.read_more().await.map(|_| Woken::Io) };
        // The shutdown signal and commands first, so that a peer that keeps its socket
        // readable cannot starve them.
        match stopped.or(command).or(read).await? {
            Woken::Io => {}
            woken => task.take(ws, woken, mailbox, options.max_backlog),
        }
    }
}

/// What woke the connection's task.
enum Woken {
    /// The read or the flush it waited for completed.
    Io,
    Stop,
    Command(Outbound),
}

/// A connection task's own state besides its WebSocket.
struct Task {
    /// Handle commands waiting for the handler's own message to end.
    backlog: Backlog,
    /// Set once the server shuts down or the connection is over its backlog: the close
    /// frame is queued (after a frame of ours that is half sent) and the session runs until
    /// the peer answers or the close timeout.
    closing: Option<CloseCode>,
    /// The shutdown signal fired (its future is not polled again).
    stop_seen: bool,
}

impl Task {
    /// Takes the shutdown signal or a handle command.
    fn take(&mut self, ws: &mut Ws, woken: Woken, mailbox: &TaskMailbox, max_backlog: usize) {
        match woken {
            Woken::Io => {}
            Woken::Stop => {
                self.stop_seen = true;
                self.start_closing(ws, CloseCode::GOING_AWAY);
            }
            Woken::Command(command) => {
                mailbox.taken(&command);
                // Queued now unless the handler's message is half sent; a flush under way
                // then writes it too.
                if !self.backlog.offer(ws.connection_mut(), command, max_backlog) {
                    self.start_closing(ws, CloseCode::TRY_AGAIN_LATER);
                }
            }
        }
    }

    /// Starts the close handshake with `code` once: the close frame follows a frame of ours
    /// that is half sent, and the close timer bounds the rest.
    fn start_closing(&mut self, ws: &mut Ws, code: CloseCode) {
        if self.closing.is_some() {
            return;
        }
        let reason =
            if code == CloseCode::GOING_AWAY { "server shutting down" } else { "backlog limit" };
        if ws.connection_mut().close(code, reason).is_ok() {
            self.closing = Some(code);
        }
    }
}

/// The shutdown signal, unless it has fired already (then never).
async fn stopped(
    stopping: Pin<&mut async_channel::Recv<'_, ()>>,
    seen: bool,
) -> Result<Woken, Error> {
    if seen {
        std::future::pending::<()>().await;
    }
    let _ = stopping.await;
    Ok(Woken::Stop)
}

/// The next command from a handle; once every handle is gone, only the other wake-ups remain.
async fn next_command(commands: &async_channel::Receiver<Outbound>) -> Outbound {
    match commands.recv().await {
        Ok(command) => command,
        Err(_) => std::future::pending().await,
    }
}

/// After the close handshake, errors from closing again are not failures.
fn ignore_after_close(err: Error) -> Result<(), Error> {
    match err {
        Error::Send(_) | Error::Closed | Error::Disconnected | Error::Timeout(_) => Ok(()),
        other => Err(other),
    }
}
