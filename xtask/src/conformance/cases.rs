//! The case catalogue, section by section after the Autobahn|TestSuite's public one (same
//! numbering, same intent): 1 framing, 2 pings and pongs, 3 reserved bits, 4 opcodes,
//! 5 fragmentation, 6 UTF-8, 7 close handling, 9 limits and performance, 10 auto-fragmentation.

use std::time::Duration;

use super::wire::{BINARY, CLOSE, CONT, Frame, PING, PONG, TEXT, close_body};

/// What the suite does, in order.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    /// Sends a frame, whole or in writes of `chop` bytes.
    Send { frame: Frame, chop: Option<usize> },
    /// Sends a frame in writes that end at these payload offsets, pausing between them.
    SendParts { frame: Frame, payload_cuts: Vec<usize>, pause: Duration },
    /// Waits.
    Delay(Duration),
    /// Waits until the peer has sent back this many messages (pongs included).
    Await(usize),
    /// Sends a message compressed with the negotiated permessage-deflate parameters (RSV1
    /// set), its compressed payload cut into frames of `fragment` bytes if given.
    SendCompressed { opcode: u8, payload: Vec<u8>, fragment: Option<usize> },
}

/// A message the peer is expected to send back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expected {
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Pong(Vec<u8>),
}

/// How the connection must end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Everything is echoed; the suite then closes with 1000 and the peer answers.
    Echo,
    /// The suite's steps include a close frame; the peer answers with one of these codes
    /// (`None`: an empty close frame).
    Answer(Vec<Option<u16>>),
    /// The peer fails the connection with one of these codes.
    Fail(Vec<u16>),
    /// As `Fail`, and before the suite's last write (fail fast); failing later is
    /// NON-STRICT.
    FailFast(Vec<u16>),
    /// Whatever happens is recorded, not judged.
    Informational,
}

/// One case.
#[derive(Debug, Clone)]
pub(crate) struct Case {
    pub(crate) id: String,
    pub(crate) description: String,
    pub(crate) steps: Vec<Step>,
    pub(crate) expect: Vec<Expected>,
    pub(crate) outcome: Outcome,
    /// permessage-deflate parameters (sections 12 and 13): offered by the suite in server
    /// mode, answered to the client's offer in client mode. Must be accepted as given.
    pub(crate) deflate: Option<&'static str>,
}

fn send(frame: Frame) -> Step {
    Step::Send { frame, chop: None }
}

fn chopped(frame: Frame, chop: usize) -> Step {
    Step::Send { frame, chop: Some(chop) }
}

fn delay(ms: u64) -> Step {
    Step::Delay(Duration::from_millis(ms))
}

fn text(payload: impl Into<Vec<u8>>) -> Frame {
    Frame::new(TEXT, payload)
}

fn binary(payload: impl Into<Vec<u8>>) -> Frame {
    Frame::new(BINARY, payload)
}

fn case(
    id: impl Into<String>,
    description: impl Into<String>,
    steps: Vec<Step>,
    expect: Vec<Expected>,
    outcome: Outcome,
) -> Case {
    Case { id: id.into(), description: description.into(), steps, expect, outcome, deflate: None }
}

const PROTOCOL: u16 = 1002;
const INVALID: u16 = 1007;

fn fail() -> Outcome {
    Outcome::Fail(vec![PROTOCOL])
}

/// Every case, in order.
pub(crate) fn catalogue() -> Vec<Case> {
    let mut cases = Vec::new();
    framing(&mut cases);
    pings(&mut cases);
    reserved_bits(&mut cases);
    opcodes(&mut cases);
    fragmentation(&mut cases);
    utf8(&mut cases);
    close(&mut cases);
    performance(&mut cases);
    auto_fragmentation(&mut cases);
    compression(&mut cases);
    cases
}

/// Section 1: text and binary messages at the length boundaries, whole and chopped.
fn framing(cases: &mut Vec<Case>) {
    for (sub, opcode, fill, name) in [(1, TEXT, b'*', "text"), (2, BINARY, 0xfe, "binary")] {
        let sizes = [0usize, 125, 126, 127, 128, 65535, 65536];
        for (i, &len) in sizes.iter().enumerate() {
            let payload = vec![fill; len];
            let expected = if opcode == TEXT {
                Expected::Text(payload.clone())
            } else {
                Expected::Binary(payload.clone())
            };
            cases.push(case(
                format!("1.{sub}.{}", i + 1),
                format!("Send {name} message with payload of length {len}."),
                vec![send(Frame::new(opcode, payload))],
                vec![expected],
                Outcome::Echo,
            ));
        }
        let payload = vec![fill; 65536];
        let expected = if opcode == TEXT {
            Expected::Text(payload.clone())
        } else {
            Expected::Binary(payload.clone())
        };
        cases.push(case(
            format!("1.{sub}.8"),
            format!(
                "Send {name} message with payload of length 65536, sent in chops of 997 octets."
            ),
            vec![chopped(Frame::new(opcode, payload), 997)],
            vec![expected],
            Outcome::Echo,
        ));
    }
}

