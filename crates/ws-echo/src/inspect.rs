//! The live frame inspector behind `/inspect`: every frame of one echo connection, as ws-proto
//! parsed and encoded it, reported to the page on a second WebSocket.
//!
//! The page opens the *feed* (`/inspect/feed`) first; the server answers with a token. The
//! page then opens the *inspected* connection to the echo path with `?inspect=TOKEN`: an
//! echo like any other, accepted with [`Accept::inspect`], whose handler turns each frame
//! record ([`ws_proto::FrameRecord`]) and the handshake's two heads into JSON lines sent on
//! the feed. Two text commands on the inspected connection make the server send what a
//! browser cannot: `inspect:ping` (a ping; the browser's pong comes back) and
//! `inspect:fragments` (a message in three frames).
//!
//! Bounded: a connection logs at most [`LOG_CAPACITY`] frames per turn, and the reports on
//! their way to a page that has not acknowledged them (the page sends `ack N`, N the bytes it
//! has read, counted up to what was sent) are at most [`FEED_BUDGET`] bytes; past either,
//! reports are dropped and the next one says how many. At most [`MAX_FEEDS`] feeds are open
//! at once (more get 503). Each report carries `conn`, the inspected connection's number on
//! its feed (a page that reconnects sees its old connection's last frames arrive late).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use ws_proto::{
    Chunk, Direction, FrameRecord, Frames, MessageKind, Request, Response, Setup, Upgrade,
};
use ws_server::{Accept, ConnHandle, End, Reply};

use crate::Echo;

/// The inspector page served at `/inspect`.
pub const INSPECT_PAGE: &str = include_str!("inspect.html");

/// Frames an inspected connection logs between two turns; more are dropped and counted.
pub const LOG_CAPACITY: usize = 64;

/// Bytes of reports sent to a page and not yet acknowledged by it; more are dropped and
/// counted.
pub const FEED_BUDGET: u64 = 256 << 10;

/// Feeds open at once.
pub const MAX_FEEDS: usize = 64;

/// The path of the feed.
pub const FEED_PATH: &str = "/inspect/feed";

/// The command that makes the server ping the page.
const PING: &[u8] = b"inspect:ping";
/// The command that makes the server send a message in three frames.
const FRAGMENTS: &[u8] = b"inspect:fragments";

/// The open feeds, by token.
#[derive(Debug, Default)]
pub(crate) struct Feeds {
    feeds: Mutex<HashMap<u64, Arc<Feed>>>,
    tokens: RandomState,
    issued: AtomicU64,
}

/// One page's feed: where its inspected connection reports, and how much is in flight.
#[derive(Debug, Default)]
struct Feed {
    handle: OnceLock<ConnHandle>,
    /// Bytes of reports sent, and acknowledged by the page.
    sent: AtomicU64,
    acked: AtomicU64,
    /// Connections inspected for it so far, to number their reports.
    connections: AtomicU64,
}

impl Feeds {
    /// A feed for a new page: its handler, or 503 when [`MAX_FEEDS`] are open.
    pub(crate) fn open(self: &Arc<Self>) -> Result<Accept<Echo>, Response> {
        let mut feeds = self.feeds.lock().unwrap_or_else(|e| e.into_inner());
        if feeds.len() >= MAX_FEEDS {
            return Err(Response::new(503).header("Retry-After", "5").body("inspector busy\n"));
        }
        // Unguessable, so that no page can read another's.
        let token = self.tokens.hash_one(self.issued.fetch_add(1, Ordering::Relaxed));
        let feed = Arc::new(Feed::default());
        feeds.insert(token, Arc::clone(&feed));
        let role = Role::Feed(Registered { token, feeds: Arc::clone(self) });
        Ok(Accept::new(Echo {
            role: Some(Box::new(Inspector::new(role, feed))),
            ..Echo::default()
        })
        .without_compression())
    }

