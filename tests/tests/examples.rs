//! The programs in `examples/`, built and run: the command-line client against ws-echo, the
//! axum chat room with several clients. (The conformance suite runs against the tokio echo
//! server and the axum example's echo; tests/interop.rs runs Python, Node and Chromium
//! against the axum example.)

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, ensure};
use ws_tests::TestServer;
use ws_tests::examples::{self, ExampleServer};
use ws_transport::{Config, Message, connect_tcp};

#[test]
fn the_client_example_sends_its_input_and_prints_the_echoes() -> Result<()> {
    let client = examples::build("client")?;
    let server = TestServer::start_default()?;
    let mut child = Command::new(client)
        .arg(format!("ws://{}/", server.addr))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child.stdin.take().context("stdin")?.write_all("hello\nwörld\n".as_bytes())?;
    // Its input ends: it closes with 1000, ws-echo answers, it exits.
    let output = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(output.status.success(), "client failed: {stderr}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "hello\nwörld\n");
    assert!(stderr.contains(&format!("connected to ws://{}/", server.addr)), "{stderr}");
    assert!(stderr.contains("closed: 1000"), "{stderr}");
    Ok(())
}

#[test]
fn the_axum_chat_room_sends_each_message_to_everyone_with_compression() -> Result<()> {
    let server = ExampleServer::start("axum_chat")?;
    smol::block_on(async {
        let url = format!("ws://{}/chat", server.addr);
        let mut config = Config::default();
        config.compression = Some(Default::default());
        let mut members = Vec::new();
        for _ in 0..3 {
            let (ws, accepted) = connect_tcp(&url, config.clone()).await?;
            // The extractor negotiates permessage-deflate by default.
            assert!(
                accepted.extensions.iter().any(|e| e.name == "permessage-deflate"),
                "{:?}",
                accepted.extensions
            );
            members.push(ws);
        }
        // Everyone (the sender too) hears every message.
        members[0].send("hello from 0").await?;
        for ws in &mut members {
            assert_eq!(ws.recv().await?, Some(Message::from("hello from 0")));
        }
        let large = Message::Binary((0..100_000u32).map(|i| (i % 251) as u8).collect());
        members[2].send(large.clone()).await?;
        for ws in &mut members {
            let heard = ws.recv().await?;
            assert!(heard.as_ref() == Some(&large), "a member heard something else");
        }
        for mut ws in members {
            ws.close(ws_transport::ws_proto::CloseCode::NORMAL, "").await?;
        }
        anyhow::Ok(())
    })?;
    // On axum (tokio), the WebSockets ran on tokio's timers: no async-io thread started.
    let threads = server.threads()?;
    assert!(!threads.iter().any(|name| name.starts_with("async-io")), "threads: {threads:?}");
    assert!(!threads.is_empty());
    Ok(())
}

/// `Option<WebSocketUpgrade>` on the axum example's `/`: a plain GET gets the room's page, a
/// bad upgrade its 400 (not the page), a good one the echo.
#[test]
fn the_axum_example_serves_its_page_to_a_plain_get_and_refuses_a_bad_upgrade() -> Result<()> {
    use std::io::Read;
    let server = ExampleServer::start("axum_chat")?;
    let ask = |head: &str| -> Result<String> {
        let mut stream = std::net::TcpStream::connect(server.addr)?;
        stream.write_all(head.as_bytes())?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    };
    let page = ask("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("<title>Chat room</title>") && page.contains("/chat"), "{page}");
    let bad = ask("GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n")?;
    assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
    assert!(!bad.contains("Chat room"), "{bad}");
    smol::block_on(async {
        let (mut ws, _) = connect_tcp(&format!("ws://{}/", server.addr), Config::default()).await?;
        ws.send("echo?").await?;
        assert_eq!(ws.recv().await?, Some(Message::from("echo?")));
        ws.close(ws_transport::ws_proto::CloseCode::NORMAL, "").await?;
        anyhow::Ok(())
    })
}