/// Section 2: pings and pongs.
fn pings(cases: &mut Vec<Case>) {
    let ping = |p: &[u8]| Frame::new(PING, p.to_vec());
    let pong = |p: &[u8]| Frame::new(PONG, p.to_vec());
    let bin = [0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff];
    cases.push(case(
        "2.1",
        "Send ping without payload.",
        vec![send(ping(b""))],
        vec![Expected::Pong(vec![])],
        Outcome::Echo,
    ));
    cases.push(case(
        "2.2",
        "Send ping with small text payload.",
        vec![send(ping(b"Hello, world!"))],
        vec![Expected::Pong(b"Hello, world!".to_vec())],
        Outcome::Echo,
    ));
    cases.push(case(
        "2.3",
        "Send ping with small binary (non UTF-8) payload.",
        vec![send(ping(&bin))],
        vec![Expected::Pong(bin.to_vec())],
        Outcome::Echo,
    ));
    cases.push(case(
        "2.4",
        "Send ping with binary payload of 125 octets.",
        vec![send(ping(&[0xfe; 125]))],
        vec![Expected::Pong(vec![0xfe; 125])],
        Outcome::Echo,
    ));
    cases.push(case(
        "2.5",
        "Send ping with binary payload of 126 octets (over the control frame limit).",
        vec![send(ping(&[0xfe; 126]))],
        vec![],
        fail(),
    ));
    cases.push(case(
        "2.6",
        "Send ping with binary payload of 125 octets, sent in octet-wise chops.",
        vec![chopped(ping(&[0xfe; 125]), 1)],
        vec![Expected::Pong(vec![0xfe; 125])],
        Outcome::Echo,
    ));
    cases.push(case(
        "2.7",
        "Send unsolicited pong without payload. Verify nothing is received.",
        vec![send(pong(b""))],
        vec![],
        Outcome::Echo,
    ));
    cases.push(case(
        "2.8",
        "Send unsolicited pong with payload. Verify nothing is received.",
        vec![send(pong(b"unsolicited pong payload"))],
        vec![],
        Outcome::Echo,
    ));
    cases.push(case(
        "2.9",
        "Send unsolicited pong with payload, then ping with payload. Verify the pong for the ping is received.",
        vec![send(pong(b"unsolicited pong payload")), send(ping(b"ping payload"))],
        vec![Expected::Pong(b"ping payload".to_vec())],
        Outcome::Echo,
    ));
    for (id, chop) in [("2.10", None), ("2.11", Some(1))] {
        let steps = (0..10)
            .map(|i| Step::Send { frame: ping(format!("payload-{i}").as_bytes()), chop })
            .collect();
        let expect = (0..10).map(|i| Expected::Pong(format!("payload-{i}").into_bytes())).collect();
        let how = if chop.is_some() { ", sent in octet-wise chops" } else { "" };
        cases.push(case(
            id,
            format!("Send 10 pings with payload{how}. Verify every pong."),
            steps,
            expect,
            Outcome::Echo,
        ));
    }
}

/// Section 3: reserved bits without a negotiated extension.
fn reserved_bits(cases: &mut Vec<Case>) {
    let hello = b"Hello, world!".to_vec();
    cases.push(case(
        "3.1",
        "Send small text message with RSV = 1.",
        vec![send(text(hello.clone()).rsv(1))],
        vec![],
        fail(),
    ));
    for (id, rsv, how) in
        [("3.2", 2, ""), ("3.3", 3, " frame-wise, with pauses"), ("3.4", 4, " in octet-wise chops")]
    {
        let frames =
            [text(hello.clone()), text(hello.clone()).rsv(rsv), Frame::new(PING, hello.clone())];
        let steps = match how {
            "" => frames.into_iter().map(send).collect(),
            h if h.contains("pauses") => {
                frames.into_iter().flat_map(|f| [send(f), delay(50)]).collect()
            }
            _ => frames.into_iter().map(|f| chopped(f, 1)).collect(),
        };
        cases.push(case(
            id,
            format!("Send small text message, then another with RSV = {rsv}, then ping{how}."),
            steps,
            vec![Expected::Text(hello.clone())],
            fail(),
        ));
    }
    cases.push(case(
        "3.5",
        "Send small binary message with RSV = 5.",
        vec![send(binary(vec![0, 1, 2, 3]).rsv(5))],
        vec![],
        fail(),
    ));
    cases.push(case(
        "3.6",
        "Send ping with RSV = 6.",
        vec![send(Frame::new(PING, hello.clone()).rsv(6))],
        vec![],
        fail(),
    ));
    cases.push(case(
        "3.7",
        "Send close with RSV = 7.",
        vec![send(Frame::new(CLOSE, close_body(1000, b"")).rsv(7))],
        vec![],
        fail(),
    ));
}

/// Section 4: reserved opcodes, non-control (3-7) and control (0xB-0xF).
fn opcodes(cases: &mut Vec<Case>) {
    let hello = b"Hello, world!".to_vec();
    for (sub, ops, kind) in
        [(1, [3u8, 4, 5, 6, 7], "non-control"), (2, [11, 12, 13, 14, 15], "control")]
    {
        for (i, op) in ops.into_iter().enumerate() {
            let id = format!("4.{sub}.{}", i + 1);
            let (steps, expect, what) = match i {
                0 => (
                    vec![send(Frame::new(op, vec![]))],
                    vec![],
                    format!("Send frame with reserved {kind} opcode = {op}."),
                ),
                1 => (
                    vec![send(Frame::new(op, b"reserved opcode payload".to_vec()))],
                    vec![],
                    format!("Send frame with reserved {kind} opcode = {op} and non-empty payload."),
                ),
                _ => (
                    vec![
                        send(text(hello.clone())),
                        send(Frame::new(
                            op,
                            if i == 2 { vec![] } else { b"reserved opcode payload".to_vec() },
                        )),
                        send(Frame::new(PING, hello.clone())),
                    ],
                    vec![Expected::Text(hello.clone())],
                    format!(
                        "Send small text message, then frame with reserved {kind} opcode = {op}, then ping."
                    ),
                ),
            };
            cases.push(case(id, what, steps, expect, fail()));
        }
    }
}

