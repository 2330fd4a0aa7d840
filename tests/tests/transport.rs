//! End-to-end: ws-transport's `WebSocket` and split halves on the session layer — end of
//! stream, who closes TCP first, sends after failure, and cancellation at every await point.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use smol::{Async, Timer, future};
use ws_proto::{CloseCode, MessageKind};
use ws_tests::{RawClient, client_frame};
use ws_transport::{Config, Error, Message, Timeout, WebSocket, accept, connect_tcp};

type Ws = WebSocket<smol::net::TcpStream>;

/// A server thread that accepts one WebSocket and runs `serve` on it.
fn serve_one<T: Send + 'static>(
    config: Config,
    serve: impl FnOnce(Ws) -> future::Boxed<T> + Send + 'static,
) -> Result<(SocketAddr, std::thread::JoinHandle<Result<T>>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let thread = std::thread::spawn(move || {
        smol::block_on(async move {
            let listener = Async::new(listener)?;
            let (stream, _) = listener.accept().await?;
            let ws = accept(smol::net::TcpStream::from(stream), config).await?;
            Ok(serve(ws).await)
        })
    });
    Ok((addr, thread))
}

/// The README's server loop.
async fn readme_echo(ws: &mut Ws) -> std::result::Result<(), Error> {
    while let Some(message) = ws.recv().await? {
        ws.feed(message).await?;
    }
    Ok(())
}

#[test]
#[cfg(target_os = "linux")]
fn a_half_closed_client_is_echoed_and_closed_by_a_recv_send_server() -> Result<()> {
    // The WebSocket is kept until the client has seen the end of the stream, so the FIN it
    // sees is the session's, not the drop's.
    let (seen_tx, seen_rx) = async_channel::bounded::<()>(1);
    let (addr, server) = serve_one(Config::default(), move |mut ws| {
        Box::pin(async move {
            let result = readme_echo(&mut ws).await;
            let _ = seen_rx.recv().await;
            drop(ws);
            result
        })
    })?;
    let mut client = RawClient::connect(addr)?;
    client.stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    client.send_then_half_close(&client_frame(0x81, b"bye", [1, 2, 3, 4]))?;
    assert_eq!(client.read_message()?, (1, b"bye".to_vec()));
    assert_eq!(client.read_frame()?, None, "the server ends the stream");
    seen_tx.send_blocking(())?;
    let result = server.join().expect("server thread")?;
    assert!(matches!(result, Err(Error::Disconnected)), "{result:?}");
    Ok(())
}

#[test]
#[cfg(target_os = "linux")]
fn a_half_closed_client_is_echoed_and_closed_by_split_halves() -> Result<()> {
    // The halves are kept until the client has seen the end of the stream, as above.
    let (seen_tx, seen_rx) = async_channel::bounded::<()>(1);
    let (addr, server) = serve_one(Config::default(), move |ws| {
        Box::pin(async move {
            let (mut reader, writer) = ws.split();
            let result = async {
                while let Some(message) = reader.recv().await? {
                    writer.send(message).await?;
                }
                Ok::<(), Error>(())
            }
            .await;
            let _ = seen_rx.recv().await;
            drop((reader, writer));
            result
        })
    })?;
    let mut client = RawClient::connect(addr)?;
    client.stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    client.send_then_half_close(&client_frame(0x81, b"bye", [1, 2, 3, 4]))?;
    assert_eq!(client.read_message()?, (1, b"bye".to_vec()));
    assert_eq!(client.read_frame()?, None, "the server ends the stream");
    seen_tx.send_blocking(())?;
    let result = server.join().expect("server thread")?;
    assert!(matches!(result, Err(Error::Disconnected)), "{result:?}");
    Ok(())
}

