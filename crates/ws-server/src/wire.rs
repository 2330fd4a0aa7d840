//! A connection's socket on an epoll engine, with TLS or without: [`Wire`] reads and writes
//! plaintext on a non-blocking socket, and says when the socket is drained (edge-triggered
//! epoll raises no new edge until it is).
//!
//! TLS is our [`Tls`] (rustls's unbuffered connection and its buffers), driven here directly:
//! its handshake was done on the async path, and it arrives with whatever it held then. TLS
//! bytes are read into a buffer from the engine's pool, decrypted into the session's read
//! buffer, and the pool's buffer goes back when the connection waits.

use std::io::{self, IoSlice, Read, Write};
use std::net::TcpStream;

use crate::tls::{RECORD_MAX, Tls};

/// A socket, and its TLS state when it speaks TLS.
pub(crate) struct Wire {
    stream: TcpStream,
    tls: Option<Box<Tls>>,
    /// The write side is to end once the TLS bytes owed are written.
    shutdown_owed: bool,
}

/// What a [`Wire::flush`] did.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Flushed {
    /// Nothing is left to write: the socket may take more.
    pub(crate) drained: bool,
    /// Some bytes went to the socket.
    pub(crate) moved: bool,
}

/// The smallest plaintext read over TLS: two records, so that a whole record always fits
/// behind part of one.
pub(crate) const TLS_MIN_READ: usize = 2 * RECORD_MAX;

impl Wire {
    pub(crate) fn new(stream: TcpStream, tls: Option<Box<Tls>>) -> Self {
        Self { stream, tls, shutdown_owed: false }
    }

    /// What the TLS state holds, for the memory budget (see [`Tls::memory`]).
    pub(crate) fn memory(&self) -> usize {
        self.tls.as_ref().map_or(0, |tls| tls.memory())
    }

    /// The smallest read buffer [`read`](Self::read) takes.
    pub(crate) fn min_read(&self) -> usize {
        if self.tls.is_some() { TLS_MIN_READ } else { 0 }
    }

    /// Whether TLS bytes (or the end of the write side after them) wait for the socket.
    pub(crate) fn owes(&self) -> bool {
        self.shutdown_owed || self.tls.as_ref().is_some_and(|tls| tls.owes())
    }

