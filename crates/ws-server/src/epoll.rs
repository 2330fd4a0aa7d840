//! The epoll engine ([`Engine::Epoll`](crate::Engine::Epoll), Linux): engine threads that each
//! own an edge-triggered epoll set and drive their connections' sessions and handlers directly
//! with non-blocking reads and writes. With [`Engine::Uring`](crate::Engine::Uring) the same
//! threads wait on an io_uring ring instead (`reap`, `sync_ring`; the ring is ws-uring's).
//!
//! Why not the portable path: smol's reactor (async-io) registers a socket in
//! one-shot mode, so every wait re-arms it with `epoll_ctl`, and each read that finds nothing
//! costs a `recv` returning `EAGAIN` first. Here a socket is registered once (`EPOLLET`), a
//! read shorter than its buffer is taken to mean the socket is drained (data arriving later
//! raises a new edge), and a small message costs one `read` and one `write`, with one
//! `epoll_wait` shared by every connection that became ready meanwhile. The opening handshake
//! stays on the async path ([`ws_transport::ServerHandshake`]); the accepted connection is then
//! handed over whole, input already read included. docs/benchmarks.md has the measurements.
//!
//! Policy is ws-proto's [`Session`], as on [`ws_transport::WebSocket`]: the timers (close,
//! keepalive, idle, blocked write; their deadlines kept in one heap per engine), when to read,
//! what end of stream means, and who ends the stream first. This file is only the I/O.
//!
//! Turns are fair: a connection with something to do (an edge, a command from its handle, a
//! timer, input left over) joins the back of one run queue, once, and each pass of the loop
//! gives every connection queued before it one turn, in queue order. A turn reads at most
//! [`TURN_BYTES`] and goes on reading for at most [`TURN_TIME`]; a connection that had more
//! joins the back of the queue again, behind those that became ready meanwhile. So a
//! connection streaming large messages delays a small message on another by one turn at most.
//! Output is bounded by `write_buffer_size` exactly as on the async path.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::{self, IoSlice};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::buffer::spare_capacity;
use rustix::event::{EventfdFlags, Timespec, epoll, eventfd};
use tracing::{debug, warn};
use ws_proto::{
    CloseCode, Connection, Deadline, Session, State, TimerAction, TimerSettings, TransportCommand,
};
use ws_transport::{Config, WebSocket};
use ws_uring::{Completion, Ring};

use crate::budget::{Budget, Held, PRESSURE_CHECK};
use crate::handle::{Backlog, ConnHandle, HandleInner, Mailbox, Outbound};
use crate::handler::{
    End, Handler, Pass, drop_handler, guarded, hand_frames, log_end, panicked, pump,
};
use crate::options::{Engine as EngineKind, LiveGuard, Options};
use crate::stats::{Pending, Shard, Stats};
use crate::wire::{Ask, Wire};

/// The epoll key of an engine's wake-up eventfd; connections use slot keys below it.
const WAKE: u64 = u64::MAX;
/// The smallest read requested, whatever `read_buffer_size` says.
const MIN_READ: usize = 2 << 10;
/// Bytes one connection may read in one turn before the others get theirs (one message of
/// 1 MiB, or four reads of 256 KiB).
const TURN_BYTES: usize = 1 << 20;
/// How long one connection's turn goes on reading: a handler that is slow per message (or
/// inflating large ones) gives way once the read during which this passed is handled, as a
/// fast one does after [`TURN_BYTES`].
const TURN_TIME: Duration = Duration::from_millis(1);
/// How often connections waiting for the memory budget look at it again.
const BUDGET_RETRY: Duration = Duration::from_millis(10);
/// Events taken from epoll per wait.
const EVENTS_PER_WAIT: usize = 256;
/// The io_uring engine's receive buffers: lent to connections' receives as bytes arrive and
/// back once copied, so they bound only what is in flight between the kernel and the engine
/// in one pass. 2 MiB per engine thread, fixed from its start: like the thread's stack, not
/// counted in the memory budget (which counts what grows with connections and their peers).
const URING_BUFFERS: u16 = 128;
const URING_BUFFER_SIZE: usize = 16 << 10;
/// Submission queue entries per io_uring engine (a full queue is submitted early).
const URING_ENTRIES: u32 = 1024;
/// The smallest limit on a connection's io_uring input and output buffers.
const URING_MIN_CAP: usize = 64 << 10;

/// Read buffers an engine keeps for its connections to share: a connection that waits for
/// input returns its buffer here, and the next one to read takes it, so neither allocates nor
/// zeroes one per message, and idle connections hold none. Each is at most twice
/// `read_buffer_size` (larger ones are freed), so the pool holds at most 8 MiB with ws-echo's
/// 256 KiB reads. One engine thread reads for one connection at a time, so a few suffice.
const POOLED_BUFFERS: usize = 16;

/// Engine threads, with connections dealt to them in turn.
#[derive(Debug)]
pub(crate) struct Pool<H: Handler> {
    engines: Vec<(Arc<Inbox<H>>, JoinHandle<()>)>,
    next: AtomicUsize,
}

/// What the accepting side tells an engine.
enum Command<H> {
    Adopt(Box<Adopted<H>>),
    /// Close every connection with 1001, take no more, and end when they are gone or
    /// `close_timeout` plus a second has passed.
    Stop,
}

/// An accepted connection on its way to an engine.
struct Adopted<H> {
    stream: TcpStream,
    /// The TLS state, for a TLS connection.
    tls: Option<Box<crate::tls::Tls>>,
    conn: Connection,
    handler: H,
    peer: SocketAddr,
    guard: LiveGuard,
}

/// An engine's inbox: new connections, and the mailbox shared with its connections' handles.
#[derive(Debug)]
struct Inbox<H> {
    /// `None` once the engine has ended: what is sent then is dropped at once.
    commands: Mutex<Option<Vec<Command<H>>>>,
    mailbox: Arc<Mailbox>,
}

impl<H> std::fmt::Debug for Command<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Adopt(_) => "Adopt",
            Self::Stop => "Stop",
        })
    }
}

impl<H> Inbox<H> {
    /// Passes `command` on; once the engine has ended it is dropped (an adopted connection
    /// then closes, and stops counting as live).
    fn send(&self, command: Command<H>) {
        if let Some(commands) =
            self.commands.lock().unwrap_or_else(PoisonError::into_inner).as_mut()
        {
            commands.push(command);
        }
        self.mailbox.wake();
    }
}

