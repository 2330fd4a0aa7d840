//! The unsafe part of ws-server's io_uring backend, behind a safe API.
//!
//! A [`Ring`] is one io_uring instance for one engine thread, with what its operations need
//! to stay sound:
//!
//! - **Provided receive buffers.** A multishot receive ([`Ring::recv`]) takes a buffer from
//!   the ring's own pool (a registered buffer ring) only when bytes arrive, so a connection
//!   that waits holds none. The bytes are lent to the caller inside [`Ring::complete`]'s
//!   callback, and the buffer goes back to the kernel once the callback returns: nothing
//!   outlives it.
//! - **Owned send buffers.** [`Ring::send`] takes the `Vec` it sends from and keeps it until
//!   the kernel says it is done, then hands it back in [`Completion::Sent`]. The caller
//!   cannot touch the bytes meanwhile, because it does not have them.
//! - **Registered files.** [`Ring::register`] puts a socket in the ring's file table, so
//!   that each operation on it skips the descriptor lookup.
//! - **One system call per loop**: operations are queued as the caller goes and handed to
//!   the kernel together by [`Ring::submit_and_wait`], which also waits for completions.
//!
//! Dropping a `Ring` cancels what is in flight and waits (briefly) for the kernel to let go
//! of every buffer before any is freed; what it cannot confirm is leaked, never freed early.
//!
//! Everything here is Linux-only; elsewhere the crate is empty.
#![cfg(target_os = "linux")]

use std::alloc::{self, Layout};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use io_uring::{IoUring, Probe, cqueue, opcode, squeue, types};

/// The `user_data` of cancel requests: their own completions are not reported.
const CANCEL: u64 = u64::MAX;
/// The buffer group the receive buffers are registered as.
const GROUP: u16 = 0;

/// Where an operation goes: a socket in the ring's file table, or a plain descriptor (when
/// the table is full or could not be registered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Index `n` of the registered file table.
    Fixed(u32),
    /// A descriptor the caller keeps open while operations on it are in flight.
    Fd(RawFd),
}

/// An operation in flight, to [`cancel`](Ring::cancel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpId(u64);

impl OpId {
    /// An id no ring gave, for tests of code that holds ids (cancelling it cancels nothing).
    #[doc(hidden)]
    pub fn for_tests(n: u64) -> Self {
        Self(n)
    }
}

/// What finished, as [`Ring::complete`] reports it with the operation's key.
#[derive(Debug)]
pub enum Completion<'a> {
    /// From a multishot receive: bytes (valid only during the callback), empty at the end of
    /// the stream, or the error that ended the receive (`ECANCELED` after a cancel, `ENOBUFS`
    /// when the ring's buffers were all in use). While `armed`, more follow; after a
    /// completion that is not, the receive is over and another [`Ring::recv`] is needed.
    Recv {
        /// The bytes received, or why the receive ended.
        data: io::Result<&'a [u8]>,
        /// Whether the receive goes on.
        armed: bool,
    },
    /// A send finished: how many bytes of `buf[offset..]` went (it may be fewer than all),
    /// and the buffer, back.
    Sent {
        /// Bytes sent, or why not.
        result: io::Result<usize>,
        /// The buffer [`Ring::send`] took.
        buf: Vec<u8>,
        /// Where in `buf` the send started.
        offset: usize,
    },
    /// A multishot poll fired; while `armed`, it goes on.
    Polled {
        /// Whether the poll goes on.
        armed: bool,
    },
}

/// What an operation in flight holds.
enum Op {
    Free,
    Recv { key: u64 },
    Send { key: u64, buf: Vec<u8>, offset: usize },
    Poll { key: u64 },
}

struct OpSlot {
    generation: u32,
    op: Op,
}

/// One io_uring instance with its receive buffers, its file table and the operations in
/// flight.
pub struct Ring {
    // Declared first, so dropped first: the ring's descriptor closes before the buffers below
    // are freed (Drop has already waited for the kernel to be done with them).
    ring: IoUring,
    ops: Vec<OpSlot>,
    free_ops: Vec<u32>,
    in_flight: usize,
    files: u32,
    buffers: Buffers,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("in_flight", &self.in_flight)
            .field("files", &self.files)
            .field("buffers", &self.buffers.count)
            .field("buffer_size", &self.buffers.size)
            .finish()
    }
}