/// A server that completes the handshake, answers the client's close frame, and then keeps
/// TCP open for `linger`: a client that follows §7.1.1 does not end TCP before it does.
/// Returns whether the client ended TCP first.
fn lingering_server(
    linger: Duration,
) -> Result<(SocketAddr, std::thread::JoinHandle<Result<bool>>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let thread = std::thread::spawn(move || {
        let ws = smol::block_on(async {
            let listener = Async::new(listener)?;
            let (stream, _) = listener.accept().await?;
            Ok::<_, anyhow::Error>(accept(stream, Config::default()).await?)
        })?;
        let (stream, conn) = ws.into_parts();
        ensure!(conn.buffered_input() == 0, "no frame before the close");
        let mut stream = stream.into_inner()?;
        stream.set_nonblocking(false)?;
        // The client's close frame: 2 header bytes, 4 of mask, 2 of code.
        let mut close = [0u8; 8];
        stream.read_exact(&mut close)?;
        ensure!(close[0] == 0x88, "expected a close frame, got {close:02x?}");
        stream.write_all(&[0x88, 0x02, 0x03, 0xe8])?;
        stream.set_read_timeout(Some(linger))?;
        let mut byte = [0u8; 1];
        let client_ended_first = match stream.read(&mut byte) {
            Ok(0) => true,
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
            other => anyhow::bail!("unexpected read after the close: {other:?}"),
        };
        stream.shutdown(std::net::Shutdown::Write)?;
        Ok(client_ended_first)
    });
    Ok((addr, thread))
}

#[test]
fn section_7_1_1_the_client_waits_for_the_server_to_end_tcp() -> Result<()> {
    let linger = Duration::from_millis(300);
    let (addr, server) = lingering_server(linger)?;
    let started = Instant::now();
    smol::block_on(async {
        let (mut ws, _) = connect_tcp(&format!("ws://{addr}/"), Config::default()).await?;
        ws.close(CloseCode::NORMAL, "").await?;
        Ok::<_, Error>(())
    })?;
    assert!(started.elapsed() >= linger, "close returned before the server ended TCP");
    assert!(!server.join().expect("server thread")?, "the client ended TCP first");
    Ok(())
}

#[test]
fn section_7_1_1_the_split_client_waits_for_the_server_to_end_tcp() -> Result<()> {
    let linger = Duration::from_millis(300);
    let (addr, server) = lingering_server(linger)?;
    let started = Instant::now();
    smol::block_on(async {
        let (ws, _) = connect_tcp(&format!("ws://{addr}/"), Config::default()).await?;
        let (mut reader, writer) = ws.split();
        writer.close(CloseCode::NORMAL, "").await?;
        assert_eq!(reader.recv().await?, None);
        Ok::<_, Error>(())
    })?;
    assert!(started.elapsed() >= linger, "recv returned before the server ended TCP");
    assert!(!server.join().expect("server thread")?, "the client ended TCP first");
    Ok(())
}

#[test]
fn sends_after_a_write_timeout_are_refused() -> Result<()> {
    let mut config = Config::default();
    config.write_timeout = Duration::from_millis(200);
    let (addr, server) = serve_one(config, |mut ws| {
        Box::pin(async move {
            let big = vec![0u8; 1 << 20];
            // The client never reads: the socket buffers fill and a send times out.
            let mut first_error = None;
            for _ in 0..64 {
                if let Err(err) = ws.send(big.clone()).await {
                    first_error = Some(err);
                    break;
                }
            }
            let again = ws.send("more").await;
            let fed = ws.feed(&b"more"[..]).await;
            (first_error, again, fed)
        })
    })?;
    let _client = RawClient::connect(addr)?;
    let (first, again, fed) = server.join().expect("server thread")?;
    assert!(matches!(first, Some(Error::Timeout(Timeout::Write))), "{first:?}");
    assert!(matches!(again, Err(Error::Closed)), "{again:?}");
    assert!(matches!(fed, Err(Error::Closed)), "{fed:?}");
    Ok(())
}

