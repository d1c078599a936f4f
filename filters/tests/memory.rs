//! Memory bounds of the WebSocket engine (issue 13), measured by a counting allocator: a
//! message sent in 1-byte fragments costs at most twice its payload while it is assembled,
//! and a connection that has not completed the handshake holds at most 128 KiB whatever it
//! sends. One test function, so no other test allocates while it measures.

use bytes::{BufMut, BytesMut};
use clawguard_filters::access::{Guard, InMemory};
use clawguard_filters::engine::{Limits, WsEngine};
use clawguard_filters::peer::Peer;
use clawguard_filters::ws::{encode_frame, OpCode};
use clawguard_policies::LoadedPolicy;
use peak_alloc::PeakAlloc;

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

const MASK: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

/// `n` bytes of a text message as 1-byte masked fragments, in chunks of about 64 KiB (what the
/// proxy reads at a time), produced as they are fed so the wire itself is not held.
fn feed_one_byte_fragments(n: usize, last: bool, mut sink: impl FnMut(&[u8])) {
    let mut chunk = BytesMut::with_capacity(64 * 1024);
    for i in 0..n {
        let fin = last && i + 1 == n;
        let op = if i == 0 { OpCode::Text } else { OpCode::Continuation };
        chunk.put_u8(if fin { 0x80 } else { 0 } | op_code(op));
        chunk.put_u8(0x80 | 1);
        chunk.put_slice(&MASK);
        chunk.put_u8(b' ' ^ MASK[0]);
        if chunk.len() + 7 > 64 * 1024 {
            sink(&chunk);
            chunk.clear();
        }
    }
    if !chunk.is_empty() {
        sink(&chunk);
    }
}

fn op_code(op: OpCode) -> u8 {
    match op {
        OpCode::Text => 1,
        _ => 0,
    }
}

#[test]
fn issue13_fragmented_messages_and_pending_connections_stay_within_their_bounds() {
    let mut policy = LoadedPolicy::embedded().policy;
    (policy.limits.connection_messages_per_second, policy.limits.connection_messages_burst) = (1_000_000_000, 1_000_000_000);
    (policy.limits.connection_bytes_per_second, policy.limits.connection_bytes_burst) = (1_000_000_000, 1_000_000_000);
    let guard = Guard::new(&policy);
    let state = InMemory::default();
    let env = state.env(&guard, 1_795_264_737_000);
    let peer = Peer { ip: "127.0.0.1".parse().unwrap(), tls: false, client_cert: None };
    let limits = Limits { handshake_message: 64 * 1024, message: 25 * 1024 * 1024, fragments: u32::MAX };

    // 1. An established connection: a 4 MiB message in 1-byte fragments (the bound does not
    //    depend on the size; 25 MiB only takes longer in a debug build:
    //    CLAWGUARD_MEMORY_TEST_MIB=25 cargo test --release -p clawguard-filters --test memory).
    let mut engine = WsEngine::new(&env, peer.clone(), limits, 1);
    engine.on_gateway_bytes(&env, &encode_frame(true, OpCode::Text, br#"{"type":"event","event":"connect.challenge","payload":{"nonce":"n","ts":1}}"#, None));
    engine.on_client_bytes(&env, &encode_frame(true, OpCode::Text, br#"{"type":"req","id":"1","method":"connect","params":{"scopes":["operator.read","operator.write"]}}"#, Some(MASK)));
    engine.on_gateway_bytes(&env, &encode_frame(true, OpCode::Text, br#"{"type":"res","id":"1","ok":true,"payload":{"type":"hello-ok","auth":{"role":"operator","scopes":["operator.read","operator.write"]}}}"#, None));
    assert!(engine.access().is_established());
    let mib: usize = std::env::var("CLAWGUARD_MEMORY_TEST_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(4);
    let payload = mib * 1024 * 1024;
    let before = ALLOC.current_usage();
    ALLOC.reset_peak_usage();
    let mut outputs = Vec::new();
    feed_one_byte_fragments(payload, true, |chunk| {
        let out = engine.on_client_bytes(&env, chunk);
        if !out.to_gateway.is_empty() || !out.decided.is_empty() {
            outputs.push(out);
        }
    });
    let peak = ALLOC.peak_usage() - before;
    // Whitespace is not a JSON request: the message is judged and refused, after being whole.
    assert_eq!(outputs.len(), 1, "one message, judged once it was whole");
    eprintln!("a {payload}-byte message in 1-byte fragments: peak {peak} bytes ({:.2}× the payload)", peak as f64 / payload as f64);
    assert!(peak <= 2 * payload + 256 * 1024, "a {payload}-byte message in 1-byte fragments peaked at {peak} bytes (bound: 2× the payload + 256 KiB of read buffers)");
    drop(outputs);
    drop(engine);

    // 2. 256 connections that have not completed the handshake, each sending 64 KiB in
    //    1-byte fragments (the pre-auth cap) and never finishing the message.
    let before = ALLOC.current_usage();
    let mut pending = Vec::new();
    for seed in 0..256 {
        let mut e = WsEngine::new(&env, peer.clone(), limits, seed);
        e.on_gateway_bytes(&env, &encode_frame(true, OpCode::Text, br#"{"type":"event","event":"connect.challenge","payload":{"nonce":"n","ts":1}}"#, None));
        feed_one_byte_fragments(64 * 1024, false, |chunk| {
            let out = e.on_client_bytes(&env, chunk);
            assert!(out.decided.is_empty(), "64 KiB is within the pre-auth cap: {:?}", out.decided);
        });
        pending.push(e);
    }
    let per_connection = (ALLOC.current_usage() - before) / pending.len();
    eprintln!("a pending connection after 64 KiB in 1-byte fragments: {per_connection} bytes");
    assert!(per_connection <= 128 * 1024, "a pending connection holds {per_connection} bytes (bound: 128 KiB)");
}