/// The ring's settings.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Submission queue entries (the completion queue has four times as many).
    pub entries: u32,
    /// Registered file table size (0: none; capped by `RLIMIT_NOFILE`).
    pub files: u32,
    /// Receive buffers, a power of two up to 32768.
    pub buffers: u16,
    /// Bytes in each receive buffer.
    pub buffer_size: usize,
}

impl Ring {
    /// A ring, if this kernel has what the backend needs: the operations, a buffer ring, and
    /// a multishot receive that works (tried once on a socket pair). An error says which is
    /// missing; the caller then uses epoll.
    pub fn new(settings: Settings) -> io::Result<Self> {
        let Settings { entries, files, buffers, buffer_size } = settings;
        if !buffers.is_power_of_two() || buffers > 1 << 15 || buffer_size == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad receive buffer settings"));
        }
        let u32_size = u32::try_from(buffer_size)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "receive buffer too large"))?;
        let mut builder = IoUring::builder();
        builder.setup_cqsize(entries.saturating_mul(4)).setup_clamp();
        // One thread submits and reaps: completion work runs when it enters the kernel to
        // reap, not by interrupting it (kernel 6.1). The ring's flags say when such work
        // waits, so that a submission that does not wait reaps too (without that, a loop kept
        // busy would see no completion until it next waited). Older kernels refuse the
        // flags: try without.
        let mut deferred = builder.clone();
        deferred.setup_single_issuer().setup_defer_taskrun().setup_taskrun_flag();
        let ring = match deferred.build(entries) {
            Ok(ring) => ring,
            Err(_) => builder.build(entries)?,
        };
        if !ring.params().is_feature_nodrop() || !ring.params().is_feature_ext_arg() {
            return Err(unsupported("completions kept on overflow and waits with a timeout"));
        }
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        for (code, name) in [
            (opcode::RecvMulti::CODE, "recv"),
            (opcode::Send::CODE, "send"),
            (opcode::PollAdd::CODE, "poll"),
            (opcode::AsyncCancel::CODE, "cancel"),
        ] {
            if !probe.is_supported(code) {
                return Err(unsupported(name));
            }
        }
        let buffers = Buffers::new(buffers, buffer_size, u32_size)?;
        // SAFETY: `buffers.ring` is `count` entries of 16 bytes, page-aligned and zeroed,
        // owned by the `Ring` being built; it is unregistered in Drop before it is freed.
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                buffers.ring.as_ptr() as u64,
                buffers.count,
                GROUP,
                0,
            )?;
        }
        let mut ring =
            Self { ring, ops: Vec::new(), free_ops: Vec::new(), in_flight: 0, files: 0, buffers };
        ring.buffers.registered = true;
        ring.buffers.fill();
        if files > 0
            && ring.ring.submitter().register_files_sparse(files.min(nofile_limit())).is_ok()
        {
            ring.files = files.min(nofile_limit());
        }
        ring.try_multishot()?;
        Ok(ring)
    }

    /// A multishot receive on a socket pair: a byte sent arrives with the receive still
    /// armed. Kernels before 6.0 take the request but fail it.
    fn try_multishot(&mut self) -> io::Result<()> {
        let (mut a, b) = UnixStream::pair()?;
        self.recv(0, Target::Fd(b.as_raw_fd()))?;
        a.write_all(b"x")?;
        let mut got = None;
        for _ in 0..100 {
            self.submit_and_wait(1, Some(Duration::from_millis(10)))?;
            self.complete(|_, completion| {
                if let Completion::Recv { data, armed } = completion {
                    got = Some(data.map(<[u8]>::len).map(|n| (n, armed)));
                }
            });
            if got.is_some() {
                break;
            }
        }
        // The pair closes only once the receive is over.
        self.cancel_all();
        match got {
            Some(Ok((1, true))) => Ok(()),
            Some(Err(err)) => Err(err),
            _ => Err(unsupported("multishot receive")),
        }
    }

    /// The size of the registered file table: indexes below it can be [`register`]ed.
    ///
    /// [`register`]: Self::register
    pub fn files(&self) -> u32 {
        self.files
    }

    /// Puts `fd` in the file table at `index` if there is room, else returns it as a plain
    /// descriptor. The table holds its own reference to the socket until
    /// [`unregister`](Self::unregister).
    pub fn register(&mut self, index: u32, fd: RawFd) -> Target {
        if index < self.files && self.ring.submitter().register_files_update(index, &[fd]).is_ok() {
            Target::Fixed(index)
        } else {
            Target::Fd(fd)
        }
    }

    /// Before a socket is closed: queued operations are submitted, so that none naming it is
    /// handed to the kernel after its descriptor could have been reused, and it leaves the
    /// file table (where the table's reference kept it open for operations in flight).
    pub fn unregister(&mut self, target: Target) -> io::Result<()> {
        self.ring.submit()?;
        if let Target::Fixed(index) = target {
            self.ring.submitter().register_files_update(index, &[-1])?;
        }
        Ok(())
    }

    /// Starts a multishot receive on `target`, reported under `key`.
    pub fn recv(&mut self, key: u64, target: Target) -> io::Result<OpId> {
        let user_data = self.insert(Op::Recv { key });
        let entry = match target {
            Target::Fixed(i) => opcode::RecvMulti::new(types::Fixed(i), GROUP).build(),
            Target::Fd(fd) => opcode::RecvMulti::new(types::Fd(fd), GROUP).build(),
        };
        self.push_op(entry.user_data(user_data), user_data)
    }

    /// Sends `buf[offset..]` on `target`, reported under `key`; `buf` comes back in
    /// [`Completion::Sent`].
    pub fn send(
        &mut self,
        key: u64,
        target: Target,
        buf: Vec<u8>,
        offset: usize,
    ) -> Result<OpId, (io::Error, Vec<u8>)> {
        if offset >= buf.len() {
            let err = io::Error::new(io::ErrorKind::InvalidInput, "nothing to send");
            return Err((err, buf));
        }
        let len = u32::try_from(buf.len() - offset).unwrap_or(u32::MAX);
        // The heap block does not move when the Vec moves into the table below.
        let data = buf[offset..].as_ptr();
        let user_data = self.insert(Op::Send { key, buf, offset });
        // No SIGPIPE for a peer that has gone: the send fails with EPIPE instead.
        let flags = libc::MSG_NOSIGNAL;
        let entry = match target {
            Target::Fixed(i) => opcode::Send::new(types::Fixed(i), data, len).flags(flags).build(),
            Target::Fd(fd) => opcode::Send::new(types::Fd(fd), data, len).flags(flags).build(),
        };
        match self.push(&entry.user_data(user_data)) {
            Ok(()) => Ok(OpId(user_data)),
            // Never reached the kernel: the buffer is the caller's again.
            Err(err) => match self.remove(user_data) {
                Some(Op::Send { buf, .. }) => Err((err, buf)),
                _ => Err((err, Vec::new())),
            },
        }
    }

    /// Starts a multishot poll for input on `fd` (an eventfd, say), reported under `key`.
    pub fn poll(&mut self, key: u64, fd: RawFd) -> io::Result<OpId> {
        let user_data = self.insert(Op::Poll { key });
        let entry = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32).multi(true).build();
        self.push_op(entry.user_data(user_data), user_data)
    }

    /// Asks the kernel to end an operation; it still completes (with `ECANCELED`, or with
    /// its result if it was done first), and only then are its buffers free.
    pub fn cancel(&mut self, id: OpId) -> io::Result<()> {
        let entry = opcode::AsyncCancel::new(id.0).build().user_data(CANCEL);
        self.push(&entry)
    }

    /// Operations in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Hands the queued operations to the kernel and waits until `want` completions are
    /// ready or `timeout` has passed (`None`: no limit). An interrupted or timed-out wait is
    /// not an error.
    pub fn submit_and_wait(&mut self, want: usize, timeout: Option<Duration>) -> io::Result<()> {
        let submitter = self.ring.submitter();
        let result = match timeout {
            _ if want == 0 => submitter.submit(),
            None => submitter.submit_and_wait(want),
            Some(timeout) => {
                let ts = types::Timespec::from(timeout);
                let args = types::SubmitArgs::new().timespec(&ts);
                submitter.submit_with_args(want, &args)
            }
        };
        match result {
            Ok(_) => Ok(()),
            Err(err)
                if matches!(err.raw_os_error(), Some(libc::ETIME | libc::EINTR | libc::EBUSY)) =>
            {
                Ok(())
            }
            Err(err) => Err(err),
        }
    }

    /// Reports every completion ready, with its operation's key; a receive's buffer goes
    /// back to the kernel as soon as the callback has seen it.
    pub fn complete(&mut self, mut f: impl FnMut(u64, Completion<'_>)) {
        let Self { ring, ops, free_ops, in_flight, buffers, .. } = self;
        let mut recycled = false;
        for cqe in ring.completion() {
            let user_data = cqe.user_data();
            if user_data == CANCEL {
                continue;
            }
            // A buffer a completion carries goes back to the kernel whatever else happens.
            let bid = cqueue::buffer_select(cqe.flags());
            recycled |= bid.is_some();
            let slot = match slot_of(ops, user_data) {
                Some(slot) if !matches!(slot.op, Op::Free) => slot,
                _ => {
                    if let Some(bid) = bid {
                        buffers.provide(bid);
                    }
                    continue;
                }
            };
            let result = cqe.result();
            let more = cqueue::more(cqe.flags());
            let (key, completion) = match &mut slot.op {
                Op::Free => continue,
                Op::Recv { key } => {
                    let key = *key;
                    let data = match (result, bid) {
                        (n, Some(bid)) if n > 0 => Ok(buffers.received(bid, n as usize)),
                        (0, _) => Ok(&[][..]),
                        (n, _) if n < 0 => Err(io::Error::from_raw_os_error(-n)),
                        _ => Err(io::Error::other("a receive completed without its buffer")),
                    };
                    f(key, Completion::Recv { data, armed: more });
                    if let Some(bid) = bid {
                        buffers.provide(bid);
                    }
                    if !more {
                        release(ops, free_ops, in_flight, user_data);
                    }
                    continue;
                }
                Op::Poll { key } => (*key, Completion::Polled { armed: more }),
                Op::Send { .. } => {
                    let Op::Send { key, buf, offset } = std::mem::replace(&mut slot.op, Op::Free)
                    else {
                        continue;
                    };
                    unlist(free_ops, in_flight, user_data);
                    let result = if result < 0 {
                        Err(io::Error::from_raw_os_error(-result))
                    } else {
                        Ok(result as usize)
                    };
                    f(key, Completion::Sent { result, buf, offset });
                    continue;
                }
            };
            if !more {
                release(ops, free_ops, in_flight, user_data);
            }
            f(key, completion);
        }
        if recycled {
            buffers.publish();
        }
    }

    /// A table slot for `op`; its `user_data`.
    fn insert(&mut self, op: Op) -> u64 {
        self.in_flight += 1;
        let index = match self.free_ops.pop() {
            Some(index) => index,
            None => {
                self.ops.push(OpSlot { generation: 0, op: Op::Free });
                (self.ops.len() - 1) as u32
            }
        };
        let slot = &mut self.ops[index as usize];
        slot.generation = slot.generation.wrapping_add(1);
        slot.op = op;
        u64::from(slot.generation) << 32 | u64::from(index)
    }

    /// Takes back an operation that never reached the kernel.
    fn remove(&mut self, user_data: u64) -> Option<Op> {
        let slot = slot_of(&mut self.ops, user_data)?;
        let op = std::mem::replace(&mut slot.op, Op::Free);
        if matches!(op, Op::Free) {
            return None;
        }
        unlist(&mut self.free_ops, &mut self.in_flight, user_data);
        Some(op)
    }

    fn push_op(&mut self, entry: squeue::Entry, user_data: u64) -> io::Result<OpId> {
        match self.push(&entry) {
            Ok(()) => Ok(OpId(user_data)),
            Err(err) => {
                self.remove(user_data);
                Err(err)
            }
        }
    }

    /// Queues `entry`; a full queue is submitted first.
    fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        for _ in 0..2 {
            // SAFETY: what `entry` points at outlives the operation: a send's bytes are in a
            // Vec held in `self.ops` until its completion is reaped, receives use the buffer
            // ring that lives as long as `self`, and polls and cancels point at nothing.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
        Err(io::Error::new(io::ErrorKind::WouldBlock, "submission queue full"))
    }
}