/// Messages of many sizes, in place (4 KiB and up) and copied.
fn messages() -> Vec<Message> {
    [0usize, 1, 125, 4095, 4096, 70_000, 1 << 20, 3, 300_000]
        .into_iter()
        .enumerate()
        .map(|(i, len)| {
            let data: Vec<u8> = (0..len).map(|j| (i * 31 + j) as u8).collect();
            if i % 2 == 0 { Message::Binary(data) } else { Message::Text("é".repeat(len / 2)) }
        })
        .collect()
}

/// [`messages`] with 4 MiB ones between them: more than loopback's socket buffers hold, so
/// that sends block part way while the peer does not read.
fn large_messages() -> Vec<Message> {
    messages().into_iter().flat_map(|m| [m, Message::Binary(vec![0x5a; 4 << 20])]).collect()
}

#[test]
fn recv_dropped_at_every_await_point_loses_nothing() -> Result<()> {
    let (addr, server) = serve_one(Config::default(), |mut ws| {
        Box::pin(async move {
            for message in messages() {
                ws.ping(b"p").await?;
                ws.send(message).await?;
            }
            ws.close(CloseCode::NORMAL, "").await
        })
    })?;
    let received = smol::block_on(async {
        let (mut ws, _) = connect_tcp(&format!("ws://{addr}/"), Config::default()).await?;
        let mut received = Vec::new();
        let mut dropped = 0;
        let deadline = Instant::now() + Duration::from_secs(20);
        // Every recv is polled once and dropped unless it is ready at once.
        while Instant::now() < deadline {
            match future::poll_once(ws.recv()).await {
                Some(Ok(Some(message))) => received.push(message),
                Some(Ok(None)) => {
                    ensure!(dropped > 0, "no recv was left pending: the test proves nothing");
                    return Ok(received);
                }
                Some(Err(err)) => return Err(anyhow::Error::new(err)),
                None => {
                    dropped += 1;
                    Timer::after(Duration::from_micros(200)).await;
                }
            }
        }
        anyhow::bail!("recv did not finish in time; {} messages so far", received.len())
    })?;
    server.join().expect("server thread")?.context("server")?;
    assert!(received == messages(), "messages lost, reordered or damaged");
    Ok(())
}

#[test]
fn sends_dropped_between_header_and_payload_do_not_corrupt_the_stream() -> Result<()> {
    let (addr, server) = serve_one(Config::default(), |mut ws| {
        Box::pin(async move {
            // Read nothing for a while, so that the client's sends block part way.
            Timer::after(Duration::from_millis(300)).await;
            let mut received = Vec::new();
            while let Some(message) = ws.recv().await? {
                received.push(message);
            }
            Ok::<_, Error>(received)
        })
    })?;
    let dropped = smol::block_on(async {
        let (mut ws, _) = connect_tcp(&format!("ws://{addr}/"), Config::default()).await?;
        let mut dropped = 0;
        for message in large_messages() {
            // Polled once, then dropped: a large message is then queued (header written
            // or not, payload part way) but not finished.
            if future::poll_once(ws.send(message.clone())).await.is_none() {
                dropped += 1;
                // Finish it before the next send, whose first poll then always queues.
                ws.flush().await?;
            }
        }
        ws.flush().await?;
        ws.close(CloseCode::NORMAL, "").await?;
        Ok::<_, Error>(dropped)
    })?;
    let received = server.join().expect("server thread")?.context("server")?;
    assert!(dropped > 0, "no send was left pending: the test proves nothing");
    // Each send was polled once: it queued its message before it was dropped, and the
    // next call that wrote finished it.
    assert!(received == large_messages(), "messages lost, reordered or damaged");
    Ok(())
}

