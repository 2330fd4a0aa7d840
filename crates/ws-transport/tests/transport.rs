//! Our client against our server over loopback, and the timers against peers that stall.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use async_io::Async;
use ws_proto::{CloseCode, Response};
use ws_transport::{Config, Error, Message, Timeout, WebSocket, accept, accept_with, connect_tcp};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A listener whose streams end their write side on close (smol::net), as the close
/// handshake needs.
fn listener() -> Result<(Async<TcpListener>, SocketAddr)> {
    let listener = Async::<TcpListener>::bind(([127, 0, 0, 1], 0))?;
    let addr = listener.get_ref().local_addr()?;
    Ok((listener, addr))
}

async fn accept_one(
    listener: &Async<TcpListener>,
    config: Config,
) -> std::result::Result<WebSocket<smol::net::TcpStream>, Error> {
    let (stream, _) = listener.accept().await?;
    accept(smol::net::TcpStream::from(stream), config).await
}

#[test]
fn client_and_server_exchange_messages_and_close() -> Result {
    smol::block_on(async {
        let (listener, addr) = listener()?;
        let server = smol::spawn(async move {
            let mut ws = accept_one(&listener, Config::default()).await?;
            let mut seen = Vec::new();
            while let Some(message) = ws.recv().await? {
                seen.push(message.clone());
                ws.send(message).await?;
            }
            Ok::<_, Error>((seen, ws.peer_close().map(|(c, r)| (c, r.to_string()))))
        });
        let (mut ws, accepted) =
            connect_tcp(&format!("ws://{addr}/chat"), Config::default()).await?;
        assert_eq!(accepted.protocol, None);
        let big = vec![7u8; 3 << 20];
        for message in
            [Message::from("hello"), Message::from(&b"\x00\xff"[..]), Message::Binary(big.clone())]
        {
            ws.send(message.clone()).await?;
            assert_eq!(ws.recv().await?, Some(message));
        }
        // Borrowed data above the in-place size goes through the output buffer instead.
        ws.send(&big[..10_000]).await?;
        assert_eq!(ws.recv().await?, Some(Message::Binary(big[..10_000].to_vec())));
        ws.ping(b"p").await?;
        ws.close(CloseCode::NORMAL, "bye").await?;
        assert_eq!(ws.peer_close().map(|(c, _)| c), Some(CloseCode::NORMAL));
        let (seen, close) = server.await?;
        assert_eq!(seen.len(), 4);
        assert_eq!(close, Some((CloseCode::NORMAL, "bye".to_string())));
        Ok(())
    })
}

/// `recv` skips polling a connection it found empty until input arrives; input fed through
/// `connection_mut` counts as input.
#[test]
fn recv_returns_a_message_fed_through_connection_mut() -> Result {
    smol::block_on(async {
        let (listener, addr) = listener()?;
        let server = smol::spawn(async move {
            let mut ws = accept_one(&listener, Config::default()).await?;
            ws.send("a").await?;
            while ws.recv().await?.is_some() {}
            Ok::<_, Error>(())
        });
        let (mut ws, _) = connect_tcp(&format!("ws://{addr}/"), Config::default()).await?;
        assert_eq!(ws.recv().await?, Some(Message::from("a")));
        // Nothing more comes from the server: recv finds the connection empty and waits.
        assert!(futures_lite::future::poll_once(ws.recv()).await.is_none());
        // A server's text frame "b" (FIN, opcode 1, unmasked, length 1), fed by hand.
        ws.connection_mut().receive_data(&[0x81, 0x01, b'b']);
        let fed = futures_lite::future::poll_once(ws.recv()).await;
        assert_eq!(fed.transpose()?, Some(Some(Message::from("b"))));
        ws.close(CloseCode::NORMAL, "").await?;
        server.await?;
        Ok(())
    })
}

#[test]
fn hook_picks_a_subprotocol_and_refuses_foreign_origins() -> Result {
    smol::block_on(async {
        let (listener, addr) = listener()?;
        let server = smol::spawn(async move {
            let mut results = Vec::new();
            for _ in 0..2 {
                let (stream, _) = listener.accept().await?;
                let result = accept_with(stream, Config::default(), |_request, upgrade| {
                    if upgrade.origin.as_deref() == Some("http://evil.example") {
                        return Err(Response::new(403).body("forbidden origin\n"));
                    }
                    Ok(upgrade.protocols.iter().find(|p| *p == "v2.chat").cloned())
                })
                .await;
                results.push(result.map(|_| ()));
            }
            Ok::<_, Error>(results)
        });
        let request = ws_proto::ClientRequest::new(addr.to_string(), "/")
            .protocol("v1.chat")
            .protocol("v2.chat");
        let stream = Async::<TcpStream>::connect(addr).await?;
        let (_ws, accepted) =
            ws_transport::connect_with(stream, request, Config::default()).await?;
        assert_eq!(accepted.protocol.as_deref(), Some("v2.chat"));

        let request = ws_proto::ClientRequest::new(addr.to_string(), "/")
            .header("Origin", "http://evil.example");
        let stream = Async::<TcpStream>::connect(addr).await?;
        let refused = ws_transport::connect_with(stream, request, Config::default()).await;
        assert!(
            matches!(refused, Err(Error::Response(ws_proto::ResponseError::Status(403)))),
            "{refused:?}"
        );
        let results = server.await?;
        assert!(results[0].is_ok());
        assert!(matches!(results[1], Err(Error::Refused(403))));
        Ok(())
    })
}

