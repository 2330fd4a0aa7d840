//! The portable engine ([`Engine::Async`](crate::Engine::Async)): each connection is a task
//! that drives its handler over [`ws_transport::WebSocket`] on smol's reactor. The same
//! handler API and the same session as the epoll engine; only the I/O differs.

use std::collections::VecDeque;
use std::net::{SocketAddr, TcpStream};

use async_io::Async;
use futures_lite::FutureExt;
use tracing::debug;
use ws_proto::CloseCode;
use ws_transport::{Error, WebSocket};

use crate::handle::{ConnHandle, HandleInner, Outbound};
use crate::handler::{End, Handler, log_end, pump};
use crate::options::Options;

type Ws = WebSocket<smol::net::TcpStream>;

/// What woke the connection's task.
enum Woken {
    Read,
    Stop,
    Command(Outbound),
}

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
    let capacity = (options.mailbox_bytes >> 16).max(16);
    let (tx, rx) = async_channel::bounded(capacity);
    handler.on_open(&ConnHandle::new(HandleInner::Task(tx)));
    let end = match drive(&mut ws, &mut handler, options, &stop, &rx).await {
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
) -> Result<End, Error> {
    let high_water = ws.config().write_buffer_size;
    // Commands that wait for the handler's own message to end.
    let mut backlog: VecDeque<Outbound> = VecDeque::new();
    // One wait for shutdown for the connection's life, not a new one per read.
    let mut stopping = std::pin::pin!(stop.recv());
    loop {
        while let Some(command) = backlog.pop_front() {
            if let Err(command) = command.apply(ws.connection_mut()) {
                backlog.push_front(command);
                break;
            }
        }
        let pass = pump(ws.connection_mut(), handler, high_water, None);
        // Backpressure: nothing more is read until what we owe the peer is written; commands
        // from handles are still taken meanwhile, so the backlog limit holds.
        loop {
            let flushed = async { ws.flush().await.map(|()| None) };
            let command = async { Ok(Some(next_command(commands).await)) };
            match flushed.or(command).await? {
                None => break,
                Some(command) => {
                    if over_backlog(ws, &backlog, &command, options.max_backlog) {
                        return close_over_backlog(ws).await;
                    }
                    backlog.push_back(command);
                }
            }
        }
        if let Some(end) = pass.end {
            if !matches!(end, End::Disconnected) {
                // Writes what is queued and ends the stream (the server closes first).
                Box::pin(ws.close(CloseCode::NORMAL, "")).await.or_else(ignore_after_close)?;
            }
            return Ok(end);
        }
        if pass.more {
            continue;
        }
        let read = async { ws.read_more().await.map(|_| Woken::Read) };
        let stopped = async {
            let _ = (&mut stopping).await;
            Ok(Woken::Stop)
        };
        let command = async { Ok(Woken::Command(next_command(commands).await)) };
        match read.or(stopped).or(command).await? {
            Woken::Read => {}
            Woken::Stop => {
                Box::pin(ws.close(CloseCode::GOING_AWAY, "server shutting down"))
                    .await
                    .or_else(ignore_after_close)?;
                return Ok(End::Closed(CloseCode::GOING_AWAY));
            }
            Woken::Command(command) => {
                if over_backlog(ws, &backlog, &command, options.max_backlog) {
                    return close_over_backlog(ws).await;
                }
                backlog.push_back(command);
            }
        }
    }
}

/// The next command from a handle; once every handle is gone, only the other wake-ups remain.
async fn next_command(commands: &async_channel::Receiver<Outbound>) -> Outbound {
    match commands.recv().await {
        Ok(command) => command,
        Err(_) => std::future::pending().await,
    }
}

/// Whether queueing `command` would hold more than `max_backlog` bytes for the connection.
fn over_backlog(ws: &Ws, backlog: &VecDeque<Outbound>, command: &Outbound, max: usize) -> bool {
    let queued: usize = backlog.iter().map(Outbound::len).sum();
    queued + command.len() + ws.connection().pending_output().len() > max
}

/// Closes a connection too slow for what is sent to it: 1013 after what is already queued.
async fn close_over_backlog(ws: &mut Ws) -> Result<End, Error> {
    Box::pin(ws.close(CloseCode::TRY_AGAIN_LATER, "backlog limit"))
        .await
        .or_else(ignore_after_close)?;
    Ok(End::Closed(CloseCode::TRY_AGAIN_LATER))
}

/// After the close handshake, errors from closing again are not failures.
fn ignore_after_close(err: Error) -> Result<(), Error> {
    match err {
        Error::Send(_) | Error::Closed | Error::Disconnected | Error::Timeout(_) => Ok(()),
        other => Err(other),
    }
}
