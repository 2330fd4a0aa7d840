//! permessage-deflate (RFC 7692) through the connection: RSV1 rules, limits on the inflated
//! size, and messages round-tripping between a client and a server under every parameter
//! combination.
#![cfg(feature = "deflate")]

mod common;

use common::*;
use proptest::prelude::*;
use ws_proto::{
    Connection, DeflateParams, Delivery, MessageKind, PolledEvent, ProtocolConfig, ProtocolError,
};

fn params(
    server_reset: bool,
    client_reset: bool,
    server_bits: u8,
    client_bits: u8,
) -> DeflateParams {
    DeflateParams {
        server_no_context_takeover: server_reset,
        client_no_context_takeover: client_reset,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
    }
}

fn pair(p: &DeflateParams, config: ProtocolConfig) -> (Connection, Connection) {
    let mut c = client(config.clone());
    let mut s = server_with(config);
    c.set_deflate(p, 6);
    s.set_deflate(p, 6);
    (c, s)
}

#[test]
fn rfc_7692_7_2_3_1_hello_from_a_client() {
    let mut s = server();
    s.set_deflate(&params(false, false, 15, 15), 6);
    // "Hello" compressed, RSV1 set on a final text frame, masked.
    let wire = frame(0xc1, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], Some(KEY));
    assert_eq!(feed(&mut s, &wire), [Owned::Text("Hello".into())]);
    // The server's own messages go out compressed, sharing the window (§7.2.3.2).
    s.send_text("Hello").unwrap();
    s.send_text("Hello").unwrap();
    assert_eq!(
        take_output(&mut s),
        [
            0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0xc1, 0x05, 0xf2, 0x00, 0x11,
            0x00, 0x00
        ]
    );
}

#[test]
fn rfc_7692_6_rsv1_only_on_the_first_frame_of_a_data_message() {
    let p = params(false, false, 15, 15);
    let mut s = server();
    s.set_deflate(&p, 6);
    let mut input = frame(0x41, &[0xf2, 0x48], Some(KEY)); // text, RSV1, not final
    input.extend(frame(0xc0, &[0xcd], Some(KEY))); // continuation with RSV1
    assert_eq!(feed(&mut s, &input).last(), Some(&Owned::Failed(ProtocolError::ReservedBits)));
    let mut s = server();
    s.set_deflate(&p, 6);
    assert_eq!(
        feed(&mut s, &frame(0xc9, b"", Some(KEY))),
        [Owned::Failed(ProtocolError::ReservedBits)]
    );
    // Without the extension RSV1 is an error anywhere.
    let mut plain = server();
    assert_eq!(
        feed(&mut plain, &frame(0xc1, &[0xf2, 0x48], Some(KEY))),
        [Owned::Failed(ProtocolError::ReservedBits)]
    );
    // RSV2 and RSV3 stay reserved.
    let mut s = server();
    s.set_deflate(&p, 6);
    assert_eq!(
        feed(&mut s, &frame(0xe1, b"x", Some(KEY))),
        [Owned::Failed(ProtocolError::ReservedBits)]
    );
}

#[test]
fn uncompressed_messages_mix_with_compressed_ones() {
    let mut s = server();
    s.set_deflate(&params(false, false, 15, 15), 6);
    let mut input = frame(0x81, b"plain", Some(KEY));
    input.extend(frame(0xc1, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], Some(KEY)));
    input.extend(frame(0x82, b"\x00\xff", Some(KEY)));
    assert_eq!(
        feed(&mut s, &input),
        [Owned::Text("plain".into()), Owned::Text("Hello".into()), Owned::Binary(vec![0, 0xff])]
    );
}

#[test]
fn the_message_limit_applies_to_the_inflated_size() {
    let p = params(false, false, 15, 15);
    for delivery in [Delivery::Messages, Delivery::Chunks] {
        let mut config = ProtocolConfig::default();
        config.max_message_size = 1 << 20;
        config.delivery = delivery;
        let (mut c, mut s) = pair(&p, config);
        // 8 MiB of zeros compress to a few KiB: far below every limit on the wire.
        c.send_binary(&vec![0u8; 8 << 20]).unwrap();
        let wire = take_output(&mut c);
        assert!(wire.len() < 64 << 10, "{}", wire.len());
        let events = feed(&mut s, &wire);
        assert_eq!(
            events.last(),
            Some(&Owned::Failed(ProtocolError::MessageTooLarge)),
            "{delivery:?}"
        );
        assert_eq!(take_output(&mut s), [0x88, 0x02, 0x03, 0xf1]);
    }
}

