//! The runtime seam: a timer, a clock and a way to give way ([`Runtime`]), so that a
//! WebSocket waits on the runtime it runs on and starts no other. smol's (async-io) always;
//! tokio's with the `tokio` feature. The clock is the runtime's too, so that a runtime that
//! can stop or advance time (tokio's `time::pause`) drives every deadline of a WebSocket in
//! tests.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

/// A timer, a clock and a way to give way, from an async runtime. `Smol` and (with the
/// `tokio` feature) `Tokio` are provided; [`default_runtime`] picks one.
pub trait Runtime: Send + Sync + fmt::Debug + 'static {
    /// A timer that fires at `at`.
    fn new_timer(&self, at: Instant) -> Pin<Box<dyn AsyncTimer>>;
    /// The time now, on this runtime's clock.
    fn now(&self) -> Instant;
    /// Has the task polled with `cx` polled again once the other tasks ready to run, and
    /// the runtime's look for I/O, have had their turn: a WebSocket calls it before it
    /// returns `Pending` to give way in the middle of a long read or write. By default the
    /// task is woken at once (it goes to the back of the run queue); tokio's wake-up waits
    /// until its I/O driver has run (as `tokio::task::yield_now` does), or a task that keeps
    /// giving way could hold back the I/O of every other task on its thread for a whole
    /// round of the scheduler's event interval. As with `yield_now`, a WebSocket on tokio
    /// must then be polled by tokio: one polled by another executor blocking a tokio thread
    /// (`futures::executor::block_on` inside a tokio task) is woken only when that thread's
    /// scheduler next runs, which blocking it prevents.
    fn yield_turn(&self, cx: &mut Context<'_>) {
        cx.waker().wake_by_ref();
    }
}

/// A timer made by a [`Runtime`].
pub trait AsyncTimer: Send + fmt::Debug {
    /// Fires at `at` instead.
    fn reset(self: Pin<&mut Self>, at: Instant);
    /// Ready once the time has come; until then `Pending`, waking the task when it comes (a
    /// WebSocket waiting for input relies on that wake alone to notice its deadline).
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()>;
}

/// smol's timers (async-io's reactor, which runs on a thread of its own) and the system's
/// clock.
#[cfg(feature = "smol")]
#[derive(Debug, Clone, Copy, Default)]
pub struct Smol;

#[cfg(feature = "smol")]
impl Runtime for Smol {
    fn new_timer(&self, at: Instant) -> Pin<Box<dyn AsyncTimer>> {
        Box::pin(async_io::Timer::at(at))
    }

    fn now(&self) -> Instant {
        Instant::now()
    }
}

#[cfg(feature = "smol")]
impl AsyncTimer for async_io::Timer {
    fn reset(self: Pin<&mut Self>, at: Instant) {
        self.get_mut().set_at(at);
    }

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        std::future::Future::poll(self, cx).map(|_| ())
    }
}

/// tokio's timers and clock (`tokio::time`): they need a tokio runtime with time enabled.
#[cfg(feature = "tokio")]
#[derive(Debug, Clone, Copy, Default)]
pub struct Tokio;

#[cfg(feature = "tokio")]
impl Runtime for Tokio {
    fn new_timer(&self, at: Instant) -> Pin<Box<dyn AsyncTimer>> {
        Box::pin(tokio::time::sleep_until(tokio::time::Instant::from_std(at)))
    }

    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn yield_turn(&self, cx: &mut Context<'_>) {
        // Its first poll hands the waker to the scheduler, to wake once the driver has run,
        // and returns `Pending`; the future is not needed after that.
        let yielded = std::pin::pin!(tokio::task::yield_now());
        let _ = std::future::Future::poll(yielded, cx);
    }
}

#[cfg(feature = "tokio")]
impl AsyncTimer for tokio::time::Sleep {
    fn reset(self: Pin<&mut Self>, at: Instant) {
        tokio::time::Sleep::reset(self, tokio::time::Instant::from_std(at));
    }

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        std::future::Future::poll(self, cx)
    }
}

/// The runtime a WebSocket uses when [`Config::runtime`](crate::Config::runtime) names none:
/// tokio's when called inside a tokio runtime (with the `tokio` feature), smol's otherwise
/// (with the `smol` feature, a default one).
///
/// # Panics
///
/// Without the `smol` feature, when called outside a tokio runtime: there is no runtime to
/// wait on then (set [`Config::runtime`](crate::Config::runtime)).
pub fn default_runtime() -> Arc<dyn Runtime> {
    #[cfg(feature = "tokio")]
    if tokio::runtime::Handle::try_current().is_ok() {
        static TOKIO: OnceLock<Arc<dyn Runtime>> = OnceLock::new();
        return Arc::clone(TOKIO.get_or_init(|| Arc::new(Tokio)));
    }
    #[cfg(feature = "smol")]
    {
        static SMOL: OnceLock<Arc<dyn Runtime>> = OnceLock::new();
        Arc::clone(SMOL.get_or_init(|| Arc::new(Smol)))
    }
    #[cfg(not(feature = "smol"))]
    panic!(
        "ws-transport: no runtime for this WebSocket: not inside a tokio runtime, and the \
         `smol` feature is off (set Config::runtime)"
    )
}

/// Waits for `timer`.
pub(crate) async fn sleep(mut timer: Pin<Box<dyn AsyncTimer>>) {
    std::future::poll_fn(|cx| timer.as_mut().poll(cx)).await
}
