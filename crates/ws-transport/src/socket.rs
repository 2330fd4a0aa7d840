//! [`WebSocket`]: a `ws-proto` connection driven over an async stream.

use std::pin::Pin;
use std::task::Poll;
use std::time::Instant;

use async_io::Timer;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, future};
use ws_proto::{CloseCode, Connection, Deadline, Event, ProtocolError, State, TimerAction, Timers};

use crate::config::Config;
use crate::error::{Error, Timeout};
use crate::message::{IN_PLACE_MIN, Message, Outgoing};
use crate::util::{with_deadline, write_output};

/// An event copied out of the connection, so that the stream can be used while acting on it.
enum Polled {
    Message(Message),
    Other,
    Chunk,
    Close,
    Failed(ProtocolError),
    Disconnected,
}

/// The deadline [`WebSocket::read_more`] waits for besides data.
/// A WebSocket over a stream `S` (any `futures-io` `AsyncRead + AsyncWrite`), after the opening
/// handshake. Get one from [`accept`](crate::accept) or [`connect`](crate::connect).
///
/// High level: [`recv`](Self::recv), [`send`](Self::send), [`close`](Self::close). Low level,
/// for streaming and zero-copy replies: [`connection_mut`](Self::connection_mut) to poll
/// events and queue frames, [`read_more`](Self::read_more) and [`flush`](Self::flush) to move
/// bytes.
#[derive(Debug)]
pub struct WebSocket<S> {
    stream: S,
    conn: Connection,
    config: Config,
    /// Close, keepalive and idle deadlines (ws-proto's, run on async-io timers).
    timers: Timers,
    stream_closed: bool,
    peer_close: Option<(CloseCode, String)>,
    bytes_read: u64,
    bytes_written: u64,
    /// Bytes to ask for in the next read, adapted to recent reads.
    read_size: usize,
}