#[test]
fn data_that_does_not_inflate_fails_with_1007_for_text_and_1002_for_binary() {
    let p = params(false, false, 15, 15);
    let garbage = [0xff, 0xff, 0xff, 0xff, 0xff];
    let mut s = server();
    s.set_deflate(&p, 6);
    assert_eq!(
        feed(&mut s, &frame(0xc1, &garbage, Some(KEY))),
        [Owned::Failed(ProtocolError::InvalidCompressedData(MessageKind::Text))]
    );
    assert_eq!(take_output(&mut s), [0x88, 0x02, 0x03, 0xef]);
    let mut s = server();
    s.set_deflate(&p, 6);
    assert_eq!(
        feed(&mut s, &frame(0xc2, &garbage, Some(KEY))),
        [Owned::Failed(ProtocolError::InvalidCompressedData(MessageKind::Binary))]
    );
    assert_eq!(take_output(&mut s), [0x88, 0x02, 0x03, 0xea]);
}

#[test]
fn inflated_text_is_checked_as_utf8() {
    let p = params(false, false, 15, 15);
    let mut c = client(ProtocolConfig::default());
    c.set_deflate(&p, 6);
    // A client that compresses invalid UTF-8 as text: build it by compressing bytes.
    let mut compressor = ws_proto::Compressor::new(15, false, 6);
    let mut payload = Vec::new();
    compressor.compress(b"ok \xed\xa0\x80", &mut payload);
    let mut s = server();
    s.set_deflate(&p, 6);
    assert_eq!(
        feed(&mut s, &frame(0xc1, &payload, Some(KEY))),
        [Owned::Failed(ProtocolError::InvalidUtf8)]
    );
    drop(c);
}

#[test]
fn chunks_carry_inflated_data() {
    let p = params(false, false, 15, 15);
    let mut config = ProtocolConfig::default();
    config.delivery = Delivery::Chunks;
    let (mut c, mut s) = pair(&p, config);
    let text = "chunked and compressed ".repeat(1000);
    c.send_fragment(MessageKind::Text, &text.as_bytes()[..5000], false).unwrap();
    c.send_fragment(MessageKind::Text, &text.as_bytes()[5000..], true).unwrap();
    let events = transfer(&mut c, &mut s);
    let mut got = Vec::new();
    for event in &events {
        let Owned::Chunk { kind: MessageKind::Text, data, .. } = event else { panic!("{event:?}") };
        got.extend_from_slice(data);
    }
    assert_eq!(got, text.as_bytes());
    assert!(matches!(events.last(), Some(Owned::Chunk { last: true, .. })));
}

#[test]
fn frames_sent_in_pieces_go_uncompressed() {
    let p = params(false, false, 15, 15);
    let (mut c, mut s) = pair(&p, ProtocolConfig::default());
    let mut sender = s.sender();
    sender.begin_frame(MessageKind::Binary, true, 3).unwrap();
    sender.send_frame_data(b"raw").unwrap();
    let out = take_output(&mut s);
    assert_eq!(out, [0x82, 0x03, b'r', b'a', b'w']);
    assert_eq!(feed(&mut c, &out), [Owned::Binary(b"raw".to_vec())]);
}

