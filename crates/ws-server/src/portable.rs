//! The portable engine ([`Engine::Async`](crate::Engine::Async)): each connection is a task
//! that drives its handler over [`ws_transport::WebSocket`] on smol's reactor. The same
//! handler API and the same session as the epoll engine; only the I/O differs.

use std::net::SocketAddr;

use std::time::Duration;

use event_listener::EventListener;

use async_io::Timer;
use futures_lite::Stream;
use futures_lite::future;
use tracing::debug;
use ws_proto::CloseCode;
use ws_transport::{Error, WebSocket};

use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::budget::{Budget, Held};
use crate::handle::{Backlog, ConnHandle, HandleInner, Outbound, TaskMailbox};
use crate::handler::{End, Handler, drop_handler, guarded, hand_frames, log_end, panicked, pump};
use crate::options::Options;
use crate::server::Context as ServerContext;
use crate::stats::Stats;

/// A connection's stream on the portable engine: TCP, with TLS or without.
type TcpOrTls = crate::tls::Stream<smol::net::TcpStream>;
type Ws = WebSocket<TcpOrTls>;

/// The WebSocket the portable engine runs on. async-net's stream ends its write side on
/// `poll_close` (async-io's only flushes), so the session can end TCP as §7.1.1 asks: FIN
/// first (after TLS's `close_notify`), then drain until the peer's.
pub(crate) fn adopt(ws: WebSocket<crate::server::Stream>) -> Ws {
    let config = ws.config().clone();
    let (stream, conn) = ws.into_parts();
    let (stream, tls) = stream.into_parts();
    let stream = TcpOrTls::from_parts(smol::net::TcpStream::from(stream), tls);
    WebSocket::from_parts(stream, conn, config, &[])
}

/// What a connection's WebSocket holds, TLS state included, for the memory budget.
fn holds(ws: &Ws) -> usize {
    ws.memory() + ws.get_ref().tls_memory()
}

/// Runs one connection until it ends, then tells the handler how.
///
/// Not an `async fn`: one of those keeps a second copy of each argument it moves into its
/// body, for its whole life, and the WebSocket is most of what an idle connection costs.
/// The block uses its captures in place (the size is tested below).
#[allow(clippy::manual_async_fn)]
pub(crate) fn run<'a, H: Handler + 'a>(
    mut ws: Ws,
    mut handler: Contained<H>,
    context: ServerContext<'a>,
) -> impl Future<Output = ()> + 'a {
    async move {
        // The peer's address is the handler's copy: the future holds only that one.
        debug!(peer = %handler.peer, "open");
        let opened = std::time::Instant::now();
        let ServerContext { options, budget, stop } = context;
        let mut stop = pin!(stop);
        let mailbox = Arc::new(TaskMailbox::new(options.max_backlog));
        let mut held = budget.connection();
        if let Some(stats) = options.stats.as_deref() {
            stats.tasks().opened();
        }
        handler.on_open(&ConnHandle::new(HandleInner::Task(Arc::clone(&mailbox))));
        contain(&mut ws, &handler);
        let shared = Shared { options, budget, mailbox: &mailbox };
        let end = drive(&mut ws, &mut handler, &shared, stop.as_mut(), &mut held).await;
        held.release(budget);
        mailbox.end();
        let end = match end {
            // However the close went, a handler that panicked ended it.
            _ if handler.poisoned() => End::Error(panicked()),
            Ok(end) => end,
            Err(Error::Io(err)) => End::Error(err),
            Err(err) => End::Error(std::io::Error::other(err.to_string())),
        };
        if let Some(stats) = options.stats.as_deref() {
            count(stats, &mut ws);
            stats.tasks().closed();
        }
        let (read, written) = ws.byte_counts();
        let peer = handler.peer;
        log_end(peer, &end, ws.connection(), opened.elapsed(), read, written);
        hand_frames(ws.connection_mut(), &mut handler, peer);
        handler.on_close(&end);
        drop_handler(peer, handler.inner);
    }
}

/// A handler whose panics end only its connection (see [`guarded`]): once one panicked, it
/// is called no more and the connection closes with 1011.
pub(crate) struct Contained<H> {
    inner: H,
    peer: SocketAddr,
    /// A `Cell`: `memory` takes `&self`, and a panic there poisons too.
    poisoned: std::cell::Cell<bool>,
}

impl<H> Contained<H> {
    /// `handler`, for the connection from `peer`.
    pub(crate) fn new(handler: H, peer: SocketAddr) -> Self {
        Self { inner: handler, peer, poisoned: std::cell::Cell::new(false) }
    }

    fn poisoned(&self) -> bool {
        self.poisoned.get()
    }

    fn poison(&self) {
        self.poisoned.set(true);
    }
}

impl<H: Handler> Handler for Contained<H> {
    fn on_open(&mut self, handle: &ConnHandle) {
        let inner = &mut self.inner;
        if guarded(self.peer, "on_open", || inner.on_open(handle)).is_none() {
            self.poison();
        }
    }