impl<H: Handler> Pool<H> {
    /// Starts `options.threads` engine threads.
    pub(crate) fn start(options: &Options, budget: &Arc<Budget>) -> io::Result<Self> {
        let threads = options.threads.max(1);
        let mut engines = Vec::with_capacity(threads);
        for i in 0..threads {
            let engine = Engine::create(options, Arc::clone(budget))?;
            let inbox = Arc::clone(&engine.inbox);
            let thread = std::thread::Builder::new()
                .name(format!("ws-server-io-{i}"))
                .spawn(move || engine.run())?;
            engines.push((inbox, thread));
        }
        Ok(Self { engines, next: AtomicUsize::new(0) })
    }

    /// Hands an accepted WebSocket and its handler to the next engine, with the guard that
    /// counts it live.
    pub(crate) fn adopt(
        &self,
        ws: WebSocket<crate::server::Stream>,
        handler: H,
        peer: SocketAddr,
        guard: LiveGuard,
    ) -> io::Result<()> {
        let (stream, conn) = ws.into_parts();
        let (stream, tls) = stream.into_parts();
        // Leaves smol's reactor; the socket stays non-blocking.
        let stream = stream.into_inner()?;
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.engines.len();
        let adopted = Box::new(Adopted { stream, tls, conn, handler, peer, guard });
        self.engines[i].0.send(Command::Adopt(adopted));
        Ok(())
    }

    /// Tells every engine to close its connections with 1001 and end.
    pub(crate) fn stop(&self) {
        for (inbox, _) in &self.engines {
            inbox.send(Command::Stop);
        }
    }

    /// Stops the engines and waits for their threads to end (within the close timeout plus
    /// a second).
    pub(crate) fn join(mut self) {
        self.stop();
        for (_, thread) in self.engines.drain(..) {
            let _ = thread.join();
        }
    }
}

impl<H: Handler> Drop for Pool<H> {
    /// A server dropped without running still ends its engine threads.
    fn drop(&mut self) {
        self.stop();
    }
}

/// One engine: its epoll set, its connections, their timers.
struct Engine<H: Handler> {
    epoll: OwnedFd,
    /// On an io_uring engine: the ring, once the thread has started it (else epoll).
    ring: Option<Ring>,
    /// It is to be an io_uring engine where the kernel allows.
    want_ring: bool,

    inbox: Arc<Inbox<H>>,
    config: Config,
    /// See [`Options::max_backlog`].
    max_backlog: usize,
    /// See [`Options::max_connections`].
    max_connections: usize,
    /// The protocol timers' part of `config`, shared by every connection.
    timer_settings: TimerSettings,
    /// Connections by slot; a key is `generation << 32 | slot`, so a stale key never reaches
    /// a connection that reused the slot.
    slots: Vec<Slot<H>>,
    free: Vec<u32>,
    live: usize,
    /// Deadlines, earliest first; an entry is acted on only if it is still its connection's
    /// `timer_at` (later entries are left to expire unread).
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    /// The run queue: connections with something to do, each at most once (see `queued`),
    /// served in order, one turn each per pass of the loop.
    ready: VecDeque<u64>,
    /// How much one turn may read: [`TURN_BYTES`] and [`TURN_TIME`] (smaller in tests).
    turn_limit: TurnLimit,
    /// Set by [`Command::Stop`]: when the engine gives up on connections still open.
    drain_deadline: Option<Instant>,
    /// Read buffers not in use; see [`POOLED_BUFFERS`].
    pool: Vec<Vec<u8>>,
    /// On an io_uring engine, connections' input and output buffers not in use (empty, unlike
    /// `pool`'s read buffers, which stay initialised to their full length): at most
    /// [`POOLED_BUFFERS`], each at most the connection's limit.
    spare: Vec<Vec<u8>>,
    /// The server's memory budget, and what the pools hold of it.
    budget: Arc<Budget>,
    pool_held: Held,
    /// Connections that wait for the budget before they read again.
    stalled: Vec<u64>,
    /// When connections holding their share are next looked for, while the budget is
    /// under pressure.
    next_pressure_scan: Instant,
    /// Where this thread counts, with [`Options::stats`].
    stats: Option<(Arc<Stats>, Arc<Shard>)>,
    /// Traffic taken from connections since the last pass of the loop, for the shard.
    pending: Pending,
}

struct Slot<H> {
    generation: u32,
    conn: Option<Box<Conn<H>>>,
}

impl<H> Default for Slot<H> {
    fn default() -> Self {
        Self { generation: 0, conn: None }
    }
}

/// A connection on an engine.
struct Conn<H> {
    /// The socket, with its TLS state for a TLS connection.
    wire: Wire,
    /// The connection and its policy: timers, reading, closing.
    session: Session,
    handler: H,
    /// Handle commands waiting for the handler's own message to end (8 bytes while none
    /// wait).
    backlog: Backlog,
    peer: SocketAddr,
    _guard: LiveGuard,
    /// An edge said the socket may have input not read yet.
    readable: bool,
    /// An edge said the socket may take more output.
    writable: bool,
    /// An edge said the peer ended its side (`EPOLLRDHUP`): a short read no longer means
    /// the socket is drained, as the end of stream is still to be read.
    peer_ended: bool,
    /// The deadline this connection has in the engine's heap, if any.
    timer_at: Option<Instant>,
    end: Option<End>,
    bytes_read: u64,
    bytes_written: u64,
    /// When it opened, for the access log.
    opened: Instant,
    /// What it holds, as counted in the memory budget.
    held: Held,
    /// It waits for the budget to read, in the engine's `stalled` list.
    stalled: bool,
    /// Its handler panicked: it is called no more, and the connection closes with 1011.
    poisoned: bool,
    /// It is in the engine's run queue, `ready`.
    queued: bool,
}

/// The engine's buffer pools, lent to a turn.
struct Pools<'a> {
    /// Read buffers, initialised to their full length.
    read: &'a mut Vec<Vec<u8>>,
    /// io_uring input and output buffers, empty.
    spare: &'a mut Vec<Vec<u8>>,
}

/// How far one turn reads: at most `bytes`, and no more once it has read for `time`.
#[derive(Debug, Clone, Copy)]
struct TurnLimit {
    bytes: usize,
    time: Duration,
}

