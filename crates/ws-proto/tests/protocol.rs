//! Connection behaviour, named after the RFC 6455 sections that require it, asserting exact
//! wire bytes.

mod common;

use common::*;
use ws_proto::{
    CloseCode, Delivery, MessageKind, ProtocolConfig, ProtocolError, Role, SendError, State,
};

/// The close frame a server sends with `code` and no reason.
fn server_close(code: u16) -> Vec<u8> {
    let c = code.to_be_bytes();
    vec![0x88, 0x02, c[0], c[1]]
}

/// Asserts that feeding `input` to a fresh server fails it with `err`, sending its close code.
fn assert_server_fails(input: &[u8], err: ProtocolError) {
    let mut conn = server();
    let events = feed(&mut conn, input);
    assert_eq!(events.last(), Some(&Owned::Failed(err)), "events {events:?}");
    assert_eq!(take_output(&mut conn), server_close(err.close_code().0));
    assert_eq!(conn.state(), State::Closed);
    assert!(conn.should_close_transport());
    // Input after the failure is ignored.
    assert_eq!(feed(&mut conn, &client_frame(0x81, b"late")), []);
    assert!(conn.pending_output().is_empty());
}

// ---- §5.1 / §5.3 masking -------------------------------------------------------------------

#[test]
fn rfc_5_1_server_fails_on_unmasked_frame() {
    assert_server_fails(&frame(0x81, b"hi", None), ProtocolError::UnmaskedFrame);
}

#[test]
fn rfc_5_1_client_fails_on_masked_frame() {
    let mut conn = client(ProtocolConfig::default());
    let events = feed(&mut conn, &frame(0x81, b"hi", Some(KEY)));
    assert_eq!(events, [Owned::Failed(ProtocolError::MaskedFrame)]);
    // 1002, masked with the client's first key.
    let k = client_key(1);
    assert_eq!(
        take_output(&mut conn),
        [0x88, 0x82, k[0], k[1], k[2], k[3], 0x03 ^ k[0], 0xea ^ k[1]]
    );
    assert!(conn.should_close_transport());
}

