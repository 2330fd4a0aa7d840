//! Reader and writer halves, so that one task receives while others send. Both halves drive
//! the one [`WebSocket`] (its session: timers, close sequencing, the end of the stream)
//! through its poll functions, behind a lock that each poll holds only while it runs.
//!
//! The stream, the timer and the reactor each keep one waker per direction, and replacing
//! it wakes the one replaced: two tasks that took turns to wait on the same socket would
//! wake each other for ever. So every poll through a half registers one waker of the
//! halves' own, which wakes every task waiting in a half ([`Fanout`]).

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker, ready};

use futures_core::Stream;
use futures_lite::{AsyncRead, AsyncWrite, future};
use futures_sink::Sink;
use ws_proto::CloseCode;

use crate::error::{Error, Timeout};
use crate::message::{Message, Outgoing};
use crate::socket::WebSocket;

/// What the halves share: the WebSocket, and the tasks waiting on it.
#[derive(Debug)]
struct Shared<S> {
    ws: Mutex<Inner<S>>,
    fanout: Arc<Fanout>,
    /// `fanout` as a waker, made once.
    waker: Waker,
}

/// The wakers of the tasks waiting in a half; woken all at once.
#[derive(Debug, Default)]
struct Fanout(Mutex<Vec<Waker>>);

impl Fanout {
    fn add(&self, waker: &Waker) {
        let mut wakers = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if !wakers.iter().any(|w| w.will_wake(waker)) {
            wakers.push(waker.clone());
        }
    }

    fn wake_all(&self) {
        let wakers = std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner));
        for waker in wakers {
            waker.wake();
        }
    }
}

impl Wake for Fanout {
    fn wake(self: Arc<Self>) {
        self.wake_all();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wake_all();
    }
}

/// The WebSocket, and a failure of the writer's that the reader came upon.
#[derive(Debug)]
struct Inner<S> {
    ws: WebSocket<S>,
    /// The write timeout passed while the reader polled: the writer reports it (the reader
    /// gets [`Error::Closed`]), as a write of its own that failed.
    writer_failed: Option<Timeout>,
}

/// Which half polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Half {
    Reader,
    Writer,
}