/// Where a connection's turn left it.
enum Turn {
    /// Waiting for an edge or a timer.
    Wait,
    /// Turn spent ([`TURN_BYTES`] or [`TURN_TIME`]) with input possibly left: another turn
    /// after the others.
    Again,
    /// It would read, but the server's memory budget is spent: another turn once it is not
    /// (timers and edges meanwhile as for `Wait`).
    Stalled,
    /// Finished: remove it.
    Done(Result<End, io::Error>),
}

impl<H: Handler> Engine<H> {
    /// An engine with its epoll set and inbox, not yet running.
    fn create(options: &Options, budget: Arc<Budget>) -> io::Result<Self> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let wake = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        epoll::add(&epoll, &wake, epoll::EventData::new_u64(WAKE), epoll::EventFlags::IN)?;
        let mailbox = Arc::new(Mailbox {
            commands: Mutex::new(Vec::new()),
            bytes: AtomicUsize::new(0),
            limit: options.mailbox_bytes,
            ended: AtomicBool::new(false),
            wake,
        });
        let inbox = Arc::new(Inbox { commands: Mutex::new(Some(Vec::new())), mailbox });
        let config = options.transport.clone();
        Ok(Self {
            epoll,
            ring: None,
            want_ring: options.engine == EngineKind::Uring,

            inbox,
            timer_settings: config.timers(),
            config,
            max_backlog: options.max_backlog,
            max_connections: options.max_connections,
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            timers: BinaryHeap::new(),
            ready: VecDeque::new(),
            turn_limit: TurnLimit { bytes: TURN_BYTES, time: TURN_TIME },
            drain_deadline: None,
            pool: Vec::new(),
            spare: Vec::new(),
            budget,
            pool_held: Held::default(),
            stalled: Vec::new(),
            next_pressure_scan: Instant::now(),
            stats: options.stats.as_ref().map(|stats| (Arc::clone(stats), stats.shard())),
            pending: Pending::default(),
        })
    }

    fn run(mut self) {
        if self.want_ring {
            self.start_ring();
        }
        let mut events = Vec::with_capacity(EVENTS_PER_WAIT);
        while self.step(&mut events) {}
        self.end();
    }

    /// Moves the engine's I/O to io_uring, on the thread that runs it (the ring takes
    /// submissions from one thread), before any connection comes; if the kernel cannot, the
    /// engine stays on epoll and says why.
    fn start_ring(&mut self) {
        let settings = ws_uring::Settings {
            entries: URING_ENTRIES,
            // One registered file per connection the server may hold.
            files: u32::try_from(self.max_connections).unwrap_or(u32::MAX),
            buffers: URING_BUFFERS,
            buffer_size: URING_BUFFER_SIZE,
        };
        let started = Ring::new(settings).and_then(|mut ring| {
            ring.poll(WAKE, self.inbox.mailbox.wake.as_raw_fd())?;
            Ok(ring)
        });
        match started {
            Ok(ring) => {
                debug!(files = ring.files(), "engine on io_uring");
                self.ring = Some(ring);
            }
            Err(err) => warn!("io_uring unavailable, this engine uses epoll: {err}"),
        }
    }

    /// One pass of the loop: waits for edges (not at all while connections are queued),
    /// queues the connections they name, gives every connection queued by then one turn,
    /// then looks at timers and the memory budget. False once the engine is to end.
    fn step(&mut self, events: &mut Vec<epoll::Event>) -> bool {
        let now = Instant::now();
        if let Some(deadline) = self.drain_deadline {
            if self.live == 0 || now >= deadline {
                return false;
            }
        }
        let timeout = if self.ready.is_empty() {
            // While the budget is spent: look again shortly, for room or for pressure.
            let spent = !self.stalled.is_empty() || self.budget.exhausted();
            let retry = spent.then(|| now + BUDGET_RETRY);
            let next = self.timers.peek().map(|Reverse((at, _))| *at);
            let next = match (next, retry) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let next = match (next, self.drain_deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            next.map(|at| at.saturating_duration_since(now))
        } else {
            Some(Duration::ZERO)
        };
        if let Some((_, shard)) = &self.stats {
            shard.flush(&mut self.pending);
        }
        let waited = match self.ring.is_some() {
            true => self.reap(timeout),
            false => self.wait(events, timeout),
        };
        if !waited {
            return false;
        }
        let now = Instant::now();
        // One turn each for the connections queued by now; those that queue again during
        // the pass go after the next wait, behind whatever became ready meanwhile.
        for _ in 0..self.ready.len() {
            let Some(key) = self.ready.pop_front() else { break };
            let Some(c) = self.get(key) else { continue };
            c.queued = false;
            self.turn(key, now);
        }
        self.expire_timers(now);
        self.retry_stalled(now);
        if self.budget.exhausted() {
            // The pool is a cache: it must not be what keeps the budget spent.
            self.pool.clear();
            self.spare.clear();
        }
        let pooled = self.pool.iter().chain(&self.spare).map(Vec::capacity).sum();
        self.pool_held.update(&self.budget, pooled);
        true
    }

    /// Waits for epoll's edges (at most `timeout`) and queues the connections they name.
    /// False if epoll failed.
    fn wait(&mut self, events: &mut Vec<epoll::Event>, timeout: Option<Duration>) -> bool {
        let timeout = timeout.map(timespec);
        events.clear();
        match epoll::wait(&self.epoll, spare_capacity(events), timeout.as_ref()) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => return true,
            Err(err) => {
                warn!("epoll_wait failed, closing this engine's connections: {err}");
                return false;
            }
        }
        let now = Instant::now();
        for event in events.iter() {
            let key = event.data.u64();
            if key == WAKE {
                self.take_commands(now);
                continue;
            }
            let flags = event.flags;
            let Some(c) = self.get(key) else { continue };
            use epoll::EventFlags as F;
            if flags.intersects(F::IN | F::RDHUP | F::HUP | F::ERR) {
                c.readable = true;
            }
            if flags.intersects(F::RDHUP | F::HUP | F::ERR) {
                c.peer_ended = true;
            }
            if flags.intersects(F::OUT | F::HUP | F::ERR) {
                c.writable = true;
            }
            self.wake(key);
        }
        true
    }

    /// Submits what the last pass queued on the ring, waits for completions (at most
    /// `timeout`), and hands each to its connection, which joins the run queue. False if the
    /// ring failed.
    fn reap(&mut self, timeout: Option<Duration>) -> bool {
        let Self { ring: Some(ring), slots, ready, spare, .. } = self else { return true };
        let want = usize::from(timeout != Some(Duration::ZERO));

        if let Err(err) = ring.submit_and_wait(want, timeout) {
            warn!("io_uring_enter failed, closing this engine's connections: {err}");
            return false;
        }
        let (mut woken, mut poll_ended) = (false, false);
        ring.complete(|key, completion| {
            if key == WAKE {
                woken = true;
                poll_ended |= matches!(completion, Completion::Polled { armed: false });
                return;
            }
            let Some(c) = conn_mut(slots, key) else { return };
            let Some(uring) = c.wire.uring_mut() else { return };
            match completion {
                Completion::Recv { data, armed } => {
                    if !armed {
                        uring.recv = None;
                        uring.cancelling = false;
                    }
                    uring.received(data, spare);
                    c.readable = true;
                }
                Completion::Sent { result, buf, offset } => {
                    let failed = result.is_err();
                    uring.sent(result, buf, offset);
                    // A send that went whole, from a connection that was not waiting for it
                    // (it could still write, nothing else is staged, it is not closing),
                    // needs no turn: one message then costs one turn, not two.
                    let waited = !c.writable || uring.owes() || failed;
                    c.writable = true;
                    if !waited && c.session.is_open() && c.end.is_none() {
                        // It waits without a turn: the send's buffer, kept for its next
                        // output, goes to the spare ones instead (an idle connection holds
                        // no buffer).
                        for buf in c.wire.take_idle_uring_buffers() {
                            if spare.len() < POOLED_BUFFERS {
                                spare.push(buf);
                            }
                        }
                        return;
                    }
                }
                Completion::Polled { .. } => {}
            }
            if !std::mem::replace(&mut c.queued, true) {
                ready.push_back(key);
            }
        });
        if poll_ended {
            if let Err(err) = ring.poll(WAKE, self.inbox.mailbox.wake.as_raw_fd()) {
                warn!("cannot watch this engine's wake-ups, closing its connections: {err}");
                return false;
            }
        }
        if woken {
            self.take_commands(Instant::now());
        }
        true
    }

    /// After a turn on an io_uring engine: starts or stops the connection's receive, and
    /// submits what it has to send, as its state asks.
    fn sync_ring(&mut self, key: u64) {
        let Some(ring) = self.ring.as_mut() else { return };
        let Some(c) = conn_mut(&mut self.slots, key) else { return };
        let Some(uring) = c.wire.uring_mut() else { return };
        let mut failed = false;
        match uring.ask() {
            Some(Ask::Recv) => match ring.recv(key, uring.target) {
                Ok(id) => uring.recv = Some(id),
                Err(err) => {
                    uring.fail(err);
                    failed = true;
                }
            },
            Some(Ask::Cancel(id)) => uring.cancelling = ring.cancel(id).is_ok(),
            None => {}
        }
        if let Some((buf, offset)) = uring.take_send() {
            let held = buf.capacity();
            match ring.send(key, uring.target, buf, offset) {
                Ok(id) => uring.sending = Some((id, held)),
                Err((err, buf)) => {
                    uring.refused(err, buf, offset);
                    failed = true;
                }
            }
        }
        if failed {
            // The next turn reads the error and ends the connection.
            c.readable = true;
            self.wake(key);
        }
    }

    /// The engine ends: what it still holds is released, and every handler hears how its
    /// connection ended.
    fn end(&mut self) {
        self.pool_held.release(&self.budget);
        // Nothing more comes in: connections handed over since are dropped (they close), and
        // handles are refused.
        self.inbox.mailbox.ended.store(true, Ordering::Release);
        let late = self.inbox.commands.lock().unwrap_or_else(PoisonError::into_inner).take();
        for command in late.into_iter().flatten() {
            if let Command::Adopt(adopted) = command {
                let Adopted { handler, peer, .. } = *adopted;
                drop_handler(peer, handler);
            }
        }
        if self.live > 0 {
            debug!(open = self.live, "engine ending with connections still open");
        }
        // Every handler still here hears how its connection ended.
        for index in 0..self.slots.len() {
            let key = u64::from(self.slots[index].generation) << 32 | index as u64;
            let err = io::Error::new(io::ErrorKind::TimedOut, "the engine ended (shutdown)");
            self.remove(key, Err(err));
        }
        if let Some((_, shard)) = &self.stats {
            shard.flush(&mut self.pending);
        }
    }

    fn get(&mut self, key: u64) -> Option<&mut Conn<H>> {
        conn_mut(&mut self.slots, key)
    }

    /// Puts the connection at the back of the run queue, unless it is there already.
    fn wake(&mut self, key: u64) {
        if let Some(c) = conn_mut(&mut self.slots, key) {
            if !std::mem::replace(&mut c.queued, true) {
                self.ready.push_back(key);
            }
        }
    }

    fn take_commands(&mut self, now: Instant) {
        let mut counter = [0u8; 8];
        let _ = rustix::io::read(&self.inbox.mailbox.wake, &mut counter);
        for (key, command) in self.inbox.mailbox.take() {
            self.outbound(key, command, now);
        }
        let commands = std::mem::take(
            self.inbox
                .commands
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_or_insert_default(),
        );
        for command in commands {
            match command {
                Command::Adopt(adopted) => self.adopt(*adopted, now),
                Command::Stop => {
                    let close = self.config.close_timeout + Duration::from_secs(1);
                    self.drain_deadline.get_or_insert(now + close);
                    let keys: Vec<u64> = (0..self.slots.len())
                        .filter(|&i| self.slots[i].conn.is_some())
                        .map(|i| u64::from(self.slots[i].generation) << 32 | i as u64)
                        .collect();
                    for key in keys {
                        self.going_away(key, now);
                    }
                }
            }
        }
    }

    /// A command from a [`ConnHandle`]: queued on the connection now, or after the
    /// handler's own message if one is half sent; past [`Options::max_backlog`] the
    /// connection is closed with 1013 instead.
    fn outbound(&mut self, key: u64, command: Outbound, now: Instant) {
        let max_backlog = self.max_backlog;
        // A connection that has ended since: dropped.
        let Some(c) = self.get(key) else { return };
        if !c.backlog.fits(c.session.connection(), &command, max_backlog) {
            // What earlier commands queued may be only waiting for its turn: one now writes
            // it (as every command's own turn did before commands queued the connection),
            // so that only a peer too slow to take it is over the limit.
            self.turn(key, now);
        }
        let Some(c) = self.get(key) else { return };
        if !c.backlog.offer(c.session.connection_mut(), command, max_backlog)
            && c.session.is_open()
            && c.session.close(CloseCode::TRY_AGAIN_LATER, "backlog limit", now).is_ok()
        {
            c.end = Some(End::Closed(CloseCode::TRY_AGAIN_LATER));
        }
        self.wake(key);
    }

    fn adopt(&mut self, adopted: Adopted<H>, now: Instant) {
        let Adopted { stream, tls, conn, handler, peer, guard } = adopted;
        let index = match self.free.pop() {
            Some(index) => index as usize,
            None => {
                self.slots.push(Slot::default());
                self.slots.len() - 1
            }
        };
        let slot = &mut self.slots[index];
        slot.generation = slot.generation.wrapping_add(1);
        let key = u64::from(slot.generation) << 32 | index as u64;
        let wire = match self.ring.as_mut() {
            Some(ring) => {
                let target = ring.register(index as u32, stream.as_raw_fd());
                let config = &self.config;
                let cap = config.read_buffer_size.max(config.write_buffer_size).max(URING_MIN_CAP);
                Wire::uring(stream, tls, target, cap)
            }
            None => {
                use epoll::EventFlags as F;
                let flags = F::IN | F::OUT | F::RDHUP | F::ET;
                let data = epoll::EventData::new_u64(key);
                if let Err(err) = epoll::add(&self.epoll, stream.as_fd(), data, flags) {
                    warn!(%peer, "cannot watch the connection: {err}");
                    self.free.push(index as u32);
                    drop_handler(peer, handler);
                    return;
                }
                Wire::new(stream, tls)
            }
        };
        let tls = wire.is_tls();
        debug!(%peer, tls, "open");
        // Plaintext rustls decrypted with the handshake raises no edge: the first turn
        // reads it.
        let readable = tls;
        // Frame bytes that came with the handshake count as read.
        let already_read = conn.buffered_input() as u64;
        slot.conn = Some(Box::new(Conn {
            wire,
            session: Session::new(conn, now),
            handler,
            backlog: Backlog::default(),
            peer,
            _guard: guard,
            // Registering reports the socket's state as a first edge; input buffered with the
            // handshake is echoed by the first turn.
            readable,
            writable: true,
            peer_ended: false,
            timer_at: None,
            end: None,
            bytes_read: already_read,
            bytes_written: 0,
            opened: now,
            held: self.budget.connection(),
            stalled: false,
            poisoned: false,
            queued: false,
        }));
        self.live += 1;
        if let Some((_, shard)) = &self.stats {
            shard.opened();
        }
        let handle =
            ConnHandle::new(HandleInner::Epoll { mailbox: Arc::clone(&self.inbox.mailbox), key });
        if let Some(c) = self.get(key) {
            if guarded(c.peer, "on_open", || c.handler.on_open(&handle)).is_none() {
                c.poison(now);
            }
        }
        if self.drain_deadline.is_some() {
            self.going_away(key, now);
        } else {
            self.wake(key);
        }
    }

    /// Starts the close handshake with 1001 (server shutting down). A frame half sent is
    /// finished first.
    fn going_away(&mut self, key: u64, now: Instant) {
        let Some(c) = self.get(key) else { return };
        if c.session.is_open()
            && c.session.close(CloseCode::GOING_AWAY, "server shutting down", now).is_ok()
        {
            c.end = Some(End::Closed(CloseCode::GOING_AWAY));
        }
        self.wake(key);
    }

    fn turn(&mut self, key: u64, now: Instant) {
        let config = &self.config;
        let Some(c) = conn_mut(&mut self.slots, key) else { return };
        let pools = Pools { read: &mut self.pool, spare: &mut self.spare };
        let turn = c.turn(now, config, self.turn_limit, pools, &self.budget);
        if self.stats.is_some() {
            self.pending.take(c.session.connection_mut());
        }
        let was_poisoned = c.poisoned;
        if !c.poisoned && !hand_frames(c.session.connection_mut(), &mut c.handler, c.peer) {
            c.poison(now);
        }
        if !matches!(turn, Turn::Done(_)) {
            let held = c.memory();
            c.held.update(&self.budget, held);
        }
        // Poisoned after its turn (`memory` included): another writes the close frame.
        let again = matches!(turn, Turn::Again) || (c.poisoned && !was_poisoned);
        match turn {
            Turn::Stalled => {
                if !std::mem::replace(&mut c.stalled, true) {
                    self.stalled.push(key);
                }
                self.schedule(key, now);
            }
            Turn::Wait => self.schedule(key, now),
            Turn::Again => {}
            Turn::Done(result) => return self.remove(key, result),
        }
        self.sync_ring(key);
        // A connection removed just now is not queued (its key no longer names it).
        if again {
            self.wake(key);
        }
    }

    /// Puts the connection's next deadline in the heap, unless an earlier one is there.
    fn schedule(&mut self, key: u64, now: Instant) {
        let Some(c) = conn_mut(&mut self.slots, key) else { return };
        let next = c.session.poll_timeout(&self.timer_settings, now);
        if let Some((stats, _)) = &self.stats {
            if let Some(rtt) = c.session.take_ping_rtt() {
                stats.ping_rtt(rtt);
            }
        }
        if let Some((at, _)) = next {
            if c.timer_at.is_none_or(|scheduled| at < scheduled) {
                c.timer_at = Some(at);
                self.timers.push(Reverse((at, key)));
            }
        }
    }

    /// Connections waiting for the memory budget: another turn each once it is not spent.
    /// Under pressure (see [`Budget`]), those of this engine's connections that hold at
    /// least their share of it are closed with 1013, looked for every [`PRESSURE_CHECK`].
    fn retry_stalled(&mut self, now: Instant) {
        if !self.stalled.is_empty() && !self.budget.exhausted() {
            // In the order they stalled, for as long as the budget lasts: those it does not
            // reach keep their place, ahead of any that stall again.
            let mut stalled = std::mem::take(&mut self.stalled).into_iter();
            for key in stalled.by_ref() {
                if let Some(c) = self.get(key) {
                    c.stalled = false;
                    self.turn(key, now);
                }
                if self.budget.exhausted() {
                    break;
                }
            }
            let again = std::mem::replace(&mut self.stalled, stalled.collect());
            self.stalled.extend(again);
        }
        if !self.budget.closing() || now < self.next_pressure_scan {
            return;
        }
        self.next_pressure_scan = now + PRESSURE_CHECK;
        let share = self.budget.share();
        let over: Vec<u64> = (0..self.slots.len())
            .filter_map(|i| {
                let c = self.slots[i].conn.as_ref()?;
                let key = u64::from(self.slots[i].generation) << 32 | i as u64;
                (c.held.bytes() >= share).then_some(key)
            })
            .collect();
        for key in over {
            if !self.budget.closing() {
                break;
            }
            let Some(c) = self.get(key) else { continue };
            let held = c.held.bytes();
            // A close frame 1013 (Try Again Later) and one try to write it: the peer is most
            // likely not reading, and what it holds must be freed now.
            if c.session.close(CloseCode::TRY_AGAIN_LATER, "memory budget", now).is_ok() {
                let _ = c.wire.write(&[IoSlice::new(c.session.pending_output())]);
                let _ = c.wire.flush();
            }
            let why = format!("closed with 1013: it held {held} bytes of a spent memory budget");
            self.remove(key, Err(io::Error::other(why)));
        }
    }

    fn expire_timers(&mut self, now: Instant) {
        while let Some(&Reverse((at, key))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(c) = conn_mut(&mut self.slots, key) else { continue };
            if c.timer_at != Some(at) {
                continue;
            }
            c.timer_at = None;
            match c.session.poll_timeout(&self.timer_settings, now) {
                Some((due, which)) if due <= now => self.on_deadline(key, which, now),
                // Pushed back by activity since it was scheduled.
                Some(_) => self.wake(key),
                None => {}
            }
        }
    }

    fn on_deadline(&mut self, key: u64, which: Deadline, now: Instant) {
        let Some(c) = self.get(key) else { return };
        match c.session.handle_timeout(which, now) {
            TimerAction::Abort(which) => {
                let why = match which {
                    Deadline::Pong => {
                        // A 1011 close frame is queued: one try to say so.
                        let _ = c.wire.write(&[IoSlice::new(c.session.pending_output())]);
                        let _ = c.wire.flush();
                        "keepalive ping unanswered"
                    }
                    Deadline::Write => "peer stopped reading",
                    // The close handshake completed; the peer only kept its side open.
                    _ if c.session.connection().state() == State::Closed && c.end.is_some() => {
                        let end = c.end.take().unwrap_or(End::Disconnected);
                        self.remove(key, Ok(end));
                        return;
                    }
                    _ => "close handshake timed out",
                };
                self.remove(key, Err(io::Error::new(io::ErrorKind::TimedOut, why)));
            }
            _ => {
                if which == Deadline::Idle {
                    c.end = Some(End::Closed(CloseCode::GOING_AWAY));
                }
                self.wake(key);
            }
        }
    }

    fn remove(&mut self, key: u64, result: Result<End, io::Error>) {
        let index = (key & 0xffff_ffff) as usize;
        let Some(c) = self.slots[index].conn.take() else { return };
        self.free.push(index as u32);
        self.live -= 1;
        let mut c = c;
        c.held.release(&self.budget);
        c.wire.last_try();
        if let (Some(ring), Some(uring)) = (self.ring.as_mut(), c.wire.uring_mut()) {
            // What it still has to send gets one try (a close frame, say); then its receive
            // and any send the peer is not taking end, and the socket leaves the file table.
            // It closes once the kernel has let go of it.
            if let Some(id) = uring.recv.take() {
                let _ = ring.cancel(id);
            }
            if let Some((id, _)) = uring.sending.take() {
                let _ = ring.cancel(id);
            }
            if let Err(err) = ring.unregister(uring.target) {
                warn!(peer = %c.peer, "io_uring: cannot release the socket: {err}");
            }
        }
        let end = result.unwrap_or_else(End::Error);
        if let Some((_, shard)) = &self.stats {
            self.pending.take(c.session.connection_mut());
            shard.closed();
        }
        let open_for = c.opened.elapsed();
        log_end(c.peer, &end, c.session.connection(), open_for, c.bytes_read, c.bytes_written);
        if !c.poisoned && hand_frames(c.session.connection_mut(), &mut c.handler, c.peer) {
            let _ = guarded(c.peer, "on_close", || c.handler.on_close(&end));
        }
        // Dropping the stream closes the socket, which also takes it out of the epoll set.
        let Conn { handler, peer, .. } = *c;
        drop_handler(peer, handler);
    }
}

