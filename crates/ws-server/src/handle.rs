//! [`ConnHandle`]: commands to one connection from any thread or task, and the bounded
//! queues that carry them to its engine.

#[cfg(target_os = "linux")]
use std::os::fd::OwnedFd;
#[cfg(target_os = "linux")]
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
#[cfg(target_os = "linux")]
use std::sync::{Mutex, PoisonError};

use ws_proto::{CloseCode, Connection, SendError};
use ws_transport::Message;

/// What one queued command costs beyond the bytes it holds: the queue entry and the frame
/// header it becomes.
const ENTRY_COST: usize = 64;

/// What a [`ConnHandle`] asks of its connection.
#[derive(Debug)]
pub(crate) enum Outbound {
    Send(Message),
    Close(CloseCode, String),
}

impl Outbound {
    /// What it costs a queue, for the queues' limits: the bytes it holds plus the entry
    /// itself, so that empty messages are not free.
    pub(crate) fn cost(&self) -> usize {
        let held = match self {
            Self::Send(message) => message.as_bytes().len(),
            Self::Close(_, reason) => reason.len(),
        };
        held + ENTRY_COST
    }

    /// Queues it on `conn`; `Err` hands it back while a message or frame of the handler's is
    /// half sent (it waits for that message to end).
    pub(crate) fn apply(self, conn: &mut Connection) -> Result<(), Self> {
        let result = match &self {
            Self::Send(message) => conn.sender().send_message(message.kind(), message.as_bytes()),
            Self::Close(code, reason) => conn.close(*code, reason),
        };
        match result {
            Err(SendError::MessageInProgress | SendError::FrameInProgress) => Err(self),
            // Closed (dropped: the connection is ending) or sent.
            _ => Ok(()),
        }
    }
}

/// Handle commands for one connection that wait for the handler's own message to end, and
/// what they cost. Nothing is allocated while none wait (the common case: a command goes
/// straight onto the connection), and the queue is freed once it empties.
#[derive(Debug, Default)]
pub(crate) struct Backlog(Option<Box<Waiting>>);

/// The commands that wait (never empty) and what they cost.
#[derive(Debug)]
struct Waiting {
    queue: std::collections::VecDeque<Outbound>,
    bytes: usize,
}

impl Backlog {
    /// Queues `command` on `conn` now, or after the commands that wait and the handler's
    /// own message, unless the connection would then hold more than `max` bytes, its output
    /// included; `false` means it is too slow for what is sent to it.
    pub(crate) fn offer(&mut self, conn: &mut Connection, command: Outbound, max: usize) -> bool {
        let cost = command.cost();
        if !self.fits(conn, &command, max) {
            return false;
        }
        match &mut self.0 {
            Some(w) => {
                w.bytes += cost;
                w.queue.push_back(command);
            }
            None => {
                if let Err(command) = command.apply(conn) {
                    self.0 = Some(Box::new(Waiting { queue: [command].into(), bytes: cost }));
                }
            }
        }
        true
    }

    /// Whether [`offer`](Self::offer) would take `command`.
    pub(crate) fn fits(&self, conn: &Connection, command: &Outbound, max: usize) -> bool {
        let waiting = self.0.as_ref().map_or(0, |w| w.bytes);
        waiting + command.cost() + conn.pending_output().len() <= max
    }

    /// Queues on `conn` what waits and it can take now. Returns whether anything was queued.
    pub(crate) fn apply(&mut self, conn: &mut Connection) -> bool {
        let Some(w) = self.0.as_mut() else { return false };
        let mut applied = false;
        while let Some(command) = w.queue.pop_front() {
            let cost = command.cost();
            if let Err(command) = command.apply(conn) {
                w.queue.push_front(command);
                break;
            }
            w.bytes -= cost;
            applied = true;
        }
        if w.queue.is_empty() {
            self.0 = None;
        }
        applied
    }
}

