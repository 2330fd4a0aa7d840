//! Property tests: encoding round-trips, and the same input gives the same events however it is
//! split.

mod common;

use common::*;
use proptest::prelude::*;
use ws_proto::{
    Connection, Delivery, FrameHeader, MAX_HEADER_LEN, MessageKind, OpCode, ProtocolConfig, Status,
};

fn opcode() -> impl Strategy<Value = OpCode> {
    prop_oneof![
        Just(OpCode::Continuation),
        Just(OpCode::Text),
        Just(OpCode::Binary),
        Just(OpCode::Close),
        Just(OpCode::Ping),
        Just(OpCode::Pong),
    ]
}

fn header() -> impl Strategy<Value = FrameHeader> {
    (opcode(), any::<bool>(), 0u8..8, any::<Option<[u8; 4]>>(), 0u64..(1 << 63)).prop_map(
        |(opcode, fin, rsv, mask, len)| {
            let (fin, payload_len) =
                if opcode.is_control() { (true, len % 126) } else { (fin, len) };
            FrameHeader { fin, rsv, opcode, mask, payload_len }
        },
    )
}

/// One thing a client may put on the wire; `Garbage` is arbitrary bytes.
#[derive(Debug, Clone)]
enum Piece {
    Text(String, usize),
    Binary(Vec<u8>, usize),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(u16, String),
    Garbage(Vec<u8>),
    /// A text message whose bytes are likely not UTF-8.
    RawText(Vec<u8>, usize),
}

fn piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        4 => (".{0,40}", 1usize..4).prop_map(|(s, n)| Piece::Text(s, n)),
        4 => (proptest::collection::vec(any::<u8>(), 0..300), 1usize..4).prop_map(|(b, n)| Piece::Binary(b, n)),
        1 => proptest::collection::vec(any::<u8>(), 0..126).prop_map(Piece::Ping),
        1 => proptest::collection::vec(any::<u8>(), 0..126).prop_map(Piece::Pong),
        1 => (prop_oneof![Just(1000u16), Just(1001), Just(3000), any::<u16>()], ".{0,10}").prop_map(|(c, r)| Piece::Close(c, r)),
        1 => proptest::collection::vec(any::<u8>(), 1..20).prop_map(Piece::Garbage),
        1 => (proptest::collection::vec(any::<u8>(), 0..40), 1usize..4).prop_map(|(b, n)| Piece::RawText(b, n)),
    ]
}

/// Wire bytes for the pieces, masked with `key`, messages split into up to `n` fragments.
fn wire(pieces: &[Piece], key: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::new();
    let fragments = |out: &mut Vec<u8>, op: u8, data: &[u8], n: usize| {
        let size = data.len().div_ceil(n).max(1);
        let parts: Vec<&[u8]> =
            if data.is_empty() { vec![data] } else { data.chunks(size).collect() };
        for (i, part) in parts.iter().enumerate() {
            let fin = if i + 1 == parts.len() { 0x80 } else { 0 };
            let op = if i == 0 { op } else { 0 };
            out.extend(frame(fin | op, part, Some(key)));
        }
    };
    for piece in pieces {
        match piece {
            Piece::Text(s, n) => fragments(&mut out, 1, s.as_bytes(), *n),
            Piece::Binary(b, n) => fragments(&mut out, 2, b, *n),
            Piece::Ping(p) => out.extend(frame(0x89, p, Some(key))),
            Piece::Pong(p) => out.extend(frame(0x8a, p, Some(key))),
            Piece::Close(code, reason) => {
                let mut body = code.to_be_bytes().to_vec();
                body.extend_from_slice(reason.as_bytes());
                body.truncate(125);
                out.extend(frame(0x88, &body, Some(key)));
            }
            Piece::Garbage(g) => out.extend_from_slice(g),
            Piece::RawText(b, n) => fragments(&mut out, 1, b, *n),
        }
    }
    out
}

/// Feeds `input` split at `cuts`, then EOF; returns every event and all output.
fn run(config: &ProtocolConfig, input: &[u8], cuts: &[usize]) -> (Vec<Owned>, Vec<u8>) {
    run_with(config, input, cuts, drain)
}

/// [`run`], draining the events with `drain`.
fn run_with(
    config: &ProtocolConfig,
    input: &[u8],
    cuts: &[usize],
    drain: fn(&mut Connection) -> Vec<Owned>,
) -> (Vec<Owned>, Vec<u8>) {
    let mut conn = Connection::server(config.clone());
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    cuts.sort_unstable();
    let mut events = Vec::new();
    let mut output = Vec::new();
    let mut start = 0;
    for cut in cuts.into_iter().chain([input.len()]) {
        conn.receive_data(&input[start..cut]);
        events.extend(drain(&mut conn));
        output.extend(take_output(&mut conn));
        start = cut;
    }
    conn.receive_eof();
    events.extend(drain(&mut conn));
    output.extend(take_output(&mut conn));
    (events, output)
}