impl<H: Handler> Conn<H> {
    /// Moves the connection as far as it can go without waiting: writes what is owed, ends
    /// the stream when the session says so, echoes what is buffered, and reads while the
    /// session wants input and the socket has it (as far as `limit` lets it: see
    /// [`TURN_BYTES`] and [`TURN_TIME`]). Read buffers come
    /// from and go back to `pools.read`.
    fn turn(
        &mut self,
        now: Instant,
        config: &Config,
        limit: TurnLimit,
        pools: Pools<'_>,
        budget: &Budget,
    ) -> Turn {
        let Pools { read: pool, spare } = pools;
        let mut read_this_turn = 0;
        // When the first read of the turn ended: the clock is read only by turns that read
        // again, so a small message costs no clock read.
        let mut reading_since: Option<Instant> = None;
        loop {
            while self.writable {
                // TLS bytes already encrypted go first.
                match self.wire.flush() {
                    Ok(flushed) => {
                        if flushed.moved {
                            // Output moved: the write timeout starts again.
                            self.session.wrote(0);
                        }
                        if !flushed.drained {
                            self.writable = false;
                            break;
                        }
                    }
                    Err(err) => return Turn::Done(Err(err)),
                }
                if self.session.pending_output().is_empty() {
                    break;
                }
                match self.wire.write(&[IoSlice::new(self.session.pending_output())]) {
                    Ok(Some(n)) => {
                        self.session.wrote(n);
                        self.bytes_written += n as u64;
                    }
                    Ok(None) => self.writable = false,
                    Err(err) => return Turn::Done(Err(err)),
                }
            }
            if !self.session.pending_output().is_empty() {
                // The socket takes no more. Input waits for the next write edge, unless the
                // peer is inside a message: then we read on and hold the reply, so that a
                // peer that writes a whole message before it reads is not deadlocked.
                self.session.write_blocked(now);
                if !self.session.wants_read() {
                    self.idle(pool, spare, config);
                    return Turn::Wait;
                }
            }
            // Only rustls holds output, and the socket takes none: the write timeout runs, as
            // for output the session holds.
            if self.session.pending_output().is_empty() && self.wire.owes() && !self.writable {
                self.session.write_blocked(now);
            }
            // What the session asks of the transport waits for what rustls holds: the end of
            // our side goes after it, and the socket is not closed on it.
            while !self.wire.owes() {
                let Some(command) = self.session.poll_transport() else { break };
                match command {
                    TransportCommand::ShutdownWrite => self.wire.shutdown_write(),
                    // Nothing is held for the socket by now (see above): it may close.
                    _ => return Turn::Done(Ok(self.end.take().unwrap_or(End::Disconnected))),
                }
            }
            // While the memory budget is spent, input read is not taken (taking it is what
            // allocates: replies, zlib state); only what is owed is written.
            if budget.exhausted() && self.session.connection().buffered_input() > 0 {
                self.idle(pool, spare, config);
                return Turn::Stalled;
            }
            // Large binary payload goes from the input buffer straight to the socket.
            let mut write_error = None;
            // Handle commands that waited for the handler's message to end.
            self.backlog.apply(self.session.connection_mut());
            let Self { wire, session, handler, writable, bytes_written, poisoned, peer, .. } = self;
            let mut direct = |pending: &[u8], data: &[u8]| -> usize {
                if !*writable {
                    return 0;
                }
                match wire.write(&[IoSlice::new(pending), IoSlice::new(data)]) {
                    Ok(Some(n)) => {
                        *bytes_written += n as u64;
                        n
                    }
                    Ok(None) => {
                        *writable = false;
                        0
                    }
                    Err(err) => {
                        *writable = false;
                        write_error = Some(err);
                        0
                    }
                }
            };
            let conn = session.connection_mut();
            let pass = if *poisoned {
                // Nothing more reaches the handler: what comes is dropped, as after a close.
                // A pass that dropped events goes round again, for what the session does
                // next (the peer's close frame ends the stream).
                let mut dropped = false;
                while conn.poll_event().is_some() {
                    dropped = true;
                }
                Pass { end: None, more: dropped, over_budget: false, panicked: false, abort: false }
            } else {
                let high = config.write_buffer_size;
                pump(conn, handler, *peer, high, budget, Some(&mut direct))
            };
            if pass.panicked {
                *poisoned = true;
            }
            if pass.abort {
                return Turn::Done(Err(panicked()));
            }
            if let Some(err) = write_error {
                return Turn::Done(Err(err));
            }
            if pass.over_budget {
                // What the pass queued, counted now: the check above then sees it.
                let held = self.memory();
                self.held.update(budget, held);
            }
            if let Some(end) = pass.end {
                // Closing after a close or failure, and what end of stream means, are the
                // session's: it ends the stream once the replies are out.
                if self.session.is_open() {
                    let _ = self.session.close(CloseCode::NORMAL, "", now);
                }
                self.end.get_or_insert(end);
                continue;
            }
            if pass.more
                || pass.over_budget
                || (self.writable && !self.session.pending_output().is_empty())
            {
                continue;
            }
            // The handler's message may have ended in this pass: what waited for it goes now,
            // not on some later event.
            if self.backlog.apply(self.session.connection_mut()) {
                continue;
            }
            if !self.readable || !self.session.wants_read() {
                self.idle(pool, spare, config);
                return Turn::Wait;
            }
            if read_this_turn >= limit.bytes {
                return Turn::Again;
            }
            if read_this_turn > 0 {
                let since = *reading_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= limit.time {
                    return Turn::Again;
                }
            }
            if budget.exhausted() {
                self.idle(pool, spare, config);
                return Turn::Stalled;
            }
            if read_this_turn == 0 {
                if let Some(buf) = pool.pop() {
                    // Handed back when the connection still has its own.
                    if let Some(buf) = self.session.connection_mut().give_input_buffer(buf) {
                        pool.push(buf);
                    }
                }
            }
            // Always the full size: buffers come from the pool already initialised, so a large
            // read costs nothing extra, and a message up to that size arrives in one read and
            // goes back in one write. (Reads sized by the last one split a 16 KiB echo into
            // up to four writes whenever a short read shrank the size: measured at 256 x 16 KiB,
            // the load generator then spent twice the CPU per message, 25-34k msg/s instead
            // of 47-48k.)
            let size = config.read_buffer_size.max(MIN_READ).max(self.wire.min_read());
            let buf = &mut self.session.read_buffer(size)[..size];
            match self.wire.read(buf, &mut self.readable, self.peer_ended, pool) {
                Ok(Some(n)) => {
                    self.session.received(n, now);
                    self.bytes_read += n as u64;
                    read_this_turn += n;
                }
                Ok(None) => {}
                Err(err) => return Turn::Done(Err(err)),
            }
        }
    }

