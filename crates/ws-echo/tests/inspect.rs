//! The frame inspector's protocol, byte for byte: the feed, the reports of a connection's
//! frames and handshake, and the budget that drops reports with a note instead of growing.

mod common;

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, Result};
use common::Running;
use ws_echo::FEED_BUDGET;
use ws_tests::{RawClient, client_frame, upgrade_request};

/// A raw client on `path`, and the response head it got.
fn open(server: &Running, path: &str) -> Result<(RawClient, String)> {
    RawClient::connect_path(server.addr, path)
}

/// The next report on the feed, parsed.
fn report(feed: &mut RawClient) -> Result<serde_json::Value> {
    let (opcode, payload) = feed.read_message()?;
    assert_eq!(opcode, 1, "reports are text");
    Ok(serde_json::from_slice(&payload)?)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn frames_and_heads_are_reported_as_on_the_wire_within_a_budget() -> Result<()> {
    let mut server = Running::start(&[])?;
    let (mut feed, _) = open(&server, "/inspect/feed")?;
    let hello = report(&mut feed)?;
    assert_eq!(hello["type"], "hello");
    let token = hello["token"].as_str().context("a token")?.to_owned();

    // The inspected connection: its handshake, exactly as the client got it.
    let (mut ws, head) = open(&server, &format!("/?inspect={token}"))?;
    let handshake = report(&mut feed)?;
    assert_eq!(handshake["type"], "handshake");
    assert_eq!(handshake["response"], head);
    let request = handshake["request"].as_str().context("request")?;
    assert!(request.starts_with(&format!("GET /?inspect={token} HTTP/1.1\r\n")), "{request}");
    assert!(request.contains("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"), "{request}");

    // A masked "hi" in, its echo out: header bytes, key, payload masked and not.
    let key = [1, 2, 3, 4];
    let frame = client_frame(0x81, b"hi", key);
    ws.send_raw(&frame)?;
    assert_eq!(ws.read_message()?, (1, b"hi".to_vec()));
    let received = report(&mut feed)?;
    let expected = serde_json::json!({
        "conn": 1, "type": "frame", "dir": "in", "fin": 1, "rsv": 0, "opcode": 1, "key": "01020304",
        "len": 2, "encoding": 7, "header": hex(&frame[..6]), "wire": hex(&frame[6..]),
        "payload": hex(b"hi"),
    });
    assert_eq!(received, expected);
    let echoed = report(&mut feed)?;
    assert_eq!(
        (&echoed["dir"], &echoed["key"], &echoed["header"]),
        (&"out".into(), &serde_json::Value::Null, &"8102".into())
    );
    assert_eq!(echoed["wire"], hex(b"hi"));

    // The page does not acknowledge: reports stop at the budget, the rest are counted.
    feed.stream.set_read_timeout(Some(Duration::from_millis(500)))?;
    let burst = 1_000;
    let payload = [b'x'; 100];
    for _ in 0..burst {
        ws.send(0x82, &payload)?;
        assert_eq!(ws.read_message()?.1.len(), 100);
    }
    let mut reported = 0;
    let mut bytes = 0;
    while let Ok((_, report)) = feed.read_message() {
        bytes += report.len() as u64;
        reported += 1;
    }
    assert!(reported > 10 && reported < 2 * burst, "{reported} reports of {}", 2 * burst);
    // What was sent unacknowledged stays within the budget (hello and handshake included).
    assert!(bytes <= FEED_BUDGET, "{bytes} bytes");
    // Acknowledged, the next frames come after a note of how many were dropped.
    let acked = 1_000_000; // more than was sent: the page is trusted to slow itself only
    feed.send(0x81, format!("ack {acked}").as_bytes())?;
    std::thread::sleep(Duration::from_millis(200));
    ws.send(0x81, b"after")?;
    assert_eq!(ws.read_message()?, (1, b"after".to_vec()));
    feed.stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let note = report(&mut feed)?;
    assert_eq!(note["type"], "dropped", "{note}");
    let dropped = note["reports"].as_u64().context("a count")?;
    assert_eq!(reported + dropped, 2 * burst, "every frame reported or counted");
    let after = report(&mut feed)?;
    assert_eq!((&after["dir"], &after["payload"]), (&"in".into(), &hex(b"after").into()));

    // A token that names no feed: 404.
    let mut stray = RawClient::connect_tcp(server.addr)?;
    let request = upgrade_request(server.addr).replacen("GET / ", "GET /?inspect=1234 ", 1);
    stray.stream.write_all(request.as_bytes())?;
    assert!(stray.read_head()?.starts_with("HTTP/1.1 404 "));
    drop((ws, feed));

    // Feeds give their place back as they end: more of them, one after another, than can be
    // open at once.
    for _ in 0..ws_echo::MAX_FEEDS + 8 {
        let (mut feed, _) = open(&server, "/inspect/feed")?;
        assert_eq!(report(&mut feed)?["type"], "hello");
        feed.send(0x88, &1000u16.to_be_bytes())?;
        assert_eq!(feed.expect_close()?, (1000, true));
    }
    server.signal("TERM")?;
    assert_eq!(server.wait(Duration::from_secs(10))?, 0);
    Ok(())
}
