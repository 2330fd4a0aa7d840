//! Micro-benchmarks of the hot paths: masking, header parsing, UTF-8 validation, and whole
//! messages through the connection state machine. Run with `cargo bench -p ws-proto`.

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ws_proto::{
    Connection, Event, FrameHeader, OpCode, ProtocolConfig, Utf8Validator, apply_mask,
    apply_mask_bytewise,
};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn masking(c: &mut Criterion) {
    let mut group = c.benchmark_group("mask");
    for size in [16usize, 1 << 10, 64 << 10, 1 << 20] {
        let mut buf = vec![0x5au8; size + 1];
        group.throughput(Throughput::Bytes(size as u64));
        // Offset by one byte so the data is not word-aligned, the harder case.
        group.bench_with_input(BenchmarkId::new("word", size), &size, |b, _| {
            b.iter(|| apply_mask(black_box(&mut buf[1..]), KEY, 0))
        });
        group.bench_with_input(BenchmarkId::new("bytewise", size), &size, |b, _| {
            b.iter(|| apply_mask_bytewise(black_box(&mut buf[1..]), KEY, 0))
        });
    }
    group.finish();
}

fn header_parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("header");
    for (name, len) in [("7bit", 20u64), ("16bit", 1024), ("64bit", 1 << 20)] {
        let mut wire = [0u8; 14];
        let header = FrameHeader { mask: Some(KEY), ..FrameHeader::new(OpCode::Binary, len) };
        let n = header.encode(&mut wire);
        group.bench_function(name, |b| b.iter(|| FrameHeader::parse(black_box(&wire[..n]))));
    }
    group.finish();
}

fn utf8(c: &mut Criterion) {
    let mut group = c.benchmark_group("utf8");
    let ascii = "a".repeat(64 << 10);
    let mixed = "κόσμε 𝄞 ascii text € ".repeat(2000);
    for (name, text) in [("ascii", &ascii), ("mixed", &mixed)] {
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function(BenchmarkId::new("whole", name), |b| {
            b.iter(|| simdutf8::basic::from_utf8(black_box(text.as_bytes())).is_ok())
        });
        group.bench_function(BenchmarkId::new("incremental_4k", name), |b| {
            b.iter(|| {
                let mut v = Utf8Validator::new();
                for piece in text.as_bytes().chunks(4096) {
                    v.feed(black_box(piece)).unwrap();
                }
                v.finish().is_ok()
            })
        });
    }
    group.finish();
}

/// A batch of masked client frames, as one read from a socket would bring them.
fn client_frames(count: usize, size: usize, opcode: u8) -> Vec<u8> {
    let payload = vec![b'x'; size];
    let mut out = Vec::new();
    for _ in 0..count {
        let header = FrameHeader {
            mask: Some(KEY),
            ..FrameHeader::new(OpCode::from_u8(opcode).expect("data opcode"), size as u64)
        };
        header.encode_to_vec(&mut out);
        let start = out.len();
        out.extend_from_slice(&payload);
        apply_mask(&mut out[start..], KEY, 0);
    }
    out
}

fn connection(c: &mut Criterion) {
    let mut group = c.benchmark_group("connection_echo");
    for size in [20usize, 1 << 10, 16 << 10] {
        for (name, opcode) in [("binary", 2u8), ("text", 1)] {
            let count = 64;
            let wire = client_frames(count, size, opcode);
            group.throughput(Throughput::Elements(count as u64));
            group.bench_function(BenchmarkId::new(name, size), |b| {
                let mut conn = Connection::server(ProtocolConfig::default());
                b.iter(|| {
                    let buf = conn.input_buffer(wire.len());
                    buf[..wire.len()].copy_from_slice(&wire);
                    conn.input_written(wire.len());
                    // The echo path: reply from the borrowed payload, one copy.
                    while let Some((event, mut sender)) = conn.poll_event_with_sender() {
                        if let Event::Message(message) = event {
                            sender.send_message(message.kind(), message.as_bytes()).expect("open");
                        }
                    }
                    let n = conn.pending_output().len();
                    conn.consume_output(n);
                    n
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, masking, header_parse, utf8, connection);
criterion_main!(benches);
