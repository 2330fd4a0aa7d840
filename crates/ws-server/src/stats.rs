//! [`Stats`]: what a server did, counted as it runs, for metrics (ws-echo serves them as
//! Prometheus text).
//!
//! Per-message figures are counted per engine thread: after each turn the connection's
//! [`ws_proto::Traffic`] is added to a plain [`Pending`] tally, which goes into a [`Shard`]
//! only that thread writes (relaxed atomic adds, no cache line shared with other threads)
//! once per pass of the event loop; a scrape sums the shards. Rare events (handshakes, refusals,
//! keepalive round trips) go straight to shared counters.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use ws_proto::{CloseCode, Connection, Tally};

use crate::budget::Budget;

/// Why an incoming connection did not become a WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Refusal {
    /// At [`Options::max_connections`](crate::Options::max_connections): 503.
    Capacity,
    /// The memory budget was spent: 503 (on a TLS port, closed without an answer).
    Memory,
    /// The upgrade request broke the handshake rules: its 4xx.
    BadRequest,
    /// The application refused the upgrade ([`App::upgrade`](crate::App::upgrade)).
    Application,
    /// No complete request head before the handshake timeout.
    Timeout,
    /// The TLS handshake failed, or plain HTTP came to the TLS port (400).
    Tls,
    /// The client went away, or the stream failed, before the handshake completed.
    Closed,
}

impl Refusal {
    /// Every reason, in label order.
    pub const ALL: [Refusal; 7] = [
        Self::Capacity,
        Self::Memory,
        Self::BadRequest,
        Self::Application,
        Self::Timeout,
        Self::Tls,
        Self::Closed,
    ];

    /// The reason as a metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Capacity => "capacity",
            Self::Memory => "memory",
            Self::BadRequest => "bad_request",
            Self::Application => "application",
            Self::Timeout => "timeout",
            Self::Tls => "tls",
            Self::Closed => "closed",
        }
    }
}

/// The close-code labels: the codes RFC 6455 and the IANA registry define (1000 to 1015),
/// then `other` for the rest (4000-4999 and 3000-3999 included), so the label set is
/// bounded whatever peers send.
pub const CLOSE_LABELS: [&str; 17] = [
    "1000", "1001", "1002", "1003", "1004", "1005", "1006", "1007", "1008", "1009", "1010", "1011",
    "1012", "1013", "1014", "1015", "other",
];

fn close_slot(code: CloseCode) -> usize {
    match code.0 {
        code @ 1000..=1015 => usize::from(code - 1000),
        _ => CLOSE_LABELS.len() - 1,
    }
}

/// The upper bounds, in seconds, of the handshake-duration buckets.
pub const HANDSHAKE_BUCKETS: [f64; 14] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// The upper bounds, in seconds, of the keepalive round-trip buckets.
pub const PING_RTT_BUCKETS: [f64; 14] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 20.0];

/// A histogram over fixed buckets, counted with relaxed atomics.
#[derive(Debug)]
struct Histogram {
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); the last is past every bound.
    buckets: Vec<AtomicU64>,
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        let buckets = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Self { bounds, buckets, sum_nanos: AtomicU64::new(0) }
    }

    fn observe(&self, value: Duration) {
        let secs = value.as_secs_f64();
        let i = self.bounds.iter().position(|&bound| secs <= bound).unwrap_or(self.bounds.len());
        self.buckets[i].fetch_add(1, Relaxed);
        let nanos = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Relaxed);
    }

    fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(self.buckets.len());
        for (i, count) in self.buckets.iter().enumerate() {
            cumulative += count.load(Relaxed);
            buckets.push((self.bounds.get(i).copied().unwrap_or(f64::INFINITY), cumulative));
        }
        let sum = Duration::from_nanos(self.sum_nanos.load(Relaxed)).as_secs_f64();
        HistogramSnapshot { count: cumulative, sum, buckets }
    }
}

/// A histogram as read at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Observations.
    pub count: u64,
    /// Their sum, in seconds.
    pub sum: f64,
    /// `(upper bound in seconds, observations at or below it)`, cumulative, the last bound
    /// infinite.
    pub buckets: Vec<(f64, u64)>,
}

/// One direction's counters in a shard.
#[derive(Debug, Default)]
struct Way {
    counts: [AtomicU64; 5],
    bytes: [AtomicU64; 5],
    compressed: AtomicU64,
    uncompressed: AtomicU64,
    closes: [AtomicU64; CLOSE_LABELS.len()],
}

impl Way {
    fn add(&self, tally: &WaySnapshot) {
        for i in 0..5 {
            add(&self.counts[i], tally.messages[i]);
            add(&self.bytes[i], tally.bytes[i]);
        }
        add(&self.compressed, tally.compressed);
        add(&self.uncompressed, tally.uncompressed);
        for (count, &n) in self.closes.iter().zip(&tally.closes) {
            add(count, n);
        }
    }