/// Section 5: fragmentation.
fn fragmentation(cases: &mut Vec<Case>) {
    let frag = |op: u8, p: &str, fin: bool| Frame::new(op, p.as_bytes().to_vec()).fin(fin);
    let both = Expected::Text(b"fragment1fragment2".to_vec());
    cases.push(case(
        "5.1",
        "Send ping in 2 fragments.",
        vec![send(frag(PING, "fragment1", false)), send(frag(CONT, "fragment2", true))],
        vec![],
        fail(),
    ));
    cases.push(case(
        "5.2",
        "Send pong in 2 fragments.",
        vec![send(frag(PONG, "fragment1", false)), send(frag(CONT, "fragment2", true))],
        vec![],
        fail(),
    ));
    let two = [frag(TEXT, "fragment1", false), frag(CONT, "fragment2", true)];
    cases.push(case(
        "5.3",
        "Send text message in 2 fragments.",
        two.iter().cloned().map(send).collect(),
        vec![both.clone()],
        Outcome::Echo,
    ));
    cases.push(case(
        "5.4",
        "Send text message in 2 fragments, frame-wise with pauses.",
        two.iter().cloned().flat_map(|f| [send(f), delay(50)]).collect(),
        vec![both.clone()],
        Outcome::Echo,
    ));
    cases.push(case(
        "5.5",
        "Send text message in 2 fragments, in octet-wise chops.",
        two.iter().cloned().map(|f| chopped(f, 1)).collect(),
        vec![both.clone()],
        Outcome::Echo,
    ));
    let with_ping = [
        frag(TEXT, "fragment1", false),
        Frame::new(PING, b"ping payload".to_vec()),
        frag(CONT, "fragment2", true),
    ];
    let ping_then_text = vec![Expected::Pong(b"ping payload".to_vec()), both.clone()];
    cases.push(case(
        "5.6",
        "Send text message in 2 fragments with a ping in between.",
        with_ping.iter().cloned().map(send).collect(),
        ping_then_text.clone(),
        Outcome::Echo,
    ));
    cases.push(case(
        "5.7",
        "Send text message in 2 fragments with a ping in between, frame-wise with pauses.",
        with_ping.iter().cloned().flat_map(|f| [send(f), delay(50)]).collect(),
        ping_then_text.clone(),
        Outcome::Echo,
    ));
    cases.push(case(
        "5.8",
        "Send text message in 2 fragments with a ping in between, in octet-wise chops.",
        with_ping.iter().cloned().map(|f| chopped(f, 1)).collect(),
        ping_then_text,
        Outcome::Echo,
    ));
    // Continuations with no message open.
    let hello = text(b"Hello, world!".to_vec());
    for (ids, fin) in [(["5.9", "5.10", "5.11"], true), (["5.12", "5.13", "5.14"], false)] {
        let frames = [frag(CONT, "non-continuation payload", fin), hello.clone()];
        let variants: [(&str, Vec<Step>); 3] = [
            ("", frames.iter().cloned().map(send).collect()),
            (
                ", frame-wise with pauses",
                frames.iter().cloned().flat_map(|f| [send(f), delay(50)]).collect(),
            ),
            (", in octet-wise chops", frames.iter().cloned().map(|f| chopped(f, 1)).collect()),
        ];
        for (id, (how, steps)) in ids.into_iter().zip(variants) {
            cases.push(case(
                id,
                format!(
                    "Send unexpected continuation frame with FIN = {fin}, then text message{how}."
                ),
                steps,
                vec![],
                fail(),
            ));
        }
    }
    cases.push(case(
        "5.15",
        "Send text fragments 1 and 2 (final), then continuation 3 with no message open, then text fragment 4.",
        vec![
            send(frag(TEXT, "fragment1", false)),
            send(frag(CONT, "fragment2", true)),
            send(frag(CONT, "fragment3", false)),
            send(frag(TEXT, "fragment4", true)),
        ],
        vec![both.clone()],
        fail(),
    ));
    let repeated = |first_fin: bool| -> Vec<Step> {
        (0..2)
            .flat_map(|_| {
                [
                    frag(CONT, "fragment1", first_fin),
                    frag(TEXT, "fragment2", false),
                    frag(CONT, "fragment3", true),
                ]
            })
            .map(send)
            .collect()
    };
    cases.push(case(
        "5.16",
        "Send twice: continuation (FIN = false), text (FIN = false), continuation (FIN = true).",
        repeated(false),
        vec![],
        fail(),
    ));
    cases.push(case(
        "5.17",
        "Send twice: continuation (FIN = true), text (FIN = false), continuation (FIN = true).",
        repeated(true),
        vec![],
        fail(),
    ));
    cases.push(case(
        "5.18",
        "Send text fragment (FIN = false), then a new text frame instead of a continuation.",
        vec![send(frag(TEXT, "fragment1", false)), send(frag(TEXT, "fragment2", true))],
        vec![],
        fail(),
    ));
    for (id, pauses) in [("5.19", false), ("5.20", true)] {
        let frames = [
            frag(TEXT, "fragment1", false),
            frag(CONT, "fragment2", false),
            Frame::new(PING, b"pongme 1!".to_vec()),
            frag(CONT, "fragment3", false),
            frag(CONT, "fragment4", false),
            Frame::new(PING, b"pongme 2!".to_vec()),
            frag(CONT, "fragment5", true),
        ];
        let steps = frames
            .into_iter()
            .enumerate()
            .flat_map(|(i, f)| {
                let step = if pauses { chopped(f, 1) } else { send(f) };
                // Pause after the second and fourth fragments, as Autobahn does (shorter).
                if i == 1 || i == 4 { vec![step, delay(100)] } else { vec![step] }
            })
            .collect();
        let how = if pauses { ", in octet-wise chops" } else { "" };
        cases.push(case(
            id,
            format!("Send text message in 5 fragments with pings after the 2nd and 4th, pausing between{how}."),
            steps,
            vec![
                Expected::Pong(b"pongme 1!".to_vec()),
                Expected::Pong(b"pongme 2!".to_vec()),
                Expected::Text(b"fragment1fragment2fragment3fragment4fragment5".to_vec()),
            ],
            Outcome::Echo,
        ));
    }
}

