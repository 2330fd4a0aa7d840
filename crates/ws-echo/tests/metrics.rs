//! `/metrics` after known traffic: parsed by the Prometheus project's own OpenMetrics parser
//! (the Python `prometheus_client`, installed by `.ci/run`), with exact counts.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use common::Running;
use ws_tests::{RawClient, in_ci};

/// The Python with `prometheus_client`: `WS_INTEROP_PYTHON`, or `.ci/venv`'s.
fn python() -> Option<PathBuf> {
    let path = std::env::var_os("WS_INTEROP_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.ci/venv/bin/python")
    });
    let ok = Command::new(&path)
        .args(["-c", "import prometheus_client"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(path)
}

/// Samples by name, each with its labels.
type Samples = BTreeMap<String, Vec<(BTreeMap<String, String>, f64)>>;

/// Parses `text` with `prometheus_client`'s strict OpenMetrics parser (an invalid exposition
/// fails the test).
fn parse(python: &PathBuf, text: &str) -> Result<Samples> {
    const SCRIPT: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.setdefault(s.name, []).append([s.labels, s.value])
print(json.dumps(out))
"#;
    let mut child = Command::new(python)
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child.stdin.take().context("stdin")?.write_all(text.as_bytes())?;
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!("the parser refused it: {}\n{text}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}

/// One sample's value: `name` with exactly `labels`.
fn value(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> f64 {
    let want: BTreeMap<String, String> =
        labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let found = samples.get(name).into_iter().flatten().find(|(l, _)| *l == want);
    found.map_or(f64::NAN, |(_, v)| *v)
}

/// A plain HTTP/1.1 GET; the status and the body.
fn get(addr: SocketAddr, path: &str) -> Result<(u16, String, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").context("no head")?;
    let status = head.get(9..12).context("no status")?.parse()?;
    Ok((status, head.to_owned(), body.to_owned()))
}

/// Scrapes until `ready` holds of the samples (the server counts a connection's end a moment
/// after the client sees it), within 10 s.
fn scrape_until(
    python: &PathBuf,
    addr: SocketAddr,
    ready: impl Fn(&Samples) -> bool,
) -> Result<Samples> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, head, body) = get(addr, "/metrics")?;
        assert_eq!(status, 200, "{head}");
        assert!(head.contains("application/openmetrics-text; version=1.0.0"), "{head}");
        let samples = parse(python, &body)?;
        if ready(&samples) {
            return Ok(samples);
        }
        if Instant::now() > deadline {
            bail!("the metrics never settled:\n{body}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Where a server started with `--metrics-bind` serves `/metrics`: its second line says.
fn metrics_addr(server: &mut Running) -> Result<SocketAddr> {
    let line = server.read_line()?;
    let addr = line
        .strip_prefix("metrics on http://")
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .with_context(|| format!("unexpected line {line:?}"))?;
    Ok(addr.parse()?)
}

/// Stops `server` with SIGTERM and checks that it exits 0.
fn stop(mut server: Running) -> Result<()> {
    server.signal("TERM")?;
    assert_eq!(server.wait(Duration::from_secs(10))?, 0);
    Ok(())
}

fn missing() -> Result<()> {
    if in_ci() {
        bail!(
            "python prometheus_client is missing: run .ci/run (it installs .ci/requirements.txt)"
        );
    }
    eprintln!("SKIPPED: python prometheus_client is missing (.ci/requirements.txt)");
    Ok(())
}

/// Known traffic on three WebSockets, a refused upgrade and two plain requests; then every
/// count on `--metrics-bind`, exactly, on both engines. The WebSocket port does not serve
/// `/metrics` then.
#[test]
fn metrics_count_known_traffic_exactly() -> Result<()> {
    let Some(python) = python() else { return missing() };
    for engine in ["epoll", "uring", "async"] {
        known_traffic(&python, engine).with_context(|| format!("--engine {engine}"))?;
    }
    Ok(())
}

fn known_traffic(python: &PathBuf, engine: &str) -> Result<()> {
    let mut server = Running::start(&["--metrics-bind", "127.0.0.1:0", "--engine", engine])?;
    let metrics = metrics_addr(&mut server)?;

    // 1: a text, a binary, a text in two fragments, a ping; then close 1000.
    let mut ws = RawClient::connect(server.addr)?;
    ws.send(0x81, b"hello")?;
    assert_eq!(ws.read_message()?, (1, b"hello".to_vec()));
    ws.send(0x82, &[1, 2, 3])?;
    assert_eq!(ws.read_message()?, (2, vec![1, 2, 3]));
    ws.send(0x01, b"ab")?;
    ws.send(0x80, b"cd")?;
    assert_eq!(ws.read_message()?, (1, b"abcd".to_vec()));
    ws.send(0x89, b"p")?;
    ws.send(0x88, &1000u16.to_be_bytes())?;
    assert_eq!(ws.read_message()?.0, 8);
    assert_eq!(ws.pongs, [b"p".to_vec()]);
    ws.read_to_end()?;
    drop(ws);
    // 2: invalid UTF-8: the server closes with 1007.
    let mut ws = RawClient::connect(server.addr)?;
    ws.send(0x81, &[0xff])?;
    assert_eq!(ws.read_message()?.1[..2], 1007u16.to_be_bytes());
    ws.read_to_end()?;
    drop(ws);
    // 3: close 4001 with a reason.
    let mut ws = RawClient::connect(server.addr)?;
    ws.send(0x88, b"\x0f\xa1bye")?;
    assert_eq!(ws.read_message()?.1[..2], 4001u16.to_be_bytes());
    ws.read_to_end()?;
    drop(ws);
    // An upgrade without a key: 400. Plain requests: 200 and 404; /metrics is not here.
    let mut bad = RawClient::connect_tcp(server.addr)?;
    let request = ws_tests::upgrade_request(server.addr)
        .replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "");
    bad.stream.write_all(request.as_bytes())?;
    assert!(bad.read_head()?.starts_with("HTTP/1.1 400 "));
    assert_eq!(get(server.addr, "/healthz")?.0, 200);
    assert_eq!(get(server.addr, "/metrics")?.0, 404);

    // Every count below that is taken as a connection ends (sessions, plain answers and
    // refusals are counted after the answer is written) is waited for, not raced.
    let s = scrape_until(python, metrics, |s| {
        value(s, "ws_connections_open", &[]) == 0.0
            && value(s, "ws_sessions_opened_total", &[]) == 3.0
            && value(
                s,
                "ws_handshakes_refused_total",
                &[("reason", "bad_request"), ("status", "400")],
            ) == 1.0
            && value(s, "ws_http_requests_total", &[("status", "200")]) == 1.0
            && value(s, "ws_http_requests_total", &[("status", "404")]) == 1.0
    })?;
    let v = |name: &str, labels: &[(&str, &str)]| value(&s, name, labels);
    assert_eq!(v("ws_connections_accepted_total", &[]), 6.0);
    assert_eq!(v("ws_handshake_duration_seconds_count", &[]), 3.0);
    assert_eq!(v("ws_handshake_duration_seconds_bucket", &[("le", "+Inf")]), 3.0);
    assert_eq!(
        v("ws_handshakes_refused_total", &[("reason", "bad_request"), ("status", "400")]),
        1.0
    );
    assert_eq!(v("ws_http_requests_total", &[("status", "200")]), 1.0);
    assert_eq!(v("ws_http_requests_total", &[("status", "404")]), 1.0);
    // In: texts "hello", "ab"+"cd" and the invalid one (counted as its header is read, 1
    // byte); the binary; the ping; close frames 1000 (2 bytes) and 4001 "bye" (5).
    let received = [
        ("text", 3.0, 10.0),
        ("binary", 1.0, 3.0),
        ("ping", 1.0, 1.0),
        ("pong", 0.0, 0.0),
        ("close", 2.0, 7.0),
    ];
    // Out: the echoes, the pong, and close frames 1000, 1007 and 4001 (2 bytes each).
    let sent = [
        ("text", 2.0, 9.0),
        ("binary", 1.0, 3.0),
        ("ping", 0.0, 0.0),
        ("pong", 1.0, 1.0),
        ("close", 3.0, 6.0),
    ];
    for (way, expected) in [("received", received), ("sent", sent)] {
        for (opcode, messages, bytes) in expected {
            let labels = [("opcode", opcode)];
            assert_eq!(v(&format!("ws_messages_{way}_total"), &labels), messages, "{way} {opcode}");
            assert_eq!(
                v(&format!("ws_payload_{way}_bytes_total"), &labels),
                bytes,
                "{way} {opcode}"
            );
        }
    }
    let closes =
        |way: &str, code: &str| v(&format!("ws_close_codes_{way}_total"), &[("code", code)]);
    assert_eq!([closes("received", "1000"), closes("received", "other")], [1.0, 1.0]);
    assert_eq!(
        [closes("sent", "1000"), closes("sent", "1007"), closes("sent", "other")],
        [1.0, 1.0, 1.0]
    );
    assert_eq!(closes("received", "1007"), 0.0);
    // No compression was offered.
    assert_eq!(v("ws_compressed_payload_bytes_total", &[("direction", "sent")]), 0.0);
    assert_eq!(v("ws_memory_budget_bytes", &[]), (512u64 << 20) as f64);
    assert_eq!(v("ws_ping_rtt_seconds_count", &[]), 0.0);
    stop(server)
}

/// Compression's figures, on the WebSocket port's own `/metrics` (the default), and a
/// keepalive ping's round trip.
#[test]
fn compression_and_keepalive_round_trips_are_counted() -> Result<()> {
    let Some(python) = python() else { return missing() };
    let server = Running::start(&["--ping-interval", "1", "--pong-timeout", "20"])?;
    let (mut ws, head) = RawClient::connect_deflate(server.addr)?;
    assert!(head.contains("permessage-deflate"), "{head}");
    // "Hello" compressed (RFC 7692 §7.2.3.1), RSV1 set: 7 bytes on the wire for 5.
    ws.send(0xc1, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00])?;
    let frame = ws.read_frame()?.context("no echo")?;
    assert_eq!((frame.opcode, frame.rsv), (1, 4));
    let echoed = frame.payload.len() as f64;
    // Silence: after a second, the keepalive ping. Answer it.
    let ping = ws.read_frame()?.context("no ping")?;
    assert_eq!((ping.opcode, ping.payload.as_slice()), (9, &b"keepalive"[..]));
    ws.send(0x8a, &ping.payload)?;
    // The round trip is counted as the pong is taken, its message when the engine's pass
    // ends: wait for both.
    let s = scrape_until(&python, server.addr, |s| {
        value(s, "ws_ping_rtt_seconds_count", &[]) == 1.0
            && value(s, "ws_messages_received_total", &[("opcode", "pong")]) == 1.0
    })?;
    let v = |name: &str, labels: &[(&str, &str)]| value(&s, name, labels);
    let way = |direction| [("direction", direction)];
    assert_eq!(v("ws_compressed_payload_bytes_total", &way("received")), 7.0);
    assert_eq!(v("ws_uncompressed_payload_bytes_total", &way("received")), 5.0);
    assert_eq!(v("ws_compression_ratio", &way("received")), 5.0 / 7.0);
    assert_eq!(v("ws_compressed_payload_bytes_total", &way("sent")), echoed);
    assert_eq!(v("ws_uncompressed_payload_bytes_total", &way("sent")), 5.0);
    assert_eq!(v("ws_messages_sent_total", &[("opcode", "ping")]), 1.0);
    assert_eq!(v("ws_payload_sent_bytes_total", &[("opcode", "ping")]), 9.0);
    assert_eq!(v("ws_messages_received_total", &[("opcode", "pong")]), 1.0);
    assert_eq!(v("ws_connections_open", &[]), 1.0);
    // The round trip is within the pong timeout, and the sum is that one observation.
    let rtt = v("ws_ping_rtt_seconds_sum", &[]);
    assert!(rtt > 0.0 && rtt < 20.0, "{rtt}");
    assert_eq!(v("ws_ping_rtt_seconds_bucket", &[("le", "20.0")]), 1.0);
    ws.send(0x88, &1000u16.to_be_bytes())?;
    assert_eq!(ws.expect_close()?, (1000, true));
    // The server closed first and waits for our end of TCP: give it.
    drop(ws);
    stop(server)
}

/// On a TLS port: a bad TLS handshake and plain HTTP are refused as `tls`; a client that
/// leaves before sending anything as `closed`.
#[test]
fn tls_refusals_are_told_apart() -> Result<()> {
    let Some(python) = python() else { return missing() };
    let pki = ws_tests::tls::TestPki::new()?;
    let issued = pki.localhost()?;
    let (cert, key) = (issued.cert.to_str().context("path")?, issued.key.to_str().context("path")?);
    let mut server =
        Running::start(&["--tls-cert", cert, "--tls-key", key, "--metrics-bind", "127.0.0.1:0"])?;
    let metrics = metrics_addr(&mut server)?;
    // A TLS record header (handshake, TLS 1.0) and a body that is no ClientHello.
    let mut bad = TcpStream::connect(server.addr)?;
    bad.set_read_timeout(Some(Duration::from_secs(10)))?;
    bad.write_all(&[0x16, 0x03, 0x01, 0x00, 0x04, 0xde, 0xad, 0xbe, 0xef])?;
    let mut answer = Vec::new();
    let _ = bad.read_to_end(&mut answer);
    // Plain HTTP on the TLS port: 400.
    let (status, _, _) = get(server.addr, "/")?;
    assert_eq!(status, 400);
    // Connected, then gone without a byte.
    drop(TcpStream::connect(server.addr)?);
    let s = scrape_until(&python, metrics, |s| {
        let refused = |reason, status| {
            value(s, "ws_handshakes_refused_total", &[("reason", reason), ("status", status)])
        };
        refused("tls", "none") == 1.0
            && refused("tls", "400") == 1.0
            && refused("closed", "none") == 1.0
    })?;
    assert_eq!(value(&s, "ws_connections_accepted_total", &[]), 3.0);
    assert_eq!(value(&s, "ws_sessions_opened_total", &[]), 0.0);
    stop(server)
}