#[test]
fn the_split_reader_ends_when_the_writer_gives_up_on_the_stream() -> Result<()> {
    // No keepalive or idle timer: only the writer's failure can end the reader's wait.
    let mut config = Config::default();
    config.write_timeout = Duration::from_millis(200);
    let (addr, server) = serve_one(config, |ws| {
        Box::pin(async move {
            let (mut reader, writer) = ws.split();
            let reading = smol::spawn(async move { reader.recv().await });
            let big = vec![0u8; 1 << 20];
            let mut failed = None;
            for _ in 0..64 {
                if let Err(err) = writer.send(big.clone()).await {
                    failed = Some(err);
                    break;
                }
            }
            // The writer is still alive (its failure, not its drop, must end the wait).
            let started = Instant::now();
            let read = future::or(async { Some(reading.await) }, async {
                Timer::after(Duration::from_secs(5)).await;
                None
            })
            .await;
            drop(writer);
            (failed, read, started.elapsed())
        })
    })?;
    let _client = RawClient::connect(addr)?;
    let (failed, read, waited) = server.join().expect("server thread")?;
    assert!(matches!(failed, Some(Error::Timeout(Timeout::Write))), "{failed:?}");
    let read = read.context("the reader still waits after the writer gave up")?;
    assert!(matches!(read, Err(Error::Closed)), "{read:?}");
    assert!(waited < Duration::from_secs(1), "the reader took {waited:?}");
    Ok(())
}

#[test]
fn an_idle_websocket_holds_no_buffer() -> Result<()> {
    let (addr, server) = serve_one(Config::default(), |mut ws| {
        Box::pin(async move {
            // A message, then a read that finds nothing: the connection is idle.
            let message = ws.recv().await?;
            let read = future::poll_once(ws.read_more()).await;
            Ok::<_, Error>((message, read.is_none(), ws.connection().buffer_capacity()))
        })
    })?;
    let mut client = RawClient::connect(addr)?;
    client.send_raw(&client_frame(0x81, &[b'x'; 3000], [1, 2, 3, 4]))?;
    let (message, pending, held) = server.join().expect("server thread")??;
    ensure!(message.is_some());
    ensure!(pending, "the second read found input");
    ensure!(held == 0, "an idle WebSocket holds {held} bytes of buffers");
    Ok(())
}

/// A binary echo loop allocates nothing per small message: the buffer of a message fed back
/// takes the next one received. An idle connection keeps that buffer only while it is small
/// (`ws_proto::RECYCLED_IDLE_MAX`): the buffer of a larger message echoed replaces it, and
/// is freed when the connection goes idle.
#[test]
fn an_echo_loop_reuses_the_buffer_it_fed_back() -> Result<()> {
    // The server says when it has seen the connection idle; the client sends on after that.
    let (idle_tx, idle_rx) = std::sync::mpsc::channel();
    let (addr, server) = serve_one(Config::default(), move |mut ws| {
        Box::pin(async move {
            let mut seen = Vec::new();
            for _ in 0..3 {
                let message = ws.recv().await?.context("the client closed")?;
                seen.push((message.kind(), message.capacity()));
                ws.feed(message).await?;
                ws.flush().await?;
            }
            // The client sends nothing until told: the connection is idle.
            let idle = future::poll_once(ws.read_more()).await.is_none();
            let held_small = ws.connection().buffer_capacity();
            idle_tx.send(())?;
            let message = ws.recv().await?.context("the client closed")?;
            ws.feed(message).await?;
            ws.flush().await?;
            let idle_after_large = future::poll_once(ws.read_more()).await.is_none();
            let held_large = ws.connection().buffer_capacity();
            idle_tx.send(())?;
            Ok::<_, anyhow::Error>((seen, idle && idle_after_large, held_small, held_large))
        })
    })?;
    let mut client = RawClient::connect(addr)?;
    // The first is the longest: the others fit in its buffer, text as well as binary.
    for (opcode, payload) in
        [(0x82, &b"the first message"[..]), (0x82, b"second"), (0x81, b"third")]
    {
        client.send(opcode, payload)?;
        let echo = client.read_frame()?.context("no echo")?;
        ensure!(echo.payload == payload, "echo of {payload:?}: {echo:?}");
    }
    idle_rx.recv_timeout(Duration::from_secs(20))?;
    client.send(0x82, &[7; 1000])?;
    let echo = client.read_frame()?.context("no echo")?;
    ensure!(echo.payload == [7; 1000], "echo of 1000 bytes");
    idle_rx.recv_timeout(Duration::from_secs(20))?;
    let (seen, idle, held_small, held_large) = server.join().expect("server thread")??;
    // The second and third messages were received into the buffer of the first (a buffer of
    // their own would hold their length).
    let (binary, text) = (MessageKind::Binary, MessageKind::Text);
    ensure!(seen == [(binary, 17), (binary, 17), (text, 17)], "buffers of {seen:?} bytes");
    ensure!(idle, "a read after the echoes found input");
    ensure!(
        (1..=ws_proto::RECYCLED_IDLE_MAX).contains(&held_small),
        "an idle echo of small messages holds {held_small} bytes"
    );
    ensure!(held_large == 0, "an idle echo of 1000 bytes holds {held_large} bytes");
    Ok(())
}

