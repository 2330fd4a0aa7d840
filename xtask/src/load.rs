//! A load generator for WebSocket echo servers, on one thread: N connections, K messages in
//! flight each (one unless told), every frame masked with a fresh key, every echoed byte
//! verified. Frames are built and parsed here, byte by byte, so the generator shares no code
//! with the servers it measures.
//!
//! [`Method::LoadTest`] follows instead the method of the `load_test` tool that
//! fastwebsockets and uWebSockets publish their figures with: one masked message built once
//! per connection and sent again as soon as its echo is back, the echo counted, not compared;
//! so our figures can be set beside theirs. A mixed load (`large`) adds connections that
//! stream large messages beside the small ones, and reports the small ones' latency apart.
//! The generator reports its own CPU: where it is near 100 %, messages/s measures it, not
//! the server ([`LoadReport::load_bound`]).

use std::cell::RefCell;
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use async_io::{Async, Timer};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use ws_transport::rustls::{ClientConfig, ClientConnection};
use ws_transport::{MaybeTls, TlsStream};

use crate::conformance::deflate::{self, Codec};
use crate::conformance::read_head;
use crate::conformance::wire;

/// What to run.
#[derive(Debug, Clone)]
pub(crate) struct LoadOptions {
    pub(crate) addr: SocketAddr,
    pub(crate) connections: usize,
    pub(crate) size: usize,
    pub(crate) warmup: Duration,
    pub(crate) duration: Duration,
    pub(crate) server_pid: Option<u32>,
    /// Offer permessage-deflate and send compressed text messages.
    pub(crate) deflate: bool,
    /// Speak TLS with these settings (the server's name is taken to be `localhost`).
    pub(crate) tls: Option<Arc<ClientConfig>>,
    /// Messages in flight per connection: written together, then their echoes read.
    pub(crate) inflight: usize,
    pub(crate) method: Method,
    /// Connections that stream messages of `large_size` beside the others (one in flight
    /// each, by [`Method::LoadTest`]), measured apart.
    pub(crate) large: usize,
    pub(crate) large_size: usize,
    /// The (small) connections send a message (batch) at most this often, not as soon as
    /// the echo is back: a paced load keeps the generator below its limit, so the latency
    /// measured is the server's.
    pub(crate) interval: Option<Duration>,
}

impl LoadOptions {
    /// One connection, 20 B messages, one in flight, every echo verified.
    pub(crate) fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            connections: 1,
            size: 20,
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(5),
            server_pid: None,
            deflate: false,
            tls: None,
            inflight: 1,
            method: Method::Verify,
            large: 0,
            large_size: LARGE_SIZE,
            interval: None,
        }
    }
}

/// How messages are made and echoes checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    /// A fresh masking key per frame, and every echoed byte compared.
    Verify,
    /// The `load_test` method: one masked message built once per connection and resent, its
    /// echo counted (frames parsed, payload not compared).
    LoadTest,
}

impl std::str::FromStr for Method {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "verify" => Ok(Self::Verify),
            "load-test" => Ok(Self::LoadTest),
            _ => bail!("unknown method {s:?} (verify or load-test)"),
        }
    }
}

/// What was measured over the window after the warm-up.
#[derive(Debug, Clone)]
pub(crate) struct LoadReport {
    pub(crate) messages: u64,
    pub(crate) seconds: f64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    /// Server CPU (user + system) per message, from /proc, when the server's pid is known.
    pub(crate) server_cpu_us_per_msg: Option<f64>,
    /// The generator's own CPU over the window, in percent of one core.
    pub(crate) load_cpu_percent: f64,
    /// With a mixed load: the large messages echoed in the window, and their p99.
    pub(crate) large_messages: u64,
    pub(crate) large_p99_us: f64,
}

/// The size of the large messages of a mixed load, unless told.
pub(crate) const LARGE_SIZE: usize = 16 << 20;

/// Generator CPU from which its messages/s is taken to be its own limit, not the server's.
pub(crate) const LOAD_BOUND_PERCENT: f64 = 95.0;

impl LoadReport {
    pub(crate) fn messages_per_sec(&self) -> f64 {
        self.messages as f64 / self.seconds
    }

    /// The generator was the bottleneck: its messages/s says nothing about the server.
    pub(crate) fn load_bound(&self) -> bool {
        self.load_cpu_percent >= LOAD_BOUND_PERCENT
    }
}

