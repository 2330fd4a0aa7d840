//! Handshake parsers: arbitrary bytes as a request (server side) and as a response (client
//! side), fed whole and in pieces. Checks that nothing panics and that the split does not
//! change the outcome.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ws_proto::{ClientRequest, HandshakeLimits, RequestParser};

fn server_side(input: &[u8], step: usize) -> String {
    let mut parser = RequestParser::new(HandshakeLimits::default());
    for piece in input.chunks(step.max(1)) {
        match parser.feed(piece) {
            Ok(None) => {}
            Ok(Some(request)) => {
                let outcome = match request.websocket() {
                    Ok(upgrade) => {
                        let protocol = upgrade.protocols.first().cloned();
                        let response = upgrade.accept(protocol.as_deref()).expect("offered");
                        format!("101 {}", response.to_bytes().len())
                    }
                    Err(err) => format!("{}", err.response().status),
                };
                return format!("{outcome} {:?}", request.headers.len());
            }
            Err(err) => return format!("err {err}"),
        }
    }
    "partial".into()
}

fn client_side(input: &[u8], step: usize) -> String {
    let (mut handshake, _) = ClientRequest::new("a", "/").protocol("chat").start([7; 16]);
    for piece in input.chunks(step.max(1)) {
        match handshake.feed(piece) {
            Ok(None) => {}
            Ok(Some(accepted)) => return format!("ok {:?}", accepted.protocol),
            Err(err) => return format!("err {err}"),
        }
    }
    "partial".into()
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, input)) = data.split_first() else { return };
    let step = usize::from(step) + 1;
    // A head over the limit may be reported at a different byte, but with the same error.
    assert_eq!(server_side(input, input.len()), server_side(input, step));
    assert_eq!(client_side(input, input.len()), client_side(input, step));
});
