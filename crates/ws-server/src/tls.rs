//! TLS for the server on rustls's unbuffered connection ([`UnbufferedServerConnection`]), with
//! buffers of our own: [`Tls`] is the sans-IO state and its buffers, [`TlsStream`] drives it
//! over an async stream (the TLS and opening handshakes, and the portable engine), and the
//! epoll engine drives it directly (`wire.rs`).
//!
//! rustls's buffered connection keeps a 4 KiB read buffer for good once it has read, and its
//! own queues besides; the unbuffered one keeps only its state (2.2 KiB of heap, measured
//! after a TLS 1.3 handshake with AES-256-GCM) and works on the caller's buffers. Those are
//! freed (or go back to the engine's pool) when they hold nothing, so an idle TLS connection
//! costs its rustls state and no buffer.
//!
//! The bounds: TLS bytes held before rustls consumes them, [`INPUT_MAX`]; TLS bytes waiting
//! for the socket, one write's worth ([`WRITE_MAX`] of plaintext and its records' overhead,
//! taken only once the last write has gone out) plus what rustls emits by itself (handshake
//! flights, alerts, key updates); plaintext decrypted that did not fit where it was asked
//! for, at most the TLS bytes it came from.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use futures_lite::{AsyncRead, AsyncWrite};
use ws_transport::rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use ws_transport::rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, ReadTraffic, UnbufferedStatus, WriteTraffic,
};
use ws_transport::rustls::{self, ServerConfig};

/// The most TLS bytes held before rustls consumes them: rustls joins a handshake message of
/// up to 64 KiB across records, and the next record may have begun behind it.
pub(crate) const INPUT_MAX: usize = (64 << 10) + RECORD_MAX;

/// The largest TLS record (TLS 1.2 lets a record's ciphertext grow 2 KiB over its 16 KiB
/// of plaintext).
pub(crate) const RECORD_MAX: usize = 5 + (16 << 10) + 2048;

/// The most plaintext one write encrypts.
pub(crate) const WRITE_MAX: usize = 64 << 10;

/// What a TLS record adds to its plaintext, at most (TLS 1.3: header, content type, tag;
/// TLS 1.2 with AES-GCM: header, nonce, tag).
const RECORD_OVERHEAD: usize = 5 + 8 + 16;

/// The heap rustls's unbuffered state holds after the handshake: 2,193 bytes measured (TLS 1.3,
/// AES-256-GCM, ALPN), rounded up.
const RUSTLS_HEAP: usize = 2560;

/// The largest output buffer kept while a connection waits.
const OUTPUT_KEPT: usize = 256;

/// The size of the reads [`TlsStream`] makes into its own buffer, at least.
const READ_MIN: usize = 4 << 10;

/// The smallest buffer of the caller's that [`TlsStream`] reads TLS bytes into directly.
const DIRECT_READ_MIN: usize = 512;

/// A server's TLS connection: rustls's state, the TLS bytes received that it has yet to
/// consume, the plaintext it decrypted that waits to be read, and the TLS bytes that wait for
/// the socket.
pub(crate) struct Tls {
    conn: UnbufferedServerConnection,
    /// Initialised to its length; `input[..received]` is what rustls has yet to consume.
    input: Vec<u8>,
    received: usize,
    /// `plain[plain_at..]` waits to be read.
    plain: Vec<u8>,
    plain_at: usize,
    /// `output[sent..]` waits for the socket.
    output: Vec<u8>,
    sent: usize,
    /// The peer sent `close_notify`: reads end.
    peer_closed: bool,
    /// An error found after plaintext that came before it: reported once that is read.
    failed: Option<io::Error>,
    close_queued: bool,
}

impl Tls {
    pub(crate) fn new(config: Arc<ServerConfig>) -> Result<Self, rustls::Error> {
        Ok(Self {
            conn: UnbufferedServerConnection::new(config)?,
            input: Vec::new(),
            received: 0,
            plain: Vec::new(),
            plain_at: 0,
            output: Vec::new(),
            sent: 0,
            peer_closed: false,
            failed: None,
            close_queued: false,
        })
    }

    /// What it holds, for the memory budget.
    pub(crate) fn memory(&self) -> usize {
        std::mem::size_of::<Self>()
            + RUSTLS_HEAP
            + self.input.capacity()
            + self.plain.capacity()
            + self.output.capacity()
    }

    pub(crate) fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// The peer's `close_notify` has been read.
    pub(crate) fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Decrypted plaintext waits to be read.
    pub(crate) fn has_plaintext(&self) -> bool {
        self.plain_at < self.plain.len()
    }

