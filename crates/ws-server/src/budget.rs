//! The server-wide memory budget ([`Options::max_memory`](crate::Options::max_memory)): what
//! all connections hold, summed, against one limit.
//!
//! Every connection reports what it holds ([`Connection::memory`](ws_proto::Connection::memory)
//! plus its handler's [`Handler::memory`](crate::Handler::memory)) after each turn, as a
//! change to one shared count; an engine adds its pool of read buffers. While the count is at
//! the limit, new handshakes get 503 and no connection reads: what they hold can then only
//! shrink, as peers read what they are owed. Once the count has stayed at the limit for
//! [`Options::budget_timeout`](crate::Options::budget_timeout), the budget is *under
//! pressure*: connections that hold at least their share (the limit over the connections
//! open) are closed with 1013 (Try Again Later), until the count is back under seven
//! eighths of the limit; with the count at the limit, at least one always holds that much.
//! Pressure ends once the count has stayed below the limit for a second. The count runs ahead of the limit by at most what one turn of each engine reads
//! and what the connections waiting in a read take in one read each (a read buffer).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use event_listener::{Event, EventListener};

/// How often the budget is looked at for pressure.
pub(crate) const PRESSURE_CHECK: Duration = Duration::from_millis(100);
/// How long the count must stay below the limit for pressure to end.
pub(crate) const PRESSURE_LINGER: Duration = Duration::from_secs(1);

/// When the count was last seen to reach the limit, or to fall below it.
#[derive(Debug, Default)]
struct Times {
    spent_since: Option<Instant>,
    below_since: Option<Instant>,
}

/// The bytes held for all connections, and the limit. Shared by a server's engines; read it
/// with [`Server::budget`](crate::Server::budget).
#[derive(Debug)]
pub struct Budget {
    limit: usize,
    used: AtomicUsize,
    /// Connections counted, for their share.
    connections: AtomicUsize,
    /// Since when the count has been at the limit, or below it, as last looked at.
    times: Mutex<Times>,
    /// The count has stayed at the limit for the budget timeout.
    pressure: AtomicBool,
    /// Wakes the connection tasks that hold memory when pressure starts (and again while
    /// it lasts).
    pressed: Event,
}

