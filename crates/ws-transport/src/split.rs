//! Reader and writer halves, so that one task receives while others send.

use std::sync::Arc;
use std::time::Instant;

use async_lock::Mutex;
use futures_lite::io::{ReadHalf, WriteHalf};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use ws_proto::{CloseCode, Connection, Event, State};

use crate::config::Config;
use crate::error::{Error, Timeout};
use crate::message::{Message, Outgoing};
use crate::util::{with_deadline, write_output};

/// State both halves share: the protocol machine and the write side of the stream.
#[derive(Debug)]
struct Shared<S> {
    conn: Connection,
    write: WriteHalf<S>,
    config: Config,
    write_closed: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Shared<S> {
    /// Writes all queued output within the write timeout; ends the write side when the
    /// protocol says so.
    async fn flush(&mut self) -> Result<(), Error> {
        if !self.conn.pending_output().is_empty() && !self.write_closed {
            let deadline = Instant::now() + self.config.write_timeout;
            let Self { conn, write, .. } = self;
            match with_deadline(deadline, write_output(write, conn, &[])).await {
                None => {
                    self.close_write().await;
                    return Err(Error::Timeout(Timeout::Write));
                }
                Some(result) => {
                    result?;
                }
            }
        }
        if self.conn.should_close_transport() {
            self.close_write().await;
        }
        Ok(())
    }

    async fn close_write(&mut self) {
        if !self.write_closed {
            self.write_closed = true;
            let _ = self.write.close().await;
        }
    }
}

/// The receiving half of a split [`WebSocket`](crate::WebSocket).
#[derive(Debug)]
pub struct WsReader<S> {
    read: ReadHalf<S>,
    shared: Arc<Mutex<Shared<S>>>,
    buf: Vec<u8>,
    closing_since: Option<Instant>,
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

pub(crate) fn split<S>(stream: S, conn: Connection, config: Config) -> (WsReader<S>, WsWriter<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (read, write) = futures_lite::io::split(stream);
    let buf = vec![0; config.read_buffer_size];
    let shared = Arc::new(Mutex::new(Shared { conn, write, config, write_closed: false }));
    (WsReader { read, shared: Arc::clone(&shared), buf, closing_since: None }, WsWriter { shared })
}

enum Next {
    Message(Message),
    Closed,
    Failed(ws_proto::ProtocolError),
    Disconnected,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsReader<S> {
    /// Receives the next message, as [`WebSocket::recv`](crate::WebSocket::recv) does:
    /// `Ok(None)` after the close handshake. Pongs are written from here.
    pub async fn recv(&mut self) -> Result<Option<Message>, Error> {
        loop {
            let mut shared = self.shared.lock().await;
            let mut next = None;
            while next.is_none() {
                let Some(event) = shared.conn.poll_event() else {
                    break;
                };
                next = match event {
                    Event::Message(message) => Some(Next::Message(message.into())),
                    Event::Close(_) => Some(Next::Closed),
                    Event::Failed(err) => Some(Next::Failed(err)),
                    Event::Disconnected => Some(Next::Disconnected),
                    Event::Chunk(_) => {
                        return Err(Error::Unsupported("recv needs Delivery::Messages"));
                    }
                    _ => None,
                };
            }
            shared.flush().await?;
            match next {
                Some(Next::Message(message)) => return Ok(Some(message)),
                Some(Next::Closed) => return Ok(None),
                Some(Next::Failed(err)) => return Err(Error::Protocol(err)),
                Some(Next::Disconnected) => return Err(Error::Disconnected),
                None if shared.conn.state() == State::Closed => return Ok(None),
                None => {}
            }
            if shared.conn.state() != State::Open {
                self.closing_since.get_or_insert_with(Instant::now);
            }
            let close_timeout = shared.config.close_timeout;
            drop(shared);
            let read = self.read.read(&mut self.buf);
            let n = match self.closing_since {
                Some(since) => with_deadline(since + close_timeout, read)
                    .await
                    .ok_or(Error::Timeout(Timeout::Close))??,
                None => read.await?,
            };
            let mut shared = self.shared.lock().await;
            if n == 0 {
                shared.conn.receive_eof();
            } else {
                shared.conn.receive_data(&self.buf[..n]);
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsWriter<S> {
    /// Sends a message and waits until the stream has taken it.
    pub async fn send(&self, message: impl Outgoing) -> Result<(), Error> {
        let mut shared = self.shared.lock().await;
        shared.conn.sender().send_message(message.kind(), message.bytes())?;
        shared.flush().await
    }

    /// Sends a ping.
    pub async fn ping(&self, payload: &[u8]) -> Result<(), Error> {
        let mut shared = self.shared.lock().await;
        shared.conn.send_ping(payload)?;
        shared.flush().await
    }

    /// Sends a close frame. The reader's `recv` returns `Ok(None)` when the peer answers.
    pub async fn close(&self, code: CloseCode, reason: &str) -> Result<(), Error> {
        let mut shared = self.shared.lock().await;
        shared.conn.close(code, reason)?;
        shared.flush().await
    }
}