/// xorshift64: cheap, fresh masking keys; unpredictability does not matter to a load test.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n` (for sizes and pauses; the bias does not matter here).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A connection of the generator's: TCP, or TLS over TCP.
pub(crate) type Stream = MaybeTls<Async<TcpStream>, ClientConnection>;

/// Opens a TCP connection and completes the opening handshake.
pub(crate) async fn connect(
    addr: SocketAddr,
    deflate: bool,
) -> Result<(Async<TcpStream>, Option<Codec>)> {
    let mut stream = tcp(addr).await?;
    let codec = handshake(&mut stream, addr, deflate).await?;
    Ok((stream, codec))
}

/// [`connect`], over TLS when `tls` is given (to a server whose certificate names
/// `localhost`).
pub(crate) async fn connect_with(
    addr: SocketAddr,
    deflate: bool,
    tls: Option<&Arc<ClientConfig>>,
) -> Result<(Stream, Option<Codec>)> {
    let Some(config) = tls else {
        let (stream, codec) = connect(addr, deflate).await?;
        return Ok((MaybeTls::Plain(stream), codec));
    };
    let name = ws_transport::rustls::pki_types::ServerName::try_from("localhost")?;
    let tls = ClientConnection::new(Arc::clone(config), name)?;
    let mut stream = TlsStream::new(tcp(addr).await?, tls);
    let codec = handshake(&mut stream, addr, deflate).await?;
    Ok((MaybeTls::Tls(Box::new(stream)), codec))
}

async fn tcp(addr: SocketAddr) -> Result<Async<TcpStream>> {
    let stream =
        Async::<TcpStream>::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
    stream.get_ref().set_nodelay(true)?;
    Ok(stream)
}

/// The opening handshake, offering permessage-deflate if `deflate`.
async fn handshake<S>(stream: &mut S, addr: SocketAddr, deflate: bool) -> Result<Option<Codec>>
where
    S: AsyncRead + futures_lite::AsyncWrite + Unpin,
{
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{}\r\n",
        if deflate {
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        } else {
            ""
        }
    );
    stream.write_all(request.as_bytes()).await?;
    stream.flush().await?;
    let head = read_head(stream).await?;
    if !head.starts_with(b"HTTP/1.1 101") {
        bail!("handshake refused: {}", String::from_utf8_lossy(&head));
    }
    let text = String::from_utf8_lossy(&head);
    let accepted = text.lines().find_map(|l| {
        l.split_once(':')
            .filter(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-extensions"))
            .map(|(_, v)| v.trim())
    });
    let codec = match (deflate, accepted) {
        (true, Some(value)) => {
            Some(Codec::new(deflate::parse(value).context("unexpected extension answer")?, true))
        }
        (true, None) => bail!("the server did not accept permessage-deflate"),
        (false, _) => None,
    };
    Ok(codec)
}

/// How a message goes out (see [`Echoer::round_trip_with`]).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Shape {
    /// Uncompressed messages in this many fragments.
    pub(crate) fragments: usize,
    /// A ping before the message (its pong is skipped when reading).
    pub(crate) ping: bool,
    /// Write the whole message before reading any of the echo...
    pub(crate) write_first: bool,
    /// ...and then wait this long before reading it (a reader that stalls).
    pub(crate) read_after: Duration,
}

/// One connection's state: reusable buffers for the frame out and the echo in.
pub(crate) struct Echoer {
    stream: Stream,
    codec: Option<Codec>,
    rng: Rng,
    frame: Vec<u8>,
    expected: Vec<u8>,
    /// Read space, kept initialised and reused from one round trip to the next (zeroing or
    /// allocating a buffer per message would make the generator, not the server, the cost
    /// being measured); `inbuf[..filled]` holds unparsed bytes.
    inbuf: Vec<u8>,
    filled: usize,
    seq: u8,
    /// `frame` holds a batch built once (size, count), for [`Method::LoadTest`].
    built: Option<(usize, usize)>,
    /// When each echo of the last batch was complete.
    completed: Vec<Instant>,
    /// Write and read at most [`POLITE_IO`] at a time, giving the other connections their
    /// turn in between (for large messages beside small ones).
    polite: bool,
}