/// Why a [`ConnHandle`] could not pass a command on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandleError {
    /// The connection (or its engine) has ended.
    #[error("the connection has ended")]
    Closed,
    /// The engine's queue of commands is full (see [`Options::mailbox_bytes`]): the
    /// connections it serves are not keeping up.
    ///
    /// [`Options::mailbox_bytes`]: crate::Options::mailbox_bytes
    #[error("the engine's command queue is full")]
    Full,
}

/// Sends to one connection or closes it, from any thread or task; cheap to clone. Commands
/// are carried out in order on the connection's engine; a message that arrives while the
/// handler has a message of its own half sent waits for that message to end. What is queued
/// for a connection is bounded ([`Options::max_backlog`]): a connection that does not read
/// is closed with 1013 rather than hold more.
///
/// [`Options::max_backlog`]: crate::Options::max_backlog
#[derive(Debug, Clone)]
pub struct ConnHandle {
    inner: HandleInner,
}

#[derive(Debug, Clone)]
pub(crate) enum HandleInner {
    #[cfg(target_os = "linux")]
    Epoll {
        mailbox: std::sync::Arc<Mailbox>,
        key: u64,
    },
    Task(std::sync::Arc<TaskMailbox>),
}

/// Commands for one connection on the portable engine, bounded in bytes
/// ([`Options::max_backlog`](crate::Options::max_backlog)), and the waker of its task.
///
/// A queue under a lock rather than a channel: an idle connection's mailbox is a few words
/// (a channel costs about 0.8 KB, cache-padded), and its task is the only reader.
#[derive(Debug)]
pub(crate) struct TaskMailbox {
    queue: std::sync::Mutex<TaskQueue>,
    /// What the queued commands cost; see [`Outbound::cost`].
    bytes: std::sync::atomic::AtomicUsize,
    limit: usize,
}

#[derive(Debug, Default)]
struct TaskQueue {
    commands: std::collections::VecDeque<Outbound>,
    /// The task waiting for a command.
    waker: Option<std::task::Waker>,
    /// The task has ended: commands are refused.
    ended: bool,
}