/// The smallest read requested: enough for small messages in one read.
const MIN_READ: usize = 2 << 10;

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Wraps a stream whose opening handshake is complete. `already_read` holds bytes read
    /// past the handshake: the start of the frame stream.
    pub fn from_parts(stream: S, conn: Connection, config: Config, already_read: &[u8]) -> Self {
        let mut conn = conn;
        conn.receive_data(already_read);
        let timers = Timers::new(Instant::now());
        Self {
            stream,
            conn,
            config,
            timers,
            stream_closed: false,
            peer_close: None,
            bytes_read: 0,
            bytes_written: 0,
            read_size: MIN_READ,
        }
    }

    /// Takes the WebSocket apart, to drive the connection some other way (an event loop of
    /// one's own, say): the stream and the state machine, with any input already read and
    /// output not yet written still inside it. The timers' state is dropped.
    pub fn into_parts(self) -> (S, Connection) {
        (self.stream, self.conn)
    }

    /// The protocol state machine.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The protocol state machine, to poll events and queue frames directly.
    pub fn connection_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The peer's close code and reason, once its close frame arrived.
    pub fn peer_close(&self) -> Option<(CloseCode, &str)> {
        self.peer_close.as_ref().map(|(code, reason)| (*code, reason.as_str()))
    }

    /// Receives the next message. Pings are answered along the way. Returns `Ok(None)` once
    /// the close handshake completes; `Err` if the peer broke the protocol (after the close
    /// frame with the right code was sent) or the stream failed.
    ///
    /// Requires [`Delivery::Messages`](ws_proto::Delivery::Messages), the default; with
    /// chunks, poll [`connection_mut`](Self::connection_mut) instead.
    pub async fn recv(&mut self) -> Result<Option<Message>, Error> {
        loop {
            while let Some(polled) = self.poll_owned() {
                match polled {
                    Polled::Message(message) => {
                        self.flush().await?;
                        return Ok(Some(message));
                    }
                    Polled::Other => {}
                    Polled::Chunk => {
                        return Err(Error::Unsupported(
                            "recv needs Delivery::Messages; poll the connection for chunks",
                        ));
                    }
                    Polled::Close => {
                        self.finish_close().await?;
                        return Ok(None);
                    }
                    Polled::Failed(err) => {
                        self.finish_close().await?;
                        return Err(Error::Protocol(err));
                    }
                    Polled::Disconnected => {
                        self.shutdown().await;
                        return Err(Error::Disconnected);
                    }
                }
            }
            if self.conn.state() == State::Closed {
                self.finish_close().await?;
                return Ok(None);
            }
            self.flush().await?;
            self.read_more().await?;
        }
    }

    fn poll_owned(&mut self) -> Option<Polled> {
        let event = self.conn.poll_event()?;
        Some(match event {
            Event::Message(message) => Polled::Message(message.into()),
            Event::Chunk(_) => Polled::Chunk,
            Event::Close(frame) => {
                self.peer_close = Some((frame.code, frame.reason.to_owned()));
                Polled::Close
            }
            Event::Failed(err) => Polled::Failed(err),
            Event::Disconnected => Polled::Disconnected,
            _ => Polled::Other,
        })
    }

    /// Sends a message and waits until the stream has taken it.
    ///
    /// A message of [`IN_PLACE_MIN`] bytes or more is not copied: its header and payload go
    /// out in one vectored write (a client masks the owned payload in place).
    pub async fn send(&mut self, message: impl Outgoing) -> Result<(), Error> {
        // Compressed messages go through the compressor; only plain, owned ones of some size
        // are sent in place.
        if message.bytes().len() >= IN_PLACE_MIN && !self.stream_closed && !self.conn.compression()
        {
            let kind = message.kind();
            match message.into_owned_bytes() {
                Ok(mut payload) => {
                    self.conn.sender().send_in_place(kind, &mut payload)?;
                    return self.write_out(&payload).await;
                }
                Err(message) => self.feed(message).await?,
            }
        } else {
            self.feed(message).await?;
        }
        self.flush().await
    }

    /// Writes all pending output and then `payload`, within [`Config::write_timeout`].
    async fn write_out(&mut self, payload: &[u8]) -> Result<(), Error> {
        let deadline = Instant::now() + self.config.write_timeout;
        let Self { stream, conn, .. } = self;
        match with_deadline(deadline, write_output(stream, conn, payload)).await {
            Some(written) => {
                self.bytes_written += written?;
                Ok(())
            }
            None => {
                self.shutdown().await;
                Err(Error::Timeout(Timeout::Write))
            }
        }
    }

    /// Queues a message, waiting only while more than
    /// [`Config::write_buffer_size`] bytes are queued. Call [`flush`](Self::flush) after a
    /// batch.
    pub async fn feed(&mut self, message: impl Outgoing) -> Result<(), Error> {
        self.conn.sender().send_message(message.kind(), message.bytes())?;
        if self.conn.pending_output().len() > self.config.write_buffer_size {
            self.flush().await?;
        }
        Ok(())
    }

    /// Sends a ping with up to 125 bytes of payload.
    pub async fn ping(&mut self, payload: &[u8]) -> Result<(), Error> {
        self.conn.send_ping(payload)?;
        self.flush().await
    }

    /// Closes the connection: sends a close frame, waits up to
    /// [`Config::close_timeout`] for the peer's, and ends the stream. Messages that arrive
    /// meanwhile are dropped. Works in either delivery mode.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        if self.conn.state() == State::Open {
            self.conn.close(code, reason)?;
            self.timers.start_closing(Instant::now());
        }
        loop {
            let mut outcome = None;
            while outcome.is_none() {
                let Some(event) = self.conn.poll_event() else {
                    break;
                };
                outcome = match event {
                    Event::Close(frame) => {
                        self.peer_close = Some((frame.code, frame.reason.to_owned()));
                        Some(Ok(()))
                    }
                    Event::Failed(err) => Some(Err(Error::Protocol(err))),
                    Event::Disconnected => Some(Ok(())),
                    _ => None,
                };
            }
            if outcome.is_some() || self.conn.state() == State::Closed {
                self.finish_close().await?;
                return outcome.unwrap_or(Ok(()));
            }
            self.flush().await?;
            self.read_more().await?;
        }
    }

    /// Bytes read from and written to the stream since the handshake.
    pub fn byte_counts(&self) -> (u64, u64) {
        (self.bytes_read, self.bytes_written)
    }

    /// Writes all queued output, within [`Config::write_timeout`]. Closes the stream when the
    /// protocol says the transport should end.
    pub async fn flush(&mut self) -> Result<(), Error> {
        if !self.conn.pending_output().is_empty() && !self.stream_closed {
            self.write_out(&[]).await?;
        }
        if self.conn.should_close_transport() {
            self.shutdown().await;
        }
        Ok(())
    }

    /// Ends the stream (for TCP: sends FIN). Idempotent; errors are ignored, as the peer may
    /// already be gone.
    pub async fn shutdown(&mut self) {
        if !self.stream_closed {
            self.stream_closed = true;
            let _ = self.stream.close().await;
        }
    }

    /// After the close handshake or a failure: send what is queued, then end the stream. A
    /// client first waits for the server to end it (§7.1.1), up to the close timeout.
    async fn finish_close(&mut self) -> Result<(), Error> {
        self.timers.start_closing(Instant::now());
        let flushed = self.flush().await;
        if !self.stream_closed && flushed.is_ok() {
            // Client after a clean close: wait for the server's FIN.
            let deadline = self.timers.closing_since().unwrap_or_else(Instant::now)
                + self.config.close_timeout;
            let mut scratch = [0u8; 256];
            let Self { stream, .. } = self;
            let drain = async {
                loop {
                    match stream.read(&mut scratch).await {
                        Ok(0) | Err(_) => return true,
                        Ok(_) => {}
                    }
                }
            };
            let timeout = async {
                Timer::at(deadline).await;
                false
            };
            future::or(drain, timeout).await;
            self.shutdown().await;
        }
        flushed
    }

    /// Reads once from the stream into the connection, handling keepalive, idle and close
    /// deadlines while waiting. Returns `false` at the end of the stream.
    pub async fn read_more(&mut self) -> Result<bool, Error> {
        loop {
            let settings = self.config.timers();
            let deadline = self.timers.poll_timeout(&settings, &self.conn, Instant::now());
            let max = self.config.read_buffer_size;
            let size = self.read_size.clamp(MIN_READ, max.max(MIN_READ));
            let Self { stream, conn, .. } = self;
            let read = future::poll_fn(|cx| {
                let buf = conn.input_buffer(size);
                match Pin::new(&mut *stream).poll_read(cx, buf) {
                    Poll::Ready(result) => Poll::Ready(result.map(Some)),
                    Poll::Pending => {
                        // Nothing to read: the connection is idle. Free its buffers while it
                        // waits, so an idle connection costs only its structs (the next read
                        // allocates again, sized by the last one).
                        conn.release_idle_buffers();
                        Poll::Pending
                    }
                }
            });
            let outcome = match deadline {
                Some((at, _)) => {
                    let timer = async {
                        Timer::at(at).await;
                        Ok(None)
                    };
                    future::or(read, timer).await
                }
                None => read.await,
            };
            match outcome {
                Ok(Some(0)) => {
                    self.conn.receive_eof();
                    return Ok(false);
                }
                Ok(Some(n)) => {
                    self.conn.input_written(n);
                    self.bytes_read += n as u64;
                    // Grow the next read while reads fill the buffer; shrink it when they
                    // do not.
                    self.read_size = if n >= size { size * 2 } else { (n * 2).max(MIN_READ) };
                    self.timers.received(Instant::now());
                    return Ok(true);
                }
                Ok(None) => {
                    let (_, which) = deadline.expect("a timer fired");
                    // Boxed: timers are rare, and this keeps the read's future small.
                    Box::pin(self.on_deadline(which)).await?;
                }
                Err(err) => {
                    self.shutdown().await;
                    return Err(Error::Io(err));
                }
            }
        }
    }

    async fn on_deadline(&mut self, which: Deadline) -> Result<(), Error> {
        match self.timers.handle_timeout(which, &mut self.conn, Instant::now()) {
            TimerAction::Abort(which) => {
                // After an unanswered ping a 1011 close frame is queued: one try to send it.
                if which == Deadline::Pong {
                    let _ = self.flush().await;
                }
                self.shutdown().await;
                Err(Error::Timeout(match which {
                    Deadline::Pong => Timeout::Pong,
                    _ => Timeout::Close,
                }))
            }
            _ => self.flush().await,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Splits into a reader and a writer half, so that one task receives while others send.
    /// Keepalive and idle timers are not run on split halves.
    pub fn split(self) -> (crate::WsReader<S>, crate::WsWriter<S>) {
        crate::split::split(self.stream, self.conn, self.config)
    }
}