/// The most a polite connection writes or reads before the generator's other connections
/// get a turn.
const POLITE_IO: usize = 64 << 10;

impl Echoer {
    pub(crate) fn new((stream, codec): (Stream, Option<Codec>), seed: u64) -> Self {
        Self {
            stream,
            codec,
            rng: Rng(seed | 1),
            frame: Vec::new(),
            expected: Vec::new(),
            inbuf: Vec::new(),
            filled: 0,
            seq: 0,
            built: None,
            completed: Vec::new(),
            polite: false,
        }
    }

    /// Sends `count` binary messages of `size` bytes at once and reads their echoes, verified
    /// unless `method` is [`Method::LoadTest`] (which also builds the batch only once). When
    /// each echo was complete is left in `completed`.
    pub(crate) async fn batch(&mut self, size: usize, count: usize, method: Method) -> Result<()> {
        if self.codec.is_some() {
            bail!("pipelined and load-test messages are uncompressed: drop --deflate");
        }
        let prebuilt = method == Method::LoadTest;
        if !prebuilt || self.built != Some((size, count)) {
            self.seq = self.seq.wrapping_add(1);
            let seq = self.seq;
            self.expected.clear();
            self.expected.extend((0..size).map(|i| seq.wrapping_add(i as u8)));
            self.frame.clear();
            for _ in 0..count {
                let key = (self.rng.next() as u32).to_be_bytes();
                wire::push_frame(&mut self.frame, 0x82, &self.expected, Some(key));
            }
            self.built = prebuilt.then_some((size, count));
        }
        self.write_and_read(size, count, !prebuilt).await
    }

    /// Sends one binary message of `size` bytes and verifies its echo.
    pub(crate) async fn round_trip(&mut self, size: usize) -> Result<()> {
        self.round_trip_with(size, Shape::default()).await
    }

    /// Sends one message of `size` bytes shaped as `shape` says and verifies its echo.
    pub(crate) async fn round_trip_with(&mut self, size: usize, shape: Shape) -> Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        self.expected.clear();
        let compressed = match self.codec.as_mut() {
            // Text for compression: lowercase letters, varying with the message.
            Some(codec) => {
                self.expected.extend((0..size).map(|i| b'a' + (seq as usize + i / 7) as u8 % 26));
                Some(codec.compress(&self.expected))
            }
            None => {
                self.expected.extend((0..size).map(|i| seq.wrapping_add(i as u8)));
                None
            }
        };
        let body = compressed.as_deref().unwrap_or(&self.expected);
        let size = body.len();
        self.frame.clear();
        if shape.ping {
            let key = (self.rng.next() as u32).to_be_bytes();
            wire::push_frame(&mut self.frame, 0x89, b"soak", Some(key));
        }
        // Fragments of the body (a compressed message is one frame: RSV1 on its first).
        let fragments = if compressed.is_some() { 1 } else { shape.fragments.clamp(1, 64) };
        let step = size.div_ceil(fragments).max(1);
        let pieces: Vec<&[u8]> =
            if body.is_empty() { vec![&[][..]] } else { body.chunks(step).collect() };
        for (i, piece) in pieces.iter().enumerate() {
            let fin = if i + 1 == pieces.len() { 0x80 } else { 0 };
            let opcode = match (i, compressed.is_some()) {
                (0, true) => 0x41,
                (0, false) => 0x02,
                _ => 0x00,
            };
            let key = (self.rng.next() as u32).to_be_bytes();
            wire::push_frame(&mut self.frame, fin | opcode, piece, Some(key));
        }
        let size = self.expected.len();
        if shape.write_first {
            // The whole message first, then the echo: a client that only reads once written.
            self.stream.write_all(&self.frame).await.context("writing a message")?;
            self.stream.flush().await?;
            self.frame.clear();
            if !shape.read_after.is_zero() {
                Timer::after(shape.read_after).await;
            }
        }
        // Write and read concurrently: a large message is echoed while it is still being sent.
        self.write_and_read(size, 1, true).await
    }

    /// Writes `frame` while reading `count` echoes of `size` bytes; when each was complete
    /// goes to `completed`.
    async fn write_and_read(&mut self, size: usize, count: usize, verify: bool) -> Result<()> {
        let Self { stream, frame, expected, inbuf, filled, codec, completed, polite, .. } = self;
        completed.clear();
        let polite = *polite;
        let mut echo = Echo { expected, inbuf, filled, codec, size, verify, polite };
        match stream {
            MaybeTls::Plain(stream) => {
                let stream = &*stream;
                let write = async {
                    let mut w = stream;
                    if !polite {
                        return w.write_all(frame).await.context("writing a frame");
                    }
                    for piece in frame.chunks(POLITE_IO) {
                        w.write_all(piece).await.context("writing a frame")?;
                        futures_lite::future::yield_now().await;
                    }
                    Ok(())
                };
                let read = async {
                    for _ in 0..count {
                        echo.read(stream).await?;
                        completed.push(Instant::now());
                    }
                    Ok(())
                };
                let (w, r) = futures_lite::future::zip(write, read).await;
                w?;
                r
            }
            // One TLS stream cannot be read and written at once here: the message goes out
            // first (for the sizes measured over TLS, a server reads all of it before it
            // blocks on the echo).
            MaybeTls::Tls(tls) => {
                tls.write_all(frame).await.context("writing a frame")?;
                tls.flush().await?;
                for _ in 0..count {
                    echo.read(&mut **tls).await?;
                    completed.push(Instant::now());
                }
                Ok(())
            }
        }
    }
}