    /// What the connection holds, for the memory budget. A handler that panics here is
    /// poisoned like one that panics anywhere else.
    fn memory(&mut self) -> usize {
        let handler = match self.poisoned {
            false => match guarded(self.peer, "memory", || self.handler.memory()) {
                Some(bytes) => bytes,
                None => {
                    self.poison(Instant::now());
                    0
                }
            },
            true => 0,
        };
        self.session.connection().memory() + handler + self.wire.memory()
    }

    /// The handler panicked: call it no more, and close with 1011.
    fn poison(&mut self, now: Instant) {
        self.poisoned = true;
        if self.session.is_open() {
            let _ = self.session.close(CloseCode::INTERNAL_ERROR, "", now);
        }
        self.end = Some(End::Error(panicked()));
    }

    /// Before waiting for an edge: the read buffer goes back to the pool (unless it holds
    /// part of a frame), empty buffers are freed.
    fn idle(&mut self, pool: &mut Vec<Vec<u8>>, spare: &mut Vec<Vec<u8>>, config: &Config) {
        let conn = self.session.connection_mut();
        let input = conn.take_input_buffer();
        conn.release_idle_buffers();
        let size = config.read_buffer_size.max(MIN_READ).max(self.wire.min_read());
        for buf in input.into_iter().chain(self.wire.take_idle_buffer()) {
            if pool.len() < POOLED_BUFFERS && buf.capacity() <= 2 * size {
                pool.push(buf);
            }
        }
        for buf in self.wire.take_idle_uring_buffers() {
            if spare.len() < POOLED_BUFFERS {
                spare.push(buf);
            }
        }
    }
}