impl Budget {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            used: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            times: Mutex::new(Times::default()),
            pressure: AtomicBool::new(false),
            pressed: Event::new(),
        }
    }

    /// The limit, [`Options::max_memory`](crate::Options::max_memory).
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes held for all connections, as of each one's last turn.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// The count is at the limit: nothing more may be read or accepted.
    #[inline]
    pub(crate) fn exhausted(&self) -> bool {
        self.used() >= self.limit
    }

    /// The count has stayed at the limit for the budget timeout: connections that hold at
    /// least their [`share`](Self::share) are to be closed.
    pub(crate) fn under_pressure(&self) -> bool {
        self.pressure.load(Ordering::Relaxed)
    }

    /// Under pressure and not yet back under seven eighths of the limit: a connection that
    /// holds its share is to be closed now. (Closing stops short of the limit itself, or the
    /// connections waiting for room would take it back at once, and each round of pressure
    /// would close one connection.)
    pub(crate) fn closing(&self) -> bool {
        self.under_pressure() && self.used() >= self.limit - self.limit / 8
    }

    /// A wake-up for when pressure starts or goes on (see [`look`](Self::look)).
    pub(crate) fn listen(&self) -> EventListener {
        self.pressed.listen()
    }

    /// Looks at the count at `now`: pressure starts once it has been at the limit for
    /// `timeout`, and ends once it has stayed below the limit for [`PRESSURE_LINGER`] (the
    /// connections that were waiting for the budget would otherwise take it back at once, and
    /// pressure start again only after another `timeout`). While there is pressure, every
    /// look wakes the listeners again. Called every [`PRESSURE_CHECK`] by the server.
    pub(crate) fn look(&self, now: Instant, timeout: Duration) {
        let mut times = self.times.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.exhausted() {
            times.below_since = None;
            let since = *times.spent_since.get_or_insert(now);
            if now.duration_since(since) >= timeout {
                self.pressure.store(true, Ordering::Relaxed);
            }
        } else {
            times.spent_since = None;
            let below = *times.below_since.get_or_insert(now);
            if now.duration_since(below) >= PRESSURE_LINGER {
                self.pressure.store(false, Ordering::Relaxed);
            }
        }
        if self.under_pressure() {
            self.pressed.notify(usize::MAX);
        }
    }

    /// Looks at the count every [`PRESSURE_CHECK`], for as long as the server runs.
    pub(crate) async fn watch(&self, timeout: Duration) {
        loop {
            async_io::Timer::after(PRESSURE_CHECK).await;
            self.look(Instant::now(), timeout);
        }
    }

    /// One connection's share, the limit over the connections counted: what a connection
    /// closed for the budget holds at least.
    pub(crate) fn share(&self) -> usize {
        self.limit / self.connections.load(Ordering::Relaxed).max(1)
    }

    /// A connection starts counting: its [`Held`].
    pub(crate) fn connection(&self) -> Held {
        self.connections.fetch_add(1, Ordering::Relaxed);
        Held { bytes: 0, connection: true }
    }

    fn add(&self, bytes: usize) {
        self.used.fetch_add(bytes, Ordering::Relaxed);
    }

    fn sub(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// What one holder (a connection, an engine's buffer pool) last reported to the budget.
/// Release it when the holder goes ([`release`](Self::release)).
#[derive(Debug, Default)]
pub(crate) struct Held {
    bytes: usize,
    /// It counts as a connection (see [`Budget::share`]).
    connection: bool,
}

impl Held {
    /// Reports that the holder now holds `bytes`.
    #[inline]
    pub(crate) fn update(&mut self, budget: &Budget, bytes: usize) {
        if bytes > self.bytes {
            budget.add(bytes - self.bytes);
        } else if bytes < self.bytes {
            budget.sub(self.bytes - bytes);
        }
        self.bytes = bytes;
    }

    /// What it last reported.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The holder is gone: what it held is no longer counted, nor is it.
    pub(crate) fn release(&mut self, budget: &Budget) {
        self.update(budget, 0);
        if std::mem::take(&mut self.connection) {
            budget.connections.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_report_changes_and_release_what_they_held() {
        let budget = Budget::new(1000);
        assert_eq!(budget.share(), 1000);
        let (mut a, mut b) = (budget.connection(), budget.connection());
        let mut pool = Held::default();
        pool.update(&budget, 50);
        pool.release(&budget);
        a.update(&budget, 600);
        b.update(&budget, 300);
        assert_eq!(budget.used(), 900);
        assert_eq!(budget.share(), 500);
        assert!(!budget.exhausted());
        b.update(&budget, 450);
        assert_eq!(budget.used(), 1050);
        assert!(budget.exhausted());
        a.update(&budget, 100);
        assert_eq!(budget.used(), 550);
        a.release(&budget);
        b.release(&budget);
        assert_eq!(budget.used(), 0);
        assert_eq!(budget.share(), 1000, "released connections no longer count");
        let (_c, _d, _e, _f) =
            (budget.connection(), budget.connection(), budget.connection(), budget.connection());
        assert_eq!(budget.share(), 250);
    }

    #[test]
    fn pressure_starts_after_the_timeout_at_the_limit_and_ends_a_second_below_it() {
        let budget = Budget::new(100);
        let mut a = budget.connection();
        let (t0, timeout) = (Instant::now(), Duration::from_secs(10));
        let at = |secs: u64| t0 + Duration::from_millis(secs);
        budget.look(at(0), timeout);
        assert!(!budget.under_pressure());
        a.update(&budget, 100);
        let listener = budget.listen();
        budget.look(at(0), timeout);
        budget.look(at(9_900), timeout);
        assert!(!budget.under_pressure(), "pressure before the timeout");
        budget.look(at(10_000), timeout);
        assert!(budget.under_pressure());
        // The listener was woken: it is ready at once.
        assert!(
            futures_lite::future::block_on(futures_lite::future::poll_once(listener)).is_some()
        );
        // Below the limit for less than a second: still under pressure.
        a.update(&budget, 99);
        budget.look(at(10_100), timeout);
        budget.look(at(11_000), timeout);
        assert!(budget.under_pressure(), "pressure ended before a second below the limit");
        budget.look(at(11_100), timeout);
        assert!(!budget.under_pressure(), "pressure a second below the limit");
        // At the limit again: the timeout starts over.
        a.update(&budget, 100);
        budget.look(at(11_200), timeout);
        budget.look(at(21_100), timeout);
        assert!(!budget.under_pressure());
        budget.look(at(21_200), timeout);
        assert!(budget.under_pressure());
        a.release(&budget);
    }
}
