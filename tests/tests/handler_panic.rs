//! A handler that panics ends only its own connection, with 1011: the engine (its thread, or
//! the executor thread of a task) carries on serving every other connection, on both engines.

use std::net::SocketAddr;

use anyhow::Result;
use ws_proto::{Event, Request, Response, Upgrade};
use ws_server::{Accept, App, End, Handler, Reply};
use ws_tests::{RawClient, TestServer, engines};

/// Echoes; panics in `on_open` on the path `/panic-at-open`, in `on_event` on the text
/// `boom` (and on `mid-frame`, inside a frame of its own it began), in `on_close` after the
/// text `panic-at-close`, in `memory` after `panic-in-memory`, and when dropped after
/// `panic-at-drop`.
#[derive(Default)]
struct Fragile {
    panic_at_close: bool,
    panic_in_memory: bool,
    panic_at_drop: bool,
}

impl Drop for Fragile {
    fn drop(&mut self) {
        assert!(!self.panic_at_drop, "drop broke on purpose");
    }
}

impl Handler for Fragile {
    fn on_event(&mut self, event: Event<'_>, reply: &mut Reply<'_>) {
        if let Event::Message(message) = event {
            match message.as_bytes() {
                b"boom" => panic!("the handler broke on purpose"),
                b"mid-frame" => {
                    let _ = reply.begin_frame(ws_proto::MessageKind::Binary, true, 10);
                    let _ = reply.send_frame_data(b"abc");
                    panic!("the handler broke on purpose, inside its frame");
                }
                b"panic-at-close" => self.panic_at_close = true,
                b"panic-in-memory" => self.panic_in_memory = true,
                b"panic-at-drop" => self.panic_at_drop = true,
                _ => {}
            }
            let _ = reply.send_message(message.kind(), message.as_bytes());
        }
    }

    fn on_close(&mut self, _: &End) {
        assert!(!self.panic_at_close, "on_close broke on purpose");
    }

    fn memory(&self) -> usize {
        assert!(!self.panic_in_memory, "memory broke on purpose");
        0
    }
}

struct OpensFragile;

impl App for OpensFragile {
    type Handler = OpenPanics;

    fn upgrade(
        &self,
        request: &Request,
        _: &Upgrade,
        _: SocketAddr,
    ) -> Result<Accept<OpenPanics>, Response> {
        let at_open = request.path == "/panic-at-open";
        Ok(Accept::new(OpenPanics { at_open, inner: Fragile::default() }))
    }
}

struct OpenPanics {
    at_open: bool,
    inner: Fragile,
}

impl Handler for OpenPanics {
    fn on_open(&mut self, _: &ws_server::ConnHandle) {
        assert!(!self.at_open, "on_open broke on purpose");
    }

    fn on_event(&mut self, event: Event<'_>, reply: &mut Reply<'_>) {
        self.inner.on_event(event, reply);
    }

    fn on_close(&mut self, end: &End) {
        self.inner.on_close(end);
    }

    fn memory(&self) -> usize {
        self.inner.memory()
    }
}

fn connect(addr: SocketAddr, path: &str) -> Result<RawClient> {
    Ok(RawClient::connect_path(addr, path)?.0)
}

/// A new connection that sends `trigger` (echoed: the handler breaks after), closes with
/// 1000 itself when `we_close`, and returns the close code it got back.
fn echo_then_close(addr: SocketAddr, trigger: &[u8], we_close: bool) -> Result<u16> {
    let mut client = connect(addr, "/")?;
    echoes(&mut client, trigger)?;
    if we_close {
        client.send(0x88, &1000u16.to_be_bytes())?;
    }
    let (code, closed) = client.expect_close()?;
    assert!(closed, "the server ended TCP");
    Ok(code)
}

fn echoes(client: &mut RawClient, text: &[u8]) -> Result<()> {
    client.send(0x81, text)?;
    assert_eq!(client.read_message()?, (1, text.to_vec()));
    Ok(())
}

#[test]
fn a_panicking_handler_closes_its_connection_with_1011_and_the_rest_carry_on() -> Result<()> {
    for engine in engines() {
        eprintln!("engine: {engine:?}");
        let mut options = ws_server::Options::default();
        options.engine = engine;
        // One engine thread: the panics would take every connection with them if they
        // escaped it.
        options.threads = 1;
        let server = TestServer::start_app(OpensFragile, options)?;
        let mut bystander = connect(server.addr, "/")?;
        echoes(&mut bystander, b"before")?;

        let mut breaks = connect(server.addr, "/")?;
        let started = std::time::Instant::now();
        breaks.send(0x81, b"boom")?;
        assert_eq!(breaks.expect_close()?, (1011, true), "{engine:?}: on_event");
        drop(breaks);
        // Not a close timeout waited out (5 s).
        assert!(started.elapsed() < std::time::Duration::from_secs(3), "{engine:?}");
        echoes(&mut bystander, b"after on_event")?;

        let mut at_open = connect(server.addr, "/panic-at-open")?;
        assert_eq!(at_open.expect_close()?, (1011, true), "{engine:?}: on_open");
        drop(at_open);
        echoes(&mut bystander, b"after on_open")?;

        let at_close = echo_then_close(server.addr, b"panic-at-close", true)?;
        assert_eq!(at_close, 1000, "{engine:?}: on_close");
        echoes(&mut bystander, b"after on_close")?;

        // memory: poisoned like the rest, closed with 1011 after its echo.
        let in_memory = echo_then_close(server.addr, b"panic-in-memory", false)?;
        assert_eq!(in_memory, 1011, "{engine:?}: memory");
        echoes(&mut bystander, b"after memory")?;

        // Drop: the engine survives it.
        let at_drop = echo_then_close(server.addr, b"panic-at-drop", true)?;
        assert_eq!(at_drop, 1000, "{engine:?}: drop");
        echoes(&mut bystander, b"after drop")?;

        // Inside a frame of its own: no close frame can follow, so the stream ends at once.
        let mut mid_frame = connect(server.addr, "/")?;
        let started = std::time::Instant::now();
        mid_frame.send(0x81, b"mid-frame")?;
        let _ = mid_frame.read_to_end();
        assert!(started.elapsed() < std::time::Duration::from_secs(3), "{engine:?}: mid-frame");
        drop(mid_frame);
        echoes(&mut bystander, b"after mid-frame")?;

        // Newcomers are served too.
        let mut newcomer = connect(server.addr, "/")?;
        echoes(&mut newcomer, b"newcomer")?;
        for mut client in [newcomer, bystander] {
            client.send(0x88, &1000u16.to_be_bytes())?;
            assert_eq!(client.expect_close()?, (1000, true));
        }
        let started = std::time::Instant::now();
        server.stop();
        // Every connection ended: the shutdown waits for none.
        assert!(started.elapsed() < std::time::Duration::from_secs(3), "{engine:?}");
    }
    Ok(())
}
