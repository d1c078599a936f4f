//! The rate-limit checks of one message (issue 6): the connection's own message and byte
//! limits every message passes, plus the keyed limits its method adds (inference per session,
//! `node.invoke` per node and identity, `system.run` per node). Target: under 300 ns for the
//! applicable limits of one message. The keys are within their budgets (the common case); the
//! refusal path is measured separately.

use clawguard_filters::limits::{ClientLimits, Flow, Limit, RateLimits};
use clawguard_policies::LoadedPolicy;
use criterion::{criterion_group, criterion_main, Criterion};
use governor::clock::DefaultClock;
use std::hint::black_box;

/// Budgets no benchmark loop can exhaust, so every check takes the "allowed" path.
const HIGH: &str = "[limits]\nsession_inference_per_minute = 4000000000\nnode_invoke_per_minute = 4000000000\nidentity_node_invoke_per_minute = 4000000000\nsystem_run_per_minute = 4000000000\nconnection_messages_per_second = 1000000000\nconnection_messages_burst = 1000000000\nconnection_bytes_per_second = 1000000000\nconnection_bytes_burst = 1000000000\n";

fn bench(c: &mut Criterion) {
    let clock = DefaultClock::default();
    let policy = LoadedPolicy::parse("bench.toml", HIGH).expect("bench policy").policy;
    let clients = ClientLimits::new(&policy.limits, &clock);
    let limits = RateLimits::new(&policy.limits, &clock);
    // A realistic population of keys: 10,000 sessions already tracked.
    for i in 0..10_000u64 {
        let _ = limits.check(Limit::SessionInference, None, &format!("agent:main:session-{i}"));
    }
    let connection = clients.connection();
    let session = "agent:main:session-42";
    let node = "98e1914b4a1a7fad3c2e5d6f708192a3b4c5d6e7f8091a2b3c4d5e6f70819a807944";
    let mut group = c.benchmark_group("limits");
    group.bench_function("per-connection messages + bytes (every message)", |b| b.iter(|| black_box(connection.message(Flow::Client, black_box(300)))));
    group.bench_function("chat.send: per connection + session inference", |b| {
        b.iter(|| {
            black_box(connection.message(Flow::Client, black_box(300))).ok();
            black_box(limits.check(Limit::SessionInference, None, black_box(session)))
        })
    });
    group.bench_function("node.invoke system.run: per connection + node + identity + system.run", |b| {
        b.iter(|| {
            black_box(connection.message(Flow::Client, black_box(300))).ok();
            black_box(limits.check(Limit::NodeInvoke, None, black_box(node))).ok();
            black_box(limits.check(Limit::IdentityNodeInvoke, None, black_box("local"))).ok();
            black_box(limits.check(Limit::SystemRun, None, black_box(node)))
        })
    });
    let tight = LoadedPolicy::parse("bench.toml", "[limits]\nsession_inference_per_minute = 1\n").expect("bench policy").policy;
    let refusing = RateLimits::new(&tight.limits, &clock);
    let _ = refusing.check(Limit::SessionInference, None, session);
    assert!(refusing.check(Limit::SessionInference, None, session).is_err());
    group.bench_function("a refused check (retry hint computed)", |b| b.iter(|| black_box(refusing.check(Limit::SessionInference, None, black_box(session)))));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