    /// The handler for a connection to inspect, reporting to `token`'s feed; `None` if no
    /// such feed is open.
    pub(crate) fn inspect(
        &self,
        token: &str,
        request: &Request,
        upgrade: &Upgrade,
        setup: &Setup,
    ) -> Option<Accept<Echo>> {
        let token = u64::from_str_radix(token, 16).ok()?;
        let feed = Arc::clone(self.feeds.lock().unwrap_or_else(|e| e.into_inner()).get(&token)?);
        let compression = query_value(&request.path, "compress") != Some("0");
        let mut setup = setup.clone();
        if !compression {
            setup.compression = None;
        }
        // The response the server is about to send: the same function, the same settings.
        let response = upgrade.accept_connection(None, &setup, &[]).ok()?.0;
        let conn = feed.connections.fetch_add(1, Ordering::Relaxed) + 1;
        let mut inspector = Inspector::new(Role::Inspected { conn }, feed);
        inspector.report(&handshake_json(request, &response));
        let echo = Echo { role: Some(Box::new(inspector)), ..Echo::default() };
        let accept = Accept::new(echo).inspect(LOG_CAPACITY);
        Some(if compression { accept } else { accept.without_compression() })
    }
}

/// The value of `name` in `path`'s query.
pub(crate) fn query_value<'a>(path: &'a str, name: &str) -> Option<&'a str> {
    let (_, query) = path.split_once('?')?;
    query.split('&').find_map(|item| item.strip_prefix(name)?.strip_prefix('='))
}

/// What an [`Echo`] does beyond echoing, on the inspector's two connections.
#[derive(Debug)]
pub(crate) struct Inspector {
    role: Role,
    feed: Arc<Feed>,
    /// Frames not reported (over a budget) since the last report.
    dropped: u64,
}

#[derive(Debug)]
enum Role {
    /// The page's feed: takes acknowledgements.
    Feed(Registered),
    /// The connection whose frames are reported: the feed's `conn`th.
    Inspected { conn: u64 },
}

/// A feed's place in [`Feeds`], given up when its handler is dropped however its connection
/// ended (a handshake that failed after the upgrade was accepted included).
#[derive(Debug)]
struct Registered {
    token: u64,
    feeds: Arc<Feeds>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.feeds.feeds.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.token);
    }
}

impl Inspector {
    fn new(role: Role, feed: Arc<Feed>) -> Self {
        Self { role, feed, dropped: 0 }
    }

    pub(crate) fn on_open(&mut self, handle: &ConnHandle) {
        if let Role::Feed(Registered { token, .. }) = self.role {
            let _ = self.feed.handle.set(handle.clone());
            let hello = format!("{{\"type\":\"hello\",\"token\":\"{token:x}\"}}");
            self.feed.sent.fetch_add(hello.len() as u64, Ordering::Relaxed);
            let _ = handle.send(hello);
        }
    }

    /// Handles `chunk` if it is the inspector's (an acknowledgement on the feed, a command on
    /// the inspected connection); `false` if it is to be echoed.
    pub(crate) fn on_chunk(&mut self, chunk: &Chunk<'_>, reply: &mut Reply<'_>) -> bool {
        let whole = chunk.first() && chunk.last() && chunk.kind() == MessageKind::Text;
        match self.role {
            Role::Feed(_) => {
                let ack =
                    std::str::from_utf8(chunk.data()).ok().and_then(|t| t.strip_prefix("ack "));
                if let Some(acked) = ack.filter(|_| whole).and_then(|n| n.parse::<u64>().ok()) {
                    // No more than was sent: a page cannot lift the budget by overstating.
                    let sent = self.feed.sent.load(Ordering::Relaxed);
                    self.feed.acked.fetch_max(acked.min(sent), Ordering::Relaxed);
                }
                // Nothing on the feed is echoed.
                true
            }
            Role::Inspected { .. } if whole && chunk.data() == PING => {
                let _ = reply.send_ping(b"from the server");
                true
            }
            Role::Inspected { .. } if whole && chunk.data() == FRAGMENTS => {
                for (i, part) in ["Hello, ", "fragmented ", "world"].into_iter().enumerate() {
                    let _ = reply.send_fragment(MessageKind::Text, part.as_bytes(), i == 2);
                }
                true
            }
            Role::Inspected { .. } => false,
        }
    }

