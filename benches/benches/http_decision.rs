//! The HTTP decision path (issue 12), sans-IO: `http::admit` of a request head judged on its head
//! (`GET /v1/models`), `admit` + `judge_body` of a `POST /tools/invoke`, and the response header
//! plan. The end-to-end cost is measured by `benches/http_decisions.sh`; this says where it goes.

use clawguard_filters::access::{Guard, InMemory};
use clawguard_filters::http::{admit, judge_body, BodyPlan, HttpRequest, Known, UpstreamHeaders};
use clawguard_filters::peer::Peer;
use clawguard_policies::LoadedPolicy;
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BODY: &str = r#"{"tool":"web_search","sessionKey":"agent:main:local","args":{"query":"clawguard"}}"#;

fn bench(c: &mut Criterion) {
    let mut policy = LoadedPolicy::embedded().policy;
    policy.limits.http_tools_invoke_per_minute = 4_000_000_000;
    policy.limits.http_inference_per_minute = 4_000_000_000;
    let guard = Guard::new(&policy);
    let state = InMemory::default();
    let env = state.env(&guard, 1_795_264_737_000);
    let peer = Peer { ip: "127.0.0.1".parse().unwrap(), tls: false, client_cert: None };
    let headers: Vec<(String, String)> = [("host", "127.0.0.1:18790"), ("user-agent", "wrk"), ("content-type", "application/json"), ("content-length", "84")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let models = HttpRequest { method: "GET", path: "/v1/models", query: None, headers: &headers, upgrade: false };
    let invoke = HttpRequest { method: "POST", path: "/tools/invoke", query: None, headers: &headers, upgrade: false };
    let a = admit(&env, &peer, &models).expect("GET /v1/models is admitted");
    assert!(a.recorded.is_empty());
    let mut a = admit(&env, &peer, &invoke).expect("POST /tools/invoke is admitted");
    assert!(matches!(a.body, BodyPlan::Judge { .. }));
    judge_body(&env, &peer, &mut a, &invoke, BODY.as_bytes()).expect("the body is allowed");

    let mut group = c.benchmark_group("http");
    group.bench_function("admit GET /v1/models (head judged: identity, method lists, scopes)", |b| b.iter(|| black_box(admit(&env, &peer, black_box(&models)))));
    group.bench_function("admit + judge_body POST /tools/invoke (84 B)", |b| {
        b.iter(|| {
            let mut a = admit(&env, &peer, black_box(&invoke)).unwrap();
            black_box(judge_body(&env, &peer, &mut a, &invoke, black_box(BODY.as_bytes())))
        })
    });
    group.bench_function("response header plan (API route)", |b| b.iter(|| black_box(guard.http.headers.plan(Some(a.route.class), "/tools/invoke", false, &JsonAnswer))));
    group.finish();
    assert!(admit(&env, &peer, &models).unwrap().recorded.is_empty(), "still admitted after the benchmark");
}

/// The upstream's answer: a JSON content type and a length.
struct JsonAnswer;

impl UpstreamHeaders for JsonAnswer {
    fn known(&self, header: Known) -> Option<&str> {
        (header == Known::ContentType).then_some("application/json")
    }
    fn named(&self, name: &str) -> Option<&str> {
        match name {
            "content-type" => Some("application/json"),
            "content-length" => Some("13"),
            _ => None,
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