    /// Guarded by `pump`, which reports a panic in its pass.
    fn on_event(&mut self, event: ws_proto::Event<'_>, reply: &mut crate::Reply<'_>) {
        if !self.poisoned() {
            self.inner.on_event(event, reply);
        }
    }

    fn on_frames(&mut self, frames: ws_proto::Frames) {
        if !self.poisoned() {
            let inner = &mut self.inner;
            if guarded(self.peer, "on_frames", || inner.on_frames(frames)).is_none() {
                self.poison();
            }
        }
    }

    fn on_close(&mut self, end: &End) {
        if !self.poisoned() {
            let _ = guarded(self.peer, "on_close", || self.inner.on_close(end));
        }
    }

    fn memory(&self) -> usize {
        if self.poisoned() {
            return 0;
        }
        guarded(self.peer, "memory", || self.inner.memory()).unwrap_or_else(|| {
            self.poison();
            0
        })
    }
}

/// Closes the connection with 1011 once its handler has panicked.
fn contain<H: Handler>(ws: &mut Ws, handler: &Contained<H>) {
    if handler.poisoned() && ws.connection().state() == ws_proto::State::Open {
        let _ = ws.connection_mut().close(CloseCode::INTERNAL_ERROR, "");
    }
}

/// Adds what the connection did since the last count to the tasks' shard.
fn count(stats: &Stats, ws: &mut Ws) {
    stats.tasks().take(ws.connection_mut());
    if let Some(rtt) = ws.take_ping_rtt() {
        stats.ping_rtt(rtt);
    }
}

/// What the tasks of a server share.
struct Shared<'a> {
    options: &'a Options,
    budget: &'a Budget,
    mailbox: &'a TaskMailbox,
}

async fn drive<H: Handler>(
    ws: &mut Ws,
    handler: &mut Contained<H>,
    shared: &Shared<'_>,
    mut stop: Pin<&mut async_channel::Receiver<()>>,
    held: &mut Held,
) -> Result<End, Error> {
    let Shared { options, budget, mailbox } = *shared;
    let high_water = ws.config().write_buffer_size;
    let mut task = Task { backlog: Backlog::default(), closing: None, stop_seen: false };
    // Hears when the memory budget comes under pressure; see [`pressure`].
    let mut listener: Option<EventListener> = None;
    loop {
        held.update(budget, holds(ws) + handler.memory());
        // A panic in `memory` poisons as well.
        contain(ws, handler);
        if budget.closing() && held.bytes() >= budget.share() {
            return Ok(over_budget(ws).await);
        }
        if budget.exhausted() && ws.connection().buffered_input() > 0 {
            // While the server's memory is spent, input read is not taken (taking it is what
            // allocates: replies, zlib state); what is owed is written meanwhile, and the
            // budget looked at again shortly.
            let mut pressed = pressure(&mut listener, budget, ws, handler);
            let mut retry = Timer::after(BUDGET_RETRY);
            let flush_or_retry = |cx: &mut Context<'_>| {
                if let Poll::Ready(Err(err)) = ws.poll_flush(cx) {
                    return Poll::Ready(Err(err));
                }
                if pressed(cx) {
                    return Poll::Ready(Ok(()));
                }
                Pin::new(&mut retry).poll(cx).map(|_| Ok(()))
            };
            match wake(&mut task, stop.as_mut(), mailbox, flush_or_retry).await? {
                Woken::Io => {}
                woken => task.take(ws, woken, options.max_backlog),
            }
            continue;
        }
        task.backlog.apply(ws.connection_mut());
        let pass = pump(ws.connection_mut(), handler, handler.peer, high_water, budget, None);
        if pass.panicked {
            handler.poison();
        }
        if pass.abort {
            // No close frame can follow a frame of ours left half sent: the stream ends.
            return Err(Error::Io(panicked()));
        }
        hand_frames(ws.connection_mut(), handler, handler.peer);
        contain(ws, handler);
        if let Some(stats) = options.stats.as_deref() {
            count(stats, ws);
        }
        held.update(budget, holds(ws) + handler.memory());
        contain(ws, handler);
        if pass.end.is_some() || pass.more {
            // Backpressure: nothing more is taken until what we owe the peer is written; the
            // shutdown signal and commands from handles are still taken meanwhile. (Below
            // the high-water mark, the read waits for the write itself, or reads on inside
            // a message: see `WebSocket::read_more`.)
            loop {
                match wake(&mut task, stop.as_mut(), mailbox, |cx| ws.poll_flush(cx)).await? {
                    Woken::Io => break,
                    woken => task.take(ws, woken, options.max_backlog),
                }
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
        if pass.more || pass.over_budget {
            continue;
        }
        // One read, even while memory is spent: it costs at most the read buffer, and what
        // it brings waits above.
        let mut pressed = pressure(&mut listener, budget, ws, handler);
        // The handler is not called while the task waits: what it holds stays as it is.
        let handler_holds = handler.memory();
        contain(ws, handler);
        let read = |cx: &mut Context<'_>| {
            if pressed(cx) {
                return Poll::Ready(Ok(()));
            }
            let read = ws.poll_read_more(cx).map_ok(drop);
            if read.is_pending() {
                // Waiting, the WebSocket has freed its idle buffers: count what it holds now.
                held.update(budget, holds(ws) + handler_holds);
            }
            read
        };
        match wake(&mut task, stop.as_mut(), mailbox, read).await? {
            Woken::Io => {}
            woken => task.take(ws, woken, options.max_backlog),
        }
    }
}

