//! A chat room on the handler API: every text message a client sends goes to every connected
//! client, the sender included.
//!
//! ```sh
//! cargo run -p ws-server --example broadcast -- 127.0.0.1:9002
//! ```
//!
//! Then connect two clients (a browser console: `new WebSocket("ws://127.0.0.1:9002/")`)
//! and send from one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use ws_proto::{Event, MessageRef, Request, Response, Upgrade};
use ws_server::{Accept, App, ConnHandle, End, HandleError, Handler, Options, Reply, Server};

/// Who is in the room: a handle per connection, by id.
#[derive(Debug, Default)]
pub struct Room {
    members: Mutex<HashMap<u64, ConnHandle>>,
    next_id: AtomicU64,
}

impl Room {
    /// Sends `text` to every member. A member whose queue is full right now misses it (the
    /// queues are bounded); one whose connection has ended is dropped from the room.
    pub fn broadcast(&self, text: &str) {
        let mut members = self.members.lock().unwrap_or_else(PoisonError::into_inner);
        members.retain(|_, handle| handle.send(text) != Err(HandleError::Closed));
    }

    /// How many are connected.
    pub fn members(&self) -> usize {
        self.members.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// The application: every upgrade joins the room.
#[derive(Debug, Clone, Default)]
pub struct ChatApp {
    /// The one room.
    pub room: Arc<Room>,
}

impl App for ChatApp {
    type Handler = Member;

    fn upgrade(&self, _: &Request, _: &Upgrade, _: SocketAddr) -> Result<Accept<Member>, Response> {
        let id = self.room.next_id.fetch_add(1, Ordering::Relaxed);
        Ok(Accept::new(Member { id, room: Arc::clone(&self.room) }))
    }
}

/// One member's connection.
#[derive(Debug)]
pub struct Member {
    id: u64,
    room: Arc<Room>,
}

impl Handler for Member {
    fn on_open(&mut self, handle: &ConnHandle) {
        let mut members = self.room.members.lock().unwrap_or_else(PoisonError::into_inner);
        members.insert(self.id, handle.clone());
    }

    fn on_event(&mut self, event: Event<'_>, _: &mut Reply<'_>) {
        if let Event::Message(MessageRef::Text(text)) = event {
            self.room.broadcast(text);
        }
    }

    fn on_close(&mut self, _: &End) {
        self.room.members.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.id);
    }
}

#[allow(dead_code)]
fn main() -> std::io::Result<()> {
    let addr: SocketAddr = match std::env::args().nth(1) {
        Some(addr) => addr.parse().map_err(std::io::Error::other)?,
        None => ([127, 0, 0, 1], 9002).into(),
    };
    let server = Server::bind(addr, Options::default(), ChatApp::default())?;
    println!("chat room on ws://{}", server.local_addr()?);
    let ex = Arc::new(smol::Executor::new());
    smol::block_on(ex.run(server.run(Arc::clone(&ex), std::future::pending())));
    Ok(())
}