#[test]
fn rfc_5_7_masked_text_from_client() {
    let mut conn = server();
    let events =
        feed(&mut conn, &[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    assert_eq!(events, [Owned::Text("Hello".into())]);
}

#[test]
fn rfc_5_7_unmasked_text_from_server() {
    let mut conn = client(ProtocolConfig::default());
    assert_eq!(
        feed(&mut conn, &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]),
        [Owned::Text("Hello".into())]
    );
}

#[test]
fn rfc_5_7_server_sends_exact_bytes() {
    let mut conn = server();
    conn.send_text("Hello").unwrap();
    assert_eq!(take_output(&mut conn), [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    conn.send_fragment(MessageKind::Text, b"Hel", false).unwrap();
    conn.send_fragment(MessageKind::Text, b"lo", true).unwrap();
    assert_eq!(take_output(&mut conn), [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f]);
    conn.send_ping(b"Hello").unwrap();
    assert_eq!(take_output(&mut conn), [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    conn.send_binary(&[0; 256]).unwrap();
    assert_eq!(take_output(&mut conn)[..4], [0x82, 0x7e, 0x01, 0x00]);
    conn.send_binary(&vec![0; 65536]).unwrap();
    let out = take_output(&mut conn);
    assert_eq!(out[..10], [0x82, 0x7f, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00]);
    assert_eq!(out.len(), 10 + 65536);
}

#[test]
fn rfc_5_7_client_sends_masked_hello() {
    let mut conn =
        ws_proto::Connection::client(ProtocolConfig::default(), || [0x37, 0xfa, 0x21, 0x3d]);
    conn.send_text("Hello").unwrap();
    assert_eq!(
        take_output(&mut conn),
        [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
    );
}

#[test]
fn rfc_5_3_client_uses_a_fresh_key_per_frame() {
    let mut conn = client(ProtocolConfig::default());
    conn.send_binary(b"a").unwrap();
    conn.send_binary(b"a").unwrap();
    let out = take_output(&mut conn);
    let (k1, k2) = (client_key(1), client_key(2));
    assert_ne!(k1, k2);
    assert_eq!(
        out,
        [
            0x82,
            0x81,
            k1[0],
            k1[1],
            k1[2],
            k1[3],
            b'a' ^ k1[0],
            0x82,
            0x81,
            k2[0],
            k2[1],
            k2[2],
            k2[3],
            b'a' ^ k2[0]
        ]
    );
}

// ---- §5.2 base framing ---------------------------------------------------------------------

#[test]
fn rfc_5_2_reserved_bits_without_extension_fail() {
    for b0 in [0xc1, 0xa1, 0x91, 0xf1, 0xc9] {
        assert_server_fails(&client_frame(b0, b"x"), ProtocolError::ReservedBits);
    }
}

#[test]
fn rfc_5_2_reserved_opcodes_fail() {
    for op in [3u8, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf] {
        assert_server_fails(&client_frame(0x80 | op, b""), ProtocolError::ReservedOpcode(op));
    }
}

#[test]
fn rfc_5_2_length_msb_set_fails() {
    let input = [0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
    assert_server_fails(&input, ProtocolError::InvalidLength);
}

// ---- §5.4 fragmentation --------------------------------------------------------------------

#[test]
fn rfc_5_4_fragments_assemble_into_one_message() {
    let mut conn = server();
    let mut input = client_frame(0x01, b"Hel");
    input.extend(client_frame(0x00, b""));
    input.extend(client_frame(0x80, b"lo"));
    assert_eq!(feed(&mut conn, &input), [Owned::Text("Hello".into())]);
    // Then another, unfragmented.
    assert_eq!(feed(&mut conn, &client_frame(0x82, b"next")), [Owned::Binary(b"next".to_vec())]);
}

#[test]
fn rfc_5_4_control_frames_interleave_with_fragments() {
    let mut conn = server();
    let mut input = client_frame(0x02, b"ab");
    input.extend(client_frame(0x89, b"p"));
    input.extend(client_frame(0x8a, b"q"));
    input.extend(client_frame(0x80, b"cd"));
    let events = feed(&mut conn, &input);
    assert_eq!(
        events,
        [Owned::Ping(b"p".to_vec()), Owned::Pong(b"q".to_vec()), Owned::Binary(b"abcd".to_vec())]
    );
    assert_eq!(take_output(&mut conn), [0x8a, 0x01, b'p']);
}

#[test]
fn rfc_5_4_continuation_without_a_message_fails() {
    assert_server_fails(&client_frame(0x80, b"x"), ProtocolError::UnexpectedContinuation);
}

#[test]
fn rfc_5_4_new_message_inside_a_fragmented_one_fails() {
    let mut input = client_frame(0x01, b"a");
    input.extend(client_frame(0x81, b"b"));
    assert_server_fails(&input, ProtocolError::ExpectedContinuation);
    let mut input = client_frame(0x02, b"a");
    input.extend(client_frame(0x02, b"b"));
    assert_server_fails(&input, ProtocolError::ExpectedContinuation);
}

#[test]
fn rfc_5_5_fragmented_control_frame_fails() {
    assert_server_fails(&client_frame(0x09, b"x"), ProtocolError::FragmentedControlFrame);
}

#[test]
fn rfc_5_5_control_frame_over_125_bytes_fails() {
    assert_server_fails(&client_frame(0x89, &[0; 126]), ProtocolError::ControlFrameTooLong);
    let mut ok = server();
    assert_eq!(feed(&mut ok, &client_frame(0x89, &[7; 125])), [Owned::Ping(vec![7; 125])]);
}

// ---- §5.5.1 close --------------------------------------------------------------------------

#[test]
fn rfc_5_5_1_server_echoes_close_code_and_closes_first() {
    let mut conn = server();
    let events = feed(&mut conn, &client_frame(0x88, b"\x03\xe8bye"));
    assert_eq!(events, [Owned::Close(CloseCode::NORMAL, "bye".into())]);
    assert_eq!(take_output(&mut conn), server_close(1000));
    assert_eq!(conn.state(), State::Closed);
    assert!(conn.should_close_transport());
    assert_eq!(conn.send_text("late"), Err(SendError::Closed));
}

#[test]
fn rfc_7_1_1_client_waits_for_the_server_to_close_tcp() {
    let mut conn = client(ProtocolConfig::default());
    assert_eq!(
        feed(&mut conn, &frame(0x88, b"\x03\xe9", None)),
        [Owned::Close(CloseCode::GOING_AWAY, String::new())]
    );
    let k = client_key(1);
    assert_eq!(
        take_output(&mut conn),
        [0x88, 0x82, k[0], k[1], k[2], k[3], 0x03 ^ k[0], 0xe9 ^ k[1]]
    );
    assert_eq!(conn.state(), State::Closed);
    assert!(!conn.should_close_transport());
    conn.receive_eof();
    assert_eq!(drain(&mut conn), []);
    assert!(conn.should_close_transport());
}

#[test]
fn rfc_5_5_1_empty_close_is_answered_with_empty_close() {
    let mut conn = server();
    assert_eq!(
        feed(&mut conn, &client_frame(0x88, b"")),
        [Owned::Close(CloseCode::NO_STATUS, String::new())]
    );
    assert_eq!(take_output(&mut conn), [0x88, 0x00]);
}

#[test]
fn rfc_5_5_1_one_byte_close_payload_fails() {
    assert_server_fails(&client_frame(0x88, b"\x03"), ProtocolError::InvalidClosePayload);
}

#[test]
fn rfc_7_4_invalid_close_codes_fail_with_1002() {
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535] {
        assert_server_fails(
            &client_frame(0x88, &code.to_be_bytes()),
            ProtocolError::InvalidCloseCode(code),
        );
    }
}

#[test]
fn rfc_7_4_valid_close_codes_are_echoed() {
    for code in [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
        4000, 4999,
    ] {
        let mut conn = server();
        assert_eq!(
            feed(&mut conn, &client_frame(0x88, &code.to_be_bytes())),
            [Owned::Close(CloseCode(code), String::new())]
        );
        assert_eq!(take_output(&mut conn), server_close(code));
    }
}

#[test]
fn rfc_5_5_1_close_reason_must_be_utf8() {
    assert_server_fails(
        &client_frame(0x88, b"\x03\xe8\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"),
        ProtocolError::InvalidUtf8,
    );
}

#[test]
fn rfc_5_5_1_frames_after_close_are_ignored() {
    let mut conn = server();
    let mut input = client_frame(0x88, b"\x03\xe8");
    input.extend(client_frame(0x81, b"after"));
    input.extend(client_frame(0x89, b"ping"));
    assert_eq!(feed(&mut conn, &input), [Owned::Close(CloseCode::NORMAL, String::new())]);
    assert_eq!(take_output(&mut conn), server_close(1000));
}

#[test]
fn rfc_7_1_2_we_start_the_close_and_still_receive_data() {
    let mut conn = server();
    conn.close(CloseCode::GOING_AWAY, "shutdown").unwrap();
    assert_eq!(take_output(&mut conn), b"\x88\x0a\x03\xe9shutdown");
    assert_eq!(conn.state(), State::CloseSent);
    assert_eq!(conn.send_binary(b"x"), Err(SendError::Closed));
    assert_eq!(conn.close(CloseCode::NORMAL, ""), Err(SendError::Closed));
    let mut input = client_frame(0x81, b"in flight");
    input.extend(client_frame(0x89, b"p"));
    input.extend(client_frame(0x88, b"\x03\xe9"));
    let events = feed(&mut conn, &input);
    assert_eq!(
        events,
        [
            Owned::Text("in flight".into()),
            Owned::Ping(b"p".to_vec()),
            Owned::Close(CloseCode::GOING_AWAY, String::new())
        ]
    );
    // No pong and no second close after our close frame.
    assert!(conn.pending_output().is_empty());
    assert_eq!(conn.state(), State::Closed);
    assert!(conn.should_close_transport());
}

#[test]
fn close_arguments_are_checked() {
    let mut conn = server();
    assert_eq!(conn.close(CloseCode::NO_STATUS, ""), Err(SendError::InvalidCloseCode(1005)));
    assert_eq!(conn.close(CloseCode::NORMAL, &"x".repeat(124)), Err(SendError::ReasonTooLong));
    conn.close(CloseCode::NORMAL, &"x".repeat(123)).unwrap();
    assert_eq!(take_output(&mut conn).len(), 2 + 125);
}

// ---- §5.5.2 / §5.5.3 ping and pong ---------------------------------------------------------

#[test]
fn rfc_5_5_2_ping_is_answered_with_the_same_payload() {
    let mut conn = server();
    assert_eq!(feed(&mut conn, &client_frame(0x89, b"Hello")), [Owned::Ping(b"Hello".to_vec())]);
    assert_eq!(take_output(&mut conn), [0x8a, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
}

#[test]
fn rfc_5_5_2_auto_pong_can_be_turned_off() {
    let mut config = ProtocolConfig::default();
    config.auto_pong = false;
    let mut conn = server_with(config);
    assert_eq!(feed(&mut conn, &client_frame(0x89, b"x")), [Owned::Ping(b"x".to_vec())]);
    assert!(conn.pending_output().is_empty());
    conn.send_pong(b"x").unwrap();
    assert_eq!(take_output(&mut conn), [0x8a, 0x01, b'x']);
}

#[test]
fn rfc_5_5_3_unsolicited_pong_is_accepted() {
    let mut conn = server();
    assert_eq!(feed(&mut conn, &client_frame(0x8a, b"")), [Owned::Pong(vec![])]);
    assert!(conn.pending_output().is_empty());
    assert_eq!(conn.state(), State::Open);
}

#[test]
fn control_payload_limits_on_send() {
    let mut conn = server();
    assert_eq!(conn.send_ping(&[0; 126]), Err(SendError::ControlFrameTooLong));
    assert_eq!(conn.send_pong(&[0; 126]), Err(SendError::ControlFrameTooLong));
    conn.send_ping(&[0; 125]).unwrap();
}

// ---- §5.6 / §8.1 UTF-8 ---------------------------------------------------------------------

#[test]
fn rfc_8_1_invalid_text_fails_with_1007() {
    assert_server_fails(
        &client_frame(0x81, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"),
        ProtocolError::InvalidUtf8,
    );
}

#[test]
fn rfc_8_1_code_point_split_across_fragments_is_valid() {
    let euro = "€".as_bytes();
    let mut conn = server();
    let mut input = client_frame(0x01, &euro[..1]);
    input.extend(client_frame(0x00, &euro[1..2]));
    input.extend(client_frame(0x80, &euro[2..]));
    assert_eq!(feed(&mut conn, &input), [Owned::Text("€".into())]);
}

#[test]
fn rfc_8_1_text_ending_inside_a_code_point_fails() {
    let mut input = client_frame(0x01, b"ok");
    input.extend(client_frame(0x80, b"\xe2\x82"));
    assert_server_fails(&input, ProtocolError::InvalidUtf8);
}

#[test]
fn rfc_8_1_fails_fast_before_the_message_ends() {
    // The first fragment is invalid: fail at once, without waiting for the final fragment.
    let mut conn = server();
    let events = feed(&mut conn, &client_frame(0x01, b"\xce\xba\xf4\x90"));
    assert_eq!(events, [Owned::Failed(ProtocolError::InvalidUtf8)]);
    // Within one frame that has only partly arrived.
    let mut conn = server();
    let wire = client_frame(0x81, b"valid text then \xf4\x90\x80\x80 and more");
    let events = feed(&mut conn, &wire[..6 + 18]);
    assert_eq!(events, [Owned::Failed(ProtocolError::InvalidUtf8)]);
    assert_eq!(take_output(&mut conn), server_close(1007));
}

#[test]
fn binary_is_not_checked_as_utf8() {
    let mut conn = server();
    assert_eq!(
        feed(&mut conn, &client_frame(0x82, b"\xff\xfe")),
        [Owned::Binary(vec![0xff, 0xfe])]
    );
}

// ---- §10.4 limits --------------------------------------------------------------------------

fn limited(frame: usize, message: usize, delivery: Delivery) -> ws_proto::Connection {
    let mut config = ProtocolConfig::default();
    config.max_frame_size = frame;
    config.max_message_size = message;
    config.delivery = delivery;
    server_with(config)
}

#[test]
fn rfc_10_4_frame_over_the_limit_fails_from_its_header() {
    let mut conn = limited(100, 1000, Delivery::Messages);
    let wire = client_frame(0x82, &[0; 101]);
    // Only the header has arrived.
    assert_eq!(feed(&mut conn, &wire[..8]), [Owned::Failed(ProtocolError::FrameTooLarge)]);
    assert_eq!(take_output(&mut conn), server_close(1009));
    let mut conn = limited(100, 1000, Delivery::Messages);
    assert_eq!(feed(&mut conn, &client_frame(0x82, &[0; 100])), [Owned::Binary(vec![0; 100])]);
}

#[test]
fn rfc_10_4_whole_small_messages_meet_both_limits_exactly() {
    // Frames of up to 125 bytes that arrive whole are read on a path of their own: the
    // limits hold there as they do for the others (126 bytes takes the general path).
    for len in [1, 20, 125, 126] {
        for opcode in [0x81, 0x82] {
            let wire = client_frame(opcode, &vec![b'a'; len]);
            let at = |frame: usize, message: usize| {
                let mut conn = limited(frame, message, Delivery::Messages);
                let events = feed(&mut conn, &wire);
                (events, take_output(&mut conn))
            };
            let message = if opcode == 0x81 {
                Owned::Text("a".repeat(len))
            } else {
                Owned::Binary(vec![b'a'; len])
            };
            assert_eq!(at(len, len), (vec![message.clone()], vec![]), "{len} bytes, {opcode:#x}");
            assert_eq!(
                at(len - 1, 1000),
                (vec![Owned::Failed(ProtocolError::FrameTooLarge)], server_close(1009)),
                "{len} bytes, {opcode:#x}"
            );
            assert_eq!(
                at(1000, len - 1),
                (vec![Owned::Failed(ProtocolError::MessageTooLarge)], server_close(1009)),
                "{len} bytes, {opcode:#x}"
            );
            // A client reads the server's unmasked frames on the same path.
            let unmasked = frame(opcode, &vec![b'a'; len], None);
            let client_at = |frame: usize, message: usize| {
                let mut config = ProtocolConfig::default();
                config.max_frame_size = frame;
                config.max_message_size = message;
                feed(&mut client(config), &unmasked)
            };
            assert_eq!(client_at(len, len), [message]);
            assert_eq!(client_at(len - 1, 1000), [Owned::Failed(ProtocolError::FrameTooLarge)]);
            assert_eq!(client_at(1000, len - 1), [Owned::Failed(ProtocolError::MessageTooLarge)]);
        }
    }
}

#[test]
fn rfc_10_4_message_over_the_limit_across_fragments_fails() {
    for delivery in [Delivery::Messages, Delivery::Chunks] {
        let mut conn = limited(100, 150, delivery);
        let mut input = client_frame(0x02, &[0; 100]);
        input.extend(client_frame(0x80, &[0; 51]));
        let events = feed(&mut conn, &input);
        assert_eq!(events.last(), Some(&Owned::Failed(ProtocolError::MessageTooLarge)));
        assert_eq!(take_output(&mut conn), server_close(1009));
    }
}

#[test]
fn declared_length_of_2_pow_62_allocates_nothing() {
    let mut conn = server();
    let mut header = vec![0x82, 0xff];
    header.extend_from_slice(&(1u64 << 62).to_be_bytes());
    header.extend_from_slice(&KEY);
    assert_eq!(feed(&mut conn, &header), [Owned::Failed(ProtocolError::FrameTooLarge)]);
    assert_eq!(take_output(&mut conn), server_close(1009));
    assert_eq!(conn.buffered_input(), 0);
}

// ---- streaming -----------------------------------------------------------------------------

#[test]
fn chunks_stream_a_frame_as_it_arrives() {
    let mut conn = limited(1 << 20, 1 << 20, Delivery::Chunks);
    let payload: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
    let wire = client_frame(0x82, &payload);
    let mut received = Vec::new();
    let mut chunks = 0;
    for piece in wire.chunks(4096) {
        for event in feed(&mut conn, piece) {
            let Owned::Chunk { kind, data, first, last } = event else { panic!("{event:?}") };
            assert_eq!(kind, MessageKind::Binary);
            assert_eq!(first, received.is_empty() && chunks == 0);
            assert_eq!(last, received.len() + data.len() == payload.len());
            received.extend(data);
            chunks += 1;
        }
        // Nothing is held back beyond a partial header.
        assert!(conn.buffered_input() <= 14);
    }
    assert_eq!(received, payload);
    assert!(chunks > 40);
}

#[test]
fn chunks_of_a_fragmented_text_message() {
    let mut conn = limited(100, 100, Delivery::Chunks);
    let mut input = client_frame(0x01, b"ab");
    input.extend(client_frame(0x00, b""));
    input.extend(client_frame(0x80, b"c"));
    let events = feed(&mut conn, &input);
    assert_eq!(
        events,
        [
            Owned::Chunk {
                kind: MessageKind::Text,
                data: b"ab".to_vec(),
                first: true,
                last: false
            },
            Owned::Chunk { kind: MessageKind::Text, data: b"c".to_vec(), first: false, last: true },
        ]
    );
    // An empty message still reports its start and end.
    let events = feed(&mut conn, &client_frame(0x82, b""));
    assert_eq!(
        events,
        [Owned::Chunk { kind: MessageKind::Binary, data: vec![], first: true, last: true }]
    );
}

// ---- transport end and buffers -------------------------------------------------------------

#[test]
fn rfc_7_1_5_eof_before_close_is_abnormal() {
    let mut conn = server();
    let wire = client_frame(0x81, b"partial");
    conn.receive_data(&wire[..5]);
    assert_eq!(drain(&mut conn), []);
    conn.receive_eof();
    assert_eq!(drain(&mut conn), [Owned::Disconnected]);
    assert_eq!(conn.state(), State::Closed);
    assert!(conn.should_close_transport());
    assert!(conn.pending_output().is_empty());
}

#[test]
fn events_before_eof_are_delivered_first() {
    let mut conn = server();
    conn.receive_data(&client_frame(0x81, b"last words"));
    conn.receive_eof();
    assert_eq!(drain(&mut conn), [Owned::Text("last words".into()), Owned::Disconnected]);
}

#[test]
fn input_buffer_reads_without_a_copy() {
    let mut conn = server();
    let wire = client_frame(0x82, b"zero copy");
    let buf = conn.input_buffer(wire.len());
    buf[..wire.len()].copy_from_slice(&wire);
    conn.input_written(wire.len());
    assert_eq!(drain(&mut conn), [Owned::Binary(b"zero copy".to_vec())]);
}

#[test]
fn idle_buffers_are_released() {
    let mut conn = server();
    feed(&mut conn, &client_frame(0x82, &[1; 100_000]));
    conn.send_binary(&[2; 10_000]).unwrap();
    assert!(conn.buffer_capacity() >= 100_000, "{}", conn.buffer_capacity());
    // Output still pending is kept.
    conn.release_idle_buffers();
    assert!(conn.buffer_capacity() >= 10_000);
    take_output(&mut conn);
    conn.release_idle_buffers();
    assert_eq!(conn.buffer_capacity(), 0);
    // Still works afterwards.
    assert_eq!(feed(&mut conn, &client_frame(0x81, b"again")), [Owned::Text("again".into())]);
}

/// A buffer handed back with `recycle` takes the next binary message copied out that fits;
/// it counts in the connection's memory, the larger of two is kept, one of
/// `DIRECT_WRITE_MIN` bytes or more is not, and an idle connection keeps it only up to
/// `RECYCLED_IDLE_MAX` bytes.
#[test]
fn recycled_buffers_are_reused_bounded_and_released_when_large() {
    let owned_binary = |conn: &mut ws_proto::Connection, payload: &[u8]| {
        conn.receive_data(&client_frame(0x82, payload));
        match conn.poll_event_owned() {
            Some(ws_proto::PolledEvent::Binary(data)) => data,
            other => panic!("{other:?}"),
        }
    };
    let mut conn = server();
    let first = owned_binary(&mut conn, b"the first message");
    let capacity = first.capacity();
    conn.recycle(first);
    // Counted, and kept while idle (it is small).
    conn.release_idle_buffers();
    assert_eq!(conn.buffer_capacity(), capacity);
    // Copied into the first one's buffer: a new one would hold exactly its 6 bytes.
    let second = owned_binary(&mut conn, b"second");
    assert_eq!((second.as_slice(), second.capacity()), (&b"second"[..], capacity));
    // A message that does not fit is copied into a buffer of its own; the recycled one waits.
    conn.recycle(second);
    let long = owned_binary(&mut conn, &[9; 100]);
    assert_eq!(long.capacity(), 100);
    assert_eq!(owned_binary(&mut conn, b"short").capacity(), capacity);
    // One is kept, the largest under DIRECT_WRITE_MIN bytes.
    conn.recycle(Vec::with_capacity(ws_proto::DIRECT_WRITE_MIN));
    conn.recycle(Vec::with_capacity(128));
    conn.recycle(Vec::with_capacity(64));
    conn.release_idle_buffers();
    assert_eq!(conn.buffer_capacity(), 128);
    let small = owned_binary(&mut conn, b"small");
    // Larger than RECYCLED_IDLE_MAX: used while active, freed when the connection idles.
    conn.recycle(Vec::with_capacity(ws_proto::RECYCLED_IDLE_MAX + 1));
    let third = owned_binary(&mut conn, b"third");
    assert!(third.capacity() > ws_proto::RECYCLED_IDLE_MAX);
    conn.recycle(third);
    conn.release_idle_buffers();
    assert_eq!(conn.buffer_capacity(), 0);
    drop(small);
}

#[test]
fn text_that_fits_the_recycled_buffer_is_copied_into_it() {
    use ws_proto::{Event, MessageRef, PolledEvent};
    let mut conn = server();
    // Nothing recycled yet: text is reported borrowed.
    conn.receive_data(&client_frame(0x81, "héllo".as_bytes()));
    assert!(matches!(
        conn.poll_event_owned(),
        Some(PolledEvent::Event(Event::Message(MessageRef::Text("héllo"))))
    ));
    let buf = Vec::with_capacity(64);
    let at = buf.as_ptr();
    conn.recycle(buf);
    // Whole, and assembled from two fragments: both land in the recycled buffer.
    let mut input = client_frame(0x81, "héllo".as_bytes());
    input.extend(client_frame(0x01, b"wor"));
    input.extend(client_frame(0x80, b"ld"));
    conn.receive_data(&input);
    let Some(PolledEvent::Text(first)) = conn.poll_event_owned() else { panic!() };
    assert_eq!((first.as_str(), first.as_ptr(), first.capacity()), ("héllo", at, 64));
    conn.recycle(first.into_bytes());
    let Some(PolledEvent::Text(second)) = conn.poll_event_owned() else { panic!() };
    assert_eq!((second.as_str(), second.as_ptr()), ("world", at));
    conn.recycle(second.into_bytes());
    // Longer than the buffer: borrowed, and the buffer waits for the next.
    conn.receive_data(&client_frame(0x81, &[b'a'; 65]));
    assert!(matches!(
        conn.poll_event_owned(),
        Some(PolledEvent::Event(Event::Message(MessageRef::Text(t)))) if t.len() == 65
    ));
    conn.receive_data(&client_frame(0x81, b"next"));
    let Some(PolledEvent::Text(next)) = conn.poll_event_owned() else { panic!() };
    assert_eq!((next.as_str(), next.as_ptr()), ("next", at));
    conn.recycle(next.into_bytes());
    // Invalid UTF-8 still fails the connection.
    conn.receive_data(&client_frame(0x81, b"\xff"));
    assert_eq!(
        conn.poll_event_owned(),
        Some(PolledEvent::Event(Event::Failed(ProtocolError::InvalidUtf8)))
    );
}

#[test]
fn input_buffers_move_between_connections_without_leaking_bytes() {
    let mut a = server();
    let frame = client_frame(0x82, b"first");
    // Half a frame buffered: the buffer holds input, so it stays.
    feed(&mut a, &frame[..4]);
    assert!(a.take_input_buffer().is_none());
    assert_eq!(feed(&mut a, &frame[4..]), [Owned::Binary(b"first".to_vec())]);
    let buf = a.take_input_buffer().expect("an empty buffer is taken");
    assert!(buf.capacity() >= frame.len());
    assert_eq!(a.buffer_capacity(), 0);
    // Another connection reads into it; what the first left there never shows up.
    let mut b = server();
    assert!(b.give_input_buffer(buf).is_none());
    assert_eq!(feed(&mut b, &client_frame(0x81, b"xy")), [Owned::Text("xy".into())]);
    // A connection that has a buffer hands a given one back.
    assert!(b.give_input_buffer(vec![0; 16]).is_some());
    // The first still works, with a buffer of its own.
    assert_eq!(feed(&mut a, &client_frame(0x81, b"again")), [Owned::Text("again".into())]);
}

#[test]
fn send_fragment_rules() {
    let mut conn = server();
    conn.send_fragment(MessageKind::Binary, b"a", false).unwrap();
    assert_eq!(conn.send_binary(b"b"), Err(SendError::MessageInProgress));
    assert_eq!(conn.send_fragment(MessageKind::Text, b"b", true), Err(SendError::FragmentMismatch));
    conn.send_ping(b"").unwrap();
    conn.send_fragment(MessageKind::Binary, b"c", true).unwrap();
    assert_eq!(take_output(&mut conn), [0x02, 0x01, b'a', 0x89, 0x00, 0x80, 0x01, b'c']);
    conn.send_text("free again").unwrap();
}

#[test]
fn role_is_reported() {
    assert_eq!(server().role(), Role::Server);
    assert_eq!(client(ProtocolConfig::default()).role(), Role::Client);
}

// ---- frames sent in pieces -----------------------------------------------------------------

#[test]
fn chunks_report_their_frame() {
    let mut conn = limited(1 << 20, 1 << 20, Delivery::Chunks);
    let wire = [client_frame(0x02, &[1; 10]), client_frame(0x80, &[2; 6])].concat();
    let mut seen = Vec::new();
    // Split inside the first frame.
    for piece in [&wire[..10], &wire[10..]] {
        conn.receive_data(piece);
        while let Some(ws_proto::Event::Chunk(c)) = conn.poll_event() {
            seen.push((
                c.data().len(),
                c.frame_len(),
                c.fin(),
                c.frame_start(),
                c.frame_end(),
                c.first(),
                c.last(),
            ));
        }
    }
    assert_eq!(
        seen,
        [
            (4, 10, false, true, false, true, false),
            (6, 10, false, false, true, false, false),
            (6, 6, true, true, true, false, true),
        ]
    );
}

#[test]
fn a_frame_sent_in_pieces_is_masked_across_them() {
    let mut conn =
        ws_proto::Connection::client(ProtocolConfig::default(), || [0x37, 0xfa, 0x21, 0x3d]);
    let mut sender = conn.sender();
    sender.begin_frame(MessageKind::Text, true, 5).unwrap();
    assert!(sender.frame_in_progress());
    sender.send_frame_data(b"H").unwrap();
    sender.send_frame_data(b"el").unwrap();
    sender.send_frame_data(b"lo").unwrap();
    assert!(!sender.frame_in_progress());
    // RFC 6455 §5.7, masked "Hello", built in three pieces.
    assert_eq!(
        take_output(&mut conn),
        [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
    );
}

#[test]
fn nothing_is_interleaved_inside_a_frame_sent_in_pieces() {
    let mut conn = server();
    let mut sender = conn.sender();
    sender.begin_frame(MessageKind::Binary, false, 4).unwrap();
    sender.send_frame_data(b"ab").unwrap();
    assert_eq!(sender.send_ping(b""), Err(SendError::FrameInProgress));
    assert_eq!(sender.send_binary(b"x"), Err(SendError::FrameInProgress));
    assert_eq!(sender.send_frame_data(b"cde"), Err(SendError::FrameOverrun));
    // A ping from the peer now: its pong waits for the frame to end.
    assert_eq!(feed(&mut conn, &client_frame(0x89, b"p1")), [Owned::Ping(b"p1".to_vec())]);
    assert_eq!(feed(&mut conn, &client_frame(0x89, b"p2")), [Owned::Ping(b"p2".to_vec())]);
    conn.sender().send_frame_data(b"cd").unwrap();
    // The frame, then one pong for the latest ping (§5.5.3 allows answering only that one).
    assert_eq!(
        take_output(&mut conn),
        [0x02, 0x04, b'a', b'b', b'c', b'd', 0x8a, 0x02, b'p', b'2']
    );
    let mut sender = conn.sender();
    assert_eq!(sender.send_frame_data(b"x"), Err(SendError::NoFrameInProgress));
    sender.begin_frame(MessageKind::Binary, true, 0).unwrap();
    assert!(!sender.frame_in_progress());
    assert_eq!(take_output(&mut conn), [0x80, 0x00]);
}

#[test]
fn send_in_place_queues_only_the_header() {
    let mut conn = server();
    let mut payload = vec![9u8; 70_000];
    conn.sender().send_in_place(MessageKind::Binary, &mut payload).unwrap();
    assert_eq!(take_output(&mut conn), [0x82, 0x7f, 0, 0, 0, 0, 0, 0x01, 0x11, 0x70]);
    assert_eq!(payload, vec![9u8; 70_000], "a server does not mask");
    conn.send_fragment(MessageKind::Text, b"a", false).unwrap();
    assert_eq!(
        conn.sender().send_in_place(MessageKind::Text, &mut [b'b']),
        Err(SendError::MessageInProgress)
    );
}

/// The bytes a frame sent in two pieces puts on the wire, the second piece offered to a
/// transport that takes `take` bytes of (pending output ++ piece).
fn wire_with_direct_write(take: usize) -> Vec<u8> {
    let mut conn = server();
    let mut wire = Vec::new();
    let mut sender = conn.sender();
    sender.begin_frame(MessageKind::Binary, true, 10).unwrap();
    sender.send_frame_data(b"0123").unwrap();
    sender
        .send_frame_data_via(b"456789", |pending, data| {
            let both: Vec<u8> = pending.iter().chain(data).copied().collect();
            let n = take.min(both.len());
            wire.extend_from_slice(&both[..n]);
            n
        })
        .unwrap();
    assert!(!conn.sender().frame_in_progress());
    wire.extend(take_output(&mut conn));
    wire
}

#[test]
fn frame_data_written_directly_gives_the_same_wire_bytes_whatever_the_transport_takes() {
    let mut copied = server();
    let mut sender = copied.sender();
    sender.begin_frame(MessageKind::Binary, true, 10).unwrap();
    sender.send_frame_data(b"0123456789").unwrap();
    let expected = take_output(&mut copied);
    assert_eq!(expected, b"\x82\x0a0123456789");
    // 0: nothing written (all queued); 2: part of the header; 6: the header and the first
    // piece; 9: into the second piece; 12: everything.
    for take in 0..=expected.len() {
        assert_eq!(wire_with_direct_write(take), expected, "transport took {take}");
    }
}

#[test]
fn a_pong_owed_during_a_direct_frame_follows_it() {
    let mut conn = server();
    conn.sender().begin_frame(MessageKind::Binary, true, 3).unwrap();
    // A ping arrives while the frame is open: the pong waits for the frame's end.
    feed(&mut conn, &client_frame(0x89, b"p"));
    let mut wire = take_output(&mut conn);
    conn.sender()
        .send_frame_data_via(b"abc", |pending, data| {
            assert!(pending.is_empty());
            wire.extend_from_slice(data);
            data.len()
        })
        .unwrap();
    wire.extend(take_output(&mut conn));
    assert_eq!(wire, b"\x82\x03abc\x8a\x01p");
}

#[test]
fn a_client_frame_is_never_written_unmasked() {
    let mut conn = client(ProtocolConfig::default());
    let mut sender = conn.sender();
    sender.begin_frame(MessageKind::Binary, true, 3).unwrap();
    sender.send_frame_data_via(b"abc", |_, _| panic!("a masked frame must be queued")).unwrap();
    let out = take_output(&mut conn);
    assert_eq!(out.len(), 2 + 4 + 3);
    assert_ne!(&out[6..], b"abc");
}

#[test]
fn pongs_are_counted_however_events_are_polled() {
    let mut conn = server();
    assert_eq!(conn.pongs_received(), 0);
    conn.receive_data(&client_frame(0x8a, b"1"));
    conn.receive_data(&client_frame(0x8a, b"2"));
    // Counted when parsed, whether or not the caller looks at the events.
    while conn.poll_event_with_sender().is_some() {}
    assert_eq!(conn.pongs_received(), 2);
    // A ping is not a pong.
    feed(&mut conn, &client_frame(0x89, b"3"));
    assert_eq!(conn.pongs_received(), 2);
}

#[test]
fn a_partial_header_does_not_pin_a_large_read_buffer() {
    let mut conn = server();
    // A large frame made the input buffer large; then 3 bytes of the next header arrive.
    let next = client_frame(0x82, b"tail");
    let mut input = client_frame(0x82, &[9; 200_000]);
    input.extend_from_slice(&next[..3]);
    assert_eq!(feed(&mut conn, &input), [Owned::Binary(vec![9; 200_000])]);
    assert!(conn.buffer_capacity() >= 200_000);
    conn.release_idle_buffers();
    assert!(conn.buffer_capacity() < 1024, "{} bytes held", conn.buffer_capacity());
    // The held bytes are kept: the frame completes.
    assert_eq!(feed(&mut conn, &next[3..]), [Owned::Binary(b"tail".to_vec())]);
}
