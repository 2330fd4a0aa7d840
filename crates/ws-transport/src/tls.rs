//! TLS over any futures-io stream, driven by a rustls connection ([`TlsStream`]), and the
//! client's default TLS settings.
//!
//! rustls is sans-IO: it takes TLS bytes (`read_tls`), hands out plaintext (`reader`), takes
//! plaintext (`writer`) and hands out TLS bytes (`write_tls`). [`TlsStream`] moves those bytes
//! between a rustls connection and a stream; it is ours rather than an adapter crate's so that a
//! connection can be taken apart after the opening handshake ([`TlsStream::into_parts`]) and
//! driven elsewhere: the server engine hands the socket and the rustls state to its epoll
//! threads, which drive rustls directly.

use std::io::{self, Read, Write};
use std::ops::DerefMut;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};

use futures_lite::{AsyncRead, AsyncWrite};
use rustls::{ClientConfig, ConnectionCommon, SideData};

use crate::error::Error;

/// A stream that speaks TLS over `S`, through the rustls connection `C`
/// ([`rustls::ClientConnection`] or [`rustls::ServerConnection`]).
///
/// The TLS handshake runs as the stream is first read or written. Reading ends (`Ok(0)`) at
/// the peer's `close_notify` or at the end of `S`: a WebSocket has its own close handshake, so
/// a TCP end without `close_notify` truncates nothing that the protocol would not see.
/// [`poll_close`](AsyncWrite::poll_close) sends `close_notify`, then closes `S` (with
/// async-net's TCP streams, that ends the write side, as the WebSocket close handshake
/// needs). Errors from rustls (a bad certificate, a bad record) are `io::Error`s of kind
/// `InvalidData` whose source is the [`rustls::Error`]; a fatal one is answered with its alert
/// first.
#[derive(Debug)]
pub struct TlsStream<S, C> {
    io: S,
    tls: C,
    /// `close_notify` has been queued.
    closing: bool,
    /// Plaintext given to rustls since it last held nothing to write, plus a record's overhead
    /// per write: a bound on the TLS bytes it holds (see [`unsent`](Self::unsent)).
    unsent: usize,
}

/// A TLS 1.3 record's header, content type and tag, the most one write adds to its plaintext.
const RECORD_OVERHEAD: usize = 5 + 1 + 16;

impl<S, C, D> TlsStream<S, C>
where
    C: DerefMut<Target = ConnectionCommon<D>>,
    D: SideData,
{
    /// A TLS stream over `io`, in whatever state `tls` is in (a new connection, or one taken
    /// apart with [`into_parts`](Self::into_parts)).
    pub fn new(io: S, tls: C) -> Self {
        Self { io, tls, closing: false, unsent: 0 }
    }

    /// A bound on the TLS bytes rustls holds that the stream has not taken yet (rustls does
    /// not say how many): what was written since it last held none, at most 128 KiB (its
    /// 64 KiB limit, and one write over it). For memory budgets.
    pub fn unsent(&self) -> usize {
        self.unsent.min(128 << 10)
    }

    /// The stream and the rustls connection, with whatever rustls holds: plaintext received
    /// and not yet read, TLS bytes not yet written.
    pub fn into_parts(self) -> (S, C) {
        (self.io, self.tls)
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// The rustls connection: negotiated protocol version, ALPN, SNI, peer certificates.
    pub fn tls(&self) -> &C {
        &self.tls
    }
}

/// A `Read`/`Write` view of a futures-io stream for rustls: `Pending` becomes `WouldBlock`
/// (with the waker registered).
struct SyncView<'a, 'b, S> {
    io: &'a mut S,
    cx: &'a mut Context<'b>,
}

impl<S: AsyncRead + Unpin> Read for SyncView<'_, '_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_read(self.cx, buf) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl<S: AsyncWrite + Unpin> Write for SyncView<'_, '_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_write(self.cx, buf) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_write_vectored(self.cx, bufs) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match Pin::new(&mut *self.io).poll_flush(self.cx) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

/// Turns `WouldBlock` back into `Pending`.
fn pending<T>(result: io::Result<T>) -> Poll<io::Result<T>> {
    match result {
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
        result => Poll::Ready(result),
    }
}

impl<S, C, D> TlsStream<S, C>
where
    S: AsyncRead + AsyncWrite + Unpin,
    C: DerefMut<Target = ConnectionCommon<D>> + Unpin,
    D: SideData,
{
    /// Runs the TLS handshake to its end (reading and writing it is otherwise done by the
    /// first reads, and by the first flush).
    pub async fn handshake(&mut self) -> io::Result<()> {
        futures_lite::future::poll_fn(|cx| {
            ready!(self.poll_handshake(cx))?;
            self.poll_send(cx)
        })
        .await
    }

    /// Drives the handshake until it is done.
    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.tls.is_handshaking() {
            if let Poll::Ready(Err(err)) = self.poll_send(cx) {
                return Poll::Ready(Err(err));
            }
            if ready!(self.poll_receive(cx))? == 0 {
                return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Writes TLS bytes rustls holds until it holds none.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.tls.wants_write() {
            let n = ready!(pending(self.tls.write_tls(&mut SyncView { io: &mut self.io, cx })))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
        }
        self.unsent = 0;
        Poll::Ready(Ok(()))
    }

    /// Reads TLS bytes once and processes them. `Ok(0)` at the end of the stream.
    fn poll_receive(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let n = ready!(pending(self.tls.read_tls(&mut SyncView { io: &mut self.io, cx })))?;
        if let Err(err) = self.tls.process_new_packets() {
            // The alert that says why goes out first, if the stream takes it now.
            let _ = self.poll_send(cx);
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, err)));
        }
        Poll::Ready(Ok(n))
    }
}

