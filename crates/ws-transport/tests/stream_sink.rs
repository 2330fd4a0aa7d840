//! `Stream` and `Sink`: futures' combinators on a WebSocket (`StreamExt::split`, `forward`,
//! `SinkExt::send`/`feed`/`close`, `select_all`), and what `feed` and `flush` mean.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use async_io::Async;
use futures_lite::{AsyncRead, AsyncWrite};
use futures_util::{Sink, SinkExt, StreamExt, stream};
use ws_proto::{CloseCode, Connection};
use ws_transport::{Config, Error, Message, WebSocket, accept, connect_tcp};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn listener() -> Result<(Async<TcpListener>, SocketAddr)> {
    let listener = Async::<TcpListener>::bind(([127, 0, 0, 1], 0))?;
    let addr = listener.get_ref().local_addr()?;
    Ok((listener, addr))
}

/// A server that echoes with `forward` over `StreamExt::split`'s halves; it returns how many
/// messages it echoed.
fn forwarding_server(listener: Async<TcpListener>) -> smol::Task<Result<usize>> {
    smol::spawn(async move {
        let (stream, _) = listener.accept().await?;
        let ws = accept(smol::net::TcpStream::from(stream), Config::default()).await?;
        // futures' split (the inherent `split` gives this crate's reader and writer).
        let (sink, stream) = StreamExt::split(ws);
        let count = Arc::new(Mutex::new(0));
        let counted = Arc::clone(&count);
        let echoes = stream.inspect(move |_| *counted.lock().unwrap() += 1);
        // forward ends when the stream does (the client's close), then closes the sink.
        echoes.forward(sink).await?;
        let echoed = *count.lock().unwrap();
        Ok(echoed)
    })
}

#[test]
fn forward_echoes_over_split_halves_and_the_sink_closes() -> Result {
    smol::block_on(async {
        let (listener, addr) = listener()?;
        let server = forwarding_server(listener);
        let (mut ws, _) = connect_tcp(&format!("ws://{addr}/"), Config::default()).await?;
        let messages =
            [Message::from("one"), Message::Binary(vec![2; 200_000]), Message::from("three")];
        for message in &messages {
            SinkExt::send(&mut ws, message.clone()).await?;
            assert_eq!(ws.next().await.transpose()?, Some(message.clone()));
        }
        // feed three, one flush, then the echoes in order.
        for message in &messages {
            ws.feed(message.clone()).await?;
        }
        SinkExt::flush(&mut ws).await?;
        for message in &messages {
            assert_eq!(ws.next().await.transpose()?, Some(message.clone()));
        }
        // The sink's close is the close handshake: the server's stream ends, forward closes
        // its sink, and ours completes with the server's 1000.
        SinkExt::close(&mut ws).await?;
        assert_eq!(ws.peer_close().map(|(code, _)| code), Some(CloseCode::NORMAL));
        assert!(ws.next().await.is_none(), "the stream ends after the close");
        assert!(ws.next().await.is_none(), "and stays ended");
        let echoed = server.await?;
        assert_eq!(echoed, 6);
        // Sending after the close is refused.
        assert!(matches!(SinkExt::send(&mut ws, Message::from("late")).await, Err(Error::Closed)));
        Ok(())
    })
}

#[test]
fn select_all_merges_several_connections() -> Result {
    smol::block_on(async {
        let (listener, addr) = listener()?;
        let server = smol::spawn(async move {
            let mut sockets = Vec::new();
            for _ in 0..3 {
                let (stream, _) = listener.accept().await?;
                sockets.push(accept(smol::net::TcpStream::from(stream), Config::default()).await?);
            }
            // Every message from any of the three, as one stream.
            let all: Vec<Message> =
                stream::select_all(sockets).take(3).map(|m| m.unwrap()).collect().await;
            Ok::<_, Error>(all)
        });
        let mut clients = Vec::new();
        for i in 0..3 {
            let (mut ws, _) = connect_tcp(&format!("ws://{addr}/"), Config::default()).await?;
            ws.send(Message::Text(format!("from {i}"))).await?;
            clients.push(ws);
        }
        let mut got: Vec<String> = server
            .await?
            .into_iter()
            .map(|m| String::from_utf8(m.as_bytes().to_vec()).unwrap())
            .collect();
        got.sort();
        assert_eq!(got, ["from 0", "from 1", "from 2"]);
        Ok(())
    })
}

