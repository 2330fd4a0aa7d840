//! Reader and writer halves, so that one task receives while others send. Both halves drive
//! one [`Session`] (timers, close sequencing, the end of the stream), as the whole
//! [`WebSocket`](crate::WebSocket) does.

use std::sync::Arc;
use std::time::Instant;

use async_lock::Mutex;
use futures_lite::io::{ReadHalf, WriteHalf};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, future};
use ws_proto::{CloseCode, Deadline, Event, Session, TimerAction, TransportCommand};

use crate::config::Config;
use crate::error::{End, Error, Timeout};
use crate::message::{Message, Outgoing};
use crate::util::{close_by, close_now, with_deadline, write_output};

/// State both halves share: the session and the write side of the stream.
#[derive(Debug)]
struct Shared<S> {
    session: Session,
    write: WriteHalf<S>,
    config: Config,
    /// Wakes the reader when a writer changes what it waits for: the close handshake began
    /// (the close timer runs), or the stream was given up on. Held here, not by the writers,
    /// so that it stays open when every writer is dropped.
    wake: async_channel::Sender<()>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Shared<S> {
    /// Writes all queued output within the write timeout, then carries out what the session
    /// asks of the transport (ending our side of the stream).
    async fn flush(&mut self) -> Result<(), Error> {
        if !self.session.pending_output().is_empty() {
            if self.session.is_closed() {
                return Err(Error::Closed);
            }
            let deadline = Instant::now() + self.config.write_timeout;
            let Self { session, write, .. } = self;
            match with_deadline(deadline, write_output(write, session.connection_mut(), &[])).await
            {
                None => {
                    self.abort().await;
                    return Err(Error::Timeout(Timeout::Write));
                }
                Some(Err(err)) => {
                    self.abort().await;
                    return Err(Error::Io(err));
                }
                Some(Ok(_)) => self.session.wrote(0, Instant::now()),
            }
        }
        while let Some(command) = self.session.poll_transport() {
            if command == TransportCommand::ShutdownWrite {
                // Our side ends (TCP: FIN; TLS: close_notify first, within the write
                // timeout); the reader reads until the peer's does. See "Ending the stream"
                // on `WebSocket`.
                close_by(&mut self.write, Instant::now() + self.config.write_timeout).await;
            }
        }
        Ok(())
    }

    /// Gives up on the stream: ends our side, and nothing more is sent.
    async fn abort(&mut self) {
        if !self.session.is_closed() {
            self.session.transport_closed();
            let _ = self.wake.try_send(());
            close_now(&mut self.write).await;
        }
    }

    fn check_can_send(&self) -> Result<(), Error> {
        if self.session.is_open() { Ok(()) } else { Err(Error::Closed) }
    }
}

/// The receiving half of a split [`WebSocket`](crate::WebSocket). The session's timers
/// (keepalive, idle, close) run while it waits in [`recv`](Self::recv).
#[derive(Debug)]
pub struct WsReader<S> {
    read: ReadHalf<S>,
    shared: Arc<Mutex<Shared<S>>>,
    buf: Vec<u8>,
    /// Bytes read into `buf` and not yet given to the session (`Some(0)`: end of stream),
    /// so that a `recv` dropped while waiting for the lock loses nothing.
    unfed: Option<usize>,
    /// A message received and not yet returned.
    received: Option<Message>,
    end: Option<End>,
    /// See `Shared::wake`.
    wake: async_channel::Receiver<()>,
}

/// The sending half of a split [`WebSocket`](crate::WebSocket). Clone it to send from several
/// tasks; sends are serialised.
#[derive(Debug)]
pub struct WsWriter<S> {
    shared: Arc<Mutex<Shared<S>>>,
}

impl<S> Clone for WsWriter<S> {
    fn clone(&self) -> Self {
        Self { shared: Arc::clone(&self.shared) }
    }
}

pub(crate) fn split<S>(stream: S, session: Session, config: Config) -> (WsReader<S>, WsWriter<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (read, write) = futures_lite::io::split(stream);
    let buf = vec![0; config.read_buffer_size];
    let (wake_tx, wake_rx) = async_channel::bounded(1);
    let shared = Arc::new(Mutex::new(Shared { session, write, config, wake: wake_tx }));
    let reader = WsReader {
        read,
        shared: Arc::clone(&shared),
        buf,
        unfed: None,
        received: None,
        end: None,
        wake: wake_rx,
    };
    (reader, WsWriter { shared })
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsReader<S> {
    /// Receives the next message, as [`WebSocket::recv`](crate::WebSocket::recv) does:
    /// `Ok(None)` after the close handshake, once the stream has ended (a client waits for
    /// the server to end it, §7.1.1). Pongs and timer frames are written from here.
    /// Cancel-safe.
    pub async fn recv(&mut self) -> Result<Option<Message>, Error> {
        loop {
            let mut shared = self.shared.lock().await;
            if let Some(n) = self.unfed.take() {
                shared.session.receive_data(&self.buf[..n], Instant::now());
            }
            if self.received.is_none() && self.end.is_none() {
                while let Some(event) = shared.session.connection_mut().poll_event() {
                    match event {
                        Event::Message(message) => self.received = Some(message.into()),
                        Event::Close(_) => self.end = Some(End::Closed),
                        Event::Failed(err) => self.end = Some(End::Failed(err)),
                        Event::Disconnected => self.end = Some(End::Disconnected),
                        Event::Chunk(_) => {
                            return Err(Error::Unsupported("recv needs Delivery::Messages"));
                        }
                        _ => continue,
                    }
                    break;
                }
            }
            shared.flush().await?;
            if let Some(message) = self.received.take() {
                return Ok(Some(message));
            }
            let finishing = self.end.is_some();
            if finishing && (shared.session.is_closed() || !shared.session.wants_read()) {
                return self.end.replace(End::Reported).map_or(Ok(None), End::result);
            }
            if shared.session.is_closed() {
                return Err(Error::Closed);
            }
            let settings = shared.config.timers();
            let deadline = shared.session.poll_timeout(&settings, Instant::now());
            drop(shared);
            // The read, the session's next deadline, or the writer starting the close
            // handshake (which starts the close timer), whichever comes first.
            let read = async { Some(self.read.read(&mut self.buf).await) };
            let woken = async {
                let _ = self.wake.recv().await;
                None
            };
            let read = future::or(read, woken);
            let outcome = match deadline {
                Some((at, _)) => with_deadline(at, read).await,
                None => Some(read.await),
            };
            match outcome {
                Some(Some(Ok(n))) => self.unfed = Some(n),
                Some(Some(Err(err))) => {
                    self.shared.lock().await.abort().await;
                    return Err(Error::Io(err));
                }
                // Woken: look at the deadlines again.
                Some(None) => {}
                None => {
                    let (_, which) = deadline.expect("a deadline passed");
                    let mut shared = self.shared.lock().await;
                    if let Err(err) = on_deadline(&mut shared, which).await {
                        // After the close handshake, a peer that keeps its side open is
                        // only waited for so long.
                        if finishing && matches!(err, Error::Timeout(Timeout::Close)) {
                            self.end = Some(End::Reported);
                            return Ok(None);
                        }
                        return Err(err);
                    }
                }
            }
        }
    }
}

/// Acts on a passed deadline: writes the frames it queued, or gives up on the stream.
async fn on_deadline<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &mut Shared<S>,
    which: Deadline,
) -> Result<(), Error> {
    match shared.session.handle_timeout(which, Instant::now()) {
        TimerAction::Abort(which) => {
            close_now(&mut shared.write).await;
            Err(Error::Timeout(match which {
                Deadline::Pong => Timeout::Pong,
                Deadline::Write => Timeout::Write,
                _ => Timeout::Close,
            }))
        }
        _ => shared.flush().await,
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsWriter<S> {
    /// Sends a message and waits until the stream has taken it. [`Error::Closed`] once the
    /// connection is closing or the stream failed. Cancel-safe.
    pub async fn send(&self, message: impl Outgoing) -> Result<(), Error> {
        let mut shared = self.shared.lock().await;
        shared.check_can_send()?;
        let conn = shared.session.connection_mut();
        conn.sender().send_message(message.kind(), message.bytes())?;
        shared.flush().await
    }

    /// Sends a ping.
    pub async fn ping(&self, payload: &[u8]) -> Result<(), Error> {
        let mut shared = self.shared.lock().await;
        shared.check_can_send()?;
        shared.session.connection_mut().send_ping(payload)?;
        shared.flush().await
    }

    /// Sends a close frame (after a frame of ours that is half sent). The reader's `recv`
    /// returns `Ok(None)` when the peer answers, or gives up at the close timeout.
    pub async fn close(&self, code: CloseCode, reason: &str) -> Result<(), Error> {
        let mut shared = self.shared.lock().await;
        shared.check_can_send()?;
        shared.session.close(code, reason, Instant::now())?;
        let _ = shared.wake.try_send(());
        shared.flush().await
    }
}