impl Ring {
    /// Cancels every operation in flight and reaps them all (within a second): true once
    /// none is left, so that the kernel uses none of the ring's buffers.
    fn cancel_all(&mut self) -> bool {
        let live: Vec<u64> = (0..self.ops.len())
            .filter(|&i| !matches!(self.ops[i].op, Op::Free))
            .map(|i| u64::from(self.ops[i].generation) << 32 | i as u64)
            .collect();
        for user_data in live {
            let _ = self.cancel(OpId(user_data));
        }
        for _ in 0..100 {
            if self.in_flight == 0 {
                break;
            }
            if self.submit_and_wait(1, Some(Duration::from_millis(10))).is_err() {
                break;
            }
            self.complete(|_, _| {});
        }
        self.in_flight == 0
    }
}

impl Drop for Ring {
    /// Cancels what is in flight and reaps it, so that the kernel is done with every buffer
    /// before one is freed; if it does not confirm that within a second, the buffers are
    /// leaked instead.
    fn drop(&mut self) {
        if !self.cancel_all() {
            for slot in &mut self.ops {
                if let Op::Send { buf, .. } = std::mem::replace(&mut slot.op, Op::Free) {
                    std::mem::forget(buf);
                }
            }
            self.buffers.leak = true;
            return;
        }
        if self.buffers.registered && self.ring.submitter().unregister_buf_ring(GROUP).is_err() {
            self.buffers.leak = true;
        }
    }
}