impl<S> Shared<S> {
    fn lock(&self) -> MutexGuard<'_, Inner<S>> {
        self.ws.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs a poll function of the WebSocket for the task `cx` belongs to, with the halves'
    /// waker. A failure wakes every task waiting in a half: they have it to report.
    fn poll<R>(
        &self,
        half: Half,
        cx: &mut Context<'_>,
        f: impl FnOnce(&mut WebSocket<S>, &mut Context<'_>) -> Poll<Result<R, Error>>,
    ) -> Poll<Result<R, Error>> {
        self.fanout.add(cx.waker());
        let mut fanned = Context::from_waker(&self.waker);
        let mut inner = self.lock();
        if half == Half::Writer {
            if let Some(timeout) = inner.writer_failed.take() {
                return Poll::Ready(Err(Error::Timeout(timeout)));
            }
        }
        let result = ready!(f(&mut inner.ws, &mut fanned));
        let result = match result {
            Err(Error::Timeout(Timeout::Write)) if half == Half::Reader => {
                inner.writer_failed = Some(Timeout::Write);
                Err(Error::Closed)
            }
            other => other,
        };
        drop(inner);
        if result.is_err() {
            self.fanout.wake_all();
        }
        Poll::Ready(result)
    }
}

/// The receiving half of a split [`WebSocket`]: [`recv`](Self::recv), or a [`Stream`] of
/// messages. The session's timers (keepalive, idle, close) run while it waits.
#[derive(Debug)]
pub struct WsReader<S> {
    shared: Arc<Shared<S>>,
}

/// The sending half of a split [`WebSocket`]: [`send`](Self::send), or a [`Sink`] of
/// messages. Clone it to send from several tasks; sends are serialised.
#[derive(Debug)]
pub struct WsWriter<S> {
    shared: Arc<Shared<S>>,
}

impl<S> Clone for WsWriter<S> {
    fn clone(&self) -> Self {
        Self { shared: Arc::clone(&self.shared) }
    }
}

pub(crate) fn split<S>(ws: WebSocket<S>) -> (WsReader<S>, WsWriter<S>) {
    let fanout = Arc::new(Fanout::default());
    let waker = Waker::from(Arc::clone(&fanout));
    let inner = Inner { ws, writer_failed: None };
    let shared = Arc::new(Shared { ws: Mutex::new(inner), fanout, waker });
    (WsReader { shared: Arc::clone(&shared) }, WsWriter { shared })
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsReader<S> {
    /// Receives the next message, as [`WebSocket::recv`] does: `Ok(None)` after the close
    /// handshake, once the stream has ended (a client waits for the server to end it,
    /// §7.1.1). Pongs and timer frames are written from here. Cancel-safe.
    pub async fn recv(&mut self) -> Result<Option<Message>, Error> {
        future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The poll function under [`recv`](Self::recv).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Message>, Error>> {
        self.shared.poll(Half::Reader, cx, |ws, cx| ws.poll_recv(cx))
    }

    /// The peer's close code and reason, once its close frame arrived.
    pub fn peer_close(&self) -> Option<(CloseCode, String)> {
        self.shared.lock().ws.peer_close().map(|(code, reason)| (code, reason.to_owned()))
    }
}

/// The messages received, as on [`WebSocket`]'s `Stream`.
impl<S: AsyncRead + AsyncWrite + Unpin> Stream for WsReader<S> {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(match ready!(self.get_mut().poll_recv(cx)) {
            Ok(Some(message)) => Some(Ok(message)),
            Ok(None) | Err(Error::Closed) => None,
            Err(err) => Some(Err(err)),
        })
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsWriter<S> {
    /// Sends a message and waits until the stream has taken it. [`Error::Closed`] once the
    /// connection is closing or the stream failed (when the peer closed or broke the
    /// protocol, after the close handshake has finished, as
    /// [`WebSocket::poll_ready`] does). Cancel-safe: dropped after the message was
    /// queued, it is written by the next call that writes (from either half).
    pub async fn send(&self, message: impl Outgoing) -> Result<(), Error> {
        self.feed(message).await?;
        self.flush().await
    }

    /// Queues a message, waiting only while more than
    /// [`Config::write_buffer_size`](crate::Config::write_buffer_size) bytes are queued.
    pub async fn feed(&self, message: impl Outgoing) -> Result<(), Error> {
        future::poll_fn(|cx| self.shared.poll(Half::Writer, cx, |ws, cx| ws.poll_ready(cx)))
            .await?;
        self.shared.lock().ws.start_send(message)
    }

    /// Writes all queued output. Cancel-safe.
    pub async fn flush(&self) -> Result<(), Error> {
        future::poll_fn(|cx| self.shared.poll(Half::Writer, cx, |ws, cx| ws.poll_flush(cx))).await
    }

    /// Sends a ping.
    pub async fn ping(&self, payload: &[u8]) -> Result<(), Error> {
        future::poll_fn(|cx| self.shared.poll(Half::Writer, cx, |ws, cx| ws.poll_ready(cx)))
            .await?;
        self.shared.lock().ws.queue_ping(payload)?;
        self.flush().await
    }

    /// Sends a close frame (after a frame of ours that is half sent). The reader's `recv`
    /// returns `Ok(None)` when the peer answers, or gives up at the close timeout.
    pub async fn close(&self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.begin_close(code, reason)?;
        self.flush().await
    }

    /// Queues the close frame, and wakes the reader: the close timer now runs.
    fn begin_close(&self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.shared.lock().ws.begin_close(code, reason)?;
        self.shared.fanout.wake_all();
        Ok(())
    }
}

/// Sending [`Message`]s, as on [`WebSocket`]'s `Sink`, except `poll_close`: it sends the close
/// frame (1000, Normal Closure) and flushes; the reader's stream ends when the peer answers.
impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WsWriter<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.shared.poll(Half::Writer, cx, |ws, cx| ws.poll_ready(cx))
    }

    fn start_send(self: Pin<&mut Self>, message: Message) -> Result<(), Error> {
        self.shared.lock().ws.start_send(message)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.shared.poll(Half::Writer, cx, |ws, cx| ws.poll_flush(cx))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.shared.lock().ws.is_open() {
            self.begin_close(CloseCode::NORMAL, "")?;
        }
        match ready!(self.shared.poll(Half::Writer, cx, |ws, cx| ws.poll_flush(cx))) {
            Ok(()) | Err(Error::Closed) => Poll::Ready(Ok(())),
            Err(err) => Poll::Ready(Err(err)),
        }
    }
}
