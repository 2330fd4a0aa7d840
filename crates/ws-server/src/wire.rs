//! A connection's socket on an epoll engine, with TLS or without: [`Wire`] reads and writes
//! plaintext on a non-blocking socket, and says when the socket is drained (edge-triggered
//! epoll raises no new edge until it is).
//!
//! TLS is our [`Tls`] (rustls's unbuffered connection and its buffers), driven here directly:
//! its handshake was done on the async path, and it arrives with whatever it held then. TLS
//! bytes are read into a buffer from the engine's pool, decrypted into the session's read
//! buffer, and the pool's buffer goes back when the connection waits.
//!
//! On an io_uring engine ([`Engine::Uring`](crate::Engine::Uring)) the socket is not read or
//! written here: a connection's [`Uring`] holds the bytes its multishot receive brought and
//! the output waiting for the engine to send, and reads and writes here take from and add to
//! those, with the same meaning as on a non-blocking socket (a write the buffer has no room
//! for would block; a read that finds nothing would block, and the next completion is the
//! edge).

use std::io::{self, IoSlice, Read, Write};
use std::net::TcpStream;

use ws_uring::{OpId, Target};

use crate::tls::{RECORD_MAX, Tls};

/// A socket, and its TLS state when it speaks TLS.
pub(crate) struct Wire {
    stream: TcpStream,
    tls: Option<Box<Tls>>,
    /// On an io_uring engine: the bytes in flight either way.
    uring: Option<Box<Uring>>,
    /// The write side is to end once the bytes owed are written.
    shutdown_owed: bool,
}

/// A connection's side of the io_uring engine: what its receive brought and what waits to be
/// sent. Each buffer holds at most `cap` bytes (input may go past it by what arrives before
/// a cancel takes effect; it all counts in the memory budget).
pub(crate) struct Uring {
    /// Where its operations go.
    pub(crate) target: Target,
    /// Bytes received, not yet read: `inbound[head..]`.
    inbound: Vec<u8>,
    head: usize,
    /// The peer ended the stream (after `inbound`).
    eof: bool,
    /// The receive failed: read says so once `inbound` is read.
    recv_error: Option<io::Error>,
    /// A send failed (or the ring took none): the next write or flush says so.
    send_error: Option<io::Error>,
    /// The multishot receive, while it runs.
    pub(crate) recv: Option<OpId>,
    /// A cancel of `recv` was asked for (input is at `cap`).
    pub(crate) cancelling: bool,
    /// Output taken, not yet handed to the kernel.
    staged: Vec<u8>,
    /// What is left of a send that went only in part: it goes before `staged`.
    unsent: Option<(Vec<u8>, usize)>,
    /// The send in flight and the size of its buffer (the ring holds it meanwhile).
    pub(crate) sending: Option<(OpId, usize)>,
    /// A send completed since the last flush: output moved.
    moved: bool,
    cap: usize,
}

