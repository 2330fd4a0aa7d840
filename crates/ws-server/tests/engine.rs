//! The engine's handler API over real sockets, on every engine: the chat example, handles
//! used from other threads, the backlog limit, and shutdown.

#[path = "../examples/broadcast.rs"]
#[allow(dead_code, unreachable_pub)]
mod broadcast;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use broadcast::ChatApp;
use ws_proto::{CloseCode, Event, Request, Response, Upgrade};
use ws_server::{Accept, App, ConnHandle, End, Engine, HandleError, Handler, Options, Reply};
use ws_tests::{RawClient, TestServer};

/// Every engine this platform has.
fn engines() -> Vec<Engine> {
    let mut engines = vec![Engine::Async];
    #[cfg(target_os = "linux")]
    engines.extend([Engine::Epoll, Engine::Uring]);
    engines
}

fn options(engine: Engine) -> Options {
    let mut options = Options::default();
    options.engine = engine;
    options.threads = 2;
    options
}

/// Waits until `done` holds, for at most five seconds.
fn wait_until(what: &str, done: impl Fn() -> bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

#[test]
fn the_chat_example_broadcasts_to_every_member() -> Result<()> {
    for engine in engines() {
        eprintln!("engine: {engine:?}");
        let app = ChatApp::default();
        let room = Arc::clone(&app.room);
        let server = TestServer::start_app(app, options(engine))?;
        let mut clients =
            (0..3).map(|_| RawClient::connect(server.addr)).collect::<Result<Vec<_>>>()?;
        wait_until("three members", || room.members() == 3)?;
        clients[0].send(0x81, b"hello, room")?;
        for (i, client) in clients.iter_mut().enumerate() {
            assert_eq!(client.read_message()?, (1, b"hello, room".to_vec()), "client {i}");
        }
        // One leaves; the others still hear each other.
        let mut gone = clients.remove(1);
        gone.send(0x88, &1000u16.to_be_bytes())?;
        assert_eq!(gone.expect_close()?.0, 1000);
        drop(gone); // its FIN: the server waits for it (or the close timeout) before it lets go
        wait_until("the member to leave", || room.members() == 2)?;
        clients[1].send(0x81, b"still here")?;
        for client in &mut clients {
            assert_eq!(client.read_message()?, (1, b"still here".to_vec()), "{engine:?}");
        }
        drop(clients);
        let summary = server.stop();
        assert_eq!(summary.abandoned, 0, "{engine:?}");
    }
    Ok(())
}

/// Keeps each connection's handle where the test can reach it, and records how each ended.
#[derive(Clone, Default)]
struct Handles {
    open: Arc<Mutex<Vec<ConnHandle>>>,
    ends: Arc<Mutex<Vec<String>>>,
}

struct Recorder(Handles);

impl Handler for Recorder {
    fn on_open(&mut self, handle: &ConnHandle) {
        self.0.open.lock().unwrap_or_else(PoisonError::into_inner).push(handle.clone());
    }
    fn on_event(&mut self, _: Event<'_>, _: &mut Reply<'_>) {}
    fn on_close(&mut self, end: &End) {
        self.0.ends.lock().unwrap_or_else(PoisonError::into_inner).push(end.to_string());
    }
}

impl App for Handles {
    type Handler = Recorder;
    fn upgrade(
        &self,
        _: &Request,
        _: &Upgrade,
        _: SocketAddr,
    ) -> Result<Accept<Recorder>, Response> {
        Ok(Accept::new(Recorder(self.clone())))
    }
}

impl Handles {
    fn first(&self) -> Result<ConnHandle> {
        wait_until("a connection", || !self.open.lock().unwrap().is_empty())?;
        self.open.lock().unwrap().first().cloned().context("a handle")
    }
}

#[test]
fn a_handle_sends_and_closes_from_another_thread() -> Result<()> {
    for engine in engines() {
        eprintln!("engine: {engine:?}");
        let handles = Handles::default();
        let server = TestServer::start_app(handles.clone(), options(engine))?;
        let mut client = RawClient::connect(server.addr)?;
        let handle = handles.first()?;
        let sender = std::thread::spawn(move || -> Result<()> {
            for i in 0..100 {
                handle.send(format!("tick {i}"))?;
            }
            handle.send(vec![1u8, 2, 3])?;
            handle.close(CloseCode::NORMAL, "done")?;
            Ok(())
        });
        sender.join().expect("sender thread")?;
        for i in 0..100 {
            assert_eq!(client.read_message()?, (1, format!("tick {i}").into_bytes()), "{engine:?}");
        }
        assert_eq!(client.read_message()?, (2, vec![1, 2, 3]));
        let (code, tcp_closed) = client.expect_close()?;
        assert_eq!((code, tcp_closed), (1000, true), "{engine:?}");
        drop(client);
        wait_until("on_close", || handles.ends.lock().unwrap().len() == 1)?;
        assert_eq!(handles.ends.lock().unwrap()[0], "closed with 1000");
        drop(server);
    }
    Ok(())
}

#[test]
fn a_connection_that_does_not_read_what_is_sent_to_it_is_closed_with_1013() -> Result<()> {
    for engine in engines() {
        eprintln!("engine: {engine:?}");
        let handles = Handles::default();
        let mut options = options(engine);
        options.max_backlog = 256 << 10;
        let server = TestServer::start_app(handles.clone(), options)?;
        let mut client = RawClient::connect(server.addr)?;
        client.stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let handle = handles.first()?;
        // Up to 64 MiB pushed at a client that reads nothing: far past socket buffers and
        // backlog. A full queue (HandleError::Full) is waited out, within five seconds.
        let chunk = vec![0u8; 64 << 10];
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut sent = 0;
        while sent < 1024 && Instant::now() < deadline {
            match handle.send(chunk.clone()) {
                Ok(()) => sent += 1,
                Err(HandleError::Full) => std::thread::sleep(Duration::from_millis(1)),
                Err(err) => bail!("{engine:?}: {err}"),
            }
        }
        // What was queued before the limit reaches the client, then the close frame.
        let mut messages = 0;
        let code = loop {
            let (opcode, payload) = client.read_message()?;
            if opcode == 8 {
                break u16::from_be_bytes([payload[0], payload[1]]);
            }
            messages += 1;
        };
        assert_eq!(code, 1013, "{engine:?}");
        assert!(messages < 1024, "{engine:?}: every message was held");
        // Answered with 1000: the 1013 the handler hears is the server's own.
        client.send(0x88, &1000u16.to_be_bytes())?;
        drop(client);
        wait_until("the connection to end", || handles.ends.lock().unwrap().len() == 1)?;
        assert_eq!(handles.ends.lock().unwrap()[0], "closed with 1013", "{engine:?}");
    }
    Ok(())
}

#[test]
fn shutdown_closes_every_connection_with_1001_and_tells_each_handler() -> Result<()> {
    for engine in engines() {
        eprintln!("engine: {engine:?}");
        let handles = Handles::default();
        let server = TestServer::start_app(handles.clone(), options(engine))?;
        let clients =
            (0..4).map(|_| RawClient::connect(server.addr)).collect::<Result<Vec<_>>>()?;
        wait_until("four connections", || handles.open.lock().unwrap().len() == 4)?;
        let closing = std::thread::spawn(move || server.stop());
        for mut client in clients {
            assert_eq!(client.expect_close()?, (1001, true), "{engine:?}");
        }
        let summary = closing.join().expect("server thread");
        assert_eq!(summary.abandoned, 0, "{engine:?}");
        let ends = handles.ends.lock().unwrap().clone();
        assert_eq!(ends, vec!["closed with 1001"; 4], "{engine:?}");
    }
    Ok(())
}