fn slot_of(ops: &mut [OpSlot], user_data: u64) -> Option<&mut OpSlot> {
    let slot = ops.get_mut((user_data & 0xffff_ffff) as usize)?;
    (u64::from(slot.generation) == user_data >> 32).then_some(slot)
}

/// Frees an operation's slot, once: a slot already free is left alone, so it is never in
/// the free list twice.
fn release(ops: &mut [OpSlot], free_ops: &mut Vec<u32>, in_flight: &mut usize, user_data: u64) {
    if let Some(slot) = slot_of(ops, user_data) {
        if matches!(slot.op, Op::Free) {
            return;
        }
        slot.op = Op::Free;
        unlist(free_ops, in_flight, user_data);
    }
}

/// A slot just made free goes on the free list and stops counting as in flight.
fn unlist(free_ops: &mut Vec<u32>, in_flight: &mut usize, user_data: u64) {
    free_ops.push((user_data & 0xffff_ffff) as u32);
    *in_flight -= 1;
}

/// Whether a receive's error only says it ended (cancelled, or the buffers were all in use
/// for a moment), so that it may simply start again.
pub fn only_ended(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::ECANCELED | libc::ENOBUFS))
}

fn unsupported(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, format!("io_uring without {what}"))
}

/// The page size: a buffer ring must be page-aligned.
fn page_size() -> usize {
    // SAFETY: sysconf reads a constant of the system; it takes no pointer.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).ok().filter(|s| s.is_power_of_two()).unwrap_or(4096)
}

