//! Frame parser and connection state machine: arbitrary bytes, split at arbitrary points, in
//! both roles and both delivery modes. Checks that nothing panics, that every run ends, and
//! that the events do not depend on how the input was split. The split run also echoes through
//! ws-proto's `Forwarder`, binary frames via `send_frame_data_via` (a transport taking varying
//! amounts), and swaps its
//! read buffer for a garbage-filled one between reads, as ws-echo's engine does; the bytes on
//! the wire and the events must not change.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ws_proto::{Connection, DeflateParams, Delivery, Event, Forwarder, MessageRef, ProtocolConfig};

#[derive(Debug, PartialEq)]
enum Seen {
    Message(Vec<u8>),
    /// Data, and whether it ends its message.
    Chunk(Vec<u8>, bool),
    Control(Vec<u8>),
    Close(u16),
    Failed(String),
    Disconnected,
}

fn run(
    role_client: bool,
    delivery: Delivery,
    deflate: Option<DeflateParams>,
    input: &[u8],
    cuts: &[usize],
    engine_like: bool,
) -> (Vec<Seen>, Vec<u8>) {
    let mut config = ProtocolConfig::default();
    config.max_frame_size = 4096;
    config.max_message_size = 8192;
    config.delivery = delivery;
    let mut conn = if role_client {
        Connection::client(config, || [1, 2, 3, 4])
    } else {
        Connection::server(config)
    };
    if let Some(params) = deflate {
        conn.set_deflate(&params, 6);
    }
    let mut seen = Vec::new();
    let mut out = Vec::new();
    let mut forwarder = Forwarder::with_direct_min(1);
    let mut start = 0;
    // With `engine_like`, how much the next direct write takes (cycles through 0..=4 quarters).
    let mut take = engine_like.then_some(0usize);
    for &cut in cuts.iter().chain([input.len()].iter()) {
        let cut = cut.clamp(start, input.len());
        conn.receive_data(&input[start..cut]);
        start = cut;
        collect(&mut conn, &mut seen, &mut out, &mut forwarder, &mut take);
        if engine_like {
            // Back to the pool and out again, dirty: stale bytes must never be parsed.
            if let Some(mut buf) = conn.take_input_buffer() {
                buf.fill(0xa5);
                assert!(conn.give_input_buffer(buf).is_none());
            }
            conn.release_idle_buffers();
        }
    }
    conn.receive_eof();
    collect(&mut conn, &mut seen, &mut out, &mut forwarder, &mut take);
    assert!(conn.should_close_transport() || !seen.is_empty());
    (merge(seen), out)
}

fn collect(
    conn: &mut Connection,
    seen: &mut Vec<Seen>,
    out: &mut Vec<u8>,
    forwarder: &mut Forwarder,
    take: &mut Option<usize>,
) {
    // Echo as ws-echo does, frame for frame (binary streamed, text once whole), to exercise
    // the sending side too.
    while let Some((event, mut sender)) = conn.poll_event_with_sender() {
        seen.push(match event {
            Event::Message(MessageRef::Text(t)) => {
                let _ = sender.send_text(t);
                Seen::Message(t.as_bytes().to_vec())
            }
            Event::Message(MessageRef::Binary(b)) => {
                let _ = sender.send_binary(b);
                Seen::Message(b.to_vec())
            }
            Event::Chunk(c) => {
                // ws-proto's forwarder, as ws-echo uses it; a transport that takes 0 to all
                // of what it is offered, by quarters.
                let use_direct = take.is_some();
                let mut direct = |pending: &[u8], data: &[u8]| {
                    let Some(quarters) = take.as_mut() else { return 0 };
                    *quarters = (*quarters + 1) % 5;
                    let n = (pending.len() + data.len()) * *quarters / 4;
                    let from_pending = n.min(pending.len());
                    out.extend_from_slice(&pending[..from_pending]);
                    out.extend_from_slice(&data[..n - from_pending]);
                    n
                };
                let direct =
                    use_direct.then_some(&mut direct as &mut dyn FnMut(&[u8], &[u8]) -> usize);
                let _ = forwarder.forward(&mut sender, &c, direct);
                Seen::Chunk(c.data().to_vec(), c.last())
            }
            Event::Ping(p) | Event::Pong(p) => Seen::Control(p.to_vec()),
            Event::Close(c) => Seen::Close(c.code.0),
            Event::Failed(e) => Seen::Failed(e.to_string()),
            Event::Disconnected => Seen::Disconnected,
            _ => Seen::Disconnected,
        });
    }
    out.extend_from_slice(conn.pending_output());
    let n = conn.pending_output().len();
    conn.consume_output(n);
}

/// Adjacent chunks merged: chunk boundaries legitimately follow the input's. The part of a
/// message streamed before the connection failed on it also depends on where the input was
/// split, so it is dropped.
fn merge(seen: Vec<Seen>) -> Vec<Seen> {
    let mut merged: Vec<Seen> = Vec::new();
    for s in seen {
        if let (Seen::Chunk(data, last), Some(Seen::Chunk(prev, prev_last))) =
            (&s, merged.last_mut())
        {
            if !*prev_last {
                prev.extend_from_slice(data);
                *prev_last = *last;
                continue;
            }
        }
        if matches!(s, Seen::Failed(_)) && matches!(merged.last(), Some(Seen::Chunk(_, false))) {
            merged.pop();
        }
        merged.push(s);
    }
    merged
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else { return };
    let client = control & 1 != 0;
    let delivery = if control & 2 != 0 { Delivery::Chunks } else { Delivery::Messages };
    // permessage-deflate on, with parameters from the next bits.
    let deflate = (control & 4 != 0).then(|| DeflateParams {
        server_no_context_takeover: control & 8 != 0,
        client_no_context_takeover: control & 16 != 0,
        server_max_window_bits: 9 + (control >> 5) % 7,
        client_max_window_bits: 15 - (control >> 5) % 7,
    });
    let whole = run(client, delivery, deflate, input, &[], false);
    let step = usize::from(control >> 5) + 1;
    let cuts: Vec<usize> = (step..input.len()).step_by(step).collect();
    let split = run(client, delivery, deflate, input, &cuts, true);
    if deflate.is_some() {
        // Inflated chunks follow the input's split, and so does what is echoed of them.
        assert_eq!(whole.0, split.0);
    } else {
        assert_eq!(whole, split);
    }
});
