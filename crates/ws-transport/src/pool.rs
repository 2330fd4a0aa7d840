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

/// A thread's two pools: read buffers, kept initialised (their length is their capacity, so
/// a read can go straight into one), and output buffers, kept empty with their capacity.
#[derive(Default)]
struct Pools {
    input: Vec<Vec<u8>>,
    output: Vec<Vec<u8>>,
}

thread_local! {
    static POOLS: RefCell<Pools> = const { RefCell::new(Pools { input: Vec::new(), output: Vec::new() }) };
}

fn keep(pool: &mut Vec<Vec<u8>>, buf: Option<Vec<u8>>) {
    if let Some(buf) = buf {
        if buf.capacity() != 0 && buf.capacity() <= POOLED_MAX && pool.len() < POOLED {
            pool.push(buf);
        }
    }
}

/// Keeps an idle connection's read and output buffers (either may be absent) for the next
/// taker on this thread, where the pools have room and the buffers are not too large; frees
/// them otherwise.
pub(crate) fn give(input: Option<Vec<u8>>, output: Option<Vec<u8>>) {
    // While the thread is being torn down its pools are gone: the buffers are freed then.
    let _ = POOLS.try_with(|pools| {
        let pools = &mut *pools.borrow_mut();
        keep(&mut pools.input, input);
        keep(&mut pools.output, output);
    });
}

/// A read buffer and an output buffer from this thread's pools, where it has them.
pub(crate) fn take() -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    POOLS
        .try_with(|pools| {
            let pools = &mut *pools.borrow_mut();
            (pools.input.pop(), pools.output.pop())
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_are_bounded_in_count_and_size() {
        for _ in 0..POOLED + 4 {
            give(None, Some(Vec::with_capacity(64)));
        }
        give(Some(vec![0; POOLED_MAX + 1]), Some(Vec::with_capacity(POOLED_MAX + 1)));
        give(Some(Vec::new()), None);
        let mut taken = 0;
        loop {
            match take() {
                (None, Some(buf)) => assert_eq!(buf.capacity(), 64),
                (None, None) => break,
                other => panic!("{other:?}"),
            }
            taken += 1;
        }
        assert_eq!(taken, POOLED);
    }
}