/// The soft `RLIMIT_NOFILE`: the kernel refuses a file table larger than it.
fn nofile_limit() -> u32 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one `rlimit` into the struct it is given, which is ours.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    if ok { u32::try_from(limit.rlim_cur).unwrap_or(u32::MAX) } else { 0 }
}

/// One entry of a buffer ring, as the kernel lays it out (`struct io_uring_buf`); the ring's
/// tail is the first entry's `resv`.
#[repr(C)]
struct BufEntry {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}

const _: () = assert!(std::mem::size_of::<BufEntry>() == 16);

/// The receive buffers: `count` buffers of `size` bytes in one block, and the ring through
/// which they are lent to the kernel.
struct Buffers {
    ring: NonNull<BufEntry>,
    ring_layout: Layout,
    memory: NonNull<u8>,
    memory_layout: Layout,
    count: u16,
    size: usize,
    size_u32: u32,
    /// The next tail to publish.
    tail: u16,
    registered: bool,
    /// The kernel may still use the memory: never free it.
    leak: bool,
}

// SAFETY: the two blocks are owned by this value alone (no other pointer to them leaves
// it but the borrows `received` hands out, which borrow it), so moving it to another thread
// moves all access with it. (A ring set up for one issuer refuses submissions from another
// thread with an error; that is not a memory matter.)
unsafe impl Send for Buffers {}

