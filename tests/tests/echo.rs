//! End-to-end: the echo server over real loopback sockets, driven by a raw client.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::Result;
use ws_echo::Options;
use ws_tests::{RawClient, TestServer, upgrade_request};

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[test]
fn echoes_binary_at_length_boundaries() -> Result<()> {
    let options = Options::default();
    for server in ws_tests::each_engine(&options) {
        let (_, server) = server?;
        let mut client = RawClient::connect(server.addr)?;
        for len in [0, 1, 125, 126, 127, 65535, 65536, 16 << 20] {
            let payload = pattern(len);
            let writer =
                client.send_in_background(ws_tests::client_frame(0x82, &payload, [7, 7, 1, 3]))?;
            let (opcode, echoed) = client.read_message()?;
            writer.join().expect("writer thread")?;
            assert_eq!(opcode, 2, "length {len}");
            assert!(echoed == payload, "length {len}: echo differs");
        }
        client.send(0x88, &1000u16.to_be_bytes())?;
        assert_eq!(client.read_message()?.0, 8);
    }
    Ok(())
}

#[test]
#[cfg(target_os = "linux")]
fn a_half_closed_client_is_echoed_and_closed() -> Result<()> {
    // One text frame and FIN in the same segment, no close frame: the echo comes back and
    // the server ends the stream (nothing else would: the idle timeout is off by default).
    for server in ws_tests::each_engine(&Options::default()) {
        let (_, server) = server?;
        let mut client = RawClient::connect(server.addr)?;
        client.stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        client.send_then_half_close(&ws_tests::client_frame(0x81, b"bye", [1, 2, 3, 4]))?;
        assert_eq!(client.read_message()?, (1, b"bye".to_vec()));
        assert_eq!(client.read_frame()?, None, "the server ends the stream");
    }
    Ok(())
}

#[test]
fn echoes_text_at_length_boundaries() -> Result<()> {
    let server = TestServer::start_default()?;
    let mut client = RawClient::connect(server.addr)?;
    for len in [0, 125, 126, 127, 65535, 65536] {
        // Multi-byte characters throughout, so chunk edges fall inside code points.
        let text: String = "aκό€𝄞"
            .chars()
            .cycle()
            .scan(0, |n, c| {
                *n += c.len_utf8();
                (*n <= len).then_some(c)
            })
            .collect();
        client.send(0x81, text.as_bytes())?;
        let (opcode, echoed) = client.read_message()?;
        assert_eq!((opcode, echoed.len()), (1, text.len()));
        assert_eq!(String::from_utf8(echoed)?, text);
    }
    Ok(())
}

#[test]
fn echoes_fragmented_messages() -> Result<()> {
    let options = Options::default();
    for server in ws_tests::each_engine(&options) {
        let (_, server) = server?;
        let mut client = RawClient::connect(server.addr)?;
        let euro = "€".as_bytes();
        client.send(0x01, b"price: ")?;
        client.send(0x00, &euro[..1])?;
        client.send(0x89, b"ping in the middle")?;
        client.send(0x00, &euro[1..])?;
        client.send(0x80, b"!")?;
        // The echo streams, so the pong arrives among the echoed fragments.
        assert_eq!(client.read_message()?, (1, "price: €!".as_bytes().to_vec()));
        assert_eq!(client.pongs, [b"ping in the middle".to_vec()]);
        // Binary in 100 fragments.
        let payload = pattern(100_000);
        let parts: Vec<&[u8]> = payload.chunks(1000).collect();
        for (i, part) in parts.iter().enumerate() {
            let op = if i == 0 { 0x02 } else { 0x00 };
            let fin = if i + 1 == parts.len() { 0x80 } else { 0 };
            client.send(fin | op, part)?;
        }
        assert_eq!(client.read_message()?, (2, payload));
    }
    Ok(())
}