/// The connection a key names, unless its slot was reused since.
fn conn_mut<H>(slots: &mut [Slot<H>], key: u64) -> Option<&mut Conn<H>> {
    let slot = slots.get_mut((key & 0xffff_ffff) as usize)?;
    if u64::from(slot.generation) != key >> 32 {
        return None;
    }
    slot.conn.as_deref_mut()
}

/// An epoll timeout: whole milliseconds, rounded up so that a wait never ends before its
/// deadline (which would spin).
fn timespec(wait: Duration) -> Timespec {
    let ms = wait.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i64;
    Timespec { tv_sec: ms / 1000, tv_nsec: (ms % 1000) * 1_000_000 }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use ws_proto::{Event, ProtocolConfig};

    use super::*;
    use crate::Reply;

    /// Echoes small messages; large ones are only read.
    struct SmallEcho;

    impl Handler for SmallEcho {
        fn on_event(&mut self, event: Event<'_>, reply: &mut Reply<'_>) {
            if let Event::Message(message) = event {
                if message.as_bytes().len() <= 125 {
                    let _ = reply.send_binary(message.as_bytes());
                }
            }
        }
    }

    /// A binary client frame, masked.
    fn frame(payload: &[u8]) -> Vec<u8> {
        ws_tests::client_frame(0x82, payload, [1, 2, 3, 4])
    }

    /// Bytes waiting to be read on a socket.
    fn waiting(stream: &TcpStream) -> usize {
        rustix::io::ioctl_fionread(stream).map_or(0, |n| n as usize)
    }

    /// Waits (boundedly) until `stream` has at least `bytes` to read.
    fn until_waiting(stream: &TcpStream, bytes: usize) {
        let give_up = Instant::now() + Duration::from_secs(10);
        while waiting(stream) < bytes {
            assert!(Instant::now() < give_up, "{} bytes arrived, not {bytes}", waiting(stream));
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// A connected pair on loopback: the client's end, and the server's (non-blocking).
    fn pair(listener: &TcpListener) -> (TcpStream, TcpStream, SocketAddr) {
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, peer) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        (client, server, peer)
    }

    fn adopt(engine: &mut Engine<SmallEcho>, stream: TcpStream, peer: SocketAddr) -> u64 {
        let conn = Connection::server(ProtocolConfig::default());
        let guard = LiveGuard(Arc::new(AtomicUsize::new(1)));
        let handler = SmallEcho;
        engine.adopt(Adopted { stream, tls: None, conn, handler, peer, guard }, Instant::now());
        *engine.ready.back().expect("a new connection is queued for its first turn")
    }

    fn bytes_read(engine: &mut Engine<SmallEcho>, key: u64) -> u64 {
        engine.get(key).expect("the connection is open").bytes_read
    }

    /// One connection streams a large message while another sends small ones: each pass of
    /// the loop gives the streaming one one turn (as much as a turn may read, never two
    /// turns' worth although it is both queued and raising edges), and the small one's echo
    /// goes out in the first pass after it arrives.
    #[test]
    fn a_streaming_connection_gets_one_turn_per_pass() {
        const READ: usize = MIN_READ;
        let mut options = Options::default();
        options.transport.read_buffer_size = READ;
        let budget = Arc::new(Budget::new(options.max_memory));
        let mut engine = Engine::<SmallEcho>::create(&options, budget).unwrap();
        engine.turn_limit.bytes = 4 * READ;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let (mut large, large_server, large_peer) = pair(&listener);
        let (mut small, small_server, small_peer) = pair(&listener);

        // 8 MiB in one message, written as fast as the engine takes it.
        let total = 8 << 20;
        let writer = std::thread::spawn(move || {
            let payload = vec![7u8; total];
            let _ = large.write_all(&frame(&payload));
            large
        });
        // The same sockets, to see what waits on them once the engine has them.
        let (large_probe, small_probe) =
            (large_server.try_clone().unwrap(), small_server.try_clone().unwrap());
        small.write_all(&frame(b"first")).unwrap();
        until_waiting(&small_probe, 11);

        let a = adopt(&mut engine, large_server, large_peer);
        let b = adopt(&mut engine, small_server, small_peer);
        let mut events = Vec::with_capacity(EVENTS_PER_WAIT);
        let limit = engine.turn_limit.bytes + READ;
        let mut echo = [0u8; 7];
        for pass in 0..20 {
            // More than a turn's worth waits for the streaming connection at every pass.
            until_waiting(&large_probe, 2 * limit);
            let before = bytes_read(&mut engine, a);
            let sent = pass == 0 || pass % 5 == 1;
            if sent && pass > 0 {
                small.write_all(&frame(b"again")).unwrap();
                until_waiting(&small_probe, 11);
            }
            assert!(engine.step(&mut events));
            let read = bytes_read(&mut engine, a) - before;
            assert!(read > 0, "pass {pass}: the streaming connection got no turn");
            assert!(read <= limit as u64, "pass {pass}: it read {read} bytes, more than a turn");
            if sent {
                // The small message went in, and its echo out, in this very pass: nothing
                // else runs the engine, so a later pass could not have written it.
                small.read_exact(&mut echo).unwrap();
                let expected: &[u8] = if pass == 0 { b"first" } else { b"again" };
                assert_eq!(&echo[2..], expected, "pass {pass}");
            }
        }

        // Bounded in time too: with no time at all, a turn is one read.
        engine.turn_limit.time = Duration::ZERO;
        for pass in 0..5 {
            until_waiting(&large_probe, 2 * limit);
            let before = bytes_read(&mut engine, a);
            assert!(engine.step(&mut events));
            let read = bytes_read(&mut engine, a) - before;
            assert!(read > 0 && read <= READ as u64, "pass {pass}: it read {read} bytes");
        }
        assert!(engine.get(b).is_some(), "the small connection is still open");
        drop((engine, large_probe, small_probe));
        writer.join().unwrap();
    }
}