impl Buffers {
    fn new(count: u16, size: usize, size_u32: u32) -> io::Result<Self> {
        let too_large = || io::Error::new(io::ErrorKind::InvalidInput, "receive buffers too large");
        let ring_layout = Layout::from_size_align(usize::from(count) * 16, page_size())
            .map_err(|_| too_large())?;
        let bytes = size.checked_mul(usize::from(count)).ok_or_else(too_large)?;
        let memory_layout = Layout::from_size_align(bytes, page_size()).map_err(|_| too_large())?;
        // SAFETY: both layouts have a non-zero size (count and size are at least 1).
        let (ring, memory) =
            unsafe { (alloc::alloc_zeroed(ring_layout), alloc::alloc(memory_layout)) };
        let (Some(ring), Some(memory)) =
            (NonNull::new(ring.cast::<BufEntry>()), NonNull::new(memory))
        else {
            alloc::handle_alloc_error(ring_layout)
        };
        Ok(Self {
            ring,
            ring_layout,
            memory,
            memory_layout,
            count,
            size,
            size_u32,
            tail: 0,
            registered: false,
            leak: false,
        })
    }

    /// Lends every buffer to the kernel.
    fn fill(&mut self) {
        for bid in 0..self.count {
            self.provide(bid);
        }
        self.publish();
    }

