//! Forwarding (`Forwarder`): binary frames and small text frames keep the lengths and FIN bits
//! of the frames received, whatever the input's split; text is held until a frame is whole,
//! or cut into fragments of `FRAGMENT_MIN` once it is larger; compressed messages stream in
//! fragments, holding at most one.

mod common;

use common::*;
use ws_proto::{
    CloseCode, Connection, DeflateParams, Delivery, Event, FRAGMENT_MIN, Forwarder, INFLATE_STEP,
    ProtocolConfig,
};

fn chunked() -> ProtocolConfig {
    let mut config = ProtocolConfig::default();
    config.delivery = Delivery::Chunks;
    config
}

/// What [`forward_split`] saw.
struct Forwarded {
    /// All the bytes sent.
    wire: Vec<u8>,
    /// The close code of a failure, if any.
    failed: Option<CloseCode>,
    /// Bytes the direct write took.
    direct: usize,
    /// How much had been sent after each piece of input.
    sent_after: Vec<usize>,
}

/// Feeds `input` in pieces cut at `cuts`, forwarding every chunk.
fn forward_split(input: &[u8], cuts: &[usize], direct: bool) -> Forwarded {
    let mut server = server_with(chunked());
    let mut forwarder = Forwarder::with_direct_min(1);
    let mut wire = Vec::new();
    let mut failed = None;
    let mut taken = 0;
    let mut sent_after = Vec::new();
    let mut start = 0;
    for end in cuts.iter().copied().chain([input.len()]) {
        server.receive_data(&input[start..end]);
        start = end;
        while let Some((event, mut sender)) = server.poll_event_with_sender() {
            match event {
                Event::Chunk(chunk) => {
                    let mut write = |pending: &[u8], data: &[u8]| {
                        // Takes half of what it is offered.
                        let n = (pending.len() + data.len()) / 2;
                        let from_pending = n.min(pending.len());
                        wire.extend_from_slice(&pending[..from_pending]);
                        wire.extend_from_slice(&data[..n - from_pending]);
                        taken += n;
                        n
                    };
                    let write =
                        direct.then_some(&mut write as &mut dyn FnMut(&[u8], &[u8]) -> usize);
                    let _ = forwarder.forward(&mut sender, &chunk, write);
                }
                Event::Failed(err) => failed = Some(err.close_code()),
                _ => {}
            }
        }
        wire.extend_from_slice(&take_output(&mut server));
        sent_after.push(wire.len());
    }
    Forwarded { wire, failed, direct: taken, sent_after }
}

/// A binary message in three fragments (3 bytes, 70,000, 1) and a text message in two.
fn fragmented_input() -> (Vec<u8>, Vec<u8>) {
    let big: Vec<u8> = (0..70_000u32).map(|i| i as u8).collect();
    let mut input = client_frame(0x02, b"abc");
    input.extend(client_frame(0x00, &big));
    input.extend(client_frame(0x80, b"z"));
    input.extend(client_frame(0x01, "héllo ".as_bytes()));
    input.extend(client_frame(0x80, "wörld".as_bytes()));
    let mut expected = frame(0x02, b"abc", None);
    expected.extend(frame(0x00, &big, None));
    expected.extend(frame(0x80, b"z", None));
    expected.extend(frame(0x01, "héllo ".as_bytes(), None));
    expected.extend(frame(0x80, "wörld".as_bytes(), None));
    (input, expected)
}

#[test]
fn section_5_4_the_peers_fragmentation_is_kept() {
    let (input, expected) = fragmented_input();
    for direct in [false, true] {
        let forwarded = forward_split(&input, &[], direct);
        assert!(forwarded.wire == expected, "direct {direct}: output differs");
        assert_eq!(forwarded.failed, None);
        // With a direct write, it is used (binary payload goes through it, not the buffer).
        assert_eq!(forwarded.direct > 0, direct, "direct {direct}");
    }
}

