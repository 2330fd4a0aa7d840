//! Helpers shared by the integration tests: frames built by hand (not with the encoder under
//! test), owned copies of events, and an in-memory client/server pair.
#![allow(dead_code, unreachable_pub)]

use ws_proto::{
    CloseCode, Connection, Event, MessageKind, MessageRef, PolledEvent, ProtocolConfig,
    ProtocolError,
};

/// An event copied out of the connection, for comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owned {
    Text(String),
    Binary(Vec<u8>),
    Chunk { kind: MessageKind, data: Vec<u8>, first: bool, last: bool },
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(CloseCode, String),
    Failed(ProtocolError),
    Disconnected,
}

pub fn owned(event: Event<'_>) -> Owned {
    match event {
        Event::Message(MessageRef::Text(t)) => Owned::Text(t.to_string()),
        Event::Message(MessageRef::Binary(b)) => Owned::Binary(b.to_vec()),
        Event::Chunk(c) => Owned::Chunk {
            kind: c.kind(),
            data: c.data().to_vec(),
            first: c.first(),
            last: c.last(),
        },
        Event::Ping(p) => Owned::Ping(p.to_vec()),
        Event::Pong(p) => Owned::Pong(p.to_vec()),
        Event::Close(c) => Owned::Close(c.code, c.reason.to_string()),
        Event::Failed(e) => Owned::Failed(e),
        Event::Disconnected => Owned::Disconnected,
        _ => unreachable!("no other events exist yet"),
    }
}

/// Every event the connection has ready.
pub fn drain(conn: &mut Connection) -> Vec<Owned> {
    let mut events = Vec::new();
    // Bounded: each call consumes input or closes the connection.
    for _ in 0..1_000_000 {
        match conn.poll_event() {
            Some(event) => events.push(owned(event)),
            None => return events,
        }
    }
    panic!("poll_event did not settle");
}

/// [`drain`] through [`Connection::poll_event_owned`].
pub fn drain_owned(conn: &mut Connection) -> Vec<Owned> {
    let mut events = Vec::new();
    for _ in 0..1_000_000 {
        match conn.poll_event_owned() {
            Some(PolledEvent::Binary(data)) => {
                // As an echo loop does: a buffer handed back for the next message copied out.
                conn.recycle(data.clone());
                events.push(Owned::Binary(data));
            }
            Some(PolledEvent::Text(text)) => {
                conn.recycle(text.clone().into_bytes());
                events.push(Owned::Text(text));
            }
            Some(PolledEvent::Event(event)) => events.push(owned(event)),
            Some(other) => panic!("{other:?}"),
            None => return events,
        }
    }
    panic!("poll_event_owned did not settle");
}

/// Feeds `input` and returns the events.
pub fn feed(conn: &mut Connection, input: &[u8]) -> Vec<Owned> {
    conn.receive_data(input);
    drain(conn)
}

/// Takes all pending output.
pub fn take_output(conn: &mut Connection) -> Vec<u8> {
    let out = conn.pending_output().to_vec();
    conn.consume_output(out.len());
    out
}

/// A frame built byte by byte: first header byte `b0`, payload, optional mask key.
pub fn frame(b0: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![b0];
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let len = payload.len();
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if len <= 0xffff {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

pub const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A frame as a client sends it (masked with [`KEY`]).
pub fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    frame(b0, payload, Some(KEY))
}

pub fn server() -> Connection {
    Connection::server(ProtocolConfig::default())
}

pub fn server_with(config: ProtocolConfig) -> Connection {
    Connection::server(config)
}

/// The masking key a [`client`] uses for its `n`th frame (from 1): deterministic, different
/// for every frame, and with no zero byte, so that masking shows in every payload byte.
pub fn client_key(n: u32) -> [u8; 4] {
    [0x10 + n as u8, 0x5a, 0xa5, 0xc3]
}

/// A client whose masking keys are [`client_key`]`(1)`, `(2)`, …, so its output is
/// deterministic.
pub fn client(config: ProtocolConfig) -> Connection {
    let mut n: u32 = 0;
    Connection::client(config, move || {
        n = n.wrapping_add(1);
        client_key(n)
    })
}

/// Moves all pending output from `from` into `to` and returns `to`'s events.
pub fn transfer(from: &mut Connection, to: &mut Connection) -> Vec<Owned> {
    let bytes = take_output(from);
    feed(to, &bytes)
}