    /// One write of the plaintext `parts`: the bytes taken, or `None` when the socket takes
    /// no more. With TLS, the bytes taken are encrypted at once (at most
    /// [`WRITE_MAX`](crate::tls::WRITE_MAX) of them), and more are taken only once those have
    /// gone to the socket: see [`flush`](Self::flush).
    pub(crate) fn write(&mut self, parts: &[IoSlice<'_>]) -> io::Result<Option<usize>> {
        if self.tls.is_none() {
            return write_some(&self.stream, parts);
        }
        if !self.flush()?.drained {
            return Ok(None);
        }
        let Some(tls) = self.tls.as_deref_mut() else { return Ok(None) };
        let n = tls.encrypt(parts)?;
        self.flush()?;
        Ok(n)
    }

    /// Writes the TLS bytes that wait (and then ends the write side, if that waited for
    /// them).
    pub(crate) fn flush(&mut self) -> io::Result<Flushed> {
        let Some(tls) = self.tls.as_deref_mut() else {
            return Ok(Flushed { drained: true, moved: false });
        };
        let flushed = send(tls, &self.stream)?;
        if flushed.drained && std::mem::take(&mut self.shutdown_owed) {
            let _ = self.stream.shutdown(std::net::Shutdown::Write);
        }
        Ok(flushed)
    }

    /// Ends the write side: with TLS, after `close_notify` and whatever is still owed (then
    /// on a later [`flush`](Self::flush) if the socket takes no more now).
    pub(crate) fn shutdown_write(&mut self) {
        let Some(tls) = self.tls.as_deref_mut() else {
            let _ = self.stream.shutdown(std::net::Shutdown::Write);
            return;
        };
        let _ = tls.close_notify();
        self.shutdown_owed = true;
        let _ = self.flush();
    }

    /// Before the connection waits: the buffer TLS bytes were read into, for the pool.
    pub(crate) fn take_idle_buffer(&mut self) -> Option<Vec<u8>> {
        self.tls.as_deref_mut()?.take_idle_buffers()
    }

    /// One read of plaintext into `buf` (at least [`min_read`](Self::min_read) long):
    /// `Some(n)`, 0 at the end of the stream; `None` when nothing is to be had now. Clears
    /// `readable` once the socket is drained: after a read shorter than asked for (unless
    /// the peer's end, `peer_ended`, is still to be read). With TLS, TLS bytes are read into
    /// a buffer from `pool` when the connection holds none large enough.
    pub(crate) fn read(
        &mut self,
        buf: &mut [u8],
        readable: &mut bool,
        peer_ended: bool,
        pool: &mut Vec<Vec<u8>>,
    ) -> io::Result<Option<usize>> {
        let Some(tls) = self.tls.as_deref_mut() else {
            return read_some(&self.stream, buf, readable, peer_ended);
        };
        loop {
            let n = match tls.process(buf) {
                Ok(n) => n,
                Err(err) => {
                    // The alert that says why, one try.
                    let _ = send(tls, &self.stream);
                    return Err(err);
                }
            };
            if n > 0 {
                // Plaintext held back raises no edge: read on for it.
                if tls.has_plaintext() {
                    *readable = true;
                }
                return Ok(Some(n));
            }
            if tls.peer_closed() {
                return Ok(Some(0));
            }
            if !*readable {
                return Ok(None);
            }
            // TLS bytes read fit, decrypted, in `buf` with those already held.
            let want = buf.len().saturating_sub(tls.received()).max(RECORD_MAX);
            if tls.input_room() < want {
                // A buffer of the read size, which goes back to the pool when the connection
                // waits.
                let lent = pool.pop().unwrap_or_default();
                if let Some(lent) = tls.lend_input(lent, buf.len()) {
                    pool.push(lent);
                }
            }
            let space = tls.input_space(want);
            let asked = space.len().min(want);
            match read_some(&self.stream, &mut space[..asked], readable, peer_ended)? {
                // The stream ended without close_notify: an end all the same (the WebSocket
                // close handshake is what says whether anything was cut off).
                Some(0) => return Ok(Some(0)),
                Some(got) => tls.filled(got),
                None if *readable => {}
                None => return Ok(None),
            }
        }
    }
}

/// One read of `buf` from a non-blocking socket: see [`Wire::read`].
fn read_some(
    mut stream: &TcpStream,
    buf: &mut [u8],
    readable: &mut bool,
    peer_ended: bool,
) -> io::Result<Option<usize>> {
    match stream.read(buf) {
        Ok(n) => {
            // More input raises a new edge, unless the peer's end of stream is still to be
            // read: that edge has been had.
            if n == 0 || (n < buf.len() && !peer_ended) {
                *readable = false;
            }
            Ok(Some(n))
        }
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
            *readable = false;
            Ok(None)
        }
        Err(err) if err.kind() == io::ErrorKind::Interrupted => Ok(None),
        Err(err) => Err(err),
    }
}

/// Writes the TLS bytes owed until none are left or the socket takes no more.
fn send(tls: &mut Tls, mut stream: &TcpStream) -> io::Result<Flushed> {
    let mut moved = false;
    while tls.owes() {
        match stream.write(tls.output()) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                tls.sent(n);
                moved = true;
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                return Ok(Flushed { drained: false, moved });
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(Flushed { drained: true, moved })
}

/// One write of `parts`: the bytes taken, or `None` when the socket's buffer is full.
fn write_some(mut stream: &TcpStream, parts: &[IoSlice<'_>]) -> io::Result<Option<usize>> {
    loop {
        match stream.write_vectored(parts) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => return Ok(Some(n)),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
}