#[test]
fn a_protocol_error_is_yielded_once_then_the_stream_ends() -> Result {
    smol::block_on(async {
        let (listener, addr) = listener()?;
        let peer = smol::spawn(async move {
            let mut stream = async_net::TcpStream::connect(addr).await?;
            use futures_lite::{AsyncReadExt, AsyncWriteExt};
            stream
                .write_all(
                    b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                      Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                )
                .await?;
            // Unmasked: a client must mask.
            stream.write_all(&[0x81, 0x02, b'h', b'i']).await?;
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest).await;
            Ok::<_, io::Error>(rest)
        });
        let (stream, _) = listener.accept().await?;
        let mut ws = accept(smol::net::TcpStream::from(stream), Config::default()).await?;
        assert!(matches!(ws.next().await, Some(Err(Error::Protocol(_)))));
        assert!(ws.next().await.is_none());
        assert!(ws.next().await.is_none());
        let rest = peer.await?;
        // The 101, then the close frame with 1002.
        assert!(rest.ends_with(&[0x88, 0x02, 0x03, 0xea]), "{rest:?}");
        Ok(())
    })
}

/// A stream that reads what the test gives it and records what is written to it.
#[derive(Clone, Default)]
struct Scripted(Arc<Mutex<Script>>);

#[derive(Default)]
struct Script {
    input: Vec<u8>,
    eof: bool,
    written: Vec<u8>,
    closed: bool,
    /// Once `input` is used up: reads of 4 KiB that still come (a peer that floods), and
    /// how many were taken.
    flood: usize,
    flooded: usize,
    /// Reads that returned input.
    reads: usize,
    /// The most one write takes (0: all it is given).
    write_max: usize,
}

impl AsyncRead for Scripted {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut script = self.0.lock().unwrap();
        if script.input.is_empty() && script.flooded < script.flood {
            script.flooded += 1;
            let n = buf.len().min(4096);
            buf[..n].fill(0x82);
            return Poll::Ready(Ok(n));
        }
        let n = buf.len().min(script.input.len());
        if n == 0 && !script.eof {
            // The test polls again after giving more.
            return Poll::Pending;
        }
        buf[..n].copy_from_slice(&script.input[..n]);
        script.input.drain(..n);
        script.reads += usize::from(n > 0);
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for Scripted {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut script = self.0.lock().unwrap();
        let n = if script.write_max == 0 { buf.len() } else { buf.len().min(script.write_max) };
        script.written.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.lock().unwrap().closed = true;
        Poll::Ready(Ok(()))
    }
}

/// A read is sized by what came together before it: a message larger than the last read is
/// taken in one read from the next time on, not a read that fills the buffer and another for
/// the rest (on a socket, each read is a system call).
#[test]
fn what_came_together_is_read_in_one_read_next_time() {
    let script = Scripted::default();
    let conn = Connection::server(ws_proto::ProtocolConfig::default());
    let mut ws = WebSocket::from_parts(script.clone(), conn, Config::default(), &[]);
    let mut cx = Context::from_waker(Waker::noop());
    // A masked binary frame (key 0) of 16 KiB: 16,392 bytes with its header.
    let mut frame = vec![0x82, 0xfe, 0x40, 0x00, 0, 0, 0, 0];
    frame.extend_from_slice(&[7; 16 << 10]);
    let mut reads = Vec::new();
    for _ in 0..4 {
        {
            let mut script = script.0.lock().unwrap();
            script.input.extend_from_slice(&frame);
            script.reads = 0;
        }
        match ws.poll_next_unpin(&mut cx) {
            Poll::Ready(Some(Ok(Message::Binary(data)))) => assert_eq!(data.len(), 16 << 10),
            other => panic!("{other:?}"),
        }
        // Nothing more has come.
        assert!(ws.poll_next_unpin(&mut cx).is_pending());
        reads.push(script.0.lock().unwrap().reads);
    }
    // The first grows the reads from 2 KiB; the others come in one read each.
    assert!(reads[0] > 1, "{reads:?}");
    assert_eq!(reads[1..], [1, 1, 1]);
}