#[test]
fn any_split_of_the_input_forwards_the_same_frames() {
    let (input, expected) = fragmented_input();
    // Cuts at every byte of the small frames and through the large one.
    let cuts: Vec<Vec<usize>> = (1..input.len())
        .step_by(997)
        .chain(1..40)
        .chain(input.len() - 40..input.len())
        .map(|cut| vec![cut])
        .chain([(1..input.len()).step_by(4099).collect()])
        .collect();
    for cut in cuts {
        for direct in [false, true] {
            let forwarded = forward_split(&input, &cut, direct);
            assert_eq!(forwarded.failed, None);
            assert!(forwarded.wire == expected, "cut at {cut:?} (direct {direct}): output differs");
            assert_eq!(forwarded.direct > 0, direct, "cut at {cut:?} (direct {direct})");
        }
    }
}

#[test]
fn a_text_frame_is_held_until_whole_and_late_bad_utf8_gets_1007_with_nothing_forwarded() {
    let mut text = "ok ".repeat(1000).into_bytes();
    let good = client_frame(0x81, &text);
    // Held while incomplete: nothing of the frame goes out before its last byte.
    let forwarded = forward_split(&good, &[10, 1000, 2000], false);
    assert_eq!((forwarded.wire, forwarded.failed), (frame(0x81, &text, None), None));
    assert_eq!(forwarded.sent_after[..3], [0, 0, 0], "part of the text frame went out early");
    // Invalid UTF-8 in the last byte: a close frame 1007 and no part of the text frame.
    *text.last_mut().unwrap() = 0xff;
    let bad = client_frame(0x81, &text);
    let forwarded = forward_split(&bad, &[10, 1000, 2000], false);
    assert_eq!(forwarded.failed, Some(CloseCode::INVALID_PAYLOAD));
    assert_eq!(forwarded.wire, [0x88, 0x02, 0x03, 0xef]);
}

/// permessage-deflate both ways, no context takeover, 2^15 windows.
const PARAMS: DeflateParams = DeflateParams {
    server_no_context_takeover: true,
    client_no_context_takeover: true,
    server_max_window_bits: 15,
    client_max_window_bits: 15,
};

fn compressing_client() -> Connection {
    let mut conn = client(ProtocolConfig::default());
    conn.set_deflate(&PARAMS, 6);
    conn
}

/// A client that compresses, and a server in chunk delivery that inflates.
fn compressing_pair() -> (Connection, Connection) {
    let mut server = Connection::server(chunked());
    server.set_deflate(&PARAMS, 6);
    (compressing_client(), server)
}

#[test]
fn a_compressed_message_is_forwarded_whole_and_compressed_again() {
    let (mut sender, mut server) = compressing_pair();
    let text = "compress me ".repeat(500);
    sender.send_fragment(ws_proto::MessageKind::Text, &text.as_bytes()[..3000], false).unwrap();
    sender.send_fragment(ws_proto::MessageKind::Text, &text.as_bytes()[3000..], true).unwrap();
    let bytes = take_output(&mut sender);
    let mut forwarder = Forwarder::default();
    for piece in bytes.chunks(100) {
        server.receive_data(piece);
        while let Some((event, mut out)) = server.poll_event_with_sender() {
            if let Event::Chunk(chunk) = event {
                forwarder.forward(&mut out, &chunk, None).unwrap();
            }
        }
    }
    assert_eq!(forwarder.held(), 0);
    // What the server sent is one compressed message (RSV1, FIN) that inflates to the text.
    let wire = take_output(&mut server);
    assert_eq!(wire[0], 0xc1, "one final compressed text frame");
    let mut receiver = compressing_client();
    assert_eq!(feed(&mut receiver, &wire), vec![Owned::Text(text)]);
}

/// The frames in `wire` (server frames: unmasked), as (first header byte, payload).
fn frames(mut wire: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while !wire.is_empty() {
        let (b0, len, at) = match wire[1] & 0x7f {
            126 => (wire[0], u16::from_be_bytes([wire[2], wire[3]]) as usize, 4),
            127 => (wire[0], u64::from_be_bytes(wire[2..10].try_into().unwrap()) as usize, 10),
            n => (wire[0], n as usize, 2),
        };
        frames.push((b0, wire[at..at + len].to_vec()));
        wire = &wire[at + len..];
    }
    frames
}