    /// TLS bytes received and not yet consumed by rustls.
    pub(crate) fn received(&self) -> usize {
        self.received
    }

    /// Room for at least `want` more TLS bytes: read into it, then say how much with
    /// [`filled`](Self::filled). (What rustls leaves unconsumed is what [`INPUT_MAX`] bounds.)
    pub(crate) fn input_space(&mut self, want: usize) -> &mut [u8] {
        if self.input.len() - self.received < want {
            // Exactly: the budget counts capacity, and doubling would hold up to twice it.
            self.input.reserve_exact(self.received + want - self.input.len());
            self.input.resize(self.received + want, 0);
        }
        &mut self.input[self.received..]
    }

    /// `n` TLS bytes were read into [`input_space`](Self::input_space).
    pub(crate) fn filled(&mut self, n: usize) {
        self.received += n;
    }

    /// Room to read into without growing the input buffer.
    pub(crate) fn input_room(&self) -> usize {
        self.input.len() - self.received
    }

    /// Takes `buf` (from a pool; grown to `size` if smaller) to read into, when it is larger
    /// than the buffer held; otherwise hands it back.
    pub(crate) fn lend_input(&mut self, mut buf: Vec<u8>, size: usize) -> Option<Vec<u8>> {
        if buf.capacity().max(size) <= self.input.len() {
            return Some(buf).filter(|buf| buf.capacity() > 0);
        }
        buf.resize(buf.capacity().max(size), 0);
        buf[..self.received].copy_from_slice(&self.input[..self.received]);
        self.input = buf;
        None
    }

    /// Before the connection waits: the input buffer, for a pool, unless it holds part of a
    /// record (then those bytes move to a buffer of their size when the one they are in is
    /// larger than a record); buffers that hold nothing are freed.
    pub(crate) fn take_idle_buffers(&mut self) -> Option<Vec<u8>> {
        if !self.has_plaintext() {
            self.plain = Vec::new();
            self.plain_at = 0;
        }
        if self.sent == self.output.len() {
            // A small one is kept: small messages then cost no allocation for their records.
            if self.output.capacity() > OUTPUT_KEPT {
                self.output = Vec::new();
            }
            self.output.clear();
            self.sent = 0;
        }
        if self.received == 0 {
            return Some(std::mem::take(&mut self.input)).filter(|buf| buf.capacity() > 0);
        }
        if self.input.len() > RECORD_MAX {
            let held = self.input[..self.received].to_vec();
            return Some(std::mem::replace(&mut self.input, held));
        }
        None
    }

