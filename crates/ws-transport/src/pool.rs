//! Buffers an idle WebSocket gives back and the next active one on the same thread takes,
//! so that an idle connection holds none and an active one does not allocate (and zero) a
//! read buffer and an output buffer for every message it handles.
//!
//! Bounded: at most [`POOLED`] buffers of each kind per thread, each of at most
//! [`POOLED_MAX`] bytes (larger ones are freed), so a thread's pools hold at most
//! 2 × 16 × 256 KiB = 8 MiB, and usually a few buffers of a few KiB.

use std::cell::RefCell;

/// Buffers of each kind kept per thread.
pub(crate) const POOLED: usize = 16;

/// The largest buffer kept, in bytes.
pub(crate) const POOLED_MAX: usize = 256 << 10;

thread_local! {
    static INPUT: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    static OUTPUT: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// Which pool.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// Read buffers: kept initialised (their length is their capacity), so a read can go
    /// straight into one.
    Input,
    /// Output buffers: kept empty, with their capacity.
    Output,
}

fn pool<R>(kind: Kind, f: impl FnOnce(&mut Vec<Vec<u8>>) -> R) -> Option<R> {
    let key = match kind {
        Kind::Input => &INPUT,
        Kind::Output => &OUTPUT,
    };
    // While the thread is being torn down its pools are gone: allocate as usual then.
    key.try_with(|pool| f(&mut pool.borrow_mut())).ok()
}

/// A buffer from this thread's pool, if it has one.
pub(crate) fn take(kind: Kind) -> Option<Vec<u8>> {
    pool(kind, Vec::pop).flatten()
}

/// Keeps `buf` for the next taker on this thread, if the pool has room and it is not too
/// large; frees it otherwise.
pub(crate) fn give(kind: Kind, buf: Vec<u8>) {
    if buf.capacity() == 0 || buf.capacity() > POOLED_MAX {
        return;
    }
    pool(kind, |pool| {
        if pool.len() < POOLED {
            pool.push(buf);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_are_bounded_in_count_and_size() {
        for _ in 0..POOLED + 4 {
            give(Kind::Output, Vec::with_capacity(64));
        }
        give(Kind::Output, Vec::with_capacity(POOLED_MAX + 1));
        give(Kind::Output, Vec::new());
        let mut taken = 0;
        while let Some(buf) = take(Kind::Output) {
            assert_eq!(buf.capacity(), 64);
            taken += 1;
        }
        assert_eq!(taken, POOLED);
        assert!(take(Kind::Input).is_none());
    }
}