/// What the engine should ask of the ring for a connection after its turn.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ask {
    /// Start the receive again.
    Recv,
    /// Stop the receive: input is at its limit.
    Cancel(OpId),
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
        Self { stream, tls, uring: None, shutdown_owed: false }
    }

    /// A socket on an io_uring engine: its operations go to `target`, and neither of its
    /// buffers takes more than `cap` bytes.
    pub(crate) fn uring(
        stream: TcpStream,
        tls: Option<Box<Tls>>,
        target: Target,
        cap: usize,
    ) -> Self {
        let uring = Box::new(Uring {
            target,
            inbound: Vec::new(),
            head: 0,
            eof: false,
            recv_error: None,
            send_error: None,
            recv: None,
            cancelling: false,
            staged: Vec::new(),
            unsent: None,
            sending: None,
            moved: false,
            cap,
        });
        Self { stream, tls, uring: Some(uring), shutdown_owed: false }
    }

    /// Whether it speaks TLS.
    pub(crate) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// On an io_uring engine, as the connection is removed: output staged and not yet
    /// submitted gets one non-blocking write (a close frame that says why, say), unless a
    /// send is still in flight (it would go after that send's bytes).
    pub(crate) fn last_try(&mut self) {
        let Some(uring) = self.uring.as_deref_mut() else { return };
        if uring.sending.is_none() && uring.unsent.is_none() && !uring.staged.is_empty() {
            let _ = write_some(&self.stream, None, &[IoSlice::new(&uring.staged)]);
        }
    }

    /// Its io_uring side, on an io_uring engine.
    pub(crate) fn uring_mut(&mut self) -> Option<&mut Uring> {
        self.uring.as_deref_mut()
    }

    /// What the TLS state and the io_uring buffers hold, for the memory budget (see
    /// [`Tls::memory`]).
    pub(crate) fn memory(&self) -> usize {
        let tls = self.tls.as_ref().map_or(0, |tls| tls.memory());
        tls + self.uring.as_ref().map_or(0, |u| u.memory())
    }

    /// The smallest read buffer [`read`](Self::read) takes.
    pub(crate) fn min_read(&self) -> usize {
        if self.tls.is_some() { TLS_MIN_READ } else { 0 }
    }

    /// Whether bytes (or the end of the write side after them) wait for the socket: TLS
    /// bytes, or on an io_uring engine any output not yet sent.
    pub(crate) fn owes(&self) -> bool {
        self.shutdown_owed
            || self.tls.as_ref().is_some_and(|tls| tls.owes())
            || self.uring.as_ref().is_some_and(|u| u.owes())
    }

    /// One write of the plaintext `parts`: the bytes taken, or `None` when the socket takes
    /// no more. With TLS, the bytes taken are encrypted at once (at most
    /// [`WRITE_MAX`](crate::tls::WRITE_MAX) of them), and more are taken only once those have
    /// gone to the socket: see [`flush`](Self::flush).
    pub(crate) fn write(&mut self, parts: &[IoSlice<'_>]) -> io::Result<Option<usize>> {
        if self.tls.is_none() {
            return write_some(&self.stream, self.uring.as_deref_mut(), parts);
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
        let mut flushed = Flushed { drained: true, moved: false };
        if let Some(tls) = self.tls.as_deref_mut() {
            flushed = send(tls, &self.stream, self.uring.as_deref_mut())?;
        }
        if let Some(uring) = self.uring.as_deref_mut() {
            if let Some(err) = uring.send_error.take() {
                return Err(err);
            }
            flushed.moved |= std::mem::take(&mut uring.moved);
            flushed.drained &= uring.staged.len() < uring.cap;
        }
        let owed = self.tls.as_ref().is_some_and(|tls| tls.owes())
            || self.uring.as_ref().is_some_and(|u| u.owes());
        if !owed && std::mem::take(&mut self.shutdown_owed) {
            let _ = self.stream.shutdown(std::net::Shutdown::Write);
        }
        Ok(flushed)
    }

    /// Ends the write side: with TLS, after `close_notify` and whatever is still owed (then
    /// on a later [`flush`](Self::flush) if the socket takes no more now).
    pub(crate) fn shutdown_write(&mut self) {
        if let Some(tls) = self.tls.as_deref_mut() {
            let _ = tls.close_notify();
        }
        self.shutdown_owed = true;
        let _ = self.flush();
    }

    /// Before the connection waits: the buffer TLS bytes were read into, for the pool.
    pub(crate) fn take_idle_buffer(&mut self) -> Option<Vec<u8>> {
        self.tls.as_deref_mut()?.take_idle_buffers()
    }

    /// Before the connection waits, on an io_uring engine: its input and output buffers
    /// if they are empty (and cleared), for the engine's spare ones.
    pub(crate) fn take_idle_uring_buffers(&mut self) -> impl Iterator<Item = Vec<u8>> {
        let (inbound, staged) = match self.uring.as_deref_mut() {
            Some(u) => u.take_idle_buffers(),
            None => (None, None),
        };
        inbound.into_iter().chain(staged)
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
            return read_some(&self.stream, self.uring.as_deref_mut(), buf, readable, peer_ended);
        };
        loop {
            let n = match tls.process(buf) {
                Ok(n) => n,
                Err(err) => {
                    // The alert that says why, one try.
                    let _ = send(tls, &self.stream, self.uring.as_deref_mut());
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
            let uring = self.uring.as_deref_mut();
            match read_some(&self.stream, uring, &mut space[..asked], readable, peer_ended)? {
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

/// One read of `buf` from a non-blocking socket, or from what its receive brought on an
/// io_uring engine: see [`Wire::read`].
fn read_some(
    mut stream: &TcpStream,
    uring: Option<&mut Uring>,
    buf: &mut [u8],
    readable: &mut bool,
    peer_ended: bool,
) -> io::Result<Option<usize>> {
    if let Some(uring) = uring {
        return uring.read(buf, readable);
    }
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
fn send(tls: &mut Tls, stream: &TcpStream, mut uring: Option<&mut Uring>) -> io::Result<Flushed> {
    let mut moved = false;
    while tls.owes() {
        match write_some(stream, uring.as_deref_mut(), &[IoSlice::new(tls.output())])? {
            Some(n) => {
                tls.sent(n);
                moved = true;
            }
            None => return Ok(Flushed { drained: false, moved }),
        }
    }
    Ok(Flushed { drained: true, moved })
}

/// One write of `parts`: the bytes taken, or `None` when the socket's buffer (on an io_uring
/// engine, the connection's output buffer) is full.
fn write_some(
    mut stream: &TcpStream,
    uring: Option<&mut Uring>,
    parts: &[IoSlice<'_>],
) -> io::Result<Option<usize>> {
    if let Some(uring) = uring {
        return uring.write(parts);
    }
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

impl Uring {
    fn memory(&self) -> usize {
        let unsent = self.unsent.as_ref().map_or(0, |(buf, _)| buf.capacity());
        let sending = self.sending.map_or(0, |(_, len)| len);
        self.inbound.capacity() + self.staged.capacity() + unsent + sending
    }

    /// Output taken but not yet sent.
    pub(crate) fn owes(&self) -> bool {
        !self.staged.is_empty() || self.unsent.is_some() || self.sending.is_some()
    }

    fn read(&mut self, buf: &mut [u8], readable: &mut bool) -> io::Result<Option<usize>> {
        let held = &self.inbound[self.head..];
        if !held.is_empty() {
            let n = held.len().min(buf.len());
            buf[..n].copy_from_slice(&held[..n]);
            self.head += n;
            if self.head == self.inbound.len() {
                self.inbound.clear();
                self.head = 0;
                // The next completion is the next edge; the end or an error is still to read.
                if !self.eof && self.recv_error.is_none() {
                    *readable = false;
                }
            }
            return Ok(Some(n));
        }
        if let Some(err) = self.recv_error.take() {
            return Err(err);
        }
        *readable = false;
        Ok(self.eof.then_some(0))
    }

    fn write(&mut self, parts: &[IoSlice<'_>]) -> io::Result<Option<usize>> {
        if let Some(err) = self.send_error.take() {
            return Err(err);
        }
        let room = self.cap.saturating_sub(self.staged.len());
        if room == 0 {
            return Ok(None);
        }
        let mut taken = 0;
        for part in parts {
            let n = part.len().min(room - taken);
            self.staged.extend_from_slice(&part[..n]);
            taken += n;
        }
        Ok(Some(taken))
    }

    /// What the receive brought: bytes (into a buffer from `spare` if it holds none), the end
    /// of the stream (no bytes), or the error that ended it. [`ask`](Self::ask) then says
    /// whether it should stop or start again.
    pub(crate) fn received(&mut self, bytes: io::Result<&[u8]>, spare: &mut Vec<Vec<u8>>) {
        match bytes {
            Ok([]) => self.eof = true,
            Ok(bytes) => {
                if self.inbound.capacity() == 0 {
                    if let Some(buf) = spare.pop() {
                        self.inbound = buf;
                    }
                }
                self.inbound.extend_from_slice(bytes);
            }
            // The receive is over; the engine starts it again.
            Err(err) if ws_uring::only_ended(&err) => {}
            Err(err) => self.recv_error = Some(err),
        }
    }

    /// A send completed: what is left of it goes first next time.
    pub(crate) fn sent(&mut self, result: io::Result<usize>, mut buf: Vec<u8>, offset: usize) {
        self.sending = None;
        match result {
            Ok(n) if offset + n < buf.len() => {
                self.moved |= n > 0;
                self.unsent = Some((buf, offset + n));
            }
            Ok(_) => {
                self.moved = true;
                if self.staged.is_empty() && self.staged.capacity() < buf.capacity() {
                    buf.clear();
                    self.staged = buf;
                }
            }
            Err(err) => self.send_error = Some(err),
        }
    }

    /// What the engine should do about the receive: start it again (input has room, the
    /// stream goes on) or stop it (input is at its limit).
    pub(crate) fn ask(&self) -> Option<Ask> {
        let held = self.inbound.len() - self.head;
        match self.recv {
            None if !self.eof && self.recv_error.is_none() && held < self.cap => Some(Ask::Recv),
            Some(id) if held >= self.cap && !self.cancelling => Some(Ask::Cancel(id)),
            _ => None,
        }
    }

    /// The next send to submit: what is left of a short one, else what is staged.
    pub(crate) fn take_send(&mut self) -> Option<(Vec<u8>, usize)> {
        if self.sending.is_some() || self.send_error.is_some() {
            return None;
        }
        if let Some(unsent) = self.unsent.take() {
            return Some(unsent);
        }
        (!self.staged.is_empty()).then(|| (std::mem::take(&mut self.staged), 0))
    }

    /// A send the ring did not take: the bytes go back, first, and the connection fails
    /// (it should have a turn to see so).
    pub(crate) fn refused(&mut self, err: io::Error, buf: Vec<u8>, offset: usize) {
        if offset < buf.len() {
            self.unsent = Some((buf, offset));
        }
        self.send_error = Some(err);
    }

    /// The ring did not take the receive: the connection fails, once its input is read (it
    /// should have a turn to see so).
    pub(crate) fn fail(&mut self, err: io::Error) {
        self.recv_error = Some(err);
    }

    fn take_idle_buffers(&mut self) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
        let drained = self.head == self.inbound.len() && self.inbound.capacity() > 0;
        let inbound = drained.then(|| {
            self.head = 0;
            let mut buf = std::mem::take(&mut self.inbound);
            buf.clear();
            buf
        });
        let staged = (self.staged.is_empty() && self.staged.capacity() > 0)
            .then(|| std::mem::take(&mut self.staged));
        (inbound, staged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A wire on a loopback socket whose io_uring side is driven by hand, as the engine's
    /// completions would drive it.
    fn wire(cap: usize) -> Wire {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        Wire::uring(stream, None, Target::Fd(-1), cap)
    }

    fn uring(wire: &mut Wire) -> &mut Uring {
        wire.uring_mut().unwrap()
    }

    #[test]
    fn input_is_read_in_order_across_waits() {
        let mut wire = wire(64);
        let mut pool = Vec::new();
        uring(&mut wire).received(Ok(b"hello world"), &mut pool);
        let (mut readable, mut buf) = (true, [0u8; 5]);
        assert_eq!(wire.read(&mut buf, &mut readable, false, &mut pool).unwrap(), Some(5));
        assert_eq!(&buf, b"hello");
        assert!(readable, "input is left");
        // The connection waits with input left: it keeps it, and its place in it.
        assert_eq!(wire.take_idle_uring_buffers().count(), 0);
        let mut rest = [0u8; 16];
        assert_eq!(wire.read(&mut rest, &mut readable, false, &mut pool).unwrap(), Some(6));
        assert_eq!(&rest[..6], b" world");
        assert!(!readable, "drained: the next completion is the next edge");
        assert_eq!(wire.read(&mut rest, &mut readable, false, &mut pool).unwrap(), None);
        // Drained, its buffer goes to the pool.
        assert_eq!(wire.take_idle_uring_buffers().count(), 1);
        // The end of the stream comes after the input before it.
        uring(&mut wire).received(Ok(b"ab"), &mut pool);
        uring(&mut wire).received(Ok(b""), &mut pool);
        readable = true;
        assert_eq!(wire.read(&mut rest, &mut readable, false, &mut pool).unwrap(), Some(2));
        assert!(readable, "the end is still to be read");
        assert_eq!(wire.read(&mut rest, &mut readable, false, &mut pool).unwrap(), Some(0));
    }

    #[test]
    fn the_receive_stops_at_the_input_limit_and_starts_again_below_it() {
        let mut wire = wire(8);
        let mut pool = Vec::new();
        let id = OpId::for_tests(7);
        assert_eq!(uring(&mut wire).ask(), Some(Ask::Recv));
        uring(&mut wire).recv = Some(id);
        assert_eq!(uring(&mut wire).ask(), None);
        uring(&mut wire).received(Ok(b"12345678"), &mut pool);
        assert_eq!(uring(&mut wire).ask(), Some(Ask::Cancel(id)));
        uring(&mut wire).cancelling = true;
        assert_eq!(uring(&mut wire).ask(), None, "asked once");
        // Cancelled: it is not started again while input is at the limit.
        let u = uring(&mut wire);
        (u.recv, u.cancelling) = (None, false);
        u.received(Err(io::Error::from_raw_os_error(125)), &mut pool);
        assert!(u.recv_error.is_none(), "a cancel is no error");
        assert_eq!(uring(&mut wire).ask(), None);
        let (mut readable, mut buf) = (true, [0u8; 4]);
        wire.read(&mut buf, &mut readable, false, &mut pool).unwrap();
        assert_eq!(uring(&mut wire).ask(), Some(Ask::Recv));
        // A real error ends it for good, after the input before it.
        uring(&mut wire).received(Err(io::ErrorKind::ConnectionReset.into()), &mut pool);
        assert_eq!(uring(&mut wire).ask(), None);
        assert_eq!(wire.read(&mut buf, &mut readable, false, &mut pool).unwrap(), Some(4));
        assert!(wire.read(&mut buf, &mut readable, false, &mut pool).is_err());
    }

    #[test]
    fn output_is_taken_up_to_the_limit_and_a_short_send_goes_first() {
        let mut wire = wire(8);
        let parts = [IoSlice::new(b"hello"), IoSlice::new(b" world")];
        assert_eq!(wire.write(&parts).unwrap(), Some(8));
        assert_eq!(wire.write(&parts).unwrap(), None, "full");
        assert!(!wire.flush().unwrap().drained);
        assert!(wire.owes());
        let (buf, offset) = uring(&mut wire).take_send().unwrap();
        assert_eq!((&buf[..], offset), (&b"hello wo"[..], 0));
        uring(&mut wire).sending = Some((OpId::for_tests(1), 8));
        assert!(uring(&mut wire).take_send().is_none(), "one send at a time");
        assert_eq!(wire.write(&[IoSlice::new(b"rld")]).unwrap(), Some(3));
        // Five of eight went: the other three go before what was staged since.
        uring(&mut wire).sent(Ok(5), buf, 0);
        let flushed = wire.flush().unwrap();
        assert!(flushed.moved && flushed.drained);
        let (buf, offset) = uring(&mut wire).take_send().unwrap();
        assert_eq!(&buf[offset..], b" wo");
        uring(&mut wire).sent(Ok(3), buf, offset);
        let (buf, offset) = uring(&mut wire).take_send().unwrap();
        assert_eq!(&buf[offset..], b"rld");
        uring(&mut wire).sent(Ok(3), buf, offset);
        assert!(!wire.owes());
        // A failed send fails the next write.
        wire.write(&[IoSlice::new(b"x")]).unwrap();
        let (buf, offset) = uring(&mut wire).take_send().unwrap();
        uring(&mut wire).sent(Err(io::ErrorKind::BrokenPipe.into()), buf, offset);
        assert!(wire.write(&[IoSlice::new(b"y")]).is_err());
    }
}