#[test]
fn split_halves_read_and_write_concurrently() -> Result {
    smol::block_on(async {
        let (listener, addr) = listener()?;
        let server = smol::spawn(async move {
            let mut ws = accept_one(&listener, Config::default()).await?;
            while let Some(message) = ws.recv().await? {
                ws.send(message).await?;
            }
            Ok::<_, Error>(())
        });
        let (ws, _) = connect_tcp(&format!("ws://{addr}/"), Config::default()).await?;
        let (mut reader, writer) = ws.split();
        let writer2 = writer.clone();
        let sending = smol::spawn(async move {
            for i in 0..200u32 {
                writer2.send(Message::Binary(i.to_be_bytes().to_vec())).await?;
            }
            Ok::<_, Error>(())
        });
        for i in 0..200u32 {
            assert_eq!(reader.recv().await?, Some(Message::Binary(i.to_be_bytes().to_vec())));
        }
        sending.await?;
        writer.close(CloseCode::NORMAL, "").await?;
        assert_eq!(reader.recv().await?, None);
        server.await?;
        Ok(())
    })
}

/// A raw TCP peer that completes the handshake and then stays silent.
fn silent_client(addr: SocketAddr) -> Result<TcpStream> {
    let mut stream = TcpStream::connect(addr)?;
    stream.write_all(
        format!(
            "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    )?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte)?;
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(stream)
}

/// Reads the raw frames a silent peer receives until the server ends the stream.
fn frames_until_eof(mut stream: TcpStream) -> Vec<(u8, Vec<u8>)> {
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    let mut frames = Vec::new();
    let mut pos = 0;
    while pos + 2 <= bytes.len() {
        let len = usize::from(bytes[pos + 1] & 0x7f);
        frames.push((bytes[pos] & 0xf, bytes[pos + 2..(pos + 2 + len).min(bytes.len())].to_vec()));
        pos += 2 + len;
    }
    frames
}

#[test]
fn close_times_out_when_the_peer_never_answers() -> Result {
    let (listener, addr) = listener()?;
    let peer = std::thread::spawn(move || silent_client(addr).map(frames_until_eof));
    let mut config = Config::default();
    config.close_timeout = Duration::from_millis(500);
    smol::block_on(async {
        let mut ws = accept_one(&listener, config).await?;
        let started = Instant::now();
        let result = ws.close(CloseCode::GOING_AWAY, "").await;
        assert!(matches!(result, Err(Error::Timeout(Timeout::Close))), "{result:?}");
        assert!(
            started.elapsed() >= Duration::from_millis(450)
                && started.elapsed() < Duration::from_secs(3)
        );
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    })?;
    let frames = peer.join().expect("peer thread").map_err(|e| e.to_string())?;
    assert_eq!(frames, [(0x8, 1001u16.to_be_bytes().to_vec())]);
    Ok(())
}

#[test]
fn keepalive_fails_a_peer_that_never_answers_pings() -> Result {
    let (listener, addr) = listener()?;
    let peer = std::thread::spawn(move || silent_client(addr).map(frames_until_eof));
    let mut config = Config::default();
    config.ping_interval = Some(Duration::from_millis(200));
    config.pong_timeout = Duration::from_millis(300);
    smol::block_on(async {
        let mut ws = accept_one(&listener, config).await?;
        let started = Instant::now();
        let result = ws.recv().await;
        assert!(matches!(result, Err(Error::Timeout(Timeout::Pong))), "{result:?}");
        assert!(started.elapsed() >= Duration::from_millis(450), "{:?}", started.elapsed());
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    })?;
    let frames = peer.join().expect("peer thread").map_err(|e| e.to_string())?;
    assert_eq!(frames[0], (0x9, b"keepalive".to_vec()));
    assert_eq!(frames[1].0, 0x8);
    assert_eq!(frames[1].1[..2], 1011u16.to_be_bytes());
    Ok(())
}

#[test]
fn keepalive_keeps_an_answering_peer() -> Result {
    smol::block_on(async {
        let (listener, addr) = listener()?;
        let mut config = Config::default();
        config.ping_interval = Some(Duration::from_millis(100));
        config.pong_timeout = Duration::from_millis(200);
        let server = smol::spawn(async move {
            let mut ws = accept_one(&listener, config).await?;
            let started = Instant::now();
            let message = ws.recv().await?;
            Ok::<_, Error>((message, started.elapsed()))
        });
        let (ws, _) = connect_tcp(&format!("ws://{addr}/"), Config::default()).await?;
        let (mut reader, writer) = ws.split();
        // The reader answers pings while it waits.
        let reading = smol::spawn(async move { reader.recv().await });
        async_io::Timer::after(Duration::from_millis(800)).await;
        writer.send("still alive").await?;
        // Eight ping intervals passed; the server kept the connection and got the message.
        let (message, waited) = server.await?;
        assert_eq!(message, Some(Message::from("still alive")));
        assert!(waited >= Duration::from_millis(750), "{waited:?}");
        drop(reading.cancel().await);
        Ok(())
    })
}

#[test]
fn idle_timeout_closes_with_1001() -> Result {
    let (listener, addr) = listener()?;
    let peer = std::thread::spawn(move || silent_client(addr).map(frames_until_eof));
    let mut config = Config::default();
    config.idle_timeout = Some(Duration::from_millis(300));
    config.close_timeout = Duration::from_millis(300);
    smol::block_on(async {
        let mut ws = accept_one(&listener, config).await?;
        let result = ws.recv().await;
        assert!(matches!(result, Err(Error::Timeout(Timeout::Close))), "{result:?}");
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    })?;
    let frames = peer.join().expect("peer thread").map_err(|e| e.to_string())?;
    assert_eq!(frames[0].0, 0x8);
    assert_eq!(frames[0].1[..2], 1001u16.to_be_bytes());
    Ok(())
}

#[test]
fn a_protocol_violation_is_an_error_after_the_close_frame_is_sent() -> Result {
    let (listener, addr) = listener()?;
    let peer = std::thread::spawn(move || -> Result<Vec<(u8, Vec<u8>)>> {
        let mut stream = silent_client(addr)?;
        stream.write_all(&[0x81, 0x02, b'h', b'i'])?; // unmasked: a client must mask
        Ok(frames_until_eof(stream))
    });
    smol::block_on(async {
        let mut ws = accept_one(&listener, Config::default()).await?;
        let result = ws.recv().await;
        assert!(
            matches!(result, Err(Error::Protocol(ws_proto::ProtocolError::UnmaskedFrame))),
            "{result:?}"
        );
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    })?;
    let frames = peer.join().expect("peer thread").map_err(|e| e.to_string())?;
    assert_eq!(frames, [(0x8, 1002u16.to_be_bytes().to_vec())]);
    Ok(())
}

#[test]
fn handshake_deadline_applies_to_a_silent_client() -> Result {
    let (listener, addr) = listener()?;
    let _peer = TcpStream::connect(addr)?;
    let mut config = Config::default();
    config.handshake_timeout = Duration::from_millis(300);
    smol::block_on(async {
        let started = Instant::now();
        let result = accept_one(&listener, config).await;
        assert!(matches!(result, Err(Error::Timeout(Timeout::Handshake))), "{result:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
        Ok(())
    })
}

#[test]
fn permessage_deflate_between_our_client_and_our_server() -> Result {
    smol::block_on(async {
        let (listener, addr) = listener()?;
        let mut config = Config::default();
        config.compression = Some(ws_proto::DeflateConfig::default());
        let server_config = config.clone();
        let server = smol::spawn(async move {
            let mut ws = accept_one(&listener, server_config).await?;
            assert!(ws.connection().compression());
            let (read_before, _) = ws.byte_counts();
            while let Some(message) = ws.recv().await? {
                ws.send(message).await?;
            }
            Ok::<_, Error>(ws.byte_counts().0 - read_before)
        });
        let (mut ws, accepted) = connect_tcp(&format!("ws://{addr}/"), config).await?;
        assert_eq!(accepted.extensions[0].name, "permessage-deflate");
        assert!(ws.connection().compression());
        let text = "compressible ".repeat(10_000);
        for _ in 0..3 {
            ws.send(text.as_str()).await?;
            assert_eq!(ws.recv().await?, Some(Message::Text(text.clone())));
        }
        ws.send(Message::Binary(vec![])).await?;
        assert_eq!(ws.recv().await?, Some(Message::Binary(vec![])));
        ws.close(CloseCode::NORMAL, "").await?;
        let bytes_read = server.await?;
        // 390 KB of text crossed the wire in far fewer bytes.
        assert!(bytes_read < 20_000, "server read {bytes_read} bytes");
        Ok(())
    })
}

#[test]
fn compression_is_off_unless_both_sides_want_it() -> Result {
    smol::block_on(async {
        let (listener, addr) = listener()?;
        let server = smol::spawn(async move {
            let ws = accept_one(&listener, Config::default()).await?;
            Ok::<_, Error>(ws.connection().compression())
        });
        let mut config = Config::default();
        config.compression = Some(ws_proto::DeflateConfig::default());
        let (ws, accepted) = connect_tcp(&format!("ws://{addr}/"), config).await?;
        assert!(accepted.extensions.is_empty());
        assert!(!ws.connection().compression());
        assert!(!server.await?);
        Ok(())
    })
}
