//! [`Stream`] and [`Sink`] for [`WebSocket`], on its poll functions, so that the futures
//! combinators apply (`StreamExt::next`, `SinkExt::send`, `forward`, `StreamExt::split`,
//! `select_all`).

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_core::Stream;
use futures_lite::{AsyncRead, AsyncWrite};
use futures_sink::Sink;

use crate::error::Error;
use crate::message::Message;
use crate::socket::WebSocket;

/// The messages received, as [`recv`](WebSocket::recv) returns them: the stream ends after the
/// close handshake, and after an error (once it has been yielded).
impl<S: AsyncRead + AsyncWrite + Unpin> Stream for WebSocket<S> {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(match ready!(self.get_mut().poll_recv(cx)) {
            Ok(Some(message)) => Some(Ok(message)),
            Ok(None) => None,
            // Closed is what every call after the end says: the stream has ended.
            Err(Error::Closed) => None,
            Err(err) => Some(Err(err)),
        })
    }
}

/// Sending [`Message`]s (the inherent [`send`](WebSocket::send) also takes `&str`, `&[u8]`
/// and the rest of [`Outgoing`](crate::Outgoing)), as [`feed`](WebSocket::feed) and
/// [`flush`](WebSocket::flush) do: `poll_ready`
/// waits while more than [`Config::write_buffer_size`](crate::Config::write_buffer_size)
/// bytes are queued, `start_send` queues, `poll_flush` writes all. `poll_close` is
/// [`close`](WebSocket::close) with 1000 (Normal Closure): it sends the close frame, waits for
/// the peer's (messages that arrive meanwhile are dropped) and ends the stream.
impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WebSocket<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        WebSocket::poll_ready(self.get_mut(), cx)
    }

    fn start_send(self: Pin<&mut Self>, message: Message) -> Result<(), Error> {
        WebSocket::start_send(self.get_mut(), message)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        WebSocket::poll_flush(self.get_mut(), cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().poll_close(cx)
    }
}