/// Reading one echo: what it must be, and the generator's read space.
struct Echo<'a> {
    expected: &'a [u8],
    inbuf: &'a mut Vec<u8>,
    filled: &'a mut usize,
    codec: &'a mut Option<Codec>,
    size: usize,
    /// Compare the echo with `expected` (else only its length counts).
    verify: bool,
    /// Read at most [`POLITE_IO`] at a time, and let the other connections go in between.
    polite: bool,
}

impl Echo<'_> {
    async fn read(&mut self, mut r: impl AsyncRead + Unpin) -> Result<()> {
        let (expected, size, verify, polite) = (self.expected, self.size, self.verify, self.polite);
        let (inbuf, filled, codec) = (&mut *self.inbuf, &mut *self.filled, &mut *self.codec);
        let mut got = 0usize;
        // A compressed echo (RSV1 on its first frame) is collected, then inflated.
        let mut compressed: Option<Vec<u8>> = None;
        // Accept the echo in any number of frames (fragmented or not).
        loop {
            // Parse complete frames in inbuf[..filled].
            let mut pos = 0;
            let mut done = false;
            while let Some(header) =
                wire::parse_header(&inbuf[pos..*filled], 64 << 20).map_err(anyhow::Error::msg)?
            {
                if header.mask.is_some() {
                    bail!("server sent a masked frame");
                }
                let opcode = header.opcode;
                let len = header.payload.len();
                if opcode == 0x8 {
                    bail!("server closed the connection");
                }
                let fin = header.fin;
                if opcode <= 2 {
                    let payload = &inbuf[pos..][header.payload.clone()];
                    if opcode != 0 && header.rsv & 0b100 != 0 {
                        compressed = Some(Vec::new());
                    }
                    if let Some(data) = compressed.as_mut() {
                        data.extend_from_slice(payload);
                    } else {
                        if verify && expected.get(got..got + len) != Some(payload) {
                            bail!("echo differs at byte {got}");
                        }
                        got += len;
                    }
                }
                pos += header.payload.end;
                if fin && opcode <= 2 {
                    if let Some(data) = compressed.take() {
                        let codec =
                            codec.as_mut().context("compressed echo without negotiation")?;
                        let inflated =
                            codec.inflate(&data, 64 << 20).map_err(anyhow::Error::msg)?;
                        if inflated != *expected {
                            bail!("inflated echo differs");
                        }
                        got = size;
                    }
                }
                if fin && opcode <= 2 {
                    if got != size {
                        bail!("an echo of {got} bytes for a message of {size}");
                    }
                    done = true;
                    break;
                }
            }
            // Keep what is not parsed yet at the front (nothing to move while a frame is
            // still incomplete: a large echo arrives in many reads).
            if pos > 0 {
                inbuf.copy_within(pos..*filled, 0);
                *filled -= pos;
            }
            if done {
                return Ok(());
            }
            if *filled == inbuf.len() {
                // Room for the whole echo plus headers, up to 64 KiB more per read.
                let want = (*filled + (size + 16).clamp(4 << 10, 64 << 10)).next_power_of_two();
                inbuf.resize(want, 0);
            }
            let room = match polite {
                true => inbuf.len().min(*filled + POLITE_IO),
                false => inbuf.len(),
            };
            let n = r.read(&mut inbuf[*filled..room]).await?;
            if n == 0 {
                bail!("server closed the connection");
            }
            *filled += n;
            if polite {
                futures_lite::future::yield_now().await;
            }
        }
    }
}

