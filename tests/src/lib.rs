//! Helpers for the end-to-end tests: an in-process server on `127.0.0.1:0`, and a raw
//! blocking client that builds and parses frames byte by byte (independent of `ws-proto`, the
//! code under test).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ws_echo::{Engine, Options, Server, Summary};

pub mod examples;
pub mod tls;

/// Every echo engine this platform has, for tests that run against each.
pub fn engines() -> Vec<Engine> {
    let mut engines = vec![Engine::Async];
    #[cfg(target_os = "linux")]
    engines.extend([Engine::Epoll, Engine::Uring]);
    engines
}

/// Starts a server with `options` on each engine in turn (see [`engines`]), for tests that
/// must hold for both; the engine is printed, so a failure says which.
pub fn each_engine(options: &Options) -> impl Iterator<Item = Result<(Engine, TestServer)>> + '_ {
    engines().into_iter().map(move |engine| {
        eprintln!("engine: {engine:?}");
        let mut options = options.clone();
        options.engine = engine;
        Ok((engine, TestServer::start(options)?))
    })
}

/// What tells a test server to shut down.
type Shutdown = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// A server running in this process on its own executor threads.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<async_channel::Sender<()>>,
    thread: Option<JoinHandle<Summary>>,
    /// The server's memory budget.
    pub budget: Arc<ws_server::Budget>,
}

impl TestServer {
    /// Starts an echo server with `options` on `127.0.0.1:0` with two worker threads.
    pub fn start(options: Options) -> Result<Self> {
        let server = Server::bind(([127, 0, 0, 1], 0).into(), options)?;
        let addr = server.local_addr()?;
        let budget = server.budget();
        Ok(Self::spawn(addr, budget, move |ex, shutdown| server.run(ex, shutdown)))
    }

    /// Starts a server for any application on the engine, on `127.0.0.1:0` with two worker
    /// threads.
    pub fn start_app<A: ws_server::App>(app: A, options: ws_server::Options) -> Result<Self> {
        let server = ws_server::Server::bind(([127, 0, 0, 1], 0).into(), options, app)?;
        let addr = server.local_addr()?;
        let budget = server.budget();
        Ok(Self::spawn(addr, budget, move |ex, shutdown| server.run(ex, shutdown)))
    }