/// One UTF-8 payload, valid or not, sent as one text frame.
fn utf8_case(cases: &mut Vec<Case>, id: String, what: &str, payload: Vec<u8>) {
    let valid = std::str::from_utf8(&payload).is_ok();
    let (expect, outcome) = if valid {
        (vec![Expected::Text(payload.clone())], Outcome::Echo)
    } else {
        (vec![], Outcome::Fail(vec![INVALID]))
    };
    let verdict = if valid { "valid" } else { "invalid" };
    cases.push(case(
        id,
        format!(
            "Send a text message with payload which is {verdict} UTF-8 ({what}): {}.",
            hex(&payload)
        ),
        vec![send(text(payload))],
        expect,
        outcome,
    ));
}

fn hex(bytes: &[u8]) -> String {
    let shown: Vec<String> = bytes.iter().take(24).map(|b| format!("{b:02x}")).collect();
    let more = if bytes.len() > 24 { " …" } else { "" };
    format!("0x{}{more}", shown.join(""))
}

/// Section 6: UTF-8 handling (the sequences of Markus Kuhn's UTF-8 decoder test).
fn utf8(cases: &mut Vec<Case>) {
    // κόσμε as in Markus Kuhn's test file, with U+1F79 (3 bytes) for the accented omicron.
    let kosme = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5".to_vec();
    let hello_utf8 = "Hello-µ@ßöäüàá-UTF-8!!".as_bytes().to_vec();
    cases.push(case(
        "6.1.1",
        "Send text message of length 0.",
        vec![send(text(vec![]))],
        vec![Expected::Text(vec![])],
        Outcome::Echo,
    ));
    cases.push(case(
        "6.1.2",
        "Send fragmented text message, 3 fragments each of length 0.",
        vec![
            send(text(vec![]).fin(false)),
            send(Frame::new(CONT, vec![]).fin(false)),
            send(Frame::new(CONT, vec![])),
        ],
        vec![Expected::Text(vec![])],
        Outcome::Echo,
    ));
    cases.push(case(
        "6.1.3",
        "Send fragmented text message, 3 fragments, first and last of length 0, middle non-empty.",
        vec![
            send(text(vec![]).fin(false)),
            send(Frame::new(CONT, b"middle frame payload".to_vec()).fin(false)),
            send(Frame::new(CONT, vec![])),
        ],
        vec![Expected::Text(b"middle frame payload".to_vec())],
        Outcome::Echo,
    ));
    // 6.2: valid UTF-8 in various fragmentations.
    let fragments = |payload: &[u8], cuts: &[usize]| -> Vec<Step> {
        let mut steps = Vec::new();
        let mut start = 0;
        let mut ends: Vec<usize> = cuts.to_vec();
        ends.push(payload.len());
        for (i, end) in ends.iter().enumerate() {
            let op = if i == 0 { TEXT } else { CONT };
            steps
                .push(send(Frame::new(op, payload[start..*end].to_vec()).fin(i + 1 == ends.len())));
            start = *end;
        }
        steps
    };
    cases.push(case(
        "6.2.1",
        "Send a valid UTF-8 text message in one fragment.",
        vec![send(text(hello_utf8.clone()))],
        vec![Expected::Text(hello_utf8.clone())],
        Outcome::Echo,
    ));
    cases.push(case(
        "6.2.2",
        "Send a valid UTF-8 text message in two fragments, fragmented on a code point boundary.",
        fragments(&hello_utf8, &[12]),
        vec![Expected::Text(hello_utf8.clone())],
        Outcome::Echo,
    ));
    let every_octet: Vec<usize> = (1..hello_utf8.len()).collect();
    cases.push(case(
        "6.2.3",
        "Send a valid UTF-8 text message in fragments of 1 octet, resulting in frames ending on positions which are not code point ends.",
        fragments(&hello_utf8, &every_octet),
        vec![Expected::Text(hello_utf8.clone())],
        Outcome::Echo,
    ));
    let kosme_octets: Vec<usize> = (1..kosme.len()).collect();
    cases.push(case(
        "6.2.4",
        "Send a valid UTF-8 text message (κόσμε) in fragments of 1 octet.",
        fragments(&kosme, &kosme_octets),
        vec![Expected::Text(kosme.clone())],
        Outcome::Echo,
    ));
    // 6.3: invalid UTF-8.
    let mut bad = kosme.clone();
    bad.extend_from_slice(b"\xed\xa0\x80edited");
    cases.push(case(
        "6.3.1",
        "Send invalid UTF-8 text message unfragmented.",
        vec![send(text(bad.clone()))],
        vec![],
        Outcome::Fail(vec![INVALID]),
    ));
    let bad_octets: Vec<usize> = (1..bad.len()).collect();
    cases.push(case(
        "6.3.2",
        "Send invalid UTF-8 text message in fragments of 1 octet.",
        fragments(&bad, &bad_octets),
        vec![],
        Outcome::Fail(vec![INVALID]),
    ));
    // 6.4: fail fast, before the rest of the message is sent.
    let tail = b"edited".to_vec();
    let pause = 300;
    let mut frag1 = kosme.clone();
    cases.push(case(
        "6.4.1",
        "Send 3 fragments: valid, invalid (\\xf4\\x90\\x80\\x80), valid, with pauses. Fail fast after the second.",
        vec![
            send(text(frag1.clone()).fin(false)),
            delay(pause),
            send(Frame::new(CONT, b"\xf4\x90\x80\x80".to_vec()).fin(false)),
            delay(pause),
            send(Frame::new(CONT, tail.clone())),
        ],
        vec![],
        Outcome::FailFast(vec![INVALID]),
    ));
    frag1.push(0xf4);
    cases.push(case(
        "6.4.2",
        "Send 3 fragments: valid ending in \\xf4, then \\x90 (invalid), then valid, with pauses. Fail fast after the second.",
        vec![
            send(text(frag1.clone()).fin(false)),
            delay(pause),
            send(Frame::new(CONT, b"\x90".to_vec()).fin(false)),
            delay(pause),
            send(Frame::new(CONT, tail.clone())),
        ],
        vec![],
        Outcome::FailFast(vec![INVALID]),
    ));
    // 6.4.3/6.4.4: one frame, written in three parts.
    let mut whole = kosme.clone();
    whole.extend_from_slice(b"\xf4\x90\x80\x80");
    whole.extend_from_slice(&tail);
    for (id, cut, what) in
        [("6.4.3", kosme.len(), "\\xf4\\x90\\x80\\x80"), ("6.4.4", kosme.len() + 1, "\\x90")]
    {
        cases.push(case(
            id,
            format!("Send one invalid text frame in 3 writes with pauses, the second starting with {what}. Fail fast after the second."),
            vec![Step::SendParts {
                frame: text(whole.clone()),
                payload_cuts: vec![cut, kosme.len() + 4],
                pause: Duration::from_millis(pause),
            }],
            vec![],
            Outcome::FailFast(vec![INVALID]),
        ));
    }
    // 6.5: valid examples.
    let examples: [&[u8]; 5] = [
        &kosme,
        &hello_utf8,
        "𝄞 musical symbol".as_bytes(),
        "日本語のテキスト".as_bytes(),
        "emoji 😀 and ﷽".as_bytes(),
    ];
    for (i, payload) in examples.into_iter().enumerate() {
        utf8_case(cases, format!("6.5.{}", i + 1), "valid examples", payload.to_vec());
    }
    // 6.6: every prefix of κόσμε.
    for len in 1..=kosme.len() {
        utf8_case(cases, format!("6.6.{len}"), "prefix of κόσμε", kosme[..len].to_vec());
    }
    let groups: [(&str, &str, &[&[u8]]); 17] = [
        ("6.7", "first possible sequence of a certain length", &[b"\x00", b"\xc2\x80", b"\xe0\xa0\x80", b"\xf0\x90\x80\x80"]),
        ("6.8", "first possible 5- and 6-byte sequences", &[b"\xf8\x88\x80\x80\x80", b"\xfc\x84\x80\x80\x80\x80"]),
        ("6.9", "last possible sequence of a certain length", &[b"\x7f", b"\xdf\xbf", b"\xef\xbf\xbf", b"\xf4\x8f\xbf\xbf"]),
        ("6.10", "last possible 4-, 5- and 6-byte sequences", &[b"\xf7\xbf\xbf\xbf", b"\xfb\xbf\xbf\xbf\xbf", b"\xfd\xbf\xbf\xbf\xbf\xbf"]),
        ("6.11", "other boundary conditions", &[b"\xed\x9f\xbf", b"\xee\x80\x80", b"\xef\xbf\xbd", b"\xf4\x8f\xbf\xbf", b"\xf4\x90\x80\x80"]),
        (
            "6.12",
            "unexpected continuation bytes",
            &[b"\x80", b"\xbf", b"\x80\xbf", b"\x80\xbf\x80", b"\x80\xbf\x80\xbf", b"\x80\xbf\x80\xbf\x80", b"\x80\xbf\x80\xbf\x80\xbf", CONTINUATIONS],
        ),
        ("6.13", "lonely start characters", &[LONELY_2, LONELY_3, LONELY_4, LONELY_5, LONELY_6]),
        (
            "6.14",
            "sequences with the last continuation byte missing",
            &[b"\xc0", b"\xe0\x80", b"\xf0\x80\x80", b"\xf8\x80\x80\x80", b"\xfc\x80\x80\x80\x80", b"\xdf", b"\xef\xbf", b"\xf7\xbf\xbf", b"\xfb\xbf\xbf\xbf", b"\xfd\xbf\xbf\xbf\xbf"],
        ),
        (
            "6.15",
            "concatenation of incomplete sequences",
            &[b"\xc0\xe0\x80\xf0\x80\x80\xf8\x80\x80\x80\xfc\x80\x80\x80\x80\xdf\xef\xbf\xf7\xbf\xbf\xfb\xbf\xbf\xbf\xfd\xbf\xbf\xbf\xbf"],
        ),
        ("6.16", "impossible bytes", &[b"\xfe", b"\xff", b"\xfe\xfe\xff\xff"]),
        ("6.17", "overlong ASCII character", &[b"\xc0\xaf", b"\xe0\x80\xaf", b"\xf0\x80\x80\xaf", b"\xf8\x80\x80\x80\xaf", b"\xfc\x80\x80\x80\x80\xaf"]),
        ("6.18", "maximum overlong sequences", &[b"\xc1\xbf", b"\xe0\x9f\xbf", b"\xf0\x8f\xbf\xbf", b"\xf8\x87\xbf\xbf\xbf", b"\xfc\x83\xbf\xbf\xbf\xbf"]),
        ("6.19", "overlong NUL", &[b"\xc0\x80", b"\xe0\x80\x80", b"\xf0\x80\x80\x80", b"\xf8\x80\x80\x80\x80", b"\xfc\x80\x80\x80\x80\x80"]),
        (
            "6.20",
            "single UTF-16 surrogates",
            &[b"\xed\xa0\x80", b"\xed\xad\xbf", b"\xed\xae\x80", b"\xed\xaf\xbf", b"\xed\xb0\x80", b"\xed\xbe\x80", b"\xed\xbf\xbf"],
        ),
        (
            "6.21",
            "paired UTF-16 surrogates",
            &[
                b"\xed\xa0\x80\xed\xb0\x80",
                b"\xed\xa0\x80\xed\xbf\xbf",
                b"\xed\xad\xbf\xed\xb0\x80",
                b"\xed\xad\xbf\xed\xbf\xbf",
                b"\xed\xae\x80\xed\xb0\x80",
                b"\xed\xae\x80\xed\xbf\xbf",
                b"\xed\xaf\xbf\xed\xb0\x80",
                b"\xed\xaf\xbf\xed\xbf\xbf",
            ],
        ),
        ("6.22", "noncharacters", &[]),
        ("6.23", "specials", &[]),
    ];
    for (section, what, sequences) in groups {
        let owned: Vec<Vec<u8>> = match section {
            // U+FFFE, U+FFFF and the last two code points of planes 1 to 16: valid.
            "6.22" => [0xfffe_u32, 0xffff]
                .into_iter()
                .chain((1..=16u32).flat_map(|plane| [plane << 16 | 0xfffe, plane << 16 | 0xffff]))
                .map(|cp| char::from_u32(cp).expect("a scalar value").to_string().into_bytes())
                .collect(),
            // U+FFF9 to U+FFFF.
            "6.23" => (0xfff9u32..=0xffff)
                .map(|cp| char::from_u32(cp).expect("a scalar value").to_string().into_bytes())
                .collect(),
            _ => sequences.iter().map(|s| s.to_vec()).collect(),
        };
        for (i, payload) in owned.into_iter().enumerate() {
            utf8_case(cases, format!("{section}.{}", i + 1), what, payload);
        }
    }
}