/// A waker that counts its wake-ups.
#[derive(Default)]
struct CountingWaker(std::sync::atomic::AtomicUsize);

impl std::task::Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A message that arrives as fast as it is read is read in turns: each poll of `recv` reads
/// 1 MiB (and at most one read more), then has its task woken again and gives way, so that
/// the other tasks on its thread (small messages on other connections) wait one turn, not
/// the whole message.
#[test]
fn a_large_message_is_read_in_turns_that_wake_their_own_task() {
    const TURN: u64 = 1 << 20;
    let script = Scripted::default();
    let conn = Connection::server(ws_proto::ProtocolConfig::default());
    let config = Config::default();
    let read_max = config.read_buffer_size as u64;
    let mut ws = WebSocket::from_parts(script.clone(), conn, config, &[]);
    let wakes = Arc::new(CountingWaker::default());
    let waker = Waker::from(wakes.clone());
    let mut cx = Context::from_waker(&waker);
    // A masked binary frame (key 0) of 8 MiB, all of it readable at once.
    let len = 8usize << 20;
    let mut frame = vec![0x82, 0xff];
    frame.extend_from_slice(&(len as u64).to_be_bytes());
    frame.extend_from_slice(&[0; 4]);
    frame.extend_from_slice(&vec![7; len]);
    script.0.lock().unwrap().input = frame;
    let (mut turns, mut read_before) = (0, 0);
    let data = loop {
        match ws.poll_next_unpin(&mut cx) {
            Poll::Ready(Some(Ok(Message::Binary(data)))) => break data,
            Poll::Pending => {
                turns += 1;
                assert!(turns <= 32, "no progress");
                // It gave way with input left, and woke itself to come back for it.
                assert_eq!(wakes.0.load(std::sync::atomic::Ordering::Relaxed), turns);
                let read = ws.byte_counts().0;
                assert!(read - read_before >= TURN && read - read_before <= TURN + read_max);
                read_before = read;
            }
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(data.len(), len);
    // 8 MiB and 14 bytes of header, in turns of 1 MiB to 1 MiB + 64 KiB: the last ends it.
    assert!((7..=8).contains(&turns), "{turns} turns");
}

/// A large message written to a peer that reads as fast as it is written goes out in turns
/// too: each poll that writes writes 1 MiB (and at most one write more), then has its task
/// woken again and gives way.
#[test]
fn a_large_message_is_written_in_turns_that_wake_their_own_task() {
    const TURN: u64 = 1 << 20;
    const WRITE_MAX: usize = 64 << 10;
    let script = Scripted::default();
    script.0.lock().unwrap().write_max = WRITE_MAX;
    let conn = Connection::server(ws_proto::ProtocolConfig::default());
    let mut ws = WebSocket::from_parts(script.clone(), conn, Config::default(), &[]);
    let wakes = Arc::new(CountingWaker::default());
    let waker = Waker::from(wakes.clone());
    let mut cx = Context::from_waker(&waker);
    let len = 4usize << 20;
    ws.start_send(Message::Binary(vec![9; len])).unwrap();
    let (mut turns, mut written_before) = (0, 0);
    loop {
        match ws.poll_flush(&mut cx) {
            Poll::Ready(result) => break result.unwrap(),
            Poll::Pending => {
                turns += 1;
                assert!(turns <= 32, "no progress");
                assert_eq!(wakes.0.load(std::sync::atomic::Ordering::Relaxed), turns);
                let written = ws.byte_counts().1;
                let turn = written - written_before;
                assert!(turn >= TURN && turn <= TURN + WRITE_MAX as u64, "{turn}");
                written_before = written;
            }
        }
    }
    let written = std::mem::take(&mut script.0.lock().unwrap().written);
    // The header (10 bytes: 127, then a 64-bit length) and the payload, in turns of 1 MiB.
    assert_eq!(written.len(), 10 + len);
    assert!(written[10..].iter().all(|&b| b == 9));
    assert_eq!(turns, 3);
}

/// A runtime whose clock counts its readings.
#[derive(Debug, Default)]
struct CountingClock(std::sync::atomic::AtomicUsize);

impl ws_transport::Runtime for CountingClock {
    fn new_timer(&self, at: std::time::Instant) -> Pin<Box<dyn ws_transport::AsyncTimer>> {
        ws_transport::Runtime::new_timer(&ws_transport::Smol, at)
    }

    fn now(&self) -> std::time::Instant {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        std::time::Instant::now()
    }
}

/// A read records the time only where a deadline is timed from input (keepalive, idle
/// timeout): without, receiving and echoing costs no reading of the clock.
#[test]
fn reads_read_the_clock_only_for_deadlines_that_follow_input() {
    let clock_readings = |idle_timeout: Option<std::time::Duration>| {
        let clock = Arc::new(CountingClock::default());
        let mut config = Config::default();
        config.runtime = Some(clock.clone());
        config.idle_timeout = idle_timeout;
        let script = Scripted::default();
        let conn = Connection::server(ws_proto::ProtocolConfig::default());
        let mut ws = WebSocket::from_parts(script.clone(), conn, config, &[]);
        let mut cx = Context::from_waker(Waker::noop());
        // The first wait looks at the deadlines once.
        assert!(ws.poll_next_unpin(&mut cx).is_pending());
        let before = clock.0.load(std::sync::atomic::Ordering::Relaxed);
        for _ in 0..10 {
            // A masked binary frame (key 0) of 5 bytes, echoed.
            script.0.lock().unwrap().input.extend_from_slice(&[0x82, 0x85, 0, 0, 0, 0]);
            script.0.lock().unwrap().input.extend_from_slice(b"hello");
            match ws.poll_next_unpin(&mut cx) {
                Poll::Ready(Some(Ok(message))) => ws.start_send(message).unwrap(),
                other => panic!("{other:?}"),
            }
            assert!(ws.poll_next_unpin(&mut cx).is_pending());
        }
        assert_eq!(script.0.lock().unwrap().written.len(), 10 * 7);
        clock.0.load(std::sync::atomic::Ordering::Relaxed) - before
    };
    assert_eq!(clock_readings(None), 0);
    assert!(clock_readings(Some(std::time::Duration::from_secs(60))) >= 10);
}

/// `forward` over `StreamExt::split` stops at the sink's first error. A sink that refused at
/// once when the peer broke the protocol would make `forward` drop the WebSocket before the
/// peer's close frame came back: TCP reset under it. The refusal waits for the close
/// handshake instead, so `forward` ends only after the peer's close and the end of its side.
/// (The echo of "hi" is lost: `StreamExt::split`'s sink holds one message of its own, which
/// `forward` drops at the error.)
#[test]
fn forward_ends_after_the_close_handshake_when_the_peer_breaks_the_protocol() {
    use std::future::Future;
    let script = Scripted::default();
    // A masked "hi" (key 0), then a frame with the reserved opcode 3, in one read.
    script.0.lock().unwrap().input =
        vec![0x81, 0x82, 0, 0, 0, 0, b'h', b'i', 0x83, 0x80, 0, 0, 0, 0];
    let conn = Connection::server(Default::default());
    let ws = WebSocket::from_parts(script.clone(), conn, Config::default(), &[]);
    let (sink, stream) = StreamExt::split(ws);
    let mut forward = std::pin::pin!(stream.forward(sink));
    let mut cx = Context::from_waker(Waker::noop());
    assert!(forward.as_mut().poll(&mut cx).is_pending(), "forward ended before the close");
    {
        // Our close frame, and the end of our side (FIN) after it: the WebSocket reads on.
        let script = script.0.lock().unwrap();
        assert!(script.written.ends_with(&[0x88, 0x02, 0x03, 0xea]), "{:?}", script.written);
        assert!(script.closed);
    }
    // The peer's close frame (masked, key 0), and the end of its side.
    {
        let mut script = script.0.lock().unwrap();
        script.input.extend_from_slice(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xea]);
        script.eof = true;
    }
    // One wake-up for the two: the stream reports the failure, or the sink its refusal.
    match forward.as_mut().poll(&mut cx) {
        Poll::Ready(Err(Error::Protocol(_) | Error::Closed)) => {}
        other => panic!("forward: {other:?}"),
    }
    let script = script.0.lock().unwrap();
    assert!(script.input.is_empty(), "forward ended before reading the peer's close");
}

/// A stream that takes every write and records each one, and never has anything to read.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<usize>>>);

impl AsyncRead for Recorder {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Pending
    }
}

