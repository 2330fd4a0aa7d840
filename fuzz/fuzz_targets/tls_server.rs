//! The server's TLS state (`ws-server`'s `Tls`: rustls's unbuffered connection and our
//! buffers), driven as the epoll engine drives it.
//!
//! The first byte chooses a mode. Raw: the rest is TLS bytes from a peer, cut into pieces and
//! read through destination buffers of sizes the input chooses, with the buffers lent and
//! taken back between reads; asserts no panic, that what is held stays within its bound, and
//! that an error ends it. Session: a real client (rustls's buffered connection) completes a
//! handshake, then the input is a script of messages both ways, key updates, cuts of the
//! client's bytes, read sizes, idle waits and a close; asserts every byte arrives, in order,
//! both ways, and that an idle connection holds no buffer.
#![no_main]

use std::io::{IoSlice, Read, Write};
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig};
use ws_server::fuzzing::{INPUT_MAX, TlsServer, WRITE_MAX};

fn configs() -> &'static (Arc<ServerConfig>, Arc<ClientConfig>) {
    static CONFIGS: OnceLock<(Arc<ServerConfig>, Arc<ClientConfig>)> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = CertificateDer::from(made.cert.der().to_vec());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(cert).unwrap();
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (Arc::new(server), Arc::new(client))
    })
}

/// Reads bytes off the front of the input.
struct Script<'a>(&'a [u8]);

impl Script<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(first)
    }

    fn size(&mut self) -> usize {
        let hi = self.byte().unwrap_or(0) as usize;
        let lo = self.byte().unwrap_or(1) as usize;
        (hi << 8 | lo).max(1)
    }
}

fn raw(mut script: Script<'_>) {
    let mut server = TlsServer::new(configs().0.clone()).unwrap();
    while !script.0.is_empty() {
        let take = script.size().min(script.0.len());
        let (piece, rest) = script.0.split_at(take);
        script.0 = rest;
        server.receive(piece);
        let mut dst = vec![0; script.byte().unwrap_or(1) as usize * 64];
        let result = server.process(&mut dst);
        let _ = server.take_output();
        assert!(server.received() < INPUT_MAX + take, "held {}", server.received());
        if result.is_err() {
            return;
        }
        match script.byte().unwrap_or(0) % 3 {
            0 => drop(server.idle()),
            1 => drop(server.lend(vec![0; 4096], 1 << 16)),
            _ => {}
        }
    }
}

/// Moves the client's TLS bytes to the server in pieces the script chooses, and what the
/// server decrypts into `got`.
fn client_to_server(
    client: &mut ClientConnection,
    server: &mut TlsServer,
    script: &mut Script<'_>,
    got: &mut Vec<u8>,
) {
    let mut wire = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut wire).unwrap();
    }
    let mut at = &wire[..];
    while !at.is_empty() {
        let take = script.size().min(at.len());
        server.receive(&at[..take]);
        at = &at[take..];
        let mut dst = vec![0; script.size()];
        loop {
            let n = server.process(&mut dst).expect("the client's bytes are good");
            got.extend_from_slice(&dst[..n]);
            if n == 0 {
                break;
            }
        }
        if script.byte().unwrap_or(0) % 2 == 0 {
            if let Some(buf) = server.idle() {
                assert!(buf.capacity() > 0);
            }
        }
    }
    assert!(!server.has_plaintext());
}

/// The server's output to the client, and what the client decrypts into `got`.
fn server_to_client(server: &mut TlsServer, client: &mut ClientConnection, got: &mut Vec<u8>) {
    let out = server.take_output();
    let mut at = &out[..];
    while !at.is_empty() {
        client.read_tls(&mut at).unwrap();
        client.process_new_packets().expect("the server's bytes are good");
        let _ = client.reader().read_to_end(got);
    }
}

fn session(mut script: Script<'_>) {
    let (server_config, client_config) = configs();
    let mut server = TlsServer::new(server_config.clone()).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut client = ClientConnection::new(client_config.clone(), name).unwrap();
    let (mut to_server, mut to_client) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        client_to_server(&mut client, &mut server, &mut script, &mut to_server);
        server_to_client(&mut server, &mut client, &mut to_client);
    }
    assert!(!server.is_handshaking() && !client.is_handshaking());
    let (mut sent_up, mut sent_down) = (Vec::new(), Vec::new());
    let mut counter = 0u8;
    while let Some(op) = script.byte() {
        match op % 5 {
            0 | 1 => {
                // Up to 5 records' worth.
                let len = script.size() * (1 + (op as usize >> 6)) % 80_000 + 1;
                let message: Vec<u8> = (0..len)
                    .map(|_| {
                        counter = counter.wrapping_add(1);
                        counter
                    })
                    .collect();
                // The client takes as much as its buffer limit allows at a time.
                let mut at = 0;
                while at < message.len() {
                    at += client.writer().write(&message[at..]).unwrap();
                    client_to_server(&mut client, &mut server, &mut script, &mut to_server);
                }
                sent_up.extend_from_slice(&message);
            }
            2 => {
                let len = script.size() * (1 + (op as usize >> 6)) % 80_000 + 1;
                let message: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
                let cut = script.size().min(message.len());
                let (first, second) = message.split_at(cut);
                let mut taken = 0;
                while taken < message.len() {
                    let parts = parts_from(first, second, taken);
                    let n = server.encrypt(&parts).unwrap().expect("open");
                    assert!(n > 0 && n <= WRITE_MAX);
                    taken += n;
                    server_to_client(&mut server, &mut client, &mut to_client);
                }
                sent_down.extend_from_slice(&message);
            }
            3 => {
                client.refresh_traffic_keys().unwrap();
                client_to_server(&mut client, &mut server, &mut script, &mut to_server);
                server_to_client(&mut server, &mut client, &mut to_client);
            }
            _ => {
                let _ = server.idle();
                // Idle with nothing held: rustls's state and no buffer.
                // (Its struct, rustls's heap and an output buffer of at most 256 bytes.)
                assert!(server.memory() < 4608, "idle, it holds {}", server.memory());
            }
        }
    }
    assert!(to_server == sent_up, "client to server: bytes differ");
    assert!(to_client == sent_down, "server to client: bytes differ");
    client.send_close_notify();
    client_to_server(&mut client, &mut server, &mut script, &mut to_server);
    assert!(server.peer_closed());
    server.close_notify().unwrap();
    server_to_client(&mut server, &mut client, &mut to_client);
}

/// The two slices `first`, `second` with the first `skip` bytes left out.
fn parts_from<'a>(first: &'a [u8], second: &'a [u8], skip: usize) -> Vec<IoSlice<'a>> {
    if skip < first.len() {
        vec![IoSlice::new(&first[skip..]), IoSlice::new(second)]
    } else {
        vec![IoSlice::new(&second[skip - first.len()..])]
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else { return };
    if mode % 2 == 0 { raw(Script(rest)) } else { session(Script(rest)) }
});