#[test]
fn a_frame_written_one_byte_at_a_time() -> Result<()> {
    let server = TestServer::start_default()?;
    let mut client = RawClient::connect(server.addr)?;
    let frame = ws_tests::client_frame(0x81, "one byte at a time: κόσμε".as_bytes(), [1, 2, 3, 4]);
    for byte in &frame {
        client.send_raw(std::slice::from_ref(byte))?;
        client.stream.flush()?;
    }
    assert_eq!(client.read_message()?, (1, "one byte at a time: κόσμε".as_bytes().to_vec()));
    Ok(())
}

#[test]
fn many_frames_in_one_write() -> Result<()> {
    let server = TestServer::start_default()?;
    let mut client = RawClient::connect(server.addr)?;
    let mut batch = Vec::new();
    for i in 0..500u32 {
        batch.extend(ws_tests::client_frame(0x82, &i.to_be_bytes(), i.to_le_bytes()));
    }
    client.send_raw(&batch)?;
    for i in 0..500u32 {
        assert_eq!(client.read_message()?, (2, i.to_be_bytes().to_vec()));
    }
    Ok(())
}

#[test]
fn a_frame_pipelined_with_the_handshake() -> Result<()> {
    let server = TestServer::start_default()?;
    let frame = ws_tests::client_frame(0x81, b"right behind the request", [9, 9, 9, 9]);
    let mut client = RawClient::connect_with(server.addr, &frame)?;
    assert_eq!(client.read_message()?, (1, b"right behind the request".to_vec()));
    Ok(())
}

#[test]
fn ping_is_answered_and_close_is_completed() -> Result<()> {
    let server = TestServer::start_default()?;
    let mut client = RawClient::connect(server.addr)?;
    client.send(0x89, b"hi")?;
    let pong = client.read_frame()?.expect("pong");
    assert_eq!((pong.opcode, pong.payload), (0xa, b"hi".to_vec()));
    client.send(0x88, b"\x0f\xa0custom")?;
    let close = client.read_frame()?.expect("close reply");
    assert_eq!(close.close_code(), Some(4000));
    // The server closes TCP first (RFC 6455 §7.1.1).
    assert_eq!(client.read_frame()?, None);
    Ok(())
}

/// Each bad-input class over a real socket: the expected close code, then a fresh connection
/// on the same server is served normally.
#[test]
fn bad_input_gets_its_close_code_and_the_server_keeps_serving() -> Result<()> {
    let mut options = Options::default();
    options.transport.protocol.max_message_size = 1000;
    options.transport.protocol.max_frame_size = 600;
    for server in ws_tests::each_engine(&options) {
        let (_, server) = server?;
        let key = [0x11, 0x22, 0x33, 0x44];
        let frame = |b0, payload: &[u8]| ws_tests::client_frame(b0, payload, key);
        let cases: Vec<(&str, Vec<u8>, u16)> = vec![
            ("RSV1 without extension", frame(0xc1, b"x"), 1002),
            ("RSV2", frame(0xa2, b"x"), 1002),
            ("RSV3", frame(0x92, b"x"), 1002),
            ("reserved opcode 3", frame(0x83, b""), 1002),
            ("reserved opcode 0xB", frame(0x8b, b""), 1002),
            ("control frame over 125 bytes", frame(0x89, &[0; 126]), 1002),
            ("fragmented ping", frame(0x09, b""), 1002),
            ("unmasked client frame", ws_tests::unmasked_frame(0x81, b"hi"), 1002),
            ("continuation without a message", frame(0x80, b"x"), 1002),
            (
                "new message inside a fragmented one",
                [frame(0x01, b"a"), frame(0x81, b"b")].concat(),
                1002,
            ),
            ("invalid utf-8", frame(0x81, b"\xce\xba\xed\xa0\x80"), 1007),
            (
                "invalid utf-8 across fragments",
                [frame(0x01, b"\xf4"), frame(0x80, b"\x90\x80\x80")].concat(),
                1007,
            ),
            ("truncated utf-8 at message end", frame(0x81, b"ok\xe2\x82"), 1007),
            ("frame over the frame limit", frame(0x82, &[0; 601]), 1009),
            (
                "message over the message limit",
                [frame(0x02, &[0; 600]), frame(0x80, &[0; 401])].concat(),
                1009,
            ),
            ("invalid close code", frame(0x88, &1005u16.to_be_bytes()), 1002),
            ("one-byte close payload", frame(0x88, b"\x03"), 1002),
            ("close reason not utf-8", frame(0x88, b"\x03\xe8\xff"), 1007),
            (
                "length with the top bit set",
                vec![0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4],
                1002,
            ),
            (
                "declared length of 2^62",
                [vec![0x82, 0xff], (1u64 << 62).to_be_bytes().to_vec(), key.to_vec()].concat(),
                1009,
            ),
        ];
        for (name, bytes, expected) in cases {
            let mut client = RawClient::connect(server.addr)?;
            client.send_raw(&bytes)?;
            let (code, _) = client.expect_close().map_err(|e| e.context(name))?;
            assert_eq!(code, expected, "{name}");
            // A fresh connection is served right after.
            let mut fresh = RawClient::connect(server.addr)?;
            fresh.send(0x81, name.as_bytes())?;
            assert_eq!(fresh.read_message()?, (1, name.as_bytes().to_vec()), "after {name}");
        }
    }
    Ok(())
}

