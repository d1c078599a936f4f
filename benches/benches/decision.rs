//! The per-message decision: frame parsing (unmasking included), message assembly, JSON
//! parsing, connection state, the scope check and the node pin check, on a real frame's shape (a CLI
//! `node.invoke` of `system.which`, ~300 bytes, as captured from openclaw 2026.9.6).
//! Target (issue 3): under 2 µs per typical 300-byte request.

use clawguard_filters::access::{Guard, InMemory};
use clawguard_filters::nodes::{PinOp, Pins, Surface};
use clawguard_filters::engine::{Limits, WsEngine};
use clawguard_filters::peer::Peer;
use clawguard_filters::ws::{encode_frame, OpCode};
use clawguard_policies::LoadedPolicy;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;

const INVOKE: &str = r#"{"type":"req","id":"2:b8f2c1d4-6a3e-4c1f-9d2b-7e5a3f0c8b61","method":"node.invoke","params":{"nodeId":"98e1914b4a1a7fad3c2e5d6f708192a3b4c5d6e7f8091a2b3c4d5e6f70819a807944","command":"system.which","params":{"bins":["uname"]},"idempotencyKey":"b8f2c1d4-6a3e-4c1f-9d2b-7e5a3f0c8b61","timeoutMs":15000}}"#;

fn bench(c: &mut Criterion) {
    // The embedded policy, with budgets no benchmark loop can exhaust: the same message is
    // sent millions of times, and the decision measured must be the one a real message gets
    // (limits checked and passed), not a rate-limit refusal.
    let mut policy = LoadedPolicy::embedded().policy;
    let limits = &mut policy.limits;
    limits.node_invoke_per_minute = 4_000_000_000;
    limits.identity_node_invoke_per_minute = 4_000_000_000;
    (limits.connection_messages_per_second, limits.connection_messages_burst) = (1_000_000_000, 1_000_000_000);
    (limits.connection_bytes_per_second, limits.connection_bytes_burst) = (1_000_000_000, 1_000_000_000);
    (limits.gateway_messages_per_second, limits.gateway_bytes_per_second) = (1_000_000_000, 1_000_000_000);
    let guard = Guard::new(&policy);
    let state = InMemory::default();
    let node = "98e1914b4a1a7fad3c2e5d6f708192a3b4c5d6e7f8091a2b3c4d5e6f70819a807944";
    let surface = Surface { commands: ["system.which".to_string()].into(), ..Surface::default() };
    state.pins.apply(PinOp::Approve { device_id: node.into(), surface, by: "bench".into(), at_ms: 0 }, &guard.nodes);
    let env = state.env(&guard, 1_795_264_737_000);
    let peer = Peer { ip: "127.0.0.1".parse().unwrap(), tls: false, client_cert: None };
    let limits = Limits { handshake_message: 64 * 1024, message: 25 * 1024 * 1024, fragments: 4096 };
    let mut engine = WsEngine::new(&env, peer, limits, 1);
    let mask = Some([0x12, 0x34, 0x56, 0x78]);
    engine.on_gateway_bytes(&env, &encode_frame(true, OpCode::Text, br#"{"type":"event","event":"connect.challenge","payload":{"nonce":"n","ts":1}}"#, None));
    engine.on_client_bytes(&env, &encode_frame(true, OpCode::Text, br#"{"type":"req","id":"1","method":"connect","params":{"scopes":["operator.read","operator.write"]}}"#, mask));
    engine.on_gateway_bytes(&env, &encode_frame(true, OpCode::Text, br#"{"type":"res","id":"1","ok":true,"payload":{"type":"hello-ok","auth":{"role":"operator","scopes":["operator.read","operator.write"]}}}"#, None));
    assert!(engine.access().is_established());
    let wire = encode_frame(true, OpCode::Text, INVOKE.as_bytes(), mask);
    assert_eq!(engine.on_client_bytes(&env, &wire).forwarded, [1, 0], "the benchmark frame must be allowed");

    let mut group = c.benchmark_group("decision");
    group.throughput(Throughput::Bytes(wire.len() as u64));
    group.bench_function("node.invoke req, 300 B: frame + JSON + state + scopes", |b| {
        b.iter(|| black_box(engine.on_client_bytes(&env, black_box(&wire))))
    });
    assert_eq!(engine.on_client_bytes(&env, &wire).forwarded, [1, 0], "still allowed after the benchmark: the decision measured was the real one");
    // Issue 15: as the proxy reads it, the policy through the swap a reload replaces: one
    // `arc-swap` load and the environment built per read of client bytes. Compare with the
    // point above, measured in the same run (target: at most 0.2 µs more per message).
    let swap = arc_swap::ArcSwap::from_pointee(guard);
    group.bench_function("node.invoke req, 300 B, the policy read through the reload swap", |b| {
        b.iter(|| {
            let live = swap.load();
            let env = state.env(&live, 1_795_264_737_000);
            black_box(engine.on_client_bytes(&env, black_box(&wire)))
        })
    });
    let live = swap.load();
    assert_eq!(engine.on_client_bytes(&state.env(&live, 1_795_264_737_000), &wire).forwarded, [1, 0], "still allowed through the swap");
    drop(live);
    // This VM's run-to-run noise (±0.5 µs) is larger than the 0.2 µs the swap may cost, so the
    // two are also measured in alternating batches in one process, and the paired differences'
    // median is the figure (each batch's order flips, so drift cancels).
    let held = swap.load_full();
    let direct_env = state.env(&held, 1_795_264_737_000);
    let (mut direct, mut through, mut diff) = (Vec::new(), Vec::new(), Vec::new());
    let per = 20_000;
    let mut batch = |swapped: bool| {
        let start = std::time::Instant::now();
        for _ in 0..per {
            if swapped {
                let live = swap.load();
                black_box(engine.on_client_bytes(&state.env(&live, 1_795_264_737_000), black_box(&wire)));
            } else {
                black_box(engine.on_client_bytes(&direct_env, black_box(&wire)));
            }
        }
        start.elapsed().as_nanos() as f64 / per as f64
    };
    for i in 0..200 {
        let (d, t) = if i % 2 == 0 { let d = batch(false); (d, batch(true)) } else { let t = batch(true); (batch(false), t) };
        direct.push(d);
        through.push(t);
        diff.push(t - d);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (d, t, x) = (median(&mut direct), median(&mut through), median(&mut diff));
    diff.sort_by(f64::total_cmp);
    println!("paired batches (200 x {per} messages): direct {d:.0} ns, through the swap {t:.0} ns, difference median {x:+.0} ns (quartiles {:+.0} / {:+.0} ns)", diff[50], diff[150]);
    assert_eq!(engine.on_client_bytes(&direct_env, &wire).forwarded, [1, 0], "still allowed after the paired batches");
    let env = direct_env;
    let tick = encode_frame(true, OpCode::Text, br#"{"type":"event","event":"tick","payload":{"ts":1795265034643},"seq":1}"#, None);
    group.bench_function("tick event from the gateway (no rules: not parsed)", |b| {
        b.iter(|| black_box(engine.on_gateway_bytes(&env, black_box(&tick))))
    });
    assert_eq!(engine.on_gateway_bytes(&env, &tick).forwarded, [0, 1], "ticks still forwarded after the benchmark");
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