/// A wake-up for when the memory budget comes under pressure, for a connection that holds
/// memory while it waits (a reply owed, part of a message read, what its handler holds): it
/// may be one to close. A connection that has never held any does not listen; one that has
/// keeps its listener from one wait to the next (a new one only after it fired).
fn pressure<'a, H: Handler>(
    listener: &'a mut Option<EventListener>,
    budget: &Budget,
    ws: &Ws,
    handler: &H,
) -> impl FnMut(&mut Context<'_>) -> bool + use<'a, H> {
    let conn = ws.connection();
    let holding = !conn.pending_output().is_empty() || conn.receiving_message();
    if listener.is_none() && (holding || handler.memory() > 0) {
        *listener = Some(budget.listen());
    }
    move |cx| {
        let fired = listener.as_mut().is_some_and(|l| Pin::new(l).poll(cx).is_ready());
        if fired {
            *listener = None;
        }
        fired
    }
}

/// Waits for the shutdown signal, a handle command or `io`, polled in that order so that a
/// peer that keeps its socket readable cannot starve the first two.
///
/// One poll over the three rather than a race of three futures: a smaller state for the
/// connection's task to keep while it waits.
async fn wake(
    task: &mut Task,
    mut stop: Pin<&mut async_channel::Receiver<()>>,
    mailbox: &TaskMailbox,
    mut io: impl FnMut(&mut Context<'_>) -> Poll<Result<(), Error>>,
) -> Result<Woken, Error> {
    std::future::poll_fn(|cx| {
        // Nothing is ever sent on `stop`: it fires by closing, and once it has fired it is
        // not polled again.
        if !task.stop_seen && stop.as_mut().poll_next(cx).is_ready() {
            return Poll::Ready(Ok(Woken::Stop));
        }
        if let Poll::Ready(command) = mailbox.poll_take(cx) {
            return Poll::Ready(Ok(Woken::Command(command)));
        }
        io(cx).map_ok(|()| Woken::Io)
    })
    .await
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
    /// The shutdown signal fired (it is not polled again).
    stop_seen: bool,
}

impl Task {
    /// Takes the shutdown signal or a handle command.
    fn take(&mut self, ws: &mut Ws, woken: Woken, max_backlog: usize) {
        match woken {
            Woken::Io => {}
            Woken::Stop => {
                self.stop_seen = true;
                self.start_closing(ws, CloseCode::GOING_AWAY);
            }
            Woken::Command(command) => {
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

/// How often a connection waiting for the memory budget looks at it again.
const BUDGET_RETRY: Duration = Duration::from_millis(10);

/// Closes a connection that holds at least its share of a memory budget under pressure (see
/// [`Budget`]): a close frame 1013 (Try Again Later), one try to write it, and the stream
/// ended now, without waiting for the peer (which is not reading, most likely), so that what
/// it held is freed.
async fn over_budget(ws: &mut Ws) -> End {
    let held = holds(ws);
    let _ = ws.connection_mut().close(CloseCode::TRY_AGAIN_LATER, "memory budget");
    let _ = future::poll_once(ws.flush()).await;
    ws.shutdown().await;
    End::Error(std::io::Error::other(format!(
        "closed with 1013: it held {held} bytes of a spent memory budget"
    )))
}

/// After the close handshake, errors from closing again are not failures.
fn ignore_after_close(err: Error) -> Result<(), Error> {
    match err {
        Error::Send(_) | Error::Closed | Error::Disconnected | Error::Timeout(_) => Ok(()),
        other => Err(other),
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    struct Silent;

    impl Handler for Silent {
        fn on_event(&mut self, _: ws_proto::Event<'_>, _: &mut crate::Reply<'_>) {}
    }

    /// Stands in for an argument that is never made: only the future's type matters.
    fn never<T>() -> T {
        unreachable!("only the type is used")
    }

    fn task_size() -> usize {
        let handler = || Contained::new(Silent, never());
        let task = if false { Some(run(never(), handler(), never())) } else { None };
        std::mem::size_of_val(&task)
    }

    #[test]
    fn a_connection_task_holds_one_websocket() {
        // What an idle connection costs on this engine is mostly this future: the WebSocket
        // and the few words around it (the handler, the stop signal, the mailbox, the
        // budget's share, the open time for the access log), never a second copy of it.
        let (task, ws) = (task_size(), std::mem::size_of::<Ws>());
        assert!(task < ws + 544, "the task is {task} bytes for a {ws}-byte WebSocket");
    }
}