#[test]
fn a_slow_handshake_is_closed_at_the_deadline() -> Result<()> {
    let mut options = Options::default();
    options.transport.handshake_timeout = Duration::from_secs(2);
    let server = TestServer::start(options)?;
    let mut stream = TcpStream::connect(server.addr)?;
    stream.set_read_timeout(Some(Duration::from_millis(100)))?;
    let request = upgrade_request(server.addr);
    let started = Instant::now();
    let mut closed_at = None;
    // One byte every 250 ms: the request would take over 30 s.
    for byte in request.as_bytes() {
        if stream.write_all(std::slice::from_ref(byte)).is_err() {
            closed_at = Some(started.elapsed());
            break;
        }
        let mut buf = [0u8; 64];
        match stream.read(&mut buf) {
            Ok(0) => {
                closed_at = Some(started.elapsed());
                break;
            }
            Ok(_) => panic!("the server answered an incomplete request"),
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(150));
        if started.elapsed() > Duration::from_secs(10) {
            break;
        }
    }
    let closed_at = closed_at.expect("the server never closed the slow connection");
    assert!(
        closed_at >= Duration::from_millis(1900) && closed_at < Duration::from_secs(4),
        "closed after {closed_at:?}"
    );
    // The server still serves.
    let mut client = RawClient::connect(server.addr)?;
    client.send(0x81, b"still here")?;
    assert_eq!(client.read_message()?, (1, b"still here".to_vec()));
    Ok(())
}

#[test]
fn a_megabyte_of_headers_gets_431() -> Result<()> {
    let server = TestServer::start_default()?;
    let mut client = RawClient::connect_tcp(server.addr)?;
    let mut request = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    while request.len() < 1 << 20 {
        request.push_str(
            "X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
        );
    }
    // The server answers before we finish writing, and may reset the rest: ignore write errors.
    let _ = client.stream.write_all(request.as_bytes());
    let head = client.read_head()?;
    assert!(head.starts_with("HTTP/1.1 431 "), "{head}");
    let mut fresh = RawClient::connect(server.addr)?;
    fresh.send(0x82, b"ok")?;
    assert_eq!(fresh.read_message()?, (2, b"ok".to_vec()));
    Ok(())
}

#[test]
fn bad_handshakes_get_4xx() -> Result<()> {
    let server = TestServer::start_default()?;
    let cases = [
        (
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n",
            "400",
        ),
        (
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
            "426",
        ),
        (
            "POST / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            "400",
        ),
        ("this is not http\r\n\r\n", "400"),
    ];
    for (request, status) in cases {
        let mut client = RawClient::connect_tcp(server.addr)?;
        client.send_raw(request.as_bytes())?;
        let head = client.read_head()?;
        assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{request:?} -> {head}");
        if status == "426" {
            assert!(head.contains("Sec-WebSocket-Version: 13"), "{head}");
        }
    }
    Ok(())
}