impl TaskMailbox {
    pub(crate) fn new(limit: usize) -> Self {
        Self { queue: Default::default(), bytes: Default::default(), limit }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, TaskQueue> {
        self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn post(&self, command: Outbound) -> Result<(), HandleError> {
        use std::sync::atomic::Ordering::AcqRel;
        let cost = command.cost();
        let mut queue = self.queue();
        if queue.ended {
            return Err(HandleError::Closed);
        }
        if self.bytes.fetch_add(cost, AcqRel) + cost > self.limit {
            self.bytes.fetch_sub(cost, AcqRel);
            return Err(HandleError::Full);
        }
        queue.commands.push_back(command);
        let waker = queue.waker.take();
        drop(queue);
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// The next command, or `Pending` with the task's waker kept until one is posted.
    pub(crate) fn poll_take(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Outbound> {
        let mut queue = self.queue();
        match queue.commands.pop_front() {
            Some(command) => {
                self.bytes.fetch_sub(command.cost(), std::sync::atomic::Ordering::AcqRel);
                std::task::Poll::Ready(command)
            }
            None => {
                if !queue.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    queue.waker = Some(cx.waker().clone());
                }
                std::task::Poll::Pending
            }
        }
    }

    /// The task has ended: what is queued is dropped and later commands are refused.
    pub(crate) fn end(&self) {
        let mut queue = self.queue();
        queue.ended = true;
        queue.waker = None;
        let dropped = std::mem::take(&mut queue.commands);
        drop(queue);
        let cost: usize = dropped.iter().map(Outbound::cost).sum();
        self.bytes.fetch_sub(cost, std::sync::atomic::Ordering::AcqRel);
    }
}

impl ConnHandle {
    pub(crate) fn new(inner: HandleInner) -> Self {
        Self { inner }
    }

    /// Sends a message (text or binary) to the connection.
    pub fn send(&self, message: impl Into<Message>) -> Result<(), HandleError> {
        self.post(Outbound::Send(message.into()))
    }

    /// Starts the close handshake with `code` and `reason` (at most 123 bytes; longer ones
    /// are cut at a character boundary).
    pub fn close(&self, code: CloseCode, reason: &str) -> Result<(), HandleError> {
        let mut end = reason.len().min(ws_proto::MAX_CLOSE_REASON);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        self.post(Outbound::Close(code, reason[..end].to_owned()))
    }

    fn post(&self, command: Outbound) -> Result<(), HandleError> {
        match &self.inner {
            #[cfg(target_os = "linux")]
            HandleInner::Epoll { mailbox, key } => mailbox.post(*key, command),
            HandleInner::Task(mailbox) => mailbox.post(command),
        }
    }
}

#[cfg(target_os = "linux")]
/// Commands from [`ConnHandle`]s for one engine's connections, bounded in bytes, and the
/// eventfd in the engine's epoll set that wakes it.
#[derive(Debug)]
pub(crate) struct Mailbox {
    pub(crate) commands: Mutex<Vec<(u64, Outbound)>>,
    /// Bytes the queued commands hold; see [`Options::mailbox_bytes`].
    pub(crate) bytes: AtomicUsize,
    pub(crate) limit: usize,
    /// The engine has ended: commands are refused.
    pub(crate) ended: AtomicBool,
    pub(crate) wake: OwnedFd,
}

#[cfg(target_os = "linux")]
impl Mailbox {
    /// Queues a command for the connection `key` and wakes the engine.
    pub(crate) fn post(&self, key: u64, command: Outbound) -> Result<(), HandleError> {
        if self.ended.load(Ordering::Acquire) {
            return Err(HandleError::Closed);
        }
        let len = command.cost();
        if self.bytes.fetch_add(len, Ordering::AcqRel) + len > self.limit {
            self.bytes.fetch_sub(len, Ordering::AcqRel);
            return Err(HandleError::Full);
        }
        self.commands.lock().unwrap_or_else(PoisonError::into_inner).push((key, command));
        self.wake();
        Ok(())
    }

    pub(crate) fn take(&self) -> Vec<(u64, Outbound)> {
        let commands =
            std::mem::take(&mut *self.commands.lock().unwrap_or_else(PoisonError::into_inner));
        let len: usize = commands.iter().map(|(_, c)| c.cost()).sum();
        self.bytes.fetch_sub(len, Ordering::AcqRel);
        commands
    }

    pub(crate) fn wake(&self) {
        // Adds 1 to the eventfd's counter; it cannot overflow in practice (2^64 - 1).
        let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll, Wake, Waker};

    use super::*;

    #[derive(Default)]
    struct CountWakes(AtomicUsize);

    impl Wake for CountWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn text(len: usize) -> Outbound {
        Outbound::Send(Message::Text("x".repeat(len)))
    }

    #[test]
    fn a_task_mailbox_is_bounded_in_bytes_wakes_its_task_and_refuses_once_ended() {
        let wakes = Arc::new(CountWakes::default());
        let waker = Waker::from(Arc::clone(&wakes));
        let mut cx = Context::from_waker(&waker);
        // Room for two commands of 100 bytes, not three.
        let mailbox = Arc::new(TaskMailbox::new(2 * (100 + ENTRY_COST)));
        let handle = ConnHandle::new(HandleInner::Task(Arc::clone(&mailbox)));

        assert!(mailbox.poll_take(&mut cx).is_pending());
        handle.send("x".repeat(100)).unwrap();
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1, "a post wakes the waiting task");
        handle.send("x".repeat(100)).unwrap();
        assert_eq!(handle.send("x".repeat(100)), Err(HandleError::Full));

        // Taking one makes room for one more, in order.
        let Poll::Ready(Outbound::Send(first)) = mailbox.poll_take(&mut cx) else { panic!() };
        assert_eq!(first.as_bytes().len(), 100);
        mailbox.post(text(100)).unwrap();
        assert_eq!(mailbox.post(text(1)), Err(HandleError::Full));

        mailbox.end();
        assert_eq!(mailbox.bytes.load(Ordering::SeqCst), 0, "what was queued is dropped");
        assert_eq!(handle.send("late"), Err(HandleError::Closed));
        assert_eq!(handle.close(CloseCode::NORMAL, ""), Err(HandleError::Closed));
    }
}