const CONTINUATIONS: &[u8] = b"\x80\x81\x82\x83\x84\x85\x86\x87\x88\x89\x8a\x8b\x8c\x8d\x8e\x8f\x90\x91\x92\x93\x94\x95\x96\x97\x98\x99\x9a\x9b\x9c\x9d\x9e\x9f\xa0\xa1\xa2\xa3\xa4\xa5\xa6\xa7\xa8\xa9\xaa\xab\xac\xad\xae\xaf\xb0\xb1\xb2\xb3\xb4\xb5\xb6\xb7\xb8\xb9\xba\xbb\xbc\xbd\xbe\xbf";
const LONELY_2: &[u8] = b"\xc0 \xc1 \xc2 \xc3 \xc4 \xc5 \xc6 \xc7 \xc8 \xc9 \xca \xcb \xcc \xcd \xce \xcf \xd0 \xd1 \xd2 \xd3 \xd4 \xd5 \xd6 \xd7 \xd8 \xd9 \xda \xdb \xdc \xdd \xde \xdf ";
const LONELY_3: &[u8] =
    b"\xe0 \xe1 \xe2 \xe3 \xe4 \xe5 \xe6 \xe7 \xe8 \xe9 \xea \xeb \xec \xed \xee \xef ";
const LONELY_4: &[u8] = b"\xf0 \xf1 \xf2 \xf3 \xf4 \xf5 \xf6 \xf7 ";
const LONELY_5: &[u8] = b"\xf8 \xf9 \xfa \xfb ";
const LONELY_6: &[u8] = b"\xfc \xfd ";

