//! The streaming compressed echo: a message compressed by a client (in arbitrary fragments,
//! with arbitrary window and context-takeover settings) reaches a server in arbitrary pieces;
//! the server inflates it in steps and forwards it with ws-proto's `Forwarder`, which
//! re-compresses it in fragments; a second client inflates what the server sent.
//!
//! Checks: the echo is the message, byte for byte and of the same kind, for two messages in a
//! row (context takeover carries state from one to the next); no chunk is larger than
//! `INFLATE_STEP`; the forwarder never holds a whole fragment after a chunk; and nothing
//! panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ws_proto::{
    Connection, DeflateParams, Delivery, Event, FRAGMENT_MIN, Forwarder, INFLATE_STEP, MessageKind,
    MessageRef, ProtocolConfig,
};

fn params(flags: u8, bits: u8) -> DeflateParams {
    DeflateParams {
        server_no_context_takeover: flags & 4 != 0,
        client_no_context_takeover: flags & 8 != 0,
        server_max_window_bits: 9 + bits % 7,
        client_max_window_bits: 9 + (bits / 7) % 7,
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let (head, body) = data.split_at(4);
    let (flags, bits, repeat, step) = (head[0], head[1], head[2], head[3]);
    let params = params(flags, bits);
    let kind = if flags & 1 != 0 { MessageKind::Text } else { MessageKind::Binary };
    // Repeated, so that messages reach several inflate steps and fragments.
    let mut message = body.repeat(1 + usize::from(repeat % 64));
    if kind == MessageKind::Text {
        message = String::from_utf8_lossy(&message).into_owned().into_bytes();
    }
    let mut config = ProtocolConfig::default();
    config.max_message_size = 16 << 20;
    let mut sender = Connection::client(config.clone(), || [7, 7, 7, 7]);
    sender.set_deflate(&params, 6);
    let mut server_config = config.clone();
    server_config.delivery = Delivery::Chunks;
    let mut server = Connection::server(server_config);
    server.set_deflate(&params, 6);
    let mut receiver = Connection::client(config, || [5, 5, 5, 5]);
    receiver.set_deflate(&params, 6);

    // Two messages, each in fragments cut every `step`-derived length.
    let fragment = 1 + usize::from(step) * 97;
    for _ in 0..2 {
        let pieces: Vec<&[u8]> = message.chunks(fragment).collect();
        if pieces.is_empty() {
            sender.send_fragment(kind, &[], true).unwrap();
        }
        for (i, piece) in pieces.iter().enumerate() {
            // Text fragments may end inside a character: the message as a whole is UTF-8.
            sender.send_fragment(kind, piece, i + 1 == pieces.len()).unwrap();
        }
    }
    let wire = sender.pending_output().to_vec();

    let mut forwarder = Forwarder::default();
    let mut echoed = Vec::new();
    let cut = 1 + usize::from(flags >> 4) * 211;
    for piece in wire.chunks(cut) {
        server.receive_data(piece);
        while let Some((event, mut out)) = server.poll_event_with_sender() {
            match event {
                Event::Chunk(chunk) => {
                    assert!(
                        chunk.data().len() <= INFLATE_STEP,
                        "a chunk of {}",
                        chunk.data().len()
                    );
                    forwarder.forward(&mut out, &chunk, None).unwrap();
                    assert!(forwarder.held() < FRAGMENT_MIN, "held {}", forwarder.held());
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        let n = server.pending_output().len();
        echoed.extend_from_slice(server.pending_output());
        server.consume_output(n);
    }
    receiver.receive_data(&echoed);
    let mut messages = 0;
    while let Some(event) = receiver.poll_event() {
        match event {
            Event::Message(got) => {
                let (got_kind, got_bytes) = match got {
                    MessageRef::Text(text) => (MessageKind::Text, text.as_bytes()),
                    MessageRef::Binary(bytes) => (MessageKind::Binary, bytes),
                };
                assert_eq!(got_kind, kind);
                assert!(got_bytes == message, "echo {messages} differs from the message");
                messages += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(messages, 2, "both messages echoed");
});