impl<S, C, D> AsyncRead for TlsStream<S, C>
where
    S: AsyncRead + AsyncWrite + Unpin,
    C: DerefMut<Target = ConnectionCommon<D>> + Unpin,
    D: SideData,
{
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
            match this.tls.reader().read(buf) {
                // Plaintext, or the peer's close_notify (0).
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                // The stream ended without close_notify: an end all the same.
                Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => {
                    return Poll::Ready(Ok(0));
                }
                Err(err) => return Poll::Ready(Err(err)),
            }
            // What rustls owes goes out first: the peer may wait for it (the end of the
            // handshake above all), and a driver that reads and writes in one task may be
            // waiting to read with its last write still in rustls. A stream that takes no
            // more now is left with it; reading goes on.
            if let Poll::Ready(Err(err)) = this.poll_send(cx) {
                return Poll::Ready(Err(err));
            }
            ready!(this.poll_receive(cx))?;
        }
    }
}

impl<S, C, D> AsyncWrite for TlsStream<S, C>
where
    S: AsyncRead + AsyncWrite + Unpin,
    C: DerefMut<Target = ConnectionCommon<D>> + Unpin,
    D: SideData,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if bufs.iter().all(|b| b.is_empty()) {
            return Poll::Ready(Ok(0));
        }
        loop {
            // rustls takes plaintext up to its buffer limit (64 KiB of TLS bytes not yet
            // written), encrypting it at once; before the handshake ends it keeps up to as much
            // plaintext to encrypt then.
            let n = this.tls.writer().write_vectored(bufs)?;
            if n > 0 {
                this.unsent += n + RECORD_OVERHEAD;
            }
            let sent = this.poll_send(cx)?;
            if n > 0 {
                return Poll::Ready(Ok(n));
            }
            // rustls's buffer is full: wait until the stream takes some of it, or, before the
            // handshake ends, for the handshake (which is what empties it then).
            ready!(sent);
            if this.tls.is_handshaking() {
                ready!(this.poll_handshake(cx))?;
            }
        }
    }

    /// Flushing before the handshake ends runs the handshake: plaintext written meanwhile
    /// goes out only after it.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_handshake(cx))?;
        this.tls.writer().flush()?;
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !std::mem::replace(&mut this.closing, true) {
            this.tls.send_close_notify();
        }
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_close(cx)
    }
}

/// A stream with TLS or without: what [`connect_tcp`](crate::connect_tcp) returns for `ws://`
/// and `wss://` URLs alike. The TLS state is boxed, so a plain stream costs no more than `S`.
#[derive(Debug)]
pub enum MaybeTls<S, C> {
    /// No TLS (`ws://`).
    Plain(S),
    /// TLS (`wss://`).
    Tls(Box<TlsStream<S, C>>),
}

impl<S, C> MaybeTls<S, C> {
    /// The stream and, for TLS, the rustls connection (see [`TlsStream::into_parts`]).
    pub fn into_parts(self) -> (S, Option<C>) {
        match self {
            Self::Plain(io) => (io, None),
            Self::Tls(tls) => (tls.io, Some(tls.tls)),
        }
    }