    /// Runs `run` (a server's run, given its executor and its shutdown signal) on a thread
    /// with a helper executor thread.
    fn spawn<F>(
        addr: SocketAddr,
        budget: Arc<ws_server::Budget>,
        run: impl FnOnce(Arc<smol::Executor<'static>>, Shutdown) -> F + Send + 'static,
    ) -> Self
    where
        F: Future<Output = Summary>,
    {
        let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
        let thread = std::thread::spawn(move || {
            let ex = Arc::new(smol::Executor::new());
            let helper = {
                let ex = Arc::clone(&ex);
                let stop = stop_rx.clone();
                std::thread::spawn(move || smol::block_on(ex.run(stop.recv())))
            };
            let shutdown: Shutdown = Box::pin(async move {
                let _ = stop_rx.recv().await;
            });
            let summary = smol::block_on(ex.run(run(Arc::clone(&ex), shutdown)));
            let _ = helper.join();
            summary
        });
        Self { addr, stop: Some(stop_tx), thread: Some(thread), budget }
    }

    /// Starts a server with default options.
    pub fn start_default() -> Result<Self> {
        Self::start(Options::default())
    }

    /// Shuts the server down gracefully and returns its summary.
    pub fn stop(mut self) -> Summary {
        self.stop.take();
        self.thread.take().expect("running").join().expect("server thread")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A frame as the raw client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// FIN.
    pub fin: bool,
    /// RSV bits.
    pub rsv: u8,
    /// Opcode.
    pub opcode: u8,
    /// Whether the frame was masked (a server must never mask).
    pub masked: bool,
    /// Unmasked payload.
    pub payload: Vec<u8>,
}

impl Frame {
    /// The close code of a close frame, if it has one.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == 8 && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// Encodes a client frame: first byte `b0` as given, payload masked with `key`.
pub fn client_frame(b0: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let mut out = vec![b0];
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xffff {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// An unmasked frame, which a client must never send.
pub fn unmasked_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut out = vec![b0, payload.len() as u8];
    out.extend_from_slice(payload);
    out
}

/// The opening handshake request for `addr`.
pub fn upgrade_request(addr: SocketAddr) -> String {
    format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// A blocking client that speaks WebSocket byte by byte.
pub struct RawClient {
    /// The TCP stream.
    pub stream: TcpStream,
    /// Received bytes; `buf[start..]` is not yet parsed.
    buf: Vec<u8>,
    start: usize,
    key: u32,
    /// Payloads of the pongs [`read_message`](Self::read_message) skipped over.
    pub pongs: Vec<Vec<u8>>,
}

impl RawClient {
    /// Connects without a handshake.
    pub fn connect_tcp(addr: SocketAddr) -> Result<Self> {
        let stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        stream.set_nodelay(true)?;
        Ok(Self { stream, buf: Vec::new(), start: 0, key: 0x1234_5678, pongs: Vec::new() })
    }

    /// Connects and completes the opening handshake, sending `extra` bytes in the same write
    /// as the request.
    pub fn connect_with(addr: SocketAddr, extra: &[u8]) -> Result<Self> {
        let mut client = Self::connect_tcp(addr)?;
        let mut request = upgrade_request(addr).into_bytes();
        request.extend_from_slice(extra);
        client.stream.write_all(&request)?;
        let head = client.read_head()?;
        if !head.starts_with("HTTP/1.1 101 ") || !head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") {
            bail!("handshake refused: {head}");
        }
        Ok(client)
    }

    /// Connects offering permessage-deflate; returns the client and the response head.
    pub fn connect_deflate(addr: SocketAddr) -> Result<(Self, String)> {
        let mut client = Self::connect_tcp(addr)?;
        let request = upgrade_request(addr).replace(
            "\r\n\r\n",
            "\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n",
        );
        client.stream.write_all(request.as_bytes())?;
        let head = client.read_head()?;
        if !head.starts_with("HTTP/1.1 101 ") {
            bail!("handshake refused: {head}");
        }
        Ok((client, head))
    }

    /// Connects and completes the opening handshake for `path`; returns the client and the
    /// 101's head (anything else is an error).
    pub fn connect_path(addr: SocketAddr, path: &str) -> Result<(Self, String)> {
        let mut client = Self::connect_tcp(addr)?;
        let request = upgrade_request(addr).replacen("GET / ", &format!("GET {path} "), 1);
        client.stream.write_all(request.as_bytes())?;
        let head = client.read_head()?;
        if !head.starts_with("HTTP/1.1 101 ") {
            bail!("{path}: {head}");
        }
        Ok((client, head))
    }

    /// Connects and completes the opening handshake.
    pub fn connect(addr: SocketAddr) -> Result<Self> {
        Self::connect_with(addr, &[])
    }

    /// Reads an HTTP response head (bytes after it stay buffered).
    pub fn read_head(&mut self) -> Result<String> {
        loop {
            let pending = &self.buf[self.start..];
            if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&pending[..end + 4]).into_owned();
                self.start += end + 4;
                return Ok(head);
            }
            if self.fill()? == 0 {
                bail!(
                    "connection closed before the response head: {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
            }
        }
    }

    /// Reads whatever is left until the server closes, as text.
    pub fn read_to_end(&mut self) -> Result<Vec<u8>> {
        while self.fill()? > 0 {}
        let rest = self.buf.split_off(self.start);
        self.buf.clear();
        self.start = 0;
        Ok(rest)
    }

    fn fill(&mut self) -> io::Result<usize> {
        // Drop parsed bytes once they are most of the buffer, keeping parsing linear.
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let mut chunk = [0u8; 64 << 10];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    fn next_key(&mut self) -> [u8; 4] {
        self.key = self.key.wrapping_mul(1_103_515_245).wrapping_add(12345);
        self.key.to_be_bytes()
    }

    /// Sends one masked frame.
    pub fn send(&mut self, b0: u8, payload: &[u8]) -> Result<()> {
        let key = self.next_key();
        self.stream.write_all(&client_frame(b0, payload, key))?;
        Ok(())
    }

    /// Sends raw bytes from another thread, so that this one can read the echo meanwhile (an
    /// echo server streams, and stops reading from a client that does not read).
    pub fn send_in_background(&mut self, bytes: Vec<u8>) -> Result<JoinHandle<io::Result<()>>> {
        let mut writer = self.stream.try_clone()?;
        Ok(std::thread::spawn(move || writer.write_all(&bytes)))
    }

    /// Sends raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.write_all(bytes)?;
        Ok(())
    }

    /// Reads one frame; `None` when the server ended the TCP stream (FIN). A reset is an
    /// error, never a clean close: it is what a server that closes with unread input sends.
    pub fn read_frame(&mut self) -> Result<Option<Frame>> {
        loop {
            if let Some((frame, used)) = parse_frame(&self.buf[self.start..])? {
                self.start += used;
                return Ok(Some(frame));
            }
            match self.fill() {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(err) => {
                    return Err(anyhow::Error::new(err).context("reading a frame"));
                }
            }
        }
    }

    /// Writes `frame` and ends the write side in the same TCP segment (FIN with the data),
    /// as a client that sends one message and half-closes does when both leave together.
    #[cfg(target_os = "linux")]
    pub fn send_then_half_close(&mut self, frame: &[u8]) -> Result<()> {
        // Corked, the data waits in the socket; the FIN is then added to that segment.
        rustix::net::sockopt::set_tcp_cork(&self.stream, true)?;
        self.stream.write_all(frame)?;
        self.stream.shutdown(std::net::Shutdown::Write)?;
        Ok(())
    }

    /// Reads one message, assembling fragments and skipping pongs. Returns the opcode of its
    /// first frame and the payload; a close frame comes back as opcode 8.
    pub fn read_message(&mut self) -> Result<(u8, Vec<u8>)> {
        let mut opcode = None;
        let mut data = Vec::new();
        loop {
            let frame = self.read_frame()?.context("connection closed while reading a message")?;
            if frame.masked {
                bail!("server sent a masked frame");
            }
            match frame.opcode {
                0x8 => return Ok((8, frame.payload)),
                0x9 => continue,
                0xa => {
                    self.pongs.push(frame.payload);
                    continue;
                }
                0x0 if opcode.is_none() => bail!("continuation without a message"),
                0x0 => {}
                op if opcode.is_some() => bail!("opcode {op} inside a fragmented message"),
                op => opcode = Some(op),
            }
            data.extend_from_slice(&frame.payload);
            if frame.fin {
                return Ok((opcode.expect("set"), data));
            }
        }
    }

    /// Reads until a close frame arrives and then until the server closes TCP. Returns the
    /// close code (1005 for an empty close) and whether TCP was closed by the server.
    pub fn expect_close(&mut self) -> Result<(u16, bool)> {
        loop {
            match self.read_frame()? {
                None => bail!("TCP closed without a close frame"),
                Some(frame) if frame.opcode == 8 => {
                    let code = frame.close_code().unwrap_or(1005);
                    // Answer, as a client should, then wait for the server's FIN.
                    let _ = self.send(0x88, &frame.payload[..frame.payload.len().min(2)]);
                    let closed = matches!(self.read_frame(), Ok(None));
                    return Ok((code, closed));
                }
                Some(_) => {}
            }
        }
    }
}

/// Parses one server frame from `buf`; `None` if incomplete.
pub fn parse_frame(buf: &[u8]) -> Result<Option<(Frame, usize)>> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    let masked = b1 & 0x80 != 0;
    let (len, mut pos) = match b1 & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4),
        127 if buf.len() >= 10 => (u64::from_be_bytes(buf[2..10].try_into()?), 10),
        126 | 127 => return Ok(None),
        n => (n as u64, 2),
    };
    let key = if masked {
        if buf.len() < pos + 4 {
            return Ok(None);
        }
        pos += 4;
        Some([buf[pos - 4], buf[pos - 3], buf[pos - 2], buf[pos - 1]])
    } else {
        None
    };
    let len = usize::try_from(len)?;
    if buf.len() < pos + len {
        return Ok(None);
    }
    let mut payload = buf[pos..pos + len].to_vec();
    if let Some(key) = key {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
    }
    let frame =
        Frame { fin: b0 & 0x80 != 0, rsv: (b0 >> 4) & 7, opcode: b0 & 0xf, masked, payload };
    Ok(Some((frame, pos + len)))
}

/// This process's resident set size in bytes, from /proc/self/status.
pub fn rss_bytes() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS line")?;
    let kib: u64 = line.split_whitespace().nth(1).context("malformed VmRSS")?.parse()?;
    Ok(kib * 1024)
}

/// Whether this run is in CI, where missing external tools must fail tests, not skip them.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false")
}