/// Total CPU time (user + system) of a process, from /proc/PID/stat, in microseconds.
pub(crate) fn cpu_time_us(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')').context("malformed stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11).context("no utime")?.parse()?;
    let stime: f64 = fields.get(12).context("no stime")?.parse()?;
    // Clock ticks are 100 per second on Linux.
    Ok((utime + stime) * 10_000.0)
}

/// Resident set size of a process, from /proc/PID/status, in bytes.
pub(crate) fn rss_bytes(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS")?;
    let kib: u64 = line.split_whitespace().nth(1).context("malformed VmRSS")?.parse()?;
    Ok(kib * 1024)
}

/// Runs the load and measures the window after the warm-up.
pub(crate) fn run(options: &LoadOptions) -> Result<LoadReport> {
    let ex = smol::LocalExecutor::new();
    smol::block_on(ex.run(async {
        let mut echoers = Vec::with_capacity(options.connections + options.large);
        for i in 0..options.connections + options.large {
            echoers.push(Echoer::new(
                connect_with(options.addr, options.deflate, options.tls.as_ref()).await?,
                0x9e37_79b9_7f4a_7c15 ^ i as u64,
            ));
        }
        let start = Instant::now();
        let measure_from = start + options.warmup;
        let end = measure_from + options.duration;
        let small: Rc<RefCell<Vec<u32>>> = Rc::default();
        let large: Rc<RefCell<Vec<u32>>> = Rc::default();
        let inflight = options.inflight.max(1);
        let small_count = options.connections.max(1);
        let method = options.method;
        let mut tasks = Vec::new();
        for (i, mut echoer) in echoers.into_iter().enumerate() {
            let is_large = i >= options.connections;
            let latencies = Rc::clone(if is_large { &large } else { &small });
            echoer.polite = is_large;
            // Large messages are built once and their echoes not compared, so that the
            // generator's own work on them (16 MiB masked and compared per message, many
            // milliseconds) does not show as latency of the small ones.
            let (size, count, method) = match is_large {
                true => (options.large_size, 1, Method::LoadTest),
                false => (options.size, inflight, method),
            };
            let interval = options.interval.filter(|_| !is_large);
            tasks.push(ex.spawn(async move {
                // Paced connections start spread over one interval.
                let mut next = interval
                    .map(|every| start + every.mul_f64((i as f64 / small_count as f64).fract()));
                loop {
                    if let (Some(at), Some(every)) = (next.as_mut(), interval) {
                        Timer::at(*at).await;
                        // Late (the echo took longer): the next goes one interval from now,
                        // without a burst to catch up.
                        *at = (*at).max(Instant::now()) + every;
                    }
                    let sent = Instant::now();
                    if sent >= end {
                        return Ok::<(), anyhow::Error>(());
                    }
                    if count == 1 && method == Method::Verify {
                        echoer.round_trip(size).await?;
                    } else {
                        echoer.batch(size, count, method).await?;
                    }
                    if sent >= measure_from {
                        let mut latencies = latencies.borrow_mut();
                        for done in echoer.completed.drain(..) {
                            let us = done.duration_since(sent).as_micros();
                            latencies.push(us.min(u128::from(u32::MAX)) as u32);
                        }
                    }
                }
            }));
        }
        // Read the server's CPU time, and ours, at the start and end of the window.
        let pid = options.server_pid;
        Timer::at(measure_from).await;
        let cpu_before = pid.map(cpu_time_us).transpose()?;
        let own_before = (cpu_time_us(std::process::id())?, Instant::now());
        Timer::at(end).await;
        let cpu_after = pid.map(cpu_time_us).transpose()?;
        let own_after = (cpu_time_us(std::process::id())?, Instant::now());
        for task in tasks {
            task.await?;
        }
        let percentile = |sorted: &[u32], p: f64| match sorted.len() {
            0 => 0.0,
            n => sorted[((n - 1) as f64 * p) as usize] as f64,
        };
        let mut small = small.take();
        let mut large = large.take();
        small.sort_unstable();
        large.sort_unstable();
        let messages = small.len() as u64;
        if messages == 0 {
            bail!("no message completed in the measured window");
        }
        let cpu = cpu_before.zip(cpu_after).map(|(a, b)| (b - a) / messages as f64);
        // The whole process (async-io's thread is idle here), over the time between reads.
        let window_us = own_after.1.duration_since(own_before.1).as_secs_f64() * 1e6;
        Ok(LoadReport {
            messages,
            seconds: options.duration.as_secs_f64(),
            p50_us: percentile(&small, 0.5),
            p99_us: percentile(&small, 0.99),
            server_cpu_us_per_msg: cpu,
            load_cpu_percent: (own_after.0 - own_before.0) / window_us * 100.0,
            large_messages: large.len() as u64,
            large_p99_us: percentile(&large, 0.99),
        })
    }))
}