    /// The stream again, with the rustls connection if there is one: the inverse of
    /// [`into_parts`](Self::into_parts), on this or another stream.
    pub fn from_parts(io: S, tls: Option<C>) -> Self {
        match tls {
            None => Self::Plain(io),
            Some(tls) => Self::Tls(Box::new(TlsStream { io, tls, closing: false, unsent: 0 })),
        }
    }

    /// The TCP stream underneath.
    pub fn get_ref(&self) -> &S {
        match self {
            Self::Plain(io) => io,
            Self::Tls(tls) => &tls.io,
        }
    }

    /// The rustls connection, for a TLS stream.
    pub fn tls(&self) -> Option<&C> {
        match self {
            Self::Plain(_) => None,
            Self::Tls(tls) => Some(&tls.tls),
        }
    }
}

impl<S, C, D> AsyncRead for MaybeTls<S, C>
where
    S: AsyncRead + AsyncWrite + Unpin,
    C: DerefMut<Target = ConnectionCommon<D>> + Unpin,
    D: SideData,
{
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

impl<S, C, D> AsyncWrite for MaybeTls<S, C>
where
    S: AsyncRead + AsyncWrite + Unpin,
    C: DerefMut<Target = ConnectionCommon<D>> + Unpin,
    D: SideData,
{
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
        bufs: &[io::IoSlice<'_>],
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

/// The client's default TLS settings: the system's trust store, ALPN `http/1.1`, ring.
///
/// The trust store is read once per process (once it has been read successfully), by
/// rustls-native-certs: from `SSL_CERT_FILE`
/// and/or `SSL_CERT_DIR` when set (as OpenSSL reads them), else from the platform's store (on
/// Linux the distribution's bundle, found as OpenSSL would). Reading it blocks, so call this
/// off the executor, as [`connect_tcp`](crate::connect_tcp) does.
pub fn default_client_config() -> Result<Arc<ClientConfig>, Error> {
    // Only a store that was found is kept: one that could not be read is tried again on the
    // next connect (the files may appear).
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    if let Some(config) = CONFIG.get() {
        return Ok(Arc::clone(config));
    }
    let config = load_client_config().map_err(rustls::Error::General)?;
    Ok(Arc::clone(CONFIG.get_or_init(|| config)))
}

fn load_client_config() -> Result<Arc<ClientConfig>, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = match found.errors.first() {
            Some(err) => format!(": {err}"),
            None => String::new(),
        };
        return Err(format!(
            "no trusted certificates found (SSL_CERT_FILE, SSL_CERT_DIR or the system's \
             store){why}"
        ));
    }
    client_config(roots).map_err(|err| err.to_string())
}

/// Client settings that trust `roots`, with this crate's crypto provider and ALPN
/// `http/1.1`, as [`default_client_config`] makes them from the system's store: for a
/// [`Connector`](crate::Connector) that trusts a private CA.
pub fn client_config(roots: rustls::RootCertStore) -> Result<Arc<ClientConfig>, rustls::Error> {
    let mut config = client_config_builder()?.with_root_certificates(roots).with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A rustls client configuration builder with this crate's crypto provider (ring) and
/// protocol versions (TLS 1.2 and 1.3), for callers that build their own
/// [`ClientConfig`]: add roots (or a verifier) and client authentication, then set
/// `alpn_protocols` to `http/1.1` as a WebSocket client should.
pub fn client_config_builder()
-> Result<rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier>, rustls::Error> {
    ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
}

/// A rustls server configuration builder with this crate's crypto provider (ring) and
/// protocol versions (TLS 1.2 and 1.3).
pub fn server_config_builder()
-> Result<rustls::ConfigBuilder<rustls::ServerConfig, rustls::WantsVerifier>, rustls::Error> {
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
}

/// The [`rustls::Error`] inside an I/O error from a [`TlsStream`], if that is what it is.
pub(crate) fn tls_error(err: &io::Error) -> Option<&rustls::Error> {
    err.get_ref()?.downcast_ref::<rustls::Error>()
}

/// What a rustls connection holds on the heap besides its struct, as memory budgets count
/// it: the 4 KiB buffer it reads TLS records into (kept while idle), its keys and queues.
/// Measured: an idle TLS connection costs ws-echo's epoll engine 7,759 bytes more than a
/// plain one (10,000 connections, `cargo xtask bench --tls`), of which the struct is 1,168.
/// TLS bytes not yet written are counted apart ([`TlsStream::unsent`]).
pub const TLS_BUFFERS: usize = 6656;
