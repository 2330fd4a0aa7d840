//! Frame parser and connection state machine: arbitrary bytes, split at arbitrary points, in
//! both roles and both delivery modes. Checks that nothing panics, that every run ends, and
//! that the events do not depend on how the input was split. The split run also echoes binary
//! frames through `send_frame_data_via` (a transport taking varying amounts) and swaps its
//! read buffer for a garbage-filled one between reads, as ws-echo's engine does; the bytes on
//! the wire and the events must not change.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ws_proto::{Config, Connection, DeflateParams, Delivery, Event, Message, MessageKind};

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
    let mut config = Config::default();
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
    let mut text = Vec::new();
    let mut start = 0;
    // With `engine_like`, how much the next direct write takes (cycles through 0..=4 quarters).
    let mut take = engine_like.then_some(0usize);
    for &cut in cuts.iter().chain([input.len()].iter()) {
        let cut = cut.clamp(start, input.len());
        conn.receive_data(&input[start..cut]);
        start = cut;
        collect(&mut conn, &mut seen, &mut out, &mut text, &mut take);
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
    collect(&mut conn, &mut seen, &mut out, &mut text, &mut take);
    assert!(conn.should_close_transport() || !seen.is_empty());
    (merge(seen), out)
}

fn collect(
    conn: &mut Connection,
    seen: &mut Vec<Seen>,
    out: &mut Vec<u8>,
    text: &mut Vec<u8>,
    take: &mut Option<usize>,
) {
    // Echo as ws-echo does, frame for frame (binary streamed, text once whole), to exercise
    // the sending side too.
    while let Some((event, mut sender)) = conn.poll_event_with_sender() {
        seen.push(match event {
            Event::Message(Message::Text(t)) => {
                let _ = sender.send_text(t);
                Seen::Message(t.as_bytes().to_vec())
            }
            Event::Message(Message::Binary(b)) => {
                let _ = sender.send_binary(b);
                Seen::Message(b.to_vec())
            }
            Event::Chunk(c) => {
                if c.kind == MessageKind::Binary {
                    if c.frame_start {
                        let _ = sender.begin_frame(c.kind, c.fin, c.frame_len);
                    }
                    if let Some(quarters) = take.as_mut() {
                        *quarters = (*quarters + 1) % 5;
                        let q = *quarters;
                        let _ = sender.send_frame_data_via(c.data, |pending, data| {
                            let n = (pending.len() + data.len()) * q / 4;
                            let from_pending = n.min(pending.len());
                            out.extend_from_slice(&pending[..from_pending]);
                            out.extend_from_slice(&data[..n - from_pending]);
                            n
                        });
                    } else if !c.data.is_empty() {
                        let _ = sender.send_frame_data(c.data);
                    }
                } else {
                    text.extend_from_slice(c.data);
                    if c.frame_end {
                        let _ = sender.send_fragment(c.kind, text, c.fin);
                        text.clear();
                    }
                }
                Seen::Chunk(c.data.to_vec(), c.last)
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
        if let (Seen::Chunk(data, last), Some(Seen::Chunk(prev, prev_last))) = (&s, merged.last_mut()) {
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