    pub(crate) fn on_frames(&mut self, frames: Frames) {
        self.dropped += frames.dropped;
        for record in &frames.records {
            self.report(&frame_json(record));
        }
    }

    pub(crate) fn on_close(&mut self, end: &End) {
        // A feed leaves the registry as its handler is dropped (see `Registered`).
        if let Role::Inspected { .. } = self.role {
            let how = json_string(&end.to_string());
            self.report(&format!("{{\"type\":\"closed\",\"how\":{how}}}"));
        }
    }

    /// Sends `json` (an object) on the feed with the connection's number, within the feed's
    /// budget: a note first if reports were dropped.
    fn report(&mut self, json: &str) {
        let Some(handle) = self.feed.handle.get() else { return };
        let Role::Inspected { conn } = self.role else { return };
        let json = format!("{{\"conn\":{conn},{}", &json[1..]);
        let note = (self.dropped > 0).then(|| {
            format!("{{\"conn\":{conn},\"type\":\"dropped\",\"reports\":{}}}", self.dropped)
        });
        let len = (json.len() + note.as_ref().map_or(0, String::len)) as u64;
        let acked = self.feed.acked.load(Ordering::Relaxed);
        let in_flight = self.feed.sent.load(Ordering::Relaxed).saturating_sub(acked);
        if in_flight + len > FEED_BUDGET {
            self.dropped += 1;
            return;
        }
        if let Some(note) = note {
            let n = note.len() as u64;
            if handle.send(note).is_err() {
                self.dropped += 1;
                return;
            }
            self.feed.sent.fetch_add(n, Ordering::Relaxed);
            self.dropped = 0;
        }
        let n = json.len() as u64;
        match handle.send(json) {
            Ok(()) => {
                self.feed.sent.fetch_add(n, Ordering::Relaxed);
            }
            Err(_) => self.dropped += 1,
        }
    }
}

/// A frame record as a JSON line for the page.
fn frame_json(record: &FrameRecord) -> String {
    let h = &record.header;
    let dir = match record.direction {
        Direction::Received => "in",
        Direction::Sent => "out",
    };
    let key = h.mask.map_or_else(|| "null".to_owned(), |key| format!("\"{}\"", hex(&key)));
    let encoding = match record.header_bytes().get(1).map(|b| b & 0x7f) {
        Some(126) => 16,
        Some(127) => 64,
        _ => 7,
    };
    let mut json = String::with_capacity(128 + 4 * record.wire_payload().len());
    let _ = write!(
        json,
        "{{\"type\":\"frame\",\"dir\":\"{dir}\",\"fin\":{},\"rsv\":{},\"opcode\":{},\
         \"key\":{key},\"len\":{},\"encoding\":{encoding},\"header\":\"{}\",\
         \"wire\":\"{}\",\"payload\":\"{}\"}}",
        u8::from(h.fin),
        h.rsv,
        h.opcode.as_u8(),
        h.payload_len,
        hex(record.header_bytes()),
        hex(record.wire_payload()),
        hex(&record.payload()),
    );
    json
}

/// The handshake's request (as parsed) and response heads, as a JSON line.
fn handshake_json(request: &Request, response: &Response) -> String {
    let mut head = format!("{} {} HTTP/1.{}\r\n", request.method, request.path, request.version);
    for header in &request.headers {
        let _ = write!(head, "{}: {}\r\n", header.name, String::from_utf8_lossy(&header.value));
    }
    head.push_str("\r\n");
    let response = String::from_utf8_lossy(&response.to_bytes()).into_owned();
    format!(
        "{{\"type\":\"handshake\",\"request\":{},\"response\":{}}}",
        json_string(&head),
        json_string(&response)
    )
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(2 * bytes.len());
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// `text` as a JSON string literal.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
