//! A client and a server driven against each other in memory, without sockets.

mod common;

use common::*;
use ws_proto::{CloseCode, MessageKind, ProtocolConfig, State};

#[test]
fn messages_flow_both_ways() {
    let mut client = client(ProtocolConfig::default());
    let mut server = server();
    client.send_text("hello").unwrap();
    client.send_binary(&[1, 2, 3]).unwrap();
    assert_eq!(
        transfer(&mut client, &mut server),
        [Owned::Text("hello".into()), Owned::Binary(vec![1, 2, 3])]
    );
    server.send_text("welcome").unwrap();
    server.send_fragment(MessageKind::Binary, &[9; 70_000], false).unwrap();
    server.send_fragment(MessageKind::Binary, &[8; 10], true).unwrap();
    let mut expected = vec![9; 70_000];
    expected.extend([8; 10]);
    assert_eq!(
        transfer(&mut server, &mut client),
        [Owned::Text("welcome".into()), Owned::Binary(expected)]
    );
}

#[test]
fn pings_are_answered_automatically() {
    let mut client = client(ProtocolConfig::default());
    let mut server = server();
    client.send_ping(b"are you there").unwrap();
    assert_eq!(transfer(&mut client, &mut server), [Owned::Ping(b"are you there".to_vec())]);
    assert_eq!(transfer(&mut server, &mut client), [Owned::Pong(b"are you there".to_vec())]);
    server.send_ping(b"and you").unwrap();
    assert_eq!(transfer(&mut server, &mut client), [Owned::Ping(b"and you".to_vec())]);
    assert_eq!(transfer(&mut client, &mut server), [Owned::Pong(b"and you".to_vec())]);
}

#[test]
fn client_initiated_close_handshake() {
    let mut client = client(ProtocolConfig::default());
    let mut server = server();
    client.close(CloseCode::NORMAL, "done").unwrap();
    assert_eq!(client.state(), State::CloseSent);
    assert_eq!(
        transfer(&mut client, &mut server),
        [Owned::Close(CloseCode::NORMAL, "done".into())]
    );
    assert!(server.should_close_transport());
    assert_eq!(
        transfer(&mut server, &mut client),
        [Owned::Close(CloseCode::NORMAL, String::new())]
    );
    assert_eq!(client.state(), State::Closed);
    // The server closes TCP first; the client sees EOF with nothing more to report.
    assert!(!client.should_close_transport());
    client.receive_eof();
    assert_eq!(drain(&mut client), []);
    assert!(client.should_close_transport());
}

#[test]
fn server_initiated_close_handshake() {
    let mut client = client(ProtocolConfig::default());
    let mut server = server();
    server.close(CloseCode::GOING_AWAY, "restart").unwrap();
    assert_eq!(
        transfer(&mut server, &mut client),
        [Owned::Close(CloseCode::GOING_AWAY, "restart".into())]
    );
    assert_eq!(
        transfer(&mut client, &mut server),
        [Owned::Close(CloseCode::GOING_AWAY, String::new())]
    );
    assert_eq!((client.state(), server.state()), (State::Closed, State::Closed));
    assert!(server.should_close_transport());
}

#[test]
fn simultaneous_close() {
    let mut client = client(ProtocolConfig::default());
    let mut server = server();
    client.close(CloseCode::NORMAL, "").unwrap();
    server.close(CloseCode::GOING_AWAY, "").unwrap();
    let to_server = take_output(&mut client);
    let to_client = take_output(&mut server);
    assert_eq!(feed(&mut server, &to_server), [Owned::Close(CloseCode::NORMAL, String::new())]);
    assert_eq!(feed(&mut client, &to_client), [Owned::Close(CloseCode::GOING_AWAY, String::new())]);
    // Neither answers again: each already sent its close frame.
    assert!(server.pending_output().is_empty() && client.pending_output().is_empty());
    assert_eq!((client.state(), server.state()), (State::Closed, State::Closed));
}

#[test]
fn messages_are_counted_each_way_once_whole() {
    use ws_proto::Delivery;
    let mut client = client(ProtocolConfig::default());
    let mut config = ProtocolConfig::default();
    config.delivery = Delivery::Chunks;
    let mut server = server_with(config);
    client.send_text("one").unwrap();
    client.send_fragment(MessageKind::Binary, &[1; 100], false).unwrap();
    // Half a message is not one yet, on either side.
    assert_eq!(client.messages_sent(), 1);
    transfer(&mut client, &mut server);
    assert_eq!(server.messages_received(), 1);
    client.send_fragment(MessageKind::Binary, &[2; 100], true).unwrap();
    client.send_ping(b"not a message").unwrap();
    transfer(&mut client, &mut server);
    assert_eq!((client.messages_sent(), server.messages_received()), (2, 2));
    // A frame sent in pieces counts once, when its header says it is the last.
    let mut sender = server.sender();
    sender.begin_frame(MessageKind::Binary, true, 4).unwrap();
    sender.send_frame_data(b"ab").unwrap();
    sender.send_frame_data(b"cd").unwrap();
    server.send_text("two").unwrap();
    transfer(&mut server, &mut client);
    assert_eq!((server.messages_sent(), client.messages_received()), (2, 2));
}

#[test]
fn the_end_that_closed_first_is_known_to_both() {
    use ws_proto::Role;
    // The client closes; the server answers.
    let mut client = common::client(ProtocolConfig::default());
    let mut server = common::server();
    assert_eq!((client.closed_by(), server.closed_by()), (None, None));
    client.close(CloseCode::NORMAL, "bye").unwrap();
    transfer(&mut client, &mut server);
    transfer(&mut server, &mut client);
    assert_eq!(server.state(), State::Closed);
    assert_eq!((client.closed_by(), server.closed_by()), (Some(Role::Client), Some(Role::Client)));
    // The server closes first.
    let mut client = common::client(ProtocolConfig::default());
    let mut server = common::server();
    server.close(CloseCode::GOING_AWAY, "").unwrap();
    transfer(&mut server, &mut client);
    assert_eq!(client.closed_by(), Some(Role::Server));
    // A protocol failure is a close by the end that failed it.
    let mut server = common::server();
    feed(&mut server, &frame(0x81, b"unmasked", None));
    assert_eq!(server.closed_by(), Some(Role::Server));
    // The transport ending without a close frame: nobody closed.
    let mut server = common::server();
    server.receive_eof();
    drain(&mut server);
    assert_eq!(server.closed_by(), None);
}