impl AsyncWrite for Recorder {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.0.lock().unwrap().push(buf.len());
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[test]
fn feed_queues_up_to_the_write_buffer_size_and_flush_writes_it_in_one_write() -> Result {
    smol::block_on(async {
        let writes = Recorder::default();
        let mut config = Config::default();
        config.write_buffer_size = 1000;
        let conn = Connection::server(Default::default());
        let mut ws = WebSocket::from_parts(writes.clone(), conn, config, &[]);
        // 10 frames of 102 bytes (2 of header): 1,020 bytes, queued, none written.
        for _ in 0..10 {
            SinkExt::feed(&mut ws, Message::Binary(vec![1; 100])).await?;
        }
        assert!(writes.0.lock().unwrap().is_empty(), "feed wrote: {:?}", writes.0.lock());
        // Past the write buffer size, the next feed writes what is queued first.
        SinkExt::feed(&mut ws, Message::Binary(vec![1; 100])).await?;
        assert_eq!(*writes.0.lock().unwrap(), [1020]);
        SinkExt::flush(&mut ws).await?;
        assert_eq!(*writes.0.lock().unwrap(), [1020, 102]);
        Ok(())
    })
}

#[test]
fn split_halves_are_a_stream_and_a_sink() -> Result {
    smol::block_on(async {
        let (listener, addr) = listener()?;
        let server = smol::spawn(async move {
            let (stream, _) = listener.accept().await?;
            let ws = accept(smol::net::TcpStream::from(stream), Config::default()).await?;
            let (reader, writer) = ws.split();
            // The writer's sink closes with a close frame once the reader's stream ends.
            reader.forward(writer).await?;
            Ok::<_, Error>(())
        });
        let (ws, _) = connect_tcp(&format!("ws://{addr}/"), Config::default()).await?;
        let (mut reader, mut writer) = ws.split();
        for message in [Message::from("a"), Message::Binary(vec![5; 300_000])] {
            SinkExt::send(&mut writer, message.clone()).await?;
            assert_eq!(reader.next().await.transpose()?, Some(message));
        }
        SinkExt::close(&mut writer).await?;
        // The server answers our close; our reader's stream then ends.
        assert!(reader.next().await.is_none());
        assert_eq!(reader.peer_close().map(|(code, _)| code), Some(CloseCode::NORMAL));
        server.await?;
        Ok(())
    })
}

/// A stream that takes nothing and has nothing to read, and keeps the last waker each
/// direction was polled with.
#[derive(Clone, Default)]
struct Stuck(Arc<Mutex<(Option<Waker>, Option<Waker>)>>);

impl AsyncRead for Stuck {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        _: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.0.lock().unwrap().0 = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl AsyncWrite for Stuck {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
        self.0.lock().unwrap().1 = Some(cx.waker().clone());
        Poll::Pending
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A task's waker that counts its wake-ups.
#[derive(Default)]
struct Task(std::sync::atomic::AtomicUsize);

impl std::task::Wake for Task {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

#[test]
fn both_halves_wait_on_the_stream_with_one_waker_that_wakes_them_both() {
    use std::sync::atomic::Ordering;
    let stuck = Stuck::default();
    let conn = Connection::server(Default::default());
    let ws = WebSocket::from_parts(stuck.clone(), conn, Config::default(), &[]);
    let (mut reader, mut writer) = ws.split();
    let (a, b) = (Arc::new(Task::default()), Arc::new(Task::default()));
    let (waker_a, waker_b) = (Waker::from(Arc::clone(&a)), Waker::from(Arc::clone(&b)));
    // Task A sends and waits for the stream to take it.
    let mut cx = Context::from_waker(&waker_a);
    Pin::new(&mut writer).start_send(Message::from("queued")).unwrap();
    assert!(Pin::new(&mut writer).poll_flush(&mut cx).is_pending());
    let seen_by_writer = stuck.0.lock().unwrap().1.clone().expect("the writer wrote");
    // Task B receives: it writes what is owed first, and waits too.
    let mut cx = Context::from_waker(&waker_b);
    assert!(reader.poll_recv(&mut cx).is_pending());
    let seen_by_reader = stuck.0.lock().unwrap().1.clone().expect("the reader wrote");
    // The stream saw one waker (replacing it would wake the other task, which would replace
    // it in turn, without end), and it wakes both tasks.
    assert!(seen_by_writer.will_wake(&seen_by_reader));
    assert!(!seen_by_reader.will_wake(&waker_a) && !seen_by_reader.will_wake(&waker_b));
    seen_by_reader.wake();
    assert_eq!((a.0.load(Ordering::Relaxed), b.0.load(Ordering::Relaxed)), (1, 1));
}

/// A clock the test moves, and timers on it.
#[derive(Debug, Clone)]
struct ManualClock(Arc<Mutex<std::time::Instant>>);

impl ManualClock {
    fn new() -> Self {
        Self(Arc::new(Mutex::new(std::time::Instant::now())))
    }

