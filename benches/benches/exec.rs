//! The exec check (issue 5): parse as shell, peel wrappers, judge every segment, under the
//! example policy. Target: under 20 µs for a typical 100–300 character command. The bench
//! also reports the slowest command of the benign corpus (`tests/exec/benign.txt`).

use clawguard_filters::exec::ExecPolicy;
use clawguard_policies::LoadedPolicy;
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::time::Instant;

/// The allocator the clawguard binary uses (proxy/src/main.rs), so the figures are the
/// product's: the check allocates per word and per segment.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TYPICAL: &str = "cd_is_not_used && git status --porcelain && cargo test --workspace --all-targets -- --nocapture && grep -rn 'TODO' src tests | head -n 20 && echo 'checks finished for the release branch'";
const WRAPPED: &[&str] = &["env", "RUST_LOG=debug", "timeout", "300", "bash", "-lc", "cargo build --release && cargo test -q && git diff --stat HEAD~1 | tail -n 5"];

fn policy() -> ExecPolicy {
    let text = include_str!("../../policy.example.toml");
    ExecPolicy::new(&LoadedPolicy::parse("policy.example.toml", text).unwrap().policy).unwrap()
}

fn bench(c: &mut Criterion) {
    let p = policy();
    let typical = TYPICAL.replace("cd_is_not_used && ", "");
    assert!((100..=300).contains(&typical.len()), "{} characters", typical.len());
    assert_eq!(p.check_shell(&typical).decision, "allow");
    let wrapped: Vec<String> = WRAPPED.iter().map(|s| s.to_string()).collect();
    assert_eq!(p.check_argv(&wrapped).decision, "allow");
    let mut group = c.benchmark_group("exec");
    group.bench_function(format!("shell script, {} chars, 5 segments", typical.len()), |b| b.iter(|| black_box(p.check_shell(black_box(&typical)))));
    let ops: Vec<String> = ["&&", "||", ";", "|"].iter().map(|s| s.to_string()).collect();
    group.bench_function("shell parse only (subset reader + brush tokenizer), same script", |b| b.iter(|| black_box(clawguard_filters::exec::shell::parse(black_box(&typical), &ops))));
    group.bench_function("subset reader (lex) only, same script", |b| b.iter(|| black_box(clawguard_filters::exec::shell::lex(black_box(&typical)))));
    group.bench_function("shell parse only, `echo hi`", |b| b.iter(|| black_box(clawguard_filters::exec::shell::parse(black_box("echo hi"), &ops))));
    group.bench_function("argv through env > timeout > bash -lc, 3 segments", |b| b.iter(|| black_box(p.check_argv(black_box(&wrapped)))));
    group.finish();

    // The slowest command of the benign corpus (median of 200 runs each).
    let corpus = include_str!("../../tests/exec/benign.txt");
    let mut worst = (0.0f64, "");
    for line in corpus.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let mut times: Vec<f64> = (0..200)
            .map(|_| {
                let t = Instant::now();
                black_box(p.check_shell(black_box(line)));
                t.elapsed().as_secs_f64() * 1e6
            })
            .collect();
        times.sort_by(|a, b| a.total_cmp(b));
        let median = times[times.len() / 2];
        if median > worst.0 {
            worst = (median, line);
        }
    }
    println!("exec/benign corpus worst case: {:.2} µs median for {:?}", worst.0, worst.1);
}

criterion_group!(benches, bench);
criterion_main!(benches);
