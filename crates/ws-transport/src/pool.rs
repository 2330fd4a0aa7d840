//! Buffers an idle WebSocket gives back and the next active one on the same thread takes,
//! so that an idle connection holds none and an active one does not allocate (and zero) a
//! read buffer and an output buffer for every message it handles.
//!
//! Bounded: at most [`POOLED`] buffers of each kind per thread, each of at most
//! [`POOLED_MAX`] bytes (larger ones are freed), so a thread's pools hold at most
//! 2 × 16 × 256 KiB = 8 MiB, and usually a few buffers of a few KiB.

use std::cell::RefCell;

use ws_proto::Connection;

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

/// Moves an idle connection's empty read and output buffers to this thread's pools, where
/// they have room and the buffers are not too large (the others are freed); returns whether
/// the connection had any. Straight from the connection into the pools: this runs at every
/// wait for input.
pub(crate) fn give(conn: &mut Connection) -> bool {
    let (input, output) = (conn.take_input_buffer(), conn.take_output_buffer());
    let any = input.is_some() || output.is_some();
    // While the thread is being torn down its pools are gone: the buffers are freed then.
    let _ = POOLS.try_with(|pools| {
        let pools = &mut *pools.borrow_mut();
        keep(&mut pools.input, input);
        keep(&mut pools.output, output);
    });
    any
}

/// Gives a connection that waited a read buffer and an output buffer from this thread's
/// pools, where it has them and the connection holds none.
pub(crate) fn take(conn: &mut Connection) {
    let _ = POOLS.try_with(|pools| {
        let pools = &mut *pools.borrow_mut();
        if let Some(buf) = pools.input.pop() {
            // Handed back when the connection has one (it read since it waited).
            pools.input.extend(conn.give_input_buffer(buf));
        }
        if let Some(buf) = pools.output.pop() {
            pools.output.extend(conn.give_output_buffer(buf));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_are_bounded_in_count_and_size() {
        let server = || Connection::server(ws_proto::ProtocolConfig::default());
        // Connections whose output buffer was used and written: 64 bytes of output and the
        // header's reservation, under 128 bytes each.
        let with_output = |capacity: usize| {
            let mut conn = server();
            conn.sender().send_binary(&vec![0; capacity - 2]).unwrap();
            let n = conn.pending_output().len();
            conn.consume_output(n);
            conn
        };
        for _ in 0..POOLED + 4 {
            assert!(give(&mut with_output(64)));
        }
        // Too large for the pools: freed.
        let mut large = with_output(POOLED_MAX + 8);
        large.input_buffer(POOLED_MAX + 1);
        assert!(give(&mut large));
        // Nothing to give.
        assert!(!give(&mut server()));
        // A connection that holds an output buffer already hands the pooled one back.
        let mut busy = server();
        busy.sender().send_binary(b"queued").unwrap();
        take(&mut busy);
        assert_eq!(busy.pending_output().len(), 8);
        let mut taken = 0;
        loop {
            let mut conn = server();
            take(&mut conn);
            let (input, output) = (conn.take_input_buffer(), conn.take_output_buffer());
            match (input, output) {
                (None, Some(buf)) => assert!(buf.capacity() >= 64 && buf.capacity() < 128),
                (None, None) => break,
                other => panic!("{other:?}"),
            }
            taken += 1;
        }
        assert_eq!(taken, POOLED);
    }
}
