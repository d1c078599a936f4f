//! Issue 14: the audit writer's cost per record, without the file: an event (a refused
//! `config.apply`, as the engine reports it) redacted, canonicalised, hashed and chained, with a
//! signed checkpoint every 1000 records, as the writer thread does for every record; and the
//! request's own share, building the event it queues.

use clawguard_filters::audit::keys::AuditKeys;
use clawguard_filters::audit::recorder::{Origin, Recorder, Tail};
use clawguard_filters::audit::redact::Redactor;
use clawguard_filters::engine::{Decided, Direction, Verdict};
use clawguard_filters::surfaces::record::{ws_allowed, ws_decision, Connection};
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

// The binary's allocator.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn bench(c: &mut Criterion) {
    let mut recorder = Recorder::new(AuditKeys::from_seed([7; 32]), Redactor::new(&[]).unwrap(), None, Box::new(|| [0; 12])).with_checkpoints(1000, 60);
    recorder.set_policy_version("a58e2c4e1d76ef546ff8e18338fdbf287fde86ab91936cfd5eea03f12c0e0b0a");
    let first = recorder.start(&Tail { last: None, partial: Vec::new() }, &Origin { host: "bench".into(), version: "0".into() }, 1);
    assert_eq!(first.len(), 1);
    let conn = Connection { id: "ws-1".into(), peer: "127.0.0.1".into(), identity: "local".into(), role: Some("operator".into()) };
    let refused = ws_decision(&conn, &Decided {
        direction: Direction::ClientToGateway,
        verdict: Verdict::Reply,
        rule: "scope".into(),
        reason: "missing scope: operator.admin".into(),
        target: Some("config.apply".into()),
    });
    let allowed = ws_allowed(&conn, "chat.send".to_string());
    let mut now = 2u128;
    let mut lines = 0usize;
    // The writer appends to one buffer that it writes out and clears every 10 ms.
    let mut out = Vec::with_capacity(1 << 20);
    c.bench_function("audit record (refused config.apply)", |b| {
        b.iter(|| {
            now += 1000;
            lines += recorder.event(black_box(&refused), now, &mut out);
            if out.len() > 1 << 19 {
                out.clear();
            }
        })
    });
    c.bench_function("audit record (allowed chat.send)", |b| {
        b.iter(|| {
            now += 1000;
            lines += recorder.event(black_box(&allowed), now, &mut out);
            if out.len() > 1 << 19 {
                out.clear();
            }
        })
    });
    // The request's own share: the event it hands to the writer's queue.
    c.bench_function("audit event built (allowed chat.send)", |b| b.iter(|| black_box(ws_allowed(black_box(&conn), black_box("chat.send").to_string()))));
    // Every record produced a line, and checkpoints came in between.
    assert!(lines > 0 && recorder.head().0.unwrap_or(0) as usize >= lines, "{lines} lines");
}

criterion_group!(benches, bench);
criterion_main!(benches);