/// Section 7: close handling.
fn close(cases: &mut Vec<Case>) {
    let close = |code: u16, reason: &[u8]| Frame::new(CLOSE, close_body(code, reason));
    let hello = b"Hello World".to_vec();
    let normal = || Outcome::Answer(vec![Some(1000)]);
    cases.push(case(
        "7.1.1",
        "Send a message followed by a close frame.",
        vec![send(text(hello.clone())), send(close(1000, b""))],
        vec![Expected::Text(hello.clone())],
        normal(),
    ));
    cases.push(case(
        "7.1.2",
        "Send two close frames.",
        vec![send(close(1000, b"")), send(close(1000, b""))],
        vec![],
        normal(),
    ));
    cases.push(case(
        "7.1.3",
        "Send a ping after a close frame: no pong comes back.",
        vec![send(close(1000, b"")), send(Frame::new(PING, b"after close".to_vec()))],
        vec![],
        normal(),
    ));
    cases.push(case(
        "7.1.4",
        "Send a text message after a close frame: no echo comes back.",
        vec![send(close(1000, b"")), send(text(hello.clone()))],
        vec![],
        normal(),
    ));
    cases.push(case(
        "7.1.5",
        "Send a message fragment, then a close frame, then the final fragment.",
        vec![
            send(text(b"fragment1".to_vec()).fin(false)),
            send(close(1000, b"")),
            send(Frame::new(CONT, b"fragment2".to_vec())),
        ],
        vec![],
        normal(),
    ));
    cases.push(case(
        "7.1.6",
        "Send a 256 KiB text message, then a close frame, then a ping, at once.",
        vec![
            send(text(vec![b'B'; 256 << 10])),
            send(close(1000, b"")),
            send(Frame::new(PING, b"if you see this, close was not handled".to_vec())),
        ],
        vec![],
        Outcome::Informational,
    ));
    cases.push(case(
        "7.3.1",
        "Send close with payload length 0 (no close code, no reason).",
        vec![send(Frame::new(CLOSE, vec![]))],
        vec![],
        Outcome::Answer(vec![None, Some(1000)]),
    ));
    cases.push(case(
        "7.3.2",
        "Send close with payload length 1.",
        vec![send(Frame::new(CLOSE, vec![0x03]))],
        vec![],
        fail(),
    ));
    cases.push(case(
        "7.3.3",
        "Send close with close code and no reason.",
        vec![send(close(1000, b""))],
        vec![],
        normal(),
    ));
    cases.push(case(
        "7.3.4",
        "Send close with close code and a short reason.",
        vec![send(close(1000, b"Hello World!"))],
        vec![],
        normal(),
    ));
    cases.push(case(
        "7.3.5",
        "Send close with close code and a reason of 123 octets.",
        vec![send(close(1000, &[b'*'; 123]))],
        vec![],
        normal(),
    ));
    cases.push(case(
        "7.3.6",
        "Send close with close code and a reason of 124 octets (payload over 125).",
        vec![send(close(1000, &[b'*'; 124]))],
        vec![],
        fail(),
    ));
    let mut bad_reason = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5".to_vec();
    bad_reason.extend_from_slice(b"\xed\xa0\x80edited");
    cases.push(case(
        "7.5.1",
        "Send close with a reason that is not valid UTF-8.",
        vec![send(close(1000, &bad_reason))],
        vec![],
        Outcome::Fail(vec![INVALID]),
    ));
    for (i, code) in
        [1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999]
            .into_iter()
            .enumerate()
    {
        cases.push(case(
            format!("7.7.{}", i + 1),
            format!("Send close with valid close code {code}."),
            vec![send(close(code, b""))],
            vec![],
            Outcome::Answer(vec![Some(code), Some(1000)]),
        ));
    }
    for (i, code) in [0u16, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999].into_iter().enumerate() {
        cases.push(case(
            format!("7.9.{}", i + 1),
            format!("Send close with invalid close code {code}."),
            vec![send(close(code, b""))],
            vec![],
            fail(),
        ));
    }
    for (i, code) in [5000u16, 65535].into_iter().enumerate() {
        cases.push(case(
            format!("7.13.{}", i + 1),
            format!("Send close with close code {code}, outside every registered range."),
            vec![send(close(code, b""))],
            vec![],
            Outcome::Informational,
        ));
    }
}