    /// Runs rustls over the TLS bytes received: their plaintext goes to `dst` (what does not
    /// fit waits for the next call), and what rustls sends in return (handshake flights,
    /// alerts) to [`output`](Self::output). Returns the plaintext bytes written to `dst`;
    /// stops when rustls needs more input. A fatal error leaves its alert in the output.
    pub(crate) fn process(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        let mut n = self.take_plaintext(dst);
        if !self.has_plaintext() {
            if let Some(err) = self.failed.take() {
                return if n > 0 {
                    self.failed = Some(err);
                    Ok(n)
                } else {
                    Err(err)
                };
            }
        }
        let Self { conn, input, received, plain, plain_at, output, peer_closed, failed, .. } = self;
        let mut start = 0;
        let result = loop {
            let UnbufferedStatus { mut discard, state } =
                conn.process_tls_records(&mut input[start..*received]);
            let done = match state {
                Err(err) => Some(Err(err)),
                Ok(ConnectionState::ReadTraffic(mut records)) => {
                    match take_records(&mut records, dst, &mut n, plain, plain_at) {
                        Ok(taken) => {
                            discard += taken;
                            None
                        }
                        Err(err) => Some(Err(err)),
                    }
                }
                Ok(ConnectionState::EncodeTlsData(mut data)) => {
                    match encode(output, 0, |buf| data.encode(buf)) {
                        Ok(_) => None,
                        Err(err) => Some(Err(rustls::Error::General(err.to_string()))),
                    }
                }
                Ok(ConnectionState::TransmitTlsData(data)) => {
                    // The bytes are in `output`: they go out with the next flush.
                    data.done();
                    None
                }
                Ok(ConnectionState::PeerClosed | ConnectionState::Closed) => {
                    *peer_closed = true;
                    Some(Ok(()))
                }
                // Never offered: the config does not enable early data.
                Ok(ConnectionState::ReadEarlyData(_)) => {
                    Some(Err(rustls::Error::General("early data".into())))
                }
                // BlockedHandshake, WriteTraffic: rustls needs more input.
                Ok(_) => Some(Ok(())),
            };
            start += discard;
            if let Some(result) = done {
                break result;
            }
        };
        input.copy_within(start..*received, 0);
        *received -= start;
        match result {
            Err(err) => {
                // The alert that says why, into the output. (rustls is always given the bytes
                // it left unconsumed: it may be joining a handshake message across them.)
                let UnbufferedStatus { discard, state } =
                    conn.process_tls_records(&mut input[..*received]);
                if let Ok(ConnectionState::EncodeTlsData(mut data)) = state {
                    let _ = encode(output, 0, |buf| data.encode(buf));
                }
                input.copy_within(discard..*received, 0);
                *received -= discard;
                let err = io::Error::new(io::ErrorKind::InvalidData, err);
                // Plaintext that came before the error is read first.
                if n > 0 || *plain_at < plain.len() {
                    *failed = Some(err);
                    return Ok(n);
                }
                Err(err)
            }
            Ok(()) if *received >= INPUT_MAX => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "more TLS bytes held than a handshake message and a record",
            )),
            Ok(()) => Ok(n),
        }
    }

    /// Copies plaintext decrypted earlier into `dst`.
    fn take_plaintext(&mut self, dst: &mut [u8]) -> usize {
        let waiting = &self.plain[self.plain_at..];
        let n = waiting.len().min(dst.len());
        dst[..n].copy_from_slice(&waiting[..n]);
        self.plain_at += n;
        n
    }

    /// Encrypts plaintext from `parts` (at most [`WRITE_MAX`]) into the output: the bytes
    /// taken, or `None` while the handshake runs.
    pub(crate) fn encrypt(&mut self, parts: &[IoSlice<'_>]) -> io::Result<Option<usize>> {
        let total: usize = parts.iter().map(|part| part.len()).sum();
        let take = total.min(WRITE_MAX);
        if take == 0 {
            return Ok(Some(0));
        }
        let first = parts.iter().find(|part| !part.is_empty()).map_or(&[][..], |part| part);
        // A small message (a header and its payload) is gathered into one record on the stack;
        // a larger one is encrypted slice by slice (its header in a record of its own) rather
        // than copied whole first.
        let mut small = [0u8; GATHER_ON_STACK];
        let gathered = first.len() < take && take <= GATHER_ON_STACK;
        if gathered {
            gather(parts, &mut small[..take]);
        }
        let wrote = self.with_traffic(|traffic, output| {
            let mut seal = |data: &[u8]| {
                let records = data.len().div_ceil(16 << 10);
                encode(output, data.len() + records * RECORD_OVERHEAD, |buf| {
                    traffic.encrypt(data, buf)
                })
                .map(|_| ())
                .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err.to_string()))
            };
            if first.len() >= take {
                return seal(&first[..take]);
            }
            if gathered {
                return seal(&small[..take]);
            }
            let mut left = take;
            for part in parts {
                let n = part.len().min(left);
                if n > 0 {
                    seal(&part[..n])?;
                }
                left -= n;
            }
            Ok(())
        })?;
        Ok(wrote.map(|()| take))
    }

    /// Queues `close_notify` (once; nothing while the handshake runs).
    pub(crate) fn close_notify(&mut self) -> io::Result<()> {
        if std::mem::replace(&mut self.close_queued, true) {
            return Ok(());
        }
        self.with_traffic(|traffic, output| {
            encode(output, RECORD_OVERHEAD + 2, |buf| traffic.queue_close_notify(buf))
                .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err.to_string()))
        })?;
        Ok(())
    }

    /// Runs `write` once rustls may encrypt, handling first what it asks for (output to
    /// encode; input already received is processed, its plaintext kept for reading).
    /// `None` while the handshake runs.
    fn with_traffic<R>(
        &mut self,
        write: impl FnOnce(&mut WriteTraffic<'_, ServerConnectionData>, &mut Vec<u8>) -> io::Result<R>,
    ) -> io::Result<Option<R>> {
        let mut write = Some(write);
        loop {
            let Self { conn, input, received, plain, plain_at, output, peer_closed, .. } = self;
            let UnbufferedStatus { mut discard, state } =
                conn.process_tls_records(&mut input[..*received]);
            let result = match state {
                Err(err) => Some(Err(io::Error::new(io::ErrorKind::InvalidData, err))),
                Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                    let write = write.take().expect("runs once");
                    Some(write(&mut traffic, output).map(Some))
                }
                Ok(ConnectionState::ReadTraffic(mut records)) => {
                    // All of it waits for a read.
                    match take_records(&mut records, &mut [], &mut 0, plain, plain_at) {
                        Ok(taken) => {
                            discard += taken;
                            None
                        }
                        Err(err) => Some(Err(io::Error::new(io::ErrorKind::InvalidData, err))),
                    }
                }
                Ok(ConnectionState::EncodeTlsData(mut data)) => {
                    match encode(output, 0, |buf| data.encode(buf)) {
                        Ok(_) => None,
                        Err(err) => {
                            Some(Err(io::Error::new(io::ErrorKind::InvalidData, err.to_string())))
                        }
                    }
                }
                Ok(ConnectionState::TransmitTlsData(data)) => {
                    data.done();
                    None
                }
                Ok(ConnectionState::PeerClosed) => {
                    *peer_closed = true;
                    None
                }
                Ok(ConnectionState::Closed) => Some(Err(io::ErrorKind::BrokenPipe.into())),
                Ok(ConnectionState::BlockedHandshake) => Some(Ok(None)),
                Ok(_) => {
                    Some(Err(io::Error::new(io::ErrorKind::InvalidData, "unexpected TLS state")))
                }
            };
            input.copy_within(discard..*received, 0);
            *received -= discard;
            if let Some(result) = result {
                return result;
            }
        }
    }

    /// The TLS bytes that wait for the socket.
    pub(crate) fn output(&self) -> &[u8] {
        &self.output[self.sent..]
    }

    /// `n` bytes of the [`output`](Self::output) went to the socket.
    pub(crate) fn sent(&mut self, n: usize) {
        self.sent += n;
        if self.sent == self.output.len() {
            self.output.clear();
            self.sent = 0;
        }
    }

    /// TLS bytes wait for the socket.
    pub(crate) fn owes(&self) -> bool {
        self.sent < self.output.len()
    }
}