/// A stream that records each write and never has input.
#[derive(Default)]
struct Recorder {
    writes: Vec<Vec<u8>>,
}

impl smol::io::AsyncRead for Recorder {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &mut [u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Pending
    }
}

impl smol::io::AsyncWrite for Recorder {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.get_mut().writes.push(buf.to_vec());
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// Replies fed to a peer that pipelines go out together: `recv` writes what is queued when
/// it is about to wait for input, not before each message already read. Sixteen messages
/// read at once, sixteen echoes fed, one write.
#[test]
fn replies_to_pipelined_messages_go_out_in_one_write() -> Result<()> {
    let payload = |i: u8| [b'a' + i; 20];
    let input: Vec<u8> =
        (0..16u8).flat_map(|i| client_frame(0x82, &payload(i), [1, 2, 3, i])).collect();
    let conn = ws_proto::Connection::server(ws_proto::ProtocolConfig::default());
    let mut ws = WebSocket::from_parts(Recorder::default(), conn, Config::default(), &input);
    future::block_on(async {
        for i in 0..16u8 {
            let message = ws.recv().await?.context("a message")?;
            ensure!(message.as_bytes() == payload(i), "message {i}");
            ensure!(ws.get_ref().writes.is_empty(), "a write before message {i} was taken");
            ws.feed(message).await?;
        }
        // Every message read is taken: the next recv writes the echoes, then waits.
        ensure!(future::poll_once(ws.recv()).await.is_none(), "recv did not wait for input");
        Ok(())
    })?;
    let writes = &ws.get_ref().writes;
    ensure!(writes.len() == 1, "{} writes for 16 echoes", writes.len());
    let echoes: Vec<u8> =
        (0..16u8).flat_map(|i| ws_tests::unmasked_frame(0x82, &payload(i))).collect();
    ensure!(writes[0] == echoes, "the write is not the 16 echoes in order");
    Ok(())
}

/// A ping read together with messages is answered at once, not only once the application
/// has taken the messages after it (which may take longer than the peer's pong timeout).
#[test]
fn a_ping_read_with_messages_is_answered_before_they_are_taken() -> Result<()> {
    let mut input = client_frame(0x89, b"are you there", [9, 8, 7, 6]);
    input.extend((0..3u8).flat_map(|i| client_frame(0x82, &[i; 20], [1, 2, 3, i])));
    let conn = ws_proto::Connection::server(ws_proto::ProtocolConfig::default());
    let mut ws = WebSocket::from_parts(Recorder::default(), conn, Config::default(), &input);
    let message = future::block_on(ws.recv())?.context("a message")?;
    ensure!(message.as_bytes() == [0; 20], "the first message");
    let pong = ws_tests::unmasked_frame(0x8a, b"are you there");
    ensure!(ws.get_ref().writes == [pong], "the pong was not written with the first message");
    Ok(())
}