/// Section 9: limits and performance. Timings are reported.
fn performance(cases: &mut Vec<Case>) {
    let sizes = [64 << 10, 256 << 10, 1 << 20, 4 << 20, 8 << 20, 16 << 20];
    for (sub, opcode, name) in [(1, TEXT, "text"), (2, BINARY, "binary")] {
        for (i, &size) in sizes.iter().enumerate() {
            let payload = if opcode == TEXT { vec![b'*'; size] } else { vec![0xfe; size] };
            let expected = if opcode == TEXT {
                Expected::Text(payload.clone())
            } else {
                Expected::Binary(payload.clone())
            };
            cases.push(case(
                format!("9.{sub}.{}", i + 1),
                format!("Send {name} message of {} bytes.", size),
                vec![send(Frame::new(opcode, payload))],
                vec![expected],
                Outcome::Echo,
            ));
        }
    }
    let frag_sizes = [64, 256, 1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20];
    for (sub, opcode, name) in [(3, TEXT, "text"), (4, BINARY, "binary")] {
        for (i, &frag) in frag_sizes.iter().enumerate() {
            let size = 4 << 20;
            let payload = if opcode == TEXT { vec![b'*'; size] } else { vec![0xfe; size] };
            let parts: Vec<&[u8]> = payload.chunks(frag).collect();
            let steps = parts
                .iter()
                .enumerate()
                .map(|(j, part)| {
                    send(
                        Frame::new(if j == 0 { opcode } else { CONT }, part.to_vec())
                            .fin(j + 1 == parts.len()),
                    )
                })
                .collect();
            let expected = if opcode == TEXT {
                Expected::Text(payload.clone())
            } else {
                Expected::Binary(payload.clone())
            };
            cases.push(case(
                format!("9.{sub}.{}", i + 1),
                format!("Send fragmented {name} message of 4 MiB in fragments of {frag} bytes."),
                steps,
                vec![expected],
                Outcome::Echo,
            ));
        }
    }
    let chops = [64, 128, 256, 512, 1024, 2048];
    for (sub, opcode, name) in [(5, TEXT, "text"), (6, BINARY, "binary")] {
        for (i, &chop) in chops.iter().enumerate() {
            let payload = if opcode == TEXT { vec![b'*'; 1 << 20] } else { vec![0xfe; 1 << 20] };
            let expected = if opcode == TEXT {
                Expected::Text(payload.clone())
            } else {
                Expected::Binary(payload.clone())
            };
            cases.push(case(
                format!("9.{sub}.{}", i + 1),
                format!("Send {name} message of 1 MiB in writes of {chop} bytes."),
                vec![chopped(Frame::new(opcode, payload), chop)],
                vec![expected],
                Outcome::Echo,
            ));
        }
    }
    let message_sizes = [0, 16, 64, 256, 1 << 10, 4 << 10];
    for (sub, opcode, name) in [(7, TEXT, "text"), (8, BINARY, "binary")] {
        for (i, &size) in message_sizes.iter().enumerate() {
            let payload = if opcode == TEXT { vec![b'*'; size] } else { vec![0xfe; size] };
            let mut steps = Vec::new();
            let mut expect = Vec::new();
            for n in 0..1000 {
                steps.push(send(Frame::new(opcode, payload.clone())));
                steps.push(Step::Await(n + 1));
                expect.push(if opcode == TEXT {
                    Expected::Text(payload.clone())
                } else {
                    Expected::Binary(payload.clone())
                });
            }
            cases.push(case(
                format!("9.{sub}.{}", i + 1),
                format!("Send 1000 {name} messages of {size} bytes, one round trip each."),
                steps,
                expect,
                Outcome::Echo,
            ));
        }
    }
}