/// Takes the application data records rustls decrypted: into `dst` from `*n` on, what does not
/// fit after what already waits in `plain` (from `plain_at`). Returns the bytes to discard.
fn take_records(
    records: &mut ReadTraffic<'_, '_, ServerConnectionData>,
    dst: &mut [u8],
    n: &mut usize,
    plain: &mut Vec<u8>,
    plain_at: &mut usize,
) -> Result<usize, rustls::Error> {
    let mut discard = 0;
    while let Some(record) = records.next_record() {
        let record = record?;
        discard += record.discard;
        let take = record.payload.len().min(dst.len() - *n);
        dst[*n..*n + take].copy_from_slice(&record.payload[..take]);
        *n += take;
        if take < record.payload.len() {
            if *plain_at == plain.len() {
                plain.clear();
                *plain_at = 0;
            }
            plain.extend_from_slice(&record.payload[take..]);
        }
    }
    Ok(discard)
}

/// The most plaintext [`Tls::encrypt`] gathers from several slices on the stack.
const GATHER_ON_STACK: usize = 1024;

/// Fills `into` from the start of `parts`, in order.
fn gather(parts: &[IoSlice<'_>], into: &mut [u8]) {
    let mut at = 0;
    for part in parts {
        let n = part.len().min(into.len() - at);
        into[at..at + n].copy_from_slice(&part[..n]);
        at += n;
    }
}

/// The errors of rustls's encoders that say the buffer was too small, and by how much.
trait TooSmall: std::fmt::Display {
    fn required(&self) -> Option<usize>;
}

impl TooSmall for EncodeError {
    fn required(&self) -> Option<usize> {
        match self {
            EncodeError::InsufficientSize(size) => Some(size.required_size),
            _ => None,
        }
    }
}

impl TooSmall for EncryptError {
    fn required(&self) -> Option<usize> {
        match self {
            EncryptError::InsufficientSize(size) => Some(size.required_size),
            _ => None,
        }
    }
}

/// Appends what `f` writes to `output`, giving it `guess` bytes of room, or as many as it
/// says it needs.
fn encode<E: TooSmall>(
    output: &mut Vec<u8>,
    guess: usize,
    mut f: impl FnMut(&mut [u8]) -> Result<usize, E>,
) -> Result<usize, E> {
    let at = output.len();
    output.reserve_exact(guess);
    output.resize(at + guess, 0);
    let mut result = f(&mut output[at..]);
    if let Some(required) = result.as_ref().err().and_then(TooSmall::required) {
        output.reserve_exact(required.saturating_sub(guess));
        output.resize(at + required, 0);
        result = f(&mut output[at..]);
    }
    output.truncate(at + *result.as_ref().unwrap_or(&0));
    result
}

/// A server's TLS over an async stream: the TLS handshake runs as it is first read (or by
/// [`handshake`](Self::handshake)). Reading ends at the peer's `close_notify` or at the end
/// of `S`; closing sends `close_notify`, then closes `S`.
pub(crate) struct TlsStream<S> {
    io: S,
    tls: Tls,
}

impl<S> TlsStream<S> {
    pub(crate) fn new(io: S, tls: Tls) -> Self {
        Self { io, tls }
    }

    pub(crate) fn into_parts(self) -> (S, Tls) {
        (self.io, self.tls)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream<S> {
    /// Runs the TLS handshake to its end, with its last flight written.
    pub(crate) async fn handshake(&mut self) -> io::Result<()> {
        futures_lite::future::poll_fn(|cx| {
            ready!(self.poll_handshake(cx))?;
            self.poll_send(cx)
        })
        .await
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.tls.is_handshaking() {
            if let Poll::Ready(Err(err)) = self.poll_send(cx) {
                return Poll::Ready(Err(err));
            }
            if ready!(self.poll_receive(cx, 0))? == 0 {
                return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
            }
            // Plaintext that came with the handshake waits in `tls`; an alert goes out before
            // the error is returned.
            if let Err(err) = self.tls.process(&mut []) {
                let _ = self.poll_send(cx);
                return Poll::Ready(Err(err));
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Writes the output until none is left.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.tls.owes() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, self.tls.output()))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.tls.sent(n);
        }
        Poll::Ready(Ok(()))
    }

    /// Reads TLS bytes once (at least `want`): `Ok(0)` at the end of the stream.
    fn poll_receive(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<io::Result<usize>> {
        // At most a record's worth: what is held stays within INPUT_MAX and a record.
        let space = self.tls.input_space(want.clamp(READ_MIN, RECORD_MAX));
        let n = ready!(Pin::new(&mut self.io).poll_read(cx, space))?;
        self.tls.filled(n);
        Poll::Ready(Ok(n))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        loop {
            let processed = this.tls.process(buf);
            // What rustls owes goes out first: the peer may wait for it (the end of the
            // handshake above all). A stream that takes no more now is left with it.
            let sent = this.poll_send(cx);
            let n = processed?;
            // Buffers that hold nothing are freed (part of a record stays where it is).
            if this.tls.received() == 0 {
                let _ = this.tls.take_idle_buffers();
            }
            if n > 0 {
                // Plaintext first; a failed send is reported by the next call that sends.
                return Poll::Ready(Ok(n));
            }
            if let Poll::Ready(Err(err)) = sent {
                return Poll::Ready(Err(err));
            }
            if this.tls.peer_closed() {
                return Poll::Ready(Ok(0));
            }
            let got = if this.tls.received() == 0 && buf.len() >= DIRECT_READ_MIN {
                // Nothing held: read into `buf`, so that no buffer of ours is held while the
                // stream has nothing to read, and copy what came. (The WebSocket's reads
                // start at 2 KiB and grow while they fill.)
                let n = ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
                this.tls.input_space(n)[..n].copy_from_slice(&buf[..n]);
                this.tls.filled(n);
                n
            } else {
                ready!(this.poll_receive(cx, buf.len()))?
            };
            if got == 0 {
                // The stream ended without close_notify: an end all the same (the
                // WebSocket close handshake says whether anything was cut off).
                return Poll::Ready(Ok(0));
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // One write's TLS bytes at a time wait for the stream.
        ready!(this.poll_send(cx))?;
        ready!(this.poll_handshake(cx))?;
        let n = this.tls.encrypt(bufs)?.unwrap_or(0);
        if let Poll::Ready(Err(err)) = this.poll_send(cx) {
            return Poll::Ready(Err(err));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_handshake(cx))?;
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.tls.close_notify()?;
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_close(cx)
    }
}

/// A server's connection, with TLS or without. The TLS state is boxed, so a plain stream
/// costs no more than `S`.
pub(crate) enum Stream<S> {
    Plain(S),
    Tls(Box<TlsStream<S>>),
}

impl<S> Stream<S> {
    pub(crate) fn into_parts(self) -> (S, Option<Box<Tls>>) {
        match self {
            Self::Plain(io) => (io, None),
            Self::Tls(tls) => {
                let (io, tls) = tls.into_parts();
                (io, Some(Box::new(tls)))
            }
        }
    }

    pub(crate) fn get_ref(&self) -> &S {
        match self {
            Self::Plain(io) => io,
            Self::Tls(tls) => &tls.io,
        }
    }

    /// What the TLS state holds, for the memory budget (see [`Tls::memory`]).
    pub(crate) fn tls_memory(&self) -> usize {
        match self {
            Self::Plain(_) => 0,
            Self::Tls(tls) => tls.tls.memory(),
        }
    }

    pub(crate) fn from_parts(io: S, tls: Option<Box<Tls>>) -> Self {
        match tls {
            None => Self::Plain(io),
            Some(tls) => Self::Tls(Box::new(TlsStream::new(io, *tls))),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Stream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_read(cx, buf),
            Self::Tls(tls) => Pin::new(&mut **tls).poll_read(cx, buf),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Stream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_write(cx, buf),
            Self::Tls(tls) => Pin::new(&mut **tls).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            Self::Tls(tls) => Pin::new(&mut **tls).poll_write_vectored(cx, bufs),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_flush(cx),
            Self::Tls(tls) => Pin::new(&mut **tls).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_close(cx),
            Self::Tls(tls) => Pin::new(&mut **tls).poll_close(cx),
        }
    }
}

/// The TLS state for the fuzz targets (`fuzz/fuzz_targets/tls_server.rs`), behind the
/// `fuzzing` feature: not an API.
#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    use super::*;

    /// [`Tls`], as the engine drives it.
    pub struct TlsServer(Tls);

    impl TlsServer {
        /// A new connection.
        pub fn new(config: Arc<ServerConfig>) -> Result<Self, rustls::Error> {
            Tls::new(config).map(Self)
        }

        /// TLS bytes from the peer, as a read of them would append them.
        pub fn receive(&mut self, bytes: &[u8]) {
            self.0.input_space(bytes.len())[..bytes.len()].copy_from_slice(bytes);
            self.0.filled(bytes.len());
        }

        /// See `Tls::process`.
        pub fn process(&mut self, dst: &mut [u8]) -> io::Result<usize> {
            self.0.process(dst)
        }

        /// See `Tls::encrypt`.
        pub fn encrypt(&mut self, parts: &[IoSlice<'_>]) -> io::Result<Option<usize>> {
            self.0.encrypt(parts)
        }

        /// See `Tls::close_notify`.
        pub fn close_notify(&mut self) -> io::Result<()> {
            self.0.close_notify()
        }

        /// Takes all the output, as a socket would.
        pub fn take_output(&mut self) -> Vec<u8> {
            let out = self.0.output().to_vec();
            self.0.sent(out.len());
            out
        }

        /// Waits, as the engine's connection does: the buffers that go to a pool.
        pub fn idle(&mut self) -> Option<Vec<u8>> {
            self.0.take_idle_buffers()
        }

        /// Lends a buffer, as the engine's pool does.
        pub fn lend(&mut self, buf: Vec<u8>, size: usize) -> Option<Vec<u8>> {
            self.0.lend_input(buf, size)
        }

        /// See `Tls::memory`.
        pub fn memory(&self) -> usize {
            self.0.memory()
        }

        /// TLS bytes held that rustls has yet to consume.
        pub fn received(&self) -> usize {
            self.0.received()
        }

        /// Whether the TLS handshake is still running.
        pub fn is_handshaking(&self) -> bool {
            self.0.is_handshaking()
        }

        /// Whether decrypted plaintext waits to be read.
        pub fn has_plaintext(&self) -> bool {
            self.0.has_plaintext()
        }

        /// Whether the peer's `close_notify` has been read.
        pub fn peer_closed(&self) -> bool {
            self.0.peer_closed()
        }
    }

    /// See `INPUT_MAX`.
    pub const INPUT_MAX: usize = super::INPUT_MAX;
    /// See `WRITE_MAX`.
    pub const WRITE_MAX: usize = super::WRITE_MAX;
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use ws_tests::tls::TestPki;
    use ws_transport::rustls::ClientConnection;
    use ws_transport::rustls::pki_types::ServerName;

    use super::*;

    /// A client (rustls's buffered connection) and our server, joined in memory.
    struct Pair {
        client: ClientConnection,
        server: Tls,
        _pki: TestPki,
    }

    impl Pair {
        fn new() -> Self {
            let pki = TestPki::new().unwrap();
            let issued = pki.localhost().unwrap();
            let server = Tls::new(TestPki::server_config(&issued).unwrap()).unwrap();
            let name = ServerName::try_from("localhost").unwrap();
            let client = ClientConnection::new(pki.client_config().unwrap(), name).unwrap();
            let mut pair = Self { client, server, _pki: pki };
            for _ in 0..10 {
                pair.client_sends(usize::MAX, &mut []).unwrap();
                pair.server_sends();
            }
            assert!(!pair.server.is_handshaking() && !pair.client.is_handshaking());
            pair
        }

        /// The client's TLS bytes to the server, `chunk` bytes per read; the plaintext the
        /// server decrypts into `dst`-sized reads.
        fn client_sends(&mut self, chunk: usize, dst: &mut [u8]) -> io::Result<Vec<u8>> {
            let mut wire = Vec::new();
            while self.client.wants_write() {
                self.client.write_tls(&mut wire).unwrap();
            }
            let mut plain = Vec::new();
            for piece in wire.chunks(chunk.max(1)) {
                let space = self.server.input_space(piece.len());
                space[..piece.len()].copy_from_slice(piece);
                self.server.filled(piece.len());
                loop {
                    let n = self.server.process(dst)?;
                    plain.extend_from_slice(&dst[..n]);
                    if n == 0 {
                        break;
                    }
                }
            }
            Ok(plain)
        }

        /// The server's output to the client; the plaintext it reads.
        fn server_sends(&mut self) -> Vec<u8> {
            let out = self.server.output().to_vec();
            self.server.sent(out.len());
            let mut at = &out[..];
            let mut plain = Vec::new();
            while !at.is_empty() {
                self.client.read_tls(&mut at).unwrap();
                self.client.process_new_packets().unwrap();
                let _ = self.client.reader().read_to_end(&mut plain);
            }
            plain
        }
    }

    #[test]
    fn records_cut_anywhere_and_reads_of_any_size_lose_nothing() {
        let mut pair = Pair::new();
        let message: Vec<u8> = (0..40_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for (chunk, dst) in [(1, 1), (7, 3), (100, 16 << 10), (usize::MAX, 5)] {
            pair.client.writer().write_all(&message).unwrap();
            let mut dst = vec![0; dst];
            let got = pair.client_sends(chunk, &mut dst).unwrap();
            assert_eq!(got.len(), message.len(), "chunks of {chunk}");
            assert!(got == message, "chunks of {chunk}: bytes differ");
            assert!(!pair.server.has_plaintext());
            assert_eq!(pair.server.received(), 0);
        }
    }

    #[test]
    fn gathered_parts_go_in_one_record_and_reach_the_client() {
        let mut pair = Pair::new();
        let parts = [IoSlice::new(b"\x81\x05"), IoSlice::new(b"hello")];
        assert_eq!(pair.server.encrypt(&parts).unwrap(), Some(7));
        // TLS 1.3: a 5-byte header, then the plaintext, its content type and a 16-byte tag.
        assert_eq!(pair.server.output().len(), 5 + 7 + 1 + 16);
        assert_eq!(pair.server_sends(), b"\x81\x05hello");
        // Past the stack's size, each slice goes in records of its own, in order.
        let body: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let parts = [IoSlice::new(b"head"), IoSlice::new(&body)];
        assert_eq!(pair.server.encrypt(&parts).unwrap(), Some(20_004));
        let got = pair.server_sends();
        assert!(got.starts_with(b"head") && got[4..] == body[..], "{} bytes", got.len());
        // One write takes at most WRITE_MAX.
        let big = vec![9u8; WRITE_MAX + 100];
        assert_eq!(pair.server.encrypt(&[IoSlice::new(&big)]).unwrap(), Some(WRITE_MAX));
        assert_eq!(pair.server_sends().len(), WRITE_MAX);
    }

    #[test]
    fn an_idle_connection_holds_no_buffer() {
        let mut pair = Pair::new();
        pair.client.writer().write_all(&[1; 20_000]).unwrap();
        let mut dst = vec![0; 64 << 10];
        assert_eq!(pair.client_sends(usize::MAX, &mut dst).unwrap().len(), 20_000);
        pair.server.encrypt(&[IoSlice::new(&[2; 20_000])]).unwrap();
        assert_eq!(pair.server_sends().len(), 20_000);
        let busy = pair.server.memory();
        assert!(pair.server.take_idle_buffers().is_some(), "the input buffer goes to a pool");
        let idle = pair.server.memory();
        assert_eq!(idle, std::mem::size_of::<Tls>() + RUSTLS_HEAP, "busy: {busy}");
        // Part of a record is kept in a buffer of its size.
        pair.client.writer().write_all(&[3; 10_000]).unwrap();
        let mut wire = Vec::new();
        pair.client.write_tls(&mut wire).unwrap();
        let space = pair.server.lend_input(Vec::new(), 256 << 10);
        assert!(space.is_none());
        pair.server.input_space(100)[..100].copy_from_slice(&wire[..100]);
        pair.server.filled(100);
        assert_eq!(pair.server.process(&mut dst).unwrap(), 0);
        assert_eq!(pair.server.take_idle_buffers().map(|b| b.len()), Some(256 << 10));
        assert_eq!(pair.server.memory(), idle + 100);
    }

    #[test]
    fn key_updates_both_ways() {
        let mut pair = Pair::new();
        // The client updates its keys and asks the server to update its own.
        pair.client.refresh_traffic_keys().unwrap();
        pair.client.writer().write_all(b"after the update").unwrap();
        let mut dst = vec![0; 1024];
        assert_eq!(pair.client_sends(usize::MAX, &mut dst).unwrap(), b"after the update");
        pair.server.encrypt(&[IoSlice::new(b"reply")]).unwrap();
        assert_eq!(pair.server_sends(), b"reply");
    }

    #[test]
    fn close_notify_both_ways() {
        let mut pair = Pair::new();
        pair.client.send_close_notify();
        let mut dst = vec![0; 64];
        assert!(pair.client_sends(usize::MAX, &mut dst).unwrap().is_empty());
        assert!(pair.server.peer_closed());
        // The server may still write, then closes its side.
        pair.server.encrypt(&[IoSlice::new(b"last")]).unwrap();
        pair.server.close_notify().unwrap();
        assert_eq!(pair.server_sends(), b"last");
        let mut rest = Vec::new();
        assert_eq!(pair.client.reader().read_to_end(&mut rest).unwrap(), 0);
    }

    #[test]
    fn garbage_gets_an_alert_and_an_error() {
        let mut pair = Pair::new();
        // An application-data record that does not decrypt.
        let record = [&[23u8, 3, 3, 0, 40][..], &[0xAA; 40]].concat();
        pair.server.input_space(record.len())[..record.len()].copy_from_slice(&record);
        pair.server.filled(record.len());
        let err = pair.server.process(&mut [0; 64]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        // The alert (bad_record_mac), encrypted: a 5-byte header and an encrypted alert.
        assert_eq!(pair.server.output()[0], 23);
        let out = pair.server.output().to_vec();
        let mut at = &out[..];
        pair.client.read_tls(&mut at).unwrap();
        let alert = pair.client.process_new_packets().unwrap_err();
        assert!(alert.to_string().contains("BadRecordMac"), "{alert}");
    }

    #[test]
    fn plaintext_before_a_bad_record_is_read_before_the_error() {
        let mut pair = Pair::new();
        pair.client.writer().write_all(b"last words").unwrap();
        let mut wire = Vec::new();
        while pair.client.wants_write() {
            pair.client.write_tls(&mut wire).unwrap();
        }
        // Then a record that does not decrypt, in the same read.
        wire.extend_from_slice(&[23, 3, 3, 0, 40]);
        wire.extend_from_slice(&[0xAA; 40]);
        pair.server.input_space(wire.len())[..wire.len()].copy_from_slice(&wire);
        pair.server.filled(wire.len());
        let mut dst = [0; 64];
        assert_eq!(pair.server.process(&mut dst).unwrap(), 10);
        assert_eq!(&dst[..10], b"last words");
        assert!(pair.server.owes(), "the alert waits for the socket");
        let err = pair.server.process(&mut dst).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn buffers_grow_to_what_is_asked_and_no_more() {
        let mut pair = Pair::new();
        let _ = pair.server.take_idle_buffers();
        let base = pair.server.memory();
        for want in [5000, 9000, 20_000] {
            pair.server.input_space(want);
            assert_eq!(pair.server.memory(), base + want, "after asking for {want}");
        }
    }

    #[test]
    fn a_handshake_message_longer_than_the_bound_is_refused() {
        let pki = TestPki::new().unwrap();
        let issued = pki.localhost().unwrap();
        let mut server = Tls::new(TestPki::server_config(&issued).unwrap()).unwrap();
        // A ClientHello that says it is 16 MiB long, sent in full records that never end it.
        let mut fed = 0;
        let result = loop {
            let mut record = vec![22u8, 3, 1, 0x40, 0];
            let mut body = vec![0u8; 0x4000];
            if fed == 0 {
                body[..4].copy_from_slice(&[1, 0xff, 0xff, 0xff]);
            }
            record.append(&mut body);
            server.input_space(record.len())[..record.len()].copy_from_slice(&record);
            server.filled(record.len());
            fed += record.len();
            match server.process(&mut []) {
                Ok(_) if fed < 4 * INPUT_MAX => {}
                other => break other,
            }
        };
        assert!(result.is_err(), "{result:?}");
        assert!(fed <= INPUT_MAX + RECORD_MAX, "fed {fed} bytes before it ended");
        assert!(server.received() < INPUT_MAX + RECORD_MAX);
    }
}
