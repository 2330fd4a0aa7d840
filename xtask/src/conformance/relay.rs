//! The suite over TLS (`--tls`): a relay between the suite, which speaks plain TCP to it, and
//! the peer under test, to which it speaks TLS. In server mode the relay is a TLS client of the
//! server; in client mode it is the TLS server the client connects to. Bytes go through as they
//! come (each read is written at once, so a case's chops and pauses reach the peer as separate
//! TLS records), an end of stream on one side becomes one on the other (close_notify and FIN
//! towards the peer), and a failure resets the suite's side, so the suite's verdicts on what it
//! saw hold for the peer's TLS path.

use std::io;
use std::ops::DerefMut;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};
use ws_transport::TlsStream;
use ws_transport::rustls::{
    self, ClientConfig, ClientConnection, ConnectionCommon, ServerConfig, ServerConnection,
    SideData,
};

use super::*;

/// Which way a relay faces.
pub(super) enum Facing {
    /// Plain from the suite, TLS to the server at this address.
    Server(SocketAddr, Arc<ClientConfig>),
    /// TLS from the client, plain to the suite's listener at this address.
    Client(SocketAddr, Arc<ServerConfig>),
}

/// Starts a relay on `127.0.0.1:0` on a thread of its own (it lasts as long as the run) and
/// returns where it listens.
pub(super) fn start(facing: Facing) -> Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let listener = Async::new(listener)?;
    std::thread::Builder::new().name("conformance-tls-relay".into()).spawn(move || {
        let ex = smol::LocalExecutor::new();
        smol::block_on(ex.run(async {
            loop {
                let Ok((accepted, _)) = listener.accept().await else { continue };
                let accepted = async_net::TcpStream::from(accepted);
                let _ = accepted.set_nodelay(true);
                let task = match &facing {
                    Facing::Server(server, config) => {
                        let config = Arc::clone(config);
                        let server = *server;
                        ex.spawn(async move {
                            let tls = async {
                                let tcp = async_net::TcpStream::connect(server).await?;
                                tcp.set_nodelay(true)?;
                                let name = rustls::pki_types::ServerName::try_from("localhost")
                                    .map_err(io::Error::other)?;
                                let tls = ClientConnection::new(config, name)
                                    .map_err(io::Error::other)?;
                                Ok::<_, io::Error>(TlsStream::new(tcp, tls))
                            };
                            match tls.await {
                                Ok(tls) => relay(accepted, tls).await,
                                Err(_) => reset(&accepted),
                            }
                        })
                    }
                    Facing::Client(suite, config) => {
                        let config = Arc::clone(config);
                        let suite = *suite;
                        ex.spawn(async move {
                            let Ok(tls) = ServerConnection::new(config) else { return };
                            let tls = TlsStream::new(accepted, tls);
                            match async_net::TcpStream::connect(suite).await {
                                Ok(plain) => {
                                    let _ = plain.set_nodelay(true);
                                    relay(plain, tls).await;
                                }
                                Err(_) => drop(tls),
                            }
                        })
                    }
                };
                task.detach();
            }
        }))
    })?;
    Ok(addr)
}

/// Moves bytes both ways until both sides have ended; on a failure, resets the plain side.
async fn relay<C, D>(plain: async_net::TcpStream, mut tls: TlsStream<async_net::TcpStream, C>)
where
    C: DerefMut<Target = ConnectionCommon<D>> + Unpin,
    D: SideData,
{
    let (mut from_plain, mut to_plain) = (plain.clone(), plain.clone());
    let (mut up, mut down) = (Half::new(), Half::new());
    let moved = future::poll_fn(|cx| {
        loop {
            let up_moved = up.poll(cx, &mut from_plain, &mut tls)?;
            let down_moved = down.poll(cx, &mut tls, &mut to_plain)?;
            if up.closed && down.closed {
                return Poll::Ready(Ok::<(), io::Error>(()));
            }
            if !up_moved && !down_moved {
                return Poll::Pending;
            }
        }
    })
    .await;
    if moved.is_err() {
        reset(&plain);
    }
}

/// Ends a connection with a reset (SO_LINGER 0), as the peer's failure looks without a relay.
fn reset(stream: &async_net::TcpStream) {
    let _ = rustix::net::sockopt::set_socket_linger(stream, Some(Duration::ZERO));
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// One direction: a buffer between a reader and a writer.
struct Half {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// The reader ended.
    ended: bool,
    /// The end was passed on to the writer.
    closed: bool,
}

impl Half {
    fn new() -> Self {
        Self { buf: vec![0; 64 << 10], start: 0, end: 0, ended: false, closed: false }
    }

    /// Moves what it can; whether anything moved.
    fn poll<R, W>(&mut self, cx: &mut Context<'_>, r: &mut R, w: &mut W) -> io::Result<bool>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut moved = false;
        if self.start == self.end && !self.ended {
            if let Poll::Ready(n) = Pin::new(&mut *r).poll_read(cx, &mut self.buf) {
                let n = n?;
                moved = true;
                (self.start, self.end) = (0, n);
                self.ended = n == 0;
            }
        }
        while self.start < self.end {
            match Pin::new(&mut *w).poll_write(cx, &self.buf[self.start..self.end]) {
                Poll::Ready(n) => {
                    match n? {
                        0 => return Err(io::ErrorKind::WriteZero.into()),
                        n => self.start += n,
                    }
                    moved = true;
                }
                Poll::Pending => break,
            }
        }
        if self.start == self.end && moved {
            if let Poll::Ready(Err(err)) = Pin::new(&mut *w).poll_flush(cx) {
                return Err(err);
            }
        }
        if self.ended && self.start == self.end && !self.closed {
            if let Poll::Ready(closed) = Pin::new(&mut *w).poll_close(cx) {
                closed?;
                self.closed = true;
                moved = true;
            }
        }
        Ok(moved)
    }
}