/// Section 10: auto-fragmentation.
fn auto_fragmentation(cases: &mut Vec<Case>) {
    let payload = vec![b'*'; 65536];
    let parts: Vec<&[u8]> = payload.chunks(1300).collect();
    let steps = parts
        .iter()
        .enumerate()
        .map(|(j, part)| {
            send(
                Frame::new(if j == 0 { TEXT } else { CONT }, part.to_vec())
                    .fin(j + 1 == parts.len()),
            )
        })
        .collect();
    cases.push(case(
        "10.1.1",
        "Send text message of 65536 bytes in frames of 1300 bytes.",
        steps,
        vec![Expected::Text(payload)],
        Outcome::Echo,
    ));
}

/// Messages per compression case (Autobahn sends 1000; fewer keep the run short).
const COMPRESSED_MESSAGES: usize = 20;

/// Deterministic pseudo-random bytes (xorshift), so every run sends the same payloads.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Compressible text: words drawn from a small vocabulary.
fn words(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: [&str; 12] = [
        "the ",
        "quick ",
        "brown ",
        "fox ",
        "jumps ",
        "over ",
        "lazy ",
        "dog ",
        "κόσμε ",
        "and ",
        "then ",
        "again ",
    ];
    let picks = noise(len, seed);
    let mut out = Vec::with_capacity(len + 8);
    let mut i = 0;
    while out.len() < len {
        out.extend_from_slice(
            WORDS[picks[i % picks.len().max(1)] as usize % WORDS.len()].as_bytes(),
        );
        i += 1;
    }
    // Cut at a character boundary at or below `len`.
    let mut end = len.min(out.len());
    while std::str::from_utf8(&out[..end]).is_err() {
        end -= 1;
    }
    out.truncate(end);
    out
}

/// Makes a payload of a size from a seed.
type Payload = fn(usize, u64) -> Vec<u8>;

/// Sections 12 (payloads) and 13 (parameters): compressed messages of many sizes, each echoed.
fn compression(cases: &mut Vec<Case>) {
    const SIZES: [usize; 10] = [16, 64, 256, 1024, 4096, 8192, 16384, 32768, 65536, 131072];
    let sets: Vec<(&str, &str, &'static str, u8, Payload)> = vec![
        ("12.1", "compressible text", "permessage-deflate", TEXT, words),
        ("12.2", "compressible binary", "permessage-deflate", BINARY, |n, s| {
            noise(n, s).into_iter().map(|b| b % 4).collect()
        }),
        ("12.3", "text with long repeats", "permessage-deflate", TEXT, |n, s| {
            let unit = words(64, s);
            let mut text = unit.repeat(n / unit.len().max(1) + 1);
            let mut end = n;
            while std::str::from_utf8(&text[..end]).is_err() {
                end -= 1;
            }
            text.truncate(end);
            text
        }),
        ("12.4", "binary with long repeats", "permessage-deflate", BINARY, |n, s| {
            noise(256, s).repeat(n / 256 + 1)[..n].to_vec()
        }),
        ("12.5", "incompressible binary", "permessage-deflate", BINARY, noise),
        ("13.1", "default parameters", "permessage-deflate", TEXT, words),
        (
            "13.2",
            "client_no_context_takeover",
            "permessage-deflate; client_no_context_takeover",
            TEXT,
            words,
        ),
        (
            "13.3",
            "client_max_window_bits=9",
            "permessage-deflate; client_max_window_bits=9",
            TEXT,
            words,
        ),
        (
            "13.4",
            "client_max_window_bits=15",
            "permessage-deflate; client_max_window_bits=15",
            TEXT,
            words,
        ),
        (
            "13.5",
            "client_no_context_takeover, client_max_window_bits=9",
            "permessage-deflate; client_no_context_takeover; client_max_window_bits=9",
            TEXT,
            words,
        ),
        (
            "13.6",
            "server_no_context_takeover, server_max_window_bits=9",
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=9",
            TEXT,
            words,
        ),
        (
            "13.7",
            "all four parameters",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=10",
            TEXT,
            words,
        ),
    ];
    for (section, what, params, opcode, payload) in sets {
        // Ten sizes whole, then eight cut into frames of 256 compressed bytes, as Autobahn does.
        let variants =
            SIZES.iter().map(|&n| (n, None)).chain(SIZES[2..].iter().map(|&n| (n, Some(256))));
        for (i, (size, fragment)) in variants.enumerate() {
            let mut steps = Vec::new();
            let mut expect = Vec::new();
            for m in 0..COMPRESSED_MESSAGES {
                let data = payload(size, (i * 1000 + m) as u64 + 1);
                steps.push(Step::SendCompressed { opcode, payload: data.clone(), fragment });
                steps.push(Step::Await(m + 1));
                expect.push(if opcode == TEXT {
                    Expected::Text(data)
                } else {
                    Expected::Binary(data)
                });
            }
            let how =
                fragment.map_or(String::new(), |f| format!(", in frames of {f} compressed bytes"));
            cases.push(Case {
                id: format!("{section}.{}", i + 1),
                description: format!(
                    "Send {COMPRESSED_MESSAGES} compressed messages of {size} bytes ({what}){how}; parameters: {params}."
                ),
                steps,
                expect,
                outcome: Outcome::Echo,
                deflate: Some(params),
            });
        }
    }
}