    fn sum_into(&self, total: &mut WaySnapshot) {
        for i in 0..5 {
            total.messages[i] += self.counts[i].load(Relaxed);
            total.bytes[i] += self.bytes[i].load(Relaxed);
        }
        total.compressed += self.compressed.load(Relaxed);
        total.uncompressed += self.uncompressed.load(Relaxed);
        for (sum, count) in total.closes.iter_mut().zip(&self.closes) {
            *sum += count.load(Relaxed);
        }
    }
}

#[inline]
fn add(counter: &AtomicU64, n: u64) {
    if n > 0 {
        counter.fetch_add(n, Relaxed);
    }
}

/// What one engine thread (or the portable engine's tasks together) counted.
#[derive(Debug, Default)]
pub(crate) struct Shard {
    received: Way,
    sent: Way,
    opened: AtomicU64,
    closed: AtomicU64,
}

impl Shard {
    /// A session opened.
    pub(crate) fn opened(&self) {
        self.opened.fetch_add(1, Relaxed);
    }

    /// A session ended.
    pub(crate) fn closed(&self) {
        self.closed.fetch_add(1, Relaxed);
    }

    /// Adds what `pending` holds, which starts again from zero.
    pub(crate) fn flush(&self, pending: &mut Pending) {
        if pending.dirty {
            self.received.add(&pending.received);
            self.sent.add(&pending.sent);
            *pending = Pending::default();
        }
    }

    /// Takes what the connection sent and received since it was last taken, now.
    pub(crate) fn take(&self, conn: &mut Connection) {
        let mut pending = Pending::default();
        pending.take(conn);
        self.flush(&mut pending);
    }
}

/// Traffic taken from connections and not yet added to their engine's [`Shard`]: plain
/// numbers, so that taking a connection's after every turn costs a few additions.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    received: WaySnapshot,
    sent: WaySnapshot,
    dirty: bool,
}

impl Pending {
    /// Takes what the connection sent and received since it was last taken.
    #[inline]
    pub(crate) fn take(&mut self, conn: &mut Connection) {
        let traffic = conn.take_traffic();
        self.received.add(&traffic.received);
        self.sent.add(&traffic.sent);
        self.dirty = true;
    }
}

/// One direction's figures, summed over the engines.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WaySnapshot {
    /// Data messages and control frames, by opcode in [`ws_proto::TALLIED_OPCODES`] order.
    pub messages: [u64; 5],
    /// Their payload bytes on the wire, in the same order.
    pub bytes: [u64; 5],
    /// Payload bytes of compressed messages on the wire.
    pub compressed: u64,
    /// What those were uncompressed.
    pub uncompressed: u64,
    /// Close frames by code, in [`CLOSE_LABELS`] order.
    pub closes: [u64; CLOSE_LABELS.len()],
}

impl WaySnapshot {
    #[inline]
    fn add(&mut self, tally: &Tally) {
        for i in 0..5 {
            self.messages[i] += tally.counts()[i];
            self.bytes[i] += tally.bytes_by_opcode()[i];
        }
        self.compressed += tally.compressed;
        self.uncompressed += tally.uncompressed;
        if let Some(code) = tally.close {
            self.closes[close_slot(code)] += 1;
        }
    }
}

/// Everything [`Stats`] counted, read at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// TCP connections accepted (refused ones included).
    pub accepted: u64,
    /// WebSocket sessions open now.
    pub open: u64,
    /// WebSocket sessions opened since the start.
    pub opened: u64,
    /// Connections that did not become a WebSocket, by reason and the HTTP status answered
    /// (`None` when none was).
    pub refused: Vec<(Refusal, Option<u16>, u64)>,
    /// Plain HTTP requests answered, by status.
    pub http: Vec<(u16, u64)>,
    /// From accepting the TCP connection to the 101 written (TLS included).
    pub handshake_seconds: HistogramSnapshot,
    /// Keepalive ping to pong.
    pub ping_rtt_seconds: HistogramSnapshot,
    /// What peers sent.
    pub received: WaySnapshot,
    /// What the server queued to send.
    pub sent: WaySnapshot,
    /// Bytes held against the memory budget, and the budget.
    pub memory_held: u64,
    /// [`Options::max_memory`](crate::Options::max_memory).
    pub memory_limit: u64,
}

