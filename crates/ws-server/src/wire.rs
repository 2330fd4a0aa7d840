//! A connection's socket on an epoll engine, with TLS or without: [`Wire`] reads and writes
//! plaintext on a non-blocking socket, and says when the socket is drained (edge-triggered
//! epoll raises no new edge until it is).
//!
//! TLS is rustls's sans-IO [`ServerConnection`], driven here directly (`read_tls`,
//! `process_new_packets`, `reader`; `writer`, `write_tls`): its handshake was done on the
//! async path, and the connection arrives with whatever rustls held then.

use std::io::{self, IoSlice, Read, Write};
use std::net::TcpStream;

use ws_transport::rustls::ServerConnection;

/// A socket, and its TLS state when it speaks TLS.
pub(crate) struct Wire {
    stream: TcpStream,
    tls: Option<Box<ServerConnection>>,
    /// The write side is to end once rustls has written what it holds.
    shutdown_owed: bool,
    /// Plaintext given to rustls since it last held nothing to write, plus a record's
    /// overhead per write: a bound on the TLS bytes it holds (it does not say how many).
    unsent: usize,
}

/// What a [`Wire::flush`] did.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Flushed {
    /// Nothing is left to write: the socket may take more.
    pub(crate) drained: bool,
    /// Some bytes went to the socket.
    pub(crate) moved: bool,
}

/// A TLS 1.3 record's header, content type and tag, the most one write adds to its plaintext.
const RECORD_OVERHEAD: usize = 5 + 1 + 16;

impl Wire {
    pub(crate) fn new(stream: TcpStream, tls: Option<Box<ServerConnection>>) -> Self {
        Self { stream, tls, shutdown_owed: false, unsent: 0 }
    }

    /// What the TLS state holds, for the memory budget: rustls's struct, its buffers (see
    /// [`ws_transport::TLS_BUFFERS`]) and the TLS bytes it may hold unwritten.
    pub(crate) fn memory(&self) -> usize {
        match self.tls {
            Some(_) => {
                std::mem::size_of::<ServerConnection>() + ws_transport::TLS_BUFFERS + self.unsent
            }
            None => 0,
        }
    }

    /// Whether TLS bytes (or the end of the write side after them) wait for the socket.
    pub(crate) fn owes(&self) -> bool {
        self.shutdown_owed || self.tls.as_ref().is_some_and(|tls| tls.wants_write())
    }

    /// One write of the plaintext `parts`: the bytes taken, or `None` when the socket takes
    /// no more. With TLS, the bytes taken are encrypted at once, and may wait in rustls (up to
    /// its 64 KiB buffer) until the socket takes them: see [`flush`](Self::flush).
    pub(crate) fn write(&mut self, parts: &[IoSlice<'_>]) -> io::Result<Option<usize>> {
        if self.tls.is_none() {
            return write_some(&self.stream, parts);
        }
        self.flush()?;
        let Some(tls) = self.tls.as_deref_mut() else { return Ok(None) };
        let n = tls.writer().write_vectored(parts)?;
        if n > 0 {
            self.unsent = (self.unsent + n + RECORD_OVERHEAD).min(UNSENT_MAX);
        }
        self.flush()?;
        Ok((n > 0 || parts.iter().all(|p| p.is_empty())).then_some(n))
    }

    /// Writes the TLS bytes that wait (and then ends the write side, if that waited for
    /// them).
    pub(crate) fn flush(&mut self) -> io::Result<Flushed> {
        let Some(tls) = self.tls.as_deref_mut() else {
            return Ok(Flushed { drained: true, moved: false });
        };
        let flushed = send(tls, &self.stream)?;
        if flushed.drained {
            self.unsent = 0;
            if std::mem::take(&mut self.shutdown_owed) {
                let _ = self.stream.shutdown(std::net::Shutdown::Write);
            }
        }
        Ok(flushed)
    }

    /// Ends the write side: with TLS, after `close_notify` and whatever rustls still holds
    /// (then on a later [`flush`](Self::flush) if the socket takes no more now).
    pub(crate) fn shutdown_write(&mut self) {
        let Some(tls) = self.tls.as_deref_mut() else {
            let _ = self.stream.shutdown(std::net::Shutdown::Write);
            return;
        };
        tls.send_close_notify();
        self.unsent += RECORD_OVERHEAD + 2;
        self.shutdown_owed = true;
        let _ = self.flush();
    }

    /// One read of plaintext into `buf`: `Some(n)`, 0 at the end of the stream; `None` when
    /// nothing is to be had now. Clears `readable` once the socket is drained: for plain
    /// TCP, after a read shorter than `buf` (unless the peer's end, `peer_ended`, is still to
    /// be read); with TLS, the same of rustls's reads from the socket, once rustls holds no
    /// plaintext.
    pub(crate) fn read(
        &mut self,
        buf: &mut [u8],
        readable: &mut bool,
        peer_ended: bool,
    ) -> io::Result<Option<usize>> {
        let Some(tls) = self.tls.as_deref_mut() else {
            return match (&self.stream).read(buf) {
                Ok(n) => {
                    // More input raises a new edge, unless the peer's end of stream is still
                    // to be read: that edge has been had.
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
            };
        };
        loop {
            match tls.reader().read(buf) {
                // Plaintext, or the peer's close_notify (0).
                Ok(n) => {
                    // Plaintext rustls still holds raises no edge: read on for it.
                    if !*readable && n > 0 {
                        *readable = tls
                            .process_new_packets()
                            .map_or(true, |state| state.plaintext_bytes_to_read() > 0);
                    }
                    return Ok(Some(n));
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                // The stream ended without close_notify: an end all the same (the WebSocket
                // close handshake is what says whether anything was cut off).
                Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok(Some(0)),
                Err(err) => return Err(err),
            }
            if !*readable {
                return Ok(None);
            }
            // rustls reads into its own buffer (at most 4 KiB more per read); a read shorter
            // than it asked for drained the socket, as on plain TCP, and saves the read that
            // would say WouldBlock.
            let mut socket = Socket { stream: &self.stream, short: false };
            match tls.read_tls(&mut socket) {
                Ok(0) => {}
                Ok(_) if socket.short && !peer_ended => *readable = false,
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    *readable = false;
                    return Ok(None);
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
            if let Err(err) = tls.process_new_packets() {
                // The alert that says why, one try.
                let _ = send(tls, &self.stream);
                return Err(io::Error::new(io::ErrorKind::InvalidData, err));
            }
        }
    }
}

/// The socket as rustls reads it, noting a read shorter than asked for.
struct Socket<'a> {
    stream: &'a TcpStream,
    short: bool,
}

impl Read for Socket<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (&*self.stream).read(buf)?;
        self.short = n < buf.len();
        Ok(n)
    }
}

/// The most TLS bytes rustls holds unwritten: its buffer limit (64 KiB), and one write's
/// worth over it.
const UNSENT_MAX: usize = (64 << 10) * 2;

/// Writes what rustls holds until it holds none or the socket takes no more.
fn send(tls: &mut ServerConnection, mut stream: &TcpStream) -> io::Result<Flushed> {
    let mut moved = false;
    while tls.wants_write() {
        match tls.write_tls(&mut stream) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => moved = true,
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