    /// Puts buffer `bid` in the ring (seen by the kernel after [`publish`](Self::publish)).
    fn provide(&mut self, bid: u16) {
        if bid >= self.count {
            return;
        }
        let index = usize::from(self.tail & (self.count - 1));
        // SAFETY: `index` < `count`, so the entry is inside the ring block. The kernel reads
        // entries only below the published tail, which this one is not yet; fields are
        // written through raw pointers, so the first entry's `resv` (the tail, which the
        // kernel may read at any time) is not covered by a reference.
        unsafe {
            let entry = self.ring.as_ptr().add(index);
            let addr = self.memory.as_ptr().add(usize::from(bid) * self.size);
            ptr::addr_of_mut!((*entry).addr).write(addr as u64);
            ptr::addr_of_mut!((*entry).len).write(self.size_u32);
            ptr::addr_of_mut!((*entry).bid).write(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes the buffers provided since the last call visible to the kernel.
    fn publish(&self) {
        // SAFETY: the tail is the first entry's `resv`, a u16 inside the ring block, aligned
        // (offset 14 of a page-aligned block); the kernel reads it, only we write it, and
        // only through this atomic, so the entries written before it are seen with it.
        let tail = unsafe { AtomicU16::from_ptr(ptr::addr_of_mut!((*self.ring.as_ptr()).resv)) };
        tail.store(self.tail, Ordering::Release);
    }

    /// The `len` bytes the kernel received into buffer `bid`.
    fn received(&self, bid: u16, len: usize) -> &[u8] {
        if bid >= self.count {
            return &[];
        }
        let len = len.min(self.size);
        // SAFETY: buffer `bid` is inside the block, `len` bytes of it written by the kernel
        // before it posted the completion (which the completion queue's acquire load orders
        // before this read). The kernel took the buffer out of the ring to fill it and has
        // it again only once `provide` puts it back, after the caller's callback, while this
        // borrow of `self` lasts no longer than that callback.
        unsafe {
            std::slice::from_raw_parts(self.memory.as_ptr().add(usize::from(bid) * self.size), len)
        }
    }
}

impl Drop for Buffers {
    fn drop(&mut self) {
        if self.leak {
            return;
        }
        // SAFETY: both blocks were allocated in `new` with these layouts; the kernel no longer
        // uses them (the ring's Drop reaped every operation and unregistered the buffer ring,
        // else `leak` is set), and nothing here is used after.
        unsafe {
            alloc::dealloc(self.ring.as_ptr().cast(), self.ring_layout);
            alloc::dealloc(self.memory.as_ptr(), self.memory_layout);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};

    fn ring() -> Ring {
        Ring::new(Settings { entries: 64, files: 16, buffers: 8, buffer_size: 4096 })
            .expect("io_uring with multishot receive")
    }

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, server)
    }

    /// Runs the ring until `done` says so, within 2 s.
    fn until(ring: &mut Ring, mut on: impl FnMut(u64, Completion<'_>) -> bool) {
        for _ in 0..200 {
            ring.submit_and_wait(1, Some(Duration::from_millis(10))).unwrap();
            let mut done = false;
            ring.complete(|key, c| done |= on(key, c));
            if done {
                return;
            }
        }
        panic!("no completion");
    }

    #[test]
    fn a_multishot_receive_sees_each_write_and_the_end() {
        let mut ring = ring();
        let (mut client, server) = pair();
        let target = ring.register(3, server.as_raw_fd());
        assert_eq!(target, Target::Fixed(3));
        ring.recv(7, target).unwrap();
        let mut got = Vec::new();
        // More than all the buffers hold at once: they are lent again as they are read.
        let message: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        client.write_all(&message).unwrap();
        drop(client);
        let mut ended = false;
        let mut rearm = false;
        while !ended {
            if std::mem::take(&mut rearm) {
                ring.recv(7, target).unwrap();
            }
            until(&mut ring, |key, c| {
                assert_eq!(key, 7);
                match c {
                    Completion::Recv { data: Ok([]), .. } => ended = true,
                    Completion::Recv { data: Ok(bytes), armed } => {
                        got.extend_from_slice(bytes);
                        rearm |= !armed;
                    }
                    // All 8 buffers in use at once: receive again.
                    Completion::Recv { data: Err(err), armed } => {
                        assert_eq!(err.raw_os_error(), Some(libc::ENOBUFS), "{err}");
                        assert!(!armed);
                        rearm = true;
                    }
                    other => panic!("{other:?}"),
                }
                true
            });
        }
        assert_eq!(got, message);
        assert_eq!(ring.in_flight(), 0);
        ring.unregister(target).unwrap();
    }

    #[test]
    fn a_send_gives_its_buffer_back() {
        let mut ring = ring();
        let (mut client, server) = pair();
        let target = ring.register(0, server.as_raw_fd());
        ring.send(1, target, b"xxhello".to_vec(), 2).unwrap();
        until(&mut ring, |key, c| match c {
            Completion::Sent { result, buf, offset } => {
                assert_eq!((key, result.unwrap(), offset), (1, 5, 2));
                assert_eq!(buf, b"xxhello");
                true
            }
            other => panic!("{other:?}"),
        });
        let mut read = [0; 5];
        client.read_exact(&mut read).unwrap();
        assert_eq!(&read, b"hello");
        // Nothing to send is refused, and the buffer comes back.
        let (_, buf) = ring.send(1, target, b"ab".to_vec(), 2).unwrap_err();
        assert_eq!(buf, b"ab");
    }

    #[test]
    fn a_cancelled_receive_ends_with_ecanceled() {
        let mut ring = ring();
        let (_client, server) = pair();
        let id = ring.recv(2, Target::Fd(server.as_raw_fd())).unwrap();
        ring.submit_and_wait(0, None).unwrap();
        ring.cancel(id).unwrap();
        until(&mut ring, |_, c| match c {
            Completion::Recv { data: Err(err), armed: false } => {
                assert_eq!(err.raw_os_error(), Some(libc::ECANCELED));
                true
            }
            other => panic!("{other:?}"),
        });
        assert_eq!(ring.in_flight(), 0);
    }

    #[test]
    fn a_ring_dropped_with_operations_in_flight_waits_for_them() {
        let mut ring = ring();
        let (_client, server) = pair();
        ring.recv(1, Target::Fd(server.as_raw_fd())).unwrap();
        ring.send(1, Target::Fd(server.as_raw_fd()), vec![0; 1 << 20], 0).unwrap();
        ring.submit_and_wait(0, None).unwrap();
        assert_eq!(ring.in_flight(), 2);
        // What Drop does first: every operation cancelled and reaped, so that nothing is
        // freed while the kernel holds it (else Drop leaks instead).
        assert!(ring.cancel_all(), "{} still in flight", ring.in_flight());
        assert_eq!(ring.in_flight(), 0);
        drop(ring);
    }
}