/// Chunk events merged per message, so that splits that only move chunk boundaries compare
/// equal. What was streamed of a message before the connection failed on it depends on the
/// split too, so it is dropped.
fn merge_chunks(events: Vec<Owned>) -> Vec<Owned> {
    let mut merged: Vec<Owned> = Vec::new();
    for event in events {
        if let Owned::Chunk { data, first: false, last, .. } = &event {
            if let Some(Owned::Chunk { data: prev, last: prev_last, .. }) = merged.last_mut() {
                prev.extend_from_slice(data);
                *prev_last = *last;
                continue;
            }
        }
        if matches!(event, Owned::Failed(_))
            && matches!(merged.last(), Some(Owned::Chunk { last: false, .. }))
        {
            merged.pop();
        }
        merged.push(event);
    }
    merged
}

fn small_limits(delivery: Delivery) -> ProtocolConfig {
    let mut config = ProtocolConfig::default();
    config.max_frame_size = 200;
    config.max_message_size = 500;
    config.delivery = delivery;
    config
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn header_encode_then_parse_is_identity(h in header()) {
        let mut buf = [0; MAX_HEADER_LEN];
        let n = h.encode(&mut buf);
        prop_assert_eq!(n, h.encoded_len());
        prop_assert_eq!(FrameHeader::parse(&buf[..n]), Ok(Status::Complete(h, n)));
        for cut in 0..n {
            prop_assert_eq!(FrameHeader::parse(&buf[..cut]), Ok(Status::Partial));
        }
    }

    #[test]
    fn any_split_gives_the_same_messages(
        pieces in proptest::collection::vec(piece(), 0..12),
        key in any::<[u8; 4]>(),
        cuts in proptest::collection::vec(any::<usize>(), 0..10),
    ) {
        let input = wire(&pieces, key);
        for config in [ProtocolConfig::default(), small_limits(Delivery::Messages)] {
            let whole = run(&config, &input, &[]);
            let split = run(&config, &input, &cuts);
            prop_assert_eq!(&whole, &split);
            let bytewise = run(&config, &input, &(1..input.len()).collect::<Vec<_>>());
            prop_assert_eq!(&whole, &bytewise);
            // Binary messages copied out by poll_event_owned are the same messages (these are
            // under 4 KiB; moving larger ones out is tested in deflate.rs).
            prop_assert_eq!(&whole, &run_with(&config, &input, &cuts, drain_owned));
        }
    }

    #[test]
    fn any_split_gives_the_same_chunks(
        pieces in proptest::collection::vec(piece(), 0..12),
        key in any::<[u8; 4]>(),
        cuts in proptest::collection::vec(any::<usize>(), 0..10),
    ) {
        let input = wire(&pieces, key);
        let config = small_limits(Delivery::Chunks);
        let (whole_events, whole_out) = run(&config, &input, &[]);
        let (split_events, split_out) = run(&config, &input, &cuts);
        prop_assert_eq!(merge_chunks(whole_events), merge_chunks(split_events));
        prop_assert_eq!(whole_out, split_out);
    }

    #[test]
    fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..600), cuts in proptest::collection::vec(any::<usize>(), 0..6)) {
        for delivery in [Delivery::Messages, Delivery::Chunks] {
            let config = small_limits(delivery);
            let (events, _) = run(&config, &input, &cuts);
            // Every run ends: a failure, a close, or the transport's end.
            prop_assert!(events.iter().any(|e| matches!(e, Owned::Failed(_) | Owned::Close(..) | Owned::Disconnected)));
            let mut client = Connection::client(config, || [9, 8, 7, 6]);
            client.receive_data(&input);
            client.receive_eof();
            drain(&mut client);
        }
    }

    #[test]
    fn messages_round_trip_between_a_client_and_a_server(
        messages in proptest::collection::vec((any::<bool>(), ".{0,30}", proptest::collection::vec(any::<u8>(), 0..200), 1usize..4), 0..10),
    ) {
        let mut client = client(ProtocolConfig::default());
        let mut server = server();
        let mut expected = Vec::new();
        for (is_text, text, bytes, parts) in &messages {
            let (kind, data) = if *is_text { (MessageKind::Text, text.as_bytes()) } else { (MessageKind::Binary, &bytes[..]) };
            if *parts == 1 || data.is_empty() {
                match kind {
                    MessageKind::Text => client.send_text(text).unwrap(),
                    MessageKind::Binary => client.send_binary(data).unwrap(),
                }
            } else {
                // Fragment on char boundaries for text, anywhere for binary: both are valid.
                let size = data.len().div_ceil(*parts);
                let chunks: Vec<&[u8]> = data.chunks(size).collect();
                for (i, chunk) in chunks.iter().enumerate() {
                    client.send_fragment(kind, chunk, i + 1 == chunks.len()).unwrap();
                }
            }
            expected.push(if *is_text { Owned::Text(text.clone()) } else { Owned::Binary(bytes.clone()) });
        }
        prop_assert_eq!(transfer(&mut client, &mut server), expected);
    }
}