#[test]
fn a_large_text_frame_in_pieces_is_cut_into_whole_character_fragments_as_it_is_validated() {
    // 200,000 bytes of two- and three-byte characters, so that cuts fall inside them.
    let text = "é€".repeat(40_000);
    let input = client_frame(0x81, text.as_bytes());
    let cuts: Vec<usize> = (1..input.len()).step_by(7_001).collect();
    let forwarded = forward_split(&input, &cuts, false);
    assert_eq!(forwarded.failed, None);
    let frames = frames(&forwarded.wire);
    assert!(frames.len() > 1, "not cut");
    let mut joined = Vec::new();
    for (i, (b0, payload)) in frames.iter().enumerate() {
        let last = i + 1 == frames.len();
        assert_eq!(*b0, if i == 0 { 0x01 } else { 0x00 } | if last { 0x80 } else { 0 });
        assert!(last || payload.len() >= FRAGMENT_MIN, "fragment {i}: {} bytes", payload.len());
        assert!(std::str::from_utf8(payload).is_ok(), "fragment {i} splits a character");
        joined.extend_from_slice(payload);
    }
    assert!(joined == text.as_bytes(), "the fragments do not make up the text");
    // Sent as it was validated, not at the end: the first fragment left before the last piece.
    assert!(forwarded.sent_after[forwarded.sent_after.len() - 2] > 0);
}

#[test]
fn late_bad_utf8_in_a_large_text_frame_gets_1007_and_the_fragments_sent_are_never_finished() {
    let mut text = "ok ".repeat(100_000).into_bytes();
    *text.last_mut().unwrap() = 0xff;
    let input = client_frame(0x81, &text);
    let cuts: Vec<usize> = (1..input.len()).step_by(10_000).collect();
    let forwarded = forward_split(&input, &cuts, false);
    assert_eq!(forwarded.failed, Some(CloseCode::INVALID_PAYLOAD));
    let frames = frames(&forwarded.wire);
    let (close, data) = frames.split_last().unwrap();
    assert_eq!(close.0, 0x88);
    assert_eq!(close.1[..2], 1007u16.to_be_bytes());
    assert!(!data.is_empty(), "nothing was streamed before the bad byte");
    assert!(data.iter().all(|(b0, _)| b0 & 0x80 == 0), "a fragment before the close is final");
}

#[test]
fn a_large_compressed_message_streams_in_fragments_holding_at_most_one() {
    let (mut sender, mut server) = compressing_pair();
    // 4 MiB that compresses well, in one frame of a few KiB.
    let text = "all work and no play makes a dull echo. ".repeat(100_000);
    sender.send_text(&text).unwrap();
    let bytes = take_output(&mut sender);
    assert!(bytes.len() < 256 << 10, "{} bytes compressed", bytes.len());
    let mut forwarder = Forwarder::default();
    let mut wire = Vec::new();
    let mut most_held = 0;
    for piece in bytes.chunks(1000) {
        server.receive_data(piece);
        while let Some((event, mut out)) = server.poll_event_with_sender() {
            if let Event::Chunk(chunk) = event {
                assert!(chunk.data().len() <= INFLATE_STEP, "a chunk of {}", chunk.data().len());
                forwarder.forward(&mut out, &chunk, None).unwrap();
                most_held = most_held.max(forwarder.held());
            }
        }
        wire.extend(take_output(&mut server));
    }
    assert!(most_held < FRAGMENT_MIN + INFLATE_STEP, "held {most_held} bytes");
    let frames = frames(&wire);
    assert!(frames.len() >= text.len() / (FRAGMENT_MIN + INFLATE_STEP), "{} frames", frames.len());
    assert_eq!(frames[0].0, 0x41, "RSV1 on the first fragment only");
    assert!(frames[1..].iter().all(|(b0, _)| b0 & 0x70 == 0));
    let mut receiver = compressing_client();
    assert!(feed(&mut receiver, &wire) == vec![Owned::Text(text)], "the echo differs");
}