/// What a server did, counted as it runs: give one to
/// [`Options::stats`](crate::Options::stats) and read it with [`snapshot`](Self::snapshot)
/// (from any thread, at any time). Several servers may share one.
#[derive(Debug)]
pub struct Stats {
    accepted: AtomicU64,
    refused: Mutex<BTreeMap<(Refusal, Option<u16>), u64>>,
    http: Mutex<BTreeMap<u16, u64>>,
    handshake: Histogram,
    ping_rtt: Histogram,
    shards: Mutex<Vec<Arc<Shard>>>,
    /// The portable engine's tasks count here together.
    tasks: Arc<Shard>,
    budget: OnceLock<Arc<Budget>>,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    /// Nothing counted yet.
    pub fn new() -> Self {
        Self {
            accepted: AtomicU64::new(0),
            refused: Mutex::new(BTreeMap::new()),
            http: Mutex::new(BTreeMap::new()),
            handshake: Histogram::new(&HANDSHAKE_BUCKETS),
            ping_rtt: Histogram::new(&PING_RTT_BUCKETS),
            shards: Mutex::new(Vec::new()),
            tasks: Arc::default(),
            budget: OnceLock::new(),
        }
    }

    /// Everything counted so far. Sessions that are open have their figures up to their last
    /// turn.
    pub fn snapshot(&self) -> Snapshot {
        let (mut received, mut sent) = (WaySnapshot::default(), WaySnapshot::default());
        let (mut opened, mut closed) = (0, 0);
        let shards = lock(&self.shards).clone();
        for shard in shards.iter().chain([&self.tasks]) {
            shard.received.sum_into(&mut received);
            shard.sent.sum_into(&mut sent);
            opened += shard.opened.load(Relaxed);
            closed += shard.closed.load(Relaxed);
        }
        let refused = lock(&self.refused).iter().map(|(&(r, s), &n)| (r, s, n)).collect();
        let http = lock(&self.http).iter().map(|(&s, &n)| (s, n)).collect();
        let (memory_held, memory_limit) = match self.budget.get() {
            Some(budget) => (budget.used() as u64, budget.limit() as u64),
            None => (0, 0),
        };
        Snapshot {
            accepted: self.accepted.load(Relaxed),
            open: opened.saturating_sub(closed),
            opened,
            refused,
            http,
            handshake_seconds: self.handshake.snapshot(),
            ping_rtt_seconds: self.ping_rtt.snapshot(),
            received,
            sent,
            memory_held,
            memory_limit,
        }
    }

    /// A shard for one engine thread.
    pub(crate) fn shard(&self) -> Arc<Shard> {
        let shard = Arc::new(Shard::default());
        lock(&self.shards).push(Arc::clone(&shard));
        shard
    }

    /// The shard the portable engine's tasks share.
    pub(crate) fn tasks(&self) -> &Shard {
        &self.tasks
    }

    pub(crate) fn set_budget(&self, budget: &Arc<Budget>) {
        let _ = self.budget.set(Arc::clone(budget));
    }

    pub(crate) fn accepted(&self) {
        self.accepted.fetch_add(1, Relaxed);
    }

    pub(crate) fn refused(&self, why: Refusal, status: Option<u16>) {
        *lock(&self.refused).entry((why, status)).or_default() += 1;
    }

    pub(crate) fn http(&self, status: u16) {
        *lock(&self.http).entry(status).or_default() += 1;
    }

    pub(crate) fn handshake(&self, took: Duration) {
        self.handshake.observe(took);
    }

    pub(crate) fn ping_rtt(&self, rtt: Duration) {
        self.ping_rtt.observe(rtt);
    }
}

/// The counters stay usable if a thread panicked holding the lock: they are plain numbers.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_with_an_infinite_last_bucket() {
        let h = Histogram::new(&HANDSHAKE_BUCKETS);
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert!((s.sum - 60.00305).abs() < 1e-9, "{}", s.sum);
        assert_eq!(s.buckets[0], (0.0001, 1));
        assert_eq!(s.buckets[5], (0.005, 2));
        assert_eq!(s.buckets[13], (5.0, 2));
        assert_eq!(s.buckets[14], (f64::INFINITY, 3));
    }

    #[test]
    fn close_codes_map_to_a_bounded_label_set() {
        assert_eq!(CLOSE_LABELS[close_slot(CloseCode::NORMAL)], "1000");
        assert_eq!(CLOSE_LABELS[close_slot(CloseCode::TLS_HANDSHAKE)], "1015");
        for other in [999, 1016, 2999, 3000, 4001, 4999, 65535] {
            assert_eq!(CLOSE_LABELS[close_slot(CloseCode(other))], "other");
        }
    }

    #[test]
    fn shards_sum_and_sessions_open_are_opened_less_closed() {
        let stats = Stats::new();
        let (a, b) = (stats.shard(), stats.shard());
        for shard in [&*a, &*b, stats.tasks()] {
            let mut conn = Connection::server(ws_proto::ProtocolConfig::default());
            conn.send_text("abc").unwrap();
            conn.close(CloseCode(4001), "").unwrap();
            shard.opened();
            shard.take(&mut conn);
        }
        a.closed();
        let s = stats.snapshot();
        assert_eq!((s.opened, s.open), (3, 2));
        assert_eq!((s.sent.messages[0], s.sent.bytes[0]), (3, 9));
        assert_eq!(s.sent.closes[16], 3);
        assert_eq!(s.received, WaySnapshot::default());
    }
}