    fn advance(&self, by: std::time::Duration) {
        *self.0.lock().unwrap() += by;
    }
}

#[derive(Debug)]
struct ManualTimer(ManualClock, std::time::Instant);

impl ws_transport::AsyncTimer for ManualTimer {
    fn reset(self: Pin<&mut Self>, at: std::time::Instant) {
        self.get_mut().1 = at;
    }

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if *self.0.0.lock().unwrap() >= self.1 { Poll::Ready(()) } else { Poll::Pending }
    }
}

impl ws_transport::Runtime for ManualClock {
    fn new_timer(&self, at: std::time::Instant) -> Pin<Box<dyn ws_transport::AsyncTimer>> {
        Box::pin(ManualTimer(self.clone(), at))
    }

    fn now(&self) -> std::time::Instant {
        *self.0.lock().unwrap()
    }
}

/// After the close handshake a client reads (and drops) until the server ends TCP. A server
/// that floods instead gets a bounded number of reads per poll (the task yields), and the
/// close timeout ends it, on the runtime's clock, though reads never wait.
#[test]
fn a_peer_that_floods_after_its_close_cannot_hold_the_task_past_the_close_timeout() {
    let clock = ManualClock::new();
    let mut config = Config::default();
    config.close_timeout = std::time::Duration::from_secs(5);
    config.runtime = Some(Arc::new(clock.clone()));
    // The server's close frame, then 100,000 reads' worth of more.
    let script = Scripted::default();
    *script.0.lock().unwrap() =
        Script { input: vec![0x88, 0x02, 0x03, 0xe8], flood: 100_000, ..Script::default() };
    let reads = || script.0.lock().unwrap().flooded;
    let conn = Connection::client(Default::default(), || [0u8; 4]);
    let mut ws = WebSocket::from_parts(script.clone(), conn, config, &[]);
    let mut cx = Context::from_waker(Waker::noop());
    assert!(ws.poll_recv(&mut cx).is_pending(), "ended before the server's end or the timeout");
    let read = reads();
    assert!(read <= 32, "{read} reads in one poll");
    // Still flooding a second later: the task reads a bounded amount again and yields.
    clock.advance(std::time::Duration::from_secs(1));
    assert!(ws.poll_recv(&mut cx).is_pending());
    // Past the close timeout the WebSocket gives up on the server's end of TCP.
    clock.advance(std::time::Duration::from_secs(5));
    match ws.poll_recv(&mut cx) {
        Poll::Ready(Ok(None)) => {}
        other => panic!("after the close timeout: {other:?}"),
    }
    assert_eq!(ws.peer_close().map(|(code, _)| code), Some(CloseCode::NORMAL));
    assert!(reads() < 100, "it read on after the timeout");
}