#[test]
fn plain_http_routes() -> Result<()> {
    let server = TestServer::start_default()?;
    for (path, status, needle) in
        [("/", "200", "new WebSocket"), ("/healthz", "200", "ok"), ("/missing", "404", "not found")]
    {
        let mut client = RawClient::connect_tcp(server.addr)?;
        client.send_raw(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())?;
        let head = client.read_head()?;
        assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{path}: {head}");
        let body = String::from_utf8(client.read_to_end()?)?;
        assert!(body.contains(needle), "{path}: {body}");
    }
    Ok(())
}

#[test]
fn connections_over_the_limit_get_503_and_the_others_carry_on() -> Result<()> {
    let mut options = Options::default();
    options.0.max_connections = 2;
    let server = TestServer::start(options)?;
    let mut a = RawClient::connect(server.addr)?;
    let mut b = RawClient::connect(server.addr)?;
    let mut c = RawClient::connect_tcp(server.addr)?;
    c.send_raw(upgrade_request(server.addr).as_bytes())?;
    let head = c.read_head()?;
    assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
    for (client, text) in [(&mut a, "a"), (&mut b, "b")] {
        client.send(0x81, text.as_bytes())?;
        assert_eq!(client.read_message()?, (1, text.as_bytes().to_vec()));
    }
    // Once one leaves, a new one is admitted. It leaves whole: after the close handshake
    // and the server's FIN, its own end of TCP (kept open, the server would hold its place
    // until the close timeout, 5 s, which raced the deadline below).
    a.send(0x88, &1000u16.to_be_bytes())?;
    assert!(a.expect_close()?.1, "the server ends TCP after the close handshake");
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match RawClient::connect(server.addr) {
            Ok(mut d) => {
                d.send(0x81, b"d")?;
                assert_eq!(d.read_message()?, (1, b"d".to_vec()));
                break;
            }
            Err(err) if Instant::now() < deadline => {
                eprintln!("not yet admitted: {err}");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

#[test]
fn graceful_shutdown_sends_1001_to_open_connections() -> Result<()> {
    let options = Options::default();
    for server in ws_tests::each_engine(&options) {
        let (_, server) = server?;
        let mut clients: Vec<RawClient> =
            (0..5).map(|_| RawClient::connect(server.addr)).collect::<Result<_>>()?;
        for client in &mut clients {
            client.send(0x81, b"hello")?;
            assert_eq!(client.read_message()?, (1, b"hello".to_vec()));
        }
        let readers: Vec<_> =
            clients.into_iter().map(|mut c| std::thread::spawn(move || c.expect_close())).collect();
        let summary = server.stop();
        for reader in readers {
            let (code, tcp_closed) = reader.join().expect("reader thread")?;
            assert_eq!(code, 1001);
            assert!(tcp_closed);
        }
        assert_eq!(summary.abandoned, 0);
    }
    Ok(())
}

#[test]
fn the_echo_keeps_the_clients_frames() -> Result<()> {
    let options = Options::default();
    for server in ws_tests::each_engine(&options) {
        let (_, server) = server?;
        let mut client = RawClient::connect(server.addr)?;
        // One 4 MiB binary frame comes back as one 4 MiB frame, though it streams through.
        let payload = pattern(4 << 20);
        let writer =
            client.send_in_background(ws_tests::client_frame(0x82, &payload, [3, 1, 4, 1]))?;
        let frame = client.read_frame()?.expect("echo");
        writer.join().expect("writer thread")?;
        assert_eq!((frame.fin, frame.opcode, frame.payload.len()), (true, 2, payload.len()));
        assert!(frame.payload == payload);
        // Fragments come back as the same fragments.
        client.send(0x01, b"ab")?;
        client.send(0x00, b"cde")?;
        client.send(0x80, b"f")?;
        let frames: Vec<_> = (0..3)
            .map(|_| client.read_frame())
            .collect::<Result<Option<Vec<_>>>>()?
            .expect("frames");
        let shape: Vec<_> = frames.iter().map(|f| (f.fin, f.opcode, f.payload.clone())).collect();
        assert_eq!(
            shape,
            [(false, 1, b"ab".to_vec()), (false, 0, b"cde".to_vec()), (true, 0, b"f".to_vec())]
        );
    }
    Ok(())
}

#[test]
fn invalid_utf8_late_in_a_large_text_frame_gets_1007() -> Result<()> {
    let options = Options::default();
    for server in ws_tests::each_engine(&options) {
        let (_, server) = server?;
        let mut client = RawClient::connect(server.addr)?;
        let mut text = vec![b'a'; 1 << 20];
        text.extend_from_slice(b"\xff tail");
        let writer =
            client.send_in_background(ws_tests::client_frame(0x81, &text, [2, 7, 1, 8]))?;
        // The valid start streams back in fragments, none of them final, then the close:
        // the echoed message is never completed.
        let mut echoed = 0;
        let close = loop {
            let frame = client.read_frame()?.expect("a frame before the end");
            if frame.opcode == 8 {
                break frame;
            }
            assert_eq!(frame.opcode, if echoed == 0 { 1 } else { 0 });
            assert!(!frame.fin, "a fragment of the bad message was final");
            assert!(frame.payload.iter().all(|&b| b == b'a'), "echoed past the valid start");
            echoed += frame.payload.len();
        };
        assert_eq!(close.close_code(), Some(1007));
        assert!(echoed > 0 && echoed <= 1 << 20, "{echoed} bytes echoed");
        let _ = writer.join();
    }
    Ok(())
}

#[test]
fn permessage_deflate_is_negotiated_and_a_bomb_gets_1009() -> Result<()> {
    let mut options = Options::default();
    options.transport.protocol.max_message_size = 1 << 20;
    for server in ws_tests::each_engine(&options) {
        let (_, server) = server?;
        let (mut client, head) = RawClient::connect_deflate(server.addr)?;
        assert!(head.contains("Sec-WebSocket-Extensions: permessage-deflate"), "{head}");
        // A compressed message is echoed compressed (RSV1 set) and inflates to what was sent.
        let mut compressor = ws_proto::Compressor::new(15, false, 6);
        let mut payload = Vec::new();
        compressor.compress(b"Hello, compressed world", &mut payload);
        client.send(0xc1, &payload)?;
        let echo = client.read_frame()?.expect("echo");
        assert_eq!((echo.rsv, echo.opcode), (0b100, 1));
        let mut inflated = Vec::new();
        let mut decompressor = ws_proto::Decompressor::new(15, false);
        decompressor.decompress(&echo.payload, &mut inflated, 1 << 20).expect("inflates");
        decompressor.finish(&mut inflated, 1 << 20).expect("inflates");
        assert_eq!(inflated, b"Hello, compressed world");
        // 32 MiB of zeros, some 32 KiB on the wire: stopped at the 1 MiB limit with 1009.
        let mut bomb_compressor = ws_proto::Compressor::new(15, true, 9);
        let mut bomb = Vec::new();
        bomb_compressor.compress(&vec![0u8; 32 << 20], &mut bomb);
        assert!(bomb.len() < 64 << 10, "{}", bomb.len());
        let _ = client.send(0xc2, &bomb);
        let (code, _) = client.expect_close()?;
        assert_eq!(code, 1009);
        // Everyone else is still served.
        let mut fresh = RawClient::connect(server.addr)?;
        fresh.send(0x81, b"after the bomb")?;
        assert_eq!(fresh.read_message()?, (1, b"after the bomb".to_vec()));
    }
    Ok(())
}