/// Every combination of the two context-takeover flags with windows 9, 12 and 15 on each side.
fn all_params() -> Vec<DeflateParams> {
    let mut all = Vec::new();
    for server_reset in [false, true] {
        for client_reset in [false, true] {
            for server_bits in [9, 12, 15] {
                for client_bits in [9, 12, 15] {
                    all.push(params(server_reset, client_reset, server_bits, client_bits));
                }
            }
        }
    }
    all
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any sequence of messages, compressed or not, fragmented any way, round-trips through a
    /// client/server pair in both directions under every combination of the four parameters.
    #[test]
    fn messages_round_trip_under_every_parameter_combination(
        messages in proptest::collection::vec((any::<bool>(), "[a-c κ]{0,300}", 1usize..4, any::<bool>()), 1..10),
    ) {
        for p in all_params() {
            let (mut c, mut s) = pair(&p, ProtocolConfig::default());
            for (to_server, text, parts, compress) in &messages {
                let (from, to) = if *to_server { (&mut c, &mut s) } else { (&mut s, &mut c) };
                let data = text.as_bytes();
                if !*compress {
                    // An uncompressed message in between: built as a frame in pieces.
                    let mut sender = from.sender();
                    sender.begin_frame(MessageKind::Text, true, data.len() as u64).unwrap();
                    if !data.is_empty() {
                        sender.send_frame_data(data).unwrap();
                    }
                } else if *parts == 1 {
                    from.send_text(text).unwrap();
                } else {
                    // Fragments may split a character: only the whole message must be UTF-8.
                    let size = data.len().div_ceil(*parts).max(1);
                    let chunks: Vec<&[u8]> = if data.is_empty() { vec![data] } else { data.chunks(size).collect() };
                    for (i, chunk) in chunks.iter().enumerate() {
                        from.send_fragment(MessageKind::Text, chunk, i + 1 == chunks.len()).unwrap();
                    }
                }
                prop_assert_eq!(transfer(from, to), vec![Owned::Text(text.clone())], "{:?}", p);
            }
        }
    }
}

#[test]
fn the_verdict_on_bad_compressed_text_does_not_depend_on_the_split() {
    // Found by the connection fuzz target: inflating this frame yields invalid UTF-8 and then
    // fails to inflate; fed whole it was reported as bad compressed data, fed two bytes at a
    // time as bad UTF-8. The bytes inflated first decide, however the input is split.
    let wire = [65u8, 43, 234, 130, 121, 1, 96, 8, 46];
    let p = params(false, false, 10, 14);
    let verdict = |step: usize| {
        let mut config = ProtocolConfig::default();
        config.delivery = Delivery::Chunks;
        let mut c = client(config);
        c.set_deflate(&p, 6);
        let mut events = Vec::new();
        for piece in wire.chunks(step) {
            events.extend(feed(&mut c, piece));
        }
        c.receive_eof();
        events.extend(drain(&mut c));
        events.into_iter().find(|e| matches!(e, Owned::Failed(_) | Owned::Disconnected))
    };
    let whole = verdict(wire.len());
    for step in 1..wire.len() {
        assert_eq!(verdict(step), whole, "step {step}");
    }
}

#[test]
fn an_empty_compressed_payload_is_an_empty_message_and_the_stream_stays_in_step() {
    let mut s = server();
    s.set_deflate(&params(false, false, 15, 15), 6);
    let mut input = frame(0xc1, b"", Some(KEY));
    input.extend(frame(0xc1, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], Some(KEY)));
    // Context taken over: the second "Hello" refers back to the first.
    input.extend(frame(0xc1, &[0xf2, 0x00, 0x11, 0x00, 0x00], Some(KEY)));
    assert_eq!(
        feed(&mut s, &input),
        [Owned::Text(String::new()), Owned::Text("Hello".into()), Owned::Text("Hello".into())]
    );
}

/// `poll_event_owned` copies a small assembled message out (exactly its length) and keeps
/// the assembly buffer; a large one is moved out with at most a quarter of its length spare
/// when inflated (its buffer grows in steps of 16 KiB), none when it came uncompressed over
/// several reads. One connection each way carries them all, so that a message assembled
/// after one was moved out is whole too.
#[test]
fn owned_binary_messages_hold_little_more_than_they_carry() {
    let (mut c, mut s) = pair(&params(false, false, 15, 15), ProtocolConfig::default());
    let mut plain = server();
    for (i, size) in [20, 100_000, 100_001, 20].into_iter().enumerate() {
        let data: Vec<u8> = (0..size).map(|b| (b % 251) as u8 ^ i as u8).collect();
        c.sender().send_message(MessageKind::Binary, &data).unwrap();
        s.receive_data(&take_output(&mut c));
        let wire = frame(0x82, &data, Some(KEY));
        for piece in wire.chunks(wire.len().div_ceil(3)) {
            assert_eq!(plain.poll_event_owned(), None);
            plain.receive_data(piece);
        }
        // Inflated: within a quarter. Uncompressed: its buffer grew to fit it exactly.
        for (conn, most) in [(&mut s, size + size / 4), (&mut plain, size)] {
            match conn.poll_event_owned() {
                Some(PolledEvent::Binary(got)) => {
                    assert_eq!(got, data);
                    let capacity = got.capacity();
                    assert!(capacity <= most, "{size} bytes in {capacity}");
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
