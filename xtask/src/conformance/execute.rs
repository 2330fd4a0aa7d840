//! The executor: a case's steps on an open connection, while everything the peer sends is read and checked.

use super::*;

/// Runs a case's steps on an open connection while reading what the peer sends.
pub(super) async fn execute(
    stream: &Async<TcpStream>,
    case: &Case,
    mode: Mode,
    leftover: Vec<u8>,
    codec: Option<deflate::Codec>,
) -> Observed {
    let state = Rc::new(RefCell::new(Observed::default()));
    let negotiated = codec.is_some();
    let codec = Rc::new(RefCell::new(codec));
    let deadline = Instant::now() + case_deadline(case);
    let mask = |n: u32| -> Option<[u8; 4]> {
        (mode == Mode::Server).then(|| (n.wrapping_mul(0x9e37_79b9) ^ 0x5a5a_1234).to_be_bytes())
    };
    let writer = {
        let state = Rc::clone(&state);
        let codec_w = Rc::clone(&codec);
        async move {
            let mut keys = 0u32;
            let total_writes = case
                .steps
                .iter()
                .filter(|s| {
                    matches!(
                        s,
                        Step::Send { .. } | Step::SendParts { .. } | Step::SendCompressed { .. }
                    )
                })
                .count();
            let mut writes = 0;
            let mut w = stream;
            for step in &case.steps {
                if state.borrow().peer_close.is_some() || Instant::now() > deadline {
                    break;
                }
                match step {
                    Step::Send { frame, chop } => {
                        writes += 1;
                        keys += 1;
                        if writes == total_writes {
                            mark_final_write(&state);
                        }
                        let bytes = frame.encode(mask(keys));
                        state.borrow_mut().log("→", &bytes);
                        let size = chop.unwrap_or(bytes.len()).max(1);
                        for piece in bytes.chunks(size) {
                            if w.write_all(piece).await.is_err() {
                                return;
                            }
                        }
                    }
                    Step::SendParts { frame, payload_cuts, pause } => {
                        writes += 1;
                        keys += 1;
                        let bytes = frame.encode(mask(keys));
                        state.borrow_mut().log("→", &bytes);
                        let header = bytes.len() - frame.payload.len();
                        let mut start = 0;
                        let mut ends: Vec<usize> =
                            payload_cuts.iter().map(|c| header + c).collect();
                        ends.push(bytes.len());
                        for (i, end) in ends.iter().enumerate() {
                            if i > 0 {
                                Timer::after(*pause).await;
                            }
                            if writes == total_writes && i + 1 == ends.len() {
                                mark_final_write(&state);
                            }
                            if state.borrow().peer_close.is_some()
                                || w.write_all(&bytes[start..*end]).await.is_err()
                            {
                                return;
                            }
                            start = *end;
                        }
                    }
                    Step::SendCompressed { opcode, payload, fragment } => {
                        writes += 1;
                        if writes == total_writes {
                            mark_final_write(&state);
                        }
                        let Some(compressed) =
                            codec_w.borrow_mut().as_mut().map(|c| c.compress(payload))
                        else {
                            state.borrow_mut().violation =
                                Some("permessage-deflate was not negotiated".into());
                            return;
                        };
                        let size = fragment.unwrap_or(compressed.len()).max(1);
                        let parts: Vec<&[u8]> = if compressed.is_empty() {
                            vec![&compressed[..]]
                        } else {
                            compressed.chunks(size).collect()
                        };
                        let mut bytes = Vec::with_capacity(compressed.len() + 14 * parts.len());
                        for (j, part) in parts.iter().enumerate() {
                            keys += 1;
                            let (op, rsv) = if j == 0 { (*opcode, 0b100) } else { (CONT, 0) };
                            let frame =
                                Frame::new(op, part.to_vec()).fin(j + 1 == parts.len()).rsv(rsv);
                            bytes.extend(frame.encode(mask(keys)));
                        }
                        state.borrow_mut().log("→", &bytes);
                        if w.write_all(&bytes).await.is_err() {
                            return;
                        }
                    }
                    Step::Delay(d) => {
                        Timer::after(*d).await;
                    }
                    Step::Await(n) => {
                        wait_for(&state, deadline, |o| {
                            o.messages.len() >= *n || o.peer_close.is_some()
                        })
                        .await
                    }
                }
            }
            if case.outcome == Outcome::Echo {
                let want = case.expect.len();
                wait_for(&state, deadline, |o| o.messages.len() >= want || o.peer_close.is_some())
                    .await;
                let send_close = {
                    let o = state.borrow();
                    o.peer_close.is_none() && o.suite_close.is_none()
                };
                if send_close {
                    keys += 1;
                    let bytes = Frame::new(CLOSE, wire::close_body(1000, b"")).encode(mask(keys));
                    state.borrow_mut().suite_close = Some(1000);
                    state.borrow_mut().log("→", &bytes);
                    let _ = w.write_all(&bytes).await;
                }
            }
        }
    };
    let reader = {
        let state = Rc::clone(&state);
        let codec_r = Rc::clone(&codec);
        async move {
            let mut buf = leftover;
            let mut chunk = vec![0u8; 64 << 10];
            let mut message: Option<(u8, Vec<u8>, bool)> = None;
            let mut r = stream;
            loop {
                // Parse what has arrived.
                loop {
                    let parsed = match wire::parse(&buf, 64 << 20) {
                        Ok(Some(parsed)) => parsed,
                        Ok(None) => break,
                        Err(err) => {
                            state.borrow_mut().violation = Some(err);
                            return;
                        }
                    };
                    let (frame, used) = parsed;
                    let header: Vec<u8> = buf[..used.min(14)].to_vec();
                    buf.drain(..used);
                    let mut reply = None;
                    let end_tcp = {
                        let mut o = state.borrow_mut();
                        o.log("←", &header);
                        let masked_ok = frame.masked == (mode == Mode::Client);
                        if !masked_ok {
                            o.violation = Some(format!(
                                "peer sent a {} frame",
                                if frame.masked { "masked" } else { "unmasked" }
                            ));
                            return;
                        }
                        // RSV1 marks a compressed message, on its first frame only (RFC 7692 §6).
                        let allowed = if negotiated && matches!(frame.opcode, TEXT | BINARY) {
                            0b100
                        } else {
                            0
                        };
                        if frame.rsv & !allowed != 0 {
                            o.violation = Some("peer set reserved bits".into());
                            return;
                        }
                        if o.peer_close.is_some() {
                            o.violation = Some("peer sent a frame after its close frame".into());
                            return;
                        }
                        match frame.opcode {
                            TEXT | BINARY if message.is_some() => {
                                o.violation = Some("peer started a message inside another".into());
                                return;
                            }
                            TEXT | BINARY => {
                                message = Some((frame.opcode, frame.payload, frame.rsv != 0))
                            }
                            CONT => match message.as_mut() {
                                Some((_, data, _)) => data.extend_from_slice(&frame.payload),
                                None => {
                                    o.violation =
                                        Some("peer sent a continuation with no message".into());
                                    return;
                                }
                            },
                            PONG => o.messages.push(Expected::Pong(frame.payload)),
                            PING => {}
                            CLOSE => {
                                let code = (frame.payload.len() >= 2).then(|| {
                                    u16::from_be_bytes([frame.payload[0], frame.payload[1]])
                                });
                                o.peer_close = Some(code);
                                o.close_before_final_write = !o.final_write_started;
                                if o.suite_close.is_none() {
                                    // Answer with the same code, as an endpoint should.
                                    let body =
                                        code.map(|c| wire::close_body(c, b"")).unwrap_or_default();
                                    o.suite_close = Some(code.unwrap_or(1005));
                                    let bytes = Frame::new(CLOSE, body).encode(mask(u32::MAX));
                                    o.log("→", &bytes);
                                    reply = Some(bytes);
                                }
                                if mode == Mode::Client {
                                    // The server ends TCP after the close handshake (RFC 6455 §7.1.1).
                                    o.suite_ended_tcp = true;
                                }
                            }
                            op => {
                                o.violation = Some(format!("peer sent opcode {op}"));
                                return;
                            }
                        }
                        if frame.fin && matches!(frame.opcode, TEXT | BINARY | CONT) {
                            if let Some((opcode, data, compressed)) = message.take() {
                                let data = if compressed {
                                    match codec_r
                                        .borrow_mut()
                                        .as_mut()
                                        .map(|c| c.inflate(&data, 64 << 20))
                                    {
                                        Some(Ok(inflated)) => inflated,
                                        Some(Err(err)) => {
                                            o.violation = Some(err);
                                            return;
                                        }
                                        None => {
                                            unreachable!("RSV1 is allowed only when negotiated")
                                        }
                                    }
                                } else {
                                    data
                                };
                                o.messages.push(if opcode == TEXT {
                                    Expected::Text(data)
                                } else {
                                    Expected::Binary(data)
                                });
                            }
                        }
                        o.suite_ended_tcp
                    };
                    if let Some(bytes) = reply {
                        let mut w = stream;
                        let _ = w.write_all(&bytes).await;
                    }
                    if end_tcp {
                        let _ = stream.get_ref().shutdown(std::net::Shutdown::Write);
                    }
                }
                let now = Instant::now();
                if now > deadline {
                    state.borrow_mut().timed_out = true;
                    return;
                }
                let read = future::or(async { Some(r.read(&mut chunk).await) }, async {
                    Timer::at(deadline).await;
                    None
                })
                .await;
                match read {
                    None => {
                        state.borrow_mut().timed_out = true;
                        return;
                    }
                    Some(Ok(0)) => {
                        let mut o = state.borrow_mut();
                        if !o.suite_ended_tcp {
                            o.peer_ended_tcp = true;
                        }
                        return;
                    }
                    Some(Err(err)) => {
                        state.borrow_mut().peer_reset = Some(err.to_string());
                        return;
                    }
                    Some(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
                }
            }
        }
    };
    future::zip(writer, reader).await;
    let _ = stream.get_ref().shutdown(std::net::Shutdown::Both);
    Rc::try_unwrap(state).map(RefCell::into_inner).unwrap_or_default()
}

fn mark_final_write(state: &Rc<RefCell<Observed>>) {
    state.borrow_mut().final_write_started = true;
}

async fn wait_for(
    state: &Rc<RefCell<Observed>>,
    deadline: Instant,
    done: impl Fn(&Observed) -> bool,
) {
    while !done(&state.borrow()) && Instant::now() < deadline {
        Timer::after(Duration::from_millis(1)).await;
    }
}