/// Opens `count` idle connections and reports the server's RSS growth per connection, then
/// checks that every connection still echoes.
pub(crate) fn idle(
    addr: SocketAddr,
    count: usize,
    pid: u32,
    deflate: bool,
    tls: Option<&Arc<ClientConfig>>,
) -> Result<(u64, u64, f64)> {
    let ex = smol::LocalExecutor::new();
    smol::block_on(ex.run(async {
        let before = rss_bytes(pid)?;
        let mut echoers = Vec::with_capacity(count);
        for i in 0..count {
            echoers.push(Echoer::new(
                connect_with(addr, deflate, tls)
                    .await
                    .with_context(|| format!("connection {i}"))?,
                i as u64 + 1,
            ));
        }
        // Let the server settle.
        Timer::after(Duration::from_secs(2)).await;
        let after = rss_bytes(pid)?;
        for echoer in &mut echoers {
            echoer.round_trip(20).await?;
        }
        if deflate {
            // With compression, codec state exists only once a message has gone through.
            Timer::after(Duration::from_secs(2)).await;
            let active = rss_bytes(pid)?;
            eprintln!(
                "after one compressed message each: {:.0} bytes per connection",
                active.saturating_sub(before) as f64 / count as f64
            );
        }
        let per_conn = after.saturating_sub(before) as f64 / count as f64;
        Ok((before, after, per_conn))
    }))
}

/// Opening handshakes (TCP, TLS with `tls`, WebSocket) per second: `concurrency` clients
/// connect, complete the handshake and drop the connection, again and again. Returns the
/// handshakes completed per second in the window after the warm-up and, with `pid`, the
/// server's CPU time per handshake in microseconds.
pub(crate) fn handshakes(
    addr: SocketAddr,
    tls: Option<&Arc<ClientConfig>>,
    concurrency: usize,
    warmup: Duration,
    window: Duration,
    pid: Option<u32>,
) -> Result<(f64, Option<f64>)> {
    let ex = smol::LocalExecutor::new();
    smol::block_on(ex.run(async {
        let measure_from = Instant::now() + warmup;
        let end = measure_from + window;
        let counted = Rc::new(RefCell::new(0u64));
        let tasks: Vec<_> = (0..concurrency)
            .map(|_| {
                let counted = Rc::clone(&counted);
                let tls = tls.cloned();
                ex.spawn(async move {
                    while Instant::now() < end {
                        let started = Instant::now();
                        let connection = connect_with(addr, false, tls.as_ref()).await?;
                        drop(connection);
                        if started >= measure_from && Instant::now() <= end {
                            *counted.borrow_mut() += 1;
                        }
                    }
                    Ok::<(), anyhow::Error>(())
                })
            })
            .collect();
        Timer::at(measure_from).await;
        let cpu_before = pid.map(cpu_time_us).transpose()?;
        Timer::at(end).await;
        let cpu_after = pid.map(cpu_time_us).transpose()?;
        for task in tasks {
            task.await?;
        }
        let count = *counted.borrow();
        if count == 0 {
            bail!("no handshake completed in the measured window");
        }
        let cpu = cpu_before.zip(cpu_after).map(|(a, b)| (b - a) / count as f64);
        Ok((count as f64 / window.as_secs_f64(), cpu))
    }))
}
